//! The fast CPU kernels, forward and backward.
//!
//! Each family sits in its own file beside the others; every kernel has a
//! reference in [`crate::reference`] and a shared property test against it.
//! Per-architecture code (AVX2+FMA, NEON, portable) is selected once through
//! the table in [`dispatch`], never with `cfg` at call sites.

pub mod activation;
pub mod backward;
pub mod conv;
pub mod conv_direct;
pub mod conv_direct_channels;
pub mod conv_pool;
pub mod dispatch;
pub mod elementwise;
pub mod epilogue;
pub mod fold;
pub mod gemm;
pub mod gemm_micro;
pub mod loss;
pub mod lrn;
pub mod norm;
pub mod pack;
pub mod parallel;
pub mod pool;
pub mod softmax;
pub mod upsample;
pub mod winograd;
