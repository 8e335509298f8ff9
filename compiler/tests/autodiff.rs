//! The autodiff pass on YAML networks: the joint graph it builds (as the
//! IR's text dump, a snapshot) and the errors it reports. Numeric checks of
//! the gradients live in `interp/tests/`, which can run graphs.

use kiln_compiler::codes::code_str;
use kiln_compiler::passes::autodiff;

/// Compiles `yaml`, runs autodiff and renders either the joint graph (its
/// dump, then the parameter gradients and saved values) or the diagnostics
/// as `line N: CODE message`.
fn check(yaml: &str) -> String {
    let module = kiln_compiler::frontend::parse_yaml(yaml).expect("the YAML parses");
    let nets = kiln_compiler::check(&module).expect("the network checks");
    match autodiff(&nets[0].graph) {
        Ok(j) => {
            let mut s = j.graph.to_string();
            s += &format!("loss = {}\n", j.loss);
            for (name, v) in &j.param_grads {
                s += &format!("grad {name} = {v}\n");
            }
            let saved: Vec<String> = j.saved.iter().map(|v| v.to_string()).collect();
            s += &format!("saved = [{}]\n", saved.join(", "));
            s
        }
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
    }
}

#[test]
fn mlp_joint_graph() {
    insta::assert_snapshot!(check(
        "name: Mlp
inputs:
  x: [1, 4, 4]
layers:
  - flatten
  - linear: 8
  - relu
  - linear: 3
outputs: [logits]
loss: cross_entropy
"
    ));
}

#[test]
fn lenet_joint_graph() {
    insta::assert_snapshot!(check(
        "name: LeNet5
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
"
    ));
}

#[test]
fn residual_fan_out_is_summed() {
    insta::assert_snapshot!(check(
        "name: Res
inputs:
  x: [2, 4, 4]
layers:
  - {conv2d: {out: 2, k: 3, p: 1, bias: false}, as: y}
  - {batch_norm, as: z}
  - {add: [x, z]}
  - relu
  - {conv2d: {out: 2, k: 3, p: 1}, as: w}
  - {add: [w, y]}
outputs: [out]
loss: mse
"
    ));
}

#[test]
fn step_has_no_gradient() {
    assert_eq!(
        check(
            "name: Perceptron
inputs:
  x: [2]
layers:
  - linear: 1
  - step
outputs: [out]
loss: mse
"
        ),
        "line 6: K0300 step `step0`: the step function has no gradient, so the loss cannot be trained through it; use `sigmoid` or `tanh` for training\n"
    );
}

#[test]
fn step_before_every_parameter_is_fine() {
    let got = check(
        "name: StepFirst
inputs:
  x: [2]
layers:
  - step
  - linear: 1
outputs: [out]
loss: mse
",
    );
    assert!(got.contains("grad linear0.weight = "), "{got}");
}

#[test]
fn no_loss_head() {
    assert_eq!(
        check(
            "name: NoLoss
inputs:
  x: [2]
layers:
  - linear: 1
outputs: [out]
"
        ),
        "line 5: K0301 network `NoLoss` has no loss head, so it cannot be trained; add `loss: ...`\n"
    );
}

#[test]
fn verifier_rejects_a_gradient_op_without_its_parameter() {
    use kiln_compiler::ir::{GradOp, NodeMeta, Op};
    let module = kiln_compiler::frontend::parse_yaml(
        "name: M\ninputs:\n  x: [4]\nlayers:\n  - linear: 3\noutputs: [out]\nloss: mse\n",
    )
    .unwrap();
    let mut j = autodiff(&kiln_compiler::check(&module).unwrap()[0].graph).unwrap();
    let dy = j.graph.node(j.graph.producer(j.param_grads[0].1)).inputs[1];
    j.graph.add_node(
        Op::Grad(GradOp::LinearData {
            weight: "linear9.weight".into(),
            in_features: 4,
        }),
        vec![dy],
        NodeMeta {
            name: "bogus".into(),
            loc: kiln_compiler::ast::Loc::Synthetic,
        },
    );
    let err = kiln_compiler::passes::verify(&j.graph, "test", false).unwrap_err();
    let msgs: Vec<&str> = err.iter().map(|d| d.message.as_str()).collect();
    assert_eq!(
        msgs,
        [
            "internal compiler error: IR invariant broken after pass `test` in graph `M`: gradient op `bogus` reads `linear9.weight`, which is no learned parameter"
        ]
    );
}
