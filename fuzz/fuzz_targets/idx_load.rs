//! Fuzz target: arbitrary bytes through the IDX reader (raw and gzip paths)
//! and, when they parse, through the step that turns images and labels into
//! a data set. Nothing may panic or allocate beyond the bounded limits.
#![no_main]

use kiln_runtime::data::cifar::parse_cifar10;
use kiln_runtime::data::idx::{dataset_from_idx, parse_idx};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(arr) = parse_idx(data, "fuzz") {
        // The payload the header declared is exactly what was read.
        let declared: usize = arr.dims.iter().product();
        assert_eq!(declared, arr.data.len());
        // Try it both as images (with itself as labels) and as labels.
        let _ = dataset_from_idx(&arr, "images", &arr, "labels", 10);
    }
    let _ = parse_cifar10(data, "fuzz");
});
