//! The `network!` procedural macro: a thin shell over `kiln-compiler`.

use proc_macro::TokenStream;

/// Compiles a network description into a Rust type.
#[proc_macro]
pub fn network(input: TokenStream) -> TokenStream {
    let _ = input;
    quote::quote!(::core::compile_error!("network!: not yet implemented");).into()
}
