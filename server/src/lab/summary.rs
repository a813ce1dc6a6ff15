//! What a run means: the summary table, and the files (`plays.json`, `plays.csv`,
//! `traffic.csv`, `summary.json`, `summary.txt`, plots).

use std::fmt::Write as _;
use std::path::Path;

use anyhow::Context as _;
use serde::Serialize;

use super::run::{Outcome, System};

/// The scenario's figures.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Summary {
    pub system: String,
    pub plays: usize,
    pub start_failures: usize,
    /// Plays that ended with an error after starting.
    pub failed_after_start: usize,
    pub ttff_p50_ms: Option<f64>,
    pub ttff_p95_ms: Option<f64>,
    pub ttff_p99_ms: Option<f64>,
    /// Playback start (startup buffer filled), median.
    pub startup_p50_ms: Option<f64>,
    /// Plays whose playback started within `immediate_ms`.
    pub immediate_starts: f64,
    /// Stall time / (stall time + played time), all plays.
    pub rebuffer_ratio: f64,
    pub stalls_per_play: f64,
    /// Plays with at least one stall.
    pub plays_with_stalls: usize,
    /// Plays watched to the end whose frames and content hashes match the manifest.
    pub byte_exact: usize,
    pub watched_to_end: usize,
    /// Bytes players received (RTP) and bytes the edges fetched from the origin (payload).
    pub bytes_served: u64,
    pub bytes_from_origin: u64,
    /// 1 - from origin / served.
    pub byte_hit_ratio: f64,
    /// Bytes on the origin links during the plays, as the relays counted them (QUIC or
    /// TCP payload: the same measure for every system).
    pub origin_wire_bytes: u64,
    pub full_hits: u64,
    pub prefix_hits: u64,
    pub misses: u64,
    /// nginx edges: requests answered from the cache / from upstream.
    pub http_cache_hits: u64,
    pub http_cache_misses: u64,
}

/// Nearest-rank percentile of sorted values.
pub fn percentile(sorted: &[f64], p: f64) -> Option<f64> {
    if sorted.is_empty() {
        return None;
    }
    let rank = ((p / 100.0) * sorted.len() as f64).ceil().max(1.0) as usize;
    sorted.get(rank - 1).copied()
}

pub fn summarize(o: &Outcome, immediate_ms: f64) -> Summary {
    let plays = &o.plays;
    let mut ttff: Vec<f64> = plays.iter().filter_map(|p| p.report.ttff_ms).collect();
    ttff.sort_by(f64::total_cmp);
    let mut startup: Vec<f64> = plays.iter().filter_map(|p| p.report.startup_ms).collect();
    startup.sort_by(f64::total_cmp);
    let started: Vec<_> = plays
        .iter()
        .filter(|p| p.report.startup_ms.is_some())
        .collect();
    let immediate = started
        .iter()
        .filter(|p| p.report.startup_ms.is_some_and(|s| s <= immediate_ms))
        .count();
    let stall_s: f64 = plays.iter().map(|p| p.report.stall_ms / 1000.0).sum();
    // Played time: wall time from playback start, less stalls.
    let played_s: f64 = plays
        .iter()
        .filter_map(|p| {
            let start = p.report.startup_ms? / 1000.0;
            Some((p.report.wall_s - start - p.report.stall_ms / 1000.0).max(0.0))
        })
        .sum();
    let stalls: u64 = plays.iter().map(|p| u64::from(p.report.stalls)).sum();
    let to_end: Vec<_> = plays
        .iter()
        .filter(|p| p.planned_watch_s.is_none() && !p.cut)
        .collect();
    let served: u64 = plays.iter().map(|p| p.report.bytes).sum();
    let from_origin: u64 = o.edges.iter().map(|e| e.origin_payload_bytes).sum();
    Summary {
        system: o.system.to_string(),
        plays: plays.len(),
        start_failures: plays
            .iter()
            .filter(|p| p.report.startup_ms.is_none())
            .count(),
        // Plays the run's bound stopped are cut, not failed.
        failed_after_start: started
            .iter()
            .filter(|p| p.report.error.is_some() && !p.cut)
            .count(),
        ttff_p50_ms: percentile(&ttff, 50.0),
        ttff_p95_ms: percentile(&ttff, 95.0),
        ttff_p99_ms: percentile(&ttff, 99.0),
        startup_p50_ms: percentile(&startup, 50.0),
        immediate_starts: if plays.is_empty() {
            0.0
        } else {
            immediate as f64 / plays.len() as f64
        },
        rebuffer_ratio: if stall_s + played_s > 0.0 {
            stall_s / (stall_s + played_s)
        } else {
            0.0
        },
        stalls_per_play: if plays.is_empty() {
            0.0
        } else {
            stalls as f64 / plays.len() as f64
        },
        plays_with_stalls: plays.iter().filter(|p| p.report.stalls > 0).count(),
        byte_exact: to_end.iter().filter(|p| p.report.ok()).count(),
        watched_to_end: to_end.len(),
        bytes_served: served,
        bytes_from_origin: from_origin,
        byte_hit_ratio: if served > 0 {
            1.0 - from_origin as f64 / served as f64
        } else {
            0.0
        },
        origin_wire_bytes: o.traffic.last().map_or(0, |t| t.origin_bytes),
        full_hits: o.edges.iter().map(|e| e.full_hits).sum(),
        prefix_hits: o.edges.iter().map(|e| e.prefix_hits).sum(),
        misses: o.edges.iter().map(|e| e.misses).sum(),
        http_cache_hits: o.edges.iter().map(|e| e.http_cache_hits).sum(),
        http_cache_misses: o.edges.iter().map(|e| e.http_cache_misses).sum(),
    }
}

/// The table printed at the end of a run.
pub fn render(o: &Outcome, s: &Summary) -> String {
    let ms = |v: Option<f64>| v.map_or("-".to_string(), |v| format!("{v:.1} ms"));
    let mut t = String::new();
    let _ = writeln!(
        t,
        "scenario {} on {} (seed {}): {}",
        o.scenario, o.system, o.seed, o.description
    );
    let _ = writeln!(
        t,
        "  {} objects, highest bitrate {:.0} kbit/s, run took {:.1} s",
        o.catalog.len(),
        o.bitrate_kbps,
        o.wall_s
    );
    let rows = [
        ("plays", s.plays.to_string()),
        ("start failures", s.start_failures.to_string()),
        ("failed after start", s.failed_after_start.to_string()),
        ("TTFF p50", ms(s.ttff_p50_ms)),
        ("TTFF p95", ms(s.ttff_p95_ms)),
        ("TTFF p99", ms(s.ttff_p99_ms)),
        ("playback start p50", ms(s.startup_p50_ms)),
        (
            "immediate starts",
            format!("{:.1} %", 100.0 * s.immediate_starts),
        ),
        (
            "rebuffer ratio",
            format!("{:.3} %", 100.0 * s.rebuffer_ratio),
        ),
        ("stalls per play", format!("{:.3}", s.stalls_per_play)),
        ("plays with stalls", s.plays_with_stalls.to_string()),
        (
            "byte-exact (to the end)",
            format!("{}/{}", s.byte_exact, s.watched_to_end),
        ),
        ("bytes served", s.bytes_served.to_string()),
        ("bytes from origin", s.bytes_from_origin.to_string()),
        ("origin link bytes", s.origin_wire_bytes.to_string()),
        (
            "byte hit ratio",
            format!("{:.1} %", 100.0 * s.byte_hit_ratio),
        ),
        if o.system == System::NginxHls {
            (
                "cache hit / miss (requests)",
                format!("{} / {}", s.http_cache_hits, s.http_cache_misses),
            )
        } else {
            (
                "full / prefix / miss",
                format!("{} / {} / {}", s.full_hits, s.prefix_hits, s.misses),
            )
        },
    ];
    for (k, v) in rows {
        let _ = writeln!(t, "  {k:<29}{v}");
    }
    // Prefix lengths follow the origin link (in-process Segue edges only).
    for e in o.edges.iter().filter(|e| e.prefix_s_max > 0.0) {
        let _ = writeln!(
            t,
            "  {:<29}{:.1} s at start, {:.1} s at the end, {:.1} s at most",
            format!("prefix, mean ({})", e.name),
            e.prefix_s_start,
            e.prefix_s_end,
            e.prefix_s_max
        );
    }
    t
}

/// Segue and nginx-HLS side by side (Markdown), with the ratios the goal is stated in.
pub fn render_comparison(scenario: &str, runs: &[Summary]) -> String {
    let ms = |v: Option<f64>| v.map_or("-".to_string(), |v| format!("{v:.1}"));
    let mut t = String::new();
    let _ = writeln!(t, "scenario {scenario}, side by side\n");
    let _ = writeln!(
        t,
        "| system | plays | start fail | fail after start | TTFF p50 ms | p95 | p99 | start p50 ms | stalls/play | plays w/ stalls | rebuffer | byte-exact | origin link MB |"
    );
    let _ = writeln!(
        t,
        "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |"
    );
    for s in runs {
        let _ = writeln!(
            t,
            "| {} | {} | {} | {} | {} | {} | {} | {} | {:.3} | {} | {:.3} % | {}/{} | {:.2} |",
            s.system,
            s.plays,
            s.start_failures,
            s.failed_after_start,
            ms(s.ttff_p50_ms),
            ms(s.ttff_p95_ms),
            ms(s.ttff_p99_ms),
            ms(s.startup_p50_ms),
            s.stalls_per_play,
            s.plays_with_stalls,
            100.0 * s.rebuffer_ratio,
            s.byte_exact,
            s.watched_to_end,
            s.origin_wire_bytes as f64 / 1e6,
        );
    }
    let find = |name: &str| runs.iter().find(|s| s.system == name);
    if let (Some(a), Some(b)) = (find("segue"), find("nginx-hls")) {
        let ratio = |x: Option<f64>, y: Option<f64>| match (x, y) {
            (Some(x), Some(y)) if y > 0.0 => format!("{:.3}", x / y),
            _ => "-".into(),
        };
        let _ = writeln!(
            t,
            "\nSegue / nginx-HLS: TTFF p50 {}, p95 {}, playback start p50 {}; origin link bytes {} (goal: TTFF <= 0.5)",
            ratio(a.ttff_p50_ms, b.ttff_p50_ms),
            ratio(a.ttff_p95_ms, b.ttff_p95_ms),
            ratio(a.startup_p50_ms, b.startup_p50_ms),
            ratio(
                Some(a.origin_wire_bytes as f64),
                Some(b.origin_wire_bytes as f64)
            ),
        );
    }
    t
}

fn csv_field(s: &str) -> String {
    if s.contains([',', '"', '\n']) {
        format!("\"{}\"", s.replace('"', "\"\""))
    } else {
        s.to_string()
    }
}

/// Writes every output file into `dir`.
pub fn write(dir: &Path, o: &Outcome, s: &Summary) -> anyhow::Result<()> {
    std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    let w = |name: &str, text: String| {
        std::fs::write(dir.join(name), text).with_context(|| format!("writing {name}"))
    };
    w("plays.json", serde_json::to_string_pretty(o)? + "\n")?;
    w("summary.json", serde_json::to_string_pretty(s)? + "\n")?;
    w("summary.txt", render(o, s))?;
    let mut csv = String::from(
        "id,edge,object,arrival_s,planned_watch_s,ttff_ms,startup_ms,stalls,stall_ms,late_frames,lost_frames,frames_received,frames_expected,hash_ok,bytes,wall_s,watched_until_s,cut,error\n",
    );
    let opt = |v: Option<f64>| v.map_or(String::new(), |v| format!("{v:.3}"));
    for p in &o.plays {
        let r = &p.report;
        let _ = writeln!(
            csv,
            "{},{},{},{:.3},{},{},{},{},{:.1},{},{},{},{},{},{},{:.3},{},{},{}",
            p.id,
            csv_field(&p.edge),
            csv_field(&p.object),
            p.arrival_s,
            opt(p.planned_watch_s),
            opt(r.ttff_ms),
            opt(r.startup_ms),
            r.stalls,
            r.stall_ms,
            r.late_frames,
            r.lost_frames,
            r.frames_received,
            r.frames_expected,
            r.hash_ok,
            r.bytes,
            r.wall_s,
            opt(r.watched_until_s),
            p.cut,
            csv_field(r.error.as_deref().unwrap_or("")),
        );
    }
    w("plays.csv", csv)?;
    let mut tr = String::from("t_s,origin_bytes,edge_bytes,active_plays\n");
    for x in &o.traffic {
        let _ = writeln!(
            tr,
            "{:.3},{},{},{}",
            x.t_s, x.origin_bytes, x.edge_bytes, x.active_plays
        );
    }
    w("traffic.csv", tr)?;
    super::plot::all(dir, o)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles() {
        let v: Vec<f64> = (1..=100).map(f64::from).collect();
        assert_eq!(percentile(&v, 50.0), Some(50.0));
        assert_eq!(percentile(&v, 95.0), Some(95.0));
        assert_eq!(percentile(&v, 99.0), Some(99.0));
        assert_eq!(percentile(&[3.0], 99.0), Some(3.0));
        assert_eq!(percentile(&[], 50.0), None);
    }

    #[test]
    fn comparison_table_and_ratios() {
        let base = Summary {
            system: "segue".into(),
            plays: 10,
            start_failures: 0,
            failed_after_start: 0,
            ttff_p50_ms: Some(2.0),
            ttff_p95_ms: Some(50.0),
            ttff_p99_ms: Some(80.0),
            startup_p50_ms: Some(3.0),
            immediate_starts: 1.0,
            rebuffer_ratio: 0.0,
            stalls_per_play: 0.0,
            plays_with_stalls: 0,
            byte_exact: 4,
            watched_to_end: 4,
            bytes_served: 100,
            bytes_from_origin: 40,
            byte_hit_ratio: 0.6,
            origin_wire_bytes: 1_000_000,
            full_hits: 0,
            prefix_hits: 0,
            misses: 0,
            http_cache_hits: 0,
            http_cache_misses: 0,
        };
        let hls = Summary {
            system: "nginx-hls".into(),
            ttff_p50_ms: Some(8.0),
            ttff_p95_ms: Some(100.0),
            startup_p50_ms: Some(12.0),
            origin_wire_bytes: 2_000_000,
            ..base.clone()
        };
        let t = render_comparison("x", &[base, hls]);
        assert!(
            t.contains("| segue | 10 | 0 | 0 | 2.0 | 50.0 | 80.0 | 3.0 |"),
            "{t}"
        );
        assert!(t.contains("| nginx-hls | 10 |"));
        assert!(
            t.contains(
                "TTFF p50 0.250, p95 0.500, playback start p50 0.250; origin link bytes 0.500"
            ),
            "{t}"
        );
    }

    #[test]
    fn csv_quoting() {
        assert_eq!(csv_field("a,b"), "\"a,b\"");
        assert_eq!(csv_field("say \"x\""), "\"say \"\"x\"\"\"");
        assert_eq!(csv_field("plain"), "plain");
    }
}
