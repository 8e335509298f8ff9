//! Reference upsample: to be written.
