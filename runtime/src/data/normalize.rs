//! Per-channel normalization: `x ↦ (x − mean[c]) / std[c]`.
//!
//! The statistics are either given (e.g. [`Normalize::mnist`], the usual
//! `(x/255 − 0.1307)/0.3081` on pixels already scaled to `[0, 1]`) or
//! computed from a data set with [`Normalize::from_data`], which should be
//! the training split only so no test information leaks into training.

use super::{DataError, Dataset};

/// Per-channel mean and standard deviation.
#[derive(Debug, Clone, PartialEq)]
pub struct Normalize {
    /// The mean of each channel.
    pub mean: Vec<f32>,
    /// The standard deviation of each channel (all positive).
    pub std: Vec<f32>,
}

impl Normalize {
    /// Given statistics; every standard deviation must be positive and
    /// finite, and there must be one of each per channel.
    pub fn new(mean: Vec<f32>, std: Vec<f32>) -> Result<Self, DataError> {
        if mean.len() != std.len() || mean.is_empty() {
            return Err(DataError::Invalid(format!(
                "normalization needs one mean and one std per channel: {} means, {} stds",
                mean.len(),
                std.len()
            )));
        }
        if let Some((c, s)) = std
            .iter()
            .enumerate()
            .find(|&(_, &s)| !(s.is_finite() && s > 0.0))
        {
            return Err(DataError::Invalid(format!(
                "normalization std of channel {c} is {s}: it must be positive and finite"
            )));
        }
        Ok(Normalize { mean, std })
    }

    /// MNIST's usual statistics on `[0, 1]` pixels: mean 0.1307, std 0.3081.
    pub fn mnist() -> Self {
        Normalize {
            mean: vec![0.1307],
            std: vec![0.3081],
        }
    }

    /// The mean and (population) standard deviation of each channel over
    /// all images of `data`, accumulated in f64. A channel that is constant
    /// gets std 1 so that normalizing only centres it.
    pub fn from_data(data: &Dataset) -> Self {
        let [c, h, w] = data.shape;
        let plane = h * w;
        let mut sum = vec![0f64; c];
        let mut sq = vec![0f64; c];
        for img in data.images.chunks_exact(c * plane) {
            for ch in 0..c {
                for &x in &img[ch * plane..(ch + 1) * plane] {
                    sum[ch] += x as f64;
                    sq[ch] += (x as f64) * (x as f64);
                }
            }
        }
        let n = (data.len() * plane).max(1) as f64;
        let mean: Vec<f64> = sum.iter().map(|s| s / n).collect();
        let std = sq
            .iter()
            .zip(&mean)
            .map(|(q, m)| {
                let v = (q / n - m * m).max(0.0).sqrt();
                if v > 1e-12 { v as f32 } else { 1.0 }
            })
            .collect();
        Normalize {
            mean: mean.into_iter().map(|m| m as f32).collect(),
            std,
        }
    }

    /// Normalizes `images` (NCHW, each of shape `shape`) in place.
    pub fn apply(&self, images: &mut [f32], shape: [usize; 3]) -> Result<(), DataError> {
        let [c, h, w] = shape;
        if c != self.mean.len() {
            return Err(DataError::Invalid(format!(
                "normalization has {} channels but the images have {c}",
                self.mean.len()
            )));
        }
        let plane = h * w;
        if plane == 0 {
            return Ok(());
        }
        for (i, chunk) in images.chunks_mut(plane).enumerate() {
            let ch = i % c;
            let (m, inv) = (self.mean[ch], 1.0 / self.std[ch]);
            for x in chunk {
                *x = (*x - m) * inv;
            }
        }
        Ok(())
    }
}
