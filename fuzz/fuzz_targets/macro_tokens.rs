//! Fuzz target: arbitrary bytes, lexed as Rust tokens, through the macro
//! front-end (`network!`'s parser).
//!
//! Bytes that are not UTF-8 or do not lex are skipped; everything else must
//! parse (and check, through the pipeline) or give diagnostics, never panic.
#![no_main]

use std::str::FromStr;

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(text) = std::str::from_utf8(data) {
        if let Ok(tokens) = proc_macro2::TokenStream::from_str(text) {
            let parsed = kiln_compiler::frontend::tokens::parse(tokens);
            let _ = kiln_compiler::frontend::print::module(&parsed.module);
            if parsed.diagnostics.is_empty() {
                let _ = kiln_compiler::check(&parsed.module);
            }
        }
    }
});
