//! Fast elementwise kernels: to be written.
