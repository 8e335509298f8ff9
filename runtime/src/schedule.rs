//! Learning-rate schedules.
//!
//! A [`Schedule`] is a base rate α₀, a [`Decay`] formula of the step `t`
//! (steps completed, starting at 0), an optional linear warm-up in front of
//! it and an optional reduce-on-plateau multiplier driven by a monitored
//! metric. With a warm-up of `W` steps the rate is `α₀·(t+1)/W` for `t < W`
//! and the decay formula at `t − W` afterwards. The formulas:
//!
//! | decay | rate at step t |
//! | --- | --- |
//! | `Constant` | α₀ |
//! | `Step { milestones, factor }` | α₀·factorⁿ, n = milestones ≤ t (factor 0.1 is "÷10") |
//! | `Exponential { k }` | α₀·e^(−kt) |
//! | `InverseTime { k }` | α₀/(1+kt) |
//! | `Cosine { total }` | ½α₀(1+cos(π·min(t,T)/T)) |
//! | `Linear { total }` | α₀·max(0, 1−t/T) |
//! | `InverseSqrt` | α₀/√max(t,1) |
//!
//! Reduce-on-plateau follows PyTorch's `ReduceLROnPlateau` in `min` mode with
//! a relative threshold: a metric counts as an improvement when it is below
//! `best·(1 − threshold)`; after more than `patience` epochs without one the
//! multiplier is scaled by `factor`, and the rate never drops below `min_lr`
//! through it. The position (step, plateau multiplier, best metric, epochs
//! without improvement) is [`ScheduleState`], saved in checkpoints.

use crate::params::ToolkitError;

/// The decay formula of a schedule.
#[derive(Debug, Clone, PartialEq)]
pub enum Decay {
    /// α₀ throughout.
    Constant,
    /// α₀ times `factor` per milestone passed.
    Step {
        /// Steps at which the rate is multiplied by `factor`.
        milestones: Vec<u64>,
        /// 0.1 divides by ten at each milestone.
        factor: f64,
    },
    /// α₀·e^(−kt).
    Exponential {
        /// Decay rate k.
        k: f64,
    },
    /// α₀/(1+kt).
    InverseTime {
        /// Decay rate k.
        k: f64,
    },
    /// ½α₀(1+cos(tπ/T)), constant 0 after `total`.
    Cosine {
        /// Length T of the schedule in steps.
        total: u64,
    },
    /// α₀(1−t/T), constant 0 after `total`.
    Linear {
        /// Length T of the schedule in steps.
        total: u64,
    },
    /// α₀/√t (α₀ at t = 0).
    InverseSqrt,
}

/// Reduce-on-plateau settings.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Plateau {
    /// Epochs without improvement tolerated before a reduction.
    pub patience: u64,
    /// Multiplier applied at each reduction (0.1 in PyTorch).
    pub factor: f64,
    /// Relative improvement needed (1e-4 in PyTorch).
    pub threshold: f64,
    /// The rate never goes below this through reductions.
    pub min_lr: f64,
}

impl Default for Plateau {
    fn default() -> Self {
        Plateau {
            patience: 10,
            factor: 0.1,
            threshold: 1e-4,
            min_lr: 0.0,
        }
    }
}

/// Where a schedule stands; saved and restored with checkpoints.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct ScheduleState {
    /// Steps completed.
    pub step: u64,
    /// Product of the plateau reductions so far (1 if none).
    pub plateau_scale: f64,
    /// Best metric seen by the plateau monitor (+∞ before the first).
    pub best: Option<f64>,
    /// Epochs since the last improvement.
    pub bad_epochs: u64,
}

/// A learning-rate schedule with its position.
#[derive(Debug, Clone, PartialEq)]
pub struct Schedule {
    /// The base rate α₀.
    pub base_lr: f64,
    /// The decay formula.
    pub decay: Decay,
    /// Warm-up steps in front of the decay (0 for none).
    pub warmup: u64,
    /// Reduce-on-plateau, if any.
    pub plateau: Option<Plateau>,
    state: ScheduleState,
}

impl Schedule {
    /// A schedule at step 0 with no warm-up and no plateau monitor.
    pub fn new(base_lr: f64, decay: Decay) -> Schedule {
        Schedule {
            base_lr,
            decay,
            warmup: 0,
            plateau: None,
            state: ScheduleState {
                step: 0,
                plateau_scale: 1.0,
                best: None,
                bad_epochs: 0,
            },
        }
    }

    /// The same schedule with a linear warm-up of `steps` steps in front.
    pub fn with_warmup(mut self, steps: u64) -> Schedule {
        self.warmup = steps;
        self
    }

    /// The same schedule with a reduce-on-plateau monitor.
    pub fn with_plateau(mut self, plateau: Plateau) -> Schedule {
        self.plateau = Some(plateau);
        self
    }

    /// The rate the formula (warm-up and decay, without plateau reductions)
    /// gives at step `t`.
    pub fn lr_at(&self, t: u64) -> f64 {
        let a = self.base_lr;
        if t < self.warmup {
            return a * (t + 1) as f64 / self.warmup as f64;
        }
        let t = t - self.warmup;
        let tf = t as f64;
        match &self.decay {
            Decay::Constant => a,
            Decay::Step { milestones, factor } => {
                let n = milestones.iter().filter(|&&m| m <= t).count();
                a * factor.powi(n as i32)
            }
            Decay::Exponential { k } => a * (-k * tf).exp(),
            Decay::InverseTime { k } => a / (1.0 + k * tf),
            Decay::Cosine { total } => {
                let x = tf.min(*total as f64) / (*total).max(1) as f64;
                0.5 * a * (1.0 + (std::f64::consts::PI * x).cos())
            }
            Decay::Linear { total } => a * (1.0 - tf / (*total).max(1) as f64).max(0.0),
            Decay::InverseSqrt => a / tf.max(1.0).sqrt(),
        }
    }

    /// The current rate: the formula at the current step times the plateau
    /// multiplier (floored at `min_lr` once a reduction happened).
    pub fn lr(&self) -> f32 {
        let lr = self.lr_at(self.state.step);
        let lr = match self.plateau {
            Some(p) if self.state.plateau_scale < 1.0 => {
                (lr * self.state.plateau_scale).max(p.min_lr)
            }
            _ => lr,
        };
        lr as f32
    }

    /// Moves to the next step.
    pub fn advance(&mut self) {
        self.state.step += 1;
    }

    /// Feeds the plateau monitor one epoch's metric (lower is better).
    /// Returns whether the rate was reduced. Without a monitor it does
    /// nothing and returns `false`. A NaN metric counts as no improvement.
    pub fn observe(&mut self, metric: f64) -> bool {
        let Some(p) = self.plateau else {
            return false;
        };
        let s = &mut self.state;
        let improved = match s.best {
            None => !metric.is_nan(),
            Some(best) => metric < best * (1.0 - p.threshold.copysign(best)),
        };
        if improved {
            s.best = Some(metric);
            s.bad_epochs = 0;
            return false;
        }
        s.bad_epochs += 1;
        if s.bad_epochs > p.patience {
            s.bad_epochs = 0;
            s.plateau_scale *= p.factor;
            return true;
        }
        false
    }

    /// The position, for checkpoints.
    pub fn state(&self) -> ScheduleState {
        self.state
    }

    /// Restores a position saved by [`Schedule::state`].
    pub fn load_state(&mut self, state: ScheduleState) -> Result<(), ToolkitError> {
        if !(state.plateau_scale.is_finite() && state.plateau_scale >= 0.0) {
            return Err(ToolkitError::Invalid(format!(
                "schedule state has an invalid plateau multiplier {}",
                state.plateau_scale
            )));
        }
        self.state = state;
        Ok(())
    }
}
