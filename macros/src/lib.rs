//! The `network!` procedural macro: a thin shell over `kiln-compiler`.
//!
//! Like `serde_derive`, this crate only parses, calls the compiler and turns
//! its results into tokens: [`network!`] hands its tokens (or the YAML file
//! it names) to `kiln_compiler::frontend`, checks the result with
//! `kiln_compiler::check` (lowering, shape inference, verification), and
//! emits, per network, a documented type with its totals
//! (`TOTAL_PARAMS`, `TOTAL_MACS`, `summary_json()`). Every diagnostic becomes a `compile_error!` at its span;
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
use kiln_compiler::plan::PlanOptions;

/// Compiles a network description into a Rust type.
///
/// Two forms (see `docs/language.md`):
///
/// ```
/// kiln::network! {
///     /// LeNet-5.
///     pub network LeNet5(x: [1, 32, 32]) -> logits: [10] {
///         x.conv2d(6, k = 5).relu().max_pool2d(2)
///          .conv2d(16, k = 5).relu().max_pool2d(2)
///          .conv2d(120, k = 5).relu().flatten()
///          .linear(84).relu()
///          .linear(10)
///     }
///     loss cross_entropy;
/// }
/// mod zoo {
///     kiln::network!("../models/lenet5.yaml");
/// }
/// assert_eq!(LeNet5::TOTAL_PARAMS, 61_706);
/// assert_eq!(zoo::LeNet5::TOTAL_MACS, LeNet5::TOTAL_MACS);
/// ```
///
/// The file form reads the path relative to the calling crate's
/// `CARGO_MANIFEST_DIR`, and rebuilds when the file changes. It takes the
/// plan's options after the path: `fuse = false` compiles inference from
/// the unfused graph (one kernel per op), `prepack = false` reads
/// convolution weights as stored instead of packing them once (both are on
/// by default; the speed comparison in `examples/fusion_speed.rs` uses
/// them).
#[proc_macro]
pub fn network(input: TokenStream) -> TokenStream {
    expand(input.into()).into()
}

/// The expansion, on `proc_macro2` tokens.
fn expand(input: TokenStream2) -> TokenStream2 {
    if let Ok(args) = syn::parse2::<FileArgs>(input.clone()) {
        return match args.options() {
            Ok(options) => expand_file(&args.path, &options),
            Err(e) => e.to_compile_error(),
        };
    }
    let parsed = frontend::tokens::parse(input);
    let mut out = errors(&parsed.diagnostics, None);
    let failed = parsed.diagnostics.has_errors();
    let (types, diags) = types(
        &parsed.module,
        failed,
        Span::call_site(),
        &PlanOptions::default(),
    );
    out.extend(errors(&diags, None));
    out.extend(types);
    for stub in &parsed.stubs {
        if let Some(span_ident) = ident(&stub.name.name, loc_span(stub.name.loc, None)) {
            out.extend(stub_type(&span_ident, stub.public));
        }
    }
    out
}

/// The file form's arguments: the path, then optional `name = bool` plan
/// options (`fuse`, `prepack`), as in
/// `network!("models/resnet18.yaml", fuse = false)`.
struct FileArgs {
    path: syn::LitStr,
    options: Vec<(syn::Ident, syn::LitBool)>,
}

impl syn::parse::Parse for FileArgs {
    fn parse(input: syn::parse::ParseStream<'_>) -> syn::Result<Self> {
        let path = input.parse()?;
        let mut options = Vec::new();
        while !input.is_empty() {
            input.parse::<syn::Token![,]>()?;
            if input.is_empty() {
                break;
            }
            let name: syn::Ident = input.parse()?;
            input.parse::<syn::Token![=]>()?;
            options.push((name, input.parse()?));
        }
        Ok(FileArgs { path, options })
    }
}

impl FileArgs {
    /// The plan options, or an error at the first unknown or repeated name.
    fn options(&self) -> syn::Result<PlanOptions> {
        let mut options = PlanOptions::default();
        let mut seen = Vec::new();
        for (name, value) in &self.options {
            let key = name.to_string();
            if seen.contains(&key) {
                return Err(syn::Error::new(
                    name.span(),
                    format!("network!: option `{key}` given twice"),
                ));
            }
            match key.as_str() {
                "fuse" => options.fuse = value.value,
                "prepack" => options.prepack = value.value,
                _ => {
                    return Err(syn::Error::new(
                        name.span(),
                        format!("network!: unknown option `{key}` (expected `fuse` or `prepack`)"),
                    ));
                }
            }
            seen.push(key);
        }
        Ok(options)
    }
}

/// The file form: `network!("models/lenet5.yaml")`, with plan options.
fn expand_file(lit: &syn::LitStr, options: &PlanOptions) -> TokenStream2 {
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
    let (types, check_diags) = types(&module, diags.has_errors(), span, options);
    out.extend(errors(&check_diags, Some((&rel, span))));
    out.extend(types);
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

/// A network name as an identifier, if it is one.
fn ident(name: &str, span: Span) -> Option<syn::Ident> {
    let mut id = syn::parse_str::<syn::Ident>(name).ok()?;
    id.set_span(span);
    Some(id)
}

/// The generated types of `module`: checked by the compiler's pipeline when
/// the front-end found no error, stubs otherwise. Returns the tokens and the
/// pipeline's diagnostics (to be reported by the caller).
fn types(
    module: &Module,
    failed: bool,
    file_span: Span,
    options: &PlanOptions,
) -> (TokenStream2, Diagnostics) {
    let span_of = |loc: Loc| match loc {
        Loc::Macro(span) => span,
        _ => file_span,
    };
    let mut out = TokenStream2::new();
    let checked = if failed {
        Err(Diagnostics::new())
    } else {
        kiln_compiler::check(module)
    };
    let (checked, mut diags) = match checked {
        Ok(nets) => (nets, Diagnostics::new()),
        Err(diags) => (Vec::new(), diags),
    };
    let mut emit_diags = Diagnostics::new();
    for net in &module.networks {
        let span = span_of(net.name.loc);
        let Some(name) = ident(&net.name.name, span) else {
            continue;
        };
        let Some(done) = checked.iter().find(|c| c.name == net.name.name) else {
            out.extend(stub_type(&name, net.public));
            continue;
        };
        let mut docs: Vec<String> = net.docs.iter().map(|d| format!(" {d}")).collect();
        if docs.is_empty() {
            docs.push(format!(
                " The `{}` network, compiled by `kiln::network!`.",
                net.name.name
            ));
        }
        let params = done.summary.total_params;
        let macs = done.summary.total_macs;
        let json = done.summary.to_json();
        let info = kiln_compiler::emit::cpu::TypeInfo {
            docs,
            public: net.public,
            span,
        };
        let program = kiln_compiler::plan::build_with(&done.graph, options);
        match kiln_compiler::emit::cpu::emit(&program, &info) {
            Ok(tokens) => out.extend(tokens),
            Err(d) => {
                emit_diags.extend(d);
                out.extend(stub_type(&name, net.public));
                continue;
            }
        }
        out.extend(quote_spanned! {span=>
            #[allow(dead_code)]
            impl #name {
                /// The learned parameters of the network, summed over its layers.
                pub const TOTAL_PARAMS: u64 = #params;
                /// The multiply-adds of one example's forward pass.
                pub const TOTAL_MACS: u64 = #macs;
                /// The per-layer summary as JSON, as `kilnc summary --format json`
                /// prints it: `total_params`, `total_macs` and `layers` (each
                /// `name`, `op`, `output_shape`, `params`, `macs`).
                pub fn summary_json() -> &'static str {
                    #json
                }
            }
        });
    }
    diags.extend(emit_diags);
    (out, diags)
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

#[cfg(test)]
mod tests {
    //! The file form's errors, which trybuild cannot reach (it builds in
    //! its own directory, so `CARGO_MANIFEST_DIR` differs there).

    use super::expand;

    /// Expands `network!(input)` and checks that its output holds `expect`.
    fn check(input: &str, expect: &str) {
        let tokens: proc_macro2::TokenStream = input.parse().expect("test input lexes");
        let got = expand(tokens).to_string();
        assert!(
            got.contains(expect),
            "\n--- got ---\n{got}\n--- expected to contain ---\n{expect}\n"
        );
    }

    #[test]
    fn file_form() {
        let cases = [
            (
                r#""tests/data/broken.yaml""#,
                r#"compile_error ! ("tests/data/broken.yaml:6:8: [K0001] invalid YAML: while parsing a flow mapping, did not find expected ',' or '}'")"#,
            ),
            (r#""tests/data/missing.yaml""#, "network!: cannot read"),
            // A shape error found by the pipeline, located in the file; the
            // type is still emitted, as a stub.
            (
                r#""tests/data/shape_error.yaml""#,
                r#"compile_error ! ("tests/data/shape_error.yaml:5:5: [K0120] linear `linear0`: expected a rank-1 input [D], found [4, 26, 26]; put `flatten` before it")"#,
            ),
            (
                r#""tests/data/shape_error.yaml""#,
                "pub struct ShapeError ;",
            ),
            ("\"tests/data/lenet5.yaml\"", "include_str ! ("),
            ("\"tests/data/lenet5.yaml\"", "pub struct LeNet5 {"),
            (
                "\"tests/data/lenet5.yaml\"",
                "# [doc = \" LeNet-5, as in the crash course.\"]",
            ),
        ];
        for (input, expect) in cases {
            check(input, expect);
        }
    }
}

#[cfg(test)]
mod option_tests {
    //! The file form's plan options.

    use super::FileArgs;

    /// Parses the file form's arguments `input` and checks the options
    /// (`fuse`, `prepack`) or the error message against `expect`.
    fn check(input: &str, expect: Result<(bool, bool), &str>) {
        let tokens: proc_macro2::TokenStream = input.parse().expect("tokens");
        let got = syn::parse2::<FileArgs>(tokens)
            .and_then(|a| a.options())
            .map(|o| (o.fuse, o.prepack))
            .map_err(|e| e.to_string());
        assert_eq!(got, expect.map_err(str::to_string), "{input}");
    }

    #[test]
    fn file_form_options() {
        check(r#""m.yaml""#, Ok((true, true)));
        check(r#""m.yaml","#, Ok((true, true)));
        check(r#""m.yaml", fuse = false"#, Ok((false, true)));
        check(
            r#""m.yaml", prepack = false, fuse = true"#,
            Ok((true, false)),
        );
        check(
            r#""m.yaml", fold = false"#,
            Err("network!: unknown option `fold` (expected `fuse` or `prepack`)"),
        );
        check(
            r#""m.yaml", fuse = false, fuse = true"#,
            Err("network!: option `fuse` given twice"),
        );
    }
}
