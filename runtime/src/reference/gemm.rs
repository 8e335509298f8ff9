//! Reference gemm: to be written.
