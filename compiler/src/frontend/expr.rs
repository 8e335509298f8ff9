//! The one expression converter: `syn::Expr` → [`ast::Expr`].
//!
//! Both syntaxes parse expressions with `syn`: the macro gets them as part
//! of its tokens, YAML parses each string scalar that is an argument, a
//! count or a condition with `syn::parse_str`. This module turns the `syn`
//! tree into the AST, and only the mapping from a `Span` to a [`Loc`]
//! differs between the two ([`Locator`]). Errors are collected, not thrown:
//! an unsupported sub-expression is reported and replaced by a placeholder
//! so the rest is still checked.

use proc_macro2::Span;
use syn::spanned::Spanned;

use crate::ast::{Arg, BinOp, Body, Expr, ExprKind, Ident, Loc, Stmt, UnOp};
use crate::diag::{Diagnostic, Diagnostics};
use crate::frontend::codes;

/// How deep expressions may nest before the converter gives up. A method
/// chain nests one level per layer (`x.a().b()` is `b(a(x))`), so this is
/// also the longest chain a single expression may hold.
pub(crate) const MAX_DEPTH: usize = 512;

/// How deep brackets may nest (groups in macro tokens, brackets in a YAML
/// expression string); `syn` recurses several frames per level.
pub(crate) const MAX_NESTING: usize = 64;

/// Maps `syn` spans to AST locations.
pub(crate) trait Locator {
    /// The location of one span.
    fn loc(&self, span: Span) -> Loc;
    /// The location from the start of `first` to the end of `last`.
    fn range(&self, first: Span, last: Span) -> Loc;
}

/// The converter's state: where locations come from, and the errors so far.
pub(crate) struct Converter<'a, L: Locator> {
    /// The span-to-location mapping.
    pub(crate) locator: &'a L,
    /// The diagnostics collected.
    pub(crate) diags: &'a mut Diagnostics,
    depth: usize,
}

impl<'a, L: Locator> Converter<'a, L> {
    /// A converter that reports into `diags`.
    pub(crate) fn new(locator: &'a L, diags: &'a mut Diagnostics) -> Self {
        Converter {
            locator,
            diags,
            depth: 0,
        }
    }

    fn error(&mut self, code: crate::diag::Code, span: Span, message: impl Into<String>) {
        let loc = self.locator.loc(span);
        self.diags.push(Diagnostic::error(code, loc, message));
    }

    /// A placeholder for a sub-expression that was reported as an error.
    fn placeholder(&self, span: Span) -> Expr {
        Expr {
            kind: ExprKind::Tuple(Vec::new()),
            loc: self.locator.loc(span),
        }
    }

    /// An identifier with its location.
    pub(crate) fn ident(&self, ident: &syn::Ident) -> Ident {
        Ident {
            name: ident.to_string(),
            loc: self.locator.loc(ident.span()),
        }
    }

    /// Converts one expression.
    pub(crate) fn expr(&mut self, e: &syn::Expr) -> Expr {
        if self.depth >= MAX_DEPTH {
            self.error(
                codes::TOO_DEEP,
                e.span(),
                format!("expression nests deeper than {MAX_DEPTH} levels"),
            );
            return self.placeholder(e.span());
        }
        self.depth += 1;
        let out = self.expr_inner(e);
        self.depth -= 1;
        out
    }

    fn expr_inner(&mut self, e: &syn::Expr) -> Expr {
        let loc = self.locator.loc(e.span());
        let kind = match e {
            syn::Expr::Lit(lit) => match self.lit(&lit.lit, false) {
                Some(kind) => kind,
                None => return self.placeholder(e.span()),
            },
            syn::Expr::Paren(p) => return self.expr(&p.expr),
            syn::Expr::Group(g) => return self.expr(&g.expr),
            syn::Expr::Array(a) => ExprKind::List(a.elems.iter().map(|x| self.expr(x)).collect()),
            syn::Expr::Tuple(t) => ExprKind::Tuple(t.elems.iter().map(|x| self.expr(x)).collect()),
            syn::Expr::Path(p) => match self.path_ident(p) {
                Some(id) => ExprKind::Name(id),
                None => return self.placeholder(e.span()),
            },
            syn::Expr::MethodCall(m) => return self.method(m),
            syn::Expr::Call(c) => {
                let func = match &*c.func {
                    syn::Expr::Path(p) => self.path_ident(p),
                    other => {
                        self.error(
                            codes::UNSUPPORTED_EXPR,
                            other.span(),
                            "only a plain op or block name can be called",
                        );
                        None
                    }
                };
                let args = self.args(&c.args);
                match func {
                    Some(func) => ExprKind::Call { func, args },
                    None => return self.placeholder(e.span()),
                }
            }
            syn::Expr::Binary(b) => {
                let Some(op) = self.binop(&b.op) else {
                    return self.placeholder(e.span());
                };
                let lhs = Box::new(self.expr(&b.left));
                let rhs = Box::new(self.expr(&b.right));
                ExprKind::Binary { op, lhs, rhs }
            }
            syn::Expr::Unary(u) => return self.unary(u),
            syn::Expr::If(i) => return self.if_expr(i),
            syn::Expr::Assign(a) => {
                self.error(
                    codes::BAD_ARGUMENT,
                    a.eq_token.span,
                    "`name = value` is only allowed as a named argument of a call",
                );
                return self.placeholder(e.span());
            }
            other => {
                self.error(
                    codes::UNSUPPORTED_EXPR,
                    other.span(),
                    format!("{} is not part of the model language", describe(other)),
                );
                return self.placeholder(e.span());
            }
        };
        Expr { kind, loc }
    }

    /// A literal; `negate` folds a unary minus into it (`-1` is `Int(-1)`).
    fn lit(&mut self, lit: &syn::Lit, negate: bool) -> Option<ExprKind> {
        match lit {
            syn::Lit::Int(i) => {
                if !i.suffix().is_empty() {
                    self.error(
                        codes::BAD_LITERAL,
                        i.span(),
                        format!("integer literal `{i}` has a type suffix; write it without"),
                    );
                    return None;
                }
                let digits = i.base10_digits();
                let parsed = if negate {
                    format!("-{digits}").parse::<i64>()
                } else {
                    digits.parse::<i64>()
                };
                match parsed {
                    Ok(v) => Some(ExprKind::Int(v)),
                    Err(_) => {
                        self.error(
                            codes::BAD_LITERAL,
                            i.span(),
                            format!("integer literal `{i}` does not fit in 64 bits"),
                        );
                        None
                    }
                }
            }
            syn::Lit::Float(f) => {
                if !f.suffix().is_empty() {
                    self.error(
                        codes::BAD_LITERAL,
                        f.span(),
                        format!("float literal `{f}` has a type suffix; write it without"),
                    );
                    return None;
                }
                match f.base10_digits().parse::<f64>() {
                    Ok(v) if v.is_finite() => Some(ExprKind::Float(if negate { -v } else { v })),
                    _ => {
                        self.error(
                            codes::BAD_LITERAL,
                            f.span(),
                            format!("float literal `{f}` is not a finite number"),
                        );
                        None
                    }
                }
            }
            syn::Lit::Bool(b) if !negate => Some(ExprKind::Bool(b.value)),
            syn::Lit::Str(s) if !negate => Some(ExprKind::Str(s.value())),
            other => {
                self.error(
                    codes::BAD_LITERAL,
                    other.span(),
                    "this kind of literal is not part of the model language (use integers, floats, `true`/`false` or strings)",
                );
                None
            }
        }
    }

    fn path_ident(&mut self, p: &syn::ExprPath) -> Option<Ident> {
        if p.qself.is_none()
            && p.attrs.is_empty()
            && let Some(id) = p.path.get_ident()
        {
            return Some(self.ident(id));
        }
        self.error(
            codes::UNSUPPORTED_EXPR,
            p.span(),
            "only plain names are allowed here (no paths like `a::b`)",
        );
        None
    }

    fn binop(&mut self, op: &syn::BinOp) -> Option<BinOp> {
        use syn::BinOp as B;
        Some(match op {
            B::Add(_) => BinOp::Add,
            B::Sub(_) => BinOp::Sub,
            B::Mul(_) => BinOp::Mul,
            B::Div(_) => BinOp::Div,
            B::Rem(_) => BinOp::Rem,
            B::Eq(_) => BinOp::Eq,
            B::Ne(_) => BinOp::Ne,
            B::Lt(_) => BinOp::Lt,
            B::Le(_) => BinOp::Le,
            B::Gt(_) => BinOp::Gt,
            B::Ge(_) => BinOp::Ge,
            B::And(_) => BinOp::And,
            B::Or(_) => BinOp::Or,
            other => {
                self.error(
                    codes::UNSUPPORTED_EXPR,
                    other.span(),
                    "this operator is not part of the model language (use + - * / % == != < <= > >= && || !)",
                );
                return None;
            }
        })
    }

    fn unary(&mut self, u: &syn::ExprUnary) -> Expr {
        let loc = self.locator.loc(u.span());
        let op = match u.op {
            syn::UnOp::Neg(_) => {
                let mut inner = &*u.expr;
                while let syn::Expr::Paren(p) = inner {
                    inner = &p.expr;
                }
                if let syn::Expr::Lit(lit) = inner
                    && matches!(lit.lit, syn::Lit::Int(_) | syn::Lit::Float(_))
                {
                    return match self.lit(&lit.lit, true) {
                        Some(kind) => Expr { kind, loc },
                        None => self.placeholder(u.span()),
                    };
                }
                UnOp::Neg
            }
            syn::UnOp::Not(_) => UnOp::Not,
            _ => {
                self.error(
                    codes::UNSUPPORTED_EXPR,
                    u.span(),
                    "dereference is not part of the model language",
                );
                return self.placeholder(u.span());
            }
        };
        let expr = Box::new(self.expr(&u.expr));
        Expr {
            kind: ExprKind::Unary { op, expr },
            loc,
        }
    }

    fn if_expr(&mut self, i: &syn::ExprIf) -> Expr {
        let loc = self.locator.loc(i.if_token.span);
        let cond = Box::new(self.expr(&i.cond));
        let then = self.block(&i.then_branch);
        let otherwise = match &i.else_branch {
            Some((_, e)) => match &**e {
                syn::Expr::Block(b) if b.attrs.is_empty() && b.label.is_none() => {
                    self.block(&b.block)
                }
                other => {
                    let result = self.expr(other);
                    Body {
                        stmts: Vec::new(),
                        result: Box::new(result),
                    }
                }
            },
            None => {
                self.error(
                    codes::IF_WITHOUT_ELSE,
                    i.if_token.span,
                    "this `if` has no `else` branch; an `if` is a value and needs both",
                );
                Body {
                    stmts: Vec::new(),
                    result: Box::new(self.placeholder(i.if_token.span)),
                }
            }
        };
        Expr {
            kind: ExprKind::If {
                cond,
                then,
                otherwise,
            },
            loc,
        }
    }

    /// The location of a method call: the method name and its arguments.
    fn layer_loc(&self, m: &syn::ExprMethodCall) -> Loc {
        self.locator
            .range(m.method.span(), m.paren_token.span.close())
    }

    fn method(&mut self, m: &syn::ExprMethodCall) -> Expr {
        let loc = self.layer_loc(m);
        if let Some(turbofish) = &m.turbofish {
            self.error(
                codes::UNSUPPORTED_EXPR,
                turbofish.span(),
                "generic arguments (`::<...>`) are not part of the model language",
            );
        }
        let recv = Box::new(self.expr(&m.receiver));
        if m.method == "repeat" {
            return self.repeat(m, recv, loc);
        }
        let method = self.ident(&m.method);
        let args = self.args(&m.args);
        Expr {
            kind: ExprKind::Method { recv, method, args },
            loc,
        }
    }

    fn repeat(&mut self, m: &syn::ExprMethodCall, recv: Box<Expr>, loc: Loc) -> Expr {
        let usage = "write `t.repeat(n, |y| body)` or `t.repeat(n, |y, i| body)`";
        if m.args.len() != 2 {
            self.error(
                codes::BAD_REPEAT,
                m.method.span(),
                format!("`repeat` takes a count and a closure; {usage}"),
            );
            return self.placeholder(m.method.span());
        }
        let count = Box::new(self.expr(&m.args[0]));
        let syn::Expr::Closure(c) = &m.args[1] else {
            self.error(
                codes::BAD_REPEAT,
                m.args[1].span(),
                format!("the second argument of `repeat` must be a closure; {usage}"),
            );
            return self.placeholder(m.method.span());
        };
        let mut names = Vec::new();
        for input in &c.inputs {
            match input {
                syn::Pat::Ident(p) if p.by_ref.is_none() && p.subpat.is_none() => {
                    names.push(self.ident(&p.ident))
                }
                other => self.error(
                    codes::BAD_REPEAT,
                    other.span(),
                    format!("closure parameters of `repeat` are plain names; {usage}"),
                ),
            }
        }
        if c.inputs.is_empty() || c.inputs.len() > 2 {
            self.error(
                codes::BAD_REPEAT,
                c.or1_token.span,
                format!(
                    "the closure of `repeat` takes one or two parameters, found {}; {usage}",
                    c.inputs.len()
                ),
            );
        }
        if names.len() != c.inputs.len() || names.is_empty() || names.len() > 2 {
            return self.placeholder(m.method.span());
        }
        let mut names = names.into_iter();
        let var = names.next().expect("one name was checked above");
        let index = names.next();
        let body = match &*c.body {
            syn::Expr::Block(b) if b.attrs.is_empty() && b.label.is_none() => self.block(&b.block),
            other => Body {
                stmts: Vec::new(),
                result: Box::new(self.expr(other)),
            },
        };
        Expr {
            kind: ExprKind::Repeat {
                recv,
                count,
                var,
                index,
                body,
            },
            loc,
        }
    }

    /// Converts call arguments: positional, then `name = value`.
    pub(crate) fn args<'e>(&mut self, args: impl IntoIterator<Item = &'e syn::Expr>) -> Vec<Arg> {
        let mut out = Vec::new();
        let mut seen_named = false;
        for a in args {
            let loc = self.locator.loc(a.span());
            if let syn::Expr::Assign(assign) = a {
                let name = match &*assign.left {
                    syn::Expr::Path(p) if p.qself.is_none() && p.path.get_ident().is_some() => {
                        p.path.get_ident().map(|id| self.ident(id))
                    }
                    other => {
                        self.error(
                            codes::BAD_ARGUMENT,
                            other.span(),
                            "a named argument is `name = value` with a plain name",
                        );
                        None
                    }
                };
                let value = self.expr(&assign.right);
                if let Some(name) = name {
                    seen_named = true;
                    out.push(Arg {
                        name: Some(name),
                        value,
                        loc,
                    });
                }
            } else {
                if seen_named {
                    self.error(
                        codes::BAD_ARGUMENT,
                        a.span(),
                        "positional argument after a named argument; put positional arguments first",
                    );
                }
                let value = self.expr(a);
                out.push(Arg {
                    name: None,
                    value,
                    loc,
                });
            }
        }
        out
    }

    /// Converts a `{ let ...; result }` block into a body.
    pub(crate) fn block(&mut self, b: &syn::Block) -> Body {
        self.stmts(&b.stmts, b.brace_token.span.close())
    }

    /// Converts statements into a body; `end` locates a missing result.
    pub(crate) fn stmts(&mut self, stmts: &[syn::Stmt], end: Span) -> Body {
        let mut out = Vec::new();
        let mut result = None;
        let n = stmts.len();
        for (i, s) in stmts.iter().enumerate() {
            let last = i + 1 == n;
            match s {
                syn::Stmt::Local(local) => {
                    if let Some(stmt) = self.local(local) {
                        out.push(stmt);
                    }
                }
                syn::Stmt::Expr(e, None) if last => result = Some(self.expr(e)),
                syn::Stmt::Expr(e, None) => self.error(
                    codes::BAD_STATEMENT,
                    e.span(),
                    "only the last expression of a body has no semicolon; bind this one with `let`",
                ),
                syn::Stmt::Expr(e, Some(_)) => self.error(
                    codes::BAD_STATEMENT,
                    e.span(),
                    "an expression statement has no effect; bind the value with `let NAME = ...;`",
                ),
                syn::Stmt::Item(item) => self.error(
                    codes::BAD_STATEMENT,
                    item.span(),
                    "items are not allowed in a body; only `let` statements and a result",
                ),
                syn::Stmt::Macro(m) => self.error(
                    codes::BAD_STATEMENT,
                    m.span(),
                    "macros are not allowed in a body; only `let` statements and a result",
                ),
            }
        }
        let result = match result {
            Some(r) => r,
            None => {
                self.error(
                    codes::BAD_STATEMENT,
                    end,
                    "this body has no result: end it with an expression without a semicolon",
                );
                self.placeholder(end)
            }
        };
        Body {
            stmts: out,
            result: Box::new(result),
        }
    }

    fn local(&mut self, local: &syn::Local) -> Option<Stmt> {
        let name = match &local.pat {
            syn::Pat::Ident(p) if p.by_ref.is_none() && p.subpat.is_none() => {
                Some(self.ident(&p.ident))
            }
            other => {
                self.error(
                    codes::BAD_STATEMENT,
                    other.span(),
                    "a `let` binds one plain name: `let NAME = EXPR;`",
                );
                None
            }
        };
        let Some(init) = &local.init else {
            self.error(
                codes::BAD_STATEMENT,
                local.let_token.span,
                "a `let` needs a value: `let NAME = EXPR;`",
            );
            return None;
        };
        if let Some((else_token, _)) = &init.diverge {
            self.error(
                codes::BAD_STATEMENT,
                else_token.span,
                "`let ... else` is not part of the model language",
            );
        }
        let value = self.expr(&init.expr);
        name.map(|name| Stmt::Let {
            loc: self.locator.loc(local.let_token.span),
            name,
            value,
        })
    }
}

/// A short name for a kind of Rust expression, for error messages.
fn describe(e: &syn::Expr) -> &'static str {
    match e {
        syn::Expr::Block(_) => "a block expression",
        syn::Expr::Closure(_) => "a closure outside `repeat`",
        syn::Expr::Index(_) => "indexing",
        syn::Expr::Field(_) => "field access",
        syn::Expr::Match(_) => "`match`",
        syn::Expr::Range(_) => "a range",
        syn::Expr::Reference(_) => "a reference",
        syn::Expr::Cast(_) => "a cast",
        syn::Expr::Macro(_) => "a macro call",
        syn::Expr::Struct(_) => "a struct literal",
        syn::Expr::Try(_) => "`?`",
        syn::Expr::Loop(_) | syn::Expr::While(_) | syn::Expr::ForLoop(_) => "a loop",
        syn::Expr::Return(_) | syn::Expr::Break(_) | syn::Expr::Continue(_) => "control flow",
        syn::Expr::Repeat(_) => "an array repeat `[x; n]`",
        _ => "this expression",
    }
}

/// Maps the spans of macro tokens to [`Loc::Macro`].
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct MacroLocator;

impl Locator for MacroLocator {
    fn loc(&self, span: Span) -> Loc {
        Loc::Macro(span)
    }

    fn range(&self, first: Span, last: Span) -> Loc {
        Loc::Macro(first.join(last).unwrap_or(first))
    }
}
