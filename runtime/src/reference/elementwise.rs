//! Reference elementwise: to be written.
