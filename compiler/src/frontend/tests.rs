//! Tests of both front-ends, as data.
//!
//! Each table row is an input and the expected text: the location-free
//! print of [`super::print`] for accepted input, or one
//! `line:col Kcode message` line per diagnostic for rejected input. The
//! `same` table holds one network written in both syntaxes, which must print
//! identically.

use crate::ast::Loc;
use crate::diag::Diagnostics;
use crate::frontend::{print, tokens, yaml};

/// `line:col [Kcode] message`, one line per diagnostic.
fn render(diags: &Diagnostics) -> String {
    diags
        .iter()
        .map(|d| {
            let at = match d.loc {
                Loc::Text { line, col, .. } => format!("{line}:{col}"),
                Loc::Macro(span) => {
                    let s = span.start();
                    format!("{}:{}", s.line, s.column + 1)
                }
                Loc::Synthetic => "-".to_string(),
            };
            format!("{at} K{:04} {}", d.code.0, d.message)
        })
        .collect::<Vec<_>>()
        .join("\n")
}

/// Parses YAML; the print on success, the diagnostics on error.
fn run_yaml(src: &str) -> String {
    let (module, diags) = yaml::parse(src);
    if diags.is_empty() {
        print::module(&module).trim_end().to_string()
    } else {
        render(&diags)
    }
}

/// Parses macro tokens; the print on success, the diagnostics on error.
fn run_tokens(src: &str) -> String {
    let tokens: proc_macro2::TokenStream = match src.parse() {
        Ok(t) => t,
        Err(e) => return format!("lex error: {e}"),
    };
    let parsed = tokens::parse(tokens);
    if parsed.diagnostics.is_empty() {
        print::module(&parsed.module).trim_end().to_string()
    } else {
        render(&parsed.diagnostics)
    }
}

/// The one comparison of this module: `run` on `input` gives `expect`.
///
/// With `UPDATE_EXPECT=1` it prints what `run` gives instead, for review.
fn check(run: fn(&str) -> String, input: &str, expect: &str) {
    let got = run(input);
    if std::env::var_os("UPDATE_EXPECT").is_some() {
        // Prints the actual text for review instead of comparing.
        println!("=== {input:?}\n{got}");
        return;
    }
    assert_eq!(
        got.trim(),
        expect.trim(),
        "\n--- input ---\n{input}\n--- got ---\n{got}\n"
    );
}

const YAML_LENET: &str = "\
name: LeNet5
doc: LeNet-5, as in the crash course.
inputs:
  x: [1, 32, 32]
layers:
  - conv2d: {out: 6, k: 5}
  - relu
  - max_pool2d: 2
  - conv2d: {out: 16, k: 5}
  - relu
  - max_pool2d: 2
  - conv2d: {out: 120, k: 5}
  - relu
  - flatten
  - linear: 84
  - relu
  - linear: 10
outputs:
  logits: [10]
loss: cross_entropy
";

const MACRO_LENET: &str = "
    /// LeNet-5, as in the crash course.
    pub network LeNet5(x: [1, 32, 32]) -> logits: [10] {
        x.conv2d(6, k = 5).relu().max_pool2d(2)
         .conv2d(16, k = 5).relu().max_pool2d(2)
         .conv2d(120, k = 5).relu().flatten()
         .linear(84).relu()
         .linear(10)
    }
    loss cross_entropy;
";

/// LeNet-5 with the macro, with `out` named as the YAML mapping names it.
const MACRO_LENET_NAMED: &str = "
    /// LeNet-5, as in the crash course.
    pub network LeNet5(x: [1, 32, 32]) -> logits: [10] {
        x.conv2d(out = 6, k = 5).relu().max_pool2d(2)
         .conv2d(out = 16, k = 5).relu().max_pool2d(2)
         .conv2d(out = 120, k = 5).relu().flatten()
         .linear(84).relu()
         .linear(10)
    }
    loss cross_entropy;
";

const YAML_RESNET_BLOCK: &str = "\
name: Tiny
inputs:
  x: [3, 8, 8]
blocks:
  basic:
    doc: ResNet's basic block.
    input: x
    params: [c, {stride: 1}]
    layers:
      - conv2d: {out: c, k: 3, s: stride, p: 1, bias: false}
      - batch_norm
      - relu
      - conv2d: {out: c, k: 3, p: 1, bias: false}
      - {batch_norm, as: y}
      - if: \"stride != 1 || x.channels() != c\"
        then:
          - {conv2d: {out: c, k: 1, s: stride, bias: false}, from: x}
          - batch_norm
        else:
          - {identity, from: x}
        as: short
      - {add: [y, short]}
      - relu
layers:
  - basic: {c: 16, stride: 2}
  - repeat: 2
    var: y
    index: i
    layers:
      - basic: [16]
  - {global_avg_pool, as: feat}
  - {linear: {out: 10, name: head}, as: logits}
  - {concat: {axis: 0}, from: [feat, logits], as: both}
outputs: [logits, both]
loss: {multiclass_hinge: {margin: 1.0}, output: logits}
public: false
";

const MACRO_RESNET_BLOCK: &str = "
    /// ResNet's basic block.
    block basic(x, c, stride = 1) {
        let y = x.conv2d(out = c, k = 3, s = stride, p = 1, bias = false).batch_norm().relu()
            .conv2d(out = c, k = 3, p = 1, bias = false).batch_norm();
        let short = if stride != 1 || x.channels() != c {
            x.conv2d(out = c, k = 1, s = stride, bias = false).batch_norm()
        } else {
            x.identity()
        };
        add(y, short).relu()
    }
    network Tiny(x: [3, 8, 8]) -> (logits, both) {
        let feat = x.basic(c = 16, stride = 2).repeat(2, |y, i| y.basic(16)).global_avg_pool();
        let logits = feat.linear(out = 10, name = \"head\");
        let both = concat([feat, logits], axis = 0);
        (logits, both)
    }
    loss multiclass_hinge(margin = 1.0) for logits;
";

#[test]
fn same_network_in_both_syntaxes() {
    for (yaml_src, macro_src) in [
        (YAML_LENET, MACRO_LENET_NAMED),
        (YAML_RESNET_BLOCK, MACRO_RESNET_BLOCK),
    ] {
        let from_yaml = run_yaml(yaml_src);
        assert!(from_yaml.contains("(network"), "{from_yaml}");
        check(run_tokens, macro_src, &from_yaml);
    }
}

#[test]
fn yaml_accepted() {
    check(
        run_yaml,
        YAML_LENET,
        r#"(network LeNet5 pub (doc "LeNet-5, as in the crash course.") (in x [1 32 32]) (out logits [10]) (loss cross_entropy) {x.(conv2d out=6 k=5).(relu).(max_pool2d 2).(conv2d out=16 k=5).(relu).(max_pool2d 2).(conv2d out=120 k=5).(relu).(flatten).(linear 84).(relu).(linear 10)})"#,
    );
    check(
        run_yaml,
        YAML_RESNET_BLOCK,
        r#"
(block basic (x c stride=1) (doc "ResNet's basic block.") {(let y x.(conv2d out=c k=3 s=stride p=1 bias=false).(batch_norm).(relu).(conv2d out=c k=3 p=1 bias=false).(batch_norm)) (let short (if (|| (!= stride 1) (!= x.(channels) c)) {x.(conv2d out=c k=1 s=stride bias=false).(batch_norm)} {x.(identity)})) (add y short).(relu)})
(network Tiny (in x [3 8 8]) (out logits) (out both) (loss multiclass_hinge margin=1.0 for logits) {(let feat x.(basic c=16 stride=2).(repeat 2 |y i| {y.(basic 16)}).(global_avg_pool)) (let logits feat.(linear out=10 name="head")) (let both (concat [feat logits] axis=0)) (tuple logits both)})
"#,
    );
    // Scalars: YAML numbers and bools, expressions, keyword values,
    // negative numbers, lists, `let`, `repeat` without `var`, several
    // inputs, `from` a named input, doc lines.
    check(
        run_yaml,
        "
name: M
doc: |
  First line.
  Second line.
inputs:
  a: [4]
  b: [4]
layers:
  - {add: [a, b], as: s}
  - let: h
    value: 2 * 3
  - linear: {out: h + 1, bias: true}
  - reshape: [[-1, 1, 1]]
  - upsample: {scale: 2, mode: nearest}
  - batch_norm: {eps: 1e-5, momentum: 0.1}
  - leaky_relu: -0.5
  - repeat: 3
    layers: [relu]
  - linear: 2
  - if: true
    then: [relu]
outputs: {y: [2]}
",
        r#"(network M pub (doc "First line.") (doc "Second line.") (in a [4]) (in b [4]) (out y [2]) {(let s (add a b)) (let h (* 2 3)) (if true {s.(linear out=(+ h 1) bias=true).(reshape [-1 1 1]).(upsample scale=2 mode=nearest).(batch_norm eps=1e-5 momentum=0.1).(leaky_relu -0.5).(repeat 3 |$y| {$y.(relu)}).(linear 2).(relu)} {s.(linear out=(+ h 1) bias=true).(reshape [-1 1 1]).(upsample scale=2 mode=nearest).(batch_norm eps=1e-5 momentum=0.1).(leaky_relu -0.5).(repeat 3 |$y| {$y.(relu)}).(linear 2)})})"#,
    );
}

#[test]
fn yaml_rejected() {
    let cases: &[(&str, &str)] = &[
        // Not YAML at all.
        (
            "name: [unclosed\n",
            "2:1 K0001 invalid YAML: while parsing a flow sequence, expected ',' or ']'",
        ),
        (
            "",
            "1:1 K0007 the file holds no YAML document; a model file is a mapping with `name`, `inputs`, `layers` and `outputs`",
        ),
        (
            "- a\n- b\n",
            "1:1 K0006 a model file must be a mapping, found a list",
        ),
        (
            "name: A\nname: B\ninputs: {x: [1]}\nlayers: [relu]\noutputs: [y]\n",
            "2:1 K0003 duplicate key `name`",
        ),
        (
            "name: A\ninput: {x: [1]}\nlayers: [relu]\noutputs: [y]\n",
            "2:1 K0004 unknown key `input` in a model file; expected one of `name`, `doc`, `public`, `inputs`, `blocks`, `layers`, `outputs`, `loss`\n1:1 K0005 the model file has no `inputs` key",
        ),
        (
            "name: A\ninputs: {x: [1, 0, three]}\nlayers: [relu]\noutputs: [y]\n",
            "2:17 K0009 a dimension of the shape of input `x` must be a positive integer (the batch dimension is implicit), found `0`\n2:20 K0009 a dimension of the shape of input `x` must be a positive integer (the batch dimension is implicit), found `three`",
        ),
        (
            "name: 3x\ninputs: {x: [1]}\nlayers: [relu]\noutputs: [y]\n",
            "1:7 K0006 `name` must be a name (a Rust identifier), found `3x`",
        ),
        // Expression errors point inside the string.
        (
            "name: A\ninputs: {x: [1]}\nlayers:\n  - linear: {out: \"c * / 2\"}\noutputs: [y]\n",
            "4:24 K0020 `c * / 2` is not a valid expression: expected an expression",
        ),
        (
            "name: A\ninputs: {x: [1]}\nlayers:\n  - linear: {out: 'a[0]'}\noutputs: [y]\n",
            "4:20 K0021 indexing is not part of the model language",
        ),
        (
            "name: A\ninputs: {x: [1]}\nlayers:\n  - linear: 99999999999999999999\noutputs: [y]\n",
            "4:13 K0022 integer `99999999999999999999` does not fit in 64 bits",
        ),
        // Malformed steps.
        (
            "name: A\ninputs: {x: [1]}\nlayers:\n  - {relu, tanh}\noutputs: [y]\n",
            "4:12 K0008 a step applies one op; `tanh` is a second one (use one list item per op)",
        ),
        (
            "name: A\ninputs: {x: [1]}\nlayers:\n  - 5\noutputs: [y]\n",
            "4:5 K0008 a step is an op name or a mapping `op: args`, found `5`",
        ),
        (
            "name: A\ninputs: {x: [1]}\nlayers:\n  - relu: {alpha: {a: 1}}\noutputs: [y]\n",
            "4:19 K0006 a value must be a number, a bool, an expression or a list, found a mapping",
        ),
        (
            "name: A\ninputs: {x: [1]}\nlayers:\n  - if: true\n    els: [relu]\noutputs: [y]\n",
            "5:5 K0004 unknown key `els` in an `if` step; expected one of `if`, `then`, `else`, `as`, `from`\n4:5 K0005 this `if` has no `then`",
        ),
        (
            "name: A\ninputs: {x: [1]}\nlayers: [relu]\noutputs: [y]\n---\nname: B\n",
            "5:1 K0007 a model file holds one YAML document; this is a second one",
        ),
        (
            "name: A\ninputs: {x: &s [1]}\nlayers: [relu]\noutputs: {y: *s}\n",
            "4:14 K0002 YAML aliases (`*name`) are not supported in model files; write the value out",
        ),
        (
            "name: A\ninputs: {x: [1]}\nlayers: [relu]\noutputs: [a, b]\n",
            "3:10 K0008 with several outputs, the result of the last step is unused: bind it with `as:` and list it in `outputs`",
        ),
        // A step that starts elsewhere may not drop the chain before it.
        (
            "name: A\ninputs: {x: [1]}\nlayers:\n  - relu\n  - {tanh, from: x}\noutputs: [y]\n",
            "4:5 K0008 the result of this step is never used: the next step starts from other tensors; bind it with `as:` or remove it",
        ),
        (
            "name: A\ninputs: {x: [1]}\nlayers:\n  - relu\n  - add: [x, x]\noutputs: [y]\n",
            "4:5 K0008 the result of this step is never used: the next step starts from other tensors; bind it with `as:` or remove it",
        ),
        // Several errors of one file are all reported.
        (
            "name: A\npublic: maybe\ninputs: {x: [1]}\nlayers: [relu]\noutputs: [y]\nloss: [mse]\n",
            "2:9 K0006 `public` must be `true` or `false`, found a scalar\n6:7 K0006 `loss` must be an op name or a mapping `{op: args}`, found a list",
        ),
    ];
    for (src, expect) in cases {
        check(run_yaml, src, expect);
    }
}

#[test]
fn yaml_nesting_is_bounded() {
    let deep = format!("name: A\nx: {}{}\n", "[".repeat(200), "]".repeat(200));
    check(
        run_yaml,
        &deep,
        "2:67 K0010 YAML nests deeper than 64 levels",
    );
    let expr = format!(
        "name: A\ninputs: {{x: [1]}}\nlayers:\n  - linear: \"{}1{}\"\noutputs: [y]\n",
        "(".repeat(100),
        ")".repeat(100)
    );
    check(
        run_yaml,
        &expr,
        "4:13 K0010 this expression is too long or nests too deeply",
    );
}

#[test]
fn tokens_accepted() {
    check(
        run_tokens,
        MACRO_LENET,
        r#"(network LeNet5 pub (doc "LeNet-5, as in the crash course.") (in x [1 32 32]) (out logits [10]) (loss cross_entropy) {x.(conv2d 6 k=5).(relu).(max_pool2d 2).(conv2d 16 k=5).(relu).(max_pool2d 2).(conv2d 120 k=5).(relu).(flatten).(linear 84).(relu).(linear 10)})"#,
    );
    check(
        run_tokens,
        "network N(x: [2]) -> [3] { let k = -(2 + 1) % 4; x.linear(k * 1).softmax(axis = 0) }
         loss mse(reduction = sum);",
        r#"(network N (in x [2]) (out output [3]) (loss mse reduction=sum) {(let k (% (- (+ 2 1)) 4)) x.(linear (* k 1)).(softmax axis=0)})"#,
    );
    check(
        run_tokens,
        "network N(x: [2], t: [2]) -> (a: [2], b) { let s = x + t; (s, if !true { s } else if 1 < 2 { t } else { x }) }",
        r#"(network N (in x [2]) (in t [2]) (out a [2]) (out b) {(let s (+ x t)) (tuple s (if (! true) {s} {(if (< 1 2) {t} {x})}))})"#,
    );
}

#[test]
fn tokens_rejected() {
    let cases: &[(&str, &str)] = &[
        (
            "netwrk N(x: [1]) -> y { x }",
            "1:1 K0041 unknown item `netwrk`: expected `block`, `network` or `loss`",
        ),
        (
            "network N(x: [1, 0]) -> y { x }",
            "1:18 K0040 a shape dimension is a positive integer literal (the batch dimension is implicit)",
        ),
        (
            "network N(x) -> y { x }",
            "1:12 K0043 input `x` needs a shape: `x: [C, H, W]`",
        ),
        (
            "network N(x: [1]) -> y { x.conv2d(k: 5) }",
            "1:36 K0040 expected `,`",
        ),
        (
            "network N(x: [1]) -> y { x.conv2d(6, k = 5, 3) }",
            "1:45 K0023 positional argument after a named argument; put positional arguments first",
        ),
        (
            "network N(x: [1]) -> y { x.linear(2u8) }",
            "1:35 K0022 integer literal `2u8` has a type suffix; write it without",
        ),
        (
            "network N(x: [1]) -> y { x.linear(n = 'c') }",
            "1:39 K0022 this kind of literal is not part of the model language (use integers, floats, `true`/`false` or strings)",
        ),
        (
            "network N(x: [1]) -> y { if true { x } }",
            "1:26 K0025 this `if` has no `else` branch; an `if` is a value and needs both",
        ),
        (
            "network N(x: [1]) -> y { x.repeat(3, x) }",
            "1:38 K0024 the second argument of `repeat` must be a closure; write `t.repeat(n, |y| body)` or `t.repeat(n, |y, i| body)`",
        ),
        (
            "network N(x: [1]) -> y { let z = x; }",
            "1:37 K0026 this body has no result: end it with an expression without a semicolon",
        ),
        (
            "network N(x: [1]) -> y { x.a::b() }",
            "1:31 K0040 expected `<`",
        ),
        (
            "network N(x: [1]) -> y { x[0] }",
            "1:26 K0021 indexing is not part of the model language",
        ),
        (
            "loss mse;",
            "1:6 K0042 `loss mse` does not follow a network (or that network already has a loss); write it right after the network it belongs to",
        ),
        (
            "block b() { 1 }",
            "1:8 K0043 block `b` needs its tensor input as the first parameter: `block b(x, ...)`",
        ),
        (
            "#[derive(Debug)] network N(x: [1]) -> y { x }",
            "1:1 K0040 only doc comments (`///`) are allowed on kiln items",
        ),
        // One error per item: the second item is still checked.
        (
            "network A(x: [1]) -> y { x.f(,) } network B(x: [1]) -> y { x[1] }",
            "1:30 K0040 expected an expression\n1:60 K0021 indexing is not part of the model language",
        ),
    ];
    for (src, expect) in cases {
        check(run_tokens, src, expect);
    }
}

#[test]
fn broken_network_leaves_a_stub() {
    let parsed = tokens::parse("pub network A(x: [1]) -> y { x.f(,) }".parse().unwrap());
    assert_eq!(parsed.stubs.len(), 1);
    assert_eq!(parsed.stubs[0].name.name, "A");
    assert!(parsed.stubs[0].public);
}

#[test]
fn method_location_is_the_layer() {
    // The layer `linear(10)` spans columns 34..44, after the receiver chain.
    let parsed = tokens::parse(
        "network N(x: [1]) -> y { x.relu().linear(10) }"
            .parse()
            .unwrap(),
    );
    let result = &parsed.module.networks[0].body.result;
    let Loc::Macro(span) = result.loc else {
        panic!("macro tokens give macro locations, got {:?}", result.loc);
    };
    assert_eq!((span.start().column, span.end().column), (34, 44));
    // In YAML, an expression's parts point inside the scalar.
    let (module, diags) = yaml::parse(
        "name: A\ninputs: {x: [1]}\nlayers:\n  - linear: {out: \"x.channels() * 2\"}\noutputs: [y]\n",
    );
    assert!(diags.is_empty(), "{}", render(&diags));
    let crate::ast::ExprKind::Method { args, .. } = &module.networks[0].body.result.kind else {
        panic!("a layer is a method call");
    };
    let crate::ast::ExprKind::Binary { lhs, .. } = &args[0].value.kind else {
        panic!("`x.channels() * 2` is a binary expression");
    };
    assert!(
        matches!(
            lhs.loc,
            Loc::Text {
                line: 4,
                col: 22,
                len: 10,
                ..
            }
        ),
        "{:?}",
        lhs.loc
    );
}

#[test]
fn yaml_scalars_follow_the_macro_grammar() {
    // Each YAML argument and the macro expression it must equal.
    let cases = [
        ("1_000", "1000"),
        ("-3", "-3"),
        ("+3", "3"),
        (".5", "0.5"),
        ("1e-5", "1e-5"),
        ("'\"same\"'", "\"same\""),
        ("same", "same"),
        ("\"2\"", "2"),
        ("[3, 3]", "[3, 3]"),
        ("x.dim(0) / 2", "x.dim(0) / 2"),
        ("true", "true"),
    ];
    for (yaml_value, macro_expr) in cases {
        let yaml_src = format!(
            "name: N\ninputs: {{x: [1]}}\nlayers:\n  - f: {{a: {yaml_value}}}\noutputs: [y]\n"
        );
        let macro_src = format!("pub network N(x: [1]) -> y {{ x.f(a = {macro_expr}) }}");
        check(run_tokens, &macro_src, &run_yaml(&yaml_src));
    }
}

#[test]
fn zoo_models_parse() {
    // Every model file of the zoo parses without diagnostics.
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../models");
    let mut files: Vec<_> = std::fs::read_dir(&dir)
        .expect("models/ exists")
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "yaml"))
        .collect();
    files.sort();
    for path in files {
        let src = std::fs::read_to_string(&path).expect("model file is readable");
        let (module, diags) = yaml::parse(&src);
        assert!(diags.is_empty(), "{}:\n{}", path.display(), render(&diags));
        assert_eq!(module.networks.len(), 1, "{}", path.display());
    }
}

#[test]
fn long_chains_are_accepted() {
    // 300 layers in one method chain, and as 300 YAML steps: deep, but not
    // nested, so both syntaxes take them and print alike.
    let n = 300;
    let macro_src = format!("pub network N(x: [4]) -> y {{ x{} }}", ".relu()".repeat(n));
    let yaml_src = format!(
        "name: N\ninputs: {{x: [4]}}\nlayers:\n{}outputs: [y]\n",
        "  - relu\n".repeat(n)
    );
    let from_yaml = run_yaml(&yaml_src);
    assert_eq!(from_yaml.matches("(relu)").count(), n, "{from_yaml}");
    check(run_tokens, &macro_src, &from_yaml);
    // Past the limit, a located error rather than a stack overflow.
    let too_long = format!("network N(x: [4]) -> y {{ x{} }}", ".relu()".repeat(600));
    check(
        run_tokens,
        &too_long,
        "1:26 K0010 expression nests deeper than 512 levels",
    );
}
