//! Fast elementwise kernels: add of two or more tensors, the accumulate and
//! scale helpers backward passes use, concat along an axis and its backward
//! (split), and inverted dropout with a counter-based mask.
//!
//! Loops run over fixed-size chunks handed to [`super::parallel`]; every
//! element's value is computed in the same order whatever the thread count.
//! All of it is allocation-free and builds without `std` (dropout included:
//! its mask is a pure function of the seed and the element index, so there
//! is no mask buffer to allocate).

use super::activation::ELEMENT_CHUNK;
use super::parallel::for_each_chunk_mut;
use crate::rng::bits_at;

/// `y = Σᵢ inputs[i]`, elementwise, summed in input order. Every input has
/// `y`'s length; with one input this is a copy.
pub fn add(inputs: &[&[f32]], y: &mut [f32]) {
    assert!(!inputs.is_empty(), "add: at least one input");
    assert!(
        inputs.iter().all(|x| x.len() == y.len()),
        "add: input lengths"
    );
    let work = y.len() * inputs.len();
    for_each_chunk_mut(y, ELEMENT_CHUNK, work, |i, yc| {
        let off = i * ELEMENT_CHUNK;
        let len = yc.len();
        yc.copy_from_slice(&inputs[0][off..off + len]);
        for x in &inputs[1..] {
            for (yv, &xv) in yc.iter_mut().zip(&x[off..off + len]) {
                *yv += xv;
            }
        }
    });
}

/// `acc += x`, elementwise (gradient accumulation).
pub fn add_into(acc: &mut [f32], x: &[f32]) {
    accumulate_scaled(acc, 1.0, x);
}

/// `acc += a·x`, elementwise.
pub fn accumulate_scaled(acc: &mut [f32], a: f32, x: &[f32]) {
    assert_eq!(acc.len(), x.len(), "accumulate: lengths");
    let work = x.len();
    for_each_chunk_mut(acc, ELEMENT_CHUNK, work, |i, ac| {
        let xc = &x[i * ELEMENT_CHUNK..][..ac.len()];
        if a == 1.0 {
            for (av, &xv) in ac.iter_mut().zip(xc) {
                *av += xv;
            }
        } else {
            for (av, &xv) in ac.iter_mut().zip(xc) {
                *av += a * xv;
            }
        }
    });
}

/// `y = a·x`, elementwise.
pub fn scale(x: &[f32], a: f32, y: &mut [f32]) {
    assert_eq!(x.len(), y.len(), "scale: lengths");
    for_each_chunk_mut(y, ELEMENT_CHUNK, x.len(), |i, yc| {
        let xc = &x[i * ELEMENT_CHUNK..][..yc.len()];
        for (yv, &xv) in yc.iter_mut().zip(xc) {
            *yv = a * xv;
        }
    });
}

/// `y = a·y`, elementwise, in place.
pub fn scale_in_place(y: &mut [f32], a: f32) {
    let work = y.len();
    for_each_chunk_mut(y, ELEMENT_CHUNK, work, |_, yc| {
        for yv in yc.iter_mut() {
            *yv *= a;
        }
    });
}

/// Concatenates along one axis. Input `i` has shape `[outer, sizes[i],
/// inner]` and the output `[outer, Σ sizes, inner]`: for an NCHW batch
/// joined along channels, `outer = N` and `inner = H·W`.
pub fn concat(inputs: &[&[f32]], sizes: &[usize], outer: usize, inner: usize, y: &mut [f32]) {
    assert_eq!(inputs.len(), sizes.len(), "concat: one size per input");
    let total: usize = sizes.iter().sum();
    assert!(
        inputs
            .iter()
            .zip(sizes)
            .all(|(x, &d)| x.len() == outer * d * inner),
        "concat: input lengths"
    );
    assert_eq!(y.len(), outer * total * inner, "concat: output length");
    let block = total * inner;
    if block == 0 {
        return;
    }
    for_each_chunk_mut(y, block, y.len(), |o, yc| {
        let mut at = 0;
        for (x, &d) in inputs.iter().zip(sizes) {
            let len = d * inner;
            yc[at..at + len].copy_from_slice(&x[o * len..(o + 1) * len]);
            at += len;
        }
    });
}

/// Concat's backward: splits `dy` of shape `[outer, Σ sizes, inner]` into
/// `outputs[i]` of shape `[outer, sizes[i], inner]` (written).
pub fn split(dy: &[f32], sizes: &[usize], outer: usize, inner: usize, outputs: &mut [&mut [f32]]) {
    assert_eq!(outputs.len(), sizes.len(), "split: one size per output");
    let total: usize = sizes.iter().sum();
    assert_eq!(dy.len(), outer * total * inner, "split: input length");
    assert!(
        outputs
            .iter()
            .zip(sizes)
            .all(|(x, &d)| x.len() == outer * d * inner),
        "split: output lengths"
    );
    // Offsets of each part within one outer block, computed up front so each
    // task (one output) is independent.
    let work = dy.len();
    for_each_chunk_mut(outputs, 1, work, |i, out| {
        let start: usize = sizes[..i].iter().sum::<usize>() * inner;
        let len = sizes[i] * inner;
        let out = &mut *out[0];
        for o in 0..outer {
            let src = o * total * inner + start;
            out[o * len..(o + 1) * len].copy_from_slice(&dy[src..src + len]);
        }
    });
}

/// The 32 random bits dropout draws for element `index` of stream `seed`:
/// one half of the 64 bits at counter `index / 2` of [`bits_at`] (the high
/// half for even indices), so one draw of the generator serves two
/// elements.
#[inline(always)]
pub fn dropout_bits(seed: u64, index: u64) -> u32 {
    let w = bits_at(seed, index >> 1);
    if index & 1 == 0 {
        (w >> 32) as u32
    } else {
        w as u32
    }
}

/// The least 32-bit draw that keeps an element at drop probability `p`:
/// `⌈p·2³²⌉`, so an element is kept with probability `1 − p` up to 2⁻³²
/// (0 for `p ≤ 0`: always kept; 2³² for `p ≥ 1`: never).
#[inline]
pub fn dropout_threshold(p: f32) -> u64 {
    if p <= 0.0 {
        0
    } else if p >= 1.0 {
        1 << 32
    } else {
        libm::ceil(p as f64 * (1u64 << 32) as f64) as u64
    }
}

/// Whether dropout keeps element `index` of stream `seed` at drop
/// probability `p`: its [`dropout_bits`] reach [`dropout_threshold`].
#[inline(always)]
pub fn dropout_keeps(seed: u64, index: u64, p: f32) -> bool {
    dropout_bits(seed, index) as u64 >= dropout_threshold(p)
}

/// The factor kept elements are multiplied by: 1/(1 − p), or 0 when `p ≥ 1`
/// (everything dropped).
#[inline]
pub fn dropout_scale(p: f32) -> f32 {
    if p >= 1.0 { 0.0 } else { 1.0 / (1.0 - p) }
}

/// Inverted dropout, training mode: `y[i] = x[i] / (1 − p)` where
/// [`dropout_keeps`]`(seed, offset + i, p)`, else 0. `offset` is the counter
/// of element 0, so a tensor processed in pieces gets the same mask as in
/// one call. At inference dropout is the identity and is not called.
pub fn dropout_forward(x: &[f32], y: &mut [f32], p: f32, seed: u64, offset: u64) {
    assert_eq!(x.len(), y.len(), "dropout: lengths");
    dropout_masked(x, y, p, seed, offset);
}

/// Dropout backward: `dx[i] = dy[i] / (1 − p)` where the forward kept
/// element `i` (the same `seed` and `offset`), else 0.
pub fn dropout_backward(dy: &[f32], dx: &mut [f32], p: f32, seed: u64, offset: u64) {
    assert_eq!(dy.len(), dx.len(), "dropout backward: lengths");
    dropout_masked(dy, dx, p, seed, offset);
}

/// Shared body of dropout's forward and backward: both apply the same mask.
/// Elements are taken in aligned pairs so each generator draw serves two.
fn dropout_masked(x: &[f32], y: &mut [f32], p: f32, seed: u64, offset: u64) {
    let keep_scale = dropout_scale(p);
    let thr = dropout_threshold(p);
    let apply = |bits: u32, v: f32| {
        if bits as u64 >= thr {
            v * keep_scale
        } else {
            0.0
        }
    };
    for_each_chunk_mut(y, ELEMENT_CHUNK, x.len() * 4, |i, yc| {
        let start = i * ELEMENT_CHUNK;
        let xc = &x[start..start + yc.len()];
        let first = offset + start as u64;
        // An odd first counter: one element alone, then aligned pairs.
        let head = (first & 1) as usize;
        let head = head.min(yc.len());
        for j in 0..head {
            yc[j] = apply(dropout_bits(seed, first + j as u64), xc[j]);
        }
        let (yc, xc) = (&mut yc[head..], &xc[head..]);
        let pairs_base = (first + head as u64) >> 1;
        let done = yc.len() & !1;
        let mut ys = yc.chunks_exact_mut(2);
        let mut xs = xc.chunks_exact(2);
        for (k, (yp, xp)) in (&mut ys).zip(&mut xs).enumerate() {
            let w = bits_at(seed, pairs_base + k as u64);
            yp[0] = apply((w >> 32) as u32, xp[0]);
            yp[1] = apply(w as u32, xp[1]);
        }
        for j in done..yc.len() {
            yc[j] = apply(dropout_bits(seed, first + (head + j) as u64), xc[j]);
        }
    });
}
