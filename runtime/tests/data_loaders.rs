//! Loaders on the real data sets (MNIST, the digits CSV and the CIFAR-10 sample from the
//! project's `data/`, Fashion-MNIST from `../shared/data` or `KILN_DATA`
//! when present) and on corrupt inputs, which must give clear errors.

use std::io::Write;
use std::path::PathBuf;

use kiln_runtime::data::cifar::parse_cifar10;
use kiln_runtime::data::digits::parse_digits_csv;
use kiln_runtime::data::idx::parse_idx;
use kiln_runtime::data::{
    Dataset, Normalize, Split, data_dir, load_cifar10, load_digits, load_mnist, locate,
};

/// What a loaded data set must show.
struct Expect {
    len: usize,
    shape: [usize; 3],
    counts: Option<&'static [usize]>,
    first_labels: &'static [u8],
}

fn check(data: &Dataset, expect: Expect) {
    assert_eq!(data.len(), expect.len);
    assert_eq!(data.shape, expect.shape);
    assert_eq!(data.images.len(), expect.len * data.image_len());
    if let Some(c) = expect.counts {
        assert_eq!(data.class_counts(), c);
    }
    assert_eq!(
        &data.labels[..expect.first_labels.len()],
        expect.first_labels
    );
    assert!(data.images.iter().all(|&x| (0.0..=1.0).contains(&x)));
}

#[test]
fn mnist_from_the_project_data_folder() {
    let dir = data_dir().join("mnist");
    let t = std::time::Instant::now();
    let train = load_mnist(&dir, Split::Train).unwrap();
    let test = load_mnist(&dir, Split::Test).unwrap();
    eprintln!("decoded MNIST (70,000 images) in {:?}", t.elapsed());
    check(
        &train,
        Expect {
            len: 60_000,
            shape: [1, 28, 28],
            counts: Some(&[5923, 6742, 5958, 6131, 5842, 5421, 5918, 6265, 5851, 5949]),
            first_labels: &[5, 0, 4, 1, 9, 2, 1, 3, 1, 4],
        },
    );
    check(
        &test,
        Expect {
            len: 10_000,
            shape: [1, 28, 28],
            counts: None,
            first_labels: &[7, 2, 1, 0, 4, 1, 4, 9, 5, 9],
        },
    );
    // Pixel values are exactly byte/255: the first image has 0 and 1.
    let first = train.image(0);
    assert_eq!(first[0], 0.0);
    assert!(first.contains(&1.0));
    // The usual normalization constants are this training set's statistics.
    let stats = Normalize::from_data(&train);
    assert!((stats.mean[0] - 0.1307).abs() < 5e-5, "{stats:?}");
    assert!((stats.std[0] - 0.3081).abs() < 5e-5, "{stats:?}");
    assert_eq!(stats, Normalize::from_data(&train.first(60_000)));
}

#[test]
fn cifar10_sample_labels() {
    let d = load_cifar10(&data_dir().join("cifar10-sample/test_batch_first20.bin")).unwrap();
    check(
        &d,
        Expect {
            len: 20,
            shape: [3, 32, 32],
            counts: None,
            first_labels: &[3, 8, 8, 0, 6, 6, 1, 6, 3, 1, 0, 9, 5, 7, 9, 8, 5, 7, 8, 6],
        },
    );
}

#[test]
fn sklearn_digits() {
    let d = load_digits(&data_dir().join("digits/digits.csv.gz")).unwrap();
    check(
        &d,
        Expect {
            len: 1797,
            shape: [1, 8, 8],
            counts: Some(&[178, 182, 177, 183, 181, 182, 181, 179, 174, 180]),
            first_labels: &[0, 1, 2, 3, 4, 5, 6, 7, 8, 9],
        },
    );
    // The first row begins 0,0,5,13,9,1 (values out of 16).
    assert_eq!(
        &d.image(0)[..6],
        &[0.0, 0.0, 5.0 / 16.0, 13.0 / 16.0, 9.0 / 16.0, 1.0 / 16.0]
    );
}

#[test]
fn corrupt_digits_csv() {
    let row = |label: &str| format!("{}{label}\n", "1,".repeat(64));
    let cases = [
        (row("3"), None),
        (
            row("10"),
            Some("line 1, field 65: 10 is not an integer in 0..=9"),
        ),
        (format!("{}{}", row("1"), "1,2\n"), Some("line 2: 2 fields")),
        (row("x"), Some("line 1, field 65: `x` is not a number")),
        (String::new(), Some("no rows")),
    ];
    for (text, expect) in cases {
        let got = parse_digits_csv(text.as_bytes(), "d.csv");
        match expect {
            None => assert_eq!(got.unwrap().labels, [3]),
            Some(e) => {
                let msg = got.unwrap_err().to_string();
                assert!(
                    msg.starts_with("d.csv") && msg.contains(e),
                    "`{msg}` lacks `{e}`"
                );
            }
        }
    }
}

/// Fashion-MNIST is not committed; look for it under `KILN_DATA`, then in a
/// `shared/data` folder beside the checkout (CI) or inside it.
fn fashion_dir() -> Option<PathBuf> {
    let root = data_dir().join("..");
    locate("fashion-mnist").or_else(|| {
        ["../shared/data/fashion-mnist", "shared/data/fashion-mnist"]
            .iter()
            .map(|p| root.join(p))
            .find(|p| p.is_dir())
    })
}

#[test]
fn fashion_mnist_when_present() {
    let Some(dir) = fashion_dir() else {
        println!("note: Fashion-MNIST not found (../shared/data or KILN_DATA); skipped");
        return;
    };
    let train = load_mnist(&dir, Split::Train).unwrap();
    let test = load_mnist(&dir, Split::Test).unwrap();
    check(
        &train,
        Expect {
            len: 60_000,
            shape: [1, 28, 28],
            counts: Some(&[6000; 10]),
            first_labels: &[],
        },
    );
    check(
        &test,
        Expect {
            len: 10_000,
            shape: [1, 28, 28],
            counts: Some(&[1000; 10]),
            first_labels: &[],
        },
    );
}

/// An IDX header with the given magic and dimensions, then `payload` bytes.
fn idx(magic: u32, dims: &[u32], payload: usize) -> Vec<u8> {
    let mut v = magic.to_be_bytes().to_vec();
    for d in dims {
        v.extend_from_slice(&d.to_be_bytes());
    }
    v.extend(std::iter::repeat_n(7u8, payload));
    v
}

fn gzip(bytes: &[u8]) -> Vec<u8> {
    let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    e.write_all(bytes).unwrap();
    e.finish().unwrap()
}

/// Parses `bytes` (raw and, when `also_gzip`, gzipped) and checks that the
/// error names the file and contains `expect`.
fn check_err(bytes: &[u8], also_gzip: bool, expect: &str) {
    let mut inputs = vec![("raw", bytes.to_vec())];
    if also_gzip {
        inputs.push(("gz", gzip(bytes)));
    }
    for (kind, b) in inputs {
        let name = format!("corrupt.{kind}");
        let e = parse_idx(&b, &name).unwrap_err().to_string();
        assert!(
            e.starts_with(&name) && e.contains(expect),
            "{kind}: `{e}` lacks `{expect}`"
        );
    }
}

#[test]
fn corrupt_idx_inputs_give_clear_errors() {
    check_err(&[], false, "neither an IDX file");
    check_err(b"PK\x03\x04", false, "starts with 50 4b 03 04");
    check_err(&[0, 0], true, "truncated");
    check_err(&idx(0x0000_0903, &[1], 1), true, "element type 0x09");
    check_err(&idx(0x0000_0800, &[], 0), true, "0 dimensions");
    check_err(&idx(0x0000_0803, &[2, 28], 0), true, "truncated header");
    check_err(
        &idx(0x0000_0803, &[2, 28, 28], 1000),
        true,
        "declare 1568 bytes",
    );
    check_err(&idx(0x0000_0803, &[2, 28, 28], 1000), true, "truncated");
    check_err(&idx(0x0000_0801, &[3], 4), true, "trailing bytes");
    // Huge declared dimensions: rejected before any allocation.
    check_err(
        &idx(0x0000_0803, &[u32::MAX, u32::MAX, u32::MAX], 16),
        true,
        "MiB limit",
    );
    check_err(
        &idx(0x0000_0803, &[60_000, 1 << 15, 1 << 15], 16),
        true,
        "MiB limit",
    );
    // A valid header with a short payload that is cut mid-stream.
    let good = gzip(&idx(0x0000_0801, &[4000], 4000));
    let e = parse_idx(&good[..good.len() / 2], "cut.gz")
        .unwrap_err()
        .to_string();
    assert!(e.starts_with("cut.gz"), "{e}");
}

#[test]
fn mismatched_files_name_both() {
    let dir = std::env::temp_dir().join(format!("kiln-data-test-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let write = |name: &str, b: &[u8]| std::fs::write(dir.join(name), b).unwrap();
    write("train-images-idx3-ubyte", &idx(0x0803, &[3, 2, 2], 12));
    write("train-labels-idx1-ubyte", &idx(0x0801, &[2], 2));
    let e = load_mnist(&dir, Split::Train).unwrap_err().to_string();
    assert!(
        e.contains("count mismatch")
            && e.contains("holds 3 images")
            && e.contains("holds 2 labels"),
        "{e}"
    );
    // Labels in the images' slot: a magic-number error naming the file.
    write("train-images-idx3-ubyte", &idx(0x0801, &[2], 2));
    let e = load_mnist(&dir, Split::Train).unwrap_err().to_string();
    assert!(
        e.contains("train-images-idx3-ubyte") && e.contains("is not 2051"),
        "{e}"
    );
    // A label beyond the ten classes.
    write("train-images-idx3-ubyte", &idx(0x0803, &[2, 2, 2], 8));
    write("train-labels-idx1-ubyte", &[0, 0, 8, 1, 0, 0, 0, 2, 3, 10]);
    let e = load_mnist(&dir, Split::Train).unwrap_err().to_string();
    assert!(e.contains("label 10 of example 1"), "{e}");
    // A missing file.
    let e = load_mnist(&dir, Split::Test).unwrap_err().to_string();
    assert!(e.contains("t10k-images-idx3-ubyte"), "{e}");
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn corrupt_cifar_inputs() {
    let cases: &[(Vec<u8>, &str)] = &[
        (vec![], "empty file"),
        (
            vec![0; 3073 * 2 + 5],
            "not a multiple of the 3073-byte record (2 whole records and 5 bytes left)",
        ),
        (
            {
                let mut v = vec![0; 3073 * 2];
                v[3073] = 12;
                v
            },
            "record 1 (byte offset 3073) has label 12",
        ),
    ];
    for (bytes, expect) in cases {
        let e = parse_cifar10(bytes, "x.bin").unwrap_err().to_string();
        assert!(
            e.starts_with("x.bin") && e.contains(expect),
            "`{e}` lacks `{expect}`"
        );
    }
}
