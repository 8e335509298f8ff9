//! Shared helpers of the `ops_*` kernel tests: seeded random tensors, a
//! closeness check with a stated tolerance, a central finite-difference
//! gradient check in f64, and running a closure on a pool of `k` threads.
#![allow(dead_code, reason = "each test binary uses a different subset")]

use kiln_runtime::rng::Rng;

/// `len` values uniform in `[lo, hi)` from stream `seed`.
pub fn uniform(seed: u64, len: usize, lo: f32, hi: f32) -> Vec<f32> {
    let mut r = Rng::new(seed);
    (0..len).map(|_| lo + (hi - lo) * r.next_f32()).collect()
}

/// `len` values uniform in `[lo, hi)` as f64, from stream `seed`.
pub fn uniform64(seed: u64, len: usize, lo: f64, hi: f64) -> Vec<f64> {
    let mut r = Rng::new(seed);
    (0..len).map(|_| lo + (hi - lo) * r.next_f64()).collect()
}

/// `len` values of stream `seed` kept at least `gap` away from zero, for
/// ops with a kink at 0 (ReLU, PReLU, L1) whose finite differences must not
/// straddle it.
pub fn away_from_zero(seed: u64, len: usize, gap: f64) -> Vec<f64> {
    uniform64(seed, len, -2.0, 2.0)
        .into_iter()
        .map(|v| {
            if v.abs() < gap {
                v.signum() * gap + v
            } else {
                v
            }
        })
        .collect()
}

/// Widens a slice to f64.
pub fn to64(x: &[f32]) -> Vec<f64> {
    x.iter().map(|&v| v as f64).collect()
}

/// Asserts `|got − want| ≤ atol + rtol·|want|` elementwise, naming the first
/// element that is off.
pub fn assert_close(what: &str, got: &[f32], want: &[f32], rtol: f32, atol: f32) {
    assert_eq!(got.len(), want.len(), "{what}: lengths differ");
    for (i, (&g, &w)) in got.iter().zip(want).enumerate() {
        let ok = (g - w).abs() <= atol + rtol * w.abs() || (g.is_nan() && w.is_nan());
        assert!(
            ok,
            "{what}: element {i}: got {g}, want {w} (rtol {rtol}, atol {atol})"
        );
    }
}

/// Asserts `|got − want| ≤ atol(i) + rtol·|want|` elementwise, for kernels
/// whose attainable f32 accuracy differs per element (a per-element
/// condition number).
pub fn assert_close_with(
    what: &str,
    got: &[f32],
    want: &[f32],
    rtol: f32,
    atol: impl Fn(usize) -> f32,
) {
    assert_eq!(got.len(), want.len(), "{what}: lengths differ");
    for (i, (&g, &w)) in got.iter().zip(want).enumerate() {
        let tol = atol(i) + rtol * w.abs();
        assert!(
            (g - w).abs() <= tol,
            "{what}: element {i}: got {g}, want {w} (tolerance {tol})"
        );
    }
}

/// Checks `analytic` (the gradient of `f` at `x` from a backward rule)
/// against central differences `(f(x + h) − f(x − h)) / 2h` with `h = 1e-6`,
/// to `|a − n| ≤ tol·(1 + |n|)`.
pub fn gradcheck(what: &str, x: &[f64], analytic: &[f64], tol: f64, f: impl Fn(&[f64]) -> f64) {
    assert_eq!(x.len(), analytic.len(), "{what}: gradient length");
    let h = 1e-6;
    let mut xp = x.to_vec();
    for i in 0..x.len() {
        xp[i] = x[i] + h;
        let up = f(&xp);
        xp[i] = x[i] - h;
        let down = f(&xp);
        xp[i] = x[i];
        let numeric = (up - down) / (2.0 * h);
        assert!(
            (analytic[i] - numeric).abs() <= tol * (1.0 + numeric.abs()),
            "{what}: d/dx[{i}]: analytic {}, numeric {numeric}",
            analytic[i]
        );
    }
}

/// Σ w·y: the scalar whose gradient with respect to `y` is `w`, used to turn
/// a backward rule with upstream gradient `w` into something to difference.
pub fn weighted_sum(w: &[f64], y: &[f64]) -> f64 {
    w.iter().zip(y).map(|(a, b)| a * b).sum()
}

/// Runs `f` on a fresh rayon pool of `k` threads.
pub fn with_threads<R: Send>(k: usize, f: impl FnOnce() -> R + Send) -> R {
    rayon::ThreadPoolBuilder::new()
        .num_threads(k)
        .build()
        .expect("thread pool")
        .install(f)
}

/// Asserts two runs are bit-identical.
pub fn assert_bits_eq(what: &str, a: &[f32], b: &[f32]) {
    assert_eq!(a.len(), b.len(), "{what}: lengths differ");
    for (i, (x, y)) in a.iter().zip(b).enumerate() {
        assert_eq!(x.to_bits(), y.to_bits(), "{what}: element {i}: {x} vs {y}");
    }
}
