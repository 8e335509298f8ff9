//! The direct convolution path (stride 1, one group, at most 16 output
//! channels: LeNet's C1 and C3) of every dispatch variant against the f64
//! reference over random geometries (odd sizes, batch 1, every padding and
//! dilation, 1 to 16 output channels so that every channel block and
//! position group of the kernel is used), with the epilogue lists the kernel
//! fuses in registers (bias, ReLU) and those it leaves to the copy-out
//! (scale, other activations, residual); serial, threaded and 1-vs-2-thread
//! results bit-identical.

mod ops_util;

use kiln_runtime::activation::Activation;
use kiln_runtime::kernels::conv::{
    Conv2dGeometry, ConvEpilogue, conv2d_forward, conv2d_forward_scratch_len,
    conv2d_forward_serial, uses_direct,
};
use kiln_runtime::kernels::dispatch;
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

proptest! {
    #![proptest_config(ProptestConfig { cases: 96, ..ProptestConfig::default() })]

    #[test]
    fn direct_conv_matches_reference(g in geometry(), steps in steps(), seed in any::<u64>()) {
        check(&g, &steps, seed);
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
    }
}
