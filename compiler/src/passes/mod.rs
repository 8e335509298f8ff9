//! Passes over the IR, one file each, each a function from a graph to a
//! graph (or to collected diagnostics).
//!
//! In pipeline order: [`infer_shapes()`] (every value gets a static shape),
//! [`verify()`] after every stage; [`autodiff()`] builds the joint
//! forward + backward graph for training; [`plan_memory`] places buffers
//! in one arena when a plan is built.

pub mod autodiff;
pub mod fuse_training;
pub mod infer_shapes;
pub mod plan_memory;
pub mod verify;

pub use autodiff::{JointGraph, autodiff, autodiff_with_input_grads};
pub use fuse_training::fuse_training;
pub use infer_shapes::infer_shapes;
pub use verify::verify;
