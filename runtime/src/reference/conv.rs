//! Reference 2-D convolution and transposed convolution, forward and
//! backward: plain loops over NCHW tensors and OIHW weights, f64
//! accumulation, any stride, padding, dilation and groups.
//!
//! The shape of every call is a [`Conv2dGeometry`], the same struct the fast
//! kernels in [`crate::kernels::conv`] take. A transposed convolution is
//! described by the geometry of the convolution it transposes: its input has
//! that convolution's output shape and its output the convolution's input
//! shape, and its weight is the convolution's `c_out × c_in/groups × kh × kw`.

use super::Real;
pub use crate::kernels::conv::Conv2dGeometry;

/// Calls `f(n, co, oy, ox, ci, r, s, x_index)` for every tap of the
/// convolution that reads a real (not padding) input value; `ci` is the
/// absolute input channel.
fn for_each_tap(
    g: &Conv2dGeometry,
    mut f: impl FnMut(usize, usize, usize, usize, usize, usize, usize, usize),
) {
    let (oh, ow) = (g.out_h(), g.out_w());
    let cig = g.c_in / g.groups;
    let cog = g.c_out / g.groups;
    for n in 0..g.n {
        for co in 0..g.c_out {
            let grp = co / cog;
            for oy in 0..oh {
                for ox in 0..ow {
                    for cl in 0..cig {
                        let ci = grp * cig + cl;
                        for r in 0..g.kh {
                            let iy =
                                (oy * g.stride[0] + r * g.dilation[0]) as isize - g.pad[0] as isize;
                            if iy < 0 || iy >= g.h as isize {
                                continue;
                            }
                            for s in 0..g.kw {
                                let ix = (ox * g.stride[1] + s * g.dilation[1]) as isize
                                    - g.pad[1] as isize;
                                if ix < 0 || ix >= g.w as isize {
                                    continue;
                                }
                                let xi =
                                    ((n * g.c_in + ci) * g.h + iy as usize) * g.w + ix as usize;
                                f(n, co, oy, ox, ci, r, s, xi);
                            }
                        }
                    }
                }
            }
        }
    }
}

fn w_index(g: &Conv2dGeometry, co: usize, ci: usize, r: usize, s: usize) -> usize {
    let cig = g.c_in / g.groups;
    ((co * cig + ci % cig) * g.kh + r) * g.kw + s
}

fn y_index(g: &Conv2dGeometry, n: usize, co: usize, oy: usize, ox: usize) -> usize {
    ((n * g.c_out + co) * g.out_h() + oy) * g.out_w() + ox
}

fn to_real<T: Real>(v: Vec<f64>) -> Vec<T> {
    v.into_iter().map(T::from_f64).collect()
}

/// `y = conv(x, w) + bias` (bias per output channel when given).
pub fn conv2d_forward<T: Real>(g: &Conv2dGeometry, x: &[T], w: &[T], bias: Option<&[T]>) -> Vec<T> {
    let mut y = vec![0.0f64; g.output_len()];
    for_each_tap(g, |n, co, oy, ox, ci, r, s, xi| {
        y[y_index(g, n, co, oy, ox)] += x[xi].to_f64() * w[w_index(g, co, ci, r, s)].to_f64();
    });
    if let Some(b) = bias {
        let plane = g.out_h() * g.out_w();
        for (i, v) in y.iter_mut().enumerate() {
            *v += b[(i / plane) % g.c_out].to_f64();
        }
    }
    to_real(y)
}

/// `dx = ∂(Σ dy·y)/∂x`: the gradient with respect to the input.
pub fn conv2d_backward_data<T: Real>(g: &Conv2dGeometry, w: &[T], dy: &[T]) -> Vec<T> {
    let mut dx = vec![0.0f64; g.input_len()];
    for_each_tap(g, |n, co, oy, ox, ci, r, s, xi| {
        dx[xi] += dy[y_index(g, n, co, oy, ox)].to_f64() * w[w_index(g, co, ci, r, s)].to_f64();
    });
    to_real(dx)
}

/// `dw = ∂(Σ dy·y)/∂w`: the gradient with respect to the weight.
pub fn conv2d_backward_weight<T: Real>(g: &Conv2dGeometry, x: &[T], dy: &[T]) -> Vec<T> {
    let mut dw = vec![0.0f64; g.weight_len()];
    for_each_tap(g, |n, co, oy, ox, ci, r, s, xi| {
        dw[w_index(g, co, ci, r, s)] += dy[y_index(g, n, co, oy, ox)].to_f64() * x[xi].to_f64();
    });
    to_real(dw)
}

/// `db[c] = Σ dy[·, c, ·, ·]`: the gradient with respect to the bias.
pub fn conv2d_backward_bias<T: Real>(g: &Conv2dGeometry, dy: &[T]) -> Vec<T> {
    channel_sums(dy, g.n, g.c_out, g.out_h() * g.out_w())
}

fn channel_sums<T: Real>(t: &[T], n: usize, c: usize, plane: usize) -> Vec<T> {
    let mut db = vec![0.0f64; c];
    for (i, v) in t[..n * c * plane].iter().enumerate() {
        db[(i / plane) % c] += v.to_f64();
    }
    to_real(db)
}

/// The transposed convolution of `x` (shaped as `g`'s output) with `w`, plus
/// `bias` (one per channel of the result, `g.c_in` values): shaped as `g`'s
/// input.
pub fn conv_transpose2d_forward<T: Real>(
    g: &Conv2dGeometry,
    x: &[T],
    w: &[T],
    bias: Option<&[T]>,
) -> Vec<T> {
    let mut y = conv2d_backward_data(g, w, x);
    if let Some(b) = bias {
        let plane = g.h * g.w;
        for (i, v) in y.iter_mut().enumerate() {
            *v += b[(i / plane) % g.c_in];
        }
    }
    y
}

/// The transposed convolution's input gradient: a convolution of `dy`.
pub fn conv_transpose2d_backward_data<T: Real>(g: &Conv2dGeometry, w: &[T], dy: &[T]) -> Vec<T> {
    conv2d_forward(g, dy, w, None)
}

/// The transposed convolution's weight gradient, for input `x`.
pub fn conv_transpose2d_backward_weight<T: Real>(g: &Conv2dGeometry, x: &[T], dy: &[T]) -> Vec<T> {
    conv2d_backward_weight(g, dy, x)
}

/// The transposed convolution's bias gradient (`g.c_in` values).
pub fn conv_transpose2d_backward_bias<T: Real>(g: &Conv2dGeometry, dy: &[T]) -> Vec<T> {
    channel_sums(dy, g.n, g.c_in, g.h * g.w)
}
