//! One naive reference per op: plain loops, no SIMD, no threads, f64
//! accumulation where it matters. These are the oracles that every fast
//! kernel and the compiler's IR interpreter are checked against; they favour
//! being obviously right over being fast.
//!
//! Layout: tensors are dense, row-major, NCHW; conv weights are OIHW.

pub mod activation;
pub mod conv;
pub mod elementwise;
pub mod gemm;
pub mod loss;
pub mod lrn;
pub mod norm;
pub mod pool;
pub mod softmax;
pub mod upsample;
