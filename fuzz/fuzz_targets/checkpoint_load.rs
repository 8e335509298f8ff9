//! Fuzz target: arbitrary bytes as a safetensors checkpoint. Parsing,
//! strict loading into a small model and partial loading with renaming (with
//! and without dtype conversion) must return errors, never panic, and never
//! allocate beyond the input's size.
#![no_main]

use kiln_runtime::checkpoint::{self, PartialLoad, TensorFile};
use kiln_runtime::params::{ParamLayout, Params};
use libfuzzer_sys::fuzz_target;

fn model() -> Params {
    let layout = ParamLayout::from_specs([("w.weight", &[2, 3][..]), ("w.bias", &[2][..])])
        .expect("a fixed, valid layout");
    let bufs = ParamLayout::from_specs([("bn.running_var", &[2][..])]).expect("a fixed, valid layout");
    Params::new(layout, bufs).expect("distinct names")
}

fuzz_target!(|data: &[u8]| {
    let Ok(file) = TensorFile::from_bytes(data.to_vec(), "fuzz.safetensors") else {
        return;
    };
    for t in file.tensors() {
        let _ = file.f32_values(&t.name);
        let _ = file.converted_f32_values(&t.name);
    }
    let mut p = model();
    let _ = checkpoint::load_from(&file, &mut p);
    let spec = PartialLoad::new().rule("a.*", "w.*").rule("*", "bn.*");
    let _ = checkpoint::load_partial_from(&file, &mut p, &spec);
    let _ = checkpoint::load_partial_from(&file, &mut p, &spec.converting());
});
