//! Training metrics: running loss, accuracy, confusion matrix with
//! per-class precision and recall, early stopping, and the per-run CSV log.
//!
//! - [`RunningMean`]: the mean of a loss over the batches of an epoch,
//!   weighted by batch size.
//! - [`ConfusionMatrix`]: counts of (true class, predicted class); accuracy,
//!   precision and recall derive from it; `Display` prints it as a table.
//! - [`EarlyStopping`]: stop when a validation metric has not improved by
//!   `min_delta` for `patience` epochs.
//! - [`CsvLog`]: one [`EpochRecord`] per line appended to a CSV file, the
//!   header written once, each line written whole and flushed.

use std::fmt;
use std::fs::{File, OpenOptions};
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};

/// A weighted running mean (e.g. loss per example over an epoch).
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct RunningMean {
    sum: f64,
    weight: f64,
}

impl RunningMean {
    /// An empty mean.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds `value` with `weight` (e.g. a batch's mean loss and its size).
    pub fn add(&mut self, value: f64, weight: f64) {
        self.sum += value * weight;
        self.weight += weight;
    }

    /// The mean so far (0 when nothing was added).
    pub fn mean(&self) -> f64 {
        if self.weight > 0.0 {
            self.sum / self.weight
        } else {
            0.0
        }
    }

    /// The total weight added.
    pub fn weight(&self) -> f64 {
        self.weight
    }
}

/// The index of the largest value of each row of `classes` scores (ties go
/// to the first; NaN never wins).
pub fn argmax_rows(scores: &[f32], classes: usize) -> Vec<usize> {
    if classes == 0 {
        return Vec::new();
    }
    scores
        .chunks_exact(classes)
        .map(|row| {
            let mut best = 0;
            for (i, &v) in row.iter().enumerate() {
                if v > row[best] || row[best].is_nan() {
                    best = i;
                }
            }
            best
        })
        .collect()
}

/// The fraction of `predicted` equal to `labels` (0 for empty input).
pub fn accuracy(predicted: &[usize], labels: &[u8]) -> f64 {
    let n = predicted.len().min(labels.len());
    if n == 0 {
        return 0.0;
    }
    let right = predicted
        .iter()
        .zip(labels)
        .filter(|&(&p, &l)| p == l as usize)
        .count();
    right as f64 / n as f64
}

/// A confusion matrix: `count(t, p)` examples of true class `t` were
/// predicted as `p`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfusionMatrix {
    classes: usize,
    counts: Vec<u64>,
    names: Vec<String>,
}

impl ConfusionMatrix {
    /// An empty matrix over `classes` classes, named by their index.
    pub fn new(classes: usize) -> Self {
        ConfusionMatrix {
            classes,
            counts: vec![0; classes * classes],
            names: (0..classes).map(|c| c.to_string()).collect(),
        }
    }

    /// An empty matrix over the named classes.
    pub fn with_names(names: &[&str]) -> Self {
        let mut m = Self::new(names.len());
        m.names = names.iter().map(|s| s.to_string()).collect();
        m
    }

    /// The number of classes.
    pub fn classes(&self) -> usize {
        self.classes
    }

    /// Records one example; classes out of range are ignored and reported
    /// as `false`.
    pub fn add(&mut self, truth: usize, predicted: usize) -> bool {
        if truth < self.classes && predicted < self.classes {
            self.counts[truth * self.classes + predicted] += 1;
            true
        } else {
            false
        }
    }

    /// Records a batch from its scores (`labels.len()` rows of `classes`
    /// values, e.g. logits) and true labels.
    pub fn add_scores(&mut self, scores: &[f32], labels: &[u8]) {
        for (p, &t) in argmax_rows(scores, self.classes).into_iter().zip(labels) {
            self.add(t as usize, p);
        }
    }

    /// The count of true class `truth` predicted as `predicted`. Panics if
    /// either is not below `classes()`.
    pub fn count(&self, truth: usize, predicted: usize) -> u64 {
        self.counts[truth * self.classes + predicted]
    }

    /// The number of examples recorded.
    pub fn total(&self) -> u64 {
        self.counts.iter().sum()
    }

    /// The fraction of examples on the diagonal (0 when empty).
    pub fn accuracy(&self) -> f64 {
        let total = self.total();
        if total == 0 {
            return 0.0;
        }
        let diag: u64 = (0..self.classes).map(|c| self.count(c, c)).sum();
        diag as f64 / total as f64
    }

    /// Precision of class `c`: of the examples predicted `c`, the fraction
    /// that are `c`. `None` when nothing was predicted `c`.
    pub fn precision(&self, c: usize) -> Option<f64> {
        let col: u64 = (0..self.classes).map(|t| self.count(t, c)).sum();
        (col > 0).then(|| self.count(c, c) as f64 / col as f64)
    }

    /// Recall of class `c`: of the examples of class `c`, the fraction
    /// predicted `c`. `None` when there were none.
    pub fn recall(&self, c: usize) -> Option<f64> {
        let row: u64 = (0..self.classes).map(|p| self.count(c, p)).sum();
        (row > 0).then(|| self.count(c, c) as f64 / row as f64)
    }
}

impl fmt::Display for ConfusionMatrix {
    /// Rows are true classes, columns predicted ones, then each class's
    /// precision and recall ("-" when undefined).
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let name_w = self
            .names
            .iter()
            .map(|n| n.len())
            .max()
            .unwrap_or(1)
            .max(10);
        let cell_w = self
            .counts
            .iter()
            .map(|c| c.to_string().len())
            .chain(self.names.iter().map(|n| n.len()))
            .max()
            .unwrap_or(1)
            .max(4);
        write!(f, "{:>name_w$}", "true\\pred")?;
        for n in &self.names {
            write!(f, " {n:>cell_w$}")?;
        }
        writeln!(f, " {:>9} {:>9}", "precision", "recall")?;
        let pct = |v: Option<f64>| v.map_or("-".to_string(), |v| format!("{:.1}%", 100.0 * v));
        for t in 0..self.classes {
            write!(f, "{:>name_w$}", self.names[t])?;
            for p in 0..self.classes {
                write!(f, " {:>cell_w$}", self.count(t, p))?;
            }
            writeln!(
                f,
                " {:>9} {:>9}",
                pct(self.precision(t)),
                pct(self.recall(t))
            )?;
        }
        write!(
            f,
            "accuracy {:.2}% over {} examples",
            100.0 * self.accuracy(),
            self.total()
        )
    }
}

/// Whether a smaller or a larger metric is better.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// Smaller is better (a loss).
    Min,
    /// Larger is better (an accuracy).
    Max,
}

/// What [`EarlyStopping::update`] concluded about an epoch.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Verdict {
    /// A new best value: keep going (and e.g. save a checkpoint).
    Improved,
    /// No improvement; training continues for at most `left` more such
    /// epochs.
    Wait {
        /// Epochs without improvement still allowed.
        left: usize,
    },
    /// `patience` epochs without improvement: stop.
    Stop,
}

/// Early stopping on a validation metric: stop once `patience` epochs in a
/// row failed to improve on the best value by more than `min_delta`.
#[derive(Debug, Clone, PartialEq)]
pub struct EarlyStopping {
    /// Whether smaller or larger is better.
    pub mode: Mode,
    /// Epochs without improvement tolerated before stopping.
    pub patience: usize,
    /// The least change that counts as an improvement (non-negative).
    pub min_delta: f64,
    best: Option<(usize, f64)>,
    waited: usize,
}

impl EarlyStopping {
    /// A fresh tracker.
    pub fn new(mode: Mode, patience: usize, min_delta: f64) -> Self {
        EarlyStopping {
            mode,
            patience,
            min_delta: min_delta.abs(),
            best: None,
            waited: 0,
        }
    }

    /// Records the metric of `epoch`. A NaN never improves.
    pub fn update(&mut self, epoch: usize, value: f64) -> Verdict {
        let improved = match self.best {
            None => !value.is_nan(),
            Some((_, best)) => match self.mode {
                Mode::Min => value < best - self.min_delta,
                Mode::Max => value > best + self.min_delta,
            },
        };
        if improved {
            self.best = Some((epoch, value));
            self.waited = 0;
            return Verdict::Improved;
        }
        self.waited += 1;
        if self.waited >= self.patience {
            Verdict::Stop
        } else {
            Verdict::Wait {
                left: self.patience - self.waited,
            }
        }
    }

    /// The best (epoch, value) so far.
    pub fn best(&self) -> Option<(usize, f64)> {
        self.best
    }
}

/// The metrics of one split in one epoch: one line of the run's CSV.
#[derive(Debug, Clone, PartialEq)]
pub struct EpochRecord {
    /// The epoch (from 1, or as the caller counts).
    pub epoch: usize,
    /// `train`, `val`, `test`, …
    pub split: String,
    /// The mean loss.
    pub loss: f64,
    /// The accuracy in `[0, 1]`.
    pub accuracy: f64,
    /// The learning rate in effect.
    pub lr: f64,
    /// Throughput in images per second.
    pub images_per_s: f64,
    /// Wall-clock seconds of the epoch for this split.
    pub seconds: f64,
}

/// The header line of the CSV log.
pub const CSV_HEADER: &str = "epoch,split,loss,accuracy,lr,images_per_s,seconds";

impl EpochRecord {
    fn to_csv_line(&self) -> String {
        let split = if self.split.contains([',', '"', '\n', '\r']) {
            format!(
                "\"{}\"",
                self.split.replace('"', "\"\"").replace(['\n', '\r'], " ")
            )
        } else {
            self.split.clone()
        };
        format!(
            "{},{split},{},{},{},{},{}\n",
            self.epoch, self.loss, self.accuracy, self.lr, self.images_per_s, self.seconds
        )
    }
}

/// An error of the CSV log, naming the file (and the line, when reading).
#[derive(Debug, thiserror::Error)]
pub enum MetricsError {
    /// Opening, writing or reading failed.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The underlying error.
        source: std::io::Error,
    },
    /// The file is not a kiln metrics log.
    #[error("{path}:{line}: {reason}")]
    Format {
        /// The file.
        path: PathBuf,
        /// The 1-based line.
        line: usize,
        /// What is wrong.
        reason: String,
    },
}

/// A per-run CSV log of [`EpochRecord`]s.
#[derive(Debug)]
pub struct CsvLog {
    path: PathBuf,
    file: File,
}

impl CsvLog {
    /// Opens `path` for appending (creating it and its folder if needed),
    /// writing the header if the file is empty; an existing file must start
    /// with the same header.
    pub fn open(path: &Path) -> Result<Self, MetricsError> {
        let io = |source| MetricsError::Io {
            path: path.to_path_buf(),
            source,
        };
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir).map_err(io)?;
        }
        let mut file = OpenOptions::new()
            .create(true)
            .append(true)
            .read(true)
            .open(path)
            .map_err(io)?;
        let len = file.metadata().map_err(io)?.len();
        if len == 0 {
            file.write_all(format!("{CSV_HEADER}\n").as_bytes())
                .and_then(|_| file.flush())
                .map_err(io)?;
        } else {
            let mut first = String::new();
            BufReader::new(File::open(path).map_err(io)?)
                .read_line(&mut first)
                .map_err(io)?;
            if first.trim_end() != CSV_HEADER {
                return Err(MetricsError::Format {
                    path: path.to_path_buf(),
                    line: 1,
                    reason: format!(
                        "existing file's header `{}` is not `{CSV_HEADER}`; use a new file per run",
                        first.trim_end()
                    ),
                });
            }
        }
        Ok(CsvLog {
            path: path.to_path_buf(),
            file,
        })
    }

    /// The file written to.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Appends one record as one whole line and flushes it.
    pub fn append(&mut self, r: &EpochRecord) -> Result<(), MetricsError> {
        self.file
            .write_all(r.to_csv_line().as_bytes())
            .and_then(|_| self.file.flush())
            .map_err(|source| MetricsError::Io {
                path: self.path.clone(),
                source,
            })
    }
}

/// Splits one CSV line into fields, honouring double quotes.
fn csv_fields(line: &str) -> Vec<String> {
    let mut out = vec![String::new()];
    let mut quoted = false;
    let mut chars = line.chars().peekable();
    while let Some(ch) = chars.next() {
        match (ch, quoted) {
            ('"', true) if chars.peek() == Some(&'"') => {
                chars.next();
                out.last_mut().expect("non-empty").push('"');
            }
            ('"', _) => quoted = !quoted,
            (',', false) => out.push(String::new()),
            (c, _) => out.last_mut().expect("non-empty").push(c),
        }
    }
    out
}

/// Reads back a CSV log written by [`CsvLog`] (e.g. to plot a finished run).
pub fn read_csv(path: &Path) -> Result<Vec<EpochRecord>, MetricsError> {
    let text = std::fs::read_to_string(path).map_err(|source| MetricsError::Io {
        path: path.to_path_buf(),
        source,
    })?;
    let fail = |line: usize, reason: String| MetricsError::Format {
        path: path.to_path_buf(),
        line,
        reason,
    };
    let mut lines = text.lines().enumerate();
    match lines.next() {
        Some((_, h)) if h == CSV_HEADER => {}
        other => {
            return Err(fail(
                1,
                format!(
                    "header `{}` is not `{CSV_HEADER}`",
                    other.map_or("", |(_, h)| h)
                ),
            ));
        }
    }
    let mut out = Vec::new();
    for (i, line) in lines {
        if line.is_empty() {
            continue;
        }
        let f = csv_fields(line);
        if f.len() != 7 {
            return Err(fail(i + 1, format!("{} fields, expected 7", f.len())));
        }
        let num = |k: usize| -> Result<f64, MetricsError> {
            f[k].parse()
                .map_err(|_| fail(i + 1, format!("field {} `{}` is not a number", k + 1, f[k])))
        };
        out.push(EpochRecord {
            epoch: f[0]
                .parse()
                .map_err(|_| fail(i + 1, format!("epoch `{}` is not an integer", f[0])))?,
            split: f[1].clone(),
            loss: num(2)?,
            accuracy: num(3)?,
            lr: num(4)?,
            images_per_s: num(5)?,
            seconds: num(6)?,
        });
    }
    Ok(out)
}
