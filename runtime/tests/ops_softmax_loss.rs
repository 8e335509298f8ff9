//! Softmax, log-softmax and every loss head: fast kernels against the
//! references over random shapes, the references' backward rules against
//! central finite differences in f64, the seeds' worked examples, bad labels
//! reported as errors, and 1-vs-2-thread bit-identity of softmax.

mod ops_util;

use kiln_runtime::kernels::loss::{self as fast_loss, LossError, Reduction};
use kiln_runtime::kernels::softmax::{self as fast, AxisShape};
use kiln_runtime::reference::loss as ref_loss;
use kiln_runtime::reference::softmax as reference;
use ops_util::*;
use proptest::prelude::*;

/// Softmax kernel tolerance: the fast exponential and an f32 sum against an
/// f64 reference.
const RTOL: f32 = 1e-5;
const ATOL: f32 = 1e-6;

/// Checks softmax and log-softmax, forward and backward, on `shape`.
fn check_softmax(shape: AxisShape, seed: u64) {
    let x = uniform(seed, shape.len(), -20.0, 20.0);
    let dy = uniform(seed + 1, shape.len(), -1.0, 1.0);
    let n = shape.len();
    for log in [false, true] {
        let what = if log { "log_softmax" } else { "softmax" };
        let (mut y, mut want) = (vec![0.0; n], vec![0.0; n]);
        let (mut dx, mut want_dx) = (vec![0.0; n], vec![0.0; n]);
        if log {
            fast::log_softmax_forward(&x, &mut y, shape);
            reference::log_softmax_forward(&x, &mut want, shape);
            fast::log_softmax_backward(&want, &dy, &mut dx, shape);
            reference::log_softmax_backward(&want, &dy, &mut want_dx, shape);
        } else {
            fast::softmax_forward(&x, &mut y, shape);
            reference::softmax_forward(&x, &mut want, shape);
            fast::softmax_backward(&want, &dy, &mut dx, shape);
            reference::softmax_backward(&want, &dy, &mut want_dx, shape);
        }
        // Log-softmax computes x − logsumexp(x): near 0 that cancels, so its
        // attainable absolute error is a few ulp of the largest |x|.
        let atol = if log {
            ATOL + 4.0 * f32::EPSILON * 20.0
        } else {
            ATOL
        };
        assert_close(&format!("{what} forward {shape:?}"), &y, &want, RTOL, atol);
        assert_close(
            &format!("{what} backward {shape:?}"),
            &dx,
            &want_dx,
            RTOL,
            1e-5,
        );
    }
}

/// A loss under test: which one, with its constant.
#[derive(Debug, Clone, Copy)]
enum Loss {
    CrossEntropy,
    Nll,
    Hinge(f32),
    Mse,
    L1,
    Huber(f32),
    Bce,
    BceLogits,
}

const LOSSES: [Loss; 8] = [
    Loss::CrossEntropy,
    Loss::Nll,
    Loss::Hinge(1.0),
    Loss::Mse,
    Loss::L1,
    Loss::Huber(0.7),
    Loss::Bce,
    Loss::BceLogits,
];

/// Inputs for `loss` on `n` examples of `d` features: the input, the class
/// labels, and the float targets.
fn loss_inputs(loss: Loss, n: usize, d: usize, seed: u64) -> (Vec<f64>, Vec<u32>, Vec<f64>) {
    let labels: Vec<u32> = uniform64(seed, n, 0.0, d as f64)
        .iter()
        .map(|v| *v as u32)
        .collect();
    let input = match loss {
        // Probabilities away from 0 and 1; log-probabilities of a softmax.
        Loss::Bce => uniform64(seed + 1, n * d, 0.05, 0.95),
        Loss::Nll => {
            let z = uniform64(seed + 1, n * d, -3.0, 3.0);
            let mut lp = vec![0.0; n * d];
            reference::log_softmax_forward(&z, &mut lp, AxisShape::rows(n, d));
            lp
        }
        _ => uniform64(seed + 1, n * d, -3.0, 3.0),
    };
    let target = match loss {
        Loss::Bce | Loss::BceLogits => uniform64(seed + 2, n * d, 0.0, 1.0),
        _ => uniform64(seed + 2, n * d, -3.0, 3.0),
    };
    (input, labels, target)
}

/// The reference loss and gradient in `T`.
fn reference_loss<T: kiln_runtime::reference::Real>(
    loss: Loss,
    x: &[T],
    labels: &[u32],
    target: &[T],
    n: usize,
    d: usize,
    red: Reduction,
) -> (T, Vec<T>) {
    let mut g = vec![T::ZERO; x.len()];
    let v = match loss {
        Loss::CrossEntropy => ref_loss::cross_entropy(x, labels, d, red, &mut g).unwrap(),
        Loss::Nll => ref_loss::nll(x, labels, d, red, &mut g).unwrap(),
        Loss::Hinge(m) => ref_loss::multiclass_hinge(x, labels, d, m as f64, red, &mut g).unwrap(),
        Loss::Mse => ref_loss::mse(x, target, n, red, &mut g),
        Loss::L1 => ref_loss::l1(x, target, n, red, &mut g),
        Loss::Huber(delta) => ref_loss::huber(x, target, n, delta as f64, red, &mut g),
        Loss::Bce => ref_loss::binary_cross_entropy(x, target, n, red, &mut g).unwrap(),
        Loss::BceLogits => {
            ref_loss::binary_cross_entropy_with_logits(x, target, n, red, &mut g).unwrap()
        }
    };
    (v, g)
}

/// The fast loss, with or without a gradient buffer.
fn fast_loss_of(
    loss: Loss,
    x: &[f32],
    labels: &[u32],
    target: &[f32],
    n: usize,
    d: usize,
    red: Reduction,
    grad: Option<&mut [f32]>,
) -> Result<f32, LossError> {
    match loss {
        Loss::CrossEntropy => fast_loss::cross_entropy(x, labels, d, red, grad),
        Loss::Nll => fast_loss::nll(x, labels, d, red, grad),
        Loss::Hinge(m) => fast_loss::multiclass_hinge(x, labels, d, m, red, grad),
        Loss::Mse => Ok(fast_loss::mse(x, target, n, red, grad)),
        Loss::L1 => Ok(fast_loss::l1(x, target, n, red, grad)),
        Loss::Huber(delta) => Ok(fast_loss::huber(x, target, n, delta, red, grad)),
        Loss::Bce => fast_loss::binary_cross_entropy(x, target, n, red, grad),
        Loss::BceLogits => fast_loss::binary_cross_entropy_with_logits(x, target, n, red, grad),
    }
}

/// Checks a fast loss (value and gradient, and the value without a
/// gradient) against the reference in f32.
fn check_loss(loss: Loss, n: usize, d: usize, red: Reduction, seed: u64) {
    let (x, labels, target) = loss_inputs(loss, n, d, seed);
    let x: Vec<f32> = x.iter().map(|&v| v as f32).collect();
    let target: Vec<f32> = target.iter().map(|&v| v as f32).collect();
    let (want, want_g) = reference_loss(loss, &x, &labels, &target, n, d, red);
    let mut g = vec![0.0; x.len()];
    let got = fast_loss_of(loss, &x, &labels, &target, n, d, red, Some(&mut g)).unwrap();
    let what = format!("{loss:?} {red:?} n={n} d={d}");
    assert_close(&format!("{what} value"), &[got], &[want], 1e-5, 1e-6);
    assert_close(&format!("{what} gradient"), &g, &want_g, 1e-5, 1e-6);
    let alone = fast_loss_of(loss, &x, &labels, &target, n, d, red, None).unwrap();
    assert_close(&format!("{what} value alone"), &[alone], &[got], 1e-6, 0.0);
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    #[test]
    fn softmax_matches_reference(outer in 1usize..5, dim in 1usize..40, inner in 1usize..6, seed: u64) {
        check_softmax(AxisShape { outer, dim, inner }, seed);
    }

    #[test]
    fn softmax_rows_match_reference(outer in 1usize..4, dim in 1usize..300, seed: u64) {
        check_softmax(AxisShape::rows(outer, dim), seed);
    }

    #[test]
    fn losses_match_reference(l in 0..LOSSES.len(), n in 1usize..9, d in 1usize..30, sum: bool, seed: u64) {
        let red = if sum { Reduction::Sum } else { Reduction::Mean };
        check_loss(LOSSES[l], n, d, red, seed);
    }
}

#[test]
fn reference_softmax_backward_matches_finite_differences() {
    let shape = AxisShape {
        outer: 2,
        dim: 5,
        inner: 3,
    };
    let x = uniform64(1, shape.len(), -3.0, 3.0);
    let w = uniform64(2, shape.len(), -1.0, 1.0);
    for log in [false, true] {
        let forward = |x: &[f64]| {
            let mut y = vec![0.0; x.len()];
            if log {
                reference::log_softmax_forward(x, &mut y, shape);
            } else {
                reference::softmax_forward(x, &mut y, shape);
            }
            y
        };
        let y = forward(&x);
        let mut dx = vec![0.0; x.len()];
        if log {
            reference::log_softmax_backward(&y, &w, &mut dx, shape);
        } else {
            reference::softmax_backward(&y, &w, &mut dx, shape);
        }
        gradcheck(
            if log { "log_softmax" } else { "softmax" },
            &x,
            &dx,
            1e-6,
            |x| weighted_sum(&w, &forward(x)),
        );
    }
}

#[test]
fn reference_loss_gradients_match_finite_differences() {
    let (n, d) = (3, 4);
    for loss in LOSSES {
        for red in [Reduction::Mean, Reduction::Sum] {
            let (x, labels, target) = loss_inputs(loss, n, d, 5);
            // Keep L1, Huber and hinge off their kinks: the finite
            // difference must not straddle |o − y| = 0, delta or a margin.
            let x: Vec<f64> = match loss {
                Loss::L1 | Loss::Huber(_) | Loss::Hinge(_) => x
                    .iter()
                    .zip(&target)
                    .map(|(&o, &t)| {
                        let kink_free = (o - t).abs() > 0.01 && ((o - t).abs() - 0.7).abs() > 0.01;
                        if kink_free { o } else { o + 0.05 }
                    })
                    .collect(),
                _ => x,
            };
            let (_, g) = reference_loss(loss, &x, &labels, &target, n, d, red);
            gradcheck(&format!("{loss:?} {red:?}"), &x, &g, 1e-6, |x| {
                reference_loss(loss, x, &labels, &target, n, d, red).0
            });
        }
    }
}

/// The seeds' three examples (columns of cat/car/frog scores) and labels.
const SEED_SCORES: [f32; 9] = [3.2, 5.1, -1.7, 1.3, 4.9, 2.0, 2.2, 2.5, -3.1];
const SEED_LABELS: [u32; 3] = [0, 1, 2];

#[test]
fn seeds_softmax_cross_entropy_of_the_cat_example_is_2_04() {
    let loss = fast_loss::cross_entropy(&SEED_SCORES[..3], &[0], 3, Reduction::Mean, None).unwrap();
    assert!((loss - 2.04).abs() < 0.005, "{loss}");
    let mut p = [0.0; 3];
    fast::softmax_forward(&SEED_SCORES[..3], &mut p, AxisShape::rows(1, 3));
    assert!(
        (p[0] - 0.13).abs() < 0.005 && (p[1] - 0.87).abs() < 0.005,
        "{p:?}"
    );
}

#[test]
fn seeds_multiclass_svm_loss_is_5_27() {
    let per_example: Vec<f32> = (0..3)
        .map(|i| {
            let s = &SEED_SCORES[3 * i..3 * i + 3];
            fast_loss::multiclass_hinge(s, &SEED_LABELS[i..=i], 3, 1.0, Reduction::Sum, None)
                .unwrap()
        })
        .collect();
    assert_close(
        "per-example hinge",
        &per_example,
        &[2.9, 0.0, 12.9],
        1e-5,
        1e-5,
    );
    let mean =
        fast_loss::multiclass_hinge(&SEED_SCORES, &SEED_LABELS, 3, 1.0, Reduction::Mean, None)
            .unwrap();
    assert!((mean - 5.27).abs() < 0.005, "{mean}");
}

#[test]
fn bad_labels_and_targets_are_errors_naming_the_example() {
    let mut g = [1.5f32; 9];
    let err = fast_loss::cross_entropy(&SEED_SCORES, &[0, 3, 1], 3, Reduction::Mean, Some(&mut g))
        .unwrap_err();
    assert_eq!(
        err,
        LossError::LabelOutOfRange {
            example: 1,
            label: 3,
            classes: 3
        }
    );
    assert_eq!(
        err.to_string(),
        "label 3 of example 1 is not a class (expected 0..3)"
    );
    assert!(g.iter().all(|&v| v == 1.5), "nothing written on error");
    assert!(fast_loss::nll(&SEED_SCORES, &[0, 1, 7], 3, Reduction::Sum, None).is_err());
    assert!(
        fast_loss::multiclass_hinge(&SEED_SCORES, &[9, 1, 0], 3, 1.0, Reduction::Sum, None)
            .is_err()
    );
    let err =
        fast_loss::binary_cross_entropy(&[0.5; 4], &[0.0, 1.0, 1.0, 1.2], 2, Reduction::Mean, None)
            .unwrap_err();
    assert_eq!(
        err.to_string(),
        "target 1.2 at example 1, feature 1 is outside [0, 1]"
    );
    assert!(
        fast_loss::binary_cross_entropy_with_logits(&[0.5], &[f32::NAN], 1, Reduction::Mean, None)
            .is_err()
    );
}

#[test]
fn losses_stay_finite_at_extreme_inputs() {
    let ce = fast_loss::cross_entropy(&[1e4, -1e4, 0.0], &[1], 3, Reduction::Mean, None).unwrap();
    assert!((ce - 2e4).abs() < 1.0, "{ce}");
    let bce =
        fast_loss::binary_cross_entropy(&[0.0, 1.0], &[1.0, 0.0], 1, Reduction::Sum, None).unwrap();
    assert_eq!(bce, 200.0, "both logs clamp at -100");
    let mut g = [0.0; 2];
    let bl = fast_loss::binary_cross_entropy_with_logits(
        &[100.0, -100.0],
        &[0.0, 1.0],
        1,
        Reduction::Sum,
        Some(&mut g),
    )
    .unwrap();
    assert!((bl - 200.0).abs() < 1e-3 && g == [1.0, -1.0], "{bl} {g:?}");
    let empty = fast_loss::mse(&[], &[], 0, Reduction::Mean, None);
    assert_eq!(empty, 0.0);
}

#[test]
fn softmax_is_bit_identical_on_one_and_two_threads() {
    for shape in [
        AxisShape::rows(256, 1000),
        AxisShape {
            outer: 8,
            dim: 16,
            inner: 1024,
        },
    ] {
        let x = uniform(9, shape.len(), -10.0, 10.0);
        let dy = uniform(10, shape.len(), -1.0, 1.0);
        let run = || {
            let (mut y, mut l, mut dx, mut dl) = (
                vec![0.0; x.len()],
                vec![0.0; x.len()],
                vec![0.0; x.len()],
                vec![0.0; x.len()],
            );
            fast::softmax_forward(&x, &mut y, shape);
            fast::log_softmax_forward(&x, &mut l, shape);
            fast::softmax_backward(&y, &dy, &mut dx, shape);
            fast::log_softmax_backward(&l, &dy, &mut dl, shape);
            [y, l, dx, dl]
        };
        let one = with_threads(1, run);
        let two = with_threads(2, run);
        for (i, (a, b)) in one.iter().zip(&two).enumerate() {
            assert_bits_eq(&format!("{shape:?} output {i}"), a, b);
        }
    }
}
