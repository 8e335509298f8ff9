//! The CIFAR-10 binary format (`data_batch_N.bin`, `test_batch.bin`).
//!
//! A file is a sequence of 3,073-byte records: one label byte (0..=9), then
//! a 32×32 image as 1,024 red, 1,024 green and 1,024 blue bytes, each plane
//! row-major. The record count comes from the file size, which must be a
//! whole number of records.

use std::path::Path;

use super::{DataError, Dataset, read_file};

/// The bytes of one CIFAR-10 record: a label byte and 3×32×32 pixels.
pub const CIFAR10_RECORD: usize = 1 + 3 * 32 * 32;

/// Parses CIFAR-10 binary records from memory; `file` names the source in
/// errors. Pixels are scaled to `[0, 1]`, the layout is CHW as stored.
pub fn parse_cifar10(bytes: &[u8], file: &str) -> Result<Dataset, DataError> {
    let err = |reason: String| DataError::Format {
        file: file.to_string(),
        reason,
    };
    if bytes.is_empty() {
        return Err(err("empty file: no CIFAR-10 records".into()));
    }
    if !bytes.len().is_multiple_of(CIFAR10_RECORD) {
        return Err(err(format!(
            "size {} is not a multiple of the {CIFAR10_RECORD}-byte record ({} whole records and {} bytes left)",
            bytes.len(),
            bytes.len() / CIFAR10_RECORD,
            bytes.len() % CIFAR10_RECORD
        )));
    }
    let n = bytes.len() / CIFAR10_RECORD;
    let mut labels = Vec::with_capacity(n);
    let mut images = Vec::with_capacity(n * (CIFAR10_RECORD - 1));
    for (i, rec) in bytes.chunks_exact(CIFAR10_RECORD).enumerate() {
        if rec[0] > 9 {
            return Err(err(format!(
                "record {i} (byte offset {}) has label {}, expected 0..=9",
                i * CIFAR10_RECORD,
                rec[0]
            )));
        }
        labels.push(rec[0]);
        images.extend(rec[1..].iter().map(|&b| b as f32 / 255.0));
    }
    Dataset::new(images, labels, [3, 32, 32], 10)
}

/// Loads CIFAR-10 binary records from one file.
pub fn load_cifar10(path: &Path) -> Result<Dataset, DataError> {
    let bytes = read_file(path)?;
    parse_cifar10(&bytes, &path.display().to_string())
}

/// Loads several CIFAR-10 files (e.g. the five training batches) into one
/// data set, in the order given.
pub fn load_cifar10_files(paths: &[&Path]) -> Result<Dataset, DataError> {
    let mut all: Option<Dataset> = None;
    for p in paths {
        let d = load_cifar10(p)?;
        match &mut all {
            None => all = Some(d),
            Some(a) => {
                a.images.extend_from_slice(&d.images);
                a.labels.extend_from_slice(&d.labels);
            }
        }
    }
    all.ok_or_else(|| DataError::Invalid("no CIFAR-10 files given".into()))
}
