//! Progress reporting for training: bars over epochs and batches on a
//! terminal, plain log lines elsewhere (CI, a file, a pipe).
//!
//! [`Progress`] is driven by the training loop: [`Progress::start_epoch`],
//! [`Progress::batch`] after each batch with its loss, accuracy and size,
//! [`Progress::end_epoch`] with a summary line. On a terminal it draws two
//! indicatif bars (epochs; batches with loss, accuracy, images/s and ETA);
//! otherwise it writes one line per tenth of an epoch and one per epoch end,
//! so a CI log stays short and readable.

use std::fmt;
use std::io::{IsTerminal, Write};
use std::time::{Duration, Instant};

use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};

use crate::metrics::RunningMean;

/// Where and how progress is shown.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Output {
    /// Bars when stderr is a terminal, lines otherwise.
    Auto,
    /// Always bars (on stderr).
    Bars,
    /// Always plain lines (on stderr, or the writer given).
    Lines,
    /// Nothing.
    Hidden,
}

/// The running statistics of the current epoch.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct EpochStats {
    /// Mean loss so far, weighted by batch size.
    pub loss: f64,
    /// Fraction of examples classified correctly so far.
    pub accuracy: f64,
    /// Examples seen so far this epoch.
    pub images: usize,
    /// Images per second since the epoch started.
    pub images_per_s: f64,
    /// Estimated time left in the epoch.
    pub eta: Duration,
}

/// Formats a duration as `m:ss` (or `h:mm:ss`).
pub fn format_duration(d: Duration) -> String {
    let s = d.as_secs();
    if s >= 3600 {
        format!("{}:{:02}:{:02}", s / 3600, s / 60 % 60, s % 60)
    } else {
        format!("{}:{:02}", s / 60, s % 60)
    }
}

/// The status text shown after the bar and in log lines.
pub fn format_stats(s: &EpochStats) -> String {
    format!(
        "loss {:.4} acc {:.2}% {:.0} img/s",
        s.loss,
        100.0 * s.accuracy,
        s.images_per_s
    )
}

enum Sink {
    Bars {
        _multi: MultiProgress,
        epochs: ProgressBar,
        batches: ProgressBar,
    },
    Lines(Box<dyn Write + Send>),
    Hidden,
}

/// Progress of a training run over `epochs` epochs of `batches` batches.
pub struct Progress {
    sink: Sink,
    epochs: usize,
    batches: usize,
    epoch: usize,
    done: usize,
    loss: RunningMean,
    correct: f64,
    images: usize,
    started: Instant,
    lines_every: usize,
}

impl fmt::Debug for Progress {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let kind = match self.sink {
            Sink::Bars { .. } => "bars",
            Sink::Lines(_) => "lines",
            Sink::Hidden => "hidden",
        };
        f.debug_struct("Progress")
            .field("output", &kind)
            .field("epoch", &self.epoch)
            .field("epochs", &self.epochs)
            .field("batch", &self.done)
            .field("batches", &self.batches)
            .finish()
    }
}

impl Progress {
    /// Progress on stderr, as `output` says.
    pub fn new(epochs: usize, batches: usize, output: Output) -> Self {
        let bars = match output {
            Output::Auto => std::io::stderr().is_terminal(),
            Output::Bars => true,
            Output::Lines => false,
            Output::Hidden => return Self::with_sink(epochs, batches, Sink::Hidden),
        };
        if !bars {
            return Self::with_sink(epochs, batches, Sink::Lines(Box::new(std::io::stderr())));
        }
        let multi = MultiProgress::with_draw_target(ProgressDrawTarget::stderr());
        let style = |t: &str| ProgressStyle::with_template(t).expect("a valid template");
        let epochs_bar = multi.add(ProgressBar::new(epochs as u64));
        epochs_bar.set_style(style(
            "epoch {pos}/{len} [{wide_bar}] {elapsed_precise} elapsed, eta {eta_precise}",
        ));
        let batches_bar = multi.add(ProgressBar::new(batches as u64));
        batches_bar.set_style(style("batch {pos}/{len} [{wide_bar}] {msg} eta {eta}"));
        Self::with_sink(
            epochs,
            batches,
            Sink::Bars {
                _multi: multi,
                epochs: epochs_bar,
                batches: batches_bar,
            },
        )
    }

    /// Plain lines written to `w` (for logs and tests).
    pub fn to_writer(epochs: usize, batches: usize, w: Box<dyn Write + Send>) -> Self {
        Self::with_sink(epochs, batches, Sink::Lines(w))
    }

    fn with_sink(epochs: usize, batches: usize, sink: Sink) -> Self {
        Progress {
            sink,
            epochs,
            batches,
            epoch: 0,
            done: 0,
            loss: RunningMean::new(),
            correct: 0.0,
            images: 0,
            started: Instant::now(),
            lines_every: batches.div_ceil(10).max(1),
        }
    }

    /// Starts epoch `epoch` (counted from 1) and resets its statistics.
    pub fn start_epoch(&mut self, epoch: usize) {
        self.epoch = epoch;
        self.done = 0;
        self.loss = RunningMean::new();
        self.correct = 0.0;
        self.images = 0;
        self.started = Instant::now();
        if let Sink::Bars { batches, .. } = &self.sink {
            batches.reset();
            batches.set_length(self.batches as u64);
        }
    }

    /// The statistics of the current epoch so far.
    pub fn stats(&self) -> EpochStats {
        let secs = self.started.elapsed().as_secs_f64();
        let left = self.batches.saturating_sub(self.done);
        let eta = if self.done > 0 {
            Duration::from_secs_f64(secs / self.done as f64 * left as f64)
        } else {
            Duration::ZERO
        };
        EpochStats {
            loss: self.loss.mean(),
            accuracy: if self.images > 0 {
                self.correct / self.images as f64
            } else {
                0.0
            },
            images: self.images,
            images_per_s: if secs > 0.0 {
                self.images as f64 / secs
            } else {
                0.0
            },
            eta,
        }
    }

    /// Records one batch of `images` examples with mean loss `loss` and
    /// accuracy `accuracy`, and updates the display.
    pub fn batch(&mut self, loss: f64, accuracy: f64, images: usize) {
        self.done += 1;
        self.loss.add(loss, images as f64);
        self.correct += accuracy * images as f64;
        self.images += images;
        let stats = self.stats();
        let (epoch, epochs, done, batches) = (self.epoch, self.epochs, self.done, self.batches);
        let every = self.lines_every;
        match &mut self.sink {
            Sink::Bars { batches, .. } => {
                batches.set_message(format_stats(&stats));
                batches.inc(1);
            }
            Sink::Lines(w) if done % every == 0 && done < batches => {
                let _ = writeln!(
                    w,
                    "epoch {epoch}/{epochs} batch {done}/{batches} {} eta {}",
                    format_stats(&stats),
                    format_duration(stats.eta)
                );
                let _ = w.flush();
            }
            _ => {}
        }
    }

    /// Ends the epoch, printing `summary` (e.g. the validation metrics)
    /// after the epoch's own statistics.
    pub fn end_epoch(&mut self, summary: &str) {
        let stats = self.stats();
        let line = format!(
            "epoch {}/{} done in {}: train {}{}{summary}",
            self.epoch,
            self.epochs,
            format_duration(self.started.elapsed()),
            format_stats(&stats),
            if summary.is_empty() { "" } else { "; " },
        );
        match &mut self.sink {
            Sink::Bars {
                epochs, batches, ..
            } => {
                batches.println(&line);
                epochs.inc(1);
            }
            Sink::Lines(w) => {
                let _ = writeln!(w, "{line}");
                let _ = w.flush();
            }
            Sink::Hidden => {}
        }
    }

    /// Prints a message without disturbing the bars.
    pub fn println(&mut self, msg: &str) {
        match &mut self.sink {
            Sink::Bars { batches, .. } => batches.println(msg),
            Sink::Lines(w) => {
                let _ = writeln!(w, "{msg}");
                let _ = w.flush();
            }
            Sink::Hidden => {}
        }
    }

    /// Removes the bars (lines need nothing).
    pub fn finish(&mut self) {
        if let Sink::Bars {
            epochs, batches, ..
        } = &self.sink
        {
            batches.finish_and_clear();
            epochs.finish();
        }
    }
}
