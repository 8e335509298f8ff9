//! Tests of the training toolkit's update machinery: optimizers against their
//! published rules, schedules against their formulas, initializers' variances
//! and determinism, and the regularization penalties.

use kiln_runtime::params::{Group, ParamLayout, Params, Role, Select};

/// Two parameters, `fc.weight` (a 1×1 weight) and `fc.bias`, at `[1, -2]`.
fn two_params(default: Group, bias: Option<Group>) -> Params {
    let mut layout =
        ParamLayout::from_specs([("fc.weight", &[1, 1][..]), ("fc.bias", &[1][..])]).unwrap();
    let rules = bias
        .map(|g| vec![(Select::Role(Role::Bias), g)])
        .unwrap_or_default();
    layout.assign_groups(default, rules);
    let mut p = Params::new(layout, ParamLayout::new()).unwrap();
    p.values.copy_from_slice(&[1.0, -2.0]);
    p
}

mod optim {
    use super::*;
    use kiln_runtime::optim::{Optim, Optimizer};

    const GRADS: [[f32; 2]; 3] = [[0.5, -1.0], [0.2, 0.3], [-0.4, 0.1]];

    /// Runs three steps at lr 0.1 with the gradients above and compares the
    /// parameters after each step with `expect` (from
    /// `tests/fixtures/optim_expect.py`, the rules written out in f64). Also
    /// checks that exporting the state after step 1 and importing it into a
    /// fresh optimizer continues identically.
    fn check(mut opt: Optim, default: Group, bias: Option<Group>, expect: [[f64; 2]; 3]) {
        let mut p = two_params(default, bias);
        let mut resumed: Option<(Optim, Params)> = None;
        for (t, g) in GRADS.iter().enumerate() {
            p.grads.copy_from_slice(g);
            opt.step(&mut p, 0.1).unwrap();
            if let Some((o, q)) = &mut resumed {
                q.grads.copy_from_slice(g);
                o.step(q, 0.1).unwrap();
                assert_eq!(q.values, p.values, "{:?}: resumed run differs", opt.rule);
            }
            for (i, (&got, &want)) in p.values.iter().zip(&expect[t]).enumerate() {
                let tol = 1e-5 + 1e-5 * want.abs();
                assert!(
                    (got as f64 - want).abs() <= tol,
                    "{:?} step {} param {i}: got {got}, want {want}",
                    opt.rule,
                    t + 1
                );
            }
            if t == 0 {
                let mut fresh = Optim::new(opt.rule);
                fresh.load_state(opt.state()).unwrap();
                resumed = Some((fresh, p.clone()));
            }
        }
    }

    fn plain() -> Group {
        Group::new("all")
    }

    #[test]
    fn sgd() {
        check(
            Optim::sgd(),
            plain(),
            None,
            [[0.95, -1.9], [0.93, -1.93], [0.97, -1.94]],
        );
    }

    #[test]
    fn momentum() {
        check(
            Optim::momentum(0.9),
            plain(),
            None,
            [[0.95, -1.9], [0.885, -1.84], [0.8665, -1.796]],
        );
    }

    #[test]
    fn nesterov() {
        check(
            Optim::nesterov(0.9),
            plain(),
            None,
            [[0.905, -1.81], [0.8265, -1.786], [0.84985, -1.7564]],
        );
    }

    #[test]
    fn adagrad() {
        check(
            Optim::adagrad(),
            plain(),
            None,
            [
                [0.9, -1.9],
                [0.862860932, -1.92873479],
                [0.922489412, -1.93826941],
            ],
        );
    }

    #[test]
    fn rmsprop() {
        check(
            Optim::rmsprop(0.99),
            plain(),
            None,
            [
                [1.9999996e-07, -1.0000001],
                [-0.373001654, -1.28867521],
                [0.226876418, -1.3849359],
            ],
        );
    }

    #[test]
    fn adam_with_bias_correction() {
        check(
            Optim::adam(),
            plain(),
            None,
            [
                [0.900000002, -1.9],
                [0.810142484, -1.85721514],
                [0.792514598, -1.83038992],
            ],
        );
    }

    #[test]
    fn adamw_decays_decoupled_and_only_the_weight_group() {
        check(
            Optim::adamw(),
            Group::new("decay").weight_decay(0.1),
            Some(Group::new("no_decay")),
            [
                [0.890000002, -1.9],
                [0.791242484, -1.85721514],
                [0.765702173, -1.83038992],
            ],
        );
    }

    #[test]
    fn adam_decay_is_coupled() {
        check(
            Optim::adam(),
            Group::new("decay").weight_decay(0.1),
            Some(Group::new("no_decay")),
            [
                [0.900000002, -1.9],
                [0.807281461, -1.85721514],
                [0.770277195, -1.83038992],
            ],
        );
    }

    #[test]
    fn per_group_decay_and_lr_scale() {
        check(
            Optim::sgd(),
            Group::new("decay").weight_decay(0.1),
            Some(Group::new("slow_bias").lr_scale(0.5)),
            [[0.94, -1.95], [0.9106, -1.965], [0.941494, -1.97]],
        );
    }

    #[test]
    fn frozen_group_does_not_move() {
        check(
            Optim::momentum(0.9),
            plain(),
            Some(Group::new("frozen").frozen()),
            [[0.95, -2.0], [0.885, -2.0], [0.8665, -2.0]],
        );
    }

    /// A 4M-scalar model (a 2000×2000 weight, a bias, and a frozen
    /// 100×100 tensor in between) stepped three times on one thread and on
    /// the pool: the results must be bit-identical. Prints the time per
    /// step of each.
    fn check_parallel(make: fn() -> Optim) {
        let mut layout = ParamLayout::from_specs([
            ("a.weight", &[2000, 2000][..]),
            ("frozen.weight", &[100, 100][..]),
            ("a.bias", &[2000][..]),
        ])
        .unwrap();
        layout.assign_groups(
            Group::new("decay").weight_decay(0.01),
            vec![(
                Select::Name(kiln_runtime::params::Pattern::new("frozen.*")),
                Group::new("frozen").frozen(),
            )],
        );
        let mut base = Params::new(layout, ParamLayout::new()).unwrap();
        let mut rng = kiln_runtime::rng::Rng::new(5);
        for (w, g) in base.values.iter_mut().zip(base.grads.iter_mut()) {
            *w = rng.next_f32() - 0.5;
            *g = rng.next_f32() - 0.5;
        }
        let run = |threads: usize| {
            let pool = rayon::ThreadPoolBuilder::new()
                .num_threads(threads)
                .build()
                .unwrap();
            let mut p = base.clone();
            let mut opt = make();
            let t0 = std::time::Instant::now();
            pool.install(|| {
                for _ in 0..3 {
                    opt.step(&mut p, 0.01).unwrap();
                }
            });
            (p, t0.elapsed().as_secs_f64() / 3.0)
        };
        let (serial, ts) = run(1);
        let (parallel, tp) = run(4);
        let n = base.values.len();
        eprintln!(
            "{:?}: {n} scalars, {:.2} ms/step on 1 thread, {:.2} ms/step on 4",
            make().rule,
            ts * 1e3,
            tp * 1e3
        );
        assert!(
            serial
                .values
                .iter()
                .zip(&parallel.values)
                .all(|(a, b)| a.to_bits() == b.to_bits())
        );
        assert_eq!(serial.get("frozen.weight"), base.get("frozen.weight"));
        assert_ne!(serial.get("a.weight"), base.get("a.weight"));
    }

    #[test]
    fn parallel_step_is_bit_identical_to_serial() {
        check_parallel(Optim::sgd);
        check_parallel(|| Optim::momentum(0.9));
        check_parallel(Optim::adamw);
    }

    #[test]
    fn state_of_another_optimizer_is_refused() {
        let err = Optim::adam()
            .load_state(Optim::momentum(0.9).state())
            .unwrap_err();
        assert!(err.to_string().contains("momentum"), "{err}");
        let mut o = Optim::adam();
        let mut st = o.state();
        st.vectors = vec![("exp_avg".into(), vec![0.0; 5])];
        o.load_state(st).unwrap();
        let mut p = two_params(plain(), None);
        let err = o.step(&mut p, 0.1).unwrap_err();
        assert!(err.to_string().contains("exp_avg"), "{err}");
    }
}

mod schedule {
    use kiln_runtime::schedule::{Decay, Plateau, Schedule};

    /// Compares the schedule's rate at each `(step, expected)` pair.
    fn check(s: Schedule, expect: &[(u64, f64)]) {
        for &(t, want) in expect {
            let got = s.lr_at(t);
            assert!(
                (got - want).abs() <= 1e-12 * want.abs().max(1.0),
                "{:?} at {t}: got {got}, want {want}",
                s.decay
            );
        }
    }

    #[test]
    fn formulas() {
        let e = std::f64::consts::E;
        check(
            Schedule::new(
                0.1,
                Decay::Step {
                    milestones: vec![30, 60],
                    factor: 0.1,
                },
            ),
            &[(0, 0.1), (29, 0.1), (30, 0.01), (59, 0.01), (60, 0.001)],
        );
        check(
            Schedule::new(0.1, Decay::Exponential { k: 0.5 }),
            &[(0, 0.1), (2, 0.1 / e), (4, 0.1 / (e * e))],
        );
        check(
            Schedule::new(0.1, Decay::InverseTime { k: 0.5 }),
            &[(0, 0.1), (2, 0.05), (6, 0.025)],
        );
        check(
            Schedule::new(0.2, Decay::Cosine { total: 100 }),
            &[
                (0, 0.2),
                (50, 0.1),
                (100, 0.0),
                (150, 0.0),
                (25, 0.1 * (1.0 + 0.5f64.sqrt())),
            ],
        );
        check(
            Schedule::new(0.2, Decay::Linear { total: 10 }),
            &[(0, 0.2), (5, 0.1), (10, 0.0), (12, 0.0)],
        );
        check(
            Schedule::new(0.3, Decay::InverseSqrt),
            &[(0, 0.3), (1, 0.3), (4, 0.15), (9, 0.1)],
        );
        check(
            Schedule::new(0.3, Decay::Constant),
            &[(0, 0.3), (1000, 0.3)],
        );
    }

    #[test]
    fn warmup_in_front_of_decay() {
        check(
            Schedule::new(0.4, Decay::Linear { total: 10 }).with_warmup(4),
            &[(0, 0.1), (1, 0.2), (3, 0.4), (4, 0.4), (9, 0.2), (14, 0.0)],
        );
        check(
            Schedule::new(1.0, Decay::InverseSqrt).with_warmup(2),
            &[(0, 0.5), (1, 1.0), (2, 1.0), (6, 0.5)],
        );
    }

    #[test]
    fn reduce_on_plateau() {
        let mut s = Schedule::new(1.0, Decay::Constant).with_plateau(Plateau {
            patience: 2,
            factor: 0.5,
            threshold: 0.01,
            min_lr: 0.3,
        });
        // (metric, reduced?, lr after): 0.995 is not a 1% improvement on 1.
        let seq = [
            (1.0, false, 1.0),
            (0.995, false, 1.0),
            (1.2, false, 1.0),
            (1.0, true, 0.5),
            (0.9, false, 0.5),
            (0.95, false, 0.5),
            (0.95, false, 0.5),
            (0.95, true, 0.3),
        ];
        for (i, &(m, reduced, lr)) in seq.iter().enumerate() {
            assert_eq!(s.observe(m), reduced, "epoch {i}");
            assert_eq!(s.lr(), lr as f32, "epoch {i}");
            s.advance();
        }
        let mut resumed = Schedule::new(1.0, Decay::Constant).with_plateau(s.plateau.unwrap());
        resumed.load_state(s.state()).unwrap();
        assert_eq!(resumed.state(), s.state());
        assert_eq!(resumed.state().step, 8);
    }
}

mod init {
    use kiln_runtime::init::{Dist, Init, InitPolicy, fans};
    use kiln_runtime::params::{ParamLayout, Params};
    use kiln_runtime::rng::Rng;

    /// Fills a tensor of `shape` with seed 42 and checks mean ≈ 0 and the
    /// variance within 2% of `var`; same seed gives the same values,
    /// another seed different ones.
    fn check(init: Init, shape: &[usize], var: f64) {
        let n: usize = shape.iter().product();
        let fill = |seed| {
            let mut v = vec![0f32; n];
            init.fill(shape, &mut v, &mut Rng::new(seed));
            v
        };
        let a = fill(42);
        let mean = a.iter().map(|&x| x as f64).sum::<f64>() / n as f64;
        let got = a.iter().map(|&x| (x as f64 - mean).powi(2)).sum::<f64>() / n as f64;
        assert!(
            (got / var - 1.0).abs() < 0.02,
            "{init:?} {shape:?}: variance {got}, want {var}"
        );
        assert!(
            mean.abs() < 3.0 * (var / n as f64).sqrt() + 1e-9,
            "{init:?}: mean {mean}"
        );
        assert_eq!(a, fill(42), "{init:?}: same seed differs");
        assert_ne!(a, fill(43), "{init:?}: different seeds agree");
    }

    #[test]
    fn variances_on_1000_by_1000() {
        let s = [1000, 1000];
        for d in [Dist::Normal, Dist::Uniform] {
            check(Init::He(d), &s, 2.0 / 1000.0);
            check(Init::Xavier(d), &s, 1.0 / 1000.0);
            check(Init::Glorot(d), &s, 2.0 / 2000.0);
        }
        check(Init::SmallRandn, &s, 1e-4);
        check(
            Init::Normal {
                mean: 0.0,
                std: 0.5,
            },
            &s,
            0.25,
        );
        check(Init::Uniform { lo: -1.0, hi: 1.0 }, &s, 1.0 / 3.0);
    }

    #[test]
    fn conv_fans_and_variance() {
        assert_eq!(fans(&[64, 32, 3, 3]), (288, 576));
        assert_eq!(fans(&[128, 3136]), (3136, 128));
        assert_eq!(fans(&[10]), (10, 10));
        check(Init::He(Dist::Normal), &[1000, 10, 10, 10], 2.0 / 1000.0);
        check(Init::Glorot(Dist::Uniform), &[250, 400, 2, 5], 2.0 / 6500.0);
    }

    #[test]
    fn policy_by_role_and_name_is_per_tensor_deterministic() {
        let layout = ParamLayout::from_specs([
            ("conv.weight", &[8, 3, 3, 3][..]),
            ("conv.bias", &[8][..]),
            ("bn.weight", &[8][..]),
            ("bn.bias", &[8][..]),
            ("fc.weight", &[10, 8][..]),
            ("fc.bias", &[10][..]),
        ])
        .unwrap();
        let bufs =
            ParamLayout::from_specs([("bn.running_mean", &[8][..]), ("bn.running_var", &[8][..])])
                .unwrap();
        let policy =
            InitPolicy::new(Init::He(Dist::Normal)).rule("conv.bias", Init::Constant(0.01));
        let mut p = Params::new(layout, bufs).unwrap();
        p.buffers.fill(7.0);
        policy.apply(&mut p, 5).unwrap();
        assert!(p.get("conv.bias").unwrap().iter().all(|&x| x == 0.01));
        assert!(p.get("fc.bias").unwrap().iter().all(|&x| x == 0.0));
        assert!(p.get("bn.weight").unwrap().iter().all(|&x| x == 1.0));
        assert!(p.get("bn.bias").unwrap().iter().all(|&x| x == 0.0));
        assert!(
            p.buffer("bn.running_mean")
                .unwrap()
                .iter()
                .all(|&x| x == 0.0)
        );
        assert!(
            p.buffer("bn.running_var")
                .unwrap()
                .iter()
                .all(|&x| x == 1.0)
        );
        assert!(p.get("conv.weight").unwrap().iter().all(|&x| x != 0.0));

        // A model with one more layer in front keeps fc.weight's values.
        let other =
            ParamLayout::from_specs([("extra.weight", &[4, 4][..]), ("fc.weight", &[10, 8][..])])
                .unwrap();
        let mut q = Params::new(other, ParamLayout::new()).unwrap();
        policy.apply(&mut q, 5).unwrap();
        assert_eq!(q.get("fc.weight"), p.get("fc.weight"));
        policy.apply(&mut q, 6).unwrap();
        assert_ne!(q.get("fc.weight"), p.get("fc.weight"));
    }
}

mod regularize {
    use super::*;
    use kiln_runtime::regularize::{Penalty, Regularizer};

    /// Applies `penalty` to weight `[0.5, -2, 0]` and bias `[3]` with zero
    /// gradients; checks the value and the resulting gradients (the bias is
    /// never penalized).
    fn check(penalty: Penalty, value: f64, grads: [f32; 4]) {
        let layout =
            ParamLayout::from_specs([("fc.weight", &[1, 3][..]), ("fc.bias", &[1][..])]).unwrap();
        let mut p = Params::new(layout, ParamLayout::new()).unwrap();
        p.values.copy_from_slice(&[0.5, -2.0, 0.0, 3.0]);
        let got = Regularizer::weights(penalty).apply(&mut p).unwrap();
        assert!(
            (got - value).abs() < 1e-12,
            "{penalty:?}: value {got}, want {value}"
        );
        assert_eq!(p.grads, grads, "{penalty:?}");
    }

    #[test]
    fn penalties_as_the_notes_define_them() {
        check(
            Penalty::L2 { lambda: 0.5 },
            0.5 * 4.25,
            [0.5, -2.0, 0.0, 0.0],
        );
        check(
            Penalty::L1 { lambda: 0.5 },
            0.5 * 2.5,
            [0.5, -0.5, 0.0, 0.0],
        );
        check(
            Penalty::ElasticNet {
                lambda: 0.5,
                beta: 2.0,
            },
            0.5 * (2.0 * 4.25 + 2.5),
            [0.5 * (2.0 + 1.0), 0.5 * (-8.0 - 1.0), 0.0, 0.0],
        );
    }

    #[test]
    fn inconsistent_params_are_an_error_not_a_panic() {
        let layout = ParamLayout::from_specs([("a.weight", &[2, 2][..])]).unwrap();
        let mut p = Params::new(layout, ParamLayout::new()).unwrap();
        p.values.truncate(3);
        let r = Regularizer::weights(Penalty::L2 { lambda: 1.0 });
        let err = r.apply(&mut p).unwrap_err().to_string();
        assert!(err.contains("4 parameters"), "{err}");
        use kiln_runtime::optim::{Optim, Optimizer};
        assert!(Optim::adam().step(&mut p, 0.1).is_err());
        let policy = kiln_runtime::init::InitPolicy::new(kiln_runtime::init::Init::Zeros);
        assert!(policy.apply(&mut p, 1).is_err());
    }

    #[test]
    fn exclusion_by_name() {
        let layout =
            ParamLayout::from_specs([("a.weight", &[2, 1][..]), ("b.weight", &[1, 1][..])])
                .unwrap();
        let mut p = Params::new(layout, ParamLayout::new()).unwrap();
        p.values.fill(1.0);
        let r = Regularizer::weights(Penalty::L1 { lambda: 1.0 }).excluding("b.*");
        assert_eq!(r.apply(&mut p).unwrap(), 2.0);
        assert_eq!(p.grads, [1.0, 1.0, 0.0]);
    }
}
