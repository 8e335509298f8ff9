//! The fast convolution kernels of every dispatch variant against the f64
//! reference over random geometries (every stride, padding, dilation and
//! group combination, batch 1, odd sizes, every epilogue); the references'
//! gradients against central finite differences; and the same bits with one
//! and two threads.

use kiln_runtime::activation::Activation;
use kiln_runtime::kernels::conv::{
    Conv2dGeometry, ConvEpilogue, conv_transpose2d_backward_bias, conv_transpose2d_backward_data,
    conv_transpose2d_backward_weight, conv_transpose2d_forward, conv_transpose2d_forward_serial,
    conv2d_backward_bias, conv2d_backward_data, conv2d_backward_data_serial,
    conv2d_backward_scratch_len, conv2d_backward_weight, conv2d_backward_weight_serial,
    conv2d_forward, conv2d_forward_prepacked, conv2d_forward_prepacked_scratch_len,
    conv2d_forward_prepacked_serial, conv2d_forward_scratch_len, conv2d_forward_serial,
    conv2d_pack_weights, conv2d_packed_weights_len,
};
use kiln_runtime::kernels::dispatch;
use kiln_runtime::reference::conv as r;
use proptest::prelude::*;

fn values(len: usize, seed: u64) -> Vec<f32> {
    let mut s = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    (0..len)
        .map(|_| {
            s ^= s << 13;
            s ^= s >> 7;
            s ^= s << 17;
            ((s >> 40) as f32 / (1u64 << 24) as f32) * 2.0 - 1.0
        })
        .collect()
}

fn abs(v: &[f32]) -> Vec<f32> {
    v.iter().map(|x| x.abs()).collect()
}

/// Asserts `got` matches `expect` within `16·ε·(1 + bound)` per element.
fn close(what: &str, kern: &str, got: &[f32], expect: &[f32], bound: &[f32], g: &Conv2dGeometry) {
    assert_eq!(got.len(), expect.len(), "{what}: length");
    for i in 0..got.len() {
        let tol = 16.0 * f32::EPSILON * 8.0 * (1.0 + bound[i]);
        assert!(
            (got[i] - expect[i]).abs() <= tol,
            "{kern}: {what}[{i}] = {}, reference {} (tol {tol}) for {g:?}",
            got[i],
            expect[i]
        );
    }
}

fn same_bits(what: &str, a: &[f32], b: &[f32], g: &Conv2dGeometry) {
    assert!(
        a.iter().zip(b).all(|(x, y)| x.to_bits() == y.to_bits()),
        "{what}: serial and threaded results differ for {g:?}"
    );
}

/// Runs every convolution kernel of every variant on geometry `g` with the
/// forward epilogue `(bias?, scale, activation, residual?)` and compares with
/// the reference.
fn check(
    g: &Conv2dGeometry,
    with_bias: bool,
    act: Activation,
    scale: f32,
    residual: bool,
    seed: u64,
) {
    g.validate().expect("test geometry is valid");
    let x = values(g.input_len(), seed);
    let w = values(g.weight_len(), seed + 1);
    let bias = values(g.c_out, seed + 2);
    let dy = values(g.output_len(), seed + 3);
    let res = values(g.output_len(), seed + 4);
    let dx_t = values(g.input_len(), seed + 5);

    // Forward: reference product, then the epilogue in order.
    let mut expect = r::conv2d_forward(g, &x, &w, with_bias.then_some(&bias[..]));
    let bound = r::conv2d_forward(g, &abs(&x), &abs(&w), with_bias.then_some(&abs(&bias)[..]));
    for (i, v) in expect.iter_mut().enumerate() {
        *v = act.apply(*v * scale);
        if residual {
            *v += res[i];
        }
    }
    let bound: Vec<f32> = bound.iter().map(|b| b * scale.abs() * 2.0 + 1.0).collect();
    let mut epi = Vec::new();
    if with_bias {
        epi.push(ConvEpilogue::Bias(&bias));
    }
    epi.push(ConvEpilogue::Scale(scale));
    epi.push(ConvEpilogue::Activation(act));
    if residual {
        epi.push(ConvEpilogue::Residual(&res));
    }
    let dx_ref = r::conv2d_backward_data(g, &w, &dy);
    let dx_bound = r::conv2d_backward_data(g, &abs(&w), &abs(&dy));
    let dw_ref = r::conv2d_backward_weight(g, &x, &dy);
    let dw_bound = r::conv2d_backward_weight(g, &abs(&x), &abs(&dy));
    let db_ref = r::conv2d_backward_bias(g, &dy);
    let db_bound = r::conv2d_backward_bias(g, &abs(&dy));
    let bias_in = values(g.c_in, seed + 6);
    let yt_ref = r::conv_transpose2d_forward(g, &dy, &w, Some(&bias_in));
    let yt_bound: Vec<f32> = dx_bound.iter().map(|b| b + 1.0).collect();
    let dxt_ref = r::conv_transpose2d_backward_data(g, &w, &dx_t);
    let dxt_bound = r::conv_transpose2d_backward_data(g, &abs(&w), &abs(&dx_t));
    let dwt_ref = r::conv_transpose2d_backward_weight(g, &dy, &dx_t);
    let dwt_bound = r::conv_transpose2d_backward_weight(g, &abs(&dy), &abs(&dx_t));
    let dbt_ref = r::conv_transpose2d_backward_bias(g, &dx_t);
    let dbt_bound = r::conv_transpose2d_backward_bias(g, &abs(&dx_t));

    for kern in dispatch::variants() {
        let name = kern.name;
        let mut scratch = vec![f32::NAN; conv2d_forward_scratch_len(kern, g)];
        let mut y = vec![f32::NAN; g.output_len()];
        conv2d_forward_serial(kern, g, &x, &w, &epi, &mut y, &mut scratch);
        close("forward", name, &y, &expect, &bound, g);
        let mut yt = vec![f32::NAN; g.output_len()];
        conv2d_forward(kern, g, &x, &w, &epi, &mut yt);
        same_bits("forward", &y, &yt, g);
        // Weights packed once in advance give the same bits.
        let mut packed = vec![f32::NAN; conv2d_packed_weights_len(kern, g)];
        conv2d_pack_weights(kern, g, &w, &mut packed);
        let mut pre_scratch = vec![f32::NAN; conv2d_forward_prepacked_scratch_len(kern, g)];
        let mut yp = vec![f32::NAN; g.output_len()];
        conv2d_forward_prepacked_serial(kern, g, &x, &packed, &epi, &mut yp, &mut pre_scratch);
        same_bits("prepacked forward", &y, &yp, g);
        let mut ypt = vec![f32::NAN; g.output_len()];
        conv2d_forward_prepacked(kern, g, &x, &packed, &epi, &mut ypt);
        same_bits("prepacked threaded forward", &y, &ypt, g);

        let mut scratch = vec![f32::NAN; conv2d_backward_scratch_len(kern, g)];
        let mut dx = vec![f32::NAN; g.input_len()];
        conv2d_backward_data_serial(kern, g, &w, &dy, &mut dx, &mut scratch);
        close("backward-data", name, &dx, &dx_ref, &dx_bound, g);
        let mut dxt = vec![f32::NAN; g.input_len()];
        conv2d_backward_data(kern, g, &w, &dy, &mut dxt);
        same_bits("backward-data", &dx, &dxt, g);

        let mut dw = vec![f32::NAN; g.weight_len()];
        conv2d_backward_weight_serial(kern, g, &x, &dy, &mut dw, false, &mut scratch);
        close("backward-weight", name, &dw, &dw_ref, &dw_bound, g);
        let mut dwt = vec![f32::NAN; g.weight_len()];
        conv2d_backward_weight(kern, g, &x, &dy, &mut dwt, false);
        same_bits("backward-weight", &dw, &dwt, g);
        // Accumulating adds the same gradient again.
        conv2d_backward_weight(kern, g, &x, &dy, &mut dwt, true);
        let twice: Vec<f32> = dw_ref.iter().map(|v| 2.0 * v).collect();
        let twice_bound: Vec<f32> = dw_bound.iter().map(|v| 2.0 * v).collect();
        close(
            "backward-weight (accumulated)",
            name,
            &dwt,
            &twice,
            &twice_bound,
            g,
        );

        let mut db = vec![f32::NAN; g.c_out];
        conv2d_backward_bias(g, &dy, &mut db, false);
        close("backward-bias", name, &db, &db_ref, &db_bound, g);

        let mut y_t = vec![f32::NAN; g.input_len()];
        conv_transpose2d_forward_serial(kern, g, &dy, &w, Some(&bias_in), &mut y_t, &mut scratch);
        close("transposed forward", name, &y_t, &yt_ref, &yt_bound, g);
        let mut y_tt = vec![f32::NAN; g.input_len()];
        conv_transpose2d_forward(kern, g, &dy, &w, Some(&bias_in), &mut y_tt);
        same_bits("transposed forward", &y_t, &y_tt, g);
        let mut dxt_ = vec![f32::NAN; g.output_len()];
        conv_transpose2d_backward_data(kern, g, &w, &dx_t, &mut dxt_);
        close(
            "transposed backward-data",
            name,
            &dxt_,
            &dxt_ref,
            &dxt_bound,
            g,
        );
        let mut dwt_ = vec![f32::NAN; g.weight_len()];
        conv_transpose2d_backward_weight(kern, g, &dy, &dx_t, &mut dwt_, false);
        close(
            "transposed backward-weight",
            name,
            &dwt_,
            &dwt_ref,
            &dwt_bound,
            g,
        );
        let mut dbt = vec![f32::NAN; g.c_in];
        conv_transpose2d_backward_bias(g, &dx_t, &mut dbt, false);
        close(
            "transposed backward-bias",
            name,
            &dbt,
            &dbt_ref,
            &dbt_bound,
            g,
        );
    }
}

fn activation() -> impl Strategy<Value = Activation> {
    prop_oneof![
        Just(Activation::Identity),
        Just(Activation::Relu),
        Just(Activation::LeakyRelu(0.1)),
        Just(Activation::Elu(1.0)),
        Just(Activation::Selu),
        Just(Activation::Sigmoid),
        Just(Activation::Tanh),
        Just(Activation::Swish),
    ]
}

fn geometry() -> impl Strategy<Value = Conv2dGeometry> {
    (
        (1usize..4, 1usize..4, 1usize..5, 1usize..5),
        (1usize..13, 1usize..13, 1usize..5, 1usize..5),
        (
            [1usize..4, 1usize..4],
            [0usize..3, 0usize..3, 0usize..3, 0usize..3],
            [1usize..3, 1usize..3],
        ),
    )
        .prop_map(
            |((n, groups, cig, cog), (h, w, kh, kw), (stride, pad, dilation))| Conv2dGeometry {
                n,
                c_in: groups * cig,
                h,
                w,
                c_out: groups * cog,
                kh,
                kw,
                stride,
                pad,
                dilation,
                groups,
            },
        )
        .prop_filter("a valid geometry", |g| g.validate().is_ok())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 128, ..ProptestConfig::default() })]

    #[test]
    fn conv_matches_reference(
        g in geometry(),
        with_bias in any::<bool>(),
        act in activation(),
        scale in prop_oneof![Just(1.0f32), -2.0f32..2.0],
        residual in any::<bool>(),
        seed in any::<u64>(),
    ) {
        check(&g, with_bias, act, scale, residual, seed);
    }
}

#[test]
fn conv_fixed_geometries() {
    let base = Conv2dGeometry::new(1, 1, 1, 1, 1, 1, 1);
    let cases = [
        // LeNet-5's layers (the direct kernel).
        Conv2dGeometry::new(2, 1, 32, 32, 6, 5, 5),
        Conv2dGeometry::new(1, 6, 14, 14, 16, 5, 5),
        // 1×1 stride 1 (plain GEMM) and 1×1 stride 2 (a ResNet projection).
        Conv2dGeometry::new(2, 24, 7, 9, 20, 1, 1),
        Conv2dGeometry::new(1, 24, 14, 14, 40, 1, 1).with_stride(2),
        // 3×3 stride 1 through im2col (too many channels for the direct kernel).
        Conv2dGeometry::new(2, 20, 9, 8, 24, 3, 3).with_pad(1),
        // A depth beyond one packed block (360 > KC) with rows across panels.
        Conv2dGeometry::new(1, 40, 9, 11, 20, 3, 3).with_pad(1),
        // A 7×7 stride-2 stem, a depthwise and a grouped dilated convolution.
        Conv2dGeometry::new(1, 3, 23, 21, 8, 7, 7)
            .with_stride(2)
            .with_pad(3),
        Conv2dGeometry::new(1, 16, 10, 10, 16, 3, 3)
            .with_pad(1)
            .with_groups(16),
        Conv2dGeometry::new(2, 12, 11, 11, 18, 3, 3)
            .with_pad(2)
            .with_dilation(2)
            .with_groups(3),
        // Planes of several column-matrix chunks in both backward passes:
        // the weight gradient transposed (fewer than 96 output channels,
        // stride 1 and 2) and not (100 channels).
        Conv2dGeometry::new(2, 3, 30, 30, 20, 3, 3).with_pad(1),
        Conv2dGeometry::new(1, 3, 61, 47, 24, 3, 3)
            .with_stride(2)
            .with_pad(1),
        Conv2dGeometry::new(1, 4, 30, 30, 100, 3, 3).with_pad(1),
        // A batch folded into the forward GEMM's columns (7 × 7 planes, 11
        // images a GEMM: two full GEMMs and a partial one) and into
        // backward-data's (5 images a GEMM: four full and a partial one),
        // and a dilated plane of 8 × 6.
        Conv2dGeometry::new(24, 6, 7, 7, 20, 3, 3).with_pad(1),
        Conv2dGeometry::new(3, 5, 10, 8, 18, 3, 2)
            .with_pad(1)
            .with_dilation(2),
        // Asymmetric padding, larger than the kernel's reach on one side.
        Conv2dGeometry {
            pad: [0, 2, 3, 1],
            ..Conv2dGeometry::new(1, 2, 6, 5, 3, 2, 3)
        },
        base,
    ];
    for (i, g) in cases.iter().enumerate() {
        check(g, i % 2 == 0, Activation::Relu, 1.0, i % 3 == 0, i as u64);
    }
}

/// Central finite differences of `Σ r·f(p)` in f64 against the reference
/// gradient for every parameter of every reference backward.
#[test]
fn reference_gradients_match_finite_differences() {
    let geoms = [
        Conv2dGeometry::new(2, 4, 5, 6, 6, 3, 2)
            .with_stride(2)
            .with_pad(1)
            .with_groups(2),
        Conv2dGeometry {
            dilation: [2, 1],
            pad: [1, 0, 2, 1],
            ..Conv2dGeometry::new(1, 3, 6, 5, 2, 2, 3)
        },
        Conv2dGeometry::new(1, 2, 4, 4, 3, 1, 1),
    ];
    for g in &geoms {
        let to64 = |v: Vec<f32>| -> Vec<f64> { v.into_iter().map(f64::from).collect() };
        let x = to64(values(g.input_len(), 1));
        let w = to64(values(g.weight_len(), 2));
        let b = to64(values(g.c_out, 3));
        let ry = to64(values(g.output_len(), 4));
        let rx = to64(values(g.input_len(), 5));
        let bt = to64(values(g.c_in, 6));
        let dot = |a: &[f64], b: &[f64]| a.iter().zip(b).map(|(x, y)| x * y).sum::<f64>();
        let fd = |p: &[f64], f: &dyn Fn(&[f64]) -> f64| -> Vec<f64> {
            let h = 1e-5;
            (0..p.len())
                .map(|i| {
                    let mut q = p.to_vec();
                    q[i] += h;
                    let up = f(&q);
                    q[i] -= 2.0 * h;
                    (up - f(&q)) / (2.0 * h)
                })
                .collect()
        };
        let agree = |what: &str, analytic: &[f64], numeric: &[f64]| {
            for (i, (a, n)) in analytic.iter().zip(numeric).enumerate() {
                assert!(
                    (a - n).abs() <= 1e-6 * (1.0 + n.abs()),
                    "{what}[{i}]: {a} vs {n} for {g:?}"
                );
            }
        };
        // Convolution: L = Σ ry · conv(x, w, b).
        let loss = |x: &[f64], w: &[f64], b: &[f64]| dot(&ry, &r::conv2d_forward(g, x, w, Some(b)));
        agree(
            "conv dx",
            &r::conv2d_backward_data(g, &w, &ry),
            &fd(&x, &|p| loss(p, &w, &b)),
        );
        agree(
            "conv dw",
            &r::conv2d_backward_weight(g, &x, &ry),
            &fd(&w, &|p| loss(&x, p, &b)),
        );
        agree(
            "conv db",
            &r::conv2d_backward_bias(g, &ry),
            &fd(&b, &|p| loss(&x, &w, p)),
        );
        // Transposed convolution: L = Σ rx · convᵀ(y, w, bt), y shaped as the output.
        let yin = to64(values(g.output_len(), 7));
        let tloss = |y: &[f64], w: &[f64], b: &[f64]| {
            dot(&rx, &r::conv_transpose2d_forward(g, y, w, Some(b)))
        };
        agree(
            "transposed dx",
            &r::conv_transpose2d_backward_data(g, &w, &rx),
            &fd(&yin, &|p| tloss(p, &w, &bt)),
        );
        agree(
            "transposed dw",
            &r::conv_transpose2d_backward_weight(g, &yin, &rx),
            &fd(&w, &|p| tloss(&yin, p, &bt)),
        );
        agree(
            "transposed db",
            &r::conv_transpose2d_backward_bias(g, &rx),
            &fd(&bt, &|p| tloss(&yin, &w, p)),
        );
    }
}

/// One and two threads give the same bits, on both the batch-parallel path
/// and the path that threads one image's GEMM.
#[test]
fn conv_thread_count_does_not_change_bits() {
    let geoms = [
        Conv2dGeometry::new(4, 16, 20, 20, 32, 3, 3).with_pad(1),
        Conv2dGeometry::new(1, 32, 24, 24, 48, 3, 3)
            .with_pad(1)
            .with_stride(2),
        Conv2dGeometry::new(8, 1, 28, 28, 6, 5, 5).with_pad(2),
        // Backward-data with 5 images a GEMM, over the batch in parallel.
        Conv2dGeometry::new(12, 40, 7, 7, 40, 3, 3).with_pad(1),
    ];
    for g in &geoms {
        let x = values(g.input_len(), 1);
        let w = values(g.weight_len(), 2);
        let b = values(g.c_out, 3);
        let dy = values(g.output_len(), 4);
        for kern in dispatch::variants() {
            let run = |threads: usize| {
                let pool = rayon::ThreadPoolBuilder::new()
                    .num_threads(threads)
                    .build()
                    .expect("thread pool");
                pool.install(|| {
                    let mut y = vec![0.0; g.output_len()];
                    conv2d_forward(
                        kern,
                        g,
                        &x,
                        &w,
                        &[
                            ConvEpilogue::Bias(&b),
                            ConvEpilogue::Activation(Activation::Relu),
                        ],
                        &mut y,
                    );
                    let mut dx = vec![0.0; g.input_len()];
                    conv2d_backward_data(kern, g, &w, &dy, &mut dx);
                    let mut dw = vec![0.0; g.weight_len()];
                    conv2d_backward_weight(kern, g, &x, &dy, &mut dw, false);
                    (y, dx, dw)
                })
            };
            let (one, two) = (run(1), run(2));
            same_bits("forward (1 vs 2 threads)", &one.0, &two.0, g);
            same_bits("backward-data (1 vs 2 threads)", &one.1, &two.1, g);
            same_bits("backward-weight (1 vs 2 threads)", &one.2, &two.2, g);
        }
    }
}

#[test]
fn invalid_geometries_are_errors_not_panics() {
    let g = Conv2dGeometry::new(1, 4, 5, 5, 6, 3, 3);
    let cases = [
        (
            g.with_groups(4),
            "groups (4) must divide input channels (4) and output channels (6)",
        ),
        (g.with_stride(0), "vertical stride must be positive"),
        (
            Conv2dGeometry::new(1, 1, 2, 2, 1, 3, 3),
            "kernel height with dilation (3) exceeds the padded input height (2)",
        ),
        (
            g.with_dilation(3),
            "kernel height with dilation (7) exceeds the padded input height (5)",
        ),
    ];
    for (geom, msg) in cases {
        let err = geom.validate().expect_err("invalid geometry").to_string();
        assert!(err.contains(msg), "{err:?} does not contain {msg:?}");
    }
}
