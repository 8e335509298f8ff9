//! Fast pool kernels: to be written.
