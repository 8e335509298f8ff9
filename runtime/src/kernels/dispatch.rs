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
use super::gemm_micro;
use super::pack::{self, PackTransposeKernel};
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

/// A dot product of two contiguous vectors of `len` floats, summed in a
/// fixed order (the matrix-vector path of GEMM).
///
/// # Safety
///
/// `a` and `b` must be readable for `len` floats, and the CPU must support
/// the variant's instructions (the table guarantees this).
pub type DotKernel = unsafe fn(len: usize, a: *const f32, b: *const f32) -> f32;

/// The largest `MR · NR` of any variant; edge tiles use a stack buffer of
/// this size.
pub const MAX_TILE: usize = 16 * 32;

// Every variant's tile fits the edge-tile buffer, and the NEON blocking's MC
// and NC (which are not multiples of 16) are multiples of its MR and NR.
const _: () = {
    assert!(gemm_micro::PORTABLE_MR * gemm_micro::PORTABLE_NR <= MAX_TILE);
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
    /// The dot product of GEMM's matrix-vector path.
    pub dot: DotKernel,
    /// GEMM's transposing panel packer (row-major A, transposed B).
    pub pack_transpose: PackTransposeKernel,
    /// The direct convolution kernel for few output channels, where the
    /// variant has one (else convolutions use im2col + GEMM).
    pub conv_direct: Option<DirectKernel>,
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
    dot: gemm_micro::dot_portable,
    pack_transpose: pack::pack_transpose_portable,
    conv_direct: None,
    winograd: winograd::PORTABLE_WINOGRAD,
    conv_direct_backward_weight: None,
};

/// The AVX2+FMA variant (x86-64).
#[cfg(target_arch = "x86_64")]
pub static AVX2: Kernels = Kernels {
    name: "avx2",
    mr: gemm_micro::AVX2_MR,
    nr: gemm_micro::AVX2_NR,
    kc: 256,
    mc: 96,
    nc: 1024,
    micro: gemm_micro::micro_avx2,
    dot: gemm_micro::dot_avx2,
    pack_transpose: pack::pack_transpose_portable,
    conv_direct: Some(conv_direct::direct_avx2),
    winograd: winograd::AVX2_WINOGRAD,
    conv_direct_backward_weight: Some(conv_direct::direct_backward_weight_avx2),
};

/// The AVX-512F variant (x86-64).
#[cfg(target_arch = "x86_64")]
pub static AVX512: Kernels = Kernels {
    name: "avx512",
    mr: gemm_micro::AVX512_MR,
    nr: gemm_micro::AVX512_NR,
    kc: 256,
    mc: 96,
    nc: 1024,
    micro: gemm_micro::micro_avx512,
    dot: gemm_micro::dot_avx512,
    pack_transpose: pack::pack_transpose_avx512,
    conv_direct: Some(conv_direct::direct_avx512),
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
    dot: gemm_micro::dot_neon,
    pack_transpose: pack::pack_transpose_neon,
    conv_direct: None,
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
