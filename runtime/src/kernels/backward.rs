//! Backward kernels that recompute what they need from the forward input.
//!
//! The compiler's IR gives every node exactly one output, so a gradient op
//! that needs forward state (a max pool's argmax, batch norm's batch
//! statistics) reads the forward input again rather than a second output.
//! These kernels are the runtime side of that choice: each recomputes its
//! state in one pass, then applies the same rule as its counterpart in
//! `pool`, `norm` or `elementwise`. Bias gradients (a sum per channel) and
//! the slice that concatenation's backward needs live here too. All are
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
/// ties), padding never wins. `dx` is overwritten.
pub fn max_pool2d_backward_from_input(x: &[f32], dy: &[f32], dx: &mut [f32], g: Pool2d) {
    assert_eq!(x.len(), g.input_len(), "max_pool2d backward: input length");
    assert_eq!(
        dy.len(),
        g.output_len(),
        "max_pool2d backward: gradient length"
    );
    assert_eq!(
        dx.len(),
        g.input_len(),
        "max_pool2d backward: output length"
    );
    let (oh, ow) = (g.out_h(), g.out_w());
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

/// Batch mean and `1/√(var + eps)` per channel of `x` (biased variance),
/// as batch norm's training forward computes them.
pub fn batch_norm_stats(
    x: &[f32],
    shape: ChannelShape,
    eps: f32,
    mean: &mut [f32],
    inv_std: &mut [f32],
) {
    assert_eq!(x.len(), shape.len(), "batch_norm_stats: input length");
    assert!(
        mean.len() == shape.c && inv_std.len() == shape.c,
        "batch_norm_stats: per-channel lengths"
    );
    let (c, s) = (shape.c, shape.spatial);
    let m = (shape.n * s).max(1) as f64;
    for ch in 0..c {
        let rows = (0..shape.n).map(|b| &x[(b * c + ch) * s..(b * c + ch + 1) * s]);
        let mu = rows.clone().flatten().map(|&v| v as f64).sum::<f64>() / m;
        let var = rows
            .flatten()
            .map(|&v| {
                let d = v as f64 - mu;
                d * d
            })
            .sum::<f64>()
            / m;
        mean[ch] = mu as f32;
        inv_std[ch] = (1.0 / (var + eps as f64).sqrt()) as f32;
    }
}

/// Batch norm's γ gradient, `dγ[c] = Σ dy·(x − mean[c])·inv_std[c]`, with
/// the statistics of [`batch_norm_stats`].
pub fn batch_norm_weight_grad(
    x: &[f32],
    dy: &[f32],
    shape: ChannelShape,
    mean: &[f32],
    inv_std: &[f32],
    dgamma: &mut [f32],
) {
    assert!(
        x.len() == shape.len() && dy.len() == shape.len(),
        "batch_norm_weight_grad: tensor lengths"
    );
    assert_eq!(
        dgamma.len(),
        shape.c,
        "batch_norm_weight_grad: output length"
    );
    let (c, s) = (shape.c, shape.spatial);
    for_each_chunk_mut(dgamma, 1, shape.len(), |ch, o| {
        let (mu, inv) = (mean[ch], inv_std[ch]);
        let mut acc = 0.0f64;
        for b in 0..shape.n {
            let r = (b * c + ch) * s..(b * c + ch + 1) * s;
            acc += x[r.clone()]
                .iter()
                .zip(&dy[r])
                .map(|(&xv, &g)| (g * (xv - mu) * inv) as f64)
                .sum::<f64>();
        }
        o[0] = acc as f32;
    });
}

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
        for (k, s, p, h) in [(2, 2, 0, 8), (3, 2, 1, 7), (3, 1, 1, 5), (2, 1, 0, 3)] {
            let g = Pool2d::square(2, 3, h, h, k, s, p);
            let x = data(g.input_len(), 1);
            let dy = data(g.output_len(), 2);
            let mut y = vec![0.0; g.output_len()];
            let mut arg = vec![0u32; g.output_len()];
            rpool::max_pool2d_forward(&x, &mut y, &mut arg, g);
            let mut want = vec![0.0; g.input_len()];
            rpool::max_pool2d_backward(&dy, &arg, &mut want, g);
            let mut got = vec![1.0; g.input_len()];
            max_pool2d_backward_from_input(&x, &dy, &mut got, g);
            assert_eq!(got, want, "k={k} s={s} p={p} h={h}");
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

    #[test]
    fn batch_norm_weight_grad_matches_finite_differences_of_the_normalized_sum() {
        // dγ[c] = ∂/∂γ Σ dy·(γ x̂ + β) = Σ dy·x̂.
        let shape = ChannelShape {
            n: 3,
            c: 2,
            spatial: 4,
        };
        let x = data(shape.len(), 3);
        let dy = data(shape.len(), 4);
        let (mut mean, mut inv) = (vec![0.0; 2], vec![0.0; 2]);
        batch_norm_stats(&x, shape, 1e-5, &mut mean, &mut inv);
        let mut dg = vec![0.0; 2];
        batch_norm_weight_grad(&x, &dy, shape, &mean, &inv, &mut dg);
        for c in 0..2 {
            let mut want = 0.0f64;
            for b in 0..3 {
                for s in 0..4 {
                    let i = (b * 2 + c) * 4 + s;
                    want += dy[i] as f64 * ((x[i] - mean[c]) * inv[c]) as f64;
                }
            }
            assert!((dg[c] as f64 - want).abs() < 1e-5, "{dg:?} vs {want}");
        }
        // The statistics normalize each channel to mean 0, variance ~1.
        for c in 0..2 {
            let xs: Vec<f64> = (0..3)
                .flat_map(|b| (0..4).map(move |s| (b * 2 + c) * 4 + s))
                .map(|i| ((x[i] - mean[c]) * inv[c]) as f64)
                .collect();
            let m = xs.iter().sum::<f64>() / 12.0;
            let v = xs.iter().map(|a| a * a).sum::<f64>() / 12.0;
            assert!(m.abs() < 1e-5 && (v - 1.0).abs() < 1e-3, "{m} {v}");
        }
    }
}
