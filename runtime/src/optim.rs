//! optim: to be written.
