//! The transposed convolution, by the entry points of the convolution it
//! transposes.

use super::{Conv2dGeometry, channel_sums, check_len, conv2d_backward_data_serial};
#[cfg(feature = "std")]
use super::{conv2d_backward_data, conv2d_backward_weight, conv2d_forward};
use crate::kernels::dispatch::Kernels;

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
///
/// [`conv2d_backward_scratch_len`]: super::conv2d_backward_scratch_len
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
