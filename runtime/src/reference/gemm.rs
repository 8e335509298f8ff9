//! The reference matrix product: plain triple loop, accumulated in f64.
//!
//! `C = α·op(A)·op(B) + β·C` with the same storage convention as
//! [`crate::kernels::gemm::Gemm`] (row-major, dense, `op` an optional
//! transpose), followed by the epilogue list applied exactly as the fast
//! kernel defines it.

use super::Real;
use crate::kernels::gemm::{Epilogue, Gemm};

/// `op(A)·op(B)` for the shape `g` (dense strides `g.lda`, `g.ldb`), as a new
/// dense `m × n` matrix, each element accumulated in f64.
pub fn matmul<T: Real>(g: &Gemm, a: &[T], b: &[T]) -> Vec<T> {
    let mut c = vec![T::ZERO; g.m * g.n];
    for i in 0..g.m {
        for j in 0..g.n {
            let mut s = 0.0f64;
            for p in 0..g.k {
                let av = if g.trans_a {
                    a[p * g.lda + i]
                } else {
                    a[i * g.lda + p]
                };
                let bv = if g.trans_b {
                    b[j * g.ldb + p]
                } else {
                    b[p * g.ldb + j]
                };
                s += av.to_f64() * bv.to_f64();
            }
            c[i * g.n + j] = T::from_f64(s);
        }
    }
    c
}

/// The full GEMM of the fast kernel, in f32: `c` (row stride `g.ldc`) becomes
/// `epilogue(α·op(A)·op(B) + β·c)`.
pub fn gemm(g: &Gemm, a: &[f32], b: &[f32], c: &mut [f32], epilogue: &[Epilogue<'_>]) {
    let p = matmul(g, a, b);
    for i in 0..g.m {
        for j in 0..g.n {
            let old = if g.beta == 0.0 {
                0.0
            } else {
                g.beta as f64 * c[i * g.ldc + j] as f64
            };
            let mut v = (g.alpha as f64 * p[i * g.n + j] as f64 + old) as f32;
            for e in epilogue {
                v = match *e {
                    Epilogue::BiasRow(bias) => v + bias[i],
                    Epilogue::BiasCol(bias) => v + bias[j],
                    Epilogue::Scale(s) => v * s,
                    Epilogue::Activation(act) => act.apply(v),
                    Epilogue::Residual { data, ld } => v + data[i * ld + j],
                };
            }
            c[i * g.ldc + j] = v;
        }
    }
}
