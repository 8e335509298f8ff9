//! The IR: a `petgraph` graph of primitive ops behind typed ids.
//!
//! Nodes are ops ([`Op`]) with their parameters; each node produces exactly
//! one value (a tensor), and edges carry values from their producer to each
//! consumer. Outside this module, nodes and values are named by [`NodeId`]
//! and [`ValueId`] only; `petgraph`'s indices never leak.
//!
//! The IR holds no syntax: where a node came from (its [`ast::Loc`]) and the
//! layer name the user sees live in a side table ([`NodeMeta`]), so passes
//! can point errors at the user's line without knowing which front-end ran.
//!
//! One graph serves training and inference: the loss head is a node
//! ([`Graph::loss`]) that inference ignores, and ops that differ between the
//! two ([`Op::has_train_mode`], [`Op::is_train_only`]) say so themselves.
//!
//! [`Graph`] implements `Display`: a stable text dump used by snapshot tests
//! and by `KILN_DEBUG=<pass>`.

mod grad;
mod op;

pub use grad::GradOp;
pub use op::{
    Activation, Anchor, Arity, Category, Conv2d, ConvTranspose2d, Epilogue, FoldedBn, Fused, Loss,
    LossKind, Op, Padding, Pool2d, Reduction, UpsampleMode,
};

use crate::ast;
use petgraph::Direction;
use petgraph::stable_graph::{NodeIndex, StableDiGraph};
use petgraph::visit::EdgeRef;
use std::collections::HashMap;
use std::fmt;

/// A node of a [`Graph`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct NodeId(u32);

/// A value (tensor) of a [`Graph`]: the output of one node.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ValueId(u32);

impl NodeId {
    fn index(self) -> NodeIndex {
        NodeIndex::new(self.0 as usize)
    }
}

impl fmt::Display for ValueId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "%{}", self.0)
    }
}

/// A per-example shape; the batch dimension is implicit.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Default)]
pub struct Shape(pub Vec<usize>);

impl Shape {
    /// The number of dims.
    pub fn rank(&self) -> usize {
        self.0.len()
    }

    /// The number of elements per example (saturating at `u64::MAX`).
    pub fn numel(&self) -> u64 {
        self.0
            .iter()
            .fold(1u64, |acc, &d| acc.saturating_mul(d as u64))
    }

    /// The dims.
    pub fn dims(&self) -> &[usize] {
        &self.0
    }
}

impl fmt::Display for Shape {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "[")?;
        for (i, d) in self.0.iter().enumerate() {
            if i > 0 {
                write!(f, ", ")?;
            }
            write!(f, "{d}")?;
        }
        write!(f, "]")
    }
}

/// What a parameter is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ParamRole {
    /// A learned weight (conv kernel, linear matrix, BN γ, PReLU slope).
    Weight,
    /// A learned bias (BN β included).
    Bias,
    /// Batch norm's running mean: a buffer, not learned, not counted.
    RunningMean,
    /// Batch norm's running variance: a buffer, not learned, not counted.
    RunningVar,
}

impl ParamRole {
    /// Whether the tensor is learned (counted as a parameter) rather than a buffer.
    pub fn is_learned(self) -> bool {
        matches!(self, ParamRole::Weight | ParamRole::Bias)
    }
}

/// A parameter or buffer attached to a node.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Param {
    /// The full name (`conv2d0.weight`, `basic3.batch_norm1.running_mean`).
    pub name: String,
    /// Its shape.
    pub shape: Shape,
    /// What it is for.
    pub role: ParamRole,
}

impl Param {
    /// The number of elements.
    pub fn numel(&self) -> u64 {
        self.shape.numel()
    }
}

/// A node: an op, its inputs in order, its one output, its parameters.
#[derive(Debug, Clone)]
pub struct Node {
    /// The op and its attributes.
    pub op: Op,
    /// The input values, in the op's order.
    pub inputs: Vec<ValueId>,
    /// The value the node produces.
    pub output: ValueId,
    /// Parameters and buffers; derived by shape inference.
    pub params: Vec<Param>,
}

impl Node {
    /// The output's position in the graph's value table.
    pub(crate) fn output_index(&self) -> usize {
        self.output.0 as usize
    }
}

/// The side table's entry for a node: what the user calls it and where it was written.
#[derive(Debug, Clone)]
pub struct NodeMeta {
    /// The layer name (`conv2d0`, `basic3.conv2d1`, `fc`).
    pub name: String,
    /// The source location of the layer.
    pub loc: ast::Loc,
}

/// A value's record: who produces it and, after shape inference, its shape.
#[derive(Debug, Clone)]
struct ValueData {
    producer: NodeId,
    shape: Option<Shape>,
}

/// A named graph input or output.
#[derive(Debug, Clone)]
pub struct Port {
    /// The name (`x`, `logits`).
    pub name: String,
    /// The value.
    pub value: ValueId,
}

/// The edge weight: which value flows, into which input slot of the consumer.
#[derive(Debug, Clone, Copy)]
struct Edge {
    value: ValueId,
    slot: usize,
}

/// One network as a graph of primitive ops.
#[derive(Debug, Clone)]
pub struct Graph {
    /// The network's name.
    pub name: String,
    graph: StableDiGraph<Node, Edge>,
    values: Vec<ValueData>,
    meta: HashMap<NodeId, NodeMeta>,
    inputs: Vec<Port>,
    outputs: Vec<Port>,
    loss: Option<NodeId>,
}

impl Graph {
    /// An empty graph for the network `name`.
    pub fn new(name: impl Into<String>) -> Self {
        Graph {
            name: name.into(),
            graph: StableDiGraph::new(),
            values: Vec::new(),
            meta: HashMap::new(),
            inputs: Vec::new(),
            outputs: Vec::new(),
            loss: None,
        }
    }

    /// Adds a node applying `op` to `inputs`; returns it and records `meta`
    /// in the side table. The output value has no shape until inference.
    pub fn add_node(&mut self, op: Op, inputs: Vec<ValueId>, meta: NodeMeta) -> NodeId {
        let output = ValueId(self.values.len() as u32);
        let idx = self.graph.add_node(Node {
            op,
            inputs: inputs.clone(),
            output,
            params: Vec::new(),
        });
        let id = NodeId(idx.index() as u32);
        self.values.push(ValueData {
            producer: id,
            shape: None,
        });
        for (slot, v) in inputs.into_iter().enumerate() {
            if let Some(p) = self.values.get(v.0 as usize) {
                self.graph
                    .add_edge(p.producer.index(), idx, Edge { value: v, slot });
            }
        }
        self.meta.insert(id, meta);
        id
    }

    /// Adds a graph input with its shape; returns its value.
    pub fn add_input(&mut self, name: &str, shape: Shape, loc: ast::Loc) -> ValueId {
        let index = self.inputs.len();
        let node = self.add_node(
            Op::Input { index },
            Vec::new(),
            NodeMeta {
                name: name.to_string(),
                loc,
            },
        );
        let value = self.node(node).output;
        self.set_shape(value, shape);
        self.inputs.push(Port {
            name: name.to_string(),
            value,
        });
        value
    }

    /// Declares a graph output.
    pub fn add_output(&mut self, name: &str, value: ValueId) {
        self.outputs.push(Port {
            name: name.to_string(),
            value,
        });
    }

    /// Marks `node` as the loss head.
    pub fn set_loss(&mut self, node: NodeId) {
        self.loss = Some(node);
    }

    /// The graph inputs, in order.
    pub fn inputs(&self) -> &[Port] {
        &self.inputs
    }

    /// The graph outputs, in order.
    pub fn outputs(&self) -> &[Port] {
        &self.outputs
    }

    /// The loss head, if the network has one.
    pub fn loss(&self) -> Option<NodeId> {
        self.loss
    }

    /// The node `id`.
    ///
    /// Panics if `id` is not a node of this graph (an internal invariant:
    /// ids come only from this graph).
    pub fn node(&self, id: NodeId) -> &Node {
        &self.graph[id.index()]
    }

    /// The node `id`, mutably.
    pub fn node_mut(&mut self, id: NodeId) -> &mut Node {
        &mut self.graph[id.index()]
    }

    /// Whether `id` names a node of this graph.
    pub fn contains_node(&self, id: NodeId) -> bool {
        self.graph.contains_node(id.index())
    }

    /// The side-table entry of `id`.
    pub fn meta(&self, id: NodeId) -> Option<&NodeMeta> {
        self.meta.get(&id)
    }

    /// The layer name of `id` (empty if the side table has none).
    pub fn name_of(&self, id: NodeId) -> &str {
        self.meta.get(&id).map(|m| m.name.as_str()).unwrap_or("")
    }

    /// The source location of `id`.
    pub fn loc_of(&self, id: NodeId) -> ast::Loc {
        self.meta
            .get(&id)
            .map(|m| m.loc)
            .unwrap_or(ast::Loc::Synthetic)
    }

    /// Every node, in the order they were added.
    pub fn node_ids(&self) -> Vec<NodeId> {
        let mut ids: Vec<NodeId> = self
            .graph
            .node_indices()
            .map(|i| NodeId(i.index() as u32))
            .collect();
        ids.sort();
        ids
    }

    /// The number of nodes.
    pub fn node_count(&self) -> usize {
        self.graph.node_count()
    }

    /// The nodes in a topological order (producers before consumers, ties
    /// broken by insertion order), or `None` if the graph has a cycle.
    pub fn topo_order(&self) -> Option<Vec<NodeId>> {
        let mut indegree: HashMap<NodeId, usize> = HashMap::new();
        for id in self.node_ids() {
            indegree.insert(
                id,
                self.graph
                    .edges_directed(id.index(), Direction::Incoming)
                    .count(),
            );
        }
        let mut ready: std::collections::BTreeSet<NodeId> = indegree
            .iter()
            .filter(|(_, d)| **d == 0)
            .map(|(n, _)| *n)
            .collect();
        let mut order = Vec::with_capacity(indegree.len());
        while let Some(n) = ready.pop_first() {
            order.push(n);
            for e in self.graph.edges_directed(n.index(), Direction::Outgoing) {
                let t = NodeId(e.target().index() as u32);
                if let Some(d) = indegree.get_mut(&t) {
                    *d -= 1;
                    if *d == 0 {
                        ready.insert(t);
                    }
                }
            }
        }
        (order.len() == indegree.len()).then_some(order)
    }

    /// The number of values.
    pub fn value_count(&self) -> usize {
        self.values.len()
    }

    /// Whether `v` names a value of this graph.
    pub fn contains_value(&self, v: ValueId) -> bool {
        (v.0 as usize) < self.values.len()
    }

    /// The node producing `v`.
    pub fn producer(&self, v: ValueId) -> NodeId {
        self.values[v.0 as usize].producer
    }

    /// The shape of `v`, once inferred.
    pub fn shape(&self, v: ValueId) -> Option<&Shape> {
        self.values.get(v.0 as usize).and_then(|d| d.shape.as_ref())
    }

    /// Records the shape of `v`.
    pub fn set_shape(&mut self, v: ValueId, shape: Shape) {
        self.values[v.0 as usize].shape = Some(shape);
    }

    /// The nodes that consume `v`, with the input slot, in insertion order.
    pub fn consumers(&self, v: ValueId) -> Vec<(NodeId, usize)> {
        let p = self.producer(v);
        let mut out: Vec<(NodeId, usize)> = self
            .graph
            .edges_directed(p.index(), Direction::Outgoing)
            .filter(|e| e.weight().value == v)
            .map(|e| (NodeId(e.target().index() as u32), e.weight().slot))
            .collect();
        out.sort();
        out
    }

    /// The incoming edges of `n` as `(value, slot)`, sorted by slot.
    pub(crate) fn in_edges(&self, n: NodeId) -> Vec<(ValueId, usize, NodeId)> {
        let mut out: Vec<(ValueId, usize, NodeId)> = self
            .graph
            .edges_directed(n.index(), Direction::Incoming)
            .map(|e| {
                (
                    e.weight().value,
                    e.weight().slot,
                    NodeId(e.source().index() as u32),
                )
            })
            .collect();
        out.sort_by_key(|e| e.1);
        out
    }

    /// Whether the underlying graph has a directed cycle.
    pub fn is_cyclic(&self) -> bool {
        petgraph::algo::is_cyclic_directed(&self.graph)
    }

    /// The total number of learned parameters (buffers excluded).
    pub fn param_count(&self) -> u64 {
        self.node_ids()
            .iter()
            .flat_map(|&n| self.node(n).params.iter())
            .filter(|p| p.role.is_learned())
            .map(Param::numel)
            .sum()
    }

    /// A Graphviz DOT rendering: one box per node labelled with its layer
    /// name, op and output shape; edges are values.
    pub fn to_dot(&self) -> String {
        let mut s = format!(
            "digraph \"{}\" {{\n  node [shape=box];\n",
            escape(&self.name)
        );
        for id in self.node_ids() {
            let n = self.node(id);
            let shape = self
                .shape(n.output)
                .map(|s| s.to_string())
                .unwrap_or_else(|| "?".into());
            s += &format!(
                "  n{} [label=\"{}\\n{} {}\"];\n",
                id.0,
                escape(self.name_of(id)),
                n.op.label(),
                shape
            );
        }
        for id in self.node_ids() {
            for (v, _, src) in self.in_edges(id) {
                s += &format!("  n{} -> n{} [label=\"{}\"];\n", src.0, id.0, v);
            }
        }
        s += "}\n";
        s
    }
}

fn escape(s: &str) -> String {
    s.replace('\\', "\\\\").replace('"', "\\\"")
}

impl fmt::Display for Graph {
    /// The stable text dump: one line per node in insertion order,
    /// `%out: shape = name: op(%in, ...) {attrs}` (a fused kernel's op
    /// written as [`Op::label`], `fused[conv2d +bn relu]`), then its
    /// parameters, then the outputs and the loss head.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "graph {} {{", self.name)?;
        for id in self.node_ids() {
            let n = self.node(id);
            let shape = self
                .shape(n.output)
                .map(|s| s.to_string())
                .unwrap_or_else(|| "?".into());
            let ins: Vec<String> = n.inputs.iter().map(|v| v.to_string()).collect();
            write!(
                f,
                "  {}: {} = {}: {}({})",
                n.output,
                shape,
                self.name_of(id),
                n.op.label(),
                ins.join(", ")
            )?;
            let attrs = n.op.attrs();
            if !attrs.is_empty() {
                let a: Vec<String> = attrs.iter().map(|(k, v)| format!("{k}={v}")).collect();
                write!(f, " {{{}}}", a.join(", "))?;
            }
            writeln!(f)?;
            for p in &n.params {
                let role = match p.role {
                    ParamRole::Weight => "weight",
                    ParamRole::Bias => "bias",
                    ParamRole::RunningMean => "buffer",
                    ParamRole::RunningVar => "buffer",
                };
                writeln!(f, "      {role} {}: {}", p.name, p.shape)?;
            }
        }
        for o in &self.outputs {
            writeln!(f, "  output {} = {}", o.name, o.value)?;
        }
        if let Some(l) = self.loss {
            writeln!(f, "  loss = {}", self.node(l).output)?;
        }
        writeln!(f, "}}")
    }
}
