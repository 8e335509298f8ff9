//! The training half of the CPU emitter: `loss_and_grads`, `train_step`,
//! `train_output`, the training-mode forward of ops whose semantics differ
//! from inference (batch norm, dropout, the loss), and every gradient op.

use proc_macro2::TokenStream;
use quote::quote;

use super::{
    activation, channel_shape, chw, conv_geometry, emit_step, param, pool_geometry, unsupported,
};
use crate::diag::{Diagnostic, Diagnostics};
use crate::ir::{self, GradOp, Op, UpsampleMode};
use crate::plan::{Location, Program, Step};

/// The training entry points: `loss_and_grads`, `train_step`,
/// `train_output`.
pub(super) fn emit_train(
    program: &Program,
    tr: &crate::plan::TrainRoutine,
    diags: &mut Diagnostics,
) -> Option<TokenStream> {
    let mut steps = Vec::new();
    for step in &tr.routine.steps {
        match emit_step(program, step) {
            Ok(t) => steps.push(t),
            Err(d) => diags.push(d),
        }
    }
    if diags.has_errors() {
        return None;
    }
    let network = &program.name;
    let arena_len = tr.routine.memory.arena;
    let lower_bound = tr.routine.memory.lower_bound;
    let no_reuse = tr.routine.memory.no_reuse;
    let Location::Arena(loss_off) = tr.loss_at else {
        unreachable!("plan: the loss lives in the arena");
    };
    let Location::Arena(out_off) = tr.output.at else {
        unreachable!("plan: outputs live in the arena");
    };
    let out_len: usize = tr.output.shape.iter().product();
    let class_index = tr.loss.loss.kind.takes_class_index();
    let (target_ty, per_example, what) = if class_index {
        (quote!(u32), 1usize, "one class index")
    } else {
        (quote!(f32), tr.loss.features, "one target tensor")
    };
    let what = format!("{what} per example");
    Some(quote! {
        /// Training arena, floats per example of the batch.
        pub const TRAIN_ARENA_PER_EXAMPLE: usize = #arena_len;
        /// The max-live lower bound of the training arena, per example.
        pub const TRAIN_ARENA_LOWER_BOUND: usize = #lower_bound;
        /// What the training arena would take without reuse, per example.
        pub const TRAIN_ARENA_NO_REUSE: usize = #no_reuse;

        /// The loss of `x` against `target` in training mode (batch
        /// statistics, dropout), and every parameter's gradient, written to
        /// `params().grads` (overwritten). Running statistics are updated.
        pub fn loss_and_grads(&mut self, x: &[f32], target: &[#target_ty]) -> ::core::result::Result<f32, ::kiln::runtime::params::ToolkitError> {
            let n = self.examples(x.len())?;
            if target.len() != n * #per_example {
                return ::core::result::Result::Err(::kiln::runtime::params::ToolkitError::Invalid(::std::format!(
                    "{}: {} targets for {} examples; expected {}", #network, target.len(), n, #what
                )));
            }
            let b = self.batch;
            if self.train_arena.len() < #arena_len * b {
                self.train_arena.resize(#arena_len * b, 0.0);
            }
            self.train_steps += 1;
            self.prepared_stale = true;
            let dropout_seed = self.step_seed();
            let kern = ::kiln::runtime::kernels::dispatch::kernels();
            let ::kiln::runtime::params::Params { values, grads, buffers, .. } = &mut self.params;
            let params: &[f32] = values;
            let grads: &mut [f32] = grads;
            let buffers: &mut [f32] = buffers;
            grads.fill(0.0);
            let arena: &mut [f32] = &mut self.train_arena;
            let input0: &[f32] = x;
            #(#steps)*
            ::core::result::Result::Ok(self.train_arena[#loss_off * b])
        }

        /// The seed of the last (or current) training call's dropout masks:
        /// layer `l` draws its mask from `mix64(step_seed ^ fnv1a(l))` at the
        /// element's index in the batch, as the interpreter does.
        pub fn step_seed(&self) -> u64 {
            ::kiln::runtime::rng::mix64(self.seed ^ self.train_steps.wrapping_mul(0x9E37_79B9_7F4A_7C15))
        }

        /// One training step: [`Self::loss_and_grads`], then `opt`'s update
        /// with learning rate `lr`. Returns the loss.
        pub fn train_step(
            &mut self,
            x: &[f32],
            target: &[#target_ty],
            opt: &mut dyn ::kiln::runtime::optim::Optimizer,
            lr: f32,
        ) -> ::core::result::Result<f32, ::kiln::runtime::params::ToolkitError> {
            let loss = self.loss_and_grads(x, target)?;
            opt.step(&mut self.params, lr)?;
            self.prepared_stale = true;
            ::core::result::Result::Ok(loss)
        }

        /// The first output of the last training call for its first `n`
        /// examples (training mode: for training accuracy).
        pub fn train_output(&self, n: usize) -> &[f32] {
            let b = self.batch;
            let n = n.min(b);
            &self.train_arena[#out_off * b..#out_off * b + n * #out_len]
        }
    })
}

/// The training-mode forward of ops whose training semantics differ from
/// inference (batch norm, dropout, the loss), and every gradient op. Other
/// ops run as at inference (`None`).
pub(super) fn train_call(
    program: &Program,
    step: &Step,
    names: &[proc_macro2::Ident],
    op: &Op,
) -> Result<Option<TokenStream>, Diagnostic> {
    let k = quote!(::kiln::runtime::kernels);
    let x = names.first().cloned();
    let x1 = names.get(1).cloned();
    let in_shape = step
        .inputs
        .first()
        .map(|o| o.shape.clone())
        .unwrap_or_default();
    let out_shape = step.output.shape.clone();
    let tr = program.train.as_ref();
    Ok(Some(match op {
        Op::BatchNorm { eps, momentum } => {
            let shape = channel_shape(&in_shape);
            let c = chw(&in_shape)[0];
            let (eps, mom) = (*eps as f32, *momentum as f32);
            let (gamma, beta) = (param(program, step, 0), param(program, step, 1));
            let mean = &program.buffers[step.buffers[0]];
            let var = &program.buffers[step.buffers[1]];
            let (m0, m1) = (mean.offset, mean.offset + mean.len());
            let (v0, v1) = (var.offset, var.offset + var.len());
            quote! {
                let mut save_mean = [0.0f32; #c];
                let mut save_inv = [0.0f32; #c];
                let (rm, rv) = if #m0 < #v0 {
                    let (a, b) = buffers.split_at_mut(#v0);
                    (&mut a[#m0..#m1], &mut b[..#v1 - #v0])
                } else {
                    let (a, b) = buffers.split_at_mut(#m0);
                    (&mut b[..#m1 - #m0], &mut a[#v0..#v1])
                };
                #k::norm::batch_norm_train_forward(#x, y, #shape, #gamma, #beta, #eps, #mom, rm, rv, &mut save_mean, &mut save_inv);
            }
        }
        Op::Dropout { p } => {
            let p = *p as f32;
            let tag = layer_tag(&step.layer);
            quote!(#k::elementwise::dropout_forward(#x, y, #p, ::kiln::runtime::rng::mix64(dropout_seed ^ #tag), 0);)
        }
        Op::Loss(l) => {
            let features = tr.map(|t| t.loss.features).unwrap_or(1);
            let call = loss_call(
                program,
                l,
                features,
                &quote!(#x),
                quote!(::core::option::Option::None),
            );
            quote!(y[0] = #call;)
        }
        Op::Add => {
            // A sum of gradients (a value read twice) or a residual.
            quote!(#k::elementwise::add(&[#(#names),*], y);)
        }
        Op::Grad(g) => {
            match g {
                GradOp::Loss(l) => {
                    let features = tr.map(|t| t.loss.features).unwrap_or(1);
                    let call = loss_call(
                        program,
                        l,
                        features,
                        &quote!(#x),
                        quote!(::core::option::Option::Some(&mut *y)),
                    );
                    quote!(let _ = #call;)
                }
                GradOp::Conv2dData {
                    conv,
                    weight,
                    input,
                } => {
                    let g = conv_geometry(conv, input, &in_shape);
                    let w = named_param(program, step, weight)?;
                    quote!(#k::conv::conv2d_backward_data(kern, &#g, #w, #x, y);)
                }
                GradOp::Conv2dWeight { conv } => {
                    let dy_shape = &step.inputs[1].shape;
                    let g = conv_geometry(conv, &in_shape, dy_shape);
                    quote!(#k::conv::conv2d_backward_weight(kern, &#g, #x, #x1, y, false);)
                }
                GradOp::Bias => {
                    let shape = channel_shape(&in_shape);
                    quote!(#k::backward::channel_sums(#x, #shape, y);)
                }
                GradOp::LinearData {
                    weight,
                    in_features,
                } => {
                    let out = in_shape.numel() as usize;
                    let w = named_param(program, step, weight)?;
                    quote! {
                        let g = #k::gemm::Gemm::new(n, #in_features, #out);
                        #k::gemm::sgemm(&g, #x, #w, y, &[]);
                    }
                }
                GradOp::LinearWeight => {
                    let inp = in_shape.numel() as usize;
                    let out = step.inputs[1].shape.numel() as usize;
                    quote! {
                        let g = #k::gemm::Gemm::new(#out, #inp, n).transpose_a();
                        #k::gemm::sgemm(&g, #x1, #x, y, &[]);
                    }
                }
                GradOp::MaxPool2d(p) => {
                    let g = pool_geometry(p, &in_shape);
                    quote!(#k::backward::max_pool2d_backward_from_input(#x, #x1, y, #g);)
                }
                GradOp::AvgPool2d {
                    pool,
                    count_pad,
                    input,
                } => {
                    let g = pool_geometry(pool, input);
                    quote!(#k::pool::avg_pool2d_backward(#x, y, #g, #count_pad);)
                }
                GradOp::GlobalAvgPool { input } => {
                    let [c, h, w] = chw(input);
                    let spatial = h * w;
                    quote!(#k::pool::global_avg_pool_backward(#x, y, n * #c, #spatial);)
                }
                GradOp::Upsample { scale, mode } => {
                    let [c, h, w] = chw(&out_shape);
                    let g = quote!(#k::upsample::Upsample { planes: n * #c, h: #h, w: #w, scale: #scale });
                    match mode {
                        UpsampleMode::Nearest => {
                            quote!(#k::upsample::upsample_nearest_backward(#x, y, #g);)
                        }
                        UpsampleMode::Zeros => {
                            quote!(#k::upsample::upsample_zeros_backward(#x, y, #g);)
                        }
                    }
                }
                GradOp::PixelUnshuffle { r } => {
                    let [_, h, w] = chw(&out_shape);
                    let [c, _, _] = chw(&in_shape);
                    quote!(#k::upsample::pixel_unshuffle(#x, y, #k::upsample::PixelShuffle { n, c: #c, h: #h, w: #w, r: #r });)
                }
                GradOp::Activation(a) => {
                    let act = activation(*a);
                    quote!(#k::activation::activation_backward(#act, #x, #x1, y);)
                }
                GradOp::PreluData { weight } => {
                    let w = named_param(program, step, weight)?;
                    let shape = channel_shape(&in_shape);
                    quote!(#k::backward::prelu_backward_input(#x, #x1, y, #shape, #w);)
                }
                GradOp::PreluWeight { .. } => {
                    let shape = channel_shape(&in_shape);
                    quote!(#k::backward::prelu_backward_slope(#x, #x1, #shape, y);)
                }
                GradOp::Maxout { k: group } => {
                    let shape = channel_shape(&in_shape);
                    quote! {
                        let mut fy = ::std::vec![0.0f32; #x1.len()];
                        let mut arg = ::std::vec![0u32; #x1.len()];
                        #k::activation::maxout_forward_with_indices(#x, &mut fy, &mut arg, #shape, #group);
                        #k::activation::maxout_backward(#x1, &arg, y, #shape, #group);
                    }
                }
                GradOp::Softmax { axis } | GradOp::LogSoftmax { axis } => {
                    let d = in_shape.dims();
                    let outer: usize = d[..*axis].iter().product();
                    let dim = d[*axis];
                    let inner: usize = d[*axis + 1..].iter().product();
                    let shape = quote!(#k::softmax::AxisShape { outer: n * #outer, dim: #dim, inner: #inner });
                    if matches!(g, GradOp::Softmax { .. }) {
                        quote!(#k::softmax::softmax_backward(#x, #x1, y, #shape);)
                    } else {
                        quote!(#k::softmax::log_softmax_backward(#x, #x1, y, #shape);)
                    }
                }
                GradOp::BatchNormStats { eps } => {
                    let shape = channel_shape(&in_shape);
                    let c = chw(&in_shape)[0];
                    let eps = *eps as f32;
                    quote! {
                        let (mean, inv) = y.split_at_mut(#c);
                        #k::norm::batch_norm_batch_stats(#x, #shape, #eps, mean, inv);
                    }
                }
                GradOp::BatchNormParamGrads { relu } => {
                    let shape = channel_shape(&in_shape);
                    let c = chw(&in_shape)[0];
                    let stats = &names[2];
                    let mask = mask_arg(names, *relu, 3);
                    quote! {
                        let (mean, inv) = #stats.split_at(#c);
                        let (dg, db) = y.split_at_mut(#c);
                        #k::norm::batch_norm_param_grads(#x, #x1, #mask, #shape, mean, inv, dg, db);
                    }
                }
                GradOp::BatchNormInput { weight, relu } => {
                    let shape = channel_shape(&in_shape);
                    let c = chw(&in_shape)[0];
                    let gamma = named_param(program, step, weight)?;
                    let (stats, dgb) = (&names[2], &names[3]);
                    let mask = mask_arg(names, *relu, 4);
                    quote! {
                        let (mean, inv) = #stats.split_at(#c);
                        let (dg, db) = #dgb.split_at(#c);
                        #k::norm::batch_norm_input_grad(#x, #x1, #mask, y, #shape, #gamma, mean, inv, dg, db);
                    }
                }
                GradOp::Row { index } => {
                    let c = out_shape.numel() as usize;
                    let start = index * c;
                    quote!(y.copy_from_slice(&#x[#start..#start + #c]);)
                }
                GradOp::Lrn {
                    n: size,
                    alpha,
                    beta,
                    k: kk,
                } => {
                    let shape = channel_shape(&in_shape);
                    let (alpha, beta, kk) = (*alpha as f32, *beta as f32, *kk as f32);
                    quote! {
                        let mut scratch = ::std::vec![0.0f32; #x.len()];
                        #k::lrn::lrn_backward(#x, #x1, y, &mut scratch, #shape,
                            #k::lrn::Lrn { size: #size, alpha: #alpha, beta: #beta, k: #kk });
                    }
                }
                GradOp::Dropout { p, layer } => {
                    let p = *p as f32;
                    let tag = layer_tag(layer);
                    quote!(#k::elementwise::dropout_backward(#x, y, #p, ::kiln::runtime::rng::mix64(dropout_seed ^ #tag), 0);)
                }
                GradOp::Slice { axis, start, len } => {
                    let d = in_shape.dims();
                    let outer: usize = d[..*axis].iter().product();
                    let dim = d[*axis];
                    let inner: usize = d[*axis + 1..].iter().product();
                    quote!(#k::backward::slice_axis(#x, n * #outer, #dim, #inner, #start, #len, y);)
                }
                GradOp::ConvTranspose2dData { .. } | GradOp::ConvTranspose2dWeight { .. } => {
                    return Err(unsupported(step, "training through conv_transpose2d"));
                }
            }
        }
        _ => return Ok(None),
    }))
}

/// The `mask` argument of batch norm's fused backward kernels: the ReLU
/// output bound as input `slot` with `relu`, else `None`.
fn mask_arg(names: &[proc_macro2::Ident], relu: bool, slot: usize) -> TokenStream {
    if relu {
        let m = &names[slot];
        quote!(::core::option::Option::Some(&#m[..]))
    } else {
        quote!(::core::option::Option::None)
    }
}

/// The runtime's reduction for an IR reduction.
fn reduction(r: ir::Reduction) -> TokenStream {
    match r {
        ir::Reduction::Mean => quote!(::kiln::runtime::kernels::loss::Reduction::Mean),
        ir::Reduction::Sum => quote!(::kiln::runtime::kernels::loss::Reduction::Sum),
    }
}

/// A loss call on `x` against the step's target, with `grad` (an
/// `Option<&mut [f32]>` expression), as an expression giving the loss or
/// returning an error that names the network.
fn loss_call(
    program: &Program,
    l: &ir::Loss,
    features: usize,
    x: &TokenStream,
    grad: TokenStream,
) -> TokenStream {
    let k = quote!(::kiln::runtime::kernels::loss);
    let red = reduction(l.reduction);
    let network = &program.name;
    let err = quote! {
        .map_err(|e| ::kiln::runtime::params::ToolkitError::Invalid(::std::format!("{}: loss: {}", #network, e)))?
    };
    match l.kind {
        ir::LossKind::CrossEntropy => {
            quote!(#k::cross_entropy(#x, target, #features, #red, #grad)#err)
        }
        ir::LossKind::Nll => quote!(#k::nll(#x, target, #features, #red, #grad)#err),
        ir::LossKind::MulticlassHinge { margin } => {
            let m = margin as f32;
            quote!(#k::multiclass_hinge(#x, target, #features, #m, #red, #grad)#err)
        }
        ir::LossKind::Mse => quote!(#k::mse(#x, target, n, #red, #grad)),
        ir::LossKind::L1 => quote!(#k::l1(#x, target, n, #red, #grad)),
        ir::LossKind::Huber { delta } => {
            let d = delta as f32;
            quote!(#k::huber(#x, target, n, #d, #red, #grad))
        }
        ir::LossKind::BinaryCrossEntropy { from_logits: false } => {
            quote!(#k::binary_cross_entropy(#x, target, n, #red, #grad)#err)
        }
        ir::LossKind::BinaryCrossEntropy { from_logits: true } => {
            quote!(#k::binary_cross_entropy_with_logits(#x, target, n, #red, #grad)#err)
        }
    }
}

/// The param slot of a gradient op's forward weight, by name.
fn named_param(program: &Program, step: &Step, name: &str) -> Result<TokenStream, Diagnostic> {
    let Some(slot) = program.params.iter().find(|p| p.name == name) else {
        return Err(unsupported(
            step,
            &format!("a gradient of unknown parameter `{name}`"),
        ));
    };
    let (start, end) = (slot.offset, slot.offset + slot.len());
    Ok(quote!(&params[#start..#end]))
}

/// A per-layer constant mixed into dropout's seed (FNV-1a of the name), so
/// two dropout layers draw different masks and a layer's forward and
/// backward draw the same one.
fn layer_tag(name: &str) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in name.bytes() {
        h ^= b as u64;
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    h
}
