//! Fast batch normalization over `[n, c, spatial]` tensors (1d: `[N, D]`
//! with `spatial = 1`; 2d: `[N, C, H, W]` with `spatial = H·W`): training
//! mode with batch statistics and a momentum update of the running
//! averages, inference mode with the running averages, and the backward of
//! both for the input, γ and β, plus a fused batch-norm + ReLU backward.
//!
//! Conventions are PyTorch's: the batch variance used to normalize is the
//! biased one (divided by `M = n·spatial`), the running variance is updated
//! with the unbiased one (divided by `M − 1`; by `M` when `M = 1`), and
//! `running = (1 − momentum)·running + momentum·batch`. Per-channel sums are
//! taken in blocks of [`SUM_BLOCK`] f32 values accumulated in f64, one task
//! per channel, in batch order, so they are accurate for large batches and
//! the same on any number of threads. The row layout (`spatial = 1`) has
//! its own loops: sums in f64 over rows for a block of channels at a time,
//! and per-channel coefficients computed once per block of rows. Gradients of γ and β are written, not
//! accumulated.

use super::activation::ChannelShape;
use super::parallel::{for_each_chunk_mut, for_each_chunk_pair_mut};
use super::softmax::sum_of;

/// Values summed in f32 before each partial sum joins the f64 total.
pub const SUM_BLOCK: usize = 256;

/// Σ f(chunk) over `SUM_BLOCK`-sized chunks of channel `ch`'s planes of
/// `a` (and the same planes of `b`), in f64, in batch order.
#[inline(always)]
fn channel_sum<F>(a: &[f32], b: &[f32], shape: ChannelShape, ch: usize, f: F) -> f64
where
    F: Fn(&[f32], &[f32]) -> f32,
{
    let s = shape.spatial;
    let mut total = 0.0f64;
    for n in 0..shape.n {
        let off = (n * shape.c + ch) * s;
        let (pa, pb) = (&a[off..off + s], &b[off..off + s]);
        for (ca, cb) in pa.chunks(SUM_BLOCK).zip(pb.chunks(SUM_BLOCK)) {
            total += f(ca, cb) as f64;
        }
    }
    total
}

/// Σ (a − ca)·(b − cb) with eight partial sums in a fixed order.
#[inline(always)]
fn centered_dot(a: &[f32], b: &[f32], ca: f32, cb: f32) -> f32 {
    let mut acc = [0.0f32; 8];
    let mut ia = a.chunks_exact(8);
    let mut ib = b.chunks_exact(8);
    for (xa, xb) in (&mut ia).zip(&mut ib) {
        for l in 0..8 {
            acc[l] += (xa[l] - ca) * (xb[l] - cb);
        }
    }
    let mut tail = 0.0f32;
    for (&u, &v) in ia.remainder().iter().zip(ib.remainder()) {
        tail += (u - ca) * (v - cb);
    }
    sum_of(&acc) + tail
}

/// Channels per task in the row layout (`spatial = 1`, `[N, D]`).
const CHANNEL_BLOCK: usize = 64;

/// Rows per task in the row layout.
const ROW_BLOCK: usize = 16;

/// Row layout (`spatial = 1`): for each channel `c`, two f64 sums over the
/// rows of `f(c, i) = (u, v)` (`i` the flat index), handed to
/// `finish(c, Σu, Σv)`, whose results are written to `out_a[c]`,
/// `out_b[c]`. One task per block of [`CHANNEL_BLOCK`] channels, rows in
/// order, so the sums vectorize across channels.
fn row_sums(
    shape: ChannelShape,
    out_a: &mut [f32],
    out_b: &mut [f32],
    f: impl Fn(usize, usize) -> (f64, f64) + Sync + Send,
    finish: impl Fn(usize, f64, f64) -> (f32, f32) + Sync + Send,
) {
    let work = shape.len() * 2;
    for_each_chunk_pair_mut(
        out_a,
        CHANNEL_BLOCK,
        out_b,
        CHANNEL_BLOCK,
        work,
        |blk, oa, ob| {
            let c0 = blk * CHANNEL_BLOCK;
            let w = oa.len();
            let (mut sa, mut sb) = ([0.0f64; CHANNEL_BLOCK], [0.0f64; CHANNEL_BLOCK]);
            for r in 0..shape.n {
                let base = r * shape.c + c0;
                for j in 0..w {
                    let (u, v) = f(c0 + j, base + j);
                    sa[j] += u;
                    sb[j] += v;
                }
            }
            for j in 0..w {
                (oa[j], ob[j]) = finish(c0 + j, sa[j], sb[j]);
            }
        },
    );
}

/// Row layout: `out[i] = f(coef(c), i)` for every element, with `coef`
/// evaluated once per channel per task of [`ROW_BLOCK`] rows.
fn row_apply(
    shape: ChannelShape,
    out: &mut [f32],
    coef: impl Fn(usize) -> [f32; 4] + Sync + Send,
    f: impl Fn([f32; 4], usize) -> f32 + Sync + Send,
) {
    let c = shape.c;
    for_each_chunk_mut(out, ROW_BLOCK * c, shape.len(), |t, oc| {
        for c0 in (0..c).step_by(CHANNEL_BLOCK) {
            let w = CHANNEL_BLOCK.min(c - c0);
            let mut k = [[0.0f32; 4]; CHANNEL_BLOCK];
            for j in 0..w {
                k[j] = coef(c0 + j);
            }
            for (ri, row) in oc.chunks_mut(c).enumerate() {
                let base = (t * ROW_BLOCK + ri) * c + c0;
                for j in 0..w {
                    row[c0 + j] = f(k[j], base + j);
                }
            }
        }
    });
}

/// Writes `y = (x − center[c])·scale[c] + shift[c]` for every plane, with
/// `(scale, center, shift) = a(c)` (the shared final step). Centring first
/// keeps the result accurate when `scale` is large (a tiny variance).
fn affine_per_channel(
    x: &[f32],
    y: &mut [f32],
    shape: ChannelShape,
    a: impl Fn(usize) -> (f32, f32, f32) + Sync + Send,
) {
    let s = shape.spatial;
    if s == 1 {
        let coef = |c| {
            let (scale, center, shift) = a(c);
            [scale, center, shift, 0.0]
        };
        row_apply(shape, y, coef, |k, i| (x[i] - k[1]) * k[0] + k[2]);
        return;
    }
    for_each_chunk_mut(y, s, shape.len(), |plane, yc| {
        let (scale, center, shift) = a(plane % shape.c);
        let xc = &x[plane * s..(plane + 1) * s];
        for (yv, &xv) in yc.iter_mut().zip(xc) {
            *yv = (xv - center) * scale + shift;
        }
    });
}

/// Asserts the callers' contract on tensor and per-channel lengths.
fn check(shape: ChannelShape, tensors: &[usize], channels: &[usize]) {
    assert!(
        tensors.iter().all(|&l| l == shape.len()),
        "batch norm: tensor lengths"
    );
    assert!(
        channels.iter().all(|&l| l == shape.c),
        "batch norm: per-channel lengths"
    );
}

/// Batch norm in inference mode:
/// `y = γ·(x − running_mean)/√(running_var + eps) + β`.
pub fn batch_norm_inference(
    x: &[f32],
    y: &mut [f32],
    shape: ChannelShape,
    gamma: &[f32],
    beta: &[f32],
    running_mean: &[f32],
    running_var: &[f32],
    eps: f32,
) {
    check(
        shape,
        &[x.len(), y.len()],
        &[
            gamma.len(),
            beta.len(),
            running_mean.len(),
            running_var.len(),
        ],
    );
    if shape.is_empty() {
        return;
    }
    affine_per_channel(x, y, shape, |c| {
        let a = gamma[c] / libm::sqrtf(running_var[c] + eps);
        (a, running_mean[c], beta[c])
    });
}

/// The batch mean and biased variance of every channel of `x` (`m =
/// n·spatial > 0` values each), written to `mean` and `var`: the statistics
/// both [`batch_norm_train_forward`] and [`batch_norm_batch_stats`] use.
fn batch_mean_var(x: &[f32], shape: ChannelShape, mean: &mut [f32], var: &mut [f32]) {
    let m = shape.n * shape.spatial;
    if shape.spatial == 1 {
        // Σx and Σx² in f64 in one pass (f32 products are exact in f64).
        let mf = m as f64;
        row_sums(
            shape,
            mean,
            var,
            |_, i| (x[i] as f64, x[i] as f64 * x[i] as f64),
            |_, s1, s2| {
                let mu = s1 / mf;
                (mu as f32, (s2 / mf - mu * mu).max(0.0) as f32)
            },
        );
    } else {
        for_each_chunk_pair_mut(mean, 1, var, 1, shape.len() * 2, |c, mc, vc| {
            let mu = channel_sum(x, x, shape, c, |a, _| sum_of(a)) / m as f64;
            let mu32 = mu as f32;
            let var = channel_sum(x, x, shape, c, |a, _| centered_dot(a, a, mu32, mu32)) / m as f64;
            mc[0] = mu32;
            vc[0] = var as f32;
        });
    }
}

/// Batch norm's batch statistics in training mode, exactly as
/// [`batch_norm_train_forward`] computes them: `mean[c]` and
/// `inv_std[c] = 1/√(var + eps)` (biased variance). Nothing is written for
/// an empty batch.
pub fn batch_norm_batch_stats(
    x: &[f32],
    shape: ChannelShape,
    eps: f32,
    mean: &mut [f32],
    inv_std: &mut [f32],
) {
    check(shape, &[x.len()], &[mean.len(), inv_std.len()]);
    if shape.n * shape.spatial == 0 {
        return;
    }
    batch_mean_var(x, shape, mean, inv_std);
    for v in inv_std.iter_mut() {
        *v = (1.0 / libm::sqrt(*v as f64 + eps as f64)) as f32;
    }
}

/// Batch norm in training mode: normalizes with the batch mean and biased
/// variance, writes them as `save_mean` and `save_inv_std = 1/√(var + eps)`
/// for the backward, and updates `running_mean` and `running_var` with
/// `momentum` (the running variance from the unbiased batch variance).
pub fn batch_norm_train_forward(
    x: &[f32],
    y: &mut [f32],
    shape: ChannelShape,
    gamma: &[f32],
    beta: &[f32],
    eps: f32,
    momentum: f32,
    running_mean: &mut [f32],
    running_var: &mut [f32],
    save_mean: &mut [f32],
    save_inv_std: &mut [f32],
) {
    check(
        shape,
        &[x.len(), y.len()],
        &[
            gamma.len(),
            beta.len(),
            running_mean.len(),
            running_var.len(),
            save_mean.len(),
            save_inv_std.len(),
        ],
    );
    let m = shape.n * shape.spatial;
    if m == 0 {
        return;
    }
    // The biased variance goes into `save_inv_std` for now; it becomes
    // 1/√(var + eps) below, once the running variance has been updated.
    batch_mean_var(x, shape, save_mean, save_inv_std);
    for c in 0..shape.c {
        let var = save_inv_std[c] as f64;
        let unbiased = if m > 1 {
            var * m as f64 / (m - 1) as f64
        } else {
            var
        };
        running_mean[c] = (1.0 - momentum) * running_mean[c] + momentum * save_mean[c];
        running_var[c] = (1.0 - momentum) * running_var[c] + momentum * unbiased as f32;
        save_inv_std[c] = (1.0 / libm::sqrt(var + eps as f64)) as f32;
    }
    affine_per_channel(x, y, shape, |c| {
        let a = gamma[c] * save_inv_std[c];
        (a, save_mean[c], beta[c])
    });
}

/// Batch norm backward (training mode) from the forward's input `x` and
/// saved statistics: writes `dx`, `dgamma = Σ dy·x̂` and `dbeta = Σ dy`,
/// with `dx = γ·inv_std·(dy − dbeta/M − x̂·dgamma/M)`.
pub fn batch_norm_backward(
    x: &[f32],
    dy: &[f32],
    dx: &mut [f32],
    dgamma: &mut [f32],
    dbeta: &mut [f32],
    shape: ChannelShape,
    gamma: &[f32],
    save_mean: &[f32],
    save_inv_std: &[f32],
) {
    backward_masked(
        x,
        dy,
        None,
        dx,
        dgamma,
        dbeta,
        shape,
        gamma,
        save_mean,
        save_inv_std,
    );
}

/// The fused backward of batch norm followed by ReLU: as
/// [`batch_norm_backward`] with `dy` zeroed wherever the ReLU's output `y`
/// is not positive, without materializing the masked gradient.
pub fn batch_norm_relu_backward(
    x: &[f32],
    y: &[f32],
    dy: &[f32],
    dx: &mut [f32],
    dgamma: &mut [f32],
    dbeta: &mut [f32],
    shape: ChannelShape,
    gamma: &[f32],
    save_mean: &[f32],
    save_inv_std: &[f32],
) {
    assert_eq!(y.len(), shape.len(), "batch norm + relu: output length");
    backward_masked(
        x,
        dy,
        Some(y),
        dx,
        dgamma,
        dbeta,
        shape,
        gamma,
        save_mean,
        save_inv_std,
    );
}

/// `dy` where the mask (a ReLU output) is positive, else 0.
#[inline(always)]
fn masked(g: f32, mask: f32) -> f32 {
    if mask > 0.0 { g } else { 0.0 }
}

/// The body of both training-mode backwards; `mask` is the ReLU output.
fn backward_masked(
    x: &[f32],
    dy: &[f32],
    mask: Option<&[f32]>,
    dx: &mut [f32],
    dgamma: &mut [f32],
    dbeta: &mut [f32],
    shape: ChannelShape,
    gamma: &[f32],
    save_mean: &[f32],
    save_inv_std: &[f32],
) {
    batch_norm_param_grads(x, dy, mask, shape, save_mean, save_inv_std, dgamma, dbeta);
    batch_norm_input_grad(
        x,
        dy,
        mask,
        dx,
        shape,
        gamma,
        save_mean,
        save_inv_std,
        dgamma,
        dbeta,
    );
}

/// Batch norm's γ and β gradients in training mode, in one pass over `x`
/// and `dy`: `dgamma = Σ g·x̂`, `dbeta = Σ g` per channel, where `g` is
/// `dy`, or with a `mask` (the output of a ReLU of the batch norm) `dy`
/// where the mask is positive and 0 elsewhere. The first half of
/// [`batch_norm_backward`] and [`batch_norm_relu_backward`].
pub fn batch_norm_param_grads(
    x: &[f32],
    dy: &[f32],
    mask: Option<&[f32]>,
    shape: ChannelShape,
    save_mean: &[f32],
    save_inv_std: &[f32],
    dgamma: &mut [f32],
    dbeta: &mut [f32],
) {
    check(
        shape,
        &[x.len(), dy.len(), mask.map_or(shape.len(), <[f32]>::len)],
        &[
            dgamma.len(),
            dbeta.len(),
            save_mean.len(),
            save_inv_std.len(),
        ],
    );
    let m = shape.n * shape.spatial;
    if m == 0 {
        dgamma.fill(0.0);
        dbeta.fill(0.0);
        return;
    }
    let s = shape.spatial;
    if s == 1 {
        let g_at = |i: usize| match mask {
            None => dy[i],
            Some(y) => masked(dy[i], y[i]),
        };
        row_sums(
            shape,
            dgamma,
            dbeta,
            |c, i| {
                let g = g_at(i) as f64;
                (g * (x[i] - save_mean[c]) as f64, g)
            },
            |c, s_dy_xc, s_dy| ((s_dy_xc * save_inv_std[c] as f64) as f32, s_dy as f32),
        );
        return;
    }
    for_each_chunk_pair_mut(dgamma, 1, dbeta, 1, shape.len() * 2, |c, dg, db| {
        let mu = save_mean[c];
        let (sum_dy, sum_dy_xc) = match mask {
            None => (
                channel_sum(dy, dy, shape, c, |g, _| sum_of(g)),
                channel_sum(x, dy, shape, c, |a, g| centered_dot(a, g, mu, 0.0)),
            ),
            Some(y) => {
                let mut sd = 0.0f64;
                let mut sdx = 0.0f64;
                for n in 0..shape.n {
                    let off = (n * shape.c + c) * s;
                    for k in (0..s).step_by(SUM_BLOCK) {
                        let end = (k + SUM_BLOCK).min(s);
                        let (mut a, mut b) = (0.0f32, 0.0f32);
                        for i in off + k..off + end {
                            let g = masked(dy[i], y[i]);
                            a += g;
                            b += g * (x[i] - mu);
                        }
                        sd += a as f64;
                        sdx += b as f64;
                    }
                }
                (sd, sdx)
            }
        };
        db[0] = sum_dy as f32;
        dg[0] = (sum_dy_xc * save_inv_std[c] as f64) as f32;
    });
}

/// Batch norm's input gradient in training mode from the γ and β gradients
/// of [`batch_norm_param_grads`] (same `mask`): `dx = γ·inv_std·(g −
/// dbeta/M − x̂·dgamma/M)`, one pass over `x`, `dy` (and the mask). The
/// second half of [`batch_norm_backward`] and [`batch_norm_relu_backward`].
pub fn batch_norm_input_grad(
    x: &[f32],
    dy: &[f32],
    mask: Option<&[f32]>,
    dx: &mut [f32],
    shape: ChannelShape,
    gamma: &[f32],
    save_mean: &[f32],
    save_inv_std: &[f32],
    dgamma: &[f32],
    dbeta: &[f32],
) {
    check(
        shape,
        &[
            x.len(),
            dy.len(),
            dx.len(),
            mask.map_or(shape.len(), <[f32]>::len),
        ],
        &[
            dgamma.len(),
            dbeta.len(),
            gamma.len(),
            save_mean.len(),
            save_inv_std.len(),
        ],
    );
    let m = shape.n * shape.spatial;
    if m == 0 {
        return;
    }
    let s = shape.spatial;
    let inv_m = 1.0 / m as f32;
    if s == 1 {
        let g_at = |i: usize| match mask {
            None => dy[i],
            Some(y) => masked(dy[i], y[i]),
        };
        row_apply(
            shape,
            dx,
            |c| {
                let inv = save_inv_std[c];
                [
                    gamma[c] * inv,
                    dbeta[c] * inv_m,
                    dgamma[c] * inv_m * inv,
                    save_mean[c],
                ]
            },
            // k[2] folds inv into mean(dy·x̂), so x̂·k[2] = (x − μ)·k[2].
            |k, i| k[0] * (g_at(i) - k[1] - (x[i] - k[3]) * k[2]),
        );
        return;
    }
    for_each_chunk_mut(dx, s, shape.len(), |plane, dc| {
        let c = plane % shape.c;
        let (mu, inv) = (save_mean[c], save_inv_std[c]);
        let k = gamma[c] * inv;
        let (mean_dy, mean_dy_xhat) = (dbeta[c] * inv_m, dgamma[c] * inv_m);
        let off = plane * s;
        let (xc, gc) = (&x[off..off + s], &dy[off..off + s]);
        match mask {
            None => {
                for ((d, &xv), &g) in dc.iter_mut().zip(xc).zip(gc) {
                    let xhat = (xv - mu) * inv;
                    *d = k * (g - mean_dy - xhat * mean_dy_xhat);
                }
            }
            Some(y) => {
                let yc = &y[off..off + s];
                for (((d, &xv), &g), &yv) in dc.iter_mut().zip(xc).zip(gc).zip(yc) {
                    let xhat = (xv - mu) * inv;
                    *d = k * (masked(g, yv) - mean_dy - xhat * mean_dy_xhat);
                }
            }
        }
    });
}

/// Batch norm backward in inference mode (frozen statistics, as when
/// fine-tuning with batch norm fixed): `dx = γ·dy/√(running_var + eps)`,
/// `dgamma = Σ dy·x̂` with the running statistics, `dbeta = Σ dy`.
pub fn batch_norm_inference_backward(
    x: &[f32],
    dy: &[f32],
    dx: &mut [f32],
    dgamma: &mut [f32],
    dbeta: &mut [f32],
    shape: ChannelShape,
    gamma: &[f32],
    running_mean: &[f32],
    running_var: &[f32],
    eps: f32,
) {
    check(
        shape,
        &[x.len(), dy.len(), dx.len()],
        &[
            dgamma.len(),
            dbeta.len(),
            gamma.len(),
            running_mean.len(),
            running_var.len(),
        ],
    );
    if shape.is_empty() {
        dgamma.fill(0.0);
        dbeta.fill(0.0);
        return;
    }
    let inv_of = |c: usize| 1.0 / libm::sqrt(running_var[c] as f64 + eps as f64);
    if shape.spatial == 1 {
        row_sums(
            shape,
            dgamma,
            dbeta,
            |c, i| (dy[i] as f64 * (x[i] - running_mean[c]) as f64, dy[i] as f64),
            |c, s_dy_xc, s_dy| ((s_dy_xc * inv_of(c)) as f32, s_dy as f32),
        );
    } else {
        for_each_chunk_pair_mut(dgamma, 1, dbeta, 1, shape.len() * 2, |c, dg, db| {
            let mu = running_mean[c];
            let inv = inv_of(c);
            db[0] = channel_sum(dy, dy, shape, c, |g, _| sum_of(g)) as f32;
            let centered = channel_sum(x, dy, shape, c, |a, g| centered_dot(a, g, mu, 0.0));
            dg[0] = (centered * inv) as f32;
        });
    }
    affine_per_channel(dy, dx, shape, |c| {
        (gamma[c] / libm::sqrtf(running_var[c] + eps), 0.0, 0.0)
    });
}

#[cfg(all(test, feature = "std"))]
mod tests {
    use super::*;

    fn data(len: usize, seed: u64) -> Vec<f32> {
        let mut r = crate::rng::Rng::new(seed);
        (0..len).map(|_| r.next_f32() * 2.0 - 1.0).collect()
    }

    /// The split kernels the generated training code calls give exactly
    /// what the joint kernels give: the statistics of the training forward,
    /// and `batch_norm_backward`'s (or, with a mask,
    /// `batch_norm_relu_backward`'s) three gradients.
    fn check(shape: ChannelShape, seed: u64) {
        let c = shape.c;
        let x = data(shape.len(), seed);
        let dy = data(shape.len(), seed + 1);
        let gamma = data(c, seed + 2);
        let beta = data(c, seed + 3);
        let mut y = vec![0.0; x.len()];
        let (mut rm, mut rv) = (vec![0.0; c], vec![1.0; c]);
        let (mut mean, mut inv) = (vec![0.0; c], vec![0.0; c]);
        batch_norm_train_forward(
            &x, &mut y, shape, &gamma, &beta, 1e-5, 0.1, &mut rm, &mut rv, &mut mean, &mut inv,
        );
        let (mut m2, mut i2) = (vec![7.0; c], vec![7.0; c]);
        batch_norm_batch_stats(&x, shape, 1e-5, &mut m2, &mut i2);
        assert_eq!((&m2, &i2), (&mean, &inv), "{shape:?}: statistics");
        let relu: Vec<f32> = y.iter().map(|v| v.max(0.0)).collect();
        for mask in [None, Some(&relu[..])] {
            let (mut dx, mut dg, mut db) = (vec![0.0; x.len()], vec![0.0; c], vec![0.0; c]);
            match mask {
                None => batch_norm_backward(
                    &x, &dy, &mut dx, &mut dg, &mut db, shape, &gamma, &mean, &inv,
                ),
                Some(r) => batch_norm_relu_backward(
                    &x, r, &dy, &mut dx, &mut dg, &mut db, shape, &gamma, &mean, &inv,
                ),
            }
            let (mut sdx, mut sdg, mut sdb) = (vec![1.0; x.len()], vec![1.0; c], vec![1.0; c]);
            batch_norm_param_grads(&x, &dy, mask, shape, &mean, &inv, &mut sdg, &mut sdb);
            batch_norm_input_grad(
                &x, &dy, mask, &mut sdx, shape, &gamma, &mean, &inv, &sdg, &sdb,
            );
            let what = format!("{shape:?}, mask {}", mask.is_some());
            assert_eq!((&sdg, &sdb), (&dg, &db), "{what}: dγ, dβ");
            assert_eq!(sdx, dx, "{what}: dx");
        }
    }

    #[test]
    fn split_training_kernels_equal_the_joint_ones() {
        for (k, (n, c, spatial)) in [(1, 1, 1), (2, 3, 5), (3, 4, 300), (5, 70, 1), (2, 2, 1)]
            .into_iter()
            .enumerate()
        {
            check(ChannelShape { n, c, spatial }, 10 * k as u64);
        }
    }
}
