//! The forward pass: the GEMM lowering (implicit or explicit im2col, the
//! shifted and batch-folded stride-1 paths), the direct kernels, the entry
//! points (Winograd's routing among them), and the weights packed in
//! advance.

use super::{
    Conv2dGeometry, ConvEpilogue, MAX_EPILOGUE, Mm, Weights, apply_epilogue_in_place,
    channel_epilogue, check_conv_epilogue, check_len, col_len, direct_post, direct_scratch_len,
    direct_shape, gemm_epilogue, packed_weights_len, packs_weights, pad_direct_input, pass_weights,
    prepare_weights, uses_channel_lanes, uses_direct, uses_winograd, uses_winograd_per_call,
    weight_gemm,
};
use crate::kernels::conv_direct_channels;
use crate::kernels::dispatch::Kernels;
use crate::kernels::gemm::{Epilogue, Gemm, PackB, gemm_scratch_len_with, packed_a_len};
use crate::kernels::winograd;

/// Scratch of the direct forward pass given OIHW weights: the tap-major
/// weights of the channel-lane kernel (written once per call), then the
/// padded input.
fn direct_forward_scratch_len(kern: &Kernels, g: &Conv2dGeometry) -> usize {
    direct_weights_len(kern, g) + direct_scratch_len(g)
}

/// Floats of the weights the direct kernel reads that are not the OIHW
/// weights themselves: the channel-lane kernel's tap-major copy.
pub(in crate::kernels) fn direct_weights_len(kern: &Kernels, g: &Conv2dGeometry) -> usize {
    if uses_channel_lanes(kern, g) {
        g.weight_len()
    } else {
        0
    }
}

/// The OIHW weights `w` as the direct kernel of `g` reads them: as they
/// are, or tap-major in `buf` ([`direct_weights_len`] floats) for the
/// channel-lane kernel.
pub(in crate::kernels) fn direct_weights<'a>(
    kern: &Kernels,
    g: &Conv2dGeometry,
    w: &'a [f32],
    buf: &'a mut [f32],
) -> Weights<'a> {
    if uses_channel_lanes(kern, g) {
        conv_direct_channels::channel_major_weights(&direct_shape(g), w, buf);
        Weights {
            channel_major: true,
            ..Weights::stored(g, buf)
        }
    } else {
        Weights::stored(g, w)
    }
}

/// Writes group `grp` of one image `x` into the column matrix `col`
/// (`col_rows × out_h·out_w`, row `(c·kh + r)·kw + s`).
fn im2col(g: &Conv2dGeometry, x: &[f32], grp: usize, col: &mut [f32]) {
    im2col_rows(g, x, grp, 0..g.out_h(), col);
}

/// [`im2col`] for the output rows `rows` only: `col` is `k × (rows.len() ·
/// out_w)`, its positions those of the rows in order.
pub(super) fn im2col_rows(
    g: &Conv2dGeometry,
    x: &[f32],
    grp: usize,
    rows: core::ops::Range<usize>,
    col: &mut [f32],
) {
    let ow = g.out_w();
    let cig = g.c_in / g.groups;
    let plane = rows.len() * ow;
    for cl in 0..cig {
        let xc = &x[(grp * cig + cl) * g.h * g.w..(grp * cig + cl + 1) * g.h * g.w];
        for r in 0..g.kh {
            for s in 0..g.kw {
                let row = (cl * g.kh + r) * g.kw + s;
                let dst = &mut col[row * plane..(row + 1) * plane];
                let (lo, hi) = valid_range(ow, g.w, g.stride[1], s * g.dilation[1], g.pad[1]);
                for (i, oy) in rows.clone().enumerate() {
                    let d = &mut dst[i * ow..(i + 1) * ow];
                    let iy = (oy * g.stride[0] + r * g.dilation[0]) as isize - g.pad[0] as isize;
                    if iy < 0 || iy >= g.h as isize || lo >= hi {
                        d.fill(0.0);
                        continue;
                    }
                    let src = &xc[iy as usize * g.w..(iy as usize + 1) * g.w];
                    d[..lo].fill(0.0);
                    d[hi..].fill(0.0);
                    let ix0 = lo * g.stride[1] + s * g.dilation[1] - g.pad[1];
                    if g.stride[1] == 1 {
                        d[lo..hi].copy_from_slice(&src[ix0..ix0 + (hi - lo)]);
                    } else {
                        for (k, v) in d[lo..hi].iter_mut().enumerate() {
                            *v = src[ix0 + k * g.stride[1]];
                        }
                    }
                }
            }
        }
    }
}

/// The column matrix of one image and group, never stored: it packs its
/// GEMM panels straight from the input (an implicit im2col), one cache block
/// at a time, copying runs of consecutive output positions. As the forward
/// pass's B its rows are taps and its columns positions.
struct Im2colB<'a> {
    g: &'a Conv2dGeometry,
    /// One image.
    x: &'a [f32],
    grp: usize,
}

impl Im2colB<'_> {
    /// Writes the column-matrix values of tap `tap` at output positions
    /// `pos0 .. pos0 + len` to `out[.. len]`.
    fn gather(&self, tap: usize, pos0: usize, len: usize, out: &mut [f32]) {
        let g = self.g;
        let ow = g.out_w();
        let cig = g.c_in / g.groups;
        let taps = g.kh * g.kw;
        let (cl, r, s) = (tap / taps, (tap / g.kw) % g.kh, tap % g.kw);
        let plane = g.h * g.w;
        let xc = &self.x[(self.grp * cig + cl) * plane..(self.grp * cig + cl + 1) * plane];
        let (lo, hi) = valid_range(ow, g.w, g.stride[1], s * g.dilation[1], g.pad[1]);
        // Walk the positions one output row at a time.
        let mut o = 0;
        while o < len {
            let j = pos0 + o;
            let (oy, ox0) = (j / ow, j % ow);
            let run = (ow - ox0).min(len - o);
            let iy = (oy * g.stride[0] + r * g.dilation[0]) as isize - g.pad[0] as isize;
            let (a, b) = (lo.max(ox0), hi.min(ox0 + run));
            let src: &[f32] = if iy < 0 || iy >= g.h as isize || a >= b {
                &[]
            } else {
                &xc[iy as usize * g.w..(iy as usize + 1) * g.w]
            };
            let ix0 = (a * g.stride[1] + s * g.dilation[1]).wrapping_sub(g.pad[1]);
            let seg = &mut out[o..o + run];
            if src.is_empty() {
                seg.fill(0.0);
            } else {
                seg[..a - ox0].fill(0.0);
                seg[b - ox0..].fill(0.0);
                let valid = &mut seg[a - ox0..b - ox0];
                if g.stride[1] == 1 {
                    valid.copy_from_slice(&src[ix0..ix0 + (b - a)]);
                } else {
                    for (k, v) in valid.iter_mut().enumerate() {
                        *v = src[ix0 + k * g.stride[1]];
                    }
                }
            }
            o += run;
        }
    }
}

impl PackB for Im2colB<'_> {
    fn pack_b(&self, pc: usize, kb: usize, jc: usize, nb: usize, nr: usize, out: &mut [f32]) {
        for (panel, jr) in (0..nb).step_by(nr).enumerate() {
            let nw = nr.min(nb - jr);
            let dst = &mut out[panel * kb * nr..(panel + 1) * kb * nr];
            // Row p of the panel: tap pc + p at positions jc + jr ...
            for p in 0..kb {
                let d = &mut dst[p * nr..(p + 1) * nr];
                d[nw..].fill(0.0);
                self.gather(pc + p, jc + jr, nw, d);
            }
        }
    }
}

/// The output columns `lo .. hi` whose input column `o·stride + offset − pad`
/// lies inside `0 .. w`.
pub(super) fn valid_range(
    ow: usize,
    w: usize,
    stride: usize,
    offset: usize,
    pad: usize,
) -> (usize, usize) {
    // o·stride + offset ≥ pad  ⇔  o ≥ ⌈(pad − offset) / stride⌉.
    let lo = if offset >= pad {
        0
    } else {
        (pad - offset).div_ceil(stride)
    };
    // o·stride + offset − pad ≤ w − 1  ⇔  o ≤ ⌊(w − 1 + pad − offset) / stride⌋.
    let hi = if w + pad > offset {
        ((w - 1 + pad - offset) / stride + 1).min(ow)
    } else {
        0
    };
    (lo.min(hi), hi)
}

/// The largest GEMM of any image and group of this convolution.
fn image_gemm(g: &Conv2dGeometry) -> Gemm {
    Gemm::new(g.c_out / g.groups, g.out_h() * g.out_w(), g.col_rows())
}

/// Whether the forward pass takes the shifted path: stride 1 and a real
/// window (see [`ShiftedB`]), weights packed.
fn uses_shifted(g: &Conv2dGeometry) -> bool {
    g.stride == [1, 1] && !g.is_plain_product() && packs_weights(g)
}

/// The GEMM of one image and group of the forward pass: over the output
/// positions, or over the extended positions on the shifted path.
fn forward_gemm(g: &Conv2dGeometry) -> Gemm {
    let k = fold_images(g);
    if k > 1 {
        Gemm::new(g.c_out, k * g.out_h() * g.out_w(), g.col_rows())
    } else if uses_shifted(g) {
        let (_, wp) = padded_dims(g);
        Gemm::new(g.c_out / g.groups, g.out_h() * wp, g.col_rows())
    } else {
        image_gemm(g)
    }
}

/// The padded input's height and width.
fn padded_dims(g: &Conv2dGeometry) -> (usize, usize) {
    (g.h + g.pad[0] + g.pad[2], g.w + g.pad[1] + g.pad[3])
}

/// Floats of one image's padded input plus the zero tail the last shifted
/// panel may read.
fn shifted_input_len(g: &Conv2dGeometry) -> usize {
    let (hp, wp) = padded_dims(g);
    g.c_in * hp * wp + (g.kw - 1) * g.dilation[1] + 64
}

/// Copies one image into the zero-padded planes `xp` (and zeroes the tail).
fn pad_input(g: &Conv2dGeometry, x: &[f32], xp: &mut [f32]) {
    let (hp, wp) = padded_dims(g);
    xp.fill(0.0);
    for c in 0..g.c_in {
        for iy in 0..g.h {
            let dst = (c * hp + iy + g.pad[0]) * wp + g.pad[1];
            xp[dst..dst + g.w].copy_from_slice(&x[(c * g.h + iy) * g.w..(c * g.h + iy + 1) * g.w]);
        }
    }
}

/// The column matrix of a stride-1 convolution over the *extended*
/// positions `p = oy·Wp + ox` (`ox < Wp`) of the padded input: tap
/// `(c, r, s)` reads `xp[c·Hp·Wp + r·dh·Wp + s·dw + p]`, so each row of a
/// packed panel is one contiguous copy. Positions with `ox ≥ out_w` are
/// computed and dropped when the result is stored.
struct ShiftedB<'a> {
    /// The group's padded input planes (and the tail).
    x: &'a [f32],
    plane: usize,
    wp: usize,
    g: &'a Conv2dGeometry,
}

impl PackB for ShiftedB<'_> {
    fn pack_b(&self, pc: usize, kb: usize, jc: usize, nb: usize, nr: usize, out: &mut [f32]) {
        let g = self.g;
        let taps = g.kh * g.kw;
        for (panel, jr) in (0..nb).step_by(nr).enumerate() {
            let nw = nr.min(nb - jr);
            let dst = &mut out[panel * kb * nr..(panel + 1) * kb * nr];
            for p in 0..kb {
                let tap = pc + p;
                let (cl, r, s) = (tap / taps, (tap / g.kw) % g.kh, tap % g.kw);
                let at =
                    cl * self.plane + r * g.dilation[0] * self.wp + s * g.dilation[1] + jc + jr;
                let d = &mut dst[p * nr..(p + 1) * nr];
                d[..nw].copy_from_slice(&self.x[at..at + nw]);
                d[nw..].fill(0.0);
            }
        }
    }
}

/// Floats of the column matrix (or padded input and extended output) the
/// forward pass keeps in scratch: the shifted path's buffers, nothing when
/// it packs the column matrix implicitly, else the explicit column matrix.
fn forward_col_len(g: &Conv2dGeometry) -> usize {
    if fold_images(g) > 1 {
        fold_len(g)
    } else if uses_shifted(g) {
        let (_, wp) = padded_dims(g);
        shifted_input_len(g) + (g.c_out / g.groups) * g.out_h() * wp
    } else if packs_weights(g) && !is_strided_1x1(g) {
        0
    } else {
        col_len(g)
    }
}

/// The most output positions of one image whose batch is folded into the
/// GEMM's columns ([`fold_images`]).
const FOLD_MAX_PLANE: usize = 100;

/// About how many columns a folded GEMM has.
const FOLD_COLUMNS: usize = 512;

/// How many images of the batch the forward GEMM takes at once: its columns
/// are the positions of every image in turn, so that a small plane (ResNet's
/// 7 × 7 layers: 49 positions, under two 32-wide tiles, or 63 extended
/// positions on the shifted path) fills whole tiles. Only where the
/// shifted path would run (stride 1, [`uses_shifted`]), whose padded input
/// [`FoldedB`] packs from; one (no folding) for a single image, groups,
/// and planes of more than [`FOLD_MAX_PLANE`] positions. The count depends
/// on the geometry only, so every entry point and thread count agrees.
fn fold_images(g: &Conv2dGeometry) -> usize {
    let plane = g.out_h() * g.out_w();
    if g.n < 2 || g.groups != 1 || !uses_shifted(g) || plane > FOLD_MAX_PLANE {
        return 1;
    }
    FOLD_COLUMNS.div_ceil(plane).min(g.n)
}

/// Scratch of a folded forward GEMM: the images' padded inputs, then its
/// output (`c_out` rows of the images' positions).
fn fold_len(g: &Conv2dGeometry) -> usize {
    let (hp, wp) = padded_dims(g);
    match fold_images(g) {
        1 => 0,
        k => k * g.c_in * hp * wp + g.c_out * k * g.out_h() * g.out_w(),
    }
}

/// The column matrix of a stride-1 convolution over several images'
/// positions in turn ([`fold_images`]), packed from their padded inputs
/// (`x`: `pimg` floats per image): each panel's columns are cut once into
/// runs of one output row, and each tap's row of the panel is those runs'
/// copies at the tap's offset.
struct FoldedB<'a> {
    x: &'a [f32],
    pimg: usize,
    g: &'a Conv2dGeometry,
}

impl PackB for FoldedB<'_> {
    fn pack_b(&self, pc: usize, kb: usize, jc: usize, nb: usize, nr: usize, out: &mut [f32]) {
        let g = self.g;
        let (hp, wp) = padded_dims(g);
        let (oh, ow) = (g.out_h(), g.out_w());
        let plane = oh * ow;
        for (panel, jr) in (0..nb).step_by(nr).enumerate() {
            let nw = nr.min(nb - jr);
            // (column, source offset, length) per output-row run.
            let mut runs = [(0usize, 0usize, 0usize); crate::kernels::dispatch::MAX_NR];
            let mut count = 0;
            let j0 = jc + jr;
            let (mut img, rest) = (j0 / plane, j0 % plane);
            let (mut oy, mut ox) = (rest / ow, rest % ow);
            let mut o = 0;
            while o < nw {
                let len = (ow - ox).min(nw - o);
                runs[count] = (o, img * self.pimg + oy * wp + ox, len);
                count += 1;
                o += len;
                ox += len;
                if ox == ow {
                    (ox, oy) = (0, oy + 1);
                    if oy == oh {
                        (oy, img) = (0, img + 1);
                    }
                }
            }
            let dst = &mut out[panel * kb * nr..(panel + 1) * kb * nr];
            let taps = g.kh * g.kw;
            let (mut cl, mut r, mut s) = (pc / taps, (pc / g.kw) % g.kh, pc % g.kw);
            for d in dst.chunks_exact_mut(nr).take(kb) {
                let off = cl * hp * wp + r * g.dilation[0] * wp + s * g.dilation[1];
                for &(o, at, len) in &runs[..count] {
                    d[o..o + len].copy_from_slice(&self.x[at + off..at + off + len]);
                }
                d[nw..].fill(0.0);
                s += 1;
                if s == g.kw {
                    (s, r) = (0, r + 1);
                    if r == g.kh {
                        (r, cl) = (0, cl + 1);
                    }
                }
            }
        }
    }
}

/// Whether the kernel is 1×1 without padding but strided (ResNet's
/// projections): its column matrix is a cheap subsampled copy of the input,
/// so it is built explicitly and multiplied as stored, which beats packing
/// it element by element.
fn is_strided_1x1(g: &Conv2dGeometry) -> bool {
    g.kh == 1 && g.kw == 1 && g.pad == [0; 4] && !g.is_plain_product()
}

/// The scratch length (floats) of [`conv2d_forward_serial`].
pub fn conv2d_forward_scratch_len(kern: &Kernels, g: &Conv2dGeometry) -> usize {
    if uses_winograd_per_call(kern, g) {
        return winograd::winograd_scratch_len(kern, g);
    }
    if uses_direct(kern, g) {
        return direct_forward_scratch_len(kern, g);
    }
    packed_weights_len(kern, g, false)
        + forward_col_len(g)
        + gemm_scratch_len_with(kern, &forward_gemm(g))
}

/// One image of the forward pass (`img` is its index in the batch).
fn forward_image(
    kern: &Kernels,
    g: &Conv2dGeometry,
    x: &[f32],
    w: Weights<'_>,
    epilogue: &[ConvEpilogue<'_>],
    y: &mut [f32],
    img: usize,
    col: &mut [f32],
    mm: &mut Mm<'_>,
) {
    let plane = g.out_h() * g.out_w();
    let cog = g.c_out / g.groups;
    let gm = image_gemm(g);
    let hw = g.h * g.w;
    let cig = g.c_in / g.groups;
    if uses_shifted(g) {
        // Stride 1: every tap's row of the column matrix is a shifted slice
        // of the padded input, over the extended positions oy·Wp + ox.
        let (hp, wp) = padded_dims(g);
        let (xp, yext) = col.split_at_mut(shifted_input_len(g));
        pad_input(g, x, xp);
        let n_ext = g.out_h() * wp;
        let gm = forward_gemm(g);
        for grp in 0..g.groups {
            let a = w.group(grp).operand();
            let b = ShiftedB {
                x: &xp[grp * cig * hp * wp..],
                plane: hp * wp,
                wp,
                g,
            };
            let yg = &mut yext[..cog * n_ext];
            mm.run_custom(kern, &gm, a, &b, yg, &[]);
            store_extended(g, yg, n_ext, wp, y, epilogue, img, grp * cog, cog);
        }
        return;
    }
    for grp in 0..g.groups {
        let mut steps = [Epilogue::Scale(1.0); MAX_EPILOGUE];
        let used = gemm_epilogue(g, epilogue, img, grp, &mut steps);
        let yg = &mut y[grp * cog * plane..(grp + 1) * cog * plane];
        if g.is_plain_product() {
            let b = &x[grp * cig * hw..(grp + 1) * cig * hw];
            mm.run(kern, &gm, w.group(grp), b, yg, &steps[..used]);
        } else if packs_weights(g) && !is_strided_1x1(g) {
            // Packed, or stored for a GEMM that reads them in place.
            let b = Im2colB { g, x, grp };
            mm.run_custom(kern, &gm, w.group(grp).operand(), &b, yg, &steps[..used]);
        } else {
            im2col(g, x, grp, col);
            mm.run(kern, &gm, w.group(grp), col, yg, &steps[..used]);
        }
    }
}

/// The forward pass of images `img0 .. img0 + k` of the batch as one GEMM
/// whose columns are their positions in turn ([`fold_images`]): the
/// images' padded inputs are packed as B ([`FoldedB`]), the product lands
/// in `c` (after them, [`fold_len`] floats in all), and each image's
/// channels are copied into place with the epilogue applied.
#[allow(clippy::too_many_arguments)]
fn forward_folded(
    kern: &Kernels,
    g: &Conv2dGeometry,
    x: &[f32],
    w: Weights<'_>,
    epilogue: &[ConvEpilogue<'_>],
    y: &mut [f32],
    (img0, k): (usize, usize),
    c: &mut [f32],
    mm: &mut Mm<'_>,
) {
    let plane = g.out_h() * g.out_w();
    let (in_img, out_img) = (g.c_in * g.h * g.w, g.c_out * plane);
    let (hp, wp) = padded_dims(g);
    let pimg = g.c_in * hp * wp;
    let (xp, c) = c.split_at_mut(fold_images(g) * pimg);
    for i in 0..k {
        let xi = &x[(img0 + i) * in_img..(img0 + i + 1) * in_img];
        pad_input(g, xi, &mut xp[i * pimg..(i + 1) * pimg]);
    }
    let gm = Gemm::new(g.c_out, k * plane, g.col_rows());
    let b = FoldedB { x: xp, pimg, g };
    let c = &mut c[..g.c_out * k * plane];
    mm.run_custom(kern, &gm, w.group(0).operand(), &b, c, &[]);
    for i in 0..k {
        let img = img0 + i;
        let yi = &mut y[img * out_img..(img + 1) * out_img];
        for (co, yc) in yi.chunks_exact_mut(plane).enumerate() {
            yc.copy_from_slice(&c[(co * k + i) * plane..(co * k + i + 1) * plane]);
            channel_epilogue(g, epilogue, img, co, yc);
        }
    }
}

/// The direct forward path for one image: pad the input into `scratch`, run
/// the variant's direct kernel straight into `y` (with the epilogue's
/// leading bias and ReLU in registers), then apply the rest of the epilogue.
fn forward_direct_image(
    kern: &Kernels,
    g: &Conv2dGeometry,
    x: &[f32],
    wts: Weights<'_>,
    epilogue: &[ConvEpilogue<'_>],
    y: &mut [f32],
    img: usize,
    scratch: &mut [f32],
) {
    let Some(direct) = kern.conv_direct else {
        unreachable!(
            "forward_direct_image: variant {} has no direct kernel",
            kern.name
        )
    };
    let s = direct_shape(g);
    let xp = &mut scratch[..direct_scratch_len(g)];
    pad_direct_input(g, &s, x, xp);
    let (post, rest) = direct_post(epilogue);
    let y = &mut y[..g.c_out * s.oh * s.ow];
    match kern.conv_direct_channels {
        Some(channels) if wts.channel_major => {
            // SAFETY: as below, with tap-major weights, which every entry
            // point writes only for a shape the channel-lane kernel accepts
            // (uses_channel_lanes).
            unsafe { channels(&s, xp, wts.data, post, y) };
        }
        // SAFETY: the buffers have the lengths the kernel's contract asks
        // for (padded input plus tail, OIHW weight, one output image, c_out
        // bias values: check_epilogue), the shape is direct_shape's, c_out is
        // at most 16 (uses_direct), and the table checked the CPU's features.
        _ => unsafe { direct(&s, xp, wts.data, post, y) },
    }
    apply_epilogue_in_place(g, y, rest, img);
}

/// Copies channels `co0 .. co0 + count` of an extended output (`yext`, one
/// plane of `stride` floats per channel, rows `wp` apart) into their place in
/// one image's `y`, dropping the columns past `out_w`, and applies the
/// epilogue per channel.
fn store_extended(
    g: &Conv2dGeometry,
    yext: &[f32],
    stride: usize,
    wp: usize,
    y: &mut [f32],
    epilogue: &[ConvEpilogue<'_>],
    img: usize,
    co0: usize,
    count: usize,
) {
    let (oh, ow) = (g.out_h(), g.out_w());
    let plane = oh * ow;
    for q in 0..count {
        let co = co0 + q;
        let yc = &mut y[co * plane..(co + 1) * plane];
        for oy in 0..oh {
            let src = &yext[q * stride + oy * wp..q * stride + oy * wp + ow];
            yc[oy * ow..(oy + 1) * ow].copy_from_slice(src);
        }
        channel_epilogue(g, epilogue, img, co, yc);
    }
}

fn check_forward(g: &Conv2dGeometry, x: &[f32], w: &[f32], e: &[ConvEpilogue<'_>], y: &[f32]) {
    g.assert_valid();
    check_len("input", x.len(), g.input_len());
    check_len("weight", w.len(), g.weight_len());
    check_len("output", y.len(), g.output_len());
    check_conv_epilogue(g, e);
}

/// `y = epilogue(conv(x, w))` on the calling thread, allocation-free, with
/// `scratch` of at least [`conv2d_forward_scratch_len`] floats.
///
/// # Panics
///
/// If the geometry is invalid or a buffer is too short (a caller bug; the
/// compiler validates geometries with [`Conv2dGeometry::validate`]).
pub fn conv2d_forward_serial(
    kern: &Kernels,
    g: &Conv2dGeometry,
    x: &[f32],
    w: &[f32],
    epilogue: &[ConvEpilogue<'_>],
    y: &mut [f32],
    scratch: &mut [f32],
) {
    check_forward(g, x, w, epilogue, y);
    check_len(
        "scratch",
        scratch.len(),
        conv2d_forward_scratch_len(kern, g),
    );
    if uses_winograd_per_call(kern, g) {
        return winograd::conv2d_forward_winograd_serial(kern, g, x, w, epilogue, y, scratch);
    }
    if uses_direct(kern, g) {
        let (wt, rest) = scratch.split_at_mut(direct_weights_len(kern, g));
        let wts = direct_weights(kern, g, w, wt);
        return forward_serial_with(kern, g, x, wts, epilogue, y, rest);
    }
    let (pw, rest) = scratch.split_at_mut(packed_weights_len(kern, g, false));
    let wts = pass_weights(kern, g, w, false, &forward_gemm(g), pw);
    forward_serial_with(kern, g, x, wts, epilogue, y, rest);
}

/// The forward pass on this thread with the weights prepared.
fn forward_serial_with(
    kern: &Kernels,
    g: &Conv2dGeometry,
    x: &[f32],
    wts: Weights<'_>,
    epilogue: &[ConvEpilogue<'_>],
    y: &mut [f32],
    scratch: &mut [f32],
) {
    let (in_img, out_img) = (g.c_in * g.h * g.w, g.c_out * g.out_h() * g.out_w());
    if uses_direct(kern, g) {
        for img in 0..g.n {
            let xi = &x[img * in_img..(img + 1) * in_img];
            let yi = &mut y[img * out_img..(img + 1) * out_img];
            forward_direct_image(kern, g, xi, wts, epilogue, yi, img, scratch);
        }
        return;
    }
    let (col, pack) = scratch.split_at_mut(forward_col_len(g));
    let mut mm = Mm::Serial(pack);
    let k = fold_images(g);
    if k > 1 {
        for img0 in (0..g.n).step_by(k) {
            let k = k.min(g.n - img0);
            forward_folded(kern, g, x, wts, epilogue, y, (img0, k), col, &mut mm);
        }
        return;
    }
    for img in 0..g.n {
        let xi = &x[img * in_img..(img + 1) * in_img];
        let yi = &mut y[img * out_img..(img + 1) * out_img];
        forward_image(kern, g, xi, wts, epilogue, yi, img, col, &mut mm);
    }
}

/// `y = epilogue(conv(x, w))` over the thread pool: images in parallel when
/// the batch has several, else the rows of each image's GEMM.
///
/// # Panics
///
/// If the geometry is invalid or a buffer is too short (a caller bug).
#[cfg(feature = "std")]
pub fn conv2d_forward(
    kern: &Kernels,
    g: &Conv2dGeometry,
    x: &[f32],
    w: &[f32],
    epilogue: &[ConvEpilogue<'_>],
    y: &mut [f32],
) {
    check_forward(g, x, w, epilogue, y);
    if uses_winograd_per_call(kern, g) {
        return winograd::conv2d_forward_winograd(kern, g, x, w, epilogue, y);
    }
    conv2d_forward_gemm(kern, g, x, w, epilogue, y);
}

/// [`conv2d_forward`] without Winograd: the direct kernel where
/// [`uses_direct`], else the GEMM lowering (what the benchmarks compare
/// Winograd with).
///
/// # Panics
///
/// If the geometry is invalid or a buffer is too short (a caller bug).
#[cfg(feature = "std")]
pub fn conv2d_forward_gemm(
    kern: &Kernels,
    g: &Conv2dGeometry,
    x: &[f32],
    w: &[f32],
    epilogue: &[ConvEpilogue<'_>],
    y: &mut [f32],
) {
    use crate::kernels::gemm::{Slot, with_scratch};
    check_forward(g, x, w, epilogue, y);
    if uses_direct(kern, g) {
        return with_scratch(Slot::Weights, direct_weights_len(kern, g), |wt| {
            let wts = direct_weights(kern, g, w, wt);
            forward_threaded_with(kern, g, x, wts, epilogue, y)
        });
    }
    with_scratch(Slot::Weights, packed_weights_len(kern, g, false), |pw| {
        let wts = pass_weights(kern, g, w, false, &forward_gemm(g), pw);
        forward_threaded_with(kern, g, x, wts, epilogue, y);
    });
}

/// The forward pass over the thread pool with the weights prepared.
#[cfg(feature = "std")]
fn forward_threaded_with(
    kern: &Kernels,
    g: &Conv2dGeometry,
    x: &[f32],
    wts: Weights<'_>,
    epilogue: &[ConvEpilogue<'_>],
    y: &mut [f32],
) {
    use crate::kernels::gemm::{Slot, with_scratch};
    use crate::kernels::parallel::{for_each_chunk_mut, worth_parallel};
    let (in_img, out_img) = (g.c_in * g.h * g.w, g.c_out * g.out_h() * g.out_w());
    let y = &mut y[..g.output_len()];
    let work = g.flops() / 2;
    if uses_direct(kern, g) {
        let len = direct_scratch_len(g);
        for_each_chunk_mut(y, out_img, work, |img, yi| {
            let xi = &x[img * in_img..(img + 1) * in_img];
            with_scratch(Slot::Conv, len, |scratch| {
                forward_direct_image(kern, g, xi, wts, epilogue, yi, img, scratch)
            });
        });
        return;
    }
    let k = fold_images(g);
    if k > 1 {
        with_scratch(Slot::Conv, forward_col_len(g), |c| {
            for img0 in (0..g.n).step_by(k) {
                let k = k.min(g.n - img0);
                forward_folded(
                    kern,
                    g,
                    x,
                    wts,
                    epilogue,
                    y,
                    (img0, k),
                    c,
                    &mut Mm::Threaded,
                );
            }
        });
        return;
    }
    if g.n > 1 && worth_parallel(work) {
        let len = forward_col_len(g) + gemm_scratch_len_with(kern, &forward_gemm(g));
        for_each_chunk_mut(y, out_img, work, |img, yi| {
            let xi = &x[img * in_img..(img + 1) * in_img];
            with_scratch(Slot::Conv, len, |scratch| {
                let (col, pack) = scratch.split_at_mut(forward_col_len(g));
                let mut mm = Mm::Serial(pack);
                forward_image(kern, g, xi, wts, epilogue, yi, img, col, &mut mm);
            });
        });
        return;
    }
    with_scratch(Slot::Conv, forward_col_len(g), |col| {
        for img in 0..g.n {
            let xi = &x[img * in_img..(img + 1) * in_img];
            let yi = &mut y[img * out_img..(img + 1) * out_img];
            forward_image(kern, g, xi, wts, epilogue, yi, img, col, &mut Mm::Threaded);
        }
    });
}

/// Floats of a convolution's weights in the form its forward pass uses
/// with variant `kern`: packed GEMM panels per group, or (for the direct
/// kernel and one-position outputs) the OIHW weights as they are.
pub fn conv2d_packed_weights_len(kern: &Kernels, g: &Conv2dGeometry) -> usize {
    if uses_winograd(kern, g) {
        return winograd::winograd_packed_len(kern, g);
    }
    if uses_direct(kern, g) || !packs_weights(g) {
        g.weight_len()
    } else {
        packed_weights_len(kern, g, false)
    }
}

/// Puts the OIHW weights `w` into the form [`conv2d_forward_prepacked_serial`]
/// takes (`out`: at least [`conv2d_packed_weights_len`] floats), once, so that
/// an inference build packs constant weights at load time instead of at every
/// call.
///
/// # Panics
///
/// If the geometry is invalid or a buffer is too short (a caller bug).
pub fn conv2d_pack_weights(kern: &Kernels, g: &Conv2dGeometry, w: &[f32], out: &mut [f32]) {
    g.assert_valid();
    check_len("weight", w.len(), g.weight_len());
    let len = conv2d_packed_weights_len(kern, g);
    check_len("packed weights", out.len(), len);
    if uses_winograd(kern, g) {
        winograd::winograd_pack_weights(kern, g, w, out);
    } else if uses_channel_lanes(kern, g) {
        conv_direct_channels::channel_major_weights(&direct_shape(g), w, out);
    } else if uses_direct(kern, g) || !packs_weights(g) {
        out[..len].copy_from_slice(&w[..len]);
    } else {
        prepare_weights(kern, g, w, false, out);
    }
}

/// The view of weights packed by [`conv2d_pack_weights`].
pub(in crate::kernels) fn packed_view<'a>(
    kern: &Kernels,
    g: &Conv2dGeometry,
    packed: &'a [f32],
) -> Weights<'a> {
    check_len(
        "packed weights",
        packed.len(),
        conv2d_packed_weights_len(kern, g),
    );
    if uses_direct(kern, g) || !packs_weights(g) {
        Weights {
            channel_major: uses_channel_lanes(kern, g),
            ..Weights::stored(g, packed)
        }
    } else {
        Weights {
            data: packed,
            packed: true,
            group_len: packed_a_len(kern, &weight_gemm(g, false)),
            channel_major: false,
        }
    }
}

/// The scratch length (floats) of [`conv2d_forward_prepacked_serial`].
pub fn conv2d_forward_prepacked_scratch_len(kern: &Kernels, g: &Conv2dGeometry) -> usize {
    if uses_winograd(kern, g) {
        winograd::winograd_prepacked_scratch_len(kern, g)
    } else if uses_direct(kern, g) {
        direct_scratch_len(g)
    } else {
        forward_col_len(g) + gemm_scratch_len_with(kern, &forward_gemm(g))
    }
}

/// [`conv2d_forward_serial`] with weights packed in advance by
/// [`conv2d_pack_weights`] for the same variant and geometry; `scratch` of
/// at least [`conv2d_forward_prepacked_scratch_len`] floats. Allocation-free.
///
/// # Panics
///
/// If the geometry is invalid or a buffer is too short (a caller bug).
pub fn conv2d_forward_prepacked_serial(
    kern: &Kernels,
    g: &Conv2dGeometry,
    x: &[f32],
    packed: &[f32],
    epilogue: &[ConvEpilogue<'_>],
    y: &mut [f32],
    scratch: &mut [f32],
) {
    g.assert_valid();
    check_len("input", x.len(), g.input_len());
    check_len("output", y.len(), g.output_len());
    check_conv_epilogue(g, epilogue);
    check_len(
        "scratch",
        scratch.len(),
        conv2d_forward_prepacked_scratch_len(kern, g),
    );
    if uses_winograd(kern, g) {
        return winograd::conv2d_forward_winograd_prepacked_serial(
            kern, g, x, packed, epilogue, y, scratch,
        );
    }
    let wts = packed_view(kern, g, packed);
    forward_serial_with(kern, g, x, wts, epilogue, y, scratch);
}

/// [`conv2d_forward`] with weights packed in advance by
/// [`conv2d_pack_weights`].
///
/// # Panics
///
/// If the geometry is invalid or a buffer is too short (a caller bug).
#[cfg(feature = "std")]
pub fn conv2d_forward_prepacked(
    kern: &Kernels,
    g: &Conv2dGeometry,
    x: &[f32],
    packed: &[f32],
    epilogue: &[ConvEpilogue<'_>],
    y: &mut [f32],
) {
    g.assert_valid();
    check_len("input", x.len(), g.input_len());
    check_len("output", y.len(), g.output_len());
    check_conv_epilogue(g, epilogue);
    if uses_winograd(kern, g) {
        return winograd::conv2d_forward_winograd_prepacked(kern, g, x, packed, epilogue, y);
    }
    let wts = packed_view(kern, g, packed);
    forward_threaded_with(kern, g, x, wts, epilogue, y);
}
