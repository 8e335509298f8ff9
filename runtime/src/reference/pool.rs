//! Reference pool: to be written.
