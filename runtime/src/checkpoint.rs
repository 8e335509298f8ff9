//! Checkpoints in safetensors: save, load strictly, load partially with
//! renaming, and read untrusted files without panicking.
//!
//! # Naming convention
//!
//! A kiln checkpoint is an ordinary safetensors file, so PyTorch and other
//! tools read its parameters as a `state_dict`:
//!
//! - each parameter and each buffer is an F32 tensor under its own name
//!   (`features.0.weight`, `bn1.running_mean`);
//! - optimizer state is split per parameter as `__optim__/<state>/<param>`
//!   (`__optim__/exp_avg/features.0.weight`), with PyTorch's state names;
//! - the `__metadata__` string map holds `format` (`kiln-checkpoint-1`),
//!   `epoch`, `optim.kind` and `optim.step`, `schedule` (the
//!   [`ScheduleState`] as JSON), `rng.seed` and `rng.counter` (decimal),
//!   user entries as `user.<key>`, and `crc32/<tensor>` (hex CRC-32 of each
//!   tensor's bytes, so corrupted data is caught and named).
//!
//! # Atomic saves
//!
//! [`save`] writes a temporary file in the destination's directory, fsyncs
//! it, renames it over the destination and fsyncs the directory: a reader
//! sees the old file or the new one, never a half-written one, even if the
//! process is killed mid-save. A killed save leaves its temporary file
//! (`.<name>.tmp-<pid>-<n>`) behind; it is never read.
//!
//! # Untrusted input
//!
//! [`TensorFile::from_bytes`] parses the header itself before anything else
//! touches the file: the 8-byte header length is checked against the file
//! size before the header is read, every entry's dtype, shape and offsets are
//! validated with overflow-checked arithmetic and errors name the tensor,
//! and only then does the `safetensors` crate validate the file again.
//! Memory use is bounded by the file's size; nothing panics on any input
//! (the `checkpoint_load` fuzz target checks this).

use std::collections::{BTreeMap, HashMap, HashSet};
use std::fs::{self, File};
use std::io::{Read, Write};
use std::path::{Path, PathBuf};

use safetensors::tensor::{Dtype, TensorView};

use crate::optim::OptimState;
use crate::params::{ParamLayout, Params, Pattern, Problem, ToolkitError};
use crate::rng::Rng;
use crate::schedule::ScheduleState;

/// The value of the `format` metadata entry.
pub const FORMAT: &str = "kiln-checkpoint-1";

/// The prefix of optimizer-state tensor names.
pub const OPTIM_PREFIX: &str = "__optim__/";

/// The largest header accepted (the `safetensors` crate's limit).
const MAX_HEADER: u64 = 100_000_000;

/// Everything a checkpoint holds besides parameters and buffers.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct TrainState {
    /// Optimizer state, split per parameter in the file.
    pub optim: Option<OptimState>,
    /// Schedule position.
    pub schedule: Option<ScheduleState>,
    /// The training RNG's position.
    pub rng: Option<Rng>,
    /// Epochs completed.
    pub epoch: u64,
    /// Free-form user entries (saved as `user.<key>`).
    pub user: BTreeMap<String, String>,
}

/// One tensor's header entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TensorInfo {
    /// Its name.
    pub name: String,
    /// Its dtype as the file spells it (`F32`, `F16`, …).
    pub dtype: String,
    /// Its shape.
    pub shape: Vec<usize>,
    /// Its bytes within the data region.
    pub data: std::ops::Range<usize>,
}

/// A parsed, validated safetensors file held in memory.
#[derive(Debug, Clone)]
pub struct TensorFile {
    path: PathBuf,
    bytes: Vec<u8>,
    data_start: usize,
    tensors: Vec<TensorInfo>,
    index: HashMap<String, usize>,
    metadata: BTreeMap<String, String>,
}

fn io_err(path: &Path) -> impl FnOnce(std::io::Error) -> ToolkitError + '_ {
    move |source| ToolkitError::Io {
        path: path.to_path_buf(),
        source,
    }
}

fn dtype_size(dtype: &str) -> Option<usize> {
    Some(match dtype {
        "F64" | "I64" | "U64" | "C64" => 8,
        "F32" | "I32" | "U32" => 4,
        "F16" | "BF16" | "I16" | "U16" => 2,
        "I8" | "U8" | "BOOL" | "F8_E4M3" | "F8_E5M2" | "F8_E8M0" => 1,
        _ => return None,
    })
}

impl TensorFile {
    /// Reads and validates the file at `path`. The header length is checked
    /// against the file size before the rest is read.
    pub fn read(path: impl AsRef<Path>) -> Result<TensorFile, ToolkitError> {
        let path = path.as_ref();
        let mut f = File::open(path).map_err(io_err(path))?;
        let size = f.metadata().map_err(io_err(path))?.len();
        let mut head = [0u8; 8];
        let got = read_up_to(&mut f, &mut head).map_err(io_err(path))?;
        check_header_len(path, &head[..got], size)?;
        let mut bytes = Vec::with_capacity(size as usize);
        bytes.extend_from_slice(&head);
        f.take(size - 8)
            .read_to_end(&mut bytes)
            .map_err(io_err(path))?;
        if bytes.len() as u64 != size {
            return Err(format_err(
                path,
                None,
                format!(
                    "the file changed while it was read ({size} bytes expected, {} read)",
                    bytes.len()
                ),
            ));
        }
        TensorFile::from_bytes(bytes, path)
    }

    /// Parses and validates `bytes`; `path` is only used in errors.
    pub fn from_bytes(bytes: Vec<u8>, path: impl AsRef<Path>) -> Result<TensorFile, ToolkitError> {
        let path = path.as_ref();
        let n = check_header_len(path, &bytes, bytes.len() as u64)? as usize;
        let data_start = 8 + n;
        let data_len = bytes.len() - data_start;
        let header = std::str::from_utf8(&bytes[8..data_start])
            .map_err(|e| format_err(path, None, format!("the header is not UTF-8 ({e})")))?;
        let json: serde_json::Map<String, serde_json::Value> = serde_json::from_str(header)
            .map_err(|e| {
                format_err(path, None, format!("the header is not a JSON object ({e})"))
            })?;
        let mut tensors = Vec::with_capacity(json.len());
        let mut metadata = BTreeMap::new();
        for (name, v) in &json {
            if name == "__metadata__" {
                let obj = v.as_object().ok_or_else(|| {
                    format_err(path, None, "`__metadata__` is not an object".into())
                })?;
                for (k, v) in obj {
                    let s = v.as_str().ok_or_else(|| {
                        format_err(path, None, format!("metadata entry `{k}` is not a string"))
                    })?;
                    metadata.insert(k.clone(), s.to_string());
                }
                continue;
            }
            tensors.push(parse_entry(path, name, v, data_len)?);
        }
        tensors.sort_by_key(|t| (t.data.start, t.data.end));
        let mut at = 0;
        for t in &tensors {
            if t.data.start != at {
                let what = if t.data.start < at {
                    "overlaps the previous tensor"
                } else {
                    "leaves a gap after the previous tensor"
                };
                return Err(format_err(
                    path,
                    Some(&t.name),
                    format!(
                        "data bytes {}..{} {what} (which ends at {at})",
                        t.data.start, t.data.end
                    ),
                ));
            }
            at = t.data.end;
        }
        if at != data_len {
            return Err(format_err(
                path,
                None,
                format!("the data region is {data_len} bytes but the tensors cover {at}"),
            ));
        }
        // Second opinion from the reference implementation.
        if let Err(e) = safetensors::SafeTensors::deserialize(&bytes) {
            return Err(format_err(
                path,
                None,
                format!("rejected by safetensors: {e}"),
            ));
        }
        let index = tensors
            .iter()
            .enumerate()
            .map(|(i, t)| (t.name.clone(), i))
            .collect();
        Ok(TensorFile {
            path: path.to_path_buf(),
            bytes,
            data_start,
            tensors,
            index,
            metadata,
        })
    }

    /// The tensors, in data order.
    pub fn tensors(&self) -> &[TensorInfo] {
        &self.tensors
    }

    /// The tensor called `name`.
    pub fn info(&self, name: &str) -> Option<&TensorInfo> {
        self.index.get(name).map(|&i| &self.tensors[i])
    }

    /// The `__metadata__` map.
    pub fn metadata(&self) -> &BTreeMap<String, String> {
        &self.metadata
    }

    /// The raw bytes of tensor `name`.
    pub fn bytes_of(&self, name: &str) -> Option<&[u8]> {
        let t = self.info(name)?;
        Some(&self.bytes[self.data_start + t.data.start..self.data_start + t.data.end])
    }

    /// The values of F32 tensor `name`.
    pub fn f32_values(&self, name: &str) -> Result<Vec<f32>, ToolkitError> {
        self.values_as_f32(name, &["F32"])
    }

    /// The values of tensor `name` converted to f32 from any of the
    /// floating-point dtypes F32, F64 (rounded), F16 and BF16 (exact).
    pub fn converted_f32_values(&self, name: &str) -> Result<Vec<f32>, ToolkitError> {
        self.values_as_f32(name, CONVERTIBLE)
    }

    fn values_as_f32(&self, name: &str, accept: &[&str]) -> Result<Vec<f32>, ToolkitError> {
        let t = self.info(name).ok_or_else(|| {
            format_err(&self.path, Some(name), "no such tensor in the file".into())
        })?;
        if !accept.contains(&t.dtype.as_str()) {
            return Err(format_err(
                &self.path,
                Some(name),
                format!("dtype {}, expected {}", t.dtype, accept.join(" or ")),
            ));
        }
        let b = self.bytes_of(name).unwrap_or_default();
        Ok(match t.dtype.as_str() {
            "F64" => b
                .chunks_exact(8)
                .map(|c| {
                    f64::from_le_bytes([c[0], c[1], c[2], c[3], c[4], c[5], c[6], c[7]]) as f32
                })
                .collect(),
            "F16" => b
                .chunks_exact(2)
                .map(|c| f16_to_f32(u16::from_le_bytes([c[0], c[1]])))
                .collect(),
            "BF16" => b
                .chunks_exact(2)
                .map(|c| f32::from_bits((u16::from_le_bytes([c[0], c[1]]) as u32) << 16))
                .collect(),
            _ => b
                .chunks_exact(4)
                .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
                .collect(),
        })
    }

    /// The first problem with tensor `name` as a tensor of `shape` with one
    /// of the dtypes `accept` (to be loaded into `into` when renamed):
    /// missing, other dtype, other shape, checksum mismatch.
    fn check_tensor(
        &self,
        name: &str,
        shape: &[usize],
        kind: &'static str,
        into: Option<&str>,
        accept: &[&str],
    ) -> Option<Problem> {
        let Some(t) = self.info(name) else {
            return Some(Problem::Missing {
                kind,
                name: name.to_string(),
                shape: shape.to_vec(),
            });
        };
        if !accept.contains(&t.dtype.as_str()) {
            return Some(Problem::Dtype {
                name: name.to_string(),
                found: t.dtype.clone(),
                expected: accept.join(" or "),
            });
        }
        if t.shape != shape {
            return Some(Problem::Shape {
                name: name.to_string(),
                expected: shape.to_vec(),
                found: t.shape.clone(),
                into: into.map(str::to_string),
            });
        }
        self.check_crc(name)
    }

    fn check_crc(&self, name: &str) -> Option<Problem> {
        let saved = self.metadata.get(&format!("crc32/{name}"))?;
        let found = format!(
            "{:08x}",
            crc32fast::hash(self.bytes_of(name).unwrap_or_default())
        );
        (found != *saved).then(|| Problem::Checksum {
            name: name.to_string(),
            found,
            saved: saved.clone(),
        })
    }
}

/// The floating-point dtypes a converting load accepts.
const CONVERTIBLE: &[&str] = &["F32", "F64", "F16", "BF16"];

/// IEEE half to single precision, exactly (subnormals, infinities and NaN
/// included).
pub fn f16_to_f32(h: u16) -> f32 {
    let sign = ((h & 0x8000) as u32) << 16;
    let exp = ((h >> 10) & 0x1f) as u32;
    let mant = (h & 0x3ff) as u32;
    let bits = match (exp, mant) {
        (0, 0) => sign,
        (0, _) => {
            // Subnormal: normalize the mantissa.
            let (mut e, mut m) = (127 - 15 + 1, mant);
            while m & 0x400 == 0 {
                m <<= 1;
                e -= 1;
            }
            sign | (e << 23) | ((m & 0x3ff) << 13)
        }
        (0x1f, _) => sign | 0x7f80_0000 | (mant << 13),
        _ => sign | ((exp + 127 - 15) << 23) | (mant << 13),
    };
    f32::from_bits(bits)
}

fn read_up_to(f: &mut File, buf: &mut [u8]) -> std::io::Result<usize> {
    let mut got = 0;
    while got < buf.len() {
        match f.read(&mut buf[got..])? {
            0 => break,
            k => got += k,
        }
    }
    Ok(got)
}

fn format_err(path: &Path, tensor: Option<&str>, detail: String) -> ToolkitError {
    ToolkitError::Format {
        path: path.to_path_buf(),
        tensor: tensor.map(str::to_string),
        detail,
    }
}

/// Checks the 8-byte header length against the file size; returns it.
fn check_header_len(path: &Path, head: &[u8], size: u64) -> Result<u64, ToolkitError> {
    let Some(b) = head.get(..8).filter(|_| size >= 8) else {
        return Err(format_err(
            path,
            None,
            format!("the file is {size} bytes, too short for a safetensors header"),
        ));
    };
    let n = u64::from_le_bytes([b[0], b[1], b[2], b[3], b[4], b[5], b[6], b[7]]);
    if n > size - 8 || n > MAX_HEADER {
        return Err(format_err(
            path,
            None,
            format!(
                "the header claims {n} bytes but the file is {size} bytes (truncated or not safetensors)"
            ),
        ));
    }
    Ok(n)
}

fn parse_entry(
    path: &Path,
    name: &str,
    v: &serde_json::Value,
    data_len: usize,
) -> Result<TensorInfo, ToolkitError> {
    let bad = |d: String| format_err(path, Some(name), d);
    let obj = v
        .as_object()
        .ok_or_else(|| bad("the header entry is not an object".into()))?;
    let dtype = obj
        .get("dtype")
        .and_then(|d| d.as_str())
        .ok_or_else(|| bad("no `dtype` string".into()))?;
    let size = dtype_size(dtype).ok_or_else(|| bad(format!("unknown dtype `{dtype}`")))?;
    let shape = obj
        .get("shape")
        .and_then(|s| s.as_array())
        .ok_or_else(|| bad("no `shape` array".into()))?
        .iter()
        .map(|d| d.as_u64().and_then(|d| usize::try_from(d).ok()))
        .collect::<Option<Vec<usize>>>()
        .ok_or_else(|| bad("`shape` holds something other than non-negative integers".into()))?;
    let offs = obj
        .get("data_offsets")
        .and_then(|s| s.as_array())
        .filter(|a| a.len() == 2)
        .and_then(|a| Some((a[0].as_u64()?, a[1].as_u64()?)))
        .ok_or_else(|| bad("no `data_offsets` pair of integers".into()))?;
    let (s, e) = offs;
    if s > e {
        return Err(bad(format!("data_offsets [{s}, {e}] run backwards")));
    }
    if e > data_len as u64 {
        return Err(bad(format!(
            "data bytes {s}..{e} lie beyond the end of the data region ({data_len} bytes): the file is truncated"
        )));
    }
    let want = shape
        .iter()
        .try_fold(1usize, |a, &d| a.checked_mul(d))
        .and_then(|n| n.checked_mul(size))
        .ok_or_else(|| bad(format!("shape {shape:?} overflows")))?;
    if (e - s) as usize != want {
        return Err(bad(format!(
            "shape {shape:?} of {dtype} needs {want} bytes but data_offsets give {}",
            e - s
        )));
    }
    Ok(TensorInfo {
        name: name.to_string(),
        dtype: dtype.to_string(),
        shape,
        data: s as usize..e as usize,
    })
}

fn f32_bytes(v: &[f32]) -> Vec<u8> {
    v.iter().flat_map(|x| x.to_le_bytes()).collect()
}

/// Saves parameters, buffers and `state` to `path`, atomically (see the
/// module documentation).
pub fn save(
    path: impl AsRef<Path>,
    params: &Params,
    state: &TrainState,
) -> Result<(), ToolkitError> {
    let path = path.as_ref();
    params.validate()?;
    let mut named: Vec<(String, Vec<usize>, Vec<u8>)> = Vec::new();
    let push_layout = |named: &mut Vec<_>, layout: &ParamLayout, values: &[f32], prefix: &str| {
        for s in layout.slots() {
            named.push((
                format!("{prefix}{}", s.name),
                s.shape.clone(),
                f32_bytes(&values[s.range()]),
            ));
        }
    };
    push_layout(&mut named, &params.layout, &params.values, "");
    push_layout(&mut named, &params.buffer_layout, &params.buffers, "");
    let mut meta: HashMap<String, String> = HashMap::new();
    meta.insert("format".into(), FORMAT.into());
    meta.insert("epoch".into(), state.epoch.to_string());
    if let Some(o) = &state.optim {
        meta.insert("optim.kind".into(), o.kind.clone());
        meta.insert("optim.step".into(), o.step.to_string());
        for (sname, v) in &o.vectors {
            if v.len() != params.layout.len() {
                return Err(ToolkitError::Invalid(format!(
                    "optimizer state `{sname}` has {} elements but the parameters have {}",
                    v.len(),
                    params.layout.len()
                )));
            }
            push_layout(
                &mut named,
                &params.layout,
                v,
                &format!("{OPTIM_PREFIX}{sname}/"),
            );
        }
    }
    if let Some(s) = &state.schedule {
        let json = serde_json::to_string(s)
            .map_err(|e| ToolkitError::Invalid(format!("schedule state: {e}")))?;
        meta.insert("schedule".into(), json);
    }
    if let Some(r) = &state.rng {
        meta.insert("rng.seed".into(), r.seed.to_string());
        meta.insert("rng.counter".into(), r.counter.to_string());
    }
    for (k, v) in &state.user {
        meta.insert(format!("user.{k}"), v.clone());
    }
    for (name, _, bytes) in &named {
        meta.insert(
            format!("crc32/{name}"),
            format!("{:08x}", crc32fast::hash(bytes)),
        );
    }
    let views = named
        .iter()
        .map(|(n, shape, bytes)| {
            TensorView::new(Dtype::F32, shape.clone(), bytes)
                .map(|v| (n.as_str(), v))
                .map_err(|e| ToolkitError::Invalid(format!("tensor `{n}`: {e}")))
        })
        .collect::<Result<Vec<_>, _>>()?;
    let bytes = safetensors::serialize(views, Some(meta))
        .map_err(|e| ToolkitError::Invalid(format!("serializing {}: {e}", path.display())))?;
    write_atomic(path, &bytes)
}

/// Writes `bytes` to `path` through a temporary file in the same directory:
/// write, fsync, rename, fsync the directory.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<(), ToolkitError> {
    let file_name = path
        .file_name()
        .ok_or_else(|| ToolkitError::Invalid(format!("{}: not a file path", path.display())))?;
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
        _ => PathBuf::from("."),
    };
    static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let k = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let tmp = dir.join(format!(
        ".{}.tmp-{}-{k}",
        file_name.to_string_lossy(),
        std::process::id()
    ));
    let result = (|| {
        let mut f = File::create(&tmp).map_err(io_err(&tmp))?;
        f.write_all(bytes).map_err(io_err(&tmp))?;
        f.sync_all().map_err(io_err(&tmp))?;
        drop(f);
        fs::rename(&tmp, path).map_err(io_err(path))?;
        File::open(&dir)
            .and_then(|d| d.sync_all())
            .map_err(io_err(&dir))
    })();
    if result.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    result
}

/// Loads a checkpoint saved by [`save`] into `params` and returns the rest
/// of the training state. Every parameter and buffer must be present as F32
/// with its shape, optimizer tensors must cover every parameter, checksums
/// must match and no tensor may be unknown; all problems are reported at
/// once, one line per tensor, and `params` is left unchanged on error.
pub fn load(path: impl AsRef<Path>, params: &mut Params) -> Result<TrainState, ToolkitError> {
    let file = TensorFile::read(path)?;
    load_from(&file, params)
}

/// [`load`] from a file already read.
pub fn load_from(file: &TensorFile, params: &mut Params) -> Result<TrainState, ToolkitError> {
    let path = file.path.as_path();
    let mut problems = Vec::new();
    let mut known: HashSet<&str> = HashSet::new();
    for (layout, what) in [
        (&params.layout, "parameter"),
        (&params.buffer_layout, "buffer"),
    ] {
        for s in layout.slots() {
            known.insert(&s.name);
            problems.extend(file.check_tensor(&s.name, &s.shape, what, None, &["F32"]));
        }
    }
    // Optimizer state names present in the file, in first-seen order.
    let mut state_names: Vec<String> = Vec::new();
    for t in file.tensors() {
        if let Some(rest) = t.name.strip_prefix(OPTIM_PREFIX) {
            match rest.split_once('/') {
                Some((sname, pname)) if params.layout.slot(pname).is_some() => {
                    if !state_names.iter().any(|n| n == sname) {
                        state_names.push(sname.to_string());
                    }
                    continue;
                }
                _ => {}
            }
        }
        if !known.contains(t.name.as_str()) {
            problems.push(Problem::Unexpected {
                name: t.name.clone(),
                shape: t.shape.clone(),
            });
        }
    }
    state_names.sort();
    let meta = file.metadata();
    let optim_kind = meta.get("optim.kind");
    if optim_kind.is_none() && !state_names.is_empty() {
        problems.push(Problem::Metadata {
            key: "optim.kind".into(),
            detail: "missing, but optimizer tensors are present".into(),
        });
    }
    for sname in &state_names {
        for s in params.layout.slots() {
            let name = format!("{OPTIM_PREFIX}{sname}/{}", s.name);
            problems.extend(file.check_tensor(&name, &s.shape, "optimizer tensor", None, &["F32"]));
        }
    }
    let mut parse_u64 = |key: &str| -> Option<u64> {
        let v = meta.get(key)?;
        match v.parse() {
            Ok(x) => Some(x),
            Err(_) => {
                problems.push(Problem::Metadata {
                    key: key.to_string(),
                    detail: format!("`{v}` is not an unsigned integer"),
                });
                None
            }
        }
    };
    let epoch = parse_u64("epoch").unwrap_or(0);
    let optim_step = parse_u64("optim.step");
    let rng = match (parse_u64("rng.seed"), parse_u64("rng.counter")) {
        (Some(seed), Some(counter)) => Some(Rng { seed, counter }),
        _ => None,
    };
    let schedule = match meta.get("schedule") {
        None => None,
        Some(s) => match serde_json::from_str::<ScheduleState>(s) {
            Ok(st) => Some(st),
            Err(e) => {
                problems.push(Problem::Metadata {
                    key: "schedule".into(),
                    detail: format!("not a schedule state ({e})"),
                });
                None
            }
        },
    };
    if !problems.is_empty() {
        return Err(ToolkitError::Mismatch {
            path: path.to_path_buf(),
            problems,
        });
    }
    let gather = |layout: &ParamLayout, prefix: &str| -> Result<Vec<f32>, ToolkitError> {
        let mut out = vec![0f32; layout.len()];
        for s in layout.slots() {
            let v = file.f32_values(&format!("{prefix}{}", s.name))?;
            out[s.range()].copy_from_slice(&v);
        }
        Ok(out)
    };
    let values = gather(&params.layout, "")?;
    let buffers = gather(&params.buffer_layout, "")?;
    let optim = match optim_kind {
        None => None,
        Some(kind) => Some(OptimState {
            kind: kind.clone(),
            step: optim_step.unwrap_or(0),
            vectors: state_names
                .iter()
                .map(|n| {
                    Ok((
                        n.clone(),
                        gather(&params.layout, &format!("{OPTIM_PREFIX}{n}/"))?,
                    ))
                })
                .collect::<Result<_, ToolkitError>>()?,
        }),
    };
    params.values = values;
    params.buffers = buffers;
    let user = meta
        .iter()
        .filter_map(|(k, v)| Some((k.strip_prefix("user.")?.to_string(), v.clone())))
        .collect();
    Ok(TrainState {
        optim,
        schedule,
        rng,
        epoch,
        user,
    })
}

/// Which tensors of a file to load, and under which names.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct PartialLoad {
    /// `(from, to)` rename rules, tried in order: a file tensor matching
    /// `from` is loaded into the model tensor `to` with `from`'s `*` capture
    /// substituted (`features.0.*` → `conv1.*`). File tensors that match no
    /// rule are skipped.
    pub rules: Vec<(Pattern, Pattern)>,
    /// Accept F64, F16 and BF16 tensors and convert them to f32 (F16 and
    /// BF16 exactly, F64 rounded); otherwise only F32 is accepted.
    pub convert: bool,
}

impl PartialLoad {
    /// No rules yet.
    pub fn new() -> PartialLoad {
        PartialLoad::default()
    }

    /// Adds a rename rule; `rule("features.*", "features.*")` keeps names.
    pub fn rule(mut self, from: &str, to: &str) -> PartialLoad {
        self.rules.push((Pattern::new(from), Pattern::new(to)));
        self
    }

    /// The same load, converting F64, F16 and BF16 tensors to f32.
    pub fn converting(mut self) -> PartialLoad {
        self.convert = true;
        self
    }
}

/// What a partial load did.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct LoadReport {
    /// `(file name, model name)` of each tensor loaded.
    pub loaded: Vec<(String, String)>,
    /// File tensors no rule selected.
    pub skipped: Vec<String>,
}

/// Loads the tensors `spec` selects from `path` into parameters or buffers
/// of `params` (for transfer learning; a PyTorch `state_dict` works). Every
/// target must exist with the same shape as F32, no model tensor may be
/// loaded twice and every rule must match something; all problems are
/// reported at once and `params` is unchanged on error.
pub fn load_partial(
    path: impl AsRef<Path>,
    params: &mut Params,
    spec: &PartialLoad,
) -> Result<LoadReport, ToolkitError> {
    let file = TensorFile::read(path)?;
    load_partial_from(&file, params, spec)
}

/// [`load_partial`] from a file already read.
pub fn load_partial_from(
    file: &TensorFile,
    params: &mut Params,
    spec: &PartialLoad,
) -> Result<LoadReport, ToolkitError> {
    params.validate()?;
    let mut problems = Vec::new();
    let mut report = LoadReport::default();
    let mut used = vec![false; spec.rules.len()];
    let mut targets: HashMap<String, String> = HashMap::new();
    for t in file.tensors() {
        let hit = spec
            .rules
            .iter()
            .enumerate()
            .find_map(|(i, (from, to))| Some((i, to.substitute(from.capture(&t.name)?))));
        let Some((i, target)) = hit else {
            report.skipped.push(t.name.clone());
            continue;
        };
        used[i] = true;
        let shape = params
            .layout
            .slot(&target)
            .or_else(|| params.buffer_layout.slot(&target))
            .map(|s| s.shape.clone());
        match shape {
            None => problems.push(Problem::NoTarget {
                name: t.name.clone(),
                target: target.clone(),
            }),
            Some(shape) => {
                let accept: &[&str] = if spec.convert { CONVERTIBLE } else { &["F32"] };
                problems.extend(file.check_tensor(
                    &t.name,
                    &shape,
                    "tensor",
                    Some(&target),
                    accept,
                ));
            }
        }
        if let Some(prev) = targets.insert(target.clone(), t.name.clone()) {
            problems.push(Problem::Twice {
                target: target.clone(),
                first: prev,
                second: t.name.clone(),
            });
        }
        report.loaded.push((t.name.clone(), target));
    }
    for (i, (from, _)) in spec.rules.iter().enumerate() {
        if !used[i] {
            problems.push(Problem::UnusedRule {
                pattern: from.as_str().to_string(),
            });
        }
    }
    if !problems.is_empty() {
        return Err(ToolkitError::Mismatch {
            path: file.path.clone(),
            problems,
        });
    }
    for (from, to) in &report.loaded {
        let v = file.converted_f32_values(from)?;
        let dst = match params.get_mut(to) {
            Some(d) => d,
            None => params.buffer_mut(to).ok_or_else(|| {
                ToolkitError::Invalid(format!("tensor `{to}` vanished from the model"))
            })?,
        };
        dst.copy_from_slice(&v);
    }
    Ok(report)
}

#[cfg(test)]
mod tests {
    use super::f16_to_f32;

    /// The value of half-precision bits by the textbook formula, in f64.
    fn f16_by_formula(h: u16) -> f64 {
        let sign = if h & 0x8000 != 0 { -1.0 } else { 1.0 };
        let exp = ((h >> 10) & 0x1f) as i32;
        let mant = (h & 0x3ff) as f64;
        match exp {
            0 => sign * mant * 2f64.powi(-24),
            31 if mant == 0.0 => sign * f64::INFINITY,
            31 => f64::NAN,
            _ => sign * (1.0 + mant / 1024.0) * 2f64.powi(exp - 15),
        }
    }

    #[test]
    fn f16_conversion_is_exact_for_every_bit_pattern() {
        for h in 0..=u16::MAX {
            let (got, want) = (f16_to_f32(h) as f64, f16_by_formula(h));
            if want.is_nan() {
                assert!(got.is_nan(), "{h:#06x}");
            } else {
                assert_eq!(got, want, "{h:#06x}");
                assert_eq!(got.is_sign_negative(), want.is_sign_negative(), "{h:#06x}");
            }
        }
    }
}
