//! The direct convolution kernel for few output channels (LeNet's layers):
//! an implicit GEMM over the output rows, with no column matrix and no
//! intermediate output buffer.
//!
//! With stride 1 and the input copied into a zero-padded plane of width
//! `Wp`, output position `(oy, ox)` reads input `(oy + r·dh, ox + q·dw)`, so
//! for a vector of positions `ox .. ox + lanes` of one output row every tap
//! `(c, r, q)` is one *contiguous* load at `c·Hp·Wp + (oy + r·dh)·Wp + ox +
//! q·dw`. Each output row is covered by `⌈out_w / lanes⌉` such vectors; the
//! lanes of the last one past `out_w` are computed from whatever follows in
//! the plane and never stored (a masked store).
//!
//! For a block of output channels and a group of vectors (possibly from
//! several rows) the kernel keeps one accumulator per (channel, vector) in
//! registers and, for every tap, loads the group's input vectors once and
//! each channel's weight once (broadcast), issuing one fused multiply-add
//! per pair. The bias and ReLU of [`DirectPost`] are applied in registers,
//! and each vector is stored straight into the output image. Each output
//! value's sum runs over the taps in order `(c, r, q)`, whatever the
//! blocking, so the result does not depend on the variant's block sizes or
//! on the thread count.

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
    /// Output height: `Hp − (kh − 1)·dh`.
    pub oh: usize,
    /// Output width: `Wp − (kw − 1)·dw`.
    pub ow: usize,
}

/// The most output channels the direct kernel keeps in registers.
pub const DIRECT_MAX_C_OUT: usize = 16;

/// The widest vector of any variant, in floats (AVX-512).
const MAX_LANES: usize = 16;

/// What the direct kernel applies to each output vector in registers before
/// storing it: `v + bias[c]` (when given), then `max(v, 0)` (with `relu`).
/// The caller fuses the leading bias and ReLU steps of a convolution's
/// epilogue list here and applies the rest afterwards.
#[derive(Debug, Clone, Copy, Default)]
pub struct DirectPost<'a> {
    /// Bias per output channel (`c_out` values), added first.
    pub bias: Option<&'a [f32]>,
    /// Whether ReLU follows.
    pub relu: bool,
}

/// Computes one image's output `y` (`c_out × oh × ow`, NCHW) from the padded
/// input `x` (`c_in × Hp × Wp`, followed by at least [`tail_len`] more
/// floats, whose values never reach the output) and the OIHW weight `w`,
/// with `post` applied to every value.
///
/// The output channels go in blocks (up to 8 with AVX-512, 6 with AVX2), and
/// each block's vectors of positions in groups, so that every tap's input
/// vectors are reused by every channel of the block and every broadcast
/// weight by every vector of the group.
///
/// # Safety
///
/// `x` must hold `c_in·Hp·Wp + tail_len(s)` floats, `w` the weight, `y`
/// `c_out·oh·ow` floats, `post.bias` (if any) `c_out` floats, the shape must
/// be consistent (`oh`, `ow` as documented, `1 ≤ c_out ≤ 16`), and the CPU
/// must support the variant's instructions (the dispatch table guarantees
/// this). The kernel asserts the lengths and the shape.
pub type DirectKernel =
    unsafe fn(s: &DirectShape, x: &[f32], w: &[f32], post: DirectPost<'_>, y: &mut [f32]);

/// Computes the weight gradient of output channels `co = (start, end)` for
/// one image: `dw[co − start, c, r, q] (+)= Σ_{oy, ox} dy[co, oy, ox] ·
/// x[c, oy + r·dh, ox + q·dw]`, from the padded input `x` (as for
/// [`DirectKernel`]) and the image's output gradient `dy` (`c_out × oh ×
/// ow`), into `dw`, the OIHW gradient rows of those channels; with
/// `accumulate` the sums are added to `dw`, else they overwrite it. Each sum runs over the
/// rows, the vectors of a row and then the lanes in a fixed order.
///
/// # Safety
///
/// As [`DirectKernel`], with `dw` holding the gradient rows of channels
/// `start .. end`, `start ≤ end ≤ c_out` and `kw ≤` [`DIRECT_MAX_KW_BACKWARD`].
pub type DirectBackwardWeightKernel = unsafe fn(
    s: &DirectShape,
    x: &[f32],
    dy: &[f32],
    dw: &mut [f32],
    co: (usize, usize),
    accumulate: bool,
);

/// The widest kernel the backward-weight kernel keeps in registers.
pub const DIRECT_MAX_KW_BACKWARD: usize = 7;

/// Floats the kernel may read after the padded input: the last vector of
/// the last row, at the last tap, ends up to `⌈ow / 16⌉·16 − ow` lanes past
/// the plane's last output-reachable column.
pub const fn tail_len(s: &DirectShape) -> usize {
    let row_end = s.ow.div_ceil(MAX_LANES) * MAX_LANES;
    let last = (s.oh - 1 + (s.kh - 1) * s.dilation[0]) * s.wp + (s.kw - 1) * s.dilation[1];
    (last + row_end).saturating_sub(s.hp * s.wp)
}

/// Whether the shape has one output position (the kernel covers the whole
/// input, LeNet's C5): a matrix-vector product over the OIHW rows.
#[cfg_attr(
    not(target_arch = "x86_64"),
    allow(dead_code, reason = "only the x86-64 direct kernels exist so far")
)]
const fn is_matrix_vector(s: &DirectShape) -> bool {
    s.oh == 1 && s.ow == 1 && s.dilation[0] == 1 && s.dilation[1] == 1
}

/// Whether `s` is a shape the kernel accepts.
#[cfg_attr(
    not(target_arch = "x86_64"),
    allow(dead_code, reason = "only the x86-64 direct kernels exist so far")
)]
fn consistent(s: &DirectShape) -> bool {
    (s.c_out >= 1 && (s.c_out <= DIRECT_MAX_C_OUT || is_matrix_vector(s)))
        && s.c_in > 0
        && s.kh > 0
        && s.kw > 0
        && s.oh > 0
        && s.ow > 0
        && s.oh + (s.kh - 1) * s.dilation[0] == s.hp
        && s.ow + (s.kw - 1) * s.dilation[1] == s.wp
}

macro_rules! direct_impl {
    ($block:ident, $name:ident, $driver:ident, $feature:literal, $lanes:literal, $max_cb:literal,
     $vec:ty, $zero:ident, $load:ident, $set1:ident, $fma:ident, $add:ident, $max:ident,
     $store:ident, $store_part:ident, $load_part:ident, $reduce:ident, $rows:literal,
     $gemv_block:ident, $gemv:ident, $dot_rows:ident, $dot_rows_impl:ident,
     $bw_block:ident, $bw:ident, $bw_cb:literal,
     [$($cb:literal => $v:literal),*]) => {
        /// Output channels `co0 .. co0 + CB`, kernel row `r` of input
        /// channel `c`, all `Q` columns: `CB × Q` accumulators over every
        /// position vector of the image, then reduced into `dw`.
        #[cfg(target_arch = "x86_64")]
        #[target_feature(enable = $feature)]
        #[inline]
        unsafe fn $bw_block<const CB: usize, const Q: usize>(
            s: &DirectShape,
            xp: *const f32,
            dyp: *const f32,
            dwp: *mut f32,
            (co_start, co0): (usize, usize),
            (c, r): (usize, usize),
            accumulate: bool,
        ) {
            use core::arch::x86_64::*;
            let plane = s.hp * s.wp;
            let out_plane = s.oh * s.ow;
            let taps = s.c_in * s.kh * s.kw;
            let mut acc: [[$vec; Q]; CB] = [[$zero(); Q]; CB];
            for oy in 0..s.oh {
                let x_row = c * plane + (oy + r * s.dilation[0]) * s.wp;
                let mut ox = 0;
                while ox < s.ow {
                    let width = (s.ow - ox).min($lanes);
                    // SAFETY: dy reads stay in row oy of each channel's
                    // plane; x reads start inside the padded plane and,
                    // for a partial vector, read only `width` lanes (full
                    // ones end within the tail).
                    unsafe {
                        let mut xv: [$vec; Q] = [$zero(); Q];
                        let mut dv: [$vec; CB] = [$zero(); CB];
                        if width == $lanes {
                            for (q, v) in xv.iter_mut().enumerate() {
                                *v = $load(xp.add(x_row + ox + q * s.dilation[1]));
                            }
                            for (k, v) in dv.iter_mut().enumerate() {
                                *v = $load(dyp.add((co0 + k) * out_plane + oy * s.ow + ox));
                            }
                        } else {
                            for (q, v) in xv.iter_mut().enumerate() {
                                *v = $load_part(xp.add(x_row + ox + q * s.dilation[1]), width);
                            }
                            for (k, v) in dv.iter_mut().enumerate() {
                                *v = $load_part(
                                    dyp.add((co0 + k) * out_plane + oy * s.ow + ox),
                                    width,
                                );
                            }
                        }
                        for (row_acc, d) in acc.iter_mut().zip(&dv) {
                            for (a, v) in row_acc.iter_mut().zip(&xv) {
                                *a = $fma(*d, *v, *a);
                            }
                        }
                    }
                    ox += $lanes;
                }
            }
            for (k, row_acc) in acc.iter().enumerate() {
                for (q, a) in row_acc.iter().enumerate() {
                    let at = (co0 + k - co_start) * taps + (c * s.kh + r) * s.kw + q;
                    let v = $reduce(*a);
                    // SAFETY: co_start ≤ co0 + k < co_end and the tap index
                    // is below taps, so `at` is inside the rows of dw.
                    unsafe {
                        if accumulate {
                            *dwp.add(at) += v;
                        } else {
                            *dwp.add(at) = v;
                        }
                    }
                }
            }
        }

        /// The backward-weight kernel of this variant.
        ///
        /// # Safety
        ///
        /// As [`DirectBackwardWeightKernel`]; the CPU must support the
        /// variant's instructions.
        #[cfg(target_arch = "x86_64")]
        #[target_feature(enable = $feature)]
        pub unsafe fn $bw(
            s: &DirectShape,
            x: &[f32],
            dy: &[f32],
            dw: &mut [f32],
            (co_start, co_end): (usize, usize),
            accumulate: bool,
        ) {
            assert!(consistent(s) && s.c_out <= DIRECT_MAX_C_OUT, "direct conv: inconsistent shape {s:?}");
            assert!(
                (1..=DIRECT_MAX_KW_BACKWARD).contains(&s.kw),
                "direct conv backward: kernel width {} above {DIRECT_MAX_KW_BACKWARD}",
                s.kw
            );
            assert!(co_start <= co_end && co_end <= s.c_out, "direct conv backward: channel range");
            let taps = s.c_in * s.kh * s.kw;
            assert!(
                x.len() >= s.c_in * s.hp * s.wp + tail_len(s),
                "direct conv backward: short input"
            );
            assert!(dy.len() >= s.c_out * s.oh * s.ow, "direct conv backward: short gradient");
            assert!(
                dw.len() >= (co_end - co_start) * taps,
                "direct conv backward: short weight gradient"
            );
            let (xp, dyp, dwp) = (x.as_ptr(), dy.as_ptr(), dw.as_mut_ptr());
            let mut blocks = (co_end - co_start).div_ceil($bw_cb);
            let mut co0 = co_start;
            while co0 < co_end {
                let cb = (co_end - co0).div_ceil(blocks);
                for c in 0..s.c_in {
                    for r in 0..s.kh {
                        macro_rules! go {
                            ($cbn:literal) => {
                                // SAFETY: the buffers were checked above;
                                // co0 + cb ≤ co_end and kw is in range.
                                unsafe {
                                    match s.kw {
                                        1 => $bw_block::<$cbn, 1>(s, xp, dyp, dwp, (co_start, co0), (c, r), accumulate),
                                        2 => $bw_block::<$cbn, 2>(s, xp, dyp, dwp, (co_start, co0), (c, r), accumulate),
                                        3 => $bw_block::<$cbn, 3>(s, xp, dyp, dwp, (co_start, co0), (c, r), accumulate),
                                        4 => $bw_block::<$cbn, 4>(s, xp, dyp, dwp, (co_start, co0), (c, r), accumulate),
                                        5 => $bw_block::<$cbn, 5>(s, xp, dyp, dwp, (co_start, co0), (c, r), accumulate),
                                        6 => $bw_block::<$cbn, 6>(s, xp, dyp, dwp, (co_start, co0), (c, r), accumulate),
                                        _ => $bw_block::<$cbn, 7>(s, xp, dyp, dwp, (co_start, co0), (c, r), accumulate),
                                    }
                                }
                            };
                        }
                        match cb {
                            1 => go!(1),
                            2 => go!(2),
                            _ => go!(3),
                        }
                    }
                }
                co0 += cb;
                blocks -= 1;
            }
        }

        /// Rows `co0 .. co0 + R` of the matrix-vector product
        /// `y[co] = post(Σ_k w[co·len + k] · x[k])`: `R` accumulators over
        /// the input in vectors (the last one partial), each reduced in a
        /// fixed order at the end.
        #[cfg(target_arch = "x86_64")]
        #[target_feature(enable = $feature)]
        #[inline]
        unsafe fn $gemv_block<const R: usize>(
            len: usize,
            xp: *const f32,
            wp: *const f32,
            ldw: usize,
            post: DirectPost<'_>,
            yp: *mut f32,
            co0: usize,
        ) {
            use core::arch::x86_64::*;
            let mut acc: [$vec; R] = [$zero(); R];
            let mut i = 0;
            // SAFETY: every read lies inside row co0 + r < c_out of the
            // weight (len floats each) or inside x's first len floats; the
            // partial vector reads only its `len − i` lanes.
            unsafe {
                while i + $lanes <= len {
                    let xv = $load(xp.add(i));
                    for (r, a) in acc.iter_mut().enumerate() {
                        *a = $fma($load(wp.add((co0 + r) * ldw + i)), xv, *a);
                    }
                    i += $lanes;
                }
                if i < len {
                    let xv = $load_part(xp.add(i), len - i);
                    for (r, a) in acc.iter_mut().enumerate() {
                        *a = $fma($load_part(wp.add((co0 + r) * ldw + i), len - i), xv, *a);
                    }
                }
                for (r, a) in acc.iter().enumerate() {
                    let co = co0 + r;
                    let mut v = $reduce(*a);
                    if let Some(b) = post.bias {
                        v += b[co];
                    }
                    if post.relu {
                        v = v.max(0.0);
                    }
                    *yp.add(co) = v;
                }
            }
        }

        /// The one-position case: every output channel is the dot product
        /// of its weight row with the whole (unpadded) input.
        #[cfg(target_arch = "x86_64")]
        #[target_feature(enable = $feature)]
        unsafe fn $gemv(s: &DirectShape, xp: *const f32, wp: *const f32, post: DirectPost<'_>, yp: *mut f32) {
            let len = s.c_in * s.kh * s.kw;
            // SAFETY: forwarded contract: c_out rows of len floats.
            unsafe { $dot_rows_impl(s.c_out, len, wp, len, xp, post, yp) }
        }

        /// `rows` dot products at once: `y[r] = post(Σ_k w[r·ldw + k] · x[k])`,
        /// in blocks of rows that share each loaded vector of `x`.
        #[cfg(target_arch = "x86_64")]
        #[target_feature(enable = $feature)]
        unsafe fn $dot_rows_impl(
            rows: usize,
            len: usize,
            wp: *const f32,
            ldw: usize,
            xp: *const f32,
            post: DirectPost<'_>,
            yp: *mut f32,
        ) {
            let mut co = 0;
            while co + $rows <= rows {
                // SAFETY: forwarded contract; rows co .. co + R exist.
                unsafe { $gemv_block::<$rows>(len, xp, wp, ldw, post, yp, co) };
                co += $rows;
            }
            while co < rows {
                // SAFETY: forwarded contract; row co exists.
                unsafe { $gemv_block::<1>(len, xp, wp, ldw, post, yp, co) };
                co += 1;
            }
        }

        /// This variant's [`DotRowsKernel`](super::dispatch::DotRowsKernel).
        ///
        /// # Safety
        ///
        /// As [`DotRowsKernel`](super::dispatch::DotRowsKernel); the CPU must
        /// support the variant's instructions.
        #[cfg(target_arch = "x86_64")]
        pub unsafe fn $dot_rows(
            rows: usize,
            len: usize,
            w: *const f32,
            ldw: usize,
            x: *const f32,
            y: *mut f32,
        ) {
            // SAFETY: forwarded contract; the dispatch table checked the
            // features.
            unsafe { $dot_rows_impl(rows, len, w, ldw, x, DirectPost::default(), y) }
        }

        /// Channels `co0 .. co0 + CB` at the `V` vectors of positions from
        /// vector `t0` (row-major over rows of `⌈ow / lanes⌉` vectors):
        /// `CB × V` accumulators in registers over every tap.
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
            t0: usize,
        ) {
            use core::arch::x86_64::*;
            let taps = s.c_in * s.kh * s.kw;
            let plane = s.hp * s.wp;
            let out_plane = s.oh * s.ow;
            let per_row = s.ow.div_ceil($lanes);
            let mut x_at = [0usize; V];
            let mut y_at = [0usize; V];
            let mut width = [0usize; V];
            for v in 0..V {
                let (oy, j) = ((t0 + v) / per_row, (t0 + v) % per_row);
                x_at[v] = oy * s.wp + j * $lanes;
                y_at[v] = oy * s.ow + j * $lanes;
                width[v] = (s.ow - j * $lanes).min($lanes);
            }
            let mut acc: [[$vec; V]; CB] = [[$zero(); V]; CB];
            for c in 0..s.c_in {
                for r in 0..s.kh {
                    let row = c * plane + r * s.dilation[0] * s.wp;
                    let tap0 = (c * s.kh + r) * s.kw;
                    for q in 0..s.kw {
                        let at = row + q * s.dilation[1];
                        // SAFETY: every read starts below c_in·plane and
                        // ends within the tail_len floats the caller
                        // provides after it; the weight index is below
                        // c_out·taps.
                        unsafe {
                            let mut xv: [$vec; V] = [$zero(); V];
                            for (xv, &x_at) in xv.iter_mut().zip(&x_at) {
                                *xv = $load(xp.add(at + x_at));
                            }
                            for (k, row_acc) in acc.iter_mut().enumerate() {
                                let wv = $set1(*wp.add((co0 + k) * taps + tap0 + q));
                                for (a, xv) in row_acc.iter_mut().zip(&xv) {
                                    *a = $fma(wv, *xv, *a);
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
                for v in 0..V {
                    let mut out = $add(row_acc[v], b);
                    if post.relu {
                        out = $max(out, zero);
                    }
                    let dst = co * out_plane + y_at[v];
                    // SAFETY: the vector's `width` lanes are positions of
                    // output row oy, inside channel co's plane of y.
                    unsafe {
                        if width[v] == $lanes {
                            $store(yp.add(dst), out);
                        } else {
                            $store_part(yp.add(dst), out, width[v]);
                        }
                    }
                }
            }
        }

        /// Every vector of channels `co0 .. co0 + CB`: groups of `V`, then
        /// single vectors for the rest.
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
            let total = s.oh * s.ow.div_ceil($lanes);
            let mut t = 0;
            while t + V <= total {
                // SAFETY: forwarded contract; vectors t .. t + V exist.
                unsafe { $block::<CB, V>(s, xp, wp, post, yp, co0, t) };
                t += V;
            }
            while t < total {
                // SAFETY: forwarded contract; vector t exists.
                unsafe { $block::<CB, 1>(s, xp, wp, post, yp, co0, t) };
                t += 1;
            }
        }

        /// The whole kernel: channel blocks of nearly equal size, at most
        /// the variant's block each.
        #[cfg(target_arch = "x86_64")]
        #[target_feature(enable = $feature)]
        unsafe fn $driver(s: &DirectShape, x: &[f32], w: &[f32], post: DirectPost<'_>, y: &mut [f32]) {
            assert!(consistent(s), "direct conv: inconsistent shape {s:?}");
            let taps = s.c_in * s.kh * s.kw;
            let plane = s.hp * s.wp;
            assert!(
                x.len() >= s.c_in * plane + tail_len(s),
                "direct conv: short input"
            );
            assert!(w.len() >= s.c_out * taps, "direct conv: short weight");
            assert!(y.len() >= s.c_out * s.oh * s.ow, "direct conv: short output");
            assert!(
                post.bias.is_none_or(|b| b.len() >= s.c_out),
                "direct conv: short bias"
            );
            let (xp, wp, yp) = (x.as_ptr(), w.as_ptr(), y.as_mut_ptr());
            if is_matrix_vector(s) {
                // SAFETY: the buffers were checked above (one output per
                // channel; the input's first c_in·kh·kw floats).
                return unsafe { $gemv(s, xp, wp, post, yp) };
            }
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

/// Stores the first `n` (< 16) lanes of `v` at `p`.
///
/// # Safety
///
/// `p` must be writable for `n` floats; the CPU must support AVX-512F.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
#[inline]
unsafe fn store_part_avx512(p: *mut f32, v: core::arch::x86_64::__m512, n: usize) {
    use core::arch::x86_64::*;
    // SAFETY: the masked store touches only the n lanes the caller vouches for.
    unsafe { _mm512_mask_storeu_ps(p, ((1u32 << n) - 1) as u16, v) }
}

/// Stores the first `n` (< 8) lanes of `v` at `p`.
///
/// # Safety
///
/// `p` must be writable for `n` floats; the CPU must support AVX2.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
#[inline]
unsafe fn store_part_avx2(p: *mut f32, v: core::arch::x86_64::__m256, n: usize) {
    use core::arch::x86_64::*;
    let lanes = _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7);
    let mask = _mm256_cmpgt_epi32(_mm256_set1_epi32(n as i32), lanes);
    // SAFETY: the masked store touches only the n lanes the caller vouches for.
    unsafe { _mm256_maskstore_ps(p, mask, v) }
}

/// Loads the first `n` (< 16) floats at `p`, zeros in the other lanes.
///
/// # Safety
///
/// `p` must be readable for `n` floats; the CPU must support AVX-512F.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
#[inline]
unsafe fn load_part_avx512(p: *const f32, n: usize) -> core::arch::x86_64::__m512 {
    use core::arch::x86_64::*;
    // SAFETY: the masked load touches only the n lanes the caller vouches for.
    unsafe { _mm512_maskz_loadu_ps(((1u32 << n) - 1) as u16, p) }
}

/// Loads the first `n` (< 8) floats at `p`, zeros in the other lanes.
///
/// # Safety
///
/// `p` must be readable for `n` floats; the CPU must support AVX2.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
#[inline]
unsafe fn load_part_avx2(p: *const f32, n: usize) -> core::arch::x86_64::__m256 {
    use core::arch::x86_64::*;
    let lanes = _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7);
    let mask = _mm256_cmpgt_epi32(_mm256_set1_epi32(n as i32), lanes);
    // SAFETY: the masked load touches only the n lanes the caller vouches for.
    unsafe { _mm256_maskload_ps(p, mask) }
}

/// The sum of the 16 lanes, in a fixed tree order.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
#[inline]
fn reduce_avx512(v: core::arch::x86_64::__m512) -> f32 {
    use core::arch::x86_64::*;
    let lo = _mm512_castps512_ps256(v);
    let hi = _mm256_castpd_ps(_mm512_extractf64x4_pd::<1>(_mm512_castps_pd(v)));
    reduce_avx2(_mm256_add_ps(lo, hi))
}

/// The sum of the 8 lanes, in a fixed tree order.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
#[inline]
fn reduce_avx2(v: core::arch::x86_64::__m256) -> f32 {
    use core::arch::x86_64::*;
    let q = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps::<1>(v));
    let d = _mm_add_ps(q, _mm_movehl_ps(q, q));
    _mm_cvtss_f32(_mm_add_ss(d, _mm_shuffle_ps::<1>(d, d)))
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
    store_part_avx512,
    load_part_avx512,
    reduce_avx512,
    8,
    gemv_block_avx512,
    gemv_avx512,
    dot_rows_avx512,
    dot_rows_avx512_impl,
    bw_block_avx512,
    direct_backward_weight_avx512,
    3,
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
    store_part_avx2,
    load_part_avx2,
    reduce_avx2,
    4,
    gemv_block_avx2,
    gemv_avx2,
    dot_rows_avx2,
    dot_rows_avx2_impl,
    bw_block_avx2,
    direct_backward_weight_avx2,
    1,
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
