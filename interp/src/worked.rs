//! The seeds' worked examples as a reusable table: each a YAML network with
//! fixed parameters, inputs and targets, and the numbers the course notes
//! print for it. The interpreter's tests run the table; generated-code
//! tests are meant to run the same table through the generated type.
//!
//! Tolerances are half a unit in the last digit the notes print.

/// A loss head's targets, as written in the table.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum WorkedTargets {
    /// One class index per example.
    Classes(&'static [u32]),
    /// A tensor per example, flattened over the batch.
    Values(&'static [f64]),
}

/// One number (or list) the notes print, with its tolerance.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Expect {
    /// The loss of the batch.
    Loss {
        /// The printed value.
        value: f64,
        /// The allowed absolute error.
        tol: f64,
    },
    /// The graph output `name`, flattened over the batch.
    Output {
        /// The output's name.
        name: &'static str,
        /// The printed values.
        values: &'static [f64],
        /// The allowed absolute error.
        tol: f64,
    },
    /// The parameter `param` after one plain SGD step `w ← w − lr·∂L/∂w`.
    AfterSgd {
        /// The learning rate η.
        lr: f64,
        /// The parameter's name.
        param: &'static str,
        /// The printed values.
        values: &'static [f64],
        /// The allowed absolute error.
        tol: f64,
    },
}

/// One worked example.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct WorkedExample {
    /// A short name.
    pub name: &'static str,
    /// Where the notes have it.
    pub source: &'static str,
    /// The network, in YAML, with input `x`.
    pub yaml: &'static str,
    /// Every parameter's values, by name.
    pub params: &'static [(&'static str, &'static [f64])],
    /// The batch size.
    pub batch: usize,
    /// The input `x`, flattened over the batch.
    pub input: &'static [f64],
    /// The loss head's targets.
    pub targets: WorkedTargets,
    /// What the notes print.
    pub expect: &'static [Expect],
}

/// The identity as a linear layer's 3 × 3 weight, so that scores go
/// straight to the loss head.
const IDENTITY3: &[f64] = &[1.0, 0.0, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0, 1.0];

/// A network that passes 3 class scores to the loss head `$loss` through a
/// linear layer (given the identity weight).
macro_rules! scores {
    ($loss:literal) => {
        concat!(
            "name: Scores\ninputs:\n  x: [3]\nlayers:\n  - linear: {out: 3, bias: false}\noutputs: [scores]\nloss: ",
            $loss,
            "\n"
        )
    };
}

/// The table.
pub const WORKED_EXAMPLES: &[WorkedExample] = &[
    WorkedExample {
        name: "mazur_2_2_2_sigmoid",
        source: "seeds/004: \"Example to solve\", E_total = 0.298371109",
        yaml: "name: Mazur
inputs:
  x: [2]
layers:
  - linear: 2
  - sigmoid
  - linear: 2
  - sigmoid
outputs: [out]
loss: {mse: {reduction: sum}}
",
        // net_h1 = w1·i1 + w2·i2 + b1, net_h2 = w3·i1 + w4·i2 + b1: the rows
        // of the `[out, in]` weight are (w1, w2) and (w3, w4).
        params: &[
            ("linear0.weight", &[0.15, 0.20, 0.25, 0.30]),
            ("linear0.bias", &[0.35, 0.35]),
            ("linear1.weight", &[0.40, 0.45, 0.50, 0.55]),
            ("linear1.bias", &[0.60, 0.60]),
        ],
        batch: 1,
        input: &[0.05, 0.10],
        targets: WorkedTargets::Values(&[0.01, 0.99]),
        expect: &[
            Expect::Output {
                name: "out",
                values: &[0.75136507, 0.772928465],
                tol: 5e-9,
            },
            Expect::Loss {
                value: 0.298371109,
                tol: 5e-10,
            },
            Expect::AfterSgd {
                lr: 0.5,
                param: "linear0.weight",
                values: &[0.149780716, 0.19956143, 0.24975114, 0.29950229],
                tol: 5e-9,
            },
        ],
    },
    WorkedExample {
        name: "multiclass_svm_loss",
        source: "seeds/004: \"L = (2.9 + 0 + 12.9) / 3\", L = 5.27",
        yaml: scores!("multiclass_hinge"),
        params: &[("linear0.weight", IDENTITY3)],
        batch: 3,
        // Scores of (cat, car, frog) for a cat, a car and a frog image.
        input: &[3.2, 5.1, -1.7, 1.3, 4.9, 2.0, 2.2, 2.5, -3.1],
        targets: WorkedTargets::Classes(&[0, 1, 2]),
        expect: &[Expect::Loss {
            value: 5.27,
            tol: 5e-3,
        }],
    },
    WorkedExample {
        name: "softmax_cross_entropy",
        source: "seeds/002 and 004: \"L_i = -log(0.13) = 2.04\"",
        yaml: scores!("cross_entropy"),
        params: &[("linear0.weight", IDENTITY3)],
        batch: 1,
        input: &[3.2, 5.1, -1.7],
        targets: WorkedTargets::Classes(&[0]),
        expect: &[Expect::Loss {
            value: 2.04,
            tol: 5e-3,
        }],
    },
    WorkedExample {
        name: "sigmoid_of_affine",
        source: "seeds/002: σ(W·[1, −1] + b) = [0.98, 0.12]",
        yaml: "name: Affine
inputs:
  x: [2]
layers:
  - linear: 2
  - sigmoid
outputs: [out]
loss: mse
",
        params: &[
            ("linear0.weight", &[1.0, -2.0, -1.0, 1.0]),
            ("linear0.bias", &[1.0, 0.0]),
        ],
        batch: 1,
        input: &[1.0, -1.0],
        targets: WorkedTargets::Values(&[0.0, 0.0]),
        expect: &[Expect::Output {
            name: "out",
            values: &[0.98, 0.12],
            tol: 5e-3,
        }],
    },
];
