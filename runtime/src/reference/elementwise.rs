//! Reference elementwise ops: add, accumulate, scale, concat and split, and
//! inverted dropout (whose mask is the same function of seed and index as
//! the fast kernel's, [`crate::kernels::elementwise::dropout_keeps`]).

use super::Real;
use crate::kernels::elementwise::{dropout_keeps, dropout_scale};

/// `y = Σᵢ inputs[i]`, elementwise.
pub fn add<T: Real>(inputs: &[&[T]], y: &mut [T]) {
    for (k, yv) in y.iter_mut().enumerate() {
        *yv = inputs.iter().map(|x| x[k]).sum();
    }
}

/// `acc += a·x`, elementwise.
pub fn accumulate_scaled<T: Real>(acc: &mut [T], a: T, x: &[T]) {
    for (av, &xv) in acc.iter_mut().zip(x) {
        *av += a * xv;
    }
}

/// `y = a·x`, elementwise.
pub fn scale<T: Real>(x: &[T], a: T, y: &mut [T]) {
    for (yv, &xv) in y.iter_mut().zip(x) {
        *yv = a * xv;
    }
}

/// Concat along the middle axis of `[outer, sizes[i], inner]` inputs.
pub fn concat<T: Real>(inputs: &[&[T]], sizes: &[usize], outer: usize, inner: usize, y: &mut [T]) {
    let total: usize = sizes.iter().sum();
    for o in 0..outer {
        let mut base = 0;
        for (x, &d) in inputs.iter().zip(sizes) {
            for c in 0..d {
                for s in 0..inner {
                    y[(o * total + base + c) * inner + s] = x[(o * d + c) * inner + s];
                }
            }
            base += d;
        }
    }
}

/// Concat's backward: the parts of `dy` back into each input's shape.
pub fn split<T: Real>(
    dy: &[T],
    sizes: &[usize],
    outer: usize,
    inner: usize,
    outputs: &mut [Vec<T>],
) {
    let total: usize = sizes.iter().sum();
    for o in 0..outer {
        let mut base = 0;
        for (out, &d) in outputs.iter_mut().zip(sizes) {
            for c in 0..d {
                for s in 0..inner {
                    out[(o * d + c) * inner + s] = dy[(o * total + base + c) * inner + s];
                }
            }
            base += d;
        }
    }
}

/// Inverted dropout: kept elements scaled by 1/(1 − p), others zero.
/// Backward is the same function applied to `dy`.
pub fn dropout<T: Real>(x: &[T], y: &mut [T], p: f32, seed: u64, offset: u64) {
    let s = T::from_f64(dropout_scale(p) as f64);
    for (i, (yv, &xv)) in y.iter_mut().zip(x).enumerate() {
        *yv = if dropout_keeps(seed, offset + i as u64, p) {
            xv * s
        } else {
            T::ZERO
        };
    }
}
