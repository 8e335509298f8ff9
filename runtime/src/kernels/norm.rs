//! Fast norm kernels: to be written.
