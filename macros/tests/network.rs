//! `network!` in both forms, used as a user would: the generated types exist,
//! carry their visibility, and the file form reads YAML relative to the
//! crate's manifest.

// The generated types carry fields and methods (forward, training step,
// layout) that this test does not call; unused, they would warn.
#![allow(dead_code)]

mod from_tokens {
    kiln::network! {
        /// LeNet-5, as in the crash course.
        pub network LeNet5(x: [1, 32, 32]) -> logits: [10] {
            x.conv2d(6, k = 5).relu().max_pool2d(2)
             .conv2d(16, k = 5).relu().max_pool2d(2)
             .conv2d(120, k = 5).relu().flatten()
             .linear(84).relu()
             .linear(10)
        }
        loss cross_entropy;

        /// ResNet's basic block.
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

        pub network Tiny(x: [3, 8, 8]) -> [10] {
            x.basic(16, stride = 2).repeat(2, |y| y.basic(16)).global_avg_pool().linear(10)
        }
    }
}

mod from_yaml {
    kiln::network!("tests/data/lenet5.yaml");
}

mod from_zoo {
    kiln::network!("../models/lenet5.yaml");
}

/// The name of a type, without its module path.
fn short_name<T>() -> &'static str {
    let full = std::any::type_name::<T>();
    full.rsplit("::").next().unwrap_or(full)
}

#[test]
fn generated_types() {
    let cases = [
        (short_name::<from_tokens::LeNet5>(), "LeNet5"),
        (short_name::<from_tokens::Tiny>(), "Tiny"),
        (short_name::<from_yaml::LeNet5>(), "LeNet5"),
    ];
    for (got, expect) in cases {
        assert_eq!(got, expect);
    }
    // The generated type carries its layout: the flat parameter buffer has
    // exactly the network's learned scalars.
    assert_eq!(
        from_yaml::LeNet5::zeroed_params().values.len(),
        from_yaml::LeNet5::PARAM_COUNT
    );
}

#[test]
fn totals_come_from_the_checked_graph() {
    // LeNet-5 (crash-course version): 156 + 2,416 + 48,120 + 10,164 + 850
    // parameters; 117,600 + 240,000 + 48,000 + 10,080 + 840 multiply-adds.
    // Tiny: a strided basic block with a projection (2,880), two identity
    // basic blocks (2 × 4,672) and a 16 → 10 linear layer (170).
    let cases = [
        (
            "tokens",
            from_tokens::LeNet5::TOTAL_PARAMS,
            from_tokens::LeNet5::TOTAL_MACS,
            61_706,
            416_520,
        ),
        (
            "yaml",
            from_yaml::LeNet5::TOTAL_PARAMS,
            from_yaml::LeNet5::TOTAL_MACS,
            61_706,
            416_520,
        ),
        (
            "zoo",
            from_zoo::LeNet5::TOTAL_PARAMS,
            from_zoo::LeNet5::TOTAL_MACS,
            61_706,
            416_520,
        ),
        (
            "tiny",
            from_tokens::Tiny::TOTAL_PARAMS,
            from_tokens::Tiny::TOTAL_PARAMS,
            12_394,
            12_394,
        ),
    ];
    for (what, params, macs, want_params, want_macs) in cases {
        assert_eq!((params, macs), (want_params, want_macs), "{what}");
    }
    let json = from_tokens::LeNet5::summary_json();
    assert!(json.contains("\"total_params\": 61706"), "{json}");
    assert_eq!(json, from_yaml::LeNet5::summary_json());
}
