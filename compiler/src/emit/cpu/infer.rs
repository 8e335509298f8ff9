//! The inference half of the CPU emitter: the kernel call of every forward
//! op, as it runs at inference (and, for ops whose semantics do not change,
//! in training).

use proc_macro2::TokenStream;
use quote::quote;

use super::train::train_call;
use super::{
    activation, buffer, channel_shape, chw, conv_geometry, conv_output_shape, param, pool_geometry,
    prepared, unsupported,
};
use crate::diag::Diagnostic;
use crate::ir::{self, Op, UpsampleMode};
use crate::plan::{Kernel, Program, Step};

pub(super) fn kernel_call(
    program: &Program,
    step: &Step,
    names: &[proc_macro2::Ident],
) -> Result<TokenStream, Diagnostic> {
    let k = quote!(::kiln::runtime::kernels);
    let x = names.first().cloned();
    let in_shape = step
        .inputs
        .first()
        .map(|o| o.shape.clone())
        .unwrap_or_default();
    let out_shape = step.output.shape.clone();
    let op = match &step.kernel {
        Kernel::Copy => return Ok(quote!(y.copy_from_slice(#x);)),
        Kernel::Infer(op) => op,
        Kernel::Train(op) => {
            if let Some(t) = train_call(program, step, names, op)? {
                return Ok(t);
            }
            op
        }
    };
    Ok(match op {
        Op::Conv2d(c) => {
            let g = conv_geometry(c, &in_shape, &out_shape);
            let epi = if c.bias {
                let bias = param(program, step, 1);
                quote!(&[#k::conv::ConvEpilogue::Bias(#bias)])
            } else {
                quote!(&[])
            };
            match step.prepared.weight {
                Some(i) if program.is_packed(i) => {
                    let wt = prepared(i);
                    quote!(#k::conv::conv2d_forward_prepacked(kern, &#g, #x, #wt, #epi, y);)
                }
                // Training keeps the GEMM lowering: Winograd's rounding (up
                // to 2⁻¹⁶ of the products' magnitude) compounds through a
                // deep backward pass (ResNet-18's first-layer gradient moved
                // by 2e-4 relative), so it serves inference only.
                _ if matches!(step.kernel, Kernel::Train(_)) => {
                    let wt = param(program, step, 0);
                    quote!(#k::conv::conv2d_forward_gemm(kern, &#g, #x, #wt, #epi, y);)
                }
                _ => {
                    let wt = param(program, step, 0);
                    quote!(#k::conv::conv2d_forward(kern, &#g, #x, #wt, #epi, y);)
                }
            }
        }
        Op::ConvTranspose2d(c) => {
            let [ci, h, w] = chw(&in_shape);
            let [co, oh, ow] = chw(&out_shape);
            let [kh, kw] = c.kernel;
            let [sh, sw] = c.stride;
            let [dh, dw] = c.dilation;
            let [ph, pw] = c.padding;
            let [oph, opw] = c.output_padding;
            let groups = c.groups;
            let wt = param(program, step, 0);
            let bias = if c.bias {
                let b = param(program, step, 1);
                quote!(::core::option::Option::Some(#b))
            } else {
                quote!(::core::option::Option::None)
            };
            let _ = (h, w);
            let (pb, pr) = (ph.saturating_sub(oph), pw.saturating_sub(opw));
            if oph > ph || opw > pw {
                return Err(unsupported(
                    step,
                    "conv_transpose2d with output_padding > padding",
                ));
            }
            quote! {
                // The transposed conv is the backward-data of the conv from
                // its output to its input.
                let g = #k::conv::Conv2dGeometry {
                    n, c_in: #co, h: #oh, w: #ow, c_out: #ci, kh: #kh, kw: #kw,
                    stride: [#sh, #sw], pad: [#ph, #pw, #pb, #pr], dilation: [#dh, #dw], groups: #groups,
                };
                #k::conv::conv_transpose2d_forward(kern, &g, #x, #wt, #bias, y);
            }
        }
        Op::Linear { out, bias, .. } => {
            let inp = step.inputs[0].len();
            let wt = param(program, step, 0);
            let epi = if *bias {
                let b = param(program, step, 1);
                quote!(&[#k::gemm::Epilogue::BiasCol(#b)])
            } else {
                quote!(&[])
            };
            quote! {
                let g = #k::gemm::Gemm::new(n, #out, #inp).transpose_b();
                #k::gemm::sgemm(&g, #x, #wt, y, #epi);
            }
        }
        Op::MaxPool2d(p) | Op::AvgPool2d { pool: p, .. } => {
            let g = pool_geometry(p, &in_shape);
            match op {
                Op::AvgPool2d { count_pad, .. } => {
                    quote!(#k::pool::avg_pool2d_forward(#x, y, #g, #count_pad);)
                }
                _ => quote!(#k::pool::max_pool2d_forward(#x, y, #g);),
            }
        }
        Op::GlobalAvgPool => {
            let [c, h, w] = chw(&in_shape);
            let spatial = h * w;
            quote!(#k::pool::global_avg_pool_forward(#x, y, n * #c, #spatial);)
        }
        Op::Upsample { scale, mode } => {
            let [c, h, w] = chw(&in_shape);
            let g = quote!(#k::upsample::Upsample { planes: n * #c, h: #h, w: #w, scale: #scale });
            match mode {
                UpsampleMode::Nearest => quote!(#k::upsample::upsample_nearest_forward(#x, y, #g);),
                UpsampleMode::Zeros => quote!(#k::upsample::upsample_zeros_forward(#x, y, #g);),
            }
        }
        Op::PixelShuffle { r } => {
            let [_, h, w] = chw(&in_shape);
            let [c, _, _] = chw(&out_shape);
            quote!(#k::upsample::pixel_shuffle(#x, y, #k::upsample::PixelShuffle { n, c: #c, h: #h, w: #w, r: #r });)
        }
        Op::Activation(a) => {
            let act = activation(*a);
            if step.in_place {
                quote!(#k::activation::activation_forward_in_place(#act, y);)
            } else {
                quote!(#k::activation::activation_forward(#act, #x, y);)
            }
        }
        Op::Prelu { .. } => {
            let shape = channel_shape(&in_shape);
            let wt = param(program, step, 0);
            quote!(#k::activation::prelu_forward(#x, y, #shape, #wt);)
        }
        Op::Maxout { k: group } => {
            let shape = channel_shape(&in_shape);
            quote!(#k::activation::maxout_forward(#x, y, #shape, #group);)
        }
        Op::Softmax { axis } | Op::LogSoftmax { axis } => {
            let d = in_shape.dims();
            let outer: usize = d[..*axis].iter().product();
            let dim = d[*axis];
            let inner: usize = d[*axis + 1..].iter().product();
            let shape =
                quote!(#k::softmax::AxisShape { outer: n * #outer, dim: #dim, inner: #inner });
            if matches!(op, Op::Softmax { .. }) {
                quote!(#k::softmax::softmax_forward(#x, y, #shape);)
            } else {
                quote!(#k::softmax::log_softmax_forward(#x, y, #shape);)
            }
        }
        Op::BatchNorm { eps, .. } => {
            let shape = channel_shape(&in_shape);
            let eps = *eps as f32;
            let (gamma, beta) = (param(program, step, 0), param(program, step, 1));
            let (mean, var) = (buffer(program, step, 0), buffer(program, step, 1));
            quote!(#k::norm::batch_norm_inference(#x, y, #shape, #gamma, #beta, #mean, #var, #eps);)
        }
        Op::Lrn {
            n: size,
            alpha,
            beta,
            k: kk,
        } => {
            let shape = channel_shape(&in_shape);
            let (alpha, beta, kk) = (*alpha as f32, *beta as f32, *kk as f32);
            quote! {
                #k::lrn::lrn_forward(#x, y, #shape, #k::lrn::Lrn { size: #size, alpha: #alpha, beta: #beta, k: #kk });
            }
        }
        Op::Add => {
            if step.in_place {
                let rest = &names[1..];
                quote!(#(#k::elementwise::add_into(y, #rest);)*)
            } else {
                quote!(#k::elementwise::add(&[#(#names),*], y);)
            }
        }
        Op::Concat { axis } => {
            let d = out_shape.dims();
            let outer: usize = d[..*axis].iter().product();
            let inner: usize = d[*axis + 1..].iter().product();
            let sizes = step.inputs.iter().map(|o| o.shape.dims()[*axis]);
            quote!(#k::elementwise::concat(&[#(#names),*], &[#(#sizes),*], n * #outer, #inner, y);)
        }
        Op::Fused(f) => fused_call(program, step, names, f, &in_shape, &out_shape),
        Op::Input { .. }
        | Op::Flatten
        | Op::Reshape { .. }
        | Op::Dropout { .. }
        | Op::Loss(_)
        | Op::Grad(_) => {
            unreachable!("plan: {} is not an inference step", op.name())
        }
    })
}

/// The kernel call of a fused step: the anchor (convolution or linear
/// layer) with its bias, the folded batch norm and the epilogue as the
/// kernel's epilogue list, or, without an anchor, one elementwise pass.
fn fused_call(
    program: &Program,
    step: &Step,
    names: &[proc_macro2::Ident],
    f: &ir::Fused,
    in_shape: &ir::Shape,
    out_shape: &ir::Shape,
) -> TokenStream {
    let k = quote!(::kiln::runtime::kernels);
    let x = &names[0];
    // The anchor's weight and bias: prepared (folded, packed) or its own.
    let bias = match step.prepared.bias {
        Some(i) => Some(prepared(i)),
        None if f.anchor_params() == 2 => Some(param(program, step, 1)),
        None => None,
    };
    let weight = || match step.prepared.weight {
        Some(i) => prepared(i),
        None => param(program, step, 0),
    };
    let mut extra = names[1..].iter();
    let mut steps: Vec<TokenStream> = Vec::new();
    match &f.anchor {
        ir::Anchor::Conv2d(c) => {
            let e = quote!(#k::conv::ConvEpilogue);
            steps.extend(bias.map(|b| quote!(#e::Bias(#b))));
            for ep in &f.epilogue {
                steps.push(match ep {
                    ir::Epilogue::Activation(a) => {
                        let a = activation(*a);
                        quote!(#e::Activation(#a))
                    }
                    ir::Epilogue::Add => {
                        let r = extra.next().expect("plan: one input per add");
                        quote!(#e::Residual(#r))
                    }
                    ir::Epilogue::Scale(s) => {
                        let s = *s as f32;
                        quote!(#e::Scale(#s))
                    }
                });
            }
            let g = conv_geometry(c, in_shape, out_shape);
            let weight = weight();
            if let Some(p) = &f.pool {
                // The pool runs over the convolution's own output.
                let pool = pool_geometry(p, &conv_output_shape(c, in_shape, out_shape));
                let cp = quote!(#k::conv_pool);
                return match step.prepared.weight {
                    Some(i) if program.is_packed(i) => {
                        quote!(#cp::conv2d_pool_forward_prepacked(kern, &#g, #pool, #x, #weight, &[#(#steps),*], y);)
                    }
                    _ => {
                        quote!(#cp::conv2d_pool_forward(kern, &#g, #pool, #x, #weight, &[#(#steps),*], y);)
                    }
                };
            }
            match step.prepared.weight {
                Some(i) if program.is_packed(i) => {
                    quote!(#k::conv::conv2d_forward_prepacked(kern, &#g, #x, #weight, &[#(#steps),*], y);)
                }
                _ => quote!(#k::conv::conv2d_forward(kern, &#g, #x, #weight, &[#(#steps),*], y);),
            }
        }
        ir::Anchor::Linear { out, .. } => {
            let e = quote!(#k::gemm::Epilogue);
            let out = *out;
            steps.extend(bias.map(|b| quote!(#e::BiasCol(#b))));
            for ep in &f.epilogue {
                steps.push(match ep {
                    ir::Epilogue::Activation(a) => {
                        let a = activation(*a);
                        quote!(#e::Activation(#a))
                    }
                    ir::Epilogue::Add => {
                        let r = extra.next().expect("plan: one input per add");
                        quote!(#e::Residual { data: #r, ld: #out })
                    }
                    ir::Epilogue::Scale(s) => {
                        let s = *s as f32;
                        quote!(#e::Scale(#s))
                    }
                });
            }
            let inp = step.inputs[0].len();
            let weight = weight();
            quote! {
                let g = #k::gemm::Gemm::new(n, #out, #inp).transpose_b();
                #k::gemm::sgemm(&g, #x, #weight, y, &[#(#steps),*]);
            }
        }
        ir::Anchor::Identity => {
            let e = quote!(#k::epilogue::ElementStep);
            for ep in &f.epilogue {
                steps.push(match ep {
                    ir::Epilogue::Activation(a) => {
                        let a = activation(*a);
                        quote!(#e::Activation(#a))
                    }
                    ir::Epilogue::Add => {
                        let r = extra.next().expect("plan: one input per add");
                        quote!(#e::Add(#r))
                    }
                    ir::Epilogue::Scale(s) => {
                        let s = *s as f32;
                        quote!(#e::Scale(#s))
                    }
                });
            }
            if let Some(fb) = &f.folded_bn {
                // The batch norm first, then the chain on its output.
                let shape = channel_shape(in_shape);
                let eps = fb.eps as f32;
                let (gamma, beta) = (param(program, step, 0), param(program, step, 1));
                let (mean, var) = (buffer(program, step, 0), buffer(program, step, 1));
                quote! {
                    #k::norm::batch_norm_inference(#x, y, #shape, #gamma, #beta, #mean, #var, #eps);
                    #k::epilogue::apply_epilogue_in_place(y, &[#(#steps),*]);
                }
            } else if step.in_place {
                quote!(#k::epilogue::apply_epilogue_in_place(y, &[#(#steps),*]);)
            } else {
                quote!(#k::epilogue::apply_epilogue(#x, y, &[#(#steps),*]);)
            }
        }
    }
}
