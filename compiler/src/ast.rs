//! The one AST that both syntaxes produce.
//!
//! `frontend::yaml` (a YAML file) and `frontend::rust` (the tokens of a
//! `network!` invocation) each build an [`ast::Network`](Network); nothing
//! after the front-end knows which syntax a network came from. The AST is the
//! surface language: it still has blocks with parameters, `if`, `repeat` and
//! scalar arithmetic. `lower` elaborates it into the IR, where only
//! primitive ops remain.
//!
//! Every node carries a [`Loc`]: a YAML line and column, or the
//! `proc_macro2::Span` of the tokens it came from. Diagnostics point there.
//!
//! The language is described for users in `docs/language.md`; the two
//! syntaxes map onto these types one to one.

use std::fmt;

/// Where a node came from in the user's source.
#[derive(Clone, Copy)]
pub enum Loc {
    /// A position in a YAML (or other text) file: 1-based line and column,
    /// and the 0-based byte offset and length of the node's text.
    Text {
        /// 1-based line.
        line: u32,
        /// 1-based column, in characters.
        col: u32,
        /// 0-based byte offset of the node's first character.
        offset: u32,
        /// Length in bytes of the node's text (0 when unknown).
        len: u32,
    },
    /// The tokens of a `network!` invocation.
    Macro(proc_macro2::Span),
    /// Made by the compiler, not written by the user.
    Synthetic,
}

impl fmt::Debug for Loc {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Loc::Text { line, col, .. } => write!(f, "{line}:{col}"),
            Loc::Macro(_) => write!(f, "<macro>"),
            Loc::Synthetic => write!(f, "<synthetic>"),
        }
    }
}

/// A name with its location: a tensor, block, op, parameter or attribute.
#[derive(Debug, Clone)]
pub struct Ident {
    /// The name as written.
    pub name: String,
    /// Where it was written.
    pub loc: Loc,
}

/// One compilation unit: the blocks it defines and the networks that use them.
///
/// A YAML file holds exactly one network (with its own blocks); a `network!`
/// invocation may hold several blocks and several networks.
#[derive(Debug, Clone, Default)]
pub struct Module {
    /// Reusable blocks, in source order.
    pub blocks: Vec<Block>,
    /// The networks, in source order.
    pub networks: Vec<Network>,
}

/// A network: named inputs with shapes, a body, named outputs, a loss head.
#[derive(Debug, Clone)]
pub struct Network {
    /// The type name (`LeNet5`).
    pub name: Ident,
    /// Doc comment lines, without the comment markers; they become the
    /// generated type's docs.
    pub docs: Vec<String>,
    /// Whether the generated type is `pub`.
    pub public: bool,
    /// The inputs, each with its per-example shape (batch is implicit).
    pub inputs: Vec<Input>,
    /// The statements, then the result.
    pub body: Body,
    /// The declared outputs: one per element of the body's result (a tuple
    /// result gives several). Their shapes are checked when given.
    pub outputs: Vec<Output>,
    /// The loss head used for training, if any.
    pub loss: Option<Loss>,
    /// The whole network's location (its name, usually).
    pub loc: Loc,
}

/// A network input: `x: [1, 32, 32]`.
#[derive(Debug, Clone)]
pub struct Input {
    /// The tensor name.
    pub name: Ident,
    /// Per-example shape: `[C, H, W]` or `[D]` (batch is implicit).
    pub shape: Vec<Dim>,
    /// Where the input was declared.
    pub loc: Loc,
}

/// One dimension of a declared shape.
#[derive(Debug, Clone)]
pub struct Dim {
    /// The size.
    pub value: i64,
    /// Where it was written.
    pub loc: Loc,
}

/// A declared output: a name, and optionally the expected shape.
#[derive(Debug, Clone)]
pub struct Output {
    /// The output's name (`logits`); the macro's `-> [10]` form names it
    /// `output`.
    pub name: Ident,
    /// The expected per-example shape, if declared.
    pub shape: Option<Vec<Dim>>,
    /// Where it was declared.
    pub loc: Loc,
}

/// The loss head: a loss op applied to one output and a target input.
///
/// The target is implicit: `cross_entropy`, `nll` and `multiclass_hinge`
/// take class indices; the regression losses take a tensor of the output's
/// shape.
#[derive(Debug, Clone)]
pub struct Loss {
    /// The loss op (`cross_entropy`, `mse`, ...).
    pub op: Ident,
    /// Its attributes (`margin = 1.0`, `delta = 1.0`, `reduction = "mean"`).
    pub args: Vec<Arg>,
    /// Which output it applies to; `None` means the first output.
    pub output: Option<Ident>,
    /// Where the loss was declared.
    pub loc: Loc,
}

/// A reusable block: a user-defined layer with parameters and defaults.
///
/// The first parameter is the tensor the block is applied to; a block is
/// called exactly like an op: `x.basic(64, stride = 2)`.
#[derive(Debug, Clone)]
pub struct Block {
    /// The block's name (`basic`, `bottleneck`, `inception`).
    pub name: Ident,
    /// Doc comment lines.
    pub docs: Vec<String>,
    /// The tensor input's name (`x`).
    pub input: Ident,
    /// Scalar parameters with optional defaults, in order.
    pub params: Vec<Param>,
    /// The body; its result is the block's output.
    pub body: Body,
    /// Where the block was declared.
    pub loc: Loc,
}

/// A block parameter: `c`, `stride = 1`.
#[derive(Debug, Clone)]
pub struct Param {
    /// The parameter name.
    pub name: Ident,
    /// The default, if any (a constant expression).
    pub default: Option<Expr>,
    /// Where it was declared.
    pub loc: Loc,
}

/// A sequence of `let` statements and a result expression.
#[derive(Debug, Clone)]
pub struct Body {
    /// The statements, in order.
    pub stmts: Vec<Stmt>,
    /// The value of the body (a tensor, or a tuple of tensors for a network
    /// with several outputs).
    pub result: Box<Expr>,
}

/// A statement.
#[derive(Debug, Clone)]
pub enum Stmt {
    /// `let name = value;` — binds a tensor or a scalar.
    Let {
        /// The bound name.
        name: Ident,
        /// The value.
        value: Expr,
        /// Where the statement is.
        loc: Loc,
    },
}

/// An expression: evaluates to a tensor or to a scalar during lowering.
///
/// The language is dynamically typed at elaboration time: using a scalar
/// where a tensor is needed (or the reverse) is a located error.
#[derive(Debug, Clone)]
pub struct Expr {
    /// What the expression is.
    pub kind: ExprKind,
    /// Where it was written. For a method call, this is the span of the
    /// method name and its arguments (the layer), not the receiver chain.
    pub loc: Loc,
}

/// The kinds of expression.
#[derive(Debug, Clone)]
pub enum ExprKind {
    /// An integer literal.
    Int(i64),
    /// A float literal.
    Float(f64),
    /// `true` / `false`.
    Bool(bool),
    /// A string literal (`"same"`, `"nearest"`).
    Str(String),
    /// A list `[a, b, c]` (kernel sizes, reshape targets, concat inputs).
    List(Vec<Expr>),
    /// A tuple `(a, b)`: several outputs of a network.
    Tuple(Vec<Expr>),
    /// A name: a tensor, a block parameter, a `let` binding, or a bare
    /// keyword value such as `same` or `nearest`.
    Name(Ident),
    /// `recv.method(args)`: an op or a block applied to a tensor
    /// (`x.conv2d(6, k = 5)`), or a shape query on a tensor
    /// (`x.channels()`, `x.height()`, `x.width()`, `x.dim(i)`).
    Method {
        /// The receiver (a tensor expression).
        recv: Box<Expr>,
        /// The op, block or query name.
        method: Ident,
        /// Positional and named arguments.
        args: Vec<Arg>,
    },
    /// `name(args)`: an op that takes several tensors — `add(a, b)`,
    /// `concat([a, b, c], axis = 1)` — or a block applied to its first
    /// argument.
    Call {
        /// The op or block name.
        func: Ident,
        /// Positional and named arguments.
        args: Vec<Arg>,
    },
    /// `lhs op rhs`: `+` on two tensors is `add`; on scalars, arithmetic,
    /// comparison and logic.
    Binary {
        /// The operator.
        op: BinOp,
        /// Left operand.
        lhs: Box<Expr>,
        /// Right operand.
        rhs: Box<Expr>,
    },
    /// `-x`, `!x` on scalars.
    Unary {
        /// The operator.
        op: UnOp,
        /// The operand.
        expr: Box<Expr>,
    },
    /// `if cond { a } else { b }`: a choice made at compile time, typically
    /// on shapes (a projection shortcut only when stride or channels change).
    If {
        /// A scalar condition.
        cond: Box<Expr>,
        /// Taken when true.
        then: Body,
        /// Taken when false.
        otherwise: Body,
    },
    /// `recv.repeat(n, |y| body)`: applies `body` `n` times, feeding each
    /// result to the next (`4 × Bottleneck(256)`). Inside the body, `var`
    /// names the running tensor and `index` (if given) the 0-based iteration.
    Repeat {
        /// The tensor the first iteration receives.
        recv: Box<Expr>,
        /// How many times (a scalar).
        count: Box<Expr>,
        /// The name of the running tensor in the body.
        var: Ident,
        /// An optional name for the iteration number.
        index: Option<Ident>,
        /// The body applied each time.
        body: Body,
    },
}

/// A call argument: positional (`6`) or named (`k = 5`).
#[derive(Debug, Clone)]
pub struct Arg {
    /// The name for a named argument.
    pub name: Option<Ident>,
    /// The value.
    pub value: Expr,
    /// Where the argument was written.
    pub loc: Loc,
}

/// Binary operators.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BinOp {
    /// `+` (tensor `add`, or scalar addition).
    Add,
    /// `-`.
    Sub,
    /// `*`.
    Mul,
    /// `/` (integer division on integers).
    Div,
    /// `%`.
    Rem,
    /// `==`.
    Eq,
    /// `!=`.
    Ne,
    /// `<`.
    Lt,
    /// `<=`.
    Le,
    /// `>`.
    Gt,
    /// `>=`.
    Ge,
    /// `&&`.
    And,
    /// `||`.
    Or,
}

/// Unary operators.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UnOp {
    /// `-`.
    Neg,
    /// `!`.
    Not,
}
