//! Single-precision GEMM with a fused epilogue list:
//! `C = epilogue(α·op(A)·op(B) + β·C)`, row-major, with optional transposes.
//!
//! The algorithm is the classic Goto/BLIS blocking: for each `NC`-column
//! block of B and each `KC`-deep slice, B is packed into `NR`-wide panels;
//! for each `MC`-row block of A, A is packed into `MR`-tall panels (scaled by
//! α while packing); then the register-blocked microkernel of the dispatch
//! table computes every `MR × NR` tile. After the last depth slice of a tile
//! the [`Epilogue`] list is applied to that tile while it is still in L1.
//!
//! Threads split the rows of C into blocks ([`super::parallel`]); every
//! output element is reduced over the depth in the same order whatever the
//! split, so the result is bit-identical for any number of threads.
//!
//! [`sgemm_serial`] runs on the calling thread with a caller-provided scratch
//! buffer of [`gemm_scratch_len`] floats and no allocation, so it works under
//! `no_std`; [`sgemm`] (std) spreads over the thread pool and keeps its
//! packing buffers in thread-local storage.

use super::dispatch::{Kernels, MAX_TILE, MicroKernel, StridedMicroKernel, kernels};
use super::pack::PackTransposeKernel;
use crate::activation::Activation;

/// One step of the fused epilogue, applied in list order to each element
/// `v = α·op(A)·op(B) + β·C` before it is stored.
#[derive(Debug, Clone, Copy)]
pub enum Epilogue<'a> {
    /// `v += bias[i]` for row `i` (one bias per output row: `m` values).
    BiasRow(&'a [f32]),
    /// `v += bias[j]` for column `j` (one bias per output column: `n` values).
    BiasCol(&'a [f32]),
    /// `v *= s`.
    Scale(f32),
    /// `v = act(v)`.
    Activation(Activation),
    /// `v += data[i·ld + j]`: a residual from another buffer with row
    /// stride `ld`.
    Residual {
        /// The residual values.
        data: &'a [f32],
        /// The residual's row stride in floats (at least `n`).
        ld: usize,
    },
}

/// The shape and scalars of one GEMM call.
///
/// `op(A)` is `m × k` and `op(B)` is `k × n`. Without transposition A is
/// stored `m × k` with row stride `lda`; with it, A is stored `k × m` (row
/// stride `lda`) and `op(A) = Aᵀ`. Likewise for B. C is `m × n` with row
/// stride `ldc`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Gemm {
    /// Rows of `op(A)` and of C.
    pub m: usize,
    /// Columns of `op(B)` and of C.
    pub n: usize,
    /// The depth: columns of `op(A)`, rows of `op(B)`.
    pub k: usize,
    /// Whether `op(A) = Aᵀ`.
    pub trans_a: bool,
    /// Whether `op(B) = Bᵀ`.
    pub trans_b: bool,
    /// Row stride of A as stored.
    pub lda: usize,
    /// Row stride of B as stored.
    pub ldb: usize,
    /// Row stride of C.
    pub ldc: usize,
    /// The product's scale α.
    pub alpha: f32,
    /// The scale β of C's previous contents (0 ignores them, NaN included).
    pub beta: f32,
}

impl Gemm {
    /// `C = A·B` for dense `m × k` A, `k × n` B, `m × n` C.
    pub const fn new(m: usize, n: usize, k: usize) -> Self {
        Gemm {
            m,
            n,
            k,
            trans_a: false,
            trans_b: false,
            lda: k,
            ldb: n,
            ldc: n,
            alpha: 1.0,
            beta: 0.0,
        }
    }

    /// The same call with `op(A) = Aᵀ`, A stored densely as `k × m`.
    pub const fn transpose_a(mut self) -> Self {
        self.trans_a = true;
        self.lda = self.m;
        self
    }

    /// The same call with `op(B) = Bᵀ`, B stored densely as `n × k`.
    pub const fn transpose_b(mut self) -> Self {
        self.trans_b = true;
        self.ldb = self.k;
        self
    }

    /// The same call with α and β set.
    pub const fn scaled(mut self, alpha: f32, beta: f32) -> Self {
        self.alpha = alpha;
        self.beta = beta;
        self
    }

    /// The least length of A's buffer.
    pub fn a_len(&self) -> usize {
        let (rows, cols) = if self.trans_a {
            (self.k, self.m)
        } else {
            (self.m, self.k)
        };
        min_len(rows, cols, self.lda)
    }

    /// The least length of B's buffer.
    pub fn b_len(&self) -> usize {
        let (rows, cols) = if self.trans_b {
            (self.n, self.k)
        } else {
            (self.k, self.n)
        };
        min_len(rows, cols, self.ldb)
    }

    /// The least length of C's buffer.
    pub fn c_len(&self) -> usize {
        min_len(self.m, self.n, self.ldc)
    }

    /// The number of floating-point operations (2·m·n·k).
    pub fn flops(&self) -> usize {
        2 * self.m * self.n * self.k
    }

    /// Checks strides and buffer lengths; panics with a message naming the
    /// offending operand (a caller bug: generated code passes literal shapes).
    fn check(&self, a: Option<&[f32]>, b: Option<&[f32]>, c: &[f32], epilogue: &[Epilogue<'_>]) {
        let (a_cols, b_cols) = (
            if self.trans_a { self.m } else { self.k },
            if self.trans_b { self.k } else { self.n },
        );
        assert!(
            self.lda >= a_cols || a_cols == 0 || self.a_rows() <= 1,
            "gemm: lda {} < {} columns of A",
            self.lda,
            a_cols
        );
        assert!(
            self.ldb >= b_cols || b_cols == 0 || self.b_rows() <= 1,
            "gemm: ldb {} < {} columns of B",
            self.ldb,
            b_cols
        );
        assert!(
            self.ldc >= self.n || self.m <= 1,
            "gemm: ldc {} < n = {}",
            self.ldc,
            self.n
        );
        if let Some(a) = a {
            assert!(
                a.len() >= self.a_len(),
                "gemm: A has {} floats, needs {}",
                a.len(),
                self.a_len()
            );
        }
        if let Some(b) = b {
            assert!(
                b.len() >= self.b_len(),
                "gemm: B has {} floats, needs {}",
                b.len(),
                self.b_len()
            );
        }
        assert!(
            c.len() >= self.c_len(),
            "gemm: C has {} floats, needs {}",
            c.len(),
            self.c_len()
        );
        for (idx, e) in epilogue.iter().enumerate() {
            match *e {
                Epilogue::BiasRow(v) => assert!(
                    v.len() >= self.m,
                    "gemm: epilogue {idx} (row bias) has {} values, needs m = {}",
                    v.len(),
                    self.m
                ),
                Epilogue::BiasCol(v) => assert!(
                    v.len() >= self.n,
                    "gemm: epilogue {idx} (column bias) has {} values, needs n = {}",
                    v.len(),
                    self.n
                ),
                Epilogue::Residual { data, ld } => {
                    assert!(
                        ld >= self.n || self.m <= 1,
                        "gemm: epilogue {idx} (residual) stride {ld} < n = {}",
                        self.n
                    );
                    assert!(
                        data.len() >= min_len(self.m, self.n, ld),
                        "gemm: epilogue {idx} (residual) has {} floats, needs {}",
                        data.len(),
                        min_len(self.m, self.n, ld)
                    );
                }
                Epilogue::Scale(_) | Epilogue::Activation(_) => {}
            }
        }
    }

    /// As [`Gemm::check`], with A packed in advance for `kern`.
    fn check_packed(
        &self,
        kern: &Kernels,
        packed_a: &[f32],
        b: Option<&[f32]>,
        c: &[f32],
        epilogue: &[Epilogue<'_>],
    ) {
        let need = packed_a_len(kern, self);
        assert!(
            packed_a.len() >= need,
            "gemm: packed A has {} floats, needs {need}",
            packed_a.len()
        );
        // A itself is not read.
        self.check(None, b, c, epilogue);
    }

    /// As [`Gemm::check`] for a self-packing B and either form of A.
    fn check_operand(&self, kern: &Kernels, a: AOperand<'_>, c: &[f32], epilogue: &[Epilogue<'_>]) {
        match a {
            AOperand::Plain(a) => self.check(Some(a), None, c, epilogue),
            AOperand::Packed(p) => self.check_packed(kern, p, None, c, epilogue),
        }
    }

    fn a_rows(&self) -> usize {
        if self.trans_a { self.k } else { self.m }
    }

    fn b_rows(&self) -> usize {
        if self.trans_b { self.n } else { self.k }
    }
}

fn min_len(rows: usize, cols: usize, ld: usize) -> usize {
    if rows == 0 || cols == 0 {
        0
    } else {
        (rows - 1) * ld + cols
    }
}

/// Floats of slack so that both packed buffers can start on a 64-byte line.
const ALIGN_SLACK: usize = 32;

fn round_up(x: usize, to: usize) -> usize {
    x.div_ceil(to) * to
}

/// The scratch length (in floats) that [`sgemm_serial_with`] needs for this
/// call with kernel variant `kern`: one packed A block and one packed B block.
pub fn gemm_scratch_len_with(kern: &Kernels, g: &Gemm) -> usize {
    let kc = g.k.clamp(1, kern.kc);
    let mc = round_up(g.m.clamp(1, kern.mc), kern.mr);
    let nc = round_up(g.n.clamp(1, kern.nc), kern.nr);
    mc * kc + kc * nc + ALIGN_SLACK
}

/// The scratch length (in floats) that [`sgemm_serial`] needs for this call.
pub fn gemm_scratch_len(g: &Gemm) -> usize {
    gemm_scratch_len_with(kernels(), g)
}

/// `C = epilogue(α·op(A)·op(B) + β·C)` on the calling thread, with the
/// chosen kernel variant and `scratch` of at least [`gemm_scratch_len`]
/// floats. Allocation-free.
///
/// # Panics
///
/// If a buffer is shorter than the shape requires (a caller bug).
pub fn sgemm_serial(
    g: &Gemm,
    a: &[f32],
    b: &[f32],
    c: &mut [f32],
    epilogue: &[Epilogue<'_>],
    scratch: &mut [f32],
) {
    sgemm_serial_with(kernels(), g, a, b, c, epilogue, scratch)
}

/// [`sgemm_serial`] with an explicit kernel variant (tests run them all).
///
/// # Panics
///
/// If a buffer is shorter than the shape requires (a caller bug).
pub fn sgemm_serial_with(
    kern: &Kernels,
    g: &Gemm,
    a: &[f32],
    b: &[f32],
    c: &mut [f32],
    epilogue: &[Epilogue<'_>],
    scratch: &mut [f32],
) {
    g.check(Some(a), Some(b), c, epilogue);
    assert!(
        scratch.len() >= gemm_scratch_len_with(kern, g),
        "gemm: scratch has {} floats, needs {}",
        scratch.len(),
        gemm_scratch_len_with(kern, g)
    );
    gemm_rows(
        kern,
        g,
        AOperand::Plain(a),
        BOperand::Plain(b),
        c,
        0,
        g.m,
        epilogue,
        scratch,
    );
}

/// `C = epilogue(α·op(A)·op(B) + β·C)` over the thread pool (when the work
/// is worth it), with the chosen kernel variant.
///
/// # Panics
///
/// If a buffer is shorter than the shape requires (a caller bug).
#[cfg(feature = "std")]
pub fn sgemm(g: &Gemm, a: &[f32], b: &[f32], c: &mut [f32], epilogue: &[Epilogue<'_>]) {
    sgemm_with(kernels(), g, a, b, c, epilogue)
}

/// [`sgemm`] with an explicit kernel variant (tests run them all).
///
/// # Panics
///
/// If a buffer is shorter than the shape requires (a caller bug).
#[cfg(feature = "std")]
pub fn sgemm_with(
    kern: &Kernels,
    g: &Gemm,
    a: &[f32],
    b: &[f32],
    c: &mut [f32],
    epilogue: &[Epilogue<'_>],
) {
    g.check(Some(a), Some(b), c, epilogue);
    sgemm_threaded(kern, g, AOperand::Plain(a), BOperand::Plain(b), c, epilogue);
}

/// [`sgemm_with`] with A already packed by [`pack_a`] for the same variant
/// and shape (the weights of a layer, packed once for a whole batch).
///
/// # Panics
///
/// If a buffer is shorter than the shape requires (a caller bug).
#[cfg(feature = "std")]
pub fn sgemm_packed_with(
    kern: &Kernels,
    g: &Gemm,
    packed_a: &[f32],
    b: &[f32],
    c: &mut [f32],
    epilogue: &[Epilogue<'_>],
) {
    g.check_packed(kern, packed_a, Some(b), c, epilogue);
    sgemm_threaded(
        kern,
        g,
        AOperand::Packed(packed_a),
        BOperand::Plain(b),
        c,
        epilogue,
    );
}

#[cfg(feature = "std")]
fn sgemm_threaded(
    kern: &Kernels,
    g: &Gemm,
    a_op: AOperand<'_>,
    b: BOperand<'_>,
    c: &mut [f32],
    epilogue: &[Epilogue<'_>],
) {
    use super::parallel::{for_each_chunk_mut, worth_parallel};
    if g.m == 0 || g.n == 0 {
        return;
    }
    let c = &mut c[..g.c_len()];
    let work = g.m * g.n * g.k.max(1);
    // Row blocks: one per thread, whole micro-tiles. The split does not
    // change any element's reduction order, only who computes it. Every
    // block packs the whole of B, so more blocks only repeat that work
    // (`cargo bench -p kiln-runtime --bench peak` times one thread
    // against two).
    let threads = if worth_parallel(work) {
        rayon::current_num_threads()
    } else {
        1
    };
    let rows_per = if threads == 1 {
        g.m
    } else {
        round_up(g.m.div_ceil(threads).max(1), kern.mr).min(g.m)
    };
    let chunk = rows_per * g.ldc;
    for_each_chunk_mut(c, chunk, work, |idx, c_rows| {
        let row0 = idx * rows_per;
        let rows = rows_per.min(g.m - row0);
        with_scratch(Slot::Pack, gemm_scratch_len_with(kern, g), |scratch| {
            gemm_rows(kern, g, a_op, b, c_rows, row0, rows, epilogue, scratch)
        });
    });
}

/// [`sgemm_serial_with`] with A already packed by [`pack_a`] for the same
/// variant and shape. Allocation-free.
///
/// # Panics
///
/// If a buffer is shorter than the shape requires (a caller bug).
pub fn sgemm_packed_serial_with(
    kern: &Kernels,
    g: &Gemm,
    packed_a: &[f32],
    b: &[f32],
    c: &mut [f32],
    epilogue: &[Epilogue<'_>],
    scratch: &mut [f32],
) {
    g.check_packed(kern, packed_a, Some(b), c, epilogue);
    assert!(
        scratch.len() >= gemm_scratch_len_with(kern, g),
        "gemm: scratch has {} floats, needs {}",
        scratch.len(),
        gemm_scratch_len_with(kern, g)
    );
    gemm_rows(
        kern,
        g,
        AOperand::Packed(packed_a),
        BOperand::Plain(b),
        c,
        0,
        g.m,
        epilogue,
        scratch,
    );
}

/// The length of `α·op(A)` packed by [`pack_a`] for variant `kern`:
/// `⌈m / MR⌉·MR · k` floats.
pub fn packed_a_len(kern: &Kernels, g: &Gemm) -> usize {
    round_up(g.m, kern.mr) * g.k
}

/// Where [`pack_a`] puts element `(i, p)` of `α·op(A)` (row `i < m`, depth
/// `p < k`) for variant `kern`, so that a caller can write a matrix that is
/// never stored (Winograd's transformed weights) straight into packed form.
pub fn packed_a_index(kern: &Kernels, g: &Gemm, i: usize, p: usize) -> usize {
    let pc = p / kern.kc * kern.kc;
    let kb = (g.k - pc).min(kern.kc);
    pc * round_up(g.m, kern.mr) + (i / kern.mr) * kb * kern.mr + (p - pc) * kern.mr + i % kern.mr
}

/// Packs `α·op(A)` of the call `g` (A as stored, with `g`'s transpose and
/// stride) into `out` (at least [`packed_a_len`] floats) for the `*_packed`
/// GEMMs of the same variant: for each `KC`-deep slice, the `MR`-tall panels
/// of all rows in order.
///
/// # Panics
///
/// If a buffer is shorter than the shape requires (a caller bug).
pub fn pack_a(kern: &Kernels, g: &Gemm, a: &[f32], out: &mut [f32]) {
    assert!(
        a.len() >= g.a_len(),
        "gemm: A has {} floats, needs {}",
        a.len(),
        g.a_len()
    );
    let m_r = round_up(g.m, kern.mr);
    assert!(
        out.len() >= m_r * g.k,
        "gemm: packed A has {} floats, needs {}",
        out.len(),
        m_r * g.k
    );
    let mut pc = 0;
    while pc < g.k {
        let kb = (g.k - pc).min(kern.kc);
        pack_a_block(
            kern.pack_transpose,
            g,
            a,
            0,
            g.m,
            pc,
            kb,
            kern.mr,
            &mut out[pc * m_r..pc * m_r + kb * m_r],
        );
        pc += kb;
    }
}

/// The A operand of a GEMM: as stored (with the call's transpose and
/// stride), or packed in advance by [`pack_a`].
#[derive(Debug, Clone, Copy)]
pub enum AOperand<'a> {
    /// A as stored.
    Plain(&'a [f32]),
    /// `α·op(A)` packed by [`pack_a`] for the same variant and shape.
    Packed(&'a [f32]),
}

/// A B operand that packs itself, for a matrix that is never stored: the
/// convolution's column matrix, written straight into the packed panels
/// one cache block at a time (an implicit im2col).
pub trait PackB: Sync {
    /// Writes `op(B)[pc .. pc+kb, jc .. jc+nb]` into `out` as `nr`-wide
    /// panels, each `kb` steps of `nr` values, the last panel zero-padded
    /// (the layout [`sgemm_serial`] packs a stored B into).
    fn pack_b(&self, pc: usize, kb: usize, jc: usize, nb: usize, nr: usize, out: &mut [f32]);
}

/// The B operand of the blocked product: stored, or packing itself.
#[derive(Clone, Copy)]
enum BOperand<'a> {
    Plain(&'a [f32]),
    Custom(&'a dyn PackB),
}

/// `C = epilogue(α·op(A)·B + β·C)` on the calling thread, with B produced
/// block by block by `b` (its `op(B)` is the `k × n` matrix of `g`).
/// Allocation-free; `scratch` as [`gemm_scratch_len`].
///
/// # Panics
///
/// If a buffer is shorter than the shape requires (a caller bug).
pub fn sgemm_custom_serial_with(
    kern: &Kernels,
    g: &Gemm,
    a: AOperand<'_>,
    b: &dyn PackB,
    c: &mut [f32],
    epilogue: &[Epilogue<'_>],
    scratch: &mut [f32],
) {
    g.check_operand(kern, a, c, epilogue);
    assert!(
        scratch.len() >= gemm_scratch_len_with(kern, g),
        "gemm: scratch has {} floats, needs {}",
        scratch.len(),
        gemm_scratch_len_with(kern, g)
    );
    gemm_rows(
        kern,
        g,
        a,
        BOperand::Custom(b),
        c,
        0,
        g.m,
        epilogue,
        scratch,
    );
}

/// [`sgemm_custom_serial_with`] over the thread pool.
///
/// # Panics
///
/// If a buffer is shorter than the shape requires (a caller bug).
#[cfg(feature = "std")]
pub fn sgemm_custom_with(
    kern: &Kernels,
    g: &Gemm,
    a: AOperand<'_>,
    b: &dyn PackB,
    c: &mut [f32],
    epilogue: &[Epilogue<'_>],
) {
    g.check_operand(kern, a, c, epilogue);
    sgemm_threaded(kern, g, a, BOperand::Custom(b), c, epilogue);
}

/// Which thread-local buffer [`with_scratch`] lends: GEMM packing and the
/// convolution's column matrix use separate ones, since a convolution holds
/// its column buffer while its GEMM packs.
#[cfg(feature = "std")]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Slot {
    /// GEMM's packed panels.
    Pack,
    /// A convolution's column matrix (and, on worker threads, its packing).
    Conv,
    /// A convolution's weights, packed once per call.
    Weights,
    /// A convolution's output before the max pool fused after it
    /// ([`super::conv_pool`]) where no kernel pools it in registers.
    Pooled,
}

#[cfg(feature = "std")]
std::thread_local! {
    static SCRATCH_PACK: std::cell::RefCell<std::vec::Vec<f32>> =
        const { std::cell::RefCell::new(std::vec::Vec::new()) };
    static SCRATCH_CONV: std::cell::RefCell<std::vec::Vec<f32>> =
        const { std::cell::RefCell::new(std::vec::Vec::new()) };
    static SCRATCH_WEIGHTS: std::cell::RefCell<std::vec::Vec<f32>> =
        const { std::cell::RefCell::new(std::vec::Vec::new()) };
    static SCRATCH_POOLED: std::cell::RefCell<std::vec::Vec<f32>> =
        const { std::cell::RefCell::new(std::vec::Vec::new()) };
}

/// Grows every per-thread scratch buffer of the threaded kernels (but the
/// unpooled outputs', [`super::conv_pool::reserve_unpooled_scratch`]) to at
/// least `len` floats, on the calling thread and on every thread of the
/// pool, so that later calls needing at most `len` allocate nothing
/// whichever worker runs which chunk. Generated networks call it once at
/// construction with the largest scratch any of their kernels takes.
#[cfg(feature = "std")]
pub fn reserve_scratch(len: usize) {
    let grow = || {
        for key in [
            &SCRATCH_PACK,
            &SCRATCH_CONV,
            &SCRATCH_WEIGHTS,
            &SCRATCH_POOLED,
        ] {
            key.with(|cell| {
                if let Ok(mut buf) = cell.try_borrow_mut()
                    && buf.len() < len
                {
                    buf.resize(len, 0.0);
                }
            });
        }
    };
    grow();
    rayon::broadcast(|_| grow());
}

/// Runs `f` with this thread's buffer `slot`, grown to at least `len`
/// floats (its contents are unspecified).
#[cfg(feature = "std")]
pub(crate) fn with_scratch<R>(slot: Slot, len: usize, f: impl FnOnce(&mut [f32]) -> R) -> R {
    let key = match slot {
        Slot::Pack => &SCRATCH_PACK,
        Slot::Conv => &SCRATCH_CONV,
        Slot::Weights => &SCRATCH_WEIGHTS,
        Slot::Pooled => &SCRATCH_POOLED,
    };
    let mut f = Some(f);
    let done = key.with(|cell| {
        let mut buf = cell.try_borrow_mut().ok()?;
        if buf.len() < len {
            buf.resize(len, 0.0);
        }
        let f = f.take()?;
        Some(f(&mut buf[..len]))
    });
    match done {
        Some(r) => r,
        // Re-entered on this thread while the buffer is lent out: use a
        // private one.
        None => {
            let f = f.take().expect("with_scratch: closure already taken");
            f(&mut std::vec![0.0; len])
        }
    }
}

/// Splits `scratch` into 64-byte-aligned packed-A and packed-B buffers.
fn split_scratch(scratch: &mut [f32], a_len: usize, b_len: usize) -> (&mut [f32], &mut [f32]) {
    let align = |s: &[f32]| (s.as_ptr().align_offset(64)).min(16);
    let off = align(scratch);
    let (pa, rest) = scratch[off..].split_at_mut(a_len);
    let off_b = align(rest);
    let pb = &mut rest[off_b..off_b + b_len];
    (pa, pb)
}

/// Computes rows `row0 .. row0 + rows` of C into `c` (which starts at row
/// `row0`), the whole depth and all columns.
fn gemm_rows(
    kern: &Kernels,
    g: &Gemm,
    a: AOperand<'_>,
    b: BOperand<'_>,
    c: &mut [f32],
    row0: usize,
    rows: usize,
    epilogue: &[Epilogue<'_>],
    scratch: &mut [f32],
) {
    let (mr, nr) = (kern.mr, kern.nr);
    let (m, n, k) = (rows, g.n, g.k);
    if m == 0 || n == 0 {
        return;
    }
    let ldc = g.ldc;
    if k == 0 || g.alpha == 0.0 {
        // No product: C = β·C, then the epilogue.
        for i in 0..m {
            let row = &mut c[i * ldc..i * ldc + n];
            scale_row(row, g.beta);
            apply_epilogue(epilogue, row, row0 + i, 0);
        }
        return;
    }
    if let (AOperand::Plain(a), BOperand::Plain(b)) = (a, b)
        && gemv(kern, g, a, b, c, row0, rows, epilogue)
    {
        return;
    }
    if g.beta != 0.0 && g.beta != 1.0 {
        for i in 0..m {
            scale_row(&mut c[i * ldc..i * ldc + n], g.beta);
        }
    }
    let strided = match a {
        AOperand::Plain(_) => strided_micro(kern, g),
        AOperand::Packed(_) => None,
    };
    let kc_max = k.min(kern.kc);
    let mc_max = round_up(m.min(kern.mc), mr);
    let nc_max = round_up(n.min(kern.nc), nr);
    let (pa, pb) = split_scratch(scratch, mc_max * kc_max, kc_max * nc_max);
    let mut tile = [0.0f32; MAX_TILE];

    let mut jc = 0;
    while jc < n {
        let nb = (n - jc).min(kern.nc);
        let mut pc = 0;
        while pc < k {
            let kb = (k - pc).min(kern.kc);
            match b {
                BOperand::Plain(b) => pack_b(kern.pack_transpose, g, b, pc, kb, jc, nb, nr, pb),
                BOperand::Custom(src) => src.pack_b(pc, kb, jc, nb, nr, pb),
            }
            let first = pc == 0;
            let last = pc + kb == k;
            let accumulate = !(first && g.beta == 0.0);
            let mut ic = 0;
            while ic < m {
                let mb = (m - ic).min(kern.mc);
                // The packed panels of rows ic .. ic + mb: packed here (unless
                // A is read in place), or taken from the caller's packed A.
                let packed_at = match a {
                    AOperand::Plain(a) => {
                        if strided.is_none() {
                            pack_a_block(kern.pack_transpose, g, a, row0 + ic, mb, pc, kb, mr, pa);
                        }
                        0
                    }
                    AOperand::Packed(_) => pc * round_up(g.m, mr) + (row0 + ic) * kb,
                };
                for ir in (0..mb).step_by(mr) {
                    let mh = mr.min(mb - ir);
                    let i0 = row0 + ic + ir;
                    let panel = match (a, strided) {
                        (AOperand::Plain(a), Some(f)) if mh == mr => {
                            // The tile's A as stored: from its first element
                            // to its last.
                            let (first, last) = if g.trans_a {
                                (pc * g.lda + i0, (pc + kb - 1) * g.lda + i0 + mr - 1)
                            } else {
                                (i0 * g.lda + pc, (i0 + mr - 1) * g.lda + pc + kb - 1)
                            };
                            Panel::Strided(f, &a[first..=last], g.lda)
                        }
                        (AOperand::Plain(a), Some(_)) => {
                            // A short last panel is packed, zero-padded.
                            pack_a_block(kern.pack_transpose, g, a, i0, mh, pc, kb, mr, pa);
                            Panel::Packed(&pa[..kb * mr])
                        }
                        (AOperand::Plain(_), None) => {
                            Panel::Packed(&pa[ir * kb..ir * kb + kb * mr])
                        }
                        (AOperand::Packed(p), _) => {
                            let at = packed_at + ir * kb;
                            Panel::Packed(&p[at..at + kb * mr])
                        }
                    };
                    for jr in (0..nb).step_by(nr) {
                        let nw = nr.min(nb - jr);
                        let bp = &pb[jr * kb..jr * kb + kb * nr];
                        let (ci, cj) = (ic + ir, jc + jr);
                        if mh == mr && nw == nr {
                            let off = ci * ldc + cj;
                            let need = (mr - 1) * ldc + nr;
                            let dst = &mut c[off..off + need];
                            // SAFETY: the panel holds kb steps of mr values,
                            // `bp` kb·nr, and `dst` covers mr rows of nr
                            // floats ldc apart; the variant's features were
                            // checked by the table.
                            unsafe {
                                panel.run(kern.micro, kb, bp, dst.as_mut_ptr(), ldc, accumulate)
                            };
                        } else {
                            // SAFETY: as above, into the mr × nr stack tile.
                            unsafe { panel.run(kern.micro, kb, bp, tile.as_mut_ptr(), nr, false) };
                            for i in 0..mh {
                                let src = &tile[i * nr..i * nr + nw];
                                let row = &mut c[(ci + i) * ldc + cj..(ci + i) * ldc + cj + nw];
                                if accumulate {
                                    for (d, s) in row.iter_mut().zip(src) {
                                        *d += *s;
                                    }
                                } else {
                                    row.copy_from_slice(src);
                                }
                            }
                        }
                        if last && !epilogue.is_empty() {
                            for i in 0..mh {
                                let row = &mut c[(ci + i) * ldc + cj..(ci + i) * ldc + cj + nw];
                                apply_epilogue(epilogue, row, row0 + ci + i, cj);
                            }
                        }
                    }
                }
                ic += mb;
            }
            pc += kb;
        }
        jc += nb;
    }
}

/// Columns of C up to which a stored A is read in place by the variant's
/// strided microkernels instead of being packed: a packed A block serves
/// `⌈n / NR⌉` tiles of columns, so for few columns its packing costs as much
/// as the product when A is large (ResNet's 7×7 layers at batch 1, 9.4 MB
/// of weights for 49 or 63 columns). A count of columns rather than of
/// tiles: `conv_targets` with `KILN_KERNELS=avx2` (16-wide tiles), two tiles
/// against 64 columns alternated twice (21:06–21:09), 7×7 forward at batch 1
/// 39–42 % against 65–66 % of SGEMM, backward-data 33–43 % against 58 %;
/// on AVX-512 two, three and four 32-wide tiles measured the same.
const STRIDED_MAX_COLUMNS: usize = 64;

/// The strided microkernel that reads this call's A in place, if the
/// variant has one and the shape is worth it (no `α` to fold in, at most
/// [`STRIDED_MAX_COLUMNS`] columns).
fn strided_micro(kern: &Kernels, g: &Gemm) -> Option<StridedMicroKernel> {
    let s = kern.micro_strided?;
    let worth = g.alpha == 1.0 && g.n <= STRIDED_MAX_COLUMNS;
    worth.then_some(if g.trans_a { s.cols } else { s.rows })
}

/// Whether the call `g` on variant `kern` reads a stored A in place (no
/// packing) rather than packing it block by block; a caller that would pack
/// A in advance for this one call does better to pass it as stored.
pub fn reads_a_in_place(kern: &Kernels, g: &Gemm) -> bool {
    strided_micro(kern, g).is_some()
}

/// One tile's A: a packed panel, or the stored matrix for a strided kernel.
#[derive(Clone, Copy)]
enum Panel<'p> {
    Packed(&'p [f32]),
    Strided(StridedMicroKernel, &'p [f32], usize),
}

impl Panel<'_> {
    /// The tile's product into `c`.
    ///
    /// # Safety
    ///
    /// As [`MicroKernel`] for `kc` steps (a `Packed` panel holds `kc · MR`
    /// floats; a `Strided` slice runs from the tile's first element of A to
    /// its last) with the variant's own `micro`.
    unsafe fn run(
        self,
        micro: MicroKernel,
        kc: usize,
        b: &[f32],
        c: *mut f32,
        ldc: usize,
        accumulate: bool,
    ) {
        // SAFETY: forwarded contract.
        unsafe {
            match self {
                Panel::Packed(a) => micro(kc, a.as_ptr(), b.as_ptr(), c, ldc, accumulate),
                Panel::Strided(f, a, lda) => f(kc, a.as_ptr(), lda, b.as_ptr(), c, ldc, accumulate),
            }
        }
    }
}

/// The matrix-vector path, taken when C has one column (and B's column is
/// contiguous) or one row (and A's row and B's columns are contiguous): each
/// element is one dot product, or (for `Aᵀ·b`) a sum of scaled rows of A in
/// order of the depth, with no packing. Returns
/// whether it applied. The choice depends only on the shape, so every row
/// block of a call takes the same path.
fn gemv(
    kern: &Kernels,
    g: &Gemm,
    a: &[f32],
    b: &[f32],
    c: &mut [f32],
    row0: usize,
    rows: usize,
    epilogue: &[Epilogue<'_>],
) -> bool {
    let k = g.k;
    let finish = |c: &mut f32, dot: f32, i: usize, j: usize| {
        let old = if g.beta == 0.0 { 0.0 } else { g.beta * *c };
        *c = g.alpha * dot + old;
        apply_epilogue(epilogue, core::slice::from_mut(c), i, j);
    };
    if g.n == 1 && !g.trans_a && (g.trans_b || g.ldb == 1 || k <= 1) {
        if g.beta == 0.0 && (g.ldc == 1 || rows == 1) && k > 0 {
            // Every row's dot at once, into the contiguous column.
            let col = &mut c[..rows];
            let ar = &a[row0 * g.lda..(row0 + rows - 1) * g.lda + k];
            // SAFETY: row i < rows of A holds k floats at i·lda, b holds k
            // and col `rows`; the table checked the CPU.
            unsafe { (kern.dot_rows)(rows, k, ar.as_ptr(), g.lda, b.as_ptr(), col.as_mut_ptr()) };
            for (i, cv) in col.iter_mut().enumerate() {
                *cv *= g.alpha;
                apply_epilogue(epilogue, core::slice::from_mut(cv), row0 + i, 0);
            }
            return true;
        }
        for i in 0..rows {
            let ar = &a[(row0 + i) * g.lda..(row0 + i) * g.lda + k];
            let bc = &b[..k];
            // SAFETY: both slices hold k floats; the table checked the CPU.
            let d = unsafe { (kern.dot)(k, ar.as_ptr(), bc.as_ptr()) };
            finish(&mut c[i * g.ldc], d, row0 + i, 0);
        }
        return true;
    }
    if g.n == 1 && g.trans_a && (g.trans_b || g.ldb == 1 || k <= 1) && (g.ldc == 1 || g.m == 1) {
        // C = α·Aᵀ·b with A stored k × m: add scaled rows of A in order of p.
        let col = &mut c[..rows];
        let old_scale = g.beta;
        if old_scale == 0.0 {
            col.fill(0.0);
        } else if old_scale != 1.0 {
            for v in col.iter_mut() {
                *v *= old_scale;
            }
        }
        for p in 0..k {
            let s = g.alpha * b[p];
            let ar = &a[p * g.lda + row0..p * g.lda + row0 + rows];
            for (cv, av) in col.iter_mut().zip(ar) {
                *cv += s * *av;
            }
        }
        for (i, cv) in col.iter_mut().enumerate() {
            apply_epilogue(epilogue, core::slice::from_mut(cv), row0 + i, 0);
        }
        return true;
    }
    if g.m == 1 && (!g.trans_a || g.lda == 1 || k <= 1) && g.trans_b {
        let ar = &a[..k];
        let row = &mut c[..g.n];
        if g.beta == 0.0 && k > 0 {
            // Every column's dot at once, then the epilogue over the row.
            let bs = &b[..(g.n - 1) * g.ldb + k];
            // SAFETY: row j < n of B holds k floats at j·ldb, A's row k and
            // C's row n; the table checked the CPU.
            unsafe { (kern.dot_rows)(g.n, k, bs.as_ptr(), g.ldb, ar.as_ptr(), row.as_mut_ptr()) };
            if g.alpha != 1.0 {
                row.iter_mut().for_each(|v| *v *= g.alpha);
            }
            apply_epilogue(epilogue, row, 0, 0);
            return true;
        }
        for (j, cv) in row.iter_mut().enumerate() {
            let bc = &b[j * g.ldb..j * g.ldb + k];
            // SAFETY: both slices hold k floats; the table checked the CPU.
            let d = unsafe { (kern.dot)(k, ar.as_ptr(), bc.as_ptr()) };
            finish(cv, d, 0, j);
        }
        return true;
    }
    false
}

fn scale_row(row: &mut [f32], beta: f32) {
    if beta == 0.0 {
        row.fill(0.0);
    } else if beta != 1.0 {
        for v in row {
            *v *= beta;
        }
    }
}

/// Packs `op(B)[pc .. pc+kb, jc .. jc+nb]` into `nr`-wide panels, each `kb`
/// steps of `nr` values, the last panel zero-padded.
#[allow(clippy::too_many_arguments)]
fn pack_b(
    pack: PackTransposeKernel,
    g: &Gemm,
    b: &[f32],
    pc: usize,
    kb: usize,
    jc: usize,
    nb: usize,
    nr: usize,
    out: &mut [f32],
) {
    let ldb = g.ldb;
    if !g.trans_b {
        match nr {
            32 => pack_b_rows::<32>(b, ldb, pc, kb, jc, nb, out),
            16 => pack_b_rows::<16>(b, ldb, pc, kb, jc, nb, out),
            12 => pack_b_rows::<12>(b, ldb, pc, kb, jc, nb, out),
            _ => unreachable!("pack_b: no variant has NR = {nr} (see packs_b_rows)"),
        }
        return;
    }
    for (panel, jr) in (0..nb).step_by(nr).enumerate() {
        let nw = nr.min(nb - jr);
        let dst = &mut out[panel * kb * nr..(panel + 1) * kb * nr];
        if nw < nr {
            dst.fill(0.0);
        }
        // Columns jc+jr .. of op(B) are rows of B as stored.
        pack_rows(pack, nw, kb, b, (jc + jr) * ldb + pc, ldb, 1.0, nr, dst);
    }
}

/// Whether [`pack_b`] has a [`pack_b_rows`] instance for panels `nr`
/// wide: every variant's NR must (checked at compile time below).
const fn packs_b_rows(nr: usize) -> bool {
    matches!(nr, 12 | 16 | 32)
}

const _: () = {
    use super::gemm_micro as mk;
    assert!(packs_b_rows(mk::PORTABLE_NR));
    #[cfg(target_arch = "x86_64")]
    assert!(packs_b_rows(mk::AVX2_NR) && packs_b_rows(mk::AVX512_NR));
    #[cfg(target_arch = "aarch64")]
    assert!(packs_b_rows(mk::NEON_NR));
};

/// [`pack_b`] of a row-major B into `NR`-wide panels, row by row of B: each
/// row's `nb` values are read once, in order, and scattered to the panels
/// as fixed-size copies (inlined moves, rather than a `memcpy` call per
/// panel row down a column of panels, which crossed a page per row).
fn pack_b_rows<const NR: usize>(
    b: &[f32],
    ldb: usize,
    pc: usize,
    kb: usize,
    jc: usize,
    nb: usize,
    out: &mut [f32],
) {
    let full = nb / NR;
    let rest = nb % NR;
    for p in 0..kb {
        let row = &b[(pc + p) * ldb + jc..][..nb];
        for panel in 0..full {
            let src: &[f32; NR] = row[panel * NR..][..NR].try_into().unwrap();
            let dst: &mut [f32; NR] = (&mut out[panel * kb * NR + p * NR..][..NR])
                .try_into()
                .unwrap();
            *dst = *src;
        }
        if rest > 0 {
            let d = &mut out[full * kb * NR + p * NR..][..NR];
            d[..rest].copy_from_slice(&row[full * NR..]);
            d[rest..].fill(0.0);
        }
    }
}

/// Writes `rows` rows of `src` (from `start`, `ld` apart, `len` values each,
/// scaled by `s`) into `dst` as `len` steps of `w ≥ rows` values; lanes
/// `rows .. w` are left as they are.
#[allow(clippy::too_many_arguments)]
fn pack_rows(
    pack: PackTransposeKernel,
    rows: usize,
    len: usize,
    src: &[f32],
    start: usize,
    ld: usize,
    s: f32,
    w: usize,
    dst: &mut [f32],
) {
    if rows == 0 || len == 0 {
        return;
    }
    assert!(src.len() >= start + (rows - 1) * ld + len && dst.len() >= len * w);
    if rows == w {
        // SAFETY: rows·ld and len·w are inside the buffers (checked above).
        unsafe { pack(rows, len, src[start..].as_ptr(), ld, s, dst.as_mut_ptr()) };
    } else {
        for p in 0..len {
            for i in 0..rows {
                dst[p * w + i] = s * src[start + i * ld + p];
            }
        }
    }
}

/// Packs `α·op(A)[ic .. ic+mb, pc .. pc+kb]` into `mr`-tall panels, each `kb`
/// steps of `mr` values, the last panel zero-padded.
#[allow(clippy::too_many_arguments)]
fn pack_a_block(
    pack: PackTransposeKernel,
    g: &Gemm,
    a: &[f32],
    ic: usize,
    mb: usize,
    pc: usize,
    kb: usize,
    mr: usize,
    out: &mut [f32],
) {
    let lda = g.lda;
    let alpha = g.alpha;
    for (panel, ir) in (0..mb).step_by(mr).enumerate() {
        let mh = mr.min(mb - ir);
        let dst = &mut out[panel * kb * mr..(panel + 1) * kb * mr];
        if g.trans_a {
            for p in 0..kb {
                let src = (pc + p) * lda + ic + ir;
                let d = &mut dst[p * mr..p * mr + mr];
                for (dv, sv) in d[..mh].iter_mut().zip(&a[src..src + mh]) {
                    *dv = alpha * *sv;
                }
                d[mh..].fill(0.0);
            }
        } else {
            if mh < mr {
                dst.fill(0.0);
            }
            pack_rows(pack, mh, kb, a, (ic + ir) * lda + pc, lda, alpha, mr, dst);
        }
    }
}

/// Applies the epilogue list to `row`, the columns `j0 ..` of output row `i`.
#[inline]
fn apply_epilogue(epilogue: &[Epilogue<'_>], row: &mut [f32], i: usize, j0: usize) {
    let w = row.len();
    for e in epilogue {
        match *e {
            Epilogue::BiasRow(bias) => {
                let v = bias[i];
                for x in row.iter_mut() {
                    *x += v;
                }
            }
            Epilogue::BiasCol(bias) => {
                for (x, v) in row.iter_mut().zip(&bias[j0..j0 + w]) {
                    *x += *v;
                }
            }
            Epilogue::Scale(s) => {
                for x in row.iter_mut() {
                    *x *= s;
                }
            }
            Epilogue::Activation(act) => apply_activation(act, row),
            Epilogue::Residual { data, ld } => {
                for (x, v) in row.iter_mut().zip(&data[i * ld + j0..i * ld + j0 + w]) {
                    *x += *v;
                }
            }
        }
    }
}

/// Applies `act` to every value of `row`, with the common cases as plain
/// loops the compiler vectorizes.
#[inline]
pub fn apply_activation(act: Activation, row: &mut [f32]) {
    match act {
        Activation::Identity => {}
        Activation::Relu => {
            for x in row.iter_mut() {
                *x = x.max(0.0);
            }
        }
        Activation::LeakyRelu(a) => {
            for x in row.iter_mut() {
                *x = if *x > 0.0 { *x } else { a * *x };
            }
        }
        other => {
            for x in row.iter_mut() {
                *x = other.apply(*x);
            }
        }
    }
}
