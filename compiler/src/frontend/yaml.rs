//! The YAML front-end: a model file → [`Module`] with one network.
//!
//! Decision: positions come first. `serde_yaml::Value` has no positions, so
//! the file is read by `saphyr-parser` into the located tree of
//! [`super::yaml_tree`] (which already rejects duplicate keys, aliases and
//! runaway nesting), and this module walks that tree with the schema of
//! `docs/language.md`, section "YAML syntax". `serde_yaml` is not used.
//!
//! Every string that is an argument, a count or a condition goes through
//! the same `syn`-based converter as the macro ([`super::expr`]); positions
//! inside the string map back to the file (exactly when the scalar is a
//! verbatim copy of its source, else to the scalar's start). Errors are
//! collected across the whole file; what could be read is still returned.

use proc_macro2::Span;

use crate::ast::{
    Arg, Block, Body, Dim, Expr, ExprKind, Ident, Input, Loc, Loss, Module, Network, Output, Param,
    Stmt,
};
use crate::diag::{Code, Diagnostic, Diagnostics};
use crate::frontend::codes;
use crate::frontend::expr::{Converter, Locator};
use crate::frontend::yaml_tree::{self, Node, Scalar, SourceMap};

/// The longest expression string accepted, in bytes.
const MAX_EXPR_LEN: usize = 4096;

/// The most steps a file may write, in all its `layers` lists together. A
/// chain of steps is a chain of nested expressions, which the compiler
/// walks (and drops) recursively; beyond this a deep chain could exhaust
/// the stack of a compiler thread (an unoptimized build overflows a 2 MiB
/// thread at about 4,000). The largest zoo model writes 67.
pub const MAX_STEPS: usize = 2_000;

/// The running tensor of a YAML `repeat` without `var:`; it cannot clash
/// with a user's name, which must be a Rust identifier.
const REPEAT_VAR: &str = "$y";

/// The top-level keys of a model file.
const TOP_KEYS: &[&str] = &[
    "name", "doc", "public", "inputs", "blocks", "layers", "outputs", "loss",
];
/// The keys of a block.
const BLOCK_KEYS: &[&str] = &["doc", "input", "params", "layers"];

/// Parses a model file, keeping what could be read.
pub fn parse(source: &str) -> (Module, Diagnostics) {
    let mut diags = Diagnostics::new();
    if u32::try_from(source.len()).is_err() {
        diags.push(Diagnostic::error(
            codes::YAML_SYNTAX,
            Loc::Text {
                line: 1,
                col: 1,
                offset: 0,
                len: 0,
            },
            "the file is larger than 4 GiB",
        ));
        return (Module::default(), diags);
    }
    let map = SourceMap::new(source);
    let Some(root) = yaml_tree::read(&map, &mut diags) else {
        return (Module::default(), diags);
    };
    // Expression strings are lexed by proc-macro2's own lexer even inside a
    // proc macro, so their spans are byte offsets within the string.
    proc_macro2::fallback::force();
    let mut reader = Reader {
        map: &map,
        diags: &mut diags,
        steps: 0,
    };
    let module = reader.module(&root);
    proc_macro2::fallback::unforce();
    (module, diags)
}

struct Reader<'a, 's> {
    map: &'a SourceMap<'s>,
    diags: &'a mut Diagnostics,
    /// The steps read so far, against [`MAX_STEPS`].
    steps: usize,
}

/// Maps spans of a parsed expression string to positions in the file.
struct ScalarLocator<'a, 's> {
    map: &'a SourceMap<'s>,
    /// Byte offset of the string in the file, when it is verbatim.
    base: Option<usize>,
    /// The string's length.
    len: usize,
    /// The scalar's location, used when positions are not exact.
    whole: Loc,
}

impl Locator for ScalarLocator<'_, '_> {
    fn loc(&self, span: Span) -> Loc {
        self.range(span, span)
    }

    fn range(&self, first: Span, last: Span) -> Loc {
        let (a, b) = (first.byte_range(), last.byte_range());
        match self.base {
            Some(base) if a.start < b.end && b.end <= self.len => {
                self.map.loc(base + a.start, base + b.end)
            }
            _ => self.whole,
        }
    }
}

/// Whether `s` is a Rust identifier that can name a tensor, op or type.
fn is_ident(s: &str) -> bool {
    syn::parse_str::<syn::Ident>(s).is_ok()
}

/// The deepest bracket nesting of an expression string.
fn bracket_depth(s: &str) -> usize {
    let (mut depth, mut max) = (0usize, 0usize);
    for c in s.chars() {
        match c {
            '(' | '[' | '{' => {
                depth += 1;
                max = max.max(depth);
            }
            ')' | ']' | '}' => depth = depth.saturating_sub(1),
            _ => {}
        }
    }
    max
}

impl Reader<'_, '_> {
    fn error(&mut self, code: Code, loc: Loc, message: impl Into<String>) {
        self.diags.push(Diagnostic::error(code, loc, message));
    }

    fn placeholder(loc: Loc) -> Expr {
        Expr {
            kind: ExprKind::Tuple(Vec::new()),
            loc,
        }
    }

    /// The entries of a mapping, or an error naming `what` it should be.
    fn mapping<'n>(&mut self, node: &'n Node, what: &str) -> Option<&'n [(Scalar, Node)]> {
        match node {
            Node::Map(entries, _) => Some(entries),
            other => {
                self.error(
                    codes::WRONG_TYPE,
                    other.loc(),
                    format!("{what} must be a mapping, found {}", other.kind()),
                );
                None
            }
        }
    }

    /// The items of a sequence, or an error naming `what` it should be.
    fn sequence<'n>(&mut self, node: &'n Node, what: &str) -> Option<&'n [Node]> {
        match node {
            Node::Seq(items, _) => Some(items),
            other => {
                self.error(
                    codes::WRONG_TYPE,
                    other.loc(),
                    format!("{what} must be a list, found {}", other.kind()),
                );
                None
            }
        }
    }

    /// A scalar that is a Rust identifier, as an [`Ident`].
    fn name(&mut self, node: &Node, what: &str) -> Option<Ident> {
        match node {
            Node::Scalar(s) if !s.is_null() && is_ident(&s.value) => Some(Ident {
                name: s.value.clone(),
                loc: s.loc,
            }),
            Node::Scalar(s) if !s.is_null() => {
                self.error(
                    codes::WRONG_TYPE,
                    s.loc,
                    format!(
                        "{what} must be a name (a Rust identifier), found `{}`",
                        s.value
                    ),
                );
                None
            }
            other => {
                self.error(
                    codes::WRONG_TYPE,
                    other.loc(),
                    format!("{what} must be a name, found {}", other.kind()),
                );
                None
            }
        }
    }

    /// A key that must be a Rust identifier.
    fn key_name(&mut self, key: &Scalar, what: &str) -> Option<Ident> {
        self.name(&Node::Scalar(key.clone()), what)
    }

    /// A text scalar (docs).
    fn text(&mut self, node: &Node, what: &str) -> Option<String> {
        match node {
            Node::Scalar(s) if !s.is_null() || s.quoted => Some(s.value.clone()),
            other => {
                self.error(
                    codes::WRONG_TYPE,
                    other.loc(),
                    format!("{what} must be text, found {}", other.kind()),
                );
                None
            }
        }
    }

    fn docs(&mut self, node: &Node, what: &str) -> Vec<String> {
        self.text(node, what)
            .map(|t| {
                t.trim_end_matches('\n')
                    .lines()
                    .map(str::to_string)
                    .collect()
            })
            .unwrap_or_default()
    }

    /// Reports the keys of `entries` that are not in `allowed`.
    fn check_keys(&mut self, entries: &[(Scalar, Node)], allowed: &[&str], what: &str) {
        for (key, _) in entries {
            if !allowed.contains(&key.value.as_str()) {
                self.error(
                    codes::UNKNOWN_KEY,
                    key.loc,
                    format!(
                        "unknown key `{}` in {what}; expected one of {}",
                        key.value,
                        allowed
                            .iter()
                            .map(|k| format!("`{k}`"))
                            .collect::<Vec<_>>()
                            .join(", ")
                    ),
                );
            }
        }
    }

    fn module(&mut self, root: &Node) -> Module {
        let mut module = Module::default();
        let Some(entries) = self.mapping(root, "a model file") else {
            return module;
        };
        self.check_keys(entries, TOP_KEYS, "a model file");
        let get = |k: &str| entries.iter().find(|(key, _)| key.value == k);
        let root_loc = root.loc();
        for required in ["name", "inputs", "layers", "outputs"] {
            if get(required).is_none() {
                self.error(
                    codes::MISSING_KEY,
                    root_loc,
                    format!("the model file has no `{required}` key"),
                );
            }
        }
        let name = get("name").and_then(|(_, v)| self.name(v, "`name`"));
        let docs = get("doc").map_or_else(Vec::new, |(_, v)| self.docs(v, "`doc`"));
        let public = match get("public") {
            None => true,
            Some((_, v)) => match v {
                Node::Scalar(s) if s.plain && (s.value == "true" || s.value == "false") => {
                    s.value == "true"
                }
                other => {
                    self.error(
                        codes::WRONG_TYPE,
                        other.loc(),
                        format!("`public` must be `true` or `false`, found {}", other.kind()),
                    );
                    true
                }
            },
        };
        let inputs = get("inputs").map_or_else(Vec::new, |(_, v)| self.inputs(v));
        if let Some((_, v)) = get("blocks") {
            module.blocks = self.blocks(v);
        }
        let outputs = get("outputs").map_or_else(Vec::new, |(_, v)| self.outputs(v));
        let body = match get("layers") {
            Some((key, v)) => {
                let start = match inputs.first() {
                    Some(i) => Expr {
                        kind: ExprKind::Name(i.name.clone()),
                        loc: key.loc,
                    },
                    None => Self::placeholder(key.loc),
                };
                let mut body = self.steps(v, start, "`layers`");
                if outputs.len() > 1 {
                    if !matches!(body.result.kind, ExprKind::Name(_)) {
                        let loc = body.result.loc;
                        self.error(
                            codes::BAD_STEP,
                            loc,
                            "with several outputs, the result of the last step is unused: bind it with `as:` and list it in `outputs`",
                        );
                    }
                    let names = outputs
                        .iter()
                        .map(|o: &Output| Expr {
                            kind: ExprKind::Name(o.name.clone()),
                            loc: o.loc,
                        })
                        .collect();
                    body.result = Box::new(Expr {
                        kind: ExprKind::Tuple(names),
                        loc: key.loc,
                    });
                }
                body
            }
            None => Body {
                stmts: Vec::new(),
                result: Box::new(Self::placeholder(root_loc)),
            },
        };
        let loss = get("loss").and_then(|(_, v)| self.loss(v));
        if let Some(name) = name {
            module.networks.push(Network {
                loc: name.loc,
                name,
                docs,
                public,
                inputs,
                body,
                outputs,
                loss,
            });
        }
        module
    }

    fn shape(&mut self, node: &Node, what: &str) -> Option<Vec<Dim>> {
        let items = self.sequence(node, what)?;
        let mut dims = Vec::new();
        let mut ok = true;
        for item in items {
            match item {
                Node::Scalar(s) if s.plain && s.value.parse::<i64>().is_ok_and(|v| v > 0) => dims
                    .push(Dim {
                        value: s.value.parse().unwrap_or(0),
                        loc: s.loc,
                    }),
                other => {
                    let found = match other {
                        Node::Scalar(s) if !s.is_null() => format!("`{}`", s.value),
                        other => other.kind().to_string(),
                    };
                    self.error(
                        codes::BAD_DIM,
                        other.loc(),
                        format!(
                            "a dimension of {what} must be a positive integer (the batch dimension is implicit), found {found}"
                        ),
                    );
                    ok = false;
                }
            }
        }
        if dims.is_empty() && ok {
            self.error(
                codes::BAD_DIM,
                node.loc(),
                format!("{what} has no dimensions"),
            );
            return None;
        }
        ok.then_some(dims)
    }

    fn inputs(&mut self, node: &Node) -> Vec<Input> {
        let Some(entries) = self.mapping(node, "`inputs`") else {
            return Vec::new();
        };
        let mut out = Vec::new();
        for (key, value) in entries {
            let name = self.key_name(key, "an input");
            let shape = self.shape(value, &format!("the shape of input `{}`", key.value));
            if let (Some(name), Some(shape)) = (name, shape) {
                out.push(Input {
                    loc: key.loc,
                    name,
                    shape,
                });
            }
        }
        if out.is_empty() && entries.is_empty() {
            self.error(
                codes::MISSING_KEY,
                node.loc(),
                "`inputs` is empty; a network needs at least one input",
            );
        }
        out
    }

    fn outputs(&mut self, node: &Node) -> Vec<Output> {
        let mut out = Vec::new();
        match node {
            Node::Seq(items, _) => {
                for item in items {
                    if let Some(name) = self.name(item, "an output") {
                        out.push(Output {
                            loc: name.loc,
                            name,
                            shape: None,
                        });
                    }
                }
            }
            Node::Map(entries, _) => {
                for (key, value) in entries {
                    let name = self.key_name(key, "an output");
                    let shape = match value {
                        Node::Scalar(s) if s.is_null() => None,
                        v => self.shape(v, &format!("the shape of output `{}`", key.value)),
                    };
                    if let Some(name) = name {
                        out.push(Output {
                            loc: key.loc,
                            name,
                            shape,
                        });
                    }
                }
            }
            Node::Scalar(_) => {
                if let Some(name) = self.name(node, "an output") {
                    out.push(Output {
                        loc: name.loc,
                        name,
                        shape: None,
                    });
                }
            }
        }
        if out.is_empty() && !self.diags.has_errors() {
            self.error(
                codes::MISSING_KEY,
                node.loc(),
                "`outputs` is empty; a network needs at least one output",
            );
        }
        out
    }

    fn loss(&mut self, node: &Node) -> Option<Loss> {
        match node {
            Node::Scalar(_) => {
                let op = self.name(node, "the loss")?;
                Some(Loss {
                    loc: op.loc,
                    op,
                    args: Vec::new(),
                    output: None,
                })
            }
            Node::Map(entries, loc) => {
                let mut op = None;
                let mut output = None;
                for (key, value) in entries {
                    if key.value == "output" {
                        output = self.name(value, "the loss's `output`");
                    } else if op.is_some() {
                        self.error(
                            codes::BAD_STEP,
                            key.loc,
                            format!("the loss names two ops; `{}` is the second", key.value),
                        );
                    } else {
                        let name = self.key_name(key, "the loss");
                        let args = self.args(value);
                        op = name.map(|n| (n, args));
                    }
                }
                let Some((op, args)) = op else {
                    if !self.diags.has_errors() {
                        self.error(codes::MISSING_KEY, *loc, "the loss names no op");
                    }
                    return None;
                };
                Some(Loss {
                    loc: op.loc,
                    op,
                    args,
                    output,
                })
            }
            Node::Seq(_, loc) => {
                self.error(
                    codes::WRONG_TYPE,
                    *loc,
                    "`loss` must be an op name or a mapping `{op: args}`, found a list",
                );
                None
            }
        }
    }

    fn blocks(&mut self, node: &Node) -> Vec<Block> {
        let Some(entries) = self.mapping(node, "`blocks`") else {
            return Vec::new();
        };
        let mut out = Vec::new();
        for (key, value) in entries {
            let name = self.key_name(key, "a block name");
            let what = format!("block `{}`", key.value);
            let Some(fields) = self.mapping(value, &what) else {
                continue;
            };
            self.check_keys(fields, BLOCK_KEYS, &what);
            let get = |k: &str| fields.iter().find(|(f, _)| f.value == k);
            let docs = get("doc").map_or_else(Vec::new, |(_, v)| self.docs(v, "`doc`"));
            let input = match get("input") {
                Some((_, v)) => self.name(v, &format!("the input of {what}")),
                None => Some(Ident {
                    name: "x".to_string(),
                    loc: key.loc,
                }),
            };
            let params = match get("params") {
                Some((_, v)) => self.params(v, &what),
                None => Vec::new(),
            };
            let body = match get("layers") {
                Some((_, v)) => {
                    let start = Expr {
                        kind: ExprKind::Name(input.clone().unwrap_or(Ident {
                            name: "x".to_string(),
                            loc: key.loc,
                        })),
                        loc: key.loc,
                    };
                    self.steps(v, start, &format!("the layers of {what}"))
                }
                None => {
                    self.error(
                        codes::MISSING_KEY,
                        key.loc,
                        format!("{what} has no `layers`"),
                    );
                    continue;
                }
            };
            if let (Some(name), Some(input)) = (name, input) {
                out.push(Block {
                    loc: key.loc,
                    name,
                    docs,
                    input,
                    params,
                    body,
                });
            }
        }
        out
    }

    fn params(&mut self, node: &Node, what: &str) -> Vec<Param> {
        let Some(items) = self.sequence(node, &format!("the params of {what}")) else {
            return Vec::new();
        };
        let mut out = Vec::new();
        for item in items {
            match item {
                Node::Map(entries, loc) if entries.len() == 1 => {
                    let (key, value) = &entries[0];
                    let name = self.key_name(key, "a parameter");
                    let default = self.value(value);
                    if let Some(name) = name {
                        out.push(Param {
                            name,
                            default: Some(default),
                            loc: *loc,
                        });
                    }
                }
                Node::Map(_, loc) => self.error(
                    codes::WRONG_TYPE,
                    *loc,
                    "a parameter with a default is a mapping with one entry: `{stride: 1}`",
                ),
                other => {
                    if let Some(name) = self.name(other, "a parameter") {
                        out.push(Param {
                            loc: name.loc,
                            name,
                            default: None,
                        });
                    }
                }
            }
        }
        out
    }

    /// A value: a scalar (number, bool or expression string) or a list.
    fn value(&mut self, node: &Node) -> Expr {
        match node {
            Node::Scalar(s) => self.scalar_expr(s),
            Node::Seq(items, loc) => Expr {
                kind: ExprKind::List(items.iter().map(|i| self.value(i)).collect()),
                loc: *loc,
            },
            Node::Map(_, loc) => {
                self.error(
                    codes::WRONG_TYPE,
                    *loc,
                    "a value must be a number, a bool, an expression or a list, found a mapping",
                );
                Self::placeholder(*loc)
            }
        }
    }

    /// A scalar as an expression: YAML numbers and bools as themselves,
    /// every other string through the shared expression grammar.
    fn scalar_expr(&mut self, s: &Scalar) -> Expr {
        let loc = s.loc;
        if s.plain {
            let v = s.value.as_str();
            if s.is_null() {
                self.error(
                    codes::WRONG_TYPE,
                    loc,
                    "expected a value, found nothing (null)",
                );
                return Self::placeholder(loc);
            }
            if let "true" | "True" | "TRUE" | "false" | "False" | "FALSE" = v {
                return Expr {
                    kind: ExprKind::Bool(v.eq_ignore_ascii_case("true")),
                    loc,
                };
            }
            let body = v.strip_prefix(['-', '+']).unwrap_or(v);
            if !body.is_empty() && body.bytes().all(|b| b.is_ascii_digit()) {
                return match v.parse::<i64>() {
                    Ok(i) => Expr {
                        kind: ExprKind::Int(i),
                        loc,
                    },
                    Err(_) => {
                        self.error(
                            codes::BAD_LITERAL,
                            loc,
                            format!("integer `{v}` does not fit in 64 bits"),
                        );
                        Self::placeholder(loc)
                    }
                };
            }
            let float_like = body.bytes().any(|b| b.is_ascii_digit())
                && body
                    .bytes()
                    .all(|b| b.is_ascii_digit() || b".eE+-".contains(&b));
            if float_like
                && let Ok(f) = v.parse::<f64>()
                && f.is_finite()
            {
                return Expr {
                    kind: ExprKind::Float(f),
                    loc,
                };
            }
        }
        self.expr_string(s)
    }

    /// Parses a string scalar with the macro's expression grammar.
    fn expr_string(&mut self, s: &Scalar) -> Expr {
        if s.value.len() > MAX_EXPR_LEN
            || bracket_depth(&s.value) > crate::frontend::expr::MAX_NESTING
        {
            self.error(
                codes::TOO_DEEP,
                s.loc,
                "this expression is too long or nests too deeply",
            );
            return Self::placeholder(s.loc);
        }
        let locator = ScalarLocator {
            map: self.map,
            base: s.verbatim_at,
            len: s.value.len(),
            whole: s.loc,
        };
        match syn::parse_str::<syn::Expr>(&s.value) {
            Ok(e) => Converter::new(&locator, self.diags).expr(&e),
            Err(err) => {
                let loc = locator.loc(err.span());
                self.error(
                    codes::EXPR_SYNTAX,
                    loc,
                    format!("`{}` is not a valid expression: {err}", s.value),
                );
                Self::placeholder(s.loc)
            }
        }
    }

    /// The arguments of an op: nothing, one scalar, a list, or a mapping.
    fn args(&mut self, node: &Node) -> Vec<Arg> {
        match node {
            Node::Scalar(s) if s.is_null() => Vec::new(),
            Node::Scalar(s) => vec![Arg {
                name: None,
                value: self.scalar_expr(s),
                loc: s.loc,
            }],
            Node::Seq(items, _) => items
                .iter()
                .map(|i| Arg {
                    name: None,
                    value: self.value(i),
                    loc: i.loc(),
                })
                .collect(),
            Node::Map(entries, _) => {
                let mut out = Vec::new();
                for (key, value) in entries {
                    let Some(name) = self.key_name(key, "an argument name") else {
                        continue;
                    };
                    let value = if name.name == "name" {
                        match self.text(value, "a layer's `name`") {
                            Some(text) => Expr {
                                kind: ExprKind::Str(text),
                                loc: value.loc(),
                            },
                            None => Self::placeholder(value.loc()),
                        }
                    } else {
                        self.value(value)
                    };
                    out.push(Arg {
                        name: Some(name),
                        value,
                        loc: key.loc,
                    });
                }
                out
            }
        }
    }

    /// A list of steps applied in order, starting from `start`.
    fn steps(&mut self, node: &Node, start: Expr, what: &str) -> Body {
        let mut stmts = Vec::new();
        let mut cur = start;
        if let Some(items) = self.sequence(node, what) {
            for item in items {
                cur = self.step(item, cur, &mut stmts);
            }
        }
        Body {
            stmts,
            result: Box::new(cur),
        }
    }

    fn step(&mut self, node: &Node, cur: Expr, stmts: &mut Vec<Stmt>) -> Expr {
        self.steps += 1;
        if self.steps > MAX_STEPS {
            if self.steps == MAX_STEPS + 1 {
                self.error(
                    codes::TOO_DEEP,
                    node.loc(),
                    format!(
                        "the file writes more than {MAX_STEPS} steps; use `repeat` or blocks for long stacks of layers"
                    ),
                );
            }
            return cur;
        }
        let entries = match node {
            Node::Scalar(s) if !s.is_null() && is_ident(&s.value) => {
                return Expr {
                    loc: s.loc,
                    kind: ExprKind::Method {
                        recv: Box::new(cur),
                        method: Ident {
                            name: s.value.clone(),
                            loc: s.loc,
                        },
                        args: Vec::new(),
                    },
                };
            }
            Node::Map(entries, _) => entries,
            other => {
                let found = match other {
                    Node::Scalar(s) if !s.is_null() => format!("`{}`", s.value),
                    other => other.kind().to_string(),
                };
                self.error(
                    codes::BAD_STEP,
                    other.loc(),
                    format!("a step is an op name or a mapping `op: args`, found {found}"),
                );
                return cur;
            }
        };
        let has = |k: &str| entries.iter().any(|(key, _)| key.value == k);
        let get = |k: &str| entries.iter().find(|(key, _)| key.value == k);
        let (kind, allowed): (&str, &[&str]) = if has("if") {
            ("`if` step", &["if", "then", "else", "as", "from"])
        } else if has("repeat") {
            (
                "`repeat` step",
                &["repeat", "layers", "index", "var", "as", "from"],
            )
        } else if has("let") {
            ("`let` step", &["let", "value"])
        } else {
            ("step", &[])
        };
        if !allowed.is_empty() {
            self.check_keys(entries, allowed, &format!("an {kind}"));
        }
        // The tensor this step starts from.
        if matches!(get("from"), Some((_, Node::Scalar(_)))) {
            self.unused(&cur);
        }
        let cur = match get("from") {
            Some((_, Node::Seq(..))) if !allowed.is_empty() => {
                self.error(
                    codes::BAD_STEP,
                    node.loc(),
                    format!("`from` of an {kind} is one name"),
                );
                cur
            }
            Some((_, v @ Node::Scalar(_))) => match self.name(v, "`from`") {
                Some(name) => Expr {
                    loc: name.loc,
                    kind: ExprKind::Name(name),
                },
                None => cur,
            },
            _ => cur,
        };
        let value = if let Some((key, cond)) = get("if") {
            let cond = self.value(cond);
            let start = cur.clone();
            let then = match get("then") {
                Some((_, v)) => self.steps(v, start.clone(), "`then`"),
                None => {
                    self.error(codes::MISSING_KEY, key.loc, "this `if` has no `then`");
                    Body {
                        stmts: Vec::new(),
                        result: Box::new(start.clone()),
                    }
                }
            };
            let otherwise = match get("else") {
                Some((_, v)) => self.steps(v, start, "`else`"),
                None => Body {
                    stmts: Vec::new(),
                    result: Box::new(start),
                },
            };
            Expr {
                loc: key.loc,
                kind: ExprKind::If {
                    cond: Box::new(cond),
                    then,
                    otherwise,
                },
            }
        } else if let Some((key, count)) = get("repeat") {
            let count = self.value(count);
            let var = match get("var") {
                Some((_, v)) => self.name(v, "`var`"),
                None => None,
            }
            .unwrap_or(Ident {
                name: REPEAT_VAR.to_string(),
                loc: key.loc,
            });
            let index = get("index").and_then(|(_, v)| self.name(v, "`index`"));
            let start = Expr {
                loc: var.loc,
                kind: ExprKind::Name(var.clone()),
            };
            let body = match get("layers") {
                Some((_, v)) => self.steps(v, start, "the layers of `repeat`"),
                None => {
                    self.error(codes::MISSING_KEY, key.loc, "this `repeat` has no `layers`");
                    Body {
                        stmts: Vec::new(),
                        result: Box::new(start),
                    }
                }
            };
            Expr {
                loc: key.loc,
                kind: ExprKind::Repeat {
                    recv: Box::new(cur),
                    count: Box::new(count),
                    var,
                    index,
                    body,
                },
            }
        } else if let Some((key, name)) = get("let") {
            let name = self.name(name, "the name of a `let`");
            let value = match get("value") {
                Some((_, v)) => self.value(v),
                None => {
                    self.error(codes::MISSING_KEY, key.loc, "this `let` has no `value`");
                    Self::placeholder(key.loc)
                }
            };
            if let Some(name) = name {
                stmts.push(Stmt::Let {
                    name,
                    value,
                    loc: key.loc,
                });
            }
            return cur;
        } else {
            match self.op_step(entries, node.loc(), cur.clone()) {
                Some(e) => e,
                None => return cur,
            }
        };
        match get("as") {
            Some((key, v)) => match self.name(v, "`as`") {
                Some(name) => {
                    stmts.push(Stmt::Let {
                        name: name.clone(),
                        value,
                        loc: key.loc,
                    });
                    Expr {
                        loc: name.loc,
                        kind: ExprKind::Name(name),
                    }
                }
                None => value,
            },
            None => value,
        }
    }

    /// Reports a chain result that the next step drops by starting
    /// elsewhere (a name or a placeholder is not a computation).
    fn unused(&mut self, cur: &Expr) {
        match &cur.kind {
            ExprKind::Name(_) => {}
            ExprKind::Tuple(items) if items.is_empty() => {}
            _ => self.error(
                codes::BAD_STEP,
                cur.loc,
                "the result of this step is never used: the next step starts from other tensors; bind it with `as:` or remove it",
            ),
        }
    }

    /// An op or block step: `op: args`, with `from:` and `as:`.
    fn op_step(&mut self, entries: &[(Scalar, Node)], loc: Loc, cur: Expr) -> Option<Expr> {
        let ops: Vec<&(Scalar, Node)> = entries
            .iter()
            .filter(|(k, _)| !matches!(k.value.as_str(), "from" | "as"))
            .collect();
        let (key, args) = match ops.as_slice() {
            [one] => *one,
            [] => {
                self.error(codes::BAD_STEP, loc, "this step names no op");
                return None;
            }
            [_, second, ..] => {
                let reserved = ["then", "else", "layers", "index", "var", "value"];
                let message = if reserved.contains(&second.0.value.as_str()) {
                    format!(
                        "`{}` belongs to an `if`, `repeat` or `let` step; this step is an op",
                        second.0.value
                    )
                } else {
                    format!(
                        "a step applies one op; `{}` is a second one (use one list item per op)",
                        second.0.value
                    )
                };
                self.error(codes::BAD_STEP, second.0.loc, message);
                return None;
            }
        };
        let op = self.key_name(key, "an op")?;
        let mut args = self.args(args);
        let tensor_list_op = matches!(op.name.as_str(), "add" | "concat");
        let from_list = entries.iter().find_map(|(k, v)| match v {
            Node::Seq(items, seq_loc) if k.value == "from" => Some((items, *seq_loc)),
            _ => None,
        });
        let explicit =
            from_list.is_some() || (tensor_list_op && args.iter().any(|a| a.name.is_none()));
        if explicit {
            self.unused(&cur);
        }
        let kind = if let Some((items, seq_loc)) = from_list {
            let names: Vec<Expr> = items
                .iter()
                .filter_map(|i| self.name(i, "an input in `from`"))
                .map(|n| Expr {
                    loc: n.loc,
                    kind: ExprKind::Name(n),
                })
                .collect();
            let mut positional: Vec<Arg> = if op.name == "concat" {
                vec![Arg {
                    name: None,
                    value: Expr {
                        kind: ExprKind::List(names),
                        loc: seq_loc,
                    },
                    loc: seq_loc,
                }]
            } else {
                names
                    .into_iter()
                    .map(|value| Arg {
                        name: None,
                        loc: value.loc,
                        value,
                    })
                    .collect()
            };
            positional.append(&mut args);
            ExprKind::Call {
                func: op.clone(),
                args: positional,
            }
        } else if tensor_list_op
            && args.iter().any(|a| a.name.is_none())
            && !entries.iter().any(|(k, _)| k.value == "from")
        {
            ExprKind::Call {
                func: op.clone(),
                args,
            }
        } else {
            ExprKind::Method {
                recv: Box::new(cur),
                method: op.clone(),
                args,
            }
        };
        Some(Expr { loc: op.loc, kind })
    }
}
