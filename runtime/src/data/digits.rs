//! scikit-learn's 8×8 handwritten digits (1,797 images, from the UCI
//! optical-recognition set) as the CSV it ships: per line 64 pixel values
//! in 0..=16, row-major, then the label 0..=9. Raw or gzip-compressed.
//!
//! Small enough to train on in a test: the quick real data set for the
//! "overfit a tiny subset" check and for end-to-end smoke tests.

use std::io::Read;
use std::path::Path;

use super::{DataError, Dataset, read_file};

/// The largest decompressed CSV accepted (64 MiB; the real file is 0.3 MB).
pub const MAX_DIGITS_CSV: u64 = 64 << 20;

/// Parses the digits CSV (raw or gzip); `file` names the source in errors,
/// with the line and field. Pixels are scaled to `[0, 1]` (value / 16).
pub fn parse_digits_csv(bytes: &[u8], file: &str) -> Result<Dataset, DataError> {
    let err = |reason: String| DataError::Format {
        file: file.to_string(),
        reason,
    };
    let text = if bytes.starts_with(&[0x1f, 0x8b]) {
        let mut out = Vec::new();
        flate2::read::MultiGzDecoder::new(bytes)
            .take(MAX_DIGITS_CSV + 1)
            .read_to_end(&mut out)
            .map_err(|e| err(format!("gzip stream: {e}")))?;
        if out.len() as u64 > MAX_DIGITS_CSV {
            return Err(err(format!(
                "decompresses to more than the {} MiB limit",
                MAX_DIGITS_CSV >> 20
            )));
        }
        out
    } else {
        bytes.to_vec()
    };
    let text = std::str::from_utf8(&text).map_err(|e| err(format!("not UTF-8 text: {e}")))?;
    let mut images = Vec::new();
    let mut labels = Vec::new();
    for (i, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() {
            continue;
        }
        let fields: Vec<&str> = line.split(',').collect();
        if fields.len() != 65 {
            return Err(err(format!(
                "line {}: {} fields, expected 64 pixels and a label",
                i + 1,
                fields.len()
            )));
        }
        for (k, f) in fields.iter().enumerate() {
            let v: f32 = f.trim().parse().map_err(|_| {
                err(format!(
                    "line {}, field {}: `{f}` is not a number",
                    i + 1,
                    k + 1
                ))
            })?;
            let max = if k == 64 { 9.0 } else { 16.0 };
            if !(0.0..=max).contains(&v) || v.fract() != 0.0 {
                return Err(err(format!(
                    "line {}, field {}: {v} is not an integer in 0..={max}",
                    i + 1,
                    k + 1
                )));
            }
            if k == 64 {
                labels.push(v as u8);
            } else {
                images.push(v / 16.0);
            }
        }
    }
    if labels.is_empty() {
        return Err(err("no rows".into()));
    }
    Dataset::new(images, labels, [1, 8, 8], 10)
}

/// Loads the digits CSV from a file (raw or `.gz`).
pub fn load_digits(path: &Path) -> Result<Dataset, DataError> {
    let bytes = read_file(path)?;
    parse_digits_csv(&bytes, &path.display().to_string())
}
