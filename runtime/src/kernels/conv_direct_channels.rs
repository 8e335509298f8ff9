//! The channel-lane direct convolution: sixteen output channels per
//! vector, for the layers whose output rows are too short for the
//! position-lane kernel of [`super::conv_direct`] (LeNet's C3: rows of 10
//! positions fill 10 of its 16 lanes).
//!
//! Each accumulator holds the sixteen channels `co0 .. co0 + 16` of one
//! output position. For every tap `(c, r, q)` the kernel loads the tap's
//! sixteen weights once (the weights are stored tap-major, `wt[tap·c_out +
//! co]`, by [`channel_major_weights`]) and multiplies them by each
//! position's input value, broadcast straight from the padded plane: one
//! fused multiply-add with a memory operand per (position, tap). A block is
//! up to two output rows of up to twelve positions, so the broadcasts sit at
//! fixed offsets from one pointer per row. For kernels 3 and 5 wide
//! (undilated) the block instead keeps a kernel row's weight vectors in
//! registers and broadcasts each input value once for every position it
//! reaches: `W + kw − 1` broadcasts a block row and kernel row instead of
//! `W·kw` (LeNet's C3: 14 instead of 50). At the end the bias and ReLU are
//! applied in registers and each row's accumulators are transposed (16 × 16
//! in registers) into per-channel runs of positions, stored with a mask.
//!
//! Each output value's sum runs over the taps in the order `(c, r, q)`, one
//! fused multiply-add per tap, exactly as in [`super::conv_direct`]: the two
//! kernels give bit-identical results.

#[cfg(target_arch = "x86_64")]
use super::conv_direct::DirectPost;
use super::conv_direct::DirectShape;

/// Writes the OIHW weights `w` of shape `s` tap-major into `wt`:
/// `wt[((c·kh + r)·kw + q)·c_out + co] = w[((co·c_in + c)·kh + r)·kw + q]`.
///
/// # Panics
///
/// If a buffer is shorter than the shape's weight (a caller bug).
pub fn channel_major_weights(s: &DirectShape, w: &[f32], wt: &mut [f32]) {
    let taps = s.c_in * s.kh * s.kw;
    assert!(
        w.len() >= s.c_out * taps && wt.len() >= s.c_out * taps,
        "direct conv: short weights"
    );
    for co in 0..s.c_out {
        for t in 0..taps {
            wt[t * s.c_out + co] = w[co * taps + t];
        }
    }
}

/// Whether the channel-lane kernel accepts `s`: whole vectors of output
/// channels and more than one output position.
pub fn channel_lanes_fit(s: &DirectShape) -> bool {
    s.c_out.is_multiple_of(16) && s.c_out > 0 && s.oh * s.ow > 1
}

/// Widest run of positions in one block row.
#[cfg(target_arch = "x86_64")]
const MAX_W: usize = 12;

/// Rows `oy .. oy + ROWS`, columns `j0 .. j0 + W` of channels `co0 ..
/// co0 + 16`: `ROWS × W` accumulators over every tap.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
#[inline]
#[allow(clippy::too_many_arguments)]
unsafe fn block_avx512<const ROWS: usize, const W: usize, const POOL: bool, const KW: usize>(
    s: &DirectShape,
    xp: *const f32,
    wt: *const f32,
    post: DirectPost<'_>,
    yp: *mut f32,
    co0: usize,
    oy: usize,
    j0: usize,
) {
    use core::arch::x86_64::*;
    let plane = s.hp * s.wp;
    let out_plane = s.oh * s.ow;
    let mut acc = [[_mm512_setzero_ps(); W]; ROWS];
    if KW > 0 {
        // Kernel width KW, horizontal dilation 1 (the caller's choice): for
        // each kernel row, its KW weight vectors stay in registers and each
        // input value of the block's rows is broadcast once, for every
        // (position, tap) pair it meets — W + KW − 1 broadcasts a row
        // instead of W·KW. Each accumulator still takes its taps in the
        // order (c, r, q).
        for c in 0..s.c_in {
            for r in 0..s.kh {
                let row = c * plane + (oy + r * s.dilation[0]) * s.wp + j0;
                let tap0 = (c * s.kh + r) * KW;
                // SAFETY: as below, with q < KW = kw and dilation 1: the
                // broadcasts read columns j0 .. j0 + W + KW − 1 ≤ Wp.
                unsafe {
                    let wv: [__m512; KW] = core::array::from_fn(|q| {
                        _mm512_loadu_ps(wt.add((tap0 + q) * s.c_out + co0))
                    });
                    for (rr, accs) in acc.iter_mut().enumerate() {
                        let b = xp.add(row + rr * s.wp);
                        for ix in 0..W + KW - 1 {
                            let v = _mm512_set1_ps(*b.add(ix));
                            for (q, w) in wv.iter().enumerate() {
                                if ix >= q && ix - q < W {
                                    accs[ix - q] = _mm512_fmadd_ps(v, *w, accs[ix - q]);
                                }
                            }
                        }
                    }
                }
            }
        }
    } else {
        for c in 0..s.c_in {
            for r in 0..s.kh {
                let row = c * plane + (oy + r * s.dilation[0]) * s.wp + j0;
                let tap0 = (c * s.kh + r) * s.kw;
                for q in 0..s.kw {
                    // SAFETY: the weight read is tap (c, r, q)'s channels co0 ..
                    // co0 + 16 < c_out; each broadcast reads input (c, oy + rr +
                    // r·dh, j0 + k + q·dw) with oy + rr < oh and j0 + k < ow,
                    // inside the padded plane.
                    unsafe {
                        let wv = _mm512_loadu_ps(wt.add((tap0 + q) * s.c_out + co0));
                        let base = xp.add(row + q * s.dilation[1]);
                        for (rr, accs) in acc.iter_mut().enumerate() {
                            let b = base.add(rr * s.wp);
                            for (k, a) in accs.iter_mut().enumerate() {
                                *a = _mm512_fmadd_ps(_mm512_set1_ps(*b.add(k)), wv, *a);
                            }
                        }
                    }
                }
            }
        }
    }
    let zero = _mm512_setzero_ps();
    let bias = match post.bias {
        // SAFETY: the bias holds c_out ≥ co0 + 16 values (contract).
        Some(b) => unsafe { _mm512_loadu_ps(b.as_ptr().add(co0)) },
        None => zero,
    };
    let mut m = [[zero; W]; ROWS];
    for (mr, accs) in m.iter_mut().zip(&acc) {
        for (v, a) in mr.iter_mut().zip(accs) {
            *v = _mm512_add_ps(*a, bias);
            if post.relu {
                *v = _mm512_max_ps(*v, zero);
            }
        }
    }
    if POOL {
        // 2×2 max pooling of the block (two rows, W even) in the order of
        // the pooling kernel: top-left first, then a later value only
        // where it is greater (vmaxps returns its first operand then).
        let (pw, half) = (s.ow / 2, W / 2);
        let mut p = [zero; 16];
        for (k, v) in p.iter_mut().take(half).enumerate() {
            let (a, b) = (m[0][2 * k], m[0][2 * k + 1]);
            let (c, d) = (m[ROWS - 1][2 * k], m[ROWS - 1][2 * k + 1]);
            *v = _mm512_max_ps(d, _mm512_max_ps(c, _mm512_max_ps(b, a)));
        }
        let t = super::pack::transpose16(p);
        let mask: __mmask16 = ((1u32 << half) - 1) as u16;
        for (ch, v) in t.iter().enumerate() {
            let at = (co0 + ch) * (s.oh / 2) * pw + (oy / 2) * pw + j0 / 2;
            // SAFETY: W/2 pooled positions of pooled row oy/2 of channel
            // co0 + ch < c_out lie inside the pooled y (contract); the
            // store writes only those lanes.
            unsafe { _mm512_mask_storeu_ps(yp.add(at), mask, *v) };
        }
        return;
    }
    let mask: __mmask16 = ((1u32 << W) - 1) as u16;
    for (rr, mr) in m.iter().enumerate() {
        let mut row = [zero; 16];
        row[..W].copy_from_slice(mr);
        // Lane k of t[ch] is channel co0 + ch at position j0 + k.
        let t = super::pack::transpose16(row);
        for (ch, v) in t.iter().enumerate() {
            let at = (co0 + ch) * out_plane + (oy + rr) * s.ow + j0;
            // SAFETY: W positions of row oy + rr of channel co0 + ch < c_out
            // lie inside y (contract); the store writes only those lanes.
            unsafe { _mm512_mask_storeu_ps(yp.add(at), mask, *v) };
        }
    }
}

/// The AVX-512F channel-lane direct kernel: `y` (`c_out × oh × ow`) from
/// the padded input `x` (`c_in × Hp × Wp`) and the tap-major weights `wt`
/// of [`channel_major_weights`], with `post` applied in registers.
///
/// # Safety
///
/// As [`super::conv_direct::DirectKernel`], with `wt` tap-major, `s`
/// accepted by [`channel_lanes_fit`] (no tail is read after the plane);
/// the CPU must support AVX-512F.
#[cfg(target_arch = "x86_64")]
pub unsafe fn direct_channels_avx512(
    s: &DirectShape,
    x: &[f32],
    wt: &[f32],
    post: DirectPost<'_>,
    y: &mut [f32],
) {
    // SAFETY: forwarded contract; the dispatch table checked the features.
    unsafe { direct_channels_avx512_impl::<false>(s, x, wt, post, y) }
}

/// [`direct_channels_avx512`] followed by 2×2 stride-2 max pooling (floor
/// mode) in registers: `y` holds only the pooled `c_out × ⌊oh/2⌋ × ⌊ow/2⌋`
/// values, the same bits as the convolution's output pooled by
/// [`super::pool::max_pool2d_forward`]. The last row and column of an odd
/// output, which no window reads, are not computed.
///
/// # Safety
///
/// As [`direct_channels_avx512`], with `y` the pooled size.
#[cfg(target_arch = "x86_64")]
pub unsafe fn direct_channels_pool_avx512(
    s: &DirectShape,
    x: &[f32],
    wt: &[f32],
    post: DirectPost<'_>,
    y: &mut [f32],
) {
    // SAFETY: forwarded contract; the dispatch table checked the features.
    unsafe { direct_channels_avx512_impl::<true>(s, x, wt, post, y) }
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
unsafe fn direct_channels_avx512_impl<const POOL: bool>(
    s: &DirectShape,
    x: &[f32],
    wt: &[f32],
    post: DirectPost<'_>,
    y: &mut [f32],
) {
    assert!(
        channel_lanes_fit(s),
        "direct conv (channel lanes): shape {s:?}"
    );
    assert!(
        s.oh + (s.kh - 1) * s.dilation[0] == s.hp && s.ow + (s.kw - 1) * s.dilation[1] == s.wp,
        "direct conv (channel lanes): inconsistent shape {s:?}"
    );
    let taps = s.c_in * s.kh * s.kw;
    assert!(x.len() >= s.c_in * s.hp * s.wp, "direct conv: short input");
    assert!(wt.len() >= s.c_out * taps, "direct conv: short weight");
    // With pooling, only the rows and columns some window reads.
    let (oh, ow, out_len) = if POOL {
        let (ph, pw) = (s.oh / 2, s.ow / 2);
        (2 * ph, 2 * pw, s.c_out * ph * pw)
    } else {
        (s.oh, s.ow, s.c_out * s.oh * s.ow)
    };
    assert!(y.len() >= out_len, "direct conv: short output");
    assert!(
        post.bias.is_none_or(|b| b.len() >= s.c_out),
        "direct conv: short bias"
    );
    let (xp, wp, yp) = (x.as_ptr(), wt.as_ptr(), y.as_mut_ptr());
    // Kernel widths 3 and 5 without horizontal dilation sweep the input
    // columns (block_avx512's KW); others loop over the taps.
    let kw = match (s.kw, s.dilation[1]) {
        (3, 1) => 3,
        (5, 1) => 5,
        _ => 0,
    };
    macro_rules! width {
        ($rows:literal, $kw:literal, $w:expr, $co0:expr, $oy:expr, $j0:expr) => {
            // SAFETY: the buffers were checked above; the block's rows,
            // columns and channels are inside the output.
            unsafe {
                match $w {
                    1 => block_avx512::<$rows, 1, POOL, $kw>(s, xp, wp, post, yp, $co0, $oy, $j0),
                    2 => block_avx512::<$rows, 2, POOL, $kw>(s, xp, wp, post, yp, $co0, $oy, $j0),
                    3 => block_avx512::<$rows, 3, POOL, $kw>(s, xp, wp, post, yp, $co0, $oy, $j0),
                    4 => block_avx512::<$rows, 4, POOL, $kw>(s, xp, wp, post, yp, $co0, $oy, $j0),
                    5 => block_avx512::<$rows, 5, POOL, $kw>(s, xp, wp, post, yp, $co0, $oy, $j0),
                    6 => block_avx512::<$rows, 6, POOL, $kw>(s, xp, wp, post, yp, $co0, $oy, $j0),
                    7 => block_avx512::<$rows, 7, POOL, $kw>(s, xp, wp, post, yp, $co0, $oy, $j0),
                    8 => block_avx512::<$rows, 8, POOL, $kw>(s, xp, wp, post, yp, $co0, $oy, $j0),
                    9 => block_avx512::<$rows, 9, POOL, $kw>(s, xp, wp, post, yp, $co0, $oy, $j0),
                    10 => block_avx512::<$rows, 10, POOL, $kw>(s, xp, wp, post, yp, $co0, $oy, $j0),
                    11 => block_avx512::<$rows, 11, POOL, $kw>(s, xp, wp, post, yp, $co0, $oy, $j0),
                    _ => block_avx512::<$rows, 12, POOL, $kw>(s, xp, wp, post, yp, $co0, $oy, $j0),
                }
            }
        };
    }
    macro_rules! go {
        ($rows:literal, $w:expr, $co0:expr, $oy:expr, $j0:expr) => {
            match kw {
                3 => width!($rows, 3, $w, $co0, $oy, $j0),
                5 => width!($rows, 5, $w, $co0, $oy, $j0),
                _ => width!($rows, 0, $w, $co0, $oy, $j0),
            }
        };
    }
    // Column runs of nearly equal width, at most MAX_W each; with pooling,
    // of whole window pairs.
    let step = if POOL { 2 } else { 1 };
    let runs = (ow / step).div_ceil(MAX_W / step);
    for co0 in (0..s.c_out).step_by(16) {
        let mut oy = 0;
        while oy < oh {
            let rows = (oh - oy).min(2);
            let (mut j0, mut left) = (0, runs);
            while j0 < ow {
                let w = step * ((ow - j0) / step).div_ceil(left);
                if rows == 2 {
                    go!(2, w, co0, oy, j0);
                } else {
                    go!(1, w, co0, oy, j0);
                }
                j0 += w;
                left -= 1;
            }
            oy += rows;
        }
    }
}
