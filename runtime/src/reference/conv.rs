//! Reference conv: to be written.
