//! Fast activation kernels: to be written.
