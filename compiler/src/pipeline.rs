//! The straight-line pipeline from an AST to checked, summarized graphs.
//!
//! [`check`] reads like a table of contents: lower, verify, infer shapes,
//! verify, summarize. With `KILN_DEBUG=<pass>` (`lower`, `infer_shapes`, or
//! `all`; a comma-separated list names several) the graph is printed to
//! stderr after that pass. The inference rewrites that follow a check are
//! [`crate::passes::fuse_for_inference`], which dumps the same way after
//! each of its passes.

use crate::ast;
use crate::diag::Diagnostics;
use crate::ir::Graph;
use crate::lower::lower;
use crate::passes::{infer_shapes, verify};
use crate::summary::{Summary, summarize};

/// One network that passed every check: its shaped graph and its summary.
#[derive(Debug, Clone)]
pub struct CheckedNetwork {
    /// The network's name.
    pub name: String,
    /// The shaped, verified graph.
    pub graph: Graph,
    /// Its per-layer summary.
    pub summary: Summary,
}

/// Lowers every network of `module`, infers its shapes and verifies it.
/// All user errors of all networks come back together.
pub fn check(module: &ast::Module) -> Result<Vec<CheckedNetwork>, Diagnostics> {
    let graphs = lower(module)?;
    let mut out = Vec::with_capacity(graphs.len());
    let mut diags = Diagnostics::new();
    for mut graph in graphs {
        let result = (|| {
            debug_dump(&graph, "lower");
            verify(&graph, "lower", false)?;
            infer_shapes(&mut graph)?;
            debug_dump(&graph, "infer_shapes");
            verify(&graph, "infer_shapes", true)?;
            Ok::<(), Diagnostics>(())
        })();
        match result {
            Ok(()) => out.push(CheckedNetwork {
                name: graph.name.clone(),
                summary: summarize(&graph),
                graph,
            }),
            Err(d) => diags.extend(d),
        }
    }
    if diags.has_errors() {
        Err(diags)
    } else {
        Ok(out)
    }
}

/// Prints `graph` to stderr if `KILN_DEBUG` names `pass` (or is `all`).
pub(crate) fn debug_dump(graph: &Graph, pass: &str) {
    if let Ok(want) = std::env::var("KILN_DEBUG")
        && want.split(',').any(|w| w == pass || w == "all")
    {
        eprintln!("// after {pass}\n{graph}");
    }
}
