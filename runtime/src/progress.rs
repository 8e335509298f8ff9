//! progress: to be written.
