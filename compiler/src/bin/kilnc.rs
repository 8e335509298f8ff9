//! `kilnc`: check, summarize and inspect kiln networks from the shell.

fn main() {
    eprintln!("kilnc: not yet implemented");
    std::process::exit(2);
}
