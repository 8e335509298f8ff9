//! Fast 2-D convolution, forward and backward, and transposed convolution:
//! NCHW activations, OIHW weights, any stride, padding (asymmetric too),
//! dilation and groups.
//!
//! Every path lowers to the GEMM of [`super::gemm`], one call per image and
//! group:
//!
//! - forward: `y_g = W_g · col(x_g)`, with the [`ConvEpilogue`] list (bias per
//!   channel, scale, activation, residual) fused into the GEMM's epilogue; the
//!   weights are packed once per call and the column matrix is never stored:
//!   the GEMM packs its panels straight from the input (an implicit im2col);
//! - backward-data: `col(dx_g) = W_gᵀ · dy_g`, then `col2im` adds the columns
//!   back into `dx`;
//! - backward-weight: `dW_g = Σ_n dy_g · col(x_g)ᵀ`, images in order;
//! - a 1×1 convolution with stride 1 and no padding, or one whose kernel
//!   covers the whole input, skips `im2col`: the input already is its own
//!   column matrix;
//! - a small direct kernel for few input channels at stride 1 (LeNet's
//!   layers), where building the column matrix costs as much as the product;
//! - Winograd F(2,3) or F(4,3) ([`super::winograd`]) for the 3×3 stride-1
//!   layers where it is faster ([`uses_winograd`]), forward only, in every
//!   forward entry point (the packed weights are then Winograd's).
//!
//! A transposed convolution is described by the [`Conv2dGeometry`] of the
//! convolution it transposes: its forward is that convolution's
//! backward-data, its input gradient that convolution's forward, its weight
//! gradient that convolution's weight gradient with the roles of input and
//! output gradient swapped.
//!
//! The `*_serial` functions run on the calling thread with a scratch buffer
//! from the caller (`*_scratch_len`) and never allocate, so they work under
//! `no_std`. The others (std) spread images, or the rows of one image's GEMM,
//! over the thread pool; every output element's reduction order is fixed, so
//! results are bit-identical whatever the thread count.

use super::conv_direct::{self, DirectPost, DirectShape};
use super::conv_direct_channels;
use super::dispatch::Kernels;
use super::gemm::{
    AOperand, Epilogue, Gemm, PackB, apply_activation, gemm_scratch_len_with, pack_a, packed_a_len,
    sgemm_custom_serial_with, sgemm_packed_serial_with, sgemm_serial_with,
};
use super::winograd;
use crate::activation::Activation;

/// The shape of one 2-D convolution: input `n × c_in × h × w`, weight
/// `c_out × (c_in / groups) × kh × kw`, output `n × c_out × out_h × out_w`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Conv2dGeometry {
    /// Batch size.
    pub n: usize,
    /// Input channels.
    pub c_in: usize,
    /// Input height.
    pub h: usize,
    /// Input width.
    pub w: usize,
    /// Output channels.
    pub c_out: usize,
    /// Kernel height.
    pub kh: usize,
    /// Kernel width.
    pub kw: usize,
    /// Stride `[vertical, horizontal]`.
    pub stride: [usize; 2],
    /// Zero padding `[top, left, bottom, right]`.
    pub pad: [usize; 4],
    /// Dilation `[vertical, horizontal]`.
    pub dilation: [usize; 2],
    /// Groups: input and output channels split into this many independent
    /// convolutions.
    pub groups: usize,
}

/// Why a [`Conv2dGeometry`] describes no convolution.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ConvGeometryError {
    /// A size, stride, dilation or group count is zero.
    Zero(&'static str),
    /// `groups` does not divide both channel counts.
    Groups {
        /// The group count.
        groups: usize,
        /// Input channels.
        c_in: usize,
        /// Output channels.
        c_out: usize,
    },
    /// The dilated kernel is larger than the padded input along an axis.
    KernelTooLarge {
        /// `"height"` or `"width"`.
        axis: &'static str,
        /// The dilated kernel extent.
        extent: usize,
        /// The padded input extent.
        padded: usize,
    },
}

impl core::fmt::Display for ConvGeometryError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match *self {
            ConvGeometryError::Zero(what) => write!(f, "convolution {what} must be positive"),
            ConvGeometryError::Groups {
                groups,
                c_in,
                c_out,
            } => write!(
                f,
                "convolution groups ({groups}) must divide input channels ({c_in}) and output channels ({c_out})"
            ),
            ConvGeometryError::KernelTooLarge {
                axis,
                extent,
                padded,
            } => write!(
                f,
                "convolution kernel {axis} with dilation ({extent}) exceeds the padded input {axis} ({padded})"
            ),
        }
    }
}

impl core::error::Error for ConvGeometryError {}

impl Conv2dGeometry {
    /// A convolution with stride 1, no padding, no dilation, one group.
    pub const fn new(
        n: usize,
        c_in: usize,
        h: usize,
        w: usize,
        c_out: usize,
        kh: usize,
        kw: usize,
    ) -> Self {
        Conv2dGeometry {
            n,
            c_in,
            h,
            w,
            c_out,
            kh,
            kw,
            stride: [1, 1],
            pad: [0; 4],
            dilation: [1, 1],
            groups: 1,
        }
    }

    /// The same with stride `s` along both axes.
    pub const fn with_stride(mut self, s: usize) -> Self {
        self.stride = [s, s];
        self
    }

    /// The same with padding `p` on all four sides.
    pub const fn with_pad(mut self, p: usize) -> Self {
        self.pad = [p; 4];
        self
    }

    /// The same with dilation `d` along both axes.
    pub const fn with_dilation(mut self, d: usize) -> Self {
        self.dilation = [d, d];
        self
    }

    /// The same with `groups` groups.
    pub const fn with_groups(mut self, groups: usize) -> Self {
        self.groups = groups;
        self
    }

    /// The same with batch size `n`.
    pub const fn with_batch(mut self, n: usize) -> Self {
        self.n = n;
        self
    }

    /// Checks that the geometry describes a convolution with a non-empty
    /// output. Every kernel requires it.
    pub fn validate(&self) -> Result<(), ConvGeometryError> {
        let positive = [
            (self.n, "batch size"),
            (self.c_in, "input channels"),
            (self.h, "input height"),
            (self.w, "input width"),
            (self.c_out, "output channels"),
            (self.kh, "kernel height"),
            (self.kw, "kernel width"),
            (self.stride[0], "vertical stride"),
            (self.stride[1], "horizontal stride"),
            (self.dilation[0], "vertical dilation"),
            (self.dilation[1], "horizontal dilation"),
            (self.groups, "group count"),
        ];
        for (v, what) in positive {
            if v == 0 {
                return Err(ConvGeometryError::Zero(what));
            }
        }
        if !self.c_in.is_multiple_of(self.groups) || !self.c_out.is_multiple_of(self.groups) {
            return Err(ConvGeometryError::Groups {
                groups: self.groups,
                c_in: self.c_in,
                c_out: self.c_out,
            });
        }
        let axes = [
            (
                "height",
                self.kh,
                self.dilation[0],
                self.h + self.pad[0] + self.pad[2],
            ),
            (
                "width",
                self.kw,
                self.dilation[1],
                self.w + self.pad[1] + self.pad[3],
            ),
        ];
        for (axis, k, d, padded) in axes {
            let extent = d * (k - 1) + 1;
            if extent > padded {
                return Err(ConvGeometryError::KernelTooLarge {
                    axis,
                    extent,
                    padded,
                });
            }
        }
        Ok(())
    }

    /// Output height (for a valid geometry).
    pub const fn out_h(&self) -> usize {
        (self.h + self.pad[0] + self.pad[2] - self.dilation[0] * (self.kh - 1) - 1) / self.stride[0]
            + 1
    }

    /// Output width (for a valid geometry).
    pub const fn out_w(&self) -> usize {
        (self.w + self.pad[1] + self.pad[3] - self.dilation[1] * (self.kw - 1) - 1) / self.stride[1]
            + 1
    }

    /// Floats of the input `n × c_in × h × w`.
    pub const fn input_len(&self) -> usize {
        self.n * self.c_in * self.h * self.w
    }

    /// Floats of the weight `c_out × c_in/groups × kh × kw`.
    pub const fn weight_len(&self) -> usize {
        self.c_out * (self.c_in / self.groups) * self.kh * self.kw
    }

    /// Floats of the output `n × c_out × out_h × out_w`.
    pub const fn output_len(&self) -> usize {
        self.n * self.c_out * self.out_h() * self.out_w()
    }

    /// Floating-point operations of the forward pass (2 per multiply-add);
    /// backward-data and backward-weight do the same number.
    pub const fn flops(&self) -> usize {
        2 * self.n
            * self.c_out
            * self.out_h()
            * self.out_w()
            * (self.c_in / self.groups)
            * self.kh
            * self.kw
    }

    /// Rows of one group's column matrix: `c_in/groups · kh · kw`.
    const fn col_rows(&self) -> usize {
        (self.c_in / self.groups) * self.kh * self.kw
    }

    /// Whether the convolution is a plain matrix product per image, its
    /// input already being its own column matrix: a 1×1 convolution with
    /// stride 1 and no padding, or a kernel that covers the whole unpadded
    /// input (one output position, as LeNet's C5).
    pub const fn is_plain_product(&self) -> bool {
        let no_pad = self.pad[0] == 0 && self.pad[1] == 0 && self.pad[2] == 0 && self.pad[3] == 0;
        let pointwise = self.kh == 1 && self.kw == 1 && self.stride[0] == 1 && self.stride[1] == 1;
        let full_window = self.kh == self.h
            && self.kw == self.w
            && self.dilation[0] == 1
            && self.dilation[1] == 1;
        no_pad && (pointwise || full_window)
    }

    pub(crate) fn assert_valid(&self) {
        if let Err(e) = self.validate() {
            panic!("conv kernel called with an invalid geometry {self:?}: {e}");
        }
    }
}

/// Whether the forward pass uses the direct kernel of `kern`: the variant
/// has one, one group, and either stride 1 with at most
/// [`conv_direct::DIRECT_MAX_C_OUT`] output channels and not a plain product
/// ([`Conv2dGeometry::is_plain_product`]), or a kernel that covers the whole
/// unpadded input (one output position, LeNet's C5: the direct kernel's
/// matrix-vector path, any number of output channels).
pub fn uses_direct(kern: &Kernels, g: &Conv2dGeometry) -> bool {
    let full_window = g.kh == g.h && g.kw == g.w && g.pad == [0; 4] && g.dilation == [1, 1];
    kern.conv_direct.is_some()
        && g.groups == 1
        && (full_window
            || (g.stride == [1, 1]
                && g.c_out <= conv_direct::DIRECT_MAX_C_OUT
                && !g.is_plain_product()))
}

/// Whether the forward pass of `g` (every entry point: serial, threaded,
/// weights packed in advance) runs by Winograd ([`super::winograd`]): where
/// the direct kernel does not, and [`winograd::winograd_pays`] says it is
/// faster than the GEMM lowering (measured on ResNet-18's layers; see
/// `BENCHMARKS.md`).
pub fn uses_winograd(kern: &Kernels, g: &Conv2dGeometry) -> bool {
    !uses_direct(kern, g) && winograd::winograd_pays(g)
}

/// Whether the forward pass that transforms its weights at every call
/// ([`conv2d_forward`], [`conv2d_forward_serial`]) runs by Winograd: where
/// [`uses_winograd`] says so and the batch has enough output positions
/// (`n · out_h · out_w ≥ 2048`) to pay for the weights' transform. At batch 1
/// (`--bench conv_resnet18`, `KILN_BENCH_BATCH=1`) Winograd with the
/// transform ran at 0.6× (28 × 28) and 0.4× (14 × 14) the GEMM lowering,
/// and 1.2× at 56 × 56. The `_prepacked` entry points transform once and
/// follow [`uses_winograd`].
pub fn uses_winograd_per_call(kern: &Kernels, g: &Conv2dGeometry) -> bool {
    uses_winograd(kern, g) && g.n * g.out_h() * g.out_w() >= 2048
}

/// The direct kernel's shape for `g`.
pub(super) fn direct_shape(g: &Conv2dGeometry) -> DirectShape {
    DirectShape {
        c_in: g.c_in,
        c_out: g.c_out,
        kh: g.kh,
        kw: g.kw,
        dilation: g.dilation,
        hp: g.h + g.pad[0] + g.pad[2],
        wp: g.w + g.pad[1] + g.pad[3],
        oh: g.out_h(),
        ow: g.out_w(),
    }
}

/// Scratch of the direct kernel: the padded input with its tail.
pub(super) fn direct_scratch_len(g: &Conv2dGeometry) -> usize {
    let s = direct_shape(g);
    s.c_in * s.hp * s.wp + conv_direct::tail_len(&s)
}

/// Whether the forward pass of `g` runs by the channel-lane direct kernel
/// ([`conv_direct_channels`]): a direct convolution with whole vectors of
/// output channels whose rows do not fill whole vectors of positions.
pub fn uses_channel_lanes(kern: &Kernels, g: &Conv2dGeometry) -> bool {
    uses_direct(kern, g)
        && kern.conv_direct_channels.is_some()
        && conv_direct_channels::channel_lanes_fit(&direct_shape(g))
        && !g.out_w().is_multiple_of(16)
}

/// Scratch of the direct forward pass given OIHW weights: the tap-major
/// weights of the channel-lane kernel (written once per call), then the
/// padded input.
fn direct_forward_scratch_len(kern: &Kernels, g: &Conv2dGeometry) -> usize {
    direct_weights_len(kern, g) + direct_scratch_len(g)
}

/// Floats of the weights the direct kernel reads that are not the OIHW
/// weights themselves: the channel-lane kernel's tap-major copy.
pub(super) fn direct_weights_len(kern: &Kernels, g: &Conv2dGeometry) -> usize {
    if uses_channel_lanes(kern, g) {
        g.weight_len()
    } else {
        0
    }
}

/// The OIHW weights `w` as the direct kernel of `g` reads them: as they
/// are, or tap-major in `buf` ([`direct_weights_len`] floats) for the
/// channel-lane kernel.
pub(super) fn direct_weights<'a>(
    kern: &Kernels,
    g: &Conv2dGeometry,
    w: &'a [f32],
    buf: &'a mut [f32],
) -> Weights<'a> {
    if uses_channel_lanes(kern, g) {
        conv_direct_channels::channel_major_weights(&direct_shape(g), w, buf);
        Weights {
            channel_major: true,
            ..plain_weights(g, buf)
        }
    } else {
        plain_weights(g, w)
    }
}

/// The direct kernel's shape for the input gradient of `g`: a stride-1
/// correlation of the output gradient, padded by `(k − 1)·d − pad` on each
/// side, with the weights flipped and their channel roles swapped.
fn direct_transposed_shape(g: &Conv2dGeometry) -> DirectShape {
    let (eh, ew) = ((g.kh - 1) * g.dilation[0], (g.kw - 1) * g.dilation[1]);
    DirectShape {
        c_in: g.c_out,
        c_out: g.c_in,
        kh: g.kh,
        kw: g.kw,
        dilation: g.dilation,
        hp: g.out_h() + 2 * eh - g.pad[0] - g.pad[2],
        wp: g.out_w() + 2 * ew - g.pad[1] - g.pad[3],
        oh: g.h,
        ow: g.w,
    }
}

/// Scratch of the direct input gradient: the flipped weights, then the
/// padded output gradient with its tail.
fn direct_backward_data_scratch_len(g: &Conv2dGeometry) -> usize {
    let s = direct_transposed_shape(g);
    g.weight_len() + s.c_in * s.hp * s.wp + conv_direct::tail_len(&s)
}

/// Whether the input gradient uses the direct kernel of `kern` (as a
/// correlation of the padded output gradient): the forward is direct with
/// several output positions, at most 16 input channels, no padding beyond
/// the dilated kernel's reach, and the scratch of the GEMM path suffices.
fn uses_direct_backward_data(kern: &Kernels, g: &Conv2dGeometry) -> bool {
    let (eh, ew) = ((g.kh - 1) * g.dilation[0], (g.kw - 1) * g.dilation[1]);
    kern.conv_direct.is_some()
        && uses_direct(kern, g)
        && g.stride == [1, 1]
        && !g.is_plain_product()
        && g.c_in <= conv_direct::DIRECT_MAX_C_OUT
        && g.pad[0].max(g.pad[2]) <= eh
        && g.pad[1].max(g.pad[3]) <= ew
        && direct_backward_data_scratch_len(g) <= conv2d_backward_scratch_len(kern, g)
}

/// Flips the OIHW weights of `g` into the transposed kernel's layout
/// `wt[c][co][kh − 1 − r][kw − 1 − q] = w[co][c][r][q]`.
fn flip_weights(g: &Conv2dGeometry, w: &[f32], wt: &mut [f32]) {
    let taps = g.kh * g.kw;
    for co in 0..g.c_out {
        for c in 0..g.c_in {
            let src = &w[(co * g.c_in + c) * taps..(co * g.c_in + c + 1) * taps];
            let dst = &mut wt[(c * g.c_out + co) * taps..(c * g.c_out + co + 1) * taps];
            for (d, v) in dst.iter_mut().zip(src.iter().rev()) {
                *d = *v;
            }
        }
    }
}

/// The direct input gradient of one image: pad `dy` into `xp`, then the
/// direct kernel with the flipped weights `wt` straight into `dx`.
fn backward_data_direct_image(
    kern: &Kernels,
    g: &Conv2dGeometry,
    wt: &[f32],
    dy: &[f32],
    dx: &mut [f32],
    xp: &mut [f32],
) {
    let Some(direct) = kern.conv_direct else {
        unreachable!("backward_data_direct_image: variant {} has none", kern.name)
    };
    let s = direct_transposed_shape(g);
    let (oh, ow) = (g.out_h(), g.out_w());
    let top = (g.kh - 1) * g.dilation[0] - g.pad[0];
    let left = (g.kw - 1) * g.dilation[1] - g.pad[1];
    xp.fill(0.0);
    for co in 0..g.c_out {
        for oy in 0..oh {
            let dst = (co * s.hp + oy + top) * s.wp + left;
            xp[dst..dst + ow].copy_from_slice(&dy[(co * oh + oy) * ow..(co * oh + oy + 1) * ow]);
        }
    }
    // SAFETY: the padded gradient has its tail, the flipped weights are
    // c_in × c_out × kh × kw, dx is one image; the shape is consistent
    // (direct_transposed_shape) with at most 16 output channels
    // (uses_direct_backward_data); the table checked the CPU's features.
    unsafe { direct(&s, xp, wt, DirectPost::default(), dx) };
}

/// The direct input gradient of the whole batch, images over the thread
/// pool when worth it (each image's values come from one task, so the bits
/// do not depend on the thread count); `scratch` holds
/// [`direct_backward_data_scratch_len`] floats when `threaded` is false.
fn backward_data_direct(
    kern: &Kernels,
    g: &Conv2dGeometry,
    w: &[f32],
    dy: &[f32],
    dx: &mut [f32],
    scratch: &mut [f32],
    threaded: bool,
) {
    let (in_img, out_img) = (g.c_in * g.h * g.w, g.c_out * g.out_h() * g.out_w());
    let (wt, rest) = scratch.split_at_mut(g.weight_len());
    flip_weights(g, w, wt);
    let dx = &mut dx[..g.input_len()];
    #[cfg(feature = "std")]
    if threaded {
        use super::gemm::{Slot, with_scratch};
        use super::parallel::for_each_chunk_mut;
        let len = direct_backward_data_scratch_len(g) - g.weight_len();
        let wt = &*wt;
        for_each_chunk_mut(dx, in_img, g.flops() / 2, |img, dxi| {
            with_scratch(Slot::Conv, len, |xp| {
                let dyi = &dy[img * out_img..(img + 1) * out_img];
                backward_data_direct_image(kern, g, wt, dyi, dxi, xp)
            });
        });
        return;
    }
    let _ = threaded;
    let xp = &mut rest[..direct_backward_data_scratch_len(g) - g.weight_len()];
    for (img, dxi) in dx.chunks_exact_mut(in_img).enumerate() {
        let dyi = &dy[img * out_img..(img + 1) * out_img];
        backward_data_direct_image(kern, g, wt, dyi, dxi, xp);
    }
}

/// Whether the weight gradient uses the direct backward-weight kernel of
/// `kern`: the forward is direct with several output positions, the kernel
/// is at most [`conv_direct::DIRECT_MAX_KW_BACKWARD`] wide, and the padded
/// input fits in the scratch the GEMM path would use for its columns.
fn uses_direct_backward_weight(kern: &Kernels, g: &Conv2dGeometry) -> bool {
    kern.conv_direct_backward_weight.is_some()
        && uses_direct(kern, g)
        && g.stride == [1, 1]
        && g.c_out <= conv_direct::DIRECT_MAX_C_OUT
        && g.kw <= conv_direct::DIRECT_MAX_KW_BACKWARD
        && !g.is_plain_product()
        && direct_scratch_len(g) <= col_len(g)
}

/// Copies image `x` (`c_in × h × w`) into the zero-padded plane of the
/// direct kernels (`xp`: [`direct_scratch_len`] floats).
pub(super) fn pad_direct_input(g: &Conv2dGeometry, s: &DirectShape, x: &[f32], xp: &mut [f32]) {
    if g.pad == [0; 4] {
        // The input already is its padded plane: one copy, then the tail
        // (zeros, though the kernels never store what they read there).
        let len = g.c_in * g.h * g.w;
        xp[..len].copy_from_slice(&x[..len]);
        xp[len..].fill(0.0);
    } else {
        xp.fill(0.0);
        for c in 0..g.c_in {
            for iy in 0..g.h {
                let dst = (c * s.hp + iy + g.pad[0]) * s.wp + g.pad[1];
                xp[dst..dst + g.w]
                    .copy_from_slice(&x[(c * g.h + iy) * g.w..(c * g.h + iy + 1) * g.w]);
            }
        }
    }
}

/// [`backward_weight_direct`] over the thread pool: each task owns the
/// gradient rows of some output channels and runs the whole batch for them,
/// so every sum's order is the serial one.
#[cfg(feature = "std")]
fn backward_weight_direct_threaded(
    kern: &Kernels,
    g: &Conv2dGeometry,
    x: &[f32],
    dy: &[f32],
    dw: &mut [f32],
    accumulate: bool,
) {
    use super::gemm::{Slot, with_scratch};
    use super::parallel::for_each_chunk_mut;
    let taps = g.col_rows();
    // Two channels per task: enough tasks for two threads at LeNet's 6 and
    // 16 channels.
    const CHANNELS: usize = 2;
    let dw = &mut dw[..g.c_out * taps];
    let len = direct_scratch_len(g);
    for_each_chunk_mut(dw, CHANNELS * taps, g.flops() / 2, |t, rows| {
        let co0 = t * CHANNELS;
        let co1 = co0 + rows.len() / taps;
        with_scratch(Slot::Conv, len, |scratch| {
            backward_weight_direct(kern, g, x, dy, rows, (co0, co1), accumulate, scratch)
        });
    });
}

/// The direct weight gradient of output channels `co` (a range) over the
/// whole batch, images in order, into `dw` (those channels' gradient rows);
/// `scratch` holds [`direct_scratch_len`] floats.
fn backward_weight_direct(
    kern: &Kernels,
    g: &Conv2dGeometry,
    x: &[f32],
    dy: &[f32],
    dw: &mut [f32],
    co: (usize, usize),
    accumulate: bool,
    scratch: &mut [f32],
) {
    let Some(bw) = kern.conv_direct_backward_weight else {
        unreachable!("backward_weight_direct: variant {} has none", kern.name)
    };
    let s = direct_shape(g);
    let (in_img, out_img) = (g.c_in * g.h * g.w, g.c_out * s.oh * s.ow);
    let xp = &mut scratch[..direct_scratch_len(g)];
    for img in 0..g.n {
        pad_direct_input(g, &s, &x[img * in_img..(img + 1) * in_img], xp);
        let dyi = &dy[img * out_img..(img + 1) * out_img];
        // SAFETY: the padded input has its tail, dy one image, dw the whole
        // weight gradient (check_backward_weight); the shape is
        // direct_shape's with stride 1, at most 16 channels and kw within
        // the kernel's limit (uses_direct_backward_weight); the table
        // checked the CPU's features.
        unsafe { bw(&s, xp, dyi, dw, co, accumulate || img > 0) };
    }
}

/// One step of a convolution's fused epilogue, applied in list order to each
/// output value after the product.
#[derive(Debug, Clone, Copy)]
pub enum ConvEpilogue<'a> {
    /// `v += bias[c]` for output channel `c` (`c_out` values).
    Bias(&'a [f32]),
    /// `v *= s`.
    Scale(f32),
    /// `v = act(v)`.
    Activation(Activation),
    /// `v += r`, with `r` from a tensor of the output's shape.
    Residual(&'a [f32]),
}

/// The longest epilogue list a convolution takes (its steps are mapped onto
/// GEMM steps without allocating).
pub const MAX_EPILOGUE: usize = 8;

pub(super) fn check_conv_epilogue(g: &Conv2dGeometry, epilogue: &[ConvEpilogue<'_>]) {
    assert!(
        epilogue.len() <= MAX_EPILOGUE,
        "conv: epilogue has {} steps, at most {MAX_EPILOGUE} are supported",
        epilogue.len()
    );
    for (i, e) in epilogue.iter().enumerate() {
        match *e {
            ConvEpilogue::Bias(b) => assert!(
                b.len() >= g.c_out,
                "conv: epilogue {i} (bias) has {} values, needs c_out = {}",
                b.len(),
                g.c_out
            ),
            ConvEpilogue::Residual(r) => assert!(
                r.len() >= g.output_len(),
                "conv: epilogue {i} (residual) has {} floats, needs {}",
                r.len(),
                g.output_len()
            ),
            ConvEpilogue::Scale(_) | ConvEpilogue::Activation(_) => {}
        }
    }
}

pub(super) fn check_len(what: &str, have: usize, need: usize) {
    assert!(have >= need, "conv: {what} has {have} floats, needs {need}");
}

/// Maps the convolution epilogue onto GEMM steps for image `img`, group
/// `grp`; returns how many of `out` are used.
fn gemm_epilogue<'a>(
    g: &Conv2dGeometry,
    epilogue: &[ConvEpilogue<'a>],
    img: usize,
    grp: usize,
    out: &mut [Epilogue<'a>; MAX_EPILOGUE],
) -> usize {
    let cog = g.c_out / g.groups;
    let plane = g.out_h() * g.out_w();
    for (o, e) in out.iter_mut().zip(epilogue) {
        *o = match *e {
            ConvEpilogue::Bias(b) => Epilogue::BiasRow(&b[grp * cog..(grp + 1) * cog]),
            ConvEpilogue::Scale(s) => Epilogue::Scale(s),
            ConvEpilogue::Activation(a) => Epilogue::Activation(a),
            ConvEpilogue::Residual(r) => {
                let at = (img * g.c_out + grp * cog) * plane;
                Epilogue::Residual {
                    data: &r[at..at + cog * plane],
                    ld: plane,
                }
            }
        };
    }
    epilogue.len()
}

/// Writes group `grp` of one image `x` into the column matrix `col`
/// (`col_rows × out_h·out_w`, row `(c·kh + r)·kw + s`).
fn im2col(g: &Conv2dGeometry, x: &[f32], grp: usize, col: &mut [f32]) {
    im2col_rows(g, x, grp, 0..g.out_h(), col);
}

/// About how many output positions of the column matrix the weight
/// gradient writes and multiplies at a time.
const BACKWARD_WEIGHT_POSITIONS: usize = 512;

/// About how many output positions of the column matrix the input gradient
/// multiplies and adds back at a time.
const BACKWARD_DATA_POSITIONS: usize = 256;

/// [`im2col`] for the output rows `rows` only: `col` is `k × (rows.len() ·
/// out_w)`, its positions those of the rows in order.
fn im2col_rows(
    g: &Conv2dGeometry,
    x: &[f32],
    grp: usize,
    rows: core::ops::Range<usize>,
    col: &mut [f32],
) {
    let ow = g.out_w();
    let cig = g.c_in / g.groups;
    let plane = rows.len() * ow;
    for cl in 0..cig {
        let xc = &x[(grp * cig + cl) * g.h * g.w..(grp * cig + cl + 1) * g.h * g.w];
        for r in 0..g.kh {
            for s in 0..g.kw {
                let row = (cl * g.kh + r) * g.kw + s;
                let dst = &mut col[row * plane..(row + 1) * plane];
                let (lo, hi) = valid_range(ow, g.w, g.stride[1], s * g.dilation[1], g.pad[1]);
                for (i, oy) in rows.clone().enumerate() {
                    let d = &mut dst[i * ow..(i + 1) * ow];
                    let iy = (oy * g.stride[0] + r * g.dilation[0]) as isize - g.pad[0] as isize;
                    if iy < 0 || iy >= g.h as isize || lo >= hi {
                        d.fill(0.0);
                        continue;
                    }
                    let src = &xc[iy as usize * g.w..(iy as usize + 1) * g.w];
                    d[..lo].fill(0.0);
                    d[hi..].fill(0.0);
                    let ix0 = lo * g.stride[1] + s * g.dilation[1] - g.pad[1];
                    if g.stride[1] == 1 {
                        d[lo..hi].copy_from_slice(&src[ix0..ix0 + (hi - lo)]);
                    } else {
                        for (k, v) in d[lo..hi].iter_mut().enumerate() {
                            *v = src[ix0 + k * g.stride[1]];
                        }
                    }
                }
            }
        }
    }
}

/// Adds the column matrix `col` of the output rows `rows` of group `grp`
/// back into one image `dx` (the transpose of [`im2col_rows`]; `col` is `k ×
/// (rows.len() · out_w)`).
fn col2im_rows(
    g: &Conv2dGeometry,
    col: &[f32],
    grp: usize,
    rows: core::ops::Range<usize>,
    dx: &mut [f32],
) {
    let ow = g.out_w();
    let cig = g.c_in / g.groups;
    let plane = rows.len() * ow;
    for cl in 0..cig {
        let xc = &mut dx[(grp * cig + cl) * g.h * g.w..(grp * cig + cl + 1) * g.h * g.w];
        for r in 0..g.kh {
            for s in 0..g.kw {
                let row = (cl * g.kh + r) * g.kw + s;
                let src = &col[row * plane..(row + 1) * plane];
                let (lo, hi) = valid_range(ow, g.w, g.stride[1], s * g.dilation[1], g.pad[1]);
                if lo >= hi {
                    continue;
                }
                for (i, oy) in rows.clone().enumerate() {
                    let iy = (oy * g.stride[0] + r * g.dilation[0]) as isize - g.pad[0] as isize;
                    if iy < 0 || iy >= g.h as isize {
                        continue;
                    }
                    let d = &mut xc[iy as usize * g.w..(iy as usize + 1) * g.w];
                    let srow = &src[i * ow..(i + 1) * ow];
                    let ix0 = lo * g.stride[1] + s * g.dilation[1] - g.pad[1];
                    if g.stride[1] == 1 {
                        for (dv, sv) in d[ix0..ix0 + (hi - lo)].iter_mut().zip(&srow[lo..hi]) {
                            *dv += *sv;
                        }
                    } else {
                        for (k, sv) in srow[lo..hi].iter().enumerate() {
                            d[ix0 + k * g.stride[1]] += *sv;
                        }
                    }
                }
            }
        }
    }
}

/// The column matrix of one image and group, never stored: it packs its
/// GEMM panels straight from the input (an implicit im2col), one cache block
/// at a time, copying runs of consecutive output positions. As the forward
/// pass's B its rows are taps and its columns positions.
struct Im2colB<'a> {
    g: &'a Conv2dGeometry,
    /// One image.
    x: &'a [f32],
    grp: usize,
}

impl Im2colB<'_> {
    /// Writes the column-matrix values of tap `tap` at output positions
    /// `pos0 .. pos0 + len` to `out[.. len]`.
    fn gather(&self, tap: usize, pos0: usize, len: usize, out: &mut [f32]) {
        let g = self.g;
        let ow = g.out_w();
        let cig = g.c_in / g.groups;
        let taps = g.kh * g.kw;
        let (cl, r, s) = (tap / taps, (tap / g.kw) % g.kh, tap % g.kw);
        let plane = g.h * g.w;
        let xc = &self.x[(self.grp * cig + cl) * plane..(self.grp * cig + cl + 1) * plane];
        let (lo, hi) = valid_range(ow, g.w, g.stride[1], s * g.dilation[1], g.pad[1]);
        // Walk the positions one output row at a time.
        let mut o = 0;
        while o < len {
            let j = pos0 + o;
            let (oy, ox0) = (j / ow, j % ow);
            let run = (ow - ox0).min(len - o);
            let iy = (oy * g.stride[0] + r * g.dilation[0]) as isize - g.pad[0] as isize;
            let (a, b) = (lo.max(ox0), hi.min(ox0 + run));
            let src: &[f32] = if iy < 0 || iy >= g.h as isize || a >= b {
                &[]
            } else {
                &xc[iy as usize * g.w..(iy as usize + 1) * g.w]
            };
            let ix0 = (a * g.stride[1] + s * g.dilation[1]).wrapping_sub(g.pad[1]);
            let seg = &mut out[o..o + run];
            if src.is_empty() {
                seg.fill(0.0);
            } else {
                seg[..a - ox0].fill(0.0);
                seg[b - ox0..].fill(0.0);
                let valid = &mut seg[a - ox0..b - ox0];
                if g.stride[1] == 1 {
                    valid.copy_from_slice(&src[ix0..ix0 + (b - a)]);
                } else {
                    for (k, v) in valid.iter_mut().enumerate() {
                        *v = src[ix0 + k * g.stride[1]];
                    }
                }
            }
            o += run;
        }
    }
}

impl PackB for Im2colB<'_> {
    fn pack_b(&self, pc: usize, kb: usize, jc: usize, nb: usize, nr: usize, out: &mut [f32]) {
        for (panel, jr) in (0..nb).step_by(nr).enumerate() {
            let nw = nr.min(nb - jr);
            let dst = &mut out[panel * kb * nr..(panel + 1) * kb * nr];
            // Row p of the panel: tap pc + p at positions jc + jr ...
            for p in 0..kb {
                let d = &mut dst[p * nr..(p + 1) * nr];
                d[nw..].fill(0.0);
                self.gather(pc + p, jc + jr, nw, d);
            }
        }
    }
}

/// The output columns `lo .. hi` whose input column `o·stride + offset − pad`
/// lies inside `0 .. w`.
fn valid_range(ow: usize, w: usize, stride: usize, offset: usize, pad: usize) -> (usize, usize) {
    // o·stride + offset ≥ pad  ⇔  o ≥ ⌈(pad − offset) / stride⌉.
    let lo = if offset >= pad {
        0
    } else {
        (pad - offset).div_ceil(stride)
    };
    // o·stride + offset − pad ≤ w − 1  ⇔  o ≤ ⌊(w − 1 + pad − offset) / stride⌋.
    let hi = if w + pad > offset {
        ((w - 1 + pad - offset) / stride + 1).min(ow)
    } else {
        0
    };
    (lo.min(hi), hi)
}

/// How one image's GEMMs run: on this thread with a scratch slice, or (std)
/// over the thread pool.
enum Mm<'s> {
    Serial(&'s mut [f32]),
    #[cfg(feature = "std")]
    Threaded,
}

/// One group's weight operand: as stored, or packed in advance.
#[derive(Clone, Copy)]
enum GemmA<'a> {
    Plain(&'a [f32]),
    Packed(&'a [f32]),
}

/// The weights of all groups: as stored (`group_len` floats per group), or
/// packed for the variant (`packed_len` floats per group).
#[derive(Clone, Copy)]
pub(super) struct Weights<'a> {
    pub(super) data: &'a [f32],
    packed: bool,
    group_len: usize,
    /// For the direct kernels: whether `data` is tap-major for the
    /// channel-lane kernel ([`conv_direct_channels::channel_major_weights`])
    /// rather than OIHW.
    channel_major: bool,
}

impl<'a> Weights<'a> {
    fn group(&self, grp: usize) -> GemmA<'a> {
        let at = grp * self.group_len;
        let slice = &self.data[at..at + self.group_len];
        if self.packed {
            GemmA::Packed(slice)
        } else {
            GemmA::Plain(slice)
        }
    }
}

impl Mm<'_> {
    fn run(
        &mut self,
        kern: &Kernels,
        g: &Gemm,
        a: GemmA<'_>,
        b: &[f32],
        c: &mut [f32],
        e: &[Epilogue<'_>],
    ) {
        match (self, a) {
            (Mm::Serial(s), GemmA::Plain(a)) => sgemm_serial_with(kern, g, a, b, c, e, s),
            (Mm::Serial(s), GemmA::Packed(a)) => sgemm_packed_serial_with(kern, g, a, b, c, e, s),
            #[cfg(feature = "std")]
            (Mm::Threaded, GemmA::Plain(a)) => super::gemm::sgemm_with(kern, g, a, b, c, e),
            #[cfg(feature = "std")]
            (Mm::Threaded, GemmA::Packed(a)) => super::gemm::sgemm_packed_with(kern, g, a, b, c, e),
        }
    }
}

impl Mm<'_> {
    /// A product with a self-packing B.
    fn run_custom(
        &mut self,
        kern: &Kernels,
        g: &Gemm,
        a: AOperand<'_>,
        b: &dyn PackB,
        c: &mut [f32],
        e: &[Epilogue<'_>],
    ) {
        match self {
            Mm::Serial(s) => sgemm_custom_serial_with(kern, g, a, b, c, e, s),
            #[cfg(feature = "std")]
            Mm::Threaded => super::gemm::sgemm_custom_with(kern, g, a, b, c, e),
        }
    }
}

/// The GEMM whose A operand is one group's weights: forward (`W_g`, cog × k)
/// or backward-data (`W_gᵀ`, k × cog).
fn weight_gemm(g: &Conv2dGeometry, backward: bool) -> Gemm {
    let (cog, k, plane) = (g.c_out / g.groups, g.col_rows(), g.out_h() * g.out_w());
    if backward {
        Gemm::new(k, plane, cog).transpose_a()
    } else {
        Gemm::new(cog, plane, k)
    }
}

/// Whether the weights are packed once per call: whenever each image's
/// product has more than one column (one column takes the matrix-vector
/// path, which reads the weights as stored).
fn packs_weights(g: &Conv2dGeometry) -> bool {
    g.out_h() * g.out_w() > 1
}

/// Floats of all groups' packed weights (0 when [`packs_weights`] is false).
fn packed_weights_len(kern: &Kernels, g: &Conv2dGeometry, backward: bool) -> usize {
    if packs_weights(g) {
        g.groups * packed_a_len(kern, &weight_gemm(g, backward))
    } else {
        0
    }
}

/// Packs every group's weights into `out` when [`packs_weights`], and says
/// where the GEMMs find them.
fn prepare_weights<'a>(
    kern: &Kernels,
    g: &Conv2dGeometry,
    w: &'a [f32],
    backward: bool,
    out: &'a mut [f32],
) -> Weights<'a> {
    let gm = weight_gemm(g, backward);
    let per = (g.c_out / g.groups) * g.col_rows();
    if !packs_weights(g) {
        return Weights {
            data: w,
            packed: false,
            group_len: per,
            channel_major: false,
        };
    }
    let len = packed_a_len(kern, &gm);
    for grp in 0..g.groups {
        pack_a(
            kern,
            &gm,
            &w[grp * per..(grp + 1) * per],
            &mut out[grp * len..(grp + 1) * len],
        );
    }
    Weights {
        data: &out[..g.groups * len],
        packed: true,
        group_len: len,
        channel_major: false,
    }
}

/// The largest GEMM of any image and group of this convolution.
fn image_gemm(g: &Conv2dGeometry) -> Gemm {
    Gemm::new(g.c_out / g.groups, g.out_h() * g.out_w(), g.col_rows())
}

fn col_len(g: &Conv2dGeometry) -> usize {
    if g.is_plain_product() {
        0
    } else {
        g.col_rows() * g.out_h() * g.out_w()
    }
}

/// Whether the forward pass takes the shifted path: stride 1 and a real
/// window (see [`ShiftedB`]), weights packed.
fn uses_shifted(g: &Conv2dGeometry) -> bool {
    g.stride == [1, 1] && !g.is_plain_product() && packs_weights(g)
}

/// The GEMM of one image and group of the forward pass: over the output
/// positions, or over the extended positions on the shifted path.
fn forward_gemm(g: &Conv2dGeometry) -> Gemm {
    let k = fold_images(g);
    if k > 1 {
        Gemm::new(g.c_out, k * g.out_h() * g.out_w(), g.col_rows())
    } else if uses_shifted(g) {
        let (_, wp) = padded_dims(g);
        Gemm::new(g.c_out / g.groups, g.out_h() * wp, g.col_rows())
    } else {
        image_gemm(g)
    }
}

/// The padded input's height and width.
fn padded_dims(g: &Conv2dGeometry) -> (usize, usize) {
    (g.h + g.pad[0] + g.pad[2], g.w + g.pad[1] + g.pad[3])
}

/// Floats of one image's padded input plus the zero tail the last shifted
/// panel may read.
fn shifted_input_len(g: &Conv2dGeometry) -> usize {
    let (hp, wp) = padded_dims(g);
    g.c_in * hp * wp + (g.kw - 1) * g.dilation[1] + 64
}

/// Copies one image into the zero-padded planes `xp` (and zeroes the tail).
fn pad_input(g: &Conv2dGeometry, x: &[f32], xp: &mut [f32]) {
    let (hp, wp) = padded_dims(g);
    xp.fill(0.0);
    for c in 0..g.c_in {
        for iy in 0..g.h {
            let dst = (c * hp + iy + g.pad[0]) * wp + g.pad[1];
            xp[dst..dst + g.w].copy_from_slice(&x[(c * g.h + iy) * g.w..(c * g.h + iy + 1) * g.w]);
        }
    }
}

/// The column matrix of a stride-1 convolution over the *extended*
/// positions `p = oy·Wp + ox` (`ox < Wp`) of the padded input: tap
/// `(c, r, s)` reads `xp[c·Hp·Wp + r·dh·Wp + s·dw + p]`, so each row of a
/// packed panel is one contiguous copy. Positions with `ox ≥ out_w` are
/// computed and dropped when the result is stored.
struct ShiftedB<'a> {
    /// The group's padded input planes (and the tail).
    x: &'a [f32],
    plane: usize,
    wp: usize,
    g: &'a Conv2dGeometry,
}

impl PackB for ShiftedB<'_> {
    fn pack_b(&self, pc: usize, kb: usize, jc: usize, nb: usize, nr: usize, out: &mut [f32]) {
        let g = self.g;
        let taps = g.kh * g.kw;
        for (panel, jr) in (0..nb).step_by(nr).enumerate() {
            let nw = nr.min(nb - jr);
            let dst = &mut out[panel * kb * nr..(panel + 1) * kb * nr];
            for p in 0..kb {
                let tap = pc + p;
                let (cl, r, s) = (tap / taps, (tap / g.kw) % g.kh, tap % g.kw);
                let at =
                    cl * self.plane + r * g.dilation[0] * self.wp + s * g.dilation[1] + jc + jr;
                let d = &mut dst[p * nr..(p + 1) * nr];
                d[..nw].copy_from_slice(&self.x[at..at + nw]);
                d[nw..].fill(0.0);
            }
        }
    }
}

/// Floats of the column matrix (or padded input and extended output) the
/// forward pass keeps in scratch: the shifted path's buffers, nothing when
/// it packs the column matrix implicitly, else the explicit column matrix.
fn forward_col_len(g: &Conv2dGeometry) -> usize {
    if fold_images(g) > 1 {
        fold_len(g)
    } else if uses_shifted(g) {
        let (_, wp) = padded_dims(g);
        shifted_input_len(g) + (g.c_out / g.groups) * g.out_h() * wp
    } else if packs_weights(g) && !is_strided_1x1(g) {
        0
    } else {
        col_len(g)
    }
}

/// The most output positions of one image whose batch is folded into the
/// GEMM's columns ([`fold_images`]).
const FOLD_MAX_PLANE: usize = 100;

/// About how many columns a folded GEMM has.
const FOLD_COLUMNS: usize = 512;

/// How many images of the batch the forward GEMM takes at once: its columns
/// are the positions of every image in turn, so that a small plane (ResNet's
/// 7 × 7 layers: 49 positions, under two 32-wide tiles, or 63 extended
/// positions on the shifted path) fills whole tiles. Only where the
/// shifted path would run (stride 1, [`uses_shifted`]), whose padded input
/// [`FoldedB`] packs from; one (no folding) for a single image, groups,
/// and planes of more than [`FOLD_MAX_PLANE`] positions. The count depends
/// on the geometry only, so every entry point and thread count agrees.
fn fold_images(g: &Conv2dGeometry) -> usize {
    let plane = g.out_h() * g.out_w();
    if g.n < 2 || g.groups != 1 || !uses_shifted(g) || plane > FOLD_MAX_PLANE {
        return 1;
    }
    FOLD_COLUMNS.div_ceil(plane).min(g.n)
}

/// Scratch of a folded forward GEMM: the images' padded inputs, then its
/// output (`c_out` rows of the images' positions).
fn fold_len(g: &Conv2dGeometry) -> usize {
    let (hp, wp) = padded_dims(g);
    match fold_images(g) {
        1 => 0,
        k => k * g.c_in * hp * wp + g.c_out * k * g.out_h() * g.out_w(),
    }
}

/// The column matrix of a stride-1 convolution over several images'
/// positions in turn ([`fold_images`]), packed from their padded inputs
/// (`x`: `pimg` floats per image): each panel's columns are cut once into
/// runs of one output row, and each tap's row of the panel is those runs'
/// copies at the tap's offset.
struct FoldedB<'a> {
    x: &'a [f32],
    pimg: usize,
    g: &'a Conv2dGeometry,
}

impl PackB for FoldedB<'_> {
    fn pack_b(&self, pc: usize, kb: usize, jc: usize, nb: usize, nr: usize, out: &mut [f32]) {
        let g = self.g;
        let (hp, wp) = padded_dims(g);
        let (oh, ow) = (g.out_h(), g.out_w());
        let plane = oh * ow;
        for (panel, jr) in (0..nb).step_by(nr).enumerate() {
            let nw = nr.min(nb - jr);
            // (column, source offset, length) per output-row run.
            let mut runs = [(0usize, 0usize, 0usize); super::dispatch::MAX_NR];
            let mut count = 0;
            let j0 = jc + jr;
            let (mut img, rest) = (j0 / plane, j0 % plane);
            let (mut oy, mut ox) = (rest / ow, rest % ow);
            let mut o = 0;
            while o < nw {
                let len = (ow - ox).min(nw - o);
                runs[count] = (o, img * self.pimg + oy * wp + ox, len);
                count += 1;
                o += len;
                ox += len;
                if ox == ow {
                    (ox, oy) = (0, oy + 1);
                    if oy == oh {
                        (oy, img) = (0, img + 1);
                    }
                }
            }
            let dst = &mut out[panel * kb * nr..(panel + 1) * kb * nr];
            let taps = g.kh * g.kw;
            let (mut cl, mut r, mut s) = (pc / taps, (pc / g.kw) % g.kh, pc % g.kw);
            for d in dst.chunks_exact_mut(nr).take(kb) {
                let off = cl * hp * wp + r * g.dilation[0] * wp + s * g.dilation[1];
                for &(o, at, len) in &runs[..count] {
                    d[o..o + len].copy_from_slice(&self.x[at + off..at + off + len]);
                }
                d[nw..].fill(0.0);
                s += 1;
                if s == g.kw {
                    (s, r) = (0, r + 1);
                    if r == g.kh {
                        (r, cl) = (0, cl + 1);
                    }
                }
            }
        }
    }
}

/// Whether the kernel is 1×1 without padding but strided (ResNet's
/// projections): its column matrix is a cheap subsampled copy of the input,
/// so it is built explicitly and multiplied as stored, which beats packing
/// it element by element.
fn is_strided_1x1(g: &Conv2dGeometry) -> bool {
    g.kh == 1 && g.kw == 1 && g.pad == [0; 4] && !g.is_plain_product()
}

/// The scratch length (floats) of [`conv2d_forward_serial`].
pub fn conv2d_forward_scratch_len(kern: &Kernels, g: &Conv2dGeometry) -> usize {
    if uses_winograd_per_call(kern, g) {
        return winograd::winograd_scratch_len(kern, g);
    }
    if uses_direct(kern, g) {
        return direct_forward_scratch_len(kern, g);
    }
    packed_weights_len(kern, g, false)
        + forward_col_len(g)
        + gemm_scratch_len_with(kern, &forward_gemm(g))
}

/// The scratch length (floats) of [`conv2d_backward_data_serial`] and
/// [`conv2d_backward_weight_serial`] (also that of the transposed
/// convolution's serial forward).
pub fn conv2d_backward_scratch_len(kern: &Kernels, g: &Conv2dGeometry) -> usize {
    let gd = Gemm::new(g.col_rows(), g.out_h() * g.out_w(), g.c_out / g.groups);
    let gw = Gemm::new(g.c_out / g.groups, g.col_rows(), g.out_h() * g.out_w());
    // The transposed weight gradient (`swaps_weight_gradient`).
    let gs = Gemm::new(g.col_rows(), g.c_out / g.groups, g.out_h() * g.out_w());
    packed_weights_len(kern, g, true)
        + col_len(g)
        + gemm_scratch_len_with(kern, &gd)
            .max(gemm_scratch_len_with(kern, &gw))
            .max(gemm_scratch_len_with(kern, &gs))
}

/// One image of the forward pass (`img` is its index in the batch).
fn forward_image(
    kern: &Kernels,
    g: &Conv2dGeometry,
    x: &[f32],
    w: Weights<'_>,
    epilogue: &[ConvEpilogue<'_>],
    y: &mut [f32],
    img: usize,
    col: &mut [f32],
    mm: &mut Mm<'_>,
) {
    let plane = g.out_h() * g.out_w();
    let cog = g.c_out / g.groups;
    let gm = image_gemm(g);
    let hw = g.h * g.w;
    let cig = g.c_in / g.groups;
    if uses_shifted(g) {
        // Stride 1: every tap's row of the column matrix is a shifted slice
        // of the padded input, over the extended positions oy·Wp + ox.
        let (hp, wp) = padded_dims(g);
        let (xp, yext) = col.split_at_mut(shifted_input_len(g));
        pad_input(g, x, xp);
        let n_ext = g.out_h() * wp;
        let gm = forward_gemm(g);
        for grp in 0..g.groups {
            let GemmA::Packed(pa) = w.group(grp) else {
                unreachable!("forward_image: the shifted path packs its weights")
            };
            let b = ShiftedB {
                x: &xp[grp * cig * hp * wp..],
                plane: hp * wp,
                wp,
                g,
            };
            let yg = &mut yext[..cog * n_ext];
            mm.run_custom(kern, &gm, AOperand::Packed(pa), &b, yg, &[]);
            store_extended(g, yg, n_ext, wp, y, epilogue, img, grp * cog, cog);
        }
        return;
    }
    for grp in 0..g.groups {
        let mut steps = [Epilogue::Scale(1.0); MAX_EPILOGUE];
        let used = gemm_epilogue(g, epilogue, img, grp, &mut steps);
        let yg = &mut y[grp * cog * plane..(grp + 1) * cog * plane];
        if g.is_plain_product() {
            let b = &x[grp * cig * hw..(grp + 1) * cig * hw];
            mm.run(kern, &gm, w.group(grp), b, yg, &steps[..used]);
        } else if let (GemmA::Packed(pa), false) = (w.group(grp), is_strided_1x1(g)) {
            let b = Im2colB { g, x, grp };
            mm.run_custom(kern, &gm, AOperand::Packed(pa), &b, yg, &steps[..used]);
        } else {
            im2col(g, x, grp, col);
            mm.run(kern, &gm, w.group(grp), col, yg, &steps[..used]);
        }
    }
}

/// The forward pass of images `img0 .. img0 + k` of the batch as one GEMM
/// whose columns are their positions in turn ([`fold_images`]): the
/// images' padded inputs are packed as B ([`FoldedB`]), the product lands
/// in `c` (after them, [`fold_len`] floats in all), and each image's
/// channels are copied into place with the epilogue applied.
#[allow(clippy::too_many_arguments)]
fn forward_folded(
    kern: &Kernels,
    g: &Conv2dGeometry,
    x: &[f32],
    w: Weights<'_>,
    epilogue: &[ConvEpilogue<'_>],
    y: &mut [f32],
    (img0, k): (usize, usize),
    c: &mut [f32],
    mm: &mut Mm<'_>,
) {
    let plane = g.out_h() * g.out_w();
    let (in_img, out_img) = (g.c_in * g.h * g.w, g.c_out * plane);
    let GemmA::Packed(pa) = w.group(0) else {
        unreachable!("forward_folded: every entry point packs the weights of a folded GEMM")
    };
    let (hp, wp) = padded_dims(g);
    let pimg = g.c_in * hp * wp;
    let (xp, c) = c.split_at_mut(fold_images(g) * pimg);
    for i in 0..k {
        let xi = &x[(img0 + i) * in_img..(img0 + i + 1) * in_img];
        pad_input(g, xi, &mut xp[i * pimg..(i + 1) * pimg]);
    }
    let gm = Gemm::new(g.c_out, k * plane, g.col_rows());
    let b = FoldedB { x: xp, pimg, g };
    let c = &mut c[..g.c_out * k * plane];
    mm.run_custom(kern, &gm, AOperand::Packed(pa), &b, c, &[]);
    for i in 0..k {
        let img = img0 + i;
        let yi = &mut y[img * out_img..(img + 1) * out_img];
        for (co, yc) in yi.chunks_exact_mut(plane).enumerate() {
            yc.copy_from_slice(&c[(co * k + i) * plane..(co * k + i + 1) * plane]);
            channel_epilogue(g, epilogue, img, co, yc);
        }
    }
}

/// The direct forward path for one image: pad the input into `scratch`, run
/// the variant's direct kernel straight into `y` (with the epilogue's
/// leading bias and ReLU in registers), then apply the rest of the epilogue.
fn forward_direct_image(
    kern: &Kernels,
    g: &Conv2dGeometry,
    x: &[f32],
    wts: Weights<'_>,
    epilogue: &[ConvEpilogue<'_>],
    y: &mut [f32],
    img: usize,
    scratch: &mut [f32],
) {
    let Some(direct) = kern.conv_direct else {
        unreachable!(
            "forward_direct_image: variant {} has no direct kernel",
            kern.name
        )
    };
    let s = direct_shape(g);
    let xp = &mut scratch[..direct_scratch_len(g)];
    pad_direct_input(g, &s, x, xp);
    let (post, rest) = direct_post(epilogue);
    let y = &mut y[..g.c_out * s.oh * s.ow];
    match kern.conv_direct_channels {
        Some(channels) if wts.channel_major => {
            // SAFETY: as below, with tap-major weights, which every entry
            // point writes only for a shape the channel-lane kernel accepts
            // (uses_channel_lanes).
            unsafe { channels(&s, xp, wts.data, post, y) };
        }
        // SAFETY: the buffers have the lengths the kernel's contract asks
        // for (padded input plus tail, OIHW weight, one output image, c_out
        // bias values: check_epilogue), the shape is direct_shape's, c_out is
        // at most 16 (uses_direct), and the table checked the CPU's features.
        _ => unsafe { direct(&s, xp, wts.data, post, y) },
    }
    apply_epilogue_in_place(g, y, rest, img);
}

/// Splits an epilogue list into the leading steps the direct kernel applies
/// in registers (a bias, then a ReLU, each optional, in that order) and the
/// rest, which [`apply_epilogue_in_place`] applies afterwards.
pub(super) fn direct_post<'a, 'e>(
    epilogue: &'e [ConvEpilogue<'a>],
) -> (DirectPost<'a>, &'e [ConvEpilogue<'a>]) {
    let mut post = DirectPost::default();
    let mut rest = epilogue;
    if let [ConvEpilogue::Bias(b), tail @ ..] = rest {
        post.bias = Some(b);
        rest = tail;
    }
    if let [ConvEpilogue::Activation(Activation::Relu), tail @ ..] = rest {
        post.relu = true;
        rest = tail;
    }
    (post, rest)
}

/// Applies `epilogue` in list order to one image's output `y` (image `img`
/// of the batch), channel by channel.
fn apply_epilogue_in_place(
    g: &Conv2dGeometry,
    y: &mut [f32],
    epilogue: &[ConvEpilogue<'_>],
    img: usize,
) {
    if epilogue.is_empty() {
        return;
    }
    let plane = g.out_h() * g.out_w();
    for (co, yc) in y.chunks_exact_mut(plane).enumerate() {
        for e in epilogue {
            match *e {
                ConvEpilogue::Bias(b) => yc.iter_mut().for_each(|v| *v += b[co]),
                ConvEpilogue::Scale(f) => yc.iter_mut().for_each(|v| *v *= f),
                ConvEpilogue::Activation(a) => apply_activation(a, yc),
                ConvEpilogue::Residual(r) => {
                    let at = (img * g.c_out + co) * plane;
                    for (v, rv) in yc.iter_mut().zip(&r[at..at + plane]) {
                        *v += *rv;
                    }
                }
            }
        }
    }
}

/// Copies channels `co0 .. co0 + count` of an extended output (`yext`, one
/// plane of `stride` floats per channel, rows `wp` apart) into their place in
/// one image's `y`, dropping the columns past `out_w`, and applies the
/// epilogue per channel.
fn store_extended(
    g: &Conv2dGeometry,
    yext: &[f32],
    stride: usize,
    wp: usize,
    y: &mut [f32],
    epilogue: &[ConvEpilogue<'_>],
    img: usize,
    co0: usize,
    count: usize,
) {
    let (oh, ow) = (g.out_h(), g.out_w());
    let plane = oh * ow;
    for q in 0..count {
        let co = co0 + q;
        let yc = &mut y[co * plane..(co + 1) * plane];
        for oy in 0..oh {
            let src = &yext[q * stride + oy * wp..q * stride + oy * wp + ow];
            yc[oy * ow..(oy + 1) * ow].copy_from_slice(src);
        }
        channel_epilogue(g, epilogue, img, co, yc);
    }
}

/// Applies the epilogue list, in order, to output channel `co` of image
/// `img`, whose plane `yc` holds the product.
pub(super) fn channel_epilogue(
    g: &Conv2dGeometry,
    epilogue: &[ConvEpilogue<'_>],
    img: usize,
    co: usize,
    yc: &mut [f32],
) {
    let plane = yc.len();
    for e in epilogue {
        match *e {
            ConvEpilogue::Bias(b) => {
                for v in yc.iter_mut() {
                    *v += b[co];
                }
            }
            ConvEpilogue::Scale(f) => {
                for v in yc.iter_mut() {
                    *v *= f;
                }
            }
            ConvEpilogue::Activation(a) => apply_activation(a, yc),
            ConvEpilogue::Residual(r) => {
                let at = (img * g.c_out + co) * plane;
                for (v, rv) in yc.iter_mut().zip(&r[at..at + plane]) {
                    *v += *rv;
                }
            }
        }
    }
}

fn check_forward(g: &Conv2dGeometry, x: &[f32], w: &[f32], e: &[ConvEpilogue<'_>], y: &[f32]) {
    g.assert_valid();
    check_len("input", x.len(), g.input_len());
    check_len("weight", w.len(), g.weight_len());
    check_len("output", y.len(), g.output_len());
    check_conv_epilogue(g, e);
}

/// `y = epilogue(conv(x, w))` on the calling thread, allocation-free, with
/// `scratch` of at least [`conv2d_forward_scratch_len`] floats.
///
/// # Panics
///
/// If the geometry is invalid or a buffer is too short (a caller bug; the
/// compiler validates geometries with [`Conv2dGeometry::validate`]).
pub fn conv2d_forward_serial(
    kern: &Kernels,
    g: &Conv2dGeometry,
    x: &[f32],
    w: &[f32],
    epilogue: &[ConvEpilogue<'_>],
    y: &mut [f32],
    scratch: &mut [f32],
) {
    check_forward(g, x, w, epilogue, y);
    check_len(
        "scratch",
        scratch.len(),
        conv2d_forward_scratch_len(kern, g),
    );
    if uses_winograd_per_call(kern, g) {
        return winograd::conv2d_forward_winograd_serial(kern, g, x, w, epilogue, y, scratch);
    }
    if uses_direct(kern, g) {
        let (wt, rest) = scratch.split_at_mut(direct_weights_len(kern, g));
        let wts = direct_weights(kern, g, w, wt);
        return forward_serial_with(kern, g, x, wts, epilogue, y, rest);
    }
    let (pw, rest) = scratch.split_at_mut(packed_weights_len(kern, g, false));
    let wts = prepare_weights(kern, g, w, false, pw);
    forward_serial_with(kern, g, x, wts, epilogue, y, rest);
}

/// The weights as stored, for the paths that do not pack them.
fn plain_weights<'a>(g: &Conv2dGeometry, w: &'a [f32]) -> Weights<'a> {
    Weights {
        data: w,
        packed: false,
        group_len: (g.c_out / g.groups) * g.col_rows(),
        channel_major: false,
    }
}

/// The forward pass on this thread with the weights prepared.
fn forward_serial_with(
    kern: &Kernels,
    g: &Conv2dGeometry,
    x: &[f32],
    wts: Weights<'_>,
    epilogue: &[ConvEpilogue<'_>],
    y: &mut [f32],
    scratch: &mut [f32],
) {
    let (in_img, out_img) = (g.c_in * g.h * g.w, g.c_out * g.out_h() * g.out_w());
    if uses_direct(kern, g) {
        for img in 0..g.n {
            let xi = &x[img * in_img..(img + 1) * in_img];
            let yi = &mut y[img * out_img..(img + 1) * out_img];
            forward_direct_image(kern, g, xi, wts, epilogue, yi, img, scratch);
        }
        return;
    }
    let (col, pack) = scratch.split_at_mut(forward_col_len(g));
    let mut mm = Mm::Serial(pack);
    let k = fold_images(g);
    if k > 1 {
        for img0 in (0..g.n).step_by(k) {
            let k = k.min(g.n - img0);
            forward_folded(kern, g, x, wts, epilogue, y, (img0, k), col, &mut mm);
        }
        return;
    }
    for img in 0..g.n {
        let xi = &x[img * in_img..(img + 1) * in_img];
        let yi = &mut y[img * out_img..(img + 1) * out_img];
        forward_image(kern, g, xi, wts, epilogue, yi, img, col, &mut mm);
    }
}

/// `y = epilogue(conv(x, w))` over the thread pool: images in parallel when
/// the batch has several, else the rows of each image's GEMM.
///
/// # Panics
///
/// If the geometry is invalid or a buffer is too short (a caller bug).
#[cfg(feature = "std")]
pub fn conv2d_forward(
    kern: &Kernels,
    g: &Conv2dGeometry,
    x: &[f32],
    w: &[f32],
    epilogue: &[ConvEpilogue<'_>],
    y: &mut [f32],
) {
    check_forward(g, x, w, epilogue, y);
    if uses_winograd_per_call(kern, g) {
        return winograd::conv2d_forward_winograd(kern, g, x, w, epilogue, y);
    }
    conv2d_forward_gemm(kern, g, x, w, epilogue, y);
}

/// [`conv2d_forward`] without Winograd: the direct kernel where
/// [`uses_direct`], else the GEMM lowering (what the benchmarks compare
/// Winograd with).
///
/// # Panics
///
/// If the geometry is invalid or a buffer is too short (a caller bug).
#[cfg(feature = "std")]
pub fn conv2d_forward_gemm(
    kern: &Kernels,
    g: &Conv2dGeometry,
    x: &[f32],
    w: &[f32],
    epilogue: &[ConvEpilogue<'_>],
    y: &mut [f32],
) {
    use super::gemm::{Slot, with_scratch};
    check_forward(g, x, w, epilogue, y);
    if uses_direct(kern, g) {
        return with_scratch(Slot::Weights, direct_weights_len(kern, g), |wt| {
            let wts = direct_weights(kern, g, w, wt);
            forward_threaded_with(kern, g, x, wts, epilogue, y)
        });
    }
    with_scratch(Slot::Weights, packed_weights_len(kern, g, false), |pw| {
        let wts = prepare_weights(kern, g, w, false, pw);
        forward_threaded_with(kern, g, x, wts, epilogue, y);
    });
}

/// The forward pass over the thread pool with the weights prepared.
#[cfg(feature = "std")]
fn forward_threaded_with(
    kern: &Kernels,
    g: &Conv2dGeometry,
    x: &[f32],
    wts: Weights<'_>,
    epilogue: &[ConvEpilogue<'_>],
    y: &mut [f32],
) {
    use super::gemm::{Slot, with_scratch};
    use super::parallel::{for_each_chunk_mut, worth_parallel};
    let (in_img, out_img) = (g.c_in * g.h * g.w, g.c_out * g.out_h() * g.out_w());
    let y = &mut y[..g.output_len()];
    let work = g.flops() / 2;
    if uses_direct(kern, g) {
        let len = direct_scratch_len(g);
        for_each_chunk_mut(y, out_img, work, |img, yi| {
            let xi = &x[img * in_img..(img + 1) * in_img];
            with_scratch(Slot::Conv, len, |scratch| {
                forward_direct_image(kern, g, xi, wts, epilogue, yi, img, scratch)
            });
        });
        return;
    }
    let k = fold_images(g);
    if k > 1 {
        with_scratch(Slot::Conv, forward_col_len(g), |c| {
            for img0 in (0..g.n).step_by(k) {
                let k = k.min(g.n - img0);
                forward_folded(
                    kern,
                    g,
                    x,
                    wts,
                    epilogue,
                    y,
                    (img0, k),
                    c,
                    &mut Mm::Threaded,
                );
            }
        });
        return;
    }
    if g.n > 1 && worth_parallel(work) {
        let len = forward_col_len(g) + gemm_scratch_len_with(kern, &forward_gemm(g));
        for_each_chunk_mut(y, out_img, work, |img, yi| {
            let xi = &x[img * in_img..(img + 1) * in_img];
            with_scratch(Slot::Conv, len, |scratch| {
                let (col, pack) = scratch.split_at_mut(forward_col_len(g));
                let mut mm = Mm::Serial(pack);
                forward_image(kern, g, xi, wts, epilogue, yi, img, col, &mut mm);
            });
        });
        return;
    }
    with_scratch(Slot::Conv, forward_col_len(g), |col| {
        for img in 0..g.n {
            let xi = &x[img * in_img..(img + 1) * in_img];
            let yi = &mut y[img * out_img..(img + 1) * out_img];
            forward_image(kern, g, xi, wts, epilogue, yi, img, col, &mut Mm::Threaded);
        }
    });
}

/// Floats of a convolution's weights in the form its forward pass uses
/// with variant `kern`: packed GEMM panels per group, or (for the direct
/// kernel and one-position outputs) the OIHW weights as they are.
pub fn conv2d_packed_weights_len(kern: &Kernels, g: &Conv2dGeometry) -> usize {
    if uses_winograd(kern, g) {
        return winograd::winograd_packed_len(kern, g);
    }
    if uses_direct(kern, g) || !packs_weights(g) {
        g.weight_len()
    } else {
        packed_weights_len(kern, g, false)
    }
}

/// Puts the OIHW weights `w` into the form [`conv2d_forward_prepacked_serial`]
/// takes (`out`: at least [`conv2d_packed_weights_len`] floats), once, so that
/// an inference build packs constant weights at load time instead of at every
/// call.
///
/// # Panics
///
/// If the geometry is invalid or a buffer is too short (a caller bug).
pub fn conv2d_pack_weights(kern: &Kernels, g: &Conv2dGeometry, w: &[f32], out: &mut [f32]) {
    g.assert_valid();
    check_len("weight", w.len(), g.weight_len());
    let len = conv2d_packed_weights_len(kern, g);
    check_len("packed weights", out.len(), len);
    if uses_winograd(kern, g) {
        winograd::winograd_pack_weights(kern, g, w, out);
    } else if uses_channel_lanes(kern, g) {
        conv_direct_channels::channel_major_weights(&direct_shape(g), w, out);
    } else if uses_direct(kern, g) || !packs_weights(g) {
        out[..len].copy_from_slice(&w[..len]);
    } else {
        prepare_weights(kern, g, w, false, out);
    }
}

/// The view of weights packed by [`conv2d_pack_weights`].
pub(super) fn packed_view<'a>(
    kern: &Kernels,
    g: &Conv2dGeometry,
    packed: &'a [f32],
) -> Weights<'a> {
    check_len(
        "packed weights",
        packed.len(),
        conv2d_packed_weights_len(kern, g),
    );
    if uses_direct(kern, g) || !packs_weights(g) {
        Weights {
            channel_major: uses_channel_lanes(kern, g),
            ..plain_weights(g, packed)
        }
    } else {
        Weights {
            data: packed,
            packed: true,
            group_len: packed_a_len(kern, &weight_gemm(g, false)),
            channel_major: false,
        }
    }
}

/// The scratch length (floats) of [`conv2d_forward_prepacked_serial`].
pub fn conv2d_forward_prepacked_scratch_len(kern: &Kernels, g: &Conv2dGeometry) -> usize {
    if uses_winograd(kern, g) {
        winograd::winograd_prepacked_scratch_len(kern, g)
    } else if uses_direct(kern, g) {
        direct_scratch_len(g)
    } else {
        forward_col_len(g) + gemm_scratch_len_with(kern, &forward_gemm(g))
    }
}

/// [`conv2d_forward_serial`] with weights packed in advance by
/// [`conv2d_pack_weights`] for the same variant and geometry; `scratch` of
/// at least [`conv2d_forward_prepacked_scratch_len`] floats. Allocation-free.
///
/// # Panics
///
/// If the geometry is invalid or a buffer is too short (a caller bug).
pub fn conv2d_forward_prepacked_serial(
    kern: &Kernels,
    g: &Conv2dGeometry,
    x: &[f32],
    packed: &[f32],
    epilogue: &[ConvEpilogue<'_>],
    y: &mut [f32],
    scratch: &mut [f32],
) {
    g.assert_valid();
    check_len("input", x.len(), g.input_len());
    check_len("output", y.len(), g.output_len());
    check_conv_epilogue(g, epilogue);
    check_len(
        "scratch",
        scratch.len(),
        conv2d_forward_prepacked_scratch_len(kern, g),
    );
    if uses_winograd(kern, g) {
        return winograd::conv2d_forward_winograd_prepacked_serial(
            kern, g, x, packed, epilogue, y, scratch,
        );
    }
    let wts = packed_view(kern, g, packed);
    forward_serial_with(kern, g, x, wts, epilogue, y, scratch);
}

/// [`conv2d_forward`] with weights packed in advance by
/// [`conv2d_pack_weights`].
///
/// # Panics
///
/// If the geometry is invalid or a buffer is too short (a caller bug).
#[cfg(feature = "std")]
pub fn conv2d_forward_prepacked(
    kern: &Kernels,
    g: &Conv2dGeometry,
    x: &[f32],
    packed: &[f32],
    epilogue: &[ConvEpilogue<'_>],
    y: &mut [f32],
) {
    g.assert_valid();
    check_len("input", x.len(), g.input_len());
    check_len("output", y.len(), g.output_len());
    check_conv_epilogue(g, epilogue);
    if uses_winograd(kern, g) {
        return winograd::conv2d_forward_winograd_prepacked(kern, g, x, packed, epilogue, y);
    }
    let wts = packed_view(kern, g, packed);
    forward_threaded_with(kern, g, x, wts, epilogue, y);
}

/// One image of backward-data: `dx` (one image) from `dy` (one image).
fn backward_data_image(
    kern: &Kernels,
    g: &Conv2dGeometry,
    w: Weights<'_>,
    dy: &[f32],
    dx: &mut [f32],
    col: &mut [f32],
    mm: &mut Mm<'_>,
) {
    let plane = g.out_h() * g.out_w();
    let cog = g.c_out / g.groups;
    let cig = g.c_in / g.groups;
    let k = g.col_rows();
    let hw = g.h * g.w;
    for grp in 0..g.groups {
        let wg = w.group(grp);
        let dyg = &dy[grp * cog * plane..(grp + 1) * cog * plane];
        // op(A) = W_gᵀ: W_g is stored cog × k.
        let gm = Gemm::new(k, plane, cog).transpose_a();
        if g.is_plain_product() {
            mm.run(
                kern,
                &gm,
                wg,
                dyg,
                &mut dx[grp * cig * hw..(grp + 1) * cig * hw],
                &[],
            );
        } else {
            // A few output rows at a time, as the weight gradient does: each
            // chunk of the column matrix stays in L2 between the GEMM that
            // writes it and the col2im that adds it into dx.
            dx[grp * cig * hw..(grp + 1) * cig * hw].fill(0.0);
            let ow = g.out_w();
            let rows_per = (BACKWARD_DATA_POSITIONS / ow).max(1);
            let mut oy = 0;
            while oy < g.out_h() {
                let rows = oy..(oy + rows_per).min(g.out_h());
                let positions = rows.len() * ow;
                let chunk = &mut col[..k * positions];
                let gm = Gemm {
                    ldb: plane,
                    ..Gemm::new(k, positions, cog).transpose_a()
                };
                mm.run(kern, &gm, wg, &dyg[oy * ow..], chunk, &[]);
                col2im_rows(g, chunk, grp, rows.clone(), dx);
                oy = rows.end;
            }
        }
    }
}

fn check_backward_data(g: &Conv2dGeometry, w: &[f32], dy: &[f32], dx: &[f32]) {
    g.assert_valid();
    check_len("weight", w.len(), g.weight_len());
    check_len("output gradient", dy.len(), g.output_len());
    check_len("input gradient", dx.len(), g.input_len());
}

/// `dx = ∂(Σ dy·y)/∂x` (overwritten) on the calling thread, allocation-free,
/// with `scratch` of at least [`conv2d_backward_scratch_len`] floats.
///
/// # Panics
///
/// If the geometry is invalid or a buffer is too short (a caller bug).
pub fn conv2d_backward_data_serial(
    kern: &Kernels,
    g: &Conv2dGeometry,
    w: &[f32],
    dy: &[f32],
    dx: &mut [f32],
    scratch: &mut [f32],
) {
    check_backward_data(g, w, dy, dx);
    check_len(
        "scratch",
        scratch.len(),
        conv2d_backward_scratch_len(kern, g),
    );
    if uses_direct_backward_data(kern, g) {
        return backward_data_direct(kern, g, w, dy, dx, scratch, false);
    }
    let (in_img, out_img) = (g.c_in * g.h * g.w, g.c_out * g.out_h() * g.out_w());
    let (pw, rest) = scratch.split_at_mut(packed_weights_len(kern, g, true));
    let wts = prepare_weights(kern, g, w, true, pw);
    let (col, pack) = rest.split_at_mut(col_len(g));
    let mut mm = Mm::Serial(pack);
    for img in 0..g.n {
        backward_data_image(
            kern,
            g,
            wts,
            &dy[img * out_img..(img + 1) * out_img],
            &mut dx[img * in_img..(img + 1) * in_img],
            col,
            &mut mm,
        );
    }
}

/// `dx = ∂(Σ dy·y)/∂x` (overwritten) over the thread pool.
///
/// # Panics
///
/// If the geometry is invalid or a buffer is too short (a caller bug).
#[cfg(feature = "std")]
pub fn conv2d_backward_data(
    kern: &Kernels,
    g: &Conv2dGeometry,
    w: &[f32],
    dy: &[f32],
    dx: &mut [f32],
) {
    use super::gemm::{Slot, with_scratch};
    use super::parallel::{for_each_chunk_mut, worth_parallel};
    check_backward_data(g, w, dy, dx);
    if uses_direct_backward_data(kern, g) {
        return with_scratch(Slot::Weights, g.weight_len(), |wt| {
            backward_data_direct(kern, g, w, dy, dx, wt, true)
        });
    }
    let (in_img, out_img) = (g.c_in * g.h * g.w, g.c_out * g.out_h() * g.out_w());
    let dx = &mut dx[..g.input_len()];
    let work = g.flops() / 2;
    with_scratch(Slot::Weights, packed_weights_len(kern, g, true), |pw| {
        let wts = prepare_weights(kern, g, w, true, pw);
        if g.n > 1 && worth_parallel(work) {
            let len = conv2d_backward_scratch_len(kern, g);
            for_each_chunk_mut(dx, in_img, work, |img, dxi| {
                with_scratch(Slot::Conv, len, |scratch| {
                    let (col, pack) = scratch.split_at_mut(col_len(g));
                    let dyi = &dy[img * out_img..(img + 1) * out_img];
                    backward_data_image(kern, g, wts, dyi, dxi, col, &mut Mm::Serial(pack));
                });
            });
            return;
        }
        with_scratch(Slot::Conv, col_len(g), |col| {
            for img in 0..g.n {
                let dyi = &dy[img * out_img..(img + 1) * out_img];
                let dxi = &mut dx[img * in_img..(img + 1) * in_img];
                backward_data_image(kern, g, wts, dyi, dxi, col, &mut Mm::Threaded);
            }
        });
    });
}

/// All images of backward-weight, in batch order, through `mm`.
fn backward_weight_images(
    kern: &Kernels,
    g: &Conv2dGeometry,
    x: &[f32],
    dy: &[f32],
    dw: &mut [f32],
    accumulate: bool,
    col: &mut [f32],
    mm: &mut Mm<'_>,
) {
    if swaps_weight_gradient(g) {
        return backward_weight_swapped(kern, g, x, dy, dw, accumulate, col, mm);
    }
    let plane = g.out_h() * g.out_w();
    let cog = g.c_out / g.groups;
    let cig = g.c_in / g.groups;
    let k = g.col_rows();
    let hw = g.h * g.w;
    let (in_img, out_img) = (g.c_in * hw, g.c_out * plane);
    for img in 0..g.n {
        let xi = &x[img * in_img..(img + 1) * in_img];
        let beta = if accumulate || img > 0 { 1.0 } else { 0.0 };
        for grp in 0..g.groups {
            let dyg =
                &dy[img * out_img + grp * cog * plane..img * out_img + (grp + 1) * cog * plane];
            let dwg = &mut dw[grp * cog * k..(grp + 1) * cog * k];
            if g.is_plain_product() {
                // op(B) = xᵀ: the input is k × plane.
                let gm = Gemm::new(cog, k, plane).transpose_b().scaled(1.0, beta);
                let b = &xi[grp * cig * hw..(grp + 1) * cig * hw];
                mm.run(kern, &gm, GemmA::Plain(dyg), b, dwg, &[]);
                continue;
            }
            // op(B) = colᵀ, a few output rows at a time: each chunk of the
            // column matrix (k × positions) is written once, stays in L2
            // while GEMM packs it by register transposes, and adds its
            // positions' share to dw in order. Measured at ResNet-18's 3×3
            // shapes at batch 32 (`--bench conv_resnet18`), this is
            // 1.0–1.7× the implicit im2col that gathered colᵀ element by
            // element into the packed panels.
            let ow = g.out_w();
            let rows_per = (BACKWARD_WEIGHT_POSITIONS / ow).max(1);
            let mut oy = 0;
            while oy < g.out_h() {
                let rows = oy..(oy + rows_per).min(g.out_h());
                let positions = rows.len() * ow;
                let chunk = &mut col[..k * positions];
                im2col_rows(g, xi, grp, rows.clone(), chunk);
                let first = oy == 0 && beta == 0.0;
                let gm = Gemm {
                    lda: plane,
                    ..Gemm::new(cog, k, positions)
                        .transpose_b()
                        .scaled(1.0, if first { 0.0 } else { 1.0 })
                };
                mm.run(kern, &gm, GemmA::Plain(&dyg[oy * ow..]), chunk, dwg, &[]);
                oy = rows.end;
            }
        }
    }
}

/// The output rows of one chunk of the weight gradient's column matrix.
fn backward_weight_rows(g: &Conv2dGeometry) -> usize {
    (BACKWARD_WEIGHT_POSITIONS / g.out_w().max(1))
        .max(1)
        .min(g.out_h())
}

/// Whether the weight gradient of `g` is computed transposed, `dWᵀ = col ·
/// dYᵀ` ([`backward_weight_swapped`]): one group, fewer than 96 output
/// channels (64 fill 5⅓ of the 12-row tiles as GEMM rows, but exactly two
/// 32-wide tiles as its columns), and room in the column buffer for both a
/// chunk and the `k × c_out` transposed gradient. At ResNet-18's 64@56 at
/// batch 32 (`--bench conv_resnet18`) it ran at 88–95 GFLOP/s against
/// 71–84 untransposed (see `BENCHMARKS.md`).
fn swaps_weight_gradient(g: &Conv2dGeometry) -> bool {
    let plane = g.out_h() * g.out_w();
    g.groups == 1
        && !g.is_plain_product()
        && g.c_out < 96
        && backward_weight_rows(g) * g.out_w() + g.c_out <= plane
}

/// The weight gradient as `dWᵀ (k × c_out) = Σ col · dYᵀ`, accumulated over
/// every chunk of every image in order in the column buffer's tail, then
/// transposed into `dw` (added to it with `accumulate`).
#[allow(clippy::too_many_arguments)]
fn backward_weight_swapped(
    kern: &Kernels,
    g: &Conv2dGeometry,
    x: &[f32],
    dy: &[f32],
    dw: &mut [f32],
    accumulate: bool,
    col: &mut [f32],
    mm: &mut Mm<'_>,
) {
    let (ow, plane) = (g.out_w(), g.out_h() * g.out_w());
    let (k, cog) = (g.col_rows(), g.c_out);
    let (in_img, out_img) = (g.c_in * g.h * g.w, g.c_out * plane);
    let rows_per = backward_weight_rows(g);
    let (chunk_buf, rest) = col.split_at_mut(k * rows_per * ow);
    let ct = &mut rest[..k * cog];
    let mut first = true;
    for img in 0..g.n {
        let xi = &x[img * in_img..(img + 1) * in_img];
        let dyi = &dy[img * out_img..(img + 1) * out_img];
        let mut oy = 0;
        while oy < g.out_h() {
            let rows = oy..(oy + rows_per).min(g.out_h());
            let positions = rows.len() * ow;
            let chunk = &mut chunk_buf[..k * positions];
            im2col_rows(g, xi, 0, rows.clone(), chunk);
            // op(B) = dYᵀ: the chunk's columns of dY, rows `plane` apart.
            let gm = Gemm {
                ldb: plane,
                ..Gemm::new(k, cog, positions)
                    .transpose_b()
                    .scaled(1.0, if first { 0.0 } else { 1.0 })
            };
            mm.run(kern, &gm, GemmA::Plain(chunk), &dyi[oy * ow..], ct, &[]);
            first = false;
            oy = rows.end;
        }
    }
    if first {
        ct.fill(0.0);
    }
    for (co, row) in dw[..cog * k].chunks_exact_mut(k).enumerate() {
        for (j, d) in row.iter_mut().enumerate() {
            let v = ct[j * cog + co];
            *d = if accumulate { *d + v } else { v };
        }
    }
}

fn check_backward_weight(g: &Conv2dGeometry, x: &[f32], dy: &[f32], dw: &[f32]) {
    g.assert_valid();
    check_len("input", x.len(), g.input_len());
    check_len("output gradient", dy.len(), g.output_len());
    check_len("weight gradient", dw.len(), g.weight_len());
}

/// `dw (+)= ∂(Σ dy·y)/∂w` on the calling thread, allocation-free, with
/// `scratch` of at least [`conv2d_backward_scratch_len`] floats. With
/// `accumulate` the gradient is added to `dw`, else it overwrites it.
///
/// # Panics
///
/// If the geometry is invalid or a buffer is too short (a caller bug).
pub fn conv2d_backward_weight_serial(
    kern: &Kernels,
    g: &Conv2dGeometry,
    x: &[f32],
    dy: &[f32],
    dw: &mut [f32],
    accumulate: bool,
    scratch: &mut [f32],
) {
    check_backward_weight(g, x, dy, dw);
    check_len(
        "scratch",
        scratch.len(),
        conv2d_backward_scratch_len(kern, g),
    );
    if uses_direct_backward_weight(kern, g) {
        let all = (0, g.c_out);
        return backward_weight_direct(kern, g, x, dy, dw, all, accumulate, scratch);
    }
    let (col, pack) = scratch.split_at_mut(col_len(g));
    backward_weight_images(kern, g, x, dy, dw, accumulate, col, &mut Mm::Serial(pack));
}

/// `dw (+)= ∂(Σ dy·y)/∂w` with each image's GEMM over the thread pool
/// (images in batch order, so the sum's order is fixed).
///
/// # Panics
///
/// If the geometry is invalid or a buffer is too short (a caller bug).
#[cfg(feature = "std")]
pub fn conv2d_backward_weight(
    kern: &Kernels,
    g: &Conv2dGeometry,
    x: &[f32],
    dy: &[f32],
    dw: &mut [f32],
    accumulate: bool,
) {
    use super::gemm::{Slot, with_scratch};
    check_backward_weight(g, x, dy, dw);
    if uses_direct_backward_weight(kern, g) {
        return backward_weight_direct_threaded(kern, g, x, dy, dw, accumulate);
    }
    with_scratch(Slot::Conv, col_len(g), |col| {
        backward_weight_images(kern, g, x, dy, dw, accumulate, col, &mut Mm::Threaded)
    });
}

/// `db (+)= Σ dy[·, c, ·, ·]`, per output channel, images and positions in
/// order.
///
/// # Panics
///
/// If a buffer is too short (a caller bug).
pub fn conv2d_backward_bias(g: &Conv2dGeometry, dy: &[f32], db: &mut [f32], accumulate: bool) {
    g.assert_valid();
    check_len("output gradient", dy.len(), g.output_len());
    check_len("bias gradient", db.len(), g.c_out);
    channel_sums(dy, g.n, g.c_out, g.out_h() * g.out_w(), db, accumulate);
}

pub(super) fn channel_sums(
    t: &[f32],
    n: usize,
    c: usize,
    plane: usize,
    out: &mut [f32],
    accumulate: bool,
) {
    if !accumulate {
        out[..c].fill(0.0);
    }
    for img in 0..n {
        for ch in 0..c {
            let at = (img * c + ch) * plane;
            // Eight running sums, combined in a fixed order.
            let mut acc = [0.0f32; 8];
            let src = &t[at..at + plane];
            let mut chunks = src.chunks_exact(8);
            for ck in &mut chunks {
                for (a, v) in acc.iter_mut().zip(ck) {
                    *a += *v;
                }
            }
            let mut s =
                ((acc[0] + acc[4]) + (acc[1] + acc[5])) + ((acc[2] + acc[6]) + (acc[3] + acc[7]));
            for v in chunks.remainder() {
                s += *v;
            }
            out[ch] += s;
        }
    }
}

fn add_channel_bias(y: &mut [f32], n: usize, c: usize, plane: usize, bias: &[f32]) {
    for img in 0..n {
        for ch in 0..c {
            let at = (img * c + ch) * plane;
            for v in &mut y[at..at + plane] {
                *v += bias[ch];
            }
        }
    }
}

/// The transposed convolution `y = convᵀ(x, w) + bias` on the calling thread:
/// `g` is the geometry of the convolution it transposes, `x` has that
/// convolution's output shape, `y` its input shape, `bias` (if any) `g.c_in`
/// values. Scratch: [`conv2d_backward_scratch_len`].
///
/// # Panics
///
/// If the geometry is invalid or a buffer is too short (a caller bug).
pub fn conv_transpose2d_forward_serial(
    kern: &Kernels,
    g: &Conv2dGeometry,
    x: &[f32],
    w: &[f32],
    bias: Option<&[f32]>,
    y: &mut [f32],
    scratch: &mut [f32],
) {
    conv2d_backward_data_serial(kern, g, w, x, y, scratch);
    if let Some(b) = bias {
        check_len("bias", b.len(), g.c_in);
        add_channel_bias(y, g.n, g.c_in, g.h * g.w, b);
    }
}

/// The transposed convolution `y = convᵀ(x, w) + bias` over the thread pool
/// (shapes as [`conv_transpose2d_forward_serial`]).
///
/// # Panics
///
/// If the geometry is invalid or a buffer is too short (a caller bug).
#[cfg(feature = "std")]
pub fn conv_transpose2d_forward(
    kern: &Kernels,
    g: &Conv2dGeometry,
    x: &[f32],
    w: &[f32],
    bias: Option<&[f32]>,
    y: &mut [f32],
) {
    conv2d_backward_data(kern, g, w, x, y);
    if let Some(b) = bias {
        check_len("bias", b.len(), g.c_in);
        add_channel_bias(y, g.n, g.c_in, g.h * g.w, b);
    }
}

/// The transposed convolution's input gradient `dx = conv(dy, w)` (`dy` has
/// `g`'s input shape, `dx` its output shape).
///
/// # Panics
///
/// If the geometry is invalid or a buffer is too short (a caller bug).
#[cfg(feature = "std")]
pub fn conv_transpose2d_backward_data(
    kern: &Kernels,
    g: &Conv2dGeometry,
    w: &[f32],
    dy: &[f32],
    dx: &mut [f32],
) {
    conv2d_forward(kern, g, dy, w, &[], dx);
}

/// The transposed convolution's weight gradient for input `x` (`g`'s output
/// shape) and output gradient `dy` (`g`'s input shape).
///
/// # Panics
///
/// If the geometry is invalid or a buffer is too short (a caller bug).
#[cfg(feature = "std")]
pub fn conv_transpose2d_backward_weight(
    kern: &Kernels,
    g: &Conv2dGeometry,
    x: &[f32],
    dy: &[f32],
    dw: &mut [f32],
    accumulate: bool,
) {
    conv2d_backward_weight(kern, g, dy, x, dw, accumulate);
}

/// The transposed convolution's bias gradient: `db[c] (+)= Σ dy[·, c, ·, ·]`
/// over `g`'s input shape (`g.c_in` values).
///
/// # Panics
///
/// If a buffer is too short (a caller bug).
pub fn conv_transpose2d_backward_bias(
    g: &Conv2dGeometry,
    dy: &[f32],
    db: &mut [f32],
    accumulate: bool,
) {
    g.assert_valid();
    check_len("output gradient", dy.len(), g.input_len());
    check_len("bias gradient", db.len(), g.c_in);
    channel_sums(dy, g.n, g.c_in, g.h * g.w, db, accumulate);
}
