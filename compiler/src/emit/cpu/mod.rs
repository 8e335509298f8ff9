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
use crate::ir::{self, Op};
mod infer;
mod prepare;
mod train;

use crate::plan::{Kernel, Location, Operand, Program, Step};
use infer::kernel_call;
use prepare::prepared_code;
use train::emit_train;

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
    let unpooled = unpooled_sizes(program);
    // The convolutions' outputs kept before a pool that no kernel fuses,
    // on the constructing thread (emitted only where a pool is fused, so
    // that other networks have no unused variable).
    let unpooled = (!unpooled.is_empty()).then(|| {
        quote! {
            let mut unpooled = 0usize;
            #(#unpooled)*
            ::kiln::runtime::kernels::conv_pool::reserve_unpooled_scratch(unpooled);
        }
    });
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
    let prep = prepared_code(program);
    let prep_count = prep.count;
    let prep_lens = &prep.lens;
    let prep_compute = &prep.compute;
    let prep_transient = &prep.transient;
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
            prepared: ::std::vec::Vec<f32>,
            prepared_at: [usize; #prep_count],
            prepared_len: [usize; #prep_count],
            prepared_stale: bool,
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
                    #unpooled
                }
                // The prepared tensors: persistent ones one after the
                // other, transient ones all in the tail.
                let kern = ::kiln::runtime::kernels::dispatch::kernels();
                let mut len = [0usize; #prep_count];
                #(#prep_lens)*
                let transient: [bool; #prep_count] = [#(#prep_transient),*];
                let mut at = [0usize; #prep_count];
                let mut end = 0usize;
                for i in 0..#prep_count {
                    if !transient[i] {
                        at[i] = end;
                        end += len[i];
                    }
                }
                let mut tail = 0usize;
                for i in 0..#prep_count {
                    if transient[i] {
                        at[i] = end;
                        tail = tail.max(len[i]);
                    }
                }
                #name {
                    params,
                    arena: ::std::vec![0.0; #arena_len * batch],
                    train_arena: ::std::vec::Vec::new(),
                    prepared: ::std::vec![0.0; end + tail],
                    prepared_at: at,
                    prepared_len: len,
                    prepared_stale: true,
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

            /// The parameters, gradients and buffers, mutable (the
            /// prepared tensors are recomputed at the next `forward`).
            pub fn params_mut(&mut self) -> &mut ::kiln::runtime::params::Params {
                self.prepared_stale = true;
                &mut self.params
            }

            /// Recomputes the tensors inference derives from the
            /// parameters and buffers (folded batch norm, packed weights),
            /// in place: no heap allocation.
            fn prepare(&mut self) {
                let kern = ::kiln::runtime::kernels::dispatch::kernels();
                let params: &[f32] = &self.params.values;
                let buffers: &[f32] = &self.params.buffers;
                let prepared: &mut [f32] = &mut self.prepared;
                let at = self.prepared_at;
                let len = self.prepared_len;
                // Packed for the full batch (packing depends on the weights'
                // geometry only, so partial batches read the same panels).
                let n = self.batch;
                #(#prep_compute)*
                self.prepared_stale = false;
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
                self.prepared_stale = true;
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
                if self.prepared_stale {
                    self.prepare();
                }
                let b = self.batch;
                let kern = ::kiln::runtime::kernels::dispatch::kernels();
                let params: &[f32] = &self.params.values;
                let buffers: &[f32] = &self.params.buffers;
                let prepared: &[f32] = &self.prepared;
                let pat = self.prepared_at;
                let plen = self.prepared_len;
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

/// Per inference step that fuses a max pool into its convolution, the code
/// that raises `unpooled` to the floats of the convolution's output the
/// runtime keeps in scratch where no kernel pools it in registers (zero
/// where one does: a direct convolution whose epilogue is a bias and a
/// ReLU, each optional).
fn unpooled_sizes(program: &Program) -> Vec<TokenStream> {
    let k = quote!(::kiln::runtime::kernels);
    let mut out = Vec::new();
    for step in &program.infer.steps {
        let (Kernel::Infer(Op::Fused(f)), Some(x)) = (&step.kernel, step.inputs.first()) else {
            continue;
        };
        let (ir::Anchor::Conv2d(c), Some(p)) = (&f.anchor, &f.pool) else {
            continue;
        };
        let g = conv_geometry(c, &x.shape, &step.output.shape);
        let pool = pool_geometry(p, &conv_output_shape(c, &x.shape, &step.output.shape));
        // The kernels take a bias (the layer's, or a folded batch norm's)
        // and a ReLU in registers; any other step needs the full output.
        let in_registers = matches!(
            f.epilogue[..],
            [] | [ir::Epilogue::Activation(ir::Activation::Relu)]
        );
        out.push(quote! {
            unpooled = unpooled.max(#k::conv_pool::unpooled_scratch_len(kern, &#g, #pool, #in_registers));
        });
    }
    out
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
        let anchor = match op {
            Op::Fused(f) => f.anchor_op(),
            other => Some(other.clone()),
        };
        match &anchor {
            Some(Op::Conv2d(c)) => {
                let g = conv_geometry(c, &x.shape, &step.output.shape);
                out.push(quote!(need = need.max(#k::conv::conv2d_forward_scratch_len(kern, &#g));));
            }
            Some(Op::Linear { out: o, .. }) => {
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

/// The prepared tensor `i`, in generated `forward`.
fn prepared(i: usize) -> TokenStream {
    quote!(&prepared[pat[#i]..pat[#i] + plen[#i]])
}

/// A buffer slice of the step, by position among the node's buffers.
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

/// The output shape of convolution `c` on `input`, with the channels of
/// `output` (a fused kernel's output can be the pooled shape).
fn conv_output_shape(c: &ir::Conv2d, input: &ir::Shape, output: &ir::Shape) -> ir::Shape {
    let [_, h, w] = chw(input);
    let [co, _, _] = chw(output);
    let [[pt, pb], [pl, pr]] = c.padding.resolve([h, w], c.kernel, c.stride, c.dilation);
    let size = |n: usize, lo: usize, hi: usize, k: usize, s: usize, d: usize| {
        (n + lo + hi - d * (k - 1) - 1) / s + 1
    };
    ir::Shape(vec![
        co,
        size(h, pt, pb, c.kernel[0], c.stride[0], c.dilation[0]),
        size(w, pl, pr, c.kernel[1], c.stride[1], c.dilation[1]),
    ])
}

fn pool_geometry(p: &ir::Pool2d, input: &ir::Shape) -> TokenStream {
    let [c, h, w] = chw(input);
    let [kh, kw] = p.kernel;
    let [sh, sw] = p.stride;
    let [ph, pw] = p.padding;
    let ceil = p.ceil.then(|| quote!(.ceil_mode(true)));
    quote! {
        ::kiln::runtime::kernels::pool::Pool2d { n, c: #c, h: #h, w: #w, kh: #kh, kw: #kw, sh: #sh, sw: #sw, ph: #ph, pw: #pw }#ceil
    }
}

fn channel_shape(shape: &ir::Shape) -> TokenStream {
    let [c, h, w] = chw(shape);
    let spatial = h * w;
    quote!(::kiln::runtime::kernels::activation::ChannelShape { n, c: #c, spatial: #spatial })
}
