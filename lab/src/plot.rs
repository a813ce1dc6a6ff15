//! Plots of a run, as SVG and PNG (`plotters`): TTFF CDF, buffer level of the sampled plays,
//! origin vs edge traffic. Text needs a TrueType font: the first of `SEGUE_FONT` and the
//! usual DejaVu/Liberation paths that exists (Debian: `fonts-dejavu-core`); without one the
//! plots are skipped with a warning, the numbers are still written.

use std::path::Path;
use std::sync::OnceLock;

use plotters::coord::Shift;
use plotters::prelude::*;

use super::matrix::{CellKey, CellResult, MatrixSpec};
use super::run::{Outcome, System};
use super::summary::Summary;

const FONT_PATHS: [&str; 3] = [
    "/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf",
    "/usr/share/fonts/truetype/liberation/LiberationSans-Regular.ttf",
    "/usr/share/fonts/TTF/DejaVuSans.ttf",
];

/// Registers a font once; false when none was found.
fn font() -> bool {
    static FOUND: OnceLock<bool> = OnceLock::new();
    *FOUND.get_or_init(|| {
        let candidates = std::env::var("SEGUE_FONT")
            .ok()
            .into_iter()
            .chain(FONT_PATHS.iter().map(|s| s.to_string()));
        for path in candidates {
            if let Ok(bytes) = std::fs::read(&path) {
                // plotters keeps fonts for the life of the process.
                let bytes: &'static [u8] = Box::leak(bytes.into_boxed_slice());
                if plotters::style::register_font("sans-serif", FontStyle::Normal, bytes).is_ok() {
                    return true;
                }
            }
        }
        false
    })
}

/// A line chart: `series` of (label, points).
struct Chart<'a> {
    title: &'a str,
    x_label: &'a str,
    y_label: &'a str,
    series: Vec<(String, Vec<(f64, f64)>)>,
}

impl Chart<'_> {
    fn draw<DB: DrawingBackend>(&self, root: &DrawingArea<DB, Shift>) -> Result<(), String> {
        let e = |e: DrawingAreaErrorKind<DB::ErrorType>| e.to_string();
        root.fill(&WHITE).map_err(e)?;
        let pts = self.series.iter().flat_map(|(_, p)| p.iter());
        let (mut x1, mut y1) = (0.0f64, 0.0f64);
        for (x, y) in pts {
            x1 = x1.max(*x);
            y1 = y1.max(*y);
        }
        let x1 = if x1 > 0.0 { x1 * 1.02 } else { 1.0 };
        let y1 = if y1 > 0.0 { y1 * 1.1 } else { 1.0 };
        let mut chart = ChartBuilder::on(root)
            .caption(self.title, ("sans-serif", 22))
            .margin(12)
            .x_label_area_size(40)
            .y_label_area_size(60)
            .build_cartesian_2d(0.0..x1, 0.0..y1)
            .map_err(e)?;
        chart
            .configure_mesh()
            .x_desc(self.x_label)
            .y_desc(self.y_label)
            .draw()
            .map_err(e)?;
        for (i, (label, points)) in self.series.iter().enumerate() {
            let color = Palette99::pick(i).to_rgba();
            chart
                .draw_series(LineSeries::new(
                    points.iter().copied(),
                    color.stroke_width(2),
                ))
                .map_err(e)?
                .label(label.clone())
                .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 18, y)], color));
        }
        if self.series.len() > 1 {
            chart
                .configure_series_labels()
                .background_style(WHITE.mix(0.8))
                .border_style(BLACK)
                .draw()
                .map_err(e)?;
        }
        root.present().map_err(e)
    }

    fn write(&self, dir: &Path, stem: &str) -> anyhow::Result<()> {
        let svg = dir.join(format!("{stem}.svg"));
        let png = dir.join(format!("{stem}.png"));
        self.draw(&SVGBackend::new(&svg, (900, 540)).into_drawing_area())
            .map_err(|e| anyhow::anyhow!("{}: {e}", svg.display()))?;
        self.draw(&BitMapBackend::new(&png, (900, 540)).into_drawing_area())
            .map_err(|e| anyhow::anyhow!("{}: {e}", png.display()))?;
        Ok(())
    }
}

/// Writes every plot of `o` into `dir`.
pub fn all(dir: &Path, o: &Outcome) -> anyhow::Result<()> {
    if !font() {
        tracing::warn!(
            "no TrueType font found (set SEGUE_FONT or install fonts-dejavu-core): plots skipped"
        );
        return Ok(());
    }
    // TTFF CDF.
    let mut ttff: Vec<f64> = o.plays.iter().filter_map(|p| p.report.ttff_ms).collect();
    ttff.sort_by(f64::total_cmp);
    let n = ttff.len().max(1) as f64;
    let cdf = ttff
        .iter()
        .enumerate()
        .map(|(i, v)| (*v, (i + 1) as f64 / n))
        .collect();
    Chart {
        title: &format!("{}: time to first frame", o.scenario),
        x_label: "TTFF (ms)",
        y_label: "fraction of plays",
        series: vec![("TTFF".into(), cdf)],
    }
    .write(dir, "ttff_cdf")?;

    // Buffer levels.
    let buffers = o
        .plays
        .iter()
        .filter(|p| !p.report.buffer.is_empty())
        .map(|p| {
            (
                format!("play {} ({})", p.id, p.object),
                p.report
                    .buffer
                    .iter()
                    .map(|[t, ms]| (*t, *ms / 1000.0))
                    .collect(),
            )
        })
        .collect();
    Chart {
        title: &format!("{}: buffer level of sampled plays", o.scenario),
        x_label: "time since the play's request (s)",
        y_label: "buffered media (s)",
        series: buffers,
    }
    .write(dir, "buffer")?;

    // Traffic: Mbit/s per sampling interval.
    let rate = |f: fn(&super::run::TrafficSample) -> u64| -> Vec<(f64, f64)> {
        o.traffic
            .windows(2)
            .map(|w| {
                let dt = (w[1].t_s - w[0].t_s).max(1e-3);
                (
                    w[1].t_s,
                    (f(&w[1]).saturating_sub(f(&w[0]))) as f64 * 8.0 / dt / 1e6,
                )
            })
            .collect()
    };
    Chart {
        title: &format!("{}: origin vs edge traffic", o.scenario),
        x_label: "time (s)",
        y_label: "Mbit/s (QUIC datagrams)",
        series: vec![
            ("edges -> players".into(), rate(|s| s.edge_bytes)),
            ("origin -> edges".into(), rate(|s| s.origin_bytes)),
        ],
    }
    .write(dir, "traffic")?;
    Ok(())
}

/// One heatmap figure: a panel per (hop, bitrate), RTT down, loss across, each cell's value
/// written in it; colour from green (0, or a ratio at most 1) to red (the worst, or a ratio
/// of 2 and more). `value` is None where the cell has no figure.
type CellValue<'a> = Box<dyn Fn(&CellKey) -> Option<f64> + 'a>;

struct Heatmap<'a> {
    title: String,
    spec: &'a MatrixSpec,
    value: CellValue<'a>,
    /// Ratios colour around 1; plain values from 0 to the largest.
    ratio: bool,
    decimals: usize,
}

impl Heatmap<'_> {
    fn draw<DB: DrawingBackend>(&self, root: &DrawingArea<DB, Shift>) -> Result<(), String> {
        let e = |e: DrawingAreaErrorKind<DB::ErrorType>| e.to_string();
        root.fill(&WHITE).map_err(e)?;
        let s = self.spec;
        let (title, body) = root.split_vertically(40);
        title
            .draw_text(
                &self.title,
                &("sans-serif", 22).into_text_style(&title),
                (10, 8),
            )
            .map_err(e)?;
        let rows = s.hops.len();
        let cols = s.bitrates_mbps.len();
        let panels = body.split_evenly((rows, cols));
        let max = s
            .cells()
            .iter()
            .filter_map(|k| (self.value)(k))
            .fold(0.0f64, f64::max);
        for (i, panel) in panels.iter().enumerate() {
            let (hop, br) = (s.hops[i / cols], s.bitrates_mbps[i % cols]);
            let mut chart = ChartBuilder::on(panel)
                .caption(
                    format!("{} impaired, {br} Mbit/s", hop.label()),
                    ("sans-serif", 16),
                )
                .margin(8)
                .x_label_area_size(30)
                .y_label_area_size(50)
                .build_cartesian_2d(0.0..s.losses.len() as f64, 0.0..s.rtts_ms.len() as f64)
                .map_err(e)?;
            let losses = s.losses.clone();
            let rtts = s.rtts_ms.clone();
            chart
                .configure_mesh()
                .disable_mesh()
                .x_labels(losses.len() * 2 + 1)
                .y_labels(rtts.len() * 2 + 1)
                .x_label_formatter(&|x| {
                    let i = x.floor() as usize;
                    if (x - x.floor() - 0.5).abs() < 0.01 && i < losses.len() {
                        losses[i].label()
                    } else {
                        String::new()
                    }
                })
                .y_label_formatter(&|y| {
                    let i = y.floor() as usize;
                    if (y - y.floor() - 0.5).abs() < 0.01 && i < rtts.len() {
                        format!("{} ms", rtts[i])
                    } else {
                        String::new()
                    }
                })
                .x_desc("loss")
                .draw()
                .map_err(e)?;
            for (yi, &rtt_ms) in s.rtts_ms.iter().enumerate() {
                for (xi, &loss) in s.losses.iter().enumerate() {
                    let k = CellKey {
                        hop,
                        bitrate_mbps: br,
                        rtt_ms,
                        loss,
                    };
                    let v = (self.value)(&k);
                    let badness = match v {
                        None => None,
                        Some(v) if self.ratio => Some((v - 1.0).clamp(0.0, 1.0)),
                        Some(v) if max > 0.0 => Some((v / max).clamp(0.0, 1.0)),
                        Some(_) => Some(0.0),
                    };
                    let color = match badness {
                        None => RGBColor(220, 220, 220),
                        Some(b) => {
                            RGBColor((80.0 + 175.0 * b) as u8, (200.0 - 150.0 * b) as u8, 90)
                        }
                    };
                    let (x, y) = (xi as f64, yi as f64);
                    chart
                        .draw_series(std::iter::once(Rectangle::new(
                            [(x + 0.02, y + 0.02), (x + 0.98, y + 0.98)],
                            color.filled(),
                        )))
                        .map_err(e)?;
                    let text = v.map_or("-".into(), |v| format!("{v:.*}", self.decimals));
                    chart
                        .draw_series(std::iter::once(Text::new(
                            text,
                            (x + 0.3, y + 0.6),
                            ("sans-serif", 14),
                        )))
                        .map_err(e)?;
                }
            }
        }
        root.present().map_err(e)
    }

    fn write(&self, dir: &Path, stem: &str) -> anyhow::Result<()> {
        let size = (
            (320 * self.spec.bitrates_mbps.len() as u32 + 40).max(720),
            260 * self.spec.hops.len() as u32 + 60,
        );
        let svg = dir.join(format!("{stem}.svg"));
        let png = dir.join(format!("{stem}.png"));
        self.draw(&SVGBackend::new(&svg, size).into_drawing_area())
            .map_err(|e| anyhow::anyhow!("{}: {e}", svg.display()))?;
        self.draw(&BitMapBackend::new(&png, size).into_drawing_area())
            .map_err(|e| anyhow::anyhow!("{}: {e}", png.display()))?;
        Ok(())
    }
}

/// The matrix's heatmaps: rebuffer %, start failures, playback start p95 and TTFF p95 for
/// each system, and the ratios Segue / nginx-HLS of the three that have one.
pub fn heatmaps(dir: &Path, spec: &MatrixSpec, rs: &[CellResult]) -> anyhow::Result<()> {
    if !font() {
        tracing::warn!("no TrueType font found: heatmaps skipped");
        return Ok(());
    }
    let get = |k: &CellKey, system: &str| -> Option<&Summary> {
        rs.iter()
            .find(|r| r.key == *k && r.system == system)
            .map(|r| &r.summary)
    };
    type Metric = (
        &'static str,
        &'static str,
        fn(&Summary) -> Option<f64>,
        usize,
    );
    let metrics: [Metric; 4] = [
        (
            "rebuffer",
            "rebuffer ratio (%)",
            |s| Some(100.0 * s.rebuffer_ratio),
            2,
        ),
        (
            "start_failures",
            "start failures",
            |s| Some(s.start_failures as f64),
            0,
        ),
        (
            "start_p95",
            "playback start p95 (ms)",
            |s| s.startup_p95_ms,
            0,
        ),
        ("ttff_p95", "TTFF p95 (ms)", |s| s.ttff_p95_ms, 0),
    ];
    for system in &spec.systems {
        let name = system.to_string();
        for (stem, label, f, decimals) in metrics {
            let n = name.clone();
            Heatmap {
                title: format!("{name}: {label}"),
                spec,
                value: Box::new(move |k| get(k, &n).and_then(f)),
                ratio: false,
                decimals,
            }
            .write(dir, &format!("heatmap_{stem}_{name}"))?;
        }
    }
    let both = spec.systems.contains(&System::Segue) && spec.systems.contains(&System::NginxHls);
    if both {
        for (stem, label, f, _) in metrics.into_iter().filter(|m| m.0 != "start_failures") {
            Heatmap {
                title: format!("Segue / nginx-HLS: {label} (goal: TTFF ≤ 0.5, others ≤ 1)"),
                spec,
                value: Box::new(move |k| {
                    let (a, b) = (
                        get(k, "segue").and_then(f)?,
                        get(k, "nginx-hls").and_then(f)?,
                    );
                    // 0 / 0: equal.
                    Some(if b > 0.0 {
                        a / b
                    } else if a > 0.0 {
                        f64::INFINITY
                    } else {
                        1.0
                    })
                }),
                ratio: true,
                decimals: 2,
            }
            .write(dir, &format!("heatmap_{stem}_ratio"))?;
        }
    }
    Ok(())
}
