//! kiln's runtime: the code that generated networks call into.
//!
//! - [`reference`]: one plain-loop reference per op, the oracle for every
//!   fast kernel (no SIMD, no threads, f64 accumulation where it matters).
//! - [`kernels`]: the fast CPU kernels, forward and backward, chosen once
//!   through a table after CPU-feature detection.
//! - [`activation`], [`rng`]: small shared definitions used by both.
//! - With the `std` feature (on by default): the training toolkit —
//!   parameters, optimizers, schedules, initializers, regularization,
//!   gradient checking, checkpoints, data sets, metrics, progress and plots.
//!
//! Without `std` the crate is `#![no_std]` and allocation-free: the inference
//! kernels take every scratch buffer from the caller.
#![cfg_attr(not(feature = "std"), no_std)]

pub mod activation;
pub mod arena;
pub mod kernels;
pub mod rng;

#[cfg(feature = "std")]
pub mod reference;

#[cfg(feature = "std")]
pub mod checkpoint;
#[cfg(feature = "std")]
pub mod data;
#[cfg(feature = "std")]
pub mod gradcheck;
#[cfg(feature = "std")]
pub mod init;
#[cfg(feature = "std")]
pub mod metrics;
#[cfg(feature = "std")]
pub mod optim;
#[cfg(feature = "std")]
pub mod params;
#[cfg(feature = "std")]
pub mod plot;
#[cfg(feature = "std")]
pub mod progress;
#[cfg(feature = "std")]
pub mod regularize;
#[cfg(feature = "std")]
pub mod schedule;
#[cfg(feature = "std")]
pub mod train;
