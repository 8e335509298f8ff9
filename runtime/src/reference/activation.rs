//! Reference activations: every [`Activation`] forward and backward, PReLU
//! with its weight gradient, and maxout with its argmax, as plain loops over
//! any [`Real`].

use super::Real;
use crate::activation::{Activation, SELU_ALPHA, SELU_SCALE};
use crate::kernels::activation::ChannelShape;

/// The activation of one value, in `T`.
pub fn apply<T: Real>(act: Activation, x: T) -> T {
    let zero = T::ZERO;
    let one = T::ONE;
    let sigmoid = |v: T| {
        if v >= zero {
            one / (one + (-v).exp())
        } else {
            let e = v.exp();
            e / (one + e)
        }
    };
    match act {
        Activation::Identity => x,
        Activation::Relu => {
            if x > zero {
                x
            } else {
                zero
            }
        }
        Activation::LeakyRelu(a) => {
            if x > zero {
                x
            } else {
                T::from_f64(a as f64) * x
            }
        }
        Activation::Elu(a) => {
            if x > zero {
                x
            } else {
                T::from_f64(a as f64) * (x.exp() - one)
            }
        }
        Activation::Selu => {
            let scale = T::from_f64(SELU_SCALE as f64);
            if x > zero {
                scale * x
            } else {
                scale * T::from_f64(SELU_ALPHA as f64) * (x.exp() - one)
            }
        }
        Activation::Sigmoid => sigmoid(x),
        Activation::Tanh => x.tanh(),
        Activation::Swish => x * sigmoid(x),
        Activation::Step => {
            if x > zero {
                one
            } else {
                zero
            }
        }
    }
}

/// dy/dx of the activation at input `x`, in `T` (zero for `Step`).
pub fn derivative<T: Real>(act: Activation, x: T) -> T {
    let zero = T::ZERO;
    let one = T::ONE;
    match act {
        Activation::Identity => one,
        Activation::Relu => {
            if x > zero {
                one
            } else {
                zero
            }
        }
        Activation::LeakyRelu(a) => {
            if x > zero {
                one
            } else {
                T::from_f64(a as f64)
            }
        }
        Activation::Elu(a) => {
            if x > zero {
                one
            } else {
                T::from_f64(a as f64) * x.exp()
            }
        }
        Activation::Selu => {
            let scale = T::from_f64(SELU_SCALE as f64);
            if x > zero {
                scale
            } else {
                scale * T::from_f64(SELU_ALPHA as f64) * x.exp()
            }
        }
        Activation::Sigmoid => {
            let s = apply(Activation::Sigmoid, x);
            s * (one - s)
        }
        Activation::Tanh => {
            let t = x.tanh();
            one - t * t
        }
        Activation::Swish => {
            let s = apply(Activation::Sigmoid, x);
            s + x * s * (one - s)
        }
        Activation::Step => zero,
    }
}

/// `y = act(x)` elementwise.
pub fn activation_forward<T: Real>(act: Activation, x: &[T], y: &mut [T]) {
    assert_eq!(x.len(), y.len(), "activation: lengths");
    for (yv, &xv) in y.iter_mut().zip(x) {
        *yv = apply(act, xv);
    }
}

/// `dx = dy · act'(x)` elementwise.
pub fn activation_backward<T: Real>(act: Activation, x: &[T], dy: &[T], dx: &mut [T]) {
    assert!(
        x.len() == dx.len() && dy.len() == dx.len(),
        "activation backward: lengths"
    );
    for i in 0..x.len() {
        dx[i] = dy[i] * derivative(act, x[i]);
    }
}

/// PReLU forward with a per-channel (`weight.len() == c`) or shared slope.
pub fn prelu_forward<T: Real>(x: &[T], y: &mut [T], shape: ChannelShape, weight: &[T]) {
    assert!(
        x.len() == shape.len() && y.len() == shape.len(),
        "prelu: lengths"
    );
    for b in 0..shape.n {
        for ch in 0..shape.c {
            let w = if weight.len() == 1 {
                weight[0]
            } else {
                weight[ch]
            };
            for s in 0..shape.spatial {
                let i = (b * shape.c + ch) * shape.spatial + s;
                y[i] = if x[i] > T::ZERO { x[i] } else { w * x[i] };
            }
        }
    }
}

/// PReLU backward: `dx`, and `dweight` (written, f64-accumulated) as the sum
/// of `dy·x` over the elements with `x ≤ 0` that use each weight.
pub fn prelu_backward<T: Real>(
    x: &[T],
    dy: &[T],
    dx: &mut [T],
    dweight: &mut [T],
    shape: ChannelShape,
    weight: &[T],
) {
    assert!(
        dweight.len() == weight.len(),
        "prelu backward: weight lengths"
    );
    let mut acc = vec![0.0f64; weight.len()];
    for b in 0..shape.n {
        for ch in 0..shape.c {
            let k = if weight.len() == 1 { 0 } else { ch };
            for s in 0..shape.spatial {
                let i = (b * shape.c + ch) * shape.spatial + s;
                if x[i] > T::ZERO {
                    dx[i] = dy[i];
                } else {
                    dx[i] = weight[k] * dy[i];
                    acc[k] += dy[i].to_f64() * x[i].to_f64();
                }
            }
        }
    }
    for (d, a) in dweight.iter_mut().zip(acc) {
        *d = T::from_f64(a);
    }
}

/// Maxout over groups of `k` consecutive channels; writes the winning `j`
/// per output element (ties to the lowest).
pub fn maxout_forward<T: Real>(
    x: &[T],
    y: &mut [T],
    argmax: &mut [u32],
    shape: ChannelShape,
    k: usize,
) {
    let groups = shape.c / k;
    for b in 0..shape.n {
        for g in 0..groups {
            for s in 0..shape.spatial {
                let at = |j: usize| x[((b * shape.c) + g * k + j) * shape.spatial + s];
                let mut best = 0;
                for j in 1..k {
                    if at(j) > at(best) {
                        best = j;
                    }
                }
                let o = (b * groups + g) * shape.spatial + s;
                y[o] = at(best);
                argmax[o] = best as u32;
            }
        }
    }
}

/// Maxout backward: `dy` routed to each group's argmax.
pub fn maxout_backward<T: Real>(
    dy: &[T],
    argmax: &[u32],
    dx: &mut [T],
    shape: ChannelShape,
    k: usize,
) {
    let groups = shape.c / k;
    dx.fill(T::ZERO);
    for b in 0..shape.n {
        for g in 0..groups {
            for s in 0..shape.spatial {
                let o = (b * groups + g) * shape.spatial + s;
                let j = argmax[o] as usize;
                dx[((b * shape.c) + g * k + j) * shape.spatial + s] = dy[o];
            }
        }
    }
}
