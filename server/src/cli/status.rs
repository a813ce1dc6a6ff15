//! `segue edge status`: an edge's state from its admin API (`/metrics`, and `/objects` with
//! the token), as a short report.

use std::collections::HashMap;
use std::fmt::Write as _;
use std::net::SocketAddr;
use std::time::Duration;

use anyhow::{Context as _, bail};
use bytes::Bytes;
use http_body_util::{BodyExt as _, Empty};
use hyper::Request;
use hyper_util::rt::TokioIo;

use clap::{Args, Subcommand};

use crate::config::EdgeConfig;
use crate::edge::store::ObjectStatus;

#[derive(Args, Debug)]
#[command(args_conflicts_with_subcommands = true, subcommand_negates_reqs = true)]
pub struct EdgeCmd {
    #[command(subcommand)]
    pub command: Option<EdgeCommand>,
    #[command(flatten)]
    pub run: Box<EdgeConfig>,
}

#[derive(Subcommand, Debug)]
pub enum EdgeCommand {
    /// Print a running edge's state from its admin API: sessions by case, bytes, origin
    /// link, cache, and (with the token) every cached object's prefix.
    Status {
        /// The edge's admin API address.
        #[arg(long, default_value = "127.0.0.1:9555")]
        admin: SocketAddr,
        /// Admin token (objects are listed only with it).
        #[arg(long, env = "SEGUE_ADMIN_TOKEN", hide_env_values = true)]
        admin_token: Option<String>,
    },
}

/// Largest admin answer read.
const MAX_ANSWER: usize = 16 << 20;

/// GETs `path` from the admin API at `addr`.
pub async fn get(addr: SocketAddr, path: &str, token: Option<&str>) -> anyhow::Result<String> {
    let work = async {
        let tcp = tokio::net::TcpStream::connect(addr)
            .await
            .with_context(|| format!("no admin API at {addr}"))?;
        let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(tcp)).await?;
        tokio::spawn(conn);
        let mut req = Request::get(path).header(hyper::header::HOST, addr.to_string());
        if let Some(t) = token {
            req = req.header(hyper::header::AUTHORIZATION, format!("Bearer {t}"));
        }
        let resp = sender
            .send_request(req.body(Empty::<Bytes>::new())?)
            .await?;
        let status = resp.status();
        let body = http_body_util::Limited::new(resp.into_body(), MAX_ANSWER)
            .collect()
            .await
            .map_err(|e| anyhow::anyhow!("reading {path}: {e}"))?
            .to_bytes();
        let text = String::from_utf8_lossy(&body).into_owned();
        if !status.is_success() {
            bail!("{path}: {status}: {}", text.trim());
        }
        Ok(text)
    };
    tokio::time::timeout(Duration::from_secs(10), work)
        .await
        .with_context(|| format!("admin API at {addr} did not answer within 10 s"))?
}

/// Prometheus text as name → value (samples without labels).
pub fn parse_metrics(text: &str) -> HashMap<String, f64> {
    text.lines()
        .filter(|l| !l.starts_with('#'))
        .filter_map(|l| {
            let (k, v) = l.rsplit_once(' ')?;
            Some((k.trim().to_owned(), v.trim().parse().ok()?))
        })
        .collect()
}

/// The report of an edge's state.
pub fn render(metrics: &HashMap<String, f64>, objects: Option<&[ObjectStatus]>) -> String {
    let m = |k: &str| {
        metrics
            .get(&format!("segue_edge_{k}"))
            .copied()
            .unwrap_or(0.0)
    };
    let mut out = String::new();
    let (full, prefix, miss) = (
        m("full_hits_total"),
        m("prefix_hits_total"),
        m("misses_total"),
    );
    let _ = writeln!(
        out,
        "sessions   {} (full hits {full}, prefix hits {prefix}, misses {miss})",
        full + prefix + miss
    );
    let served = m("served_bytes_total");
    let from_origin = m("origin_bytes_total");
    let _ = writeln!(
        out,
        "bytes      served {:.1} MB, from origin {:.1} MB{}",
        served / 1e6,
        from_origin / 1e6,
        if served > 0.0 {
            format!(" ({:.0} % of served)", 100.0 * from_origin / served)
        } else {
            String::new()
        }
    );
    let _ = writeln!(
        out,
        "origin     rtt {:.1} ms ± {:.1} ms, throughput {:.2} MB/s",
        m("origin_rtt_seconds") * 1e3,
        m("origin_rtt_deviation_seconds") * 1e3,
        m("origin_throughput_bytes_per_second") / 1e6
    );
    let _ = writeln!(
        out,
        "cache      {:.1} of {:.1} MB{}, {} objects, {} evictions, {} segments pushed here",
        m("cache_used_bytes") / 1e6,
        m("cache_capacity_bytes") / 1e6,
        match metrics.get("segue_edge_cache_capacity_effective_bytes") {
            Some(e) if *e < m("cache_capacity_bytes") => format!(" (disk full: {:.1} MB)", e / 1e6),
            _ => String::new(),
        },
        m("cached_objects"),
        m("evictions_total"),
        m("pushed_segments_total")
    );
    // Helpers (docs/HELPERS.md): only when this edge has peers or serves some.
    let adverts: f64 = ["local", "regional", "national", "global"]
        .iter()
        .map(|s| m(&format!("advert_bytes_sent_total{{scope=\"{s}\"}}")))
        .sum();
    if adverts > 0.0 || m("segments_to_peers_total") > 0.0 {
        let _ = writeln!(
            out,
            "helpers    {} segments ({:.1} MB) from peers, {} served to peers, {:.1} kB of adverts sent, {} refused",
            m("segments_from_peers_total"),
            m("peer_bytes_total") / 1e6,
            m("segments_to_peers_total"),
            adverts / 1e3,
            m("adverts_refused_total"),
        );
    }
    match objects {
        None => {
            let _ = writeln!(out, "(objects: give --admin-token or SEGUE_ADMIN_TOKEN)");
        }
        Some(objs) => {
            let _ = writeln!(
                out,
                "\n{:<32} {:>8} {:>8} {:>9} {:>10} {:>9}",
                "object", "prefix", "complete", "held", "held MB", "req/h"
            );
            for o in objs {
                let held: usize = o.held.iter().map(|(a, b)| b - a).sum();
                let _ = writeln!(
                    out,
                    "{:<32} {:>7.1}s {:>8} {:>9} {:>10.1} {:>9.1}",
                    o.object,
                    o.prefix_s,
                    if o.prefix_complete { "yes" } else { "no" },
                    format!("{held}/{}", o.segments),
                    o.held_bytes as f64 / 1e6,
                    o.request_rate * 3600.0
                );
            }
        }
    }
    out
}

/// Fetches and renders an edge's status.
pub async fn edge_status(addr: SocketAddr, token: Option<&str>) -> anyhow::Result<String> {
    let metrics = parse_metrics(&get(addr, "/metrics", None).await?);
    if !metrics.keys().any(|k| k.starts_with("segue_edge_")) {
        bail!("{addr} is not an edge's admin API (no segue_edge_ metrics)");
    }
    let objects: Option<Vec<ObjectStatus>> = match token {
        Some(t) => Some(
            serde_json::from_str(&get(addr, "/objects", Some(t)).await?)
                .context("unreadable /objects")?,
        ),
        None => None,
    };
    Ok(render(&metrics, objects.as_deref()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn metrics_text_and_report() {
        let text = "# HELP x\n# TYPE segue_edge_misses counter\nsegue_edge_misses_total 2\n\
                    segue_edge_full_hits_total 1\nsegue_edge_served_bytes_total 4000000\n\
                    segue_edge_origin_bytes_total 1000000\n# EOF\n";
        let m = parse_metrics(text);
        assert_eq!(m["segue_edge_misses_total"], 2.0);
        let r = render(&m, None);
        assert!(
            r.contains("sessions   3 (full hits 1, prefix hits 0, misses 2)"),
            "{r}"
        );
        assert!(r.contains("from origin 1.0 MB (25 % of served)"), "{r}");
        assert!(!r.contains("helpers"), "no peers: no helper line\n{r}");
        let mut h = m.clone();
        h.insert("segue_edge_segments_from_peers_total".into(), 12.0);
        h.insert("segue_edge_peer_bytes_total".into(), 3_000_000.0);
        h.insert(
            "segue_edge_advert_bytes_sent_total{scope=\"local\"}".into(),
            2500.0,
        );
        let r = render(&h, None);
        assert!(
            r.contains("helpers    12 segments (3.0 MB) from peers, 0 served to peers, 2.5 kB of adverts sent"),
            "{r}"
        );
        let objs = [ObjectStatus {
            object: "films/a".into(),
            revision: 1,
            segments: 10,
            held: vec![(0, 3), (5, 6)],
            held_bytes: 2_500_000,
            prefix_s: 6.0,
            prefix_segments: 3,
            prefix_complete: true,
            request_rate: 0.01,
        }];
        let r = render(&m, Some(&objs));
        assert!(r.contains("films/a"), "{r}");
        assert!(r.contains("4/10"), "{r}");
        assert!(r.contains("36.0"), "{r}");
    }
}
