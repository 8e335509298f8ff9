//! Plain-loop references for the ops the runtime has no reference of yet
//! (`runtime/src/reference/norm.rs` and `lrn.rs` are still empty): batch
//! norm and local response normalization, forward and backward, f64
//! accumulation. When the runtime's references land, the interpreter should
//! call them instead and these should go.
//!
//! Layout: `[n, c, spatial]`, the channel axis in the middle.

use kiln_runtime::reference::Real;

/// A tensor seen as `[n, c, spatial]`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Ncs {
    /// Batch size.
    pub n: usize,
    /// Channels.
    pub c: usize,
    /// Values per channel per example.
    pub s: usize,
}

impl Ncs {
    fn at(&self, n: usize, c: usize, s: usize) -> usize {
        (n * self.c + c) * self.s + s
    }

    /// The number of elements.
    pub fn len(&self) -> usize {
        self.n * self.c * self.s
    }

    /// Whether there are no elements.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// Per-channel batch mean and biased variance over `n` and `spatial`.
pub fn batch_stats<T: Real>(x: &[T], g: Ncs) -> (Vec<f64>, Vec<f64>) {
    let m = (g.n * g.s) as f64;
    let mut mean = vec![0.0; g.c];
    let mut var = vec![0.0; g.c];
    for c in 0..g.c {
        let mut total = 0.0;
        for n in 0..g.n {
            for s in 0..g.s {
                total += x[g.at(n, c, s)].to_f64();
            }
        }
        mean[c] = total / m;
        let mut sq = 0.0;
        for n in 0..g.n {
            for s in 0..g.s {
                let d = x[g.at(n, c, s)].to_f64() - mean[c];
                sq += d * d;
            }
        }
        var[c] = sq / m;
    }
    (mean, var)
}

/// `y = γ (x − μ)/√(σ² + eps) + β` with the given per-channel statistics.
pub fn batch_norm_apply<T: Real>(
    x: &[T],
    g: Ncs,
    mean: &[f64],
    var: &[f64],
    gamma: &[T],
    beta: &[T],
    eps: f64,
) -> Vec<T> {
    let mut y = vec![T::ZERO; g.len()];
    for c in 0..g.c {
        let inv = 1.0 / (var[c] + eps).sqrt();
        for n in 0..g.n {
            for s in 0..g.s {
                let i = g.at(n, c, s);
                y[i] = T::from_f64(
                    gamma[c].to_f64() * (x[i].to_f64() - mean[c]) * inv + beta[c].to_f64(),
                );
            }
        }
    }
    y
}

/// The normalized input `x̂` and `1/σ` per channel from batch statistics.
fn normalized<T: Real>(x: &[T], g: Ncs, eps: f64) -> (Vec<f64>, Vec<f64>) {
    let (mean, var) = batch_stats(x, g);
    let inv: Vec<f64> = var.iter().map(|v| 1.0 / (v + eps).sqrt()).collect();
    let mut xh = vec![0.0; g.len()];
    for n in 0..g.n {
        for c in 0..g.c {
            for s in 0..g.s {
                let i = g.at(n, c, s);
                xh[i] = (x[i].to_f64() - mean[c]) * inv[c];
            }
        }
    }
    (xh, inv)
}

/// Batch norm's input gradient in training mode:
/// `dx = γ/σ · (dy − mean(dy) − x̂ · mean(dy ⊙ x̂))` per channel.
pub fn batch_norm_backward_data<T: Real>(
    x: &[T],
    dy: &[T],
    gamma: &[T],
    g: Ncs,
    eps: f64,
) -> Vec<T> {
    let (xh, inv) = normalized(x, g, eps);
    let m = (g.n * g.s) as f64;
    let mut dx = vec![T::ZERO; g.len()];
    for c in 0..g.c {
        let (mut sdy, mut sdyx) = (0.0, 0.0);
        for n in 0..g.n {
            for s in 0..g.s {
                let i = g.at(n, c, s);
                sdy += dy[i].to_f64();
                sdyx += dy[i].to_f64() * xh[i];
            }
        }
        let k = gamma[c].to_f64() * inv[c];
        for n in 0..g.n {
            for s in 0..g.s {
                let i = g.at(n, c, s);
                dx[i] = T::from_f64(k * (dy[i].to_f64() - sdy / m - xh[i] * sdyx / m));
            }
        }
    }
    dx
}

/// Batch norm's γ gradient: `Σ dy ⊙ x̂` per channel.
pub fn batch_norm_backward_weight<T: Real>(x: &[T], dy: &[T], g: Ncs, eps: f64) -> Vec<T> {
    let (xh, _) = normalized(x, g, eps);
    let mut dw = vec![0.0; g.c];
    for n in 0..g.n {
        for c in 0..g.c {
            for s in 0..g.s {
                let i = g.at(n, c, s);
                dw[c] += dy[i].to_f64() * xh[i];
            }
        }
    }
    dw.into_iter().map(T::from_f64).collect()
}

/// The attributes of LRN.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct LrnParams {
    /// The window size in channels.
    pub n: usize,
    /// Scale.
    pub alpha: f64,
    /// Exponent.
    pub beta: f64,
    /// Additive constant.
    pub k: f64,
}

impl LrnParams {
    /// The channels `[lo, hi]` in the window of channel `c` of `cs`: from
    /// `c − ⌊n/2⌋` to `c + ⌊(n − 1)/2⌋`, clipped (PyTorch's
    /// `LocalResponseNorm`).
    fn window(&self, c: usize, cs: usize) -> (usize, usize) {
        let lo = c.saturating_sub(self.n / 2);
        let hi = (c + (self.n.max(1) - 1) / 2).min(cs - 1);
        (lo, hi)
    }

    /// `d = k + α/n · Σ_window x²` for every element.
    fn denominators<T: Real>(&self, x: &[T], g: Ncs) -> Vec<f64> {
        let mut d = vec![0.0; g.len()];
        for n in 0..g.n {
            for c in 0..g.c {
                let (lo, hi) = self.window(c, g.c);
                for s in 0..g.s {
                    let sum: f64 = (lo..=hi)
                        .map(|j| {
                            let v = x[g.at(n, j, s)].to_f64();
                            v * v
                        })
                        .sum();
                    d[g.at(n, c, s)] = self.k + self.alpha / self.n as f64 * sum;
                }
            }
        }
        d
    }
}

/// LRN across channels: `y = x / (k + α/n · Σ_window x²)^β`.
pub fn lrn_forward<T: Real>(x: &[T], g: Ncs, p: LrnParams) -> Vec<T> {
    let d = p.denominators(x, g);
    x.iter()
        .zip(&d)
        .map(|(v, d)| T::from_f64(v.to_f64() * d.powf(-p.beta)))
        .collect()
}

/// LRN's input gradient:
/// `dx_j = dy_j d_j^−β − (2αβ/n) x_j Σ_{c ∋ j} dy_c x_c d_c^(−β−1)`.
pub fn lrn_backward<T: Real>(x: &[T], dy: &[T], g: Ncs, p: LrnParams) -> Vec<T> {
    let d = p.denominators(x, g);
    let coef = 2.0 * p.alpha * p.beta / p.n as f64;
    let mut dx = vec![T::ZERO; g.len()];
    for n in 0..g.n {
        for j in 0..g.c {
            // The channels whose window holds j.
            let lo = j.saturating_sub((p.n.max(1) - 1) / 2);
            let hi = (j + p.n / 2).min(g.c - 1);
            for s in 0..g.s {
                let ij = g.at(n, j, s);
                let mut cross = 0.0;
                for c in lo..=hi {
                    let ic = g.at(n, c, s);
                    cross += dy[ic].to_f64() * x[ic].to_f64() * d[ic].powf(-p.beta - 1.0);
                }
                dx[ij] = T::from_f64(
                    dy[ij].to_f64() * d[ij].powf(-p.beta) - coef * x[ij].to_f64() * cross,
                );
            }
        }
    }
    dx
}
