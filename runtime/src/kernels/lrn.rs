//! Fast local response normalization across channels (AlexNet's LRN, with
//! PyTorch's convention of dividing α by the window size):
//! `y_c = x_c / (k + α/n · Σ_{j ∈ win(c)} x_j²)^β`, where `win(c)` is the
//! channels `c − ⌊n/2⌋ ..= c + ⌊(n − 1)/2⌋` that exist.
//!
//! Each output plane (one example, one channel) is a task: its window's
//! squares are summed plane by plane into the output (vectorizable along
//! space), then turned into the result, so the forward needs no scratch.
//! The backward takes one input-sized scratch buffer from the caller. The
//! power `D^{−β}` is `exp(−β ln D)` through the vectorizable approximations
//! of [`super::activation`], so the inner loops carry no libm call.

use super::activation::{ChannelShape, exp_approx, ln_approx};
use super::parallel::for_each_chunk_mut;

/// LRN's constants: window `size` (n), `alpha`, `beta` and `k`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Lrn {
    /// Channels in the window (n, at least 1).
    pub size: usize,
    /// α (divided by `size` when applied).
    pub alpha: f32,
    /// β, the exponent.
    pub beta: f32,
    /// k, the additive constant.
    pub k: f32,
}

impl Lrn {
    /// AlexNet's constants as the language's defaults: n = 5, α = 1e-4,
    /// β = 0.75, k = 2.
    pub const ALEXNET: Lrn = Lrn {
        size: 5,
        alpha: 1e-4,
        beta: 0.75,
        k: 2.0,
    };

    /// The channels `[start, end)` of the window of channel `c` among `cs`.
    pub fn window(&self, c: usize, cs: usize) -> (usize, usize) {
        let lo = self.size / 2;
        let hi = (self.size - 1) / 2;
        (c.saturating_sub(lo), (c + hi + 1).min(cs))
    }

    /// The channels whose windows contain channel `i`, `[start, end)`.
    pub fn windows_containing(&self, i: usize, cs: usize) -> (usize, usize) {
        let lo = self.size / 2;
        let hi = (self.size - 1) / 2;
        (i.saturating_sub(hi), (i + lo + 1).min(cs))
    }
}

/// `dᵉ` for `d > 0` as `exp(e·ln d)` with the vectorizable approximations
/// (a few ulp; `d` below the smallest normal counts as it).
#[inline(always)]
fn pow_approx(d: f32, e: f32) -> f32 {
    exp_approx(e * ln_approx(d))
}

/// Writes `d = Σ_{j ∈ win(c)} x_j²` for output plane `plane` into `d`.
#[inline(always)]
fn window_sum_of_squares(x: &[f32], d: &mut [f32], shape: ChannelShape, p: Lrn, plane: usize) {
    let s = shape.spatial;
    let (b, c) = (plane / shape.c, plane % shape.c);
    let (start, end) = p.window(c, shape.c);
    d.fill(0.0);
    for j in start..end {
        let xj = &x[(b * shape.c + j) * s..][..s];
        for (dv, &v) in d.iter_mut().zip(xj) {
            *dv += v * v;
        }
    }
}

/// LRN forward.
pub fn lrn_forward(x: &[f32], y: &mut [f32], shape: ChannelShape, p: Lrn) {
    assert!(p.size > 0, "lrn: window size must be positive");
    assert!(
        x.len() == shape.len() && y.len() == shape.len(),
        "lrn: tensor lengths"
    );
    let s = shape.spatial;
    if shape.is_empty() {
        return;
    }
    let a = p.alpha / p.size as f32;
    for_each_chunk_mut(y, s, shape.len() * (p.size + 8), |plane, yc| {
        window_sum_of_squares(x, yc, shape, p, plane);
        let xc = &x[plane * s..(plane + 1) * s];
        for (yv, &xv) in yc.iter_mut().zip(xc) {
            *yv = xv * pow_approx(p.k + a * *yv, -p.beta);
        }
    });
}

/// LRN backward from the forward's input `x`: writes `dx`, using `scratch`
/// (input-sized, contents ignored) for `t_c = dy_c·x_c·D_c^{−β−1}`, then
/// `dx_i = dy_i·D_i^{−β} − (2αβ/n)·x_i·Σ_{c : i ∈ win(c)} t_c`.
pub fn lrn_backward(
    x: &[f32],
    dy: &[f32],
    dx: &mut [f32],
    scratch: &mut [f32],
    shape: ChannelShape,
    p: Lrn,
) {
    assert!(p.size > 0, "lrn: window size must be positive");
    assert!(
        x.len() == shape.len()
            && dy.len() == shape.len()
            && dx.len() == shape.len()
            && scratch.len() == shape.len(),
        "lrn backward: tensor lengths"
    );
    let s = shape.spatial;
    if shape.is_empty() {
        return;
    }
    let a = p.alpha / p.size as f32;
    let work = shape.len() * (p.size + 8);
    for_each_chunk_mut(scratch, s, work, |plane, tc| {
        window_sum_of_squares(x, tc, shape, p, plane);
        let (xc, gc) = (
            &x[plane * s..(plane + 1) * s],
            &dy[plane * s..(plane + 1) * s],
        );
        for ((t, &xv), &g) in tc.iter_mut().zip(xc).zip(gc) {
            *t = g * xv * pow_approx(p.k + a * *t, -p.beta - 1.0);
        }
    });
    let t = &*scratch;
    let coef = 2.0 * a * p.beta;
    for_each_chunk_mut(dx, s, work, |plane, dc| {
        let (b, i) = (plane / shape.c, plane % shape.c);
        // dx first holds D_i's window sum, then the result, element by
        // element, with the window of t summed in channel order.
        window_sum_of_squares(x, dc, shape, p, plane);
        let (start, end) = p.windows_containing(i, shape.c);
        let (xc, gc) = (
            &x[plane * s..(plane + 1) * s],
            &dy[plane * s..(plane + 1) * s],
        );
        for (k, d) in dc.iter_mut().enumerate() {
            let mut acc = 0.0f32;
            for c in start..end {
                acc += t[(b * shape.c + c) * s + k];
            }
            *d = gc[k] * pow_approx(p.k + a * *d, -p.beta) - coef * xc[k] * acc;
        }
    });
}
