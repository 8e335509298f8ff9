//! Binding an op's arguments to its parameters and building the IR op.
//!
//! `Lowerer::bind_args` matches positional and named arguments against an
//! op's parameter list and reports extra, unknown, duplicate and missing
//! ones; `Lowerer::build_op` converts each bound value to the attribute's
//! type (integers, pairs, padding, booleans, numbers in a range, keywords,
//! integer lists), reporting every wrong type or value at its argument.

use super::{EArg, Lowerer, Val, describe, suggest};
use crate::ast::Loc;
use crate::codes;
use crate::diag::{Code, Diagnostic};
use crate::ir::{Activation, Conv2d, ConvTranspose2d, Op, Padding, Pool2d, UpsampleMode};
use crate::passes::infer_shapes::MAX_DIM;
use std::collections::HashMap;

impl Lowerer<'_> {
    /// Binds `args` to the op's parameter list `spec` (the first `required`
    /// are required); reports extra, unknown, duplicate and missing ones.
    pub(super) fn bind_args(
        &mut self,
        what: &str,
        spec: &[&'static str],
        required: usize,
        args: Vec<EArg>,
        loc: Loc,
    ) -> Option<Args> {
        let mut vals: HashMap<&'static str, (Val, Loc)> = HashMap::new();
        let mut ok = true;
        let mut npos = 0;
        let total_pos = args.iter().filter(|a| a.name.is_none()).count();
        for a in args {
            let key = match &a.name {
                None => {
                    npos += 1;
                    match spec.get(npos - 1) {
                        Some(k) => *k,
                        None if npos > spec.len() + 1 => {
                            ok = false;
                            continue;
                        }
                        None => {
                            self.error(
                                codes::UNEXPECTED_ARG,
                                a.loc,
                                format!(
                                    "{what}: takes at most {} positional argument(s), found {total_pos}",
                                    spec.len()
                                ),
                            );
                            ok = false;
                            continue;
                        }
                    }
                }
                Some(n) => match spec.iter().find(|k| **k == n.name) {
                    Some(k) => *k,
                    None => {
                        let mut d = Diagnostic::error(
                            codes::UNEXPECTED_ARG,
                            n.loc,
                            format!(
                                "{what}: no argument `{}`; the arguments are {}",
                                n.name,
                                if spec.is_empty() {
                                    "none".to_string()
                                } else {
                                    spec.join(", ")
                                }
                            ),
                        );
                        if let Some(s) = suggest(&n.name, spec.iter().copied()) {
                            d = d.with_note(format!("did you mean `{s}`?"));
                        }
                        self.diags.push(d);
                        ok = false;
                        continue;
                    }
                },
            };
            if matches!(a.val, Val::Poison) {
                ok = false;
            }
            if vals.insert(key, (a.val, a.loc)).is_some() {
                self.error(
                    codes::UNEXPECTED_ARG,
                    a.loc,
                    format!("{what}: argument `{key}` is given twice"),
                );
                ok = false;
            }
        }
        for k in &spec[..required] {
            if !vals.contains_key(k) {
                self.error(
                    codes::MISSING_ARG,
                    loc,
                    format!("{what}: missing argument `{k}`"),
                );
                ok = false;
            }
        }
        ok.then(|| Args {
            what: what.to_string(),
            vals,
            failed: false,
        })
    }

    pub(super) fn build_op(
        &mut self,
        op: &str,
        what: &str,
        args: Vec<EArg>,
        loc: Loc,
    ) -> Option<Op> {
        let (spec, required): (&[&'static str], usize) = match op {
            "conv2d" => (
                &[
                    "out",
                    "k",
                    "s",
                    "p",
                    "d",
                    "groups",
                    "bias",
                    "exact",
                    "in_channels",
                ],
                2,
            ),
            "conv_transpose2d" => (
                &[
                    "out",
                    "k",
                    "s",
                    "p",
                    "output_padding",
                    "d",
                    "groups",
                    "bias",
                    "in_channels",
                ],
                2,
            ),
            "linear" => (&["out", "bias", "in_features"], 1),
            "reshape" => (&["shape"], 1),
            "max_pool2d" => (&["k", "s", "p", "exact", "ceil"], 1),
            "avg_pool2d" => (&["k", "s", "p", "exact", "count_pad", "ceil"], 1),
            "upsample" => (&["scale", "mode"], 1),
            "pixel_shuffle" => (&["r"], 1),
            "leaky_relu" | "elu" => (&["alpha"], 0),
            "prelu" => (&["per_channel"], 0),
            "maxout" => (&["k"], 1),
            "softmax" | "log_softmax" | "concat" => (&["axis"], 0),
            "batch_norm" => (&["eps", "momentum"], 0),
            "lrn" => (&["n", "alpha", "beta", "k"], 0),
            "dropout" => (&["p"], 0),
            _ => (&[], 0),
        };
        let mut a = self.bind_args(what, spec, required, args, loc)?;
        let s = self;
        let op = match op {
            "conv2d" => Op::Conv2d(Conv2d {
                out: a.size(s, "out", None, 1),
                kernel: a.pair(s, "k", None, 1),
                stride: a.pair(s, "s", Some([1, 1]), 1),
                padding: a.padding(s, "p"),
                dilation: a.pair(s, "d", Some([1, 1]), 1),
                groups: a.size(s, "groups", Some(1), 1),
                bias: a.bool(s, "bias", Some(true)),
                exact: a.bool(s, "exact", Some(false)),
                in_channels: a.opt_size(s, "in_channels"),
            }),
            "conv_transpose2d" => Op::ConvTranspose2d(ConvTranspose2d {
                out: a.size(s, "out", None, 1),
                kernel: a.pair(s, "k", None, 1),
                stride: a.pair(s, "s", Some([1, 1]), 1),
                padding: a.pair(s, "p", Some([0, 0]), 0),
                output_padding: a.pair(s, "output_padding", Some([0, 0]), 0),
                dilation: a.pair(s, "d", Some([1, 1]), 1),
                groups: a.size(s, "groups", Some(1), 1),
                bias: a.bool(s, "bias", Some(true)),
                in_channels: a.opt_size(s, "in_channels"),
            }),
            "linear" => Op::Linear {
                out: a.size(s, "out", None, 1),
                bias: a.bool(s, "bias", Some(true)),
                in_features: a.opt_size(s, "in_features"),
            },
            "flatten" => Op::Flatten,
            "reshape" => Op::Reshape {
                shape: a.int_list(s, "shape"),
            },
            "max_pool2d" | "avg_pool2d" => {
                let kernel = a.pair(s, "k", None, 1);
                let pool = Pool2d {
                    kernel,
                    stride: a.pair(s, "s", Some(kernel), 1),
                    padding: a.pair(s, "p", Some([0, 0]), 0),
                    exact: a.bool(s, "exact", Some(false)),
                    ceil: a.bool(s, "ceil", Some(false)),
                };
                if op == "max_pool2d" {
                    Op::MaxPool2d(pool)
                } else {
                    Op::AvgPool2d {
                        pool,
                        count_pad: a.bool(s, "count_pad", Some(false)),
                    }
                }
            }
            "global_avg_pool" => Op::GlobalAvgPool,
            "upsample" => Op::Upsample {
                scale: a.size(s, "scale", None, 1),
                mode: match a.keyword(s, "mode", &["nearest", "zeros"], Some("nearest")) {
                    "zeros" => UpsampleMode::Zeros,
                    _ => UpsampleMode::Nearest,
                },
            },
            "pixel_shuffle" => Op::PixelShuffle {
                r: a.size(s, "r", None, 1),
            },
            "relu" => Op::Activation(Activation::Relu),
            "selu" => Op::Activation(Activation::Selu),
            "sigmoid" => Op::Activation(Activation::Sigmoid),
            "tanh" => Op::Activation(Activation::Tanh),
            "swish" | "silu" => Op::Activation(Activation::Swish),
            "step" => Op::Activation(Activation::Step),
            "leaky_relu" => Op::Activation(Activation::LeakyRelu {
                alpha: a.float(s, "alpha", Some(0.01), Range::Finite),
            }),
            "elu" => Op::Activation(Activation::Elu {
                alpha: a.float(s, "alpha", Some(1.0), Range::Finite),
            }),
            "prelu" => Op::Prelu {
                per_channel: a.bool(s, "per_channel", Some(true)),
            },
            "maxout" => Op::Maxout {
                k: a.size(s, "k", None, 1),
            },
            "softmax" => Op::Softmax {
                axis: a.size(s, "axis", Some(0), 0),
            },
            "log_softmax" => Op::LogSoftmax {
                axis: a.size(s, "axis", Some(0), 0),
            },
            "batch_norm" => Op::BatchNorm {
                eps: a.float(s, "eps", Some(1e-5), Range::Positive),
                momentum: a.float(s, "momentum", Some(0.1), Range::Unit),
            },
            "lrn" => Op::Lrn {
                n: a.size(s, "n", Some(5), 1),
                alpha: a.float(s, "alpha", Some(1e-4), Range::Finite),
                beta: a.float(s, "beta", Some(0.75), Range::Finite),
                k: a.float(s, "k", Some(2.0), Range::Finite),
            },
            "dropout" => Op::Dropout {
                p: a.float(s, "p", Some(0.5), Range::Probability),
            },
            "add" => Op::Add,
            _ => Op::Concat {
                axis: a.size(s, "axis", Some(0), 0),
            },
        };
        (!a.failed).then_some(op)
    }
}

/// Which floats an argument accepts.
#[derive(Debug, Clone, Copy)]
pub(super) enum Range {
    Finite,
    Positive,
    /// `[0, 1]`.
    Unit,
    /// `[0, 1)`.
    Probability,
}

/// An op's bound arguments; the accessors convert and report type errors,
/// returning a placeholder and setting `failed` on error.
#[derive(Debug)]
pub(super) struct Args {
    what: String,
    vals: HashMap<&'static str, (Val, Loc)>,
    pub(super) failed: bool,
}

impl Args {
    fn fail(&mut self, l: &mut Lowerer, code: Code, loc: Loc, msg: String) {
        self.failed = true;
        l.error(code, loc, format!("{}: {msg}", self.what));
    }

    fn type_error(&mut self, l: &mut Lowerer, key: &str, want: &str, v: &Val, loc: Loc) {
        let msg = format!(
            "argument `{key}` must be {want}, found {}",
            describe(v, &l.graph)
        );
        self.fail(l, codes::WRONG_ARG_TYPE, loc, msg);
    }

    fn get(&self, key: &str) -> Option<(Val, Loc)> {
        self.vals.get(key).cloned()
    }

    fn int_in(&mut self, l: &mut Lowerer, key: &str, v: &Val, loc: Loc, min: usize) -> usize {
        match v {
            Val::Int(i) if *i >= min as i64 && *i as u64 <= MAX_DIM => *i as usize,
            Val::Int(i) => {
                let msg =
                    format!("argument `{key}` is {i}; it must be between {min} and {MAX_DIM}");
                self.fail(l, codes::BAD_ARG_VALUE, loc, msg);
                min
            }
            v => {
                self.type_error(l, key, "an integer", v, loc);
                min
            }
        }
    }

    fn size(&mut self, l: &mut Lowerer, key: &str, default: Option<usize>, min: usize) -> usize {
        match self.get(key) {
            Some((v, loc)) => self.int_in(l, key, &v, loc, min),
            None => default.unwrap_or(min),
        }
    }

    fn opt_size(&mut self, l: &mut Lowerer, key: &str) -> Option<usize> {
        let (v, loc) = self.get(key)?;
        Some(self.int_in(l, key, &v, loc, 1))
    }

    fn pair(
        &mut self,
        l: &mut Lowerer,
        key: &str,
        default: Option<[usize; 2]>,
        min: usize,
    ) -> [usize; 2] {
        match self.get(key) {
            None => default.unwrap_or([min; 2]),
            Some((Val::List(items) | Val::Tuple(items), loc)) if items.len() == 2 => [
                self.int_in(l, key, &items[0], loc, min),
                self.int_in(l, key, &items[1], loc, min),
            ],
            Some((Val::Int(i), loc)) => {
                let n = self.int_in(l, key, &Val::Int(i), loc, min);
                [n, n]
            }
            Some((v, loc)) => {
                self.type_error(l, key, "an integer or a pair [h, w]", &v, loc);
                [min; 2]
            }
        }
    }

    fn padding(&mut self, l: &mut Lowerer, key: &str) -> Padding {
        match self.get(key) {
            Some((Val::Keyword { name, .. } | Val::Str(name), loc)) => match name.as_str() {
                "same" => Padding::Same,
                "valid" => Padding::Explicit([0, 0]),
                _ => {
                    let msg = format!(
                        "argument `{key}` must be an integer, a pair [h, w], `same` or `valid`, found `{name}`"
                    );
                    self.fail(l, codes::WRONG_ARG_TYPE, loc, msg);
                    Padding::Explicit([0, 0])
                }
            },
            Some((Val::Int(_) | Val::List(_) | Val::Tuple(_), _)) => {
                Padding::Explicit(self.pair(l, key, Some([0, 0]), 0))
            }
            Some((v, loc)) => {
                self.type_error(
                    l,
                    key,
                    "an integer, a pair [h, w], `same` or `valid`",
                    &v,
                    loc,
                );
                Padding::Explicit([0, 0])
            }
            None => Padding::Explicit([0, 0]),
        }
    }

    pub(super) fn bool(&mut self, l: &mut Lowerer, key: &str, default: Option<bool>) -> bool {
        match self.get(key) {
            None => default.unwrap_or(false),
            Some((Val::Bool(b), _)) => b,
            Some((v, loc)) => {
                self.type_error(l, key, "a boolean (`true` or `false`)", &v, loc);
                false
            }
        }
    }

    pub(super) fn float(
        &mut self,
        l: &mut Lowerer,
        key: &str,
        default: Option<f64>,
        range: Range,
    ) -> f64 {
        let (x, loc) = match self.get(key) {
            None => return default.unwrap_or(0.0),
            Some((Val::Float(x), loc)) => (x, loc),
            Some((Val::Int(i), loc)) => (i as f64, loc),
            Some((v, loc)) => {
                self.type_error(l, key, "a number", &v, loc);
                return 0.0;
            }
        };
        let (ok, want) = match range {
            Range::Finite => (x.is_finite(), "finite"),
            Range::Positive => (x.is_finite() && x > 0.0, "positive"),
            Range::Unit => ((0.0..=1.0).contains(&x), "between 0 and 1"),
            Range::Probability => ((0.0..1.0).contains(&x), "at least 0 and below 1"),
        };
        if !ok {
            let msg = format!("argument `{key}` is {x}; it must be {want}");
            self.fail(l, codes::BAD_ARG_VALUE, loc, msg);
        }
        x
    }

    pub(super) fn keyword(
        &mut self,
        l: &mut Lowerer,
        key: &str,
        choices: &[&'static str],
        default: Option<&'static str>,
    ) -> &'static str {
        let fallback = default.unwrap_or(choices[0]);
        match self.get(key) {
            None => fallback,
            Some((Val::Keyword { name, .. } | Val::Str(name), loc)) => {
                match choices.iter().find(|c| **c == name) {
                    Some(c) => c,
                    None => {
                        let msg = format!(
                            "argument `{key}` must be one of {}, found `{name}`",
                            choices.join(", ")
                        );
                        self.fail(l, codes::BAD_ARG_VALUE, loc, msg);
                        fallback
                    }
                }
            }
            Some((v, loc)) => {
                let want = format!("one of {}", choices.join(", "));
                self.type_error(l, key, &want, &v, loc);
                fallback
            }
        }
    }

    fn int_list(&mut self, l: &mut Lowerer, key: &str) -> Vec<i64> {
        match self.get(key) {
            Some((Val::List(items) | Val::Tuple(items), loc)) => {
                let mut out = Vec::new();
                for it in &items {
                    match it {
                        Val::Int(i) if *i == -1 || (*i >= 1 && *i as u64 <= MAX_DIM) => {
                            out.push(*i)
                        }
                        v => {
                            self.type_error(
                                l,
                                key,
                                "a list of positive integers (one may be -1)",
                                v,
                                loc,
                            );
                            return Vec::new();
                        }
                    }
                }
                if out.is_empty() {
                    let msg = format!("argument `{key}` is an empty list");
                    self.fail(l, codes::BAD_ARG_VALUE, loc, msg);
                }
                out
            }
            Some((v, loc)) => {
                self.type_error(l, key, "a list of integers", &v, loc);
                Vec::new()
            }
            None => Vec::new(),
        }
    }
}
