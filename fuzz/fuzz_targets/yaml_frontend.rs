//! Fuzz target: arbitrary bytes, as UTF-8, through the YAML front-end.
//!
//! Neither the front-end nor the pipeline after it (lowering, shape
//! inference, verification, summary) may panic: every input either checks
//! or gives located diagnostics. Seeded with the models' YAML
//! (`corpus/yaml_frontend`).
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(text) = std::str::from_utf8(data) {
        let (module, diags) = kiln_compiler::frontend::yaml::parse(text);
        // Every error is located in the file.
        for d in diags.iter() {
            if let kiln_compiler::ast::Loc::Text { offset, len, .. } = d.loc {
                assert!(offset as usize + len as usize <= text.len());
            }
        }
        let _ = kiln_compiler::frontend::print::module(&module);
        if diags.is_empty() {
            if let Ok(nets) = kiln_compiler::check(&module) {
                for net in nets {
                    let _ = net.summary.to_json();
                }
            }
        }
    }
});
