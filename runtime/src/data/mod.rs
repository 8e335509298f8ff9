//! Data sets: loaders, normalization, augmentation and batching.
//!
//! - [`Dataset`]: images as `f32` NCHW in one buffer (pixel values scaled to
//!   `[0, 1]`), one `u8` label per image, and the per-image shape.
//! - [`idx`]: the IDX format of MNIST and Fashion-MNIST (raw or gzip), and
//!   [`load_mnist`] for the four-file layout.
//! - [`cifar`]: the CIFAR-10 binary format.
//! - [`digits`]: scikit-learn's 8×8 digits CSV (small enough for tests).
//! - [`normalize`]: per-channel mean/std normalization.
//! - [`augment`]: seeded augmentations (flip, crop with padding, rotation,
//!   scaling, Gaussian noise).
//! - [`batch`]: the shuffling mini-batch iterator that prepares the next
//!   batch on another thread.
//!
//! A training loop, in outline (see `BatchConfig` for shuffling, seeds,
//! `drop_last`, augmentation and normalization):
//!
//! ```no_run
//! use std::sync::Arc;
//! use kiln_runtime::data::{BatchConfig, Normalize, Split, data_dir, load_mnist};
//!
//! let train = Arc::new(load_mnist(&data_dir().join("mnist"), Split::Train)?);
//! let cfg = BatchConfig::new(64).seed(1).normalize(Normalize::mnist());
//! for epoch in 0..10 {
//!     for batch in train.batches(&cfg, epoch)? {
//!         // batch.images: [64, 1, 28, 28] f32, batch.labels: [64] u8.
//!         let _ = (&batch.images, batch.targets());
//!     }
//! }
//! # Ok::<(), kiln_runtime::data::DataError>(())
//! ```
//!
//! Every loader validates what it reads against the actual size of the file
//! (or of the decompressed stream) before allocating, and reports problems as
//! a [`DataError`] naming the file.

pub mod augment;
pub mod batch;
pub mod cifar;
pub mod digits;
pub mod idx;
pub mod normalize;

use std::path::{Path, PathBuf};

pub use augment::Augment;
pub use batch::{Batch, BatchConfig, Batches};
pub use cifar::load_cifar10;
pub use digits::load_digits;
pub use idx::{Split, load_mnist};
pub use normalize::Normalize;

use crate::rng::Rng;

/// An error while reading or shaping a data set; each names the file or the
/// operation it concerns.
#[derive(Debug, thiserror::Error)]
pub enum DataError {
    /// The file could not be opened or read.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The underlying error.
        source: std::io::Error,
    },
    /// The content is not a valid file of the expected format.
    #[error("{file}: {reason}")]
    Format {
        /// The file (or a name given by the caller for in-memory bytes).
        file: String,
        /// What is wrong, with the values found.
        reason: String,
    },
    /// Two parts of a data set disagree, or an operation on one is invalid.
    #[error("{0}")]
    Invalid(String),
}

/// A labelled image data set held in memory.
#[derive(Debug, Clone, PartialEq)]
pub struct Dataset {
    /// All images, NCHW, one after the other (`len() * image_len()` values).
    pub images: Vec<f32>,
    /// One class label per image.
    pub labels: Vec<u8>,
    /// The shape of one image: channels, height, width.
    pub shape: [usize; 3],
    /// The number of classes (labels are below it).
    pub classes: usize,
}

impl Dataset {
    /// Builds a data set, checking that the buffer, labels and shape agree.
    pub fn new(
        images: Vec<f32>,
        labels: Vec<u8>,
        shape: [usize; 3],
        classes: usize,
    ) -> Result<Self, DataError> {
        let per = shape
            .iter()
            .try_fold(1usize, |a, &d| a.checked_mul(d))
            .filter(|&p| p > 0)
            .ok_or_else(|| {
                DataError::Invalid(format!(
                    "image shape {shape:?} has a zero dimension or is too large"
                ))
            })?;
        if labels.len().checked_mul(per) != Some(images.len()) {
            return Err(DataError::Invalid(format!(
                "{} image values do not make {} images of shape {shape:?} ({} values each)",
                images.len(),
                labels.len(),
                per
            )));
        }
        if let Some((i, &l)) = labels
            .iter()
            .enumerate()
            .find(|&(_, &l)| l as usize >= classes)
        {
            return Err(DataError::Invalid(format!(
                "label {l} of example {i} is not below the class count {classes}"
            )));
        }
        Ok(Dataset {
            images,
            labels,
            shape,
            classes,
        })
    }

    /// The number of examples.
    pub fn len(&self) -> usize {
        self.labels.len()
    }

    /// Whether the data set has no examples.
    pub fn is_empty(&self) -> bool {
        self.labels.is_empty()
    }

    /// The number of `f32` values of one image (C·H·W).
    pub fn image_len(&self) -> usize {
        self.shape[0] * self.shape[1] * self.shape[2]
    }

    /// Image `i` as a CHW slice. Panics if `i >= len()`, like slice
    /// indexing.
    pub fn image(&self, i: usize) -> &[f32] {
        let n = self.image_len();
        &self.images[i * n..(i + 1) * n]
    }

    /// How many examples each class has.
    pub fn class_counts(&self) -> Vec<usize> {
        let mut counts = vec![0; self.classes];
        for &l in &self.labels {
            counts[l as usize] += 1;
        }
        counts
    }

    /// A new data set made of the examples at `indices`, in that order.
    pub fn subset(&self, indices: &[usize]) -> Result<Dataset, DataError> {
        if let Some(&bad) = indices.iter().find(|&&i| i >= self.len()) {
            return Err(DataError::Invalid(format!(
                "subset index {bad} is out of range for a data set of {} examples",
                self.len()
            )));
        }
        let mut images = Vec::with_capacity(indices.len() * self.image_len());
        for &i in indices {
            images.extend_from_slice(self.image(i));
        }
        Ok(Dataset {
            images,
            labels: indices.iter().map(|&i| self.labels[i]).collect(),
            shape: self.shape,
            classes: self.classes,
        })
    }

    /// The first `n` examples (all of them when `n` exceeds the length): the
    /// "overfit a tiny subset" check of the course notes.
    pub fn first(&self, n: usize) -> Dataset {
        let n = n.min(self.len());
        Dataset {
            images: self.images[..n * self.image_len()].to_vec(),
            labels: self.labels[..n].to_vec(),
            shape: self.shape,
            classes: self.classes,
        }
    }

    /// `n` examples drawn without replacement by a seeded shuffle (all of
    /// them, shuffled, when `n` exceeds the length).
    pub fn random_subset(&self, n: usize, seed: u64) -> Dataset {
        let mut order = permutation(self.len(), &mut Rng::new(seed));
        order.truncate(n);
        self.subset(&order).expect("a permutation is in range")
    }

    /// Splits into (train, validation): `validation` examples chosen by a
    /// seeded shuffle go to the second part, the rest (in their original
    /// order) to the first.
    pub fn split(&self, validation: usize, seed: u64) -> Result<(Dataset, Dataset), DataError> {
        if validation > self.len() {
            return Err(DataError::Invalid(format!(
                "cannot hold out {validation} validation examples from {} examples",
                self.len()
            )));
        }
        let order = permutation(self.len(), &mut Rng::new(seed));
        let mut val: Vec<usize> = order[..validation].to_vec();
        let mut train: Vec<usize> = order[validation..].to_vec();
        val.sort_unstable();
        train.sort_unstable();
        Ok((self.subset(&train)?, self.subset(&val)?))
    }

    /// A copy with every image zero-padded by `pad` pixels on each side
    /// (e.g. MNIST's 28×28 to LeNet-5's 32×32 with `pad = 2`). Pad before
    /// normalizing so the border is black.
    pub fn padded(&self, pad: usize) -> Dataset {
        let [c, h, w] = self.shape;
        let (ph, pw) = (h + 2 * pad, w + 2 * pad);
        let mut images = vec![0.0; self.len() * c * ph * pw];
        for (src, dst) in self
            .images
            .chunks_exact(h * w)
            .zip(images.chunks_exact_mut(ph * pw))
        {
            for y in 0..h {
                let o = (y + pad) * pw + pad;
                dst[o..o + w].copy_from_slice(&src[y * w..(y + 1) * w]);
            }
        }
        Dataset {
            images,
            labels: self.labels.clone(),
            shape: [c, ph, pw],
            classes: self.classes,
        }
    }

    /// Applies a normalization to every image in place.
    pub fn normalize(&mut self, norm: &Normalize) -> Result<(), DataError> {
        norm.apply(&mut self.images, self.shape)
    }
}

/// A uniformly random permutation of `0..n` (Fisher–Yates).
pub fn permutation(n: usize, rng: &mut Rng) -> Vec<usize> {
    let mut v: Vec<usize> = (0..n).collect();
    for i in (1..n).rev() {
        let j = rng.below(i as u64 + 1) as usize;
        v.swap(i, j);
    }
    v
}

/// The project's committed `data/` folder, found from this crate's location
/// at compile time (MNIST and the CIFAR-10 sample live there).
pub fn data_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .map(|p| p.join("data"))
        .unwrap_or_else(|| PathBuf::from("data"))
}

/// Finds the folder of data set `name` (e.g. `"fashion-mnist"`): first under
/// the folder named by the `KILN_DATA` environment variable, then under the
/// committed [`data_dir`]. `None` when neither has it.
pub fn locate(name: &str) -> Option<PathBuf> {
    let from_env = std::env::var_os("KILN_DATA")
        .filter(|p| !p.is_empty())
        .map(|p| PathBuf::from(p).join(name));
    from_env
        .into_iter()
        .chain(std::iter::once(data_dir().join(name)))
        .find(|p| p.is_dir())
}

/// Reads a whole file, naming it in the error.
pub(crate) fn read_file(path: &Path) -> Result<Vec<u8>, DataError> {
    std::fs::read(path).map_err(|source| DataError::Io {
        path: path.to_path_buf(),
        source,
    })
}
