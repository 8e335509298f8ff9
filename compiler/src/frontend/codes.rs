//! The stable diagnostic codes of the front-ends (K0001–K0099).
//!
//! Codes are never renumbered or reused. K0001–K0019 are YAML structure
//! errors, K0020–K0039 errors in expressions (shared by both syntaxes),
//! K0040–K0059 errors in the `network!` item syntax. Lowering and shape
//! errors start at K0100 and live elsewhere.

use crate::diag::Code;

/// The YAML text is not valid YAML (a scanner or parser error).
pub const YAML_SYNTAX: Code = Code(1);
/// YAML anchors, aliases and tags are not part of the model language.
pub const YAML_ALIAS: Code = Code(2);
/// A key appears twice in one mapping.
pub const DUPLICATE_KEY: Code = Code(3);
/// A key that the model language does not know.
pub const UNKNOWN_KEY: Code = Code(4);
/// A required key is missing.
pub const MISSING_KEY: Code = Code(5);
/// A value has the wrong YAML type (a list where a name is needed, ...).
pub const WRONG_TYPE: Code = Code(6);
/// The file holds no document, or more than one.
pub const DOCUMENT_COUNT: Code = Code(7);
/// A step of `layers` is malformed (no op, several ops, misplaced keys).
pub const BAD_STEP: Code = Code(8);
/// A shape dimension is not a positive integer.
pub const BAD_DIM: Code = Code(9);
/// The input nests deeper than the front-end accepts.
pub const TOO_DEEP: Code = Code(10);
/// A string that should be an expression does not parse as one.
pub const EXPR_SYNTAX: Code = Code(20);
/// Rust syntax that the model language does not have (`*x`, `a[i]`, ...).
pub const UNSUPPORTED_EXPR: Code = Code(21);
/// A literal that is out of range or of a kind the language lacks.
pub const BAD_LITERAL: Code = Code(22);
/// A malformed argument list (`a.b = 1`, a positional after a named one).
pub const BAD_ARGUMENT: Code = Code(23);
/// `repeat` not written as `t.repeat(n, |y| body)` or `|y, i|`.
pub const BAD_REPEAT: Code = Code(24);
/// An `if` without an `else`.
pub const IF_WITHOUT_ELSE: Code = Code(25);
/// A statement other than `let NAME = EXPR;` in a body, or a body
/// without a result.
pub const BAD_STATEMENT: Code = Code(26);
/// The tokens of a `network!` invocation do not parse.
pub const MACRO_SYNTAX: Code = Code(40);
/// An item that is not `block`, `network` or `loss`.
pub const UNKNOWN_ITEM: Code = Code(41);
/// A `loss` that does not follow a network, or a second loss for one.
pub const MISPLACED_LOSS: Code = Code(42);
/// A malformed block or network header (no tensor parameter, a default
/// on the tensor parameter, a bad output list).
pub const BAD_HEADER: Code = Code(43);

/// Every front-end code with a one-paragraph explanation, in code order.
pub const EXPLANATIONS: &[(Code, &str)] = &[
    (
        YAML_SYNTAX,
        "The file is not valid YAML. The message gives the scanner's reason; check indentation, unclosed brackets and quotes.",
    ),
    (
        YAML_ALIAS,
        "Anchors (`&a`), aliases (`*a`) and tags (`!t`) are not part of the model language: write the value out, or use a block.",
    ),
    (
        DUPLICATE_KEY,
        "A mapping has the same key twice; YAML would silently keep one of them, kiln refuses both.",
    ),
    (
        UNKNOWN_KEY,
        "A key that the model language does not know here; the message lists the keys that are allowed.",
    ),
    (
        MISSING_KEY,
        "A required key is missing: a model needs `name`, `inputs`, `layers` and `outputs`.",
    ),
    (
        WRONG_TYPE,
        "A value of the wrong YAML type: for example a list where a name is expected, or a mapping where a shape is expected.",
    ),
    (
        DOCUMENT_COUNT,
        "A model file holds exactly one YAML document (one network).",
    ),
    (
        BAD_STEP,
        "A step of `layers` must be an op name, or a mapping with exactly one op (or `if`, `repeat`, `let`) plus the reserved keys allowed with it.",
    ),
    (
        BAD_DIM,
        "Shape dimensions are positive integers; the batch dimension is implicit and is not written.",
    ),
    (
        TOO_DEEP,
        "The input nests lists, mappings or parentheses deeper than the front-end accepts (64 levels), or a YAML file writes more than 2,000 steps (each step nests the chain one level deeper; write long stacks with `repeat` or blocks).",
    ),
    (
        EXPR_SYNTAX,
        "A string that is an argument, count or condition is parsed as a Rust expression, and this one does not parse.",
    ),
    (
        UNSUPPORTED_EXPR,
        "The expression uses Rust syntax the model language lacks; see `docs/language.md`, section Expressions.",
    ),
    (
        BAD_LITERAL,
        "A literal that is out of range (integers are 64-bit) or of a kind the language lacks (characters, bytes).",
    ),
    (
        BAD_ARGUMENT,
        "Named arguments are `name = value` with a plain name, and come after the positional ones.",
    ),
    (
        BAD_REPEAT,
        "`repeat` is written `t.repeat(n, |y| body)` or `t.repeat(n, |y, i| body)`; in YAML `repeat: n` with `layers:`.",
    ),
    (
        IF_WITHOUT_ELSE,
        "An `if` is a value, so it needs both branches: `if c { a } else { b }`.",
    ),
    (
        BAD_STATEMENT,
        "A body is `let NAME = EXPR;` statements followed by a result expression without a semicolon.",
    ),
    (
        MACRO_SYNTAX,
        "The tokens of `network!` do not parse; the message says what was expected.",
    ),
    (
        UNKNOWN_ITEM,
        "A `network!` invocation holds `block`, `network` and `loss` items only.",
    ),
    (
        MISPLACED_LOSS,
        "`loss OP(args) [for OUTPUT];` comes right after the network it belongs to, at most once per network.",
    ),
    (
        BAD_HEADER,
        "A block's first parameter is its tensor input (no default); a network declares its inputs with shapes and its outputs after `->`.",
    ),
];

/// The explanation of a front-end code, if it is one.
pub fn explanation(code: Code) -> Option<&'static str> {
    EXPLANATIONS
        .iter()
        .find(|(c, _)| *c == code)
        .map(|(_, text)| *text)
}
