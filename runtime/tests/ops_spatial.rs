//! Pooling, upsampling and pixel shuffle: fast kernels against the
//! references over random geometries (odd sizes, batch 1, every window,
//! stride and padding the geometry allows), the references' backward rules
//! against central finite differences in f64, geometry errors, and
//! 1-vs-2-thread bit-identity.

mod ops_util;

use kiln_runtime::kernels::pool::{self as fast, Pool2d, PoolError, PoolWindows};
use kiln_runtime::kernels::upsample::{self as fast_up, PixelShuffle, Upsample};
use kiln_runtime::reference::pool as reference;
use kiln_runtime::reference::upsample as reference_up;
use ops_util::*;
use proptest::prelude::*;

/// Average-pooling tolerance: an f32 window sum against an f64 one.
const RTOL: f32 = 1e-5;
const ATOL: f32 = 1e-6;

/// Checks every pooling kernel on geometry `g` (floor or ceil mode) against
/// the reference.
fn check_pool(g: impl Into<PoolWindows>, seed: u64) {
    let g: PoolWindows = g.into();
    let x = uniform(seed, g.input_len(), -3.0, 3.0);
    let dy = uniform(seed + 1, g.output_len(), -1.0, 1.0);
    check_max_pool(g, &x, &dy);
    // Few distinct values: many ties, which must go to the first maximum in
    // row-major window order in every code path.
    let ties: Vec<f32> = x.iter().map(|v| v.round().clamp(-1.0, 1.0)).collect();
    check_max_pool(g, &ties, &dy);
    let (il, ol) = (g.input_len(), g.output_len());
    for count_pad in [false, true] {
        let what = format!("avg pool count_pad={count_pad} {g:?}");
        let (mut y, mut want) = (vec![0.0; ol], vec![0.0; ol]);
        fast::avg_pool2d_forward(&x, &mut y, g, count_pad);
        reference::avg_pool2d_forward(&x, &mut want, g, count_pad);
        assert_close(&what, &y, &want, RTOL, ATOL);
        let (mut dx, mut want_dx) = (vec![5.0; il], vec![0.0; il]);
        fast::avg_pool2d_backward(&dy, &mut dx, g, count_pad);
        reference::avg_pool2d_backward(&dy, &mut want_dx, g, count_pad);
        assert_close(&format!("{what} backward"), &dx, &want_dx, RTOL, ATOL);
    }
}

/// Checks max pooling (values, argmax, backward, and the forward without
/// indices) on `x` against the reference.
fn check_max_pool(g: PoolWindows, x: &[f32], dy: &[f32]) {
    let (il, ol) = (g.input_len(), g.output_len());
    let (mut y, mut idx) = (vec![0.0; ol], vec![0u32; ol]);
    let (mut want, mut want_idx) = (vec![0.0; ol], vec![0u32; ol]);
    fast::max_pool2d_forward_with_indices(x, &mut y, &mut idx, g);
    reference::max_pool2d_forward(x, &mut want, &mut want_idx, g);
    assert_bits_eq(&format!("max pool {g:?}"), &y, &want);
    assert_eq!(idx, want_idx, "max pool argmax {g:?}");
    let mut plain = vec![0.0; ol];
    fast::max_pool2d_forward(x, &mut plain, g);
    assert_bits_eq("max pool without indices", &plain, &want);
    let (mut dx, mut want_dx) = (vec![5.0; il], vec![0.0; il]);
    fast::max_pool2d_backward(dy, &idx, &mut dx, g);
    reference::max_pool2d_backward(dy, &want_idx, &mut want_dx, g);
    assert_bits_eq(&format!("max pool backward {g:?}"), &dx, &want_dx);
}

/// Checks global average pooling on `planes × spatial` against the reference.
fn check_global_avg(planes: usize, spatial: usize, seed: u64) {
    let x = uniform(seed, planes * spatial, -3.0, 3.0);
    let dy = uniform(seed + 1, planes, -1.0, 1.0);
    let (mut y, mut want) = (vec![0.0; planes], vec![0.0; planes]);
    fast::global_avg_pool_forward(&x, &mut y, planes, spatial);
    reference::global_avg_pool_forward(&x, &mut want, planes, spatial);
    assert_close("global avg pool", &y, &want, RTOL, ATOL);
    let (mut dx, mut want_dx) = (vec![0.0; x.len()], vec![0.0; x.len()]);
    fast::global_avg_pool_backward(&dy, &mut dx, planes, spatial);
    reference::global_avg_pool_backward(&dy, &mut want_dx, planes, spatial);
    assert_close("global avg pool backward", &dx, &want_dx, RTOL, ATOL);
}

/// Checks both upsampling modes on `g` against the reference.
fn check_upsample(g: Upsample, seed: u64) {
    let x = uniform(seed, g.input_len(), -3.0, 3.0);
    let dy = uniform(seed + 1, g.output_len(), -1.0, 1.0);
    let (il, ol) = (g.input_len(), g.output_len());
    let (mut y, mut want) = (vec![7.0; ol], vec![0.0; ol]);
    fast_up::upsample_nearest_forward(&x, &mut y, g);
    reference_up::upsample_nearest_forward(&x, &mut want, g);
    assert_bits_eq(&format!("nearest {g:?}"), &y, &want);
    let (mut dx, mut want_dx) = (vec![7.0; il], vec![0.0; il]);
    fast_up::upsample_nearest_backward(&dy, &mut dx, g);
    reference_up::upsample_nearest_backward(&dy, &mut want_dx, g);
    assert_close(
        &format!("nearest backward {g:?}"),
        &dx,
        &want_dx,
        RTOL,
        ATOL,
    );
    let (mut y, mut want) = (vec![7.0; ol], vec![0.0; ol]);
    fast_up::upsample_zeros_forward(&x, &mut y, g);
    reference_up::upsample_zeros_forward(&x, &mut want, g);
    assert_bits_eq(&format!("zeros {g:?}"), &y, &want);
    let (mut dx, mut want_dx) = (vec![7.0; il], vec![0.0; il]);
    fast_up::upsample_zeros_backward(&dy, &mut dx, g);
    reference_up::upsample_zeros_backward(&dy, &mut want_dx, g);
    assert_bits_eq(&format!("zeros backward {g:?}"), &dx, &want_dx);
}

/// Checks pixel shuffle and unshuffle on `g` against the reference, and
/// that unshuffle inverts shuffle.
fn check_pixel_shuffle(g: PixelShuffle, seed: u64) {
    let x = uniform(seed, g.len(), -3.0, 3.0);
    let (mut y, mut want) = (vec![0.0; g.len()], vec![0.0; g.len()]);
    fast_up::pixel_shuffle(&x, &mut y, g);
    reference_up::pixel_shuffle(&x, &mut want, g);
    assert_bits_eq(&format!("pixel shuffle {g:?}"), &y, &want);
    let (mut back, mut want_back) = (vec![0.0; g.len()], vec![0.0; g.len()]);
    fast_up::pixel_unshuffle(&y, &mut back, g);
    reference_up::pixel_unshuffle(&y, &mut want_back, g);
    assert_bits_eq("pixel unshuffle", &back, &want_back);
    assert_bits_eq("unshuffle inverts shuffle", &back, &x);
}

/// A valid pooling geometry: padding at most half the window, window no
/// larger than the padded input.
fn geometry() -> impl Strategy<Value = Pool2d> {
    (
        1usize..3,
        1usize..4,
        1usize..12,
        1usize..12,
        1usize..5,
        1usize..5,
        1usize..4,
        1usize..4,
    )
        .prop_flat_map(|(n, c, h, w, kh, kw, sh, sw)| {
            (Just((n, c, h, w, kh, kw, sh, sw)), 0..=kh / 2, 0..=kw / 2)
        })
        .prop_map(|((n, c, h, w, kh, kw, sh, sw), ph, pw)| Pool2d {
            n,
            c,
            h: h.max(kh),
            w: w.max(kw),
            kh,
            kw,
            sh,
            sw,
            ph,
            pw,
        })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(96))]

    #[test]
    fn pooling_matches_reference(g in geometry(), seed: u64) {
        prop_assert!(g.validate().is_ok());
        check_pool(g, seed);
    }

    #[test]
    fn ceil_mode_pooling_matches_reference(g in geometry(), seed: u64) {
        check_pool(g.ceil_mode(true), seed);
    }

    #[test]
    fn ceil_mode_two_by_two_matches_reference(n in 1usize..3, c in 1usize..4, h in 2usize..15, w in 2usize..15, seed: u64) {
        // Odd sides leave a one-column last window, which leaves the fast
        // path; even sides keep it.
        check_pool(Pool2d::square(n, c, h, w, 2, 2, 0).ceil_mode(true), seed);
    }

    #[test]
    fn two_by_two_pooling_matches_reference(n in 1usize..3, c in 1usize..4, h in 2usize..15, w in 2usize..15, seed: u64) {
        // The 2×2 stride-2 fast path, odd sizes included (the last row or
        // column is then dropped).
        check_pool(Pool2d::square(n, c, h, w, 2, 2, 0), seed);
    }

    #[test]
    fn three_by_three_pooling_matches_reference(n in 1usize..3, c in 1usize..3, h in 3usize..15, w in 3usize..15, s in 1usize..4, p in 0usize..2, seed: u64) {
        // The unrolled 3×3 loop inside, the general one at clipped edges
        // (ResNet's stem pool is 3×3, stride 2, padding 1).
        check_pool(Pool2d::square(n, c, h, w, 3, s, p), seed);
    }

    #[test]
    fn global_avg_pool_matches_reference(planes in 1usize..20, spatial in 1usize..80, seed: u64) {
        check_global_avg(planes, spatial, seed);
    }

    #[test]
    fn upsampling_matches_reference(planes in 1usize..5, h in 1usize..9, w in 1usize..9, scale in 1usize..4, seed: u64) {
        check_upsample(Upsample { planes, h, w, scale }, seed);
    }

    #[test]
    fn pixel_shuffle_matches_reference(n in 1usize..3, c in 1usize..4, h in 1usize..7, w in 1usize..7, r in 1usize..4, seed: u64) {
        check_pixel_shuffle(PixelShuffle { n, c, h, w, r }, seed);
    }
}

/// Checks a reference backward `dx = back(dy)` of a linear-or-piecewise
/// forward against finite differences of `Σ dy·forward(x)`.
fn gradcheck_op(
    what: &str,
    x: &[f64],
    out_len: usize,
    forward: impl Fn(&[f64]) -> Vec<f64>,
    backward: impl Fn(&[f64]) -> Vec<f64>,
) {
    let g = uniform64(99, out_len, -1.0, 1.0);
    let dx = backward(&g);
    gradcheck(what, x, &dx, 1e-6, |x| weighted_sum(&g, &forward(x)));
}

#[test]
fn reference_pool_backward_matches_finite_differences() {
    for g in [
        Pool2d::square(1, 2, 7, 6, 3, 2, 1).ceil_mode(false),
        Pool2d::square(2, 1, 5, 5, 2, 1, 0).ceil_mode(false),
        // Ceil mode with partial last windows: 4 → 3 (k 3, s 2, p 1) and
        // 7 → 3 (k 3, s 3, p 1, the last window starting in the input).
        Pool2d::square(1, 2, 4, 4, 3, 2, 1).ceil_mode(true),
        Pool2d::square(1, 1, 7, 5, 3, 3, 1).ceil_mode(true),
        Pool2d::square(2, 1, 5, 5, 2, 2, 0).ceil_mode(true),
    ] {
        let x = uniform64(3, g.input_len(), -2.0, 2.0);
        let ol = g.output_len();
        gradcheck_op(
            "max pool",
            &x,
            ol,
            |x| {
                let (mut y, mut i) = (vec![0.0; ol], vec![0u32; ol]);
                reference::max_pool2d_forward(x, &mut y, &mut i, g);
                y
            },
            |dy| {
                let (mut y, mut i) = (vec![0.0; ol], vec![0u32; ol]);
                reference::max_pool2d_forward(&x, &mut y, &mut i, g);
                let mut dx = vec![0.0; x.len()];
                reference::max_pool2d_backward(dy, &i, &mut dx, g);
                dx
            },
        );
        for count_pad in [false, true] {
            gradcheck_op(
                "avg pool",
                &x,
                ol,
                |x| {
                    let mut y = vec![0.0; ol];
                    reference::avg_pool2d_forward(x, &mut y, g, count_pad);
                    y
                },
                |dy| {
                    let mut dx = vec![0.0; x.len()];
                    reference::avg_pool2d_backward(dy, &mut dx, g, count_pad);
                    dx
                },
            );
        }
    }
    let x = uniform64(4, 3 * 10, -2.0, 2.0);
    gradcheck_op(
        "global avg pool",
        &x,
        3,
        |x| {
            let mut y = vec![0.0; 3];
            reference::global_avg_pool_forward(x, &mut y, 3, 10);
            y
        },
        |dy| {
            let mut dx = vec![0.0; 30];
            reference::global_avg_pool_backward(dy, &mut dx, 3, 10);
            dx
        },
    );
}

#[test]
fn reference_upsample_backward_matches_finite_differences() {
    let g = Upsample {
        planes: 2,
        h: 3,
        w: 4,
        scale: 2,
    };
    let x = uniform64(5, g.input_len(), -2.0, 2.0);
    let ol = g.output_len();
    for zeros in [false, true] {
        gradcheck_op(
            if zeros {
                "upsample zeros"
            } else {
                "upsample nearest"
            },
            &x,
            ol,
            |x| {
                let mut y = vec![0.0; ol];
                if zeros {
                    reference_up::upsample_zeros_forward(x, &mut y, g);
                } else {
                    reference_up::upsample_nearest_forward(x, &mut y, g);
                }
                y
            },
            |dy| {
                let mut dx = vec![0.0; x.len()];
                if zeros {
                    reference_up::upsample_zeros_backward(dy, &mut dx, g);
                } else {
                    reference_up::upsample_nearest_backward(dy, &mut dx, g);
                }
                dx
            },
        );
    }
    let p = PixelShuffle {
        n: 2,
        c: 2,
        h: 2,
        w: 3,
        r: 2,
    };
    let x = uniform64(6, p.len(), -2.0, 2.0);
    gradcheck_op(
        "pixel shuffle",
        &x,
        p.len(),
        |x| {
            let mut y = vec![0.0; p.len()];
            reference_up::pixel_shuffle(x, &mut y, p);
            y
        },
        |dy| {
            let mut dx = vec![0.0; p.len()];
            reference_up::pixel_unshuffle(dy, &mut dx, p);
            dx
        },
    );
}

#[test]
fn invalid_pool_geometries_are_errors() {
    let check = |g: Pool2d, expect: &str| {
        let got = g.validate().map_err(|e| e.to_string());
        assert_eq!(got, Err(expect.to_string()), "{g:?}");
    };
    check(
        Pool2d::square(1, 1, 4, 4, 0, 1, 0),
        "pooling window and stride must be positive",
    );
    check(
        Pool2d::square(1, 1, 4, 4, 3, 1, 2),
        "pooling padding 2 along the height is more than half the window 3",
    );
    check(
        Pool2d::square(1, 1, 2, 9, 5, 1, 1),
        "pooling window 5 along the height is larger than the padded input 4",
    );
    assert_eq!(
        Pool2d::square(1, 1, 9, 2, 5, 1, 1).validate(),
        Err(PoolError::WindowLargerThanInput {
            axis: "width",
            window: 5,
            padded: 4
        })
    );
    let lenet = Pool2d::square(1, 6, 28, 28, 2, 2, 0);
    assert_eq!((lenet.out_h(), lenet.out_w()), (14, 14));
    let resnet = Pool2d::square(1, 64, 112, 112, 3, 2, 1);
    assert_eq!((resnet.out_h(), resnet.out_w()), (56, 56));
}

#[test]
fn spatial_kernels_are_bit_identical_on_one_and_two_threads() {
    let g = Pool2d::square(4, 16, 64, 64, 3, 2, 1);
    let x = uniform(7, g.input_len(), -3.0, 3.0);
    let dy = uniform(8, g.output_len(), -1.0, 1.0);
    let up = Upsample {
        planes: 64,
        h: 64,
        w: 64,
        scale: 2,
    };
    let ps = PixelShuffle {
        n: 4,
        c: 4,
        h: 64,
        w: 64,
        r: 2,
    };
    let up_dy = uniform(9, up.output_len(), -1.0, 1.0);
    let run = || {
        let (il, ol) = (g.input_len(), g.output_len());
        let (mut y, mut idx, mut dx) = (vec![0.0; ol], vec![0u32; ol], vec![0.0; il]);
        fast::max_pool2d_forward_with_indices(&x, &mut y, &mut idx, g);
        fast::max_pool2d_backward(&dy, &idx, &mut dx, g);
        let (mut a, mut adx) = (vec![0.0; ol], vec![0.0; il]);
        fast::avg_pool2d_forward(&x, &mut a, g, false);
        fast::avg_pool2d_backward(&dy, &mut adx, g, true);
        let (mut gap, mut gdx) = (vec![0.0; 64], vec![0.0; il]);
        fast::global_avg_pool_forward(&x, &mut gap, 64, 64 * 64);
        fast::global_avg_pool_backward(&gap, &mut gdx, 64, 64 * 64);
        let (mut u, mut udx) = (vec![0.0; up.output_len()], vec![0.0; il]);
        fast_up::upsample_nearest_forward(&x, &mut u, up);
        fast_up::upsample_nearest_backward(&up_dy, &mut udx, up);
        let (mut s, mut sdx) = (vec![0.0; ps.len()], vec![0.0; ps.len()]);
        fast_up::pixel_shuffle(&x, &mut s, ps);
        fast_up::pixel_unshuffle(&s, &mut sdx, ps);
        [y, dx, a, adx, gap, gdx, u, udx, s, sdx]
    };
    let one = with_threads(1, run);
    let two = with_threads(2, run);
    for (i, (a, b)) in one.iter().zip(&two).enumerate() {
        assert_bits_eq(&format!("output {i}"), a, b);
    }
}

/// Checks the output size of a square pooling (`k`, `s`, `p`) on a side of
/// `size` in floor and ceil mode.
fn check_out_size((size, k, s, p): (usize, usize, usize, usize), (floor, ceil): (usize, usize)) {
    let g = Pool2d::square(1, 1, size, size, k, s, p);
    let what = format!("side {size}, window {k}, stride {s}, padding {p}");
    assert_eq!(g.ceil_mode(false).out_h(), floor, "floor mode, {what}");
    assert_eq!(g.out_w(), floor, "Pool2d's own size, {what}");
    assert_eq!(g.ceil_mode(true).out_h(), ceil, "ceil mode, {what}");
    assert_eq!(g.ceil_mode(true).out_w(), ceil, "ceil mode width, {what}");
}

#[test]
fn ceil_mode_output_sizes_follow_pytorch() {
    // PyTorch: ⌈(size + 2p − k) / s⌉ + 1, less one when the last window
    // would start at or past size + p.
    check_out_size((112, 3, 2, 0), (55, 56)); // GoogLeNet's first pool
    check_out_size((56, 3, 2, 0), (27, 28));
    check_out_size((14, 2, 2, 0), (7, 7)); // exact fit: no extra window
    check_out_size((5, 2, 2, 0), (2, 3));
    check_out_size((4, 3, 2, 1), (2, 3));
    check_out_size((4, 2, 3, 1), (2, 2)); // the window at 6 would start past 4 + 1
    check_out_size((7, 3, 3, 1), (3, 3));
    check_out_size((8, 3, 3, 1), (3, 3)); // the window at 9 would start at 8 + 1
    check_out_size((9, 3, 3, 1), (3, 4));
}

/// Checks average pooling of a 4×4 plane of ones (window 3, stride 2,
/// padding 1, ceil mode) against the expected 3×3 output.
fn check_ceil_avg_of_ones(count_pad: bool, expect: [[f64; 3]; 3]) {
    let g = Pool2d::square(1, 1, 4, 4, 3, 2, 1).ceil_mode(true);
    let x = vec![1.0f32; 16];
    let mut y = vec![0.0f32; g.output_len()];
    let mut want = vec![0.0f64; g.output_len()];
    fast::avg_pool2d_forward(&x, &mut y, g, count_pad);
    reference::avg_pool2d_forward(&[1.0f64; 16], &mut want, g, count_pad);
    let expect: Vec<f64> = expect.iter().flatten().copied().collect();
    for (i, ((&v, &r), &e)) in y.iter().zip(&want).zip(&expect).enumerate() {
        assert!(
            (v as f64 - e).abs() < 1e-6 && (r - e).abs() < 1e-12,
            "count_pad={count_pad}, output {i}: kernel {v}, reference {r}, expected {e}"
        );
    }
}

#[test]
fn ceil_mode_average_divisors_follow_pytorch() {
    // PyTorch's avg_pool2d: the count_pad divisor is the window clipped to
    // the padded input, so the last (partial) window divides by 3·2 or 2·2.
    check_ceil_avg_of_ones(
        true,
        [
            [4.0 / 9.0, 6.0 / 9.0, 2.0 / 6.0],
            [6.0 / 9.0, 1.0, 3.0 / 6.0],
            [2.0 / 6.0, 3.0 / 6.0, 1.0 / 4.0],
        ],
    );
    check_ceil_avg_of_ones(false, [[1.0; 3]; 3]);
}
