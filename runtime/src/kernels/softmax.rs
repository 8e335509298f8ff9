//! Fast softmax and log-softmax over one axis, forward and backward.
//!
//! A tensor is seen as `[outer, dim, inner]` and normalized over `dim`: for
//! `[N, D]` logits `outer = N, dim = D, inner = 1`; for softmax over the
//! channels of an NCHW batch `outer = N, dim = C, inner = H·W`. Both forms
//! subtract the maximum first, so no input overflows. Contiguous rows
//! (`inner = 1`) run as vectorizable loops with [`exp_approx`] and eight
//! partial sums; other shapes walk each column with stride `inner`. Work is
//! split per outer block, so results do not depend on the thread count.

use super::activation::exp_approx;
use super::parallel::for_each_chunk_mut;

/// A tensor seen as `[outer, dim, inner]`, reduced over `dim`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AxisShape {
    /// The product of the dimensions before the axis (including the batch).
    pub outer: usize,
    /// The length of the axis.
    pub dim: usize,
    /// The product of the dimensions after the axis.
    pub inner: usize,
}

impl AxisShape {
    /// Rows of `dim` values: `[n, dim]` with the axis last.
    pub fn rows(n: usize, dim: usize) -> Self {
        AxisShape {
            outer: n,
            dim,
            inner: 1,
        }
    }

    /// The number of elements.
    pub fn len(&self) -> usize {
        self.outer * self.dim * self.inner
    }

    /// Whether the tensor has no elements.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// The largest value of a non-empty slice, with eight partial maxima.
#[inline(always)]
pub(crate) fn max_of(x: &[f32]) -> f32 {
    let mut acc = [x[0]; 8];
    let mut it = x.chunks_exact(8);
    for c in &mut it {
        for l in 0..8 {
            acc[l] = if c[l] > acc[l] { c[l] } else { acc[l] };
        }
    }
    let mut m = acc[0];
    for &v in acc[1..].iter().chain(it.remainder()) {
        m = if v > m { v } else { m };
    }
    m
}

/// The sum of a slice with eight partial sums combined in a fixed tree.
#[inline(always)]
pub(crate) fn sum_of(x: &[f32]) -> f32 {
    let mut acc = [0.0f32; 8];
    let mut it = x.chunks_exact(8);
    for c in &mut it {
        for l in 0..8 {
            acc[l] += c[l];
        }
    }
    let tail: f32 = it.remainder().iter().sum();
    ((acc[0] + acc[4]) + (acc[1] + acc[5])) + ((acc[2] + acc[6]) + (acc[3] + acc[7])) + tail
}

/// Σ a·b with eight partial sums combined in a fixed tree.
#[inline(always)]
pub(crate) fn dot_of(a: &[f32], b: &[f32]) -> f32 {
    let mut acc = [0.0f32; 8];
    let mut ia = a.chunks_exact(8);
    let mut ib = b.chunks_exact(8);
    for (ca, cb) in (&mut ia).zip(&mut ib) {
        for l in 0..8 {
            acc[l] += ca[l] * cb[l];
        }
    }
    let mut tail = 0.0f32;
    for (&u, &v) in ia.remainder().iter().zip(ib.remainder()) {
        tail += u * v;
    }
    ((acc[0] + acc[4]) + (acc[1] + acc[5])) + ((acc[2] + acc[6]) + (acc[3] + acc[7])) + tail
}

/// Softmax of one contiguous row.
#[inline]
pub fn softmax_row(x: &[f32], y: &mut [f32]) {
    if x.is_empty() {
        return;
    }
    let m = max_of(x);
    for (yv, &xv) in y.iter_mut().zip(x) {
        *yv = exp_approx(xv - m);
    }
    let inv = 1.0 / sum_of(y);
    for yv in y.iter_mut() {
        *yv *= inv;
    }
}

/// Log-softmax of one contiguous row.
#[inline]
pub fn log_softmax_row(x: &[f32], y: &mut [f32]) {
    if x.is_empty() {
        return;
    }
    let m = max_of(x);
    for (yv, &xv) in y.iter_mut().zip(x) {
        *yv = exp_approx(xv - m);
    }
    let lse = m + libm::logf(sum_of(y));
    for (yv, &xv) in y.iter_mut().zip(x) {
        *yv = xv - lse;
    }
}

/// Runs `row` on every contiguous row (`inner == 1`) or `strided` on every
/// column of a block, one outer block per task.
fn per_block<R, S>(x: &[f32], y: &mut [f32], shape: AxisShape, cost: usize, row: R, strided: S)
where
    R: Fn(&[f32], &mut [f32]) + Sync + Send,
    S: Fn(&[f32], &mut [f32], usize, usize) + Sync + Send,
{
    assert!(
        x.len() == shape.len() && y.len() == shape.len(),
        "softmax: tensor lengths"
    );
    if shape.is_empty() {
        return;
    }
    let block = shape.dim * shape.inner;
    for_each_chunk_mut(y, block, shape.len() * cost, |o, yc| {
        let xc = &x[o * block..(o + 1) * block];
        if shape.inner == 1 {
            row(xc, yc);
        } else {
            for s in 0..shape.inner {
                strided(xc, yc, s, shape.inner);
            }
        }
    });
}

/// Softmax over one strided column `x[s], x[s + stride], …` of a block.
fn softmax_column(x: &[f32], y: &mut [f32], s: usize, stride: usize) {
    let dim = x.len() / stride;
    let mut m = x[s];
    for d in 1..dim {
        let v = x[d * stride + s];
        m = if v > m { v } else { m };
    }
    let mut total = 0.0f32;
    for d in 0..dim {
        let e = exp_approx(x[d * stride + s] - m);
        y[d * stride + s] = e;
        total += e;
    }
    let inv = 1.0 / total;
    for d in 0..dim {
        y[d * stride + s] *= inv;
    }
}

/// Log-softmax over one strided column of a block.
fn log_softmax_column(x: &[f32], y: &mut [f32], s: usize, stride: usize) {
    let dim = x.len() / stride;
    let mut m = x[s];
    for d in 1..dim {
        let v = x[d * stride + s];
        m = if v > m { v } else { m };
    }
    let mut total = 0.0f32;
    for d in 0..dim {
        total += exp_approx(x[d * stride + s] - m);
    }
    let lse = m + libm::logf(total);
    for d in 0..dim {
        y[d * stride + s] = x[d * stride + s] - lse;
    }
}

/// Softmax over the axis of `shape`: `y = exp(x − max) / Σ exp(x − max)`.
pub fn softmax_forward(x: &[f32], y: &mut [f32], shape: AxisShape) {
    per_block(x, y, shape, 8, softmax_row, softmax_column);
}

/// Log-softmax over the axis of `shape`: `y = x − max − ln Σ exp(x − max)`.
pub fn log_softmax_forward(x: &[f32], y: &mut [f32], shape: AxisShape) {
    per_block(x, y, shape, 8, log_softmax_row, log_softmax_column);
}

/// Runs a backward rule per block: `row(y, dy, dx)` on contiguous rows, or
/// `strided(y, dy, dx, s, stride)` on the columns of a block.
fn per_block_backward<R, S>(
    y: &[f32],
    dy: &[f32],
    dx: &mut [f32],
    shape: AxisShape,
    row: R,
    strided: S,
) where
    R: Fn(&[f32], &[f32], &mut [f32]) + Sync + Send,
    S: Fn(&[f32], &[f32], &mut [f32], usize, usize) + Sync + Send,
{
    assert!(
        y.len() == shape.len() && dy.len() == shape.len() && dx.len() == shape.len(),
        "softmax backward: tensor lengths"
    );
    if shape.is_empty() {
        return;
    }
    let block = shape.dim * shape.inner;
    for_each_chunk_mut(dx, block, shape.len() * 4, |o, dc| {
        let yc = &y[o * block..(o + 1) * block];
        let gc = &dy[o * block..(o + 1) * block];
        if shape.inner == 1 {
            row(yc, gc, dc);
        } else {
            for s in 0..shape.inner {
                strided(yc, gc, dc, s, shape.inner);
            }
        }
    });
}

/// Softmax backward from its output `y`: `dx = y ⊙ (dy − Σ dy⊙y)`.
pub fn softmax_backward(y: &[f32], dy: &[f32], dx: &mut [f32], shape: AxisShape) {
    per_block_backward(
        y,
        dy,
        dx,
        shape,
        |y, g, d| {
            let t = dot_of(y, g);
            for ((dv, &yv), &gv) in d.iter_mut().zip(y).zip(g) {
                *dv = yv * (gv - t);
            }
        },
        |y, g, d, s, stride| {
            let dim = y.len() / stride;
            let mut t = 0.0f32;
            for k in 0..dim {
                t += y[k * stride + s] * g[k * stride + s];
            }
            for k in 0..dim {
                let i = k * stride + s;
                d[i] = y[i] * (g[i] - t);
            }
        },
    );
}

/// Log-softmax backward from its output `y`: `dx = dy − exp(y) Σ dy`.
pub fn log_softmax_backward(y: &[f32], dy: &[f32], dx: &mut [f32], shape: AxisShape) {
    per_block_backward(
        y,
        dy,
        dx,
        shape,
        |y, g, d| {
            let t = sum_of(g);
            for ((dv, &yv), &gv) in d.iter_mut().zip(y).zip(g) {
                *dv = gv - exp_approx(yv) * t;
            }
        },
        |y, g, d, s, stride| {
            let dim = y.len() / stride;
            let mut t = 0.0f32;
            for k in 0..dim {
                t += g[k * stride + s];
            }
            for k in 0..dim {
                let i = k * stride + s;
                d[i] = g[i] - exp_approx(y[i]) * t;
            }
        },
    );
}
