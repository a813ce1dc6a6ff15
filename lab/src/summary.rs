//! What a run means: the summary table, and the files (`plays.json`, `plays.csv`,
//! `traffic.csv`, `summary.json`, `summary.txt`, plots).

use std::fmt::Write as _;
use std::path::Path;

use anyhow::Context as _;
use serde::{Deserialize, Serialize};

use super::run::{Outcome, System};

/// The scenario's figures.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Summary {
    pub system: String,
    pub plays: usize,
    pub start_failures: usize,
    /// Plays that ended with an error after starting.
    pub failed_after_start: usize,
    pub ttff_p50_ms: Option<f64>,
    pub ttff_p95_ms: Option<f64>,
    pub ttff_p99_ms: Option<f64>,
    /// Click to first frame (handshake included), median and 95th percentile.
    #[serde(default)]
    pub click_p50_ms: Option<f64>,
    #[serde(default)]
    pub click_p95_ms: Option<f64>,
    /// Plays whose connection resumed a TLS session.
    #[serde(default)]
    pub resumed: usize,
    /// Playback start (startup buffer filled), median.
    pub startup_p50_ms: Option<f64>,
    pub startup_p95_ms: Option<f64>,
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
    /// The helper network, when the edges cooperated.
    pub helpers: Option<HelperSummary>,
}

/// What the helpers cost and what a kill did.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct HelperSummary {
    /// Advert bytes sent during the plays by scope (local, regional, national, global), and
    /// as a fraction of the media bytes served.
    pub advert_bytes: [u64; 4],
    pub advert_overhead: f64,
    pub peer_payload_bytes: u64,
    pub peer_wire_bytes: u64,
    /// The killed helper: its own players' plays, how many it cut; the plays at other
    /// helpers running when it died, and those of them that stalled or failed.
    pub killed: Option<String>,
    pub killed_own_plays: usize,
    pub killed_own_cut: usize,
    /// Its players who went on from a fallback edge (`[players] fallback`).
    pub killed_own_failed_over: usize,
    /// Its players who arrived after it died (nobody answered them).
    pub killed_own_refused: usize,
    pub running_elsewhere: usize,
    pub running_elsewhere_stalled: usize,
    pub running_elsewhere_failed: usize,
    /// Plays at the other helpers: failed after start, with stalls.
    pub elsewhere_failed: usize,
    pub elsewhere_with_stalls: usize,
    pub failovers_from_killed: u64,
}

fn helper_summary(o: &Outcome, served: u64) -> Option<HelperSummary> {
    let h = o.helpers.as_ref()?;
    let adverts: u64 = h.advert_bytes.iter().sum();
    let mut out = HelperSummary {
        advert_bytes: h.advert_bytes,
        advert_overhead: if served > 0 {
            adverts as f64 / served as f64
        } else {
            0.0
        },
        peer_payload_bytes: h.peer_payload_bytes,
        peer_wire_bytes: h.peer_wire_bytes,
        killed: None,
        killed_own_plays: 0,
        killed_own_cut: 0,
        killed_own_failed_over: 0,
        killed_own_refused: 0,
        running_elsewhere: 0,
        running_elsewhere_stalled: 0,
        running_elsewhere_failed: 0,
        elsewhere_failed: 0,
        elsewhere_with_stalls: 0,
        failovers_from_killed: h.failovers_from_killed,
    };
    let Some((name, at)) = &h.killed else {
        return Some(out);
    };
    out.killed = Some(format!("{name} at {at:.0} s"));
    let failed = |p: &&super::run::PlayRecord| p.report.error.is_some() && !p.cut;
    for p in &o.plays {
        let running = p.arrival_s <= *at && p.arrival_s + p.report.wall_s > *at;
        if &p.edge == name {
            out.killed_own_plays += 1;
            out.killed_own_cut += usize::from(running && failed(&p));
            out.killed_own_failed_over += usize::from(!p.report.failovers.is_empty());
            out.killed_own_refused += usize::from(p.arrival_s > *at);
        } else {
            out.elsewhere_failed += usize::from(failed(&p));
            out.elsewhere_with_stalls += usize::from(p.report.stalls > 0);
            if running {
                out.running_elsewhere += 1;
                out.running_elsewhere_stalled += usize::from(p.report.stalls > 0);
                out.running_elsewhere_failed += usize::from(failed(&p));
            }
        }
    }
    Some(out)
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
    let mut click: Vec<f64> = plays.iter().filter_map(|p| p.report.click_ms).collect();
    click.sort_by(f64::total_cmp);
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
        click_p50_ms: percentile(&click, 50.0),
        click_p95_ms: percentile(&click, 95.0),
        resumed: plays
            .iter()
            .filter(|p| p.report.resumed == Some(true))
            .count(),
        startup_p50_ms: percentile(&startup, 50.0),
        startup_p95_ms: percentile(&startup, 95.0),
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
        helpers: helper_summary(o, served),
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
    let n = &o.network;
    let _ = writeln!(
        t,
        "  network: {}; Segue congestion control {}{}",
        n.kind,
        n.segue_congestion,
        n.tcp_congestion
            .as_ref()
            .map(|c| format!(", kernel TCP {c}"))
            .unwrap_or_default()
    );
    if let Some(b) = &o.bulk {
        let _ = writeln!(
            t,
            "  bulk TCP flow through {}'s player link from {:.0} s for {:.1} s: {:.2} Mbit/s of {:.2} on the link ({:.0} % share){}",
            b.edge,
            b.start_s,
            b.secs,
            b.bulk_mbps,
            b.link_mbps,
            100.0 * b.bulk_share,
            b.error
                .as_ref()
                .map(|e| format!("; {e}"))
                .unwrap_or_default()
        );
    }
    let rows = [
        ("plays", s.plays.to_string()),
        ("start failures", s.start_failures.to_string()),
        ("failed after start", s.failed_after_start.to_string()),
        ("TTFF p50", ms(s.ttff_p50_ms)),
        ("TTFF p95", ms(s.ttff_p95_ms)),
        ("TTFF p99", ms(s.ttff_p99_ms)),
        ("click to first frame p50", ms(s.click_p50_ms)),
        ("click to first frame p95", ms(s.click_p95_ms)),
        ("resumed sessions", s.resumed.to_string()),
        ("playback start p50", ms(s.startup_p50_ms)),
        ("playback start p95", ms(s.startup_p95_ms)),
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
    if let Some(h) = &s.helpers {
        let [l, r, n, g] = h.advert_bytes;
        let mut rows = vec![
            (
                "advert bytes by scope",
                format!("local {l}, regional {r}, national {n}, global {g}"),
            ),
            (
                "advert overhead",
                format!("{:.4} % of media bytes served", 100.0 * h.advert_overhead),
            ),
            (
                "segment bytes between helpers",
                h.peer_payload_bytes.to_string(),
            ),
        ];
        if let Some(k) = &h.killed {
            rows.push(("helper killed", k.clone()));
            rows.push((
                "  its own plays",
                format!(
                    "{}: {} cut, {} failed over, {} arrived after",
                    h.killed_own_plays,
                    h.killed_own_cut,
                    h.killed_own_failed_over,
                    h.killed_own_refused
                ),
            ));
            rows.push((
                "  running elsewhere then",
                format!(
                    "{}: {} stalled, {} failed",
                    h.running_elsewhere, h.running_elsewhere_stalled, h.running_elsewhere_failed
                ),
            ));
            rows.push((
                "  all plays elsewhere",
                format!(
                    "{} failed, {} with stalls",
                    h.elsewhere_failed, h.elsewhere_with_stalls
                ),
            ));
            rows.push(("  fetches failed over", h.failovers_from_killed.to_string()));
        }
        for (k, v) in rows {
            let _ = writeln!(t, "  {k:<29}{v}");
        }
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
        "| system | plays | start fail | fail after start | TTFF p50 ms | p95 | p99 | start p50 ms | start p95 ms | stalls/play | plays w/ stalls | rebuffer | byte-exact | origin link MB |"
    );
    let _ = writeln!(
        t,
        "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |"
    );
    for s in runs {
        let _ = writeln!(
            t,
            "| {} | {} | {} | {} | {} | {} | {} | {} | {} | {:.3} | {} | {:.3} % | {}/{} | {:.2} |",
            s.system,
            s.plays,
            s.start_failures,
            s.failed_after_start,
            ms(s.ttff_p50_ms),
            ms(s.ttff_p95_ms),
            ms(s.ttff_p99_ms),
            ms(s.startup_p50_ms),
            ms(s.startup_p95_ms),
            s.stalls_per_play,
            s.plays_with_stalls,
            100.0 * s.rebuffer_ratio,
            s.byte_exact,
            s.watched_to_end,
            s.origin_wire_bytes as f64 / 1e6,
        );
    }
    let find = |name: &str| runs.iter().find(|s| s.system == name);
    if let (Some(a), Some(b)) = (find("segue"), find("segue-independent")) {
        let r = |x: u64, y: u64| {
            if y > 0 {
                format!("{:.3}", x as f64 / y as f64)
            } else {
                "-".into()
            }
        };
        let _ = writeln!(
            t,
            "\ncooperating / independent helpers: origin link bytes {} (goal <= 0.5), segment bytes from origin {} (per byte served: {:.3} vs {:.3}); byte hit ratio {:.1} % vs {:.1} %; stalls/play {:.3} vs {:.3}; advert overhead {}",
            r(a.origin_wire_bytes, b.origin_wire_bytes),
            r(a.bytes_from_origin, b.bytes_from_origin),
            a.bytes_from_origin as f64 / a.bytes_served.max(1) as f64,
            b.bytes_from_origin as f64 / b.bytes_served.max(1) as f64,
            100.0 * a.byte_hit_ratio,
            100.0 * b.byte_hit_ratio,
            a.stalls_per_play,
            b.stalls_per_play,
            a.helpers.as_ref().map_or("-".into(), |h| format!(
                "{:.4} % of media (goal <= 1 %)",
                100.0 * h.advert_overhead
            )),
        );
    }
    if let (Some(a), Some(b)) = (find("segue"), find("nginx-hls")) {
        let ratio = |x: Option<f64>, y: Option<f64>| match (x, y) {
            (Some(x), Some(y)) if y > 0.0 => format!("{:.3}", x / y),
            _ => "-".into(),
        };
        let _ = writeln!(
            t,
            "\nSegue / nginx-HLS: TTFF p50 {}, p95 {}, playback start p50 {}, p95 {}; origin link bytes {} (goal: TTFF p95 <= 0.5, playback start p95 <= 1)",
            ratio(a.ttff_p50_ms, b.ttff_p50_ms),
            ratio(a.ttff_p95_ms, b.ttff_p95_ms),
            ratio(a.startup_p50_ms, b.startup_p50_ms),
            ratio(a.startup_p95_ms, b.startup_p95_ms),
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
        "id,edge,object,arrival_s,planned_watch_s,ttff_ms,startup_ms,stalls,stall_ms,late_frames,lost_frames,frames_received,frames_expected,hash_ok,bytes,wall_s,watched_until_s,cut,error,viewer,click_ms,resumed\n",
    );
    let opt = |v: Option<f64>| v.map_or(String::new(), |v| format!("{v:.3}"));
    for p in &o.plays {
        let r = &p.report;
        let _ = writeln!(
            csv,
            "{},{},{},{:.3},{},{},{},{},{:.1},{},{},{},{},{},{},{:.3},{},{},{},{},{},{}",
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
            p.viewer,
            opt(r.click_ms),
            r.resumed.map_or(String::new(), |b| b.to_string()),
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
            click_p50_ms: None,
            click_p95_ms: None,
            resumed: 0,
            startup_p50_ms: Some(3.0),
            startup_p95_ms: Some(4.0),
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
            helpers: None,
        };
        let hls = Summary {
            system: "nginx-hls".into(),
            ttff_p50_ms: Some(8.0),
            ttff_p95_ms: Some(100.0),
            startup_p50_ms: Some(12.0),
            startup_p95_ms: Some(16.0),
            origin_wire_bytes: 2_000_000,
            ..base.clone()
        };
        let t = render_comparison("x", &[base, hls]);
        assert!(
            t.contains("| segue | 10 | 0 | 0 | 2.0 | 50.0 | 80.0 | 3.0 | 4.0 |"),
            "{t}"
        );
        assert!(t.contains("| nginx-hls | 10 |"));
        assert!(
            t.contains(
                "TTFF p50 0.250, p95 0.500, playback start p50 0.250, p95 0.250; origin link bytes 0.500"
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
