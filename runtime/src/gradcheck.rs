//! Gradient checking: the numeric gradient of any function over the flat
//! parameter buffer, by central differences, against an analytic one.
//!
//! [`check`] perturbs each checked scalar `xᵢ` by ±ε, evaluates the function
//! twice and compares `(f(x+εeᵢ) − f(x−εeᵢ)) / (2ε)` with the analytic
//! gradient by the relative error the course notes recommend,
//! `|a − n| / max(|a|, |n|, floor)`. It works in `f64` when the function
//! does (use the [`Real`] references with `f64`), and in `f32` with the step
//! actually taken after rounding. The [`GradReport`] gives the largest
//! relative error and the parameter, by name and index, where it occurs.
//!
//! Rules of thumb from the notes: in f64 with ε ≈ 1e-6 a correct gradient
//! gives relative errors below 1e-7 on smooth functions; kinks (ReLU, max
//! pooling) crossed by the perturbation can give 1e-4 or so.

use std::fmt;

use crate::params::{ParamLayout, ToolkitError};
use crate::reference::Real;

/// Settings of a gradient check.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct GradCheck {
    /// The perturbation ε.
    pub eps: f64,
    /// Largest relative error that passes.
    pub tolerance: f64,
    /// Denominator floor of the relative error, so that two tiny gradients
    /// do not count as far apart.
    pub floor: f64,
    /// Check at most this many evenly spaced scalars per tensor (all if
    /// `None`).
    pub max_per_tensor: Option<usize>,
}

impl GradCheck {
    /// Settings for an f64 function: ε = 1e-6, tolerance 1e-6, floor 1e-10.
    pub fn f64() -> GradCheck {
        GradCheck {
            eps: 1e-6,
            tolerance: 1e-6,
            floor: 1e-10,
            max_per_tensor: None,
        }
    }

    /// Settings for an f32 function: ε = 1e-2, tolerance 1e-2, floor 1e-4.
    pub fn f32() -> GradCheck {
        GradCheck {
            eps: 1e-2,
            tolerance: 1e-2,
            floor: 1e-4,
            max_per_tensor: None,
        }
    }
}

/// Where the largest relative error occurred.
#[derive(Debug, Clone, PartialEq)]
pub struct Worst {
    /// The parameter's name.
    pub name: String,
    /// Index within that parameter (row-major).
    pub index: usize,
    /// Index in the flat buffer.
    pub flat: usize,
    /// The central-difference estimate.
    pub numeric: f64,
    /// The analytic gradient.
    pub analytic: f64,
}

/// The outcome of a gradient check.
#[derive(Debug, Clone, PartialEq)]
pub struct GradReport {
    /// Largest relative error found (+∞ if a function value was not finite).
    pub max_rel_error: f64,
    /// Where it was found (`None` if nothing was checked).
    pub worst: Option<Worst>,
    /// Number of scalars checked.
    pub checked: usize,
    /// The tolerance it is judged against.
    pub tolerance: f64,
}

impl GradReport {
    /// Whether every checked scalar is within the tolerance.
    pub fn passed(&self) -> bool {
        self.max_rel_error <= self.tolerance
    }
}

impl fmt::Display for GradReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let verdict = if self.passed() { "passed" } else { "FAILED" };
        write!(
            f,
            "gradient check {verdict}: {} scalars, max relative error {:.3e} (tolerance {:.1e})",
            self.checked, self.max_rel_error, self.tolerance
        )?;
        if let Some(w) = &self.worst {
            write!(
                f,
                " at `{}`[{}] (numeric {:.6e}, analytic {:.6e})",
                w.name, w.index, w.numeric, w.analytic
            )?;
        }
        Ok(())
    }
}

/// Compares `analytic` with the central-difference gradient of `f` at `x`,
/// both laid out by `layout`. `f` is called twice per checked scalar with a
/// copy of `x` perturbed in one place.
pub fn check<T: Real>(
    layout: &ParamLayout,
    x: &[T],
    analytic: &[T],
    mut f: impl FnMut(&[T]) -> f64,
    cfg: &GradCheck,
) -> Result<GradReport, ToolkitError> {
    if x.len() != layout.len() || analytic.len() != layout.len() {
        return Err(ToolkitError::Invalid(format!(
            "gradient check: the layout has {} scalars but x has {} and the gradient {}",
            layout.len(),
            x.len(),
            analytic.len()
        )));
    }
    if cfg.eps.is_nan() || cfg.eps <= 0.0 {
        return Err(ToolkitError::Invalid(format!(
            "gradient check: ε must be positive, not {}",
            cfg.eps
        )));
    }
    let mut work = x.to_vec();
    let mut report = GradReport {
        max_rel_error: 0.0,
        worst: None,
        checked: 0,
        tolerance: cfg.tolerance,
    };
    for slot in layout.slots() {
        let n = slot.len();
        let stride = match cfg.max_per_tensor {
            Some(m) if m > 0 && n > m => n.div_ceil(m),
            _ => 1,
        };
        for index in (0..n).step_by(stride) {
            let flat = slot.offset + index;
            let x0 = x[flat];
            let plus = T::from_f64(x0.to_f64() + cfg.eps);
            let minus = T::from_f64(x0.to_f64() - cfg.eps);
            work[flat] = plus;
            let fp = f(&work);
            work[flat] = minus;
            let fm = f(&work);
            work[flat] = x0;
            let h = plus.to_f64() - minus.to_f64();
            let numeric = (fp - fm) / h;
            let a = analytic[flat].to_f64();
            let denom = a.abs().max(numeric.abs()).max(cfg.floor);
            let err = (a - numeric).abs() / denom;
            let err = if err.is_finite() { err } else { f64::INFINITY };
            report.checked += 1;
            if report.worst.is_none() || err > report.max_rel_error {
                report.max_rel_error = err;
                report.worst = Some(Worst {
                    name: slot.name.clone(),
                    index,
                    flat,
                    numeric,
                    analytic: a,
                });
            }
        }
    }
    Ok(report)
}
