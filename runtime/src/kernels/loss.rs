//! Fast loss heads: each returns the loss of a batch and, when given a
//! buffer, writes the gradient with respect to its input in the same pass.
//!
//! Every loss is a sum over each example's features, then reduced over the
//! batch by [`Reduction`] (`Mean` divides by the batch size `n`, which is
//! also folded into the gradient). Cross-entropy takes logits and fuses its
//! softmax (the gradient is `softmax − onehot`), so the two are never
//! materialized separately. Labels and binary targets come from data, so
//! they are checked first and reported as a [`LossError`] naming the
//! example; nothing is written when the check fails. Losses run on the
//! calling thread (they are a few operations per logit, far below the cost
//! of the layer before them) and sum their per-example values in f64 in
//! example order.

use super::activation::exp_approx;
use super::softmax::{max_of, sum_of};
use crate::activation::sigmoid;

/// How per-example losses combine over the batch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reduction {
    /// The average over the batch.
    Mean,
    /// The sum over the batch.
    Sum,
}

impl Reduction {
    /// The factor applied to a sum over `n` examples (0 for an empty batch).
    pub fn factor(self, n: usize) -> f64 {
        match self {
            Reduction::Sum => 1.0,
            Reduction::Mean if n == 0 => 0.0,
            Reduction::Mean => 1.0 / n as f64,
        }
    }
}

/// Bad data reaching a loss head.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum LossError {
    /// A class label not in `0..classes`.
    LabelOutOfRange {
        /// The example (row) in the batch.
        example: usize,
        /// The label found.
        label: u32,
        /// The number of classes.
        classes: usize,
    },
    /// A binary cross-entropy target outside [0, 1] (or NaN).
    TargetOutOfRange {
        /// The example (row) in the batch.
        example: usize,
        /// The feature within the example.
        feature: usize,
        /// The value found.
        value: f32,
    },
}

impl core::fmt::Display for LossError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match *self {
            LossError::LabelOutOfRange {
                example,
                label,
                classes,
            } => write!(
                f,
                "label {label} of example {example} is not a class (expected 0..{classes})"
            ),
            LossError::TargetOutOfRange {
                example,
                feature,
                value,
            } => write!(
                f,
                "target {value} at example {example}, feature {feature} is outside [0, 1]"
            ),
        }
    }
}

#[cfg(feature = "std")]
impl std::error::Error for LossError {}

/// Checks every label against the class count.
pub fn check_labels(labels: &[u32], classes: usize) -> Result<(), LossError> {
    match labels.iter().position(|&l| l as usize >= classes) {
        Some(example) => Err(LossError::LabelOutOfRange {
            example,
            label: labels[example],
            classes,
        }),
        None => Ok(()),
    }
}

/// Checks that every binary target lies in [0, 1]; `features` per example.
pub fn check_binary_targets(target: &[f32], features: usize) -> Result<(), LossError> {
    match target.iter().position(|t| !(0.0..=1.0).contains(t)) {
        Some(i) => Err(LossError::TargetOutOfRange {
            example: i / features.max(1),
            feature: i % features.max(1),
            value: target[i],
        }),
        None => Ok(()),
    }
}

/// The shape invariants of the class-index losses.
fn check_class_shapes(input: &[f32], labels: &[u32], classes: usize, grad: &Option<&mut [f32]>) {
    assert_eq!(
        input.len(),
        labels.len() * classes,
        "loss: input is [n, classes]"
    );
    if let Some(g) = grad {
        assert_eq!(g.len(), input.len(), "loss: gradient length");
    }
}

/// Cross-entropy from logits `[n, classes]` with the softmax fused:
/// per example `ln Σⱼ exp(zⱼ) − z_label`. The gradient (if asked) is
/// `(softmax(z) − onehot(label))` times the reduction factor.
pub fn cross_entropy(
    logits: &[f32],
    labels: &[u32],
    classes: usize,
    reduction: Reduction,
    mut grad: Option<&mut [f32]>,
) -> Result<f32, LossError> {
    check_class_shapes(logits, labels, classes, &grad);
    check_labels(labels, classes)?;
    let r = reduction.factor(labels.len());
    let mut total = 0.0f64;
    for (i, &label) in labels.iter().enumerate() {
        let z = &logits[i * classes..(i + 1) * classes];
        let m = max_of(z);
        let (s, row_grad) = match grad.as_deref_mut() {
            Some(g) => {
                let row = &mut g[i * classes..(i + 1) * classes];
                for (gv, &zv) in row.iter_mut().zip(z) {
                    *gv = exp_approx(zv - m);
                }
                (sum_of(row), Some(row))
            }
            None => {
                let mut acc = 0.0f32;
                for &zv in z {
                    acc += exp_approx(zv - m);
                }
                (acc, None)
            }
        };
        total += (m + libm::logf(s) - z[label as usize]) as f64;
        if let Some(row) = row_grad {
            let scale = (r / s as f64) as f32;
            for gv in row.iter_mut() {
                *gv *= scale;
            }
            row[label as usize] -= r as f32;
        }
    }
    Ok((total * r) as f32)
}

/// Negative log-likelihood of log-probabilities `[n, classes]`: per example
/// `−logp_label`. The gradient is `−1` at the label (times the reduction
/// factor) and 0 elsewhere.
pub fn nll(
    log_probs: &[f32],
    labels: &[u32],
    classes: usize,
    reduction: Reduction,
    grad: Option<&mut [f32]>,
) -> Result<f32, LossError> {
    check_class_shapes(log_probs, labels, classes, &grad);
    check_labels(labels, classes)?;
    let r = reduction.factor(labels.len());
    let mut total = 0.0f64;
    for (i, &label) in labels.iter().enumerate() {
        total -= log_probs[i * classes + label as usize] as f64;
    }
    if let Some(g) = grad {
        g.fill(0.0);
        for (i, &label) in labels.iter().enumerate() {
            g[i * classes + label as usize] = -(r as f32);
        }
    }
    Ok((total * r) as f32)
}

/// The multiclass hinge (SVM) loss of scores `[n, classes]`: per example
/// `Σ_{j ≠ label} max(0, sⱼ − s_label + margin)`. The gradient is the
/// reduction factor at each `j` whose margin is violated, and minus the
/// factor times their count at the label.
pub fn multiclass_hinge(
    scores: &[f32],
    labels: &[u32],
    classes: usize,
    margin: f32,
    reduction: Reduction,
    mut grad: Option<&mut [f32]>,
) -> Result<f32, LossError> {
    check_class_shapes(scores, labels, classes, &grad);
    check_labels(labels, classes)?;
    let r = reduction.factor(labels.len()) as f32;
    let mut total = 0.0f64;
    for (i, &label) in labels.iter().enumerate() {
        let label = label as usize;
        let s = &scores[i * classes..(i + 1) * classes];
        let sy = s[label];
        let mut row_loss = 0.0f32;
        let mut violated = 0usize;
        for (j, &sj) in s.iter().enumerate() {
            let m = sj - sy + margin;
            if j != label && m > 0.0 {
                row_loss += m;
                violated += 1;
            }
        }
        total += row_loss as f64;
        if let Some(g) = grad.as_deref_mut() {
            let row = &mut g[i * classes..(i + 1) * classes];
            for (j, (gv, &sj)) in row.iter_mut().zip(s).enumerate() {
                *gv = if j != label && sj - sy + margin > 0.0 {
                    r
                } else {
                    0.0
                };
            }
            row[label] = -r * violated as f32;
        }
    }
    Ok((total * r as f64) as f32)
}

/// Applies a per-element loss `(value, gradient) = f(output, target)` over a
/// batch of `n` examples, summing each example in f64.
fn pointwise_loss<F>(
    output: &[f32],
    target: &[f32],
    n: usize,
    reduction: Reduction,
    mut grad: Option<&mut [f32]>,
    f: F,
) -> f32
where
    F: Fn(f32, f32) -> (f32, f32),
{
    assert_eq!(
        output.len(),
        target.len(),
        "loss: output and target lengths"
    );
    assert!(
        (n == 0 && output.is_empty()) || (n > 0 && output.len().is_multiple_of(n)),
        "loss: output is [n, features]"
    );
    if let Some(g) = &grad {
        assert_eq!(g.len(), output.len(), "loss: gradient length");
    }
    let r = reduction.factor(n);
    let rf = r as f32;
    let features = output.len().checked_div(n).unwrap_or(0);
    let mut total = 0.0f64;
    for i in 0..n {
        let range = i * features..(i + 1) * features;
        let mut row = 0.0f32;
        match grad.as_deref_mut() {
            Some(g) => {
                for ((gv, &o), &t) in g[range.clone()]
                    .iter_mut()
                    .zip(&output[range.clone()])
                    .zip(&target[range])
                {
                    let (v, d) = f(o, t);
                    row += v;
                    *gv = d * rf;
                }
            }
            None => {
                for (&o, &t) in output[range.clone()].iter().zip(&target[range]) {
                    row += f(o, t).0;
                }
            }
        }
        total += row as f64;
    }
    (total * r) as f32
}

/// Mean squared error as ½‖o − y‖² per example; gradient `o − y`.
pub fn mse(
    output: &[f32],
    target: &[f32],
    n: usize,
    reduction: Reduction,
    grad: Option<&mut [f32]>,
) -> f32 {
    pointwise_loss(output, target, n, reduction, grad, |o, t| {
        let d = o - t;
        (0.5 * d * d, d)
    })
}

/// L1 loss `Σ|o − y|` per example; gradient `sign(o − y)` (0 at 0).
pub fn l1(
    output: &[f32],
    target: &[f32],
    n: usize,
    reduction: Reduction,
    grad: Option<&mut [f32]>,
) -> f32 {
    pointwise_loss(output, target, n, reduction, grad, |o, t| {
        let d = o - t;
        let s = if d > 0.0 {
            1.0
        } else if d < 0.0 {
            -1.0
        } else {
            0.0
        };
        (d.abs(), s)
    })
}

/// Huber loss with threshold `delta` (PyTorch's `HuberLoss`, smooth L1 up to
/// the factor `delta`): `½d²` for `|d| < delta`, else `delta·(|d| − ½delta)`;
/// gradient `d` or `delta·sign(d)`.
pub fn huber(
    output: &[f32],
    target: &[f32],
    n: usize,
    delta: f32,
    reduction: Reduction,
    grad: Option<&mut [f32]>,
) -> f32 {
    pointwise_loss(output, target, n, reduction, grad, |o, t| {
        let d = o - t;
        if d.abs() < delta {
            (0.5 * d * d, d)
        } else {
            let s = if d > 0.0 { delta } else { -delta };
            (delta * (d.abs() - 0.5 * delta), s)
        }
    })
}

/// The least value `ln` may contribute to binary cross-entropy (PyTorch's
/// clamp), so `p = 0` or `p = 1` gives a large finite loss.
pub const BCE_LOG_FLOOR: f32 = -100.0;

/// The least denominator of binary cross-entropy's gradient (PyTorch's).
pub const BCE_GRAD_EPS: f32 = 1e-12;

/// Binary cross-entropy from probabilities `p` (not checked; a sigmoid's
/// output) against targets in [0, 1] (checked):
/// `−(y ln p + (1 − y) ln(1 − p))` with each log clamped at
/// [`BCE_LOG_FLOOR`]; gradient `(p − y) / max(p(1 − p), ε)`.
pub fn binary_cross_entropy(
    probs: &[f32],
    target: &[f32],
    n: usize,
    reduction: Reduction,
    grad: Option<&mut [f32]>,
) -> Result<f32, LossError> {
    check_binary_targets(target, target.len().checked_div(n).unwrap_or(1))?;
    Ok(pointwise_loss(probs, target, n, reduction, grad, |p, y| {
        let lp = libm::logf(p).max(BCE_LOG_FLOOR);
        let lq = libm::logf(1.0 - p).max(BCE_LOG_FLOOR);
        let v = -(y * lp + (1.0 - y) * lq);
        (v, (p - y) / (p * (1.0 - p)).max(BCE_GRAD_EPS))
    }))
}

/// Binary cross-entropy from logits `z`, stable for any `z`:
/// `max(z, 0) − z·y + ln(1 + e^{−|z|})`; gradient `σ(z) − y`.
pub fn binary_cross_entropy_with_logits(
    logits: &[f32],
    target: &[f32],
    n: usize,
    reduction: Reduction,
    grad: Option<&mut [f32]>,
) -> Result<f32, LossError> {
    check_binary_targets(target, target.len().checked_div(n).unwrap_or(1))?;
    Ok(pointwise_loss(
        logits,
        target,
        n,
        reduction,
        grad,
        |z, y| {
            let v = z.max(0.0) - z * y + libm::log1pf(libm::expf(-z.abs()));
            (v, sigmoid(z) - y)
        },
    ))
}
