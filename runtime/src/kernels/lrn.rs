//! Fast lrn kernels: to be written.
