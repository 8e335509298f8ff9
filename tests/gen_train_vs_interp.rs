//! Generated training code against the IR interpreter (`kiln-interp`), op by
//! op and for whole networks: the loss, every parameter gradient and batch
//! norm's running statistics after one `loss_and_grads` call.
//!
//! Each case is one `kiln::network!` invocation with a loss head; the same
//! tokens (or the same YAML file) are parsed again at run time to get the
//! graph, which `kiln_compiler::passes::autodiff` turns into the joint
//! forward + backward graph the interpreter runs in `f64`. Both sides get
//! the same `f32` parameters and buffers (drawn by
//! [`kiln_interp::random_params`], read back with
//! [`kiln_interp::params_from_flat`]), the same random batch and targets
//! (a full batch of 3, or 2 for the MNIST models, then one example fewer),
//! and the same dropout masks (the interpreter's `Mode::Training { seed }`
//! is the generated type's `step_seed()` after the call). Every value must
//! agree within `1e-4` of its tensor's largest magnitude, that scale being
//! at least a tenth of the network's largest gradient (and 1e-2), for
//! gradients that are zero in exact arithmetic.
//!
//! Ops without parameters follow a layer with parameters, so that their
//! backward rule shows in that layer's gradient. `step` (zero gradient) is
//! forward-only and is covered by the perceptron in `gen_train_worked.rs`.

use kiln_compiler::frontend;
use kiln_compiler::ir::Graph;
use kiln_interp::{Feed, Mode, Params, Targets, params_from_flat, random_params, random_tensor};
use kiln_runtime::params::Params as NetParams;

/// The tolerance, relative to the reference tensor's largest magnitude.
const TOL: f64 = 1e-4;

/// The smallest scale a tensor is compared at, as a fraction of the largest
/// gradient in the network (and at least 1e-2): a gradient that is zero in
/// exact arithmetic (a bias before batch norm, a shift before
/// `log_softmax`) is `f32` cancellation noise on the generated side, of the
/// size of the terms summed, not of its own (zero) scale.
const FLOOR: f64 = 0.1;

/// The checked graph of the network written in `source` (macro syntax).
fn graph_of(source: &str) -> Graph {
    let tokens: proc_macro2::TokenStream = source.parse().expect("tokens");
    let module = frontend::parse_tokens(tokens).expect("the case parses");
    let mut nets = kiln_compiler::check(&module).expect("the case checks");
    assert_eq!(nets.len(), 1, "one network per case");
    nets.remove(0).graph
}

/// The checked graph of the YAML model at `path` (relative to the crate).
fn graph_of_file(path: &str) -> Graph {
    let path = format!("{}/{path}", env!("CARGO_MANIFEST_DIR"));
    let text = std::fs::read_to_string(&path).expect("the model file");
    let module = frontend::parse_yaml(&text).expect("the model parses");
    kiln_compiler::check(&module)
        .expect("the model checks")
        .remove(0)
        .graph
}

/// A generated type's target element: `u32` class indices or `f32` values.
trait Target: Sized + Copy {
    /// Draws `n` examples' targets for an output of `out_len` floats: the
    /// generated side's slice and the interpreter's.
    fn draw(n: usize, out_len: usize, seed: u64) -> (Vec<Self>, Targets<f64>);
}

impl Target for u32 {
    fn draw(n: usize, out_len: usize, seed: u64) -> (Vec<u32>, Targets<f64>) {
        let r: Vec<f64> = random_tensor(n, seed, 0.0, 1.0);
        let c: Vec<u32> = r
            .iter()
            .map(|v| ((v * out_len as f64) as usize).min(out_len - 1) as u32)
            .collect();
        (c.clone(), Targets::Classes(c))
    }
}

impl Target for f32 {
    fn draw(n: usize, out_len: usize, seed: u64) -> (Vec<f32>, Targets<f64>) {
        // Values in [0, 1]: valid for every value loss, BCE included.
        let t: Vec<f32> = random_tensor(n * out_len, seed, 0.0, 1.0);
        let w = t.iter().map(|&v| v as f64).collect();
        (t, Targets::Values(w))
    }
}

/// Draws parameters and buffers for `graph` from `seed` and writes them into
/// `net` by name.
fn fill(graph: &Graph, net: &mut NetParams, seed: u64) {
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

/// The largest |value| of `v`.
fn max_abs(v: &[f64]) -> f64 {
    v.iter().fold(0.0f64, |m, x| m.max(x.abs()))
}

/// The largest relative error of `got` against `want`, scaled by `want`'s
/// largest magnitude but at least `floor`, and its index.
fn worst(got: &[f32], want: &[f64], floor: f64) -> (f64, usize) {
    assert_eq!(got.len(), want.len(), "lengths");
    let scale = max_abs(want).max(floor);
    let mut w = (0.0, 0);
    for (i, (&g, &r)) in got.iter().zip(want).enumerate() {
        let err = (g as f64 - r).abs() / scale;
        assert!(err.is_finite(), "element {i} is {g}, reference {r}");
        if err > w.0 {
            w = (err, i);
        }
    }
    w
}

/// One case's generated side after `loss_and_grads`: its loss, parameters
/// (values, gradients, buffers), and the seed of its dropout masks.
struct Generated {
    loss: f32,
    params: NetParams,
    seed: u64,
}

/// Compares a generated training call with the interpreter's joint graph.
/// `before` holds the parameters and buffers both sides start from, `x` the
/// batch (`n` examples) and `targets` the interpreter's targets.
fn check(
    case: &str,
    graph: &Graph,
    before: &NetParams,
    x: &[f32],
    n: usize,
    targets: Targets<f64>,
    got: &Generated,
) {
    let joint = kiln_compiler::passes::autodiff(graph)
        .unwrap_or_else(|e| panic!("{case}: autodiff: {e:?}"));
    let mut params: Params<f64> = params_from_flat(before);
    let input = &graph.inputs()[0].name;
    let feed = Feed::new(n, Mode::Training { seed: got.seed })
        .input(input, x.iter().map(|&v| v as f64).collect())
        .targets(targets);
    let values = kiln_interp::run(&joint.graph, &feed, &mut params)
        .unwrap_or_else(|e| panic!("{case}: interpreter: {e}"));
    let want = values.loss.expect("the loss");
    let err = (got.loss as f64 - want).abs() / want.abs().max(1e-6);
    assert!(
        err <= TOL,
        "{case}: loss {} vs interpreter {want}",
        got.loss
    );

    // Every parameter has a gradient, and each agrees.
    let names: Vec<&str> = got
        .params
        .layout
        .slots()
        .iter()
        .map(|s| s.name.as_str())
        .collect();
    let mut graded: Vec<&str> = joint.param_grads.iter().map(|(n, _)| n.as_str()).collect();
    graded.sort_unstable();
    let mut sorted = names.clone();
    sorted.sort_unstable();
    assert_eq!(graded, sorted, "{case}: the parameters with gradients");
    let largest = joint
        .param_grads
        .iter()
        .map(|(_, v)| max_abs(values.get(*v).expect("the gradient")))
        .fold(0.0f64, f64::max);
    let floor = (FLOOR * largest).max(1e-2);
    for (name, v) in &joint.param_grads {
        let want = values.get(*v).expect("the gradient");
        let g = got.params.grad(name).expect("the generated gradient");
        let (e, i) = worst(g, want, floor);
        assert!(
            e <= TOL,
            "{case}: ∂L/∂{name}[{i}]: generated {}, interpreter {} (error {e:.2e})",
            g[i],
            want[i]
        );
    }
    // The running statistics the step updated (the interpreter updates its
    // map in place).
    for slot in got.params.buffer_layout.slots() {
        let want = params.get(&slot.name).expect("the interpreter's buffer");
        let g = got.params.buffer(&slot.name).expect("the buffer");
        let (e, i) = worst(g, want, 1e-2);
        assert!(
            e <= TOL,
            "{case}: buffer {}[{i}]: generated {}, interpreter {} (error {e:.2e})",
            slot.name,
            g[i],
            want[i]
        );
    }
}

/// One test per network: the type from `network!`, the graph from the same
/// tokens (or the same YAML file), at `batch` with a full batch and with
/// one example fewer.
macro_rules! case {
    ($test:ident, $ty:ident, $batch:expr, $seed:expr, file $path:literal) => {
        #[test]
        fn $test() {
            kiln::network!($path);
            let graph = graph_of_file($path);
            case!(@run $test, $ty, $batch, $seed, graph);
        }
    };
    ($test:ident, $seed:expr, { $($src:tt)* }) => {
        #[test]
        fn $test() {
            kiln::network! { $($src)* }
            let graph = graph_of(stringify!($($src)*));
            case!(@run $test, Net, 3, $seed, graph);
        }
    };
    (@run $test:ident, $ty:ident, $batch:expr, $seed:expr, $graph:ident) => {
        let batch: usize = $batch;
        // A full batch, then one example fewer (the mean is over the
        // examples given, and batch statistics over them).
        for n in [batch, batch - 1] {
            let seed: u64 = $seed * 31 + n as u64;
            let mut net = $ty::with_params($ty::zeroed_params(), batch);
            fill(&$graph, net.params_mut(), seed);
            let before = net.params().clone();
            let x: Vec<f32> = random_tensor(n * $ty::INPUT_LEN, seed ^ 0x5eed, -1.0, 1.0);
            let (t, targets) = Target::draw(n, $ty::OUTPUT_LEN, seed ^ 0x7a67);
            let case = format!("{} (batch {batch}, {n} examples)", stringify!($test));
            let loss = net
                .loss_and_grads(&x, &t)
                .unwrap_or_else(|e| panic!("{case}: {e}"));
            let got = Generated { loss, seed: net.step_seed(), params: net.params().clone() };
            check(&case, &$graph, &before, &x, n, targets, &got);
        }
    };
}

// Convolutions.
case!(conv_plain, 1, { network Net(x: [3, 7, 7]) -> out { x.conv2d(4, k = 3) } loss mse; });
case!(conv_stride_pad, 2, { network Net(x: [3, 9, 8]) -> out { x.conv2d(5, k = 3, s = 2, p = 1) } loss mse; });
case!(conv_same, 3, { network Net(x: [2, 7, 6]) -> out { x.conv2d(3, k = 4, p = same) } loss mse; });
case!(conv_same_strided, 4, { network Net(x: [2, 7, 6]) -> out { x.conv2d(2, k = 4, s = 2, p = same) } loss mse; });
case!(conv_rect, 5, { network Net(x: [2, 7, 8]) -> out { x.conv2d(3, k = [3, 2], s = [2, 1], p = [1, 0]) } loss mse; });
case!(conv_dilated, 6, { network Net(x: [2, 9, 9]) -> out { x.conv2d(3, k = 3, d = 2, p = 1) } loss mse; });
case!(conv_groups_nobias, 7, { network Net(x: [4, 6, 6]) -> out { x.conv2d(6, k = 3, groups = 2, bias = false) } loss mse; });
case!(conv_depthwise, 8, { network Net(x: [4, 5, 5]) -> out { x.conv2d(4, k = 3, p = 1, groups = 4) } loss mse; });
// Linear, flatten, reshape.
case!(linear_bias, 11, { network Net(x: [9]) -> out { x.linear(5) } loss mse; });
case!(linear_nobias, 12, { network Net(x: [8]) -> out { x.linear(5, bias = false).linear(3) } loss mse; });
case!(flatten_linear, 13, { network Net(x: [2, 3, 3]) -> out { x.conv2d(2, k = 2).flatten().linear(4) } loss mse; });
case!(reshape, 14, { network Net(x: [12]) -> out { x.linear(12).reshape([3, 2, 2]).conv2d(2, k = 1) } loss mse; });
// Pooling and resampling.
case!(max_pool, 15, { network Net(x: [2, 8, 8]) -> out { x.conv2d(2, k = 2).max_pool2d(3, s = 2, p = 1) } loss mse; });
case!(max_pool_plain, 16, { network Net(x: [2, 7, 7]) -> out { x.conv2d(2, k = 2).max_pool2d(2) } loss mse; });
case!(avg_pool, 17, { network Net(x: [2, 7, 7]) -> out { x.conv2d(2, k = 2).avg_pool2d(2) } loss mse; });
case!(avg_pool_pad, 18, { network Net(x: [2, 8, 8]) -> out { x.conv2d(2, k = 2).avg_pool2d(3, s = 2, p = 1) } loss mse; });
case!(avg_pool_count_pad, 19, { network Net(x: [2, 8, 8]) -> out { x.conv2d(2, k = 2).avg_pool2d(3, s = 2, p = 1, count_pad = true) } loss mse; });
case!(global_avg_pool, 20, { network Net(x: [2, 5, 4]) -> out { x.conv2d(3, k = 2).global_avg_pool() } loss mse; });
case!(upsample_nearest, 21, { network Net(x: [2, 3, 4]) -> out { x.conv2d(2, k = 1).upsample(2).conv2d(2, k = 3) } loss mse; });
case!(upsample_zeros, 22, { network Net(x: [2, 3, 3]) -> out { x.conv2d(2, k = 1).upsample(3, mode = zeros).conv2d(2, k = 3) } loss mse; });
case!(pixel_shuffle, 23, { network Net(x: [2, 3, 2]) -> out { x.conv2d(8, k = 1).pixel_shuffle(2).conv2d(2, k = 3) } loss mse; });
// Activations.
case!(relu, 24, { network Net(x: [8]) -> out { x.linear(6).relu().linear(3) } loss mse; });
case!(leaky_relu, 25, { network Net(x: [8]) -> out { x.linear(6).leaky_relu(alpha = 0.2).linear(3) } loss mse; });
case!(elu, 26, { network Net(x: [8]) -> out { x.linear(6).elu(alpha = 0.7).linear(3) } loss mse; });
case!(selu, 27, { network Net(x: [8]) -> out { x.linear(6).selu().linear(3) } loss mse; });
case!(sigmoid, 28, { network Net(x: [8]) -> out { x.linear(6).sigmoid().linear(3) } loss mse; });
case!(tanh, 29, { network Net(x: [8]) -> out { x.linear(6).tanh().linear(3) } loss mse; });
case!(swish, 30, { network Net(x: [8]) -> out { x.linear(6).swish().linear(3) } loss mse; });
case!(identity, 32, { network Net(x: [6]) -> out { x.linear(4).identity() } loss mse; });
case!(prelu_channel, 33, { network Net(x: [3, 4, 4]) -> out { x.conv2d(3, k = 1).prelu().conv2d(2, k = 1) } loss mse; });
case!(prelu_shared, 34, { network Net(x: [3, 4, 4]) -> out { x.conv2d(3, k = 1).prelu(per_channel = false).conv2d(2, k = 1) } loss mse; });
case!(prelu_vector, 35, { network Net(x: [7]) -> out { x.linear(5).prelu().linear(3) } loss mse; });
case!(maxout, 36, { network Net(x: [2, 3, 3]) -> out { x.conv2d(6, k = 1).maxout(3) } loss mse; });
case!(maxout_vector, 37, { network Net(x: [6]) -> out { x.linear(8).maxout(2) } loss mse; });
case!(softmax, 38, { network Net(x: [7]) -> out { x.linear(5).softmax() } loss mse; });
case!(log_softmax, 39, { network Net(x: [7]) -> out { x.linear(5).log_softmax() } loss mse; });
case!(softmax_channels, 40, { network Net(x: [2, 3, 3]) -> out { x.conv2d(4, k = 1).softmax(axis = 0) } loss mse; });
case!(log_softmax_width, 41, { network Net(x: [2, 3, 5]) -> out { x.conv2d(2, k = 1).log_softmax(axis = 2) } loss mse; });
// Normalization and dropout (training mode).
case!(batch_norm_1d, 42, { network Net(x: [7]) -> out { x.linear(5).batch_norm().linear(3) } loss mse; });
case!(batch_norm_2d, 43, { network Net(x: [2, 5, 5]) -> out { x.conv2d(3, k = 3, bias = false).batch_norm(eps = 1e-3, momentum = 0.2).conv2d(2, k = 1) } loss mse; });
case!(lrn, 44, { network Net(x: [2, 3, 3]) -> out { x.conv2d(7, k = 1).lrn(n = 3, alpha = 0.5, beta = 0.75, k = 1.0) } loss mse; });
case!(dropout, 45, { network Net(x: [8]) -> out { x.linear(6).dropout(p = 0.5).linear(3) } loss mse; });
// Fan-out and joins.
case!(add_residual, 46, {
    network Net(x: [3, 4, 4]) -> out {
        let h = x.conv2d(3, k = 1);
        let a = h.conv2d(3, k = 3, p = 1);
        a + h
    }
    loss mse;
});
case!(add_three, 47, {
    network Net(x: [6]) -> out {
        let h = x.linear(6);
        let a = h.linear(6);
        let b = h.linear(6);
        add(a, b, h)
    }
    loss mse;
});
case!(concat_channels, 48, {
    network Net(x: [2, 4, 4]) -> out {
        let h = x.conv2d(2, k = 1);
        let a = h.conv2d(3, k = 1);
        concat([a, h], axis = 0)
    }
    loss mse;
});
case!(concat_width, 49, {
    network Net(x: [2, 3, 4]) -> out {
        let h = x.conv2d(2, k = 1);
        let a = h.conv2d(2, k = 1);
        concat([h, a, h], axis = 2)
    }
    loss mse;
});
// Every loss, mean and sum.
case!(cross_entropy_mean, 60, { network Net(x: [6]) -> out { x.linear(5) } loss cross_entropy; });
case!(cross_entropy_sum, 61, { network Net(x: [6]) -> out { x.linear(5) } loss cross_entropy(reduction = sum); });
case!(nll_mean, 62, { network Net(x: [6]) -> out { x.linear(5).log_softmax() } loss nll; });
case!(nll_sum, 63, { network Net(x: [6]) -> out { x.linear(5).log_softmax() } loss nll(reduction = sum); });
case!(hinge_mean, 64, { network Net(x: [6]) -> out { x.linear(5) } loss multiclass_hinge; });
case!(hinge_sum_margin, 65, { network Net(x: [6]) -> out { x.linear(5) } loss multiclass_hinge(margin = 0.5, reduction = sum); });
case!(mse_mean, 66, { network Net(x: [6]) -> out { x.linear(4) } loss mse; });
case!(mse_sum, 67, { network Net(x: [6]) -> out { x.linear(4) } loss mse(reduction = sum); });
case!(l1_mean, 68, { network Net(x: [6]) -> out { x.linear(4) } loss l1; });
case!(l1_sum, 69, { network Net(x: [6]) -> out { x.linear(4) } loss l1(reduction = sum); });
case!(huber_mean, 70, { network Net(x: [6]) -> out { x.linear(4) } loss huber(delta = 0.5); });
case!(huber_sum, 71, { network Net(x: [6]) -> out { x.linear(4) } loss huber(reduction = sum); });
case!(bce_mean, 72, { network Net(x: [6]) -> out { x.linear(4).sigmoid() } loss binary_cross_entropy; });
case!(bce_sum, 73, { network Net(x: [6]) -> out { x.linear(4).sigmoid() } loss binary_cross_entropy(reduction = sum); });
case!(bce_logits_mean, 74, { network Net(x: [6]) -> out { x.linear(4) } loss binary_cross_entropy(from_logits = true); });
case!(bce_logits_sum, 75, { network Net(x: [6]) -> out { x.linear(4) } loss binary_cross_entropy(from_logits = true, reduction = sum); });
// Whole networks.
case!(resnet_basic_block, 80, {
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
    network Net(x: [3, 8, 8]) -> out {
        x.conv2d(4, k = 3, p = 1, bias = false).batch_norm().relu()
         .basic(4).basic(6, stride = 2)
         .global_avg_pool().linear(5)
    }
    loss cross_entropy;
});
case!(lenet5_wide, LeNet5Wide, 2, 81, file "models/lenet5_wide.yaml");
case!(mlp_mnist, MlpMnist, 2, 82, file "models/mlp_mnist.yaml");
case!(resnet18_cifar, ResNet18Cifar, 2, 83, file "models/resnet18_cifar.yaml");

/// Training through `conv_transpose2d` is not emitted yet: the emitter says
/// so (K0400, naming the layer) instead of generating wrong code.
#[test]
fn conv_transpose_training_is_reported_unsupported() {
    let graph = graph_of(
        "network Net(x: [2, 3, 3]) -> out { x.conv_transpose2d(2, k = 3, s = 2, p = 1) } loss mse;",
    );
    let info = kiln_compiler::emit::cpu::TypeInfo {
        docs: vec![],
        public: true,
        span: proc_macro2::Span::call_site(),
    };
    let program = kiln_compiler::plan::build(&graph);
    let diags = kiln_compiler::emit::cpu::emit(&program, &info).expect_err("not supported");
    let d: Vec<_> = diags.iter().collect();
    assert_eq!(d.len(), 1, "{d:?}");
    assert_eq!(d[0].code, kiln_compiler::emit::cpu::UNSUPPORTED);
    assert!(
        d[0].message.contains("conv_transpose2d0") && d[0].message.contains("training"),
        "{}",
        d[0].message
    );
}
