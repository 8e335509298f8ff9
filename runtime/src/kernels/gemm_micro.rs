//! The register-blocked GEMM microkernels, one per architecture variant
//! (portable; AVX2+FMA and AVX-512F on x86-64; NEON on aarch64).
//!
//! Each computes one `MR × NR` tile of `C` from packed panels (see
//! [`super::gemm`] for the packing layout): for every step `p` of the depth it
//! loads `NR` values of B, broadcasts each of the `MR` values of A and issues
//! one fused multiply-add per vector of the tile. The accumulators stay in
//! registers for the whole depth; the tile touches memory only at the end.
//! The reduction order of every output element is the plain `p = 0, 1, …`
//! order, so the result does not depend on how the caller splits the work.
//!
//! `unsafe` is confined to pointer reads/writes whose bounds the caller
//! guarantees (the [`super::dispatch::MicroKernel`] contract) and to calling
//! `#[target_feature]` functions, which the dispatch table only does on CPUs
//! that have the features.

/// Rows of the portable micro-tile.
pub const PORTABLE_MR: usize = 4;
/// Columns of the portable micro-tile.
pub const PORTABLE_NR: usize = 16;

/// The portable microkernel: plain arrays that the compiler keeps in vector
/// registers of the target's baseline (SSE2 on x86-64, NEON on aarch64). It
/// multiplies and adds separately (no fused multiply-add: without hardware
/// FMA that would be a slow library call).
///
/// # Safety
///
/// As [`super::dispatch::MicroKernel`], with `MR = 4`, `NR = 16`.
pub unsafe fn micro_portable(
    kc: usize,
    a: *const f32,
    b: *const f32,
    c: *mut f32,
    ldc: usize,
    accumulate: bool,
) {
    const MR: usize = PORTABLE_MR;
    const NR: usize = PORTABLE_NR;
    // SAFETY: the caller guarantees `a` holds kc·MR and `b` kc·NR floats.
    let (a, b) = unsafe {
        (
            core::slice::from_raw_parts(a, kc * MR),
            core::slice::from_raw_parts(b, kc * NR),
        )
    };
    let mut acc = [[0.0f32; NR]; MR];
    for (ap, bp) in a.chunks_exact(MR).zip(b.chunks_exact(NR)) {
        for i in 0..MR {
            let ai = ap[i];
            for j in 0..NR {
                acc[i][j] += ai * bp[j];
            }
        }
    }
    for i in 0..MR {
        // SAFETY: row i of the tile is writable for NR floats (contract).
        let row = unsafe { core::slice::from_raw_parts_mut(c.add(i * ldc), NR) };
        if accumulate {
            for j in 0..NR {
                row[j] += acc[i][j];
            }
        } else {
            row.copy_from_slice(&acc[i]);
        }
    }
}

/// A microkernel's A tile packed: depth step `p` is the `MR` values at
/// `a + p·MR`.
#[cfg(target_arch = "x86_64")]
const PACKED: u8 = 0;
/// A microkernel's A tile stored row-major: element `(i, p)` at
/// `a + i·lda + p`.
#[cfg(target_arch = "x86_64")]
const ROWS: u8 = 1;
/// A microkernel's A tile stored column-major: element `(i, p)` at
/// `a + p·lda + i`.
#[cfg(target_arch = "x86_64")]
const COLS: u8 = 2;

/// The distance between rows and between depth steps of an A tile laid out
/// as `A` says.
#[cfg(target_arch = "x86_64")]
#[inline(always)]
const fn steps<const A: u8>(mr: usize, lda: usize) -> (usize, usize) {
    match A {
        ROWS => (lda, 1),
        COLS => (1, lda),
        _ => (1, mr),
    }
}

/// Rows of the AVX2 micro-tile.
#[cfg(target_arch = "x86_64")]
pub const AVX2_MR: usize = 6;
/// Columns of the AVX2 micro-tile (two 8-lane vectors).
#[cfg(target_arch = "x86_64")]
pub const AVX2_NR: usize = 16;

/// The AVX2+FMA microkernel: 6 × 16, twelve `ymm` accumulators.
///
/// # Safety
///
/// As [`super::dispatch::MicroKernel`], with `MR = 6`, `NR = 16`; the CPU
/// must support AVX2 and FMA.
#[cfg(target_arch = "x86_64")]
pub unsafe fn micro_avx2(
    kc: usize,
    a: *const f32,
    b: *const f32,
    c: *mut f32,
    ldc: usize,
    accumulate: bool,
) {
    // SAFETY: forwarded contract; the dispatch table checked the features.
    unsafe { micro_avx2_impl::<AVX2_MR, PACKED>(kc, a, AVX2_MR, b, c, ldc, accumulate) }
}

/// [`micro_avx2`] reading A unpacked from a row-major matrix (see
/// [`micro_avx512_rows`]).
///
/// # Safety
///
/// As [`super::dispatch::StridedMicroKernel`] with `MR = 6`, `NR = 16`; the
/// CPU must support AVX2 and FMA.
#[cfg(target_arch = "x86_64")]
pub unsafe fn micro_avx2_rows(
    kc: usize,
    a: *const f32,
    lda: usize,
    b: *const f32,
    c: *mut f32,
    ldc: usize,
    accumulate: bool,
) {
    // SAFETY: forwarded contract; the dispatch table checked the features.
    unsafe { micro_avx2_impl::<AVX2_MR, ROWS>(kc, a, lda, b, c, ldc, accumulate) }
}

/// [`micro_avx2`] reading A unpacked from a column-major matrix (see
/// [`micro_avx512_cols`]).
///
/// # Safety
///
/// As [`super::dispatch::StridedMicroKernel`] with `MR = 6`, `NR = 16`; the
/// CPU must support AVX2 and FMA.
#[cfg(target_arch = "x86_64")]
pub unsafe fn micro_avx2_cols(
    kc: usize,
    a: *const f32,
    lda: usize,
    b: *const f32,
    c: *mut f32,
    ldc: usize,
    accumulate: bool,
) {
    // SAFETY: forwarded contract; the dispatch table checked the features.
    unsafe { micro_avx2_impl::<AVX2_MR, COLS>(kc, a, lda, b, c, ldc, accumulate) }
}

/// The AVX2 microkernels, A laid out as `A` says ([`PACKED`], [`ROWS`] or
/// [`COLS`]).
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
unsafe fn micro_avx2_impl<const MR: usize, const A: u8>(
    kc: usize,
    a: *const f32,
    lda: usize,
    b: *const f32,
    c: *mut f32,
    ldc: usize,
    accumulate: bool,
) {
    use core::arch::x86_64::*;
    // Ask for the C tile now (see the AVX-512 kernel).
    for i in 0..MR {
        let row = c.wrapping_add(i * ldc) as *const i8;
        _mm_prefetch::<_MM_HINT_T0>(row);
        _mm_prefetch::<_MM_HINT_T0>(row.wrapping_add(63));
    }
    let (row_step, depth_step) = steps::<A>(MR, lda);
    let mut acc = [[_mm256_setzero_ps(); 2]; MR];
    let mut a = a;
    let mut b = b;
    for _ in 0..kc {
        // SAFETY: p < kc and i < MR, so the reads stay inside A's tile and
        // B's packed panel (contract).
        unsafe {
            let b0 = _mm256_loadu_ps(b);
            let b1 = _mm256_loadu_ps(b.add(8));
            if A == COLS {
                // The 6 values of a step ahead span at most two lines.
                let ahead = a.wrapping_add(PF_A_STEPS * lda) as *const i8;
                _mm_prefetch::<_MM_HINT_T0>(ahead);
                _mm_prefetch::<_MM_HINT_T0>(ahead.wrapping_add(4 * (MR - 1)));
                let far = a.wrapping_add(PF_A_FAR_STEPS * lda) as *const i8;
                _mm_prefetch::<_MM_HINT_T1>(far);
                _mm_prefetch::<_MM_HINT_T1>(far.wrapping_add(4 * (MR - 1)));
            }
            for i in 0..MR {
                let ai = _mm256_broadcast_ss(&*a.add(i * row_step));
                acc[i][0] = _mm256_fmadd_ps(ai, b0, acc[i][0]);
                acc[i][1] = _mm256_fmadd_ps(ai, b1, acc[i][1]);
            }
            a = a.add(depth_step);
            b = b.add(16);
        }
    }
    for i in 0..MR {
        // SAFETY: row i of the tile is writable for 16 floats (contract).
        unsafe {
            let row = c.add(i * ldc);
            let (mut r0, mut r1) = (acc[i][0], acc[i][1]);
            if accumulate {
                r0 = _mm256_add_ps(r0, _mm256_loadu_ps(row));
                r1 = _mm256_add_ps(r1, _mm256_loadu_ps(row.add(8)));
            }
            _mm256_storeu_ps(row, r0);
            _mm256_storeu_ps(row.add(8), r1);
        }
    }
}

/// How far ahead (in floats of packed B) the AVX-512 microkernel
/// prefetches: 32 depth steps, 4 KiB. Chosen by the interleaved sweep of
/// `examples/gemm_blocking.rs` at 1024³ (31 rounds: 86.3 % of the FMA peak
/// against 83.9 % without, 85.0 % at 256 floats).
#[cfg(target_arch = "x86_64")]
const PF_B: usize = 1024;

/// Rows of the AVX-512 micro-tile.
#[cfg(target_arch = "x86_64")]
pub const AVX512_MR: usize = 12;
/// Columns of the AVX-512 micro-tile (two 16-lane vectors).
#[cfg(target_arch = "x86_64")]
pub const AVX512_NR: usize = 32;

/// The AVX-512F microkernel: 12 × 32, twenty-four `zmm` accumulators.
///
/// # Safety
///
/// As [`super::dispatch::MicroKernel`], with `MR = 12`, `NR = 32`; the CPU
/// must support AVX-512F.
#[cfg(target_arch = "x86_64")]
pub unsafe fn micro_avx512(
    kc: usize,
    a: *const f32,
    b: *const f32,
    c: *mut f32,
    ldc: usize,
    accumulate: bool,
) {
    // SAFETY: forwarded contract; the dispatch table checked the features.
    unsafe { micro_avx512_impl::<AVX512_MR, PF_B, PACKED>(kc, a, AVX512_MR, b, c, ldc, accumulate) }
}

/// [`micro_avx512`] with B prefetched `PF` floats ahead (0: not at all),
/// for the blocking sweep of `examples/gemm_blocking.rs`.
///
/// # Safety
///
/// As [`micro_avx512`].
#[cfg(target_arch = "x86_64")]
pub unsafe fn micro_avx512_prefetch<const PF: usize>(
    kc: usize,
    a: *const f32,
    b: *const f32,
    c: *mut f32,
    ldc: usize,
    accumulate: bool,
) {
    // SAFETY: forwarded contract; the caller checked the features.
    unsafe { micro_avx512_impl::<AVX512_MR, PF, PACKED>(kc, a, AVX512_MR, b, c, ldc, accumulate) }
}

/// How many depth steps ahead [`micro_avx512_cols`] prefetches its A
/// values into L1, and (`PF_A_FAR_STEPS`) into L2: a column-major A's steps
/// lie a whole row of the matrix apart, so no hardware prefetcher follows
/// them. Chosen by `conv_targets`' backward-data at 512@7, batch 1, three
/// binaries alternated three times (19:58-20:05): 24 steps into L1 only
/// 48.4-56.6 % of SGEMM; 12 and 64 steps 52.9-61.1 %; 16 and 128 50.0-53.3 %.
#[cfg(target_arch = "x86_64")]
const PF_A_STEPS: usize = 12;
/// See [`PF_A_STEPS`].
#[cfg(target_arch = "x86_64")]
const PF_A_FAR_STEPS: usize = 64;

/// [`micro_avx512`] reading A unpacked from a row-major matrix: row `i` of
/// the tile at `a + i·lda`, depth step `p` at offset `p` of each row (the
/// forward convolution's weights, `c_out × k`). Same products in the same
/// order as the packed kernel, so the same bits.
///
/// # Safety
///
/// As [`super::dispatch::StridedMicroKernel`] with `MR = 12`, `NR = 32`;
/// the CPU must support AVX-512F.
#[cfg(target_arch = "x86_64")]
pub unsafe fn micro_avx512_rows(
    kc: usize,
    a: *const f32,
    lda: usize,
    b: *const f32,
    c: *mut f32,
    ldc: usize,
    accumulate: bool,
) {
    // SAFETY: forwarded contract; the dispatch table checked the features.
    unsafe { micro_avx512_impl::<AVX512_MR, PF_B, ROWS>(kc, a, lda, b, c, ldc, accumulate) }
}

/// [`micro_avx512`] reading A unpacked from a column-major matrix: depth
/// step `p` of the tile is the 12 contiguous values at `a + p·lda` (the
/// backward-data convolution's `Wᵀ`, whose rows are the weights' columns).
/// Same products in the same order as the packed kernel, so the same bits.
///
/// # Safety
///
/// As [`super::dispatch::StridedMicroKernel`] with `MR = 12`, `NR = 32`;
/// the CPU must support AVX-512F.
#[cfg(target_arch = "x86_64")]
pub unsafe fn micro_avx512_cols(
    kc: usize,
    a: *const f32,
    lda: usize,
    b: *const f32,
    c: *mut f32,
    ldc: usize,
    accumulate: bool,
) {
    // SAFETY: forwarded contract; the dispatch table checked the features.
    unsafe { micro_avx512_impl::<AVX512_MR, PF_B, COLS>(kc, a, lda, b, c, ldc, accumulate) }
}

/// The AVX-512F microkernels, A laid out as `A` says ([`PACKED`], [`ROWS`]
/// or [`COLS`]) and B prefetched `PF` floats ahead (0: not at all).
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
unsafe fn micro_avx512_impl<const MR: usize, const PF: usize, const A: u8>(
    kc: usize,
    a: *const f32,
    lda: usize,
    b: *const f32,
    c: *mut f32,
    ldc: usize,
    accumulate: bool,
) {
    use core::arch::x86_64::*;
    // Ask for the C tile now: its rows lie `ldc` apart and miss the cache
    // when C is large; the depth loop hides the latency. A prefetch never
    // faults.
    for i in 0..MR {
        let row = c.wrapping_add(i * ldc) as *const i8;
        _mm_prefetch::<_MM_HINT_T0>(row);
        _mm_prefetch::<_MM_HINT_T0>(row.wrapping_add(64));
    }
    let (row_step, depth_step) = steps::<A>(MR, lda);
    let mut acc = [[_mm512_setzero_ps(); 2]; MR];
    let mut a = a;
    let mut b = b;
    for _ in 0..kc {
        // SAFETY: p < kc and i < MR, so the reads stay inside A's tile and
        // B's packed panel (contract).
        unsafe {
            let b0 = _mm512_loadu_ps(b);
            let b1 = _mm512_loadu_ps(b.add(16));
            // B streams from L2 (the A panel stays in L1): ask for the
            // lines PF floats ahead, across the panel's end into the next
            // one's, which the caller packs right after. Never faults.
            if PF > 0 {
                let ahead = b.wrapping_add(PF) as *const i8;
                _mm_prefetch::<_MM_HINT_T0>(ahead);
                _mm_prefetch::<_MM_HINT_T0>(ahead.wrapping_add(64));
            }
            if A == COLS {
                // The 12 values of a step ahead span at most two lines.
                let ahead = a.wrapping_add(PF_A_STEPS * lda) as *const i8;
                _mm_prefetch::<_MM_HINT_T0>(ahead);
                _mm_prefetch::<_MM_HINT_T0>(ahead.wrapping_add(4 * (MR - 1)));
                let far = a.wrapping_add(PF_A_FAR_STEPS * lda) as *const i8;
                _mm_prefetch::<_MM_HINT_T1>(far);
                _mm_prefetch::<_MM_HINT_T1>(far.wrapping_add(4 * (MR - 1)));
            }
            for i in 0..MR {
                let ai = _mm512_set1_ps(*a.add(i * row_step));
                acc[i][0] = _mm512_fmadd_ps(ai, b0, acc[i][0]);
                acc[i][1] = _mm512_fmadd_ps(ai, b1, acc[i][1]);
            }
            a = a.add(depth_step);
            b = b.add(32);
        }
    }
    for i in 0..MR {
        // SAFETY: row i of the tile is writable for 32 floats (contract).
        unsafe {
            let row = c.add(i * ldc);
            let (mut r0, mut r1) = (acc[i][0], acc[i][1]);
            if accumulate {
                r0 = _mm512_add_ps(r0, _mm512_loadu_ps(row));
                r1 = _mm512_add_ps(r1, _mm512_loadu_ps(row.add(16)));
            }
            _mm512_storeu_ps(row, r0);
            _mm512_storeu_ps(row.add(16), r1);
        }
    }
}

/// The portable [`DotRowsKernel`](super::dispatch::DotRowsKernel): each row
/// by [`dot_portable`].
///
/// # Safety
///
/// As [`DotRowsKernel`](super::dispatch::DotRowsKernel).
pub unsafe fn dot_rows_portable(
    rows: usize,
    len: usize,
    w: *const f32,
    ldw: usize,
    x: *const f32,
    y: *mut f32,
) {
    // SAFETY: forwarded contract.
    unsafe { dot_rows_by(dot_portable, rows, len, w, ldw, x, y) }
}

/// `y[r] = dot(len, w + r·ldw, x)` for `r < rows`: a
/// [`DotRowsKernel`](super::dispatch::DotRowsKernel) made of a
/// [`DotKernel`](super::dispatch::DotKernel).
///
/// # Safety
///
/// As [`DotRowsKernel`](super::dispatch::DotRowsKernel), for `dot`'s CPU.
#[inline]
pub(crate) unsafe fn dot_rows_by(
    dot: super::dispatch::DotKernel,
    rows: usize,
    len: usize,
    w: *const f32,
    ldw: usize,
    x: *const f32,
    y: *mut f32,
) {
    for r in 0..rows {
        // SAFETY: row r holds len floats at r·ldw; y holds rows floats.
        unsafe { *y.add(r) = dot(len, w.add(r * ldw), x) };
    }
}

/// The portable dot product: sixteen running sums in a fixed order.
///
/// # Safety
///
/// `a` and `b` must be readable for `len` floats.
pub unsafe fn dot_portable(len: usize, a: *const f32, b: *const f32) -> f32 {
    // SAFETY: the caller guarantees both are readable for len floats.
    let (a, b) = unsafe {
        (
            core::slice::from_raw_parts(a, len),
            core::slice::from_raw_parts(b, len),
        )
    };
    let mut acc = [0.0f32; 16];
    let mut ca = a.chunks_exact(16);
    let mut cb = b.chunks_exact(16);
    for (x, y) in (&mut ca).zip(&mut cb) {
        for l in 0..16 {
            acc[l] += x[l] * y[l];
        }
    }
    let mut s = 0.0;
    for (x, y) in ca.remainder().iter().zip(cb.remainder()) {
        s += x * y;
    }
    reduce16(&acc) + s
}

/// Sums sixteen lanes pairwise, in a fixed order.
fn reduce16(acc: &[f32; 16]) -> f32 {
    let mut v = *acc;
    let mut w = 16;
    while w > 1 {
        w /= 2;
        for l in 0..w {
            v[l] += v[l + w];
        }
    }
    v[0]
}

/// The AVX2+FMA dot product: two 8-lane accumulators.
///
/// # Safety
///
/// `a` and `b` must be readable for `len` floats; the CPU must support AVX2
/// and FMA.
#[cfg(target_arch = "x86_64")]
pub unsafe fn dot_avx2(len: usize, a: *const f32, b: *const f32) -> f32 {
    // SAFETY: forwarded contract; the dispatch table checked the features.
    unsafe { dot_avx2_impl(len, a, b) }
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
unsafe fn dot_avx2_impl(len: usize, a: *const f32, b: *const f32) -> f32 {
    use core::arch::x86_64::*;
    let (mut s0, mut s1) = (_mm256_setzero_ps(), _mm256_setzero_ps());
    let mut i = 0;
    // SAFETY: every read is below len (contract).
    unsafe {
        while i + 16 <= len {
            s0 = _mm256_fmadd_ps(_mm256_loadu_ps(a.add(i)), _mm256_loadu_ps(b.add(i)), s0);
            s1 = _mm256_fmadd_ps(
                _mm256_loadu_ps(a.add(i + 8)),
                _mm256_loadu_ps(b.add(i + 8)),
                s1,
            );
            i += 16;
        }
        let mut lanes = [0.0f32; 16];
        _mm256_storeu_ps(lanes.as_mut_ptr(), s0);
        _mm256_storeu_ps(lanes.as_mut_ptr().add(8), s1);
        let mut s = 0.0;
        while i < len {
            s += *a.add(i) * *b.add(i);
            i += 1;
        }
        reduce16(&lanes) + s
    }
}

/// The AVX-512F dot product: two 16-lane accumulators and a masked tail.
///
/// # Safety
///
/// `a` and `b` must be readable for `len` floats; the CPU must support
/// AVX-512F.
#[cfg(target_arch = "x86_64")]
pub unsafe fn dot_avx512(len: usize, a: *const f32, b: *const f32) -> f32 {
    // SAFETY: forwarded contract; the dispatch table checked the features.
    unsafe { dot_avx512_impl(len, a, b) }
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
unsafe fn dot_avx512_impl(len: usize, a: *const f32, b: *const f32) -> f32 {
    use core::arch::x86_64::*;
    let (mut s0, mut s1) = (_mm512_setzero_ps(), _mm512_setzero_ps());
    let mut i = 0;
    // SAFETY: every full read is below len, and the masked tail reads only
    // the lanes below len (masked-off lanes are not accessed).
    unsafe {
        while i + 32 <= len {
            s0 = _mm512_fmadd_ps(_mm512_loadu_ps(a.add(i)), _mm512_loadu_ps(b.add(i)), s0);
            s1 = _mm512_fmadd_ps(
                _mm512_loadu_ps(a.add(i + 16)),
                _mm512_loadu_ps(b.add(i + 16)),
                s1,
            );
            i += 32;
        }
        if i + 16 <= len {
            s0 = _mm512_fmadd_ps(_mm512_loadu_ps(a.add(i)), _mm512_loadu_ps(b.add(i)), s0);
            i += 16;
        }
        if i < len {
            let mask: __mmask16 = (1u16 << (len - i)) - 1;
            let x = _mm512_maskz_loadu_ps(mask, a.add(i));
            let y = _mm512_maskz_loadu_ps(mask, b.add(i));
            s1 = _mm512_fmadd_ps(x, y, s1);
        }
        let mut lanes = [0.0f32; 16];
        _mm512_storeu_ps(lanes.as_mut_ptr(), _mm512_add_ps(s0, s1));
        reduce16(&lanes)
    }
}

/// Rows of the NEON micro-tile (two 4-lane vectors of A per depth step).
#[cfg(target_arch = "aarch64")]
pub const NEON_MR: usize = 8;
/// Columns of the NEON micro-tile (three 4-lane vectors).
#[cfg(target_arch = "aarch64")]
pub const NEON_NR: usize = 12;

/// The NEON microkernel (aarch64): 8 × 12, twenty-four `q` accumulators.
///
/// The tile is sized for the 32 vector registers of AArch64: 8 rows × 3
/// vectors = 24 accumulators, plus 3 registers for the step's B values and 2
/// for its 8 A values = 29, leaving 3 spare so nothing spills. Each step
/// issues 24 fused multiply-adds (`vfmaq_laneq_f32`, the A value taken
/// straight from a lane, so no broadcasts are needed) for 5 vector loads —
/// the best ratio that fits. 12 × 8 has the same budget; 8 × 12 is the
/// shape of BLIS's ARMv8 sgemm kernel, and 8 rows are exactly two A vectors.
/// Not tuned on hardware (see [`super::dispatch::NEON`] for the blocking).
///
/// # Safety
///
/// As [`super::dispatch::MicroKernel`], with `MR = 8`, `NR = 12`; the CPU
/// must support NEON (every AArch64 Linux CPU does; the table checks).
#[cfg(target_arch = "aarch64")]
pub unsafe fn micro_neon(
    kc: usize,
    a: *const f32,
    b: *const f32,
    c: *mut f32,
    ldc: usize,
    accumulate: bool,
) {
    // SAFETY: forwarded contract; the dispatch table checked the features.
    unsafe { micro_neon_impl(kc, a, b, c, ldc, accumulate) }
}

#[cfg(target_arch = "aarch64")]
#[target_feature(enable = "neon")]
unsafe fn micro_neon_impl(
    kc: usize,
    a: *const f32,
    b: *const f32,
    c: *mut f32,
    ldc: usize,
    accumulate: bool,
) {
    use core::arch::aarch64::*;
    let mut acc = [[vdupq_n_f32(0.0); 3]; NEON_MR];
    let mut a = a;
    let mut b = b;
    for _ in 0..kc {
        // SAFETY: p < kc, so the reads (8 floats of A, 12 of B) stay inside
        // the packed panels.
        let (a0, a1, b0, b1, b2) = unsafe {
            (
                vld1q_f32(a),
                vld1q_f32(a.add(4)),
                vld1q_f32(b),
                vld1q_f32(b.add(4)),
                vld1q_f32(b.add(8)),
            )
        };
        // Row `$i` of the tile: acc[i][j] += A[i] · B[4j .. 4j + 4], with
        // A[i] lane `$l` of `$av`.
        macro_rules! row {
            ($i:literal, $av:ident, $l:literal) => {
                acc[$i][0] = vfmaq_laneq_f32::<$l>(acc[$i][0], b0, $av);
                acc[$i][1] = vfmaq_laneq_f32::<$l>(acc[$i][1], b1, $av);
                acc[$i][2] = vfmaq_laneq_f32::<$l>(acc[$i][2], b2, $av);
            };
        }
        row!(0, a0, 0);
        row!(1, a0, 1);
        row!(2, a0, 2);
        row!(3, a0, 3);
        row!(4, a1, 0);
        row!(5, a1, 1);
        row!(6, a1, 2);
        row!(7, a1, 3);
        a = a.wrapping_add(NEON_MR);
        b = b.wrapping_add(NEON_NR);
    }
    for (i, r) in acc.iter().enumerate() {
        // SAFETY: row i of the tile is writable for 12 floats (contract).
        unsafe {
            let row = c.add(i * ldc);
            let (mut r0, mut r1, mut r2) = (r[0], r[1], r[2]);
            if accumulate {
                r0 = vaddq_f32(r0, vld1q_f32(row));
                r1 = vaddq_f32(r1, vld1q_f32(row.add(4)));
                r2 = vaddq_f32(r2, vld1q_f32(row.add(8)));
            }
            vst1q_f32(row, r0);
            vst1q_f32(row.add(4), r1);
            vst1q_f32(row.add(8), r2);
        }
    }
}

/// The NEON [`DotRowsKernel`](super::dispatch::DotRowsKernel): each row by
/// [`dot_neon`].
///
/// # Safety
///
/// As [`DotRowsKernel`](super::dispatch::DotRowsKernel); the CPU must
/// support NEON.
#[cfg(target_arch = "aarch64")]
pub unsafe fn dot_rows_neon(
    rows: usize,
    len: usize,
    w: *const f32,
    ldw: usize,
    x: *const f32,
    y: *mut f32,
) {
    // SAFETY: forwarded contract.
    unsafe { dot_rows_by(dot_neon, rows, len, w, ldw, x, y) }
}

/// The NEON dot product (aarch64): four 4-lane FMA accumulators over blocks
/// of 16, a scalar tail, then the same fixed pairwise reduction of sixteen
/// lanes as the other variants.
///
/// # Safety
///
/// `a` and `b` must be readable for `len` floats; the CPU must support
/// NEON.
#[cfg(target_arch = "aarch64")]
pub unsafe fn dot_neon(len: usize, a: *const f32, b: *const f32) -> f32 {
    // SAFETY: forwarded contract; the dispatch table checked the features.
    unsafe { dot_neon_impl(len, a, b) }
}

#[cfg(target_arch = "aarch64")]
#[target_feature(enable = "neon")]
unsafe fn dot_neon_impl(len: usize, a: *const f32, b: *const f32) -> f32 {
    use core::arch::aarch64::*;
    let mut s = [vdupq_n_f32(0.0); 4];
    let mut i = 0;
    // SAFETY: every read is below len (contract).
    unsafe {
        while i + 16 <= len {
            for (q, sq) in s.iter_mut().enumerate() {
                let at = i + 4 * q;
                *sq = vfmaq_f32(*sq, vld1q_f32(a.add(at)), vld1q_f32(b.add(at)));
            }
            i += 16;
        }
        let mut lanes = [0.0f32; 16];
        for (q, sq) in s.iter().enumerate() {
            vst1q_f32(lanes.as_mut_ptr().add(4 * q), *sq);
        }
        let mut t = 0.0;
        while i < len {
            t += *a.add(i) * *b.add(i);
            i += 1;
        }
        reduce16(&lanes) + t
    }
}

#[cfg(all(test, feature = "std"))]
mod tests {
    use super::super::dispatch::{self, Kernels};
    use super::super::gemm::{Gemm, gemm_scratch_len_with, sgemm_serial_with};
    use std::vec::Vec;

    /// Deterministic values in [-1, 1).
    fn values(len: usize, seed: u64) -> Vec<f32> {
        let mut s = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
        (0..len)
            .map(|_| {
                s ^= s << 13;
                s ^= s >> 7;
                s ^= s << 17;
                ((s >> 40) as f32 / (1u64 << 24) as f32) * 2.0 - 1.0
            })
            .collect()
    }

    /// `|got - expect| ≤ (terms + 2)·ε·(1 + Σ|term|)`: the f32 rounding bound
    /// of a sum of `terms` products, whatever the summation order.
    fn assert_close(got: f32, expect: f64, bound: f64, terms: usize, what: &str) {
        let tol = (terms as f64 + 2.0) * f32::EPSILON as f64 * (1.0 + bound);
        assert!(
            (got as f64 - expect).abs() <= tol,
            "{what}: {got}, f64 reference {expect} (tol {tol})"
        );
    }

    /// One call of the variant's microkernel on a full tile (rows `ldc =
    /// NR + 3` apart) against the f64 sum; the padding between rows is never
    /// written.
    fn check_micro(kern: &Kernels, kc: usize, accumulate: bool) {
        let (mr, nr) = (kern.mr, kern.nr);
        let a = values(kc * mr, kc as u64);
        let b = values(kc * nr, kc as u64 + 1);
        let ldc = nr + 3;
        let c0 = values(mr * ldc, kc as u64 + 2);
        let mut c = c0.clone();
        // SAFETY: a holds kc·mr floats, b kc·nr, c mr rows of ldc ≥ nr; the
        // variant came from `variants()`, so this CPU runs it.
        unsafe { (kern.micro)(kc, a.as_ptr(), b.as_ptr(), c.as_mut_ptr(), ldc, accumulate) };
        for i in 0..mr {
            for j in 0..nr {
                let at = i * ldc + j;
                let mut e = if accumulate { c0[at] as f64 } else { 0.0 };
                let mut bound = e.abs();
                for p in 0..kc {
                    let t = a[p * mr + i] as f64 * b[p * nr + j] as f64;
                    e += t;
                    bound += t.abs();
                }
                let what = std::format!("{} kc {kc} acc {accumulate} C[{i},{j}]", kern.name);
                assert_close(c[at], e, bound, kc, &what);
            }
            for j in nr..ldc {
                let at = i * ldc + j;
                assert_eq!(
                    c[at].to_bits(),
                    c0[at].to_bits(),
                    "{} wrote padding",
                    kern.name
                );
            }
        }
    }

    #[test]
    fn every_microkernel_matches_the_f64_sum() {
        for kern in dispatch::variants() {
            for kc in [1, 2, 3, 7, 16, 33, 255, 256] {
                check_micro(kern, kc, false);
                check_micro(kern, kc, true);
            }
        }
    }

    #[test]
    fn every_dot_matches_the_f64_sum() {
        for kern in dispatch::variants() {
            for len in [0, 1, 3, 4, 15, 16, 17, 31, 32, 33, 100, 257] {
                let a = values(len, len as u64 + 10);
                let b = values(len, len as u64 + 11);
                // SAFETY: both hold len floats; this CPU runs the variant.
                let got = unsafe { (kern.dot)(len, a.as_ptr(), b.as_ptr()) };
                let terms = a.iter().zip(&b).map(|(x, y)| *x as f64 * *y as f64);
                let e: f64 = terms.clone().sum();
                let bound: f64 = terms.map(f64::abs).sum();
                assert_close(
                    got,
                    e,
                    bound,
                    len,
                    &std::format!("{} dot len {len}", kern.name),
                );
            }
        }
    }

    /// Full and edge tiles (rows and columns not multiples of the tile, a
    /// depth over KC so later slices accumulate, β = 0, 1 and ½) through
    /// `sgemm_serial_with`, against the f64 product; C's row padding is
    /// never written.
    #[test]
    fn every_variant_handles_edge_tiles() {
        for kern in dispatch::variants() {
            let (mr, nr) = (kern.mr, kern.nr);
            for (m, n, k) in [
                (mr, nr, 5),
                (2 * mr + 3, 2 * nr + 5, 7),
                (mr - 1, nr + 1, 1),
                (mr + 1, nr - 1, 2),
                (3 * mr + 1, 3 * nr + 7, kern.kc + 3),
                (2, 2 * nr + 1, 2 * kern.kc + 1),
            ] {
                for beta in [0.0f32, 1.0, 0.5] {
                    let mut g = Gemm::new(m, n, k).scaled(1.0, beta);
                    g.ldc += 2;
                    let a = values(g.a_len(), (m * n + k) as u64);
                    let b = values(g.b_len(), (m + n * k) as u64);
                    let c0 = values(g.c_len(), (m + n + k) as u64);
                    let mut c = c0.clone();
                    let mut scratch = std::vec![f32::NAN; gemm_scratch_len_with(kern, &g)];
                    sgemm_serial_with(kern, &g, &a, &b, &mut c, &[], &mut scratch);
                    for i in 0..m {
                        for j in 0..n {
                            let at = i * g.ldc + j;
                            let mut e = beta as f64 * c0[at] as f64;
                            let mut bound = e.abs();
                            for p in 0..k {
                                let t = a[i * k + p] as f64 * b[p * n + j] as f64;
                                e += t;
                                bound += t.abs();
                            }
                            let what =
                                std::format!("{} {m}×{n}×{k} β {beta} C[{i},{j}]", kern.name);
                            assert_close(c[at], e, bound, k + 1, &what);
                        }
                        for j in n..g.ldc.min(g.c_len() - i * g.ldc) {
                            let at = i * g.ldc + j;
                            assert_eq!(c[at].to_bits(), c0[at].to_bits(), "{} padding", kern.name);
                        }
                    }
                }
            }
        }
    }

    /// On aarch64 the NEON variant is detected and comes first, so the
    /// tests above (and every suite iterating `variants()`) exercise it.
    #[cfg(target_arch = "aarch64")]
    #[test]
    fn neon_is_the_best_variant_on_aarch64() {
        let names: Vec<_> = dispatch::variants().iter().map(|k| k.name).collect();
        assert_eq!(names, ["neon", "portable"]);
    }

    /// The NEON microkernel reduces each element in the plain order
    /// `p = 0, 1, …` with one fused multiply-add per step, then adds the old
    /// C: bit for bit the scalar `mul_add` chain.
    #[cfg(target_arch = "aarch64")]
    #[test]
    fn neon_microkernel_reduces_in_p_order() {
        const MR: usize = super::NEON_MR;
        const NR: usize = super::NEON_NR;
        for kc in [1, 3, 7, 64, 257] {
            for accumulate in [false, true] {
                let a = values(kc * MR, 100 + kc as u64);
                let b = values(kc * NR, 200 + kc as u64);
                let c0 = values(MR * NR, 300 + kc as u64);
                let mut c = c0.clone();
                // SAFETY: a holds kc·8 floats, b kc·12, c 8 rows of 12; every
                // AArch64 Linux CPU has NEON.
                unsafe {
                    super::micro_neon(kc, a.as_ptr(), b.as_ptr(), c.as_mut_ptr(), NR, accumulate)
                };
                for i in 0..MR {
                    for j in 0..NR {
                        let mut acc = 0.0f32;
                        for p in 0..kc {
                            acc = a[p * MR + i].mul_add(b[p * NR + j], acc);
                        }
                        let expect = if accumulate {
                            acc + c0[i * NR + j]
                        } else {
                            acc
                        };
                        assert_eq!(
                            c[i * NR + j].to_bits(),
                            expect.to_bits(),
                            "kc {kc} acc {accumulate} C[{i},{j}]"
                        );
                    }
                }
            }
        }
    }
}
