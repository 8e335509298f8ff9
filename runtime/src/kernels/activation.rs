//! Fast activation kernels: every [`Activation`] as a standalone op (forward
//! and backward), PReLU with its weight gradient, and maxout over channel
//! groups with its argmax.
//!
//! Each activation is matched once, outside the loop, so every variant gets
//! its own tight loop that the compiler auto-vectorizes; the exponential
//! behind sigmoid, swish, ELU and SELU is [`exp_approx`] and tanh is
//! [`tanh_approx`], polynomials written in plain f32 arithmetic so that they
//! vectorize too ([`ln_approx`] serves LRN's power). Work is split
//! into fixed-size chunks handed to [`super::parallel`], so a result never
//! depends on the number of threads. Everything here is allocation-free and
//! builds without `std`.

use super::parallel::{for_each_chunk_mut, for_each_chunk_pair_mut};
use crate::activation::{Activation, SELU_ALPHA, SELU_SCALE};

/// Elements per parallel task in the pointwise kernels.
pub const ELEMENT_CHUNK: usize = 1 << 14;

/// eˣ in f32 to within about two ulp over the range where it is finite and
/// normal, written so that loops over it auto-vectorize (no branches, no
/// calls). Inputs are clamped to [−87.3, 88.0]: below, the result is the
/// smallest normal-range value (≈1.2e−38) instead of 0; above, it saturates
/// at e⁸⁸ instead of overflowing.
#[inline(always)]
pub fn exp_approx(x: f32) -> f32 {
    const LOG2E: f32 = core::f32::consts::LOG2_E;
    // ln 2 split in a part exact in few bits and a correction (Cephes).
    const LN2_HI: f32 = 0.693_359_4;
    const LN2_LO: f32 = -2.121_944_4e-4;
    // 1.5 · 2²³: adding and subtracting it rounds to the nearest integer.
    const ROUND: f32 = 12_582_912.0;
    let x = x.clamp(-87.3, 88.0);
    // t holds n = round(x·log₂e) in its low mantissa bits: t's bits are
    // those of 1.5·2²³ plus n.
    let t = x * LOG2E + ROUND;
    let n = t - ROUND;
    let r = x - n * LN2_HI - n * LN2_LO;
    let mut p = 1.987_569_1e-4;
    p = p * r + 1.398_2e-3;
    p = p * r + 8.333_452e-3;
    p = p * r + 4.166_579_6e-2;
    p = p * r + 0.166_666_65;
    p = p * r + 0.5;
    let er = p * r * r + r + 1.0;
    // 2ⁿ built from the bits of t (no float-to-int conversion).
    let two_n = f32::from_bits(t.to_bits().wrapping_sub(0x4B40_0000 - 127) << 23);
    er * two_n
}

/// tanh x in f32 to within a few ulp, vectorizable: an odd polynomial for
/// |x| < 0.625 (Cephes' `tanhf`) and `1 − 2/(e^{2|x|} + 1)` above, chosen
/// without a branch; saturates to ±1 for large |x|.
#[inline(always)]
pub fn tanh_approx(x: f32) -> f32 {
    let z = x.abs();
    let s = x * x;
    let mut p = -5.704_988_7e-3;
    p = p * s + 2.063_909e-2;
    p = p * s - 5.373_971_6e-2;
    p = p * s + 0.133_314_42;
    p = p * s - 0.333_332_8;
    let small = p * s * x + x;
    let big = 1.0 - 2.0 / (exp_approx(z + z) + 1.0);
    let big = if x < 0.0 { -big } else { big };
    if z < 0.625 { small } else { big }
}

/// ln x in f32 to within a few ulp for positive normal `x`, vectorizable
/// (Cephes' `logf`: the exponent from the bits, a polynomial for the
/// mantissa). Inputs below the smallest normal are treated as it; the
/// result for non-positive or non-finite `x` is unspecified.
#[inline(always)]
pub fn ln_approx(x: f32) -> f32 {
    const SQRT_HALF: f32 = core::f32::consts::FRAC_1_SQRT_2;
    let x = x.max(f32::MIN_POSITIVE);
    let bits = x.to_bits();
    let e = ((bits >> 23) & 0xff) as i32 - 126;
    // The mantissa in [0.5, 1).
    let m = f32::from_bits((bits & 0x807f_ffff) | 0x3f00_0000);
    let below = m < SQRT_HALF;
    let e = (if below { e - 1 } else { e }) as f32;
    let f = if below { m + m - 1.0 } else { m - 1.0 };
    let z = f * f;
    let mut y = 7.037_683_6e-2;
    y = y * f - 0.115_146_1;
    y = y * f + 0.116_769_99;
    y = y * f - 0.124_201_41;
    y = y * f + 0.142_493_23;
    y = y * f - 0.166_680_57;
    y = y * f + 0.200_007_15;
    y = y * f - 0.249_999_94;
    y = y * f + 0.333_333_3;
    let mut r = y * f * z;
    r += -2.121_944_4e-4 * e;
    r += -0.5 * z;
    f + r + 0.693_359_4 * e
}

/// The logistic function through [`exp_approx`]; exact limits 0 and 1 are
/// approached without overflow for any finite input.
#[inline(always)]
fn sigmoid_fast(x: f32) -> f32 {
    1.0 / (1.0 + exp_approx(-x))
}

/// Applies `f` to every element of `x`, writing `y`, in parallel chunks.
#[inline(always)]
fn map_unary<F: Fn(f32) -> f32 + Sync + Send>(x: &[f32], y: &mut [f32], cost: usize, f: F) {
    assert_eq!(x.len(), y.len(), "activation: input and output lengths");
    let work = x.len() * cost;
    for_each_chunk_mut(y, ELEMENT_CHUNK, work, |i, yc| {
        let xc = &x[i * ELEMENT_CHUNK..][..yc.len()];
        for (yv, &xv) in yc.iter_mut().zip(xc) {
            *yv = f(xv);
        }
    });
}

/// Applies `f` to every element of `y` in place, in parallel chunks.
#[inline(always)]
fn map_in_place<F: Fn(f32) -> f32 + Sync + Send>(y: &mut [f32], cost: usize, f: F) {
    let work = y.len() * cost;
    for_each_chunk_mut(y, ELEMENT_CHUNK, work, |_, yc| {
        for yv in yc.iter_mut() {
            *yv = f(*yv);
        }
    });
}

/// Computes `dx = g(x, dy)` elementwise, in parallel chunks.
#[inline(always)]
fn map_binary<F: Fn((f32, f32)) -> f32 + Sync + Send>(
    x: &[f32],
    dy: &[f32],
    dx: &mut [f32],
    cost: usize,
    g: F,
) {
    assert!(
        x.len() == dx.len() && dy.len() == dx.len(),
        "activation backward: x, dy and dx lengths"
    );
    let work = x.len() * cost;
    for_each_chunk_mut(dx, ELEMENT_CHUNK, work, |i, dc| {
        let xc = &x[i * ELEMENT_CHUNK..][..dc.len()];
        let gc = &dy[i * ELEMENT_CHUNK..][..dc.len()];
        for ((d, &xv), &gv) in dc.iter_mut().zip(xc).zip(gc) {
            *d = g((xv, gv));
        }
    });
}

/// The forward rule of `act` at `v` with the vectorizable approximations:
/// exactly what [`activation_forward`] computes per element (and what
/// [`Activation::apply_fast`] returns, for epilogues that must match).
#[inline(always)]
pub fn forward_fast(act: Activation, v: f32) -> f32 {
    match act {
        Activation::Identity => v,
        Activation::Relu => v.max(0.0),
        Activation::LeakyRelu(a) => {
            if v > 0.0 {
                v
            } else {
                a * v
            }
        }
        Activation::Elu(a) => {
            let e = a * (exp_approx(v) - 1.0);
            if v > 0.0 { v } else { e }
        }
        Activation::Selu => {
            let e = SELU_SCALE * SELU_ALPHA * (exp_approx(v) - 1.0);
            if v > 0.0 { SELU_SCALE * v } else { e }
        }
        Activation::Sigmoid => sigmoid_fast(v),
        Activation::Tanh => tanh_approx(v),
        Activation::Swish => v * sigmoid_fast(v),
        Activation::Step => {
            if v > 0.0 {
                1.0
            } else {
                0.0
            }
        }
    }
}

/// The backward rule of `act`: `g · act'(v)` with the approximations,
/// exactly what [`activation_backward`] computes per element.
#[inline(always)]
pub fn backward_fast(act: Activation, v: f32, g: f32) -> f32 {
    match act {
        Activation::Identity => g,
        Activation::Relu => {
            if v > 0.0 {
                g
            } else {
                0.0
            }
        }
        Activation::LeakyRelu(a) => {
            if v > 0.0 {
                g
            } else {
                a * g
            }
        }
        Activation::Elu(a) => {
            let d = a * exp_approx(v);
            if v > 0.0 { g } else { g * d }
        }
        Activation::Selu => {
            let d = SELU_SCALE * SELU_ALPHA * exp_approx(v);
            if v > 0.0 { g * SELU_SCALE } else { g * d }
        }
        Activation::Sigmoid => {
            let s = sigmoid_fast(v);
            g * s * (1.0 - s)
        }
        Activation::Tanh => {
            let t = tanh_approx(v);
            g * (1.0 - t * t)
        }
        Activation::Swish => {
            let s = sigmoid_fast(v);
            g * (s + v * s * (1.0 - s))
        }
        Activation::Step => 0.0,
    }
}

/// Work per element of an activation, for the parallel threshold.
fn cost(act: Activation) -> usize {
    match act {
        Activation::Identity | Activation::Relu | Activation::LeakyRelu(_) | Activation::Step => 1,
        _ => 8,
    }
}

/// Dispatches `$map` with `$rule` specialized to each variant: inside each
/// arm the variant is a constant, so the rule's `match` folds away and each
/// variant gets its own tight loop.
macro_rules! per_variant {
    ($act:expr, $rule:ident, $map:ident, $($arg:expr),*) => {{
        let c = cost($act);
        match $act {
            Activation::Identity => $map($($arg,)* c, |v| $rule(Activation::Identity, v)),
            Activation::Relu => $map($($arg,)* c, |v| $rule(Activation::Relu, v)),
            Activation::LeakyRelu(a) => $map($($arg,)* c, move |v| $rule(Activation::LeakyRelu(a), v)),
            Activation::Elu(a) => $map($($arg,)* c, move |v| $rule(Activation::Elu(a), v)),
            Activation::Selu => $map($($arg,)* c, |v| $rule(Activation::Selu, v)),
            Activation::Sigmoid => $map($($arg,)* c, |v| $rule(Activation::Sigmoid, v)),
            Activation::Tanh => $map($($arg,)* c, |v| $rule(Activation::Tanh, v)),
            Activation::Swish => $map($($arg,)* c, |v| $rule(Activation::Swish, v)),
            Activation::Step => $map($($arg,)* c, |v| $rule(Activation::Step, v)),
        }
    }};
}

/// `backward_fast` taking its two inputs as a pair, for [`per_variant`].
#[inline(always)]
fn backward_pair(act: Activation, vg: (f32, f32)) -> f32 {
    backward_fast(act, vg.0, vg.1)
}

/// `y = act(x)` elementwise. `x` and `y` have the same length.
pub fn activation_forward(act: Activation, x: &[f32], y: &mut [f32]) {
    per_variant!(act, forward_fast, map_unary, x, y)
}

/// `y = act(y)` elementwise, in place.
pub fn activation_forward_in_place(act: Activation, y: &mut [f32]) {
    per_variant!(act, forward_fast, map_in_place, y)
}

/// `dx = dy · act'(x)` elementwise, where `x` is the activation's input (the
/// pre-activation value). For `Step` the derivative is zero everywhere, so
/// `dx` is zero (the op has no useful gradient; see
/// [`Activation::is_differentiable`]).
pub fn activation_backward(act: Activation, x: &[f32], dy: &[f32], dx: &mut [f32]) {
    per_variant!(act, backward_pair, map_binary, x, dy, dx)
}

/// The shape PReLU and maxout see: `n` examples of `c` channels of
/// `spatial` values each (`spatial = H·W` for images, 1 for vectors).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ChannelShape {
    /// Batch size.
    pub n: usize,
    /// Channels.
    pub c: usize,
    /// Values per channel per example.
    pub spatial: usize,
}

impl ChannelShape {
    /// The number of elements, `n · c · spatial`.
    pub fn len(&self) -> usize {
        self.n * self.c * self.spatial
    }

    /// Whether the tensor has no elements.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// The slope PReLU uses for channel `ch`: one per channel, or one shared.
#[inline(always)]
fn prelu_slope(weight: &[f32], ch: usize) -> f32 {
    if weight.len() == 1 {
        weight[0]
    } else {
        weight[ch]
    }
}

/// PReLU forward: `y = x` for `x > 0`, else `w·x`, with `w` per channel
/// (`weight.len() == c`) or shared (`weight.len() == 1`).
pub fn prelu_forward(x: &[f32], y: &mut [f32], shape: ChannelShape, weight: &[f32]) {
    assert!(
        x.len() == shape.len() && y.len() == shape.len(),
        "prelu: tensor lengths"
    );
    assert!(
        weight.len() == 1 || weight.len() == shape.c,
        "prelu: weight length"
    );
    if shape.is_empty() {
        return;
    }
    let s = shape.spatial;
    for_each_chunk_mut(y, s, shape.len(), |plane, yc| {
        let w = prelu_slope(weight, plane % shape.c);
        let xc = &x[plane * s..][..s];
        for (yv, &xv) in yc.iter_mut().zip(xc) {
            *yv = if xv > 0.0 { xv } else { w * xv };
        }
    });
}

/// PReLU backward: writes `dx = dy` where `x > 0`, else `w·dy`; and writes
/// `dweight` (same length as `weight`) as the sum over the batch and space
/// of `dy·x` where `x ≤ 0`, in a fixed order.
pub fn prelu_backward(
    x: &[f32],
    dy: &[f32],
    dx: &mut [f32],
    dweight: &mut [f32],
    shape: ChannelShape,
    weight: &[f32],
) {
    assert!(
        dweight.len() == weight.len(),
        "prelu backward: weight lengths"
    );
    prelu_backward_input(x, dy, dx, shape, weight);
    prelu_backward_slope(x, dy, shape, dweight);
}

/// PReLU's input gradient alone: `dx = dy` where `x > 0`, else `w·dy`, with
/// `weight` one slope per channel or one in all. The first half of
/// [`prelu_backward`].
pub fn prelu_backward_input(
    x: &[f32],
    dy: &[f32],
    dx: &mut [f32],
    shape: ChannelShape,
    weight: &[f32],
) {
    assert!(
        x.len() == shape.len() && dy.len() == shape.len() && dx.len() == shape.len(),
        "prelu_backward_input: tensor lengths"
    );
    assert!(
        weight.len() == 1 || weight.len() == shape.c,
        "prelu_backward_input: weight length"
    );
    let s = shape.spatial;
    if shape.is_empty() {
        return;
    }
    for_each_chunk_mut(dx, s, shape.len(), |plane, dc| {
        let w = prelu_slope(weight, plane % shape.c);
        let xc = &x[plane * s..][..s];
        let gc = &dy[plane * s..][..s];
        for ((d, &xv), &gv) in dc.iter_mut().zip(xc).zip(gc) {
            *d = if xv > 0.0 { gv } else { w * gv };
        }
    });
}

/// PReLU's slope gradient alone: `dweight[k] = Σ dy·x` over `x ≤ 0` of the
/// channels slope `k` serves (every channel when `dweight` has one value),
/// summed over the batch in a fixed order: the second half of
/// [`prelu_backward`].
pub fn prelu_backward_slope(x: &[f32], dy: &[f32], shape: ChannelShape, dweight: &mut [f32]) {
    assert!(
        x.len() == shape.len() && dy.len() == shape.len(),
        "prelu_backward_slope: tensor lengths"
    );
    assert!(
        dweight.len() == 1 || dweight.len() == shape.c,
        "prelu_backward_slope: weight length"
    );
    if shape.is_empty() {
        dweight.fill(0.0);
        return;
    }
    let s = shape.spatial;
    let channels_per_weight = if dweight.len() == 1 { shape.c } else { 1 };
    for_each_chunk_mut(dweight, 1, shape.len(), |k, dw| {
        let mut total = 0.0f32;
        for b in 0..shape.n {
            for j in 0..channels_per_weight {
                let ch = k * channels_per_weight + j;
                let off = (b * shape.c + ch) * s;
                total += negative_part_dot(&x[off..off + s], &dy[off..off + s]);
            }
        }
        dw[0] = total;
    });
}

/// Σ dy·x over the elements with x ≤ 0, with eight partial sums (a fixed
/// order, vectorizable).
#[inline(always)]
fn negative_part_dot(x: &[f32], dy: &[f32]) -> f32 {
    let mut acc = [0.0f32; 8];
    let mut xs = x.chunks_exact(8);
    let mut gs = dy.chunks_exact(8);
    for (xc, gc) in (&mut xs).zip(&mut gs) {
        for l in 0..8 {
            acc[l] += if xc[l] > 0.0 { 0.0 } else { xc[l] * gc[l] };
        }
    }
    let mut tail = 0.0f32;
    for (&xv, &gv) in xs.remainder().iter().zip(gs.remainder()) {
        tail += if xv > 0.0 { 0.0 } else { xv * gv };
    }
    ((acc[0] + acc[4]) + (acc[1] + acc[5])) + ((acc[2] + acc[6]) + (acc[3] + acc[7])) + tail
}

/// Maxout forward over groups of `k` consecutive channels:
/// `y[b, g, s] = max_j x[b, g·k + j, s]` for an input of `shape` (whose `c`
/// is a multiple of `k`) and an output of `c / k` channels. Ties go to the
/// lowest `j`.
pub fn maxout_forward(x: &[f32], y: &mut [f32], shape: ChannelShape, k: usize) {
    check_maxout(x.len(), y.len(), shape, k);
    let s = shape.spatial;
    if y.is_empty() {
        return;
    }
    for_each_chunk_mut(y, s, x.len(), |plane, yc| {
        let base = plane * k * s;
        yc.copy_from_slice(&x[base..base + s]);
        for j in 1..k {
            let xc = &x[base + j * s..][..s];
            for (yv, &xv) in yc.iter_mut().zip(xc) {
                *yv = if xv > *yv { xv } else { *yv };
            }
        }
    });
}

/// Maxout forward that also writes, per output element, the winning `j`
/// (0..k) for [`maxout_backward`].
pub fn maxout_forward_with_indices(
    x: &[f32],
    y: &mut [f32],
    argmax: &mut [u32],
    shape: ChannelShape,
    k: usize,
) {
    check_maxout(x.len(), y.len(), shape, k);
    assert_eq!(argmax.len(), y.len(), "maxout: argmax length");
    let s = shape.spatial;
    if y.is_empty() {
        return;
    }
    for_each_chunk_pair_mut(y, s, argmax, s, x.len(), |plane, yc, ic| {
        let base = plane * k * s;
        yc.copy_from_slice(&x[base..base + s]);
        ic.fill(0);
        for j in 1..k {
            let xc = &x[base + j * s..][..s];
            for ((yv, iv), &xv) in yc.iter_mut().zip(ic.iter_mut()).zip(xc) {
                if xv > *yv {
                    *yv = xv;
                    *iv = j as u32;
                }
            }
        }
    });
}

/// Maxout backward: `dx` (input-shaped) gets `dy` at each group's argmax and
/// zero elsewhere.
pub fn maxout_backward(dy: &[f32], argmax: &[u32], dx: &mut [f32], shape: ChannelShape, k: usize) {
    check_maxout(dx.len(), dy.len(), shape, k);
    assert_eq!(argmax.len(), dy.len(), "maxout backward: argmax length");
    let s = shape.spatial;
    if dy.is_empty() {
        return;
    }
    // One task per output plane: it owns the k input planes of its group.
    for_each_chunk_mut(dx, k * s, dx.len(), |plane, dc| {
        let gc = &dy[plane * s..][..s];
        let ic = &argmax[plane * s..][..s];
        for j in 0..k {
            let dj = &mut dc[j * s..(j + 1) * s];
            for ((d, &g), &i) in dj.iter_mut().zip(gc).zip(ic) {
                *d = if i as usize == j { g } else { 0.0 };
            }
        }
    });
}

/// The shape invariants maxout's callers guarantee.
fn check_maxout(x_len: usize, y_len: usize, shape: ChannelShape, k: usize) {
    assert!(
        k > 0 && shape.c.is_multiple_of(k),
        "maxout: k must divide the channels"
    );
    assert!(
        x_len == shape.len() && y_len == shape.len() / k,
        "maxout: tensor lengths"
    );
}
