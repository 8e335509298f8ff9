//! A compact, location-free text form of an [`ast::Module`].
//!
//! Two modules print the same exactly when they are equal modulo locations,
//! which is how the tests compare a network written in YAML with the same
//! network written with the macro. The form is an S-expression, one item per
//! line: `(network LeNet5 pub (x [1 32 32]) ...)`.

use std::fmt::Write;

use crate::ast::{Arg, BinOp, Body, Expr, ExprKind, Module, Stmt, UnOp};

/// Prints `module` without locations.
pub fn module(module: &Module) -> String {
    let mut out = String::new();
    for b in &module.blocks {
        let _ = write!(out, "(block {} ({}", b.name.name, b.input.name);
        for p in &b.params {
            match &p.default {
                Some(d) => {
                    let _ = write!(out, " {}={}", p.name.name, expr(d));
                }
                None => {
                    let _ = write!(out, " {}", p.name.name);
                }
            }
        }
        let _ = write!(out, ")");
        for d in &b.docs {
            let _ = write!(out, " (doc {d:?})");
        }
        let _ = writeln!(out, " {})", body(&b.body));
    }
    for n in &module.networks {
        let _ = write!(
            out,
            "(network {}{}",
            n.name.name,
            if n.public { " pub" } else { "" }
        );
        for d in &n.docs {
            let _ = write!(out, " (doc {d:?})");
        }
        for i in &n.inputs {
            let _ = write!(out, " (in {} {})", i.name.name, dims(&i.shape));
        }
        for o in &n.outputs {
            match &o.shape {
                Some(s) => {
                    let _ = write!(out, " (out {} {})", o.name.name, dims(s));
                }
                None => {
                    let _ = write!(out, " (out {})", o.name.name);
                }
            }
        }
        if let Some(l) = &n.loss {
            let _ = write!(out, " (loss {}{}", l.op.name, args(&l.args));
            if let Some(o) = &l.output {
                let _ = write!(out, " for {}", o.name);
            }
            let _ = write!(out, ")");
        }
        let _ = writeln!(out, " {})", body(&n.body));
    }
    out
}

fn dims(d: &[crate::ast::Dim]) -> String {
    let v: Vec<String> = d.iter().map(|d| d.value.to_string()).collect();
    format!("[{}]", v.join(" "))
}

/// Prints a body: `{(let a E) ... E}`.
pub fn body(b: &Body) -> String {
    let mut out = String::from("{");
    for s in &b.stmts {
        match s {
            Stmt::Let { name, value, .. } => {
                let _ = write!(out, "(let {} {}) ", name.name, expr(value));
            }
        }
    }
    out.push_str(&expr(&b.result));
    out.push('}');
    out
}

fn args(a: &[Arg]) -> String {
    let mut out = String::new();
    for arg in a {
        match &arg.name {
            Some(n) => {
                let _ = write!(out, " {}={}", n.name, expr(&arg.value));
            }
            None => {
                let _ = write!(out, " {}", expr(&arg.value));
            }
        }
    }
    out
}

fn list(items: &[Expr]) -> String {
    items.iter().map(expr).collect::<Vec<_>>().join(" ")
}

/// Prints an expression.
pub fn expr(e: &Expr) -> String {
    match &e.kind {
        ExprKind::Int(i) => i.to_string(),
        ExprKind::Float(f) => format!("{f:?}"),
        ExprKind::Bool(b) => b.to_string(),
        ExprKind::Str(s) => format!("{s:?}"),
        ExprKind::List(items) => format!("[{}]", list(items)),
        ExprKind::Tuple(items) => format!("(tuple {})", list(items)),
        ExprKind::Name(n) => n.name.clone(),
        ExprKind::Method {
            recv,
            method,
            args: a,
        } => {
            format!("{}.({}{})", expr(recv), method.name, args(a))
        }
        ExprKind::Call { func, args: a } => format!("({}{})", func.name, args(a)),
        ExprKind::Binary { op, lhs, rhs } => {
            format!("({} {} {})", binop(*op), expr(lhs), expr(rhs))
        }
        ExprKind::Unary { op, expr: inner } => {
            let op = match op {
                UnOp::Neg => "-",
                UnOp::Not => "!",
            };
            format!("({op} {})", expr(inner))
        }
        ExprKind::If {
            cond,
            then,
            otherwise,
        } => format!("(if {} {} {})", expr(cond), body(then), body(otherwise)),
        ExprKind::Repeat {
            recv,
            count,
            var,
            index,
            body: b,
        } => format!(
            "{}.(repeat {} |{}{}| {})",
            expr(recv),
            expr(count),
            var.name,
            index
                .as_ref()
                .map(|i| format!(" {}", i.name))
                .unwrap_or_default(),
            body(b)
        ),
    }
}

fn binop(op: BinOp) -> &'static str {
    match op {
        BinOp::Add => "+",
        BinOp::Sub => "-",
        BinOp::Mul => "*",
        BinOp::Div => "/",
        BinOp::Rem => "%",
        BinOp::Eq => "==",
        BinOp::Ne => "!=",
        BinOp::Lt => "<",
        BinOp::Le => "<=",
        BinOp::Gt => ">",
        BinOp::Ge => ">=",
        BinOp::And => "&&",
        BinOp::Or => "||",
    }
}
