//! Fast conv kernels: to be written.
