//! kiln: an ahead-of-time compiler for neural networks.
//!
//! This is the one crate users add. It re-exports the `network!` macro, which
//! compiles a network description into plain Rust at build time, and the
//! runtime those generated types call into: kernels, optimizers, schedules,
//! initializers, checkpoints, data sets and metrics.
#![cfg_attr(not(feature = "std"), no_std)]

pub use kiln_macros::network;
pub use kiln_runtime as runtime;
