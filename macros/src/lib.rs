//! The `network!` procedural macro: a thin shell over `kiln-compiler`.
//!
//! Like `serde_derive`, this crate only parses, calls the compiler and turns
//! its results into tokens: [`network!`] hands its tokens (or the YAML file
//! it names) to `kiln_compiler::frontend`, and emits, per network, a
//! documented type. Every diagnostic becomes a `compile_error!` at its span;
//! on error the network types are still emitted as stubs (thiserror's
//! `fallback.rs`), so one mistake gives one error rather than a cascade of
//! "cannot find type" errors.

use std::path::{Path, PathBuf};

use proc_macro::TokenStream;
use proc_macro2::{Span, TokenStream as TokenStream2};
use quote::{quote, quote_spanned};

use kiln_compiler::ast::{Loc, Module};
use kiln_compiler::diag::Diagnostics;
use kiln_compiler::frontend;

/// Compiles a network description into a Rust type.
///
/// Two forms (see `docs/language.md`):
///
/// ```ignore
/// kiln::network! {
///     /// LeNet-5.
///     pub network LeNet5(x: [1, 32, 32]) -> logits: [10] {
///         x.conv2d(6, k = 5).relu().max_pool2d(2).flatten().linear(10)
///     }
///     loss cross_entropy;
/// }
/// kiln::network!("models/lenet5.yaml");
/// ```
///
/// The file form reads the path relative to the calling crate's
/// `CARGO_MANIFEST_DIR`, and rebuilds when the file changes.
#[proc_macro]
pub fn network(input: TokenStream) -> TokenStream {
    expand(input.into()).into()
}

/// The expansion, on `proc_macro2` tokens.
fn expand(input: TokenStream2) -> TokenStream2 {
    if let Ok(path) = syn::parse2::<syn::LitStr>(input.clone()) {
        return expand_file(&path);
    }
    let parsed = frontend::tokens::parse(input);
    let mut out = errors(&parsed.diagnostics, None);
    let failed = parsed.diagnostics.has_errors();
    out.extend(backend(&parsed.module, failed, None, Span::call_site()));
    for stub in &parsed.stubs {
        if let Some(span_ident) = ident(&stub.name.name, loc_span(stub.name.loc, None)) {
            out.extend(stub_type(&span_ident, stub.public));
        }
    }
    out
}

/// The file form: `network!("models/lenet5.yaml")`.
fn expand_file(lit: &syn::LitStr) -> TokenStream2 {
    let span = lit.span();
    let rel = lit.value();
    let Some(dir) = std::env::var_os("CARGO_MANIFEST_DIR") else {
        return quote_spanned!(span=> ::core::compile_error!(
            "network!: CARGO_MANIFEST_DIR is not set; build with cargo"
        ););
    };
    let path: PathBuf = Path::new(&dir).join(&rel);
    let source = match std::fs::read_to_string(&path) {
        Ok(s) => s,
        Err(e) => {
            let msg = format!("network!: cannot read `{}`: {e}", path.display());
            return quote_spanned!(span=> ::core::compile_error!(#msg););
        }
    };
    let (module, diags) = frontend::yaml::parse(&source);
    let abs = path.to_string_lossy().into_owned();
    // Makes cargo rebuild the caller when the file changes.
    let mut out = quote_spanned!(span=> const _: &str = ::core::include_str!(#abs););
    out.extend(errors(&diags, Some((&rel, span))));
    out.extend(backend(
        &module,
        diags.has_errors(),
        Some((&rel, span)),
        span,
    ));
    out
}

/// The span a location points at; text locations point at the literal.
fn loc_span(loc: Loc, file: Option<(&str, Span)>) -> Span {
    match (loc, file) {
        (Loc::Macro(span), _) => span,
        (_, Some((_, span))) => span,
        _ => Span::call_site(),
    }
}

/// One `compile_error!` per diagnostic, at its span.
fn errors(diags: &Diagnostics, file: Option<(&str, Span)>) -> TokenStream2 {
    let mut out = TokenStream2::new();
    for d in diags.iter() {
        let mut msg = format!("[K{:04}] {}", d.code.0, d.message);
        if let (Loc::Text { line, col, .. }, Some((path, _))) = (d.loc, file) {
            msg = format!("{path}:{line}:{col}: {msg}");
        }
        for label in &d.labels {
            if let (Loc::Text { line, col, .. }, Some((path, _))) = (label.loc, file) {
                msg.push_str(&format!("\n{path}:{line}:{col}: {}", label.message));
            }
        }
        for note in &d.notes {
            msg.push_str(&format!("\nnote: {note}"));
        }
        let span = loc_span(d.loc, file);
        out.extend(quote_spanned!(span=> ::core::compile_error!(#msg);));
    }
    out
}

/// The compiled types of `module` (check, plan, emit), or its errors and
/// stubs of its types.
fn backend(
    module: &Module,
    failed: bool,
    file: Option<(&str, Span)>,
    file_span: Span,
) -> TokenStream2 {
    if failed {
        return types(module, true, file_span);
    }
    match kiln_compiler::emit::expand_module(module, file_span) {
        Ok(tokens) => tokens,
        Err(diags) => {
            let mut out = errors(&diags, file);
            out.extend(types(module, true, file_span));
            out
        }
    }
}

/// A network name as an identifier, if it is one.
fn ident(name: &str, span: Span) -> Option<syn::Ident> {
    let mut id = syn::parse_str::<syn::Ident>(name).ok()?;
    id.set_span(span);
    Some(id)
}

/// The generated type of every network of `module`; stubs when `failed`.
fn types(module: &Module, failed: bool, file_span: Span) -> TokenStream2 {
    let mut out = TokenStream2::new();
    for net in &module.networks {
        let span = match net.name.loc {
            Loc::Macro(span) => span,
            _ => file_span,
        };
        let Some(name) = ident(&net.name.name, span) else {
            continue;
        };
        if failed {
            out.extend(stub_type(&name, net.public));
            continue;
        }
        let mut docs: Vec<String> = net.docs.iter().map(|d| format!(" {d}")).collect();
        if docs.is_empty() {
            docs.push(format!(
                " The `{}` network, compiled by `kiln::network!`.",
                net.name.name
            ));
        }
        let vis = net.public.then(|| quote!(pub));
        out.extend(quote_spanned! {span=>
            #(#[doc = #docs])*
            #[derive(::core::fmt::Debug, ::core::clone::Clone, ::core::marker::Copy, ::core::default::Default)]
            #vis struct #name;
        });
    }
    out
}

/// A stub of a network type whose description has errors.
fn stub_type(name: &syn::Ident, public: bool) -> TokenStream2 {
    let vis = public.then(|| quote!(pub));
    quote! {
        /// A stub: this network's description has errors.
        #[allow(dead_code)]
        #[derive(::core::fmt::Debug, ::core::clone::Clone, ::core::marker::Copy, ::core::default::Default)]
        #vis struct #name;
    }
}
