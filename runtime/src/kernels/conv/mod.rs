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

mod backward;
mod forward;
mod transpose;

pub(in crate::kernels) use backward::channel_sums;
pub use backward::{
    conv2d_backward_bias, conv2d_backward_data_serial, conv2d_backward_scratch_len,
    conv2d_backward_weight_serial,
};
#[cfg(feature = "std")]
pub use backward::{conv2d_backward_data, conv2d_backward_weight};
#[cfg(feature = "std")]
pub use forward::{conv2d_forward, conv2d_forward_gemm, conv2d_forward_prepacked};
pub use forward::{
    conv2d_forward_prepacked_scratch_len, conv2d_forward_prepacked_serial,
    conv2d_forward_scratch_len, conv2d_forward_serial, conv2d_pack_weights,
    conv2d_packed_weights_len,
};
pub(in crate::kernels) use forward::{direct_weights, direct_weights_len, packed_view};
pub use transpose::{conv_transpose2d_backward_bias, conv_transpose2d_forward_serial};
#[cfg(feature = "std")]
pub use transpose::{
    conv_transpose2d_backward_data, conv_transpose2d_backward_weight, conv_transpose2d_forward,
};

use super::conv_direct::{self, DirectPost, DirectShape};
use super::conv_direct_channels;
use super::dispatch::Kernels;
use super::gemm::{
    AOperand, Epilogue, Gemm, PackB, apply_activation, pack_a, packed_a_len, reads_a_in_place,
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

impl<'a> GemmA<'a> {
    /// The operand of the blocked product.
    fn operand(self) -> AOperand<'a> {
        match self {
            GemmA::Plain(a) => AOperand::Plain(a),
            GemmA::Packed(a) => AOperand::Packed(a),
        }
    }
}

impl<'a> Weights<'a> {
    /// The weights as stored (OIHW), unpacked.
    fn stored(g: &Conv2dGeometry, w: &'a [f32]) -> Self {
        Weights {
            data: w,
            packed: false,
            group_len: (g.c_out / g.groups) * g.col_rows(),
            channel_major: false,
        }
    }

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

/// The weights of one call of a pass whose GEMM (per image and group) is
/// `gm`: as stored where that GEMM reads A in place ([`reads_a_in_place`])
/// and there is one image, so that a packing would serve that one product
/// alone; else packed into `out` by [`prepare_weights`]. ResNet's 7×7
/// layers at batch 1 multiply 9.4 MB of weights by 49 or 63 columns, and
/// packing them costs as much as the product.
fn pass_weights<'a>(
    kern: &Kernels,
    g: &Conv2dGeometry,
    w: &'a [f32],
    backward: bool,
    gm: &Gemm,
    out: &'a mut [f32],
) -> Weights<'a> {
    if g.n == 1 && packs_weights(g) && reads_a_in_place(kern, gm) {
        return Weights::stored(g, w);
    }
    prepare_weights(kern, g, w, backward, out)
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
        return Weights::stored(g, w);
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

fn col_len(g: &Conv2dGeometry) -> usize {
    if g.is_plain_product() {
        0
    } else {
        g.col_rows() * g.out_h() * g.out_w()
    }
}
