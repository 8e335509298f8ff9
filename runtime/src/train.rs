//! The training loop: `fit` and `evaluate` for any generated classifier.
//!
//! Generated networks whose loss takes class indices implement
//! [`Classifier`]; [`fit`] drives one through epochs of shuffled
//! mini-batches (prepared on another thread by [`crate::data`]), with an
//! optimizer and a schedule, a progress bar, per-epoch evaluation on a test
//! set, a CSV of metrics, loss and accuracy plots, and an atomic checkpoint
//! at the end of every epoch. Nothing here knows which network it trains.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Instant;

use crate::checkpoint::{self, TrainState};
use crate::data::{BatchConfig, Dataset};
use crate::kernels::loss::{self, Reduction};
use crate::metrics::{CsvLog, EpochRecord, argmax_rows};
use crate::optim::Optimizer;
use crate::params::{Params, ToolkitError};
use crate::plot::plot_history;
use crate::progress::{Output, Progress};
use crate::schedule::Schedule;

/// A network that maps an image to class scores and can be trained on
/// class labels: what `kiln::network!` generates for a classification loss.
pub trait Classifier {
    /// The largest batch one call takes.
    fn batch(&self) -> usize;
    /// Floats per input example.
    fn input_len(&self) -> usize;
    /// Number of classes (scores per example).
    fn classes(&self) -> usize;
    /// Inference: `n × classes` scores for `n × input_len` floats.
    fn infer(&mut self, x: &[f32]) -> Result<&[f32], ToolkitError>;
    /// One optimizer step on a batch; returns the loss.
    fn step(
        &mut self,
        x: &[f32],
        labels: &[u32],
        opt: &mut dyn Optimizer,
        lr: f32,
    ) -> Result<f32, ToolkitError>;
    /// The scores of the last training step's first `n` examples.
    fn last_scores(&self, n: usize) -> &[f32];
    /// The parameters, for checkpoints.
    fn parameters(&self) -> &Params;
}

/// Loss and accuracy of a classifier over a data set.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Evaluation {
    /// Mean cross-entropy of the scores.
    pub loss: f64,
    /// Fraction classified correctly.
    pub accuracy: f64,
    /// Examples per second of inference.
    pub images_per_s: f64,
}

/// Evaluates `model` on every example of `data`, in batches of the model's
/// batch size.
pub fn evaluate<M: Classifier + ?Sized>(
    model: &mut M,
    data: &Dataset,
) -> Result<Evaluation, ToolkitError> {
    check_shapes(model, data)?;
    let (b, len, classes) = (model.batch(), model.input_len(), model.classes());
    let start = Instant::now();
    let (mut loss_sum, mut correct) = (0.0f64, 0usize);
    for first in (0..data.len()).step_by(b) {
        let n = b.min(data.len() - first);
        let x = &data.images[first * len..(first + n) * len];
        let labels: Vec<u32> = data.labels[first..first + n]
            .iter()
            .map(|&l| l as u32)
            .collect();
        let scores = model.infer(x)?;
        let l = loss::cross_entropy(scores, &labels, classes, Reduction::Sum, None)
            .map_err(|e| ToolkitError::Invalid(format!("evaluate: {e}")))?;
        loss_sum += l as f64;
        correct += argmax_rows(scores, classes)
            .iter()
            .zip(&labels)
            .filter(|(p, l)| **p == **l as usize)
            .count();
    }
    let seconds = start.elapsed().as_secs_f64().max(1e-9);
    let total = data.len().max(1) as f64;
    Ok(Evaluation {
        loss: loss_sum / total,
        accuracy: correct as f64 / total,
        images_per_s: data.len() as f64 / seconds,
    })
}

fn check_shapes<M: Classifier + ?Sized>(model: &M, data: &Dataset) -> Result<(), ToolkitError> {
    if data.image_len() != model.input_len() {
        return Err(ToolkitError::Invalid(format!(
            "the data set's images have {} floats (shape {:?}) but the network takes {}",
            data.image_len(),
            data.shape,
            model.input_len()
        )));
    }
    if data.classes > model.classes() {
        return Err(ToolkitError::Invalid(format!(
            "the data set has {} classes but the network scores {}",
            data.classes,
            model.classes()
        )));
    }
    Ok(())
}

/// What [`fit`] does besides training.
#[derive(Debug, Clone)]
pub struct FitConfig {
    /// Passes over the training set.
    pub epochs: usize,
    /// Shuffling seed (the batch size is the model's).
    pub seed: u64,
    /// Where to append per-epoch metrics (CSV), if anywhere.
    pub csv: Option<PathBuf>,
    /// Where to draw the loss and accuracy curves (`.png` or `.svg`).
    pub plots: Vec<PathBuf>,
    /// Where to save a checkpoint after every epoch (atomically).
    pub checkpoint: Option<PathBuf>,
    /// How progress is shown.
    pub progress: Output,
}

impl FitConfig {
    /// `epochs` epochs, nothing written, progress on stderr.
    pub fn new(epochs: usize) -> Self {
        FitConfig {
            epochs,
            seed: 0,
            csv: None,
            plots: Vec::new(),
            checkpoint: None,
            progress: Output::Auto,
        }
    }
}

/// Errors of a training run: the toolkit's, or a metrics/plot file's.
#[derive(Debug, thiserror::Error)]
pub enum FitError {
    /// Training, evaluation or a checkpoint failed.
    #[error(transparent)]
    Toolkit(#[from] ToolkitError),
    /// The data could not be batched.
    #[error(transparent)]
    Data(#[from] crate::data::DataError),
    /// The CSV log could not be written.
    #[error(transparent)]
    Metrics(#[from] crate::metrics::MetricsError),
    /// A plot could not be drawn.
    #[error(transparent)]
    Plot(#[from] crate::plot::PlotError),
}

/// Trains `model` on `train` for `cfg.epochs` epochs with `opt` and
/// `schedule` (advanced once per step), evaluating on `test` after each
/// epoch. Returns the per-epoch records (train and test).
pub fn fit<M: Classifier + ?Sized>(
    model: &mut M,
    train: Arc<Dataset>,
    test: &Dataset,
    opt: &mut dyn Optimizer,
    schedule: &mut Schedule,
    cfg: &FitConfig,
) -> Result<Vec<EpochRecord>, FitError> {
    check_shapes(model, &train)?;
    let batch_cfg = BatchConfig::new(model.batch()).seed(cfg.seed);
    let batches = batch_cfg.batches_per_epoch(train.len());
    let mut progress = Progress::new(cfg.epochs, batches, cfg.progress);
    let mut csv = match &cfg.csv {
        Some(p) => Some(CsvLog::open(p)?),
        None => None,
    };
    let classes = model.classes();
    let mut history = Vec::new();
    for epoch in 1..=cfg.epochs {
        progress.start_epoch(epoch);
        let start = Instant::now();
        let lr_start = schedule.lr();
        for b in train.batches(&batch_cfg, epoch as u64)? {
            let labels: Vec<u32> = b.labels.iter().map(|&l| l as u32).collect();
            let lr = schedule.lr();
            let loss = model.step(&b.images, &labels, opt, lr)?;
            schedule.advance();
            let hits = argmax_rows(model.last_scores(b.len()), classes)
                .iter()
                .zip(&labels)
                .filter(|(p, l)| **p == **l as usize)
                .count();
            progress.batch(loss as f64, hits as f64 / b.len() as f64, b.len());
        }
        let seconds = start.elapsed().as_secs_f64();
        let stats = progress.stats();
        let train_rec = EpochRecord {
            epoch,
            split: "train".into(),
            loss: stats.loss,
            accuracy: stats.accuracy,
            lr: lr_start as f64,
            images_per_s: train.len() as f64 / seconds.max(1e-9),
            seconds,
        };
        let ev = evaluate(model, test)?;
        let test_rec = EpochRecord {
            epoch,
            split: "test".into(),
            loss: ev.loss,
            accuracy: ev.accuracy,
            lr: lr_start as f64,
            images_per_s: ev.images_per_s,
            seconds: test.len() as f64 / ev.images_per_s.max(1e-9),
        };
        // The progress line already holds the training loss, accuracy and
        // images/s; the summary adds the evaluation.
        progress.end_epoch(&format!(
            "test loss {:.4}, test accuracy {:.2}%",
            test_rec.loss,
            100.0 * test_rec.accuracy
        ));
        if let Some(csv) = csv.as_mut() {
            csv.append(&train_rec)?;
            csv.append(&test_rec)?;
        }
        history.push(train_rec);
        history.push(test_rec);
        if let Some(path) = &cfg.checkpoint {
            let state = TrainState {
                optim: Some(opt.state()),
                schedule: Some(schedule.state()),
                epoch: epoch as u64,
                ..TrainState::default()
            };
            checkpoint::save(path, model.parameters(), &state)?;
        }
        for p in &cfg.plots {
            plot_history(&history, p, (900, 400))?;
        }
    }
    progress.finish();
    Ok(history)
}
