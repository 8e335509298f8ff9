//! Backward kernels that recompute what they need from the forward input.
//!
//! The compiler's IR gives every node exactly one output, so a gradient op
//! that needs forward state (a max pool's argmax) reads the forward input
//! again rather than a second output, and an op with two gradients gets one
//! node, and one kernel, per gradient (PReLU's input and slope, defined in
//! `activation` beside the joint kernel and re-exported here). These
//! kernels are the runtime side of that choice: each recomputes its state
//! in one pass, then applies the same rule as its counterpart in `pool` or
//! `activation`. Bias gradients (a sum per channel) and the slice that
//! concatenation's backward needs live here too. All are
//! allocation-free and run on the calling thread or through
//! [`parallel`](super::parallel), with a fixed summation order.

use super::activation::ChannelShape;
use super::parallel::for_each_chunk_mut;
use super::pool::Pool2d;

/// `out[c] = Σ_{b, s} dy[b, c, s]`: the gradient of a per-channel bias
/// (`dy` of `shape`; `out` has `shape.c` values), summed as a convolution's
/// bias gradient is (`conv2d_backward_bias`).
pub fn channel_sums(dy: &[f32], shape: ChannelShape, out: &mut [f32]) {
    assert_eq!(dy.len(), shape.len(), "channel_sums: input length");
    assert_eq!(out.len(), shape.c, "channel_sums: output length");
    super::conv::channel_sums(dy, shape.n, shape.c, shape.spatial, out, false);
}

/// Max pooling's input gradient with the argmax recomputed from `x`: each
/// window's `dy` goes to its largest input (the first in row-major order on
/// ties), padding never wins. `dx` is overwritten. Floor or ceil mode, as
/// the forward ([`PoolWindows`](super::pool::PoolWindows)).
pub fn max_pool2d_backward_from_input(
    x: &[f32],
    dy: &[f32],
    dx: &mut [f32],
    g: impl Into<super::pool::PoolWindows>,
) {
    let windows = g.into();
    let g: Pool2d = windows.pool;
    assert_eq!(x.len(), g.input_len(), "max_pool2d backward: input length");
    assert_eq!(
        dy.len(),
        windows.output_len(),
        "max_pool2d backward: gradient length"
    );
    assert_eq!(
        dx.len(),
        g.input_len(),
        "max_pool2d backward: output length"
    );
    let (oh, ow) = (windows.out_h(), windows.out_w());
    let plane_in = g.h * g.w;
    let plane_out = oh * ow;
    for_each_chunk_mut(dx, plane_in, g.input_len(), |p, dxp| {
        dxp.fill(0.0);
        let xp = &x[p * plane_in..(p + 1) * plane_in];
        let dyp = &dy[p * plane_out..(p + 1) * plane_out];
        for i in 0..oh {
            let (r0, r1) = g.rows(i);
            for j in 0..ow {
                let (c0, c1) = g.cols(j);
                let mut best = usize::MAX;
                let mut best_v = f32::NEG_INFINITY;
                for r in r0..r1 {
                    for c in c0..c1 {
                        let v = xp[r * g.w + c];
                        if best == usize::MAX || v > best_v {
                            best = r * g.w + c;
                            best_v = v;
                        }
                    }
                }
                if best != usize::MAX {
                    dxp[best] += dyp[i * ow + j];
                }
            }
        }
    });
}

pub use super::activation::{prelu_backward_input, prelu_backward_slope};

/// `y = x[:, start..start + len, :]` for `x` of shape `[outer, dim, inner]`:
/// one input's share of a concatenation's gradient.
pub fn slice_axis(
    x: &[f32],
    outer: usize,
    dim: usize,
    inner: usize,
    start: usize,
    len: usize,
    y: &mut [f32],
) {
    assert_eq!(x.len(), outer * dim * inner, "slice_axis: input length");
    assert!(start + len <= dim, "slice_axis: slice out of range");
    assert_eq!(y.len(), outer * len * inner, "slice_axis: output length");
    let (src, dst) = (dim * inner, len * inner);
    for o in 0..outer {
        y[o * dst..(o + 1) * dst]
            .copy_from_slice(&x[o * src + start * inner..o * src + (start + len) * inner]);
    }
}

#[cfg(all(test, feature = "std"))]
mod tests {
    use super::*;
    use crate::reference::pool as rpool;

    fn data(len: usize, seed: u64) -> Vec<f32> {
        let mut r = crate::rng::Rng::new(seed);
        (0..len).map(|_| r.next_f32() * 2.0 - 1.0).collect()
    }

    #[test]
    fn max_pool_backward_matches_the_reference_with_argmax() {
        // The last rows are ceil mode: GoogLeNet's 3×3/2 pools, and windows
        // that run past the input.
        for (k, s, p, h, ceil) in [
            (2, 2, 0, 8, false),
            (3, 2, 1, 7, false),
            (3, 1, 1, 5, false),
            (2, 1, 0, 3, false),
            (3, 2, 0, 8, true),
            (3, 2, 0, 14, true),
            (2, 2, 0, 7, true),
            (3, 3, 1, 8, true),
        ] {
            let g = Pool2d::square(2, 3, h, h, k, s, p).ceil_mode(ceil);
            let x = data(g.input_len(), 1);
            let dy = data(g.output_len(), 2);
            let mut y = vec![0.0; g.output_len()];
            let mut arg = vec![0u32; g.output_len()];
            rpool::max_pool2d_forward(&x, &mut y, &mut arg, g);
            let mut want = vec![0.0; g.input_len()];
            rpool::max_pool2d_backward(&dy, &arg, &mut want, g);
            let mut got = vec![1.0; g.input_len()];
            max_pool2d_backward_from_input(&x, &dy, &mut got, g);
            assert_eq!(got, want, "k={k} s={s} p={p} h={h} ceil={ceil}");
        }
    }

    #[test]
    fn channel_sums_and_slices() {
        let shape = ChannelShape {
            n: 2,
            c: 3,
            spatial: 2,
        };
        let dy: Vec<f32> = (0..12).map(|v| v as f32).collect();
        let mut out = vec![0.0; 3];
        channel_sums(&dy, shape, &mut out);
        // Channel 0 holds 0, 1 (first example) and 6, 7 (second).
        assert_eq!(out, vec![14.0, 22.0, 30.0]);
        let mut y = vec![0.0; 8];
        slice_axis(&dy, 2, 3, 2, 1, 2, &mut y);
        assert_eq!(y, vec![2.0, 3.0, 4.0, 5.0, 8.0, 9.0, 10.0, 11.0]);
    }

    /// PReLU's split kernels give exactly `activation::prelu_backward`'s
    /// two results and agree with the f64 reference (`dx` exactly, `dw`
    /// within f32 rounding of `Σ|dy·x|`), per channel and shared, planes of
    /// every length.
    fn check_prelu(shape: ChannelShape, per_channel: bool, seed: u64) {
        let x = data(shape.len(), seed);
        let dy = data(shape.len(), seed + 1);
        let w = data(if per_channel { shape.c } else { 1 }, seed + 2);
        let (mut want_dx, mut want_dw) = (vec![0.0; x.len()], vec![0.0; w.len()]);
        crate::kernels::activation::prelu_backward(&x, &dy, &mut want_dx, &mut want_dw, shape, &w);
        let (mut dx, mut dw) = (vec![1.0; x.len()], vec![1.0; w.len()]);
        prelu_backward_input(&x, &dy, &mut dx, shape, &w);
        prelu_backward_slope(&x, &dy, shape, &mut dw);
        assert_eq!(dx, want_dx, "{shape:?} per_channel={per_channel}");
        assert_eq!(dw, want_dw, "{shape:?} per_channel={per_channel}");
        let (mut ref_dx, mut ref_dw) = (vec![0.0f32; x.len()], vec![0.0f32; w.len()]);
        crate::reference::activation::prelu_backward(&x, &dy, &mut ref_dx, &mut ref_dw, shape, &w);
        assert_eq!(
            dx, ref_dx,
            "{shape:?} per_channel={per_channel}: dx vs reference"
        );
        let scale: f32 = x.iter().zip(&dy).map(|(a, b)| (a * b).abs()).sum::<f32>() + 1.0;
        for (k, (g, r)) in dw.iter().zip(&ref_dw).enumerate() {
            assert!(
                (g - r).abs() <= 1e-5 * scale,
                "{shape:?} per_channel={per_channel}: dw[{k}] {g} vs reference {r}"
            );
        }
    }

    #[test]
    fn prelu_split_kernels_equal_the_joint_backward() {
        for (n, c, spatial) in [(1, 1, 1), (2, 3, 5), (3, 4, 17), (2, 5, 64), (4, 7, 1)] {
            for per_channel in [true, false] {
                check_prelu(
                    ChannelShape { n, c, spatial },
                    per_channel,
                    (n * c + spatial) as u64,
                );
            }
        }
    }
}
