//! Reference norm: to be written.
