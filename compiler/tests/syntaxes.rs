//! One language, two syntaxes: the same network written with the macro's
//! tokens and as a zoo YAML file gives the identical summary (layer names,
//! ops, shapes, parameters, multiply-adds).

use kiln_compiler::frontend::{parse_tokens, parse_yaml};
use kiln_compiler::summary::Summary;
use quote::quote;

fn summarize(
    module: Result<kiln_compiler::ast::Module, kiln_compiler::diag::Diagnostics>,
) -> Summary {
    let module = module.unwrap_or_else(|d| panic!("parse: {:?}", d.into_vec()));
    let nets =
        kiln_compiler::check(&module).unwrap_or_else(|d| panic!("check: {:?}", d.into_vec()));
    nets[0].summary.clone()
}

/// Compares the macro form `tokens` with the zoo file `models/<yaml>.yaml`.
fn check(tokens: proc_macro2::TokenStream, yaml: &str) {
    let path = format!("{}/../models/{yaml}.yaml", env!("CARGO_MANIFEST_DIR"));
    let source = std::fs::read_to_string(&path).expect("zoo file");
    let from_macro = summarize(parse_tokens(tokens));
    let from_yaml = summarize(parse_yaml(&source));
    assert_eq!(from_macro, from_yaml);
}

#[test]
fn lenet5() {
    check(
        quote! {
            /// LeNet-5, as in the crash course.
            pub network LeNet5(x: [1, 32, 32]) -> logits: [10] {
                x.conv2d(6, k = 5).relu().max_pool2d(2)
                 .conv2d(16, k = 5).relu().max_pool2d(2)
                 .conv2d(120, k = 5).relu().flatten()
                 .linear(84).relu()
                 .linear(10)
            }
            loss cross_entropy;
        },
        "lenet5",
    );
}

#[test]
fn resnet18() {
    check(
        quote! {
            /// ResNet's basic block.
            block basic(x, c, stride = 1) {
                let y = x.conv2d(c, k = 3, s = stride, p = 1, bias = false).batch_norm().relu()
                         .conv2d(c, k = 3, p = 1, bias = false).batch_norm();
                let short = if stride != 1 || x.channels() != c {
                    x.conv2d(c, k = 1, s = stride, bias = false).batch_norm()
                } else { x };
                (y + short).relu()
            }
            block stage(x, c, n, stride = 1) {
                x.basic(c, stride = stride).repeat(n - 1, |y| y.basic(c))
            }
            pub network ResNet18(x: [3, 224, 224]) -> logits: [1000] {
                x.conv2d(64, k = 7, s = 2, p = 3, bias = false).batch_norm().relu()
                 .max_pool2d(k = 3, s = 2, p = 1)
                 .stage(64, 2).stage(128, 2, stride = 2).stage(256, 2, stride = 2).stage(512, 2, stride = 2)
                 .global_avg_pool().linear(1000)
            }
            loss cross_entropy;
        },
        "resnet18",
    );
}

#[test]
fn densenet121() {
    check(
        quote! {
            block dense_layer(x, growth = 32, bn_size = 4) {
                let new = x.batch_norm().relu().conv2d(bn_size * growth, k = 1, bias = false)
                           .batch_norm().relu().conv2d(growth, k = 3, p = 1, bias = false);
                concat(x, new)
            }
            block dense_block(x, n) {
                x.repeat(n, |y| y.dense_layer())
            }
            block transition(x) {
                x.batch_norm().relu().conv2d(x.channels() / 2, k = 1, bias = false).avg_pool2d(2)
            }
            pub network DenseNet121(x: [3, 224, 224]) -> logits: [1000] {
                x.conv2d(64, k = 7, s = 2, p = 3, bias = false).batch_norm().relu()
                 .max_pool2d(k = 3, s = 2, p = 1)
                 .dense_block(6).transition().dense_block(12).transition()
                 .dense_block(24).transition().dense_block(16)
                 .batch_norm().relu().global_avg_pool().linear(1000)
            }
            loss cross_entropy;
        },
        "densenet121",
    );
}
