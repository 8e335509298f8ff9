//! The long explanations `kilnc explain CODE` prints: what the error means,
//! an example that causes it, and the fix.
//!
//! Every code of [`crate::codes`] (lowering, shapes, verification, `K0100`
//! and up) has an entry here with a title, an example and the fix; the
//! front-ends' codes (`K0001`–`K0099`) are explained by
//! [`crate::frontend::codes::EXPLANATIONS`], which this module serves too.
//! Tests check that every code of both tables is explained.

use crate::codes::{self, code_str};
use crate::diag::Code;
use crate::frontend::codes as frontend_codes;

/// The explanation of `code`, or `None` for a code kiln does not have.
pub fn explain(code: Code) -> Option<String> {
    if let Some(text) = frontend_codes::explanation(code) {
        return Some(format!("{}: {}\n", code_str(code), text.trim()));
    }
    ENTRIES
        .iter()
        .find(|(c, _, _)| *c == code)
        .map(|(c, title, body)| format!("{}: {title}\n\n{}\n", code_str(*c), body.trim()))
}

/// Every code that has an explanation, in order.
pub fn explained_codes() -> impl Iterator<Item = Code> {
    frontend_codes::EXPLANATIONS
        .iter()
        .map(|(c, _)| *c)
        .chain(ENTRIES.iter().map(|(c, _, _)| *c))
}

const ENTRIES: &[(Code, &str, &str)] = &[
    (
        codes::UNKNOWN_OP,
        "unknown op or block",
        r#"
A step names an op that kiln does not have and no block of that name is
defined. The op names are listed in docs/language.md.

Example:

    layers:
      - conv2d: {out: 6, k: 5}
      - rleu

Fix: correct the spelling (`relu`), or define a block with that name under
`blocks:`."#,
    ),
    (
        codes::UNKNOWN_TENSOR,
        "unknown tensor or name",
        r#"
A step reads a tensor (with `from:`, in `add`/`concat`, or as a receiver)
or a scalar name that is not bound: not an input, not an `as:`/`let`
binding, not a block parameter.

Example:

    - {add: [y, shortcut]}     # but only `short` was bound with `as:`

Fix: use a name that is bound before this step; the note lists the tensors
in scope."#,
    ),
    (
        codes::CYCLE,
        "tensor used before it is defined (a cycle)",
        r#"
A step reads a tensor that is bound only by a later step. Steps run in
order, so reading a later result would make the graph a cycle.

Example:

    layers:
      - {relu, from: y}
      - {conv2d: {out: 8, k: 3}, as: y}

Fix: read an earlier tensor, or move the step that defines it before the
step that reads it."#,
    ),
    (
        codes::WRONG_ARG_TYPE,
        "argument of the wrong type",
        r#"
An argument has the wrong kind of value: a float where an integer is
needed, a tensor where a scalar is needed, a string where a boolean is.

Example:

    - conv2d: {out: 6, k: 5, bias: "no"}

Fix: give the type the op's table in docs/language.md lists
(`bias: false`)."#,
    ),
    (
        codes::MISSING_ARG,
        "missing required argument",
        r#"
An op or block is called without one of its required arguments.

Example:

    - conv2d: {k: 5}          # `out` is required

Fix: pass the argument, positionally or by name (`conv2d: {out: 6, k: 5}`)."#,
    ),
    (
        codes::UNEXPECTED_ARG,
        "unexpected argument",
        r#"
An op or block got an argument it does not take: a name it has no
parameter for, more positional arguments than parameters, or the same
argument twice.

Example:

    - linear: {out: 10, bais: false}

Fix: remove the argument or correct its name; the message lists the
parameters."#,
    ),
    (
        codes::TENSOR_SCALAR,
        "tensor where a scalar is needed, or the reverse",
        r#"
A scalar was used as a layer's input, or a tensor in scalar arithmetic
(only `+` is defined on tensors, as `add`).

Example:

    let c = 64;
    c.relu()

Fix: apply layers to tensors, and use shape queries (`x.channels()`) to
turn a tensor's shape into a scalar."#,
    ),
    (
        codes::MISSING_OUTPUT,
        "missing output",
        r#"
A declared output is not produced by the body: no tensor of that name is
bound, the body gives fewer tensors than outputs are declared, or no
output is declared at all.

Example:

    outputs: [logits, features]   # but nothing is bound `as: features`

Fix: bind the tensor with `as: features`, or remove the output."#,
    ),
    (
        codes::OUTPUT_SHAPE,
        "output shape differs from the declared shape",
        r#"
The body's result for an output has a different shape from the one
declared under `outputs:` (or after `->` in the macro).

Example:

    layers: [..., {linear: 84}]
    outputs: {logits: [10]}

Fix: correct the declaration, or the last layers, so that they agree."#,
    ),
    (
        codes::BAD_ARG_VALUE,
        "invalid argument value",
        r#"
An argument has the right type but a value outside its range: a zero
kernel or stride, a negative size, a dropout probability of 1 or more, a
keyword that is not one of the choices, or a `repeat` count out of range.

Example:

    - dropout: 1.5

Fix: use a value inside the range the message states."#,
    ),
    (
        codes::DUPLICATE_NAME,
        "two layers with the same name",
        r#"
Two layers have the same name (after block prefixes), so their
parameters would collide.

Example:

    - {linear: 84, name: fc}
    - {linear: 10, name: fc}

Fix: give each layer its own `name`, or drop `name` and let kiln number
them."#,
    ),
    (
        codes::RECURSION,
        "blocks nested too deeply, or a network too large",
        r#"
Block calls are nested more than 64 deep (usually a block that calls
itself), or the network elaborates to more than 200,000 layers.

Example:

    blocks:
      loop: {input: x, layers: [relu, loop]}

Fix: remove the self-call; bound recursion with `repeat` instead."#,
    ),
    (
        codes::BAD_LOSS,
        "invalid loss head",
        r#"
The loss names an op that is not a loss, reads an output that does not
exist, or a loss is used as a layer.

Example:

    loss: {softmax: {}}

Fix: use one of cross_entropy, nll, multiclass_hinge, mse, l1, huber,
binary_cross_entropy, and name an existing output with `output:`."#,
    ),
    (
        codes::DUPLICATE_DEF,
        "duplicate definition",
        r#"
A block, a network input or a block parameter is defined twice.

Example:

    params: [c, c]

Fix: rename or remove one of them."#,
    ),
    (
        codes::BAD_INPUT_SHAPE,
        "invalid input shape",
        r#"
A network input has an empty shape or a dim that is not positive, or the
network has no inputs. Shapes are per example: `[C, H, W]` or `[D]`; the
batch dimension is implicit.

Example:

    inputs:
      x: [1, 0, 28]

Fix: give every dim a positive size."#,
    ),
    (
        codes::BAD_OPERANDS,
        "invalid scalar operands",
        r#"
A scalar operator got operands it cannot combine (a boolean plus an
integer, `!` on a number), or integer arithmetic overflowed or divided by
zero.

Example:

    out: c / 0

Fix: correct the expression."#,
    ),
    (
        codes::WRONG_RANK,
        "input of the wrong rank",
        r#"
An op got a tensor of a rank it does not take: image ops (conv, pooling,
upsampling) need `[C, H, W]`, `linear` needs `[D]`.

Example:

    - conv2d: {out: 16, k: 5}
    - linear: 10                 # input is [16, H, W]

Fix: insert `flatten` before `linear`; give image ops image inputs."#,
    ),
    (
        codes::CHANNEL_MISMATCH,
        "channel or feature count mismatch",
        r#"
The channels (or features) coming in do not fit the layer: they differ
from an asserted `in_channels`/`in_features`, or are not divisible by
`groups`, by `r²` (pixel_shuffle) or by `k` (maxout).

Example:

    inputs: {x: [3, 32, 32]}
    layers:
      - conv2d: {out: 8, k: 3, in_channels: 1}

Fix: make the layer agree with its input, or fix the layer before it."#,
    ),
    (
        codes::BAD_OUTPUT_SIZE,
        "window larger than its input",
        r#"
A convolution or pooling window (dilated, if dilation is set) is larger
than the padded input, so there is no output; or the padding leaves no
output; or a size grows beyond kiln's limit.

Example:

    inputs: {x: [1, 4, 4]}
    layers:
      - conv2d: {out: 6, k: 5}

Fix: use a smaller kernel, add padding, or pool less before this layer."#,
    ),
    (
        codes::INEXACT_FIT,
        "window does not fit exactly",
        r#"
With `exact: true`, a conv or pooling layer requires
(H + 2p − d(k − 1) − 1) to be divisible by the stride, so that no input
rows or columns are dropped. This one leaves some over.

Example:

    inputs: {x: [1, 28, 28]}
    layers:
      - conv2d: {out: 6, k: 4, s: 3, exact: true}

Fix: change the padding, kernel or stride so the division is exact, or
drop `exact`."#,
    ),
    (
        codes::ADD_MISMATCH,
        "add of tensors with different shapes",
        r#"
`add` (or `+` on tensors) needs every input to have the same shape; kiln
does not broadcast.

Example:

    - {conv2d: {out: 128, k: 3, s: 2, p: 1}, as: y}
    - {add: [x, y]}              # x is [64, 56, 56], y is [128, 28, 28]

Fix: project the shortcut (a 1×1 conv with the same stride and channels)."#,
    ),
    (
        codes::CONCAT_MISMATCH,
        "concat of tensors that do not line up",
        r#"
`concat` joins tensors along `axis`; every other dim must be equal, all
ranks equal, and the axis must exist.

Example:

    - {concat: [[a, b]], axis: 0}   # a is [64, 28, 28], b is [32, 14, 14]

Fix: bring the inputs to the same height and width first (pool or pad)."#,
    ),
    (
        codes::RESHAPE_MISMATCH,
        "reshape to a different element count",
        r#"
`reshape` must keep the number of elements per example; at most one dim
may be -1 (inferred).

Example:

    inputs: {x: [16, 5, 5]}
    layers:
      - reshape: [[16, 20]]

Fix: use dims whose product is the input's element count (here 400)."#,
    ),
    (
        codes::BAD_AXIS,
        "axis out of range",
        r#"
An axis or dim index is beyond the tensor's rank. Axes count dims of one
example, from 0; the batch is not a dim.

Example:

    - softmax: {axis: 1}         # input is [10]

Fix: use an axis below the rank."#,
    ),
    (
        codes::LOSS_SHAPE,
        "loss applied to an output of the wrong shape",
        r#"
The class-index losses (cross_entropy, nll, multiclass_hinge) need an
output of shape [classes].

Example:

    outputs: {logits: [10, 1, 1]}
    loss: cross_entropy

Fix: `flatten` (or global_avg_pool) before the classifier's output."#,
    ),
    (
        codes::INTERNAL,
        "internal compiler error",
        r#"
A pass broke an invariant of the IR. This is a bug in kiln, not in the
network: the message names the pass that ran last and the invariant.

Fix: please report it with the model file that triggers it."#,
    ),
    (
        codes::NOT_DIFFERENTIABLE,
        "training through an op without a gradient",
        r#"
Training needs the gradient of the loss with respect to every learned
parameter, and that gradient has to pass back through every layer between
the parameter and the loss. The perceptron's `step` is flat almost
everywhere, so its gradient is zero and learning through it is impossible;
kiln reports it instead of silently training nothing.

Example:

    layers:
      - linear: 1
      - step
    loss: mse

Fix: use a smooth activation such as `sigmoid` or `tanh` while training,
and `step` only in an inference-only network (no `loss`)."#,
    ),
    (
        codes::NO_LOSS_HEAD,
        "training a network without a loss",
        r#"
The training step differentiates the network's loss head, and the network
has none.

Example:

    outputs:
      logits: [10]
    # no `loss:` key

Fix: add a loss head, e.g. `loss: cross_entropy` in YAML or
`loss cross_entropy;` after the network in the macro."#,
    ),
];

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_code_is_explained() {
        for &c in codes::ALL {
            let text = explain(c).unwrap_or_else(|| panic!("{} has no explanation", code_str(c)));
            assert!(text.contains("Fix:"), "{} has no fix", code_str(c));
            assert!(text.contains("Example:") || c == codes::INTERNAL);
        }
        assert!(explain(Code(9999)).is_none());
        for (c, _) in frontend_codes::EXPLANATIONS {
            assert!(explain(*c).is_some_and(|t| t.starts_with(&code_str(*c))));
        }
        let all: Vec<Code> = explained_codes().collect();
        let mut sorted = all.clone();
        sorted.sort();
        sorted.dedup();
        assert_eq!(all, sorted, "codes are unique and in order");
    }
}
