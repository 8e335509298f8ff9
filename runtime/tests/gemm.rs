//! The fast GEMM of every dispatch variant against the f64 reference, over
//! random shapes, transposes, strides, α/β and epilogue lists; and the same
//! result bit for bit with one and two threads, and with A stored or packed.

use kiln_runtime::activation::Activation;
use kiln_runtime::kernels::dispatch::{self, Kernels};
use kiln_runtime::kernels::gemm::{
    Epilogue, Gemm, gemm_scratch_len_with, pack_a, packed_a_len, sgemm_packed_serial_with,
    sgemm_packed_with, sgemm_serial_with, sgemm_with,
};
use kiln_runtime::reference;
use proptest::prelude::*;

/// One epilogue step, as data (the buffers it refers to are made by `check`).
#[derive(Debug, Clone, Copy)]
enum Step {
    BiasRow,
    BiasCol,
    Scale(f32),
    Act(Activation),
    Residual,
}

#[derive(Debug, Clone)]
struct Case {
    m: usize,
    n: usize,
    k: usize,
    trans_a: bool,
    trans_b: bool,
    /// Extra row stride beyond the dense one, for A, B and C.
    pad: [usize; 3],
    alpha: f32,
    beta: f32,
    steps: Vec<Step>,
    seed: u64,
}

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

/// Runs the case on every variant, serial and threaded, and compares each
/// element with the reference within a bound scaled by Σ|a·b|.
fn check(case: &Case) {
    let Case { m, n, k, .. } = *case;
    let mut g = Gemm::new(m, n, k);
    if case.trans_a {
        g = g.transpose_a();
    }
    if case.trans_b {
        g = g.transpose_b();
    }
    g.lda += case.pad[0];
    g.ldb += case.pad[1];
    g.ldc += case.pad[2];
    let g = g.scaled(case.alpha, case.beta);
    let a = values(g.a_len(), case.seed);
    let b = values(g.b_len(), case.seed + 1);
    let c0 = values(g.c_len(), case.seed + 2);
    let bias_row = values(m, case.seed + 3);
    let bias_col = values(n, case.seed + 4);
    let residual = values(m * n, case.seed + 5);
    let epilogue: Vec<Epilogue<'_>> = case
        .steps
        .iter()
        .map(|s| match *s {
            Step::BiasRow => Epilogue::BiasRow(&bias_row),
            Step::BiasCol => Epilogue::BiasCol(&bias_col),
            Step::Scale(v) => Epilogue::Scale(v),
            Step::Act(act) => Epilogue::Activation(act),
            Step::Residual => Epilogue::Residual {
                data: &residual,
                ld: n,
            },
        })
        .collect();
    let mut expect = c0.clone();
    reference::gemm::gemm(&g, &a, &b, &mut expect, &epilogue);
    let abs_a: Vec<f32> = a.iter().map(|v| v.abs()).collect();
    let abs_b: Vec<f32> = b.iter().map(|v| v.abs()).collect();
    let bound = reference::gemm::matmul(&g, &abs_a, &abs_b);
    let variants: Vec<&Kernels> = dispatch::variants();
    for kern in variants {
        let mut serial = c0.clone();
        let mut scratch = vec![f32::NAN; gemm_scratch_len_with(kern, &g)];
        sgemm_serial_with(kern, &g, &a, &b, &mut serial, &epilogue, &mut scratch);
        let mut threaded = c0.clone();
        sgemm_with(kern, &g, &a, &b, &mut threaded, &epilogue);
        // A packed in advance, serial and threaded.
        let mut packed = vec![f32::NAN; packed_a_len(kern, &g)];
        pack_a(kern, &g, &a, &mut packed);
        let mut pre = c0.clone();
        sgemm_packed_serial_with(kern, &g, &packed, &b, &mut pre, &epilogue, &mut scratch);
        let mut pre_threaded = c0.clone();
        sgemm_packed_with(kern, &g, &packed, &b, &mut pre_threaded, &epilogue);
        for i in 0..m {
            for j in 0..n {
                let at = i * g.ldc + j;
                let tol = 1e-5
                    * 16.0
                    * (1.0 + case.alpha.abs() * bound[i * n + j] + case.beta.abs() * c0[at].abs());
                let (e, s, t) = (expect[at], serial[at], threaded[at]);
                assert!(
                    (e - s).abs() <= tol,
                    "{}: C[{i},{j}] = {s}, reference {e} (tol {tol}) in {case:?}",
                    kern.name
                );
                assert_eq!(
                    s.to_bits(),
                    t.to_bits(),
                    "{}: serial and threaded differ at C[{i},{j}] in {case:?}",
                    kern.name
                );
                let (p, pt) = (pre[at], pre_threaded[at]);
                assert!(
                    (e - p).abs() <= tol,
                    "{}: prepacked C[{i},{j}] = {p}, reference {e} (tol {tol}) in {case:?}",
                    kern.name
                );
                assert_eq!(
                    p.to_bits(),
                    pt.to_bits(),
                    "{}: prepacked serial and threaded differ at C[{i},{j}] in {case:?}",
                    kern.name
                );
                // A as stored (packed block by block, or read in place by
                // the strided microkernels) and packed in advance: the same
                // products in the same order, unless one column or one row
                // takes the matrix-vector path.
                if m > 1 && n > 1 {
                    assert_eq!(
                        s.to_bits(),
                        p.to_bits(),
                        "{}: stored and prepacked A differ at C[{i},{j}] in {case:?}",
                        kern.name
                    );
                }
            }
            // Padding between rows is never written.
            for j in n..g.ldc.min(g.c_len() - i * g.ldc) {
                assert_eq!(serial[i * g.ldc + j].to_bits(), c0[i * g.ldc + j].to_bits());
            }
        }
    }
}

fn activation() -> impl Strategy<Value = Activation> {
    prop_oneof![
        Just(Activation::Identity),
        Just(Activation::Relu),
        (-0.5f32..0.5).prop_map(Activation::LeakyRelu),
        (0.1f32..2.0).prop_map(Activation::Elu),
        Just(Activation::Selu),
        Just(Activation::Sigmoid),
        Just(Activation::Tanh),
        Just(Activation::Swish),
    ]
}

fn step() -> impl Strategy<Value = Step> {
    prop_oneof![
        Just(Step::BiasRow),
        Just(Step::BiasCol),
        (-2.0f32..2.0).prop_map(Step::Scale),
        activation().prop_map(Step::Act),
        Just(Step::Residual),
    ]
}

fn dim() -> impl Strategy<Value = usize> {
    prop_oneof![1usize..8, 8usize..70, Just(1), Just(12), Just(32), Just(33)]
}

fn case() -> impl Strategy<Value = Case> {
    (
        (
            dim(),
            dim(),
            prop_oneof![1usize..40, 40usize..200, 380usize..800],
        ),
        any::<(bool, bool)>(),
        [0usize..3, 0usize..3, 0usize..3],
        prop_oneof![Just(1.0f32), -2.0f32..2.0],
        prop_oneof![Just(0.0f32), Just(1.0f32), -2.0f32..2.0],
        proptest::collection::vec(step(), 0..4),
        any::<u64>(),
    )
        .prop_map(
            |((m, n, k), (trans_a, trans_b), pad, alpha, beta, steps, seed)| Case {
                m,
                n,
                k,
                trans_a,
                trans_b,
                pad,
                alpha,
                beta,
                steps,
                seed,
            },
        )
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 96, ..ProptestConfig::default() })]

    #[test]
    fn gemm_matches_reference(case in case()) {
        check(&case);
    }
}

#[test]
fn gemm_fixed_cases() {
    let base = Case {
        m: 1,
        n: 1,
        k: 1,
        trans_a: false,
        trans_b: false,
        pad: [0; 3],
        alpha: 1.0,
        beta: 0.0,
        steps: vec![],
        seed: 7,
    };
    // Whole tiles, ragged edges, depth across blocks (the portable and NEON
    // variants block the depth by 256, AVX2 and AVX-512 by 1024), a depth
    // of zero.
    for (m, n, k) in [
        (12, 32, 384),
        (13, 33, 385),
        (12, 32, 1100),
        (13, 33, 2100),
        (100, 3, 1000),
        (3, 100, 7),
        // 64 columns (A read in place where the variant can), 65
        // (packed), a short last panel of rows.
        (37, 64, 300),
        (37, 65, 300),
        (5, 9, 0),
    ] {
        for trans_a in [false, true] {
            check(&Case {
                m,
                n,
                k,
                trans_a,
                ..base.clone()
            });
        }
    }
    // A matrix-vector product whose path once depended on the row split
    // (a padded C column), found by the property test.
    check(&Case {
        m: 9,
        n: 1,
        k: 87,
        trans_a: true,
        trans_b: true,
        pad: [1, 1, 1],
        alpha: 1.8,
        beta: 1.0,
        steps: vec![Step::Residual, Step::Residual],
        ..base.clone()
    });
    // A full epilogue on a plain product.
    check(&Case {
        m: 20,
        n: 40,
        k: 10,
        steps: vec![Step::BiasCol, Step::Act(Activation::Relu), Step::Residual],
        ..base.clone()
    });
}

/// The same call on a one-thread and a two-thread pool gives the same bits.
#[test]
fn gemm_thread_count_does_not_change_bits() {
    let (m, n, k) = (200, 150, 300);
    let g = Gemm::new(m, n, k).transpose_b().scaled(0.5, 0.5);
    let a = values(g.a_len(), 1);
    let b = values(g.b_len(), 2);
    let bias = values(m, 3);
    let epilogue = [
        Epilogue::BiasRow(&bias),
        Epilogue::Activation(Activation::Tanh),
    ];
    for kern in dispatch::variants() {
        let run = |threads: usize| {
            let pool = rayon::ThreadPoolBuilder::new()
                .num_threads(threads)
                .build()
                .expect("thread pool");
            let mut c = values(g.c_len(), 4);
            pool.install(|| sgemm_with(kern, &g, &a, &b, &mut c, &epilogue));
            c
        };
        let (one, two) = (run(1), run(2));
        assert!(
            one.iter()
                .zip(&two)
                .all(|(x, y)| x.to_bits() == y.to_bits()),
            "{}: 1 and 2 threads differ",
            kern.name
        );
    }
}
