//! The direct convolution path (stride 1, one group, at most 16 output
//! channels: LeNet's C1 and C3) of every dispatch variant against the f64
//! reference over random geometries (odd sizes, batch 1, every padding and
//! dilation, 1 to 16 output channels so that every channel block and
//! position group of the kernel is used), with the epilogue lists the kernel
//! fuses in registers (bias, ReLU) and those it leaves to the copy-out
//! (scale, other activations, residual); the direct input gradient and
//! weight gradient (overwriting and accumulating) the same way; serial, threaded and
//! 1-vs-2-thread results bit-identical.

mod ops_util;

use kiln_runtime::activation::Activation;
use kiln_runtime::kernels::conv::{
    Conv2dGeometry, ConvEpilogue, conv2d_backward_data, conv2d_backward_data_serial,
    conv2d_backward_scratch_len, conv2d_backward_weight, conv2d_backward_weight_serial,
    conv2d_forward, conv2d_forward_prepacked_scratch_len, conv2d_forward_prepacked_serial,
    conv2d_forward_scratch_len, conv2d_forward_serial, conv2d_pack_weights,
    conv2d_packed_weights_len, uses_channel_lanes, uses_direct,
};
use kiln_runtime::kernels::dispatch;
use kiln_runtime::kernels::dispatch::Kernels;
use kiln_runtime::reference::conv as r;
use ops_util::*;
use proptest::prelude::*;

/// One epilogue step of a test case, before its buffers exist.
#[derive(Debug, Clone, Copy)]
enum Step {
    Bias,
    Scale(f32),
    Act(Activation),
    Residual,
}

/// Runs the forward pass of geometry `g` with epilogue `steps` through every
/// variant (serial, threaded on 1 and 2 threads) and compares with the
/// reference followed by the same steps in order.
fn check(g: &Conv2dGeometry, steps: &[Step], seed: u64) {
    g.validate().expect("test geometry is valid");
    let x = uniform(seed, g.input_len(), -1.0, 1.0);
    let w = uniform(seed + 1, g.weight_len(), -1.0, 1.0);
    let bias = uniform(seed + 2, g.c_out, -1.0, 1.0);
    let res = uniform(seed + 3, g.output_len(), -1.0, 1.0);
    let plane = g.out_h() * g.out_w();
    let mut want: Vec<f32> = r::conv2d_forward(g, &x, &w, None);
    let mut epi = Vec::new();
    for step in steps {
        match *step {
            Step::Bias => {
                for (i, v) in want.iter_mut().enumerate() {
                    *v += bias[(i / plane) % g.c_out];
                }
                epi.push(ConvEpilogue::Bias(&bias));
            }
            Step::Scale(s) => {
                want.iter_mut().for_each(|v| *v *= s);
                epi.push(ConvEpilogue::Scale(s));
            }
            Step::Act(a) => {
                want.iter_mut().for_each(|v| *v = a.apply(*v));
                epi.push(ConvEpilogue::Activation(a));
            }
            Step::Residual => {
                want.iter_mut().zip(&res).for_each(|(v, r)| *v += r);
                epi.push(ConvEpilogue::Residual(&res));
            }
        }
    }
    let taps = (g.c_in * g.kh * g.kw) as f32;
    for kern in dispatch::variants() {
        let what = format!("{} {g:?} {steps:?}", kern.name);
        let mut scratch = vec![f32::NAN; conv2d_forward_scratch_len(kern, g)];
        let mut y = vec![f32::NAN; g.output_len()];
        conv2d_forward_serial(kern, g, &x, &w, &epi, &mut y, &mut scratch);
        assert_close(&what, &y, &want, 1e-5, 4.0 * f32::EPSILON * taps);
        for threads in [1, 2] {
            let mut yt = vec![f32::NAN; g.output_len()];
            with_threads(threads, || conv2d_forward(kern, g, &x, &w, &epi, &mut yt));
            assert_bits_eq(&format!("{what} on {threads} threads"), &yt, &y);
        }
    }
}

/// Runs the input and weight gradients of geometry `g` through every
/// variant (serial, threaded on 1 and 2 threads; the weight gradient
/// overwriting and accumulating) and compares with the reference.
fn check_backward(g: &Conv2dGeometry, seed: u64) {
    let x = uniform(seed, g.input_len(), -1.0, 1.0);
    let dy = uniform(seed + 1, g.output_len(), -1.0, 1.0);
    let w = uniform(seed + 2, g.weight_len(), -1.0, 1.0);
    let want_dx = r::conv2d_backward_data(g, &w, &dy);
    let dx_atol = 4.0 * f32::EPSILON * (g.c_out * g.kh * g.kw) as f32;
    for kern in dispatch::variants() {
        let what = format!("{} backward-data {g:?}", kern.name);
        let mut scratch = vec![f32::NAN; conv2d_backward_scratch_len(kern, g)];
        let mut dx = vec![f32::NAN; g.input_len()];
        conv2d_backward_data_serial(kern, g, &w, &dy, &mut dx, &mut scratch);
        assert_close(&what, &dx, &want_dx, 1e-5, dx_atol);
        for threads in [1, 2] {
            let mut dxt = vec![f32::NAN; g.input_len()];
            with_threads(threads, || conv2d_backward_data(kern, g, &w, &dy, &mut dxt));
            assert_bits_eq(&format!("{what} on {threads} threads"), &dxt, &dx);
        }
    }
    let want = r::conv2d_backward_weight(g, &x, &dy);
    let terms = (g.n * g.out_h() * g.out_w()) as f32;
    let atol = 4.0 * f32::EPSILON * terms;
    for kern in dispatch::variants() {
        let what = format!("{} backward-weight {g:?}", kern.name);
        let mut scratch = vec![f32::NAN; conv2d_backward_scratch_len(kern, g)];
        let mut dw = vec![f32::NAN; g.weight_len()];
        conv2d_backward_weight_serial(kern, g, &x, &dy, &mut dw, false, &mut scratch);
        assert_close(&what, &dw, &want, 1e-5, atol);
        let mut twice = dw.clone();
        conv2d_backward_weight_serial(kern, g, &x, &dy, &mut twice, true, &mut scratch);
        let doubled: Vec<f32> = want.iter().map(|v| 2.0 * v).collect();
        assert_close(
            &format!("{what} accumulated"),
            &twice,
            &doubled,
            1e-5,
            2.0 * atol,
        );
        for threads in [1, 2] {
            let mut dwt = vec![f32::NAN; g.weight_len()];
            with_threads(threads, || {
                conv2d_backward_weight(kern, g, &x, &dy, &mut dwt, false)
            });
            assert_bits_eq(&format!("{what} on {threads} threads"), &dwt, &dw);
        }
    }
}

fn geometry() -> impl Strategy<Value = Conv2dGeometry> {
    (
        (1usize..4, 1usize..7, 1usize..17),
        (1usize..20, 1usize..20, 1usize..6, 1usize..6),
        (
            [0usize..3, 0usize..3, 0usize..3, 0usize..3],
            [1usize..3, 1usize..3],
        ),
    )
        .prop_map(
            |((n, c_in, c_out), (h, w, kh, kw), (pad, dilation))| Conv2dGeometry {
                pad,
                dilation,
                ..Conv2dGeometry::new(n, c_in, h, w, c_out, kh, kw)
            },
        )
        .prop_filter("a valid geometry", |g| g.validate().is_ok())
}

fn steps() -> impl Strategy<Value = Vec<Step>> {
    prop_oneof![
        Just(vec![]),
        Just(vec![Step::Bias]),
        Just(vec![Step::Bias, Step::Act(Activation::Relu)]),
        Just(vec![Step::Act(Activation::Relu)]),
        Just(vec![
            Step::Bias,
            Step::Act(Activation::Relu),
            Step::Residual
        ]),
        Just(vec![
            Step::Bias,
            Step::Scale(-1.5),
            Step::Act(Activation::Relu)
        ]),
        Just(vec![Step::Bias, Step::Act(Activation::Tanh)]),
        Just(vec![Step::Act(Activation::Relu), Step::Bias]),
    ]
}

#[test]
fn one_position_convolutions_take_the_matrix_vector_path() {
    // A kernel covering the whole input: rows of every length modulo the
    // vector width (27, 8, 1, 400), channel counts around the row blocks,
    // any stride (one position either way), batch 1 and more.
    let best = dispatch::variants()[0];
    for g in [
        Conv2dGeometry::new(1, 3, 3, 3, 17, 3, 3),
        Conv2dGeometry::new(2, 2, 2, 2, 9, 2, 2).with_stride(2),
        Conv2dGeometry::new(1, 1, 1, 1, 1, 1, 1),
        Conv2dGeometry::new(3, 8, 1, 1, 5, 1, 1),
        Conv2dGeometry::new(1, 16, 5, 5, 120, 5, 5).with_stride(3),
    ] {
        if best.conv_direct.is_some() {
            assert!(uses_direct(best, &g), "{g:?} should take the direct path");
        }
        for steps in [
            vec![Step::Bias, Step::Act(Activation::Relu)],
            vec![],
            vec![Step::Bias, Step::Scale(0.5), Step::Residual],
        ] {
            check(&g, &steps, g.c_out as u64);
        }
    }
}

/// Geometries with sixteen output channels: the channel-lane kernel's
/// (whole vectors of channels), with rows of every length.
fn channel_lane_geometry() -> impl Strategy<Value = Conv2dGeometry> {
    geometry().prop_map(|g| Conv2dGeometry { c_out: 16, ..g })
}

/// The channel-lane kernel against the position-lane kernel (the same
/// variant without it) and through weights packed in advance: bit-identical,
/// since both sum every output over the taps in the same order.
fn check_channel_lanes(g: &Conv2dGeometry, steps: &[Step], seed: u64) {
    check(g, steps, seed);
    let x = uniform(seed, g.input_len(), -1.0, 1.0);
    let w = uniform(seed + 1, g.weight_len(), -1.0, 1.0);
    let bias = uniform(seed + 2, g.c_out, -1.0, 1.0);
    let epi = [
        ConvEpilogue::Bias(&bias),
        ConvEpilogue::Activation(Activation::Relu),
    ];
    for kern in dispatch::variants() {
        if kern.conv_direct_channels.is_none() {
            continue;
        }
        let positions = Kernels {
            conv_direct_channels: None,
            ..*kern
        };
        let what = format!("{} {g:?}", kern.name);
        let run = |k: &Kernels| {
            let mut scratch = vec![f32::NAN; conv2d_forward_scratch_len(k, g)];
            let mut y = vec![f32::NAN; g.output_len()];
            conv2d_forward_serial(k, g, &x, &w, &epi, &mut y, &mut scratch);
            y
        };
        let y = run(kern);
        assert_bits_eq(
            &format!("{what}: channel against position lanes"),
            &y,
            &run(&positions),
        );
        let mut packed = vec![f32::NAN; conv2d_packed_weights_len(kern, g)];
        conv2d_pack_weights(kern, g, &w, &mut packed);
        let mut scratch = vec![f32::NAN; conv2d_forward_prepacked_scratch_len(kern, g)];
        let mut yp = vec![f32::NAN; g.output_len()];
        conv2d_forward_prepacked_serial(kern, g, &x, &packed, &epi, &mut yp, &mut scratch);
        assert_bits_eq(&format!("{what}: packed in advance"), &yp, &y);
    }
}

#[test]
fn lenet_c3_takes_the_channel_lane_kernel() {
    let c3 = Conv2dGeometry::new(1, 6, 14, 14, 16, 5, 5);
    let best = dispatch::variants()[0];
    if best.conv_direct_channels.is_some() {
        assert!(uses_channel_lanes(best, &c3));
        // C1's 28-wide rows fill position vectors well enough.
        assert!(!uses_channel_lanes(
            best,
            &Conv2dGeometry::new(1, 1, 32, 32, 6, 5, 5)
        ));
    }
    for g in [
        c3,
        c3.with_batch(3),
        Conv2dGeometry::new(2, 3, 9, 30, 16, 3, 3),
    ] {
        check_channel_lanes(&g, &[Step::Bias, Step::Act(Activation::Relu)], 11);
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 96, ..ProptestConfig::default() })]

    #[test]
    fn channel_lane_conv_matches_reference(
        g in channel_lane_geometry(),
        steps in steps(),
        seed in any::<u64>(),
    ) {
        check_channel_lanes(&g, &steps, seed);
    }

    #[test]
    fn direct_conv_matches_reference(g in geometry(), steps in steps(), seed in any::<u64>()) {
        check(&g, &steps, seed);
    }

    #[test]
    fn direct_backward_matches_reference(g in geometry(), seed in any::<u64>()) {
        check_backward(&g, seed);
    }
}

#[test]
fn lenet_layers_take_the_direct_path_and_match_the_reference() {
    let c1 = Conv2dGeometry::new(1, 1, 32, 32, 6, 5, 5);
    let c3 = Conv2dGeometry::new(1, 6, 14, 14, 16, 5, 5);
    let c5 = Conv2dGeometry::new(1, 16, 5, 5, 120, 5, 5);
    let best = dispatch::variants()[0];
    for g in [
        c1,
        c3,
        c5,
        c1.with_batch(3),
        c3.with_batch(2),
        c5.with_batch(3),
    ] {
        if best.conv_direct.is_some() {
            assert!(uses_direct(best, &g), "{g:?} should take the direct path");
        }
        check(&g, &[Step::Bias, Step::Act(Activation::Relu)], 7);
        check(&g, &[Step::Bias], 8);
        check_backward(&g, 9);
    }
}
