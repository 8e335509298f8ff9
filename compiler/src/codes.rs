//! The diagnostic codes of lowering, shape inference and verification
//! (`K0100` and up; the front-ends own `K0001`–`K0099`; autodiff `K0300` and up).
//!
//! Each code is a constant here; [`crate::explain`] holds the long text
//! `kilnc explain CODE` prints for it. Codes are never renumbered or reused.

use crate::diag::Code;

/// An op or block name that does not exist.
pub const UNKNOWN_OP: Code = Code(100);
/// A tensor name that is not bound.
pub const UNKNOWN_TENSOR: Code = Code(101);
/// A tensor used before the step that defines it (a cycle).
pub const CYCLE: Code = Code(102);
/// An argument of the wrong type.
pub const WRONG_ARG_TYPE: Code = Code(103);
/// A required argument that was not given.
pub const MISSING_ARG: Code = Code(104);
/// An argument that the op or block does not take.
pub const UNEXPECTED_ARG: Code = Code(105);
/// A scalar where a tensor is needed, or a tensor where a scalar is needed.
pub const TENSOR_SCALAR: Code = Code(106);
/// A declared output that the body does not produce.
pub const MISSING_OUTPUT: Code = Code(107);
/// An output whose inferred shape differs from its declared shape.
pub const OUTPUT_SHAPE: Code = Code(108);
/// An argument of the right type but an invalid value.
pub const BAD_ARG_VALUE: Code = Code(109);
/// Two layers with the same name.
pub const DUPLICATE_NAME: Code = Code(110);
/// Blocks that call each other without end.
pub const RECURSION: Code = Code(111);
/// A wrong loss head.
pub const BAD_LOSS: Code = Code(112);
/// Two definitions of one block, input or parameter.
pub const DUPLICATE_DEF: Code = Code(113);
/// An invalid declared input shape.
pub const BAD_INPUT_SHAPE: Code = Code(114);
/// Scalar operands an operator cannot combine.
pub const BAD_OPERANDS: Code = Code(115);
/// An op applied to a tensor of the wrong rank.
pub const WRONG_RANK: Code = Code(120);
/// A channel or feature count that does not match.
pub const CHANNEL_MISMATCH: Code = Code(121);
/// A window larger than its (padded) input, or an output too large.
pub const BAD_OUTPUT_SIZE: Code = Code(122);
/// A window that does not fit exactly where `exact = true` asked it to.
pub const INEXACT_FIT: Code = Code(123);
/// `add` of tensors whose shapes differ.
pub const ADD_MISMATCH: Code = Code(124);
/// `concat` of tensors whose other dims differ, or along a missing axis.
pub const CONCAT_MISMATCH: Code = Code(125);
/// `reshape` to a shape with a different element count.
pub const RESHAPE_MISMATCH: Code = Code(126);
/// An axis beyond the tensor's rank.
pub const BAD_AXIS: Code = Code(127);
/// A loss applied to an output of the wrong shape.
pub const LOSS_SHAPE: Code = Code(128);
/// A compiler bug: an IR invariant broken by a pass.
pub const INTERNAL: Code = Code(190);
/// Training through an op that has no gradient (`step`).
pub const NOT_DIFFERENTIABLE: Code = Code(300);
/// Training a network that has no loss head.
pub const NO_LOSS_HEAD: Code = Code(301);

/// Every code of this module, in order.
pub const ALL: &[Code] = &[
    UNKNOWN_OP,
    UNKNOWN_TENSOR,
    CYCLE,
    WRONG_ARG_TYPE,
    MISSING_ARG,
    UNEXPECTED_ARG,
    TENSOR_SCALAR,
    MISSING_OUTPUT,
    OUTPUT_SHAPE,
    BAD_ARG_VALUE,
    DUPLICATE_NAME,
    RECURSION,
    BAD_LOSS,
    DUPLICATE_DEF,
    BAD_INPUT_SHAPE,
    BAD_OPERANDS,
    WRONG_RANK,
    CHANNEL_MISMATCH,
    BAD_OUTPUT_SIZE,
    INEXACT_FIT,
    ADD_MISMATCH,
    CONCAT_MISMATCH,
    RESHAPE_MISMATCH,
    BAD_AXIS,
    LOSS_SHAPE,
    INTERNAL,
    NOT_DIFFERENTIABLE,
    NO_LOSS_HEAD,
];

/// The code as users see it: `K0120`.
pub fn code_str(code: Code) -> String {
    format!("K{:04}", code.0)
}

/// Parses `K0120` (or `k0120`, or `0120`) into a code.
pub fn parse_code(s: &str) -> Option<Code> {
    let digits = s
        .strip_prefix('K')
        .or_else(|| s.strip_prefix('k'))
        .unwrap_or(s);
    if digits.is_empty() || digits.len() > 4 || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    digits.parse().ok().map(Code)
}
