//! Winograd convolution for 3×3 kernels at stride 1, dilation 1, one group
//! (ResNet's and VGG's layers): `F(2×2, 3×3)` or `F(4×4, 3×3)`.
//!
//! The output is cut into `m × m` tiles (`m` = 2 or 4), each computed from an
//! `α × α` input tile (`α = m + 2`):
//!
//! ```text
//! Y = Aᵀ · [ Σ_ci (G·g·Gᵀ) ⊙ (Bᵀ·d·B) ] · A
//! ```
//!
//! The elementwise product summed over input channels is, for each of the
//! `α²` transform points `ξ`, one GEMM `M_ξ = U_ξ · V_ξ` with `U_ξ` the
//! transformed weights (`c_out × c_in`), `V_ξ` the transformed input
//! (`c_in × tiles`) and `M_ξ` (`c_out × tiles`). `F(4,3)` does 36 multiplies
//! per 16 outputs and input channel where the direct product does 144 (4×
//! fewer); `F(2,3)` 16 per 4 (2.25× fewer).
//!
//! Layout, one image at a time: `V` is `[ci][ξ][tile]` (the input transform
//! writes one channel's block, so channels can run in parallel), `M` is
//! `[ξ][co][tile]` (one GEMM per `ξ` writes one block, so the 36 GEMMs can run
//! in parallel), and the output transform writes one channel's plane of `y`
//! and applies the epilogue list (bias, scale, activation, residual) to it.
//! The transforms work on [`LANES`] tiles of one tile row at once, as plain
//! loops over fixed-size arrays that the compiler vectorizes inside each
//! variant's `#[target_feature]` wrapper (the table in
//! [`super::dispatch`] holds them).
//!
//! Weights: [`winograd_pack_weights`] transforms the OIHW weights once
//! (`U = G·g·Gᵀ`) and writes them straight into the GEMM's packed-A panels,
//! one block of [`super::gemm::packed_a_len`] floats per transform point;
//! an inference build does this at load time and calls
//! [`conv2d_forward_winograd_prepacked`] (or its `_serial` form), while
//! [`conv2d_forward_winograd`] transforms the weights on every call.
//!
//! Accuracy: the transforms lose a few bits. `F(4,3)`'s matrices hold
//! entries up to 8 and 1/24, so the error grows with the output's magnitude;
//! the property tests bound it relative to `Σ|w|·|x|` of each output (see
//! `tests/winograd.rs`). The reduction order of every output is fixed, so the
//! bits do not depend on the thread count.

use super::conv::{Conv2dGeometry, ConvEpilogue, channel_epilogue, check_conv_epilogue};
use super::dispatch::Kernels;
use super::gemm::{Gemm, gemm_scratch_len_with, packed_a_index, packed_a_len};

/// Tiles transformed at once (one vector of lanes per matrix entry).
pub const LANES: usize = 16;

type Lanes = [f32; LANES];

/// The output tile of a Winograd convolution.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum WinogradTile {
    /// `F(2×2, 3×3)`: 4×4 input tiles, 16 transform points.
    F2,
    /// `F(4×4, 3×3)`: 6×6 input tiles, 36 transform points.
    F4,
}

impl WinogradTile {
    /// Output rows and columns per tile (`m`).
    pub const fn m(self) -> usize {
        match self {
            WinogradTile::F2 => 2,
            WinogradTile::F4 => 4,
        }
    }

    /// Input rows and columns per tile (`α = m + 2`).
    pub const fn alpha(self) -> usize {
        self.m() + 2
    }

    /// Transform points (`α²`): the number of GEMMs.
    pub const fn points(self) -> usize {
        self.alpha() * self.alpha()
    }
}

/// `G` of F(2,3) (Lavin and Gray, 2016); its `Bᵀ` and `Aᵀ` are written out
/// in [`Transform`] (the matrices are in the unit tests).
const G2: [[f32; 3]; 4] = [
    [1.0, 0.0, 0.0],
    [0.5, 0.5, 0.5],
    [0.5, -0.5, 0.5],
    [0.0, 0.0, 1.0],
];

/// `G` of F(4,3), interpolation points 0, ±1, ±2, ∞.
const G4: [[f32; 3]; 6] = [
    [0.25, 0.0, 0.0],
    [-1.0 / 6.0, -1.0 / 6.0, -1.0 / 6.0],
    [-1.0 / 6.0, 1.0 / 6.0, -1.0 / 6.0],
    [1.0 / 24.0, 1.0 / 12.0, 1.0 / 6.0],
    [1.0 / 24.0, -1.0 / 12.0, 1.0 / 6.0],
    [0.0, 0.0, 1.0],
];

/// Whether the Winograd kernels compute this convolution: a 3×3 kernel,
/// stride 1, dilation 1, one group (any padding and batch).
pub fn winograd_applies(g: &Conv2dGeometry) -> bool {
    g.kh == 3 && g.kw == 3 && g.stride == [1, 1] && g.dilation == [1, 1] && g.groups == 1
}

/// The tile [`conv2d_forward_winograd`] and the other functions without a
/// tile argument use for `g`: F(4,3) where the output is at least 48 × 48,
/// else F(2,3), whose 2 × 2 tiles waste less of a smaller plane (measured
/// on ResNet-18's layers, `--bench conv_resnet18`: F(4,3) is as fast or
/// faster at 56 × 56; at 28 × 28 F(2,3) ran at 1.12–1.25× F(4,3) at batch
/// 32 and 0.97–1.37× at batch 1 in the runs of 2026-12-01, 13:50–14:30;
/// F(2,3) is also the more accurate; see `BENCHMARKS.md`).
pub fn winograd_tile(g: &Conv2dGeometry) -> WinogradTile {
    if g.out_h().min(g.out_w()) >= 48 {
        WinogradTile::F4
    } else {
        WinogradTile::F2
    }
}

/// Whether Winograd is faster than the GEMM lowering for `g` (what
/// [`super::conv::conv2d_forward`] asks): it applies, both channel counts
/// are at least 16 (so the GEMMs over the transform points are not mostly
/// edge), and the output is at least 10 × 10 (at 7 × 7, ResNet-18's last
/// stage, the transforms' lanes and the padded tiles cost more than the
/// saved multiplies: measured 0.6–0.8× the GEMM lowering at batch 1).
pub fn winograd_pays(g: &Conv2dGeometry) -> bool {
    winograd_applies(g) && g.c_in >= 16 && g.c_out >= 16 && g.out_h().min(g.out_w()) >= 10
}

/// The per-image sizes of one Winograd convolution.
#[derive(Debug, Clone, Copy)]
struct Plan {
    tile: WinogradTile,
    /// Tile rows and columns per image.
    nty: usize,
    ntx: usize,
    /// Tiles per image (`nty · ntx`): the GEMMs' `n`.
    tiles: usize,
    /// The stride of one transform point's row of `V` (`tiles` plus room for
    /// a whole vector of lanes past the last tile).
    ldv: usize,
    /// Length of one phase of a zero-padded input line (column `c` of the
    /// line is element `c / m` of phase `c % m`).
    phase: usize,
}

impl Plan {
    fn new(tile: WinogradTile, g: &Conv2dGeometry) -> Plan {
        let m = tile.m();
        let (nty, ntx) = (g.out_h().div_ceil(m), g.out_w().div_ceil(m));
        Plan {
            tile,
            nty,
            ntx,
            tiles: nty * ntx,
            ldv: nty * ntx + LANES,
            phase: ntx.div_ceil(LANES) * LANES + 1,
        }
    }

    /// Floats of `V` (`c_in · α² · ldv`).
    fn v_len(&self, g: &Conv2dGeometry) -> usize {
        g.c_in * self.tile.points() * self.ldv
    }

    /// Floats of `M` (`α² · c_out · tiles`, plus a tail the last lanes may
    /// read).
    fn m_len(&self, g: &Conv2dGeometry) -> usize {
        self.tile.points() * g.c_out * self.tiles + LANES
    }

    /// Floats of the input transform's line buffer: `α` lines of `m`
    /// phases, and one padded input row.
    fn lines_len(&self) -> usize {
        (self.tile.alpha() + 1) * self.tile.m() * self.phase
    }

    /// The GEMM of one transform point.
    fn gemm(&self, g: &Conv2dGeometry) -> Gemm {
        let mut gm = Gemm::new(g.c_out, self.tiles, g.c_in);
        gm.ldb = self.tile.points() * self.ldv;
        gm
    }
}

fn assert_applies(g: &Conv2dGeometry) {
    g.assert_valid();
    assert!(
        winograd_applies(g),
        "winograd: needs a 3×3 kernel, stride 1, dilation 1 and one group, got {g:?}"
    );
}

fn check_len(what: &str, have: usize, need: usize) {
    assert!(
        have >= need,
        "winograd: {what} has {have} floats, needs {need}"
    );
}

/// Floats of the weights [`winograd_pack_weights_for`] writes for `tile`.
pub fn winograd_packed_len_for(kern: &Kernels, tile: WinogradTile, g: &Conv2dGeometry) -> usize {
    tile.points() * packed_a_len(kern, &Gemm::new(g.c_out, 1, g.c_in))
}

/// Floats of the weights [`winograd_pack_weights`] writes.
pub fn winograd_packed_len(kern: &Kernels, g: &Conv2dGeometry) -> usize {
    winograd_packed_len_for(kern, winograd_tile(g), g)
}

/// Transforms the OIHW weights `w` (`U_ξ = G·g·Gᵀ` per channel pair) into
/// `out` (at least [`winograd_packed_len_for`] floats), as the packed A
/// panels of the `α²` GEMMs of variant `kern`: done once, at load time, for
/// [`conv2d_forward_winograd_prepacked_for`].
///
/// # Panics
///
/// If Winograd does not apply to `g` or a buffer is too short (a caller bug).
pub fn winograd_pack_weights_for(
    kern: &Kernels,
    tile: WinogradTile,
    g: &Conv2dGeometry,
    w: &[f32],
    out: &mut [f32],
) {
    assert_applies(g);
    check_len("weight", w.len(), g.weight_len());
    let len = winograd_packed_len_for(kern, tile, g);
    check_len("packed weights", out.len(), len);
    let out = &mut out[..len];
    // Rows past c_out in the last panel stay zero.
    out.fill(0.0);
    let gm = Gemm::new(g.c_out, 1, g.c_in);
    let per = len / tile.points();
    let a = tile.alpha();
    for co in 0..g.c_out {
        for ci in 0..g.c_in {
            let k = &w[(co * g.c_in + ci) * 9..(co * g.c_in + ci + 1) * 9];
            let mut u = [[0.0f32; 6]; 6];
            match tile {
                WinogradTile::F2 => kernel_transform(&G2, k, &mut u),
                WinogradTile::F4 => kernel_transform(&G4, k, &mut u),
            }
            let at = packed_a_index(kern, &gm, co, ci);
            for r in 0..a {
                for c in 0..a {
                    out[(r * a + c) * per + at] = u[r][c];
                }
            }
        }
    }
}

/// [`winograd_pack_weights_for`] with the tile of [`winograd_tile`]; the
/// packed weights are what [`conv2d_forward_winograd_prepacked`] takes.
///
/// # Panics
///
/// If Winograd does not apply to `g` or a buffer is too short (a caller bug).
pub fn winograd_pack_weights(kern: &Kernels, g: &Conv2dGeometry, w: &[f32], out: &mut [f32]) {
    winograd_pack_weights_for(kern, winograd_tile(g), g, w, out)
}

/// `u = G·k·Gᵀ` for one 3×3 kernel `k` (row-major), in f64.
fn kernel_transform<const A: usize>(gm: &[[f32; 3]; A], k: &[f32], u: &mut [[f32; 6]; 6]) {
    let mut t = [[0.0f64; 3]; A];
    for r in 0..A {
        for c in 0..3 {
            t[r][c] = (0..3)
                .map(|i| f64::from(gm[r][i]) * f64::from(k[i * 3 + c]))
                .sum();
        }
    }
    for r in 0..A {
        for c in 0..A {
            u[r][c] = (0..3).map(|i| t[r][i] * f64::from(gm[c][i])).sum::<f64>() as f32;
        }
    }
}

/// The scratch (floats) of [`conv2d_forward_winograd_prepacked_serial_for`]:
/// one image's `V`, `M`, line buffer and GEMM packing.
pub fn winograd_prepacked_scratch_len_for(
    kern: &Kernels,
    tile: WinogradTile,
    g: &Conv2dGeometry,
) -> usize {
    let p = Plan::new(tile, g);
    p.v_len(g) + p.m_len(g) + p.lines_len() + gemm_scratch_len_with(kern, &p.gemm(g))
}

/// The scratch (floats) of [`conv2d_forward_winograd_prepacked_serial`].
pub fn winograd_prepacked_scratch_len(kern: &Kernels, g: &Conv2dGeometry) -> usize {
    winograd_prepacked_scratch_len_for(kern, winograd_tile(g), g)
}

/// The scratch (floats) of [`conv2d_forward_winograd_serial`]: the packed
/// weights and one image's buffers.
pub fn winograd_scratch_len(kern: &Kernels, g: &Conv2dGeometry) -> usize {
    winograd_packed_len(kern, g) + winograd_prepacked_scratch_len(kern, g)
}

fn check_forward(
    kern: &Kernels,
    tile: WinogradTile,
    g: &Conv2dGeometry,
    x: &[f32],
    packed: &[f32],
    epilogue: &[ConvEpilogue<'_>],
    y: &[f32],
) {
    assert_applies(g);
    check_len("input", x.len(), g.input_len());
    check_len("output", y.len(), g.output_len());
    check_len(
        "packed weights",
        packed.len(),
        winograd_packed_len_for(kern, tile, g),
    );
    check_conv_epilogue(g, epilogue);
}

/// `y = epilogue(conv(x, w))` by Winograd `tile` on the calling thread, with
/// weights from [`winograd_pack_weights_for`] and `scratch` of at least
/// [`winograd_prepacked_scratch_len_for`] floats. Allocation-free.
///
/// # Panics
///
/// If Winograd does not apply to `g` or a buffer is too short (a caller bug).
pub fn conv2d_forward_winograd_prepacked_serial_for(
    kern: &Kernels,
    tile: WinogradTile,
    g: &Conv2dGeometry,
    x: &[f32],
    packed: &[f32],
    epilogue: &[ConvEpilogue<'_>],
    y: &mut [f32],
    scratch: &mut [f32],
) {
    check_forward(kern, tile, g, x, packed, epilogue, y);
    check_len(
        "scratch",
        scratch.len(),
        winograd_prepacked_scratch_len_for(kern, tile, g),
    );
    let p = Plan::new(tile, g);
    let (in_img, out_img) = (g.c_in * g.h * g.w, g.c_out * g.out_h() * g.out_w());
    for img in 0..g.n {
        let xi = &x[img * in_img..(img + 1) * in_img];
        let yi = &mut y[img * out_img..(img + 1) * out_img];
        image_serial(kern, &p, g, xi, packed, epilogue, yi, img, scratch);
    }
}

/// [`conv2d_forward_winograd_prepacked_serial_for`] with the tile of
/// [`winograd_tile`] and weights from [`winograd_pack_weights`].
///
/// # Panics
///
/// If Winograd does not apply to `g` or a buffer is too short (a caller bug).
pub fn conv2d_forward_winograd_prepacked_serial(
    kern: &Kernels,
    g: &Conv2dGeometry,
    x: &[f32],
    packed: &[f32],
    epilogue: &[ConvEpilogue<'_>],
    y: &mut [f32],
    scratch: &mut [f32],
) {
    conv2d_forward_winograd_prepacked_serial_for(
        kern,
        winograd_tile(g),
        g,
        x,
        packed,
        epilogue,
        y,
        scratch,
    )
}

/// `y = epilogue(conv(x, w))` by Winograd on the calling thread from OIHW
/// weights, transformed on this call; `scratch` of at least
/// [`winograd_scratch_len`] floats. Allocation-free.
///
/// # Panics
///
/// If Winograd does not apply to `g` or a buffer is too short (a caller bug).
pub fn conv2d_forward_winograd_serial(
    kern: &Kernels,
    g: &Conv2dGeometry,
    x: &[f32],
    w: &[f32],
    epilogue: &[ConvEpilogue<'_>],
    y: &mut [f32],
    scratch: &mut [f32],
) {
    assert_applies(g);
    check_len("scratch", scratch.len(), winograd_scratch_len(kern, g));
    let (packed, rest) = scratch.split_at_mut(winograd_packed_len(kern, g));
    winograd_pack_weights(kern, g, w, packed);
    conv2d_forward_winograd_prepacked_serial(kern, g, x, packed, epilogue, y, rest);
}

/// [`conv2d_forward_winograd_prepacked_serial_for`] over the thread pool:
/// images in parallel when the batch has several, else the channels of each
/// transform and the `α²` GEMMs.
///
/// # Panics
///
/// If Winograd does not apply to `g` or a buffer is too short (a caller bug).
#[cfg(feature = "std")]
pub fn conv2d_forward_winograd_prepacked_for(
    kern: &Kernels,
    tile: WinogradTile,
    g: &Conv2dGeometry,
    x: &[f32],
    packed: &[f32],
    epilogue: &[ConvEpilogue<'_>],
    y: &mut [f32],
) {
    use super::gemm::{Slot, sgemm_packed_serial_with, with_scratch};
    use super::parallel::{for_each_chunk_mut, worth_parallel};
    check_forward(kern, tile, g, x, packed, epilogue, y);
    let p = Plan::new(tile, g);
    let (in_img, out_img) = (g.c_in * g.h * g.w, g.c_out * g.out_h() * g.out_w());
    let y = &mut y[..g.output_len()];
    let work = p.tiles * tile.points() * g.c_in * g.c_out * g.n;
    if g.n > 1 && worth_parallel(work) {
        let len = winograd_prepacked_scratch_len_for(kern, tile, g);
        for_each_chunk_mut(y, out_img, work, |img, yi| {
            let xi = &x[img * in_img..(img + 1) * in_img];
            with_scratch(Slot::Conv, len, |s| {
                image_serial(kern, &p, g, xi, packed, epilogue, yi, img, s)
            });
        });
        return;
    }
    let (v_len, m_len) = (p.v_len(g), p.m_len(g));
    let plane = g.out_h() * g.out_w();
    let pts = tile.points();
    let gm = p.gemm(g);
    let per = winograd_packed_len_for(kern, tile, g) / pts;
    with_scratch(Slot::Conv, v_len + m_len, |s| {
        let (v, mbuf) = s.split_at_mut(v_len);
        for img in 0..g.n {
            let xi = &x[img * in_img..(img + 1) * in_img];
            let yi = &mut y[img * out_img..(img + 1) * out_img];
            let per_ci = pts * p.ldv;
            for_each_chunk_mut(v, per_ci, work / g.n, |ci, vc| {
                with_scratch(Slot::Pack, p.lines_len(), |lines| {
                    input_channel(kern, &p, g, xi, ci, vc, lines)
                });
            });
            let per_xi = g.c_out * p.tiles;
            for_each_chunk_mut(&mut mbuf[..pts * per_xi], per_xi, work / g.n, |xi_, mc| {
                with_scratch(Slot::Pack, gemm_scratch_len_with(kern, &gm), |gs| {
                    sgemm_packed_serial_with(
                        kern,
                        &gm,
                        &packed[xi_ * per..(xi_ + 1) * per],
                        &v[xi_ * p.ldv..],
                        mc,
                        &[],
                        gs,
                    )
                });
            });
            let mref: &[f32] = mbuf;
            for_each_chunk_mut(yi, plane, work / g.n, |co, yc| {
                output_channel(kern, &p, g, mref, co, yc);
                channel_epilogue(g, epilogue, img, co, yc);
            });
        }
    });
}

/// [`conv2d_forward_winograd_prepacked_for`] with the tile of
/// [`winograd_tile`] and weights from [`winograd_pack_weights`].
///
/// # Panics
///
/// If Winograd does not apply to `g` or a buffer is too short (a caller bug).
#[cfg(feature = "std")]
pub fn conv2d_forward_winograd_prepacked(
    kern: &Kernels,
    g: &Conv2dGeometry,
    x: &[f32],
    packed: &[f32],
    epilogue: &[ConvEpilogue<'_>],
    y: &mut [f32],
) {
    conv2d_forward_winograd_prepacked_for(kern, winograd_tile(g), g, x, packed, epilogue, y)
}

/// `y = epilogue(conv(x, w))` by Winograd over the thread pool from OIHW
/// weights, transformed on this call (into this thread's scratch).
///
/// # Panics
///
/// If Winograd does not apply to `g` or a buffer is too short (a caller bug).
#[cfg(feature = "std")]
pub fn conv2d_forward_winograd(
    kern: &Kernels,
    g: &Conv2dGeometry,
    x: &[f32],
    w: &[f32],
    epilogue: &[ConvEpilogue<'_>],
    y: &mut [f32],
) {
    use super::gemm::{Slot, with_scratch};
    assert_applies(g);
    with_scratch(Slot::Weights, winograd_packed_len(kern, g), |packed| {
        winograd_pack_weights(kern, g, w, packed);
        conv2d_forward_winograd_prepacked(kern, g, x, packed, epilogue, y);
    });
}

/// One image on the calling thread: input transform, the `α²` GEMMs, output
/// transform and epilogue.
fn image_serial(
    kern: &Kernels,
    p: &Plan,
    g: &Conv2dGeometry,
    x: &[f32],
    packed: &[f32],
    epilogue: &[ConvEpilogue<'_>],
    y: &mut [f32],
    img: usize,
    scratch: &mut [f32],
) {
    use super::gemm::sgemm_packed_serial_with;
    let pts = p.tile.points();
    let (v, rest) = scratch.split_at_mut(p.v_len(g));
    let (mbuf, rest) = rest.split_at_mut(p.m_len(g));
    let (lines, gs) = rest.split_at_mut(p.lines_len());
    let per_ci = pts * p.ldv;
    for (ci, vc) in v.chunks_mut(per_ci).enumerate() {
        input_channel(kern, p, g, x, ci, vc, lines);
    }
    let gm = p.gemm(g);
    let per = winograd_packed_len_for(kern, p.tile, g) / pts;
    let per_xi = g.c_out * p.tiles;
    for (xi_, mc) in mbuf[..pts * per_xi].chunks_mut(per_xi).enumerate() {
        sgemm_packed_serial_with(
            kern,
            &gm,
            &packed[xi_ * per..(xi_ + 1) * per],
            &v[xi_ * p.ldv..],
            mc,
            &[],
            gs,
        );
    }
    let plane = g.out_h() * g.out_w();
    for (co, yc) in y[..g.c_out * plane].chunks_mut(plane).enumerate() {
        output_channel(kern, p, g, mbuf, co, yc);
        channel_epilogue(g, epilogue, img, co, yc);
    }
}

/// The per-variant transform entry points (held by the kernel table).
#[derive(Debug, Clone, Copy)]
pub struct WinogradKernels {
    input: InputFn,
    output: OutputFn,
}

/// Transforms channel `ci` of one image `x` into `v` (`α² · tiles` floats,
/// `[ξ][tile]`), with `lines` of [`Plan::lines_len`] floats.
type InputFn = unsafe fn(&Plan, &Conv2dGeometry, &[f32], usize, &mut [f32], &mut [f32]);

/// Transforms output channel `co` from `m` (`[ξ][co][tile]`) into its plane
/// `y` (no epilogue).
type OutputFn = unsafe fn(&Plan, &Conv2dGeometry, &[f32], usize, &mut [f32]);

fn input_channel(
    kern: &Kernels,
    p: &Plan,
    g: &Conv2dGeometry,
    x: &[f32],
    ci: usize,
    v: &mut [f32],
    lines: &mut [f32],
) {
    // SAFETY: the table only holds functions whose features this CPU has;
    // the functions themselves are safe code.
    unsafe { (kern.winograd.input)(p, g, x, ci, v, lines) }
}

fn output_channel(
    kern: &Kernels,
    p: &Plan,
    g: &Conv2dGeometry,
    m: &[f32],
    co: usize,
    y: &mut [f32],
) {
    // SAFETY: as in `input_channel`.
    unsafe { (kern.winograd.output)(p, g, m, co, y) }
}

/// The portable transforms.
pub(crate) const PORTABLE_WINOGRAD: WinogradKernels = WinogradKernels {
    input: input_portable,
    output: output_portable,
};

/// The AVX2+FMA transforms (the same code, vectorized for `ymm`).
#[cfg(target_arch = "x86_64")]
pub(crate) const AVX2_WINOGRAD: WinogradKernels = WinogradKernels {
    input: input_avx2,
    output: output_avx2,
};

/// The AVX-512 transforms (the same code, vectorized for `zmm`).
#[cfg(target_arch = "x86_64")]
pub(crate) const AVX512_WINOGRAD: WinogradKernels = WinogradKernels {
    input: input_avx512,
    output: output_avx512,
};

unsafe fn input_portable(
    p: &Plan,
    g: &Conv2dGeometry,
    x: &[f32],
    ci: usize,
    v: &mut [f32],
    l: &mut [f32],
) {
    input_any(p, g, x, ci, v, l)
}

unsafe fn output_portable(p: &Plan, g: &Conv2dGeometry, m: &[f32], co: usize, y: &mut [f32]) {
    output_any(p, g, m, co, y)
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
unsafe fn input_avx2(
    p: &Plan,
    g: &Conv2dGeometry,
    x: &[f32],
    ci: usize,
    v: &mut [f32],
    l: &mut [f32],
) {
    input_any(p, g, x, ci, v, l)
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
unsafe fn output_avx2(p: &Plan, g: &Conv2dGeometry, m: &[f32], co: usize, y: &mut [f32]) {
    output_any(p, g, m, co, y)
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
unsafe fn input_avx512(
    p: &Plan,
    g: &Conv2dGeometry,
    x: &[f32],
    ci: usize,
    v: &mut [f32],
    l: &mut [f32],
) {
    input_any(p, g, x, ci, v, l)
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
unsafe fn output_avx512(p: &Plan, g: &Conv2dGeometry, m: &[f32], co: usize, y: &mut [f32]) {
    output_any(p, g, m, co, y)
}

#[inline(always)]
fn input_any(p: &Plan, g: &Conv2dGeometry, x: &[f32], ci: usize, v: &mut [f32], l: &mut [f32]) {
    match p.tile {
        WinogradTile::F2 => input_tiles::<2, 4, F2>(p, g, x, ci, v, l),
        WinogradTile::F4 => input_tiles::<4, 6, F4>(p, g, x, ci, v, l),
    }
}

#[inline(always)]
fn output_any(p: &Plan, g: &Conv2dGeometry, m: &[f32], co: usize, y: &mut [f32]) {
    match p.tile {
        WinogradTile::F2 => output_tiles::<2, 4, F2>(p, g, m, co, y),
        WinogradTile::F4 => output_tiles::<4, 6, F4>(p, g, m, co, y),
    }
}

/// The input transform of channel `ci`: for each tile row, the `A` input
/// lines (zero-padded, split into `M` phases so that the same column of
/// [`LANES`] consecutive tiles is one contiguous run) go into `lines`; then
/// [`LANES`] tiles at a time, `Bᵀ·d·B`, written to `v[ξ·ldv + t]` (lanes past
/// the row's last tile land on tiles written later, or in the padding).
#[inline(always)]
fn input_tiles<const M: usize, const A: usize, T: Transform<M, A>>(
    p: &Plan,
    g: &Conv2dGeometry,
    x: &[f32],
    ci: usize,
    v: &mut [f32],
    lines: &mut [f32],
) {
    let (h, w) = (g.h, g.w);
    let (pt, pl) = (g.pad[0], g.pad[1]);
    let xc = &x[ci * h * w..(ci + 1) * h * w];
    let ph = p.phase;
    // Columns past the last phase element are never read.
    let copy = w.min((M * ph).saturating_sub(pl));
    let (lines, padded) = lines.split_at_mut(A * M * ph);
    let padded = &mut padded[..M * ph];
    padded.fill(0.0);
    for ty in 0..p.nty {
        for i in 0..A {
            let line = &mut lines[i * M * ph..(i + 1) * M * ph];
            let iy = (ty * M + i) as isize - pt as isize;
            if iy < 0 || iy as usize >= h || copy == 0 {
                line.fill(0.0);
                continue;
            }
            // The row with its zero padding, then split into phases 16
            // columns at a time (fixed-size loops the compiler turns into
            // shuffles).
            padded[pl..pl + copy].copy_from_slice(&xc[iy as usize * w..iy as usize * w + copy]);
            let (src, dst) = (&*padded, line);
            let mut k0 = 0;
            while k0 + 16 <= ph {
                let s = &src[k0 * M..(k0 + 16) * M];
                for q in 0..M {
                    let d: &mut [f32; 16] = (&mut dst[q * ph + k0..q * ph + k0 + 16])
                        .try_into()
                        .expect("16");
                    for k in 0..16 {
                        d[k] = s[k * M + q];
                    }
                }
                k0 += 16;
            }
            for k in k0..ph {
                for q in 0..M {
                    dst[q * ph + k] = src[k * M + q];
                }
            }
        }
        let mut tx0 = 0;
        while tx0 < p.ntx {
            let mut d = [[[0.0f32; LANES]; A]; A];
            for (i, di) in d.iter_mut().enumerate() {
                for (j, dij) in di.iter_mut().enumerate() {
                    let at = (i * M + j % M) * ph + tx0 + j / M;
                    dij.copy_from_slice(&lines[at..at + LANES]);
                }
            }
            // tmp = Bᵀ·d column by column, then out = tmp·B row by row.
            let mut tmp = [[[0.0f32; LANES]; A]; A];
            for j in 0..A {
                let mut col = [[0.0f32; LANES]; A];
                for (i, ci) in col.iter_mut().enumerate() {
                    *ci = d[i][j];
                }
                let t = T::bt(&col);
                for r in 0..A {
                    tmp[r][j] = t[r];
                }
            }
            let t0 = ty * p.ntx + tx0;
            for (r, row) in tmp.iter().enumerate() {
                let out = T::bt(row);
                for (c, oc) in out.iter().enumerate() {
                    let at = (r * A + c) * p.ldv + t0;
                    v[at..at + LANES].copy_from_slice(oc);
                }
            }
            tx0 += LANES;
        }
    }
}

/// The output transform of channel `co`: [`LANES`] tiles at a time, the
/// `A²` GEMM results, `Aᵀ·m·A`, stored into the plane `y` (tiles past the
/// edge are cut).
#[inline(always)]
fn output_tiles<const M: usize, const A: usize, T: Transform<M, A>>(
    p: &Plan,
    g: &Conv2dGeometry,
    mbuf: &[f32],
    co: usize,
    y: &mut [f32],
) {
    let (oh, ow) = (g.out_h(), g.out_w());
    let per_xi = g.c_out * p.tiles;
    for ty in 0..p.nty {
        let mut tx0 = 0;
        while tx0 < p.ntx {
            let t0 = ty * p.ntx + tx0;
            // tmp = Aᵀ·m column by column (M × A), reading each transform
            // point's lanes; then each output row is tmp's row times A.
            let mut tmp = [[[0.0f32; LANES]; A]; M];
            for c in 0..A {
                let mut col = [[0.0f32; LANES]; A];
                for (r, cr) in col.iter_mut().enumerate() {
                    let base = (r * A + c) * per_xi + co * p.tiles + t0;
                    cr.copy_from_slice(&mbuf[base..base + LANES]);
                }
                let t = T::at(&col);
                for i in 0..M {
                    tmp[i][c] = t[i];
                }
            }
            let cnt = LANES.min(p.ntx - tx0);
            for (i, ti) in tmp.iter().enumerate() {
                let oy = ty * M + i;
                if oy >= oh {
                    break;
                }
                let out = T::at(ti);
                // Interleave the lanes' columns, then store the ones inside
                // the plane.
                let mut buf = [[0.0f32; M]; LANES];
                for (lane, b) in buf.iter_mut().enumerate() {
                    for (j, bj) in b.iter_mut().enumerate() {
                        *bj = out[j][lane];
                    }
                }
                let x0 = tx0 * M;
                let len = (cnt * M).min(ow - x0);
                let row = &mut y[oy * ow + x0..oy * ow + x0 + len];
                row.copy_from_slice(&buf.as_flattened()[..len]);
            }
            tx0 += LANES;
        }
    }
}

/// The one-dimensional transforms of a tile, on [`LANES`] tiles at once:
/// `Bᵀ·d` (input) and `Aᵀ·m` (output), written out term by term; the unit
/// tests check them against the matrices `BT2`, `AT2`, `BT4`, `AT4`.
trait Transform<const M: usize, const A: usize> {
    fn bt(d: &[Lanes; A]) -> [Lanes; A];
    fn at(m: &[Lanes; A]) -> [Lanes; M];
}

/// F(2,3)'s transforms.
struct F2;
/// F(4,3)'s transforms.
struct F4;

/// `[f(a[l], b[l], …) for each lane l]`.
#[inline(always)]
fn lanes(f: impl Fn(usize) -> f32) -> Lanes {
    let mut r = [0.0f32; LANES];
    for (l, v) in r.iter_mut().enumerate() {
        *v = f(l);
    }
    r
}

impl Transform<2, 4> for F2 {
    #[inline(always)]
    fn bt(d: &[Lanes; 4]) -> [Lanes; 4] {
        [
            lanes(|l| d[0][l] - d[2][l]),
            lanes(|l| d[1][l] + d[2][l]),
            lanes(|l| d[2][l] - d[1][l]),
            lanes(|l| d[1][l] - d[3][l]),
        ]
    }

    #[inline(always)]
    fn at(m: &[Lanes; 4]) -> [Lanes; 2] {
        [
            lanes(|l| m[0][l] + m[1][l] + m[2][l]),
            lanes(|l| m[1][l] - m[2][l] - m[3][l]),
        ]
    }
}

impl Transform<4, 6> for F4 {
    #[inline(always)]
    fn bt(d: &[Lanes; 6]) -> [Lanes; 6] {
        let a = lanes(|l| d[4][l] - 4.0 * d[2][l]);
        let b = lanes(|l| d[3][l] - 4.0 * d[1][l]);
        let c = lanes(|l| d[4][l] - d[2][l]);
        let e = lanes(|l| 2.0 * (d[3][l] - d[1][l]));
        [
            lanes(|l| 4.0 * d[0][l] - 5.0 * d[2][l] + d[4][l]),
            lanes(|l| a[l] + b[l]),
            lanes(|l| a[l] - b[l]),
            lanes(|l| c[l] + e[l]),
            lanes(|l| c[l] - e[l]),
            lanes(|l| 4.0 * d[1][l] - 5.0 * d[3][l] + d[5][l]),
        ]
    }

    #[inline(always)]
    fn at(m: &[Lanes; 6]) -> [Lanes; 4] {
        let s1 = lanes(|l| m[1][l] + m[2][l]);
        let d1 = lanes(|l| m[1][l] - m[2][l]);
        let s2 = lanes(|l| m[3][l] + m[4][l]);
        let d2 = lanes(|l| m[3][l] - m[4][l]);
        [
            lanes(|l| m[0][l] + s1[l] + s2[l]),
            lanes(|l| d1[l] + 2.0 * d2[l]),
            lanes(|l| s1[l] + 4.0 * s2[l]),
            lanes(|l| d1[l] + 8.0 * d2[l] + m[5][l]),
        ]
    }
}

#[cfg(test)]
mod tests {
    //! The written-out transforms against their matrices.
    use super::*;

    /// `Bᵀ` and `Aᵀ` of F(2,3) and F(4,3).
    const BT2: [[f32; 4]; 4] = [
        [1.0, 0.0, -1.0, 0.0],
        [0.0, 1.0, 1.0, 0.0],
        [0.0, -1.0, 1.0, 0.0],
        [0.0, 1.0, 0.0, -1.0],
    ];
    const AT2: [[f32; 4]; 2] = [[1.0, 1.0, 1.0, 0.0], [0.0, 1.0, -1.0, -1.0]];
    const BT4: [[f32; 6]; 6] = [
        [4.0, 0.0, -5.0, 0.0, 1.0, 0.0],
        [0.0, -4.0, -4.0, 1.0, 1.0, 0.0],
        [0.0, 4.0, -4.0, -1.0, 1.0, 0.0],
        [0.0, -2.0, -1.0, 2.0, 1.0, 0.0],
        [0.0, 2.0, -1.0, -2.0, 1.0, 0.0],
        [0.0, 4.0, 0.0, -5.0, 0.0, 1.0],
    ];
    const AT4: [[f32; 6]; 4] = [
        [1.0, 1.0, 1.0, 1.0, 1.0, 0.0],
        [0.0, 1.0, -1.0, 2.0, -2.0, 0.0],
        [0.0, 1.0, 1.0, 4.0, 4.0, 0.0],
        [0.0, 1.0, -1.0, 8.0, -8.0, 1.0],
    ];

    /// `check(rows of the matrix, transform)`: applies the transform to unit
    /// vectors and compares each column with the matrix's.
    fn check<const R: usize, const A: usize>(
        mat: &[[f32; A]; R],
        f: impl Fn(&[Lanes; A]) -> [Lanes; R],
    ) {
        for j in 0..A {
            let mut e = [[0.0f32; LANES]; A];
            e[j] = [1.0; LANES];
            let out = f(&e);
            for r in 0..R {
                assert_eq!(out[r][0], mat[r][j], "entry ({r}, {j})");
            }
        }
    }

    #[test]
    fn transforms_match_their_matrices() {
        check(&BT2, F2::bt);
        check(&AT2, F2::at);
        check(&BT4, F4::bt);
        check(&AT4, F4::at);
    }
}
