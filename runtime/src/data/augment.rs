//! Seeded data augmentation, as the course notes list it: horizontal flip,
//! random crop with padding, small rotation, scaling and Gaussian noise.
//!
//! Each function works on one CHW image. [`Augment`] chains them with random
//! parameters drawn from an [`Rng`]; [`example_rng`] gives the stream of one
//! example in one epoch, so an augmented batch is a pure function of
//! `(seed, epoch, index)` whatever the thread or batch order.
//!
//! Areas that come from outside the source image (padding, the corners of a
//! rotation) are filled with zero, so augment before normalizing. The
//! functions take slices of exactly `C·H·W` values and panic on shorter ones,
//! like slice indexing; [`Augment::apply`] is always called that way by the
//! batch iterator.

use crate::rng::Rng;

/// The random stream of example `index` in `epoch` of a run seeded `seed`.
pub fn example_rng(seed: u64, epoch: u64, index: u64) -> Rng {
    Rng::new(seed).fork(epoch).fork(index)
}

/// Mirrors each row of a CHW image in place (left becomes right).
pub fn hflip(img: &mut [f32], shape: [usize; 3]) {
    let w = shape[2];
    if w == 0 {
        return;
    }
    for row in img.chunks_exact_mut(w) {
        row.reverse();
    }
}

/// Writes into `out` the `h×w` window at offset `(dy, dx)` of the image
/// zero-padded by `pad` on every side (`dy, dx` in `0..=2·pad`); offset
/// `(pad, pad)` is the identity.
pub fn pad_crop(img: &[f32], shape: [usize; 3], pad: usize, dy: usize, dx: usize, out: &mut [f32]) {
    let [c, h, w] = shape;
    for ch in 0..c {
        for y in 0..h {
            let sy = (y + dy) as isize - pad as isize;
            for x in 0..w {
                let sx = (x + dx) as isize - pad as isize;
                out[(ch * h + y) * w + x] =
                    if sy >= 0 && (sy as usize) < h && sx >= 0 && (sx as usize) < w {
                        img[(ch * h + sy as usize) * w + sx as usize]
                    } else {
                        0.0
                    };
            }
        }
    }
}

/// Rotates by `angle` radians (counter-clockwise) and scales by `scale`
/// about the image centre, with bilinear sampling, into `out`.
pub fn rotate_scale(img: &[f32], shape: [usize; 3], angle: f32, scale: f32, out: &mut [f32]) {
    let [c, h, w] = shape;
    let (cy, cx) = ((h as f32 - 1.0) * 0.5, (w as f32 - 1.0) * 0.5);
    // Inverse map: output pixel -> source position.
    let (s, co) = angle.sin_cos();
    let inv = 1.0 / scale;
    let at = |ch: usize, y: isize, x: isize| -> f32 {
        if y >= 0 && (y as usize) < h && x >= 0 && (x as usize) < w {
            img[(ch * h + y as usize) * w + x as usize]
        } else {
            0.0
        }
    };
    for y in 0..h {
        for x in 0..w {
            let (oy, ox) = (y as f32 - cy, x as f32 - cx);
            let sx = (co * ox - s * oy) * inv + cx;
            let sy = (s * ox + co * oy) * inv + cy;
            let (x0, y0) = (sx.floor(), sy.floor());
            let (fx, fy) = (sx - x0, sy - y0);
            let (x0, y0) = (x0 as isize, y0 as isize);
            for ch in 0..c {
                let v = at(ch, y0, x0) * (1.0 - fx) * (1.0 - fy)
                    + at(ch, y0, x0 + 1) * fx * (1.0 - fy)
                    + at(ch, y0 + 1, x0) * (1.0 - fx) * fy
                    + at(ch, y0 + 1, x0 + 1) * fx * fy;
                out[(ch * h + y) * w + x] = v;
            }
        }
    }
}

/// Adds independent Gaussian noise of standard deviation `std` to every
/// value.
pub fn add_noise(img: &mut [f32], std: f32, rng: &mut Rng) {
    for x in img {
        *x += std * rng.next_normal() as f32;
    }
}

/// A chain of random augmentations; each field at its neutral value turns
/// that step off ([`Augment::none`]).
#[derive(Debug, Clone, PartialEq)]
pub struct Augment {
    /// Probability of a horizontal flip (0.5 for natural images; 0 for
    /// digits, whose mirror image is another shape).
    pub flip_prob: f32,
    /// Zero padding on each side before a random crop back to the original
    /// size (CIFAR-10 uses 4).
    pub crop_pad: usize,
    /// Largest rotation in degrees, drawn uniformly in `±max_rotation_deg`.
    pub max_rotation_deg: f32,
    /// Range of the scale factor, drawn uniformly in `[scale.0, scale.1]`.
    pub scale: (f32, f32),
    /// Standard deviation of additive Gaussian noise.
    pub noise_std: f32,
}

impl Default for Augment {
    fn default() -> Self {
        Augment::none()
    }
}

impl Augment {
    /// No augmentation.
    pub fn none() -> Self {
        Augment {
            flip_prob: 0.0,
            crop_pad: 0,
            max_rotation_deg: 0.0,
            scale: (1.0, 1.0),
            noise_std: 0.0,
        }
    }

    /// The usual CIFAR-10 recipe: flip with probability 0.5, crop 32×32
    /// from the image padded by 4.
    pub fn cifar10() -> Self {
        Augment {
            flip_prob: 0.5,
            crop_pad: 4,
            ..Augment::none()
        }
    }

    /// A mild recipe for digits: ±10° rotation, scale 0.9–1.1, no flip.
    pub fn digits() -> Self {
        Augment {
            max_rotation_deg: 10.0,
            scale: (0.9, 1.1),
            ..Augment::none()
        }
    }

    /// Whether every step is off.
    pub fn is_none(&self) -> bool {
        self.flip_prob <= 0.0
            && self.crop_pad == 0
            && self.max_rotation_deg == 0.0
            && self.scale == (1.0, 1.0)
            && self.noise_std == 0.0
    }

    /// Augments one CHW image in place, drawing its parameters from `rng`
    /// (always the same number of draws per step, so streams stay aligned);
    /// `scratch` is reused between calls.
    pub fn apply(&self, img: &mut [f32], shape: [usize; 3], rng: &mut Rng, scratch: &mut Vec<f32>) {
        if self.flip_prob > 0.0 && rng.next_f32() < self.flip_prob {
            hflip(img, shape);
        }
        if self.crop_pad > 0 {
            let span = 2 * self.crop_pad as u64 + 1;
            let dy = rng.below(span) as usize;
            let dx = rng.below(span) as usize;
            scratch.clear();
            scratch.resize(img.len(), 0.0);
            pad_crop(img, shape, self.crop_pad, dy, dx, scratch);
            img.copy_from_slice(scratch);
        }
        if self.max_rotation_deg != 0.0 || self.scale != (1.0, 1.0) {
            let angle = (2.0 * rng.next_f32() - 1.0) * self.max_rotation_deg.to_radians();
            let scale = self.scale.0 + (self.scale.1 - self.scale.0) * rng.next_f32();
            if scale > 0.0 {
                scratch.clear();
                scratch.resize(img.len(), 0.0);
                rotate_scale(img, shape, angle, scale, scratch);
                img.copy_from_slice(scratch);
            }
        }
        if self.noise_std > 0.0 {
            add_noise(img, self.noise_std, rng);
        }
    }
}
