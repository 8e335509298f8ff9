//! A seeded, counter-based random number generator.
//!
//! The value at position `i` of stream `seed` is a pure function of
//! `(seed, i)` (a SplitMix64-style finalizer over their combination), so
//! dropout masks, initializers and augmentations are reproducible, can be
//! generated in parallel in any order, and are independent of the number of
//! threads. The state to checkpoint is two integers.

/// Mixes a 64-bit value (the SplitMix64 finalizer).
#[inline(always)]
pub fn mix64(mut z: u64) -> u64 {
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// The 64 random bits at `counter` in stream `seed`.
#[inline(always)]
pub fn bits_at(seed: u64, counter: u64) -> u64 {
    mix64(
        mix64(seed ^ 0x9E37_79B9_7F4A_7C15)
            .wrapping_add(counter.wrapping_mul(0x9E37_79B9_7F4A_7C15)),
    )
}

/// A uniform f32 in [0, 1) at `counter` in stream `seed` (24 random bits).
#[inline(always)]
pub fn uniform_at(seed: u64, counter: u64) -> f32 {
    (bits_at(seed, counter) >> 40) as f32 * (1.0 / (1u64 << 24) as f32)
}

/// A sequential view of one stream: `seed` and the next counter.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rng {
    /// The stream.
    pub seed: u64,
    /// The position of the next draw.
    pub counter: u64,
}

impl Rng {
    /// A stream at position 0.
    pub fn new(seed: u64) -> Self {
        Rng { seed, counter: 0 }
    }

    /// The next 64 random bits.
    #[inline]
    pub fn next_u64(&mut self) -> u64 {
        let v = bits_at(self.seed, self.counter);
        self.counter += 1;
        v
    }

    /// The next uniform f32 in [0, 1).
    #[inline]
    pub fn next_f32(&mut self) -> f32 {
        let v = uniform_at(self.seed, self.counter);
        self.counter += 1;
        v
    }

    /// The next uniform f64 in [0, 1) (53 random bits).
    #[inline]
    pub fn next_f64(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 * (1.0 / (1u64 << 53) as f64)
    }

    /// A uniform integer in `0..n` (n > 0), by rejection so it is unbiased.
    pub fn below(&mut self, n: u64) -> u64 {
        assert!(n > 0, "Rng::below(0)");
        let zone = u64::MAX - u64::MAX % n;
        loop {
            let v = self.next_u64();
            if v < zone {
                return v % n;
            }
        }
    }

    /// A standard normal sample (Box–Muller over two uniforms).
    pub fn next_normal(&mut self) -> f64 {
        let u1 = 1.0 - self.next_f64(); // (0, 1]
        let u2 = self.next_f64();
        libm::sqrt(-2.0 * libm::log(u1)) * libm::cos(core::f64::consts::TAU * u2)
    }

    /// A derived, independent stream (for per-epoch or per-layer streams).
    pub fn fork(&self, tag: u64) -> Rng {
        Rng::new(mix64(
            self.seed ^ mix64(tag.wrapping_add(0xD1B5_4A32_D192_ED03)),
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn same_seed_same_stream_and_positions_are_pure() {
        let mut a = Rng::new(7);
        let mut b = Rng::new(7);
        let xs: [u64; 4] = core::array::from_fn(|_| a.next_u64());
        let ys: [u64; 4] = core::array::from_fn(|_| b.next_u64());
        assert_eq!(xs, ys);
        assert_eq!(xs[2], bits_at(7, 2));
        assert_ne!(bits_at(7, 0), bits_at(8, 0));
    }

    #[test]
    fn uniform_mean_and_normal_moments() {
        let mut r = Rng::new(1);
        let n = 200_000;
        let mean_u: f64 = (0..n).map(|_| r.next_f32() as f64).sum::<f64>() / n as f64;
        assert!((mean_u - 0.5).abs() < 0.005, "{mean_u}");
        let xs: Vec<f64> = (0..n).map(|_| r.next_normal()).collect();
        let m = xs.iter().sum::<f64>() / n as f64;
        let v = xs.iter().map(|x| (x - m) * (x - m)).sum::<f64>() / n as f64;
        assert!(m.abs() < 0.01 && (v - 1.0).abs() < 0.02, "{m} {v}");
    }

    #[test]
    fn below_stays_in_range() {
        let mut r = Rng::new(3);
        for _ in 0..1000 {
            assert!(r.below(10) < 10);
        }
    }
}
