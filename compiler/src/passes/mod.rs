//! Passes over the IR, one file each, each a function from a graph to a
//! graph (or to collected diagnostics).
//!
//! In pipeline order: [`infer_shapes()`] (every value gets a static shape),
//! [`verify()`] after every stage; [`autodiff()`] builds the joint
//! forward + backward graph for training, and [`fuse_training()`] rewrites
//! its batch norm → ReLU backward; [`fuse_for_inference`] runs the
//! inference rewrites ([`eliminate_dead()`], [`fold_constants()`],
//! [`fold_batch_norm()`], [`reorder_activation_pool()`],
//! [`fuse_epilogues()`], [`fuse_elementwise()`], [`fuse_pool()`],
//! sharing the patch machinery of `rewrite.rs`); [`plan_memory`] places
//! buffers in one arena when a plan is built.

pub mod autodiff;
pub mod eliminate_dead;
pub mod fold_batch_norm;
pub mod fold_constants;
pub mod fuse;
pub mod fuse_elementwise;
pub mod fuse_epilogues;
pub mod fuse_pool;
pub mod fuse_training;
pub mod infer_shapes;
pub mod plan_memory;
pub mod reorder_activation_pool;
mod rewrite;
pub mod verify;

pub use autodiff::{JointGraph, autodiff, autodiff_with_input_grads};
pub use eliminate_dead::eliminate_dead;
pub use fold_batch_norm::fold_batch_norm;
pub use fold_constants::fold_constants;
pub use fuse::{fuse_for_inference, try_fuse_for_inference};
pub use fuse_elementwise::fuse_elementwise;
pub use fuse_epilogues::fuse_epilogues;
pub use fuse_pool::fuse_pool;
pub use fuse_training::fuse_training;
pub use infer_shapes::infer_shapes;
pub use reorder_activation_pool::reorder_activation_pool;
pub use verify::verify;
