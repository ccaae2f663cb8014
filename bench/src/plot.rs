//! The scaling plots, drawn by the benchmark itself as SVG files beside its JSON (`plotters`):
//! latency against calls in flight, and MB/s against value size, Tether beside go-plugin and the
//! raw pipe of the same run.

use std::path::{Path, PathBuf};

use anyhow::{anyhow, Context as _};
use plotters::prelude::*;

use crate::report::Results;
use crate::scaling::{INFLIGHT, SIZES};

/// One line of a plot: its name, colour and points.
struct Line {
    name: String,
    color: RGBColor,
    dashed: bool,
    points: Vec<(f64, f64)>,
}

const TETHER: RGBColor = RGBColor(0x1f, 0x77, 0xb4);
const GO: RGBColor = RGBColor(0xd6, 0x27, 0x28);
const PIPE: RGBColor = RGBColor(0x55, 0x55, 0x55);

fn series(r: &Results, ids: impl Iterator<Item = (f64, String)>) -> Vec<(f64, f64)> {
    ids.filter_map(|(x, id)| r.median(&id).filter(|v| *v > 0.0).map(|y| (x, y))).collect()
}

/// Draws one plot: the x axis is categorical (one evenly spaced tick per label, the
/// measured points: 1, 8, 64, 512 in flight, or the value sizes, which are themselves about
/// evenly spaced on a log scale), the y axis logarithmic.
fn draw(
    path: &Path,
    title: &str,
    x_desc: &str,
    y_desc: &str,
    x_labels: &[(f64, &str)],
    lines: &[Line],
) -> anyhow::Result<()> {
    let index = |x: f64| x_labels.iter().position(|(v, _)| (v / x - 1.0).abs() < 1e-9).map(|i| i as f64);
    let lines: Vec<(&Line, Vec<(f64, f64)>)> = lines
        .iter()
        .map(|l| (l, l.points.iter().filter_map(|&(x, y)| Some((index(x)?, y))).collect()))
        .collect();
    let ys = lines.iter().flat_map(|(_, p)| p.iter().map(|p| p.1));
    let (y_min, y_max) = ys.fold((f64::INFINITY, 0.0f64), |(lo, hi), y| (lo.min(y), hi.max(y)));
    let (y_min, y_max) = (y_min / 1.5, y_max * 1.5);
    if !(y_min.is_finite() && y_max > y_min) {
        return Err(anyhow!("no figures to plot"));
    }
    let last = x_labels.len().saturating_sub(1) as f64;
    let root = SVGBackend::new(path, (800, 500)).into_drawing_area();
    root.fill(&WHITE).map_err(|e| anyhow!("{e}"))?;
    let mut chart = ChartBuilder::on(&root)
        .caption(title, ("sans-serif", 20))
        .margin(15)
        .x_label_area_size(45)
        .y_label_area_size(70)
        .build_cartesian_2d(-0.3..last + 0.3, (y_min..y_max).log_scale())
        .map_err(|e| anyhow!("{e}"))?;
    let label_of = |x: &f64| {
        let i = x.round();
        if (x - i).abs() > 0.01 || i < 0.0 {
            return String::new();
        }
        x_labels.get(i as usize).map(|(_, l)| (*l).to_owned()).unwrap_or_default()
    };
    chart
        .configure_mesh()
        .x_desc(x_desc)
        .y_desc(y_desc)
        .x_labels(x_labels.len() * 2 + 1)
        .x_label_formatter(&label_of)
        .light_line_style(WHITE)
        .draw()
        .map_err(|e| anyhow!("{e}"))?;
    for (line, points) in lines.iter().filter(|(_, p)| !p.is_empty()) {
        let color = line.color;
        let style = ShapeStyle::from(&color).stroke_width(2);
        let series = if line.dashed {
            chart.draw_series(DashedLineSeries::new(points.clone(), 6, 4, style))
        } else {
            chart.draw_series(LineSeries::new(points.clone(), style))
        }
        .map_err(|e| anyhow!("{e}"))?;
        let dashed = line.dashed;
        series.label(line.name.clone()).legend(move |(x, y)| {
            let style = ShapeStyle::from(&color).stroke_width(2);
            // A legend sample that looks like its line: two short strokes when dashed.
            let gap = if dashed { (7, 12) } else { (10, 10) };
            EmptyElement::at((x, y))
                + PathElement::new(vec![(0, 0), (gap.0, 0)], style)
                + PathElement::new(vec![(gap.1, 0), (19, 0)], style)
        });
        chart
            .draw_series(points.iter().map(|&p| Circle::new(p, 3, ShapeStyle::from(&color).filled())))
            .map_err(|e| anyhow!("{e}"))?;
    }
    chart
        .configure_series_labels()
        .background_style(WHITE.mix(0.9))
        .border_style(BLACK)
        .position(SeriesLabelPosition::UpperLeft)
        .draw()
        .map_err(|e| anyhow!("{e}"))?;
    root.present().map_err(|e| anyhow!("{e}"))?;
    Ok(())
}

/// Draws `scaling-latency.svg` and `scaling-bandwidth.svg` into `dir`; the paths written.
pub fn draw_scaling(r: &Results, dir: &Path) -> anyhow::Result<Vec<PathBuf>> {
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    let mut written = Vec::new();

    let inflight = |who: &str, what: &str| {
        series(r, INFLIGHT.iter().map(|&n| (n as f64, format!("scale.{who}.inflight_{n}.{what}"))))
    };
    let pipe_latency = r.median("scale.pipe.inflight_1.latency");
    let mut lines = vec![
        Line {
            name: "Tether (Rust plugin, tether-host)".into(),
            color: TETHER,
            dashed: false,
            points: inflight("rust", "latency"),
        },
        Line { name: "go-plugin (gRPC)".into(), color: GO, dashed: false, points: inflight("go", "latency") },
    ];
    if let Some(p) = pipe_latency {
        lines.push(Line {
            name: "raw pipe ping-pong (1 in flight)".into(),
            color: PIPE,
            dashed: true,
            points: vec![(1.0, p), (512.0, p)],
        });
    }
    let labels: Vec<(f64, String)> = INFLIGHT.iter().map(|&n| (n as f64, n.to_string())).collect();
    let labels: Vec<(f64, &str)> = labels.iter().map(|(v, l)| (*v, l.as_str())).collect();
    let path = dir.join("scaling-latency.svg");
    draw(
        &path,
        "kv.get latency (median) against calls in flight",
        "calls in flight",
        "µs per call",
        &labels,
        &lines,
    )?;
    written.push(path);

    let size = |who: &str, what: &str| {
        series(r, SIZES.iter().map(|&(s, label)| (s as f64, format!("scale.{who}.size_{label}.{what}"))))
    };
    let lines = vec![
        Line { name: "Tether put".into(), color: TETHER, dashed: false, points: size("rust", "put") },
        Line { name: "Tether get".into(), color: TETHER, dashed: true, points: size("rust", "get") },
        Line { name: "go-plugin put (gRPC)".into(), color: GO, dashed: false, points: size("go", "put") },
        Line { name: "go-plugin get (gRPC)".into(), color: GO, dashed: true, points: size("go", "get") },
        Line { name: "raw pipe, one way".into(), color: PIPE, dashed: false, points: size("pipe", "put") },
        Line { name: "raw pipe, asked for".into(), color: PIPE, dashed: true, points: size("pipe", "get") },
    ];
    let labels: Vec<(f64, &str)> = SIZES.iter().map(|&(s, l)| (s as f64, l)).collect();
    let path = dir.join("scaling-bandwidth.svg");
    draw(&path, "MB/s of value against value size (median)", "value size", "MB/s", &labels, &lines)?;
    written.push(path);
    Ok(written)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::report::Unit;
    use crate::stats;

    #[test]
    fn both_plots_name_every_category_and_every_line() {
        let mut r = Results::default();
        for (i, n) in INFLIGHT.iter().enumerate() {
            let base = 10.0 * 4f64.powi(i as i32);
            r.add(format!("scale.rust.inflight_{n}.latency"), "s", "t", Unit::Micros, stats::one(base));
            r.add(format!("scale.go.inflight_{n}.latency"), "s", "g", Unit::Micros, stats::one(base * 9.0));
        }
        r.add("scale.pipe.inflight_1.latency", "s", "p", Unit::Micros, stats::one(5.0));
        for (i, (_, label)) in SIZES.iter().enumerate() {
            for (who, k) in [("rust", 1.0), ("go", 0.3), ("pipe", 2.0)] {
                for what in ["put", "get"] {
                    let v = k * 10f64.powi(i as i32).min(1000.0);
                    r.add(
                        format!("scale.{who}.size_{label}.{what}"),
                        "s",
                        "x",
                        Unit::MegabytesPerSec,
                        stats::one(v),
                    );
                }
            }
        }
        let dir = std::env::temp_dir().join(format!("tether-plot-test-{}", std::process::id()));
        let written = draw_scaling(&r, &dir).expect("the plots are drawn");
        assert_eq!(written.len(), 2);
        let latency = std::fs::read_to_string(dir.join("scaling-latency.svg")).expect("latency plot");
        for text in ["512", "64", "go-plugin (gRPC)", "raw pipe ping-pong", "Tether"] {
            assert!(latency.contains(text), "the latency plot lacks {text:?}");
        }
        let bandwidth = std::fs::read_to_string(dir.join("scaling-bandwidth.svg")).expect("bandwidth plot");
        for text in ["16B", "64MiB", "go-plugin get (gRPC)", "raw pipe, one way", "Tether put"] {
            assert!(bandwidth.contains(text), "the bandwidth plot lacks {text:?}");
        }
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn no_figures_is_an_error_not_an_empty_plot() {
        let dir = std::env::temp_dir().join(format!("tether-plot-empty-{}", std::process::id()));
        assert!(draw_scaling(&Results::default(), &dir).is_err());
        let _ = std::fs::remove_dir_all(&dir);
    }
}
