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

use super::parallel::{for_each_chunk_mut, for_each_chunk_pair_mut};

/// The geometry of a 2-d pooling: input `[n, c, h, w]`, window `kh × kw`,
/// stride `sh × sw`, zero padding `ph × pw` on each side, and the output
/// size rule of convolution with dilation 1 (floor mode):
/// `out_h = ⌊(h + 2ph − kh) / sh⌋ + 1`.
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

    /// Asserts the geometry and the buffer lengths (the callers' contract).
    fn check(&self, input: usize, output: usize) {
        assert!(self.validate().is_ok(), "pool: invalid geometry {self:?}");
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

/// Max pooling forward (inference: no indices kept).
pub fn max_pool2d_forward(x: &[f32], y: &mut [f32], g: Pool2d) {
    g.check(x.len(), y.len());
    let (ip, op) = (g.h * g.w, g.out_h() * g.out_w());
    if op == 0 || g.planes() == 0 {
        return;
    }
    let ow_n = g.out_w();
    let two_by_two = g.is_two_by_two();
    for_each_chunk_mut(y, op, g.output_len() * g.kh * g.kw, |plane, yc| {
        let xp = &x[plane * ip..(plane + 1) * ip];
        for (oh, yrow) in yc.chunks_exact_mut(ow_n).enumerate() {
            if two_by_two {
                let r0 = &xp[2 * oh * g.w..(2 * oh + 1) * g.w];
                let r1 = &xp[(2 * oh + 1) * g.w..(2 * oh + 2) * g.w];
                for ((yv, a), b) in yrow
                    .iter_mut()
                    .zip(r0.chunks_exact(2))
                    .zip(r1.chunks_exact(2))
                {
                    *yv = max4(a[0], a[1], b[0], b[1]).0;
                }
                continue;
            }
            let rows = g.rows(oh);
            for (ow, yv) in yrow.iter_mut().enumerate() {
                *yv = window_max(xp, g.w, rows, g.cols(ow)).0;
            }
        }
    });
}

/// The max of a 2×2 window given row-major as `a, b, c, d`, and the
/// position (0..4) of its first maximum: the same rule as [`window_max`].
#[inline(always)]
fn max4(a: f32, b: f32, c: f32, d: f32) -> (f32, u32) {
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
pub fn max_pool2d_forward_with_indices(x: &[f32], y: &mut [f32], argmax: &mut [u32], g: Pool2d) {
    g.check(x.len(), y.len());
    assert_eq!(argmax.len(), y.len(), "max pool: argmax length");
    let (ip, op) = (g.h * g.w, g.out_h() * g.out_w());
    if op == 0 || g.planes() == 0 {
        return;
    }
    let ow_n = g.out_w();
    let work = g.output_len() * g.kh * g.kw;
    let two_by_two = g.is_two_by_two();
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
                (*yv, *iv) = window_max(xp, g.w, rows, g.cols(ow));
            }
        }
    });
}

/// Max pooling backward: `dx` (written) gets each `dy` added at its
/// window's argmax; overlapping windows accumulate in output order.
pub fn max_pool2d_backward(dy: &[f32], argmax: &[u32], dx: &mut [f32], g: Pool2d) {
    g.check(dx.len(), dy.len());
    assert_eq!(argmax.len(), dy.len(), "max pool backward: argmax length");
    let (ip, op) = (g.h * g.w, g.out_h() * g.out_w());
    if ip == 0 || g.planes() == 0 {
        return;
    }
    for_each_chunk_mut(dx, ip, g.input_len() + g.output_len(), |plane, dc| {
        dc.fill(0.0);
        let gp = &dy[plane * op..(plane + 1) * op];
        let ix = &argmax[plane * op..(plane + 1) * op];
        for (&gv, &i) in gp.iter().zip(ix) {
            dc[i as usize] += gv;
        }
    });
}

/// The divisor of one average-pooling window: the full window with
/// `count_pad`, else only the input elements it covers.
#[inline(always)]
fn avg_divisor(
    g: &Pool2d,
    (hs, he): (usize, usize),
    (ws, we): (usize, usize),
    count_pad: bool,
) -> f32 {
    if count_pad {
        (g.kh * g.kw) as f32
    } else {
        ((he - hs) * (we - ws)) as f32
    }
}

/// Average pooling forward. With `count_pad` the divisor is always
/// `kh·kw` (padding counts as zeros); without, it is the number of input
/// elements in the window.
pub fn avg_pool2d_forward(x: &[f32], y: &mut [f32], g: Pool2d, count_pad: bool) {
    g.check(x.len(), y.len());
    let (ip, op) = (g.h * g.w, g.out_h() * g.out_w());
    if op == 0 || g.planes() == 0 {
        return;
    }
    let ow_n = g.out_w();
    let two_by_two = g.is_two_by_two();
    for_each_chunk_mut(y, op, g.output_len() * g.kh * g.kw, |plane, yc| {
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
                *yv = total / avg_divisor(&g, rows, cols, count_pad);
            }
        }
    });
}

/// Average pooling backward: each `dy` spread evenly (divided by the same
/// divisor as the forward) over its window's input elements; `dx` written.
pub fn avg_pool2d_backward(dy: &[f32], dx: &mut [f32], g: Pool2d, count_pad: bool) {
    g.check(dx.len(), dy.len());
    let (ip, op) = (g.h * g.w, g.out_h() * g.out_w());
    if ip == 0 || g.planes() == 0 {
        return;
    }
    let ow_n = g.out_w();
    let two_by_two = g.is_two_by_two();
    for_each_chunk_mut(dx, ip, g.output_len() * g.kh * g.kw, |plane, dc| {
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
                let share = gv / avg_divisor(&g, rows, cols, count_pad);
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
