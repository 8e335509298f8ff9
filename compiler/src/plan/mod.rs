//! The plan: what the emitters compile, and all they compile.
//!
//! A [`Program`] is the lowered form of one network: the parameter layout
//! (one flat buffer of learned tensors and one of buffers such as batch
//! norm's running statistics, each a list of named slices), and one
//! [`Routine`] per entry point — an ordered list of kernel calls ([`Step`])
//! with constant shapes, whose operands are slices of the caller's input,
//! of the parameters, or of one arena at offsets fixed here by
//! [`plan_memory`](crate::passes::plan_memory).
//!
//! Arena offsets and sizes are per example: every arena buffer holds one
//! tensor for each example of the batch, so the generated code multiplies
//! them by the batch size it was constructed with, and the arena scales with
//! it. Emitters never decide anything this module did not say: which values
//! alias (flatten, reshape, inference-mode dropout), which steps run in
//! place, and where each buffer lives are all settled here.

use std::collections::HashMap;

use crate::ast::Loc;
use crate::ir::{Graph, NodeId, Op, ParamRole, Shape, ValueId};
use crate::passes::plan_memory::{Interval, MemoryPlan, plan_memory};

/// Arena offsets are multiples of this many floats (64 bytes).
pub const ARENA_ALIGN: usize = 16;

/// One named slice of the parameter or buffer vector.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TensorSlot {
    /// The full name (`conv2d0.weight`).
    pub name: String,
    /// The shape.
    pub shape: Vec<usize>,
    /// Offset in the flat vector.
    pub offset: usize,
    /// What it is for.
    pub role: ParamRole,
}

impl TensorSlot {
    /// The number of elements.
    pub fn len(&self) -> usize {
        self.shape.iter().product()
    }

    /// Whether it holds no elements.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// A named input or output of the network, per example.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Port {
    /// The name (`x`, `logits`).
    pub name: String,
    /// The per-example shape.
    pub shape: Vec<usize>,
    /// Where the value lives (outputs: always in the arena).
    pub at: Location,
}

/// Where a value lives while a routine runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Location {
    /// The caller's input number `i`.
    Input(usize),
    /// The arena, at this per-example offset.
    Arena(usize),
}

/// A value used by a step: where it is and its per-example shape.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Operand {
    /// Where it lives.
    pub at: Location,
    /// The per-example shape.
    pub shape: Shape,
}

impl Operand {
    /// The per-example element count.
    pub fn len(&self) -> usize {
        self.shape.numel() as usize
    }

    /// Whether it holds no elements.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// What a step computes.
#[derive(Debug, Clone, PartialEq)]
pub enum Kernel {
    /// The forward of an IR op, at inference.
    Infer(Op),
    /// A plain copy (an output that is an input, or an aliased output).
    Copy,
}

/// One kernel call with constant shapes.
#[derive(Debug, Clone)]
pub struct Step {
    /// What to run.
    pub kernel: Kernel,
    /// The layer it comes from (`conv2d0`), for comments and errors.
    pub layer: String,
    /// Where the layer was written.
    pub loc: Loc,
    /// The inputs, in the op's order.
    pub inputs: Vec<Operand>,
    /// The output.
    pub output: Operand,
    /// Indices into [`Program::params`] of the layer's learned tensors, in
    /// the node's order (weight, then bias).
    pub params: Vec<usize>,
    /// Indices into [`Program::buffers`] (running mean, running variance).
    pub buffers: Vec<usize>,
    /// Whether the output shares the first input's memory (an elementwise
    /// op whose input dies here).
    pub in_place: bool,
}

/// An entry point: steps in order and the arena they share.
#[derive(Debug, Clone)]
pub struct Routine {
    /// The kernel calls, in order.
    pub steps: Vec<Step>,
    /// The arena placement, per example.
    pub memory: MemoryPlan,
}

/// One network, lowered for the emitters.
#[derive(Debug, Clone)]
pub struct Program {
    /// The network's name.
    pub name: String,
    /// The learned tensors, in layer order.
    pub params: Vec<TensorSlot>,
    /// The non-learned tensors (running statistics), in layer order.
    pub buffers: Vec<TensorSlot>,
    /// The inputs.
    pub inputs: Vec<Port>,
    /// The outputs of the inference routine.
    pub outputs: Vec<Port>,
    /// Inference: the forward pass without the loss head and without
    /// train-only ops.
    pub infer: Routine,
}

impl Program {
    /// The number of learned scalars.
    pub fn param_len(&self) -> usize {
        self.params.iter().map(TensorSlot::len).sum()
    }

    /// The number of buffer scalars.
    pub fn buffer_len(&self) -> usize {
        self.buffers.iter().map(TensorSlot::len).sum()
    }
}

/// Builds the program of a shaped, verified graph.
///
/// Precondition: every value has a shape (`passes::infer_shapes` ran).
pub fn build(graph: &Graph) -> Program {
    let order = graph
        .topo_order()
        .expect("plan::build: the verifier guarantees an acyclic graph");
    let (params, buffers, slots) = layout(graph, &order);
    let inputs = graph
        .inputs()
        .iter()
        .enumerate()
        .map(|(i, p)| Port {
            name: p.name.clone(),
            shape: shape_of(graph, p.value).0,
            at: Location::Input(i),
        })
        .collect();
    let (infer, outputs) = build_inference(graph, &order, &slots);
    Program {
        name: graph.name.clone(),
        params,
        buffers,
        inputs,
        outputs,
        infer,
    }
}

fn shape_of(graph: &Graph, v: ValueId) -> Shape {
    graph
        .shape(v)
        .cloned()
        .expect("plan::build: every value is shaped after infer_shapes")
}

/// Per node: indices of its learned tensors and of its buffers.
type Slots = HashMap<NodeId, (Vec<usize>, Vec<usize>)>;

fn layout(graph: &Graph, order: &[NodeId]) -> (Vec<TensorSlot>, Vec<TensorSlot>, Slots) {
    let (mut params, mut buffers) = (Vec::new(), Vec::new());
    let (mut p_off, mut b_off) = (0, 0);
    let mut slots = Slots::new();
    for &id in order {
        let entry = slots.entry(id).or_default();
        for p in &graph.node(id).params {
            let slot = TensorSlot {
                name: p.name.clone(),
                shape: p.shape.0.clone(),
                offset: 0,
                role: p.role,
            };
            if p.role.is_learned() {
                entry.0.push(params.len());
                params.push(TensorSlot {
                    offset: p_off,
                    ..slot
                });
                p_off += p.numel() as usize;
            } else {
                entry.1.push(buffers.len());
                buffers.push(TensorSlot {
                    offset: b_off,
                    ..slot
                });
                b_off += p.numel() as usize;
            }
        }
    }
    (params, buffers, slots)
}

/// Whether inference computes nothing for this op: its output is its
/// input's memory, reinterpreted.
fn is_alias(op: &Op) -> bool {
    matches!(op, Op::Flatten | Op::Reshape { .. } | Op::Dropout { .. })
}

/// Whether the op may write its output over its first input.
fn may_run_in_place(op: &Op) -> bool {
    matches!(op, Op::Activation(_) | Op::Add)
}

/// A buffer of the arena being planned: its size and live interval.
#[derive(Debug, Clone, Copy)]
struct Buf {
    size: usize,
    def: usize,
    last: usize,
}

fn build_inference(graph: &Graph, order: &[NodeId], slots: &Slots) -> (Routine, Vec<Port>) {
    // Which values the inference routine computes: everything but the loss
    // head (and what only it needs, which is nothing in a forward graph).
    let loss = graph.loss();
    let nodes: Vec<NodeId> = order
        .iter()
        .copied()
        .filter(|&id| Some(id) != loss)
        .collect();
    // Where each value lives: an input, an arena buffer, or an alias of
    // another value.
    #[derive(Clone, Copy)]
    enum Home {
        Input(usize),
        Buf(usize),
    }
    let mut home: HashMap<ValueId, Home> = HashMap::new();
    let mut bufs: Vec<Buf> = Vec::new();
    let mut pending: Vec<(Kernel, NodeId, Vec<ValueId>, ValueId, bool)> = Vec::new();
    // Last use of each value, in step numbers, before aliasing is resolved.
    let outputs: Vec<ValueId> = graph.outputs().iter().map(|p| p.value).collect();
    let mut uses: HashMap<ValueId, usize> = HashMap::new();
    {
        let mut step = 0;
        for &id in &nodes {
            let node = graph.node(id);
            if matches!(node.op, Op::Input { .. }) || is_alias(&node.op) {
                continue;
            }
            for &v in &node.inputs {
                uses.insert(v, step);
            }
            step += 1;
        }
    }
    // Aliases forward their uses to the value they alias (in reverse order,
    // so chains of aliases resolve).
    for &id in nodes.iter().rev() {
        let node = graph.node(id);
        if is_alias(&node.op)
            && let Some(&u) = uses.get(&node.output)
        {
            let e = uses.entry(node.inputs[0]).or_insert(u);
            *e = (*e).max(u);
        }
    }
    let mut step = 0;
    for &id in &nodes {
        let node = graph.node(id);
        match node.op {
            Op::Input { index } => {
                home.insert(node.output, Home::Input(index));
                continue;
            }
            ref op if is_alias(op) => {
                let h = home[&node.inputs[0]];
                home.insert(node.output, h);
                continue;
            }
            _ => {}
        }
        let size = shape_of(graph, node.output).numel() as usize;
        // In place: an elementwise op whose first input is an arena buffer
        // that dies here and is not an output.
        let first = node.inputs.first().copied();
        let in_place = may_run_in_place(&node.op)
            && first.is_some_and(|x| {
                let r = root(graph, x);
                matches!(home.get(&x), Some(Home::Buf(_)))
                    && uses.get(&r) == Some(&step)
                    && !outputs.iter().any(|&o| aliases(graph, o, r))
            });
        if in_place {
            let Some(&Home::Buf(b)) = first.and_then(|x| home.get(&x)) else {
                unreachable!("checked above");
            };
            home.insert(node.output, Home::Buf(b));
        } else {
            home.insert(node.output, Home::Buf(bufs.len()));
            bufs.push(Buf {
                size,
                def: step,
                last: step,
            });
        }
        pending.push((
            Kernel::Infer(node.op.clone()),
            id,
            node.inputs.clone(),
            node.output,
            in_place,
        ));
        step += 1;
    }
    // Outputs that live in a caller's input get a copy into the arena.
    let mut out_values = Vec::new();
    for port in graph.outputs() {
        let v = port.value;
        match home[&v] {
            Home::Buf(_) => out_values.push(v),
            Home::Input(_) => {
                let size = shape_of(graph, v).numel() as usize;
                bufs.push(Buf {
                    size,
                    def: step,
                    last: step,
                });
                // A copy's output is a fresh value only the plan knows; it
                // takes the port's place below.
                pending.push((Kernel::Copy, graph.producer(v), vec![v], v, false));
                out_values.push(v);
                step += 1;
            }
        }
    }
    // Live intervals: a buffer lives from its def to the last use of any
    // value it holds; outputs live to the end.
    let end = step.saturating_sub(1);
    let copies: Vec<usize> = pending
        .iter()
        .enumerate()
        .filter(|(_, p)| p.0 == Kernel::Copy)
        .map(|(i, _)| i)
        .collect();
    for (v, h) in &home {
        if let Home::Buf(b) = *h
            && let Some(&u) = uses.get(v)
        {
            bufs[b].last = bufs[b].last.max(u);
        }
    }
    for &v in &out_values {
        if let Home::Buf(b) = home[&v] {
            bufs[b].last = end;
        }
    }
    // Copy targets are the last buffers pushed, in port order.
    let first_copy_buf = bufs.len() - copies.len();
    for b in &mut bufs[first_copy_buf..] {
        b.last = end;
    }
    let intervals: Vec<Interval> = bufs
        .iter()
        .map(|b| Interval {
            size: b.size,
            def: b.def,
            last: b.last,
        })
        .collect();
    let memory = plan_memory(&intervals, ARENA_ALIGN);
    let at = |v: ValueId| match home[&v] {
        Home::Input(i) => Location::Input(i),
        Home::Buf(b) => Location::Arena(memory.offsets[b]),
    };
    let mut steps = Vec::with_capacity(pending.len());
    let mut copy_k = 0;
    let mut ports = Vec::new();
    for (kernel, id, ins, out, in_place) in pending {
        let inputs: Vec<Operand> = ins
            .iter()
            .map(|&v| Operand {
                at: at(v),
                shape: shape_of(graph, v),
            })
            .collect();
        let output = if kernel == Kernel::Copy {
            let b = first_copy_buf + copy_k;
            copy_k += 1;
            Operand {
                at: Location::Arena(memory.offsets[b]),
                shape: shape_of(graph, out),
            }
        } else {
            Operand {
                at: at(out),
                shape: shape_of(graph, out),
            }
        };
        let (params, buffers) = slots.get(&id).cloned().unwrap_or_default();
        let meta = graph.meta(id);
        steps.push(Step {
            kernel,
            layer: meta.map(|m| m.name.clone()).unwrap_or_default(),
            loc: meta.map(|m| m.loc).unwrap_or(Loc::Synthetic),
            inputs,
            output,
            params,
            buffers,
            in_place,
        });
    }
    // Output ports, in order; a copied one points at its copy.
    let mut copy_k = 0;
    for port in graph.outputs() {
        let v = port.value;
        let loc = match home[&v] {
            Home::Buf(_) => at(v),
            Home::Input(_) => {
                let b = first_copy_buf + copy_k;
                copy_k += 1;
                Location::Arena(memory.offsets[b])
            }
        };
        ports.push(Port {
            name: port.name.clone(),
            shape: shape_of(graph, v).0,
            at: loc,
        });
    }
    (Routine { steps, memory }, ports)
}

/// The value whose memory `v` reinterprets: `v` itself unless it is made
/// by an alias op (flatten, reshape, inference-mode dropout).
fn root(graph: &Graph, mut v: ValueId) -> ValueId {
    loop {
        let node = graph.node(graph.producer(v));
        if is_alias(&node.op) {
            v = node.inputs[0];
        } else {
            return v;
        }
    }
}

/// Whether value `a` is `b` or an alias chain of it (flatten, reshape,
/// dropout).
fn aliases(graph: &Graph, a: ValueId, b: ValueId) -> bool {
    let mut v = a;
    loop {
        if v == b {
            return true;
        }
        let node = graph.node(graph.producer(v));
        if is_alias(&node.op) {
            v = node.inputs[0];
        } else {
            return false;
        }
    }
}
