//! Optimizers over the flat parameter buffer.
//!
//! Every optimizer implements [`Optimizer`]: `step(&mut params, lr)` reads
//! `params.grads` and updates `params.values` in one pass over each
//! contiguous run of a parameter group ([`ParamLayout::runs`]), applying the
//! group's learning-rate scale and weight decay and skipping frozen groups
//! (whose optimizer state then does not move either). The update rules follow
//! PyTorch's `torch.optim` (defaults, state names and the order of
//! operations), so a state dict and a loss curve can be compared one to one:
//!
//! - SGD: `w ← w − lr·g`.
//! - Momentum (PyTorch convention, no dampening): `v ← μ·v + g`,
//!   `w ← w − lr·v` (the buffer holds a velocity in gradient units, not in
//!   step units as in Sutskever et al.; the two agree for constant `lr`).
//! - Nesterov: `v ← μ·v + g`, `w ← w − lr·(g + μ·v)`.
//! - AdaGrad: `s ← s + g²`, `w ← w − lr·g / (√s + ε)`, ε = 1e-10.
//! - RMSProp: `s ← α·s + (1−α)·g²`, `w ← w − lr·g / (√s + ε)`, α = 0.99,
//!   ε = 1e-8.
//! - Adam: `m ← β₁m + (1−β₁)g`, `v ← β₂v + (1−β₂)g²`,
//!   `w ← w − (lr/(1−β₁ᵗ))·m / (√v/√(1−β₂ᵗ) + ε)`, β = (0.9, 0.999),
//!   ε = 1e-8.
//! - AdamW: first `w ← w·(1 − lr·wd)` (decoupled decay), then Adam without
//!   decay in the gradient.
//!
//! For every optimizer but AdamW a group's weight decay is coupled L2:
//! `g ← g + wd·w` before the rule. The step count `t` is one counter for the
//! whole optimizer (PyTorch keeps one per tensor; they differ only for a
//! group that was frozen and later unfrozen, where Adam's bias correction is
//! then already near 1).
//!
//! State ([`OptimState`]) is named as in PyTorch (`momentum_buffer`, `sum`,
//! `square_avg`, `exp_avg`, `exp_avg_sq`), one flat vector per name in the
//! parameter layout, and is what checkpoints save.
//!
//! [`ParamLayout::runs`]: crate::params::ParamLayout::runs

use crate::kernels::parallel::worth_parallel;
use crate::params::{Params, ToolkitError};

/// Elements per task when a step is spread over threads.
const CHUNK: usize = 1 << 15;

/// `s` in `CHUNK`-sized pieces, or `chunks` empty pieces if `s` is empty.
fn split(s: &mut [f32], chunks: usize) -> Vec<&mut [f32]> {
    if s.is_empty() {
        std::iter::repeat_with(<&mut [f32]>::default)
            .take(chunks)
            .collect()
    } else {
        s.chunks_mut(CHUNK).collect()
    }
}

/// The per-step constants of one group's update, ready for the inner loop.
#[derive(Debug, Clone, Copy)]
struct Consts {
    rule: Rule,
    /// Learning rate (group scale applied).
    lr: f32,
    /// Coupled weight decay, added to the gradient.
    wd: f32,
    /// Decoupled shrink factor `1 − lr·wd` (AdamW; 1 otherwise).
    shrink: f32,
    /// Adam's `lr/(1−β₁ᵗ)`.
    step_size: f32,
    /// Adam's `√(1−β₂ᵗ)`.
    bc2_sqrt: f32,
}

impl Consts {
    fn new(rule: Rule, t: u64, lr: f32, wd: f32) -> Consts {
        let mut k = Consts {
            rule,
            lr,
            wd,
            shrink: 1.0,
            step_size: lr,
            bc2_sqrt: 1.0,
        };
        if let Rule::Adam {
            beta1,
            beta2,
            decoupled,
            ..
        } = rule
        {
            let bc1 = 1.0 - (beta1 as f64).powf(t as f64);
            let bc2 = 1.0 - (beta2 as f64).powf(t as f64);
            k.step_size = (lr as f64 / bc1) as f32;
            k.bc2_sqrt = bc2.sqrt() as f32;
            if decoupled {
                k.wd = 0.0;
                k.shrink = 1.0 - lr * wd;
            }
        }
        k
    }

    /// Updates one contiguous piece: values `w`, gradients `g` and the
    /// matching pieces of the state vectors (empty when the rule has none).
    fn update(&self, w: &mut [f32], g: &[f32], s1: &mut [f32], s2: &mut [f32]) {
        let (lr, wd) = (self.lr, self.wd);
        match self.rule {
            Rule::Sgd => {
                for (w, &g) in w.iter_mut().zip(g) {
                    let g = g + wd * *w;
                    *w -= lr * g;
                }
            }
            Rule::Momentum { mu } => {
                for ((w, &g), v) in w.iter_mut().zip(g).zip(s1) {
                    let g = g + wd * *w;
                    *v = mu * *v + g;
                    *w -= lr * *v;
                }
            }
            Rule::Nesterov { mu } => {
                for ((w, &g), v) in w.iter_mut().zip(g).zip(s1) {
                    let g = g + wd * *w;
                    *v = mu * *v + g;
                    *w -= lr * (g + mu * *v);
                }
            }
            Rule::AdaGrad { eps } => {
                for ((w, &g), s) in w.iter_mut().zip(g).zip(s1) {
                    let g = g + wd * *w;
                    *s += g * g;
                    *w -= lr * g / (s.sqrt() + eps);
                }
            }
            Rule::RmsProp { alpha, eps } => {
                for ((w, &g), s) in w.iter_mut().zip(g).zip(s1) {
                    let g = g + wd * *w;
                    *s = alpha * *s + (1.0 - alpha) * g * g;
                    *w -= lr * g / (s.sqrt() + eps);
                }
            }
            Rule::Adam {
                beta1, beta2, eps, ..
            } => {
                let (step_size, bc2_sqrt, shrink) = (self.step_size, self.bc2_sqrt, self.shrink);
                for (((w, &g), m), v) in w.iter_mut().zip(g).zip(s1).zip(s2) {
                    *w *= shrink;
                    let g = g + wd * *w;
                    *m = beta1 * *m + (1.0 - beta1) * g;
                    *v = beta2 * *v + (1.0 - beta2) * g * g;
                    *w -= step_size * *m / (v.sqrt() / bc2_sqrt + eps);
                }
            }
        }
    }
}

/// An optimizer over [`Params`].
pub trait Optimizer: std::fmt::Debug + Send {
    /// One update of `params.values` from `params.grads` with base learning
    /// rate `lr` (a group's `lr_scale` multiplies it). Fails only when state
    /// loaded from a checkpoint does not fit `params`.
    fn step(&mut self, params: &mut Params, lr: f32) -> Result<(), ToolkitError>;
    /// The state to save: step count and named flat vectors.
    fn state(&self) -> OptimState;
    /// Restores a saved state; fails if it belongs to another kind of
    /// optimizer. Lengths are checked against the parameters at the next
    /// step.
    fn load_state(&mut self, state: OptimState) -> Result<(), ToolkitError>;
}

/// An optimizer's saved state.
#[derive(Debug, Clone, PartialEq)]
pub struct OptimState {
    /// Which rule produced it (`sgd`, `momentum`, `nesterov`, `adagrad`,
    /// `rmsprop`, `adam`, `adamw`).
    pub kind: String,
    /// Steps taken.
    pub step: u64,
    /// Named state vectors, each as long as the parameter buffer.
    pub vectors: Vec<(String, Vec<f32>)>,
}

/// The update rule and its hyper-parameters.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Rule {
    /// Plain gradient descent.
    Sgd,
    /// Heavy-ball momentum `μ` (PyTorch convention).
    Momentum {
        /// Momentum coefficient μ.
        mu: f32,
    },
    /// Nesterov momentum `μ` (PyTorch convention).
    Nesterov {
        /// Momentum coefficient μ.
        mu: f32,
    },
    /// AdaGrad.
    AdaGrad {
        /// Added to the root of the accumulated squares.
        eps: f32,
    },
    /// RMSProp.
    RmsProp {
        /// Decay of the running mean of squares.
        alpha: f32,
        /// Added to its root.
        eps: f32,
    },
    /// Adam with bias correction; with `decoupled` it is AdamW.
    Adam {
        /// First-moment decay.
        beta1: f32,
        /// Second-moment decay.
        beta2: f32,
        /// Added to the root of the second moment.
        eps: f32,
        /// Decoupled weight decay (AdamW).
        decoupled: bool,
    },
}

impl Rule {
    fn kind(&self) -> &'static str {
        match self {
            Rule::Sgd => "sgd",
            Rule::Momentum { .. } => "momentum",
            Rule::Nesterov { .. } => "nesterov",
            Rule::AdaGrad { .. } => "adagrad",
            Rule::RmsProp { .. } => "rmsprop",
            Rule::Adam {
                decoupled: false, ..
            } => "adam",
            Rule::Adam {
                decoupled: true, ..
            } => "adamw",
        }
    }

    fn state_names(&self) -> &'static [&'static str] {
        match self {
            Rule::Sgd => &[],
            Rule::Momentum { .. } | Rule::Nesterov { .. } => &["momentum_buffer"],
            Rule::AdaGrad { .. } => &["sum"],
            Rule::RmsProp { .. } => &["square_avg"],
            Rule::Adam { .. } => &["exp_avg", "exp_avg_sq"],
        }
    }
}

/// The built-in optimizers: one [`Rule`] and its state.
#[derive(Debug, Clone, PartialEq)]
pub struct Optim {
    /// The update rule.
    pub rule: Rule,
    t: u64,
    s1: Vec<f32>,
    s2: Vec<f32>,
}

impl Optim {
    /// An optimizer with `rule` and empty state.
    pub fn new(rule: Rule) -> Optim {
        Optim {
            rule,
            t: 0,
            s1: Vec::new(),
            s2: Vec::new(),
        }
    }

    /// Plain SGD.
    pub fn sgd() -> Optim {
        Optim::new(Rule::Sgd)
    }

    /// SGD with momentum `mu`.
    pub fn momentum(mu: f32) -> Optim {
        Optim::new(Rule::Momentum { mu })
    }

    /// SGD with Nesterov momentum `mu`.
    pub fn nesterov(mu: f32) -> Optim {
        Optim::new(Rule::Nesterov { mu })
    }

    /// AdaGrad with ε = 1e-10.
    pub fn adagrad() -> Optim {
        Optim::new(Rule::AdaGrad { eps: 1e-10 })
    }

    /// RMSProp with decay `alpha` (PyTorch's default 0.99) and ε = 1e-8.
    pub fn rmsprop(alpha: f32) -> Optim {
        Optim::new(Rule::RmsProp { alpha, eps: 1e-8 })
    }

    /// Adam with β = (0.9, 0.999), ε = 1e-8.
    pub fn adam() -> Optim {
        Optim::new(Rule::Adam {
            beta1: 0.9,
            beta2: 0.999,
            eps: 1e-8,
            decoupled: false,
        })
    }

    /// AdamW (decoupled weight decay, set per group) with β = (0.9, 0.999),
    /// ε = 1e-8.
    pub fn adamw() -> Optim {
        Optim::new(Rule::Adam {
            beta1: 0.9,
            beta2: 0.999,
            eps: 1e-8,
            decoupled: true,
        })
    }

    /// Steps taken so far.
    pub fn steps(&self) -> u64 {
        self.t
    }

    fn ensure_state(&mut self, n: usize) -> Result<(), ToolkitError> {
        let names = self.rule.state_names();
        for (k, v) in [&mut self.s1, &mut self.s2].into_iter().enumerate() {
            if k >= names.len() {
                continue;
            }
            if v.is_empty() {
                *v = vec![0.0; n];
            } else if v.len() != n {
                return Err(ToolkitError::Invalid(format!(
                    "optimizer state `{}` has {} elements but the parameters have {n}",
                    names[k],
                    v.len()
                )));
            }
        }
        Ok(())
    }
}

impl Optimizer for Optim {
    fn step(&mut self, params: &mut Params, lr: f32) -> Result<(), ToolkitError> {
        params.validate()?;
        let n = params.values.len();
        self.ensure_state(n)?;
        self.t += 1;
        let layout = &params.layout;
        for (range, gi) in layout.runs() {
            let group = &layout.groups()[*gi];
            if group.frozen {
                continue;
            }
            let k = Consts::new(self.rule, self.t, lr * group.lr_scale, group.weight_decay);
            let w = &mut params.values[range.clone()];
            let g = &params.grads[range.clone()];
            let s1 = self.s1.get_mut(range.clone()).unwrap_or_default();
            let s2 = self.s2.get_mut(range.clone()).unwrap_or_default();
            if worth_parallel(w.len()) {
                use rayon::prelude::*;
                let chunks = w.len().div_ceil(CHUNK);
                let (c1, c2) = (split(s1, chunks), split(s2, chunks));
                w.par_chunks_mut(CHUNK)
                    .zip(g.par_chunks(CHUNK))
                    .zip(c1.into_par_iter().zip(c2.into_par_iter()))
                    .for_each(|((w, g), (s1, s2))| k.update(w, g, s1, s2));
            } else {
                k.update(w, g, s1, s2);
            }
        }
        Ok(())
    }

    fn state(&self) -> OptimState {
        let names = self.rule.state_names();
        let vectors = names
            .iter()
            .zip([&self.s1, &self.s2])
            .map(|(n, v)| (n.to_string(), v.clone()))
            .collect();
        OptimState {
            kind: self.rule.kind().to_string(),
            step: self.t,
            vectors,
        }
    }

    fn load_state(&mut self, state: OptimState) -> Result<(), ToolkitError> {
        if state.kind != self.rule.kind() {
            return Err(ToolkitError::Invalid(format!(
                "optimizer state is for `{}`, not `{}`",
                state.kind,
                self.rule.kind()
            )));
        }
        let names = self.rule.state_names();
        let mut s = [Vec::new(), Vec::new()];
        for (name, v) in state.vectors {
            match names.iter().position(|n| *n == name) {
                Some(k) => s[k] = v,
                None => {
                    return Err(ToolkitError::Invalid(format!(
                        "optimizer state `{name}` does not belong to `{}`",
                        self.rule.kind()
                    )));
                }
            }
        }
        let [s1, s2] = s;
        self.s1 = s1;
        self.s2 = s2;
        self.t = state.step;
        Ok(())
    }
}
