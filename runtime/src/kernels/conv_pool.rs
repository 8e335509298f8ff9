//! Convolution followed by 2×2 stride-2 max pooling, as one kernel: the
//! convolution's values are pooled in registers, so only the pooled output
//! is written (LeNet's C1 and C3 write a quarter of what they did, and the
//! pooling pass is gone).
//!
//! Two in-register forms, for the two direct kernels:
//!
//! - **Channel lanes** ([`super::conv_direct_channels`]): each accumulator
//!   holds sixteen channels of one position, so a window's four positions
//!   are four accumulators and pooling is three vector maxima.
//! - **Position lanes** (this file): the four positions of a window must
//!   sit at the same lane of four vectors. The input is laid out again by
//!   row and column parity, `z[c][par][t][i·pw + j] = x[c][2i + par][2j +
//!   t]` (`t < kw + 1`), so that for every tap `(c, r, q)` and window member
//!   `(dy, dx)` the inputs of sixteen consecutive windows are one contiguous
//!   vector: `z[c][(dy + r) mod 2][dx + q][f + ⌊(dy + r)/2⌋·pw ..]`. Lanes
//!   then run over pooled positions, so a plane of 14 × 14 windows fills
//!   whole vectors but for one (LeNet's C1: 28-wide rows used 28 of 32 lanes
//!   before).
//!
//! Each convolution value is summed over the taps in the order `(c, r, q)`,
//! one fused multiply-add per tap, then given the bias and ReLU, and the
//! window's four values are compared in the pooling kernel's order: the
//! result is bit-for-bit the unfused convolution's output pooled by
//! [`super::pool::max_pool2d_forward`].
//!
//! Every other case (a variant without these kernels, GEMM-lowered
//! convolutions, other windows, epilogue steps the kernels do not fuse)
//! runs the convolution into scratch and pools it: the same values, by
//! the unfused kernels.

use super::conv::{self, Conv2dGeometry, ConvEpilogue, Weights};
use super::conv_direct::{DirectPost, DirectShape};
use super::dispatch::Kernels;
use super::pool::{self, Pool2d, PoolWindows};

/// Computes one image's pooled output `y` (`c_out × ⌊oh/2⌋ × ⌊ow/2⌋`)
/// from the padded input `x` (`c_in × Hp × Wp`) and the OIHW weight `w`,
/// with `post` applied to every convolution value before pooling; `z`
/// (at least [`parity_len`] floats) is the kernel's parity layout of the
/// input.
///
/// # Safety
///
/// The lengths as stated, the shape consistent with stride 1 and dilation
/// 1, `1 ≤ c_out ≤ 16`, `oh, ow ≥ 2`, and the CPU must support the
/// variant's instructions (the dispatch table guarantees this). The kernel
/// asserts the lengths and the shape.
pub type PoolDirectKernel = unsafe fn(
    s: &DirectShape,
    x: &[f32],
    w: &[f32],
    post: DirectPost<'_>,
    y: &mut [f32],
    z: &mut [f32],
);

/// Floats of one `(c, par, t)` array of the parity layout: `(⌊oh/2⌋ +
/// ⌊kh/2⌋)` rows of `⌊ow/2⌋`, and a vector's tail, which the last vector of
/// windows reads past.
const fn parity_stride(s: &DirectShape) -> usize {
    (s.oh / 2 + s.kh / 2) * (s.ow / 2) + 16
}

/// Floats of the position-lane kernel's parity layout of the input.
pub const fn parity_len(s: &DirectShape) -> usize {
    s.c_in * 2 * (s.kw + 1) * parity_stride(s)
}

/// Whether `pool` is the window the in-register kernels pool by: 2×2,
/// stride 2, no padding, and no partial window (ceil mode on an odd size).
fn is_two_by_two(pool: &PoolWindows, oh: usize, ow: usize) -> bool {
    let p = pool.pool;
    (p.kh, p.kw, p.sh, p.sw, p.ph, p.pw) == (2, 2, 2, 2, 0, 0)
        && (!pool.ceil || (oh.is_multiple_of(2) && ow.is_multiple_of(2)))
        && oh >= 2
        && ow >= 2
}

/// The pooling of the convolution's output that `pool` describes.
fn pool_of(g: &Conv2dGeometry, pool: PoolWindows) -> PoolWindows {
    PoolWindows {
        pool: Pool2d {
            n: g.n,
            c: g.c_out,
            h: g.out_h(),
            w: g.out_w(),
            ..pool.pool
        },
        ceil: pool.ceil,
    }
}

/// Which in-register kernel pools convolution `g`, if any.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Fused {
    Channels,
    Positions,
}

fn fused(
    kern: &Kernels,
    g: &Conv2dGeometry,
    pool: PoolWindows,
    epilogue: &[ConvEpilogue<'_>],
) -> Option<Fused> {
    let full_window = g.kh == g.h && g.kw == g.w;
    if !conv::uses_direct(kern, g)
        || full_window
        || !is_two_by_two(&pool, g.out_h(), g.out_w())
        || !conv::direct_post(epilogue).1.is_empty()
    {
        return None;
    }
    if conv::uses_channel_lanes(kern, g) {
        kern.conv_pool_channels.map(|_| Fused::Channels)
    } else {
        (kern.conv_pool_positions.is_some() && g.dilation == [1, 1]).then_some(Fused::Positions)
    }
}

/// Whether [`conv2d_pool_forward`] and its siblings pool `g`'s output in
/// registers with variant `kern` (rather than convolving into scratch and
/// pooling that): a direct convolution whose epilogue is a bias and a ReLU
/// (each optional), a 2×2 stride-2 window without padding, and a variant
/// with the kernel.
pub fn fuses_pool(
    kern: &Kernels,
    g: &Conv2dGeometry,
    pool: impl Into<PoolWindows>,
    epilogue: &[ConvEpilogue<'_>],
) -> bool {
    fused(kern, g, pool.into(), epilogue).is_some()
}

/// Floats of the convolution's output that [`conv2d_pool_forward`] and
/// [`conv2d_pool_forward_prepacked`] keep in this thread's scratch before
/// pooling it: `g`'s whole output where no kernel pools it in registers,
/// zero where one does. `in_registers` says whether the epilogue list is a
/// bias and a ReLU, each optional (the steps the kernels fuse).
pub fn unpooled_scratch_len(
    kern: &Kernels,
    g: &Conv2dGeometry,
    pool: impl Into<PoolWindows>,
    in_registers: bool,
) -> usize {
    // An epilogue of the same kind: empty, or one the kernels leave.
    let kind: &[ConvEpilogue<'_>] = if in_registers {
        &[]
    } else {
        &[ConvEpilogue::Scale(1.0)]
    };
    match fused(kern, g, pool.into(), kind) {
        Some(_) => 0,
        None => g.output_len(),
    }
}

/// Grows this thread's buffer for the unpooled outputs of
/// [`conv2d_pool_forward`] to at least `len` floats (generated networks
/// call it once at construction with the largest
/// [`unpooled_scratch_len`] of their layers), so that later calls allocate
/// nothing on this thread.
#[cfg(feature = "std")]
pub fn reserve_unpooled_scratch(len: usize) {
    super::gemm::with_scratch(super::gemm::Slot::Pooled, len, |_| ());
}

/// Floats of the pooled output of `g` pooled by `pool`.
pub fn conv2d_pool_output_len(g: &Conv2dGeometry, pool: impl Into<PoolWindows>) -> usize {
    pool_of(g, pool.into()).output_len()
}

/// Scratch of one image of the fused path: the padded input (where the
/// convolution pads) and, for position lanes, the parity layout.
fn fused_image_scratch_len(g: &Conv2dGeometry, how: Fused) -> usize {
    let s = conv::direct_shape(g);
    let padded = if g.pad == [0; 4] && how == Fused::Positions {
        0
    } else {
        conv::direct_scratch_len(g)
    };
    padded
        + match how {
            Fused::Positions => parity_len(&s),
            Fused::Channels => 0,
        }
}

/// The scratch length (floats) of [`conv2d_pool_forward_serial`]: the
/// fused path's, or the unfused convolution's output and its own scratch.
/// `epilogue` is the list the call will pass.
pub fn conv2d_pool_forward_scratch_len(
    kern: &Kernels,
    g: &Conv2dGeometry,
    pool: impl Into<PoolWindows>,
    epilogue: &[ConvEpilogue<'_>],
) -> usize {
    match fused(kern, g, pool.into(), epilogue) {
        Some(how) => conv::direct_weights_len(kern, g) + fused_image_scratch_len(g, how),
        None => g.output_len() + conv::conv2d_forward_scratch_len(kern, g),
    }
}

/// The scratch length (floats) of [`conv2d_pool_forward_prepacked_serial`].
pub fn conv2d_pool_forward_prepacked_scratch_len(
    kern: &Kernels,
    g: &Conv2dGeometry,
    pool: impl Into<PoolWindows>,
    epilogue: &[ConvEpilogue<'_>],
) -> usize {
    match fused(kern, g, pool.into(), epilogue) {
        Some(how) => fused_image_scratch_len(g, how),
        None => g.output_len() + conv::conv2d_forward_prepacked_scratch_len(kern, g),
    }
}

fn check(
    g: &Conv2dGeometry,
    pool: PoolWindows,
    x: &[f32],
    given: Given<'_>,
    epilogue: &[ConvEpilogue<'_>],
    y: &[f32],
) -> PoolWindows {
    g.assert_valid();
    let p = pool_of(g, pool);
    if let Err(e) = p.pool.validate() {
        panic!("conv + max pool: {e}");
    }
    conv::check_len("input", x.len(), g.input_len());
    if let Given::Stored(w) = given {
        conv::check_len("weight", w.len(), g.weight_len());
    }
    conv::check_len("pooled output", y.len(), p.output_len());
    conv::check_conv_epilogue(g, epilogue);
    p
}

/// One image by the in-register kernel `how`.
fn fused_image(
    kern: &Kernels,
    g: &Conv2dGeometry,
    how: Fused,
    x: &[f32],
    wts: Weights<'_>,
    post: DirectPost<'_>,
    y: &mut [f32],
    scratch: &mut [f32],
) {
    let s = conv::direct_shape(g);
    match how {
        Fused::Channels => {
            let Some(k) = kern.conv_pool_channels else {
                unreachable!("conv + pool: variant {} lacks the kernel", kern.name)
            };
            let xp = &mut scratch[..conv::direct_scratch_len(g)];
            conv::pad_direct_input(g, &s, x, xp);
            // SAFETY: the padded plane, the tap-major weights (fused()
            // chose channel lanes, so every entry point wrote them so), one
            // pooled image and c_out bias values (check_conv_epilogue); the
            // table checked the CPU's features.
            unsafe { k(&s, xp, wts.data, post, y) };
        }
        Fused::Positions => {
            let Some(k) = kern.conv_pool_positions else {
                unreachable!("conv + pool: variant {} lacks the kernel", kern.name)
            };
            let (xp, z): (&[f32], &mut [f32]) = if g.pad == [0; 4] {
                (x, scratch)
            } else {
                let (xp, z) = scratch.split_at_mut(conv::direct_scratch_len(g));
                conv::pad_direct_input(g, &s, x, xp);
                (xp, z)
            };
            // SAFETY: as above, with OIHW weights and the parity layout's
            // scratch (fused_image_scratch_len).
            unsafe { k(&s, xp, wts.data, post, y, z) };
        }
    }
}

/// Every image of the fused path on this thread.
#[allow(clippy::too_many_arguments)]
fn fused_serial(
    kern: &Kernels,
    g: &Conv2dGeometry,
    how: Fused,
    x: &[f32],
    wts: Weights<'_>,
    post: DirectPost<'_>,
    y: &mut [f32],
    scratch: &mut [f32],
) {
    let (in_img, out_img) = (g.c_in * g.h * g.w, y.len() / g.n.max(1));
    for (img, yi) in y.chunks_exact_mut(out_img).enumerate() {
        let xi = &x[img * in_img..(img + 1) * in_img];
        fused_image(kern, g, how, xi, wts, post, yi, scratch);
    }
}

/// The weights an entry point was given: as stored (OIHW), or packed in
/// advance by [`conv::conv2d_pack_weights`].
#[derive(Clone, Copy)]
enum Given<'a> {
    Stored(&'a [f32]),
    Packed(&'a [f32]),
}

/// The serial entry points' one body.
#[allow(clippy::too_many_arguments)]
fn forward_serial(
    kern: &Kernels,
    g: &Conv2dGeometry,
    pool: PoolWindows,
    x: &[f32],
    given: Given<'_>,
    epilogue: &[ConvEpilogue<'_>],
    y: &mut [f32],
    scratch: &mut [f32],
) {
    let p = check(g, pool, x, given, epilogue, y);
    let need = match given {
        Given::Stored(_) => conv2d_pool_forward_scratch_len(kern, g, pool, epilogue),
        Given::Packed(_) => conv2d_pool_forward_prepacked_scratch_len(kern, g, pool, epilogue),
    };
    conv::check_len("scratch", scratch.len(), need);
    let y = &mut y[..p.output_len()];
    let Some(how) = fused(kern, g, pool, epilogue) else {
        let (full, rest) = scratch.split_at_mut(g.output_len());
        match given {
            Given::Stored(w) => conv::conv2d_forward_serial(kern, g, x, w, epilogue, full, rest),
            Given::Packed(pk) => {
                conv::conv2d_forward_prepacked_serial(kern, g, x, pk, epilogue, full, rest)
            }
        }
        return pool::max_pool2d_forward(full, y, p);
    };
    let post = conv::direct_post(epilogue).0;
    match given {
        Given::Stored(w) => {
            let (wt, rest) = scratch.split_at_mut(conv::direct_weights_len(kern, g));
            let wts = conv::direct_weights(kern, g, w, wt);
            fused_serial(kern, g, how, x, wts, post, y, rest);
        }
        Given::Packed(pk) => {
            let wts = conv::packed_view(kern, g, pk);
            fused_serial(kern, g, how, x, wts, post, y, scratch);
        }
    }
}

/// `y = max_pool(epilogue(conv(x, w)))` on the calling thread,
/// allocation-free, with `scratch` of at least
/// [`conv2d_pool_forward_scratch_len`] floats. The same bits as
/// [`conv::conv2d_forward_serial`] followed by
/// [`pool::max_pool2d_forward`].
///
/// # Panics
///
/// If the geometry or the window is invalid or a buffer is too short (a
/// caller bug).
#[allow(clippy::too_many_arguments)]
pub fn conv2d_pool_forward_serial(
    kern: &Kernels,
    g: &Conv2dGeometry,
    pool: impl Into<PoolWindows>,
    x: &[f32],
    w: &[f32],
    epilogue: &[ConvEpilogue<'_>],
    y: &mut [f32],
    scratch: &mut [f32],
) {
    let given = Given::Stored(w);
    forward_serial(kern, g, pool.into(), x, given, epilogue, y, scratch);
}

/// [`conv2d_pool_forward_serial`] with weights packed in advance by
/// [`conv::conv2d_pack_weights`] for the same variant and geometry;
/// `scratch` of at least [`conv2d_pool_forward_prepacked_scratch_len`]
/// floats.
///
/// # Panics
///
/// As [`conv2d_pool_forward_serial`].
#[allow(clippy::too_many_arguments)]
pub fn conv2d_pool_forward_prepacked_serial(
    kern: &Kernels,
    g: &Conv2dGeometry,
    pool: impl Into<PoolWindows>,
    x: &[f32],
    packed: &[f32],
    epilogue: &[ConvEpilogue<'_>],
    y: &mut [f32],
    scratch: &mut [f32],
) {
    let given = Given::Packed(packed);
    forward_serial(kern, g, pool.into(), x, given, epilogue, y, scratch);
}

/// The fused path over the thread pool: images in parallel when the work
/// is large enough, each with this thread's scratch.
#[cfg(feature = "std")]
fn fused_threaded(
    kern: &Kernels,
    g: &Conv2dGeometry,
    how: Fused,
    x: &[f32],
    wts: Weights<'_>,
    post: DirectPost<'_>,
    y: &mut [f32],
) {
    use super::gemm::{Slot, with_scratch};
    use super::parallel::for_each_chunk_mut;
    let in_img = g.c_in * g.h * g.w;
    let out_img = y.len() / g.n.max(1);
    let len = fused_image_scratch_len(g, how);
    for_each_chunk_mut(y, out_img, g.flops() / 2, |img, yi| {
        let xi = &x[img * in_img..(img + 1) * in_img];
        with_scratch(Slot::Conv, len, |scratch| {
            fused_image(kern, g, how, xi, wts, post, yi, scratch)
        });
    });
}

/// The threaded entry points' one body.
#[cfg(feature = "std")]
fn forward_threaded(
    kern: &Kernels,
    g: &Conv2dGeometry,
    pool: PoolWindows,
    x: &[f32],
    given: Given<'_>,
    epilogue: &[ConvEpilogue<'_>],
    y: &mut [f32],
) {
    use super::gemm::{Slot, with_scratch};
    let p = check(g, pool, x, given, epilogue, y);
    let y = &mut y[..p.output_len()];
    let Some(how) = fused(kern, g, pool, epilogue) else {
        return with_scratch(Slot::Pooled, g.output_len(), |full| {
            match given {
                Given::Stored(w) => conv::conv2d_forward(kern, g, x, w, epilogue, full),
                Given::Packed(pk) => conv::conv2d_forward_prepacked(kern, g, x, pk, epilogue, full),
            }
            pool::max_pool2d_forward(full, y, p);
        });
    };
    let post = conv::direct_post(epilogue).0;
    match given {
        Given::Stored(w) => with_scratch(Slot::Weights, conv::direct_weights_len(kern, g), |wt| {
            let wts = conv::direct_weights(kern, g, w, wt);
            fused_threaded(kern, g, how, x, wts, post, y);
        }),
        Given::Packed(pk) => {
            let wts = conv::packed_view(kern, g, pk);
            fused_threaded(kern, g, how, x, wts, post, y);
        }
    }
}

/// `y = max_pool(epilogue(conv(x, w)))` over the thread pool: the same
/// bits as [`conv::conv2d_forward`] followed by
/// [`pool::max_pool2d_forward`], whatever the thread count.
///
/// # Panics
///
/// As [`conv2d_pool_forward_serial`].
#[cfg(feature = "std")]
pub fn conv2d_pool_forward(
    kern: &Kernels,
    g: &Conv2dGeometry,
    pool: impl Into<PoolWindows>,
    x: &[f32],
    w: &[f32],
    epilogue: &[ConvEpilogue<'_>],
    y: &mut [f32],
) {
    forward_threaded(kern, g, pool.into(), x, Given::Stored(w), epilogue, y);
}

/// [`conv2d_pool_forward`] with weights packed in advance by
/// [`conv::conv2d_pack_weights`].
///
/// # Panics
///
/// As [`conv2d_pool_forward_serial`].
#[cfg(feature = "std")]
pub fn conv2d_pool_forward_prepacked(
    kern: &Kernels,
    g: &Conv2dGeometry,
    pool: impl Into<PoolWindows>,
    x: &[f32],
    packed: &[f32],
    epilogue: &[ConvEpilogue<'_>],
    y: &mut [f32],
) {
    forward_threaded(kern, g, pool.into(), x, Given::Packed(packed), epilogue, y);
}

/// The AVX-512F [`PoolDirectKernel`].
///
/// # Safety
///
/// As [`PoolDirectKernel`]; the CPU must support AVX-512F.
#[cfg(target_arch = "x86_64")]
pub unsafe fn pool_direct_avx512(
    s: &DirectShape,
    x: &[f32],
    w: &[f32],
    post: DirectPost<'_>,
    y: &mut [f32],
    z: &mut [f32],
) {
    // SAFETY: forwarded contract; the dispatch table checked the features.
    unsafe { pool_direct_avx512_impl(s, x, w, post, y, z) }
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
unsafe fn pool_direct_avx512_impl(
    s: &DirectShape,
    x: &[f32],
    w: &[f32],
    post: DirectPost<'_>,
    y: &mut [f32],
    z: &mut [f32],
) {
    let (ph, pw) = (s.oh / 2, s.ow / 2);
    assert!(
        s.c_out >= 1
            && s.c_out <= super::conv_direct::DIRECT_MAX_C_OUT
            && s.c_in > 0
            && s.kh > 0
            && s.kw > 0
            && ph > 0
            && pw > 0
            && s.dilation == [1, 1]
            && s.oh + s.kh - 1 == s.hp
            && s.ow + s.kw - 1 == s.wp,
        "conv + pool (position lanes): shape {s:?}"
    );
    assert!(x.len() >= s.c_in * s.hp * s.wp, "conv + pool: short input");
    assert!(
        w.len() >= s.c_out * s.c_in * s.kh * s.kw,
        "conv + pool: short weight"
    );
    assert!(y.len() >= s.c_out * ph * pw, "conv + pool: short output");
    assert!(z.len() >= parity_len(s), "conv + pool: short scratch");
    assert!(
        post.bias.is_none_or(|b| b.len() >= s.c_out),
        "conv + pool: short bias"
    );
    // SAFETY: the lengths were checked just above.
    unsafe { parity_layout_avx512(s, x.as_ptr(), z.as_mut_ptr()) };
    let (zp, wp, yp) = (z.as_ptr(), w.as_ptr(), y.as_mut_ptr());
    let npos = ph * pw;
    // Channel blocks of nearly equal size, at most six (4 × 6 accumulators).
    let mut blocks = s.c_out.div_ceil(6);
    let mut co0 = 0;
    while co0 < s.c_out {
        let cb = (s.c_out - co0).div_ceil(blocks);
        for f0 in (0..npos).step_by(16) {
            // SAFETY: the buffers were checked above; co0 + cb ≤ c_out and
            // f0 < npos.
            unsafe {
                match (cb, s.kw) {
                    (1, _) => pool_block_avx512::<1, 0>(s, zp, wp, post, yp, co0, f0),
                    (2, _) => pool_block_avx512::<2, 0>(s, zp, wp, post, yp, co0, f0),
                    (3, _) => pool_block_avx512::<3, 0>(s, zp, wp, post, yp, co0, f0),
                    (4, _) => pool_block_avx512::<4, 0>(s, zp, wp, post, yp, co0, f0),
                    (5, _) => pool_block_avx512::<5, 0>(s, zp, wp, post, yp, co0, f0),
                    (_, 5) => pool_block_avx512::<6, 5>(s, zp, wp, post, yp, co0, f0),
                    _ => pool_block_avx512::<6, 0>(s, zp, wp, post, yp, co0, f0),
                }
            }
        }
        co0 += cb;
        blocks -= 1;
    }
}

/// Writes the parity layout of the padded input `x` into `z`: row `i` of
/// array `(c, par, t)` holds `x[c][2i + par][2j + t]` for `j < ⌊ow/2⌋`
/// (zeros for rows past the plane, which no tap reads). Each input row is
/// read as pairs of vectors from `2j + 2u` (`u ≤ kw/2`), and each pair gives
/// arrays `t = 2u` and `2u + 1` by one even and one odd lane permute.
///
/// # Safety
///
/// `x` readable for the padded plane, `z` writable for [`parity_len`]
/// floats; the CPU must support AVX-512F.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
unsafe fn parity_layout_avx512(s: &DirectShape, x: *const f32, z: *mut f32) {
    use core::arch::x86_64::*;
    let even = _mm512_setr_epi32(0, 2, 4, 6, 8, 10, 12, 14, 16, 18, 20, 22, 24, 26, 28, 30);
    let odd = _mm512_setr_epi32(1, 3, 5, 7, 9, 11, 13, 15, 17, 19, 21, 23, 25, 27, 29, 31);
    let mask = |n: usize| -> __mmask16 { ((1u32 << n.min(16)) - 1) as u16 };
    let (pw, zs) = (s.ow / 2, parity_stride(s));
    let zrows = s.oh / 2 + s.kh / 2;
    let arr =
        |c: usize, par: usize, t: usize| z.wrapping_add(((c * 2 + par) * (s.kw + 1) + t) * zs);
    // Input rows 2i + par with i < zrows that lie inside the plane.
    let rows = (2 * zrows).min(s.hp);
    for c in 0..s.c_in {
        let plane = x.wrapping_add(c * s.hp * s.wp);
        let mut j = 0;
        while j < pw {
            let n = (pw - j).min(16);
            for u in 0..=s.kw / 2 {
                // The values from column 2j + 2u that arrays 2u and 2u + 1
                // read: up to 2(n − 1) + 1 + 2u + 2j < Wp (t = 2u + 1 ≤ kw
                // is read only when it exists, and then 2(pw − 1) + t ≤ ow −
                // 2 + kw < Wp); array 2u alone needs one value less.
                let have = s.wp - (2 * j + 2 * u);
                let take = (2 * n).min(have);
                let (m_lo, m_hi) = (mask(take), mask(take.saturating_sub(16)));
                let t_odd = 2 * u < s.kw;
                for row in 0..rows {
                    let src = plane.wrapping_add(row * s.wp + 2 * j + 2 * u);
                    let at = (row / 2) * pw + j;
                    // SAFETY: the masked loads read `take` values of input
                    // row `row < Hp` from column 2j + 2u, inside the row;
                    // the stores write n values of row row/2 < zrows of
                    // arrays (c, row mod 2, 2u) and (…, 2u + 1 ≤ kw).
                    unsafe {
                        let lo = _mm512_maskz_loadu_ps(m_lo, src);
                        let hi = _mm512_maskz_loadu_ps(m_hi, src.add(16));
                        let e = _mm512_permutex2var_ps(lo, even, hi);
                        _mm512_mask_storeu_ps(arr(c, row % 2, 2 * u).add(at), mask(n), e);
                        if t_odd {
                            let o = _mm512_permutex2var_ps(lo, odd, hi);
                            _mm512_mask_storeu_ps(arr(c, row % 2, 2 * u + 1).add(at), mask(n), o);
                        }
                    }
                }
            }
            j += 16;
        }
        for par in 0..2 {
            for t in 0..=s.kw {
                let a = arr(c, par, t);
                // Rows past the plane (no tap reads them), then the tail
                // the last vector of windows reads past.
                let first = (rows + 1 - par) / 2;
                for k in first * pw..zrows * pw + 16 {
                    // SAFETY: inside the array's zs floats.
                    unsafe { *a.add(k) = 0.0 };
                }
            }
        }
    }
}

/// Channels `co0 .. co0 + CB` at the sixteen windows from pooled position
/// `f0`: `4 × CB` accumulators (the four members of each window) over every
/// tap, then the bias, the ReLU and the window's maximum.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
#[inline]
unsafe fn pool_block_avx512<const CB: usize, const KW: usize>(
    s: &DirectShape,
    z: *const f32,
    w: *const f32,
    post: DirectPost<'_>,
    y: *mut f32,
    co0: usize,
    f0: usize,
) {
    use core::arch::x86_64::*;
    let (pw, zs) = (s.ow / 2, parity_stride(s));
    let npos = (s.oh / 2) * pw;
    let taps = s.c_in * s.kh * s.kw;
    let mut acc = [[_mm512_setzero_ps(); 4]; CB];
    for c in 0..s.c_in {
        for r in 0..s.kh {
            // Window rows dy = 0 and 1 read input row 2i + dy + r: parity
            // (dy + r) mod 2, pooled-row offset ⌊(dy + r)/2⌋.
            let base = |dy: usize| {
                let (par, off) = ((dy + r) % 2, (dy + r) / 2);
                z.wrapping_add((c * 2 + par) * (s.kw + 1) * zs + f0 + off * pw)
            };
            let (b0, b1) = (base(0), base(1));
            let tap0 = (c * s.kh + r) * s.kw;
            // A kernel width known at compile time (KW > 0) unrolls the taps.
            for q in 0..if KW > 0 { KW } else { s.kw } {
                // SAFETY: each load reads sixteen floats of array (c, par,
                // q + dx) from f0 + off·pw ≤ (rows − 1)·pw + pw − 1 + 15
                // < zs; the weight index is below c_out·taps.
                unsafe {
                    let xv = [
                        _mm512_loadu_ps(b0.add(q * zs)),
                        _mm512_loadu_ps(b0.add((q + 1) * zs)),
                        _mm512_loadu_ps(b1.add(q * zs)),
                        _mm512_loadu_ps(b1.add((q + 1) * zs)),
                    ];
                    for (k, a) in acc.iter_mut().enumerate() {
                        let wv = _mm512_set1_ps(*w.add((co0 + k) * taps + tap0 + q));
                        for (a, x) in a.iter_mut().zip(&xv) {
                            *a = _mm512_fmadd_ps(wv, *x, *a);
                        }
                    }
                }
            }
        }
    }
    let zero = _mm512_setzero_ps();
    let width = (npos - f0).min(16);
    let mask = ((1u32 << width) - 1) as u16;
    for (k, a) in acc.iter().enumerate() {
        let co = co0 + k;
        let b = match post.bias {
            Some(b) => _mm512_set1_ps(b[co]),
            None => zero,
        };
        let mut m = [zero; 4];
        for (m, a) in m.iter_mut().zip(a) {
            *m = _mm512_add_ps(*a, b);
            if post.relu {
                *m = _mm512_max_ps(*m, zero);
            }
        }
        // The pooling kernel's order: top-left first, then a later value
        // only where it is greater.
        let v = _mm512_max_ps(m[3], _mm512_max_ps(m[2], _mm512_max_ps(m[1], m[0])));
        // SAFETY: `width` pooled positions from f0 of channel co < c_out
        // lie inside y.
        unsafe { _mm512_mask_storeu_ps(y.add(co * npos + f0), mask, v) };
    }
}
