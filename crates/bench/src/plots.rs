//! Plots drawn from a saved run (`bench.json`), PNG and SVG, one function per chart:
//! accuracy vs file size, latency f32 vs int8 (batch 1 and 64), per-layer SQNR of the
//! static methods, the calibration sweep, and training curves. The font is shipped and registered at start, so
//! labels render on machines without system fonts.

use std::path::{Path, PathBuf};
use std::sync::Once;

use plotters::coord::Shift;
use plotters::prelude::*;
use plotters::style::{FontStyle, register_font};

use crate::error::{BenchError, Result};
use crate::row::Row;
use crate::run::Results;
use crate::sweep::{SweepSummary, summarize};

static FONT: Once = Once::new();
const FONT_BYTES: &[u8] = include_bytes!("../assets/DejaVuSans.ttf");
const SIZE: (u32, u32) = (1000, 620);
const PALETTE: [RGBColor; 8] = [
    RGBColor(31, 119, 180),
    RGBColor(255, 127, 14),
    RGBColor(44, 160, 44),
    RGBColor(214, 39, 40),
    RGBColor(148, 103, 189),
    RGBColor(140, 86, 75),
    RGBColor(227, 119, 194),
    RGBColor(127, 127, 127),
];

type DrawResult = std::result::Result<(), String>;

fn font() {
    FONT.call_once(|| {
        // Only fails on malformed font bytes, which are compiled in and tested.
        let _ = register_font("sans-serif", FontStyle::Normal, FONT_BYTES);
    });
}

/// Draws `f` into `<stem>.png` and `<stem>.svg`.
macro_rules! render {
    ($stem:expr, $f:expr) => {{
        let stem: &Path = $stem;
        let png = stem.with_extension("png");
        let svg = stem.with_extension("svg");
        let err = |p: &PathBuf, e: String| BenchError::Plot {
            path: p.clone(),
            message: e,
        };
        {
            let area = BitMapBackend::new(&png, SIZE).into_drawing_area();
            area.fill(&WHITE).map_err(|e| err(&png, e.to_string()))?;
            $f(&area).map_err(|e| err(&png, e))?;
            area.present().map_err(|e| err(&png, e.to_string()))?;
        }
        {
            let area = SVGBackend::new(&svg, SIZE).into_drawing_area();
            area.fill(&WHITE).map_err(|e| err(&svg, e.to_string()))?;
            $f(&area).map_err(|e| err(&svg, e))?;
            area.present().map_err(|e| err(&svg, e.to_string()))?;
        }
        Ok::<Vec<PathBuf>, BenchError>(vec![png, svg])
    }};
}

/// Draws every chart of `r` into `dir/plots/`; returns the files written.
pub fn draw_all(dir: &Path, r: &Results) -> Result<Vec<PathBuf>> {
    font();
    let out = dir.join("plots");
    std::fs::create_dir_all(&out).map_err(|source| BenchError::Io {
        path: out.clone(),
        source,
    })?;
    let mut files = Vec::new();
    let mut datasets: Vec<String> = r.rows.iter().map(|x| x.dataset.clone()).collect();
    datasets.dedup();
    for ds in &datasets {
        let rows: Vec<&Row> = r
            .rows
            .iter()
            .filter(|x| &x.dataset == ds && x.supported && x.threads == 1)
            .collect();
        files.extend(render!(
            &out.join(format!("accuracy_vs_size-{ds}")),
            |a: &DrawingArea<_, Shift>| accuracy_vs_size(a, ds, &rows)
        )?);
        // Every thread count: burn runs at rayon's, quantlab's bars pick one thread.
        let timed: Vec<&Row> = r
            .rows
            .iter()
            .filter(|x| &x.dataset == ds && x.supported)
            .collect();
        for (batch, idx) in [(1, 0), (64, 1)] {
            files.extend(render!(
                &out.join(format!("latency_b{batch}-{ds}")),
                |a: &DrawingArea<_, Shift>| latency(a, ds, &timed, batch, idx)
            )?);
        }
        let mut models: Vec<String> = rows.iter().map(|x| x.model.clone()).collect();
        models.dedup();
        for m in models {
            let with_layers: Vec<&Row> = rows
                .iter()
                .copied()
                .filter(|x| x.model == m && x.method.starts_with("static-") && !x.layers.is_empty())
                .collect();
            if !with_layers.is_empty() {
                files.extend(render!(
                    &out.join(format!("sqnr-{ds}-{m}")),
                    |a: &DrawingArea<_, Shift>| sqnr(a, ds, &m, &with_layers)
                )?);
            }
        }
    }
    let summary = summarize(&r.calib_sweep);
    let mut swept: Vec<(String, String)> = Vec::new();
    for x in &summary {
        let k = (x.dataset.clone(), x.model.clone());
        if !swept.contains(&k) {
            swept.push(k);
        }
    }
    for (ds, m) in swept {
        let lines: Vec<&SweepSummary> = summary
            .iter()
            .filter(|x| x.dataset == ds && x.model == m)
            .collect();
        files.extend(render!(
            &out.join(format!("calib-sweep-{ds}-{m}")),
            |a: &DrawingArea<_, Shift>| calib_sweep(a, &ds, &m, &lines)
        )?);
    }
    for (ds, m) in crate::bitwidth::pairs(&r.bit_sweep) {
        files.extend(render!(
            &out.join(format!("bits-{ds}-{m}")),
            |a: &DrawingArea<_, Shift>| bit_width(a, r, &ds, &m)
        )?);
    }
    if r.curves.iter().any(|c| !c.history.epochs.is_empty()) {
        files.extend(render!(&out.join("training_curves"), |a: &DrawingArea<
            _,
            Shift,
        >| curves(
            a, r
        ))?);
    }
    Ok(files)
}

fn short(method: &str) -> String {
    method
        .replace("static-", "s-")
        .replace("-per-channel", "/pc")
        .replace("-per-tensor", "/pt")
        .replace("moving-average", "movavg")
}

fn accuracy_vs_size<DB: DrawingBackend>(
    area: &DrawingArea<DB, Shift>,
    ds: &str,
    rows: &[&Row],
) -> DrawResult {
    let e = |x: DrawingAreaErrorKind<DB::ErrorType>| x.to_string();
    let rows: Vec<&&Row> = rows.iter().filter(|x| x.size_bytes > 0).collect();
    if rows.is_empty() {
        return Ok(());
    }
    let (smin, smax) = rows.iter().fold((f64::MAX, 0f64), |(a, b), x| {
        (a.min(x.size_bytes as f64), b.max(x.size_bytes as f64))
    });
    let amin = rows
        .iter()
        .map(|x| x.accuracy * 100.0)
        .fold(100f64, f64::min);
    let mut chart = ChartBuilder::on(area)
        .caption(
            format!("{ds}: test accuracy vs model file size (one point per method)"),
            ("sans-serif", 22),
        )
        .margin(15)
        .x_label_area_size(45)
        .y_label_area_size(60)
        .build_cartesian_2d(
            (smin * 0.7..smax * 1.4).log_scale(),
            (amin - 2.0).max(0.0)..100.5,
        )
        .map_err(e)?;
    chart
        .configure_mesh()
        .x_desc("file size (bytes, log scale)")
        .y_desc("test accuracy (%)")
        .draw()
        .map_err(e)?;
    let mut models: Vec<&str> = rows.iter().map(|x| x.model.as_str()).collect();
    models.dedup();
    for (i, m) in models.iter().enumerate() {
        let c = PALETTE[i % PALETTE.len()];
        let pts: Vec<(f64, f64, String)> = rows
            .iter()
            .filter(|x| x.model == *m)
            .map(|x| (x.size_bytes as f64, x.accuracy * 100.0, short(&x.method)))
            .collect();
        chart
            .draw_series(
                pts.iter()
                    .map(|(x, y, _)| Circle::new((*x, *y), 5, c.filled())),
            )
            .map_err(e)?
            .label(*m)
            .legend(move |(x, y)| Circle::new((x, y), 5, c.filled()));
        // Label a point only if no labelled point of this model sits on top of it (several
        // static methods land at the same size and accuracy); those share one label.
        let mut labelled: Vec<(f64, f64, String)> = Vec::new();
        for (x, y, l) in &pts {
            match labelled
                .iter_mut()
                .find(|(lx, ly, _)| (lx / x - 1.0).abs() < 0.05 && (ly - y).abs() < 0.4)
            {
                Some((_, _, first)) => {
                    if !first.ends_with(", ...") {
                        first.push_str(", ...");
                    }
                }
                None => labelled.push((*x, *y, l.clone())),
            }
        }
        chart
            .draw_series(labelled.iter().map(|(x, y, l)| {
                Text::new(
                    format!("  {l}"),
                    (*x, *y),
                    ("sans-serif", 12).into_font().color(&c),
                )
            }))
            .map_err(e)?;
    }
    chart
        .configure_series_labels()
        .background_style(WHITE.mix(0.8))
        .border_style(BLACK)
        .position(SeriesLabelPosition::LowerRight)
        .draw()
        .map_err(e)?;
    Ok(())
}

/// Bars per model: quantlab f32, quantlab static int8 (best accuracy), both at one thread,
/// burn flex, burn ndarray (when built), at the thread count burn ran with (in the legend);
/// error bars span the row's min-max over the timing rounds.
fn latency<DB: DrawingBackend>(
    area: &DrawingArea<DB, Shift>,
    ds: &str,
    rows: &[&Row],
    batch: usize,
    idx: usize,
) -> DrawResult {
    let e = |x: DrawingAreaErrorKind<DB::ErrorType>| x.to_string();
    let mut models: Vec<&str> = rows.iter().map(|x| x.model.as_str()).collect();
    models.dedup();
    let lat = |x: &Row| {
        if idx == 0 {
            x.latency_b1_us
        } else {
            x.latency_b64_us
        }
    };
    let rounds = |x: &Row| -> Option<(f64, f64)> {
        let r = if idx == 0 {
            &x.latency_b1_rounds_us
        } else {
            &x.latency_b64_rounds_us
        };
        (r.len() > 1).then(|| {
            r.iter()
                .fold((f64::INFINITY, 0f64), |(lo, hi), &v| (lo.min(v), hi.max(v)))
        })
    };
    let series = [
        "quantlab f32",
        "quantlab int8 (static)",
        "burn flex f32",
        "burn ndarray f32",
    ];
    let pick_row = |m: &str, s: usize| -> Option<&Row> {
        let f = |x: &&&Row| x.model == m;
        let found = match s {
            0 => rows.iter().filter(f).find(|x| x.is_reference()),
            1 => {
                return crate::row::headline(rows.iter().copied().filter(|x| x.model == m));
            }
            2 => rows
                .iter()
                .filter(f)
                .find(|x| x.method == "f32" && x.backend == "burn-flex" && x.device == "cpu"),
            _ => rows
                .iter()
                .filter(f)
                .find(|x| x.method == "f32" && x.backend == "burn-ndarray"),
        };
        found.map(|x| &**x)
    };
    let pick = |m: &str, s: usize| pick_row(m, s).map(lat);
    let vals: Vec<f64> = models
        .iter()
        .flat_map(|m| {
            (0..4).flat_map(move |s| {
                let r = pick_row(m, s);
                [r.map(lat), r.and_then(rounds).map(|(_, hi)| hi)]
            })
        })
        .flatten()
        .collect();
    if vals.is_empty() {
        return Ok(());
    }
    let (vmin, vmax) = vals
        .iter()
        .fold((f64::MAX, 0f64), |(a, b), v| (a.min(*v), b.max(*v)));
    let mut chart = ChartBuilder::on(area)
        .caption(
            format!(
                "{ds}: inference latency at batch {batch} (median over rounds, bars: min-max; lower is better)"
            ),
            ("sans-serif", 22),
        )
        .margin(15)
        .x_label_area_size(45)
        .y_label_area_size(70)
        .build_cartesian_2d(
            0f64..models.len() as f64,
            (vmin * 0.5..vmax * 2.0).log_scale(),
        )
        .map_err(e)?;
    let names = models.clone();
    chart
        .configure_mesh()
        .disable_x_mesh()
        .x_labels(models.len() * 2 + 1)
        .x_label_formatter(&|v| {
            let i = (*v - 0.5).round();
            if (v - 0.5 - i).abs() < 1e-6 && i >= 0.0 && (i as usize) < names.len() {
                names[i as usize].to_string()
            } else {
                String::new()
            }
        })
        .x_desc("model")
        .y_desc("latency (microseconds, log scale)")
        .draw()
        .map_err(e)?;
    let w = 0.8 / series.len() as f64;
    for (s, name) in series.iter().enumerate() {
        let c = PALETTE[s];
        let bars: Vec<Rectangle<(f64, f64)>> = models
            .iter()
            .enumerate()
            .filter_map(|(i, m)| pick(m, s).map(|v| (i, v)))
            .map(|(i, v)| {
                let x0 = i as f64 + 0.1 + s as f64 * w;
                Rectangle::new([(x0, vmin * 0.5), (x0 + w * 0.9, v)], c.filled())
            })
            .collect();
        // A series with no bar (burn ndarray not built, or timed only at other thread
        // counts) stays out of the legend.
        if bars.is_empty() {
            continue;
        }
        let threads = models
            .iter()
            .find_map(|m| pick_row(m, s))
            .map_or(1, |r| r.threads);
        let label = format!(
            "{name} ({threads} thread{})",
            if threads == 1 { "" } else { "s" }
        );
        chart
            .draw_series(bars)
            .map_err(e)?
            .label(label)
            .legend(move |(x, y)| Rectangle::new([(x, y - 5), (x + 10, y + 5)], c.filled()));
        // Min-max over the timing rounds.
        let whiskers: Vec<PathElement<(f64, f64)>> = models
            .iter()
            .enumerate()
            .filter_map(|(i, m)| pick_row(m, s).and_then(rounds).map(|r| (i, r)))
            .map(|(i, (lo, hi))| {
                let xc = i as f64 + 0.1 + s as f64 * w + w * 0.45;
                PathElement::new(vec![(xc, lo), (xc, hi)], BLACK.stroke_width(2))
            })
            .collect();
        chart.draw_series(whiskers).map_err(e)?;
    }
    chart
        .configure_series_labels()
        .background_style(WHITE.mix(0.8))
        .border_style(BLACK)
        .position(SeriesLabelPosition::UpperLeft)
        .draw()
        .map_err(e)?;
    Ok(())
}

fn sqnr<DB: DrawingBackend>(
    area: &DrawingArea<DB, Shift>,
    ds: &str,
    model: &str,
    rows: &[&Row],
) -> DrawResult {
    let e = |x: DrawingAreaErrorKind<DB::ErrorType>| x.to_string();
    let layers = rows[0].layers.len();
    let vmax = rows
        .iter()
        .flat_map(|r| r.layers.iter().map(|l| l.sqnr_db))
        .filter(|v| v.is_finite())
        .fold(0f64, f64::max);
    let names: Vec<String> = rows[0]
        .layers
        .iter()
        .map(|l| l.name.split(' ').take(2).collect::<Vec<_>>().join(" "))
        .collect();
    let mut chart = ChartBuilder::on(area)
        .caption(
            format!("{ds}/{model}: per-layer SQNR of the static int8 methods (higher is better)"),
            ("sans-serif", 22),
        )
        .margin(15)
        .x_label_area_size(45)
        .y_label_area_size(60)
        .build_cartesian_2d(0f64..layers as f64, 0f64..vmax * 1.15 + 1.0)
        .map_err(e)?;
    chart
        .configure_mesh()
        .disable_x_mesh()
        .x_labels(layers * 2 + 1)
        .x_label_formatter(&|v| {
            let i = (*v - 0.5).round();
            if (v - 0.5 - i).abs() < 1e-6 && i >= 0.0 && (i as usize) < names.len() {
                format!("{} {}", i as usize + 1, names[i as usize])
            } else {
                String::new()
            }
        })
        .x_desc("layer (in order)")
        .y_desc("SQNR (dB) of the layer output vs float")
        .draw()
        .map_err(e)?;
    let w = 0.8 / rows.len() as f64;
    for (s, r) in rows.iter().enumerate() {
        let c = PALETTE[s % PALETTE.len()];
        let bars: Vec<Rectangle<(f64, f64)>> = r
            .layers
            .iter()
            .enumerate()
            .map(|(i, l)| {
                let x0 = i as f64 + 0.1 + s as f64 * w;
                Rectangle::new(
                    [
                        (x0, 0.0),
                        (
                            x0 + w * 0.9,
                            if l.sqnr_db.is_finite() {
                                l.sqnr_db
                            } else {
                                vmax
                            },
                        ),
                    ],
                    c.filled(),
                )
            })
            .collect();
        chart
            .draw_series(bars)
            .map_err(e)?
            .label(short(&r.method))
            .legend(move |(x, y)| Rectangle::new([(x, y - 5), (x + 10, y + 5)], c.filled()));
    }
    chart
        .configure_series_labels()
        .background_style(WHITE.mix(0.8))
        .border_style(BLACK)
        .position(SeriesLabelPosition::UpperRight)
        .draw()
        .map_err(e)?;
    Ok(())
}

fn curves<DB: DrawingBackend>(area: &DrawingArea<DB, Shift>, r: &Results) -> DrawResult {
    let e = |x: DrawingAreaErrorKind<DB::ErrorType>| x.to_string();
    let (left, right) = area.split_horizontally(SIZE.0 / 2);
    let max_epoch = r
        .curves
        .iter()
        .map(|c| c.history.epochs.len())
        .max()
        .unwrap_or(1)
        .max(2) as f64;
    let max_loss = r
        .curves
        .iter()
        .flat_map(|c| {
            c.history
                .epochs
                .iter()
                .flat_map(|h| [h.train_loss, h.val_loss])
        })
        .fold(0f64, f64::max);
    let min_acc = r
        .curves
        .iter()
        .flat_map(|c| c.history.epochs.iter().map(|h| h.val_accuracy * 100.0))
        .fold(100f64, f64::min);
    for (panel, is_loss) in [(&left, true), (&right, false)] {
        let y = if is_loss {
            0.0..max_loss * 1.1
        } else {
            (min_acc - 2.0).max(0.0)..100.5
        };
        let mut chart = ChartBuilder::on(panel)
            .caption(
                if is_loss {
                    "validation loss per epoch"
                } else {
                    "validation accuracy per epoch"
                },
                ("sans-serif", 20),
            )
            .margin(12)
            .x_label_area_size(40)
            .y_label_area_size(55)
            .build_cartesian_2d(0.5..max_epoch + 0.5, y)
            .map_err(e)?;
        chart
            .configure_mesh()
            .x_desc("epoch")
            .y_desc(if is_loss {
                "cross-entropy"
            } else {
                "accuracy (%)"
            })
            .draw()
            .map_err(e)?;
        for (i, c) in r.curves.iter().enumerate() {
            let col = PALETTE[i % PALETTE.len()];
            let pts: Vec<(f64, f64)> = c
                .history
                .epochs
                .iter()
                .map(|h| {
                    (
                        h.epoch as f64,
                        if is_loss {
                            h.val_loss
                        } else {
                            h.val_accuracy * 100.0
                        },
                    )
                })
                .collect();
            chart
                .draw_series(LineSeries::new(pts.clone(), col.stroke_width(2)))
                .map_err(e)?
                .label(format!("{}/{}", c.dataset, c.model))
                .legend(move |(x, y)| {
                    PathElement::new(vec![(x, y), (x + 15, y)], col.stroke_width(2))
                });
            chart
                .draw_series(pts.iter().map(|p| Circle::new(*p, 3, col.filled())))
                .map_err(e)?;
        }
        chart
            .configure_series_labels()
            .background_style(WHITE.mix(0.8))
            .border_style(BLACK)
            .position(if is_loss {
                SeriesLabelPosition::UpperRight
            } else {
                SeriesLabelPosition::LowerRight
            })
            .draw()
            .map_err(e)?;
    }
    Ok(())
}

/// Test accuracy against bit width: one line per PTQ observer, QAT from the matrix's
/// `qat-wNaN` rows, the float model as a dashed line.
fn bit_width<DB: DrawingBackend>(
    area: &DrawingArea<DB, Shift>,
    r: &Results,
    ds: &str,
    model: &str,
) -> DrawResult {
    let e = |x: DrawingAreaErrorKind<DB::ErrorType>| x.to_string();
    let pts: Vec<&crate::bitwidth::BitPoint> = r
        .bit_sweep
        .iter()
        .filter(|p| p.dataset == ds && p.model == model)
        .collect();
    let mut observers: Vec<&str> = Vec::new();
    for p in &pts {
        if !observers.contains(&p.observer.as_str()) {
            observers.push(&p.observer);
        }
    }
    let float = r
        .rows
        .iter()
        .find(|x| x.dataset == ds && x.model == model && x.method == "f32")
        .map(|x| x.accuracy * 100.0);
    let qat: Vec<(f64, f64)> = (2..=8u8)
        .filter_map(|b| {
            crate::bitwidth::qat_accuracy(&r.rows, ds, model, b).map(|a| (b as f64, a * 100.0))
        })
        .collect();
    let ys = pts
        .iter()
        .map(|p| p.accuracy * 100.0)
        .chain(qat.iter().map(|q| q.1))
        .chain(float);
    let ymin = ys.fold(100f64, f64::min).max(0.0);
    let mut chart = ChartBuilder::on(area)
        .caption(
            format!("{ds}/{model}: test accuracy vs bit width (W=A; input and logits 8-bit)"),
            ("sans-serif", 18),
        )
        .margin(14)
        .x_label_area_size(40)
        .y_label_area_size(55)
        .build_cartesian_2d(1.5f64..8.5f64, (ymin - 2.0).max(0.0)..100.5)
        .map_err(e)?;
    chart
        .configure_mesh()
        .x_desc("bits (weights = activations)")
        .y_desc("test accuracy (%)")
        .draw()
        .map_err(e)?;
    for (i, o) in observers.iter().enumerate() {
        let col = PALETTE[i % PALETTE.len()];
        let mut xy: Vec<(f64, f64)> = pts
            .iter()
            .filter(|p| p.observer == *o)
            .map(|p| (p.bits as f64, p.accuracy * 100.0))
            .collect();
        xy.sort_by(|a, b| a.0.total_cmp(&b.0));
        chart
            .draw_series(LineSeries::new(xy.clone(), col.stroke_width(2)))
            .map_err(e)?
            .label(format!("PTQ {o}"))
            .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 15, y)], col.stroke_width(2)));
        chart
            .draw_series(xy.iter().map(|p| Circle::new(*p, 3, col.filled())))
            .map_err(e)?;
    }
    if !qat.is_empty() {
        let col = BLACK;
        chart
            .draw_series(LineSeries::new(qat.clone(), col.stroke_width(3)))
            .map_err(e)?
            .label("QAT")
            .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 15, y)], col.stroke_width(3)));
        chart
            .draw_series(qat.iter().map(|p| TriangleMarker::new(*p, 6, col.filled())))
            .map_err(e)?;
    }
    if let Some(f) = float {
        chart
            .draw_series(DashedLineSeries::new(
                vec![(1.5, f), (8.5, f)],
                6,
                4,
                BLACK.mix(0.5).stroke_width(1),
            ))
            .map_err(e)?
            .label("float")
            .legend(|(x, y)| PathElement::new(vec![(x, y), (x + 15, y)], BLACK.mix(0.5)));
    }
    chart
        .configure_series_labels()
        .position(SeriesLabelPosition::LowerRight)
        .background_style(WHITE.mix(0.85))
        .border_style(BLACK)
        .draw()
        .map_err(e)?;
    Ok(())
}

/// Accuracy drop (mean, bars from best to worst seed) and weakest-layer SQNR against the
/// number of calibration images, one line per observer, on a log axis.
fn calib_sweep<DB: DrawingBackend>(
    area: &DrawingArea<DB, Shift>,
    ds: &str,
    model: &str,
    lines: &[&SweepSummary],
) -> DrawResult {
    let e = |x: DrawingAreaErrorKind<DB::ErrorType>| x.to_string();
    let (left, right) = area.split_horizontally(SIZE.0 / 2);
    let lo = lines.iter().map(|x| x.size).min().unwrap_or(1) as f64;
    let hi = (lines.iter().map(|x| x.size).max().unwrap_or(2) as f64).max(lo * 2.0);
    let mut observers: Vec<&str> = Vec::new();
    for x in lines {
        if !observers.contains(&x.observer.as_str()) {
            observers.push(&x.observer);
        }
    }
    let range = |v: &mut dyn Iterator<Item = f64>| {
        v.fold((f64::INFINITY, f64::NEG_INFINITY), |(a, b), x| {
            if x.is_finite() {
                (a.min(x), b.max(x))
            } else {
                (a, b)
            }
        })
    };
    for (panel, is_drop) in [(&left, true), (&right, false)] {
        let (ymin, ymax) = if is_drop {
            range(&mut lines.iter().flat_map(|x| [x.drop_min_pp, x.drop_max_pp]))
        } else {
            range(&mut lines.iter().map(|x| x.worst_layer_sqnr_db))
        };
        let pad = ((ymax - ymin) * 0.08).max(0.05);
        let mut chart = ChartBuilder::on(panel)
            .caption(
                if is_drop {
                    format!("{ds}/{model}: accuracy drop vs calibration images")
                } else {
                    format!("{ds}/{model}: weakest layer SQNR")
                },
                ("sans-serif", 17),
            )
            .margin(12)
            .x_label_area_size(40)
            .y_label_area_size(55)
            .build_cartesian_2d((lo / 1.3..hi * 1.3).log_scale(), ymin - pad..ymax + pad)
            .map_err(e)?;
        chart
            .configure_mesh()
            .x_desc("calibration images (log)")
            .y_desc(if is_drop {
                "drop (pp), seed range"
            } else {
                "SQNR (dB)"
            })
            .draw()
            .map_err(e)?;
        for (i, o) in observers.iter().enumerate() {
            let col = PALETTE[i % PALETTE.len()];
            let pts: Vec<&&SweepSummary> = lines.iter().filter(|x| x.observer == *o).collect();
            let xy: Vec<(f64, f64)> = pts
                .iter()
                .map(|x| {
                    let y = if is_drop {
                        x.drop_mean_pp
                    } else {
                        x.worst_layer_sqnr_db
                    };
                    (x.size as f64, y)
                })
                .collect();
            chart
                .draw_series(LineSeries::new(xy.clone(), col.stroke_width(2)))
                .map_err(e)?
                .label(o.to_string())
                .legend(move |(x, y)| {
                    PathElement::new(vec![(x, y), (x + 15, y)], col.stroke_width(2))
                });
            chart
                .draw_series(xy.iter().map(|p| Circle::new(*p, 3, col.filled())))
                .map_err(e)?;
            if is_drop {
                chart
                    .draw_series(pts.iter().map(|x| {
                        let xs = x.size as f64;
                        PathElement::new(
                            vec![(xs, x.drop_min_pp), (xs, x.drop_max_pp)],
                            col.stroke_width(1),
                        )
                    }))
                    .map_err(e)?;
            }
        }
        chart
            .configure_series_labels()
            .background_style(WHITE.mix(0.8))
            .border_style(BLACK)
            .position(if is_drop {
                SeriesLabelPosition::UpperRight
            } else {
                SeriesLabelPosition::LowerRight
            })
            .draw()
            .map_err(e)?;
    }
    Ok(())
}
