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
    /// No targets (a network without a loss head).
    None,
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
    /// The parameters after training with plain SGD: `epochs` passes over
    /// the examples in minibatches of `minibatch`, in order (no shuffle, so
    /// every executor takes the same steps; `minibatch` = batch is
    /// full-batch gradient descent).
    Trained {
        /// The learning rate η.
        lr: f64,
        /// Passes over the data.
        epochs: usize,
        /// Examples per step.
        minibatch: usize,
        /// The parameters' expected values, by name.
        params: &'static [(&'static str, &'static [f64])],
        /// The allowed absolute error.
        tol: f64,
    },
    /// Training as in [`Expect::Trained`] brings the full-batch loss below
    /// `factor` times its initial value.
    LossFalls {
        /// The learning rate η.
        lr: f64,
        /// Passes over the data.
        epochs: usize,
        /// Examples per step.
        minibatch: usize,
        /// The bound on final / initial loss.
        factor: f64,
    },
}

impl Expect {
    /// Whether checking this needs gradients (the joint graph).
    pub fn needs_gradients(&self) -> bool {
        !matches!(self, Expect::Loss { .. } | Expect::Output { .. })
    }
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
    WorkedExample {
        name: "perceptron_nand",
        source: "seeds/000: \"Check that perceptron in 6 implements NAND\" (weights −2, −2, bias 3)",
        yaml: "name: Nand
inputs:
  x: [2]
layers:
  - linear: 1
  - step
outputs: [out]
",
        params: &[("linear0.weight", &[-2.0, -2.0]), ("linear0.bias", &[3.0])],
        batch: 4,
        input: &[0.0, 0.0, 0.0, 1.0, 1.0, 0.0, 1.0, 1.0],
        targets: WorkedTargets::None,
        expect: &[Expect::Output {
            name: "out",
            values: &[1.0, 1.0, 1.0, 0.0],
            tol: 0.0,
        }],
    },
    WorkedExample {
        name: "linear_regression_gd",
        source: "seeds/000: \"Example: Regression\", C(w, b) = 1/2n Σ‖wx + b − y‖² (data y = 3x − 2)",
        yaml: LINREG,
        params: &[("linear0.weight", &[0.0]), ("linear0.bias", &[0.0])],
        batch: 8,
        input: LINREG_X,
        targets: WorkedTargets::Values(LINREG_Y),
        expect: &[Expect::Trained {
            lr: 0.5,
            epochs: 500,
            minibatch: 8,
            params: &[("linear0.weight", &[3.0]), ("linear0.bias", &[-2.0])],
            tol: 1e-6,
        }],
    },
    WorkedExample {
        name: "linear_regression_sgd",
        source: "seeds/000: \"Stochastic Gradient Descent\", minibatches of 2 (data y = 3x − 2)",
        yaml: LINREG,
        params: &[("linear0.weight", &[0.0]), ("linear0.bias", &[0.0])],
        batch: 8,
        input: LINREG_X,
        targets: WorkedTargets::Values(LINREG_Y),
        expect: &[Expect::Trained {
            lr: 0.2,
            epochs: 500,
            minibatch: 2,
            params: &[("linear0.weight", &[3.0]), ("linear0.bias", &[-2.0])],
            tol: 1e-6,
        }],
    },
    WorkedExample {
        name: "two_layer_sigmoid_trains",
        source: "seeds/004: the 2-2-2 sigmoid network, trained on 8 random examples",
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
        params: &[
            ("linear0.weight", &[0.15, 0.20, 0.25, 0.30]),
            ("linear0.bias", &[0.35, 0.35]),
            ("linear1.weight", &[0.40, 0.45, 0.50, 0.55]),
            ("linear1.bias", &[0.60, 0.60]),
        ],
        batch: 8,
        // Arbitrary values in [0, 1), written by hand: data with no exact fit.
        input: &[
            0.83, 0.12, 0.47, 0.91, 0.05, 0.66, 0.38, 0.29, 0.74, 0.58, 0.21, 0.95, 0.62, 0.03,
            0.17, 0.44,
        ],
        targets: WorkedTargets::Values(&[
            0.92, 0.08, 0.35, 0.61, 0.14, 0.87, 0.49, 0.26, 0.71, 0.33, 0.06, 0.98, 0.55, 0.19,
            0.81, 0.42,
        ]),
        expect: &[Expect::LossFalls {
            lr: 0.5,
            epochs: 200,
            minibatch: 8,
            factor: 0.5,
        }],
    },
];

/// `y = wx + b` with the seeds' cost: MSE (½‖·‖² per example) averaged
/// over the batch.
const LINREG: &str = "name: LinReg
inputs:
  x: [1]
layers:
  - linear: 1
outputs: [y]
loss: mse
";

const LINREG_X: &[f64] = &[0.0, 0.25, 0.5, 0.75, 1.0, 1.25, 1.5, 1.75];
const LINREG_Y: &[f64] = &[-2.0, -1.25, -0.5, 0.25, 1.0, 1.75, 2.5, 3.25];
