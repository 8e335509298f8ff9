//! Weight penalties added to the loss: L2, L1 and elastic net.
//!
//! As the course notes define them, with strength λ and the sum over the
//! selected weights:
//!
//! | penalty | R(W) | ∂R/∂w |
//! | --- | --- | --- |
//! | `L2` | λ·Σ w² | 2λw |
//! | `L1` | λ·Σ \|w\| | λ·sign(w) (0 at 0) |
//! | `ElasticNet` | λ·Σ (β·w² + \|w\|) | λ(2βw + sign(w)) |
//!
//! [`Regularizer::apply`] returns R(W) (to add to the data loss) and adds
//! ∂R/∂w to `params.grads`. The notes' L2 has no ½, so it matches an
//! optimizer's coupled weight decay `wd` for λ = wd/2. By default only
//! [`Role::Weight`] tensors are penalized, not biases or normalization
//! parameters.

use crate::params::{Params, Pattern, Role, ToolkitError};

/// The penalty formula.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Penalty {
    /// λ·Σ w².
    L2 {
        /// Strength λ.
        lambda: f32,
    },
    /// λ·Σ |w|.
    L1 {
        /// Strength λ.
        lambda: f32,
    },
    /// λ·Σ (β·w² + |w|).
    ElasticNet {
        /// Strength λ.
        lambda: f32,
        /// Weight β of the squared term.
        beta: f32,
    },
}

/// A penalty and the tensors it applies to.
#[derive(Debug, Clone, PartialEq)]
pub struct Regularizer {
    /// The formula.
    pub penalty: Penalty,
    /// Roles penalized.
    pub roles: Vec<Role>,
    /// Names never penalized, whatever their role.
    pub exclude: Vec<Pattern>,
}

impl Regularizer {
    /// `penalty` over the weight tensors (not biases or normalization
    /// parameters).
    pub fn weights(penalty: Penalty) -> Regularizer {
        Regularizer {
            penalty,
            roles: vec![Role::Weight],
            exclude: Vec::new(),
        }
    }

    /// The same regularizer, never applied to names matching `pattern`.
    pub fn excluding(mut self, pattern: &str) -> Regularizer {
        self.exclude.push(Pattern::new(pattern));
        self
    }

    /// Whether the tensor `name` of `role` is penalized.
    pub fn applies(&self, name: &str, role: Role) -> bool {
        self.roles.contains(&role) && !self.exclude.iter().any(|p| p.matches(name))
    }

    /// Adds the penalty's gradient to `params.grads` and returns its value
    /// (accumulated in f64). Fails only if `params` is inconsistent with its
    /// layout.
    pub fn apply(&self, params: &mut Params) -> Result<f64, ToolkitError> {
        params.validate()?;
        let mut total = 0.0f64;
        for slot in params.layout.slots() {
            if !self.applies(&slot.name, slot.role) {
                continue;
            }
            let w = &params.values[slot.range()];
            let g = &mut params.grads[slot.range()];
            let sign = |x: f32| if x == 0.0 { 0.0 } else { x.signum() };
            match self.penalty {
                Penalty::L2 { lambda } => {
                    for (g, &w) in g.iter_mut().zip(w) {
                        total += lambda as f64 * (w as f64) * (w as f64);
                        *g += 2.0 * lambda * w;
                    }
                }
                Penalty::L1 { lambda } => {
                    for (g, &w) in g.iter_mut().zip(w) {
                        total += lambda as f64 * (w as f64).abs();
                        *g += lambda * sign(w);
                    }
                }
                Penalty::ElasticNet { lambda, beta } => {
                    for (g, &w) in g.iter_mut().zip(w) {
                        let wd = w as f64;
                        total += lambda as f64 * (beta as f64 * wd * wd + wd.abs());
                        *g += lambda * (2.0 * beta * w + sign(w));
                    }
                }
            }
        }
        Ok(total)
    }
}
