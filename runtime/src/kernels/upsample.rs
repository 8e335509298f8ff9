//! Fast upsampling kernels on NCHW tensors: nearest-neighbour and
//! zero-insertion ("bed of nails") upsampling by an integer factor, and
//! pixel shuffle (sub-pixel convolution's rearrangement) with its inverse,
//! each with its backward.
//!
//! Every op is a fixed rearrangement or a sum over a fixed block, computed
//! one output plane per task, so results do not depend on the thread count.

use super::parallel::for_each_chunk_mut;

/// Upsampling by `scale` of `planes = n·c` planes of `h × w`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Upsample {
    /// `(example, channel)` planes.
    pub planes: usize,
    /// Input height.
    pub h: usize,
    /// Input width.
    pub w: usize,
    /// The integer factor (at least 1).
    pub scale: usize,
}

impl Upsample {
    /// Output height, `h·scale`.
    pub fn out_h(&self) -> usize {
        self.h * self.scale
    }

    /// Output width, `w·scale`.
    pub fn out_w(&self) -> usize {
        self.w * self.scale
    }

    /// Elements of the input.
    pub fn input_len(&self) -> usize {
        self.planes * self.h * self.w
    }

    /// Elements of the output.
    pub fn output_len(&self) -> usize {
        self.planes * self.out_h() * self.out_w()
    }

    /// Asserts the callers' contract: a positive scale and matching lengths.
    fn check(&self, input: usize, output: usize) {
        assert!(self.scale > 0, "upsample: scale must be positive");
        assert!(
            input == self.input_len() && output == self.output_len(),
            "upsample: tensor lengths"
        );
    }
}

/// Nearest upsampling: `y[oh, ow] = x[oh / s, ow / s]`.
pub fn upsample_nearest_forward(x: &[f32], y: &mut [f32], g: Upsample) {
    g.check(x.len(), y.len());
    let (ip, op) = (g.h * g.w, g.out_h() * g.out_w());
    if op == 0 {
        return;
    }
    let (s, ow_n) = (g.scale, g.out_w());
    for_each_chunk_mut(y, op, g.output_len(), |p, yc| {
        let xp = &x[p * ip..(p + 1) * ip];
        for (oh, yrow) in yc.chunks_exact_mut(ow_n).enumerate() {
            let xrow = &xp[(oh / s) * g.w..(oh / s + 1) * g.w];
            for (block, &v) in yrow.chunks_exact_mut(s).zip(xrow) {
                block.fill(v);
            }
        }
    });
}

/// Nearest upsampling backward: each `dx` is the sum of its `s × s` block of
/// `dy`, rows first then columns.
pub fn upsample_nearest_backward(dy: &[f32], dx: &mut [f32], g: Upsample) {
    g.check(dx.len(), dy.len());
    let (ip, op) = (g.h * g.w, g.out_h() * g.out_w());
    if ip == 0 {
        return;
    }
    let (s, ow_n) = (g.scale, g.out_w());
    for_each_chunk_mut(dx, ip, g.output_len(), |p, dc| {
        let gp = &dy[p * op..(p + 1) * op];
        for (ih, drow) in dc.chunks_exact_mut(g.w).enumerate() {
            drow.fill(0.0);
            for a in 0..s {
                let grow = &gp[(ih * s + a) * ow_n..(ih * s + a + 1) * ow_n];
                for (d, block) in drow.iter_mut().zip(grow.chunks_exact(s)) {
                    let mut t = 0.0f32;
                    for &v in block {
                        t += v;
                    }
                    *d += t;
                }
            }
        }
    });
}

/// Zero-insertion upsampling: `y[ih·s, iw·s] = x[ih, iw]`, zero elsewhere.
pub fn upsample_zeros_forward(x: &[f32], y: &mut [f32], g: Upsample) {
    g.check(x.len(), y.len());
    let (ip, op) = (g.h * g.w, g.out_h() * g.out_w());
    if op == 0 {
        return;
    }
    let (s, ow_n) = (g.scale, g.out_w());
    for_each_chunk_mut(y, op, g.output_len(), |p, yc| {
        yc.fill(0.0);
        let xp = &x[p * ip..(p + 1) * ip];
        for ih in 0..g.h {
            let yrow = &mut yc[ih * s * ow_n..(ih * s + 1) * ow_n];
            for (block, &v) in yrow.chunks_exact_mut(s).zip(&xp[ih * g.w..(ih + 1) * g.w]) {
                block[0] = v;
            }
        }
    });
}

/// Zero-insertion upsampling backward: `dx[ih, iw] = dy[ih·s, iw·s]`.
pub fn upsample_zeros_backward(dy: &[f32], dx: &mut [f32], g: Upsample) {
    g.check(dx.len(), dy.len());
    let (ip, op) = (g.h * g.w, g.out_h() * g.out_w());
    if ip == 0 {
        return;
    }
    let (s, ow_n) = (g.scale, g.out_w());
    for_each_chunk_mut(dx, ip, g.input_len(), |p, dc| {
        let gp = &dy[p * op..(p + 1) * op];
        for (ih, drow) in dc.chunks_exact_mut(g.w).enumerate() {
            let grow = &gp[ih * s * ow_n..(ih * s + 1) * ow_n];
            for (d, block) in drow.iter_mut().zip(grow.chunks_exact(s)) {
                *d = block[0];
            }
        }
    });
}

/// Pixel shuffle by factor `r`: `[n, c·r², h, w] → [n, c, h·r, w·r]` with
/// `y[b, ch, h·r + i, w·r + j] = x[b, ch·r² + i·r + j, h, w]` (PyTorch's
/// `pixel_shuffle`). `c` is the output channel count.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PixelShuffle {
    /// Batch size.
    pub n: usize,
    /// Output channels (input channels are `c·r²`).
    pub c: usize,
    /// Input height.
    pub h: usize,
    /// Input width.
    pub w: usize,
    /// The factor (at least 1).
    pub r: usize,
}

impl PixelShuffle {
    /// Output height, `h·r`.
    pub fn out_h(&self) -> usize {
        self.h * self.r
    }

    /// Output width, `w·r`.
    pub fn out_w(&self) -> usize {
        self.w * self.r
    }

    /// Elements of the input and of the output (the same count).
    pub fn len(&self) -> usize {
        self.n * self.c * self.r * self.r * self.h * self.w
    }

    /// Whether the tensors are empty.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Asserts the callers' contract.
    fn check(&self, a: usize, b: usize) {
        assert!(self.r > 0, "pixel shuffle: factor must be positive");
        assert!(
            a == self.len() && b == self.len(),
            "pixel shuffle: tensor lengths"
        );
    }
}

/// Pixel shuffle forward (`[n, c·r², h, w] → [n, c, h·r, w·r]`).
pub fn pixel_shuffle(x: &[f32], y: &mut [f32], g: PixelShuffle) {
    g.check(x.len(), y.len());
    if g.is_empty() {
        return;
    }
    let (r, ip, ow_n) = (g.r, g.h * g.w, g.out_w());
    let op = g.out_h() * ow_n;
    // Output plane `p = b·c + ch` reads input planes `p·r² .. (p + 1)·r²`.
    for_each_chunk_mut(y, op, g.len(), |p, yc| {
        let xs = &x[p * r * r * ip..(p + 1) * r * r * ip];
        for h in 0..g.h {
            for i in 0..r {
                let yrow = &mut yc[(h * r + i) * ow_n..(h * r + i + 1) * ow_n];
                for j in 0..r {
                    let xrow = &xs[(i * r + j) * ip + h * g.w..][..g.w];
                    for (w, &v) in xrow.iter().enumerate() {
                        yrow[w * r + j] = v;
                    }
                }
            }
        }
    });
}

/// The inverse of [`pixel_shuffle`] (`[n, c, h·r, w·r] → [n, c·r², h, w]`):
/// pixel shuffle's backward, applied to `dy`.
pub fn pixel_unshuffle(y: &[f32], x: &mut [f32], g: PixelShuffle) {
    g.check(x.len(), y.len());
    if g.is_empty() {
        return;
    }
    let (r, ip, ow_n) = (g.r, g.h * g.w, g.out_w());
    let op = g.out_h() * ow_n;
    // Input plane `q = p·r² + i·r + j` of output plane `p`, one per task.
    for_each_chunk_mut(x, ip, g.len(), |q, xc| {
        let (p, i, j) = (q / (r * r), (q % (r * r)) / r, q % r);
        let yp = &y[p * op..(p + 1) * op];
        for h in 0..g.h {
            let yrow = &yp[(h * r + i) * ow_n..(h * r + i + 1) * ow_n];
            for (w, v) in xc[h * g.w..(h + 1) * g.w].iter_mut().enumerate() {
                *v = yrow[w * r + j];
            }
        }
    });
}
