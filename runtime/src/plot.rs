//! Training curves drawn with plotters: loss and accuracy per epoch, one
//! line per split (train, validation, …), to PNG or SVG.
//!
//! [`plot_history`] takes the same [`EpochRecord`]s the CSV log holds (so a
//! finished run can be plotted from its file with
//! [`crate::metrics::read_csv`]) and picks the format from the file
//! extension. Text is drawn with DejaVu Sans Mono, embedded from
//! `runtime/fonts/` (Bitstream Vera licence, beside it), so plotting needs no
//! system fonts.

use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use plotters::coord::Shift;
use plotters::prelude::*;

use crate::metrics::EpochRecord;

/// The embedded font (DejaVu Sans Mono 2.37, from Debian's
/// `fonts-dejavu-core`).
static FONT: &[u8] = include_bytes!("../fonts/DejaVuSansMono.ttf");
/// Registered under the generic name so SVG viewers fall back sensibly.
const FAMILY: &str = "sans-serif";

/// An error while drawing or writing a plot, naming the file.
#[derive(Debug, thiserror::Error)]
#[error("{path}: {reason}")]
pub struct PlotError {
    /// The file being written.
    pub path: PathBuf,
    /// What went wrong.
    pub reason: String,
}

fn register_font() -> Result<(), String> {
    static DONE: OnceLock<Result<(), String>> = OnceLock::new();
    DONE.get_or_init(|| {
        plotters::style::register_font(FAMILY, FontStyle::Normal, FONT)
            .map_err(|_| "the embedded font could not be read".to_string())
    })
    .clone()
}

/// One line of a panel: its label and its (epoch, value) points.
type Series = (String, Vec<(f64, f64)>);

/// The series of one metric, one per split, in order of first appearance.
fn series(records: &[EpochRecord], value: impl Fn(&EpochRecord) -> f64) -> Vec<Series> {
    let mut out: Vec<Series> = Vec::new();
    for r in records {
        let v = value(r);
        if !v.is_finite() {
            continue;
        }
        let p = (r.epoch as f64, v);
        match out.iter_mut().find(|(s, _)| *s == r.split) {
            Some((_, pts)) => pts.push(p),
            None => out.push((r.split.clone(), vec![p])),
        }
    }
    out
}

fn bounds(series: &[Series]) -> ((f64, f64), (f64, f64)) {
    let pts = series.iter().flat_map(|(_, p)| p.iter());
    let (mut x0, mut x1, mut y0, mut y1) = (f64::MAX, f64::MIN, f64::MAX, f64::MIN);
    for &(x, y) in pts {
        x0 = x0.min(x);
        x1 = x1.max(x);
        y0 = y0.min(y);
        y1 = y1.max(y);
    }
    if x1 <= x0 {
        x1 = x0 + 1.0;
    }
    let pad = ((y1 - y0) * 0.05).max(1e-6);
    ((x0, x1), (y0 - pad, y1 + pad))
}

const COLORS: [RGBColor; 6] = [
    RGBColor(31, 119, 180),
    RGBColor(255, 127, 14),
    RGBColor(44, 160, 44),
    RGBColor(214, 39, 40),
    RGBColor(148, 103, 189),
    RGBColor(140, 86, 75),
];

fn panel<DB: DrawingBackend>(
    area: &DrawingArea<DB, Shift>,
    title: &str,
    y_label: &str,
    data: &[Series],
) -> Result<(), String> {
    let ((x0, x1), (y0, y1)) = bounds(data);
    let mut chart = ChartBuilder::on(area)
        .caption(title, (FAMILY, 20))
        .margin(10)
        .x_label_area_size(35)
        .y_label_area_size(55)
        .build_cartesian_2d(x0..x1, y0..y1)
        .map_err(|e| e.to_string())?;
    // About one tick per epoch (at most 10), printed as integers when whole.
    let ticks = ((x1 - x0).round() as usize + 1).clamp(2, 10);
    let fmt_x = |x: &f64| {
        if x.fract() == 0.0 {
            format!("{x:.0}")
        } else {
            format!("{x:.1}")
        }
    };
    chart
        .configure_mesh()
        .x_labels(ticks)
        .x_label_formatter(&fmt_x)
        .max_light_lines(2)
        .x_desc("epoch")
        .y_desc(y_label)
        .label_style((FAMILY, 12))
        .draw()
        .map_err(|e| e.to_string())?;
    for (k, (name, pts)) in data.iter().enumerate() {
        let color = COLORS[k % COLORS.len()];
        chart
            .draw_series(LineSeries::new(pts.iter().copied(), color.stroke_width(2)))
            .map_err(|e| e.to_string())?
            .label(name.as_str())
            .legend(move |(x, y)| {
                PathElement::new(vec![(x, y), (x + 16, y)], color.stroke_width(2))
            });
        chart
            .draw_series(pts.iter().map(|&p| Circle::new(p, 3, color.filled())))
            .map_err(|e| e.to_string())?;
    }
    chart
        .configure_series_labels()
        .label_font((FAMILY, 12))
        .background_style(WHITE.mix(0.8))
        .border_style(BLACK)
        .draw()
        .map_err(|e| e.to_string())
}

fn draw<DB: DrawingBackend>(
    root: DrawingArea<DB, Shift>,
    records: &[EpochRecord],
) -> Result<(), String> {
    root.fill(&WHITE).map_err(|e| e.to_string())?;
    let (left, right) = root.split_horizontally(root.dim_in_pixel().0 / 2);
    panel(&left, "loss", "loss", &series(records, |r| r.loss))?;
    panel(
        &right,
        "accuracy",
        "accuracy (%)",
        &series(records, |r| 100.0 * r.accuracy),
    )?;
    root.present().map_err(|e| e.to_string())
}

/// Draws loss (left) and accuracy (right) against epoch, one line per
/// split, into `path` — PNG or SVG by its extension — of `width × height`
/// pixels.
pub fn plot_history(
    records: &[EpochRecord],
    path: &Path,
    (width, height): (u32, u32),
) -> Result<(), PlotError> {
    let fail = |reason: String| PlotError {
        path: path.to_path_buf(),
        reason,
    };
    if records.is_empty() {
        return Err(fail("no epoch records to plot".into()));
    }
    if width < 200 || height < 150 {
        return Err(fail(format!(
            "plot size {width}×{height} is too small (at least 200×150)"
        )));
    }
    register_font().map_err(fail)?;
    let ext = path
        .extension()
        .and_then(|e| e.to_str())
        .map(|e| e.to_ascii_lowercase());
    match ext.as_deref() {
        Some("png") => draw(
            BitMapBackend::new(path, (width, height)).into_drawing_area(),
            records,
        ),
        Some("svg") => draw(
            SVGBackend::new(path, (width, height)).into_drawing_area(),
            records,
        ),
        _ => Err("unknown plot format: the file name must end in .png or .svg".into()),
    }
    .map_err(fail)
}
