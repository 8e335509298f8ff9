//! `kilnc`: check, summarize and inspect kiln networks from the shell.
//!
//! `kilnc check FILE...` exits 0 when every model is valid and 1 with located
//! errors (`file:line:col`, the source line, a caret, the message) when it
//! is not; usage errors and unreadable files exit 2. `kilnc summary FILE
//! [--format json]` prints per-layer output shapes, parameters and
//! multiply-adds; `kilnc graph FILE` prints Graphviz DOT (or, with `--format
//! text`, the IR's text dump); `kilnc explain CODE` prints the long
//! explanation of a diagnostic code.

use clap::{Parser, Subcommand, ValueEnum};
use kiln_compiler::codes::{code_str, parse_code};
use kiln_compiler::diag::Diagnostics;
use kiln_compiler::{CheckedNetwork, frontend, render};
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
    },
    /// Prints the network's graph.
    Graph {
        /// The model file (YAML).
        file: PathBuf,
        /// Output format: Graphviz DOT, or the IR's text dump.
        #[arg(long, value_enum, default_value_t = GraphFormat::Dot)]
        format: GraphFormat,
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

#[derive(Debug, Clone, Copy, ValueEnum)]
enum GraphFormat {
    Dot,
    Text,
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
        Command::Summary { file, format } => match load(&file).map_err(ExitCode::from) {
            Ok(nets) => {
                for n in &nets {
                    match format {
                        SummaryFormat::Table => print!("{}", n.summary.table()),
                        SummaryFormat::Json => println!("{}", n.summary.to_json()),
                    }
                }
                ExitCode::SUCCESS
            }
            Err(code) => code,
        },
        Command::Graph { file, format } => match load(&file).map_err(ExitCode::from) {
            Ok(nets) => {
                for n in &nets {
                    match format {
                        GraphFormat::Dot => print!("{}", n.graph.to_dot()),
                        GraphFormat::Text => print!("{}", n.graph),
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
