//! Fast pooling kernels: max pooling (with the argmax that its backward
//! routes through), average pooling (padding counted or not) and global
//! average pooling, forward and backward, on NCHW tensors.
//!
//! Each (example, channel) plane is independent: planes are the parallel
//! tasks, and within a plane the window bounds are clipped once per output
//! row and column so the inner loops carry no bounds tests. Max pooling's
//! padding never wins (it acts as −∞); ties go to the first maximum in
//! row-major window order, in the kernel and the reference alike. The
//! common 2×2 stride-2 window has its own loops (LeNet, VGG).
//!
//! Every kernel takes `impl Into<PoolWindows>`: a [`Pool2d`] alone is floor
//! mode, `Pool2d::ceil_mode(true)` ceil mode (GoogLeNet), whose last partial
//! window only changes the clipping, which the general loops already do.

use super::parallel::{for_each_chunk_mut, for_each_chunk_pair_mut};

/// The geometry of a 2-d pooling: input `[n, c, h, w]`, window `kh × kw`,
/// stride `sh × sw`, zero padding `ph × pw` on each side, and the output
/// size rule of convolution with dilation 1 (floor mode):
/// `out_h = ⌊(h + 2ph − kh) / sh⌋ + 1`. Its `out_h`, `out_w` and
/// `output_len` are floor mode's; [`PoolWindows`] adds ceil mode.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Pool2d {
    /// Batch size.
    pub n: usize,
    /// Channels.
    pub c: usize,
    /// Input height.
    pub h: usize,
    /// Input width.
    pub w: usize,
    /// Window height.
    pub kh: usize,
    /// Window width.
    pub kw: usize,
    /// Vertical stride.
    pub sh: usize,
    /// Horizontal stride.
    pub sw: usize,
    /// Padding above and below.
    pub ph: usize,
    /// Padding left and right.
    pub pw: usize,
}

/// Why a [`Pool2d`] geometry cannot be pooled.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PoolError {
    /// A window or stride side is zero.
    ZeroWindowOrStride,
    /// Padding larger than half the window (a window could then see only
    /// padding); `axis` is "height" or "width".
    PaddingTooLarge {
        /// "height" or "width".
        axis: &'static str,
        /// The padding asked for.
        pad: usize,
        /// The window side.
        window: usize,
    },
    /// The window is larger than the padded input.
    WindowLargerThanInput {
        /// "height" or "width".
        axis: &'static str,
        /// The window side.
        window: usize,
        /// The padded input side.
        padded: usize,
    },
}

impl core::fmt::Display for PoolError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match *self {
            PoolError::ZeroWindowOrStride => {
                write!(f, "pooling window and stride must be positive")
            }
            PoolError::PaddingTooLarge { axis, pad, window } => write!(
                f,
                "pooling padding {pad} along the {axis} is more than half the window {window}"
            ),
            PoolError::WindowLargerThanInput {
                axis,
                window,
                padded,
            } => write!(
                f,
                "pooling window {window} along the {axis} is larger than the padded input {padded}"
            ),
        }
    }
}

#[cfg(feature = "std")]
impl std::error::Error for PoolError {}

impl Pool2d {
    /// A square window `k`, stride `s` and padding `p` on `[n, c, h, w]`.
    pub fn square(n: usize, c: usize, h: usize, w: usize, k: usize, s: usize, p: usize) -> Self {
        Pool2d {
            n,
            c,
            h,
            w,
            kh: k,
            kw: k,
            sh: s,
            sw: s,
            ph: p,
            pw: p,
        }
    }

    /// Checks the geometry; every kernel here requires it to hold.
    pub fn validate(&self) -> Result<(), PoolError> {
        if self.kh == 0 || self.kw == 0 || self.sh == 0 || self.sw == 0 {
            return Err(PoolError::ZeroWindowOrStride);
        }
        for (axis, pad, window, size) in [
            ("height", self.ph, self.kh, self.h),
            ("width", self.pw, self.kw, self.w),
        ] {
            if pad > window / 2 {
                return Err(PoolError::PaddingTooLarge { axis, pad, window });
            }
            if size + 2 * pad < window {
                return Err(PoolError::WindowLargerThanInput {
                    axis,
                    window,
                    padded: size + 2 * pad,
                });
            }
        }
        Ok(())
    }

    /// Output height.
    pub fn out_h(&self) -> usize {
        (self.h + 2 * self.ph - self.kh) / self.sh + 1
    }

    /// Output width.
    pub fn out_w(&self) -> usize {
        (self.w + 2 * self.pw - self.kw) / self.sw + 1
    }

    /// The number of `(example, channel)` planes.
    pub fn planes(&self) -> usize {
        self.n * self.c
    }

    /// Elements of the input.
    pub fn input_len(&self) -> usize {
        self.planes() * self.h * self.w
    }

    /// Elements of the output.
    pub fn output_len(&self) -> usize {
        self.planes() * self.out_h() * self.out_w()
    }

    /// The input rows `[start, end)` the window of output row `oh` covers,
    /// clipped to the input.
    #[inline(always)]
    pub fn rows(&self, oh: usize) -> (usize, usize) {
        clip(oh * self.sh, self.ph, self.kh, self.h)
    }

    /// The input columns `[start, end)` of output column `ow`, clipped.
    #[inline(always)]
    pub fn cols(&self, ow: usize) -> (usize, usize) {
        clip(ow * self.sw, self.pw, self.kw, self.w)
    }

    /// Whether this is the common 2×2 window with stride 2 and no padding,
    /// which has a fast path.
    pub fn is_two_by_two(&self) -> bool {
        (self.kh, self.kw, self.sh, self.sw, self.ph, self.pw) == (2, 2, 2, 2, 0, 0)
    }
}

/// A [`Pool2d`] together with its output-size rule: floor mode (the
/// default, every window inside the padded input) or ceil mode (PyTorch's
/// `ceil_mode`, GoogLeNet): the output size rounds up, keeping a last,
/// partial window along an axis when it starts inside the input or its left
/// (top) padding. The part of such a window past the bottom/right padding
/// is no input at all: max pooling ignores it and average pooling counts
/// it neither with nor without `count_pad`.
///
/// Every pooling kernel takes `impl Into<PoolWindows>`, so a plain
/// [`Pool2d`] means floor mode and `g.ceil_mode(true)` asks for ceil mode.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PoolWindows {
    /// The window, stride and padding.
    pub pool: Pool2d,
    /// Whether the output size rounds up.
    pub ceil: bool,
}

impl From<Pool2d> for PoolWindows {
    fn from(pool: Pool2d) -> Self {
        PoolWindows { pool, ceil: false }
    }
}

impl Pool2d {
    /// This geometry with the output size rounded up when `ceil` holds
    /// (see [`PoolWindows`]).
    pub const fn ceil_mode(self, ceil: bool) -> PoolWindows {
        PoolWindows { pool: self, ceil }
    }
}

/// The number of windows along one axis: floor mode's count, plus one in
/// ceil mode when a partial window is left that starts before `size + pad`.
/// The padded size must be at least `k` ([`Pool2d::validate`]).
const fn windows(size: usize, pad: usize, k: usize, s: usize, ceil: bool) -> usize {
    let span = size + 2 * pad - k;
    let floor = span / s + 1;
    if ceil && !span.is_multiple_of(s) && floor * s < size + pad {
        floor + 1
    } else {
        floor
    }
}

impl PoolWindows {
    /// Checks the geometry (the same rules in both modes).
    pub fn validate(&self) -> Result<(), PoolError> {
        self.pool.validate()
    }

    /// Output height.
    pub fn out_h(&self) -> usize {
        let g = &self.pool;
        windows(g.h, g.ph, g.kh, g.sh, self.ceil)
    }

    /// Output width.
    pub fn out_w(&self) -> usize {
        let g = &self.pool;
        windows(g.w, g.pw, g.kw, g.sw, self.ceil)
    }

    /// Elements of the input.
    pub fn input_len(&self) -> usize {
        self.pool.input_len()
    }

    /// Elements of the output.
    pub fn output_len(&self) -> usize {
        self.pool.planes() * self.out_h() * self.out_w()
    }

    /// The divisor of average pooling for the window of output `(oh, ow)`,
    /// whose clipped input rows and columns are `rows` and `cols`: with
    /// `count_pad`, the window's extent within the padded input (the full
    /// `kh·kw` except for ceil mode's partial windows); without, the input
    /// elements it covers. PyTorch's rule in both modes.
    #[inline(always)]
    pub fn divisor(
        &self,
        (oh, ow): (usize, usize),
        (hs, he): (usize, usize),
        (ws, we): (usize, usize),
        count_pad: bool,
    ) -> usize {
        let g = &self.pool;
        if count_pad {
            let (at_h, at_w) = (oh * g.sh, ow * g.sw);
            let eh = (at_h + g.kh).min(g.h + 2 * g.ph) - at_h;
            let ew = (at_w + g.kw).min(g.w + 2 * g.pw) - at_w;
            eh * ew
        } else {
            (he - hs) * (we - ws)
        }
    }

    /// Whether this is the 2×2 stride-2 window without padding whose every
    /// window lies inside the input (always in floor mode; in ceil mode when
    /// the sides are even), which has a fast path.
    pub fn is_two_by_two(&self) -> bool {
        self.pool.is_two_by_two()
            && 2 * self.out_h() <= self.pool.h
            && 2 * self.out_w() <= self.pool.w
    }

    /// Asserts the geometry and the buffer lengths (the callers' contract).
    fn check(&self, input: usize, output: usize) {
        assert!(self.validate().is_ok(), "pool: invalid geometry {:?}", self);
        assert!(
            input == self.input_len() && output == self.output_len(),
            "pool: tensor lengths"
        );
    }
}

/// The window `[start, end)` in unpadded coordinates of a window starting
/// at padded offset `at`, clipped to `0..size`.
#[inline(always)]
fn clip(at: usize, pad: usize, k: usize, size: usize) -> (usize, usize) {
    let start = at.saturating_sub(pad);
    let end = (at + k).saturating_sub(pad).min(size);
    (start, end)
}

/// Max of one window and its row-major-first argmax (index in the plane).
#[inline(always)]
fn window_max(
    x: &[f32],
    w: usize,
    (hs, he): (usize, usize),
    (ws, we): (usize, usize),
) -> (f32, u32) {
    let mut best = x[hs * w + ws];
    let mut at = hs * w + ws;
    for ih in hs..he {
        let row = &x[ih * w..ih * w + we];
        for iw in ws..we {
            if row[iw] > best {
                best = row[iw];
                at = ih * w + iw;
            }
        }
    }
    (best, at as u32)
}

/// [`window_max`] for an unclipped `K × K` window with corner `(h0, w0)`:
/// the same visiting order and tie rule, with loops the compiler unrolls.
#[inline(always)]
fn window_max_fixed<const K: usize>(x: &[f32], w: usize, h0: usize, w0: usize) -> (f32, u32) {
    let mut best = x[h0 * w + w0];
    let mut at = h0 * w + w0;
    for a in 0..K {
        let row = &x[(h0 + a) * w + w0..(h0 + a) * w + w0 + K];
        for b in 0..K {
            if row[b] > best {
                best = row[b];
                at = (h0 + a) * w + w0 + b;
            }
        }
    }
    (best, at as u32)
}

/// The max and argmax of output `(oh, ow)`'s window, through the unrolled
/// 3×3 loop when the window is 3×3 and not clipped by padding.
#[inline(always)]
fn pooled_max(x: &[f32], g: &Pool2d, rows: (usize, usize), ow: usize) -> (f32, u32) {
    let cols = g.cols(ow);
    if g.kh == 3 && g.kw == 3 && rows.1 - rows.0 == 3 && cols.1 - cols.0 == 3 {
        window_max_fixed::<3>(x, g.w, rows.0, cols.0)
    } else {
        window_max(x, g.w, rows, cols)
    }
}

/// Max pooling forward (inference: no indices kept).
pub fn max_pool2d_forward(x: &[f32], y: &mut [f32], g: impl Into<PoolWindows>) {
    let win: PoolWindows = g.into();
    let g = win.pool;
    win.check(x.len(), y.len());
    let (ip, op) = (g.h * g.w, win.out_h() * win.out_w());
    if op == 0 || g.planes() == 0 {
        return;
    }
    let ow_n = win.out_w();
    let two_by_two = win.is_two_by_two();
    for_each_chunk_mut(y, op, win.output_len() * g.kh * g.kw, |plane, yc| {
        let xp = &x[plane * ip..(plane + 1) * ip];
        if two_by_two {
            max_pool_2x2_plane(xp, g.w, ow_n, yc);
            return;
        }
        for (oh, yrow) in yc.chunks_exact_mut(ow_n).enumerate() {
            let rows = g.rows(oh);
            for (ow, yv) in yrow.iter_mut().enumerate() {
                *yv = pooled_max(xp, &g, rows, ow).0;
            }
        }
    });
}

/// One plane of 2×2 stride-2 max pooling: `y[i·ow + j] = max4(x[2i·w + 2j],
/// x[2i·w + 2j + 1], x[(2i+1)·w + 2j], x[(2i+1)·w + 2j + 1])` for output
/// rows `i < oh` and columns `j < ow`, with `2·ow ≤ w`.
///
/// # Safety
///
/// `x` must be readable for `2·oh` rows of `w` floats, `y` writable for
/// `oh·ow`; the CPU must support the variant's instructions.
pub type MaxPool2x2Kernel = unsafe fn(x: *const f32, w: usize, oh: usize, ow: usize, y: *mut f32);

fn max_pool_2x2_plane(x: &[f32], w: usize, ow: usize, y: &mut [f32]) {
    let oh = y.len() / ow;
    assert!(
        2 * ow <= w && x.len() >= 2 * oh * w,
        "max pool: short input plane"
    );
    // SAFETY: the lengths were checked just above; the table checked the CPU.
    unsafe { (super::dispatch::kernels().max_pool_2x2)(x.as_ptr(), w, oh, ow, y.as_mut_ptr()) }
}

/// The portable [`MaxPool2x2Kernel`].
///
/// # Safety
///
/// As [`MaxPool2x2Kernel`].
pub unsafe fn max_pool_2x2_portable(x: *const f32, w: usize, oh: usize, ow: usize, y: *mut f32) {
    for i in 0..oh {
        // SAFETY: the contract's lengths: rows 2i, 2i + 1 of x, row i of y.
        let (r0, r1, yr) = unsafe {
            (
                core::slice::from_raw_parts(x.add(2 * i * w), 2 * ow),
                core::slice::from_raw_parts(x.add((2 * i + 1) * w), 2 * ow),
                core::slice::from_raw_parts_mut(y.add(i * ow), ow),
            )
        };
        max_pool_2x2_row_blocks(r0, r1, yr);
    }
}

/// The AVX-512F [`MaxPool2x2Kernel`]: sixteen outputs per step from two
/// masked loads per input row, de-interleaved by lane permutes, so that
/// short rows (LeNet's 14 and 5 outputs) have no scalar tail.
///
/// # Safety
///
/// As [`MaxPool2x2Kernel`]; the CPU must support AVX-512F.
#[cfg(target_arch = "x86_64")]
pub unsafe fn max_pool_2x2_avx512(x: *const f32, w: usize, oh: usize, ow: usize, y: *mut f32) {
    // SAFETY: forwarded contract; the dispatch table checked the features.
    unsafe { max_pool_2x2_avx512_impl(x, w, oh, ow, y) }
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
unsafe fn max_pool_2x2_avx512_impl(x: *const f32, w: usize, oh: usize, ow: usize, y: *mut f32) {
    use core::arch::x86_64::*;
    let even = _mm512_setr_epi32(0, 2, 4, 6, 8, 10, 12, 14, 16, 18, 20, 22, 24, 26, 28, 30);
    let odd = _mm512_setr_epi32(1, 3, 5, 7, 9, 11, 13, 15, 17, 19, 21, 23, 25, 27, 29, 31);
    let mask = |n: usize| -> __mmask16 {
        if n >= 16 {
            0xffff
        } else {
            ((1u32 << n) - 1) as u16
        }
    };
    for i in 0..oh {
        let (r0, r1) = (x.wrapping_add(2 * i * w), x.wrapping_add((2 * i + 1) * w));
        let mut j = 0;
        while j < ow {
            let n = (ow - j).min(16);
            let (m_lo, m_hi) = (mask(2 * n), mask((2 * n).saturating_sub(16)));
            // SAFETY: the masked loads read inputs 2j .. 2j + 2n ≤ 2·ow of
            // rows 2i and 2i + 1, the masked store outputs j .. j + n ≤ ow
            // of row i (contract).
            unsafe {
                let a0 = _mm512_maskz_loadu_ps(m_lo, r0.add(2 * j));
                let a1 = _mm512_maskz_loadu_ps(m_hi, r0.add(2 * j + 16));
                let b0 = _mm512_maskz_loadu_ps(m_lo, r1.add(2 * j));
                let b1 = _mm512_maskz_loadu_ps(m_hi, r1.add(2 * j + 16));
                // max4's order: start from the top-left, then keep a later
                // value only where it is greater (vmaxps returns its first
                // operand where that is greater, else the second).
                let mut v = _mm512_permutex2var_ps(a0, even, a1);
                v = _mm512_max_ps(_mm512_permutex2var_ps(a0, odd, a1), v);
                v = _mm512_max_ps(_mm512_permutex2var_ps(b0, even, b1), v);
                v = _mm512_max_ps(_mm512_permutex2var_ps(b0, odd, b1), v);
                _mm512_mask_storeu_ps(y.add(i * ow + j), mask(n), v);
            }
            j += 16;
        }
    }
}

/// [`max_pool_2x2_portable`]'s rows: blocks of eight outputs as plain
/// selects over de-interleaved lanes, which the compiler turns into vector
/// compares and blends, then the rest one by one.
#[inline]
fn max_pool_2x2_row_blocks(r0: &[f32], r1: &[f32], y: &mut [f32]) {
    const L: usize = 8;
    let full = y.len() / L * L;
    let (head, tail) = y.split_at_mut(full);
    for ((yc, a), b) in head
        .chunks_exact_mut(L)
        .zip(r0.chunks_exact(2 * L))
        .zip(r1.chunks_exact(2 * L))
    {
        let mut m = [0.0f32; L];
        for l in 0..L {
            let mut v = a[2 * l];
            let (b0, c0, d0) = (a[2 * l + 1], b[2 * l], b[2 * l + 1]);
            v = if b0 > v { b0 } else { v };
            v = if c0 > v { c0 } else { v };
            v = if d0 > v { d0 } else { v };
            m[l] = v;
        }
        yc.copy_from_slice(&m);
    }
    for (o, yv) in tail.iter_mut().enumerate() {
        let j = 2 * (full + o);
        *yv = max4(r0[j], r0[j + 1], r1[j], r1[j + 1]).0;
    }
}

/// The max of a 2×2 window given row-major as `a, b, c, d`, and the
/// position (0..4) of its first maximum: the same rule as [`window_max`].
#[inline(always)]
pub(crate) fn max4(a: f32, b: f32, c: f32, d: f32) -> (f32, u32) {
    let (mut m, mut at) = (a, 0);
    if b > m {
        (m, at) = (b, 1);
    }
    if c > m {
        (m, at) = (c, 2);
    }
    if d > m {
        (m, at) = (d, 3);
    }
    (m, at)
}

/// Max pooling forward for training: also writes each output's argmax (its
/// index `ih·w + iw` within the input plane) for [`max_pool2d_backward`].
pub fn max_pool2d_forward_with_indices(
    x: &[f32],
    y: &mut [f32],
    argmax: &mut [u32],
    g: impl Into<PoolWindows>,
) {
    let win: PoolWindows = g.into();
    let g = win.pool;
    win.check(x.len(), y.len());
    assert_eq!(argmax.len(), y.len(), "max pool: argmax length");
    let (ip, op) = (g.h * g.w, win.out_h() * win.out_w());
    if op == 0 || g.planes() == 0 {
        return;
    }
    let ow_n = win.out_w();
    let work = win.output_len() * g.kh * g.kw;
    let two_by_two = win.is_two_by_two();
    for_each_chunk_pair_mut(y, op, argmax, op, work, |plane, yc, ic| {
        let xp = &x[plane * ip..(plane + 1) * ip];
        for (oh, (yrow, irow)) in yc
            .chunks_exact_mut(ow_n)
            .zip(ic.chunks_exact_mut(ow_n))
            .enumerate()
        {
            if two_by_two {
                let (r0, r1) = (2 * oh * g.w, (2 * oh + 1) * g.w);
                for (ow, (yv, iv)) in yrow.iter_mut().zip(irow.iter_mut()).enumerate() {
                    let (i0, i1) = (r0 + 2 * ow, r1 + 2 * ow);
                    let (m, at) = max4(xp[i0], xp[i0 + 1], xp[i1], xp[i1 + 1]);
                    *yv = m;
                    // Positions 0, 1 are on the upper row, 2, 3 on the lower.
                    *iv = (if at < 2 { i0 } else { i1 } + (at as usize & 1)) as u32;
                }
                continue;
            }
            let rows = g.rows(oh);
            for (ow, (yv, iv)) in yrow.iter_mut().zip(irow.iter_mut()).enumerate() {
                (*yv, *iv) = pooled_max(xp, &g, rows, ow);
            }
        }
    });
}

/// Max pooling backward: `dx` (written) gets each `dy` added at its
/// window's argmax; overlapping windows accumulate in output order.
pub fn max_pool2d_backward(dy: &[f32], argmax: &[u32], dx: &mut [f32], g: impl Into<PoolWindows>) {
    let win: PoolWindows = g.into();
    let g = win.pool;
    win.check(dx.len(), dy.len());
    assert_eq!(argmax.len(), dy.len(), "max pool backward: argmax length");
    let (ip, op) = (g.h * g.w, win.out_h() * win.out_w());
    if ip == 0 || g.planes() == 0 {
        return;
    }
    for_each_chunk_mut(dx, ip, g.input_len() + win.output_len(), |plane, dc| {
        dc.fill(0.0);
        let gp = &dy[plane * op..(plane + 1) * op];
        let ix = &argmax[plane * op..(plane + 1) * op];
        for (&gv, &i) in gp.iter().zip(ix) {
            dc[i as usize] += gv;
        }
    });
}

/// Average pooling forward. With `count_pad` the divisor is always
/// `kh·kw` (padding counts as zeros); without, it is the number of input
/// elements in the window.
pub fn avg_pool2d_forward(x: &[f32], y: &mut [f32], g: impl Into<PoolWindows>, count_pad: bool) {
    let win: PoolWindows = g.into();
    let g = win.pool;
    win.check(x.len(), y.len());
    let (ip, op) = (g.h * g.w, win.out_h() * win.out_w());
    if op == 0 || g.planes() == 0 {
        return;
    }
    let ow_n = win.out_w();
    let two_by_two = win.is_two_by_two();
    for_each_chunk_mut(y, op, win.output_len() * g.kh * g.kw, |plane, yc| {
        let xp = &x[plane * ip..(plane + 1) * ip];
        for (oh, yrow) in yc.chunks_exact_mut(ow_n).enumerate() {
            if two_by_two {
                // No padding: both divisors are 4; the sum in the general
                // loop's order.
                let r0 = &xp[2 * oh * g.w..(2 * oh + 1) * g.w];
                let r1 = &xp[(2 * oh + 1) * g.w..(2 * oh + 2) * g.w];
                for ((yv, a), b) in yrow
                    .iter_mut()
                    .zip(r0.chunks_exact(2))
                    .zip(r1.chunks_exact(2))
                {
                    *yv = (((a[0] + a[1]) + b[0]) + b[1]) / 4.0;
                }
                continue;
            }
            let rows = g.rows(oh);
            for (ow, yv) in yrow.iter_mut().enumerate() {
                let cols = g.cols(ow);
                let mut total = 0.0f32;
                for ih in rows.0..rows.1 {
                    for &v in &xp[ih * g.w + cols.0..ih * g.w + cols.1] {
                        total += v;
                    }
                }
                *yv = total / win.divisor((oh, ow), rows, cols, count_pad) as f32;
            }
        }
    });
}

/// Average pooling backward: each `dy` spread evenly (divided by the same
/// divisor as the forward) over its window's input elements; `dx` written.
pub fn avg_pool2d_backward(dy: &[f32], dx: &mut [f32], g: impl Into<PoolWindows>, count_pad: bool) {
    let win: PoolWindows = g.into();
    let g = win.pool;
    win.check(dx.len(), dy.len());
    let (ip, op) = (g.h * g.w, win.out_h() * win.out_w());
    if ip == 0 || g.planes() == 0 {
        return;
    }
    let ow_n = win.out_w();
    let two_by_two = win.is_two_by_two();
    for_each_chunk_mut(dx, ip, win.output_len() * g.kh * g.kw, |plane, dc| {
        dc.fill(0.0);
        let gp = &dy[plane * op..(plane + 1) * op];
        if two_by_two {
            // Disjoint windows: each input gets exactly one share.
            for (oh, grow) in gp.chunks_exact(ow_n).enumerate() {
                let (r0, r1) = dc[2 * oh * g.w..(2 * oh + 2) * g.w].split_at_mut(g.w);
                for ((&gv, a), b) in grow
                    .iter()
                    .zip(r0.chunks_exact_mut(2))
                    .zip(r1.chunks_exact_mut(2))
                {
                    let share = gv / 4.0;
                    a.fill(share);
                    b.fill(share);
                }
            }
            return;
        }
        for (oh, grow) in gp.chunks_exact(ow_n).enumerate() {
            let rows = g.rows(oh);
            for (ow, &gv) in grow.iter().enumerate() {
                let cols = g.cols(ow);
                let share = gv / win.divisor((oh, ow), rows, cols, count_pad) as f32;
                for ih in rows.0..rows.1 {
                    for d in &mut dc[ih * g.w + cols.0..ih * g.w + cols.1] {
                        *d += share;
                    }
                }
            }
        }
    });
}

/// Planes per parallel task in global average pooling.
const GAP_PLANES: usize = 16;

/// Global average pooling: `[planes, spatial] → [planes]`, each plane's mean
/// (eight partial sums in a fixed order). For NCHW, `planes = n·c` and
/// `spatial = h·w`.
pub fn global_avg_pool_forward(x: &[f32], y: &mut [f32], planes: usize, spatial: usize) {
    assert!(
        x.len() == planes * spatial && y.len() == planes,
        "global avg pool: tensor lengths"
    );
    if planes == 0 {
        return;
    }
    let inv = if spatial == 0 {
        0.0
    } else {
        1.0 / spatial as f32
    };
    for_each_chunk_mut(y, GAP_PLANES, x.len(), |t, yc| {
        for (j, yv) in yc.iter_mut().enumerate() {
            let p = t * GAP_PLANES + j;
            *yv = super::softmax::sum_of(&x[p * spatial..(p + 1) * spatial]) * inv;
        }
    });
}

/// Global average pooling backward: `dx[p, s] = dy[p] / spatial`.
pub fn global_avg_pool_backward(dy: &[f32], dx: &mut [f32], planes: usize, spatial: usize) {
    assert!(
        dx.len() == planes * spatial && dy.len() == planes,
        "global avg pool backward: tensor lengths"
    );
    if spatial == 0 {
        return;
    }
    let inv = 1.0 / spatial as f32;
    for_each_chunk_mut(dx, spatial, dx.len(), |p, dc| {
        dc.fill(dy[p] * inv);
    });
}
