//! Reference losses: each returns the reduced loss of a batch and writes the
//! gradient with respect to its input, with the conventions of
//! [`crate::kernels::loss`] (per-example sums, then mean or sum over the
//! batch), accumulating in f64.

use super::Real;
use crate::kernels::loss::{
    BCE_GRAD_EPS, BCE_LOG_FLOOR, LossError, Reduction, check_binary_targets, check_labels,
};

/// Cross-entropy from logits `[n, classes]` (softmax fused).
pub fn cross_entropy<T: Real>(
    logits: &[T],
    labels: &[u32],
    classes: usize,
    reduction: Reduction,
    grad: &mut [T],
) -> Result<T, LossError> {
    check_labels(labels, classes)?;
    let r = reduction.factor(labels.len());
    let mut total = 0.0;
    for (i, &label) in labels.iter().enumerate() {
        let z: Vec<f64> = logits[i * classes..(i + 1) * classes]
            .iter()
            .map(|v| v.to_f64())
            .collect();
        let m = z.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
        let s: f64 = z.iter().map(|v| (v - m).exp()).sum();
        total += m + s.ln() - z[label as usize];
        for j in 0..classes {
            let onehot = if j == label as usize { 1.0 } else { 0.0 };
            grad[i * classes + j] = T::from_f64(((z[j] - m).exp() / s - onehot) * r);
        }
    }
    Ok(T::from_f64(total * r))
}

/// Negative log-likelihood of log-probabilities `[n, classes]`.
pub fn nll<T: Real>(
    log_probs: &[T],
    labels: &[u32],
    classes: usize,
    reduction: Reduction,
    grad: &mut [T],
) -> Result<T, LossError> {
    check_labels(labels, classes)?;
    let r = reduction.factor(labels.len());
    let mut total = 0.0;
    grad.fill(T::ZERO);
    for (i, &label) in labels.iter().enumerate() {
        let k = i * classes + label as usize;
        total -= log_probs[k].to_f64();
        grad[k] = T::from_f64(-r);
    }
    Ok(T::from_f64(total * r))
}

/// Multiclass hinge (SVM) loss of scores `[n, classes]`.
pub fn multiclass_hinge<T: Real>(
    scores: &[T],
    labels: &[u32],
    classes: usize,
    margin: f64,
    reduction: Reduction,
    grad: &mut [T],
) -> Result<T, LossError> {
    check_labels(labels, classes)?;
    let r = reduction.factor(labels.len());
    let mut total = 0.0;
    for (i, &label) in labels.iter().enumerate() {
        let y = label as usize;
        let sy = scores[i * classes + y].to_f64();
        let mut count = 0.0;
        for j in 0..classes {
            let m = scores[i * classes + j].to_f64() - sy + margin;
            if j != y && m > 0.0 {
                total += m;
                count += 1.0;
                grad[i * classes + j] = T::from_f64(r);
            } else {
                grad[i * classes + j] = T::ZERO;
            }
        }
        grad[i * classes + y] = T::from_f64(-r * count);
    }
    Ok(T::from_f64(total * r))
}

/// Applies `(value, derivative) = f(o, t)` in f64 over a batch of `n`.
fn pointwise<T: Real>(
    output: &[T],
    target: &[T],
    n: usize,
    reduction: Reduction,
    grad: &mut [T],
    f: impl Fn(f64, f64) -> (f64, f64),
) -> T {
    let r = reduction.factor(n);
    let mut total = 0.0;
    for i in 0..output.len() {
        let (v, d) = f(output[i].to_f64(), target[i].to_f64());
        total += v;
        grad[i] = T::from_f64(d * r);
    }
    T::from_f64(total * r)
}

/// MSE as ½‖o − y‖² per example.
pub fn mse<T: Real>(o: &[T], y: &[T], n: usize, reduction: Reduction, grad: &mut [T]) -> T {
    pointwise(o, y, n, reduction, grad, |o, t| {
        (0.5 * (o - t) * (o - t), o - t)
    })
}

/// L1 loss `Σ|o − y|` per example.
pub fn l1<T: Real>(o: &[T], y: &[T], n: usize, reduction: Reduction, grad: &mut [T]) -> T {
    pointwise(o, y, n, reduction, grad, |o, t| {
        let d = o - t;
        (d.abs(), if d == 0.0 { 0.0 } else { d.signum() })
    })
}

/// Huber loss with threshold `delta`.
pub fn huber<T: Real>(
    o: &[T],
    y: &[T],
    n: usize,
    delta: f64,
    reduction: Reduction,
    grad: &mut [T],
) -> T {
    pointwise(o, y, n, reduction, grad, |o, t| {
        let d = o - t;
        if d.abs() < delta {
            (0.5 * d * d, d)
        } else {
            (delta * (d.abs() - 0.5 * delta), delta * d.signum())
        }
    })
}

/// Binary cross-entropy from probabilities.
pub fn binary_cross_entropy<T: Real>(
    p: &[T],
    y: &[T],
    n: usize,
    reduction: Reduction,
    grad: &mut [T],
) -> Result<T, LossError> {
    let t32: Vec<f32> = y.iter().map(|v| v.to_f64() as f32).collect();
    check_binary_targets(&t32, y.len().checked_div(n).unwrap_or(1))?;
    let floor = BCE_LOG_FLOOR as f64;
    Ok(pointwise(p, y, n, reduction, grad, |p, t| {
        let v = -(t * p.ln().max(floor) + (1.0 - t) * (1.0 - p).ln().max(floor));
        (v, (p - t) / (p * (1.0 - p)).max(BCE_GRAD_EPS as f64))
    }))
}

/// Binary cross-entropy from logits.
pub fn binary_cross_entropy_with_logits<T: Real>(
    z: &[T],
    y: &[T],
    n: usize,
    reduction: Reduction,
    grad: &mut [T],
) -> Result<T, LossError> {
    let t32: Vec<f32> = y.iter().map(|v| v.to_f64() as f32).collect();
    check_binary_targets(&t32, y.len().checked_div(n).unwrap_or(1))?;
    Ok(pointwise(z, y, n, reduction, grad, |z, t| {
        let v = z.max(0.0) - z * t + (-z.abs()).exp().ln_1p();
        (v, 1.0 / (1.0 + (-z).exp()) - t)
    }))
}
