//! Helpers shared by the interpreter's tests: compiling a YAML network,
//! feeding it seeded random data, and checking the joint graph's gradients
//! against central finite differences of the interpreter's forward loss.

#![allow(dead_code)]

use kiln_compiler::ir::{Graph, Op};
use kiln_compiler::passes::{JointGraph, autodiff_with_input_grads};
use kiln_interp::{Feed, Mode, Params, Targets, random_params, random_tensor, run};

/// Compiles a YAML model to its one checked graph, or the rendered diagnostics.
pub fn compile(yaml: &str) -> Result<Graph, String> {
    let render = |d: kiln_compiler::diag::Diagnostics| {
        d.iter()
            .map(|d| format!("{} {}", kiln_compiler::codes::code_str(d.code), d.message))
            .collect::<Vec<_>>()
            .join("\n")
    };
    let module = kiln_compiler::frontend::parse_yaml(yaml).map_err(render)?;
    let mut nets = kiln_compiler::check(&module).map_err(render)?;
    Ok(nets.remove(0).graph)
}

/// A single-input network `x: input` applying `layers` (YAML list items, one
/// per line) with the loss head `loss`.
pub fn net(input: &str, layers: &str, loss: &str) -> String {
    let body: String = layers
        .trim()
        .lines()
        .map(|l| format!("  - {}\n", l.trim()))
        .collect();
    format!("name: T\ninputs:\n  x: {input}\nlayers:\n{body}outputs: [out]\nloss: {loss}\n")
}

/// Seeded inputs and targets for `graph` at batch `n`, in training mode.
pub fn feed(graph: &Graph, n: usize, seed: u64) -> Feed<f64> {
    let mut f = Feed::new(n, Mode::Training { seed: seed ^ 0xD0 });
    for (k, p) in graph.inputs().iter().enumerate() {
        let len = n * graph.shape(p.value).map(|s| s.numel()).unwrap_or(0) as usize;
        f = f.input(&p.name, random_tensor(len, seed + k as u64, -1.0, 1.0));
    }
    if let Some(l) = graph.loss()
        && let Op::Loss(loss) = graph.node(l).op
    {
        let o = graph.node(l).inputs[0];
        let per = graph.shape(o).map(|s| s.numel()).unwrap_or(0) as usize;
        f = f.targets(if loss.kind.takes_class_index() {
            Targets::Classes(
                random_tensor::<f64>(n, seed + 99, 0.0, per as f64)
                    .into_iter()
                    .map(|v| (v as u32).min(per as u32 - 1))
                    .collect(),
            )
        } else {
            Targets::Values(random_tensor(n * per, seed + 99, 0.05, 0.95))
        });
    }
    f
}

/// The forward loss of `graph` with `params` on `feed`.
pub fn loss_of(graph: &Graph, feed: &Feed<f64>, params: &Params<f64>) -> f64 {
    let mut p = params.clone();
    run(graph, feed, &mut p)
        .expect("the forward run succeeds")
        .loss
        .expect("the network has a loss")
}

/// Compares every gradient of the joint graph of `graph` (parameters and
/// inputs) with central differences of the forward loss at up to `samples`
/// coordinates per tensor. Returns the checked gradients' names, sorted, one
/// joined by `, `, each with `MISMATCH ...` appended where a coordinate differs by
/// more than `1e-6 + 1e-5·max(|analytic|, |numeric|)`.
pub fn gradcheck(graph: &Graph, n: usize, seed: u64, samples: usize) -> String {
    let joint: JointGraph = autodiff_with_input_grads(graph).expect("autodiff succeeds");
    let params: Params<f64> = random_params(graph, seed);
    let feed = feed(graph, n, seed);
    let mut p = params.clone();
    let values = run(&joint.graph, &feed, &mut p).expect("the joint run succeeds");
    let joint_loss = values.loss.expect("the joint graph computes the loss");
    let fwd_loss = loss_of(graph, &feed, &params);
    let mut lines = Vec::new();
    if (joint_loss - fwd_loss).abs() > 1e-12 * (1.0 + fwd_loss.abs()) {
        lines.push(format!(
            "loss MISMATCH joint {joint_loss} vs forward {fwd_loss}"
        ));
    }
    let h = 1e-6;
    let pick = |len: usize, salt: u64| -> Vec<usize> {
        if len <= samples {
            (0..len).collect()
        } else {
            random_tensor::<f64>(samples, seed ^ salt, 0.0, len as f64)
                .into_iter()
                .map(|v| (v as usize).min(len - 1))
                .collect()
        }
    };
    let tol = |a: f64, b: f64| 1e-6 + 1e-5 * a.abs().max(b.abs());
    for (k, (name, v)) in joint.param_grads.iter().enumerate() {
        let g = values.get(*v).expect("the gradient was computed").to_vec();
        let mut line = name.clone();
        for i in pick(g.len(), k as u64 + 1) {
            let mut q = params.clone();
            let base = q[name][i];
            q.get_mut(name).unwrap()[i] = base + h;
            let up = loss_of(graph, &feed, &q);
            q.get_mut(name).unwrap()[i] = base - h;
            let down = loss_of(graph, &feed, &q);
            let num = (up - down) / (2.0 * h);
            if (num - g[i]).abs() > tol(num, g[i]) {
                line += &format!(" MISMATCH [{i}] analytic {} numeric {num}", g[i]);
                break;
            }
        }
        lines.push(line);
    }
    for (k, (name, v)) in joint.input_grads.iter().enumerate() {
        let g = values.get(*v).expect("the gradient was computed").to_vec();
        let mut line = name.clone();
        for i in pick(g.len(), 1000 + k as u64) {
            let mut f = feed.clone();
            let base = f.inputs[name][i];
            f.inputs.get_mut(name).unwrap()[i] = base + h;
            let up = loss_of(graph, &f, &params);
            f.inputs.get_mut(name).unwrap()[i] = base - h;
            let down = loss_of(graph, &f, &params);
            let num = (up - down) / (2.0 * h);
            if (num - g[i]).abs() > tol(num, g[i]) {
                line += &format!(" MISMATCH [{i}] analytic {} numeric {num}", g[i]);
                break;
            }
        }
        lines.push(line);
    }
    lines.sort();
    lines.join(", ")
}
