//! Parameters, gradients and buffers in flat `f32` buffers with named slices.
//!
//! A generated model owns one [`Params`]: every trainable tensor is a slice of
//! `values` (its gradient the same slice of `grads`), described by a
//! [`ParamLayout`] that maps a name to an offset, a shape, a [`Role`] and a
//! parameter group. Non-trainable state (batch-norm running statistics) lives
//! in `buffers` with its own layout: it is saved in checkpoints but never
//! optimized. Because the buffers are flat, an optimizer step is one pass over
//! a few contiguous runs (one per stretch of equal group), not a loop over
//! tensors.
//!
//! Groups carry the per-group optimizer settings ([`Group`]): a learning-rate
//! multiplier, a weight decay and a frozen flag. They are assigned by name
//! pattern ([`Pattern`]: `*` matches any run of characters) or by role, first
//! matching rule wins, so "no weight decay on biases and batch-norm
//! parameters" and "freeze the feature extractor" are one rule each.
//!
//! This module also holds the toolkit's error type, [`ToolkitError`].
//!
//! How the toolkit's pieces fit in a training loop:
//!
//! ```
//! use kiln_runtime::checkpoint::{self, TrainState};
//! use kiln_runtime::init::{Dist, Init, InitPolicy};
//! use kiln_runtime::optim::{Optim, Optimizer};
//! use kiln_runtime::params::{Group, ParamLayout, Params, Role, Select};
//! use kiln_runtime::schedule::{Decay, Schedule};
//!
//! let mut layout = ParamLayout::from_specs([
//!     ("fc.weight", &[10, 784][..]),
//!     ("fc.bias", &[10][..]),
//! ])?;
//! // Weight decay on weights only.
//! layout.assign_groups(
//!     Group::new("decay").weight_decay(5e-4),
//!     vec![(Select::Role(Role::Bias), Group::new("no_decay"))],
//! );
//! let mut params = Params::new(layout, ParamLayout::new())?;
//! InitPolicy::new(Init::He(Dist::Normal)).apply(&mut params, 42)?;
//! let mut opt = Optim::momentum(0.9);
//! let mut sched = Schedule::new(0.1, Decay::Cosine { total: 100 }).with_warmup(5);
//! for _ in 0..3 {
//!     params.zero_grads();
//!     // ... forward and backward write params.grads ...
//!     opt.step(&mut params, sched.lr())?;
//!     sched.advance();
//! }
//! let path = std::env::temp_dir().join("kiln-doc-example.safetensors");
//! let state = TrainState {
//!     optim: Some(opt.state()),
//!     schedule: Some(sched.state()),
//!     epoch: 1,
//!     ..TrainState::default()
//! };
//! checkpoint::save(&path, &params, &state)?;
//! let back = checkpoint::load(&path, &mut params)?;
//! assert_eq!(back.epoch, 1);
//! # std::fs::remove_file(&path)?;
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

use std::collections::HashMap;
use std::ops::Range;
use std::path::PathBuf;

/// Errors of the training toolkit (layouts, optimizers, checkpoints).
#[derive(Debug, thiserror::Error)]
pub enum ToolkitError {
    /// An operating-system I/O error on a file.
    #[error("{path}: {source}")]
    Io {
        /// The file (or directory) involved.
        path: PathBuf,
        /// The underlying error.
        source: std::io::Error,
    },
    /// A file is not a valid checkpoint; `tensor` names the tensor at fault
    /// when one is.
    #[error("{path}: {}{detail}", tensor.as_ref().map(|t| format!("tensor `{t}`: ")).unwrap_or_default())]
    Format {
        /// The file.
        path: PathBuf,
        /// The tensor at fault, if the problem is with one tensor.
        tensor: Option<String>,
        /// What is wrong.
        detail: String,
    },
    /// A checkpoint does not fit the model: every problem, one per tensor.
    #[error("{path}: {} problem(s) loading the checkpoint:\n{}", problems.len(), problems.iter().map(|p| format!("  - {p}")).collect::<Vec<_>>().join("\n"))]
    Mismatch {
        /// The file.
        path: PathBuf,
        /// Every problem found, each naming its tensor.
        problems: Vec<Problem>,
    },
    /// A layout or configuration is invalid (duplicate name, bad pattern,
    /// wrong buffer length).
    #[error("{0}")]
    Invalid(String),
}

/// One reason a checkpoint does not fit a model; each names its tensor.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Problem {
    /// The model has a tensor the file lacks.
    #[error("missing {kind} `{name}` (shape {shape:?})")]
    Missing {
        /// `parameter`, `buffer` or `optimizer tensor`.
        kind: &'static str,
        /// The tensor.
        name: String,
        /// The shape the model expects.
        shape: Vec<usize>,
    },
    /// The file's tensor has a dtype the load does not accept.
    #[error("tensor `{name}`: dtype {found}, expected {expected}")]
    Dtype {
        /// The tensor.
        name: String,
        /// Its dtype in the file.
        found: String,
        /// The dtypes accepted (`F32`, or `F32 or F64 or F16 or BF16`).
        expected: String,
    },
    /// The shapes differ.
    #[error("tensor `{name}`: expected shape {expected:?}, found {found:?}{}", into.as_ref().map(|t| format!(" (loading into `{t}`)")).unwrap_or_default())]
    Shape {
        /// The tensor in the file.
        name: String,
        /// The shape the model expects.
        expected: Vec<usize>,
        /// The shape in the file.
        found: Vec<usize>,
        /// The model tensor it was to be loaded into, when renamed.
        into: Option<String>,
    },
    /// The data does not match the checksum saved with it.
    #[error(
        "tensor `{name}`: checksum {found} does not match the saved {saved}; its data is corrupted"
    )]
    Checksum {
        /// The tensor.
        name: String,
        /// CRC-32 of the data as read.
        found: String,
        /// CRC-32 saved in the metadata.
        saved: String,
    },
    /// The file has a tensor the model lacks.
    #[error("unexpected tensor `{name}` {shape:?} (not in the model)")]
    Unexpected {
        /// The tensor.
        name: String,
        /// Its shape in the file.
        shape: Vec<usize>,
    },
    /// A rename rule maps a file tensor to a name the model lacks.
    #[error("tensor `{name}` maps to `{target}`, which is not in the model")]
    NoTarget {
        /// The tensor in the file.
        name: String,
        /// The name it maps to.
        target: String,
    },
    /// Two file tensors map to one model tensor.
    #[error("`{target}` would be loaded twice, from `{first}` and from `{second}`")]
    Twice {
        /// The model tensor.
        target: String,
        /// The first file tensor mapped to it.
        first: String,
        /// The second.
        second: String,
    },
    /// A rename rule selects nothing (a typo, usually).
    #[error("rule `{pattern}` matches no tensor in the file")]
    UnusedRule {
        /// The rule's `from` pattern.
        pattern: String,
    },
    /// A metadata entry is malformed.
    #[error("metadata `{key}`: {detail}")]
    Metadata {
        /// The entry.
        key: String,
        /// What is wrong with it.
        detail: String,
    },
}

/// What a parameter is for; initializers, regularizers and group rules select
/// by it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Role {
    /// A weight matrix or convolution kernel (rank ≥ 2).
    Weight,
    /// An additive bias.
    Bias,
    /// A normalization scale (batch-norm γ, rank 1, not named `bias`).
    NormScale,
    /// Anything else.
    Other,
}

impl Role {
    /// The role a PyTorch-style name and shape imply: `*.bias` is a bias, a
    /// rank-1 `*.weight` is a normalization scale, rank ≥ 2 is a weight.
    pub fn infer(name: &str, shape: &[usize]) -> Role {
        if name.ends_with("bias") {
            Role::Bias
        } else if shape.len() >= 2 {
            Role::Weight
        } else if name.ends_with("weight") || name.ends_with("gamma") {
            Role::NormScale
        } else {
            Role::Other
        }
    }
}

/// A glob over tensor names: `*` matches any run of characters (dots
/// included), every other character matches itself.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pattern(String);

impl Pattern {
    /// A pattern from its text.
    pub fn new(text: &str) -> Pattern {
        Pattern(text.to_string())
    }

    /// The pattern's text.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// Whether `name` matches the whole pattern.
    pub fn matches(&self, name: &str) -> bool {
        glob(self.0.as_bytes(), name.as_bytes())
    }

    /// The text the first `*` matched, if the pattern matches; `Some("")`
    /// for a pattern without `*`.
    pub fn capture<'n>(&self, name: &'n str) -> Option<&'n str> {
        if !self.matches(name) {
            return None;
        }
        let Some(star) = self.0.find('*') else {
            return Some("");
        };
        let prefix = &self.0[..star];
        let rest = &self.0[star + 1..];
        // The capture ends where the rest of the pattern can still match the
        // rest of the name; take the longest such capture that matches.
        let tail = &name[prefix.len()..];
        (0..=tail.len())
            .rev()
            .filter(|&end| tail.is_char_boundary(end))
            .find(|&end| glob(rest.as_bytes(), &tail.as_bytes()[end..]))
            .map(|end| &tail[..end])
    }

    /// Replaces the first `*` of this pattern with `captured` (the other half
    /// of a rename rule).
    pub fn substitute(&self, captured: &str) -> String {
        match self.0.find('*') {
            Some(star) => format!("{}{}{}", &self.0[..star], captured, &self.0[star + 1..]),
            None => self.0.clone(),
        }
    }
}

/// Iterative glob matching with backtracking to the last `*`.
fn glob(p: &[u8], s: &[u8]) -> bool {
    let (mut pi, mut si) = (0, 0);
    let mut star: Option<(usize, usize)> = None;
    while si < s.len() {
        if pi < p.len() && p[pi] == b'*' {
            star = Some((pi, si));
            pi += 1;
        } else if pi < p.len() && p[pi] == s[si] {
            pi += 1;
            si += 1;
        } else if let Some((sp, ss)) = star {
            pi = sp + 1;
            si = ss + 1;
            star = Some((sp, ss + 1));
        } else {
            return false;
        }
    }
    p[pi..].iter().all(|&c| c == b'*')
}

/// Optimizer settings shared by the parameters of one group.
#[derive(Debug, Clone, PartialEq)]
pub struct Group {
    /// The group's name (for reports).
    pub name: String,
    /// Multiplies the schedule's learning rate.
    pub lr_scale: f32,
    /// Weight decay: coupled (added to the gradient as `wd·w`) for SGD,
    /// AdaGrad, RMSProp and Adam, decoupled for AdamW.
    pub weight_decay: f32,
    /// A frozen group is never updated and its optimizer state never moves.
    pub frozen: bool,
}

impl Group {
    /// A group with learning-rate scale 1, no weight decay, not frozen.
    pub fn new(name: &str) -> Group {
        Group {
            name: name.to_string(),
            lr_scale: 1.0,
            weight_decay: 0.0,
            frozen: false,
        }
    }

    /// The same group with weight decay `wd`.
    pub fn weight_decay(mut self, wd: f32) -> Group {
        self.weight_decay = wd;
        self
    }

    /// The same group with learning-rate scale `s`.
    pub fn lr_scale(mut self, s: f32) -> Group {
        self.lr_scale = s;
        self
    }

    /// The same group, frozen.
    pub fn frozen(mut self) -> Group {
        self.frozen = true;
        self
    }
}

/// Which parameters a group rule selects.
#[derive(Debug, Clone, PartialEq)]
pub enum Select {
    /// Names matching a pattern.
    Name(Pattern),
    /// Parameters of a role.
    Role(Role),
}

impl Select {
    fn selects(&self, slot: &Slot) -> bool {
        match self {
            Select::Name(p) => p.matches(&slot.name),
            Select::Role(r) => slot.role == *r,
        }
    }
}

/// One named tensor of a layout.
#[derive(Debug, Clone, PartialEq)]
pub struct Slot {
    /// The tensor's name, e.g. `features.0.weight`.
    pub name: String,
    /// Start of its slice in the flat buffer.
    pub offset: usize,
    /// Its shape (row-major; convolution kernels OIHW, linear `[out, in]`).
    pub shape: Vec<usize>,
    /// Its role.
    pub role: Role,
    /// Index into [`ParamLayout::groups`].
    pub group: usize,
}

impl Slot {
    /// Number of elements.
    pub fn len(&self) -> usize {
        self.shape.iter().product()
    }

    /// Whether the tensor has no elements.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Its range in the flat buffer.
    pub fn range(&self) -> Range<usize> {
        self.offset..self.offset + self.len()
    }
}

/// Names, offsets, shapes, roles and groups of the tensors in one flat buffer.
#[derive(Debug, Clone, PartialEq)]
pub struct ParamLayout {
    slots: Vec<Slot>,
    index: HashMap<String, usize>,
    len: usize,
    groups: Vec<Group>,
    runs: Vec<(Range<usize>, usize)>,
}

impl Default for ParamLayout {
    fn default() -> Self {
        ParamLayout::new()
    }
}

impl ParamLayout {
    /// An empty layout with one group, `default`.
    pub fn new() -> ParamLayout {
        ParamLayout {
            slots: Vec::new(),
            index: HashMap::new(),
            len: 0,
            groups: vec![Group::new("default")],
            runs: Vec::new(),
        }
    }

    /// A layout of `(name, shape)` pairs in order, roles inferred from names.
    pub fn from_specs<'a>(
        specs: impl IntoIterator<Item = (&'a str, &'a [usize])>,
    ) -> Result<ParamLayout, ToolkitError> {
        let mut layout = ParamLayout::new();
        for (name, shape) in specs {
            layout.push(name, shape)?;
        }
        Ok(layout)
    }

    /// Appends a tensor with its role inferred by [`Role::infer`]; returns
    /// its offset.
    pub fn push(&mut self, name: &str, shape: &[usize]) -> Result<usize, ToolkitError> {
        self.push_with_role(name, shape, Role::infer(name, shape))
    }

    /// Appends a tensor with an explicit role; returns its offset.
    pub fn push_with_role(
        &mut self,
        name: &str,
        shape: &[usize],
        role: Role,
    ) -> Result<usize, ToolkitError> {
        if name.is_empty() {
            return Err(ToolkitError::Invalid("a tensor name is empty".into()));
        }
        if name == "__metadata__" || name.starts_with("__optim__/") {
            return Err(ToolkitError::Invalid(format!(
                "tensor name `{name}` is reserved by the checkpoint format"
            )));
        }
        if self.index.contains_key(name) {
            return Err(ToolkitError::Invalid(format!(
                "tensor `{name}` is declared twice in the layout"
            )));
        }
        let n = shape
            .iter()
            .try_fold(1usize, |a, &d| a.checked_mul(d))
            .and_then(|n| n.checked_add(self.len).map(|_| n))
            .ok_or_else(|| {
                ToolkitError::Invalid(format!("tensor `{name}`: shape {shape:?} is too large"))
            })?;
        let offset = self.len;
        self.index.insert(name.to_string(), self.slots.len());
        self.slots.push(Slot {
            name: name.to_string(),
            offset,
            shape: shape.to_vec(),
            role,
            group: 0,
        });
        self.len += n;
        self.rebuild_runs();
        Ok(offset)
    }

    /// Replaces the groups: each slot goes to the group of the first rule
    /// that selects it, or to `default` (group 0) if none does.
    pub fn assign_groups(&mut self, default: Group, rules: Vec<(Select, Group)>) {
        self.groups = vec![default];
        let mut rule_group = Vec::with_capacity(rules.len());
        for (_, g) in &rules {
            rule_group.push(self.groups.len());
            self.groups.push(g.clone());
        }
        for slot in &mut self.slots {
            slot.group = rules
                .iter()
                .position(|(sel, _)| sel.selects(slot))
                .map_or(0, |i| rule_group[i]);
        }
        self.rebuild_runs();
    }

    fn rebuild_runs(&mut self) {
        self.runs.clear();
        for s in &self.slots {
            match self.runs.last_mut() {
                Some((r, g)) if *g == s.group && r.end == s.offset => r.end = s.offset + s.len(),
                _ => self.runs.push((s.range(), s.group)),
            }
        }
    }

    /// Total number of elements.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether the layout holds no elements.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The tensors, in buffer order.
    pub fn slots(&self) -> &[Slot] {
        &self.slots
    }

    /// The tensor called `name`.
    pub fn slot(&self, name: &str) -> Option<&Slot> {
        self.index.get(name).map(|&i| &self.slots[i])
    }

    /// The groups; [`Slot::group`] indexes this.
    pub fn groups(&self) -> &[Group] {
        &self.groups
    }

    /// Maximal contiguous ranges of one group each, in buffer order: what an
    /// optimizer step iterates over.
    pub fn runs(&self) -> &[(Range<usize>, usize)] {
        &self.runs
    }

    /// The tensor that holds flat index `i`, and the index within it.
    pub fn locate(&self, i: usize) -> Option<(&Slot, usize)> {
        let k = self.slots.partition_point(|s| s.offset + s.len() <= i);
        let s = self.slots.get(k)?;
        (i >= s.offset && i < s.offset + s.len()).then(|| (s, i - s.offset))
    }
}

/// A model's trainable parameters, their gradients and its buffers.
#[derive(Debug, Clone, PartialEq)]
pub struct Params {
    /// Layout of `values` and `grads`.
    pub layout: ParamLayout,
    /// Parameter values.
    pub values: Vec<f32>,
    /// Gradients, same layout as `values`.
    pub grads: Vec<f32>,
    /// Layout of `buffers` (its groups are unused).
    pub buffer_layout: ParamLayout,
    /// Non-trainable state saved in checkpoints (batch-norm running
    /// statistics).
    pub buffers: Vec<f32>,
}

impl Params {
    /// Zeroed values, gradients and buffers for two layouts; a name may not
    /// be both a parameter and a buffer.
    pub fn new(layout: ParamLayout, buffer_layout: ParamLayout) -> Result<Params, ToolkitError> {
        if let Some(s) = buffer_layout
            .slots()
            .iter()
            .find(|s| layout.slot(&s.name).is_some())
        {
            return Err(ToolkitError::Invalid(format!(
                "tensor `{}` is both a parameter and a buffer",
                s.name
            )));
        }
        Ok(Params {
            values: vec![0.0; layout.len()],
            grads: vec![0.0; layout.len()],
            buffers: vec![0.0; buffer_layout.len()],
            layout,
            buffer_layout,
        })
    }

    /// The values of parameter `name`.
    pub fn get(&self, name: &str) -> Option<&[f32]> {
        self.layout.slot(name).map(|s| &self.values[s.range()])
    }

    /// The values of parameter `name`, mutable.
    pub fn get_mut(&mut self, name: &str) -> Option<&mut [f32]> {
        let r = self.layout.slot(name)?.range();
        Some(&mut self.values[r])
    }

    /// The gradient of parameter `name`.
    pub fn grad(&self, name: &str) -> Option<&[f32]> {
        self.layout.slot(name).map(|s| &self.grads[s.range()])
    }

    /// The gradient of parameter `name`, mutable.
    pub fn grad_mut(&mut self, name: &str) -> Option<&mut [f32]> {
        let r = self.layout.slot(name)?.range();
        Some(&mut self.grads[r])
    }

    /// The buffer `name`.
    pub fn buffer(&self, name: &str) -> Option<&[f32]> {
        self.buffer_layout
            .slot(name)
            .map(|s| &self.buffers[s.range()])
    }

    /// The buffer `name`, mutable.
    pub fn buffer_mut(&mut self, name: &str) -> Option<&mut [f32]> {
        let r = self.buffer_layout.slot(name)?.range();
        Some(&mut self.buffers[r])
    }

    /// Checks that `values`, `grads` and `buffers` have their layouts'
    /// lengths (the fields are public, so a caller can break this).
    pub fn validate(&self) -> Result<(), ToolkitError> {
        let (n, b) = (self.layout.len(), self.buffer_layout.len());
        if self.values.len() != n || self.grads.len() != n || self.buffers.len() != b {
            return Err(ToolkitError::Invalid(format!(
                "the layout has {n} parameters and {b} buffer scalars, but values, grads and \
                 buffers hold {}, {} and {}",
                self.values.len(),
                self.grads.len(),
                self.buffers.len()
            )));
        }
        Ok(())
    }

    /// Sets every gradient to zero.
    pub fn zero_grads(&mut self) {
        self.grads.fill(0.0);
    }

    /// Number of trainable scalars.
    pub fn count(&self) -> usize {
        self.layout.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check_glob(pattern: &str, name: &str, expect: Option<&str>) {
        let p = Pattern::new(pattern);
        assert_eq!(p.capture(name), expect, "{pattern} vs {name}");
        assert_eq!(p.matches(name), expect.is_some(), "{pattern} vs {name}");
    }

    #[test]
    fn patterns_match_and_capture() {
        check_glob("*.bias", "features.0.bias", Some("features.0"));
        check_glob("*.bias", "features.0.weight", None);
        check_glob("features.*", "features.3.weight", Some("3.weight"));
        check_glob("features.0.weight", "features.0.weight", Some(""));
        check_glob("a*c*", "abcxc", Some("bcx"));
        check_glob("*", "", Some(""));
        check_glob("x*", "", None);
    }

    #[test]
    fn groups_form_contiguous_runs_and_locate_finds_tensors() {
        let mut l = ParamLayout::from_specs([
            ("c.weight", &[2, 1, 1, 1][..]),
            ("c.bias", &[2][..]),
            ("bn.weight", &[2][..]),
            ("fc.weight", &[3, 2][..]),
        ])
        .unwrap();
        assert_eq!(l.runs(), &[(0..12, 0)]);
        l.assign_groups(
            Group::new("decay").weight_decay(0.1),
            vec![
                (Select::Role(Role::Bias), Group::new("no_decay")),
                (Select::Role(Role::NormScale), Group::new("no_decay2")),
            ],
        );
        assert_eq!(l.runs(), &[(0..2, 0), (2..4, 1), (4..6, 2), (6..12, 0)]);
        let (s, i) = l.locate(7).unwrap();
        assert_eq!((s.name.as_str(), i), ("fc.weight", 1));
        assert!(l.locate(12).is_none());
        assert!(l.push("c.bias", &[1]).is_err());
        assert!(l.push("__optim__/m/x", &[1]).is_err());
        assert!(l.push("", &[1]).is_err());
    }
}
