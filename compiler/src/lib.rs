//! kiln's compiler.
//!
//! The pipeline, stage by stage (see `ARCHITECTURE.md`):
//! front-end ([`frontend`]: YAML or macro tokens → [`ast::Module`]) →
//! lowering ([`lower`]: blocks, `if` and `repeat` elaborated into the
//! [`ir::Graph`]) → passes ([`passes`]: shape inference, verification, …) →
//! [`summary`]. [`pipeline::check`] runs them in order.
//! Every user error is a [`diag::Diagnostic`] at the user's location;
//! [`render`] prints them for files and [`explain`] expands their codes.

pub mod ast;
pub mod codes;
pub mod diag;
pub mod emit;
pub mod explain;
pub mod frontend;
pub mod ir;
pub mod lower;
pub mod passes;
pub mod pipeline;
pub mod plan;
pub mod render;
pub mod summary;

pub use pipeline::{CheckedNetwork, check};
pub use summary::{LayerSummary, Summary};
