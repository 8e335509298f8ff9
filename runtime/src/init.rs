//! Seeded, deterministic parameter initializers.
//!
//! [`Init`] fills one tensor; [`InitPolicy`] fills a whole [`Params`] by name
//! pattern and by [`Role`]. Every tensor draws from its own stream, forked
//! from the seed by a hash of the tensor's name, so adding a layer does not
//! change the values of the others and the result does not depend on order.
//!
//! Fans come from the shape ([`fans`]): a linear weight `[out, in]` has
//! fan-in `in`, fan-out `out`; a convolution kernel OIHW has fan-in `I·H·W`
//! and fan-out `O·H·W`. The variances, with the names the course notes use:
//!
//! | init | variance |
//! | --- | --- |
//! | `Xavier` (the notes' `randn(n)/sqrt(n)`) | 1/fan_in |
//! | `Glorot` | 2/(fan_in+fan_out) |
//! | `He` (Kaiming, for ReLU) | 2/fan_in |
//! | `SmallRandn` (the notes' `0.01·randn`) | 1e-4 |
//!
//! each in a normal or a uniform form; the uniform form draws from
//! `U(−a, a)` with `a = √(3·variance)`, which has the same variance.

use crate::params::{Params, Pattern, Role, ToolkitError};
use crate::rng::{Rng, mix64};

/// The distribution of a variance-scaled initializer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dist {
    /// Zero-mean normal.
    Normal,
    /// Zero-mean uniform with the same variance.
    Uniform,
}

/// How to fill one tensor.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Init {
    /// All zeros (the default for biases).
    Zeros,
    /// One value everywhere (e.g. 0.01 for ReLU biases, 1 for batch-norm γ).
    Constant(f32),
    /// Normal with a mean and standard deviation.
    Normal {
        /// Mean.
        mean: f32,
        /// Standard deviation.
        std: f32,
    },
    /// Uniform on `[lo, hi)`.
    Uniform {
        /// Lower bound.
        lo: f32,
        /// Upper bound.
        hi: f32,
    },
    /// The notes' `0.01·randn`.
    SmallRandn,
    /// Variance 1/fan_in.
    Xavier(Dist),
    /// Variance 2/(fan_in+fan_out).
    Glorot(Dist),
    /// Variance 2/fan_in.
    He(Dist),
}

/// `(fan_in, fan_out)` of a shape: `[n]` gives `(n, n)`, `[out, in]` gives
/// `(in, out)`, `[O, I, k…]` gives `(I·∏k, O·∏k)`, a scalar `(1, 1)`.
pub fn fans(shape: &[usize]) -> (usize, usize) {
    match shape {
        [] => (1, 1),
        [n] => (*n, *n),
        [o, i, rest @ ..] => {
            let rf: usize = rest.iter().product();
            (i * rf, o * rf)
        }
    }
}

impl Init {
    /// The standard deviation of a variance-scaled init for `shape`, if this
    /// is one.
    pub fn scaled_std(&self, shape: &[usize]) -> Option<f64> {
        let (fi, fo) = fans(shape);
        let (fi, fo) = (fi.max(1) as f64, fo.max(1) as f64);
        match self {
            Init::Xavier(_) => Some((1.0 / fi).sqrt()),
            Init::Glorot(_) => Some((2.0 / (fi + fo)).sqrt()),
            Init::He(_) => Some((2.0 / fi).sqrt()),
            Init::SmallRandn => Some(0.01),
            _ => None,
        }
    }

    /// Fills `out` (a tensor of `shape`) drawing from `rng`.
    pub fn fill(&self, shape: &[usize], out: &mut [f32], rng: &mut Rng) {
        match *self {
            Init::Zeros => out.fill(0.0),
            Init::Constant(c) => out.fill(c),
            Init::Normal { mean, std } => {
                for x in out {
                    *x = (mean as f64 + std as f64 * rng.next_normal()) as f32;
                }
            }
            Init::Uniform { lo, hi } => {
                for x in out {
                    *x = (lo as f64 + (hi as f64 - lo as f64) * rng.next_f64()) as f32;
                }
            }
            Init::SmallRandn => fill_scaled(Dist::Normal, 0.01, out, rng),
            Init::Xavier(d) | Init::Glorot(d) | Init::He(d) => {
                let std = self.scaled_std(shape).unwrap_or(0.0);
                fill_scaled(d, std, out, rng);
            }
        }
    }
}

fn fill_scaled(d: Dist, std: f64, out: &mut [f32], rng: &mut Rng) {
    match d {
        Dist::Normal => {
            for x in out {
                *x = (std * rng.next_normal()) as f32;
            }
        }
        Dist::Uniform => {
            let a = 3f64.sqrt() * std;
            for x in out {
                *x = (a * (2.0 * rng.next_f64() - 1.0)) as f32;
            }
        }
    }
}

/// A 64-bit FNV-1a hash of a name, mixed: the per-tensor stream tag.
fn name_tag(name: &str) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in name.bytes() {
        h = (h ^ b as u64).wrapping_mul(0x0000_0100_0000_01b3);
    }
    mix64(h)
}

/// Initializers for a whole model: name rules first (first match wins), then
/// the init of the tensor's role.
#[derive(Debug, Clone, PartialEq)]
pub struct InitPolicy {
    /// Rules by name pattern, tried in order.
    pub rules: Vec<(Pattern, Init)>,
    /// Init of [`Role::Weight`] tensors.
    pub weight: Init,
    /// Init of [`Role::Bias`] tensors (zeros by default).
    pub bias: Init,
    /// Init of [`Role::NormScale`] tensors (ones by default).
    pub norm_scale: Init,
    /// Init of [`Role::Other`] tensors.
    pub other: Init,
}

impl InitPolicy {
    /// `weight` for weights, zero biases, unit normalization scales, zeros
    /// otherwise.
    pub fn new(weight: Init) -> InitPolicy {
        InitPolicy {
            rules: Vec::new(),
            weight,
            bias: Init::Zeros,
            norm_scale: Init::Constant(1.0),
            other: Init::Zeros,
        }
    }

    /// The same policy with a rule for names matching `pattern` in front of
    /// the role defaults (after earlier rules).
    pub fn rule(mut self, pattern: &str, init: Init) -> InitPolicy {
        self.rules.push((Pattern::new(pattern), init));
        self
    }

    /// The init this policy gives a tensor.
    pub fn init_for(&self, name: &str, role: Role) -> Init {
        if let Some((_, init)) = self.rules.iter().find(|(p, _)| p.matches(name)) {
            return *init;
        }
        match role {
            Role::Weight => self.weight,
            Role::Bias => self.bias,
            Role::NormScale => self.norm_scale,
            Role::Other => self.other,
        }
    }

    /// Fills every parameter of `params`, each from its own stream of
    /// `seed`, and resets the buffers: names ending in `running_var` to 1,
    /// all others to 0 (batch norm's initial running statistics). Gradients
    /// are zeroed. Fails only if `params` is inconsistent with its layouts.
    pub fn apply(&self, params: &mut Params, seed: u64) -> Result<(), ToolkitError> {
        params.validate()?;
        let root = Rng::new(seed);
        for slot in params.layout.slots() {
            let init = self.init_for(&slot.name, slot.role);
            let mut rng = root.fork(name_tag(&slot.name));
            init.fill(&slot.shape, &mut params.values[slot.range()], &mut rng);
        }
        for slot in params.buffer_layout.slots() {
            let v = if slot.name.ends_with("running_var") {
                1.0
            } else {
                0.0
            };
            params.buffers[slot.range()].fill(v);
        }
        params.zero_grads();
        Ok(())
    }
}
