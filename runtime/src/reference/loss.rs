//! Reference loss: to be written.
