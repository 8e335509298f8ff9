//! Fast gemm kernels: to be written.
