//! Reference upsampling: nearest and zero-insertion by an integer factor,
//! and pixel shuffle with its inverse, written as index formulas over every
//! output element.

use super::Real;
use crate::kernels::upsample::{PixelShuffle, Upsample};

/// Nearest upsampling.
pub fn upsample_nearest_forward<T: Real>(x: &[T], y: &mut [T], g: Upsample) {
    let (oh_n, ow_n, s) = (g.out_h(), g.out_w(), g.scale);
    for p in 0..g.planes {
        for oh in 0..oh_n {
            for ow in 0..ow_n {
                y[(p * oh_n + oh) * ow_n + ow] = x[(p * g.h + oh / s) * g.w + ow / s];
            }
        }
    }
}

/// Nearest upsampling backward: block sums, in f64.
pub fn upsample_nearest_backward<T: Real>(dy: &[T], dx: &mut [T], g: Upsample) {
    let (oh_n, ow_n, s) = (g.out_h(), g.out_w(), g.scale);
    let mut acc = vec![0.0f64; dx.len()];
    for p in 0..g.planes {
        for oh in 0..oh_n {
            for ow in 0..ow_n {
                acc[(p * g.h + oh / s) * g.w + ow / s] += dy[(p * oh_n + oh) * ow_n + ow].to_f64();
            }
        }
    }
    for (d, a) in dx.iter_mut().zip(acc) {
        *d = T::from_f64(a);
    }
}

/// Zero-insertion ("bed of nails") upsampling.
pub fn upsample_zeros_forward<T: Real>(x: &[T], y: &mut [T], g: Upsample) {
    let (oh_n, ow_n, s) = (g.out_h(), g.out_w(), g.scale);
    for p in 0..g.planes {
        for oh in 0..oh_n {
            for ow in 0..ow_n {
                y[(p * oh_n + oh) * ow_n + ow] = if oh % s == 0 && ow % s == 0 {
                    x[(p * g.h + oh / s) * g.w + ow / s]
                } else {
                    T::ZERO
                };
            }
        }
    }
}

/// Zero-insertion upsampling backward.
pub fn upsample_zeros_backward<T: Real>(dy: &[T], dx: &mut [T], g: Upsample) {
    let (oh_n, ow_n, s) = (g.out_h(), g.out_w(), g.scale);
    for p in 0..g.planes {
        for ih in 0..g.h {
            for iw in 0..g.w {
                dx[(p * g.h + ih) * g.w + iw] = dy[(p * oh_n + ih * s) * ow_n + iw * s];
            }
        }
    }
}

/// The input index of output element `(b, ch, oh, ow)` of a pixel shuffle.
fn shuffle_source(g: &PixelShuffle, b: usize, ch: usize, oh: usize, ow: usize) -> usize {
    let r = g.r;
    let cin = ch * r * r + (oh % r) * r + (ow % r);
    ((b * g.c * r * r + cin) * g.h + oh / r) * g.w + ow / r
}

/// Pixel shuffle `[n, c·r², h, w] → [n, c, h·r, w·r]`.
pub fn pixel_shuffle<T: Real>(x: &[T], y: &mut [T], g: PixelShuffle) {
    let (oh_n, ow_n) = (g.out_h(), g.out_w());
    for b in 0..g.n {
        for ch in 0..g.c {
            for oh in 0..oh_n {
                for ow in 0..ow_n {
                    y[((b * g.c + ch) * oh_n + oh) * ow_n + ow] =
                        x[shuffle_source(&g, b, ch, oh, ow)];
                }
            }
        }
    }
}

/// Pixel unshuffle, the inverse: pixel shuffle's backward.
pub fn pixel_unshuffle<T: Real>(y: &[T], x: &mut [T], g: PixelShuffle) {
    let (oh_n, ow_n) = (g.out_h(), g.out_w());
    for b in 0..g.n {
        for ch in 0..g.c {
            for oh in 0..oh_n {
                for ow in 0..ow_n {
                    x[shuffle_source(&g, b, ch, oh, ow)] =
                        y[((b * g.c + ch) * oh_n + oh) * ow_n + ow];
                }
            }
        }
    }
}
