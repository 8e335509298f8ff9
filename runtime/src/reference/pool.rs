//! Reference pooling: max (with argmax), average (padding counted or not)
//! and global average, forward and backward, written as the textbook loops
//! over padded coordinates with an explicit in-bounds test. Floor and ceil
//! mode differ only in the number of windows ([`PoolWindows`]); a ceil-mode
//! window's part past the padded input is no input, and PyTorch's divisor
//! rule (`count_pad`: the window clipped to the padded input) is spelled out
//! in [`divisor`].

use super::Real;
use crate::kernels::pool::{Pool2d, PoolWindows};

/// Visits the in-bounds input positions `(ih, iw)` of output `(oh, ow)`'s
/// window, in row-major order.
fn window(g: &Pool2d, oh: usize, ow: usize, mut f: impl FnMut(usize, usize)) {
    for a in 0..g.kh {
        for b in 0..g.kw {
            let ih = (oh * g.sh + a) as isize - g.ph as isize;
            let iw = (ow * g.sw + b) as isize - g.pw as isize;
            if ih >= 0 && iw >= 0 && (ih as usize) < g.h && (iw as usize) < g.w {
                f(ih as usize, iw as usize);
            }
        }
    }
}

/// Max pooling: values and argmax (index within the input plane; ties to
/// the first in row-major window order).
pub fn max_pool2d_forward<T: Real>(
    x: &[T],
    y: &mut [T],
    argmax: &mut [u32],
    g: impl Into<PoolWindows>,
) {
    let win: PoolWindows = g.into();
    let g = win.pool;
    let (oh_n, ow_n) = (win.out_h(), win.out_w());
    for p in 0..g.planes() {
        for oh in 0..oh_n {
            for ow in 0..ow_n {
                let mut best: Option<(T, usize)> = None;
                window(&g, oh, ow, |ih, iw| {
                    let i = ih * g.w + iw;
                    let v = x[p * g.h * g.w + i];
                    if best.is_none_or(|(b, _)| v > b) {
                        best = Some((v, i));
                    }
                });
                let (v, i) = best.expect("validated windows are never empty");
                let o = (p * oh_n + oh) * ow_n + ow;
                y[o] = v;
                argmax[o] = i as u32;
            }
        }
    }
}

/// Max pooling backward: `dy` added at each argmax.
pub fn max_pool2d_backward<T: Real>(
    dy: &[T],
    argmax: &[u32],
    dx: &mut [T],
    g: impl Into<PoolWindows>,
) {
    let win: PoolWindows = g.into();
    let g = win.pool;
    let op = win.out_h() * win.out_w();
    dx.fill(T::ZERO);
    for p in 0..g.planes() {
        for o in 0..op {
            dx[p * g.h * g.w + argmax[p * op + o] as usize] += dy[p * op + o];
        }
    }
}

/// The divisor of output `(oh, ow)`'s window: with `count_pad`, the
/// positions of the window inside the padded input (all `kh·kw` of them
/// unless a ceil-mode window hangs past it); without, the input elements.
fn divisor(g: &Pool2d, oh: usize, ow: usize, count_pad: bool) -> f64 {
    if count_pad {
        let mut count = 0;
        for a in 0..g.kh {
            for b in 0..g.kw {
                if oh * g.sh + a < g.h + 2 * g.ph && ow * g.sw + b < g.w + 2 * g.pw {
                    count += 1;
                }
            }
        }
        count as f64
    } else {
        let mut count = 0;
        window(g, oh, ow, |_, _| count += 1);
        count as f64
    }
}

/// Average pooling, accumulating in f64.
pub fn avg_pool2d_forward<T: Real>(
    x: &[T],
    y: &mut [T],
    g: impl Into<PoolWindows>,
    count_pad: bool,
) {
    let win: PoolWindows = g.into();
    let g = win.pool;
    let (oh_n, ow_n) = (win.out_h(), win.out_w());
    for p in 0..g.planes() {
        for oh in 0..oh_n {
            for ow in 0..ow_n {
                let mut total = 0.0;
                window(&g, oh, ow, |ih, iw| {
                    total += x[(p * g.h + ih) * g.w + iw].to_f64();
                });
                y[(p * oh_n + oh) * ow_n + ow] =
                    T::from_f64(total / divisor(&g, oh, ow, count_pad));
            }
        }
    }
}

/// Average pooling backward.
pub fn avg_pool2d_backward<T: Real>(
    dy: &[T],
    dx: &mut [T],
    g: impl Into<PoolWindows>,
    count_pad: bool,
) {
    let win: PoolWindows = g.into();
    let g = win.pool;
    let (oh_n, ow_n) = (win.out_h(), win.out_w());
    let mut acc = vec![0.0f64; dx.len()];
    for p in 0..g.planes() {
        for oh in 0..oh_n {
            for ow in 0..ow_n {
                let share =
                    dy[(p * oh_n + oh) * ow_n + ow].to_f64() / divisor(&g, oh, ow, count_pad);
                window(&g, oh, ow, |ih, iw| acc[(p * g.h + ih) * g.w + iw] += share);
            }
        }
    }
    for (d, a) in dx.iter_mut().zip(acc) {
        *d = T::from_f64(a);
    }
}

/// Global average pooling `[planes, spatial] → [planes]`.
pub fn global_avg_pool_forward<T: Real>(x: &[T], y: &mut [T], planes: usize, spatial: usize) {
    for p in 0..planes {
        let total: f64 = x[p * spatial..(p + 1) * spatial]
            .iter()
            .map(|v| v.to_f64())
            .sum();
        y[p] = T::from_f64(if spatial == 0 {
            0.0
        } else {
            total / spatial as f64
        });
    }
}

/// Global average pooling backward.
pub fn global_avg_pool_backward<T: Real>(dy: &[T], dx: &mut [T], planes: usize, spatial: usize) {
    for p in 0..planes {
        for s in 0..spatial {
            dx[p * spatial + s] = T::from_f64(dy[p].to_f64() / spatial as f64);
        }
    }
}
