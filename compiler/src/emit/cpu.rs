//! The CPU emitter: Rust source, through `quote`, for one [`Program`].
//!
//! The generated type owns its parameters (one flat
//! `kiln::runtime::params::Params`) and one arena sized at construction for
//! the batch it was built for. Every kernel call is written with literal
//! shapes, so rustc monomorphizes and constant-folds each one for its layer;
//! the only run-time dimension is the number of examples in the call.
//! Paths are fully qualified (`::kiln::runtime::…`) and every step carries
//! the span of the layer it comes from, so a rustc error in generated code
//! points at the user's line.

use proc_macro2::{Span, TokenStream};
use quote::{format_ident, quote, quote_spanned};

use crate::ast::Loc;
use crate::diag::{Code, Diagnostic, Diagnostics};
use crate::ir::{self, GradOp, Op, UpsampleMode};
use crate::plan::{Kernel, Location, Operand, Program, Step};

/// The code of diagnostics this emitter reports: an op it cannot run yet.
pub const UNSUPPORTED: Code = Code(400);

/// What the emitter needs besides the program: how the type is presented.
#[derive(Debug, Clone)]
pub struct TypeInfo {
    /// Doc lines (without `///`).
    pub docs: Vec<String>,
    /// Whether the type is `pub`.
    pub public: bool,
    /// The span of the network's name (call site for YAML files).
    pub span: Span,
}

/// Emits the type of `program` and its `impl`.
pub fn emit(program: &Program, info: &TypeInfo) -> Result<TokenStream, Diagnostics> {
    let mut diags = Diagnostics::new();
    let name = format_ident!("{}", program.name, span = info.span);
    let vis = info.public.then(|| quote!(pub));
    let docs = &info.docs;
    let mut steps = Vec::new();
    for step in &program.infer.steps {
        match emit_step(program, step) {
            Ok(t) => steps.push(t),
            Err(d) => diags.push(d),
        }
    }
    if diags.has_errors() {
        return Err(diags);
    }
    if program.inputs.len() != 1 || program.outputs.is_empty() {
        diags.push(Diagnostic::error(
            UNSUPPORTED,
            Loc::Synthetic,
            format!(
                "network `{}`: the CPU emitter supports one input and at least one output \
                 (found {} inputs, {} outputs)",
                program.name,
                program.inputs.len(),
                program.outputs.len()
            ),
        ));
        return Err(diags);
    }
    let scratch = scratch_sizes(program);
    let input = &program.inputs[0];
    let output = &program.outputs[0];
    let in_shape = &input.shape;
    let in_rank = in_shape.len();
    let in_len: usize = in_shape.iter().product();
    let out_shape = &output.shape;
    let out_rank = out_shape.len();
    let out_len: usize = out_shape.iter().product();
    let Location::Arena(out_off) = output.at else {
        unreachable!("plan: outputs always live in the arena");
    };
    let arena_len = program.infer.memory.arena;
    let param_len = program.param_len();
    let buffer_len = program.buffer_len();
    let param_names = program.params.iter().map(|p| &p.name);
    let param_shapes = program.params.iter().map(|p| {
        let d = &p.shape;
        quote!(&[#(#d),*])
    });
    let buffer_names = program.buffers.iter().map(|p| &p.name);
    let buffer_shapes = program.buffers.iter().map(|p| {
        let d = &p.shape;
        quote!(&[#(#d),*])
    });
    let input_name = &input.name;
    let network = &program.name;
    let train = match &program.train {
        Some(tr) => match emit_train(program, tr, &mut diags) {
            Some(t) => t,
            None => return Err(diags),
        },
        None => TokenStream::new(),
    };
    let classifier = match &program.train {
        Some(tr) if tr.loss.loss.kind.takes_class_index() => quote! {
            impl ::kiln::runtime::train::Classifier for #name {
                fn batch(&self) -> usize {
                    self.batch
                }
                fn input_len(&self) -> usize {
                    #in_len
                }
                fn classes(&self) -> usize {
                    #out_len
                }
                fn infer(&mut self, x: &[f32]) -> ::core::result::Result<&[f32], ::kiln::runtime::params::ToolkitError> {
                    self.forward(x)
                }
                fn step(
                    &mut self,
                    x: &[f32],
                    labels: &[u32],
                    opt: &mut dyn ::kiln::runtime::optim::Optimizer,
                    lr: f32,
                ) -> ::core::result::Result<f32, ::kiln::runtime::params::ToolkitError> {
                    self.train_step(x, labels, opt, lr)
                }
                fn last_scores(&self, n: usize) -> &[f32] {
                    self.train_output(n)
                }
                fn parameters(&self) -> &::kiln::runtime::params::Params {
                    &self.params
                }
            }

            impl #name {
                /// Mean cross-entropy, accuracy and images/s over `data`.
                pub fn evaluate(
                    &mut self,
                    data: &::kiln::runtime::data::Dataset,
                ) -> ::core::result::Result<::kiln::runtime::train::Evaluation, ::kiln::runtime::params::ToolkitError> {
                    ::kiln::runtime::train::evaluate(self, data)
                }
            }
        },
        _ => TokenStream::new(),
    };
    let lower_bound = program.infer.memory.lower_bound;
    let no_reuse = program.infer.memory.no_reuse;

    Ok(quote_spanned! {Span::call_site().located_at(info.span)=>
        #(#[doc = #docs])*
        #[derive(::core::fmt::Debug, ::core::clone::Clone)]
        #[allow(dead_code)]
        #vis struct #name {
            params: ::kiln::runtime::params::Params,
            arena: ::std::vec::Vec<f32>,
            train_arena: ::std::vec::Vec<f32>,
            batch: usize,
            seed: u64,
            train_steps: u64,
        }

        #[allow(clippy::all, dead_code, unused_variables, unused_mut, non_snake_case)]
        impl #name {
            /// The per-example input shape.
            pub const INPUT_SHAPE: [usize; #in_rank] = [#(#in_shape),*];
            /// Floats per example of input.
            pub const INPUT_LEN: usize = #in_len;
            /// The per-example shape of the first output.
            pub const OUTPUT_SHAPE: [usize; #out_rank] = [#(#out_shape),*];
            /// Floats per example of the first output.
            pub const OUTPUT_LEN: usize = #out_len;
            /// Learned scalars.
            pub const PARAM_COUNT: usize = #param_len;
            /// Buffer scalars (batch-norm running statistics).
            pub const BUFFER_COUNT: usize = #buffer_len;
            /// Inference arena, floats per example of the batch.
            pub const INFER_ARENA_PER_EXAMPLE: usize = #arena_len;
            /// The max-live lower bound of the inference arena, per example.
            pub const INFER_ARENA_LOWER_BOUND: usize = #lower_bound;
            /// What the inference arena would take without reuse, per example.
            pub const INFER_ARENA_NO_REUSE: usize = #no_reuse;

            /// The parameter and buffer layout, every value zero.
            pub fn zeroed_params() -> ::kiln::runtime::params::Params {
                let mut layout = ::kiln::runtime::params::ParamLayout::new();
                #(layout.push(#param_names, #param_shapes).expect("layout");)*
                let mut buffers = ::kiln::runtime::params::ParamLayout::new();
                #(buffers.push(#buffer_names, #buffer_shapes).expect("layout");)*
                ::kiln::runtime::params::Params::new(layout, buffers).expect("layout")
            }

            /// A network for batches of up to `batch` examples, its
            /// parameters drawn by `init` from `seed`.
            pub fn new(
                init: &::kiln::runtime::init::InitPolicy,
                seed: u64,
                batch: usize,
            ) -> ::core::result::Result<Self, ::kiln::runtime::params::ToolkitError> {
                let mut params = Self::zeroed_params();
                init.apply(&mut params, seed)?;
                let mut net = Self::with_params(params, batch);
                net.seed = seed;
                ::core::result::Result::Ok(net)
            }

            /// A network around existing parameters (checked by name and
            /// shape elsewhere, e.g. by a checkpoint load).
            pub fn with_params(params: ::kiln::runtime::params::Params, batch: usize) -> Self {
                let batch = batch.max(1);
                // Every worker's kernel scratch, sized once, so that
                // `forward` allocates nothing whichever thread runs what.
                {
                    let n = batch;
                    let kern = ::kiln::runtime::kernels::dispatch::kernels();
                    let mut need = 0usize;
                    #(#scratch)*
                    ::kiln::runtime::kernels::gemm::reserve_scratch(need);
                }
                #name {
                    params,
                    arena: ::std::vec![0.0; #arena_len * batch],
                    train_arena: ::std::vec::Vec::new(),
                    batch,
                    seed: 0,
                    train_steps: 0,
                }
            }

            /// The largest batch a call takes.
            pub fn batch(&self) -> usize {
                self.batch
            }

            /// The parameters, gradients and buffers.
            pub fn params(&self) -> &::kiln::runtime::params::Params {
                &self.params
            }

            /// The parameters, gradients and buffers, mutable.
            pub fn params_mut(&mut self) -> &mut ::kiln::runtime::params::Params {
                &mut self.params
            }

            /// Saves the parameters and buffers (and `state`) atomically.
            pub fn save(
                &self,
                path: impl ::core::convert::AsRef<::std::path::Path>,
                state: &::kiln::runtime::checkpoint::TrainState,
            ) -> ::core::result::Result<(), ::kiln::runtime::params::ToolkitError> {
                ::kiln::runtime::checkpoint::save(path, &self.params, state)
            }

            /// Loads parameters and buffers saved by [`Self::save`]; every
            /// name, shape and dtype mismatch is reported at once.
            pub fn load(
                &mut self,
                path: impl ::core::convert::AsRef<::std::path::Path>,
            ) -> ::core::result::Result<::kiln::runtime::checkpoint::TrainState, ::kiln::runtime::params::ToolkitError> {
                ::kiln::runtime::checkpoint::load(path, &mut self.params)
            }

            fn examples(&self, len: usize) -> ::core::result::Result<usize, ::kiln::runtime::params::ToolkitError> {
                if len == 0 || len % #in_len != 0 || len / #in_len > self.batch {
                    return ::core::result::Result::Err(::kiln::runtime::params::ToolkitError::Invalid(::std::format!(
                        "{}: input `{}` has {} floats; expected a multiple of {} (shape {:?}) for 1 to {} examples",
                        #network, #input_name, len, #in_len, Self::INPUT_SHAPE, self.batch
                    )));
                }
                ::core::result::Result::Ok(len / #in_len)
            }

            /// Inference on `x` (`n × INPUT_LEN` floats, `n` up to the batch
            /// size): the first output, `n × OUTPUT_LEN` floats. Performs no
            /// heap allocation.
            pub fn forward(&mut self, x: &[f32]) -> ::core::result::Result<&[f32], ::kiln::runtime::params::ToolkitError> {
                let n = self.examples(x.len())?;
                let b = self.batch;
                let kern = ::kiln::runtime::kernels::dispatch::kernels();
                let params: &[f32] = &self.params.values;
                let buffers: &[f32] = &self.params.buffers;
                let arena: &mut [f32] = &mut self.arena;
                let input0: &[f32] = x;
                #(#steps)*
                ::core::result::Result::Ok(&self.arena[#out_off * b..#out_off * b + n * #out_len])
            }

            /// The index of the largest output of each example of `x`,
            /// written to `classes` (one per example).
            pub fn predict(&mut self, x: &[f32], classes: &mut [usize]) -> ::core::result::Result<(), ::kiln::runtime::params::ToolkitError> {
                let out = self.forward(x)?;
                for (row, c) in out.chunks_exact(#out_len).zip(classes.iter_mut()) {
                    let mut best = 0;
                    for (j, v) in row.iter().enumerate() {
                        if *v > row[best] {
                            best = j;
                        }
                    }
                    *c = best;
                }
                ::core::result::Result::Ok(())
            }

            #train
        }

        #classifier
    })
}

/// The training entry points: `loss_and_grads`, `train_step`,
/// `train_output`.
fn emit_train(
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

/// Per inference step with thread-local scratch (convolutions, GEMMs), the
/// code that raises `need` to its scratch length at `n` examples.
fn scratch_sizes(program: &Program) -> Vec<TokenStream> {
    let k = quote!(::kiln::runtime::kernels);
    let mut out = Vec::new();
    for step in &program.infer.steps {
        let (Kernel::Infer(op), Some(x)) = (&step.kernel, step.inputs.first()) else {
            continue;
        };
        match op {
            Op::Conv2d(c) => {
                let g = conv_geometry(c, &x.shape, &step.output.shape);
                out.push(quote!(need = need.max(#k::conv::conv2d_forward_scratch_len(kern, &#g));));
            }
            Op::Linear { out: o, .. } => {
                let i = x.len();
                out.push(quote!(need = need.max(#k::gemm::gemm_scratch_len(&#k::gemm::Gemm::new(n, #o, #i).transpose_b()));));
            }
            _ => {}
        }
    }
    out
}

fn span_of(loc: Loc) -> Span {
    match loc {
        Loc::Macro(s) => Span::call_site().located_at(s),
        _ => Span::call_site(),
    }
}

fn unsupported(step: &Step, what: &str) -> Diagnostic {
    Diagnostic::error(
        UNSUPPORTED,
        step.loc,
        format!(
            "layer `{}`: {what} is not supported by the CPU emitter yet",
            step.layer
        ),
    )
}

/// `(offset, len)` of an arena operand, in generated code.
fn range(op: &Operand) -> TokenStream {
    let len = op.len();
    match op.at {
        Location::Arena(off) if op.batched => quote!((#off * b, n * #len)),
        Location::Arena(off) => quote!((#off * b, #len)),
        Location::Input(_) | Location::Grad(_) => {
            unreachable!("range: only arena operands have arena ranges")
        }
    }
}

/// The runtime's activation for an IR activation.
fn activation(a: ir::Activation) -> TokenStream {
    let p = quote!(::kiln::runtime::activation::Activation);
    match a {
        ir::Activation::Relu => quote!(#p::Relu),
        ir::Activation::LeakyRelu { alpha } => {
            let a = alpha as f32;
            quote!(#p::LeakyRelu(#a))
        }
        ir::Activation::Elu { alpha } => {
            let a = alpha as f32;
            quote!(#p::Elu(#a))
        }
        ir::Activation::Selu => quote!(#p::Selu),
        ir::Activation::Sigmoid => quote!(#p::Sigmoid),
        ir::Activation::Tanh => quote!(#p::Tanh),
        ir::Activation::Swish => quote!(#p::Swish),
        ir::Activation::Step => quote!(#p::Step),
    }
}

/// A parameter slice of the step, by position among the node's learned
/// tensors.
fn param(program: &Program, step: &Step, i: usize) -> TokenStream {
    let slot = &program.params[step.params[i]];
    let (start, end) = (slot.offset, slot.offset + slot.len());
    quote!(&params[#start..#end])
}

fn buffer(program: &Program, step: &Step, i: usize) -> TokenStream {
    let slot = &program.buffers[step.buffers[i]];
    let (start, end) = (slot.offset, slot.offset + slot.len());
    quote!(&buffers[#start..#end])
}

/// `[C, H, W]` of a per-example shape, or `[D, 1, 1]` for a vector.
fn chw(shape: &ir::Shape) -> [usize; 3] {
    match *shape.dims() {
        [c, h, w] => [c, h, w],
        [d] => [d, 1, 1],
        _ => {
            let d = shape.dims();
            let c = d.first().copied().unwrap_or(1);
            let rest: usize = d.iter().skip(1).product();
            [c, rest, 1]
        }
    }
}

fn emit_step(program: &Program, step: &Step) -> Result<TokenStream, Diagnostic> {
    let span = span_of(step.loc);
    // Bind the inputs: arena inputs through one checked split, external
    // inputs and gradients by slice. In place, the output is the first
    // input's memory.
    let skip = usize::from(step.in_place);
    let names: Vec<_> = (0..step.inputs.len())
        .map(|i| format_ident!("x{}", i))
        .collect();
    let mut split_names = Vec::new();
    let mut split_ranges = Vec::new();
    let mut ext = TokenStream::new();
    for (i, o) in step.inputs.iter().enumerate().skip(skip) {
        let name = &names[i];
        let len = o.len();
        match o.at {
            Location::Arena(_) => {
                split_names.push(name.clone());
                split_ranges.push(range(o));
            }
            Location::Input(k) => {
                let src = format_ident!("input{}", k);
                ext.extend(quote!(let #name: &[f32] = &#src[..n * #len];));
            }
            Location::Grad(_) => {
                return Err(unsupported(step, "reading a parameter gradient"));
            }
        }
    }
    let binding = match step.output.at {
        Location::Grad(off) => {
            let end = off + step.output.len();
            quote! {
                let ([#(#split_names),*], _) = ::kiln::runtime::arena::split(&mut *arena, [#(#split_ranges),*], (0, 0));
                let y: &mut [f32] = &mut grads[#off..#end];
                #ext
            }
        }
        _ => {
            let out_range = range(&step.output);
            quote! {
                let ([#(#split_names),*], y) = ::kiln::runtime::arena::split(&mut *arena, [#(#split_ranges),*], #out_range);
                #ext
            }
        }
    };
    let body = kernel_call(program, step, &names)?;
    Ok(quote_spanned! {span=>
        {
            #binding
            #body
        }
    })
}

fn kernel_call(
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
            let wt = param(program, step, 0);
            let epi = if c.bias {
                let bias = param(program, step, 1);
                quote!(&[#k::conv::ConvEpilogue::Bias(#bias)])
            } else {
                quote!(&[])
            };
            quote!(#k::conv::conv2d_forward(kern, &#g, #x, #wt, #epi, y);)
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
            if p.ceil {
                return Err(unsupported(step, "pooling in ceil mode"));
            }
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

fn conv_geometry(c: &ir::Conv2d, input: &ir::Shape, output: &ir::Shape) -> TokenStream {
    let k = quote!(::kiln::runtime::kernels);
    let [ci, h, w] = chw(input);
    let [co, _, _] = chw(output);
    let [kh, kw] = c.kernel;
    let [sh, sw] = c.stride;
    let [dh, dw] = c.dilation;
    let [[pt, pb], [pl, pr]] = c.padding.resolve([h, w], c.kernel, c.stride, c.dilation);
    let groups = c.groups;
    quote! {
        #k::conv::Conv2dGeometry {
            n, c_in: #ci, h: #h, w: #w, c_out: #co, kh: #kh, kw: #kw,
            stride: [#sh, #sw], pad: [#pt, #pl, #pb, #pr], dilation: [#dh, #dw], groups: #groups,
        }
    }
}

fn pool_geometry(p: &ir::Pool2d, input: &ir::Shape) -> TokenStream {
    let [c, h, w] = chw(input);
    let [kh, kw] = p.kernel;
    let [sh, sw] = p.stride;
    let [ph, pw] = p.padding;
    quote! {
        ::kiln::runtime::kernels::pool::Pool2d { n, c: #c, h: #h, w: #w, kh: #kh, kw: #kw, sh: #sh, sw: #sw, ph: #ph, pw: #pw }
    }
}

fn channel_shape(shape: &ir::Shape) -> TokenStream {
    let [c, h, w] = chw(shape);
    let spatial = h * w;
    quote!(::kiln::runtime::kernels::activation::ChannelShape { n, c: #c, spatial: #spatial })
}

/// The training-mode forward of ops whose training semantics differ from
/// inference (batch norm, dropout, the loss), and every gradient op. Other
/// ops run as at inference (`None`).
fn train_call(
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
                    if p.ceil {
                        return Err(unsupported(step, "pooling in ceil mode"));
                    }
                    let g = pool_geometry(p, &in_shape);
                    quote!(#k::backward::max_pool2d_backward_from_input(#x, #x1, y, #g);)
                }
                GradOp::AvgPool2d {
                    pool,
                    count_pad,
                    input,
                } => {
                    if pool.ceil {
                        return Err(unsupported(step, "pooling in ceil mode"));
                    }
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
                    quote! {
                        let wt: &[f32] = #w;
                        let mut dw = ::std::vec![0.0f32; wt.len()];
                        #k::activation::prelu_backward(#x, #x1, y, &mut dw, #shape, wt);
                    }
                }
                GradOp::PreluWeight { .. } => {
                    let shape = channel_shape(&in_shape);
                    let len = out_shape.numel() as usize;
                    quote! {
                        let ones = [1.0f32; #len];
                        let mut dx = ::std::vec![0.0f32; #x.len()];
                        #k::activation::prelu_backward(#x, #x1, &mut dx, y, #shape, &ones);
                    }
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
                GradOp::BatchNormData { eps, weight } => {
                    let shape = channel_shape(&in_shape);
                    let c = chw(&in_shape)[0];
                    let eps = *eps as f32;
                    let gamma = named_param(program, step, weight)?;
                    quote! {
                        let mut mean = [0.0f32; #c];
                        let mut inv = [0.0f32; #c];
                        let mut dg = [0.0f32; #c];
                        let mut db = [0.0f32; #c];
                        #k::backward::batch_norm_stats(#x, #shape, #eps, &mut mean, &mut inv);
                        #k::norm::batch_norm_backward(#x, #x1, y, &mut dg, &mut db, #shape, #gamma, &mean, &inv);
                    }
                }
                GradOp::BatchNormWeight { eps } => {
                    let shape = channel_shape(&in_shape);
                    let c = chw(&in_shape)[0];
                    let eps = *eps as f32;
                    quote! {
                        let mut mean = [0.0f32; #c];
                        let mut inv = [0.0f32; #c];
                        #k::backward::batch_norm_stats(#x, #shape, #eps, &mut mean, &mut inv);
                        #k::backward::batch_norm_weight_grad(#x, #x1, #shape, &mean, &inv, y);
                    }
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
