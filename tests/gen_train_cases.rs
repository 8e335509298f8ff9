//! The generated training routine against the IR interpreter's joint
//! graph (`passes::autodiff`, run by `kiln-interp` in `f64`): ops behind an
//! MSE head, aliasing cases (fan-out, `a + a`, identity), resnet20 and
//! mlp_mnist. `gen_train_vs_interp.rs` holds the per-op, per-loss table.
//!
//! Each case is one `kiln::network!` invocation with an MSE loss head, so
//! that any output shape can be a loss input; the same tokens are parsed
//! again at run time for the interpreter. Parameters (and batch-norm running
//! statistics) are drawn by [`kiln_interp::random_params`] and written into
//! the generated type by name; then `loss_and_grads` on a random batch is
//! compared with the interpreter in training mode: the loss, every
//! parameter's gradient, and the running statistics after the step, each
//! within `1e-4` of the reference tensor's largest magnitude (at least 0.1). Each case runs
//! with a full batch of 3 and with 2 examples in a batch-3 network (batch
//! statistics over the examples given); `resnet20` (cross-entropy on
//! class targets) and `mlp_mnist` run whole (`resnet18_cifar` is in
//! `gen_train_vs_interp.rs`). The generated side runs the joint graph after
//! `passes::fuse_training` (batch norm → ReLU backward fused), the
//! interpreter the unfused one. Dropout masks agree because
//! the interpreter runs with the generated step's seed (`step_seed()`).

use kiln_compiler::frontend;
use kiln_interp::{Feed, Mode, Targets, params_from_flat, random_params, random_tensor};
use kiln_runtime::params::Params as NetParams;

/// The batch size and the number of examples of each call.
const RUNS: [(usize, usize); 2] = [(3, 3), (3, 2)];

/// The tolerance, relative to the reference tensor's largest magnitude.
const TOL: f64 = 1e-4;

/// The checked graph of the network written in `source` (macro syntax).
fn graph_of(source: &str) -> kiln_compiler::ir::Graph {
    let tokens: proc_macro2::TokenStream = source.parse().expect("tokens");
    let module = frontend::parse_tokens(tokens).expect("the case parses");
    let mut nets = kiln_compiler::check(&module).expect("the case checks");
    assert_eq!(nets.len(), 1, "one network per case");
    nets.remove(0).graph
}

/// Writes parameters drawn for `graph` from `seed` into `net` by name.
fn fill(graph: &kiln_compiler::ir::Graph, net: &mut NetParams, seed: u64) {
    for (name, data) in &random_params::<f32>(graph, seed) {
        let dst = match net.get_mut(name) {
            Some(d) => d,
            None => net
                .buffer_mut(name)
                .unwrap_or_else(|| panic!("`{name}` is not in the generated type's params")),
        };
        assert_eq!(dst.len(), data.len(), "`{name}`: length");
        dst.copy_from_slice(data);
    }
}

/// The least scale a tensor is compared at: a gradient that is zero in
/// exact arithmetic (a bias right before batch norm) is, in `f32`, the
/// rounding of sums of terms of order one.
const FLOOR: f64 = 0.1;

/// Checks `got` against `want` within [`TOL`] of `want`'s scale (at least
/// [`FLOOR`]).
fn close(what: &str, got: &[f32], want: &[f64]) {
    assert_eq!(got.len(), want.len(), "{what}: length");
    let scale = want.iter().fold(0.0f64, |m, v| m.max(v.abs())).max(FLOOR);
    for (i, (&g, &w)) in got.iter().zip(want).enumerate() {
        let err = (g as f64 - w).abs() / scale;
        assert!(
            err <= TOL,
            "{what}[{i}]: generated {g}, interpreter {w} (error {err:.2e} of scale {scale:.3e})"
        );
    }
}

/// A generated network's training call: given the batch, the seed of its
/// parameters, the input and the targets, builds it, fills it, runs
/// `loss_and_grads`, and returns the loss, the parameters before the step,
/// the parameters (gradients, updated buffers) after it, and the step's
/// dropout seed.
type Runner<'a> =
    dyn FnMut(usize, u64, &[f32], &Targets<f32>) -> (f32, NetParams, NetParams, u64) + 'a;

/// Runs each of [`RUNS`] through `run` and through the interpreter on the
/// joint graph of `graph`, and compares them.
/// With `classes`, the targets are class indices below `out_len`;
/// otherwise values of the output's shape.
fn check(
    case: &str,
    graph: &kiln_compiler::ir::Graph,
    in_len: usize,
    out_len: usize,
    classes: bool,
    seed: u64,
    run: &mut Runner,
) {
    let joint = kiln_compiler::passes::autodiff(graph)
        .unwrap_or_else(|d| panic!("{case}: autodiff: {d:?}"));
    for (k, &(batch, n)) in RUNS.iter().enumerate() {
        let seed = seed.wrapping_mul(31).wrapping_add(k as u64);
        let x: Vec<f32> = random_tensor(n * in_len, seed ^ 0x5eed, -1.0, 1.0);
        let t = if classes {
            let u: Vec<f64> = random_tensor(n, seed ^ 0x7a7, 0.0, out_len as f64);
            Targets::Classes(u.iter().map(|&c| c as u32).collect())
        } else {
            Targets::Values(random_tensor(n * out_len, seed ^ 0x7a7, -1.0, 1.0))
        };
        let (loss, before, after, step_seed) = run(batch, seed, &x, &t);
        let at = format!("{case} (batch {batch}, n {n})");
        let mut params = params_from_flat::<f64>(&before);
        let feed = Feed::new(n, Mode::Training { seed: step_seed })
            .input(
                &graph.inputs()[0].name,
                x.iter().map(|&v| v as f64).collect(),
            )
            .targets(match &t {
                Targets::Classes(c) => Targets::Classes(c.clone()),
                Targets::Values(v) => Targets::Values(v.iter().map(|&v| v as f64).collect()),
            });
        let values = kiln_interp::run(&joint.graph, &feed, &mut params)
            .unwrap_or_else(|e| panic!("{at}: interpreter: {e}"));
        let want = values.loss.expect("the interpreter's loss");
        close(&format!("{at}: loss"), &[loss], &[want]);
        let mut seen = 0;
        for (name, v) in &joint.param_grads {
            let want = values.get(*v).expect("the gradient value");
            let got = after
                .grad(name)
                .unwrap_or_else(|| panic!("{at}: no gradient `{name}`"));
            close(&format!("{at}: d loss / d {name}"), got, want);
            seen += 1;
        }
        for slot in after.layout.slots() {
            if !joint.param_grads.iter().any(|(p, _)| *p == slot.name) {
                let g = after.grad(&slot.name).expect("a gradient slot");
                assert!(
                    g.iter().all(|&v| v == 0.0),
                    "{at}: `{}` has no gradient rule but a nonzero gradient",
                    slot.name
                );
            }
        }
        assert_eq!(seen, joint.param_grads.len());
        for slot in after.buffer_layout.slots() {
            let want = params.get(&slot.name).expect("the interpreter's buffer");
            close(
                &format!("{at}: buffer {} after the step", slot.name),
                after.buffer(&slot.name).unwrap(),
                want,
            );
        }
    }
}

/// One test per network: the type from `network!`, the graph from the same
/// tokens.
macro_rules! tcase {
    ($test:ident, $ty:ident, $seed:expr, file $path:literal) => {
        #[test]
        fn $test() {
            kiln::network!($path);
            let path = concat!(env!("CARGO_MANIFEST_DIR"), "/", $path);
            let text = std::fs::read_to_string(path).expect("the model file");
            let module = frontend::parse_yaml(&text).expect("the model parses");
            let graph = kiln_compiler::check(&module)
                .expect("the model checks")
                .remove(0)
                .graph;
            tcase!(@run $test, $ty, $seed, graph, Classes, true);
        }
    };
    ($test:ident, $ty:ident, $seed:expr, { $($src:tt)* }) => {
        #[test]
        fn $test() {
            kiln::network! { $($src)* }
            let graph = graph_of(stringify!($($src)*));
            tcase!(@run $test, $ty, $seed, graph, Values, false);
        }
    };
    (@run $test:ident, $ty:ident, $seed:expr, $graph:ident, $kind:ident, $classes:expr) => {
        let mut run = |batch: usize, seed: u64, x: &[f32], t: &Targets<f32>| {
            let mut net = $ty::with_params($ty::zeroed_params(), batch);
            fill(&$graph, net.params_mut(), seed);
            let before = net.params().clone();
            let Targets::$kind(t) = t else {
                unreachable!("check draws the targets the case asks for")
            };
            let loss = net.loss_and_grads(x, t).unwrap();
            (loss, before, net.params().clone(), net.step_seed())
        };
        check(stringify!($test), &$graph, $ty::INPUT_LEN, $ty::OUTPUT_LEN, $classes, $seed, &mut run);
    };
}

tcase!(conv_plain, Net, 101, { network Net(x: [3, 9, 9]) -> [4, 7, 7] { x.conv2d(4, k = 3) } loss mse; });
tcase!(conv_stride_pad, Net, 102, { network Net(x: [3, 11, 10]) -> out { x.conv2d(5, k = 3, s = 2, p = 1) } loss mse; });
tcase!(conv_same, Net, 103, { network Net(x: [2, 8, 7]) -> out { x.conv2d(3, k = 5, p = same) } loss mse; });
tcase!(conv_rect, Net, 104, { network Net(x: [2, 9, 8]) -> out { x.conv2d(3, k = [3, 2], s = [2, 1], p = [1, 0]) } loss mse; });
tcase!(conv_dilated, Net, 105, { network Net(x: [2, 12, 12]) -> out { x.conv2d(4, k = 3, d = 2, p = 2) } loss mse; });
tcase!(conv_groups_nobias, Net, 106, { network Net(x: [4, 7, 7]) -> out { x.conv2d(6, k = 3, groups = 2, bias = false) } loss mse; });
tcase!(conv_depthwise, Net, 107, { network Net(x: [4, 6, 6]) -> out { x.conv2d(4, k = 3, p = 1, groups = 4) } loss mse; });
tcase!(conv_1x1, Net, 108, { network Net(x: [5, 4, 4]) -> out { x.conv2d(3, k = 1) } loss mse; });
tcase!(linear_bias, Net, 111, { network Net(x: [17]) -> out { x.linear(9) } loss mse; });
tcase!(linear_nobias, Net, 112, { network Net(x: [8]) -> out { x.linear(5, bias = false) } loss mse; });
tcase!(flatten_linear, Net, 113, { network Net(x: [2, 3, 3]) -> out { x.flatten().linear(4) } loss mse; });
tcase!(reshape, Net, 114, { network Net(x: [12]) -> out { x.reshape([3, 2, 2]).conv2d(2, k = 1) } loss mse; });
tcase!(max_pool, Net, 115, { network Net(x: [2, 9, 9]) -> out { x.max_pool2d(3, s = 2, p = 1) } loss mse; });
tcase!(max_pool_ceil, Net, 116, { network Net(x: [2, 8, 8]) -> out { x.max_pool2d(3, s = 2, ceil = true) } loss mse; });
tcase!(avg_pool, Net, 117, { network Net(x: [2, 8, 8]) -> out { x.avg_pool2d(2) } loss mse; });
tcase!(avg_pool_pad, Net, 118, { network Net(x: [2, 7, 7]) -> out { x.avg_pool2d(3, s = 2, p = 1) } loss mse; });
tcase!(avg_pool_count_pad, Net, 119, { network Net(x: [2, 7, 7]) -> out { x.avg_pool2d(3, s = 2, p = 1, count_pad = true) } loss mse; });
tcase!(global_avg_pool, Net, 120, { network Net(x: [3, 5, 4]) -> out { x.global_avg_pool() } loss mse; });
tcase!(upsample_nearest, Net, 121, { network Net(x: [2, 3, 4]) -> out { x.upsample(2) } loss mse; });
tcase!(upsample_zeros, Net, 122, { network Net(x: [2, 3, 3]) -> out { x.upsample(3, mode = zeros) } loss mse; });
tcase!(pixel_shuffle, Net, 123, { network Net(x: [8, 3, 2]) -> out { x.pixel_shuffle(2) } loss mse; });
tcase!(relu, Net, 124, { network Net(x: [3, 4, 4]) -> out { x.conv2d(2, k = 1).relu() } loss mse; });
tcase!(leaky_relu, Net, 125, { network Net(x: [10]) -> out { x.leaky_relu(alpha = 0.2) } loss mse; });
tcase!(elu, Net, 126, { network Net(x: [10]) -> out { x.elu(alpha = 0.7) } loss mse; });
tcase!(selu, Net, 127, { network Net(x: [10]) -> out { x.selu() } loss mse; });
tcase!(sigmoid, Net, 128, { network Net(x: [10]) -> out { x.sigmoid() } loss mse; });
tcase!(tanh, Net, 129, { network Net(x: [10]) -> out { x.tanh() } loss mse; });
tcase!(swish, Net, 130, { network Net(x: [10]) -> out { x.swish() } loss mse; });
tcase!(identity, Net, 132, { network Net(x: [6]) -> out { x.linear(4).identity() } loss mse; });
tcase!(prelu_channel, Net, 133, { network Net(x: [3, 4, 4]) -> out { x.prelu() } loss mse; });
tcase!(prelu_shared, Net, 134, { network Net(x: [3, 4, 4]) -> out { x.prelu(per_channel = false) } loss mse; });
tcase!(prelu_vector, Net, 135, { network Net(x: [7]) -> out { x.prelu() } loss mse; });
tcase!(maxout, Net, 136, { network Net(x: [6, 3, 3]) -> out { x.maxout(3) } loss mse; });
tcase!(maxout_vector, Net, 137, { network Net(x: [12]) -> out { x.linear(8).maxout(2) } loss mse; });
tcase!(softmax, Net, 138, { network Net(x: [10]) -> out { x.linear(6).softmax() } loss mse; });
tcase!(log_softmax, Net, 139, { network Net(x: [10]) -> out { x.linear(6).log_softmax() } loss mse; });
tcase!(softmax_channels, Net, 140, { network Net(x: [4, 3, 3]) -> out { x.softmax(axis = 0) } loss mse; });
tcase!(log_softmax_width, Net, 141, { network Net(x: [2, 3, 5]) -> out { x.log_softmax(axis = 2) } loss mse; });
tcase!(batch_norm_1d, Net, 142, { network Net(x: [9]) -> out { x.linear(6).batch_norm() } loss mse; });
tcase!(batch_norm_2d, Net, 143, { network Net(x: [3, 5, 5]) -> out { x.conv2d(4, k = 3, bias = false).batch_norm(eps = 1e-3) } loss mse; });
tcase!(lrn, Net, 144, { network Net(x: [7, 3, 3]) -> out { x.lrn(n = 3, alpha = 0.5, beta = 0.75, k = 1.0) } loss mse; });
tcase!(add_two, Net, 146, {
    network Net(x: [3, 4, 4]) -> out {
        let a = x.conv2d(3, k = 3, p = 1);
        a + x
    } loss mse; });
tcase!(add_three, Net, 147, {
    network Net(x: [6]) -> out {
        let a = x.linear(6);
        let b = x.linear(6);
        add(a, b, x)
    } loss mse; });
tcase!(concat_channels, Net, 148, {
    network Net(x: [2, 4, 4]) -> out {
        let a = x.conv2d(3, k = 1);
        concat([a, x], axis = 0)
    } loss mse; });
tcase!(concat_width, Net, 149, {
    network Net(x: [2, 3, 4]) -> out {
        let a = x.conv2d(2, k = 1);
        concat([x, a, x], axis = 2)
    } loss mse; });
tcase!(resnet_basic_block, Net, 150, {
    block basic(x, c, stride = 1) {
        let y = x.conv2d(c, k = 3, s = stride, p = 1, bias = false).batch_norm().relu()
                 .conv2d(c, k = 3, p = 1, bias = false).batch_norm();
        let short = if stride != 1 || x.channels() != c {
            x.conv2d(c, k = 1, s = stride, bias = false).batch_norm()
        } else {
            x
        };
        (y + short).relu()
    }
    network Net(x: [4, 8, 8]) -> out {
        x.basic(4).basic(6, stride = 2)
    } loss mse; });
tcase!(resnet20, ResNet20, 202, file "models/resnet20.yaml");
tcase!(linear_bn_relu, Net, 167, {
    network Net(x: [7]) -> out { x.linear(6, bias = false).batch_norm().relu().linear(3) }
    loss mse;
});
tcase!(bn_relu_and_its_input, Net, 168, {
    network Net(x: [2, 5, 5]) -> out {
        let y = x.conv2d(3, k = 3, p = 1, bias = false).batch_norm();
        y.relu() + y
    }
    loss mse;
});
tcase!(fan_out, Net, 160, {
    network Net(x: [2, 5, 5]) -> out {
        let a = x.conv2d(3, k = 1);
        let b = a.relu();
        let c = a.sigmoid();
        b + c + a
    }
    loss mse;
});
tcase!(add_self, Net, 161, {
    network Net(x: [6]) -> out {
        let a = x.linear(4);
        (a + a).tanh()
    }
    loss mse;
});
tcase!(conv_bn_relu_chain, Net, 166, {
    network Net(x: [3, 8, 8]) -> out {
        x.conv2d(4, k = 3, p = same, bias = false).batch_norm().relu()
         .conv2d(4, k = 3, s = 2, p = 1).batch_norm().relu().global_avg_pool().linear(3).softmax()
    }
    loss mse;
});
tcase!(dropout, Net, 145, { network Net(x: [8]) -> out { x.linear(16).dropout(p = 0.5).linear(3) } loss mse; });
tcase!(dropout_two_layers, Net, 146, {
    network Net(x: [2, 4, 4]) -> out {
        x.conv2d(3, k = 3).dropout(p = 0.3).relu().flatten().dropout(p = 0.6).linear(2)
    }
    loss mse;
});
tcase!(mlp_mnist, MlpMnist, 201, file "models/mlp_mnist.yaml");
