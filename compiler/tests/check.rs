//! Lowering, shape inference, verification and summaries on ASTs built in
//! the test (no front-end): every case goes through one `check` helper that
//! renders either the summary table or the diagnostics with their lines.

mod common;

use common::*;
use kiln_compiler::ast::{BinOp, Module};
use kiln_compiler::codes::code_str;

/// Runs the pipeline on `module` and compares the rendered result with `expect`:
/// the summary tables on success, one `line N: CODE message` per diagnostic on failure.
fn check(module: Module, expect: &str) {
    let got = match kiln_compiler::check(&module) {
        Ok(nets) => nets
            .iter()
            .map(|n| n.summary.table())
            .collect::<Vec<_>>()
            .join("\n"),
        Err(diags) => diags
            .iter()
            .map(|d| {
                let line = match d.loc {
                    kiln_compiler::ast::Loc::Text { line, .. } => line,
                    _ => 0,
                };
                format!("line {line}: {} {}\n", code_str(d.code), d.message)
            })
            .collect(),
    };
    assert_eq!(got.trim(), expect.trim(), "\n--- got ---\n{got}");
}

#[test]
fn seeds_conv_example() {
    // The seeds' example: 3×32×32, ten 5×5 filters, stride 1, pad 2.
    check(
        seq("Conv", &[3, 32, 32], &["conv2d 10 k=5 s=1 p=2"]),
        "
Conv
layer    op      output    params     MACs
conv2d0  conv2d  10×32×32     760  768,000
total: 760 parameters, 768,000 multiply-adds per example",
    );
}

#[test]
fn lenet5() {
    check(
        seq(
            "LeNet5",
            &[1, 32, 32],
            &[
                "conv2d 6 k=5",
                "relu",
                "max_pool2d 2",
                "conv2d 16 k=5",
                "relu",
                "max_pool2d 2",
                "conv2d 120 k=5",
                "relu",
                "flatten",
                "linear 84",
                "relu",
                "linear 10",
            ],
        ),
        "
LeNet5
layer        op          output    params     MACs
conv2d0      conv2d      6×28×28      156  117,600
relu0        relu        6×28×28        0        0
max_pool2d0  max_pool2d  6×14×14        0        0
conv2d1      conv2d      16×10×10   2,416  240,000
relu1        relu        16×10×10       0        0
max_pool2d1  max_pool2d  16×5×5         0        0
conv2d2      conv2d      120×1×1   48,120   48,000
relu2        relu        120×1×1        0        0
flatten0     flatten     120            0        0
linear0      linear      84        10,164   10,080
relu3        relu        84             0        0
linear1      linear      10           850      840
total: 61,706 parameters, 416,520 multiply-adds per example",
    );
}

#[test]
fn op_shape_rules() {
    check(
        seq(
            "Ops",
            &[4, 15, 15],
            &[
                "conv2d 8 k=3 p=same",
                "conv2d 8 k=3 s=2 p=same bias=false",
                "conv2d 8 k=3 d=2 groups=4",
                "conv_transpose2d 4 k=3 s=2 p=1 output_padding=1",
                "upsample 2",
                "upsample 2 mode=zeros",
                "avg_pool2d 3 s=2 p=1",
                "pixel_shuffle 2",
                "maxout 1",
                "batch_norm",
                "lrn",
                "leaky_relu 0.2",
                "prelu",
                "dropout 0.3",
                "softmax axis=0",
                "global_avg_pool",
                "reshape [1,-1]",
                "flatten",
                "batch_norm",
                "log_softmax",
            ],
        ),
        "
Ops
layer              op                output   params    MACs
conv2d0            conv2d            8×15×15     296  64,800
conv2d1            conv2d            8×8×8       576  36,864
conv2d2            conv2d            8×4×4       152   2,304
conv_transpose2d0  conv_transpose2d  4×8×8       292   4,608
upsample0          upsample          4×16×16       0       0
upsample1          upsample          4×32×32       0       0
avg_pool2d0        avg_pool2d        4×16×16       0       0
pixel_shuffle0     pixel_shuffle     1×32×32       0       0
maxout0            maxout            1×32×32       0       0
batch_norm0        batch_norm        1×32×32       2       0
lrn0               lrn               1×32×32       0       0
leaky_relu0        leaky_relu        1×32×32       0       0
prelu0             prelu             1×32×32       1       0
dropout0           dropout           1×32×32       0       0
softmax0           softmax           1×32×32       0       0
global_avg_pool0   global_avg_pool   1             0       0
reshape0           reshape           1×1           0       0
flatten0           flatten           1             0       0
batch_norm1        batch_norm        1             2       0
log_softmax0       log_softmax       1             0       0
total: 1,321 parameters, 108,576 multiply-adds per example",
    );
}

/// ResNet's basic block with a projection shortcut chosen on shapes.
fn basic_block() -> kiln_compiler::ast::Block {
    let y = chain(
        name("x"),
        &[
            "conv2d c k=3 s=stride p=1 bias=false",
            "batch_norm",
            "relu",
            "conv2d c k=3 p=1 bias=false",
            "batch_norm",
        ],
        10,
    );
    let cond = binary(
        BinOp::Or,
        binary(BinOp::Ne, name("stride"), int(1), 0),
        binary(BinOp::Ne, query(name("x"), "channels"), name("c"), 0),
        0,
    );
    let short = if_(
        cond,
        body(
            vec![],
            chain(
                name("x"),
                &["conv2d c k=1 s=stride bias=false", "batch_norm"],
                20,
            ),
        ),
        body(vec![], name("x")),
    );
    block(
        "basic",
        "x",
        &[("c", None), ("stride", Some(int(1)))],
        body(
            vec![let_("y", y), let_("short", short)],
            chain(plus(name("y"), name("short"), 30), &["relu"], 31),
        ),
    )
}

#[test]
fn blocks_if_and_repeat() {
    // Two blocks at 8 channels (no projection), then one at 16 with stride 2 (projection).
    let stage = repeat(
        chain(name("x"), &["conv2d 8 k=3 p=1"], 1),
        int(2),
        "y",
        None,
        body(vec![], chain(name("y"), &["basic 8"], 2)),
    );
    let result = chain(
        stage,
        &["basic 16 stride=2", "global_avg_pool", "linear 10"],
        3,
    );
    let module = Module {
        blocks: vec![basic_block()],
        networks: vec![network(
            "Tiny",
            &[("x", &[3, 16, 16])],
            body(vec![], result),
            &[("logits", Some(&[10]))],
        )],
    };
    check(
        module,
        "
Tiny
layer               op               output   params     MACs
conv2d0             conv2d           8×16×16     224   55,296
basic0.conv2d0      conv2d           8×16×16     576  147,456
basic0.batch_norm0  batch_norm       8×16×16      16        0
basic0.relu0        relu             8×16×16       0        0
basic0.conv2d1      conv2d           8×16×16     576  147,456
basic0.batch_norm1  batch_norm       8×16×16      16        0
basic0.add0         add              8×16×16       0        0
basic0.relu1        relu             8×16×16       0        0
basic1.conv2d0      conv2d           8×16×16     576  147,456
basic1.batch_norm0  batch_norm       8×16×16      16        0
basic1.relu0        relu             8×16×16       0        0
basic1.conv2d1      conv2d           8×16×16     576  147,456
basic1.batch_norm1  batch_norm       8×16×16      16        0
basic1.add0         add              8×16×16       0        0
basic1.relu1        relu             8×16×16       0        0
basic2.conv2d0      conv2d           16×8×8    1,152   73,728
basic2.batch_norm0  batch_norm       16×8×8       32        0
basic2.relu0        relu             16×8×8        0        0
basic2.conv2d1      conv2d           16×8×8    2,304  147,456
basic2.batch_norm1  batch_norm       16×8×8       32        0
basic2.conv2d2      conv2d           16×8×8      128    8,192
basic2.batch_norm2  batch_norm       16×8×8       32        0
basic2.add0         add              16×8×8        0        0
basic2.relu1        relu             16×8×8        0        0
global_avg_pool0    global_avg_pool  16            0        0
linear0             linear           10          170      160
total: 6,442 parameters, 874,656 multiply-adds per example",
    );
}

#[test]
fn dag_names_and_loss() {
    // let a = x.conv2d(4, k=1, name="left"); let b = x.conv2d(4, k=3, p=1);
    // concat([a, b]).flatten().linear(2), loss cross_entropy.
    let a = chain(name("x"), &["conv2d 4 k=1 name=left"], 1);
    let b = chain(name("x"), &["conv2d 4 k=3 p=1"], 2);
    let cat = call("concat", vec![pos(list(vec![name("a"), name("b")]))], 3);
    let mut net = network(
        "Dag",
        &[("x", &[2, 4, 4])],
        body(
            vec![let_("a", a), let_("b", b)],
            chain(cat, &["flatten", "linear 2"], 4),
        ),
        &[("logits", Some(&[2]))],
    );
    net.loss = Some(loss("cross_entropy", vec![]));
    let module = Module {
        blocks: vec![],
        networks: vec![net],
    };
    let checked = kiln_compiler::check(&module).expect("valid");
    let g = &checked[0].graph;
    assert!(g.loss().is_some());
    insta::assert_snapshot!("dag_ir", g.to_string());
    check(
        module,
        "
Dag
layer     op       output  params   MACs
left      conv2d   4×4×4       12    128
conv2d0   conv2d   4×4×4       76  1,152
concat0   concat   8×4×4        0      0
flatten0  flatten  128          0      0
linear0   linear   2          258    256
total: 346 parameters, 1,536 multiply-adds per example",
    );
}

// Errors: each names the layer and both shapes, on the offending layer's line.

#[test]
fn error_channel_mismatch() {
    check(
        seq("E", &[3, 14, 14], &["conv2d 6 k=3 in_channels=6"]),
        "line 1: K0121 conv2d `conv2d0`: expected 6 input channels, found 3 (input shape [3, 14, 14])",
    );
}

#[test]
fn error_linear_rank() {
    check(
        seq("E", &[16, 5, 5], &["relu", "linear 10"]),
        "line 2: K0120 linear `linear0`: expected a rank-1 input [D], found [16, 5, 5]; put `flatten` before it",
    );
}

#[test]
fn error_linear_features() {
    check(
        seq("E", &[120], &["linear 84 in_features=400"]),
        "line 1: K0121 linear `linear0`: expected 400 input features, found 120 (input shape [120])",
    );
}

#[test]
fn error_inexact_fit() {
    check(
        seq("E", &[1, 28, 28], &["conv2d 6 k=5 s=3 exact=true"]),
        "line 1: K0123 conv2d `conv2d0`: the window does not fit exactly along height: (28 + 0 − 5) is not divisible by the stride 3 (input shape [1, 28, 28], 2 left over)",
    );
}

#[test]
fn error_kernel_too_large() {
    check(
        seq("E", &[1, 4, 4], &["conv2d 6 k=5", "relu", "conv2d 3 k=1"]),
        "line 1: K0122 conv2d `conv2d0`: the kernel 5 is larger than the padded input height 4 (input shape [1, 4, 4])",
    );
}

#[test]
fn error_unknown_op() {
    check(
        seq("E", &[1, 8, 8], &["rleu"]),
        "line 1: K0100 unknown op or block `rleu`",
    );
}

#[test]
fn error_unknown_tensor_and_cycle() {
    // let y = shortcut.relu();  -> unknown; let z = w.relu(); let w = x.relu(); -> cycle.
    let module = Module {
        blocks: vec![],
        networks: vec![network(
            "E",
            &[("x", &[4])],
            body(
                vec![
                    let_("y", chain(name_at("shortcut", 1), &["relu"], 1)),
                    let_("z", chain(name_at("w", 2), &["relu"], 2)),
                    let_("w", chain(name("x"), &["relu"], 3)),
                ],
                name("w"),
            ),
            &[("out", None)],
        )],
    };
    check(
        module,
        "
line 1: K0101 the input of `relu`: unknown tensor `shortcut`
line 2: K0102 the input of `relu`: tensor `w` is used before the step that defines it; a step can read only earlier results (reading a later one would make a cycle)",
    );
}

#[test]
fn error_add_mismatch() {
    let module = Module {
        blocks: vec![],
        networks: vec![network(
            "E",
            &[("x", &[8, 8, 8])],
            body(
                vec![let_("y", chain(name("x"), &["conv2d 16 k=3 s=2 p=1"], 1))],
                plus(name("x"), name("y"), 2),
            ),
            &[("out", None)],
        )],
    };
    check(
        module,
        "line 2: K0124 add `add0`: shapes differ: input 1 is [8, 8, 8], input 2 is [16, 4, 4]; every input of `add` must have one shape",
    );
}

#[test]
fn error_concat_mismatch() {
    let module = Module {
        blocks: vec![],
        networks: vec![network(
            "E",
            &[("x", &[8, 8, 8])],
            body(
                vec![let_("y", chain(name("x"), &["max_pool2d 2"], 1))],
                call("concat", vec![pos(list(vec![name("x"), name("y")]))], 2),
            ),
            &[("out", None)],
        )],
    };
    check(
        module,
        "line 2: K0125 concat `concat0`: inputs differ in dim 1, which is not the concat axis 0: input 1 is [8, 8, 8], input 2 is [8, 4, 4]",
    );
}

#[test]
fn error_wrong_attribute_type() {
    check(
        seq("E", &[1, 8, 8], &["conv2d 6 k=2.5", "dropout p=true"]),
        "
line 1: K0103 conv2d `conv2d0`: argument `k` must be an integer or a pair [h, w], found the number 2.5
line 2: K0103 dropout `dropout0`: argument `p` must be a number, found the boolean true",
    );
}

#[test]
fn error_missing_and_extra_args() {
    check(
        seq(
            "E",
            &[1, 8, 8],
            &["conv2d k=3", "max_pool2d 2 2 0 false 1 9", "relu slope=2"],
        ),
        "
line 1: K0104 conv2d `conv2d0`: missing argument `out`
line 2: K0105 max_pool2d `max_pool2d0`: takes at most 5 positional argument(s), found 6
line 3: K0105 relu `relu0`: no argument `slope`; the arguments are none",
    );
}

#[test]
fn error_missing_output_and_shape() {
    let module = Module {
        blocks: vec![],
        networks: vec![
            network(
                "Two",
                &[("x", &[4])],
                body(
                    vec![let_("a", chain(name("x"), &["relu"], 1))],
                    tuple(vec![name("a"), name("b")]),
                ),
                &[("a", None), ("b", None)],
            ),
            network(
                "Shape",
                &[("x", &[4])],
                body(vec![], chain(name("x"), &["linear 84"], 1)),
                &[("logits", Some(&[10]))],
            ),
        ],
    };
    check(
        module,
        "
line 100: K0107 network `Two`: output `b` is not produced: no tensor named `b` is defined
line 100: K0108 network `Shape`: output `logits` is declared as [10] but the body gives [84] (from layer `linear0`)",
    );
}

#[test]
fn error_scalar_tensor_confusion() {
    let module = Module {
        blocks: vec![],
        networks: vec![network(
            "E",
            &[("x", &[4])],
            body(
                vec![let_("c", int(3))],
                chain(name_at("c", 1), &["relu"], 1),
            ),
            &[("out", None)],
        )],
    };
    check(
        module,
        "line 1: K0106 the input of `relu`: expected a tensor, found the integer 3",
    );
}

#[test]
fn errors_are_collected_and_do_not_cascade() {
    // Two independent mistakes are both reported; the layers after the first
    // one are not reported again.
    check(
        seq(
            "E",
            &[1, 8, 8],
            &["conv2d 6 k=9", "relu", "linear 10", "frobnicate", "softmax axis=3"],
        ),
        "
line 1: K0122 conv2d `conv2d0`: the kernel 9 is larger than the padded input height 8 (input shape [1, 8, 8])
line 4: K0100 unknown op or block `frobnicate`",
    );
}

#[test]
fn error_recursive_block_and_bad_values() {
    let looped = block(
        "looped",
        "x",
        &[],
        body(vec![], chain(name("x"), &["looped"], 5)),
    );
    let module = Module {
        blocks: vec![looped],
        networks: vec![network(
            "E",
            &[("x", &[4])],
            body(vec![], chain(name("x"), &["looped"], 1)),
            &[("out", None)],
        )],
    };
    check(
        module,
        "line 5: K0111 block `looped` is nested more than 64 deep; does it call itself?",
    );
    check(
        seq("E", &[1, 8, 8], &["conv2d 0 k=3", "dropout 1.0", "upsample 2 mode=bilinear"]),
        "
line 1: K0109 conv2d `conv2d0`: argument `out` is 0; it must be between 1 and 2147483648
line 2: K0109 dropout `dropout0`: argument `p` is 1; it must be at least 0 and below 1
line 3: K0109 upsample `upsample0`: argument `mode` must be one of nearest, zeros, found `bilinear`",
    );
}

#[test]
fn verifier_names_the_pass() {
    use kiln_compiler::ir::{Graph, NodeMeta, Op, Shape};
    let mut g = Graph::new("Broken");
    let x = g.add_input("x", Shape(vec![4]), kiln_compiler::ast::Loc::Synthetic);
    g.add_node(
        Op::Add,
        vec![x],
        NodeMeta {
            name: "add0".into(),
            loc: kiln_compiler::ast::Loc::Synthetic,
        },
    );
    let err = kiln_compiler::passes::verify(&g, "fuse_epilogues", true).unwrap_err();
    let msgs: Vec<String> = err
        .iter()
        .map(|d| format!("{} {}", code_str(d.code), d.message))
        .collect();
    assert_eq!(
        msgs,
        [
            "K0190 internal compiler error: IR invariant broken after pass `fuse_epilogues` in graph `Broken`: `add0` (add) has 1 inputs; the op takes at least 2",
            "K0190 internal compiler error: IR invariant broken after pass `fuse_epilogues` in graph `Broken`: `add0` has no output shape",
        ]
    );
}

#[test]
fn error_duplicate_layer_name() {
    check(
        seq("E", &[4], &["linear 8 name=fc", "relu", "linear 2 name=fc"]),
        "line 3: K0110 two layers are named `fc`; layer names must be unique",
    );
    // A block instance is not a layer: a layer may share its name.
    let module = Module {
        blocks: vec![block(
            "wrap",
            "x",
            &[],
            body(vec![], chain(name("x"), &["relu"], 5)),
        )],
        networks: vec![network(
            "Ok",
            &[("x", &[4])],
            body(vec![], chain(name("x"), &["relu name=wrap0", "wrap"], 1)),
            &[("y", None)],
        )],
    };
    check(
        module,
        "
Ok
layer        op    output  params  MACs
wrap0        relu  4            0     0
wrap0.relu0  relu  4            0     0
total: 0 parameters, 0 multiply-adds per example",
    );
}
