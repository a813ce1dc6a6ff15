//! Plots of a run, as SVG and PNG (`plotters`): TTFF CDF, buffer level of the sampled plays,
//! origin vs edge traffic. Text needs a TrueType font: the first of `SEGUE_FONT` and the
//! usual DejaVu/Liberation paths that exists (Debian: `fonts-dejavu-core`); without one the
//! plots are skipped with a warning, the numbers are still written.

use std::path::Path;
use std::sync::OnceLock;

use plotters::coord::Shift;
use plotters::prelude::*;

use super::run::Outcome;

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
