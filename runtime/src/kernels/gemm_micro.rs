//! The register-blocked GEMM microkernels, one per architecture variant.
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
    unsafe { micro_avx2_impl::<AVX2_MR>(kc, a, b, c, ldc, accumulate) }
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
unsafe fn micro_avx2_impl<const MR: usize>(
    kc: usize,
    a: *const f32,
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
    let mut acc = [[_mm256_setzero_ps(); 2]; MR];
    let mut a = a;
    let mut b = b;
    for _ in 0..kc {
        // SAFETY: p < kc, so the reads stay inside the packed panels.
        unsafe {
            let b0 = _mm256_loadu_ps(b);
            let b1 = _mm256_loadu_ps(b.add(8));
            for i in 0..MR {
                let ai = _mm256_broadcast_ss(&*a.add(i));
                acc[i][0] = _mm256_fmadd_ps(ai, b0, acc[i][0]);
                acc[i][1] = _mm256_fmadd_ps(ai, b1, acc[i][1]);
            }
            a = a.add(MR);
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
    unsafe { micro_avx512_impl::<AVX512_MR, PF_B>(kc, a, b, c, ldc, accumulate) }
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
    unsafe { micro_avx512_impl::<AVX512_MR, PF>(kc, a, b, c, ldc, accumulate) }
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
unsafe fn micro_avx512_impl<const MR: usize, const PF: usize>(
    kc: usize,
    a: *const f32,
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
    let mut acc = [[_mm512_setzero_ps(); 2]; MR];
    let mut a = a;
    let mut b = b;
    for _ in 0..kc {
        // SAFETY: p < kc, so the reads stay inside the packed panels.
        unsafe {
            let b0 = _mm512_loadu_ps(b);
            let b1 = _mm512_loadu_ps(b.add(16));
            // B streams from L2 (the A panel stays in L1): ask for the
            // lines PF_B floats ahead, across the panel's end into the next
            // one's, which the caller packs right after. Never faults.
            if PF > 0 {
                let ahead = b.wrapping_add(PF) as *const i8;
                _mm_prefetch::<_MM_HINT_T0>(ahead);
                _mm_prefetch::<_MM_HINT_T0>(ahead.wrapping_add(64));
            }
            for i in 0..MR {
                let ai = _mm512_set1_ps(*a.add(i));
                acc[i][0] = _mm512_fmadd_ps(ai, b0, acc[i][0]);
                acc[i][1] = _mm512_fmadd_ps(ai, b1, acc[i][1]);
            }
            a = a.add(MR);
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
    for r in 0..rows {
        // SAFETY: row r holds len floats at r·ldw; y holds rows floats.
        unsafe { *y.add(r) = dot_portable(len, w.add(r * ldw), x) };
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
