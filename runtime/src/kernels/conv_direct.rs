//! The direct convolution kernel for few output channels (LeNet's layers):
//! an implicit GEMM over the "extended" output, with no column matrix.
//!
//! With stride 1 and the input copied into a zero-padded plane of width
//! `Wp`, output position `(oy, ox)` reads input `(oy + r·dh, ox + s·dw)`;
//! numbering positions `p = oy·Wp + ox` over the full padded width makes
//! every tap `(c, r, s)` a *contiguous* shift `c·Hp·Wp + r·dh·Wp + s·dw` of
//! the same vector of positions. So for a block of output channels and a
//! group of vectors of positions the kernel keeps one accumulator per
//! (channel, vector) in registers and, for every tap, loads the group's input
//! vectors once and each channel's weight once (broadcast), issuing one fused
//! multiply-add per pair. Positions with `ox ≥ out_w` are computed and
//! dropped (the `Wp / out_w` overhead, small for LeNet's 5×5 kernels).
//!
//! The result goes to an extended output buffer (`c_out` planes of
//! `out_h · Wp` values), with the bias and ReLU of [`DirectPost`] already
//! applied in registers; the caller copies the valid columns out. Each
//! output value's sum runs over the taps in order `(c, r, s)`, whatever the
//! blocking, so the result does not depend on the variant's block sizes.

/// The geometry the direct kernel needs, in padded-plane terms.
#[derive(Debug, Clone, Copy)]
pub struct DirectShape {
    /// Input channels.
    pub c_in: usize,
    /// Output channels (1 to [`DIRECT_MAX_C_OUT`]).
    pub c_out: usize,
    /// Kernel height.
    pub kh: usize,
    /// Kernel width.
    pub kw: usize,
    /// Dilation `[vertical, horizontal]`.
    pub dilation: [usize; 2],
    /// Padded input height `Hp`.
    pub hp: usize,
    /// Padded input width `Wp`.
    pub wp: usize,
    /// Extended output length per channel, rounded up to a whole number of
    /// 16-lane vectors: `⌈out_h · Wp / 16⌉ · 16`.
    pub ext: usize,
}

/// The most output channels the direct kernel keeps in registers.
pub const DIRECT_MAX_C_OUT: usize = 16;

/// What the direct kernel applies to each output vector in registers before
/// storing it: `v + bias[c]` (when given), then `max(v, 0)` (with `relu`).
/// The caller fuses the leading bias and ReLU steps of a convolution's
/// epilogue list here and applies the rest after the copy-out.
#[derive(Debug, Clone, Copy, Default)]
pub struct DirectPost<'a> {
    /// Bias per output channel (`c_out` values), added first.
    pub bias: Option<&'a [f32]>,
    /// Whether ReLU follows.
    pub relu: bool,
}

/// Computes the extended output `y` (`c_out × ext`) from the padded input
/// `x` (`c_in × Hp × Wp`, followed by at least [`tail_len`] zeros) and the
/// OIHW weight `w`, with `post` applied to every value.
///
/// The output channels go in blocks (up to 8 with AVX-512, 6 with AVX2), and
/// each block's positions in groups of several vectors, so that every tap's
/// input vectors are reused by every channel of the block and every
/// broadcast weight by every vector of the group: the accumulators of one
/// block and group stay in registers for the whole sum over the taps.
///
/// # Safety
///
/// `x` must hold `c_in·Hp·Wp + tail_len(s)` floats, `w` the weight, `y`
/// `c_out · ext` floats, `post.bias` (if any) `c_out` floats,
/// `1 ≤ c_out ≤ 16`, and the CPU must support the variant's instructions
/// (the dispatch table guarantees this).
pub type DirectKernel =
    unsafe fn(s: &DirectShape, x: &[f32], w: &[f32], post: DirectPost<'_>, y: &mut [f32]);

/// Zeros needed after the padded input, so the last vector of positions may
/// read past the real data: the last tap's shift plus the extended length,
/// less the plane (at most `(kw − 1)·dw + 15` for a valid shape).
pub const fn tail_len(s: &DirectShape) -> usize {
    ((s.kh - 1) * s.dilation[0] * s.wp + (s.kw - 1) * s.dilation[1] + s.ext)
        .saturating_sub(s.hp * s.wp)
}

macro_rules! direct_impl {
    ($block:ident, $name:ident, $driver:ident, $feature:literal, $lanes:literal, $max_cb:literal, $vec:ty,
     $zero:ident, $load:ident, $set1:ident, $fma:ident, $add:ident, $max:ident, $store:ident,
     [$($cb:literal => $v:literal),*]) => {
        /// Channels `co0 .. co0 + CB` at the `V` vectors of positions from
        /// `p`: `CB × V` accumulators in registers over every tap.
        #[cfg(target_arch = "x86_64")]
        #[target_feature(enable = $feature)]
        #[inline]
        unsafe fn $block<const CB: usize, const V: usize>(
            s: &DirectShape,
            xp: *const f32,
            wp: *const f32,
            post: DirectPost<'_>,
            yp: *mut f32,
            co0: usize,
            p: usize,
        ) {
            use core::arch::x86_64::*;
            let taps = s.c_in * s.kh * s.kw;
            let plane = s.hp * s.wp;
            let mut acc: [[$vec; V]; CB] = [[$zero(); V]; CB];
            for c in 0..s.c_in {
                for r in 0..s.kh {
                    let row = c * plane + r * s.dilation[0] * s.wp + p;
                    let tap0 = (c * s.kh + r) * s.kw;
                    for q in 0..s.kw {
                        let at = row + q * s.dilation[1];
                        // SAFETY: the shift is below c_in·plane and every
                        // vector ends at most at ext, so each read ends
                        // within the zero tail the caller provides; the
                        // weight index is below c_out·taps.
                        unsafe {
                            let mut xv: [$vec; V] = [$zero(); V];
                            for (j, v) in xv.iter_mut().enumerate() {
                                *v = $load(xp.add(at + j * $lanes));
                            }
                            for (k, row_acc) in acc.iter_mut().enumerate() {
                                let wv = $set1(*wp.add((co0 + k) * taps + tap0 + q));
                                for (a, v) in row_acc.iter_mut().zip(&xv) {
                                    *a = $fma(wv, *v, *a);
                                }
                            }
                        }
                    }
                }
            }
            let zero = $zero();
            for (k, row_acc) in acc.iter().enumerate() {
                let co = co0 + k;
                let b = match post.bias {
                    Some(b) => $set1(b[co]),
                    None => zero,
                };
                for (j, a) in row_acc.iter().enumerate() {
                    let mut v = $add(*a, b);
                    if post.relu {
                        v = $max(v, zero);
                    }
                    // SAFETY: co·ext + p + (j + 1)·lanes ≤ c_out·ext.
                    unsafe { $store(yp.add(co * s.ext + p + j * $lanes), v) };
                }
            }
        }

        /// Every position group of channels `co0 .. co0 + CB`: groups of
        /// `V` vectors, then single vectors for the rest.
        #[cfg(target_arch = "x86_64")]
        #[target_feature(enable = $feature)]
        unsafe fn $name<const CB: usize, const V: usize>(
            s: &DirectShape,
            xp: *const f32,
            wp: *const f32,
            post: DirectPost<'_>,
            yp: *mut f32,
            co0: usize,
        ) {
            let mut p = 0;
            while p + V * $lanes <= s.ext {
                // SAFETY: forwarded contract; p + V·lanes ≤ ext.
                unsafe { $block::<CB, V>(s, xp, wp, post, yp, co0, p) };
                p += V * $lanes;
            }
            while p < s.ext {
                // SAFETY: forwarded contract; ext is a multiple of 16, so
                // p + lanes ≤ ext.
                unsafe { $block::<CB, 1>(s, xp, wp, post, yp, co0, p) };
                p += $lanes;
            }
        }

        /// The whole kernel: channel blocks of nearly equal size, at most
        /// the variant's block each.
        #[cfg(target_arch = "x86_64")]
        #[target_feature(enable = $feature)]
        unsafe fn $driver(s: &DirectShape, x: &[f32], w: &[f32], post: DirectPost<'_>, y: &mut [f32]) {
            let taps = s.c_in * s.kh * s.kw;
            let plane = s.hp * s.wp;
            assert!(
                (1..=DIRECT_MAX_C_OUT).contains(&s.c_out),
                "direct conv: {} output channels (1 to {DIRECT_MAX_C_OUT} supported)",
                s.c_out
            );
            assert!(s.ext % 16 == 0, "direct conv: extended length not a multiple of 16");
            assert!(
                x.len() >= s.c_in * plane + tail_len(s),
                "direct conv: short input"
            );
            assert!(w.len() >= s.c_out * taps, "direct conv: short weight");
            assert!(y.len() >= s.c_out * s.ext, "direct conv: short output");
            assert!(
                post.bias.is_none_or(|b| b.len() >= s.c_out),
                "direct conv: short bias"
            );
            let (xp, wp, yp) = (x.as_ptr(), w.as_ptr(), y.as_mut_ptr());
            let mut blocks = s.c_out.div_ceil($max_cb);
            let mut co0 = 0;
            while co0 < s.c_out {
                let cb = (s.c_out - co0).div_ceil(blocks);
                // SAFETY: the buffers were checked above; co0 + cb ≤ c_out.
                unsafe {
                    match cb {
                        $($cb => $name::<$cb, $v>(s, xp, wp, post, yp, co0),)*
                        _ => unreachable!("direct conv: channel block {cb} above the variant's"),
                    }
                }
                co0 += cb;
                blocks -= 1;
            }
        }
    };
}

// AVX-512: 32 registers, so up to 8 channels × 3 vectors (or 6 × 4)
// accumulators, the vectors of one tap and a broadcast weight.
direct_impl!(
    block_avx512,
    run_avx512,
    direct_avx512_impl,
    "avx512f",
    16,
    8,
    __m512,
    _mm512_setzero_ps,
    _mm512_loadu_ps,
    _mm512_set1_ps,
    _mm512_fmadd_ps,
    _mm512_add_ps,
    _mm512_max_ps,
    _mm512_storeu_ps,
    [1 => 6, 2 => 6, 3 => 6, 4 => 6, 5 => 4, 6 => 4, 7 => 3, 8 => 3]
);

// AVX2: 16 registers, so up to 6 channels × 2 vectors (or 3 × 4)
// accumulators.
direct_impl!(
    block_avx2,
    run_avx2,
    direct_avx2_impl,
    "avx2,fma",
    8,
    6,
    __m256,
    _mm256_setzero_ps,
    _mm256_loadu_ps,
    _mm256_set1_ps,
    _mm256_fmadd_ps,
    _mm256_add_ps,
    _mm256_max_ps,
    _mm256_storeu_ps,
    [1 => 4, 2 => 4, 3 => 4, 4 => 3, 5 => 2, 6 => 2]
);

/// The AVX-512F direct kernel (16 positions per vector).
///
/// # Safety
///
/// As [`DirectKernel`]; the CPU must support AVX-512F.
#[cfg(target_arch = "x86_64")]
pub unsafe fn direct_avx512(
    s: &DirectShape,
    x: &[f32],
    w: &[f32],
    post: DirectPost<'_>,
    y: &mut [f32],
) {
    // SAFETY: forwarded contract; the dispatch table checked the features.
    unsafe { direct_avx512_impl(s, x, w, post, y) }
}

/// The AVX2+FMA direct kernel (8 positions per vector).
///
/// # Safety
///
/// As [`DirectKernel`]; the CPU must support AVX2 and FMA.
#[cfg(target_arch = "x86_64")]
pub unsafe fn direct_avx2(
    s: &DirectShape,
    x: &[f32],
    w: &[f32],
    post: DirectPost<'_>,
    y: &mut [f32],
) {
    // SAFETY: forwarded contract; the dispatch table checked the features.
    unsafe { direct_avx2_impl(s, x, w, post, y) }
}
