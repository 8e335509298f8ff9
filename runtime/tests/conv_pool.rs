//! Convolution with its max pool fused (`kernels::conv_pool`) against the
//! two unfused kernels it replaces (the convolution, then
//! `max_pool2d_forward`), bit for bit, for every dispatch variant, every
//! entry point (serial, threaded on 1 and 2 threads, weights packed in
//! advance or not), over random geometries: odd sizes (the last row and
//! column no window reads), batch 1 and more, padding, dilation, 1 to 16
//! output channels (the position-lane kernel's channel blocks) and 16 or
//! 32 (the channel-lane kernel's), stride 2 and other windows (the
//! unfused fallback), and the epilogues the kernels pool in registers and
//! those they do not. Inputs can hold NaN and infinities; the fused kernels
//! must order their comparisons as the pooling kernel does.

mod ops_util;

use kiln_runtime::activation::Activation;
use kiln_runtime::kernels::conv::{
    Conv2dGeometry, ConvEpilogue, conv2d_forward, conv2d_forward_scratch_len,
    conv2d_forward_serial, conv2d_pack_weights, conv2d_packed_weights_len,
};
use kiln_runtime::kernels::conv_pool::{
    conv2d_pool_forward, conv2d_pool_forward_prepacked, conv2d_pool_forward_prepacked_scratch_len,
    conv2d_pool_forward_prepacked_serial, conv2d_pool_forward_scratch_len,
    conv2d_pool_forward_serial, conv2d_pool_output_len, fuses_pool,
};
use kiln_runtime::kernels::dispatch;
use kiln_runtime::kernels::pool::{Pool2d, PoolWindows, max_pool2d_forward};
use kiln_runtime::reference;
use ops_util::*;
use proptest::prelude::*;

/// The window over the convolution's output `g`: `k × k`, stride `s`.
fn window(g: &Conv2dGeometry, k: usize, s: usize, ceil: bool) -> PoolWindows {
    Pool2d {
        n: g.n,
        c: g.c_out,
        h: g.out_h(),
        w: g.out_w(),
        kh: k,
        kw: k,
        sh: s,
        sw: s,
        ph: 0,
        pw: 0,
    }
    .ceil_mode(ceil)
}

/// Every entry point of every variant against the unfused kernels.
fn check(
    g: &Conv2dGeometry,
    pool: PoolWindows,
    steps: &[Option<Activation>],
    specials: bool,
    seed: u64,
) {
    let mut x = uniform(seed, g.input_len(), -1.0, 1.0);
    if specials {
        for (i, v) in x
            .iter_mut()
            .enumerate()
            .skip(seed as usize % 61)
            .step_by(61)
        {
            *v = [f32::NAN, f32::INFINITY, f32::NEG_INFINITY][i % 3];
        }
    }
    let w = uniform(seed + 1, g.weight_len(), -1.0, 1.0);
    let bias = uniform(seed + 2, g.c_out, -1.0, 1.0);
    let mut epi = Vec::new();
    for s in steps {
        epi.push(match s {
            None => ConvEpilogue::Bias(&bias),
            Some(a) => ConvEpilogue::Activation(*a),
        });
    }
    let out_len = conv2d_pool_output_len(g, pool);
    for kern in dispatch::variants() {
        let what = format!(
            "{} {g:?} {:?} {steps:?} fused {}",
            kern.name,
            pool,
            fuses_pool(kern, g, pool, &epi)
        );
        let mut full = vec![f32::NAN; g.output_len()];
        let mut scratch = vec![f32::NAN; conv2d_forward_scratch_len(kern, g)];
        conv2d_forward_serial(kern, g, &x, &w, &epi, &mut full, &mut scratch);
        let mut want = vec![f32::NAN; out_len];
        max_pool2d_forward(&full, &mut want, pool);

        let mut y = vec![f32::NAN; out_len];
        let mut scratch = vec![f32::NAN; conv2d_pool_forward_scratch_len(kern, g, pool, &epi)];
        conv2d_pool_forward_serial(kern, g, pool, &x, &w, &epi, &mut y, &mut scratch);
        assert_bits_eq(&format!("{what} serial"), &y, &want);

        let mut packed = vec![f32::NAN; conv2d_packed_weights_len(kern, g)];
        conv2d_pack_weights(kern, g, &w, &mut packed);
        let len = conv2d_pool_forward_prepacked_scratch_len(kern, g, pool, &epi);
        let mut scratch = vec![f32::NAN; len];
        let mut y = vec![f32::NAN; out_len];
        conv2d_pool_forward_prepacked_serial(
            kern,
            g,
            pool,
            &x,
            &packed,
            &epi,
            &mut y,
            &mut scratch,
        );
        assert_bits_eq(&format!("{what} prepacked serial"), &y, &want);

        for threads in [1, 2] {
            let mut y = vec![f32::NAN; out_len];
            with_threads(threads, || {
                conv2d_pool_forward(kern, g, pool, &x, &w, &epi, &mut y)
            });
            assert_bits_eq(&format!("{what} on {threads} threads"), &y, &want);
            let mut y = vec![f32::NAN; out_len];
            with_threads(threads, || {
                conv2d_pool_forward_prepacked(kern, g, pool, &x, &packed, &epi, &mut y)
            });
            assert_bits_eq(&format!("{what} prepacked on {threads} threads"), &y, &want);
            // The unfused threaded pair gives the same bits too.
            let mut f = vec![f32::NAN; g.output_len()];
            with_threads(threads, || conv2d_forward(kern, g, &x, &w, &epi, &mut f));
            let mut p = vec![f32::NAN; out_len];
            max_pool2d_forward(&f, &mut p, pool);
            assert_bits_eq(&format!("{what} unfused on {threads} threads"), &p, &want);
        }
    }
}

fn geometry() -> impl Strategy<Value = Conv2dGeometry> {
    (
        (1usize..4, 1usize..5, prop_oneof![1usize..17, Just(32usize)]),
        (2usize..20, 2usize..20, 1usize..6, 1usize..6),
        (
            [0usize..3, 0usize..3, 0usize..3, 0usize..3],
            [1usize..3, 1usize..3],
            prop_oneof![4 => Just(1usize), 1 => Just(2usize)],
        ),
    )
        .prop_map(
            |((n, c_in, c_out), (h, w, kh, kw), (pad, dilation, stride))| Conv2dGeometry {
                pad,
                dilation,
                ..Conv2dGeometry::new(n, c_in, h, w, c_out, kh, kw).with_stride(stride)
            },
        )
        .prop_filter("a valid geometry with a 2 × 2 output", |g| {
            g.validate().is_ok() && g.out_h() >= 2 && g.out_w() >= 2
        })
}

fn steps() -> impl Strategy<Value = Vec<Option<Activation>>> {
    prop_oneof![
        Just(vec![]),
        Just(vec![None]),
        Just(vec![None, Some(Activation::Relu)]),
        Just(vec![Some(Activation::Relu)]),
        Just(vec![None, Some(Activation::Tanh)]),
        Just(vec![Some(Activation::Relu), None]),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(96))]

    #[test]
    fn fused_pooling_matches_the_unfused_kernels(
        g in geometry(),
        steps in steps(),
        (k, s, ceil) in prop_oneof![
            6 => Just((2usize, 2usize, false)),
            1 => Just((2, 2, true)),
            1 => Just((3, 2, false)),
            1 => Just((2, 1, false)),
        ],
        specials in prop::bool::weighted(0.2),
        seed in 0u64..1000,
    ) {
        let pool = window(&g, k, s, ceil);
        prop_assume!(pool.pool.validate().is_ok());
        check(&g, pool, &steps, specials, seed);
    }
}

#[test]
fn lenet_layers_pool_in_registers_where_the_variant_can() {
    // C1 (position lanes, 14 × 14 windows) and C3 (channel lanes, 5 × 5),
    // at batch 1 and 3, with LeNet's bias and ReLU.
    let c1 = Conv2dGeometry::new(1, 1, 32, 32, 6, 5, 5);
    let c3 = Conv2dGeometry::new(1, 6, 14, 14, 16, 5, 5);
    let relu = [None, Some(Activation::Relu)];
    for g in [
        c1,
        c3,
        Conv2dGeometry { n: 3, ..c1 },
        Conv2dGeometry { n: 3, ..c3 },
    ] {
        let pool = window(&g, 2, 2, false);
        let bias = vec![0.0; g.c_out];
        let epi = [
            ConvEpilogue::Bias(&bias),
            ConvEpilogue::Activation(Activation::Relu),
        ];
        let best = dispatch::variants()[0];
        if best.conv_pool_positions.is_some() {
            assert!(
                fuses_pool(best, &g, pool, &epi),
                "{g:?} should pool in registers"
            );
        }
        check(&g, pool, &relu, false, g.c_in as u64);
    }
}

#[test]
fn fused_pooling_matches_the_reference() {
    // The pooled values themselves, against the f64 convolution followed
    // by the reference pooling.
    let g = Conv2dGeometry {
        pad: [1, 2, 0, 1],
        ..Conv2dGeometry::new(2, 3, 11, 13, 7, 3, 4)
    };
    let pool = window(&g, 2, 2, false);
    let x = uniform(5, g.input_len(), -1.0, 1.0);
    let w = uniform(6, g.weight_len(), -1.0, 1.0);
    let conv = reference::conv::conv2d_forward(&g, &x, &w, None);
    let out_len = conv2d_pool_output_len(&g, pool);
    let (mut want, mut arg) = (vec![0.0f32; out_len], vec![0u32; out_len]);
    reference::pool::max_pool2d_forward(&conv, &mut want, &mut arg, pool);
    for kern in dispatch::variants() {
        let mut y = vec![f32::NAN; out_len];
        conv2d_pool_forward(kern, &g, pool, &x, &w, &[], &mut y);
        let taps = (g.c_in * g.kh * g.kw) as f32;
        assert_close(kern.name, &y, &want, 1e-5, 4.0 * f32::EPSILON * taps);
    }
}

#[test]
fn a_lone_nan_is_pooled_as_the_pooling_kernel_pools_it() {
    // One NaN input: the windows it partly reaches hold NaN in some members
    // and numbers in others, and the pooling kernel's comparison order
    // decides which wins.
    for (g, at) in [
        (Conv2dGeometry::new(1, 1, 12, 12, 3, 3, 3), 37),
        (Conv2dGeometry::new(1, 2, 9, 9, 16, 3, 3), 50),
    ] {
        let pool = window(&g, 2, 2, false);
        for kern in dispatch::variants() {
            let mut x = uniform(1, g.input_len(), -1.0, 1.0);
            x[at] = f32::NAN;
            let w = uniform(2, g.weight_len(), 0.5, 1.0);
            let mut full = vec![0.0; g.output_len()];
            conv2d_forward(kern, &g, &x, &w, &[], &mut full);
            let mut want = vec![0.0; conv2d_pool_output_len(&g, pool)];
            max_pool2d_forward(&full, &mut want, pool);
            assert!(want.iter().any(|v| v.is_nan()) && want.iter().any(|v| !v.is_nan()));
            let mut y = vec![0.0; want.len()];
            conv2d_pool_forward(kern, &g, pool, &x, &w, &[], &mut y);
            assert_bits_eq(&format!("{} {g:?}", kern.name), &y, &want);
        }
    }
}
