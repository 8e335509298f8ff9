//! Fast loss kernels: to be written.
