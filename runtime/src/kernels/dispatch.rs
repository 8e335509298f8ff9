//! Fast dispatch kernels: to be written.
