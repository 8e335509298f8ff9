//! kiln's compiler.
//!
//! The pipeline, stage by stage (see `ARCHITECTURE.md`):
//! front-end ([`frontend`]: YAML or macro tokens → [`ast::Module`]) →
//! lowering ([`lower`]: blocks, `if` and `repeat` elaborated into the
//! [`ir::Graph`]) → passes ([`passes`]: shape inference, verification, …).
//! Every user error is a [`diag::Diagnostic`] at the user's location.

pub mod ast;
pub mod diag;
pub mod frontend;
pub mod ir;
pub mod lower;
pub mod passes;
