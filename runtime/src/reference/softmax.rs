//! Reference softmax and log-softmax over the `dim` axis of an
//! `[outer, dim, inner]` tensor, forward and backward, accumulating in f64.

use super::Real;
use crate::kernels::softmax::AxisShape;

/// The index of `(o, d, s)` in an `[outer, dim, inner]` tensor.
fn at(shape: AxisShape, o: usize, d: usize, s: usize) -> usize {
    (o * shape.dim + d) * shape.inner + s
}

/// Softmax (`log = false`) or log-softmax (`log = true`) over the axis.
fn normalize<T: Real>(x: &[T], y: &mut [T], shape: AxisShape, log: bool) {
    for o in 0..shape.outer {
        for s in 0..shape.inner {
            let mut m = x[at(shape, o, 0, s)].to_f64();
            for d in 1..shape.dim {
                m = m.max(x[at(shape, o, d, s)].to_f64());
            }
            let total: f64 = (0..shape.dim)
                .map(|d| (x[at(shape, o, d, s)].to_f64() - m).exp())
                .sum();
            for d in 0..shape.dim {
                let i = at(shape, o, d, s);
                let v = x[i].to_f64() - m;
                y[i] = T::from_f64(if log { v - total.ln() } else { v.exp() / total });
            }
        }
    }
}

/// Softmax over the axis.
pub fn softmax_forward<T: Real>(x: &[T], y: &mut [T], shape: AxisShape) {
    normalize(x, y, shape, false);
}

/// Log-softmax over the axis.
pub fn log_softmax_forward<T: Real>(x: &[T], y: &mut [T], shape: AxisShape) {
    normalize(x, y, shape, true);
}

/// Softmax backward from the output: `dx = y ⊙ (dy − Σ dy⊙y)`.
pub fn softmax_backward<T: Real>(y: &[T], dy: &[T], dx: &mut [T], shape: AxisShape) {
    for o in 0..shape.outer {
        for s in 0..shape.inner {
            let t: f64 = (0..shape.dim)
                .map(|d| {
                    let i = at(shape, o, d, s);
                    y[i].to_f64() * dy[i].to_f64()
                })
                .sum();
            for d in 0..shape.dim {
                let i = at(shape, o, d, s);
                dx[i] = T::from_f64(y[i].to_f64() * (dy[i].to_f64() - t));
            }
        }
    }
}

/// Log-softmax backward from the output: `dx = dy − exp(y) Σ dy`.
pub fn log_softmax_backward<T: Real>(y: &[T], dy: &[T], dx: &mut [T], shape: AxisShape) {
    for o in 0..shape.outer {
        for s in 0..shape.inner {
            let t: f64 = (0..shape.dim)
                .map(|d| dy[at(shape, o, d, s)].to_f64())
                .sum();
            for d in 0..shape.dim {
                let i = at(shape, o, d, s);
                dx[i] = T::from_f64(dy[i].to_f64() - y[i].to_f64().exp() * t);
            }
        }
    }
}
