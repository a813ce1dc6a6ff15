//! A scenario on the classic CDN stack: nginx origin → TCP relay (the origin link's
//! impairments) → nginx caching edge → TCP relay (the player link's) → HLS players. Same
//! catalog (names, durations, bitrate, hence link rates), population and seed as the Segue run.

use std::path::Path;
use std::sync::Arc;

use anyhow::{Context as _, bail};
use tokio::time::Instant;

use super::nginx::{self, Nginx};
use super::player::{self, HlsPlayOptions};
use super::prepare::{self, HlsObject};
use crate::loopback::{self, NodeTls};
use crate::relay::{self, RelaySpec};
use crate::run::{
    EdgeLinks, LabOptions, Outcome, PlaySpec, System, drive, ingest, link_counters, outcome,
};
use crate::scenario::Scenario;

struct EdgeNode {
    links: EdgeLinks,
    /// The relay in front of it, where its players connect.
    player_addr: std::net::SocketAddr,
    nginx: Nginx,
}

pub async fn run(
    s: &Scenario,
    o: &LabOptions,
    t0: Instant,
    w: &Path,
    tls: &NodeTls,
) -> anyhow::Result<Outcome> {
    let bin = nginx::binary().await?;
    // The catalog as Segue sees it (names, durations, bitrate), so both runs are alike.
    let catalog = ingest(s, w, &w.join("ingest")).await?;
    let bitrate_kbps = catalog.bitrate_kbps;
    let hls_root = w.join("hls");
    let mut objects = Vec::new();
    for n in &catalog.names {
        let src = source_file(&w.join("media"), n)?;
        objects.push(Arc::new(
            prepare::prepare(&src, &hls_root, n, s.media.segment_ms).await?,
        ));
    }
    let viewer_configs = ViewerTls::new(&tls.ca, s)?;

    let origin = nginx::origin(
        &bin,
        &w.join("nginx-origin"),
        &hls_root,
        tls,
        &nginx::Place::loopback()?,
    )
    .await?;
    let mut edges = Vec::new();
    for (i, e) in s.edges.iter().enumerate() {
        let (up, down) = e.origin_link.resolve(bitrate_kbps);
        let seed = s.seed.wrapping_add(1000 * i as u64);
        let origin_relay = relay::tcp(
            loopback::any_port(),
            origin.addr,
            RelaySpec { up, down, seed },
        )
        .await?;
        let ng = nginx::edge(
            &bin,
            &w.join(format!("nginx-edge-{i}")),
            origin_relay.local,
            e.cache_mb,
            tls,
            &nginx::Place::loopback()?,
        )
        .await?;
        let (up, down) = e.player_link.resolve(bitrate_kbps);
        let player_relay = relay::tcp(
            loopback::any_port(),
            ng.addr,
            RelaySpec {
                up,
                down,
                seed: seed + 1,
            },
        )
        .await?;
        // Warm the same prefix Segue's edge would: the segments covering prefix_s.
        for (k, n) in catalog.names.iter().enumerate() {
            if !e.warm.iter().any(|w| w == "*" || w == n) {
                continue;
            }
            let segs = prefix_segments(&objects[k], e.prefix_s as f64);
            let opts = play_options(ng.addr, n, viewer_configs.fresh(), &objects[k], None, None);
            player::warm(&opts, segs)
                .await
                .with_context(|| format!("edge {}: warming {n}", e.name))?;
        }
        edges.push(EdgeNode {
            player_addr: player_relay.local,
            links: EdgeLinks::relays(&e.name, origin_relay, player_relay),
            nginx: ng,
        });
    }

    let links: Vec<&EdgeLinks> = edges.iter().map(|e| &e.links).collect();
    let addrs: Vec<_> = edges.iter().map(|e| e.player_addr).collect();
    let (plays, traffic) = drive(s, o, &catalog, &links, |spec: PlaySpec| {
        let mut opts = play_options(
            addrs[spec.edge],
            &catalog.names[spec.object],
            viewer_configs.of(spec.viewer),
            &objects[spec.object],
            Some(&spec),
            Some(crate::run::loopback_viewer(spec.viewer)),
        );
        opts.startup_buffer = spec.startup_buffer;
        async move { player::play(&opts).await }
    })
    .await;
    drop(links);

    let counters = edges
        .iter()
        .map(|e| {
            let c = e.nginx.cache_counts();
            crate::run::EdgeCounters {
                segments_from_origin: c.misses,
                origin_payload_bytes: c.upstream_bytes,
                http_cache_hits: c.hits,
                http_cache_misses: c.misses,
                ..link_counters(&e.links.name, &e.links.origin)
            }
        })
        .collect();
    for e in edges {
        e.nginx.stop().await;
        e.links.stop().await;
    }
    origin.stop().await;
    Ok(outcome(
        s,
        System::NginxHls,
        t0,
        catalog,
        plays,
        traffic,
        counters,
    ))
}

/// The media file an object was ingested from (`<stem>.mp4` or `.ts`).
pub(crate) fn source_file(media: &Path, name: &str) -> anyhow::Result<std::path::PathBuf> {
    for ext in ["mp4", "ts"] {
        let p = media.join(format!("{name}.{ext}"));
        if p.is_file() {
            return Ok(p);
        }
    }
    bail!("no media file for object {name}")
}

/// Segments whose start lies within the first `prefix_s` seconds.
pub(crate) fn prefix_segments(o: &HlsObject, prefix_s: f64) -> usize {
    let mut t = 0.0;
    let mut n = 0;
    for (_, d) in &o.segments {
        if t >= prefix_s {
            break;
        }
        t += d;
        n += 1;
    }
    n
}

/// `base` (the lab's HLS players' config) with, if `resume`, its own store of
/// session tickets (one viewer's); without, it resumes nothing. (rustls's default keeps
/// tickets in the config, so one config shared by every viewer let each resume another's
/// session with the same edge: a smaller, certificate-less server flight no Segue viewer
/// got, and reported as not resumed. Session 30.)
fn viewer_tls(
    base: &tokio_rustls::rustls::ClientConfig,
    resume: bool,
) -> Arc<tokio_rustls::rustls::ClientConfig> {
    let mut c = base.clone();
    c.resumption = if resume {
        tokio_rustls::rustls::client::Resumption::in_memory_sessions(8)
    } else {
        tokio_rustls::rustls::client::Resumption::disabled()
    };
    Arc::new(c)
}

/// The HLS players' TLS configs by viewer, each with the viewer's own tickets: a new
/// viewer resumes nothing (as Segue's), a reconnection within a play resumes its own
/// session (as a browser's), and a returning viewer the session of its earlier play. And
/// one that resumes nothing, for the runner's own requests (warming).
pub(crate) struct ViewerTls {
    none: Arc<tokio_rustls::rustls::ClientConfig>,
    own: Vec<Arc<tokio_rustls::rustls::ClientConfig>>,
}

impl ViewerTls {
    pub(crate) fn new(ca: &Path, s: &Scenario) -> anyhow::Result<Self> {
        // The CA read once; each viewer's config a copy with its own ticket store.
        let base = segue_certs::tls::client_config(ca, &[b"http/1.1"]).context("client TLS")?;
        Ok(Self {
            none: viewer_tls(&base, false),
            own: (0..s.players.count)
                .map(|_| viewer_tls(&base, true))
                .collect(),
        })
    }

    /// Viewer `viewer`'s (one that resumes nothing past the scenario's count, which no
    /// planned viewer is).
    pub(crate) fn of(&self, viewer: usize) -> &Arc<tokio_rustls::rustls::ClientConfig> {
        self.own.get(viewer).unwrap_or(&self.none)
    }

    /// The config that resumes nothing.
    pub(crate) fn fresh(&self) -> &Arc<tokio_rustls::rustls::ClientConfig> {
        &self.none
    }
}

pub(crate) fn play_options(
    addr: std::net::SocketAddr,
    object: &str,
    tls: &Arc<tokio_rustls::rustls::ClientConfig>,
    expected: &Arc<HlsObject>,
    spec: Option<&PlaySpec>,
    bind: Option<std::net::IpAddr>,
) -> HlsPlayOptions {
    HlsPlayOptions {
        addr,
        host: "localhost".into(),
        object: object.to_owned(),
        tls: tls.clone(),
        startup_buffer: spec.map_or(std::time::Duration::ZERO, |s| s.startup_buffer),
        stall_timeout: spec.map_or(std::time::Duration::from_secs(10), |s| s.stall_timeout),
        connect_timeout: std::time::Duration::from_secs(5),
        watch: spec.and_then(|s| s.watch),
        buffer_samples: spec.and_then(|s| s.buffer_samples),
        max_ahead: std::time::Duration::from_secs(30),
        expected: Some(expected.clone()),
        bind,
    }
}
