//! The emitters: a [`Program`](crate::plan::Program) in, source code out.
//!
//! [`cpu`] writes Rust that calls `kiln-runtime`'s kernels with every shape
//! a literal constant. An emitter decides nothing the plan did not say; the
//! only errors it reports are ops the plan allows but this emitter cannot
//! yet run, each located at its layer.

pub mod cpu;
