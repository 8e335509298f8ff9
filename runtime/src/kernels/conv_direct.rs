//! The direct convolution kernel for few output channels (LeNet's layers):
//! an implicit GEMM over the "extended" output, with no column matrix.
//!
//! With stride 1 and the input copied into a zero-padded plane of width
//! `Wp`, output position `(oy, ox)` reads input `(oy + r·dh, ox + s·dw)`;
//! numbering positions `p = oy·Wp + ox` over the full padded width makes
//! every tap `(c, r, s)` a *contiguous* shift `c·Hp·Wp + r·dh·Wp + s·dw` of
//! the same vector of positions. So for one vector of positions the kernel
//! keeps one accumulator per output channel in registers and, for every tap,
//! loads one input vector and issues one fused multiply-add per channel with
//! the broadcast weight. Positions with `ox ≥ out_w` are computed and
//! dropped (the `Wp / out_w` overhead, small for LeNet's 5×5 kernels).
//!
//! The result goes to an extended output buffer (`c_out` planes of
//! `out_h · Wp` values); the caller copies the valid columns out. Each output
//! value's sum runs over the taps in order `(c, r, s)`.

/// The geometry the direct kernel needs, in padded-plane terms.
#[derive(Debug, Clone, Copy)]
pub struct DirectShape {
    /// Input channels.
    pub c_in: usize,
    /// Output channels (1 to [`DIRECT_MAX_C_OUT`]).
    pub c_out: usize,
    /// Kernel height and width.
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

/// Computes the extended output `y` (`c_out × ext`) from the padded input
/// `x` (`c_in × Hp × Wp`, followed by at least [`tail_len`] zeros) and the
/// OIHW weight `w`.
///
/// # Safety
///
/// `x` must hold `c_in·Hp·Wp + tail_len(s)` floats, `w` the weight, `y`
/// `c_out · ext` floats, `1 ≤ c_out ≤ 16`, and the CPU must support the
/// variant's instructions (the dispatch table guarantees this).
pub type DirectKernel = unsafe fn(s: &DirectShape, x: &[f32], w: &[f32], y: &mut [f32]);

/// Zeros needed after the padded input, so the last vector of positions may
/// read past the real data.
pub const fn tail_len(s: &DirectShape) -> usize {
    s.ext + 16
}

macro_rules! direct_impl {
    ($name:ident, $feature:literal, $lanes:literal, $vec:ty, $zero:ident, $load:ident, $set1:ident, $fma:ident, $store:ident) => {
        #[cfg(target_arch = "x86_64")]
        #[target_feature(enable = $feature)]
        unsafe fn $name<const CO: usize>(s: &DirectShape, x: &[f32], w: &[f32], y: &mut [f32]) {
            use core::arch::x86_64::*;
            let taps = s.c_in * s.kh * s.kw;
            let plane = s.hp * s.wp;
            assert!(
                x.len() >= s.c_in * plane + tail_len(s),
                "direct conv: short input"
            );
            assert!(w.len() >= CO * taps, "direct conv: short weight");
            assert!(y.len() >= CO * s.ext, "direct conv: short output");
            let xp = x.as_ptr();
            let wp = w.as_ptr();
            let yp = y.as_mut_ptr();
            let mut p = 0;
            while p < s.ext {
                let mut acc: [$vec; CO] = [$zero(); CO];
                for c in 0..s.c_in {
                    for r in 0..s.kh {
                        let row = c * plane + r * s.dilation[0] * s.wp + p;
                        for q in 0..s.kw {
                            let tap = (c * s.kh + r) * s.kw + q;
                            // SAFETY: the shift is below c_in·plane and
                            // p + lanes ≤ ext, so the read ends within the
                            // zero tail asserted above; the weight index is
                            // below CO·taps.
                            unsafe {
                                let xv = $load(xp.add(row + q * s.dilation[1]));
                                for co in 0..CO {
                                    let wv = $set1(*wp.add(co * taps + tap));
                                    acc[co] = $fma(wv, xv, acc[co]);
                                }
                            }
                        }
                    }
                }
                for co in 0..CO {
                    // SAFETY: co·ext + p + lanes ≤ CO·ext (asserted above).
                    unsafe { $store(yp.add(co * s.ext + p), acc[co]) };
                }
                p += $lanes;
            }
        }
    };
}

direct_impl!(
    direct_avx512_impl,
    "avx512f",
    16,
    __m512,
    _mm512_setzero_ps,
    _mm512_loadu_ps,
    _mm512_set1_ps,
    _mm512_fmadd_ps,
    _mm512_storeu_ps
);

direct_impl!(
    direct_avx2_impl,
    "avx2,fma",
    8,
    __m256,
    _mm256_setzero_ps,
    _mm256_loadu_ps,
    _mm256_set1_ps,
    _mm256_fmadd_ps,
    _mm256_storeu_ps
);

macro_rules! by_channels {
    ($f:ident, $s:expr, $x:expr, $w:expr, $y:expr) => {
        match $s.c_out {
            1 => $f::<1>($s, $x, $w, $y),
            2 => $f::<2>($s, $x, $w, $y),
            3 => $f::<3>($s, $x, $w, $y),
            4 => $f::<4>($s, $x, $w, $y),
            5 => $f::<5>($s, $x, $w, $y),
            6 => $f::<6>($s, $x, $w, $y),
            7 => $f::<7>($s, $x, $w, $y),
            8 => $f::<8>($s, $x, $w, $y),
            9 => $f::<9>($s, $x, $w, $y),
            10 => $f::<10>($s, $x, $w, $y),
            11 => $f::<11>($s, $x, $w, $y),
            12 => $f::<12>($s, $x, $w, $y),
            13 => $f::<13>($s, $x, $w, $y),
            14 => $f::<14>($s, $x, $w, $y),
            15 => $f::<15>($s, $x, $w, $y),
            16 => $f::<16>($s, $x, $w, $y),
            other => panic!("direct conv: {other} output channels (1 to 16 supported)"),
        }
    };
}

/// The AVX-512F direct kernel (16 positions per vector).
///
/// # Safety
///
/// As [`DirectKernel`]; the CPU must support AVX-512F.
#[cfg(target_arch = "x86_64")]
pub unsafe fn direct_avx512(s: &DirectShape, x: &[f32], w: &[f32], y: &mut [f32]) {
    // SAFETY: forwarded contract; the dispatch table checked the features.
    unsafe { by_channels!(direct_avx512_impl, s, x, w, y) }
}

/// The AVX2+FMA direct kernel (8 positions per vector).
///
/// # Safety
///
/// As [`DirectKernel`]; the CPU must support AVX2 and FMA.
#[cfg(target_arch = "x86_64")]
pub unsafe fn direct_avx2(s: &DirectShape, x: &[f32], w: &[f32], y: &mut [f32]) {
    // SAFETY: forwarded contract; the dispatch table checked the features.
    unsafe { by_channels!(direct_avx2_impl, s, x, w, y) }
}
