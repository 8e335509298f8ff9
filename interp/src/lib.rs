//! kiln's IR interpreter: runs an [`ir::Graph`](kiln_compiler::ir::Graph)
//! (a forward graph from [`kiln_compiler::check`] or a joint graph from
//! [`kiln_compiler::passes::autodiff`]) node by node on the runtime's naive
//! references ([`kiln_runtime::reference`]), in `f32` or `f64`.
//!
//! It is the oracle that passes and generated code are judged against, so
//! it favours being obviously right: every value of the run is kept and
//! returned ([`Values`]), every op and gradient op of the IR is evaluated,
//! and user mistakes (a missing input, a wrong length, a label out of range)
//! come back as an [`Error`] naming the tensor or layer, never a panic.
//! [`worked`] holds the course notes' worked examples as a table that any
//! executor of graphs (this one, generated code) can be checked against.
//!
//! Conventions it shares with generated code:
//!
//! - Tensors are dense, row-major, batch first (`N × shape`); parameter
//!   gradients and the loss have no batch dimension.
//! - Parameters and buffers are looked up by name in a [`Params`] map
//!   (`conv2d0.weight`, `batch_norm0.running_mean`).
//! - [`Mode::Training`] runs batch norm on batch statistics and updates the
//!   running statistics in the map (momentum `m`: `r ← (1 − m)·r + m·stat`,
//!   the variance unbiased as PyTorch does), and dropout with the mask of
//!   [`dropout_seed`]`(seed, layer)` at counter `i` for element `i` of the
//!   batched tensor; [`Mode::Inference`] uses the running statistics and
//!   makes dropout the identity.

mod run;
pub mod worked;

use kiln_compiler::ir::{Graph, ParamRole, ValueId};
use kiln_runtime::reference::Real;
use kiln_runtime::rng::{Rng, mix64};
use std::collections::HashMap;
use std::fmt;

pub use run::run;

/// Parameters and buffers by name.
pub type Params<T> = HashMap<String, Vec<T>>;

/// Whether the run is a training step or inference.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// Running statistics for batch norm; dropout is the identity.
    Inference,
    /// Batch statistics (and the running-statistics update) for batch
    /// norm; dropout masks from `seed`.
    Training {
        /// The step's dropout seed.
        seed: u64,
    },
}

/// The loss head's target for a batch.
#[derive(Debug, Clone, PartialEq)]
pub enum Targets<T> {
    /// One class index per example (cross-entropy, NLL, hinge).
    Classes(Vec<u32>),
    /// A tensor of the loss input's shape per example (MSE, L1, Huber, BCE).
    Values(Vec<T>),
}

/// One run's configuration: batch size, mode, inputs and targets.
#[derive(Debug, Clone)]
pub struct Feed<T> {
    /// The batch size `N`.
    pub batch: usize,
    /// Training or inference.
    pub mode: Mode,
    /// Each graph input by name, `N × shape` values.
    pub inputs: HashMap<String, Vec<T>>,
    /// The loss head's targets; without them the loss (and any gradient
    /// op that needs it) is not evaluated.
    pub targets: Option<Targets<T>>,
}

impl<T: Real> Feed<T> {
    /// A feed of batch `batch` in `mode` with no inputs or targets yet.
    pub fn new(batch: usize, mode: Mode) -> Self {
        Feed {
            batch,
            mode,
            inputs: HashMap::new(),
            targets: None,
        }
    }

    /// The same feed with input `name` set.
    pub fn input(mut self, name: &str, data: Vec<T>) -> Self {
        self.inputs.insert(name.to_string(), data);
        self
    }

    /// The same feed with targets.
    pub fn targets(mut self, t: Targets<T>) -> Self {
        self.targets = Some(t);
        self
    }
}

/// Every value a run computed, by [`ValueId`], and the loss.
#[derive(Debug, Clone)]
pub struct Values<T> {
    values: HashMap<ValueId, Vec<T>>,
    outputs: Vec<(String, ValueId)>,
    /// The loss, if the graph has a loss head and targets were given.
    pub loss: Option<T>,
}

impl<T: Real> Values<T> {
    /// The data of value `v`, if the run computed it.
    pub fn get(&self, v: ValueId) -> Option<&[T]> {
        self.values.get(&v).map(Vec::as_slice)
    }

    /// The data of the graph output `name`.
    pub fn output(&self, name: &str) -> Option<&[T]> {
        self.outputs
            .iter()
            .find(|(n, _)| n == name)
            .and_then(|(_, v)| self.get(*v))
    }
}

/// An interpreter error: what went wrong and where (a tensor, a layer or a
/// parameter name).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Error {
    /// The tensor, layer or parameter at fault.
    pub at: String,
    /// What is wrong.
    pub message: String,
}

impl Error {
    pub(crate) fn new(at: impl Into<String>, message: impl Into<String>) -> Self {
        Error {
            at: at.into(),
            message: message.into(),
        }
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "`{}`: {}", self.at, self.message)
    }
}

impl std::error::Error for Error {}

/// The seed of dropout layer `layer`'s mask in a step seeded `seed`: the
/// step seed mixed with the FNV-1a hash of the layer name, so every layer
/// has its own stream and the backward pass reproduces the forward mask.
pub fn dropout_seed(seed: u64, layer: &str) -> u64 {
    mix64(seed ^ fnv1a(layer))
}

fn fnv1a(s: &str) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in s.bytes() {
        h ^= b as u64;
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    h
}

/// Seeded random parameters and buffers for every parameter of `graph`,
/// shaped as the graph says: weights uniform in `±1/√fan_in` (fan-in the
/// product of all dims but the first), biases in `±0.5`, batch norm's γ in
/// `[0.5, 1.5]` and β in `±0.5`, running means in `±0.5` and running
/// variances in `[0.5, 1.5]`, PReLU slopes in `[0.1, 0.4]` (a fused kernel's
/// folded batch norm draws as batch norm does). Each tensor
/// draws from its own stream (seed and name), so adding a layer does not
/// change the others.
pub fn random_params<T: Real>(graph: &Graph, seed: u64) -> Params<T> {
    let mut out = Params::new();
    for id in graph.node_ids() {
        let node = graph.node(id);
        // The index of the first batch-norm parameter, if the node has any.
        let bn_from = match &node.op {
            kiln_compiler::ir::Op::BatchNorm { .. } => Some(0),
            kiln_compiler::ir::Op::Fused(f) if f.folded_bn.is_some() => Some(f.anchor_params()),
            _ => None,
        };
        let is_prelu = matches!(node.op, kiln_compiler::ir::Op::Prelu { .. });
        for (i, p) in node.params.iter().enumerate() {
            let is_bn = bn_from.is_some_and(|k| i >= k);
            let mut rng = Rng::new(seed).fork(fnv1a(&p.name));
            let dims = p.shape.dims();
            let fan_in: usize = dims.iter().skip(1).product::<usize>().max(1);
            let (lo, hi) = match p.role {
                ParamRole::Weight if is_bn => (0.5, 1.5),
                ParamRole::Weight if is_prelu => (0.1, 0.4),
                ParamRole::Weight => {
                    let a = 1.0 / (fan_in as f64).sqrt();
                    (-a, a)
                }
                ParamRole::Bias | ParamRole::RunningMean => (-0.5, 0.5),
                ParamRole::RunningVar => (0.5, 1.5),
            };
            let data = (0..p.numel())
                .map(|_| T::from_f64(lo + (hi - lo) * rng.next_f64()))
                .collect();
            out.insert(p.name.clone(), data);
        }
    }
    out
}

/// The parameters and buffers of the toolkit's flat [`kiln_runtime::params::Params`]
/// (what generated code owns) as the interpreter's map, in `T`.
pub fn params_from_flat<T: Real>(flat: &kiln_runtime::params::Params) -> Params<T> {
    let mut out = Params::new();
    let mut take = |layout: &kiln_runtime::params::ParamLayout, data: &[f32]| {
        for slot in layout.slots() {
            let v = data[slot.range()]
                .iter()
                .map(|&x| T::from_f64(x as f64))
                .collect();
            out.insert(slot.name.clone(), v);
        }
    };
    take(&flat.layout, &flat.values);
    take(&flat.buffer_layout, &flat.buffers);
    out
}

/// Writes the interpreter's map back into a flat [`kiln_runtime::params::Params`]
/// (values and buffers, rounded to `f32`); returns the names of the flat
/// layout's tensors that the map lacks or holds with another length.
pub fn params_into_flat<T: Real>(
    params: &Params<T>,
    flat: &mut kiln_runtime::params::Params,
) -> Vec<String> {
    let mut missing = Vec::new();
    let mut put = |layout: &kiln_runtime::params::ParamLayout, data: &mut [f32]| {
        for slot in layout.slots() {
            match params.get(&slot.name) {
                Some(v) if v.len() == slot.len() => {
                    for (d, x) in data[slot.range()].iter_mut().zip(v) {
                        *d = x.to_f64() as f32;
                    }
                }
                _ => missing.push(slot.name.clone()),
            }
        }
    };
    put(&flat.layout, &mut flat.values);
    put(&flat.buffer_layout, &mut flat.buffers);
    missing
}

/// `len` seeded values uniform in `[lo, hi)` (test inputs).
pub fn random_tensor<T: Real>(len: usize, seed: u64, lo: f64, hi: f64) -> Vec<T> {
    let mut rng = Rng::new(seed);
    (0..len)
        .map(|_| T::from_f64(lo + (hi - lo) * rng.next_f64()))
        .collect()
}
