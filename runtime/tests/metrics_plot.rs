//! Plots written by `plot_history` are valid PNG and SVG files of the size
//! asked for.

use std::path::PathBuf;

use kiln_runtime::metrics::EpochRecord;
use kiln_runtime::plot::plot_history;

fn history() -> Vec<EpochRecord> {
    (1..=5)
        .flat_map(|e| {
            ["train", "val"].map(|split| EpochRecord {
                epoch: e,
                split: split.into(),
                loss: 2.0 / e as f64 + if split == "val" { 0.1 } else { 0.0 },
                accuracy: 1.0 - 0.5 / e as f64,
                lr: 0.1,
                images_per_s: 1000.0,
                seconds: 1.0,
            })
        })
        .collect()
}

fn out(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("kiln-plot-test-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    dir.join(name)
}

/// Plots the history to `name` at `size` and checks the file: for PNG the
/// signature, the IHDR width and height and the closing IEND chunk; for SVG
/// the root element's size, the panel titles and the closing tag.
fn check(name: &str, size: (u32, u32)) {
    let path = out(name);
    plot_history(&history(), &path, size).unwrap();
    let bytes = std::fs::read(&path).unwrap();
    if name.to_ascii_lowercase().ends_with(".png") {
        assert_eq!(&bytes[..8], b"\x89PNG\r\n\x1a\n");
        assert_eq!(&bytes[12..16], b"IHDR");
        let be = |o: usize| u32::from_be_bytes(bytes[o..o + 4].try_into().unwrap());
        assert_eq!((be(16), be(20)), size);
        assert_eq!(&bytes[bytes.len() - 8..bytes.len() - 4], b"IEND");
    } else {
        let text = String::from_utf8(bytes).unwrap();
        assert!(text.starts_with("<svg"), "{}", &text[..50]);
        let head = &text[..text.find('>').unwrap()];
        assert!(head.contains(&format!("width=\"{}\"", size.0)), "{head}");
        assert!(head.contains(&format!("height=\"{}\"", size.1)), "{head}");
        for word in ["loss", "accuracy", "train", "val", "epoch"] {
            assert!(text.contains(&format!(">\n{word}\n</text>")), "no {word}");
        }
        assert!(text.trim_end().ends_with("</svg>"));
    }
    if std::env::var_os("KILN_KEEP_PLOTS").is_none() {
        std::fs::remove_file(&path).unwrap();
    }
}

#[test]
fn png_and_svg_of_the_expected_size() {
    check("curves.png", (800, 400));
    check("curves.svg", (640, 320));
    check("CURVES.PNG", (1000, 500));
}

#[test]
fn plot_errors_name_the_file() {
    let e = plot_history(&[], &out("empty.png"), (800, 400))
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("empty.png") && e.contains("no epoch records"),
        "{e}"
    );
    let e = plot_history(&history(), &out("curves.jpg"), (800, 400))
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("curves.jpg") && e.contains(".png or .svg"),
        "{e}"
    );
    let e = plot_history(&history(), &out("tiny.png"), (10, 10))
        .unwrap_err()
        .to_string();
    assert!(e.contains("too small"), "{e}");
}
