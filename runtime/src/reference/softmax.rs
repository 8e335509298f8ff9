//! Reference softmax: to be written.
