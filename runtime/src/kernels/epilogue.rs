//! An elementwise chain in one pass: the epilogue of a fused kernel with no
//! anchor (activations, adds of other tensors, scales), applied to each
//! chunk of the tensor while it is in cache.
//!
//! Each element goes through the steps in list order, with the rules of
//! the single-op kernels ([`super::activation::forward_fast`], `+`, `·`),
//! so a fused chain gives what the unfused ops give; chunks run on the
//! thread pool when the work is worth it, and every element is computed the
//! same way whatever the thread count. Allocation-free, builds without
//! `std`.

use super::activation::{ELEMENT_CHUNK, forward_fast};
use super::parallel::for_each_chunk_mut;
use crate::activation::Activation;

/// One step of an elementwise chain.
#[derive(Debug, Clone, Copy)]
pub enum ElementStep<'a> {
    /// `v = act(v)`.
    Activation(Activation),
    /// `v += r[i]`, with `r` of the output's length.
    Add(&'a [f32]),
    /// `v *= s`.
    Scale(f32),
}

/// `y = steps(x)`, elementwise; `x`, `y` and every added tensor have the
/// same length.
///
/// # Panics
///
/// If a length differs (a caller bug).
pub fn apply_epilogue(x: &[f32], y: &mut [f32], steps: &[ElementStep<'_>]) {
    assert_eq!(x.len(), y.len(), "apply_epilogue: input and output lengths");
    check(y.len(), steps);
    let work = y.len() * steps.len().max(1);
    for_each_chunk_mut(y, ELEMENT_CHUNK, work, |i, yc| {
        let off = i * ELEMENT_CHUNK;
        yc.copy_from_slice(&x[off..off + yc.len()]);
        run(yc, off, steps);
    });
}

/// `y = steps(y)`, elementwise, in place.
///
/// # Panics
///
/// If an added tensor's length differs from `y`'s (a caller bug).
pub fn apply_epilogue_in_place(y: &mut [f32], steps: &[ElementStep<'_>]) {
    check(y.len(), steps);
    let work = y.len() * steps.len().max(1);
    for_each_chunk_mut(y, ELEMENT_CHUNK, work, |i, yc| {
        run(yc, i * ELEMENT_CHUNK, steps);
    });
}

fn check(len: usize, steps: &[ElementStep<'_>]) {
    for (i, s) in steps.iter().enumerate() {
        if let ElementStep::Add(r) = s {
            assert_eq!(
                r.len(),
                len,
                "apply_epilogue: step {i} adds a tensor of another length"
            );
        }
    }
}

/// The steps on one chunk `yc`, which starts at element `off`.
fn run(yc: &mut [f32], off: usize, steps: &[ElementStep<'_>]) {
    let len = yc.len();
    for s in steps {
        match *s {
            ElementStep::Activation(Activation::Relu) => {
                for v in yc.iter_mut() {
                    *v = v.max(0.0);
                }
            }
            ElementStep::Activation(a) => {
                for v in yc.iter_mut() {
                    *v = forward_fast(a, *v);
                }
            }
            ElementStep::Add(r) => {
                for (v, &r) in yc.iter_mut().zip(&r[off..off + len]) {
                    *v += r;
                }
            }
            ElementStep::Scale(s) => {
                for v in yc.iter_mut() {
                    *v *= s;
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kernels::activation::activation_forward;

    /// Runs `steps` on `x` fused, out of place and in place, and as one
    /// single-op kernel per step, and checks all three are bit-identical.
    fn check(x: &[f32], steps: &[ElementStep<'_>]) {
        let mut fused = vec![0.0; x.len()];
        apply_epilogue(x, &mut fused, steps);
        let mut in_place = x.to_vec();
        apply_epilogue_in_place(&mut in_place, steps);
        let mut want = x.to_vec();
        for s in steps {
            match *s {
                ElementStep::Activation(a) => {
                    let before = want.clone();
                    activation_forward(a, &before, &mut want);
                }
                ElementStep::Add(r) => want.iter_mut().zip(r).for_each(|(v, r)| *v += r),
                ElementStep::Scale(s) => want.iter_mut().for_each(|v| *v *= s),
            }
        }
        assert_eq!(fused, want, "fused out of place");
        assert_eq!(in_place, want, "fused in place");
    }

    #[test]
    fn chains_equal_their_single_ops() {
        // Longer than one chunk, with a partial last chunk.
        let n = ELEMENT_CHUNK + 37;
        let x: Vec<f32> = (0..n)
            .map(|i| ((i * 7919) % 2001) as f32 / 500.0 - 2.0)
            .collect();
        let r: Vec<f32> = (0..n)
            .map(|i| ((i * 104_729) % 997) as f32 / 300.0 - 1.5)
            .collect();
        check(&x, &[]);
        check(&x, &[ElementStep::Activation(Activation::Relu)]);
        check(
            &x,
            &[
                ElementStep::Add(&r),
                ElementStep::Activation(Activation::Relu),
                ElementStep::Scale(0.5),
            ],
        );
        check(
            &x[..5],
            &[
                ElementStep::Activation(Activation::Sigmoid),
                ElementStep::Activation(Activation::Elu(0.7)),
                ElementStep::Add(&r[..5]),
                ElementStep::Activation(Activation::Tanh),
            ],
        );
    }

    #[test]
    #[should_panic(expected = "another length")]
    fn added_tensor_of_another_length() {
        apply_epilogue_in_place(&mut [0.0; 4], &[ElementStep::Add(&[1.0; 3])]);
    }
}
