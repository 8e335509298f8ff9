//! Reference batch normalization over `[n, c, spatial]`: training forward
//! (batch statistics, running-average update), inference forward, and the
//! backward of both for the input, γ and β, with the conventions of
//! [`crate::kernels::norm`], all in f64 from the textbook formulas.

use super::Real;
use crate::kernels::activation::ChannelShape;

/// The values of channel `c`, in batch order.
fn channel<T: Real>(
    x: &[T],
    shape: ChannelShape,
    c: usize,
) -> impl Iterator<Item = (usize, f64)> + '_ {
    (0..shape.n).flat_map(move |n| {
        (0..shape.spatial).map(move |s| {
            let i = (n * shape.c + c) * shape.spatial + s;
            (i, x[i].to_f64())
        })
    })
}

/// Training forward: batch mean and biased variance normalize; the
/// statistics are returned as `(mean, inv_std)` per channel and the running
/// averages updated with `momentum` (unbiased variance).
pub fn batch_norm_train_forward<T: Real>(
    x: &[T],
    y: &mut [T],
    shape: ChannelShape,
    gamma: &[T],
    beta: &[T],
    eps: f64,
    momentum: f64,
    running_mean: &mut [T],
    running_var: &mut [T],
) -> (Vec<T>, Vec<T>) {
    let m = (shape.n * shape.spatial) as f64;
    let (mut means, mut invs) = (Vec::new(), Vec::new());
    for c in 0..shape.c {
        let mean = channel(x, shape, c).map(|(_, v)| v).sum::<f64>() / m;
        let var = channel(x, shape, c)
            .map(|(_, v)| (v - mean) * (v - mean))
            .sum::<f64>()
            / m;
        let inv = 1.0 / (var + eps).sqrt();
        for (i, v) in channel(x, shape, c) {
            y[i] = T::from_f64(gamma[c].to_f64() * (v - mean) * inv + beta[c].to_f64());
        }
        let unbiased = if m > 1.0 { var * m / (m - 1.0) } else { var };
        running_mean[c] =
            T::from_f64((1.0 - momentum) * running_mean[c].to_f64() + momentum * mean);
        running_var[c] =
            T::from_f64((1.0 - momentum) * running_var[c].to_f64() + momentum * unbiased);
        means.push(T::from_f64(mean));
        invs.push(T::from_f64(inv));
    }
    (means, invs)
}

/// Inference forward with the running statistics.
pub fn batch_norm_inference<T: Real>(
    x: &[T],
    y: &mut [T],
    shape: ChannelShape,
    gamma: &[T],
    beta: &[T],
    running_mean: &[T],
    running_var: &[T],
    eps: f64,
) {
    for c in 0..shape.c {
        let inv = 1.0 / (running_var[c].to_f64() + eps).sqrt();
        for (i, v) in channel(x, shape, c) {
            y[i] = T::from_f64(
                gamma[c].to_f64() * (v - running_mean[c].to_f64()) * inv + beta[c].to_f64(),
            );
        }
    }
}

/// Training backward: writes `dx`, `dgamma`, `dbeta` from the batch
/// statistics `(mean, inv_std)` the forward returned.
pub fn batch_norm_backward<T: Real>(
    x: &[T],
    dy: &[T],
    dx: &mut [T],
    dgamma: &mut [T],
    dbeta: &mut [T],
    shape: ChannelShape,
    gamma: &[T],
    mean: &[T],
    inv_std: &[T],
) {
    let m = (shape.n * shape.spatial) as f64;
    for c in 0..shape.c {
        let (mu, inv) = (mean[c].to_f64(), inv_std[c].to_f64());
        let xhat = |v: f64| (v - mu) * inv;
        let sum_dy: f64 = channel(dy, shape, c).map(|(_, g)| g).sum();
        let sum_dy_xhat: f64 = channel(x, shape, c)
            .map(|(i, v)| dy[i].to_f64() * xhat(v))
            .sum();
        dbeta[c] = T::from_f64(sum_dy);
        dgamma[c] = T::from_f64(sum_dy_xhat);
        for (i, v) in channel(x, shape, c) {
            let g = dy[i].to_f64();
            dx[i] =
                T::from_f64(gamma[c].to_f64() * inv * (g - sum_dy / m - xhat(v) * sum_dy_xhat / m));
        }
    }
}

/// Inference backward (frozen statistics).
pub fn batch_norm_inference_backward<T: Real>(
    x: &[T],
    dy: &[T],
    dx: &mut [T],
    dgamma: &mut [T],
    dbeta: &mut [T],
    shape: ChannelShape,
    gamma: &[T],
    running_mean: &[T],
    running_var: &[T],
    eps: f64,
) {
    for c in 0..shape.c {
        let inv = 1.0 / (running_var[c].to_f64() + eps).sqrt();
        let mu = running_mean[c].to_f64();
        let mut sum_dy = 0.0;
        let mut sum_dy_xhat = 0.0;
        for (i, v) in channel(x, shape, c) {
            let g = dy[i].to_f64();
            sum_dy += g;
            sum_dy_xhat += g * (v - mu) * inv;
            dx[i] = T::from_f64(gamma[c].to_f64() * inv * g);
        }
        dbeta[c] = T::from_f64(sum_dy);
        dgamma[c] = T::from_f64(sum_dy_xhat);
    }
}
