//! A small builder of ASTs for tests that run lowering and the passes
//! without a front-end.
//!
//! [`chain`] turns steps written as `"conv2d 6 k=5 p=same"` into a chain of
//! method calls, giving step `i` the location `line = first_line + i`, so a
//! test can check that an error points at the offending layer.

#![allow(dead_code)]

use kiln_compiler::ast::*;

/// A text location on `line`, column 1.
pub fn loc(line: u32) -> Loc {
    Loc::Text {
        line,
        col: 1,
        offset: 0,
        len: 0,
    }
}

fn e(kind: ExprKind, line: u32) -> Expr {
    Expr {
        kind,
        loc: loc(line),
    }
}

fn ident(name: &str, line: u32) -> Ident {
    Ident {
        name: name.to_string(),
        loc: loc(line),
    }
}

/// An integer literal.
pub fn int(i: i64) -> Expr {
    e(ExprKind::Int(i), 0)
}

/// A name.
pub fn name(n: &str) -> Expr {
    e(ExprKind::Name(ident(n, 0)), 0)
}

/// A name on `line`.
pub fn name_at(n: &str, line: u32) -> Expr {
    e(ExprKind::Name(ident(n, line)), line)
}

/// A list literal.
pub fn list(items: Vec<Expr>) -> Expr {
    e(ExprKind::List(items), 0)
}

/// A tuple literal.
pub fn tuple(items: Vec<Expr>) -> Expr {
    e(ExprKind::Tuple(items), 0)
}

/// A positional argument.
pub fn pos(v: Expr) -> Arg {
    Arg {
        name: None,
        loc: v.loc,
        value: v,
    }
}

/// A named argument.
pub fn kw(n: &str, v: Expr) -> Arg {
    Arg {
        name: Some(ident(n, v_line(&v))),
        loc: v.loc,
        value: v,
    }
}

fn v_line(v: &Expr) -> u32 {
    match v.loc {
        Loc::Text { line, .. } => line,
        _ => 0,
    }
}

/// Parses one argument value: an integer, float, bool, `[a,b]` list, or a name.
fn value(s: &str, line: u32) -> Expr {
    if let Some(inner) = s.strip_prefix('[').and_then(|s| s.strip_suffix(']')) {
        return e(
            ExprKind::List(inner.split(',').map(|p| value(p.trim(), line)).collect()),
            line,
        );
    }
    if let Ok(i) = s.parse::<i64>() {
        return e(ExprKind::Int(i), line);
    }
    if let Ok(x) = s.parse::<f64>() {
        return e(ExprKind::Float(x), line);
    }
    match s {
        "true" => e(ExprKind::Bool(true), line),
        "false" => e(ExprKind::Bool(false), line),
        _ if s.starts_with('"') => e(ExprKind::Str(s.trim_matches('"').to_string()), line),
        _ => e(ExprKind::Name(ident(s, line)), line),
    }
}

/// Parses one step `"op arg arg key=value"` into the op name and its arguments.
pub fn step(s: &str, line: u32) -> (String, Vec<Arg>) {
    let mut words = s.split_whitespace();
    let op = words.next().unwrap_or("").to_string();
    let args = words
        .map(|w| match w.split_once('=') {
            Some((k, v)) => Arg {
                name: Some(ident(k, line)),
                value: value(v, line),
                loc: loc(line),
            },
            None => Arg {
                name: None,
                value: value(w, line),
                loc: loc(line),
            },
        })
        .collect();
    (op, args)
}

/// Applies `steps` to `x` in order, step `i` on line `first_line + i`.
pub fn chain(x: Expr, steps: &[&str], first_line: u32) -> Expr {
    let mut cur = x;
    for (i, s) in steps.iter().enumerate() {
        let line = first_line + i as u32;
        let (op, args) = step(s, line);
        cur = e(
            ExprKind::Method {
                recv: Box::new(cur),
                method: ident(&op, line),
                args,
            },
            line,
        );
    }
    cur
}

/// `func(args)` on `line`; arguments as in [`step`].
pub fn call(func: &str, args: Vec<Arg>, line: u32) -> Expr {
    e(
        ExprKind::Call {
            func: ident(func, line),
            args,
        },
        line,
    )
}

/// `a + b` on `line`.
pub fn plus(a: Expr, b: Expr, line: u32) -> Expr {
    binary(BinOp::Add, a, b, line)
}

/// `a op b` on `line`.
pub fn binary(op: BinOp, a: Expr, b: Expr, line: u32) -> Expr {
    e(
        ExprKind::Binary {
            op,
            lhs: Box::new(a),
            rhs: Box::new(b),
        },
        line,
    )
}

/// `recv.query()` (`channels`, `height`, ...).
pub fn query(recv: Expr, q: &str) -> Expr {
    e(
        ExprKind::Method {
            recv: Box::new(recv),
            method: ident(q, 0),
            args: vec![],
        },
        0,
    )
}

/// `if cond { then } else { otherwise }`.
pub fn if_(cond: Expr, then: Body, otherwise: Body) -> Expr {
    e(
        ExprKind::If {
            cond: Box::new(cond),
            then,
            otherwise,
        },
        0,
    )
}

/// `recv.repeat(count, |var, index| body)`.
pub fn repeat(recv: Expr, count: Expr, var: &str, index: Option<&str>, body: Body) -> Expr {
    e(
        ExprKind::Repeat {
            recv: Box::new(recv),
            count: Box::new(count),
            var: ident(var, 0),
            index: index.map(|i| ident(i, 0)),
            body,
        },
        0,
    )
}

/// `let name = value;`.
pub fn let_(n: &str, value: Expr) -> Stmt {
    Stmt::Let {
        name: ident(n, 0),
        value,
        loc: loc(0),
    }
}

/// A body of statements and a result.
pub fn body(stmts: Vec<Stmt>, result: Expr) -> Body {
    Body {
        stmts,
        result: Box::new(result),
    }
}

/// A network with inputs `(name, shape)` and outputs `(name, shape)`.
pub fn network(
    n: &str,
    inputs: &[(&str, &[i64])],
    body: Body,
    outputs: &[(&str, Option<&[i64]>)],
) -> Network {
    Network {
        name: ident(n, 0),
        docs: vec![],
        public: true,
        inputs: inputs
            .iter()
            .map(|(name, shape)| Input {
                name: ident(name, 0),
                shape: shape
                    .iter()
                    .map(|&value| Dim { value, loc: loc(0) })
                    .collect(),
                loc: loc(0),
            })
            .collect(),
        body,
        outputs: outputs
            .iter()
            .map(|(name, shape)| Output {
                name: ident(name, 100),
                shape: shape.map(|s| {
                    s.iter()
                        .map(|&value| Dim {
                            value,
                            loc: loc(100),
                        })
                        .collect()
                }),
                loc: loc(100),
            })
            .collect(),
        loss: None,
        loc: loc(0),
    }
}

/// A sequential network: input `x` of `shape`, `steps` from line 1, one output `output`.
pub fn seq(n: &str, shape: &[i64], steps: &[&str]) -> Module {
    Module {
        blocks: vec![],
        networks: vec![network(
            n,
            &[("x", shape)],
            body(vec![], chain(name("x"), steps, 1)),
            &[("output", None)],
        )],
    }
}

/// A block `name(input, params...)`; params are `(name, default)`.
pub fn block(n: &str, input: &str, params: &[(&str, Option<Expr>)], body: Body) -> Block {
    Block {
        name: ident(n, 0),
        docs: vec![],
        input: ident(input, 0),
        params: params
            .iter()
            .map(|(p, d)| Param {
                name: ident(p, 0),
                default: d.clone(),
                loc: loc(0),
            })
            .collect(),
        body,
        loc: loc(0),
    }
}

/// A loss head.
pub fn loss(op: &str, args: Vec<Arg>) -> Loss {
    Loss {
        op: ident(op, 200),
        args,
        output: None,
        loc: loc(200),
    }
}
