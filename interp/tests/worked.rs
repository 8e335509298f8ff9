//! The seeds' worked examples ([`kiln_interp::worked::WORKED_EXAMPLES`])
//! through autodiff and the interpreter, in f64: outputs, losses, one SGD
//! step and short trainings match what the notes print.

mod common;

use common::compile;
use kiln_compiler::ir::Graph;
use kiln_compiler::passes::{JointGraph, autodiff};
use kiln_interp::worked::{Expect, WORKED_EXAMPLES, WorkedExample, WorkedTargets};
use kiln_interp::{Feed, Mode, Params, Targets, run};

/// The feed of examples `range` of `ex`.
fn feed(ex: &WorkedExample, range: std::ops::Range<usize>) -> Feed<f64> {
    let per_x = ex.input.len() / ex.batch;
    let mut f = Feed::new(range.len(), Mode::Training { seed: 0 }).input(
        "x",
        ex.input[range.start * per_x..range.end * per_x].to_vec(),
    );
    f.targets = match ex.targets {
        WorkedTargets::Classes(c) => Some(Targets::Classes(c[range].to_vec())),
        WorkedTargets::Values(v) => {
            let per = v.len() / ex.batch;
            Some(Targets::Values(
                v[range.start * per..range.end * per].to_vec(),
            ))
        }
        WorkedTargets::None => None,
    };
    f
}

/// Plain SGD over `ex`'s examples in order; returns the trained parameters
/// and the full-batch loss before and after.
fn train(
    ex: &WorkedExample,
    graph: &Graph,
    joint: &JointGraph,
    params: &Params<f64>,
    (lr, epochs, minibatch): (f64, usize, usize),
) -> (Params<f64>, f64, f64) {
    let loss = |p: &Params<f64>| {
        run(graph, &feed(ex, 0..ex.batch), &mut p.clone())
            .unwrap()
            .loss
            .unwrap()
    };
    let mut p = params.clone();
    let before = loss(&p);
    for _ in 0..epochs {
        for start in (0..ex.batch).step_by(minibatch) {
            let f = feed(ex, start..(start + minibatch).min(ex.batch));
            let v = run(&joint.graph, &f, &mut p.clone()).unwrap();
            for (name, g) in &joint.param_grads {
                let g = v.get(*g).unwrap().to_vec();
                for (w, g) in p.get_mut(name).unwrap().iter_mut().zip(g) {
                    *w -= lr * g;
                }
            }
        }
    }
    let after = loss(&p);
    (p, before, after)
}

/// Runs `ex` and returns one line per expectation: `ok`, or what differs.
fn check(ex: &WorkedExample) -> Vec<String> {
    let graph = compile(ex.yaml).unwrap_or_else(|e| panic!("{}: {e}", ex.name));
    let joint = ex
        .expect
        .iter()
        .any(Expect::needs_gradients)
        .then(|| autodiff(&graph).unwrap_or_else(|e| panic!("{}: {e:?}", ex.name)));
    let params: Params<f64> = ex
        .params
        .iter()
        .map(|(n, v)| (n.to_string(), v.to_vec()))
        .collect();
    let on = joint.as_ref().map_or(&graph, |j| &j.graph);
    let values = run(on, &feed(ex, 0..ex.batch), &mut params.clone())
        .unwrap_or_else(|e| panic!("{}: {e}", ex.name));
    let close = |got: &[f64], want: &[f64], tol: f64| {
        got.len() == want.len() && got.iter().zip(want).all(|(g, w)| (g - w).abs() <= tol)
    };
    let mut lines = Vec::new();
    for e in ex.expect {
        let mut compare = |what: String, got: Vec<f64>, want: &[f64], tol: f64| {
            lines.push(if close(&got, want, tol) {
                format!("{}: {what} ok", ex.name)
            } else {
                format!("{}: {what} is {got:?}, the notes say {want:?}", ex.name)
            })
        };
        match *e {
            Expect::Loss { value, tol } => compare(
                "loss".into(),
                vec![values.loss.unwrap_or(f64::NAN)],
                &[value],
                tol,
            ),
            Expect::Output {
                name,
                values: want,
                tol,
            } => compare(
                format!("output {name}"),
                values.output(name).unwrap_or(&[]).to_vec(),
                want,
                tol,
            ),
            Expect::AfterSgd {
                lr,
                param,
                values: want,
                tol,
            } => {
                let j = joint.as_ref().unwrap();
                let g = j
                    .param_grad(param)
                    .and_then(|v| values.get(v))
                    .unwrap_or(&[]);
                let w = params[param]
                    .iter()
                    .zip(g)
                    .map(|(w, g)| w - lr * g)
                    .collect();
                compare(format!("{param} after SGD"), w, want, tol);
            }
            Expect::Trained {
                lr,
                epochs,
                minibatch,
                params: want,
                tol,
            } => {
                let (p, _, _) = train(
                    ex,
                    &graph,
                    joint.as_ref().unwrap(),
                    &params,
                    (lr, epochs, minibatch),
                );
                for (name, w) in want {
                    compare(format!("{name} after training"), p[*name].clone(), w, tol);
                }
            }
            Expect::LossFalls {
                lr,
                epochs,
                minibatch,
                factor,
            } => {
                let (_, before, after) = train(
                    ex,
                    &graph,
                    joint.as_ref().unwrap(),
                    &params,
                    (lr, epochs, minibatch),
                );
                lines.push(if after < factor * before {
                    format!("{}: loss falls ok", ex.name)
                } else {
                    format!("{}: loss went from {before} to {after}", ex.name)
                });
            }
        }
    }
    lines
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
sigmoid_of_affine: output out ok
perceptron_nand: output out ok
linear_regression_gd: linear0.weight after training ok
linear_regression_gd: linear0.bias after training ok
linear_regression_sgd: linear0.weight after training ok
linear_regression_sgd: linear0.bias after training ok
two_layer_sigmoid_trains: loss falls ok"
    );
}
