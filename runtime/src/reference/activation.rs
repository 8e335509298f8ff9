//! Reference activation: to be written.
