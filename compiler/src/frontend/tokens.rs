//! The macro front-end: the tokens of a `network!` invocation → [`ast::Module`].
//!
//! The items (`block`, `[pub] network`, `loss`) are parsed with `syn`;
//! bodies and expressions go through the shared converter in
//! [`super::expr`]. Every node gets [`Loc::Macro`] with the span of its
//! tokens; a method call (a layer) is located at its name and arguments,
//! not at its receiver chain.
//!
//! Errors are collected per item: the tokens are first cut into items at
//! the token-tree level (an item ends after its `{ body }` or its `;`), so
//! a syntax error in one item does not hide the errors of the next. A
//! network whose tokens do not parse is still reported by name in
//! [`Parsed::stubs`], so the macro can emit a stub type for it.

use std::cell::Cell;

use proc_macro2::{Delimiter, Span, TokenStream, TokenTree};
use syn::parse::{ParseStream, Parser};
use syn::punctuated::Punctuated;
use syn::spanned::Spanned;
use syn::{Token, bracketed, parenthesized};

use crate::ast::{Block, Dim, Ident, Input, Loc, Loss, Module, Network, Output, Param};
use crate::diag::{Code, Diagnostic, Diagnostics};
use crate::frontend::codes;
use crate::frontend::expr::{Converter, MAX_NESTING, MacroLocator};

/// A network that failed to parse, known by its header.
#[derive(Debug, Clone)]
pub struct Stub {
    /// The network's type name.
    pub name: Ident,
    /// Whether it was declared `pub`.
    pub public: bool,
}

/// What the macro front-end made of an invocation, errors included.
#[derive(Debug, Clone, Default)]
pub struct Parsed {
    /// The items that parsed.
    pub module: Module,
    /// Networks whose tokens did not parse, by name.
    pub stubs: Vec<Stub>,
    /// Every error found.
    pub diagnostics: Diagnostics,
}

/// Parses the tokens of a `network!` invocation, keeping what parsed.
pub fn parse(tokens: TokenStream) -> Parsed {
    let mut out = Parsed::default();
    if let Some(span) = too_deep(&tokens) {
        out.diagnostics.push(Diagnostic::error(
            codes::TOO_DEEP,
            Loc::Macro(span),
            format!("the tokens nest deeper than {MAX_NESTING} levels"),
        ));
        return out;
    }
    // Whether the previous item was a network still waiting for its loss.
    let mut loss_slot = false;
    for chunk in split_items(tokens) {
        // The code of the error, when the item does not parse.
        let code = Cell::new(codes::MACRO_SYNTAX);
        let item = (|input: ParseStream| parse_item(input, &code)).parse2(chunk.clone());
        match item {
            Ok(item) => {
                let mut diags = Diagnostics::new();
                let locator = MacroLocator;
                let mut conv = Converter::new(&locator, &mut diags);
                match item {
                    Item::Network(raw) => {
                        let network = raw.convert(&mut conv);
                        out.module.networks.push(network);
                        loss_slot = true;
                    }
                    Item::Block(raw) => {
                        let block = raw.convert(&mut conv);
                        out.module.blocks.push(block);
                        loss_slot = false;
                    }
                    Item::Loss(raw) => {
                        let loss = raw.convert(&mut conv);
                        match out.module.networks.last_mut() {
                            Some(net) if loss_slot => net.loss = Some(loss),
                            _ => conv.diags.push(Diagnostic::error(
                                codes::MISPLACED_LOSS,
                                loss.loc,
                                format!(
                                    "`loss {}` does not follow a network (or that network already has a loss); write it right after the network it belongs to",
                                    loss.op.name
                                ),
                            )),
                        }
                        loss_slot = false;
                    }
                }
                out.diagnostics.extend(diags);
            }
            Err(err) => {
                push_syn(&mut out.diagnostics, code.get(), err);
                if let Some(stub) = outline(chunk) {
                    out.stubs.push(stub);
                }
                loss_slot = false;
            }
        }
    }
    out
}

/// Records every message of a `syn::Error` as a diagnostic.
pub(crate) fn push_syn(diags: &mut Diagnostics, code: Code, err: syn::Error) {
    for e in err {
        diags.push(Diagnostic::error(code, Loc::Macro(e.span()), e.to_string()));
    }
}

/// The span of the first group nested deeper than [`MAX_NESTING`], if any.
fn too_deep(tokens: &TokenStream) -> Option<Span> {
    let mut stack = vec![tokens.clone().into_iter()];
    while let Some(top) = stack.last_mut() {
        match top.next() {
            Some(TokenTree::Group(g)) => {
                if stack.len() >= MAX_NESTING {
                    return Some(g.span());
                }
                stack.push(g.stream().into_iter());
            }
            Some(_) => {}
            None => {
                stack.pop();
            }
        }
    }
    None
}

/// Cuts the tokens into items: each ends after a top-level `{ ... }` group
/// or a `;`.
fn split_items(tokens: TokenStream) -> Vec<TokenStream> {
    let mut items = Vec::new();
    let mut current = Vec::new();
    for tt in tokens {
        let end = match &tt {
            TokenTree::Group(g) => g.delimiter() == Delimiter::Brace,
            TokenTree::Punct(p) => p.as_char() == ';',
            _ => false,
        };
        current.push(tt);
        if end {
            items.push(current.drain(..).collect());
        }
    }
    if !current.is_empty() {
        items.push(current.into_iter().collect());
    }
    items
}

/// The name of a network in tokens that did not parse: `[pub] network NAME`.
fn outline(chunk: TokenStream) -> Option<Stub> {
    let tokens: Vec<TokenTree> = chunk.into_iter().collect();
    for (i, tt) in tokens.iter().enumerate() {
        if let TokenTree::Ident(kw) = tt
            && kw == "network"
            && let Some(TokenTree::Ident(name)) = tokens.get(i + 1)
        {
            let public = i > 0 && matches!(&tokens[i - 1], TokenTree::Ident(p) if p == "pub");
            return Some(Stub {
                name: Ident {
                    name: name.to_string(),
                    loc: Loc::Macro(name.span()),
                },
                public,
            });
        }
    }
    None
}

/// One item, as `syn` parsed it, before conversion to the AST.
enum Item {
    Network(RawNetwork),
    Block(RawBlock),
    Loss(RawLoss),
}

struct RawNetwork {
    docs: Vec<String>,
    public: bool,
    name: syn::Ident,
    inputs: Vec<(syn::Ident, Vec<Dim>)>,
    outputs: Vec<Output>,
    stmts: Vec<syn::Stmt>,
    close: Span,
}

struct RawBlock {
    docs: Vec<String>,
    name: syn::Ident,
    input: syn::Ident,
    params: Vec<(syn::Ident, Option<syn::Expr>, Span)>,
    stmts: Vec<syn::Stmt>,
    close: Span,
}

struct RawLoss {
    op: syn::Ident,
    args: Vec<syn::Expr>,
    output: Option<syn::Ident>,
}

/// A header error: sets the error code to [`codes::BAD_HEADER`].
fn header_error(code: &Cell<Code>, span: Span, message: impl std::fmt::Display) -> syn::Error {
    code.set(codes::BAD_HEADER);
    syn::Error::new(span, message)
}

fn parse_item(input: ParseStream, code: &Cell<Code>) -> syn::Result<Item> {
    let attrs = input.call(syn::Attribute::parse_outer)?;
    let docs = docs(&attrs)?;
    let public = if input.peek(Token![pub]) {
        let _: Token![pub] = input.parse()?;
        true
    } else {
        false
    };
    let kw: syn::Ident = input
        .parse()
        .map_err(|e| syn::Error::new(e.span(), "expected an item: `block`, `network` or `loss`"))?;
    let item = match kw.to_string().as_str() {
        "network" => Item::Network(parse_network(input, docs, public, code)?),
        "block" => {
            if public {
                return Err(syn::Error::new(
                    kw.span(),
                    "a block is not a type and cannot be `pub`; remove `pub`",
                ));
            }
            Item::Block(parse_block(input, docs, code)?)
        }
        "loss" => {
            if public || !docs.is_empty() {
                return Err(syn::Error::new(
                    kw.span(),
                    "a `loss` takes neither `pub` nor doc comments",
                ));
            }
            Item::Loss(parse_loss(input)?)
        }
        other => {
            code.set(codes::UNKNOWN_ITEM);
            return Err(syn::Error::new(
                kw.span(),
                format!("unknown item `{other}`: expected `block`, `network` or `loss`"),
            ));
        }
    };
    if !input.is_empty() {
        return Err(input.error("unexpected tokens after the item"));
    }
    Ok(item)
}

/// The doc comment lines of an item; any other attribute is an error.
fn docs(attrs: &[syn::Attribute]) -> syn::Result<Vec<String>> {
    let mut out = Vec::new();
    for attr in attrs {
        if let syn::Meta::NameValue(nv) = &attr.meta
            && nv.path.is_ident("doc")
            && let syn::Expr::Lit(syn::ExprLit {
                lit: syn::Lit::Str(s),
                ..
            }) = &nv.value
        {
            let text = s.value();
            for line in text.lines() {
                out.push(line.strip_prefix(' ').unwrap_or(line).to_string());
            }
            if text.is_empty() {
                out.push(String::new());
            }
            continue;
        }
        return Err(syn::Error::new(
            attr.span(),
            "only doc comments (`///`) are allowed on kiln items",
        ));
    }
    Ok(out)
}

fn parse_shape(input: ParseStream) -> syn::Result<Vec<Dim>> {
    let content;
    bracketed!(content in input);
    let dims = Punctuated::<syn::Expr, Token![,]>::parse_terminated(&content)?;
    let mut out = Vec::new();
    for d in dims {
        let value = match &d {
            syn::Expr::Lit(syn::ExprLit {
                lit: syn::Lit::Int(i),
                ..
            }) if i.suffix().is_empty() => i.base10_parse::<i64>().ok().filter(|v| *v > 0),
            _ => None,
        };
        match value {
            Some(value) => out.push(Dim {
                value,
                loc: Loc::Macro(d.span()),
            }),
            None => {
                return Err(syn::Error::new(
                    d.span(),
                    "a shape dimension is a positive integer literal (the batch dimension is implicit)",
                ));
            }
        }
    }
    if out.is_empty() {
        return Err(syn::Error::new(
            input.span(),
            "a shape has at least one dimension",
        ));
    }
    Ok(out)
}

fn parse_output(input: ParseStream) -> syn::Result<Output> {
    if input.peek(syn::token::Bracket) {
        let span = input.span();
        let shape = parse_shape(input)?;
        return Ok(Output {
            name: Ident {
                name: "output".to_string(),
                loc: Loc::Macro(span),
            },
            shape: Some(shape),
            loc: Loc::Macro(span),
        });
    }
    let name: syn::Ident = input.parse().map_err(|e| {
        syn::Error::new(
            e.span(),
            "expected an output: `[10]`, `logits: [10]`, `logits` or a tuple of them",
        )
    })?;
    let shape = if input.peek(Token![:]) {
        let _: Token![:] = input.parse()?;
        Some(parse_shape(input)?)
    } else {
        None
    };
    Ok(Output {
        name: Ident {
            name: name.to_string(),
            loc: Loc::Macro(name.span()),
        },
        shape,
        loc: Loc::Macro(name.span()),
    })
}

fn parse_body(input: ParseStream) -> syn::Result<(Vec<syn::Stmt>, Span)> {
    let content;
    let brace = syn::braced!(content in input);
    let stmts = content.call(syn::Block::parse_within)?;
    Ok((stmts, brace.span.close()))
}

fn parse_network(
    input: ParseStream,
    docs: Vec<String>,
    public: bool,
    code: &Cell<Code>,
) -> syn::Result<RawNetwork> {
    let name: syn::Ident = input.parse()?;
    let content;
    parenthesized!(content in input);
    let mut inputs = Vec::new();
    while !content.is_empty() {
        let name: syn::Ident = content.parse()?;
        let _: Token![:] = content.parse().map_err(|e| {
            header_error(
                code,
                e.span(),
                format!("input `{name}` needs a shape: `{name}: [C, H, W]`"),
            )
        })?;
        let shape = parse_shape(&content)?;
        inputs.push((name, shape));
        if content.is_empty() {
            break;
        }
        let _: Token![,] = content.parse()?;
    }
    if inputs.is_empty() {
        return Err(header_error(
            code,
            name.span(),
            format!("network `{name}` has no inputs: write `network {name}(x: [C, H, W]) -> ...`"),
        ));
    }
    let _: Token![->] = input.parse().map_err(|e| {
        header_error(
            code,
            e.span(),
            format!("network `{name}` needs its outputs: `-> logits: [10]`"),
        )
    })?;
    let outputs = if input.peek(syn::token::Paren) {
        let content;
        parenthesized!(content in input);
        let list = Punctuated::<Output, Token![,]>::parse_terminated_with(&content, parse_output)?;
        list.into_iter().collect()
    } else {
        vec![parse_output(input)?]
    };
    let (stmts, close) = parse_body(input)?;
    Ok(RawNetwork {
        docs,
        public,
        name,
        inputs,
        outputs,
        stmts,
        close,
    })
}

fn parse_block(input: ParseStream, docs: Vec<String>, code: &Cell<Code>) -> syn::Result<RawBlock> {
    let name: syn::Ident = input.parse()?;
    let content;
    let parens = parenthesized!(content in input);
    let list = Punctuated::<syn::Expr, Token![,]>::parse_terminated(&content)?;
    let mut params = Vec::new();
    for p in list {
        let span = p.span();
        let (ident, default) = match p {
            syn::Expr::Path(path) if path.qself.is_none() && path.path.get_ident().is_some() => {
                (path.path.get_ident().cloned(), None)
            }
            syn::Expr::Assign(a) => match *a.left {
                syn::Expr::Path(path) if path.qself.is_none() => {
                    (path.path.get_ident().cloned(), Some(*a.right))
                }
                _ => (None, None),
            },
            _ => (None, None),
        };
        match ident {
            Some(ident) => params.push((ident, default, span)),
            None => {
                return Err(header_error(
                    code,
                    span,
                    "a block parameter is a name, or `name = default`",
                ));
            }
        }
    }
    if params.is_empty() {
        return Err(header_error(
            code,
            parens.span.join(),
            format!(
                "block `{name}` needs its tensor input as the first parameter: `block {name}(x, ...)`"
            ),
        ));
    }
    let (input_ident, default, span) = params.remove(0);
    if default.is_some() {
        return Err(header_error(
            code,
            span,
            format!(
                "the first parameter of block `{name}` is its tensor input and takes no default"
            ),
        ));
    }
    let (stmts, close) = parse_body(input)?;
    Ok(RawBlock {
        docs,
        name,
        input: input_ident,
        params,
        stmts,
        close,
    })
}

fn parse_loss(input: ParseStream) -> syn::Result<RawLoss> {
    let op: syn::Ident = input.parse()?;
    let args = if input.peek(syn::token::Paren) {
        let content;
        parenthesized!(content in input);
        Punctuated::<syn::Expr, Token![,]>::parse_terminated(&content)?
            .into_iter()
            .collect()
    } else {
        Vec::new()
    };
    let output = if input.peek(Token![for]) {
        let _: Token![for] = input.parse()?;
        Some(input.parse()?)
    } else {
        None
    };
    let _: Token![;] = input.parse()?;
    Ok(RawLoss { op, args, output })
}

fn ident(id: &syn::Ident) -> Ident {
    Ident {
        name: id.to_string(),
        loc: Loc::Macro(id.span()),
    }
}

impl RawNetwork {
    fn convert(self, conv: &mut Converter<'_, MacroLocator>) -> Network {
        let body = conv.stmts(&self.stmts, self.close);
        Network {
            loc: Loc::Macro(self.name.span()),
            name: ident(&self.name),
            docs: self.docs,
            public: self.public,
            inputs: self
                .inputs
                .into_iter()
                .map(|(name, shape)| Input {
                    loc: Loc::Macro(name.span()),
                    name: ident(&name),
                    shape,
                })
                .collect(),
            body,
            outputs: self.outputs,
            loss: None,
        }
    }
}

impl RawBlock {
    fn convert(self, conv: &mut Converter<'_, MacroLocator>) -> Block {
        let params = self
            .params
            .iter()
            .map(|(name, default, span)| Param {
                name: ident(name),
                default: default.as_ref().map(|d| conv.expr(d)),
                loc: Loc::Macro(*span),
            })
            .collect();
        let body = conv.stmts(&self.stmts, self.close);
        Block {
            loc: Loc::Macro(self.name.span()),
            name: ident(&self.name),
            docs: self.docs,
            input: ident(&self.input),
            params,
            body,
        }
    }
}

impl RawLoss {
    fn convert(self, conv: &mut Converter<'_, MacroLocator>) -> Loss {
        Loss {
            loc: Loc::Macro(self.op.span()),
            op: ident(&self.op),
            args: conv.args(&self.args),
            output: self.output.as_ref().map(ident),
        }
    }
}
