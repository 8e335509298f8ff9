//! Reference local response normalization across channels, forward and
//! backward, in f64 from the formula of [`crate::kernels::lrn`].

use super::Real;
use crate::kernels::activation::ChannelShape;
use crate::kernels::lrn::Lrn;

/// `D` of every element: `k + α/n · Σ_{j ∈ win(c)} x_j²`.
fn denominators<T: Real>(x: &[T], shape: ChannelShape, p: Lrn) -> Vec<f64> {
    let s = shape.spatial;
    let a = p.alpha as f64 / p.size as f64;
    let mut d = vec![0.0; x.len()];
    for b in 0..shape.n {
        for c in 0..shape.c {
            let (start, end) = p.window(c, shape.c);
            for k in 0..s {
                let sum: f64 = (start..end)
                    .map(|j| x[(b * shape.c + j) * s + k].to_f64().powi(2))
                    .sum();
                d[(b * shape.c + c) * s + k] = p.k as f64 + a * sum;
            }
        }
    }
    d
}

/// LRN forward.
pub fn lrn_forward<T: Real>(x: &[T], y: &mut [T], shape: ChannelShape, p: Lrn) {
    let d = denominators(x, shape, p);
    for i in 0..x.len() {
        y[i] = T::from_f64(x[i].to_f64() * d[i].powf(-(p.beta as f64)));
    }
}

/// LRN backward: the chain rule through every window that holds each input.
pub fn lrn_backward<T: Real>(x: &[T], dy: &[T], dx: &mut [T], shape: ChannelShape, p: Lrn) {
    let d = denominators(x, shape, p);
    let s = shape.spatial;
    let (a, beta) = (p.alpha as f64 / p.size as f64, p.beta as f64);
    for b in 0..shape.n {
        for i in 0..shape.c {
            for k in 0..s {
                let at = |c: usize| (b * shape.c + c) * s + k;
                let xi = x[at(i)].to_f64();
                let mut g = dy[at(i)].to_f64() * d[at(i)].powf(-beta);
                for c in 0..shape.c {
                    let (start, end) = p.window(c, shape.c);
                    if (start..end).contains(&i) {
                        let yc_over_d = x[at(c)].to_f64() * d[at(c)].powf(-beta - 1.0);
                        g -= dy[at(c)].to_f64() * yc_over_d * beta * a * 2.0 * xi;
                    }
                }
                dx[at(i)] = T::from_f64(g);
            }
        }
    }
}
