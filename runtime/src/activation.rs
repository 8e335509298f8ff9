//! The pointwise activations of the language, as one closed enum with scalar
//! forward and derivative rules.
//!
//! Reference kernels, fast kernels and GEMM/conv epilogues all use this one
//! definition, so an activation fused into an epilogue means exactly what the
//! standalone op means. PReLU (learned slope) and maxout (a reduction over
//! channels) are not pointwise-with-constants and have kernels of their own.

use libm::{expf, tanhf};

/// SELU's fixed constants (Klambauer et al. 2017).
pub const SELU_ALPHA: f32 = 1.673_263_2;
/// SELU's scale λ.
pub const SELU_SCALE: f32 = 1.050_701;

/// A pointwise activation with its constant parameters.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Activation {
    /// y = x.
    Identity,
    /// y = max(x, 0).
    Relu,
    /// y = x for x > 0, αx otherwise.
    LeakyRelu(f32),
    /// y = x for x > 0, α(eˣ − 1) otherwise.
    Elu(f32),
    /// y = λx for x > 0, λα(eˣ − 1) otherwise, with the fixed SELU constants.
    Selu,
    /// y = 1 / (1 + e⁻ˣ).
    Sigmoid,
    /// y = tanh x.
    Tanh,
    /// y = x·σ(x) (also called SiLU).
    Swish,
    /// The perceptron's step: y = 1 for x > 0, else 0. Forward only; its
    /// derivative is zero almost everywhere.
    Step,
}

/// The logistic function, stable for large |x|.
#[inline(always)]
pub fn sigmoid(x: f32) -> f32 {
    if x >= 0.0 {
        1.0 / (1.0 + expf(-x))
    } else {
        let e = expf(x);
        e / (1.0 + e)
    }
}

impl Activation {
    /// The activation of one value.
    #[inline(always)]
    pub fn apply(self, x: f32) -> f32 {
        match self {
            Activation::Identity => x,
            Activation::Relu => x.max(0.0),
            Activation::LeakyRelu(a) => {
                if x > 0.0 {
                    x
                } else {
                    a * x
                }
            }
            Activation::Elu(a) => {
                if x > 0.0 {
                    x
                } else {
                    a * (expf(x) - 1.0)
                }
            }
            Activation::Selu => {
                if x > 0.0 {
                    SELU_SCALE * x
                } else {
                    SELU_SCALE * SELU_ALPHA * (expf(x) - 1.0)
                }
            }
            Activation::Sigmoid => sigmoid(x),
            Activation::Tanh => tanhf(x),
            Activation::Swish => x * sigmoid(x),
            Activation::Step => {
                if x > 0.0 {
                    1.0
                } else {
                    0.0
                }
            }
        }
    }

    /// dy/dx at input `x` (the pre-activation value).
    #[inline(always)]
    pub fn derivative(self, x: f32) -> f32 {
        match self {
            Activation::Identity => 1.0,
            Activation::Relu => {
                if x > 0.0 {
                    1.0
                } else {
                    0.0
                }
            }
            Activation::LeakyRelu(a) => {
                if x > 0.0 {
                    1.0
                } else {
                    a
                }
            }
            Activation::Elu(a) => {
                if x > 0.0 {
                    1.0
                } else {
                    a * expf(x)
                }
            }
            Activation::Selu => {
                if x > 0.0 {
                    SELU_SCALE
                } else {
                    SELU_SCALE * SELU_ALPHA * expf(x)
                }
            }
            Activation::Sigmoid => {
                let s = sigmoid(x);
                s * (1.0 - s)
            }
            Activation::Tanh => {
                let t = tanhf(x);
                1.0 - t * t
            }
            Activation::Swish => {
                let s = sigmoid(x);
                s + x * s * (1.0 - s)
            }
            Activation::Step => 0.0,
        }
    }

    /// The activation of one value with the vectorizable approximations the
    /// standalone fast kernels use ([`crate::kernels::activation::forward_fast`]):
    /// bit for bit what `activation_forward` computes, within a few ulp of
    /// [`Activation::apply`]. For epilogues that must match the standalone op.
    #[inline(always)]
    pub fn apply_fast(self, x: f32) -> f32 {
        crate::kernels::activation::forward_fast(self, x)
    }

    /// `g · act'(x)` with the same approximations
    /// ([`crate::kernels::activation::backward_fast`]).
    #[inline(always)]
    pub fn backward_fast(self, x: f32, g: f32) -> f32 {
        crate::kernels::activation::backward_fast(self, x, g)
    }

    /// Whether the backward rule has a useful gradient (false for `Step`).
    pub fn is_differentiable(self) -> bool {
        !matches!(self, Activation::Step)
    }
}
