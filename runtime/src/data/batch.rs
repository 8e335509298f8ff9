//! The mini-batch iterator: a seeded shuffle per epoch, fixed batch size,
//! and the next batches prepared on another thread.
//!
//! [`Batches`] owns a producer thread that gathers the examples of each
//! batch (in the epoch's order), augments them ([`Augment`], per example
//! with [`example_rng`]) and normalizes them, then hands them over through a
//! bounded channel of [`BatchConfig::prefetch`] batches. Dropping the
//! iterator early closes the channel; the producer notices on its next send
//! and the drop joins it, so no thread outlives the iterator.
//!
//! Everything a batch holds is a pure function of the data, the
//! configuration and the epoch: the same seed gives the same batches, and
//! each epoch a different order.

use std::sync::Arc;
use std::sync::mpsc::{Receiver, SyncSender, sync_channel};
use std::thread::JoinHandle;

use super::augment::{Augment, example_rng};
use super::{DataError, Dataset, Normalize, permutation};
use crate::rng::Rng;

/// How to cut a data set into mini-batches.
#[derive(Debug, Clone, PartialEq)]
pub struct BatchConfig {
    /// Examples per batch (positive).
    pub batch_size: usize,
    /// Shuffle the order each epoch (seeded); otherwise keep data order.
    pub shuffle: bool,
    /// Drop the last batch when it would be smaller than `batch_size`.
    pub drop_last: bool,
    /// The seed of the shuffle and of the augmentations.
    pub seed: u64,
    /// How many prepared batches may wait in the channel (at least 1).
    pub prefetch: usize,
    /// Augmentation applied to each example (before normalization).
    pub augment: Augment,
    /// Normalization applied to each example, if any.
    pub normalize: Option<Normalize>,
}

impl BatchConfig {
    /// Batches of `batch_size`, shuffled with seed 0, last partial batch
    /// kept, two batches prefetched, no augmentation or normalization.
    pub fn new(batch_size: usize) -> Self {
        BatchConfig {
            batch_size,
            shuffle: true,
            drop_last: false,
            seed: 0,
            prefetch: 2,
            augment: Augment::none(),
            normalize: None,
        }
    }

    /// The same configuration with another seed.
    pub fn seed(mut self, seed: u64) -> Self {
        self.seed = seed;
        self
    }

    /// The same configuration with `drop_last` set.
    pub fn drop_last(mut self, drop_last: bool) -> Self {
        self.drop_last = drop_last;
        self
    }

    /// The same configuration with shuffling on or off.
    pub fn shuffle(mut self, shuffle: bool) -> Self {
        self.shuffle = shuffle;
        self
    }

    /// The same configuration with an augmentation.
    pub fn augment(mut self, augment: Augment) -> Self {
        self.augment = augment;
        self
    }

    /// The same configuration with a normalization.
    pub fn normalize(mut self, normalize: Normalize) -> Self {
        self.normalize = Some(normalize);
        self
    }

    /// The number of batches one epoch over `n` examples gives.
    pub fn batches_per_epoch(&self, n: usize) -> usize {
        let b = self.batch_size.max(1);
        if self.drop_last { n / b } else { n.div_ceil(b) }
    }
}

/// One mini-batch, ready to feed a network.
#[derive(Debug, Clone, PartialEq)]
pub struct Batch {
    /// The images, NCHW (`shape[0]` images).
    pub images: Vec<f32>,
    /// The label of each image.
    pub labels: Vec<u8>,
    /// The index in the data set of each image.
    pub indices: Vec<usize>,
    /// N, C, H, W.
    pub shape: [usize; 4],
}

impl Batch {
    /// The number of examples in the batch.
    pub fn len(&self) -> usize {
        self.labels.len()
    }

    /// Whether the batch is empty (never, for a batch the iterator yields).
    pub fn is_empty(&self) -> bool {
        self.labels.is_empty()
    }

    /// The labels as `usize` class indices.
    pub fn targets(&self) -> Vec<usize> {
        self.labels.iter().map(|&l| l as usize).collect()
    }
}

/// The example order of `epoch` over `n` examples under `cfg`.
pub fn epoch_order(n: usize, cfg: &BatchConfig, epoch: u64) -> Vec<usize> {
    if cfg.shuffle {
        permutation(
            n,
            &mut Rng::new(cfg.seed ^ 0x5348_5546_464C_4521).fork(epoch),
        )
    } else {
        (0..n).collect()
    }
}

/// Gathers, augments and normalizes the examples at `indices` into a batch.
pub fn make_batch(
    data: &Dataset,
    indices: &[usize],
    cfg: &BatchConfig,
    epoch: u64,
) -> Result<Batch, DataError> {
    let per = data.image_len();
    let mut images = Vec::with_capacity(indices.len() * per);
    let mut scratch = Vec::new();
    let augment = !cfg.augment.is_none();
    for &i in indices {
        if i >= data.len() {
            return Err(DataError::Invalid(format!(
                "batch index {i} is out of range for a data set of {} examples",
                data.len()
            )));
        }
        let start = images.len();
        images.extend_from_slice(data.image(i));
        if augment {
            let mut rng = example_rng(cfg.seed, epoch, i as u64);
            cfg.augment
                .apply(&mut images[start..], data.shape, &mut rng, &mut scratch);
        }
    }
    if let Some(norm) = &cfg.normalize {
        norm.apply(&mut images, data.shape)?;
    }
    let [c, h, w] = data.shape;
    Ok(Batch {
        images,
        labels: indices.iter().map(|&i| data.labels[i]).collect(),
        indices: indices.to_vec(),
        shape: [indices.len(), c, h, w],
    })
}

/// An iterator over the mini-batches of one epoch, prepared ahead on a
/// producer thread.
#[derive(Debug)]
pub struct Batches {
    rx: Option<Receiver<Batch>>,
    handle: Option<JoinHandle<()>>,
    remaining: usize,
}

impl Batches {
    /// Starts producing the batches of `epoch`. Errors if the batch size is
    /// zero or the normalization does not fit the data.
    pub fn new(data: Arc<Dataset>, cfg: &BatchConfig, epoch: u64) -> Result<Self, DataError> {
        if cfg.batch_size == 0 {
            return Err(DataError::Invalid("batch size must be positive".into()));
        }
        if let Some(norm) = &cfg.normalize
            && norm.mean.len() != data.shape[0]
        {
            return Err(DataError::Invalid(format!(
                "normalization has {} channels but the images have {}",
                norm.mean.len(),
                data.shape[0]
            )));
        }
        let order = epoch_order(data.len(), cfg, epoch);
        let count = cfg.batches_per_epoch(data.len());
        let (tx, rx) = sync_channel(cfg.prefetch.max(1));
        let cfg = cfg.clone();
        let handle = std::thread::Builder::new()
            .name("kiln-batches".into())
            .spawn(move || produce(&data, &order, count, &cfg, epoch, tx))
            .map_err(|e| DataError::Invalid(format!("cannot start the batch thread: {e}")))?;
        Ok(Batches {
            rx: Some(rx),
            handle: Some(handle),
            remaining: count,
        })
    }
}

fn produce(
    data: &Dataset,
    order: &[usize],
    count: usize,
    cfg: &BatchConfig,
    epoch: u64,
    tx: SyncSender<Batch>,
) {
    for chunk in order.chunks(cfg.batch_size).take(count) {
        // Indices come from a permutation and the normalization was checked
        // in `Batches::new`, so this cannot fail.
        let batch = make_batch(data, chunk, cfg, epoch).expect("batch inputs were validated");
        if tx.send(batch).is_err() {
            return; // The iterator was dropped.
        }
    }
}

impl Iterator for Batches {
    type Item = Batch;

    fn next(&mut self) -> Option<Batch> {
        if self.remaining == 0 {
            return None;
        }
        match self.rx.as_ref()?.recv() {
            Ok(b) => {
                self.remaining -= 1;
                Some(b)
            }
            Err(_) => {
                // The producer ended before sending every batch: it panicked.
                self.rx = None;
                if let Some(h) = self.handle.take()
                    && let Err(p) = h.join()
                {
                    std::panic::resume_unwind(p);
                }
                None
            }
        }
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        (self.remaining, Some(self.remaining))
    }
}

impl ExactSizeIterator for Batches {}

impl Drop for Batches {
    fn drop(&mut self) {
        // Close the channel first so a producer blocked on a full channel
        // wakes up with an error, then wait for it.
        self.rx = None;
        if let Some(h) = self.handle.take() {
            let _ = h.join();
        }
    }
}

impl Dataset {
    /// The mini-batches of `epoch` of a shared data set, prepared on another
    /// thread.
    pub fn batches(self: &Arc<Self>, cfg: &BatchConfig, epoch: u64) -> Result<Batches, DataError> {
        Batches::new(Arc::clone(self), cfg, epoch)
    }
}
