//! The prepared tensors of the generated type: their lengths at
//! construction and the `prepare` method that computes them in place (see
//! `plan::prepare`).

use proc_macro2::TokenStream;
use quote::quote;

use super::conv_geometry;
use crate::plan::{Program, Recipe, Source};

/// The generated code of the prepared tensors.
pub(super) struct PreparedCode {
    /// How many there are.
    pub count: usize,
    /// Statements, in `with_params` (where `kern` is the kernel table), that
    /// set `len[i]` of every prepared tensor.
    pub lens: Vec<TokenStream>,
    /// Per tensor, whether it is transient (shares the tail region).
    pub transient: Vec<bool>,
    /// The body of `prepare`, computing each tensor in order.
    pub compute: Vec<TokenStream>,
}

/// A slice of the parameter (`params`) or buffer (`buffers`) vector.
fn slot(list: &[crate::plan::TensorSlot], i: usize, vec: &TokenStream) -> TokenStream {
    let (start, end) = (list[i].offset, list[i].offset + list[i].len());
    quote!(&#vec[#start..#end])
}

/// The code of every prepared tensor of `program`.
pub(super) fn prepared_code(program: &Program) -> PreparedCode {
    let k = quote!(::kiln::runtime::kernels);
    let (pv, bv) = (quote!(params), quote!(buffers));
    let mut lens = Vec::new();
    let mut compute = Vec::new();
    for (i, p) in program.prepared.iter().enumerate() {
        let (len, body) = match &p.recipe {
            Recipe::FoldWeight { weight, bn } => {
                let w = slot(&program.params, *weight, &pv);
                let gamma = slot(&program.params, bn.gamma, &pv);
                let var = slot(&program.buffers, bn.var, &bv);
                let eps = bn.eps;
                let l = program.params[*weight].len();
                (
                    quote!(#l),
                    quote! {
                        #k::fold::fold_batch_norm_weight(#w, #gamma, #var, #eps, &mut prepared[at[#i]..at[#i] + len[#i]]);
                    },
                )
            }
            Recipe::FoldBias { bias, bn } => {
                let b = match bias {
                    Some(b) => {
                        let s = slot(&program.params, *b, &pv);
                        quote!(::core::option::Option::Some(#s))
                    }
                    None => quote!(::core::option::Option::None),
                };
                let gamma = slot(&program.params, bn.gamma, &pv);
                let beta = slot(&program.params, bn.beta, &pv);
                let mean = slot(&program.buffers, bn.mean, &bv);
                let var = slot(&program.buffers, bn.var, &bv);
                let eps = bn.eps;
                let l = program.params[bn.gamma].len();
                (
                    quote!(#l),
                    quote! {
                        #k::fold::fold_batch_norm_bias(#b, #gamma, #beta, #mean, #var, #eps, &mut prepared[at[#i]..at[#i] + len[#i]]);
                    },
                )
            }
            Recipe::PackConv {
                weight,
                conv,
                input,
                output,
            } => {
                let g = conv_geometry(conv, input, output);
                let body = match weight {
                    Source::Param(w) => {
                        let w = slot(&program.params, *w, &pv);
                        quote! {
                            #k::conv::conv2d_pack_weights(kern, &#g, #w, &mut prepared[at[#i]..at[#i] + len[#i]]);
                        }
                    }
                    Source::Prepared(j) => {
                        // Transient sources sit in the tail, after every
                        // persistent tensor.
                        quote! {
                            let (dst, src) = prepared.split_at_mut(at[#j]);
                            #k::conv::conv2d_pack_weights(kern, &#g, &src[..len[#j]], &mut dst[at[#i]..at[#i] + len[#i]]);
                        }
                    }
                };
                (
                    quote!({
                        let n = 1usize;
                        #k::conv::conv2d_packed_weights_len(kern, &#g)
                    }),
                    body,
                )
            }
        };
        lens.push(quote!(len[#i] = #len;));
        compute.push(quote!({ #body }));
    }
    PreparedCode {
        count: program.prepared.len(),
        lens,
        transient: program.prepared.iter().map(|p| p.transient).collect(),
        compute,
    }
}
