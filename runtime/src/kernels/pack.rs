//! The transposing panel packer of GEMM: `w` rows of a strided matrix,
//! each read along its length, written as `len` steps of `w` values
//! (`out[p·w + i] = s · src[i·ld + p]`).
//!
//! This is how GEMM packs a row-major A into its `MR`-tall panels and a
//! transposed B into its `NR`-wide ones. Element by element (the portable
//! packer) a 1024 × 1024 A took 9.6 % of a 1024³ product's time at the FMA
//! peak, by 16 × 16 register transposes (AVX-512) 4.2 %
//! (`cargo run --release -p kiln-runtime --example gemm_blocking`, with
//! `KILN_KERNELS=avx2` for the former, on an earlier session's host). On
//! a Zen 4 host the AVX2 variant's packer, 8 × 8 register transposes, packs
//! it in 0.27–0.34 ms against the portable packer's 0.75–0.80 ms (the same
//! command, the two binaries alternated three times, 00:01 UTC on
//! 2026-12-02); the NEON variant transposes 4 × 4 blocks.

/// Packs `w` rows of `src` (row `i` starts at `src + i·ld`, `len` values
/// each) into `out` as `len` steps of `w` values, each scaled by `s`.
///
/// # Safety
///
/// `src` must be readable at `i·ld + p` for `i < w`, `p < len`; `out` must
/// be writable for `len·w` floats; the CPU must support the variant.
pub type PackTransposeKernel =
    unsafe fn(w: usize, len: usize, src: *const f32, ld: usize, s: f32, out: *mut f32);

/// The portable packer: step-major, so that the writes are contiguous and
/// each row is read in order.
///
/// # Safety
///
/// As [`PackTransposeKernel`].
pub unsafe fn pack_transpose_portable(
    w: usize,
    len: usize,
    src: *const f32,
    ld: usize,
    s: f32,
    out: *mut f32,
) {
    for p in 0..len {
        for i in 0..w {
            // SAFETY: i < w and p < len, inside both buffers (contract).
            unsafe { *out.add(p * w + i) = s * *src.add(i * ld + p) };
        }
    }
}

/// The AVX-512F packer: blocks of 16 rows × 16 steps, transposed in
/// registers (unpack, then two lane shuffles), stored as masked row pieces.
///
/// # Safety
///
/// As [`PackTransposeKernel`]; the CPU must support AVX-512F.
#[cfg(target_arch = "x86_64")]
pub unsafe fn pack_transpose_avx512(
    w: usize,
    len: usize,
    src: *const f32,
    ld: usize,
    s: f32,
    out: *mut f32,
) {
    // SAFETY: forwarded contract; the dispatch table checked the features.
    unsafe { pack_transpose_avx512_impl(w, len, src, ld, s, out) }
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
unsafe fn pack_transpose_avx512_impl(
    w: usize,
    len: usize,
    src: *const f32,
    ld: usize,
    s: f32,
    out: *mut f32,
) {
    use core::arch::x86_64::*;
    let scale = _mm512_set1_ps(s);
    let mut i0 = 0;
    while i0 < w {
        let rows = (w - i0).min(16);
        let row_mask: __mmask16 = if rows == 16 {
            0xffff
        } else {
            (1u16 << rows) - 1
        };
        let mut p0 = 0;
        while p0 < len {
            let steps = (len - p0).min(16);
            let step_mask: __mmask16 = if steps == 16 {
                0xffff
            } else {
                (1u16 << steps) - 1
            };
            let mut r = [_mm512_setzero_ps(); 16];
            for (i, v) in r.iter_mut().enumerate().take(rows) {
                // SAFETY: row i0 + i < w, steps p0 .. p0 + steps < len: the
                // masked load reads only those (contract).
                let x = unsafe { _mm512_maskz_loadu_ps(step_mask, src.add((i0 + i) * ld + p0)) };
                *v = _mm512_mul_ps(x, scale);
            }
            let t = transpose16(r);
            for (p, v) in t.iter().enumerate().take(steps) {
                // SAFETY: step p0 + p < len, lanes i0 .. i0 + rows ≤ w.
                unsafe { _mm512_mask_storeu_ps(out.add((p0 + p) * w + i0), row_mask, *v) };
            }
            p0 += 16;
        }
        i0 += 16;
    }
}

/// The transpose of a 16 × 16 block held as 16 row vectors.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
pub(crate) fn transpose16(r: [core::arch::x86_64::__m512; 16]) -> [core::arch::x86_64::__m512; 16] {
    use core::arch::x86_64::*;
    let mut t = [_mm512_setzero_ps(); 16];
    // Pairs of rows interleaved: t[2k] = (r[2k], r[2k+1]) low halves of
    // each 128-bit lane, t[2k+1] the high halves.
    for k in 0..8 {
        t[2 * k] = _mm512_unpacklo_ps(r[2 * k], r[2 * k + 1]);
        t[2 * k + 1] = _mm512_unpackhi_ps(r[2 * k], r[2 * k + 1]);
    }
    // Quads of rows: u[4q + c] holds column c (mod 4) of rows 4q .. 4q+4 in
    // every 128-bit lane.
    let mut u = [_mm512_setzero_ps(); 16];
    for q in 0..4 {
        let (a, b, c, d) = (t[4 * q], t[4 * q + 1], t[4 * q + 2], t[4 * q + 3]);
        let (a, b, c, d) = (
            _mm512_castps_pd(a),
            _mm512_castps_pd(b),
            _mm512_castps_pd(c),
            _mm512_castps_pd(d),
        );
        u[4 * q] = _mm512_castpd_ps(_mm512_unpacklo_pd(a, c));
        u[4 * q + 1] = _mm512_castpd_ps(_mm512_unpackhi_pd(a, c));
        u[4 * q + 2] = _mm512_castpd_ps(_mm512_unpacklo_pd(b, d));
        u[4 * q + 3] = _mm512_castpd_ps(_mm512_unpackhi_pd(b, d));
    }
    // Lanes 0 and 2 (0x88) or 1 and 3 (0xdd) of two quads.
    let mut v = [_mm512_setzero_ps(); 16];
    for h in 0..2 {
        for c in 0..4 {
            let (x, y) = (u[8 * h + c], u[8 * h + 4 + c]);
            v[8 * h + c] = _mm512_shuffle_f32x4::<0x88>(x, y);
            v[8 * h + 4 + c] = _mm512_shuffle_f32x4::<0xdd>(x, y);
        }
    }
    let mut out = [_mm512_setzero_ps(); 16];
    for c in 0..8 {
        out[c] = _mm512_shuffle_f32x4::<0x88>(v[c], v[8 + c]);
        out[8 + c] = _mm512_shuffle_f32x4::<0xdd>(v[c], v[8 + c]);
    }
    out
}

/// The AVX2 packer: blocks of 8 rows × 8 steps, scaled and transposed in
/// registers (unpack, shuffle, then a 128-bit lane permute), stored as row
/// pieces; partial blocks load and store under masks.
///
/// # Safety
///
/// As [`PackTransposeKernel`]; the CPU must support AVX2 and FMA.
#[cfg(target_arch = "x86_64")]
pub unsafe fn pack_transpose_avx2(
    w: usize,
    len: usize,
    src: *const f32,
    ld: usize,
    s: f32,
    out: *mut f32,
) {
    // SAFETY: forwarded contract; the dispatch table checked the features.
    unsafe { pack_transpose_avx2_impl(w, len, src, ld, s, out) }
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
unsafe fn pack_transpose_avx2_impl(
    w: usize,
    len: usize,
    src: *const f32,
    ld: usize,
    s: f32,
    out: *mut f32,
) {
    use core::arch::x86_64::*;
    let scale = _mm256_set1_ps(s);
    let lanes = _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7);
    let mask = |n: usize| _mm256_cmpgt_epi32(_mm256_set1_epi32(n as i32), lanes);
    let mut i0 = 0;
    while i0 < w {
        let rows = (w - i0).min(8);
        let row_mask = mask(rows);
        let mut p0 = 0;
        while p0 < len {
            let steps = (len - p0).min(8);
            let step_mask = mask(steps);
            let mut r = [_mm256_setzero_ps(); 8];
            for (i, v) in r.iter_mut().enumerate().take(rows) {
                // SAFETY: row i0 + i < w, steps p0 .. p0 + steps < len: the
                // (masked) load reads only those (contract).
                let x = unsafe {
                    let at = src.add((i0 + i) * ld + p0);
                    if steps == 8 {
                        _mm256_loadu_ps(at)
                    } else {
                        _mm256_maskload_ps(at, step_mask)
                    }
                };
                *v = _mm256_mul_ps(x, scale);
            }
            let t = transpose8(r);
            for (p, v) in t.iter().enumerate().take(steps) {
                let at = (p0 + p) * w + i0;
                // With one group of rows (w ≤ 8), a whole-vector store's
                // lanes past w fall on the next steps, which are stored
                // after it, so only a store that would run past the end
                // needs the mask. `vmaskmovps` stores are slow: with every
                // store of AVX2's 6-wide panels masked, packing a 1024 ×
                // 1024 A took 0.83–1.24 ms against 0.27–0.57 ms
                // (`gemm_blocking`, `KILN_KERNELS=avx2`, alternated four
                // times, 00:41 UTC on 2026-12-02, Zen 4).
                // SAFETY: step p0 + p < len, lanes i0 .. i0 + rows ≤ w; an
                // unmasked store ends inside the len·w floats.
                unsafe {
                    if rows == 8 || (w <= 8 && at + 8 <= len * w) {
                        _mm256_storeu_ps(out.add(at), *v);
                    } else {
                        _mm256_maskstore_ps(out.add(at), row_mask, *v);
                    }
                }
            }
            p0 += 8;
        }
        i0 += 8;
    }
}

/// The transpose of an 8 × 8 block held as 8 row vectors.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
fn transpose8(r: [core::arch::x86_64::__m256; 8]) -> [core::arch::x86_64::__m256; 8] {
    use core::arch::x86_64::*;
    // Pairs of rows interleaved within each 128-bit lane.
    let t = [
        _mm256_unpacklo_ps(r[0], r[1]),
        _mm256_unpackhi_ps(r[0], r[1]),
        _mm256_unpacklo_ps(r[2], r[3]),
        _mm256_unpackhi_ps(r[2], r[3]),
        _mm256_unpacklo_ps(r[4], r[5]),
        _mm256_unpackhi_ps(r[4], r[5]),
        _mm256_unpacklo_ps(r[6], r[7]),
        _mm256_unpackhi_ps(r[6], r[7]),
    ];
    // u[k] (k < 4) holds steps k and k + 4 of rows 0 .. 4; u[4 + k] of
    // rows 4 .. 8.
    let mut u = [_mm256_setzero_ps(); 8];
    for h in 0..2 {
        let (a, b, c, d) = (t[4 * h], t[4 * h + 1], t[4 * h + 2], t[4 * h + 3]);
        u[4 * h] = _mm256_shuffle_ps::<0x44>(a, c);
        u[4 * h + 1] = _mm256_shuffle_ps::<0xee>(a, c);
        u[4 * h + 2] = _mm256_shuffle_ps::<0x44>(b, d);
        u[4 * h + 3] = _mm256_shuffle_ps::<0xee>(b, d);
    }
    let mut o = [_mm256_setzero_ps(); 8];
    for k in 0..4 {
        o[k] = _mm256_permute2f128_ps::<0x20>(u[k], u[4 + k]);
        o[4 + k] = _mm256_permute2f128_ps::<0x31>(u[k], u[4 + k]);
    }
    o
}

/// The NEON packer (aarch64): blocks of 4 rows × 4 steps, scaled and
/// transposed in registers (two rounds of `trn1`/`trn2`), stored as whole
/// 4-value row pieces; the rows and steps left over past the last full
/// block are packed element by element as in [`pack_transpose_portable`].
///
/// # Safety
///
/// As [`PackTransposeKernel`]; the CPU must support NEON.
#[cfg(target_arch = "aarch64")]
pub unsafe fn pack_transpose_neon(
    w: usize,
    len: usize,
    src: *const f32,
    ld: usize,
    s: f32,
    out: *mut f32,
) {
    // SAFETY: forwarded contract; the dispatch table checked the features.
    unsafe { pack_transpose_neon_impl(w, len, src, ld, s, out) }
}

#[cfg(target_arch = "aarch64")]
#[target_feature(enable = "neon")]
unsafe fn pack_transpose_neon_impl(
    w: usize,
    len: usize,
    src: *const f32,
    ld: usize,
    s: f32,
    out: *mut f32,
) {
    use core::arch::aarch64::*;
    let (w4, len4) = (w / 4 * 4, len / 4 * 4);
    let scale = vdupq_n_f32(s);
    for i0 in (0..w4).step_by(4) {
        for p0 in (0..len4).step_by(4) {
            // SAFETY: rows i0 .. i0 + 4 ≤ w, steps p0 .. p0 + 4 ≤ len: the
            // loads stay inside src and the stores inside out (contract).
            unsafe {
                let r0 = vmulq_f32(vld1q_f32(src.add(i0 * ld + p0)), scale);
                let r1 = vmulq_f32(vld1q_f32(src.add((i0 + 1) * ld + p0)), scale);
                let r2 = vmulq_f32(vld1q_f32(src.add((i0 + 2) * ld + p0)), scale);
                let r3 = vmulq_f32(vld1q_f32(src.add((i0 + 3) * ld + p0)), scale);
                // Pairs: t0 = (r0[0], r1[0], r0[2], r1[2]), t1 = the odd
                // steps of r0 and r1; t2, t3 likewise for r2, r3.
                let t0 = vreinterpretq_f64_f32(vtrn1q_f32(r0, r1));
                let t1 = vreinterpretq_f64_f32(vtrn2q_f32(r0, r1));
                let t2 = vreinterpretq_f64_f32(vtrn1q_f32(r2, r3));
                let t3 = vreinterpretq_f64_f32(vtrn2q_f32(r2, r3));
                // Halves: step q of the four rows.
                let c0 = vreinterpretq_f32_f64(vtrn1q_f64(t0, t2));
                let c1 = vreinterpretq_f32_f64(vtrn1q_f64(t1, t3));
                let c2 = vreinterpretq_f32_f64(vtrn2q_f64(t0, t2));
                let c3 = vreinterpretq_f32_f64(vtrn2q_f64(t1, t3));
                vst1q_f32(out.add(p0 * w + i0), c0);
                vst1q_f32(out.add((p0 + 1) * w + i0), c1);
                vst1q_f32(out.add((p0 + 2) * w + i0), c2);
                vst1q_f32(out.add((p0 + 3) * w + i0), c3);
            }
        }
    }
    // The steps past the last full block, every row; then the rows past the
    // last full block, the remaining steps.
    for p in len4..len {
        for i in 0..w {
            // SAFETY: i < w and p < len, inside both buffers (contract).
            unsafe { *out.add(p * w + i) = s * *src.add(i * ld + p) };
        }
    }
    for p in 0..len4 {
        for i in w4..w {
            // SAFETY: i < w and p < len, inside both buffers (contract).
            unsafe { *out.add(p * w + i) = s * *src.add(i * ld + p) };
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(kernel: PackTransposeKernel, w: usize, len: usize, ld: usize) {
        let src: std::vec::Vec<f32> = (0..w * ld).map(|i| i as f32 * 0.5 - 3.0).collect();
        let mut out = std::vec![f32::NAN; w * len + 7];
        // SAFETY: src holds w rows of ld ≥ len; out holds w·len.
        unsafe { kernel(w, len, src.as_ptr(), ld, 2.0, out.as_mut_ptr()) };
        for p in 0..len {
            for i in 0..w {
                assert_eq!(
                    out[p * w + i],
                    2.0 * src[i * ld + p],
                    "w {w} len {len} ({i}, {p})"
                );
            }
        }
        assert!(
            out[w * len..].iter().all(|v| v.is_nan()),
            "wrote past the end"
        );
    }

    #[test]
    fn every_packer_transposes_every_shape() {
        let mut kernels: std::vec::Vec<PackTransposeKernel> = std::vec![pack_transpose_portable];
        #[cfg(target_arch = "x86_64")]
        if std::is_x86_feature_detected!("avx512f") {
            kernels.push(pack_transpose_avx512);
        }
        #[cfg(target_arch = "x86_64")]
        if std::is_x86_feature_detected!("avx2") && std::is_x86_feature_detected!("fma") {
            kernels.push(pack_transpose_avx2);
        }
        #[cfg(target_arch = "aarch64")]
        if std::arch::is_aarch64_feature_detected!("neon") {
            kernels.push(pack_transpose_neon);
        }
        for kernel in kernels {
            for w in [1, 3, 4, 6, 7, 8, 9, 12, 16, 17, 32, 33] {
                for len in [1, 5, 15, 16, 17, 40, 256] {
                    check(kernel, w, len, len);
                    check(kernel, w, len, len + 9);
                }
            }
        }
    }
}
