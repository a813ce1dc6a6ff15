//! `segue-lab matrix`: the continuity matrix. A grid of short seeded scenarios over RTT ×
//! loss × impaired hop × bitrate, each run for every system on the packet-level network
//! (`--netns`: real kernel TCP for nginx-HLS, the real node binaries for Segue), then one
//! table (`matrix.md`, `matrix.csv`, `matrix.json`) and heatmaps (PNG and SVG) of rebuffer
//! ratio, start failures, playback start p95 and TTFF p95 per system, and of the ratios
//! Segue / nginx-HLS. Every cell's own results stay in `cells/<cell>/<system>/`; a cell whose
//! `summary.json` is there already is not run again (`--resume`).

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use anyhow::{Context as _, bail};
use serde::{Deserialize, Serialize};

use super::run::{self, LabOptions, System};
use super::scenario::Scenario;
use super::summary::{self, Summary};

/// Loss on the impaired hop, both directions.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub enum Loss {
    /// Independent random loss, percent.
    Random(f64),
    /// Gilbert-Elliott loss (mean burst 4 packets), percent.
    Bursty(f64),
}

impl Loss {
    /// `0`, `1`, `3` (random, percent) or `3b` (bursty).
    pub fn parse(s: &str) -> Result<Self, String> {
        let (num, bursty) = match s.strip_suffix('b') {
            Some(n) => (n, true),
            None => (s, false),
        };
        let p: f64 = num
            .parse()
            .map_err(|_| format!("loss {s:?}: a percentage, `b` after it for bursty loss"))?;
        if !(0.0..50.0).contains(&p) {
            return Err(format!("loss {s:?}: 0 to 50 %"));
        }
        Ok(if bursty {
            Loss::Bursty(p)
        } else {
            Loss::Random(p)
        })
    }

    pub fn label(&self) -> String {
        match self {
            Loss::Random(p) => format!("{p}%"),
            Loss::Bursty(p) => format!("{p}%b"),
        }
    }

    fn toml(&self) -> String {
        match self {
            Loss::Random(p) => format!("loss = {}", p / 100.0),
            Loss::Bursty(p) if *p > 0.0 => format!("bursty_loss = {}, burst_len = 4", p / 100.0),
            Loss::Bursty(_) => "loss = 0.0".into(),
        }
    }
}

/// Which hop is impaired; the other is clean (1 ms each way).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "kebab-case")]
pub enum Hop {
    /// Each viewer's own access link.
    LastMile,
    /// The edge's link to the origin (the edge starts cold).
    Origin,
}

impl Hop {
    pub fn label(&self) -> &'static str {
        match self {
            Hop::LastMile => "last-mile",
            Hop::Origin => "origin",
        }
    }
}

/// The sample for a bitrate (Mbit/s): 0.25 → `demo` (12 s), 3.3 → `hd3`, 8 → `hd8` (20 s).
pub fn sample_for(mbps: f64) -> Result<&'static str, String> {
    match mbps {
        m if (m - 0.25).abs() < 1e-9 => Ok("demo"),
        m if (m - 3.3).abs() < 1e-9 => Ok("hd3"),
        m if (m - 8.0).abs() < 1e-9 => Ok("hd8"),
        m => Err(format!("bitrate {m}: one of 0.25, 3.3, 8 (Mbit/s)")),
    }
}

/// The grid and how each cell runs.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct MatrixSpec {
    pub rtts_ms: Vec<f64>,
    pub losses: Vec<Loss>,
    pub hops: Vec<Hop>,
    pub bitrates_mbps: Vec<f64>,
    pub systems: Vec<System>,
    /// Viewers per cell (over 2 objects, arriving within 4 s).
    pub players: usize,
    /// The impaired hop's capacity as a multiple of the media bitrate (the origin link's:
    /// per object in the catalog).
    pub capacity_x: f64,
    pub seed: u64,
    pub congestion: segue_net::Congestion,
    pub tcp_congestion: Option<String>,
    /// Segue's initial window, datagrams (None: the nodes' default).
    #[serde(default)]
    pub initial_window: Option<u32>,
    /// The edge's `--send-ahead-max-ms` (None: no growth, the nodes' default).
    #[serde(default)]
    pub send_ahead_max_ms: Option<u64>,
}

/// One cell of the grid (the same for every system).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct CellKey {
    pub hop: Hop,
    pub bitrate_mbps: f64,
    pub rtt_ms: f64,
    pub loss: Loss,
}

impl CellKey {
    pub fn name(&self) -> String {
        format!(
            "{}-{}M-{}ms-{}",
            self.hop.label(),
            self.bitrate_mbps,
            self.rtt_ms,
            self.loss.label().replace('%', "pct")
        )
    }
}

/// A cell's result for one system.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct CellResult {
    pub key: CellKey,
    pub system: String,
    /// The impaired hop's capacity / the media's bitrate.
    pub capacity_x: f64,
    pub summary: Summary,
    pub wall_s: f64,
}

impl MatrixSpec {
    pub fn cells(&self) -> Vec<CellKey> {
        let mut v = Vec::new();
        for &hop in &self.hops {
            for &bitrate_mbps in &self.bitrates_mbps {
                for &rtt_ms in &self.rtts_ms {
                    for &loss in &self.losses {
                        v.push(CellKey {
                            hop,
                            bitrate_mbps,
                            rtt_ms,
                            loss,
                        });
                    }
                }
            }
        }
        v
    }

    /// The scenario of a cell.
    pub fn scenario(&self, c: &CellKey) -> Result<Scenario, String> {
        let stem = sample_for(c.bitrate_mbps)?;
        let half = c.rtt_ms / 2.0;
        let impaired = |rate_x: f64| {
            format!(
                "{{ both = {{ delay_ms = {half}, {} }}, rate_x_bitrate = {rate_x} }}",
                c.loss.toml()
            )
        };
        let clean = "{ both = { delay_ms = 1 } }".to_string();
        const OBJECTS: f64 = 2.0;
        let (origin, last_mile) = match c.hop {
            Hop::LastMile => (clean, impaired(self.capacity_x)),
            Hop::Origin => (impaired(self.capacity_x * OBJECTS), clean),
        };
        let tcp = self
            .tcp_congestion
            .as_ref()
            .map(|t| format!("tcp_congestion = \"{t}\"\n"))
            .unwrap_or_default()
            + &self
                .initial_window
                .map(|n| format!("initial_window = {n}\n"))
                .unwrap_or_default();
        let grow = self
            .send_ahead_max_ms
            .map(|ms| format!("send_ahead_max_ms = {ms}\n"))
            .unwrap_or_default();
        let text = format!(
            "name = \"{name}\"\ndescription = \"matrix cell: {hop} impaired, RTT {rtt} ms, loss {loss}, {br} Mbit/s\"\n\
             seed = {seed}\nmax_duration_s = 150\n\n\
             [media]\nsamples = [\"{stem}\"]\ncopies = {copies}\n\n\
             [[edge]]\nname = \"edge-1\"\nprefix_s = 4\n{grow}origin_link = {origin}\n\n\
             [players]\ncount = {players}\narrival_window_s = 4\nstall_timeout_s = 20\nlast_mile = {last_mile}\n\n\
             [transport]\ncongestion = \"{cc}\"\n{tcp}",
            name = c.name(),
            hop = c.hop.label(),
            rtt = c.rtt_ms,
            loss = c.loss.label(),
            br = c.bitrate_mbps,
            seed = self.seed,
            copies = OBJECTS as usize,
            players = self.players,
            cc = self.congestion,
        );
        Scenario::parse(&text, Path::new("."))
    }
}

/// Runs every cell for every system (sequentially: cells share the box's two cores with
/// nothing else of the matrix), writing each cell's results and, at the end, the tables and
/// heatmaps into `out`.
pub async fn run(
    spec: &MatrixSpec,
    samples: &Path,
    segue_bin: Option<PathBuf>,
    out: &Path,
    resume: bool,
) -> anyhow::Result<Vec<CellResult>> {
    for &b in &spec.bitrates_mbps {
        run::ensure_sample(samples, sample_for(b).map_err(anyhow::Error::msg)?)?;
    }
    std::fs::create_dir_all(out)?;
    // Cells are found by name, which does not hold the whole spec: a resumed matrix must be
    // the same one.
    let spec_json = serde_json::to_string_pretty(spec)? + "\n";
    let spec_path = out.join("spec.json");
    if resume
        && let Ok(before) = std::fs::read_to_string(&spec_path)
        && before != spec_json
    {
        bail!(
            "{} holds a matrix of other settings ({}): --resume only goes on with the same ones",
            out.display(),
            spec_path.display()
        );
    }
    std::fs::write(&spec_path, spec_json)?;
    let cells = spec.cells();
    let total = cells.len() * spec.systems.len();
    let mut results = Vec::new();
    let mut n = 0;
    for key in cells {
        let s = spec.scenario(&key).map_err(anyhow::Error::msg)?;
        for &system in &spec.systems {
            n += 1;
            let dir = out.join("cells").join(key.name()).join(system.to_string());
            let done = dir.join("cell.json");
            if resume && let Ok(text) = std::fs::read_to_string(&done) {
                if let Ok(r) = serde_json::from_str::<CellResult>(&text) {
                    eprintln!("[{n}/{total}] {} on {system}: done before", key.name());
                    results.push(r);
                    continue;
                }
            }
            eprintln!("[{n}/{total}] {} on {system}", key.name());
            let opts = LabOptions {
                samples_dir: samples.to_owned(),
                progress: false,
                system,
                netns: true,
                segue_bin: segue_bin.clone(),
            };
            let o = run::run(&s, &opts)
                .await
                .with_context(|| format!("cell {} on {system}", key.name()))?;
            let sum = summary::summarize(&o, s.players.immediate_ms);
            summary::write(&dir, &o, &sum)?;
            let r = CellResult {
                key,
                system: system.to_string(),
                capacity_x: spec.capacity_x,
                summary: sum,
                wall_s: o.wall_s,
            };
            std::fs::write(&done, serde_json::to_string_pretty(&r)? + "\n")?;
            results.push(r);
        }
    }
    write(out, spec, &results)?;
    Ok(results)
}

/// The goals a cell is checked against (issue 17): a feasible cell (capacity at least
/// 1.25 × the bitrate) has no stalls, no start failures and byte-exact plays for Segue;
/// against nginx-HLS: rebuffer ratio and playback start p95 no worse, TTFF p95 at most half.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Verdict {
    pub continuity: Option<bool>,
    pub rebuffer_le: Option<bool>,
    pub start_p95_le: Option<bool>,
    pub ttff_p95_half: Option<bool>,
}

fn verdict(seg: Option<&CellResult>, hls: Option<&CellResult>) -> Verdict {
    let mut v = Verdict::default();
    if let Some(a) = seg {
        let s = &a.summary;
        if a.capacity_x >= 1.25 {
            v.continuity = Some(
                s.stalls_per_play == 0.0
                    && s.start_failures == 0
                    && s.failed_after_start == 0
                    && s.byte_exact == s.watched_to_end,
            );
        }
        if let Some(b) = hls {
            let t = &b.summary;
            // Segue's figure at most `k` × nginx-HLS's; none (no play started) fails.
            let at_most = |x: Option<f64>, y: Option<f64>, k: f64| match (x, y) {
                (Some(x), Some(y)) => x <= k * y,
                (None, _) => false,
                (Some(_), None) => true,
            };
            v.rebuffer_le = Some(s.rebuffer_ratio <= t.rebuffer_ratio);
            v.start_p95_le = Some(at_most(s.startup_p95_ms, t.startup_p95_ms, 1.0));
            v.ttff_p95_half = Some(at_most(s.ttff_p95_ms, t.ttff_p95_ms, 0.5));
        }
    }
    v
}

fn find<'a>(rs: &'a [CellResult], k: &CellKey, system: &str) -> Option<&'a CellResult> {
    rs.iter().find(|r| r.key == *k && r.system == system)
}

/// The table, Markdown.
pub fn render(spec: &MatrixSpec, rs: &[CellResult]) -> String {
    let ms = |v: Option<f64>| v.map_or("-".into(), |v| format!("{v:.0}"));
    let yn = |v: Option<bool>| match v {
        Some(true) => "yes",
        Some(false) => "**no**",
        None => "-",
    };
    let mut t = String::new();
    let _ = writeln!(
        t,
        "Continuity matrix: {} players per cell, impaired hop at {:.2} × the bitrate, Segue congestion control {}{}, kernel TCP {}, seed {}\n",
        spec.players,
        spec.capacity_x,
        spec.congestion,
        spec.initial_window
            .map(|n| format!(" (initial window {n})"))
            .unwrap_or_default()
            + &spec
                .send_ahead_max_ms
                .map(|ms| format!(", send-ahead growing to {ms} ms"))
                .unwrap_or_default(),
        spec.tcp_congestion
            .as_deref()
            .unwrap_or("the host's default"),
        spec.seed
    );
    let _ = writeln!(
        t,
        "| hop | Mbit/s | RTT ms | loss | system | start fail | fail after | stalls/play | rebuffer % | start p95 ms | TTFF p95 ms | byte-exact | continuity | rebuffer ≤ | start p95 ≤ | TTFF p95 ≤ ½ |"
    );
    let _ = writeln!(t, "|{}", " --- |".repeat(16));
    let mut passes = [0usize; 4];
    let mut checked = [0usize; 4];
    for k in spec.cells() {
        let seg = find(rs, &k, "segue");
        let hls = find(rs, &k, "nginx-hls");
        let v = verdict(seg, hls);
        for (i, x) in [v.continuity, v.rebuffer_le, v.start_p95_le, v.ttff_p95_half]
            .into_iter()
            .enumerate()
        {
            if let Some(x) = x {
                checked[i] += 1;
                passes[i] += usize::from(x);
            }
        }
        for (i, r) in [seg, hls].into_iter().flatten().enumerate() {
            let s = &r.summary;
            let (c, a, b, d) = if i == 0 {
                (
                    yn(v.continuity),
                    yn(v.rebuffer_le),
                    yn(v.start_p95_le),
                    yn(v.ttff_p95_half),
                )
            } else {
                ("", "", "", "")
            };
            let _ = writeln!(
                t,
                "| {} | {} | {} | {} | {} | {} | {} | {:.2} | {:.2} | {} | {} | {}/{} | {c} | {a} | {b} | {d} |",
                k.hop.label(),
                k.bitrate_mbps,
                k.rtt_ms,
                k.loss.label(),
                r.system,
                s.start_failures,
                s.failed_after_start,
                s.stalls_per_play,
                100.0 * s.rebuffer_ratio,
                ms(s.startup_p95_ms),
                ms(s.ttff_p95_ms),
                s.byte_exact,
                s.watched_to_end,
            );
        }
    }
    let _ = writeln!(
        t,
        "\nGoals met: continuity (feasible cells: 0 stalls, 0 start failures, byte-exact) {}/{}; rebuffer ≤ nginx-HLS {}/{}; playback start p95 ≤ nginx-HLS {}/{}; TTFF p95 ≤ ½ nginx-HLS {}/{}",
        passes[0], checked[0], passes[1], checked[1], passes[2], checked[2], passes[3], checked[3]
    );
    t
}

fn write(out: &Path, spec: &MatrixSpec, rs: &[CellResult]) -> anyhow::Result<()> {
    std::fs::write(out.join("matrix.md"), render(spec, rs))?;
    std::fs::write(
        out.join("matrix.json"),
        serde_json::to_string_pretty(rs)? + "\n",
    )?;
    let mut csv = String::from(
        "hop,bitrate_mbps,rtt_ms,loss,system,plays,start_failures,failed_after_start,stalls_per_play,rebuffer_ratio,startup_p95_ms,ttff_p95_ms,byte_exact,watched_to_end,wall_s\n",
    );
    let o = |v: Option<f64>| v.map_or(String::new(), |v| format!("{v:.1}"));
    for r in rs {
        let s = &r.summary;
        let _ = writeln!(
            csv,
            "{},{},{},{},{},{},{},{},{:.4},{:.6},{},{},{},{},{:.1}",
            r.key.hop.label(),
            r.key.bitrate_mbps,
            r.key.rtt_ms,
            r.key.loss.label(),
            r.system,
            s.plays,
            s.start_failures,
            s.failed_after_start,
            s.stalls_per_play,
            s.rebuffer_ratio,
            o(s.startup_p95_ms),
            o(s.ttff_p95_ms),
            s.byte_exact,
            s.watched_to_end,
            r.wall_s
        );
    }
    std::fs::write(out.join("matrix.csv"), csv)?;
    if let Err(e) = super::plot::heatmaps(out, spec, rs) {
        tracing::warn!("matrix heatmaps not drawn: {e:#}");
    }
    Ok(())
}

/// Parses a comma-separated list.
pub fn list<T>(s: &str, f: impl Fn(&str) -> Result<T, String>) -> Result<Vec<T>, String> {
    let v: Vec<T> = s
        .split(',')
        .map(str::trim)
        .filter(|x| !x.is_empty())
        .map(f)
        .collect::<Result<_, _>>()?;
    if v.is_empty() {
        return Err("an empty list".into());
    }
    Ok(v)
}

/// Checks a spec before an hour is spent on it.
pub fn validate(spec: &MatrixSpec) -> anyhow::Result<()> {
    if spec.players == 0 || spec.players > 200 {
        bail!("--players: 1 to 200 per cell");
    }
    if !(spec.capacity_x > 0.0 && spec.capacity_x.is_finite()) {
        bail!("--capacity-x must be positive");
    }
    for &r in &spec.rtts_ms {
        if !(0.0..=2000.0).contains(&r) {
            bail!("RTT {r} ms: 0 to 2000");
        }
    }
    for c in spec.cells() {
        spec.scenario(&c).map_err(anyhow::Error::msg)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec() -> MatrixSpec {
        MatrixSpec {
            rtts_ms: vec![20.0, 300.0],
            losses: vec![Loss::Random(0.0), Loss::Bursty(3.0)],
            hops: vec![Hop::LastMile, Hop::Origin],
            bitrates_mbps: vec![0.25, 8.0],
            systems: vec![System::Segue, System::NginxHls],
            players: 4,
            capacity_x: 2.0,
            seed: 1,
            congestion: segue_net::Congestion::Model,
            tcp_congestion: Some("cubic".into()),
            initial_window: None,
            send_ahead_max_ms: None,
        }
    }

    #[test]
    fn every_cell_is_a_valid_scenario_with_the_impairment_on_its_hop() {
        let s = spec();
        validate(&s).unwrap();
        assert_eq!(s.cells().len(), 16);
        let c = CellKey {
            hop: Hop::Origin,
            bitrate_mbps: 8.0,
            rtt_ms: 300.0,
            loss: Loss::Bursty(3.0),
        };
        let sc = s.scenario(&c).unwrap();
        let (up, down) = sc.edges[0].origin_link.resolve(8000.0);
        assert_eq!((up.delay_ms, down.delay_ms), (150.0, 150.0));
        assert_eq!(down.bursty_loss, 0.03);
        // Two objects through the origin link: twice the per-object capacity.
        assert_eq!(down.rate_kbps, 32_000);
        assert!(sc.players.last_mile.resolve(8000.0).0.loss == 0.0);
        assert_eq!(sc.transport.tcp_congestion.as_deref(), Some("cubic"));
        assert_eq!(sc.media.samples, ["hd8"]);
        let c = CellKey {
            hop: Hop::LastMile,
            ..c
        };
        let sc = s.scenario(&c).unwrap();
        assert_eq!(sc.players.last_mile.resolve(8000.0).1.rate_kbps, 16_000);
        assert_eq!(sc.edges[0].origin_link.resolve(8000.0).1.delay_ms, 1.0);
        // The send-ahead: no growth unless asked for.
        assert_eq!(sc.edges[0].send_ahead_max_ms(), sc.edges[0].send_ahead_ms);
        let grown = MatrixSpec {
            send_ahead_max_ms: Some(30_000),
            ..s.clone()
        };
        assert_eq!(
            grown.scenario(&c).unwrap().edges[0].send_ahead_max_ms(),
            30_000
        );
    }

    #[test]
    fn losses_parse() {
        assert_eq!(Loss::parse("3b"), Ok(Loss::Bursty(3.0)));
        assert_eq!(Loss::parse("1"), Ok(Loss::Random(1.0)));
        assert!(Loss::parse("x").is_err());
        assert!(Loss::parse("80").is_err());
        assert!(sample_for(1.0).is_err());
    }
}
