//! `kilnc`: check, summarize and inspect kiln networks from the shell.
//!
//! `kilnc check FILE...` exits 0 when every model is valid and 1 with located
//! errors (`file:line:col`, the source line, a caret, the message) when it
//! is not; usage errors and unreadable files exit 2. `kilnc summary FILE
//! [--format json]` prints per-layer output shapes, parameters and
//! multiply-adds, and the number of kernels when shaped, fused for
//! inference, and differentiated for training; `kilnc graph FILE [--stage
//! parsed|shaped|fused|training]` prints the graph at that stage as Graphviz
//! DOT (or, with `--format text`, the IR's text dump; the parsed stage is
//! the front-end's AST, text only); `kilnc explain CODE` prints the long
//! explanation of a diagnostic code. `kilnc emit FILE` prints the Rust that
//! `network!` generates for the model, formatted with `prettyplease`;
//! `kilnc summary FILE --memory [--batch N] [--train-batch N]` prints the
//! planned arena bytes of inference (and of training, for a network with a
//! loss head) against the max-live lower bound and the no-reuse total.

use clap::{Parser, Subcommand, ValueEnum};
use kiln_compiler::codes::{code_str, parse_code};
use kiln_compiler::diag::Diagnostics;
use kiln_compiler::emit::cpu::TypeInfo;
use kiln_compiler::passes::plan_memory::MemoryPlan;
use kiln_compiler::passes::{autodiff, fuse_for_inference};
use kiln_compiler::summary::{Report, kernel_counts};
use kiln_compiler::{CheckedNetwork, frontend, plan, render};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

/// kiln's command-line compiler driver.
#[derive(Debug, Parser)]
#[command(
    name = "kilnc",
    version,
    about = "Check, summarize and inspect kiln networks"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Checks model files: exit 0 if all are valid, 1 with located errors if not.
    Check {
        /// The model files (YAML).
        #[arg(required = true)]
        files: Vec<PathBuf>,
    },
    /// Prints each layer's output shape, parameters and multiply-adds.
    Summary {
        /// The model file (YAML).
        file: PathBuf,
        /// Output format.
        #[arg(long, value_enum, default_value_t = SummaryFormat::Table)]
        format: SummaryFormat,
        /// Prints the planned memory (arena bytes) instead of the layers.
        #[arg(long, conflicts_with = "format")]
        memory: bool,
        /// With `--memory`: the inference batch size.
        #[arg(long, default_value_t = 1, requires = "memory", value_parser = clap::value_parser!(u64).range(1..))]
        batch: u64,
        /// With `--memory`: the training batch size.
        #[arg(long, default_value_t = 32, requires = "memory", value_parser = clap::value_parser!(u64).range(1..))]
        train_batch: u64,
    },
    /// Prints the Rust code that `network!` generates for the model.
    Emit {
        /// The model file (YAML).
        file: PathBuf,
    },
    /// Prints the network's graph.
    Graph {
        /// The model file (YAML).
        file: PathBuf,
        /// Output format: Graphviz DOT, or the IR's text dump (default: DOT,
        /// text for the parsed stage).
        #[arg(long, value_enum)]
        format: Option<GraphFormat>,
        /// The stage: the AST as parsed, the shaped graph, the graph fused
        /// for inference, or the joint training graph.
        #[arg(long, value_enum, default_value_t = GraphStage::Shaped)]
        stage: GraphStage,
    },
    /// Explains a diagnostic code (`kilnc explain K0120`).
    Explain {
        /// The code, such as K0120.
        code: String,
    },
}

#[derive(Debug, Clone, Copy, ValueEnum)]
enum SummaryFormat {
    Table,
    Json,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum GraphFormat {
    Dot,
    Text,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum GraphStage {
    /// The AST the front-end read, before lowering.
    Parsed,
    /// The lowered graph with every shape inferred.
    Shaped,
    /// After `fuse_for_inference`.
    Fused,
    /// The joint forward + backward graph from autodiff.
    Training,
}

/// The stack of the thread that compiles: deep ASTs (a chain of many
/// thousand steps is a chain of nested expressions) are dropped recursively.
const STACK_BYTES: usize = 1 << 30;

fn main() -> ExitCode {
    let cli = Cli::parse();
    let worker = std::thread::Builder::new()
        .name("kilnc".into())
        .stack_size(STACK_BYTES)
        .spawn(move || run(cli));
    match worker.map(|h| h.join()) {
        Ok(Ok(code)) => code,
        Ok(Err(_)) => {
            eprintln!("kilnc: internal error (the compiler panicked); please report it");
            ExitCode::from(101)
        }
        Err(e) => {
            eprintln!("kilnc: cannot start the compiler thread: {e}");
            ExitCode::from(2)
        }
    }
}

/// Runs one command.
fn run(cli: Cli) -> ExitCode {
    match cli.command {
        Command::Check { files } => {
            let mut worst = 0u8;
            for file in &files {
                match load(file) {
                    Ok(nets) => {
                        for n in &nets {
                            println!(
                                "{}: network `{}` is valid ({} layers, {} parameters)",
                                file.display(),
                                n.name,
                                n.summary.layers.len(),
                                n.summary.total_params
                            );
                        }
                    }
                    Err(code) => worst = worst.max(code),
                }
            }
            ExitCode::from(worst)
        }
        Command::Summary {
            file,
            format,
            memory,
            batch,
            train_batch,
        } => match load(&file).map_err(ExitCode::from) {
            Ok(nets) if memory => {
                for n in &nets {
                    print!("{}", memory_report(n, batch, train_batch));
                }
                ExitCode::SUCCESS
            }
            Ok(nets) => {
                for n in &nets {
                    let kernels = kernel_counts(&n.graph);
                    match format {
                        SummaryFormat::Table => {
                            println!("{}{}", n.summary.table(), kernels.line())
                        }
                        SummaryFormat::Json => println!(
                            "{}",
                            Report {
                                summary: &n.summary,
                                kernels
                            }
                            .to_json()
                        ),
                    }
                }
                ExitCode::SUCCESS
            }
            Err(code) => code,
        },
        Command::Graph {
            file,
            format,
            stage,
        } => graph(&file, format, stage),
        Command::Emit { file } => match load(&file).map_err(ExitCode::from) {
            Ok(nets) => {
                let name = file.display().to_string();
                for n in &nets {
                    match emit(n) {
                        Ok(code) => print!("{code}"),
                        Err(Emitted::Diagnostics(d)) => {
                            let source = std::fs::read_to_string(&file).unwrap_or_default();
                            eprint!("{}", render::render(&name, &source, &d));
                            return ExitCode::from(1);
                        }
                        Err(Emitted::Unparsable(e)) => {
                            eprintln!(
                                "kilnc: internal error: the code generated for `{}` does not parse: {e}; please report it",
                                n.name
                            );
                            return ExitCode::from(101);
                        }
                    }
                }
                ExitCode::SUCCESS
            }
            Err(code) => code,
        },
        Command::Explain { code } => {
            let text = parse_code(&code).and_then(kiln_compiler::explain::explain);
            match text {
                Some(t) => {
                    print!("{t}");
                    ExitCode::SUCCESS
                }
                None => {
                    let known: Vec<String> = kiln_compiler::explain::explained_codes()
                        .map(code_str)
                        .collect();
                    eprintln!(
                        "kilnc: `{code}` is not a kiln diagnostic code; the codes are {}",
                        known.join(", ")
                    );
                    ExitCode::from(2)
                }
            }
        }
    }
}

/// `kilnc graph`: prints every network of `file` at `stage`.
fn graph(file: &Path, format: Option<GraphFormat>, stage: GraphStage) -> ExitCode {
    if stage == GraphStage::Parsed {
        if format == Some(GraphFormat::Dot) {
            eprintln!("kilnc: the parsed stage is an AST, not a graph; it prints as text only");
            return ExitCode::from(2);
        }
        let source = match std::fs::read_to_string(file) {
            Ok(s) => s,
            Err(e) => {
                eprintln!("kilnc: cannot read {}: {e}", file.display());
                return ExitCode::from(2);
            }
        };
        return match frontend::parse_yaml(&source) {
            Ok(module) => {
                print!("{}", frontend::print::module(&module));
                ExitCode::SUCCESS
            }
            Err(d) => {
                eprint!(
                    "{}",
                    render::render(&file.display().to_string(), &source, &d)
                );
                ExitCode::from(1)
            }
        };
    }
    let nets = match load(file) {
        Ok(nets) => nets,
        Err(code) => return ExitCode::from(code),
    };
    for n in &nets {
        let g = match stage {
            GraphStage::Parsed | GraphStage::Shaped => n.graph.clone(),
            GraphStage::Fused => fuse_for_inference(&n.graph),
            GraphStage::Training => match autodiff(&n.graph) {
                Ok(j) => j.graph,
                Err(d) => {
                    let source = std::fs::read_to_string(file).unwrap_or_default();
                    eprint!(
                        "{}",
                        render::render(&file.display().to_string(), &source, &d)
                    );
                    return ExitCode::from(1);
                }
            },
        };
        match format.unwrap_or(GraphFormat::Dot) {
            GraphFormat::Dot => print!("{}", g.to_dot()),
            GraphFormat::Text => print!("{g}"),
        }
    }
    ExitCode::SUCCESS
}

/// Why `kilnc emit` produced no code.
#[derive(Debug)]
enum Emitted {
    /// The emitter rejected the network (an op it does not support).
    Diagnostics(Diagnostics),
    /// The generated tokens are not a Rust file (a compiler bug).
    Unparsable(syn::Error),
}

/// The generated Rust for `net`, as `network!` emits it, formatted.
fn emit(net: &CheckedNetwork) -> Result<String, Emitted> {
    let program = plan::build(&net.graph);
    let info = TypeInfo {
        docs: vec![format!(
            " The `{}` network, compiled by `kiln::network!`.",
            net.name
        )],
        public: true,
        span: proc_macro2::Span::call_site(),
    };
    let tokens = kiln_compiler::emit::cpu::emit(&program, &info).map_err(Emitted::Diagnostics)?;
    let file: syn::File = syn::parse2(tokens).map_err(Emitted::Unparsable)?;
    Ok(prettyplease::unparse(&file))
}

/// Bytes of an arena of `floats` per example at batch `batch` (f32).
fn bytes(floats: usize, batch: u64) -> u128 {
    floats as u128 * batch as u128 * 4
}

/// `n` with thousands separators.
fn grouped(n: u128) -> String {
    let digits = n.to_string();
    let mut out = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

/// One line of the memory report: the arena, the lower bound and the
/// no-reuse total of `memory` at `batch`.
fn memory_line(what: &str, memory: &MemoryPlan, batch: u64) -> String {
    let arena = bytes(memory.arena, batch);
    let lower = bytes(memory.lower_bound, batch);
    let none = bytes(memory.no_reuse, batch);
    let ratio = |a: u128, b: u128| {
        if b == 0 {
            "-".to_string()
        } else {
            format!("{:.3}", a as f64 / b as f64)
        }
    };
    format!(
        "  {what:<9} batch {batch:>4}: arena {:>13} B, lower bound {:>13} B, no reuse {:>13} B; \
         arena/lower bound {}, arena/no reuse {} ({:?})\n",
        grouped(arena),
        grouped(lower),
        grouped(none),
        ratio(arena, lower),
        ratio(arena, none),
        memory.heuristic,
    )
}

/// `kilnc summary --memory`: the planned arenas of `net`.
fn memory_report(net: &CheckedNetwork, batch: u64, train_batch: u64) -> String {
    let program = plan::build(&net.graph);
    let mut out = format!("network {} (f32 arena bytes)\n", net.name);
    out.push_str(&memory_line("inference", &program.infer.memory, batch));
    match &program.train {
        Some(t) => out.push_str(&memory_line("training", &t.routine.memory, train_batch)),
        None => out.push_str("  training  none (no loss head, or an op without a gradient)\n"),
    }
    out
}

/// Reads, parses and checks a model file; on failure prints the located
/// diagnostics and returns the exit status (1 for model errors, 2 for I/O).
fn load(path: &Path) -> Result<Vec<CheckedNetwork>, u8> {
    let source = match std::fs::read_to_string(path) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("kilnc: cannot read {}: {e}", path.display());
            return Err(2);
        }
    };
    let name = path.display().to_string();
    let report = |diags: &Diagnostics| {
        eprint!("{}", render::render(&name, &source, diags));
        1
    };
    let module = frontend::parse_yaml(&source).map_err(|d| report(&d))?;
    kiln_compiler::check(&module).map_err(|d| report(&d))
}
