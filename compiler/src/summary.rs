//! The per-layer summary of a shaped graph: output shape, parameters and
//! multiply-adds, and their totals.
//!
//! Everything is computed from the graph, never typed in. Multiply-adds count
//! what the seeds count: a conv output element costs `C_in/groups × kh × kw`,
//! a transposed conv input element `C_out/groups × kh × kw`, a linear layer
//! `in × out`; bias, activations, pooling and normalization cost none.
//! Parameters are the learned tensors; batch norm's running statistics are
//! buffers and not counted. Graph inputs and the loss head are not layers.

use crate::ir::{Category, Graph, Node, Op};
use serde::Serialize;
use std::fmt::Write as _;

/// One layer's line of the summary.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct LayerSummary {
    /// The layer name (`conv2d0`, `basic3.conv2d1`).
    pub name: String,
    /// The op (`conv2d`).
    pub op: String,
    /// The per-example output shape.
    pub output_shape: Vec<usize>,
    /// Learned parameters.
    pub params: u64,
    /// Multiply-adds per example.
    pub macs: u64,
}

/// A network's summary.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Summary {
    /// The network's name.
    pub network: String,
    /// The sum of the layers' parameters.
    pub total_params: u64,
    /// The sum of the layers' multiply-adds.
    pub total_macs: u64,
    /// The layers, in the order they were written.
    pub layers: Vec<LayerSummary>,
}

/// Summarizes a shaped graph. Values without a shape count as empty.
pub fn summarize(graph: &Graph) -> Summary {
    let mut layers = Vec::new();
    for id in graph.node_ids() {
        let node = graph.node(id);
        if matches!(node.op.category(), Category::Input | Category::Loss) {
            continue;
        }
        let output_shape = graph
            .shape(node.output)
            .map(|s| s.0.clone())
            .unwrap_or_default();
        let params = node
            .params
            .iter()
            .filter(|p| p.role.is_learned())
            .fold(0u64, |acc, p| acc.saturating_add(p.numel()));
        let macs = match &node.op {
            Op::Fused(f) => f.anchor_op().map_or(0, |a| macs(graph, node, &a)),
            op => macs(graph, node, op),
        };
        layers.push(LayerSummary {
            name: graph.name_of(id).to_string(),
            op: node.op.label(),
            output_shape,
            params,
            macs,
        });
    }
    let total_params = layers.iter().fold(0u64, |a, l| a.saturating_add(l.params));
    let total_macs = layers.iter().fold(0u64, |a, l| a.saturating_add(l.macs));
    Summary {
        network: graph.name.clone(),
        total_params,
        total_macs,
        layers,
    }
}

/// Whether a kernel count is of an inference graph or of a training (joint)
/// graph.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stage {
    /// Prediction: the loss head and dropout (the identity) run no kernel.
    Inference,
    /// A training step: the loss and dropout are kernels too.
    Training,
}

/// The number of kernels `graph` runs: its compute nodes. Graph inputs and
/// the relabellings flatten and reshape (aliases of their input's memory)
/// are not kernels; at [`Stage::Inference`] neither are the loss head nor
/// dropout.
pub fn kernel_count(graph: &Graph, stage: Stage) -> usize {
    graph
        .node_ids()
        .into_iter()
        .filter(|&id| {
            let op = &graph.node(id).op;
            match (op, stage) {
                (Op::Input { .. } | Op::Flatten | Op::Reshape { .. }, _) => false,
                (Op::Loss(_), Stage::Inference) => false,
                (_, Stage::Inference) => !op.is_inference_alias(),
                (_, Stage::Training) => true,
            }
        })
        .count()
}

/// The kernels a network runs at each stage of compilation.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct KernelCounts {
    /// The shaped graph, as lowered, at inference.
    pub shaped: usize,
    /// The graph after [`fuse_for_inference`](crate::passes::fuse_for_inference).
    pub fused: usize,
    /// The joint forward + backward graph of a training step (`None`
    /// without a loss head, or with an op that has no gradient).
    pub training: Option<usize>,
}

/// The kernel counts of a shaped, verified `graph`: as it is, fused for
/// inference, and differentiated for training.
pub fn kernel_counts(graph: &Graph) -> KernelCounts {
    KernelCounts {
        shaped: kernel_count(graph, Stage::Inference),
        fused: kernel_count(&crate::passes::fuse_for_inference(graph), Stage::Inference),
        training: crate::passes::autodiff(graph)
            .ok()
            .map(|j| kernel_count(&j.graph, Stage::Training)),
    }
}

impl KernelCounts {
    /// The counts as one line: `kernels: 68 shaped, 23 fused, 199 training`.
    pub fn line(&self) -> String {
        let training = match self.training {
            Some(t) => format!("{t} training"),
            None => "no training graph".into(),
        };
        format!(
            "kernels: {} shaped, {} fused, {training}",
            self.shaped, self.fused
        )
    }
}

/// A summary with its kernel counts, as `kilnc summary --format json`
/// prints it: the [`Summary`]'s fields and `kernels`.
#[derive(Debug, Clone, Serialize)]
pub struct Report<'a> {
    /// The per-layer summary.
    #[serde(flatten)]
    pub summary: &'a Summary,
    /// The kernels per stage.
    pub kernels: KernelCounts,
}

impl Report<'_> {
    /// The report as JSON.
    pub fn to_json(&self) -> String {
        serde_json::to_string_pretty(self).unwrap_or_else(|e| format!("{{\"error\": \"{e}\"}}"))
    }
}

/// The multiply-adds per example of `node` computing `op` (the node's own
/// op, or a fused kernel's anchor).
fn macs(graph: &Graph, node: &Node, op: &Op) -> u64 {
    let numel = |v| graph.shape(v).map(|s| s.numel()).unwrap_or(0);
    match op {
        Op::Conv2d(c) => {
            let cin = node
                .inputs
                .first()
                .and_then(|&v| graph.shape(v))
                .map(|s| s.0[0])
                .unwrap_or(0);
            numel(node.output)
                .saturating_mul((cin / c.groups) as u64)
                .saturating_mul((c.kernel[0] * c.kernel[1]) as u64)
        }
        Op::ConvTranspose2d(c) => node
            .inputs
            .first()
            .map(|&v| numel(v))
            .unwrap_or(0)
            .saturating_mul((c.out / c.groups) as u64)
            .saturating_mul((c.kernel[0] * c.kernel[1]) as u64),
        Op::Linear { out, .. } => node
            .inputs
            .first()
            .map(|&v| numel(v))
            .unwrap_or(0)
            .saturating_mul(*out as u64),
        _ => 0,
    }
}

impl Summary {
    /// The summary as JSON: `network`, `total_params`, `total_macs`, and
    /// `layers` (each `name`, `op`, `output_shape`, `params`, `macs`).
    pub fn to_json(&self) -> String {
        serde_json::to_string_pretty(self).unwrap_or_else(|e| format!("{{\"error\": \"{e}\"}}"))
    }

    /// The summary as an aligned text table with a totals line.
    pub fn table(&self) -> String {
        let rows: Vec<[String; 5]> = self
            .layers
            .iter()
            .map(|l| {
                [
                    l.name.clone(),
                    l.op.clone(),
                    shape_text(&l.output_shape),
                    group_digits(l.params),
                    group_digits(l.macs),
                ]
            })
            .collect();
        let head = ["layer", "op", "output", "params", "MACs"];
        let mut w = head.map(str::len);
        for r in &rows {
            for (i, c) in r.iter().enumerate() {
                w[i] = w[i].max(c.chars().count());
            }
        }
        let mut s = format!("{}\n", self.network);
        let line = |s: &mut String, r: [&str; 5]| {
            let _ = writeln!(
                s,
                "{:<a$}  {:<b$}  {:<c$}  {:>d$}  {:>e$}",
                r[0],
                r[1],
                r[2],
                r[3],
                r[4],
                a = w[0],
                b = w[1],
                c = w[2],
                d = w[3],
                e = w[4]
            );
        };
        line(&mut s, head);
        for r in &rows {
            line(&mut s, [&r[0], &r[1], &r[2], &r[3], &r[4]]);
        }
        let _ = writeln!(
            s,
            "total: {} parameters, {} multiply-adds per example",
            group_digits(self.total_params),
            group_digits(self.total_macs)
        );
        s
    }
}

fn shape_text(s: &[usize]) -> String {
    let parts: Vec<String> = s.iter().map(|d| d.to_string()).collect();
    parts.join("×")
}

/// `61706` as `61,706`.
fn group_digits(n: u64) -> String {
    let s = n.to_string();
    let mut out = String::new();
    for (i, c) in s.chars().enumerate() {
        if i > 0 && (s.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}
