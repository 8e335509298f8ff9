//! The seeds' worked examples ([`kiln_interp::worked::WORKED_EXAMPLES`])
//! through autodiff and the interpreter, in f64: outputs, losses and one
//! SGD step match the numbers the notes print.

mod common;

use common::compile;
use kiln_compiler::passes::autodiff;
use kiln_interp::worked::{Expect, WORKED_EXAMPLES, WorkedExample, WorkedTargets};
use kiln_interp::{Feed, Mode, Params, Targets, run};

/// Runs `ex` and returns one line per expectation: `ok`, or what differs.
fn check(ex: &WorkedExample) -> Vec<String> {
    let graph = compile(ex.yaml).unwrap_or_else(|e| panic!("{}: {e}", ex.name));
    let joint = autodiff(&graph).unwrap_or_else(|e| panic!("{}: {e:?}", ex.name));
    let params: Params<f64> = ex
        .params
        .iter()
        .map(|(n, v)| (n.to_string(), v.to_vec()))
        .collect();
    let feed = Feed::new(ex.batch, Mode::Training { seed: 0 })
        .input("x", ex.input.to_vec())
        .targets(match ex.targets {
            WorkedTargets::Classes(c) => Targets::Classes(c.to_vec()),
            WorkedTargets::Values(v) => Targets::Values(v.to_vec()),
        });
    let mut p = params.clone();
    let values = run(&joint.graph, &feed, &mut p).unwrap_or_else(|e| panic!("{}: {e}", ex.name));
    let close = |got: &[f64], want: &[f64], tol: f64| {
        got.len() == want.len() && got.iter().zip(want).all(|(g, w)| (g - w).abs() <= tol)
    };
    ex.expect
        .iter()
        .map(|e| {
            let (what, got, want, tol) = match *e {
                Expect::Loss { value, tol } => (
                    "loss".to_string(),
                    vec![values.loss.unwrap_or(f64::NAN)],
                    vec![value],
                    tol,
                ),
                Expect::Output {
                    name,
                    values: want,
                    tol,
                } => (
                    format!("output {name}"),
                    values.output(name).unwrap_or(&[]).to_vec(),
                    want.to_vec(),
                    tol,
                ),
                Expect::AfterSgd {
                    lr,
                    param,
                    values: want,
                    tol,
                } => {
                    let g = joint
                        .param_grad(param)
                        .and_then(|v| values.get(v))
                        .unwrap_or(&[]);
                    let w: Vec<f64> = params[param]
                        .iter()
                        .zip(g)
                        .map(|(w, g)| w - lr * g)
                        .collect();
                    (format!("{param} after SGD"), w, want.to_vec(), tol)
                }
            };
            if close(&got, &want, tol) {
                format!("{}: {what} ok", ex.name)
            } else {
                format!("{}: {what} is {got:?}, the notes say {want:?}", ex.name)
            }
        })
        .collect()
}

#[test]
fn worked_examples() {
    let got: Vec<String> = WORKED_EXAMPLES.iter().flat_map(check).collect();
    assert_eq!(
        got.join("\n"),
        "\
mazur_2_2_2_sigmoid: output out ok
mazur_2_2_2_sigmoid: loss ok
mazur_2_2_2_sigmoid: linear0.weight after SGD ok
multiclass_svm_loss: loss ok
softmax_cross_entropy: loss ok
sigmoid_of_affine: output out ok"
    );
}
