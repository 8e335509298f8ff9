//! params: to be written.
