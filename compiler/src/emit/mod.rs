//! The emitters: a [`Program`](crate::plan::Program) in, source code out.
//!
//! [`cpu`] writes Rust that calls `kiln-runtime`'s kernels with every shape
//! a literal constant. An emitter decides nothing the plan did not say; the
//! only errors it reports are ops the plan allows but this emitter cannot
//! yet run, each located at its layer.

pub mod cpu;

use proc_macro2::{Span, TokenStream};

use crate::ast::{Loc, Module};
use crate::diag::Diagnostics;

/// The whole back end for one module: check every network, plan it, and
/// emit its CPU type. `file_span` is where errors of a YAML file point (the
/// macro's string literal); macro networks use their own spans.
pub fn expand_module(module: &Module, file_span: Span) -> Result<TokenStream, Diagnostics> {
    let checked = crate::pipeline::check(module)?;
    let mut out = TokenStream::new();
    let mut diags = Diagnostics::new();
    for net in &checked {
        let Some(ast) = module.networks.iter().find(|n| n.name.name == net.name) else {
            continue;
        };
        let span = match ast.name.loc {
            Loc::Macro(s) => s,
            _ => file_span,
        };
        let mut docs: Vec<String> = ast.docs.iter().map(|d| format!(" {d}")).collect();
        if docs.is_empty() {
            docs.push(format!(" The `{}` network, compiled by kiln.", net.name));
        }
        let info = cpu::TypeInfo {
            docs,
            public: ast.public,
            span,
        };
        let program = crate::plan::build(&net.graph);
        match cpu::emit(&program, &info) {
            Ok(t) => out.extend(t),
            Err(d) => diags.extend(d),
        }
    }
    if diags.has_errors() {
        Err(diags)
    } else {
        Ok(out)
    }
}
