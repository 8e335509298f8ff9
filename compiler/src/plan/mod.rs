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

mod prepare;

pub use prepare::{FoldBn, PlanOptions, Prepared, Recipe, Source, StepPrepared};

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
    /// The gradient vector, at this offset: a parameter's gradient, written
    /// where the optimizer reads it.
    Grad(usize),
}

/// A value used by a step: where it is and its per-example shape.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Operand {
    /// Where it lives.
    pub at: Location,
    /// The shape (per example when batched).
    pub shape: Shape,
    /// Whether the value holds one tensor per example (activations and
    /// their gradients) or one in all (the loss, parameter gradients).
    pub batched: bool,
}

impl Operand {
    /// The element count (per example when batched).
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
    /// An IR op with inference semantics (batch norm on running
    /// statistics).
    Infer(Op),
    /// An IR op with training semantics (batch statistics, dropout's mask)
    /// or a gradient op.
    Train(Op),
    /// A plain copy (an output that is an input).
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
    /// The prepared tensors it reads instead of raw parameters (inference
    /// only).
    pub prepared: StepPrepared,
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
    /// The tensors inference derives from parameters and buffers (folded
    /// batch norm, packed weights), in the order they are computed.
    pub prepared: Vec<Prepared>,
    /// The inputs.
    pub inputs: Vec<Port>,
    /// The outputs of the inference routine.
    pub outputs: Vec<Port>,
    /// Inference: the forward pass without the loss head and without
    /// train-only ops.
    pub infer: Routine,
    /// Training, when the network has a loss head and every op on the way
    /// to it has a gradient: the forward pass in training mode, the loss,
    /// and the backward pass writing every parameter's gradient.
    pub train: Option<TrainRoutine>,
}

/// The training entry point: its routine and where its results are.
#[derive(Debug, Clone)]
pub struct TrainRoutine {
    /// The kernel calls and their arena.
    pub routine: Routine,
    /// The loss head.
    pub loss: LossSpec,
    /// Where the loss value is (one float, not per example).
    pub loss_at: Location,
    /// The first output's value, in training mode (for training accuracy).
    pub output: Port,
    /// Parameters the loss does not depend on (their gradient stays zero).
    pub untouched: Vec<String>,
}

/// The loss head as the generated code needs it.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct LossSpec {
    /// The loss and its reduction.
    pub loss: crate::ir::Loss,
    /// Elements per example of the loss's input (classes, or features).
    pub features: usize,
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

/// Builds the program of a shaped, verified graph with the default
/// [`PlanOptions`].
///
/// Precondition: every value has a shape (`passes::infer_shapes` ran).
pub fn build(graph: &Graph) -> Program {
    build_with(graph, &PlanOptions::default())
}

/// Builds the program of a shaped, verified graph.
///
/// Precondition: every value has a shape (`passes::infer_shapes` ran).
pub fn build_with(graph: &Graph, options: &PlanOptions) -> Program {
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
    // Inference runs on the fused graph, whose nodes carry the same
    // tensors by name; training keeps the unfused one, which autodiff
    // needs.
    let (infer, outputs) = if options.fuse {
        let fused = crate::passes::fuse_for_inference(graph);
        let order = fused
            .topo_order()
            .expect("plan::build: fusion keeps the graph acyclic");
        let slots = slots_by_name(&fused, &order, &params, &buffers);
        build_routine(&fused, &order, &slots, Mode::Infer, &HashMap::new())
    } else {
        build_routine(graph, &order, &slots, Mode::Infer, &HashMap::new())
    };
    let train = build_training(graph, &params, &buffers);
    let mut program = Program {
        name: graph.name.clone(),
        params,
        buffers,
        prepared: Vec::new(),
        inputs,
        outputs,
        infer,
        train,
    };
    prepare::prepare(&mut program, options);
    program
}

/// The training routine of `graph`, if it has a loss head and autodiff
/// succeeds (a network through `step` trains nowhere: it has inference
/// only, and `kilnc`/the macro report autodiff's error when training is
/// asked for).
fn build_training(
    graph: &Graph,
    params: &[TensorSlot],
    buffers: &[TensorSlot],
) -> Option<TrainRoutine> {
    let loss_node = graph.loss()?;
    // Training-mode fusion (batch norm → ReLU backward) on the joint graph.
    let joint = crate::passes::autodiff(graph).ok()?;
    let joint = crate::passes::fuse_training(&joint).ok()?;
    let g = &joint.graph;
    let order = g.topo_order()?;
    // The joint graph's forward nodes carry the same tensors by name.
    let slots = slots_by_name(g, &order, params, buffers);
    // Parameter gradients go straight to the gradient vector.
    let mut grads = HashMap::new();
    for (name, v) in &joint.param_grads {
        if let Some(p) = params.iter().find(|p| &p.name == name) {
            grads.insert(*v, p.offset);
        }
    }
    let untouched = params
        .iter()
        .filter(|p| joint.param_grad(&p.name).is_none())
        .map(|p| p.name.clone())
        .collect();
    let loss_input = graph.node(loss_node).inputs[0];
    let Op::Loss(loss) = graph.node(loss_node).op.clone() else {
        unreachable!("the loss head is a loss node");
    };
    let features = shape_of(graph, loss_input).numel() as usize;
    let (routine, ports, keep_at) =
        build_routine_keeping(g, &order, &slots, Mode::Train, &grads, &[joint.loss]);
    let output = ports.into_iter().next()?;
    Some(TrainRoutine {
        routine,
        loss: LossSpec { loss, features },
        loss_at: keep_at[0],
        output,
        untouched,
    })
}

/// The slots of `graph`'s nodes in a layout made from another graph that
/// carries the same tensors by name (the joint graph, the fused graph).
fn slots_by_name(
    graph: &Graph,
    order: &[NodeId],
    params: &[TensorSlot],
    buffers: &[TensorSlot],
) -> Slots {
    let index = |list: &[TensorSlot], name: &str| list.iter().position(|t| t.name == name);
    let mut slots = Slots::new();
    for &id in order {
        let entry = slots.entry(id).or_default();
        for p in &graph.node(id).params {
            if let Some(i) = index(params, &p.name) {
                entry.0.push(i);
            } else if let Some(i) = index(buffers, &p.name) {
                entry.1.push(i);
            }
        }
    }
    slots
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

/// Which semantics a routine runs its ops with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mode {
    Infer,
    Train,
}

/// Whether a routine computes nothing for this op: its output is its
/// input's memory, reinterpreted (dropout only at inference).
fn is_alias(op: &Op, mode: Mode) -> bool {
    match op {
        Op::Flatten | Op::Reshape { .. } => true,
        Op::Dropout { .. } => mode == Mode::Infer,
        _ => false,
    }
}

/// Whether the op may write its output over its first input.
fn may_run_in_place(op: &Op) -> bool {
    match op {
        Op::Activation(_) | Op::Add => true,
        // An elementwise chain without a batch norm before it.
        Op::Fused(f) => f.anchor == crate::ir::Anchor::Identity && f.folded_bn.is_none(),
        _ => false,
    }
}

/// A buffer of the arena being planned: its size and live interval.
#[derive(Debug, Clone, Copy)]
struct Buf {
    size: usize,
    def: usize,
    last: usize,
}

/// Where a value lives while its routine is being planned.
#[derive(Debug, Clone, Copy)]
enum Home {
    Input(usize),
    Buf(usize),
    Grad(usize),
}

/// A step before offsets are known.
struct Pending {
    kernel: Kernel,
    node: NodeId,
    inputs: Vec<ValueId>,
    output: ValueId,
    in_place: bool,
    /// The buffer of a copy's output.
    copy_buf: Option<usize>,
}

fn build_routine(
    graph: &Graph,
    order: &[NodeId],
    slots: &Slots,
    mode: Mode,
    grads: &HashMap<ValueId, usize>,
) -> (Routine, Vec<Port>) {
    let (r, ports, _) = build_routine_keeping(graph, order, slots, mode, grads, &[]);
    (r, ports)
}

/// Plans the routine running `order` (minus the loss head at inference) in
/// `mode`. Values in `grads` are written to the gradient vector at the given
/// offset; the graph outputs and the values in `keep` live to the end. Returns
/// the routine, the output ports, and where each `keep` value is.
fn build_routine_keeping(
    graph: &Graph,
    order: &[NodeId],
    slots: &Slots,
    mode: Mode,
    grads: &HashMap<ValueId, usize>,
    keep: &[ValueId],
) -> (Routine, Vec<Port>, Vec<Location>) {
    let loss = graph.loss();
    let nodes: Vec<NodeId> = order
        .iter()
        .copied()
        .filter(|&id| mode == Mode::Train || Some(id) != loss)
        .collect();
    let outputs: Vec<ValueId> = graph.outputs().iter().map(|p| p.value).collect();
    let alias = |id: NodeId| is_alias(&graph.node(id).op, mode);
    let root = |mut v: ValueId| loop {
        let p = graph.producer(v);
        if alias(p) {
            v = graph.node(p).inputs[0];
        } else {
            return v;
        }
    };
    // The last step that reads each root value (aliases read their root).
    let mut uses: HashMap<ValueId, usize> = HashMap::new();
    let mut step = 0;
    for &id in &nodes {
        let node = graph.node(id);
        if matches!(node.op, Op::Input { .. }) || alias(id) {
            continue;
        }
        for &v in &node.inputs {
            uses.insert(root(v), step);
        }
        step += 1;
    }
    let lives_to_end = |v: ValueId| {
        let r = root(v);
        outputs.iter().chain(keep).any(|&o| root(o) == r)
    };
    let mut home: HashMap<ValueId, Home> = HashMap::new();
    let mut bufs: Vec<Buf> = Vec::new();
    let mut pending: Vec<Pending> = Vec::new();
    let mut step = 0;
    for &id in &nodes {
        let node = graph.node(id);
        if let Op::Input { index } = node.op {
            home.insert(node.output, Home::Input(index));
            continue;
        }
        if alias(id) {
            let h = home[&node.inputs[0]];
            home.insert(node.output, h);
            continue;
        }
        let first = node.inputs.first().copied();
        let batched = node.op.is_batched();
        let in_place = mode == Mode::Infer
            && batched
            && may_run_in_place(&node.op)
            && first.is_some_and(|x| {
                matches!(home.get(&x), Some(Home::Buf(_)))
                    && uses.get(&root(x)) == Some(&step)
                    && node.inputs[1..].iter().all(|&y| root(y) != root(x))
                    && !lives_to_end(x)
            });
        let h = if let Some(&off) = grads.get(&node.output) {
            Home::Grad(off)
        } else if in_place {
            match first.and_then(|x| home.get(&x)) {
                Some(&Home::Buf(b)) => Home::Buf(b),
                _ => unreachable!("checked above"),
            }
        } else {
            bufs.push(Buf {
                size: shape_of(graph, node.output).numel() as usize,
                def: step,
                last: step,
            });
            Home::Buf(bufs.len() - 1)
        };
        home.insert(node.output, h);
        pending.push(Pending {
            kernel: match mode {
                Mode::Infer => Kernel::Infer(node.op.clone()),
                Mode::Train => Kernel::Train(node.op.clone()),
            },
            node: id,
            inputs: node.inputs.clone(),
            output: node.output,
            in_place,
            copy_buf: None,
        });
        step += 1;
    }
    // Outputs that live in a caller's input get a copy into the arena.
    let mut port_bufs: Vec<Option<usize>> = Vec::new();
    for port in graph.outputs() {
        let v = port.value;
        if let Home::Input(_) = home[&v] {
            bufs.push(Buf {
                size: shape_of(graph, v).numel() as usize,
                def: step,
                last: step,
            });
            let b = bufs.len() - 1;
            pending.push(Pending {
                kernel: Kernel::Copy,
                node: graph.producer(v),
                inputs: vec![v],
                output: v,
                in_place: false,
                copy_buf: Some(b),
            });
            port_bufs.push(Some(b));
            step += 1;
        } else {
            port_bufs.push(None);
        }
    }
    // Live intervals: from the def to the last read of any value the buffer
    // holds; outputs, kept values and copies to the end.
    let end = step.saturating_sub(1);
    for (v, h) in &home {
        if let Home::Buf(b) = *h {
            if let Some(&u) = uses.get(&root(*v)) {
                bufs[b].last = bufs[b].last.max(u);
            }
            if lives_to_end(*v) {
                bufs[b].last = end;
            }
        }
    }
    for b in port_bufs.iter().flatten() {
        bufs[*b].last = end;
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
        Home::Grad(off) => Location::Grad(off),
    };
    let operand = |v: ValueId, at: Location| Operand {
        at,
        shape: shape_of(graph, v),
        batched: graph.node(graph.producer(v)).op.is_batched(),
    };
    let steps = pending
        .into_iter()
        .map(|p| {
            let inputs = p.inputs.iter().map(|&v| operand(v, at(v))).collect();
            let out_at = match p.copy_buf {
                Some(b) => Location::Arena(memory.offsets[b]),
                None => at(p.output),
            };
            let (params, buffers) = slots.get(&p.node).cloned().unwrap_or_default();
            let meta = graph.meta(p.node);
            Step {
                kernel: p.kernel,
                layer: meta.map(|m| m.name.clone()).unwrap_or_default(),
                loc: meta.map(|m| m.loc).unwrap_or(Loc::Synthetic),
                inputs,
                output: operand(p.output, out_at),
                params,
                buffers,
                in_place: p.in_place,
                prepared: StepPrepared::default(),
            }
        })
        .collect();
    let ports = graph
        .outputs()
        .iter()
        .zip(&port_bufs)
        .map(|(port, b)| Port {
            name: port.name.clone(),
            shape: shape_of(graph, port.value).0,
            at: match b {
                Some(b) => Location::Arena(memory.offsets[*b]),
                None => at(port.value),
            },
        })
        .collect();
    let kept = keep.iter().map(|&v| at(v)).collect();
    (Routine { steps, memory }, ports, kept)
}
