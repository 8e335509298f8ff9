//! Generated inference against the IR interpreter (`kiln-interp`), op by op
//! and for whole networks.
//!
//! Each case is one `kiln::network!` invocation; the same tokens are parsed
//! again at run time (`stringify!` → `frontend::parse_tokens` → `check`) to
//! get the graph the interpreter runs. Parameters and buffers are drawn by
//! [`kiln_interp::random_params`] (non-trivial batch-norm running
//! statistics), written into the generated type by name, and read back from
//! its `params()` for the interpreter, which runs in `f64` on the same `f32`
//! values (after a first forward on other values, so that the prepared
//! tensors are recomputed from the new ones). Every output element must agree within `1e-4` of the reference
//! tensor's largest magnitude (relative to the tensor's scale, so that
//! elements near zero do not demand more than `f32` can give). Each case
//! runs at batch 1, at batch 3, and with 2 examples in a batch-3 network.

use kiln_compiler::frontend;
use kiln_interp::{Feed, Mode, Params, random_params, random_tensor};
use kiln_runtime::params::Params as NetParams;

/// The batch size and the number of examples of each call.
const RUNS: [(usize, usize); 3] = [(1, 1), (3, 3), (3, 2)];

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

/// Draws parameters for `graph`, writes them into `net` by name, and
/// returns the interpreter's map read back from `net`.
fn fill(graph: &kiln_compiler::ir::Graph, net: &mut NetParams, seed: u64) -> Params<f64> {
    let drawn = random_params::<f32>(graph, seed);
    for (name, data) in &drawn {
        let dst = match net.get_mut(name) {
            Some(d) => d,
            None => net
                .buffer_mut(name)
                .unwrap_or_else(|| panic!("`{name}` is not in the generated type's params")),
        };
        assert_eq!(dst.len(), data.len(), "`{name}`: length");
        dst.copy_from_slice(data);
    }
    let mut out = Params::new();
    let layouts = [
        (&net.layout, &net.values),
        (&net.buffer_layout, &net.buffers),
    ];
    for (layout, values) in layouts {
        for slot in layout.slots() {
            let v = values[slot.range()].iter().map(|&x| x as f64).collect();
            assert!(drawn.contains_key(&slot.name), "`{}` not drawn", slot.name);
            out.insert(slot.name.clone(), v);
        }
    }
    assert_eq!(out.len(), drawn.len(), "the same tensors on both sides");
    out
}

/// Builds a generated network at a batch, fills it from a seed, runs it on
/// an input, and returns its output and the interpreter's parameter map.
type Runner<'a> = dyn FnMut(usize, u64, &[f32]) -> (Vec<f32>, Params<f64>) + 'a;

/// Runs the interpreter on `x` (`n` examples) and compares its first output
/// with the generated code's. `run(batch, seed, x)` builds the generated
/// network for `batch`, fills its parameters from `seed` (with [`fill`]),
/// runs `forward(x)`, and returns the output and the interpreter's map.
fn check(case: &str, graph: &kiln_compiler::ir::Graph, in_len: usize, seed: u64, run: &mut Runner) {
    for (k, &(batch, n)) in RUNS.iter().enumerate() {
        let seed = seed.wrapping_mul(31).wrapping_add(k as u64);
        let x: Vec<f32> = random_tensor(n * in_len, seed ^ 0x5eed, -1.0, 1.0);
        let (got, mut params) = run(batch, seed, &x);
        let input = &graph.inputs()[0].name;
        let feed =
            Feed::new(n, Mode::Inference).input(input, x.iter().map(|&v| v as f64).collect());
        let values = kiln_interp::run(graph, &feed, &mut params)
            .unwrap_or_else(|e| panic!("{case}: interpreter: {e}"));
        let out = &graph.outputs()[0].name;
        let want = values.output(out).expect("the output");
        assert_eq!(
            got.len(),
            want.len(),
            "{case} (batch {batch}, n {n}): output length"
        );
        let scale = want.iter().fold(0.0f64, |m, v| m.max(v.abs())).max(1e-30);
        let mut worst = (0.0, 0);
        for (i, (&g, &w)) in got.iter().zip(want).enumerate() {
            let err = (g as f64 - w).abs() / scale;
            assert!(err.is_finite(), "{case}: element {i} is {g}, reference {w}");
            if err > worst.0 {
                worst = (err, i);
            }
        }
        assert!(
            worst.0 <= TOL,
            "{case} (batch {batch}, n {n}): element {} is {}, reference {} (error {:.2e} of scale {scale:.3e})",
            worst.1,
            got[worst.1],
            want[worst.1],
            worst.0
        );
    }
}

/// One test per network: the type from `network!`, the graph from the same
/// tokens (or the same YAML file).
macro_rules! case {
    ($test:ident, $ty:ident, $seed:expr, file $path:literal) => {
        #[test]
        fn $test() {
            kiln::network!($path);
            let path = concat!(env!("CARGO_MANIFEST_DIR"), "/", $path);
            let text = std::fs::read_to_string(path).expect("the model file");
            let module = frontend::parse_yaml(&text).expect("the model parses");
            let graph = kiln_compiler::check(&module).expect("the model checks").remove(0).graph;
            case!(@run $test, $ty, $seed, graph);
        }
    };
    ($test:ident, $ty:ident, $seed:expr, { $($src:tt)* }) => {
        #[test]
        fn $test() {
            kiln::network! { $($src)* }
            let graph = graph_of(stringify!($($src)*));
            case!(@run $test, $ty, $seed, graph);
        }
    };
    (@run $test:ident, $ty:ident, $seed:expr, $graph:ident) => {
        let mut run = |batch: usize, seed: u64, x: &[f32]| {
            // A first forward on other parameters computes the prepared
            // tensors (folded batch norm, packed weights); writing new ones
            // through `params_mut` must make the next forward recompute
            // them.
            let mut net = $ty::with_params($ty::zeroed_params(), batch);
            fill(&$graph, net.params_mut(), seed ^ 0xdead);
            net.forward(x).unwrap();
            let params = fill(&$graph, net.params_mut(), seed);
            (net.forward(x).unwrap().to_vec(), params)
        };
        check(stringify!($test), &$graph, $ty::INPUT_LEN, $seed, &mut run);
    };
}

case!(conv_plain, Net, 1, { network Net(x: [3, 9, 9]) -> [4, 7, 7] { x.conv2d(4, k = 3) } });
case!(conv_stride_pad, Net, 2, { network Net(x: [3, 11, 10]) -> out { x.conv2d(5, k = 3, s = 2, p = 1) } });
case!(conv_same, Net, 3, { network Net(x: [2, 8, 7]) -> out { x.conv2d(3, k = 5, p = same) } });
case!(conv_rect, Net, 4, { network Net(x: [2, 9, 8]) -> out { x.conv2d(3, k = [3, 2], s = [2, 1], p = [1, 0]) } });
case!(conv_dilated, Net, 5, { network Net(x: [2, 12, 12]) -> out { x.conv2d(4, k = 3, d = 2, p = 2) } });
case!(conv_groups_nobias, Net, 6, { network Net(x: [4, 7, 7]) -> out { x.conv2d(6, k = 3, groups = 2, bias = false) } });
case!(conv_depthwise, Net, 7, { network Net(x: [4, 6, 6]) -> out { x.conv2d(4, k = 3, p = 1, groups = 4) } });
case!(conv_1x1, Net, 8, { network Net(x: [5, 4, 4]) -> out { x.conv2d(3, k = 1) } });
case!(conv_transpose, Net, 9, { network Net(x: [3, 5, 5]) -> out { x.conv_transpose2d(2, k = 3, s = 2, p = 1, output_padding = 1) } });
case!(conv_transpose_groups, Net, 10, { network Net(x: [4, 4, 4]) -> out { x.conv_transpose2d(4, k = 2, s = 2, groups = 2, bias = false) } });
case!(linear_bias, Net, 11, { network Net(x: [17]) -> out { x.linear(9) } });
case!(linear_nobias, Net, 12, { network Net(x: [8]) -> out { x.linear(5, bias = false) } });
case!(flatten_linear, Net, 13, { network Net(x: [2, 3, 3]) -> out { x.flatten().linear(4) } });
case!(reshape, Net, 14, { network Net(x: [12]) -> out { x.reshape([3, 2, 2]).conv2d(2, k = 1) } });
case!(max_pool, Net, 15, { network Net(x: [2, 9, 9]) -> out { x.max_pool2d(3, s = 2, p = 1) } });
case!(max_pool_ceil, Net, 16, { network Net(x: [2, 8, 8]) -> out { x.max_pool2d(3, s = 2, ceil = true) } });
case!(avg_pool, Net, 17, { network Net(x: [2, 8, 8]) -> out { x.avg_pool2d(2) } });
case!(avg_pool_pad, Net, 18, { network Net(x: [2, 7, 7]) -> out { x.avg_pool2d(3, s = 2, p = 1) } });
case!(avg_pool_count_pad, Net, 19, { network Net(x: [2, 7, 7]) -> out { x.avg_pool2d(3, s = 2, p = 1, count_pad = true) } });
case!(global_avg_pool, Net, 20, { network Net(x: [3, 5, 4]) -> out { x.global_avg_pool() } });
case!(upsample_nearest, Net, 21, { network Net(x: [2, 3, 4]) -> out { x.upsample(2) } });
case!(upsample_zeros, Net, 22, { network Net(x: [2, 3, 3]) -> out { x.upsample(3, mode = zeros) } });
case!(pixel_shuffle, Net, 23, { network Net(x: [8, 3, 2]) -> out { x.pixel_shuffle(2) } });
case!(relu, Net, 24, { network Net(x: [3, 4, 4]) -> out { x.conv2d(2, k = 1).relu() } });
case!(leaky_relu, Net, 25, { network Net(x: [10]) -> out { x.leaky_relu(alpha = 0.2) } });
case!(elu, Net, 26, { network Net(x: [10]) -> out { x.elu(alpha = 0.7) } });
case!(selu, Net, 27, { network Net(x: [10]) -> out { x.selu() } });
case!(sigmoid, Net, 28, { network Net(x: [10]) -> out { x.sigmoid() } });
case!(tanh, Net, 29, { network Net(x: [10]) -> out { x.tanh() } });
case!(swish, Net, 30, { network Net(x: [10]) -> out { x.swish() } });
case!(step, Net, 31, { network Net(x: [10]) -> out { x.step() } });
case!(identity, Net, 32, { network Net(x: [6]) -> out { x.linear(4).identity() } });
case!(prelu_channel, Net, 33, { network Net(x: [3, 4, 4]) -> out { x.prelu() } });
case!(prelu_shared, Net, 34, { network Net(x: [3, 4, 4]) -> out { x.prelu(per_channel = false) } });
case!(prelu_vector, Net, 35, { network Net(x: [7]) -> out { x.prelu() } });
case!(maxout, Net, 36, { network Net(x: [6, 3, 3]) -> out { x.maxout(3) } });
case!(maxout_vector, Net, 37, { network Net(x: [12]) -> out { x.linear(8).maxout(2) } });
case!(softmax, Net, 38, { network Net(x: [10]) -> out { x.linear(6).softmax() } });
case!(log_softmax, Net, 39, { network Net(x: [10]) -> out { x.linear(6).log_softmax() } });
case!(softmax_channels, Net, 40, { network Net(x: [4, 3, 3]) -> out { x.softmax(axis = 0) } });
case!(log_softmax_width, Net, 41, { network Net(x: [2, 3, 5]) -> out { x.log_softmax(axis = 2) } });
case!(batch_norm_1d, Net, 42, { network Net(x: [9]) -> out { x.linear(6).batch_norm() } });
case!(batch_norm_2d, Net, 43, { network Net(x: [3, 5, 5]) -> out { x.conv2d(4, k = 3, bias = false).batch_norm(eps = 1e-3) } });
case!(lrn, Net, 44, { network Net(x: [7, 3, 3]) -> out { x.lrn(n = 3, alpha = 0.5, beta = 0.75, k = 1.0) } });
case!(dropout, Net, 45, { network Net(x: [8]) -> out { x.linear(5).dropout(p = 0.5) } });
case!(add_two, Net, 46, {
    network Net(x: [3, 4, 4]) -> out {
        let a = x.conv2d(3, k = 3, p = 1);
        a + x
    }
});
case!(add_three, Net, 47, {
    network Net(x: [6]) -> out {
        let a = x.linear(6);
        let b = x.linear(6);
        add(a, b, x)
    }
});
case!(concat_channels, Net, 48, {
    network Net(x: [2, 4, 4]) -> out {
        let a = x.conv2d(3, k = 1);
        concat([a, x], axis = 0)
    }
});
case!(concat_width, Net, 49, {
    network Net(x: [2, 3, 4]) -> out {
        let a = x.conv2d(2, k = 1);
        concat([x, a, x], axis = 2)
    }
});
case!(resnet_basic_block, Net, 50, {
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
    }
});
case!(lenet5, LeNet5, 51, file "models/lenet5.yaml");
case!(lenet5_wide, LeNet5Wide, 52, file "models/lenet5_wide.yaml");
case!(mlp_mnist, MlpMnist, 53, file "models/mlp_mnist.yaml");
case!(resnet20, ResNet20, 54, file "models/resnet20.yaml");
case!(fan_out_in_place, Net, 60, {
    network Net(x: [2, 5, 5]) -> out {
        let a = x.conv2d(3, k = 1);
        let b = a.relu();
        let c = a.sigmoid();
        b + c + a
    }
});
case!(add_self, Net, 61, {
    network Net(x: [6]) -> out {
        let a = x.linear(4);
        (a + a).tanh()
    }
});
case!(identity_alias, Net, 62, {
    network Net(x: [2, 4, 4]) -> out {
        let s = x.identity();
        let r = s.relu();
        r + x + s
    }
});
case!(input_is_output_of_add, Net, 63, { network Net(x: [5]) -> out { add(x, x) } });
case!(concat_height, Net, 64, {
    network Net(x: [2, 3, 4]) -> out {
        let a = x.max_pool2d(1);
        concat([a, x], axis = 1)
    }
});
case!(avg_pool_rect, Net, 65, { network Net(x: [2, 7, 9]) -> out { x.avg_pool2d([2, 3], s = [1, 2]) } });
case!(conv_bn_relu_chain, Net, 66, {
    network Net(x: [3, 8, 8]) -> out {
        x.conv2d(4, k = 3, p = same, bias = false).batch_norm().relu()
         .conv2d(4, k = 3, s = 2, p = 1).batch_norm().relu().global_avg_pool().linear(3).softmax()
    }
});
case!(conv_bias_bn_relu, Net, 67, {
    network Net(x: [3, 6, 6]) -> out { x.conv2d(5, k = 3, p = 1).batch_norm().relu() }
});
case!(linear_bn_relu, Net, 68, { network Net(x: [9]) -> out { x.linear(6).batch_norm().relu().linear(3) } });
case!(linear_nobias_bn, Net, 69, { network Net(x: [9]) -> out { x.linear(6, bias = false).batch_norm() } });
case!(lone_batch_norm_relu, Net, 70, { network Net(x: [3, 4, 4]) -> out { x.batch_norm().relu() } });
case!(activation_chain_on_input, Net, 71, { network Net(x: [10]) -> out { x.tanh().relu().sigmoid() } });
case!(activation_chain_after_conv, Net, 72, {
    network Net(x: [3, 5, 5]) -> out { x.conv2d(4, k = 3, p = 1).relu().sigmoid().elu(alpha = 0.5) }
});
case!(conv_two_residuals, Net, 73, {
    network Net(x: [3, 6, 6]) -> out {
        let a = x.conv2d(3, k = 3, p = 1, bias = false).batch_norm();
        (a + x + x).relu()
    }
});
case!(linear_residual, Net, 74, {
    network Net(x: [7]) -> out {
        let a = x.linear(7).batch_norm();
        (a + x).tanh()
    }
});
case!(add_then_chain, Net, 75, {
    network Net(x: [2, 4, 4]) -> out {
        let a = x.relu();
        let b = x.sigmoid();
        (a + b).relu().tanh()
    }
});
case!(packed_stem, Net, 76, {
    network Net(x: [3, 20, 20]) -> out {
        x.conv2d(24, k = 7, s = 2, p = 3, bias = false).batch_norm().relu().max_pool2d(3, s = 2, p = 1)
    }
});
