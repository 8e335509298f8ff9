//! Lowering: elaborates the AST into one [`Graph`] per network.
//!
//! Blocks are inlined with their parameters bound (positional, named,
//! defaults), `if` is decided at compile time, `repeat` is unrolled, `let`
//! binds names, tuples become several outputs, `a + b` on tensors becomes
//! `add`, and scalar arithmetic is evaluated. What remains is a graph of
//! primitive ops ([`crate::ir::Op`]); `identity` is elaborated away (it
//! names its input).
//!
//! Conditions may ask for shapes (`x.channels()`), so lowering infers shapes
//! as it goes: each node is shape-checked ([`infer_node`]) the moment it is
//! added. Errors are collected, each at the offending layer or argument;
//! a value that failed becomes a poison value that later steps pass along
//! silently, so one mistake gives one error.
//!
//! Layer names follow `docs/language.md`: `<op><k>` counted per op within
//! the network or block instance, block instances `<block><k>.` as a prefix,
//! and `name = "..."` overriding either. The branch of an `if` that is not
//! taken is not elaborated, so errors inside it are not reported.

use crate::ast::{self, BinOp, Expr, ExprKind, Ident, Loc, UnOp};
use crate::codes;
use crate::diag::{Code, Diagnostic, Diagnostics};
use crate::ir::{Graph, Loss, LossKind, NodeMeta, Op, Reduction, Shape, ValueId};
use crate::passes::infer_shapes::{MAX_DIM, infer_node};
use std::collections::{HashMap, HashSet};

mod ops;

use ops::Range;

/// The deepest nesting of block calls.
pub const MAX_BLOCK_DEPTH: usize = 64;
/// The largest `repeat` count.
pub const MAX_REPEAT: i64 = 10_000;
/// The most nodes one network may lower to.
pub const MAX_NODES: usize = 200_000;

/// Lowers every network of `module`; all errors of all networks are returned together.
pub fn lower(module: &ast::Module) -> Result<Vec<Graph>, Diagnostics> {
    let mut diags = Diagnostics::new();
    let mut blocks: HashMap<&str, &ast::Block> = HashMap::new();
    for b in &module.blocks {
        if blocks.insert(b.name.name.as_str(), b).is_some() {
            diags.push(Diagnostic::error(
                codes::DUPLICATE_DEF,
                b.name.loc,
                format!("block `{}` is defined twice", b.name.name),
            ));
        }
        let mut seen = HashSet::new();
        seen.insert(b.input.name.as_str());
        for p in &b.params {
            if !seen.insert(p.name.name.as_str()) {
                diags.push(Diagnostic::error(
                    codes::DUPLICATE_DEF,
                    p.name.loc,
                    format!(
                        "block `{}`: parameter `{}` is declared twice",
                        b.name.name, p.name.name
                    ),
                ));
            }
        }
    }
    let mut graphs = Vec::new();
    for net in &module.networks {
        let mut l = Lowerer {
            blocks: &blocks,
            graph: Graph::new(net.name.name.clone()),
            diags: Diagnostics::new(),
            scopes: vec![Scope::default()],
            names: vec![NameCtx::default()],
            used_names: HashSet::new(),
            depth: 0,
            too_big: false,
        };
        l.network(net);
        diags.extend(l.diags);
        graphs.push(l.graph);
    }
    if diags.has_errors() {
        Err(diags)
    } else {
        Ok(graphs)
    }
}

/// A value during elaboration.
#[derive(Debug, Clone)]
enum Val {
    Tensor(ValueId),
    Int(i64),
    Float(f64),
    Bool(bool),
    Str(String),
    /// A name that is not bound: a keyword value (`same`), or a mistake.
    /// `later` says a `let` further down binds it.
    Keyword {
        name: String,
        later: bool,
    },
    List(Vec<Val>),
    Tuple(Vec<Val>),
    /// The result of a step that already reported an error.
    Poison,
}

/// An evaluated call argument.
#[derive(Debug, Clone)]
struct EArg {
    name: Option<Ident>,
    val: Val,
    loc: Loc,
}

#[derive(Debug, Default)]
struct Scope {
    vars: HashMap<String, Val>,
    later: HashSet<String>,
}

#[derive(Debug, Default)]
struct NameCtx {
    prefix: String,
    counters: HashMap<String, usize>,
}

struct Lowerer<'m> {
    blocks: &'m HashMap<&'m str, &'m ast::Block>,
    graph: Graph,
    diags: Diagnostics,
    scopes: Vec<Scope>,
    names: Vec<NameCtx>,
    used_names: HashSet<String>,
    depth: usize,
    too_big: bool,
}

const SHAPE_QUERIES: &[&str] = &["channels", "height", "width", "features", "dim"];

const OPS: &[&str] = &[
    "conv2d",
    "conv_transpose2d",
    "linear",
    "flatten",
    "reshape",
    "max_pool2d",
    "avg_pool2d",
    "global_avg_pool",
    "upsample",
    "pixel_shuffle",
    "relu",
    "selu",
    "sigmoid",
    "tanh",
    "swish",
    "silu",
    "step",
    "identity",
    "leaky_relu",
    "elu",
    "prelu",
    "maxout",
    "softmax",
    "log_softmax",
    "batch_norm",
    "lrn",
    "dropout",
    "add",
    "concat",
];

const LOSSES: &[&str] = &[
    "cross_entropy",
    "nll",
    "multiclass_hinge",
    "mse",
    "l1",
    "huber",
    "binary_cross_entropy",
];

fn describe(v: &Val, g: &Graph) -> String {
    match v {
        Val::Tensor(t) => match g.shape(*t) {
            Some(s) => format!("a tensor of shape {s}"),
            None => "a tensor".into(),
        },
        Val::Int(i) => format!("the integer {i}"),
        Val::Float(x) => format!("the number {x}"),
        Val::Bool(b) => format!("the boolean {b}"),
        Val::Str(s) => format!("the string \"{s}\""),
        Val::Keyword { name, .. } => format!("the name `{name}`"),
        Val::List(_) => "a list".into(),
        Val::Tuple(_) => "a tuple".into(),
        Val::Poison => "an erroneous value".into(),
    }
}

impl<'m> Lowerer<'m> {
    fn error(&mut self, code: Code, loc: Loc, msg: impl Into<String>) {
        self.diags.push(Diagnostic::error(code, loc, msg));
    }

    fn network(&mut self, net: &'m ast::Network) {
        for input in &net.inputs {
            if self.lookup(&input.name.name).is_some() {
                self.error(
                    codes::DUPLICATE_DEF,
                    input.name.loc,
                    format!(
                        "network `{}`: input `{}` is declared twice",
                        net.name.name, input.name.name
                    ),
                );
                continue;
            }
            let val = match self.input_shape(net, input) {
                Some(shape) => {
                    self.used_names.insert(input.name.name.clone());
                    Val::Tensor(self.graph.add_input(&input.name.name, shape, input.loc))
                }
                None => Val::Poison,
            };
            self.bind(&input.name.name, val);
        }
        if net.inputs.is_empty() {
            self.error(
                codes::BAD_INPUT_SHAPE,
                net.loc,
                format!("network `{}` declares no inputs", net.name.name),
            );
        }

        // The body, with its result checked against the declared outputs.
        self.push_scope(&net.body);
        for stmt in &net.body.stmts {
            self.stmt(stmt);
        }
        let results = self.network_result(net);
        self.scopes.pop();

        if net.outputs.is_empty() {
            self.error(
                codes::MISSING_OUTPUT,
                net.loc,
                format!("network `{}` declares no outputs", net.name.name),
            );
            return;
        }
        let Some(results) = results else { return };
        if results.len() != net.outputs.len() {
            let names: Vec<String> = net
                .outputs
                .iter()
                .map(|o| format!("`{}`", o.name.name))
                .collect();
            self.error(
                codes::MISSING_OUTPUT,
                net.outputs[0].loc,
                format!(
                    "network `{}`: the body produces {} tensor(s) but {} output(s) are declared ({})",
                    net.name.name,
                    results.len(),
                    net.outputs.len(),
                    names.join(", ")
                ),
            );
            return;
        }
        let mut ok = true;
        for (out, (val, loc)) in net.outputs.iter().zip(results) {
            let Some(v) = self.as_tensor(&val, loc, &format!("output `{}`", out.name.name)) else {
                ok = false;
                continue;
            };
            if let (Some(want), Some(found)) = (&out.shape, self.graph.shape(v)) {
                let want_dims: Vec<i64> = want.iter().map(|d| d.value).collect();
                let found_dims: Vec<i64> = found.0.iter().map(|&d| d as i64).collect();
                if want_dims != found_dims {
                    let producer = self.graph.producer(v);
                    let d = Diagnostic::error(
                        codes::OUTPUT_SHAPE,
                        out.loc,
                        format!(
                            "network `{}`: output `{}` is declared as {:?} but the body gives {} (from layer `{}`)",
                            net.name.name,
                            out.name.name,
                            want_dims,
                            found,
                            self.graph.name_of(producer)
                        ),
                    )
                    .with_label(self.graph.loc_of(producer), "this layer produces it");
                    self.diags.push(d);
                    ok = false;
                    continue;
                }
            }
            self.graph.add_output(&out.name.name, v);
        }
        if let (true, Some(loss)) = (ok, &net.loss) {
            self.loss(net, loss);
        }
    }

    fn input_shape(&mut self, net: &ast::Network, input: &ast::Input) -> Option<Shape> {
        if input.shape.is_empty() {
            self.error(
                codes::BAD_INPUT_SHAPE,
                input.loc,
                format!(
                    "network `{}`: input `{}` has an empty shape; write [C, H, W] or [D]",
                    net.name.name, input.name.name
                ),
            );
            return None;
        }
        let mut dims = Vec::new();
        for d in &input.shape {
            if d.value < 1 || d.value as u64 > MAX_DIM {
                self.error(
                    codes::BAD_INPUT_SHAPE,
                    d.loc,
                    format!(
                        "network `{}`: input `{}` has a dim of {}; dims are between 1 and {MAX_DIM}",
                        net.name.name, input.name.name, d.value
                    ),
                );
                return None;
            }
            dims.push(d.value as usize);
        }
        Some(Shape(dims))
    }

    /// Evaluates the network body's result; a name that is not bound is a
    /// missing output rather than an unknown tensor.
    fn network_result(&mut self, net: &ast::Network) -> Option<Vec<(Val, Loc)>> {
        let result = &net.body.result;
        let items: Vec<&Expr> = match &result.kind {
            ExprKind::Tuple(items) => items.iter().collect(),
            _ => vec![result],
        };
        let mut out = Vec::new();
        let mut ok = true;
        for (i, e) in items.into_iter().enumerate() {
            if let ExprKind::Name(id) = &e.kind
                && self.lookup(&id.name).is_none()
            {
                let loc = net.outputs.get(i).map(|o| o.loc).unwrap_or(e.loc);
                self.error(
                    codes::MISSING_OUTPUT,
                    loc,
                    format!(
                        "network `{}`: output `{}` is not produced: no tensor named `{}` is defined",
                        net.name.name, id.name, id.name
                    ),
                );
                ok = false;
                continue;
            }
            let v = self.eval(e);
            if matches!(v, Val::Poison) {
                ok = false;
            }
            out.push((v, e.loc));
        }
        ok.then_some(out)
    }

    fn loss(&mut self, net: &ast::Network, loss: &ast::Loss) {
        let target = match &loss.output {
            None => self.graph.outputs()[0].clone(),
            Some(name) => match self.graph.outputs().iter().find(|o| o.name == name.name) {
                Some(o) => o.clone(),
                None => {
                    let names: Vec<String> = self
                        .graph
                        .outputs()
                        .iter()
                        .map(|o| format!("`{}`", o.name))
                        .collect();
                    self.error(
                        codes::BAD_LOSS,
                        name.loc,
                        format!(
                            "network `{}`: the loss reads output `{}`, but the outputs are {}",
                            net.name.name,
                            name.name,
                            names.join(", ")
                        ),
                    );
                    return;
                }
            },
        };
        let op_name = loss.op.name.as_str();
        if !LOSSES.contains(&op_name) {
            let mut d = Diagnostic::error(
                codes::BAD_LOSS,
                loss.op.loc,
                format!(
                    "network `{}`: `{op_name}` is not a loss; the losses are {}",
                    net.name.name,
                    LOSSES.join(", ")
                ),
            );
            if let Some(s) = suggest(op_name, LOSSES.iter().copied()) {
                d = d.with_note(format!("did you mean `{s}`?"));
            }
            self.diags.push(d);
            return;
        }
        let args: Vec<EArg> = loss.args.iter().map(|a| self.arg(a)).collect();
        let what = format!("loss `{op_name}`");
        let spec: &[&str] = match op_name {
            "multiclass_hinge" => &["margin", "reduction"],
            "huber" => &["delta", "reduction"],
            "binary_cross_entropy" => &["reduction", "from_logits"],
            _ => &["reduction"],
        };
        let Some(mut a) = self.bind_args(&what, spec, 0, args, loss.loc) else {
            return;
        };
        let reduction = match a.keyword(self, "reduction", &["mean", "sum"], Some("mean")) {
            "sum" => Reduction::Sum,
            _ => Reduction::Mean,
        };
        let kind = match op_name {
            "cross_entropy" => LossKind::CrossEntropy,
            "nll" => LossKind::Nll,
            "multiclass_hinge" => LossKind::MulticlassHinge {
                margin: a.float(self, "margin", Some(1.0), Range::Positive),
            },
            "mse" => LossKind::Mse,
            "l1" => LossKind::L1,
            "huber" => LossKind::Huber {
                delta: a.float(self, "delta", Some(1.0), Range::Positive),
            },
            _ => LossKind::BinaryCrossEntropy {
                from_logits: a.bool(self, "from_logits", Some(false)),
            },
        };
        if a.failed {
            return;
        }
        if self.used_names.contains("loss") {
            self.error(
                codes::DUPLICATE_NAME,
                loss.loc,
                "the loss head is named `loss`, but a layer already has that name",
            );
            return;
        }
        self.used_names.insert("loss".into());
        let node = self.graph.add_node(
            Op::Loss(Loss { kind, reduction }),
            vec![target.value],
            NodeMeta {
                name: "loss".into(),
                loc: loss.loc,
            },
        );
        if let Err(d) = infer_node(&mut self.graph, node) {
            self.diags.push(d);
        }
        self.graph.set_loss(node);
    }

    // Scopes.

    fn push_scope(&mut self, body: &ast::Body) {
        let later = body
            .stmts
            .iter()
            .map(|s| match s {
                ast::Stmt::Let { name, .. } => name.name.clone(),
            })
            .collect();
        self.scopes.push(Scope {
            vars: HashMap::new(),
            later,
        });
    }

    fn bind(&mut self, name: &str, val: Val) {
        let scope = self.scopes.last_mut().expect("lowering always has a scope");
        scope.later.remove(name);
        scope.vars.insert(name.to_string(), val);
    }

    fn lookup(&self, name: &str) -> Option<&Val> {
        self.scopes.iter().rev().find_map(|s| s.vars.get(name))
    }

    fn tensors_in_scope(&self) -> Vec<String> {
        let mut names: Vec<String> = self
            .scopes
            .iter()
            .flat_map(|s| s.vars.iter())
            .filter(|(_, v)| matches!(v, Val::Tensor(_)))
            .map(|(k, _)| format!("`{k}`"))
            .collect();
        names.sort();
        names.dedup();
        names
    }

    fn stmt(&mut self, stmt: &ast::Stmt) {
        match stmt {
            ast::Stmt::Let { name, value, .. } => {
                let v = self.eval(value);
                self.bind(&name.name, v);
            }
        }
    }

    fn body(&mut self, body: &ast::Body) -> Val {
        self.push_scope(body);
        for stmt in &body.stmts {
            self.stmt(stmt);
        }
        let v = self.eval(&body.result);
        self.scopes.pop();
        v
    }

    // Expressions.

    fn arg(&mut self, a: &ast::Arg) -> EArg {
        EArg {
            name: a.name.clone(),
            val: self.eval(&a.value),
            loc: a.loc,
        }
    }

    fn eval(&mut self, e: &Expr) -> Val {
        match &e.kind {
            ExprKind::Int(i) => Val::Int(*i),
            ExprKind::Float(x) => Val::Float(*x),
            ExprKind::Bool(b) => Val::Bool(*b),
            ExprKind::Str(s) => Val::Str(s.clone()),
            ExprKind::List(items) => Val::List(items.iter().map(|i| self.eval(i)).collect()),
            ExprKind::Tuple(items) => Val::Tuple(items.iter().map(|i| self.eval(i)).collect()),
            ExprKind::Name(id) => match self.lookup(&id.name) {
                Some(v) => v.clone(),
                None => Val::Keyword {
                    name: id.name.clone(),
                    later: self.scopes.iter().any(|s| s.later.contains(&id.name)),
                },
            },
            ExprKind::Method { .. } => {
                // A chain `x.a().b().c()` is walked iteratively, innermost
                // first, so a long chain does not nest the evaluator.
                let mut chain = Vec::new();
                let mut base = e;
                while let ExprKind::Method { recv, method, args } = &base.kind {
                    chain.push((base.loc, recv.loc, method, args));
                    base = recv;
                }
                let mut r = self.eval(base);
                for (loc, recv_loc, method, args) in chain.into_iter().rev() {
                    let args: Vec<EArg> = args.iter().map(|a| self.arg(a)).collect();
                    r = if SHAPE_QUERIES.contains(&method.name.as_str()) {
                        self.shape_query(r, recv_loc, method, args, loc)
                    } else {
                        self.apply(method, vec![(r, recv_loc)], args, loc)
                    };
                }
                r
            }
            ExprKind::Call { func, args } => {
                let args: Vec<EArg> = args.iter().map(|a| self.arg(a)).collect();
                self.call(func, args, e.loc)
            }
            ExprKind::Binary { op, lhs, rhs } => {
                let l = self.eval(lhs);
                let r = self.eval(rhs);
                self.binary(*op, l, lhs.loc, r, rhs.loc, e.loc)
            }
            ExprKind::Unary { op, expr } => {
                let v = self.eval(expr);
                match (op, v) {
                    (_, Val::Poison) => Val::Poison,
                    (UnOp::Neg, Val::Int(i)) => match i.checked_neg() {
                        Some(n) => Val::Int(n),
                        None => {
                            self.error(codes::BAD_OPERANDS, e.loc, "integer overflow in `-`");
                            Val::Poison
                        }
                    },
                    (UnOp::Neg, Val::Float(x)) => Val::Float(-x),
                    (UnOp::Not, Val::Bool(b)) => Val::Bool(!b),
                    (op, v) => {
                        let sym = if *op == UnOp::Neg { "-" } else { "!" };
                        let msg =
                            format!("`{sym}` cannot be applied to {}", describe(&v, &self.graph));
                        let code = self.operand_code(&v);
                        self.error(code, e.loc, msg);
                        Val::Poison
                    }
                }
            }
            ExprKind::If {
                cond,
                then,
                otherwise,
            } => match self.eval(cond) {
                Val::Bool(true) => self.body(then),
                Val::Bool(false) => self.body(otherwise),
                Val::Poison => Val::Poison,
                v => {
                    let msg = format!(
                        "the condition of `if` must be a boolean, found {}",
                        describe(&v, &self.graph)
                    );
                    let code = self.operand_code(&v);
                    self.error(code, cond.loc, msg);
                    Val::Poison
                }
            },
            ExprKind::Repeat {
                recv,
                count,
                var,
                index,
                body,
            } => {
                let mut cur = self.eval(recv);
                let n = match self.eval(count) {
                    Val::Int(n) if (0..=MAX_REPEAT).contains(&n) => n,
                    Val::Poison => return Val::Poison,
                    Val::Int(n) => {
                        self.error(
                            codes::BAD_ARG_VALUE,
                            count.loc,
                            format!("`repeat` count {n} is out of range 0..={MAX_REPEAT}"),
                        );
                        return Val::Poison;
                    }
                    v => {
                        let msg = format!(
                            "the count of `repeat` must be an integer, found {}",
                            describe(&v, &self.graph)
                        );
                        self.error(codes::WRONG_ARG_TYPE, count.loc, msg);
                        return Val::Poison;
                    }
                };
                for i in 0..n {
                    if matches!(cur, Val::Poison) || self.too_big {
                        return Val::Poison;
                    }
                    self.scopes.push(Scope::default());
                    self.bind(&var.name, cur);
                    if let Some(ix) = index {
                        self.bind(&ix.name, Val::Int(i));
                    }
                    cur = self.body(body);
                    self.scopes.pop();
                }
                cur
            }
        }
    }

    /// The code for an unusable operand: an unknown name, or a tensor/scalar mix-up.
    fn operand_code(&self, v: &Val) -> Code {
        match v {
            Val::Keyword { later: true, .. } => codes::CYCLE,
            Val::Keyword { .. } => codes::UNKNOWN_TENSOR,
            Val::Tensor(_) => codes::TENSOR_SCALAR,
            _ => codes::BAD_OPERANDS,
        }
    }

    fn binary(&mut self, op: BinOp, l: Val, ll: Loc, r: Val, rl: Loc, loc: Loc) -> Val {
        use Val::*;
        if matches!(l, Poison) || matches!(r, Poison) {
            return Poison;
        }
        let sym = match op {
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
        };
        if matches!(l, Tensor(_)) || matches!(r, Tensor(_)) {
            if op == BinOp::Add {
                let id = Ident {
                    name: "add".into(),
                    loc,
                };
                return self.apply(&id, vec![(l, ll), (r, rl)], Vec::new(), loc);
            }
            let msg = format!(
                "`{sym}` is not defined on tensors (only `+`, which is `add`): found {} and {}",
                describe(&l, &self.graph),
                describe(&r, &self.graph)
            );
            self.error(codes::TENSOR_SCALAR, loc, msg);
            return Poison;
        }
        for (v, vl) in [(&l, ll), (&r, rl)] {
            if let Keyword { name, later } = v
                && !matches!(op, BinOp::Eq | BinOp::Ne)
            {
                let (code, msg) = if *later {
                    (
                        codes::CYCLE,
                        format!("`{name}` is used before the `let` that defines it"),
                    )
                } else {
                    (codes::UNKNOWN_TENSOR, format!("unknown name `{name}`"))
                };
                self.error(code, vl, msg);
                return Poison;
            }
        }
        let overflow = |s: &mut Self| {
            s.error(
                codes::BAD_OPERANDS,
                loc,
                format!("integer overflow or division by zero in `{sym}`"),
            );
            Poison
        };
        match (op, &l, &r) {
            (BinOp::Add, Int(a), Int(b)) => {
                a.checked_add(*b).map(Int).unwrap_or_else(|| overflow(self))
            }
            (BinOp::Sub, Int(a), Int(b)) => {
                a.checked_sub(*b).map(Int).unwrap_or_else(|| overflow(self))
            }
            (BinOp::Mul, Int(a), Int(b)) => {
                a.checked_mul(*b).map(Int).unwrap_or_else(|| overflow(self))
            }
            (BinOp::Div, Int(a), Int(b)) => {
                a.checked_div(*b).map(Int).unwrap_or_else(|| overflow(self))
            }
            (BinOp::Rem, Int(a), Int(b)) => {
                a.checked_rem(*b).map(Int).unwrap_or_else(|| overflow(self))
            }
            (BinOp::And, Bool(a), Bool(b)) => Bool(*a && *b),
            (BinOp::Or, Bool(a), Bool(b)) => Bool(*a || *b),
            (BinOp::Eq | BinOp::Ne, _, _) if scalar_eq(&l, &r).is_some() => {
                let eq = scalar_eq(&l, &r).unwrap_or(false);
                Bool(if op == BinOp::Eq { eq } else { !eq })
            }
            (_, Int(_) | Float(_), Int(_) | Float(_)) => {
                let (a, b) = (as_f64(&l), as_f64(&r));
                match op {
                    BinOp::Add => Float(a + b),
                    BinOp::Sub => Float(a - b),
                    BinOp::Mul => Float(a * b),
                    BinOp::Div => Float(a / b),
                    BinOp::Rem => Float(a % b),
                    BinOp::Lt => Bool(a < b),
                    BinOp::Le => Bool(a <= b),
                    BinOp::Gt => Bool(a > b),
                    BinOp::Ge => Bool(a >= b),
                    _ => {
                        self.bad_operands(sym, &l, &r, loc);
                        Poison
                    }
                }
            }
            _ => {
                self.bad_operands(sym, &l, &r, loc);
                Poison
            }
        }
    }

    fn bad_operands(&mut self, sym: &str, l: &Val, r: &Val, loc: Loc) {
        let msg = format!(
            "`{sym}` cannot combine {} and {}",
            describe(l, &self.graph),
            describe(r, &self.graph)
        );
        self.error(codes::BAD_OPERANDS, loc, msg);
    }

    /// Checks that `v` is a tensor; reports why not.
    fn as_tensor(&mut self, v: &Val, loc: Loc, context: &str) -> Option<ValueId> {
        match v {
            Val::Tensor(t) => Some(*t),
            Val::Poison => None,
            Val::Keyword { name, later: true } => {
                self.diags.push(
                    Diagnostic::error(
                        codes::CYCLE,
                        loc,
                        format!(
                            "{context}: tensor `{name}` is used before the step that defines it; a step can read only earlier results (reading a later one would make a cycle)"
                        ),
                    )
                    .with_note("move the step that defines it earlier, or read another tensor"),
                );
                None
            }
            Val::Keyword { name, later: false } => {
                let known = self.tensors_in_scope();
                let mut d = Diagnostic::error(
                    codes::UNKNOWN_TENSOR,
                    loc,
                    format!("{context}: unknown tensor `{name}`"),
                );
                let names = known.iter().map(|s| s.trim_matches('`'));
                if let Some(s) = suggest(name, names) {
                    d = d.with_note(format!("did you mean `{s}`?"));
                }
                if !known.is_empty() {
                    d = d.with_note(format!("tensors in scope: {}", known.join(", ")));
                }
                self.diags.push(d);
                None
            }
            other => {
                let msg = format!(
                    "{context}: expected a tensor, found {}",
                    describe(other, &self.graph)
                );
                self.error(codes::TENSOR_SCALAR, loc, msg);
                None
            }
        }
    }

    fn shape_query(
        &mut self,
        recv: Val,
        recv_loc: Loc,
        method: &Ident,
        args: Vec<EArg>,
        loc: Loc,
    ) -> Val {
        let q = method.name.as_str();
        let Some(t) = self.as_tensor(&recv, recv_loc, &format!("`{q}()`")) else {
            return Val::Poison;
        };
        let Some(shape) = self.graph.shape(t).cloned() else {
            return Val::Poison;
        };
        let want_args = usize::from(q == "dim");
        if args.len() != want_args || args.iter().any(|a| a.name.is_some()) {
            let msg = if want_args == 1 {
                "`dim(i)` takes one positional argument, the dim index".to_string()
            } else {
                format!("`{q}()` takes no arguments")
            };
            self.error(codes::UNEXPECTED_ARG, loc, msg);
            return Val::Poison;
        }
        let dims = shape.dims();
        let image = |s: &mut Self, i: usize| -> Val {
            if dims.len() == 3 {
                Val::Int(dims[i] as i64)
            } else {
                s.error(
                    codes::WRONG_RANK,
                    loc,
                    format!("`{q}()` needs a tensor of shape [C, H, W], found {shape}"),
                );
                Val::Poison
            }
        };
        match q {
            "channels" => Val::Int(dims[0] as i64),
            "height" => image(self, 1),
            "width" => image(self, 2),
            "features" => Val::Int(shape.numel().min(i64::MAX as u64) as i64),
            _ => match &args[0].val {
                Val::Int(i) => {
                    let r = dims.len() as i64;
                    let ix = if *i < 0 { i + r } else { *i };
                    if (0..r).contains(&ix) {
                        Val::Int(dims[ix as usize] as i64)
                    } else {
                        self.error(
                            codes::BAD_AXIS,
                            args[0].loc,
                            format!("`dim({i})` is out of range for a tensor of shape {shape}"),
                        );
                        Val::Poison
                    }
                }
                Val::Poison => Val::Poison,
                v => {
                    let msg = format!(
                        "`dim(i)` needs an integer, found {}",
                        describe(v, &self.graph)
                    );
                    self.error(codes::WRONG_ARG_TYPE, args[0].loc, msg);
                    Val::Poison
                }
            },
        }
    }

    /// `name(args)`: the tensor inputs are the leading positional arguments.
    fn call(&mut self, func: &Ident, args: Vec<EArg>, loc: Loc) -> Val {
        let mut positional = Vec::new();
        let mut rest = Vec::new();
        for a in args {
            if a.name.is_none() && rest.is_empty() {
                positional.push(a);
            } else {
                rest.push(a);
            }
        }
        let mut inputs = Vec::new();
        let mut extra = Vec::new();
        // `add` and `concat` take every leading tensor (or list of tensors);
        // other ops and blocks take the first positional argument.
        let listy = func.name == "add" || func.name == "concat";
        for a in positional {
            let is_input = if listy {
                extra.is_empty()
                    && !matches!(
                        a.val,
                        Val::Int(_) | Val::Float(_) | Val::Bool(_) | Val::Str(_)
                    )
            } else {
                inputs.is_empty()
            };
            if !is_input {
                extra.push(a);
            } else if let (true, Val::List(items)) = (listy, &a.val) {
                inputs.extend(items.iter().cloned().map(|v| (v, a.loc)));
            } else {
                inputs.push((a.val, a.loc));
            }
        }
        extra.extend(rest);
        if inputs.is_empty() {
            self.error(
                codes::MISSING_ARG,
                loc,
                format!(
                    "`{}(...)` needs its input tensor as the first argument",
                    func.name
                ),
            );
            return Val::Poison;
        }
        self.apply(func, inputs, extra, loc)
    }

    /// Applies an op or block to its input tensors.
    fn apply(
        &mut self,
        func: &Ident,
        inputs: Vec<(Val, Loc)>,
        mut args: Vec<EArg>,
        loc: Loc,
    ) -> Val {
        let fname = func.name.as_str();
        // The reserved `name` argument.
        let mut name_override = None;
        if let Some(pos) = args
            .iter()
            .position(|a| a.name.as_ref().is_some_and(|n| n.name == "name"))
        {
            let a = args.remove(pos);
            match a.val {
                Val::Str(s) | Val::Keyword { name: s, .. } if valid_layer_name(&s) => {
                    name_override = Some((s, a.loc));
                }
                Val::Poison => return Val::Poison,
                v => {
                    let msg = format!(
                        "`name` must be a layer name (letters, digits, `_`), found {}",
                        describe(&v, &self.graph)
                    );
                    self.error(codes::WRONG_ARG_TYPE, a.loc, msg);
                    return Val::Poison;
                }
            }
        }
        if let Some(block) = self.blocks.get(fname).copied() {
            let Some(tensors) = self.input_tensors(fname, &inputs) else {
                return Val::Poison;
            };
            if tensors.len() != 1 {
                self.error(
                    codes::UNEXPECTED_ARG,
                    loc,
                    format!(
                        "block `{fname}` takes one input tensor, found {}",
                        tensors.len()
                    ),
                );
                return Val::Poison;
            }
            return self.call_block(block, tensors[0], args, name_override, loc);
        }
        if fname == "identity" {
            let Some(tensors) = self.input_tensors(fname, &inputs) else {
                return Val::Poison;
            };
            if tensors.len() != 1 || !args.is_empty() {
                self.error(
                    codes::UNEXPECTED_ARG,
                    loc,
                    "`identity` takes one tensor and no arguments",
                );
                return Val::Poison;
            }
            return Val::Tensor(tensors[0]);
        }
        if LOSSES.contains(&fname) {
            self.error(
                codes::BAD_LOSS,
                func.loc,
                format!("`{fname}` is a loss, not a layer; declare it as the network's `loss`"),
            );
            return Val::Poison;
        }
        if !OPS.contains(&fname) {
            let mut d = Diagnostic::error(
                codes::UNKNOWN_OP,
                func.loc,
                format!("unknown op or block `{fname}`"),
            );
            let candidates = OPS
                .iter()
                .copied()
                .chain(self.blocks.keys().copied())
                .chain(SHAPE_QUERIES.iter().copied());
            if let Some(s) = suggest(fname, candidates) {
                d = d.with_note(format!("did you mean `{s}`?"));
            }
            self.diags.push(d);
            return Val::Poison;
        }
        let Some(name) = self.layer_name(fname, name_override, loc) else {
            return Val::Poison;
        };
        let what = format!("{fname} `{name}`");
        let Some(op) = self.build_op(fname, &what, args, loc) else {
            return Val::Poison;
        };
        let Some(tensors) = self.input_tensors(fname, &inputs) else {
            return Val::Poison;
        };
        if !op.arity().allows(tensors.len()) {
            self.error(
                codes::UNEXPECTED_ARG,
                loc,
                format!(
                    "{what}: takes {} input tensor(s), found {}",
                    op.arity(),
                    tensors.len()
                ),
            );
            return Val::Poison;
        }
        self.add_layer(op, tensors, name, loc)
    }

    /// The input values of a layer; `None` if one is poison or not a tensor
    /// (reported, unless it was poison already).
    fn input_tensors(&mut self, fname: &str, inputs: &[(Val, Loc)]) -> Option<Vec<ValueId>> {
        if inputs.iter().any(|(v, _)| matches!(v, Val::Poison)) {
            return None;
        }
        let mut tensors = Vec::new();
        for (v, l) in inputs {
            tensors.push(self.as_tensor(v, *l, &format!("the input of `{fname}`"))?);
        }
        Some(tensors)
    }

    fn add_layer(&mut self, op: Op, inputs: Vec<ValueId>, name: String, loc: Loc) -> Val {
        if self.graph.node_count() >= MAX_NODES {
            if !self.too_big {
                self.too_big = true;
                self.error(
                    codes::RECURSION,
                    loc,
                    format!(
                        "network `{}` lowers to more than {MAX_NODES} layers",
                        self.graph.name
                    ),
                );
            }
            return Val::Poison;
        }
        let node = self.graph.add_node(op, inputs, NodeMeta { name, loc });
        match infer_node(&mut self.graph, node) {
            Ok(()) => Val::Tensor(self.graph.node(node).output),
            Err(d) => {
                self.diags.push(d);
                Val::Poison
            }
        }
    }

    /// The next layer name for `base` in the current block instance, or the
    /// override; `None` (reported) if it is taken.
    fn layer_name(
        &mut self,
        base: &str,
        name_override: Option<(String, Loc)>,
        at: Loc,
    ) -> Option<String> {
        let name = self.next_name(base, name_override.as_ref().map(|(n, _)| n.as_str()));
        if !self.used_names.insert(name.clone()) {
            self.error(
                codes::DUPLICATE_NAME,
                name_override.map(|(_, l)| l).unwrap_or(at),
                format!("two layers are named `{name}`; layer names must be unique"),
            );
            return None;
        }
        Some(name)
    }

    /// The next name for `base` in the current block instance (or the
    /// override), with the instance's prefix; not yet registered.
    fn next_name(&mut self, base: &str, name_override: Option<&str>) -> String {
        let ctx = self
            .names
            .last_mut()
            .expect("lowering always has a name context");
        match name_override {
            Some(n) => format!("{}{n}", ctx.prefix),
            None => {
                let k = ctx.counters.entry(base.to_string()).or_insert(0);
                let n = format!("{}{base}{k}", ctx.prefix);
                *k += 1;
                n
            }
        }
    }

    fn call_block(
        &mut self,
        block: &'m ast::Block,
        input: ValueId,
        args: Vec<EArg>,
        name_override: Option<(String, Loc)>,
        loc: Loc,
    ) -> Val {
        let bname = block.name.name.as_str();
        if self.depth >= MAX_BLOCK_DEPTH {
            self.error(
                codes::RECURSION,
                loc,
                format!(
                    "block `{bname}` is nested more than {MAX_BLOCK_DEPTH} deep; does it call itself?"
                ),
            );
            return Val::Poison;
        }
        // Bind the arguments to the parameters.
        let mut bound: Vec<Option<Val>> = vec![None; block.params.len()];
        let mut ok = true;
        let mut npos = 0;
        for a in args {
            let slot =
                match &a.name {
                    None => {
                        npos += 1;
                        if npos > block.params.len() {
                            self.error(
                            codes::UNEXPECTED_ARG,
                            a.loc,
                            format!(
                                "block `{bname}` takes {} argument(s) after its input, found more",
                                block.params.len()
                            ),
                        );
                            ok = false;
                            continue;
                        }
                        npos - 1
                    }
                    Some(n) => {
                        match block.params.iter().position(|p| p.name.name == n.name) {
                            Some(i) => i,
                            None => {
                                let names: Vec<String> = block
                                    .params
                                    .iter()
                                    .map(|p| format!("`{}`", p.name.name))
                                    .collect();
                                self.error(
                            codes::UNEXPECTED_ARG,
                            n.loc,
                            format!(
                                "block `{bname}` has no parameter `{}`; its parameters are {}",
                                n.name,
                                if names.is_empty() { "none".into() } else { names.join(", ") }
                            ),
                        );
                                ok = false;
                                continue;
                            }
                        }
                    }
                };
            if bound[slot].is_some() {
                self.error(
                    codes::UNEXPECTED_ARG,
                    a.loc,
                    format!(
                        "block `{bname}`: argument `{}` is given twice",
                        block.params[slot].name.name
                    ),
                );
                ok = false;
                continue;
            }
            if matches!(a.val, Val::Poison) {
                ok = false;
            }
            bound[slot] = Some(a.val);
        }
        if !ok {
            return Val::Poison;
        }
        // A block instance is not a layer: its name only prefixes its layers'.
        let prefix = self.next_name(bname, name_override.as_ref().map(|(n, _)| n.as_str()));

        let saved = std::mem::replace(&mut self.scopes, vec![Scope::default()]);
        self.names.push(NameCtx {
            prefix: format!("{prefix}."),
            counters: HashMap::new(),
        });
        self.depth += 1;
        self.bind(&block.input.name, Val::Tensor(input));
        let mut result = Val::Poison;
        let mut params_ok = true;
        for (p, v) in block.params.iter().zip(bound) {
            let v = match (v, &p.default) {
                (Some(v), _) => v,
                (None, Some(d)) => self.eval(d),
                (None, None) => {
                    self.error(
                        codes::MISSING_ARG,
                        loc,
                        format!("block `{bname}`: missing argument `{}`", p.name.name),
                    );
                    params_ok = false;
                    Val::Poison
                }
            };
            self.bind(&p.name.name, v);
        }
        if params_ok {
            result = self.body(&block.body);
        }
        self.depth -= 1;
        self.names.pop();
        self.scopes = saved;
        result
    }
}

fn as_f64(v: &Val) -> f64 {
    match v {
        Val::Int(i) => *i as f64,
        Val::Float(x) => *x,
        _ => f64::NAN,
    }
}

/// Equality of two scalars of comparable kinds; `None` when they are not comparable.
fn scalar_eq(l: &Val, r: &Val) -> Option<bool> {
    match (l, r) {
        (Val::Int(a), Val::Int(b)) => Some(a == b),
        (Val::Int(_) | Val::Float(_), Val::Int(_) | Val::Float(_)) => Some(as_f64(l) == as_f64(r)),
        (Val::Bool(a), Val::Bool(b)) => Some(a == b),
        (
            Val::Str(a) | Val::Keyword { name: a, .. },
            Val::Str(b) | Val::Keyword { name: b, .. },
        ) => Some(a == b),
        _ => None,
    }
}

fn valid_layer_name(s: &str) -> bool {
    !s.is_empty() && s.len() <= 128 && s.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
}

/// The closest candidate within a small edit distance, for "did you mean".
fn suggest<'a>(word: &str, candidates: impl Iterator<Item = &'a str>) -> Option<&'a str> {
    let mut best: Option<(usize, &str)> = None;
    for c in candidates {
        let d = edit_distance(word, c);
        if d <= 2.max(word.len() / 3) && d > 0 && best.is_none_or(|(bd, _)| d < bd) {
            best = Some((d, c));
        }
    }
    best.map(|(_, c)| c)
}

fn edit_distance(a: &str, b: &str) -> usize {
    let a: Vec<char> = a.chars().take(64).collect();
    let b: Vec<char> = b.chars().take(64).collect();
    let mut prev: Vec<usize> = (0..=b.len()).collect();
    for i in 1..=a.len() {
        let mut cur = vec![i; b.len() + 1];
        for j in 1..=b.len() {
            let sub = prev[j - 1] + usize::from(a[i - 1] != b[j - 1]);
            cur[j] = sub.min(prev[j] + 1).min(cur[j - 1] + 1);
        }
        prev = cur;
    }
    prev[b.len()]
}
