//! Backward-data and backward-weight, each by its direct kernel where that
//! applies, else by the GEMM lowering over chunks of output rows (`col2im`
//! for the input gradient), and the bias gradient.

use super::forward::{im2col_rows, valid_range};
use super::{
    Conv2dGeometry, GemmA, Mm, Weights, check_len, col_len, direct_scratch_len, direct_shape,
    packed_weights_len, pad_direct_input, pass_weights, uses_direct,
};
use crate::kernels::conv_direct::{self, DirectPost, DirectShape};
use crate::kernels::dispatch::Kernels;
use crate::kernels::gemm::{Gemm, PackB, gemm_scratch_len_with};

/// The direct kernel's shape for the input gradient of `g`: a stride-1
/// correlation of the output gradient, padded by `(k − 1)·d − pad` on each
/// side, with the weights flipped and their channel roles swapped.
fn direct_transposed_shape(g: &Conv2dGeometry) -> DirectShape {
    let (eh, ew) = ((g.kh - 1) * g.dilation[0], (g.kw - 1) * g.dilation[1]);
    DirectShape {
        c_in: g.c_out,
        c_out: g.c_in,
        kh: g.kh,
        kw: g.kw,
        dilation: g.dilation,
        hp: g.out_h() + 2 * eh - g.pad[0] - g.pad[2],
        wp: g.out_w() + 2 * ew - g.pad[1] - g.pad[3],
        oh: g.h,
        ow: g.w,
    }
}

/// Scratch of the direct input gradient: the flipped weights, then the
/// padded output gradient with its tail.
fn direct_backward_data_scratch_len(g: &Conv2dGeometry) -> usize {
    let s = direct_transposed_shape(g);
    g.weight_len() + s.c_in * s.hp * s.wp + conv_direct::tail_len(&s)
}

/// Whether the input gradient uses the direct kernel of `kern` (as a
/// correlation of the padded output gradient): the forward is direct with
/// several output positions, at most 16 input channels, no padding beyond
/// the dilated kernel's reach, and the scratch of the GEMM path suffices.
fn uses_direct_backward_data(kern: &Kernels, g: &Conv2dGeometry) -> bool {
    let (eh, ew) = ((g.kh - 1) * g.dilation[0], (g.kw - 1) * g.dilation[1]);
    kern.conv_direct.is_some()
        && uses_direct(kern, g)
        && g.stride == [1, 1]
        && !g.is_plain_product()
        && g.c_in <= conv_direct::DIRECT_MAX_C_OUT
        && g.pad[0].max(g.pad[2]) <= eh
        && g.pad[1].max(g.pad[3]) <= ew
        && direct_backward_data_scratch_len(g) <= conv2d_backward_scratch_len(kern, g)
}

/// Flips the OIHW weights of `g` into the transposed kernel's layout
/// `wt[c][co][kh − 1 − r][kw − 1 − q] = w[co][c][r][q]`.
fn flip_weights(g: &Conv2dGeometry, w: &[f32], wt: &mut [f32]) {
    let taps = g.kh * g.kw;
    for co in 0..g.c_out {
        for c in 0..g.c_in {
            let src = &w[(co * g.c_in + c) * taps..(co * g.c_in + c + 1) * taps];
            let dst = &mut wt[(c * g.c_out + co) * taps..(c * g.c_out + co + 1) * taps];
            for (d, v) in dst.iter_mut().zip(src.iter().rev()) {
                *d = *v;
            }
        }
    }
}

/// The direct input gradient of one image: pad `dy` into `xp`, then the
/// direct kernel with the flipped weights `wt` straight into `dx`.
fn backward_data_direct_image(
    kern: &Kernels,
    g: &Conv2dGeometry,
    wt: &[f32],
    dy: &[f32],
    dx: &mut [f32],
    xp: &mut [f32],
) {
    let Some(direct) = kern.conv_direct else {
        unreachable!("backward_data_direct_image: variant {} has none", kern.name)
    };
    let s = direct_transposed_shape(g);
    let (oh, ow) = (g.out_h(), g.out_w());
    let top = (g.kh - 1) * g.dilation[0] - g.pad[0];
    let left = (g.kw - 1) * g.dilation[1] - g.pad[1];
    xp.fill(0.0);
    for co in 0..g.c_out {
        for oy in 0..oh {
            let dst = (co * s.hp + oy + top) * s.wp + left;
            xp[dst..dst + ow].copy_from_slice(&dy[(co * oh + oy) * ow..(co * oh + oy + 1) * ow]);
        }
    }
    // SAFETY: the padded gradient has its tail, the flipped weights are
    // c_in × c_out × kh × kw, dx is one image; the shape is consistent
    // (direct_transposed_shape) with at most 16 output channels
    // (uses_direct_backward_data); the table checked the CPU's features.
    unsafe { direct(&s, xp, wt, DirectPost::default(), dx) };
}

/// The direct input gradient of the whole batch, images over the thread
/// pool when worth it (each image's values come from one task, so the bits
/// do not depend on the thread count); `scratch` holds
/// [`direct_backward_data_scratch_len`] floats when `threaded` is false.
fn backward_data_direct(
    kern: &Kernels,
    g: &Conv2dGeometry,
    w: &[f32],
    dy: &[f32],
    dx: &mut [f32],
    scratch: &mut [f32],
    threaded: bool,
) {
    let (in_img, out_img) = (g.c_in * g.h * g.w, g.c_out * g.out_h() * g.out_w());
    let (wt, rest) = scratch.split_at_mut(g.weight_len());
    flip_weights(g, w, wt);
    let dx = &mut dx[..g.input_len()];
    #[cfg(feature = "std")]
    if threaded {
        use crate::kernels::gemm::{Slot, with_scratch};
        use crate::kernels::parallel::for_each_chunk_mut;
        let len = direct_backward_data_scratch_len(g) - g.weight_len();
        let wt = &*wt;
        for_each_chunk_mut(dx, in_img, g.flops() / 2, |img, dxi| {
            with_scratch(Slot::Conv, len, |xp| {
                let dyi = &dy[img * out_img..(img + 1) * out_img];
                backward_data_direct_image(kern, g, wt, dyi, dxi, xp)
            });
        });
        return;
    }
    let _ = threaded;
    let xp = &mut rest[..direct_backward_data_scratch_len(g) - g.weight_len()];
    for (img, dxi) in dx.chunks_exact_mut(in_img).enumerate() {
        let dyi = &dy[img * out_img..(img + 1) * out_img];
        backward_data_direct_image(kern, g, wt, dyi, dxi, xp);
    }
}

/// Whether the weight gradient uses the direct backward-weight kernel of
/// `kern`: the forward is direct with several output positions, the kernel
/// is at most [`conv_direct::DIRECT_MAX_KW_BACKWARD`] wide, and the padded
/// input fits in the scratch the GEMM path would use for its columns.
fn uses_direct_backward_weight(kern: &Kernels, g: &Conv2dGeometry) -> bool {
    kern.conv_direct_backward_weight.is_some()
        && uses_direct(kern, g)
        && g.stride == [1, 1]
        && g.c_out <= conv_direct::DIRECT_MAX_C_OUT
        && g.kw <= conv_direct::DIRECT_MAX_KW_BACKWARD
        && !g.is_plain_product()
        && direct_scratch_len(g) <= col_len(g)
}

/// [`backward_weight_direct`] over the thread pool: each task owns the
/// gradient rows of some output channels and runs the whole batch for them,
/// so every sum's order is the serial one.
#[cfg(feature = "std")]
fn backward_weight_direct_threaded(
    kern: &Kernels,
    g: &Conv2dGeometry,
    x: &[f32],
    dy: &[f32],
    dw: &mut [f32],
    accumulate: bool,
) {
    use crate::kernels::gemm::{Slot, with_scratch};
    use crate::kernels::parallel::for_each_chunk_mut;
    let taps = g.col_rows();
    // Two channels per task: enough tasks for two threads at LeNet's 6 and
    // 16 channels.
    const CHANNELS: usize = 2;
    let dw = &mut dw[..g.c_out * taps];
    let len = direct_scratch_len(g);
    for_each_chunk_mut(dw, CHANNELS * taps, g.flops() / 2, |t, rows| {
        let co0 = t * CHANNELS;
        let co1 = co0 + rows.len() / taps;
        with_scratch(Slot::Conv, len, |scratch| {
            backward_weight_direct(kern, g, x, dy, rows, (co0, co1), accumulate, scratch)
        });
    });
}

/// The direct weight gradient of output channels `co` (a range) over the
/// whole batch, images in order, into `dw` (those channels' gradient rows);
/// `scratch` holds [`direct_scratch_len`] floats.
fn backward_weight_direct(
    kern: &Kernels,
    g: &Conv2dGeometry,
    x: &[f32],
    dy: &[f32],
    dw: &mut [f32],
    co: (usize, usize),
    accumulate: bool,
    scratch: &mut [f32],
) {
    let Some(bw) = kern.conv_direct_backward_weight else {
        unreachable!("backward_weight_direct: variant {} has none", kern.name)
    };
    let s = direct_shape(g);
    let (in_img, out_img) = (g.c_in * g.h * g.w, g.c_out * s.oh * s.ow);
    let xp = &mut scratch[..direct_scratch_len(g)];
    for img in 0..g.n {
        pad_direct_input(g, &s, &x[img * in_img..(img + 1) * in_img], xp);
        let dyi = &dy[img * out_img..(img + 1) * out_img];
        // SAFETY: the padded input has its tail, dy one image, dw the whole
        // weight gradient (check_backward_weight); the shape is
        // direct_shape's with stride 1, at most 16 channels and kw within
        // the kernel's limit (uses_direct_backward_weight); the table
        // checked the CPU's features.
        unsafe { bw(&s, xp, dyi, dw, co, accumulate || img > 0) };
    }
}

/// About how many output positions of the column matrix the weight
/// gradient writes and multiplies at a time.
const BACKWARD_WEIGHT_POSITIONS: usize = 512;

/// About how many output positions of the column matrix the input gradient
/// multiplies and adds back at a time.
const BACKWARD_DATA_POSITIONS: usize = 256;

/// Adds the column matrix `col` of the output rows `rows` of group `grp`
/// back into one image `dx` (the transpose of [`im2col_rows`]; `col` is `k`
/// rows of `rows.len() · out_w` values, `ld` apart).
fn col2im_rows(
    g: &Conv2dGeometry,
    col: &[f32],
    ld: usize,
    grp: usize,
    rows: core::ops::Range<usize>,
    dx: &mut [f32],
) {
    let ow = g.out_w();
    let cig = g.c_in / g.groups;
    let plane = rows.len() * ow;
    for cl in 0..cig {
        let xc = &mut dx[(grp * cig + cl) * g.h * g.w..(grp * cig + cl + 1) * g.h * g.w];
        for r in 0..g.kh {
            for s in 0..g.kw {
                let row = (cl * g.kh + r) * g.kw + s;
                let src = &col[row * ld..row * ld + plane];
                let (lo, hi) = valid_range(ow, g.w, g.stride[1], s * g.dilation[1], g.pad[1]);
                if lo >= hi {
                    continue;
                }
                for (i, oy) in rows.clone().enumerate() {
                    let iy = (oy * g.stride[0] + r * g.dilation[0]) as isize - g.pad[0] as isize;
                    if iy < 0 || iy >= g.h as isize {
                        continue;
                    }
                    let d = &mut xc[iy as usize * g.w..(iy as usize + 1) * g.w];
                    let srow = &src[i * ow..(i + 1) * ow];
                    let ix0 = lo * g.stride[1] + s * g.dilation[1] - g.pad[1];
                    if g.stride[1] == 1 {
                        for (dv, sv) in d[ix0..ix0 + (hi - lo)].iter_mut().zip(&srow[lo..hi]) {
                            *dv += *sv;
                        }
                    } else {
                        for (k, sv) in srow[lo..hi].iter().enumerate() {
                            d[ix0 + k * g.stride[1]] += *sv;
                        }
                    }
                }
            }
        }
    }
}

/// The scratch length (floats) of [`conv2d_backward_data_serial`] and
/// [`conv2d_backward_weight_serial`] (also that of the transposed
/// convolution's serial forward).
pub fn conv2d_backward_scratch_len(kern: &Kernels, g: &Conv2dGeometry) -> usize {
    let gd = Gemm::new(g.col_rows(), g.out_h() * g.out_w(), g.c_out / g.groups);
    let gw = Gemm::new(g.c_out / g.groups, g.col_rows(), g.out_h() * g.out_w());
    // The transposed weight gradient (`swaps_weight_gradient`).
    let gs = Gemm::new(g.col_rows(), g.c_out / g.groups, g.out_h() * g.out_w());
    packed_weights_len(kern, g, true)
        + backward_data_col_len(g)
        + gemm_scratch_len_with(kern, &gd)
            .max(gemm_scratch_len_with(kern, &backward_data_gemm(g)))
            .max(gemm_scratch_len_with(kern, &gw))
            .max(gemm_scratch_len_with(kern, &gs))
}

/// Images whose input gradients backward-data computes with one GEMM: one
/// image's product has a column per output position, and a small plane
/// fills its last tile of columns poorly (7 × 7 = 49 columns use 49 of the
/// 64 lanes of two 32-wide tiles), so the whole planes of several images
/// go side by side, up to [`BACKWARD_DATA_POSITIONS`] columns (five 7 × 7
/// planes, 245 of 256 lanes). Not for a plain product, whose GEMM writes
/// each image's input gradient in place.
fn backward_data_fold(g: &Conv2dGeometry) -> usize {
    let plane = g.out_h() * g.out_w();
    if g.n < 2 || g.is_plain_product() || 2 * plane > BACKWARD_DATA_POSITIONS {
        return 1;
    }
    (BACKWARD_DATA_POSITIONS / plane).min(g.n)
}

/// Floats of backward-data's column matrix: the folded images' planes
/// ([`backward_data_fold`]).
fn backward_data_col_len(g: &Conv2dGeometry) -> usize {
    col_len(g) * backward_data_fold(g)
}

/// The output gradients of several images side by side: `op(B)` of
/// backward-data's folded GEMM, the `cog` output channels of one group
/// (from channel `c0`) by `images · plane` columns, column `i·plane + q`
/// being position `q` of image `i`.
struct FoldedDy<'a> {
    dy: &'a [f32],
    c0: usize,
    c_out: usize,
    plane: usize,
}

impl PackB for FoldedDy<'_> {
    fn pack_b(&self, pc: usize, kb: usize, jc: usize, nb: usize, nr: usize, out: &mut [f32]) {
        let plane = self.plane;
        for (panel, jr) in (0..nb).step_by(nr).enumerate() {
            let nw = nr.min(nb - jr);
            // The panel's columns cut where an image's plane ends, once per
            // panel: (column, offset of the image's position, length).
            let mut runs = [(0usize, 0usize, 0usize); crate::kernels::dispatch::MAX_NR];
            let mut count = 0;
            let mut o = 0;
            while o < nw {
                let (img, q) = ((jc + jr + o) / plane, (jc + jr + o) % plane);
                let len = (plane - q).min(nw - o);
                runs[count] = (o, img * self.c_out * plane + q, len);
                count += 1;
                o += len;
            }
            let dst = &mut out[panel * kb * nr..(panel + 1) * kb * nr];
            for (p, d) in dst.chunks_exact_mut(nr).take(kb).enumerate() {
                let channel = (self.c0 + pc + p) * plane;
                for &(o, at, len) in &runs[..count] {
                    d[o..o + len].copy_from_slice(&self.dy[channel + at..channel + at + len]);
                }
                d[nw..].fill(0.0);
            }
        }
    }
}

/// Output rows per chunk of backward-data's column matrix.
fn backward_data_rows(g: &Conv2dGeometry) -> usize {
    (BACKWARD_DATA_POSITIONS / g.out_w()).max(1)
}

/// Backward-data's largest GEMM of one image and group (`W_gᵀ` times a
/// chunk of the output gradient's positions, or the whole plane for a
/// plain product).
fn backward_data_gemm(g: &Conv2dGeometry) -> Gemm {
    let (k, cog, plane) = (g.col_rows(), g.c_out / g.groups, g.out_h() * g.out_w());
    let fold = backward_data_fold(g);
    if fold > 1 {
        Gemm::new(k, fold * plane, cog).transpose_a()
    } else if g.is_plain_product() {
        Gemm::new(k, plane, cog).transpose_a()
    } else {
        let positions = backward_data_rows(g).min(g.out_h()) * g.out_w();
        Gemm {
            ldb: plane,
            ..Gemm::new(k, positions, cog).transpose_a()
        }
    }
}

/// Backward-data of the consecutive images from `img0` that `dx` holds
/// (`dy`: the whole batch's output gradient), their planes side by side in
/// one GEMM per group when there are several ([`backward_data_fold`]).
#[allow(clippy::too_many_arguments)]
fn backward_data_images(
    kern: &Kernels,
    g: &Conv2dGeometry,
    w: Weights<'_>,
    dy: &[f32],
    img0: usize,
    dx: &mut [f32],
    col: &mut [f32],
    mm: &mut Mm<'_>,
) {
    let plane = g.out_h() * g.out_w();
    let cog = g.c_out / g.groups;
    let cig = g.c_in / g.groups;
    let k = g.col_rows();
    let hw = g.h * g.w;
    let in_img = g.c_in * hw;
    let images = dx.len() / in_img;
    let out_img = g.c_out * plane;
    let dy = &dy[img0 * out_img..(img0 + images) * out_img];
    for grp in 0..g.groups {
        let wg = w.group(grp);
        if images > 1 {
            let cols = images * plane;
            let chunk = &mut col[..k * cols];
            let b = FoldedDy {
                dy,
                c0: grp * cog,
                c_out: g.c_out,
                plane,
            };
            let gm = Gemm::new(k, cols, cog).transpose_a();
            mm.run_custom(kern, &gm, wg.operand(), &b, chunk, &[]);
            for (i, dxi) in dx.chunks_exact_mut(in_img).enumerate() {
                dxi[grp * cig * hw..(grp + 1) * cig * hw].fill(0.0);
                col2im_rows(g, &chunk[i * plane..], cols, grp, 0..g.out_h(), dxi);
            }
            continue;
        }
        let dyg = &dy[grp * cog * plane..(grp + 1) * cog * plane];
        // op(A) = W_gᵀ: W_g is stored cog × k.
        let gm = Gemm::new(k, plane, cog).transpose_a();
        if g.is_plain_product() {
            mm.run(
                kern,
                &gm,
                wg,
                dyg,
                &mut dx[grp * cig * hw..(grp + 1) * cig * hw],
                &[],
            );
        } else {
            // A few output rows at a time, as the weight gradient does: each
            // chunk of the column matrix stays in L2 between the GEMM that
            // writes it and the col2im that adds it into dx.
            dx[grp * cig * hw..(grp + 1) * cig * hw].fill(0.0);
            let ow = g.out_w();
            let rows_per = backward_data_rows(g);
            let mut oy = 0;
            while oy < g.out_h() {
                let rows = oy..(oy + rows_per).min(g.out_h());
                let positions = rows.len() * ow;
                let chunk = &mut col[..k * positions];
                let gm = Gemm {
                    ldb: plane,
                    ..Gemm::new(k, positions, cog).transpose_a()
                };
                mm.run(kern, &gm, wg, &dyg[oy * ow..], chunk, &[]);
                col2im_rows(g, chunk, positions, grp, rows.clone(), dx);
                oy = rows.end;
            }
        }
    }
}

fn check_backward_data(g: &Conv2dGeometry, w: &[f32], dy: &[f32], dx: &[f32]) {
    g.assert_valid();
    check_len("weight", w.len(), g.weight_len());
    check_len("output gradient", dy.len(), g.output_len());
    check_len("input gradient", dx.len(), g.input_len());
}

/// `dx = ∂(Σ dy·y)/∂x` (overwritten) on the calling thread, allocation-free,
/// with `scratch` of at least [`conv2d_backward_scratch_len`] floats.
///
/// # Panics
///
/// If the geometry is invalid or a buffer is too short (a caller bug).
pub fn conv2d_backward_data_serial(
    kern: &Kernels,
    g: &Conv2dGeometry,
    w: &[f32],
    dy: &[f32],
    dx: &mut [f32],
    scratch: &mut [f32],
) {
    check_backward_data(g, w, dy, dx);
    check_len(
        "scratch",
        scratch.len(),
        conv2d_backward_scratch_len(kern, g),
    );
    if uses_direct_backward_data(kern, g) {
        return backward_data_direct(kern, g, w, dy, dx, scratch, false);
    }
    let in_img = g.c_in * g.h * g.w;
    let (pw, rest) = scratch.split_at_mut(packed_weights_len(kern, g, true));
    let wts = pass_weights(kern, g, w, true, &backward_data_gemm(g), pw);
    let (col, pack) = rest.split_at_mut(backward_data_col_len(g));
    let mut mm = Mm::Serial(pack);
    let fold = backward_data_fold(g);
    for (i, dxi) in dx[..g.input_len()].chunks_mut(fold * in_img).enumerate() {
        backward_data_images(kern, g, wts, dy, i * fold, dxi, col, &mut mm);
    }
}

/// `dx = ∂(Σ dy·y)/∂x` (overwritten) over the thread pool.
///
/// # Panics
///
/// If the geometry is invalid or a buffer is too short (a caller bug).
#[cfg(feature = "std")]
pub fn conv2d_backward_data(
    kern: &Kernels,
    g: &Conv2dGeometry,
    w: &[f32],
    dy: &[f32],
    dx: &mut [f32],
) {
    use crate::kernels::gemm::{Slot, with_scratch};
    use crate::kernels::parallel::{for_each_chunk_mut, worth_parallel};
    check_backward_data(g, w, dy, dx);
    if uses_direct_backward_data(kern, g) {
        return with_scratch(Slot::Weights, g.weight_len(), |wt| {
            backward_data_direct(kern, g, w, dy, dx, wt, true)
        });
    }
    let in_img = g.c_in * g.h * g.w;
    let dx = &mut dx[..g.input_len()];
    let work = g.flops() / 2;
    with_scratch(Slot::Weights, packed_weights_len(kern, g, true), |pw| {
        let wts = pass_weights(kern, g, w, true, &backward_data_gemm(g), pw);
        let fold = backward_data_fold(g);
        if g.n > 1 && worth_parallel(work) {
            let len = conv2d_backward_scratch_len(kern, g);
            for_each_chunk_mut(dx, fold * in_img, work, |i, dxi| {
                with_scratch(Slot::Conv, len, |scratch| {
                    let (col, pack) = scratch.split_at_mut(backward_data_col_len(g));
                    let mm = &mut Mm::Serial(pack);
                    backward_data_images(kern, g, wts, dy, i * fold, dxi, col, mm);
                });
            });
            return;
        }
        with_scratch(Slot::Conv, backward_data_col_len(g), |col| {
            for (i, dxi) in dx.chunks_mut(fold * in_img).enumerate() {
                backward_data_images(kern, g, wts, dy, i * fold, dxi, col, &mut Mm::Threaded);
            }
        });
    });
}

/// All images of backward-weight, in batch order, through `mm`.
fn backward_weight_images(
    kern: &Kernels,
    g: &Conv2dGeometry,
    x: &[f32],
    dy: &[f32],
    dw: &mut [f32],
    accumulate: bool,
    col: &mut [f32],
    mm: &mut Mm<'_>,
) {
    if swaps_weight_gradient(g) {
        return backward_weight_swapped(kern, g, x, dy, dw, accumulate, col, mm);
    }
    let plane = g.out_h() * g.out_w();
    let cog = g.c_out / g.groups;
    let cig = g.c_in / g.groups;
    let k = g.col_rows();
    let hw = g.h * g.w;
    let (in_img, out_img) = (g.c_in * hw, g.c_out * plane);
    for img in 0..g.n {
        let xi = &x[img * in_img..(img + 1) * in_img];
        let beta = if accumulate || img > 0 { 1.0 } else { 0.0 };
        for grp in 0..g.groups {
            let dyg =
                &dy[img * out_img + grp * cog * plane..img * out_img + (grp + 1) * cog * plane];
            let dwg = &mut dw[grp * cog * k..(grp + 1) * cog * k];
            if g.is_plain_product() {
                // op(B) = xᵀ: the input is k × plane.
                let gm = Gemm::new(cog, k, plane).transpose_b().scaled(1.0, beta);
                let b = &xi[grp * cig * hw..(grp + 1) * cig * hw];
                mm.run(kern, &gm, GemmA::Plain(dyg), b, dwg, &[]);
                continue;
            }
            // op(B) = colᵀ, a few output rows at a time: each chunk of the
            // column matrix (k × positions) is written once, stays in L2
            // while GEMM packs it by register transposes, and adds its
            // positions' share to dw in order. Measured at ResNet-18's 3×3
            // shapes at batch 32 (`--bench conv_resnet18`), this is
            // 1.0–1.7× the implicit im2col that gathered colᵀ element by
            // element into the packed panels.
            let ow = g.out_w();
            let rows_per = (BACKWARD_WEIGHT_POSITIONS / ow).max(1);
            let mut oy = 0;
            while oy < g.out_h() {
                let rows = oy..(oy + rows_per).min(g.out_h());
                let positions = rows.len() * ow;
                let chunk = &mut col[..k * positions];
                im2col_rows(g, xi, grp, rows.clone(), chunk);
                let first = oy == 0 && beta == 0.0;
                let gm = Gemm {
                    lda: plane,
                    ..Gemm::new(cog, k, positions)
                        .transpose_b()
                        .scaled(1.0, if first { 0.0 } else { 1.0 })
                };
                mm.run(kern, &gm, GemmA::Plain(&dyg[oy * ow..]), chunk, dwg, &[]);
                oy = rows.end;
            }
        }
    }
}

/// The output rows of one chunk of the weight gradient's column matrix.
fn backward_weight_rows(g: &Conv2dGeometry) -> usize {
    (BACKWARD_WEIGHT_POSITIONS / g.out_w().max(1))
        .max(1)
        .min(g.out_h())
}

/// Whether the weight gradient of `g` is computed transposed, `dWᵀ = col ·
/// dYᵀ` ([`backward_weight_swapped`]): one group, fewer than 96 output
/// channels (64 fill 5⅓ of the 12-row tiles as GEMM rows, but exactly two
/// 32-wide tiles as its columns), and room in the column buffer for both a
/// chunk and the `k × c_out` transposed gradient. At ResNet-18's 64@56 at
/// batch 32 (`--bench conv_resnet18`) it ran at 88–95 GFLOP/s against
/// 71–84 untransposed (see `BENCHMARKS.md`).
fn swaps_weight_gradient(g: &Conv2dGeometry) -> bool {
    let plane = g.out_h() * g.out_w();
    g.groups == 1
        && !g.is_plain_product()
        && g.c_out < 96
        && backward_weight_rows(g) * g.out_w() + g.c_out <= plane
}

/// The weight gradient as `dWᵀ (k × c_out) = Σ col · dYᵀ`, accumulated over
/// every chunk of every image in order in the column buffer's tail, then
/// transposed into `dw` (added to it with `accumulate`).
#[allow(clippy::too_many_arguments)]
fn backward_weight_swapped(
    kern: &Kernels,
    g: &Conv2dGeometry,
    x: &[f32],
    dy: &[f32],
    dw: &mut [f32],
    accumulate: bool,
    col: &mut [f32],
    mm: &mut Mm<'_>,
) {
    let (ow, plane) = (g.out_w(), g.out_h() * g.out_w());
    let (k, cog) = (g.col_rows(), g.c_out);
    let (in_img, out_img) = (g.c_in * g.h * g.w, g.c_out * plane);
    let rows_per = backward_weight_rows(g);
    let (chunk_buf, rest) = col.split_at_mut(k * rows_per * ow);
    let ct = &mut rest[..k * cog];
    let mut first = true;
    for img in 0..g.n {
        let xi = &x[img * in_img..(img + 1) * in_img];
        let dyi = &dy[img * out_img..(img + 1) * out_img];
        let mut oy = 0;
        while oy < g.out_h() {
            let rows = oy..(oy + rows_per).min(g.out_h());
            let positions = rows.len() * ow;
            let chunk = &mut chunk_buf[..k * positions];
            im2col_rows(g, xi, 0, rows.clone(), chunk);
            // op(B) = dYᵀ: the chunk's columns of dY, rows `plane` apart.
            let gm = Gemm {
                ldb: plane,
                ..Gemm::new(k, cog, positions)
                    .transpose_b()
                    .scaled(1.0, if first { 0.0 } else { 1.0 })
            };
            mm.run(kern, &gm, GemmA::Plain(chunk), &dyi[oy * ow..], ct, &[]);
            first = false;
            oy = rows.end;
        }
    }
    if first {
        ct.fill(0.0);
    }
    for (co, row) in dw[..cog * k].chunks_exact_mut(k).enumerate() {
        for (j, d) in row.iter_mut().enumerate() {
            let v = ct[j * cog + co];
            *d = if accumulate { *d + v } else { v };
        }
    }
}

fn check_backward_weight(g: &Conv2dGeometry, x: &[f32], dy: &[f32], dw: &[f32]) {
    g.assert_valid();
    check_len("input", x.len(), g.input_len());
    check_len("output gradient", dy.len(), g.output_len());
    check_len("weight gradient", dw.len(), g.weight_len());
}

/// `dw (+)= ∂(Σ dy·y)/∂w` on the calling thread, allocation-free, with
/// `scratch` of at least [`conv2d_backward_scratch_len`] floats. With
/// `accumulate` the gradient is added to `dw`, else it overwrites it.
///
/// # Panics
///
/// If the geometry is invalid or a buffer is too short (a caller bug).
pub fn conv2d_backward_weight_serial(
    kern: &Kernels,
    g: &Conv2dGeometry,
    x: &[f32],
    dy: &[f32],
    dw: &mut [f32],
    accumulate: bool,
    scratch: &mut [f32],
) {
    check_backward_weight(g, x, dy, dw);
    check_len(
        "scratch",
        scratch.len(),
        conv2d_backward_scratch_len(kern, g),
    );
    if uses_direct_backward_weight(kern, g) {
        let all = (0, g.c_out);
        return backward_weight_direct(kern, g, x, dy, dw, all, accumulate, scratch);
    }
    let (col, pack) = scratch.split_at_mut(col_len(g));
    backward_weight_images(kern, g, x, dy, dw, accumulate, col, &mut Mm::Serial(pack));
}

/// `dw (+)= ∂(Σ dy·y)/∂w` with each image's GEMM over the thread pool
/// (images in batch order, so the sum's order is fixed).
///
/// # Panics
///
/// If the geometry is invalid or a buffer is too short (a caller bug).
#[cfg(feature = "std")]
pub fn conv2d_backward_weight(
    kern: &Kernels,
    g: &Conv2dGeometry,
    x: &[f32],
    dy: &[f32],
    dw: &mut [f32],
    accumulate: bool,
) {
    use crate::kernels::gemm::{Slot, with_scratch};
    check_backward_weight(g, x, dy, dw);
    if uses_direct_backward_weight(kern, g) {
        return backward_weight_direct_threaded(kern, g, x, dy, dw, accumulate);
    }
    with_scratch(Slot::Conv, col_len(g), |col| {
        backward_weight_images(kern, g, x, dy, dw, accumulate, col, &mut Mm::Threaded)
    });
}

/// `db (+)= Σ dy[·, c, ·, ·]`, per output channel, images and positions in
/// order.
///
/// # Panics
///
/// If a buffer is too short (a caller bug).
pub fn conv2d_backward_bias(g: &Conv2dGeometry, dy: &[f32], db: &mut [f32], accumulate: bool) {
    g.assert_valid();
    check_len("output gradient", dy.len(), g.output_len());
    check_len("bias gradient", db.len(), g.c_out);
    channel_sums(dy, g.n, g.c_out, g.out_h() * g.out_w(), db, accumulate);
}

pub(in crate::kernels) fn channel_sums(
    t: &[f32],
    n: usize,
    c: usize,
    plane: usize,
    out: &mut [f32],
    accumulate: bool,
) {
    if !accumulate {
        out[..c].fill(0.0);
    }
    for img in 0..n {
        for ch in 0..c {
            let at = (img * c + ch) * plane;
            // Eight running sums, combined in a fixed order.
            let mut acc = [0.0f32; 8];
            let src = &t[at..at + plane];
            let mut chunks = src.chunks_exact(8);
            for ck in &mut chunks {
                for (a, v) in acc.iter_mut().zip(ck) {
                    *a += *v;
                }
            }
            let mut s =
                ((acc[0] + acc[4]) + (acc[1] + acc[5])) + ((acc[2] + acc[6]) + (acc[3] + acc[7]));
            for v in chunks.remainder() {
                s += *v;
            }
            out[ch] += s;
        }
    }
}
