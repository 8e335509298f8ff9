//! The IDX format of MNIST and Fashion-MNIST, raw or gzip-compressed.
//!
//! An IDX file is a 4-byte magic number (two zero bytes, an element-type
//! byte, the number of dimensions), one big-endian `u32` per dimension, then
//! the elements in row-major order. MNIST images have magic 2051 (`u8`, 3
//! dimensions: count, rows, columns), labels 2049 (`u8`, 1 dimension).
//!
//! The reader trusts nothing in the header: the product of the dimensions is
//! computed with overflow checks, capped at [`MAX_IDX_BYTES`], and compared
//! with the bytes actually present (for gzip, with the bytes the stream
//! actually decompresses to, read through a bounded reader) before any
//! buffer of that size exists.

use std::io::Read;
use std::path::{Path, PathBuf};

use super::{DataError, Dataset, read_file};

/// The largest element payload an IDX file may declare (1 GiB); larger
/// declarations are rejected before anything is allocated.
pub const MAX_IDX_BYTES: usize = 1 << 30;

/// The magic number of an IDX file of `u8` images (3 dimensions).
pub const IDX_IMAGES_MAGIC: u32 = 0x0803;
/// The magic number of an IDX file of `u8` labels (1 dimension).
pub const IDX_LABELS_MAGIC: u32 = 0x0801;

/// The decoded content of one IDX file of `u8` elements.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IdxArray {
    /// The magic number (2051 for images, 2049 for labels).
    pub magic: u32,
    /// The dimensions, outermost first.
    pub dims: Vec<usize>,
    /// The elements, row-major.
    pub data: Vec<u8>,
}

/// Which half of a data set to load.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Split {
    /// The training files (`train-*`).
    Train,
    /// The test files (`t10k-*`).
    Test,
}

impl Split {
    fn prefix(self) -> &'static str {
        match self {
            Split::Train => "train",
            Split::Test => "t10k",
        }
    }
}

fn format_err(file: &str, reason: impl Into<String>) -> DataError {
    DataError::Format {
        file: file.to_string(),
        reason: reason.into(),
    }
}

/// Parses the header prefix: returns the magic, the dimensions, the header
/// length and the payload length, or an error if the header is invalid.
/// `head` must hold at least the 4 magic bytes; it returns `Ok(None)` when
/// more bytes are needed for the dimensions.
fn parse_header(head: &[u8], file: &str) -> Result<Option<(u32, Vec<usize>, usize)>, DataError> {
    if head.len() < 4 {
        return Err(format_err(
            file,
            format!(
                "truncated: {} bytes, an IDX header needs at least 4",
                head.len()
            ),
        ));
    }
    let magic = u32::from_be_bytes([head[0], head[1], head[2], head[3]]);
    if head[0] != 0 || head[1] != 0 {
        return Err(format_err(
            file,
            format!("bad magic number 0x{magic:08x}: an IDX file starts with two zero bytes"),
        ));
    }
    if head[2] != 0x08 {
        return Err(format_err(
            file,
            format!(
                "element type 0x{:02x} is not supported (kiln reads IDX files of unsigned bytes, type 0x08)",
                head[2]
            ),
        ));
    }
    let ndims = head[3] as usize;
    if ndims == 0 || ndims > 4 {
        return Err(format_err(
            file,
            format!("{ndims} dimensions: expected 1 to 4"),
        ));
    }
    let header_len = 4 + 4 * ndims;
    if head.len() < header_len {
        return Ok(None);
    }
    let dims: Vec<usize> = (0..ndims)
        .map(|d| {
            let o = 4 + 4 * d;
            u32::from_be_bytes([head[o], head[o + 1], head[o + 2], head[o + 3]]) as usize
        })
        .collect();
    Ok(Some((magic, dims, header_len)))
}

/// The payload size the dimensions declare, checked against overflow and
/// [`MAX_IDX_BYTES`].
fn payload_len(dims: &[usize], file: &str) -> Result<usize, DataError> {
    let total = dims
        .iter()
        .try_fold(1usize, |acc, &d| acc.checked_mul(d))
        .filter(|&t| t <= MAX_IDX_BYTES);
    total.ok_or_else(|| {
        format_err(
            file,
            format!(
                "declared dimensions {dims:?} need more than the {} MiB limit",
                MAX_IDX_BYTES >> 20
            ),
        )
    })
}

fn dims_text(dims: &[usize]) -> String {
    dims.iter()
        .map(|d| d.to_string())
        .collect::<Vec<_>>()
        .join("×")
}

/// Parses the bytes of an IDX file, raw or gzip-compressed (detected by the
/// magic bytes). `file` names the source in errors.
pub fn parse_idx(bytes: &[u8], file: &str) -> Result<IdxArray, DataError> {
    match bytes {
        [0x1f, 0x8b, ..] => parse_gzip(bytes, file),
        [0, 0, ..] => parse_raw(bytes, file),
        _ => Err(format_err(
            file,
            format!(
                "neither an IDX file (starts with 00 00) nor gzip (starts with 1f 8b): starts with {}",
                bytes
                    .iter()
                    .take(4)
                    .map(|b| format!("{b:02x}"))
                    .collect::<Vec<_>>()
                    .join(" ")
            ),
        )),
    }
}

fn parse_raw(bytes: &[u8], file: &str) -> Result<IdxArray, DataError> {
    let Some((magic, dims, header_len)) = parse_header(bytes, file)? else {
        return Err(format_err(
            file,
            format!(
                "truncated header: {} bytes, {} dimensions need {}",
                bytes.len(),
                bytes[3],
                4 + 4 * bytes[3] as usize
            ),
        ));
    };
    let want = payload_len(&dims, file)?;
    let have = bytes.len() - header_len;
    if have != want {
        return Err(format_err(
            file,
            format!(
                "dimensions {} declare {want} bytes of data but the file has {have} ({})",
                dims_text(&dims),
                if have < want {
                    "truncated"
                } else {
                    "trailing bytes"
                }
            ),
        ));
    }
    Ok(IdxArray {
        magic,
        dims,
        data: bytes[header_len..].to_vec(),
    })
}

fn parse_gzip(bytes: &[u8], file: &str) -> Result<IdxArray, DataError> {
    let gz_err = |e: std::io::Error| format_err(file, format!("gzip stream: {e}"));
    let mut dec = flate2::read::MultiGzDecoder::new(bytes);
    let mut head = Vec::with_capacity(20);
    // The magic, then the dimensions; at most 4 + 16 bytes.
    (&mut dec).take(4).read_to_end(&mut head).map_err(gz_err)?;
    let (magic, dims) = loop {
        match parse_header(&head, file)? {
            Some((magic, dims, _)) => break (magic, dims),
            None => {
                let need = 4 + 4 * head[3] as usize - head.len();
                let got = (&mut dec)
                    .take(need as u64)
                    .read_to_end(&mut head)
                    .map_err(gz_err)?;
                if got < need {
                    return Err(format_err(
                        file,
                        format!(
                            "truncated header: the stream ends after {} bytes, {} dimensions need {}",
                            head.len(),
                            head[3],
                            4 + 4 * head[3] as usize
                        ),
                    ));
                }
            }
        }
    };
    let want = payload_len(&dims, file)?;
    // Reserve at most 8× the compressed size (IDX images compress 2–5×),
    // then grow with the data actually decompressed: a small file declaring
    // a huge payload never gets a huge buffer. Read one byte past the
    // declared size to detect trailing data.
    let mut data = Vec::with_capacity(want.min(bytes.len().saturating_mul(8).max(1 << 16)));
    (&mut dec)
        .take(want as u64 + 1)
        .read_to_end(&mut data)
        .map_err(gz_err)?;
    if data.len() != want {
        return Err(format_err(
            file,
            format!(
                "dimensions {} declare {want} bytes of data but the stream has {} ({})",
                dims_text(&dims),
                if data.len() < want {
                    data.len().to_string()
                } else {
                    "more".to_string()
                },
                if data.len() < want {
                    "truncated"
                } else {
                    "trailing bytes"
                }
            ),
        ));
    }
    Ok(IdxArray { magic, dims, data })
}

/// Reads an IDX file from disk (raw or gzip).
pub fn read_idx(path: &Path) -> Result<IdxArray, DataError> {
    let bytes = read_file(path)?;
    parse_idx(&bytes, &path.display().to_string())
}

/// Pixel value `b` scaled to `[0, 1]`, exactly `b / 255`.
fn byte_to_unit_table() -> [f32; 256] {
    core::array::from_fn(|b| b as f32 / 255.0)
}

/// Builds a data set from the parsed image and label arrays of one split.
/// Images must have magic 2051 and labels 2049, the counts must agree and
/// every label must be below `classes`.
pub fn dataset_from_idx(
    images: &IdxArray,
    images_name: &str,
    labels: &IdxArray,
    labels_name: &str,
    classes: usize,
) -> Result<Dataset, DataError> {
    if images.magic != IDX_IMAGES_MAGIC || images.dims.len() != 3 {
        return Err(format_err(
            images_name,
            format!(
                "magic number {} (0x{:08x}) is not 2051: not an IDX file of images",
                images.magic, images.magic
            ),
        ));
    }
    if labels.magic != IDX_LABELS_MAGIC || labels.dims.len() != 1 {
        return Err(format_err(
            labels_name,
            format!(
                "magic number {} (0x{:08x}) is not 2049: not an IDX file of labels",
                labels.magic, labels.magic
            ),
        ));
    }
    let (n, h, w) = (images.dims[0], images.dims[1], images.dims[2]);
    if h == 0 || w == 0 {
        return Err(format_err(
            images_name,
            format!("image size {h}×{w} has a zero dimension"),
        ));
    }
    if labels.dims[0] != n {
        return Err(DataError::Invalid(format!(
            "count mismatch: {images_name} holds {n} images but {labels_name} holds {} labels",
            labels.dims[0]
        )));
    }
    if let Some((i, &l)) = labels
        .data
        .iter()
        .enumerate()
        .find(|&(_, &l)| l as usize >= classes)
    {
        return Err(format_err(
            labels_name,
            format!("label {l} of example {i} is not below the class count {classes}"),
        ));
    }
    let table = byte_to_unit_table();
    let pixels = images.data.iter().map(|&b| table[b as usize]).collect();
    Dataset::new(pixels, labels.data.clone(), [1, h, w], classes)
}

/// Loads images and labels from two IDX files (raw or gzip).
pub fn load_idx(images: &Path, labels: &Path, classes: usize) -> Result<Dataset, DataError> {
    let im = read_idx(images)?;
    let lb = read_idx(labels)?;
    dataset_from_idx(
        &im,
        &images.display().to_string(),
        &lb,
        &labels.display().to_string(),
        classes,
    )
}

/// The path of IDX file `stem` in `dir`: `stem.gz` if present, else `stem`.
fn idx_path(dir: &Path, stem: &str) -> Result<PathBuf, DataError> {
    let gz = dir.join(format!("{stem}.gz"));
    let raw = dir.join(stem);
    if gz.is_file() {
        Ok(gz)
    } else if raw.is_file() {
        Ok(raw)
    } else {
        Err(DataError::Io {
            path: gz,
            source: std::io::Error::new(
                std::io::ErrorKind::NotFound,
                format!("neither {stem}.gz nor {stem} found in {}", dir.display()),
            ),
        })
    }
}

/// Loads one split of a data set in the MNIST layout from `dir`
/// (`{train,t10k}-{images-idx3,labels-idx1}-ubyte`, each raw or `.gz`):
/// MNIST itself (e.g. from [`super::data_dir`]`().join("mnist")`) or
/// Fashion-MNIST. Ten classes.
pub fn load_mnist(dir: &Path, split: Split) -> Result<Dataset, DataError> {
    let p = split.prefix();
    let images = idx_path(dir, &format!("{p}-images-idx3-ubyte"))?;
    let labels = idx_path(dir, &format!("{p}-labels-idx1-ubyte"))?;
    load_idx(&images, &labels, 10)
}
