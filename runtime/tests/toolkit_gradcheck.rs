//! Tests of the gradient-check utility: it passes a right gradient (f64 and
//! f32) and catches a wrong one, naming the parameter and index.

use kiln_runtime::gradcheck::{self, GradCheck};
use kiln_runtime::params::ParamLayout;
use kiln_runtime::reference::Real;
use kiln_runtime::rng::Rng;

/// A 3→4 tanh layer `y = tanh(W·v + b)` with loss `Σ y²` for a fixed input
/// `v`; parameters `fc.weight` [4, 3] and `fc.bias` [4].
fn layout() -> ParamLayout {
    ParamLayout::from_specs([("fc.weight", &[4, 3][..]), ("fc.bias", &[4][..])]).unwrap()
}

const V: [f64; 3] = [0.5, -1.0, 2.0];

fn loss<T: Real>(x: &[T]) -> f64 {
    (0..4)
        .map(|i| {
            let z = (0..3).fold(x[12 + i], |acc, j| acc + x[i * 3 + j] * T::from_f64(V[j]));
            let y = z.tanh();
            (y * y).to_f64()
        })
        .sum()
}

/// The analytic gradient; `bug` corrupts it in one way.
fn grad<T: Real>(x: &[T], bug: Bug) -> Vec<T> {
    let mut g = vec![T::ZERO; 16];
    for i in 0..4 {
        let z = (0..3).fold(x[12 + i], |acc, j| acc + x[i * 3 + j] * T::from_f64(V[j]));
        let y = z.tanh();
        let dz = T::from_f64(2.0) * y * (T::ONE - y * y);
        for j in 0..3 {
            g[i * 3 + j] = dz * T::from_f64(V[j]);
        }
        g[12 + i] = match bug {
            Bug::BiasMissesFactor2 => y * (T::ONE - y * y),
            _ => dz,
        };
    }
    if let Bug::WeightIndexSwapped = bug {
        g.swap(4, 5);
    }
    g
}

#[derive(Clone, Copy, Debug)]
enum Bug {
    None,
    BiasMissesFactor2,
    WeightIndexSwapped,
}

fn point<T: Real>(seed: u64) -> Vec<T> {
    let mut r = Rng::new(seed);
    (0..16)
        .map(|_| T::from_f64(0.5 * r.next_normal()))
        .collect()
}

/// Runs the check in `T` with `cfg` and a gradient with `bug`; expects a
/// pass or, for a failure, the worst parameter's name and index.
fn check<T: Real>(cfg: GradCheck, bug: Bug, expect: Result<(), (&str, usize)>) {
    let x: Vec<T> = point(11);
    let g = grad(&x, bug);
    let r = gradcheck::check(&layout(), &x, &g, loss::<T>, &cfg).unwrap();
    assert_eq!(r.checked, 16);
    match expect {
        Ok(()) => assert!(r.passed(), "{bug:?}: {r}"),
        Err((name, index)) => {
            assert!(!r.passed(), "{bug:?}: a wrong gradient passed: {r}");
            let w = r.worst.as_ref().unwrap();
            assert_eq!((w.name.as_str(), w.index), (name, index), "{r}");
            assert!(r.to_string().contains(&format!("`{name}`[{index}]")), "{r}");
        }
    }
}

#[test]
fn right_gradient_passes_in_f64_and_f32() {
    check::<f64>(GradCheck::f64(), Bug::None, Ok(()));
    check::<f32>(GradCheck::f32(), Bug::None, Ok(()));
}

#[test]
fn wrong_gradient_is_caught_and_located() {
    let x: Vec<f64> = point(11);
    let g = grad(&x, Bug::BiasMissesFactor2);
    let r = gradcheck::check(&layout(), &x, &g, loss::<f64>, &GradCheck::f64()).unwrap();
    // Every bias entry is off by exactly half; the worst is one of them.
    assert!((r.max_rel_error - 0.5).abs() < 1e-6, "{r}");
    assert_eq!(r.worst.as_ref().unwrap().name, "fc.bias");
    // Swapping two weight entries of the second row: the worst is one of
    // the two (index 4 or 5, whichever is further off).
    let g = grad(&x, Bug::WeightIndexSwapped);
    let r = gradcheck::check(&layout(), &x, &g, loss::<f64>, &GradCheck::f64()).unwrap();
    let w = r.worst.clone().unwrap();
    let expect_index = w.index;
    assert!(expect_index == 4 || expect_index == 5, "{r}");
    check::<f64>(
        GradCheck::f64(),
        Bug::WeightIndexSwapped,
        Err(("fc.weight", expect_index)),
    );
    check::<f32>(
        GradCheck::f32(),
        Bug::WeightIndexSwapped,
        Err(("fc.weight", expect_index)),
    );
}

#[test]
fn sampling_and_bad_arguments() {
    let x: Vec<f64> = point(3);
    let g = grad(&x, Bug::None);
    let cfg = GradCheck {
        max_per_tensor: Some(2),
        ..GradCheck::f64()
    };
    let r = gradcheck::check(&layout(), &x, &g, loss::<f64>, &cfg).unwrap();
    assert_eq!(r.checked, 4, "{r}");
    assert!(r.passed(), "{r}");
    assert!(gradcheck::check(&layout(), &x[..3], &g, loss::<f64>, &cfg).is_err());
    let bad = GradCheck { eps: 0.0, ..cfg };
    assert!(gradcheck::check(&layout(), &x, &g, loss::<f64>, &bad).is_err());
    // A function that returns NaN fails rather than passing.
    let r = gradcheck::check(&layout(), &x, &g, |_| f64::NAN, &GradCheck::f64()).unwrap();
    assert!(!r.passed(), "{r}");
}
