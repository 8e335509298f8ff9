//! The kernel table: the per-architecture code paths, chosen once after
//! CPU-feature detection.
//!
//! A [`Kernels`] value names one variant (AVX-512 or AVX2+FMA on x86-64,
//! NEON on aarch64, or portable) and holds its function pointers.
//! [`kernels`] returns the best variant for this machine; with `std` it is
//! detected at run time once (a `OnceLock`) and the environment variable
//! `KILN_KERNELS=portable` (or `avx2`) forces a lesser one, so that tests and
//! benchmarks can run every path. Without `std` the
//! choice is made at compile time from the enabled target features, so a
//! `no_std` build uses exactly what it was compiled for. Call sites never use
//! `cfg`; they ask the table.
//!
//! [`variants`] lists every variant this machine can run, best first; the
//! property tests iterate over it.

#[cfg(target_arch = "x86_64")]
use super::conv_direct;
use super::conv_direct::{DirectBackwardWeightKernel, DirectKernel};
#[cfg(target_arch = "x86_64")]
use super::conv_direct_channels;
use super::conv_pool;
use super::gemm_micro;
use super::pack::{self, PackTransposeKernel};
use super::pool;
use super::winograd::{self, WinogradKernels};

/// A GEMM microkernel: computes the `MR × NR` tile `C (+)= Ã·B̃` from a
/// packed A panel (`kc` steps of `MR` values) and a packed B panel (`kc` steps
/// of `NR` values), writing rows `ldc` floats apart. With `accumulate` the
/// tile is added to what `c` holds; otherwise it overwrites it.
///
/// # Safety
///
/// `a` must be readable for `kc · MR` floats, `b` for `kc · NR` floats, and
/// `c` writable for `MR` rows of `NR` floats spaced `ldc` apart. The CPU must
/// support the instructions of the variant that owns the pointer (the table
/// guarantees this).
pub type MicroKernel =
    unsafe fn(kc: usize, a: *const f32, b: *const f32, c: *mut f32, ldc: usize, accumulate: bool);

/// A GEMM microkernel that reads A as stored rather than packed: element
/// `(i, p)` of the `MR × kc` tile at `a + i·lda + p` (a row-major A, the
/// `rows` kernel) or `a + p·lda + i` (a column-major A, the `cols` kernel);
/// B packed and C as for [`MicroKernel`]. The products and their order are
/// the packed kernel's, so are the bits. It saves packing A where a packed
/// panel would serve only a tile or two of columns.
///
/// # Safety
///
/// `a` must be readable at every `(i, p)` with `i < MR`, `p < kc`; `b`, `c`
/// and the CPU as for [`MicroKernel`].
pub type StridedMicroKernel = unsafe fn(
    kc: usize,
    a: *const f32,
    lda: usize,
    b: *const f32,
    c: *mut f32,
    ldc: usize,
    accumulate: bool,
);

/// The two [`StridedMicroKernel`]s of a variant.
#[derive(Debug, Clone, Copy)]
pub struct StridedMicro {
    /// For a row-major A (`op(A) = A`).
    pub rows: StridedMicroKernel,
    /// For a column-major A (`op(A) = Aᵀ` of a row-major matrix).
    pub cols: StridedMicroKernel,
}

/// A dot product of two contiguous vectors of `len` floats, summed in a
/// fixed order (the matrix-vector path of GEMM).
///
/// # Safety
///
/// `a` and `b` must be readable for `len` floats, and the CPU must support
/// the variant's instructions (the table guarantees this).
pub type DotKernel = unsafe fn(len: usize, a: *const f32, b: *const f32) -> f32;

/// `rows` dot products with one vector: `y[r] = Σ_k w[r·ldw + k] · x[k]`
/// for `r < rows`, `k < len`, each summed in an order that depends only on
/// `len` (GEMM's matrix-vector path and LeNet's C5).
///
/// # Safety
///
/// `w` must be readable at `r·ldw + k`, `x` for `len` floats, `y` writable
/// for `rows` floats; the CPU must support the variant's instructions.
pub type DotRowsKernel =
    unsafe fn(rows: usize, len: usize, w: *const f32, ldw: usize, x: *const f32, y: *mut f32);

/// The largest `MR · NR` of any variant; edge tiles use a stack buffer of
/// this size.
pub const MAX_TILE: usize = 16 * 32;

/// The widest `NR` of any variant (the packers' per-panel tables).
pub const MAX_NR: usize = 32;

// Every variant's tile fits the edge-tile buffer, and the NEON blocking's MC
// and NC (which are not multiples of 16) are multiples of its MR and NR.
const _: () = {
    assert!(gemm_micro::PORTABLE_MR * gemm_micro::PORTABLE_NR <= MAX_TILE);
    assert!(gemm_micro::PORTABLE_NR <= MAX_NR);
    #[cfg(target_arch = "x86_64")]
    assert!(gemm_micro::AVX2_NR <= MAX_NR && gemm_micro::AVX512_NR <= MAX_NR);
    #[cfg(target_arch = "aarch64")]
    assert!(gemm_micro::NEON_NR <= MAX_NR);
    #[cfg(target_arch = "x86_64")]
    assert!(gemm_micro::AVX2_MR * gemm_micro::AVX2_NR <= MAX_TILE);
    #[cfg(target_arch = "x86_64")]
    assert!(gemm_micro::AVX512_MR * gemm_micro::AVX512_NR <= MAX_TILE);
    #[cfg(target_arch = "aarch64")]
    assert!(gemm_micro::NEON_MR * gemm_micro::NEON_NR <= MAX_TILE);
    #[cfg(target_arch = "aarch64")]
    assert!(
        NEON_MC.is_multiple_of(gemm_micro::NEON_MR) && NEON_NC.is_multiple_of(gemm_micro::NEON_NR)
    );
};

/// One architecture's set of kernels.
#[derive(Debug, Clone, Copy)]
pub struct Kernels {
    /// The variant's name, as `KILN_KERNELS` spells it.
    pub name: &'static str,
    /// Rows of the GEMM micro-tile.
    pub mr: usize,
    /// Columns of the GEMM micro-tile.
    pub nr: usize,
    /// Depth of a packed block (the KC of the cache blocking).
    pub kc: usize,
    /// Rows of a packed A block (the MC of the cache blocking); a multiple
    /// of `mr`.
    pub mc: usize,
    /// Columns of a packed B block (the NC of the cache blocking); a multiple
    /// of `nr`.
    pub nc: usize,
    /// The GEMM microkernel.
    pub micro: MicroKernel,
    /// The microkernels that read A unpacked, where the variant has them
    /// (else A is always packed).
    pub micro_strided: Option<StridedMicro>,
    /// The dot product of GEMM's matrix-vector path.
    pub dot: DotKernel,
    /// Several dot products with one vector at once.
    pub dot_rows: DotRowsKernel,
    /// One plane of 2×2 stride-2 max pooling.
    pub max_pool_2x2: pool::MaxPool2x2Kernel,
    /// GEMM's transposing panel packer (row-major A, transposed B).
    pub pack_transpose: PackTransposeKernel,
    /// The direct convolution kernel for few output channels, where the
    /// variant has one (else convolutions use im2col + GEMM).
    pub conv_direct: Option<DirectKernel>,
    /// The channel-lane direct kernel (sixteen output channels per vector,
    /// tap-major weights), where the variant has one.
    pub conv_direct_channels: Option<DirectKernel>,
    /// The position-lane direct kernel with 2×2 max pooling in registers,
    /// where the variant has one.
    pub conv_pool_positions: Option<conv_pool::PoolDirectKernel>,
    /// The channel-lane direct kernel with 2×2 max pooling in registers
    /// (its output is the pooled plane), where the variant has one.
    pub conv_pool_channels: Option<DirectKernel>,
    /// The Winograd input and output transforms.
    pub winograd: WinogradKernels,
    /// The direct convolution's weight-gradient kernel, where the variant
    /// has one.
    pub conv_direct_backward_weight: Option<DirectBackwardWeightKernel>,
}

/// The portable variant: plain Rust that the compiler vectorizes for the
/// baseline of the target. Always available.
pub static PORTABLE: Kernels = Kernels {
    name: "portable",
    mr: gemm_micro::PORTABLE_MR,
    nr: gemm_micro::PORTABLE_NR,
    kc: 256,
    mc: 64,
    nc: 2048,
    micro: gemm_micro::micro_portable,
    micro_strided: None,
    dot: gemm_micro::dot_portable,
    dot_rows: gemm_micro::dot_rows_portable,
    max_pool_2x2: pool::max_pool_2x2_portable,
    pack_transpose: pack::pack_transpose_portable,
    conv_direct: None,
    conv_direct_channels: None,
    conv_pool_positions: None,
    conv_pool_channels: None,
    winograd: winograd::PORTABLE_WINOGRAD,
    conv_direct_backward_weight: None,
};

/// KC of the AVX2 and AVX-512 variants: each depth block reads and writes
/// the whole of C once more, so a deep block pays where a 1024³ product's
/// C (4 MiB) lives in L3. `examples/gemm_blocking.rs` at 1024³, settings
/// interleaved in paired rounds (23:35, on a Zen 4 host): AVX-512 (61
/// rounds) KC 256 87.1 % of the FMA peak, 512 89.3 %, 1024 90.7 % (91.2 %
/// with MC 48; with NC 512, which packs A twice, 86.9 %); AVX2 (41 rounds)
/// 256 78.5 %, 1024 81.0 %.
#[cfg(target_arch = "x86_64")]
const X86_KC: usize = 1024;

/// The AVX2+FMA variant (x86-64).
#[cfg(target_arch = "x86_64")]
pub static AVX2: Kernels = Kernels {
    name: "avx2",
    mr: gemm_micro::AVX2_MR,
    nr: gemm_micro::AVX2_NR,
    kc: X86_KC,
    mc: 96,
    nc: 1024,
    micro: gemm_micro::micro_avx2,
    micro_strided: Some(StridedMicro {
        rows: gemm_micro::micro_avx2_rows,
        cols: gemm_micro::micro_avx2_cols,
    }),
    dot: gemm_micro::dot_avx2,
    dot_rows: conv_direct::dot_rows_avx2,
    max_pool_2x2: pool::max_pool_2x2_portable,
    pack_transpose: pack::pack_transpose_avx2,
    conv_direct: Some(conv_direct::direct_avx2),
    conv_direct_channels: None,
    conv_pool_positions: None,
    conv_pool_channels: None,
    winograd: winograd::AVX2_WINOGRAD,
    conv_direct_backward_weight: Some(conv_direct::direct_backward_weight_avx2),
};

/// The AVX-512F variant (x86-64).
#[cfg(target_arch = "x86_64")]
pub static AVX512: Kernels = Kernels {
    name: "avx512",
    mr: gemm_micro::AVX512_MR,
    nr: gemm_micro::AVX512_NR,
    kc: X86_KC,
    mc: 96,
    nc: 1024,
    micro: gemm_micro::micro_avx512,
    micro_strided: Some(StridedMicro {
        rows: gemm_micro::micro_avx512_rows,
        cols: gemm_micro::micro_avx512_cols,
    }),
    dot: gemm_micro::dot_avx512,
    dot_rows: conv_direct::dot_rows_avx512,
    max_pool_2x2: pool::max_pool_2x2_avx512,
    pack_transpose: pack::pack_transpose_avx512,
    conv_direct: Some(conv_direct::direct_avx512),
    conv_direct_channels: Some(conv_direct_channels::direct_channels_avx512),
    conv_pool_positions: Some(conv_pool::pool_direct_avx512),
    conv_pool_channels: Some(conv_direct_channels::direct_channels_pool_avx512),
    winograd: winograd::AVX512_WINOGRAD,
    conv_direct_backward_weight: Some(conv_direct::direct_backward_weight_avx512),
};

/// MC of the NEON variant: a 96 × 256 block of packed A is 96 KiB, kept in
/// the L2 of common AArch64 cores (at least 512 KiB); not tuned on hardware.
#[cfg(target_arch = "aarch64")]
const NEON_MC: usize = 96;
/// NC of the NEON variant (85 panels of 12): a 256 × 1020 block of packed B
/// is about 1 MiB, for the L2/L3; not tuned on hardware.
#[cfg(target_arch = "aarch64")]
const NEON_NC: usize = 1020;

/// The NEON variant (aarch64): an 8 × 12 FMA microkernel, a NEON dot
/// product and a 4 × 4-transposing NEON packer; the Winograd transforms are
/// the portable ones, and there is no direct convolution (convolutions use
/// im2col + GEMM or Winograd).
#[cfg(target_arch = "aarch64")]
pub static NEON: Kernels = Kernels {
    name: "neon",
    mr: gemm_micro::NEON_MR,
    nr: gemm_micro::NEON_NR,
    kc: 256,
    mc: NEON_MC,
    nc: NEON_NC,
    micro: gemm_micro::micro_neon,
    micro_strided: None,
    dot: gemm_micro::dot_neon,
    dot_rows: gemm_micro::dot_rows_neon,
    max_pool_2x2: pool::max_pool_2x2_portable,
    pack_transpose: pack::pack_transpose_neon,
    conv_direct: None,
    conv_direct_channels: None,
    conv_pool_positions: None,
    conv_pool_channels: None,
    winograd: winograd::PORTABLE_WINOGRAD,
    conv_direct_backward_weight: None,
};

/// Every variant this machine can run, best first.
#[cfg(feature = "std")]
pub fn variants() -> std::vec::Vec<&'static Kernels> {
    let mut v = std::vec::Vec::new();
    #[cfg(target_arch = "x86_64")]
    {
        if std::is_x86_feature_detected!("avx512f") {
            v.push(&AVX512);
        }
        if std::is_x86_feature_detected!("avx2") && std::is_x86_feature_detected!("fma") {
            v.push(&AVX2);
        }
    }
    #[cfg(target_arch = "aarch64")]
    if std::arch::is_aarch64_feature_detected!("neon") {
        v.push(&NEON);
    }
    v.push(&PORTABLE);
    v
}

/// The variant every kernel uses: the best this machine runs, unless
/// `KILN_KERNELS` names a lesser one (an unknown or unavailable name falls
/// back to the best, with a warning on stderr).
#[cfg(feature = "std")]
pub fn kernels() -> &'static Kernels {
    static CHOSEN: std::sync::OnceLock<&'static Kernels> = std::sync::OnceLock::new();
    CHOSEN.get_or_init(|| {
        let all = variants();
        match std::env::var("KILN_KERNELS") {
            Ok(want) => match all.iter().find(|k| k.name == want) {
                Some(k) => k,
                None => {
                    let names: std::vec::Vec<_> = all.iter().map(|k| k.name).collect();
                    std::eprintln!(
                        "kiln: KILN_KERNELS={want:?} is not available on this machine \
                         (available: {}); using {:?}",
                        names.join(", "),
                        all[0].name
                    );
                    all[0]
                }
            },
            Err(_) => all[0],
        }
    })
}

/// The variant every kernel uses: chosen at compile time from the enabled
/// target features, since a `no_std` build cannot ask the CPU.
#[cfg(not(feature = "std"))]
pub fn kernels() -> &'static Kernels {
    #[cfg(target_arch = "x86_64")]
    {
        if cfg!(target_feature = "avx512f") {
            return &AVX512;
        }
        if cfg!(all(target_feature = "avx2", target_feature = "fma")) {
            return &AVX2;
        }
    }
    #[cfg(target_arch = "aarch64")]
    if cfg!(target_feature = "neon") {
        return &NEON;
    }
    &PORTABLE
}

#[cfg(all(test, feature = "std"))]
mod tests {
    use super::variants;
    use crate::kernels::pool::max4;

    /// Every variant's 2×2 plane kernel against [`max4`] element by element,
    /// on planes of every width modulo the vector (ties, signed zeros and
    /// NaNs included, so that the order of the comparisons shows).
    #[test]
    fn every_variant_pools_2x2_by_the_max4_rule() {
        let special = [0.0f32, -0.0, 1.0, 1.0, f32::NAN, -2.0, 3.5, f32::NAN];
        for kern in variants() {
            for (w, oh) in [
                (2usize, 1usize),
                (9, 3),
                (28, 14),
                (10, 5),
                (34, 2),
                (64, 4),
                (67, 3),
            ] {
                let ow = w / 2;
                let x: std::vec::Vec<f32> = (0..2 * oh * w)
                    .map(|i| {
                        if i % 5 == 0 {
                            special[(i / 5) % special.len()]
                        } else {
                            ((i * 7919) % 31) as f32 - 15.0
                        }
                    })
                    .collect();
                let mut y = std::vec![f32::INFINITY; oh * ow + 3];
                // SAFETY: x holds 2·oh rows of w ≥ 2·ow floats, y oh·ow.
                unsafe { (kern.max_pool_2x2)(x.as_ptr(), w, oh, ow, y.as_mut_ptr()) };
                for i in 0..oh {
                    for j in 0..ow {
                        let (a, b) = ((2 * i) * w + 2 * j, (2 * i + 1) * w + 2 * j);
                        let want = max4(x[a], x[a + 1], x[b], x[b + 1]).0;
                        let got = y[i * ow + j];
                        assert!(
                            got.to_bits() == want.to_bits(),
                            "{}: w {w} ({i}, {j}): {got} vs {want}",
                            kern.name
                        );
                    }
                }
                assert!(
                    y[oh * ow..].iter().all(|v| *v == f32::INFINITY),
                    "wrote past the end"
                );
            }
        }
    }

    /// Every variant's `dot_rows` against an f64 sum of each row.
    #[test]
    fn every_variant_dots_rows() {
        for kern in variants() {
            for (rows, len, ldw) in [
                (1usize, 1usize, 1usize),
                (7, 17, 20),
                (9, 400, 400),
                (84, 120, 121),
                (3, 5, 5),
            ] {
                let w: std::vec::Vec<f32> = (0..rows * ldw)
                    .map(|i| ((i * 37) % 23) as f32 * 0.25 - 2.0)
                    .collect();
                let x: std::vec::Vec<f32> = (0..len)
                    .map(|i| ((i * 11) % 7) as f32 * 0.5 - 1.5)
                    .collect();
                let mut y = std::vec![f32::NAN; rows];
                // SAFETY: w holds rows of ldw ≥ len floats, x len, y rows.
                unsafe { (kern.dot_rows)(rows, len, w.as_ptr(), ldw, x.as_ptr(), y.as_mut_ptr()) };
                for (r, got) in y.iter().enumerate() {
                    let want: f64 = (0..len)
                        .map(|k| f64::from(w[r * ldw + k]) * f64::from(x[k]))
                        .sum();
                    assert!(
                        (f64::from(*got) - want).abs() <= 1e-5 * (1.0 + want.abs()),
                        "{}: rows {rows} len {len} row {r}: {got} vs {want}",
                        kern.name
                    );
                }
            }
        }
    }
}
