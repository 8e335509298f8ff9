//! Batch normalization (training, inference, both backwards, the fused
//! batch-norm + ReLU backward) and LRN: fast kernels against the references
//! over random shapes, the references' backward rules against central
//! finite differences in f64, PyTorch's running-statistics convention and
//! LRN's window by hand, and 1-vs-2-thread bit-identity.

mod ops_util;

use kiln_runtime::kernels::activation::ChannelShape;
use kiln_runtime::kernels::lrn::{self as fast_lrn, Lrn};
use kiln_runtime::kernels::norm as fast;
use kiln_runtime::reference::lrn as reference_lrn;
use kiln_runtime::reference::norm as reference;
use ops_util::*;
use proptest::prelude::*;

/// Batch-norm tolerance: f32 kernels with f64-blocked sums against an f64
/// reference rounded to f32: 1e-4 relative plus 1e-5 absolute, plus, for the
/// training path, the error f32 cannot avoid when a channel's variance is
/// tiny next to eps (then `x − mean` loses its low bits, and 1/√(var + eps)
/// magnifies them; see `Conditioning`).
const RTOL: f32 = 1e-4;
const ATOL: f32 = 1e-5;

/// The attainable f32 accuracy of training-mode batch norm per channel:
/// `δ = 4ε(|mean| + max|x|)` is the error of `x − mean`; the output carries
/// `|γ|·inv·δ`, the input gradient `|γ|·inv²·δ·(1 + 2√M)` (through x̂ and
/// the mean of dy·x̂), the γ gradient `M·inv·δ` (|dy| ≤ 1).
struct Conditioning {
    y: Vec<f32>,
    dx: Vec<f32>,
    dgamma: Vec<f32>,
}

impl Conditioning {
    fn new(shape: ChannelShape, gamma: &[f32], mean: &[f32], inv: &[f32], xmax: f32) -> Self {
        let m = (shape.n * shape.spatial) as f32;
        let delta: Vec<f32> = mean
            .iter()
            .map(|mu| 4.0 * f32::EPSILON * (mu.abs() + xmax))
            .collect();
        let per = |f: &dyn Fn(usize) -> f32| (0..shape.c).map(f).collect::<Vec<f32>>();
        Conditioning {
            y: per(&|c| gamma[c].abs() * inv[c] * delta[c]),
            dx: per(&|c| gamma[c].abs() * inv[c] * inv[c] * delta[c] * (1.0 + 2.0 * m.sqrt())),
            dgamma: per(&|c| m * inv[c] * delta[c]),
        }
    }
}

/// The inputs of a batch-norm check.
struct Bn {
    x: Vec<f32>,
    dy: Vec<f32>,
    gamma: Vec<f32>,
    beta: Vec<f32>,
    rm: Vec<f32>,
    rv: Vec<f32>,
}

fn bn_inputs(shape: ChannelShape, seed: u64) -> Bn {
    Bn {
        // An offset mean so that centring matters.
        x: uniform(seed, shape.len(), 1.0, 4.0),
        dy: uniform(seed + 1, shape.len(), -1.0, 1.0),
        gamma: uniform(seed + 2, shape.c, 0.5, 1.5),
        beta: uniform(seed + 3, shape.c, -0.5, 0.5),
        rm: uniform(seed + 4, shape.c, -0.5, 0.5),
        rv: uniform(seed + 5, shape.c, 0.5, 1.5),
    }
}

/// Checks every batch-norm kernel on `shape` against the reference.
fn check_batch_norm(shape: ChannelShape, seed: u64) {
    let Bn {
        x,
        dy,
        gamma,
        beta,
        rm,
        rv,
    } = bn_inputs(shape, seed);
    let (eps, momentum) = (1e-5, 0.1);
    let len = shape.len();
    let what = format!("{shape:?}");

    let (mut y, mut mean, mut inv) = (vec![0.0; len], vec![0.0; shape.c], vec![0.0; shape.c]);
    let (mut frm, mut frv) = (rm.clone(), rv.clone());
    fast::batch_norm_train_forward(
        &x, &mut y, shape, &gamma, &beta, eps, momentum, &mut frm, &mut frv, &mut mean, &mut inv,
    );
    let mut want = vec![0.0; len];
    let (mut wrm, mut wrv) = (rm.clone(), rv.clone());
    let (wmean, winv) = reference::batch_norm_train_forward(
        &x,
        &mut want,
        shape,
        &gamma,
        &beta,
        eps as f64,
        momentum as f64,
        &mut wrm,
        &mut wrv,
    );
    let cond = Conditioning::new(shape, &gamma, &wmean, &winv, 4.0);
    let ch = |i: usize| (i / shape.spatial) % shape.c;
    let tol_y = |i: usize| ATOL + cond.y[ch(i)];
    let tol_dx = |i: usize| ATOL + cond.dx[ch(i)];
    let tol_dg = |c: usize| ATOL + cond.dgamma[c];
    assert_close_with(&format!("train forward {what}"), &y, &want, RTOL, tol_y);
    assert_close("saved mean", &mean, &wmean, 1e-6, 1e-6);
    assert_close("saved inv_std", &inv, &winv, 1e-5, 1e-6);
    assert_close("running mean", &frm, &wrm, 1e-6, 1e-6);
    assert_close("running var", &frv, &wrv, 1e-5, 1e-6);

    let (mut dx, mut dg, mut db) = (vec![0.0; len], vec![0.0; shape.c], vec![0.0; shape.c]);
    fast::batch_norm_backward(
        &x, &dy, &mut dx, &mut dg, &mut db, shape, &gamma, &mean, &inv,
    );
    let (mut wdx, mut wdg, mut wdb) = (vec![0.0; len], vec![0.0; shape.c], vec![0.0; shape.c]);
    reference::batch_norm_backward(
        &x, &dy, &mut wdx, &mut wdg, &mut wdb, shape, &gamma, &mean, &inv,
    );
    assert_close_with(&format!("backward dx {what}"), &dx, &wdx, RTOL, tol_dx);
    assert_close_with("backward dgamma", &dg, &wdg, RTOL, tol_dg);
    assert_close("backward dbeta", &db, &wdb, RTOL, ATOL);

    // The fused backward equals the plain backward of the ReLU-masked dy.
    let relu: Vec<f32> = y
        .iter()
        .map(|v| v.max(0.0) - 0.3)
        .map(|v| v.max(0.0))
        .collect();
    let masked: Vec<f32> = dy
        .iter()
        .zip(&relu)
        .map(|(&g, &r)| if r > 0.0 { g } else { 0.0 })
        .collect();
    let (mut fdx, mut fdg, mut fdb) = (vec![0.0; len], vec![0.0; shape.c], vec![0.0; shape.c]);
    fast::batch_norm_relu_backward(
        &x, &relu, &dy, &mut fdx, &mut fdg, &mut fdb, shape, &gamma, &mean, &inv,
    );
    reference::batch_norm_backward(
        &x, &masked, &mut wdx, &mut wdg, &mut wdb, shape, &gamma, &mean, &inv,
    );
    assert_close_with("fused relu backward dx", &fdx, &wdx, RTOL, tol_dx);
    assert_close_with("fused relu backward dgamma", &fdg, &wdg, RTOL, tol_dg);
    assert_close("fused relu backward dbeta", &fdb, &wdb, RTOL, ATOL);

    let mut yi = vec![0.0; len];
    fast::batch_norm_inference(&x, &mut yi, shape, &gamma, &beta, &rm, &rv, eps);
    reference::batch_norm_inference(&x, &mut want, shape, &gamma, &beta, &rm, &rv, eps as f64);
    assert_close("inference forward", &yi, &want, RTOL, ATOL);
    fast::batch_norm_inference_backward(
        &x, &dy, &mut dx, &mut dg, &mut db, shape, &gamma, &rm, &rv, eps,
    );
    reference::batch_norm_inference_backward(
        &x, &dy, &mut wdx, &mut wdg, &mut wdb, shape, &gamma, &rm, &rv, eps as f64,
    );
    assert_close("inference backward dx", &dx, &wdx, RTOL, ATOL);
    assert_close("inference backward dgamma", &dg, &wdg, RTOL, ATOL);
    assert_close("inference backward dbeta", &db, &wdb, RTOL, ATOL);
}

/// Checks LRN's kernel on `shape` with constants `p` against the reference.
fn check_lrn(shape: ChannelShape, p: Lrn, seed: u64) {
    let x = uniform(seed, shape.len(), -3.0, 3.0);
    let dy = uniform(seed + 1, shape.len(), -1.0, 1.0);
    let (mut y, mut want) = (vec![0.0; x.len()], vec![0.0; x.len()]);
    fast_lrn::lrn_forward(&x, &mut y, shape, p);
    reference_lrn::lrn_forward(&x, &mut want, shape, p);
    assert_close(
        &format!("lrn forward {shape:?} {p:?}"),
        &y,
        &want,
        1e-5,
        1e-6,
    );
    let (mut dx, mut want_dx) = (vec![0.0; x.len()], vec![0.0; x.len()]);
    let mut scratch = vec![f32::NAN; x.len()];
    fast_lrn::lrn_backward(&x, &dy, &mut dx, &mut scratch, shape, p);
    reference_lrn::lrn_backward(&x, &dy, &mut want_dx, shape, p);
    assert_close(
        &format!("lrn backward {shape:?} {p:?}"),
        &dx,
        &want_dx,
        1e-5,
        1e-6,
    );
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    #[test]
    fn batch_norm_matches_reference(n in 1usize..5, c in 1usize..5, spatial in 1usize..40, seed: u64) {
        // n·spatial = 1 has no batch variance; the training check needs two.
        prop_assume!(n * spatial > 1);
        check_batch_norm(ChannelShape { n, c, spatial }, seed);
    }

    #[test]
    fn batch_norm_1d_matches_reference(n in 2usize..40, c in 1usize..150, seed: u64) {
        // The row layout [N, D], across channel blocks (64) and row blocks (16).
        check_batch_norm(ChannelShape { n, c, spatial: 1 }, seed);
    }

    #[test]
    fn lrn_matches_reference(n in 1usize..3, c in 1usize..9, spatial in 1usize..20, size in 1usize..7,
                             alpha in 1e-4f32..1.0, beta in 0.5f32..1.0, k in 1.0f32..3.0, seed: u64) {
        check_lrn(ChannelShape { n, c, spatial }, Lrn { size, alpha, beta, k }, seed);
    }
}

#[test]
fn reference_batch_norm_backward_matches_finite_differences() {
    let shape = ChannelShape {
        n: 3,
        c: 2,
        spatial: 4,
    };
    let x = uniform64(1, shape.len(), -2.0, 2.0);
    let g = uniform64(2, shape.len(), -1.0, 1.0);
    let gamma = uniform64(3, 2, 0.5, 1.5);
    let beta = uniform64(4, 2, -0.5, 0.5);
    let forward = |x: &[f64], gamma: &[f64], beta: &[f64]| {
        let mut y = vec![0.0; x.len()];
        let (mut rm, mut rv) = (vec![0.0; 2], vec![1.0; 2]);
        let stats = reference::batch_norm_train_forward(
            x, &mut y, shape, gamma, beta, 1e-5, 0.1, &mut rm, &mut rv,
        );
        (weighted_sum(&g, &y), stats)
    };
    let (_, (mean, inv)) = forward(&x, &gamma, &beta);
    let (mut dx, mut dg, mut db) = (vec![0.0; x.len()], vec![0.0; 2], vec![0.0; 2]);
    reference::batch_norm_backward(
        &x, &g, &mut dx, &mut dg, &mut db, shape, &gamma, &mean, &inv,
    );
    gradcheck("batch norm dx", &x, &dx, 1e-6, |x| {
        forward(x, &gamma, &beta).0
    });
    gradcheck("batch norm dgamma", &gamma, &dg, 1e-6, |gm| {
        forward(&x, gm, &beta).0
    });
    gradcheck("batch norm dbeta", &beta, &db, 1e-6, |bt| {
        forward(&x, &gamma, bt).0
    });

    let (rm, rv) = (vec![0.2, -0.1], vec![0.8, 1.3]);
    let infer = |x: &[f64], gamma: &[f64], beta: &[f64]| {
        let mut y = vec![0.0; x.len()];
        reference::batch_norm_inference(x, &mut y, shape, gamma, beta, &rm, &rv, 1e-5);
        weighted_sum(&g, &y)
    };
    reference::batch_norm_inference_backward(
        &x, &g, &mut dx, &mut dg, &mut db, shape, &gamma, &rm, &rv, 1e-5,
    );
    gradcheck("inference batch norm dx", &x, &dx, 1e-6, |x| {
        infer(x, &gamma, &beta)
    });
    gradcheck("inference batch norm dgamma", &gamma, &dg, 1e-6, |gm| {
        infer(&x, gm, &beta)
    });
    gradcheck("inference batch norm dbeta", &beta, &db, 1e-6, |bt| {
        infer(&x, &gamma, bt)
    });
}

#[test]
fn reference_lrn_backward_matches_finite_differences() {
    for size in [1, 2, 3, 5] {
        let shape = ChannelShape {
            n: 2,
            c: 6,
            spatial: 3,
        };
        let p = Lrn {
            size,
            alpha: 0.5,
            beta: 0.75,
            k: 2.0,
        };
        let x = uniform64(7, shape.len(), -2.0, 2.0);
        let g = uniform64(8, shape.len(), -1.0, 1.0);
        let mut dx = vec![0.0; x.len()];
        reference_lrn::lrn_backward(&x, &g, &mut dx, shape, p);
        gradcheck(&format!("lrn size {size}"), &x, &dx, 1e-6, |x| {
            let mut y = vec![0.0; x.len()];
            reference_lrn::lrn_forward(x, &mut y, shape, p);
            weighted_sum(&g, &y)
        });
    }
}

#[test]
fn running_statistics_follow_pytorch() {
    // x = 1, 2, 3, 4 in one channel: mean 2.5, biased variance 1.25,
    // unbiased 5/3; from (0, 1) with momentum 0.1: (0.25, 0.9 + 1/6).
    let shape = ChannelShape {
        n: 4,
        c: 1,
        spatial: 1,
    };
    let x = [1.0, 2.0, 3.0, 4.0];
    let (mut y, mut mean, mut inv) = ([0.0; 4], [0.0], [0.0]);
    let (mut rm, mut rv) = ([0.0], [1.0]);
    fast::batch_norm_train_forward(
        &x,
        &mut y,
        shape,
        &[1.0],
        &[0.0],
        0.0,
        0.1,
        &mut rm,
        &mut rv,
        &mut mean,
        &mut inv,
    );
    assert_close("running mean", &rm, &[0.25], 0.0, 1e-7);
    assert_close("running var", &rv, &[0.9 + 1.0 / 6.0], 1e-6, 0.0);
    assert_close(
        "saved",
        &[mean[0], inv[0]],
        &[2.5, 1.0 / 1.25f32.sqrt()],
        1e-6,
        0.0,
    );
    let s = 1.0 / 1.25f32.sqrt();
    assert_close(
        "normalized",
        &y,
        &[-1.5 * s, -0.5 * s, 0.5 * s, 1.5 * s],
        1e-6,
        1e-7,
    );
}

#[test]
fn lrn_window_follows_pytorch_by_hand() {
    // Channels 1, 2, 3 at one position, n = 3, α = 3 (α/n = 1), β = 1, k = 1:
    // D = 1 + (1 + 4), 1 + (1 + 4 + 9), 1 + (4 + 9).
    let shape = ChannelShape {
        n: 1,
        c: 3,
        spatial: 1,
    };
    let p = Lrn {
        size: 3,
        alpha: 3.0,
        beta: 1.0,
        k: 1.0,
    };
    let mut y = [0.0; 3];
    fast_lrn::lrn_forward(&[1.0, 2.0, 3.0], &mut y, shape, p);
    assert_close("n = 3", &y, &[1.0 / 6.0, 2.0 / 15.0, 3.0 / 14.0], 1e-6, 0.0);
    // An even window n = 2 looks at the channel before: c − 1 ..= c.
    let p2 = Lrn {
        size: 2,
        alpha: 2.0,
        beta: 1.0,
        k: 1.0,
    };
    fast_lrn::lrn_forward(&[1.0, 2.0, 3.0], &mut y, shape, p2);
    assert_close("n = 2", &y, &[1.0 / 2.0, 2.0 / 6.0, 3.0 / 14.0], 1e-6, 0.0);
}

#[test]
fn norm_kernels_are_bit_identical_on_one_and_two_threads() {
    for shape in [
        ChannelShape {
            n: 8,
            c: 16,
            spatial: 32 * 32,
        },
        ChannelShape {
            n: 256,
            c: 1000,
            spatial: 1,
        },
    ] {
        check_threads(shape);
    }
}

/// Runs every norm kernel on `shape` on 1 and 2 threads and compares bits.
fn check_threads(shape: ChannelShape) {
    let Bn {
        x,
        dy,
        gamma,
        beta,
        rm,
        rv,
    } = bn_inputs(shape, 11);
    let len = shape.len();
    let run = || {
        let (mut y, mut mean, mut inv) = (vec![0.0; len], vec![0.0; shape.c], vec![0.0; shape.c]);
        let (mut frm, mut frv) = (rm.clone(), rv.clone());
        fast::batch_norm_train_forward(
            &x, &mut y, shape, &gamma, &beta, 1e-5, 0.1, &mut frm, &mut frv, &mut mean, &mut inv,
        );
        let (mut dx, mut dg, mut db) = (vec![0.0; len], vec![0.0; shape.c], vec![0.0; shape.c]);
        fast::batch_norm_backward(
            &x, &dy, &mut dx, &mut dg, &mut db, shape, &gamma, &mean, &inv,
        );
        let (mut rdx, mut rdg, mut rdb) = (vec![0.0; len], vec![0.0; shape.c], vec![0.0; shape.c]);
        fast::batch_norm_relu_backward(
            &x, &y, &dy, &mut rdx, &mut rdg, &mut rdb, shape, &gamma, &mean, &inv,
        );
        let mut l = vec![0.0; len];
        fast_lrn::lrn_forward(&x, &mut l, shape, Lrn::ALEXNET);
        let (mut ldx, mut scratch) = (vec![0.0; len], vec![0.0; len]);
        fast_lrn::lrn_backward(&x, &dy, &mut ldx, &mut scratch, shape, Lrn::ALEXNET);
        [y, mean, inv, frm, frv, dx, dg, db, rdx, rdg, rdb, l, ldx]
    };
    let one = with_threads(1, run);
    let two = with_threads(2, run);
    for (i, (a, b)) in one.iter().zip(&two).enumerate() {
        assert_bits_eq(&format!("{shape:?} output {i}"), a, b);
    }
}
