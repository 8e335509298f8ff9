//! Progress in plain-line mode (what CI sees): which lines are written and
//! what they say.

use std::io::Write;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use kiln_runtime::progress::{EpochStats, Output, Progress, format_duration, format_stats};

/// A writer whose bytes the test can read afterwards.
#[derive(Clone, Default)]
struct Shared(Arc<Mutex<Vec<u8>>>);

impl Write for Shared {
    fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(b);
        Ok(b.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// Runs `epochs` epochs of `batches` batches (loss 0.5, accuracy 0.25, 8
/// images each) and checks the line prefixes written.
fn check(epochs: usize, batches: usize, expect: &[&str]) {
    let out = Shared::default();
    let mut p = Progress::to_writer(epochs, batches, Box::new(out.clone()));
    for e in 1..=epochs {
        p.start_epoch(e);
        for _ in 0..batches {
            p.batch(0.5, 0.25, 8);
        }
        assert_eq!(p.stats().images, 8 * batches);
        p.end_epoch("val loss 0.4");
    }
    p.finish();
    let text = String::from_utf8(out.0.lock().unwrap().clone()).unwrap();
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), expect.len(), "{text}");
    for (l, e) in lines.iter().zip(expect) {
        assert!(l.starts_with(e), "`{l}` does not start with `{e}`");
    }
}

#[test]
fn lines_every_tenth_of_an_epoch_and_at_its_end() {
    check(
        1,
        20,
        &[
            "epoch 1/1 batch 2/20 loss 0.5000 acc 25.00% ",
            "epoch 1/1 batch 4/20 ",
            "epoch 1/1 batch 6/20 ",
            "epoch 1/1 batch 8/20 ",
            "epoch 1/1 batch 10/20 ",
            "epoch 1/1 batch 12/20 ",
            "epoch 1/1 batch 14/20 ",
            "epoch 1/1 batch 16/20 ",
            "epoch 1/1 batch 18/20 ",
            "epoch 1/1 done in 0:00: train loss 0.5000 acc 25.00% ",
        ],
    );
    check(
        2,
        3,
        &[
            "epoch 1/2 batch 1/3 ",
            "epoch 1/2 batch 2/3 ",
            "epoch 1/2 done in ",
            "epoch 2/2 batch 1/3 ",
            "epoch 2/2 batch 2/3 ",
            "epoch 2/2 done in ",
        ],
    );
}

#[test]
fn formatting_and_other_outputs() {
    assert_eq!(format_duration(Duration::from_secs(75)), "1:15");
    assert_eq!(format_duration(Duration::from_secs(3725)), "1:02:05");
    let s = EpochStats {
        loss: 0.123456,
        accuracy: 0.98765,
        images: 10,
        images_per_s: 4321.4,
        eta: Duration::ZERO,
    };
    assert_eq!(format_stats(&s), "loss 0.1235 acc 98.77% 4321 img/s");
    // Hidden and bar modes run the same calls without failing.
    for out in [Output::Hidden, Output::Bars] {
        let mut p = Progress::new(1, 2, out);
        p.start_epoch(1);
        p.batch(1.0, 1.0, 4);
        p.println("hello");
        p.end_epoch("");
        p.finish();
        assert_eq!(p.stats().images, 4);
    }
}
