//! Batch norm folded into the weights and bias of the convolution or
//! linear layer before it, for inference.
//!
//! Inference-mode batch norm is a per-channel affine map,
//! `bn(v)[c] = (v − mean[c])·s[c] + β[c]` with `s[c] = γ[c]/√(var[c] + ε)`,
//! so after a layer whose output channel `o` is `w[o, …]·x + b[o]` it is the
//! same layer with `w'[o, …] = w[o, …]·s[o]` and
//! `b'[o] = (b[o] − mean[o])·s[o] + β[o]`. Generated inference code computes
//! `w'` and `b'` once (and again whenever the parameters change) and runs
//! the layer alone. Both functions work in `f64` and round once, so the
//! folded values are the nearest `f32` of the exact ones; they are
//! allocation-free and build without `std`.

/// The per-channel scale `γ[c]/√(var[c] + ε)`, in `f64`.
fn scale(gamma: f32, var: f32, eps: f64) -> f64 {
    gamma as f64 / libm::sqrt(var as f64 + eps)
}

/// `out[o, …] = w[o, …]·γ[o]/√(var[o] + ε)`: the weights `w` of a layer
/// with `gamma.len()` output channels (OIHW for a convolution, out × in for
/// a linear layer; each channel's values contiguous), scaled by the batch
/// norm after it.
///
/// # Panics
///
/// If the lengths disagree: `w` and `out` of one length, a multiple of the
/// channel count, and `gamma` and `var` one value per channel (a caller
/// bug).
pub fn fold_batch_norm_weight(w: &[f32], gamma: &[f32], var: &[f32], eps: f64, out: &mut [f32]) {
    let c = gamma.len();
    assert!(
        c > 0 && var.len() == c && w.len() == out.len() && w.len().is_multiple_of(c),
        "fold_batch_norm_weight: {} weights, {} outputs, {} γ, {} variances",
        w.len(),
        out.len(),
        c,
        var.len()
    );
    let per = w.len() / c;
    for (o, (wo, yo)) in w
        .chunks_exact(per)
        .zip(out.chunks_exact_mut(per))
        .enumerate()
    {
        let s = scale(gamma[o], var[o], eps);
        for (y, &x) in yo.iter_mut().zip(wo) {
            *y = (x as f64 * s) as f32;
        }
    }
}

/// `out[o] = (b[o] − mean[o])·γ[o]/√(var[o] + ε) + β[o]`: the bias of the
/// folded layer, with `b` the layer's own bias or zero when it has none.
///
/// # Panics
///
/// If any slice does not hold one value per channel (`out.len()` of them).
pub fn fold_batch_norm_bias(
    bias: Option<&[f32]>,
    gamma: &[f32],
    beta: &[f32],
    mean: &[f32],
    var: &[f32],
    eps: f64,
    out: &mut [f32],
) {
    let c = out.len();
    assert!(
        [gamma.len(), beta.len(), mean.len(), var.len()]
            .iter()
            .all(|&l| l == c)
            && bias.is_none_or(|b| b.len() == c),
        "fold_batch_norm_bias: {c} outputs, {} γ, {} β, {} means, {} variances, {:?} biases",
        gamma.len(),
        beta.len(),
        mean.len(),
        var.len(),
        bias.map(<[f32]>::len)
    );
    for (o, y) in out.iter_mut().enumerate() {
        let b = bias.map_or(0.0, |b| b[o] as f64);
        *y = ((b - mean[o] as f64) * scale(gamma[o], var[o], eps) + beta[o] as f64) as f32;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Folds `w` and `b` for the given statistics, runs the folded layer
    /// and the unfolded one followed by batch norm on `x` (a linear layer of
    /// `out` rows), and checks both agree within `1e-6` relative.
    fn check(out: usize, w: &[f32], b: Option<&[f32]>, bn: [&[f32]; 4], x: &[f32]) {
        let [gamma, beta, mean, var] = bn;
        let eps = 1e-5;
        let mut wf = vec![0.0; w.len()];
        let mut bf = vec![0.0; out];
        fold_batch_norm_weight(w, gamma, var, eps, &mut wf);
        fold_batch_norm_bias(b, gamma, beta, mean, var, eps, &mut bf);
        let inp = w.len() / out;
        for o in 0..out {
            let row =
                |w: &[f32]| -> f64 { (0..inp).map(|i| w[o * inp + i] as f64 * x[i] as f64).sum() };
            let v = row(w) + b.map_or(0.0, |b| b[o] as f64);
            let want = (v - mean[o] as f64) * gamma[o] as f64 / (var[o] as f64 + eps).sqrt()
                + beta[o] as f64;
            let got = row(&wf) + bf[o] as f64;
            assert!(
                (got - want).abs() <= 1e-6 * want.abs().max(1.0),
                "channel {o}: folded {got}, unfolded {want}"
            );
        }
    }

    #[test]
    fn folded_layer_equals_layer_then_batch_norm() {
        let w = [0.5, -1.0, 2.0, 0.25, 3.0, -0.75];
        let bn: [&[f32]; 4] = [&[1.5, -0.5], &[0.1, 2.0], &[0.3, -1.0], &[0.8, 4.0]];
        check(2, &w, Some(&[0.2, -0.4]), bn, &[1.0, -2.0, 0.5]);
        check(2, &w, None, bn, &[1.0, -2.0, 0.5]);
        check(
            3,
            &w,
            None,
            [&[2.0, 1.0, -1.0], &[0.0; 3], &[1.0; 3], &[0.0; 3]],
            &[3.0, 1.0],
        );
    }

    #[test]
    #[should_panic(expected = "fold_batch_norm_weight")]
    fn weight_length_not_a_multiple_of_channels() {
        fold_batch_norm_weight(&[1.0; 5], &[1.0; 2], &[1.0; 2], 1e-5, &mut [0.0; 5]);
    }
}
