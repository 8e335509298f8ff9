//! Reference lrn: to be written.
