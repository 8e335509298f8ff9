//! regularize: to be written.
