//! The pointwise kernels against their references: every activation, PReLU,
//! maxout, add / accumulate / scale, concat and split, and dropout. Fast
//! kernels are compared in f32 (tolerance stated per check); every backward
//! of the references is checked against central finite differences in f64;
//! the parallel kernels give bit-identical results on 1 and 2 threads.

mod ops_util;

use kiln_runtime::activation::Activation;
use kiln_runtime::kernels::activation as fast;
use kiln_runtime::kernels::activation::ChannelShape;
use kiln_runtime::kernels::elementwise as fast_ew;
use kiln_runtime::reference::activation as reference;
use kiln_runtime::reference::elementwise as reference_ew;
use ops_util::*;
use proptest::prelude::*;

/// Every activation of the language, with non-default constants.
const ACTIVATIONS: [Activation; 9] = [
    Activation::Identity,
    Activation::Relu,
    Activation::LeakyRelu(0.07),
    Activation::Elu(1.3),
    Activation::Selu,
    Activation::Sigmoid,
    Activation::Tanh,
    Activation::Swish,
    Activation::Step,
];

/// Forward and backward kernel tolerance: the fast exponential is within a
/// few ulp of libm's, so 4e-6 relative plus 1e-6 absolute.
const RTOL: f32 = 4e-6;
const ATOL: f32 = 1e-6;

/// Checks the fast activation forward (out of place and in place) and
/// backward against the reference on `x` with upstream gradient `dy`.
fn check_activation(act: Activation, x: &[f32], dy: &[f32]) {
    let what = format!("{act:?}");
    let mut want = vec![0.0; x.len()];
    reference::activation_forward(act, x, &mut want);
    let mut got = vec![0.0; x.len()];
    fast::activation_forward(act, x, &mut got);
    assert_close(&format!("{what} forward"), &got, &want, RTOL, ATOL);
    let mut inplace = x.to_vec();
    fast::activation_forward_in_place(act, &mut inplace);
    assert_bits_eq(&format!("{what} in place"), &inplace, &got);
    let scalar: Vec<f32> = x.iter().map(|&v| act.apply_fast(v)).collect();
    assert_bits_eq(&format!("{what} apply_fast (for epilogues)"), &scalar, &got);

    let mut want_dx = vec![0.0; x.len()];
    reference::activation_backward(act, x, dy, &mut want_dx);
    let mut got_dx = vec![0.0; x.len()];
    fast::activation_backward(act, x, dy, &mut got_dx);
    assert_close(&format!("{what} backward"), &got_dx, &want_dx, RTOL, ATOL);
    let scalar: Vec<f32> = x
        .iter()
        .zip(dy)
        .map(|(&v, &g)| act.backward_fast(v, g))
        .collect();
    assert_bits_eq(&format!("{what} backward_fast"), &scalar, &got_dx);
}

/// Checks PReLU's kernel against the reference, forward and backward.
fn check_prelu(shape: ChannelShape, shared: bool, seed: u64) {
    let x = uniform(seed, shape.len(), -3.0, 3.0);
    let dy = uniform(seed + 1, shape.len(), -1.0, 1.0);
    let w = uniform(seed + 2, if shared { 1 } else { shape.c }, -0.5, 0.5);
    let (mut y, mut want) = (vec![0.0; x.len()], vec![0.0; x.len()]);
    fast::prelu_forward(&x, &mut y, shape, &w);
    reference::prelu_forward(&x, &mut want, shape, &w);
    assert_bits_eq("prelu forward", &y, &want);
    let (mut dx, mut want_dx) = (vec![0.0; x.len()], vec![0.0; x.len()]);
    let (mut dw, mut want_dw) = (vec![9.0; w.len()], vec![0.0; w.len()]);
    fast::prelu_backward(&x, &dy, &mut dx, &mut dw, shape, &w);
    reference::prelu_backward(&x, &dy, &mut want_dx, &mut want_dw, shape, &w);
    assert_bits_eq("prelu dx", &dx, &want_dx);
    // The weight gradient sums up to n·c·spatial terms in f32.
    assert_close("prelu dweight", &dw, &want_dw, 1e-5, 1e-5);
}

/// Checks maxout's kernel against the reference, forward and backward.
fn check_maxout(shape: ChannelShape, k: usize, seed: u64) {
    let x = uniform(seed, shape.len(), -3.0, 3.0);
    let out = shape.len() / k;
    let dy = uniform(seed + 1, out, -1.0, 1.0);
    let (mut y, mut idx) = (vec![0.0; out], vec![0u32; out]);
    let (mut want, mut want_idx) = (vec![0.0; out], vec![0u32; out]);
    fast::maxout_forward_with_indices(&x, &mut y, &mut idx, shape, k);
    reference::maxout_forward(&x, &mut want, &mut want_idx, shape, k);
    assert_bits_eq("maxout forward", &y, &want);
    assert_eq!(idx, want_idx, "maxout argmax");
    let mut plain = vec![0.0; out];
    fast::maxout_forward(&x, &mut plain, shape, k);
    assert_bits_eq("maxout forward without indices", &plain, &want);
    let (mut dx, mut want_dx) = (vec![7.0; x.len()], vec![0.0; x.len()]);
    fast::maxout_backward(&dy, &idx, &mut dx, shape, k);
    reference::maxout_backward(&dy, &want_idx, &mut want_dx, shape, k);
    assert_bits_eq("maxout backward", &dx, &want_dx);
}

/// Checks add, accumulate and scale against the reference on `count`
/// inputs of `len` elements.
fn check_add_scale(count: usize, len: usize, a: f32, seed: u64) {
    let xs: Vec<Vec<f32>> = (0..count)
        .map(|i| uniform(seed + i as u64, len, -2.0, 2.0))
        .collect();
    let refs: Vec<&[f32]> = xs.iter().map(|v| v.as_slice()).collect();
    let (mut y, mut want) = (vec![0.0; len], vec![0.0; len]);
    fast_ew::add(&refs, &mut y);
    reference_ew::add(&refs, &mut want);
    assert_bits_eq("add", &y, &want);
    let mut acc = xs[0].clone();
    let mut want_acc = xs[0].clone();
    fast_ew::accumulate_scaled(&mut acc, a, &xs[count - 1]);
    reference_ew::accumulate_scaled(&mut want_acc, a, &xs[count - 1]);
    assert_bits_eq("accumulate_scaled", &acc, &want_acc);
    let mut acc1 = xs[0].clone();
    fast_ew::add_into(&mut acc1, &xs[count - 1]);
    let mut want1 = xs[0].clone();
    reference_ew::accumulate_scaled(&mut want1, 1.0, &xs[count - 1]);
    assert_bits_eq("add_into", &acc1, &want1);
    let (mut s, mut want_s) = (vec![0.0; len], vec![0.0; len]);
    fast_ew::scale(&xs[0], a, &mut s);
    reference_ew::scale(&xs[0], a, &mut want_s);
    assert_bits_eq("scale", &s, &want_s);
    let mut s2 = xs[0].clone();
    fast_ew::scale_in_place(&mut s2, a);
    assert_bits_eq("scale_in_place", &s2, &want_s);
}

/// Checks concat and split against the reference for parts of `sizes`.
fn check_concat(sizes: &[usize], outer: usize, inner: usize, seed: u64) {
    let xs: Vec<Vec<f32>> = sizes
        .iter()
        .enumerate()
        .map(|(i, &d)| uniform(seed + i as u64, outer * d * inner, -1.0, 1.0))
        .collect();
    let refs: Vec<&[f32]> = xs.iter().map(|v| v.as_slice()).collect();
    let total = outer * sizes.iter().sum::<usize>() * inner;
    let (mut y, mut want) = (vec![0.0; total], vec![0.0; total]);
    fast_ew::concat(&refs, sizes, outer, inner, &mut y);
    reference_ew::concat(&refs, sizes, outer, inner, &mut want);
    assert_bits_eq("concat", &y, &want);
    let mut parts: Vec<Vec<f32>> = xs.iter().map(|v| vec![0.0; v.len()]).collect();
    {
        let mut outs: Vec<&mut [f32]> = parts.iter_mut().map(|v| v.as_mut_slice()).collect();
        fast_ew::split(&y, sizes, outer, inner, &mut outs);
    }
    assert_eq!(parts, xs, "split undoes concat");
}

/// Checks dropout's kernel against the reference (bit for bit: the mask is
/// shared), its backward against the same mask, and its offset rule.
fn check_dropout(len: usize, p: f32, seed: u64) {
    let x = uniform(seed, len, -1.0, 1.0);
    let (mut y, mut want) = (vec![0.0; len], vec![0.0; len]);
    fast_ew::dropout_forward(&x, &mut y, p, seed, 5);
    reference_ew::dropout(&x, &mut want, p, seed, 5);
    assert_bits_eq("dropout forward", &y, &want);
    let mut dx = vec![0.0; len];
    fast_ew::dropout_backward(&x, &mut dx, p, seed, 5);
    assert_bits_eq("dropout backward uses the forward mask", &dx, &y);
    let half = len / 2;
    let mut pieces = vec![0.0; len];
    fast_ew::dropout_forward(&x[..half], &mut pieces[..half], p, seed, 5);
    fast_ew::dropout_forward(&x[half..], &mut pieces[half..], p, seed, 5 + half as u64);
    assert_bits_eq("dropout in two pieces", &pieces, &y);
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    #[test]
    fn activations_match_reference(a in 0..ACTIVATIONS.len(), len in 0usize..300, seed: u64) {
        let x = uniform(seed, len, -12.0, 12.0);
        let dy = uniform(seed ^ 1, len, -1.0, 1.0);
        check_activation(ACTIVATIONS[a], &x, &dy);
    }

    #[test]
    fn prelu_matches_reference(n in 1usize..4, c in 1usize..6, s in 1usize..40, shared: bool, seed: u64) {
        check_prelu(ChannelShape { n, c, spatial: s }, shared, seed);
    }

    #[test]
    fn maxout_matches_reference(n in 1usize..4, groups in 1usize..4, k in 1usize..5, s in 1usize..30, seed: u64) {
        check_maxout(ChannelShape { n, c: groups * k, spatial: s }, k, seed);
    }

    #[test]
    fn add_and_scale_match_reference(count in 1usize..5, len in 0usize..200, a in -3.0f32..3.0, seed: u64) {
        check_add_scale(count, len, a, seed);
    }

    #[test]
    fn concat_and_split_match_reference(sizes in prop::collection::vec(0usize..5, 1..4), outer in 1usize..4, inner in 1usize..7, seed: u64) {
        check_concat(&sizes, outer, inner, seed);
    }

    #[test]
    fn dropout_matches_reference(len in 0usize..500, p in 0.0f32..1.0, seed: u64) {
        check_dropout(len, p, seed);
    }
}

#[test]
fn activations_are_stable_at_extremes() {
    let x = [-1e4f32, -100.0, -88.0, -20.0, 0.0, 20.0, 88.0, 100.0, 1e4];
    let dy = [1.0f32; 9];
    for act in ACTIVATIONS {
        check_activation(act, &x, &dy);
        let mut y = [0.0f32; 9];
        fast::activation_forward(act, &x, &mut y);
        assert!(y.iter().all(|v| v.is_finite()), "{act:?}: {y:?}");
    }
}

#[test]
fn exp_approx_is_within_three_ulp_of_libm() {
    let mut worst = 0u32;
    for i in 0..200_000 {
        let x = -87.0 + 175.0 * i as f32 / 200_000.0;
        let (a, b) = (fast::exp_approx(x), libm::expf(x));
        worst = worst.max((a.to_bits() as i64 - b.to_bits() as i64).unsigned_abs() as u32);
    }
    assert!(worst <= 3, "worst ulp distance {worst}");
}

#[test]
fn tanh_and_ln_approx_are_within_a_few_ulp_of_libm() {
    // tanh near 0 and in the polynomial/exponential crossover, and ln over
    // the normal range from 1e-30 to 1e30.
    let ulps = |a: f32, b: f32| (a.to_bits() as i64 - b.to_bits() as i64).unsigned_abs();
    let mut worst_tanh = 0;
    for i in 0..200_000 {
        let x = -12.0 + 24.0 * i as f32 / 200_000.0;
        worst_tanh = worst_tanh.max(ulps(fast::tanh_approx(x), libm::tanhf(x)));
    }
    let mut worst_ln = 0;
    for i in 0..200_000 {
        let x = libm::powf(10.0, -30.0 + 60.0 * i as f32 / 200_000.0);
        worst_ln = worst_ln.max(ulps(fast::ln_approx(x), libm::logf(x)));
    }
    assert!(
        worst_tanh <= 4 && worst_ln <= 2,
        "tanh {worst_tanh} ulp, ln {worst_ln} ulp"
    );
    assert_eq!(fast::tanh_approx(0.0), 0.0);
    assert_eq!(
        (fast::tanh_approx(50.0), fast::tanh_approx(-50.0)),
        (1.0, -1.0)
    );
    assert_eq!(fast::ln_approx(1.0), 0.0);
}

#[test]
fn reference_activation_backward_matches_finite_differences() {
    let x = away_from_zero(11, 40, 0.05);
    let w = uniform64(12, 40, -1.0, 1.0);
    for act in ACTIVATIONS.into_iter().filter(|a| a.is_differentiable()) {
        let mut dx = vec![0.0; x.len()];
        reference::activation_backward(act, &x, &w, &mut dx);
        gradcheck(&format!("{act:?}"), &x, &dx, 1e-6, |x| {
            let mut y = vec![0.0; x.len()];
            reference::activation_forward(act, x, &mut y);
            weighted_sum(&w, &y)
        });
    }
}

#[test]
fn reference_prelu_backward_matches_finite_differences() {
    for shared in [false, true] {
        let shape = ChannelShape {
            n: 2,
            c: 3,
            spatial: 5,
        };
        let x = away_from_zero(21, shape.len(), 0.05);
        let g = uniform64(22, shape.len(), -1.0, 1.0);
        let wt = uniform64(23, if shared { 1 } else { 3 }, -0.5, 0.5);
        let (mut dx, mut dw) = (vec![0.0; x.len()], vec![0.0; wt.len()]);
        reference::prelu_backward(&x, &g, &mut dx, &mut dw, shape, &wt);
        let loss = |x: &[f64], wt: &[f64]| {
            let mut y = vec![0.0; x.len()];
            reference::prelu_forward(x, &mut y, shape, wt);
            weighted_sum(&g, &y)
        };
        gradcheck("prelu dx", &x, &dx, 1e-6, |x| loss(x, &wt));
        gradcheck("prelu dweight", &wt, &dw, 1e-6, |wt| loss(&x, wt));
    }
}

#[test]
fn reference_maxout_backward_matches_finite_differences() {
    let shape = ChannelShape {
        n: 2,
        c: 6,
        spatial: 4,
    };
    let k = 3;
    let x = uniform64(31, shape.len(), -2.0, 2.0);
    let out = shape.len() / k;
    let g = uniform64(32, out, -1.0, 1.0);
    let (mut y, mut idx) = (vec![0.0; out], vec![0u32; out]);
    reference::maxout_forward(&x, &mut y, &mut idx, shape, k);
    let mut dx = vec![0.0; x.len()];
    reference::maxout_backward(&g, &idx, &mut dx, shape, k);
    gradcheck("maxout", &x, &dx, 1e-6, |x| {
        let (mut y, mut idx) = (vec![0.0; out], vec![0u32; out]);
        reference::maxout_forward(x, &mut y, &mut idx, shape, k);
        weighted_sum(&g, &y)
    });
}

#[test]
fn reference_concat_and_dropout_backward_match_finite_differences() {
    let sizes = [2usize, 1, 3];
    let (outer, inner) = (2, 3);
    let xs: Vec<Vec<f64>> = sizes
        .iter()
        .map(|&d| uniform64(d as u64, outer * d * inner, -1.0, 1.0))
        .collect();
    let total = outer * 6 * inner;
    let g = uniform64(41, total, -1.0, 1.0);
    let mut parts: Vec<Vec<f64>> = xs.iter().map(|v| vec![0.0; v.len()]).collect();
    reference_ew::split(&g, &sizes, outer, inner, &mut parts);
    for i in 0..sizes.len() {
        gradcheck(
            &format!("concat input {i}"),
            &xs[i],
            &parts[i],
            1e-6,
            |xi| {
                let mut all: Vec<&[f64]> = xs.iter().map(|v| v.as_slice()).collect();
                all[i] = xi;
                let mut y = vec![0.0; total];
                reference_ew::concat(&all, &sizes, outer, inner, &mut y);
                weighted_sum(&g, &y)
            },
        );
    }
    let x = uniform64(42, 50, -1.0, 1.0);
    let g = uniform64(43, 50, -1.0, 1.0);
    let mut dx = vec![0.0; 50];
    reference_ew::dropout(&g, &mut dx, 0.3, 9, 0);
    gradcheck("dropout", &x, &dx, 1e-6, |x| {
        let mut y = vec![0.0; 50];
        reference_ew::dropout(x, &mut y, 0.3, 9, 0);
        weighted_sum(&g, &y)
    });
}

#[test]
fn dropout_keeps_about_one_minus_p_and_scales_kept_values() {
    let len = 100_000;
    let x = vec![1.0f32; len];
    let mut y = vec![0.0; len];
    fast_ew::dropout_forward(&x, &mut y, 0.3, 77, 0);
    let kept = y.iter().filter(|&&v| v != 0.0).count() as f64 / len as f64;
    // Three standard deviations of a binomial fraction: 3·√(0.21/1e5) ≈ 0.0044.
    assert!((kept - 0.7).abs() < 0.0044, "kept fraction {kept}");
    assert!(y.iter().all(|&v| v == 0.0 || v == 1.0 / 0.7));
    let mut none = vec![5.0; len];
    fast_ew::dropout_forward(&x, &mut none, 1.0, 77, 0);
    assert!(none.iter().all(|&v| v == 0.0), "p = 1 drops everything");
    let mut all = vec![0.0; len];
    fast_ew::dropout_forward(&x, &mut all, 0.0, 77, 0);
    assert_bits_eq("p = 0 is the identity", &all, &x);
}

#[test]
fn parallel_kernels_are_bit_identical_on_one_and_two_threads() {
    let shape = ChannelShape {
        n: 4,
        c: 8,
        spatial: 64 * 64,
    };
    let len = shape.len();
    let x = uniform(51, len, -4.0, 4.0);
    let dy = uniform(52, len, -1.0, 1.0);
    let w = uniform(53, shape.c, 0.0, 0.5);
    let run = || {
        let mut out = Vec::new();
        for act in [Activation::Swish, Activation::Elu(1.0), Activation::Tanh] {
            let mut y = vec![0.0; len];
            fast::activation_forward(act, &x, &mut y);
            let mut dx = vec![0.0; len];
            fast::activation_backward(act, &x, &dy, &mut dx);
            out.push(y);
            out.push(dx);
        }
        let mut y = vec![0.0; len];
        fast::prelu_forward(&x, &mut y, shape, &w);
        let (mut dx, mut dw) = (vec![0.0; len], vec![0.0; shape.c]);
        fast::prelu_backward(&x, &dy, &mut dx, &mut dw, shape, &w);
        out.extend([y, dx, dw]);
        let (mut m, mut idx) = (vec![0.0; len / 4], vec![0u32; len / 4]);
        fast::maxout_forward_with_indices(&x, &mut m, &mut idx, shape, 4);
        let mut mdx = vec![0.0; len];
        fast::maxout_backward(&dy[..len / 4], &idx, &mut mdx, shape, 4);
        out.extend([m, mdx]);
        let mut d = vec![0.0; len];
        fast_ew::dropout_forward(&x, &mut d, 0.5, 3, 0);
        let mut s = vec![0.0; len];
        fast_ew::add(&[&x, &dy, &d], &mut s);
        let mut c = vec![0.0; 2 * len];
        fast_ew::concat(&[&x, &dy], &[8, 8], 4, 64 * 64, &mut c);
        let mut acc = x.clone();
        fast_ew::accumulate_scaled(&mut acc, 0.3, &dy);
        let mut sc = vec![0.0; len];
        fast_ew::scale(&x, 1.7, &mut sc);
        let (mut p0, mut p1) = (vec![0.0; len], vec![0.0; len]);
        fast_ew::split(&c, &[8, 8], 4, 64 * 64, &mut [&mut p0, &mut p1]);
        out.extend([d, s, c, acc, sc, p0, p1]);
        out
    };
    let one = with_threads(1, run);
    let two = with_threads(2, run);
    for (i, (a, b)) in one.iter().zip(&two).enumerate() {
        assert_bits_eq(&format!("output {i}"), a, b);
    }
}

#[test]
fn seeds_sigmoid_of_a_small_layer_is_0_98_0_12() {
    // σ(W·[1, −1] + b) with W = [[1, −2], [−1, 1]] and b = [1, 0]; the
    // matrix-vector product by hand (GEMM is not this file's op).
    let (w, x, b) = ([[1.0f32, -2.0], [-1.0, 1.0]], [1.0f32, -1.0], [1.0f32, 0.0]);
    let z: Vec<f32> = (0..2)
        .map(|i| w[i][0] * x[0] + w[i][1] * x[1] + b[i])
        .collect();
    assert_eq!(z, [4.0, -2.0]);
    let mut y = [0.0; 2];
    fast::activation_forward(Activation::Sigmoid, &z, &mut y);
    assert_close("sigma", &y, &[0.98, 0.12], 0.0, 0.005);
}
