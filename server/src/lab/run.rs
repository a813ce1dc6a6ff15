//! The scenario runner: builds the origin, the edges and a relay on every link (all real
//! QUIC servers in this process, on loopback), drives the planned plays with the real player,
//! samples traffic and counters, and stops everything, even when a play misbehaves: the whole
//! run is bounded by `max_duration_s`.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use anyhow::{Context as _, bail};
use segue_client::{PlayOptions, Report, play};
use segue_wire::{ObjectName, SegueUrl};
use serde::Serialize;
use tokio::sync::{Mutex, watch};
use tokio::task::JoinSet;
use tokio::time::Instant;

use super::population::{Planned, plan};
use super::relay::{self, Counters, Relay, RelaySpec};
use super::scenario::Scenario;
use crate::edge::store::Store;
use crate::edge::{EdgeOptions, EdgeSource};
use crate::library::{Library, LibraryOptions};
use crate::loopback::{self, DevTls};
use crate::node::NodeOptions;

/// How to run.
#[derive(Debug, Clone)]
pub struct LabOptions {
    /// Where `media.samples` are looked up (the repo's media/samples).
    pub samples_dir: PathBuf,
    /// A live progress bar on stderr (when it is a terminal).
    pub progress: bool,
}

/// One play's record.
#[derive(Debug, Clone, Serialize)]
pub struct PlayRecord {
    pub id: usize,
    pub edge: String,
    pub object: String,
    pub arrival_s: f64,
    /// Media seconds the viewer meant to watch; None: to the end.
    pub planned_watch_s: Option<f64>,
    /// The runner's bound cut the play.
    pub cut: bool,
    pub report: Report,
}

/// Traffic at one instant (cumulative wire bytes through the relays, all edges).
#[derive(Debug, Clone, Serialize)]
pub struct TrafficSample {
    pub t_s: f64,
    /// Origin → edges.
    pub origin_bytes: u64,
    /// Edges → players.
    pub edge_bytes: u64,
    pub active_plays: usize,
}

/// An edge's counters at the end.
#[derive(Debug, Clone, Serialize)]
pub struct EdgeCounters {
    pub name: String,
    pub full_hits: u64,
    pub prefix_hits: u64,
    pub misses: u64,
    pub segments_from_origin: u64,
    pub collapsed_fetches: u64,
    /// Segment payload bytes fetched from the origin.
    pub origin_payload_bytes: u64,
    /// Origin link relay: datagrams lost / blackholed / dropped by the rate-limit queue.
    pub origin_link_lost: u64,
    pub origin_link_blackholed: u64,
    pub origin_link_queue_drops: u64,
}

/// Everything a run produced.
#[derive(Debug, Clone, Serialize)]
pub struct Outcome {
    pub scenario: String,
    pub description: String,
    pub seed: u64,
    pub catalog: Vec<String>,
    /// Highest bitrate in the catalog, kbit/s.
    pub bitrate_kbps: f64,
    pub wall_s: f64,
    pub plays: Vec<PlayRecord>,
    pub traffic: Vec<TrafficSample>,
    pub edges: Vec<EdgeCounters>,
}

struct EdgeNode {
    name: String,
    source: EdgeSource,
    origin_relay: Relay,
    player_relay: Relay,
}

/// Finds `<dir>/<stem>.*` media files.
fn sample_files(dir: &Path, stem: &str) -> anyhow::Result<Vec<PathBuf>> {
    let mut v = Vec::new();
    for e in std::fs::read_dir(dir).with_context(|| format!("samples dir {}", dir.display()))? {
        let p = e?.path();
        if p.file_stem().and_then(|s| s.to_str()) == Some(stem)
            && p.extension()
                .and_then(|e| e.to_str())
                .is_some_and(|e| matches!(e, "mp4" | "ts"))
        {
            v.push(p);
        }
    }
    v.sort();
    if v.is_empty() {
        bail!("no sample {stem:?} (.mp4 or .ts) in {}", dir.display());
    }
    // One format per stem is enough for the lab.
    v.truncate(1);
    Ok(v)
}

/// Lays out the origin's media directory.
fn prepare_media(s: &Scenario, o: &LabOptions, media: &Path) -> anyhow::Result<()> {
    std::fs::create_dir_all(media)?;
    let mut files = Vec::new();
    if let Some(d) = &s.media.dir {
        let d = s.base.join(d);
        for e in std::fs::read_dir(&d).with_context(|| format!("media dir {}", d.display()))? {
            let p = e?.path();
            if p.is_file() {
                files.push(p);
            }
        }
        files.sort();
    }
    for stem in &s.media.samples {
        files.extend(sample_files(&o.samples_dir, stem)?);
    }
    let mut k = 0;
    for _ in 0..s.media.copies {
        for f in &files {
            let ext = f.extension().and_then(|e| e.to_str()).unwrap_or("bin");
            let name = if s.media.copies == 1 {
                f.file_name().map(PathBuf::from).unwrap_or_default()
            } else {
                PathBuf::from(format!("obj-{k:03}.{ext}"))
            };
            k += 1;
            let to = media.join(name);
            if std::fs::hard_link(f, &to).is_err() {
                std::fs::copy(f, &to).with_context(|| format!("copying {}", f.display()))?;
            }
        }
    }
    Ok(())
}

/// Runs a scenario. Files are written by the caller (see `report`).
pub async fn run(s: &Scenario, o: &LabOptions) -> anyhow::Result<Outcome> {
    let t0 = Instant::now();
    let work = tempfile::tempdir()?;
    let w = work.path();
    let tls = DevTls::init(&w.join("certs"))?;
    prepare_media(s, o, &w.join("media"))?;
    let lib_opts = LibraryOptions {
        media_root: w.join("media"),
        data_dir: w.join("origin"),
        target_segment_us: s.media.segment_ms.saturating_mul(1000),
    };
    let lib = tokio::task::spawn_blocking(move || Library::open(&lib_opts)).await??;
    if !lib.failures.is_empty() {
        bail!("media failed to ingest: {:?}", lib.failures);
    }
    let names = lib.names();
    if names.is_empty() {
        bail!("the scenario's media holds no object");
    }
    let mut durations = Vec::new();
    let mut bitrate_kbps: f64 = 0.0;
    for n in &names {
        let m = &lib.get(n).context("object vanished")?.manifest;
        let bytes: u64 = m.segments.iter().map(|e| e.size).sum();
        bitrate_kbps =
            bitrate_kbps.max(bytes as f64 * 8.0 / (m.duration_us.max(1) as f64 / 1e6) / 1000.0);
        durations.push(m.duration_us as f64 / 1e6);
    }
    let lib = Arc::new(lib);

    let (stop_tx, stop_rx) = watch::channel(false);
    let mut servers = JoinSet::new();
    let (origin_addr, serving) =
        loopback::origin(&tls, lib.clone(), NodeOptions::default(), stop_rx.clone())?;
    servers.spawn(serving);

    let mut edges = Vec::new();
    for (i, e) in s.edges.iter().enumerate() {
        let (up, down) = e.origin_link.resolve(bitrate_kbps);
        let seed = s.seed.wrapping_add(1000 * i as u64);
        let origin_relay = relay::udp(
            loopback::any_port(),
            origin_addr,
            RelaySpec { up, down, seed },
        )
        .await?;
        let store = Store::open(
            &w.join(format!("edge-{i}")),
            e.cache_mb.saturating_mul(1 << 20),
            e.prefix_s.saturating_mul(1_000_000),
        )?;
        let origin_url =
            SegueUrl::parse(&format!("segue://localhost:{}/", origin_relay.local.port()))?;
        let edge_opts = EdgeOptions {
            parallel: e.parallel,
            ..EdgeOptions::default()
        };
        let (source, edge_addr, serving) =
            loopback::edge(&tls, store, origin_url, edge_opts, stop_rx.clone())?;
        servers.spawn(serving);
        let (up, down) = e.player_link.resolve(bitrate_kbps);
        let player_relay = relay::udp(
            loopback::any_port(),
            edge_addr,
            RelaySpec {
                up,
                down,
                seed: seed + 1,
            },
        )
        .await?;
        for w in &e.warm {
            let targets: Vec<&ObjectName> = if w == "*" {
                names.iter().collect()
            } else {
                names.iter().filter(|n| n.as_str() == w).collect()
            };
            for n in targets {
                source
                    .warm(n)
                    .await
                    .with_context(|| format!("edge {}: warming {n}", e.name))?;
            }
        }
        edges.push(EdgeNode {
            name: e.name.clone(),
            source,
            origin_relay,
            player_relay,
        });
    }
    // Warming traffic is not the players' traffic.
    let base_origin: u64 = edges
        .iter()
        .map(|e| Counters::get(&e.origin_relay.stats.down.bytes_out))
        .sum();

    let planned = plan(&s.players, names.len(), edges.len(), s.seed);
    // Media seconds a planned viewer watches before quitting; None: to the end.
    let planned_watch_s = |p: &Planned| p.watch.map(|f| f * durations[p.object]);
    let deadline = t0 + Duration::from_secs(s.max_duration_s);
    let start = Instant::now();
    let active = Arc::new(AtomicUsize::new(0));
    let done = Arc::new(AtomicUsize::new(0));
    let records = Arc::new(Mutex::new(Vec::with_capacity(planned.len())));
    let bar = (o.progress && std::io::IsTerminal::is_terminal(&std::io::stderr())).then(|| {
        let b = indicatif::ProgressBar::new(planned.len() as u64);
        b.set_style(
            indicatif::ProgressStyle::with_template(
                "{spinner} [{elapsed_precise}] {bar:40} {pos}/{len} plays done  {msg}",
            )
            .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
        );
        b
    });

    let mut plays = JoinSet::new();
    for p in planned.clone() {
        let edge = &edges[p.edge];
        let url = SegueUrl::parse(&format!(
            "segue://localhost:{}/{}",
            edge.player_relay.local.port(),
            names[p.object]
        ))?;
        let mut opts = PlayOptions::new(url, tls.ca.clone());
        opts.startup_buffer = Duration::from_millis(s.players.startup_buffer_ms);
        opts.stall_timeout = Duration::from_secs(s.players.stall_timeout_s.max(1));
        let planned_watch_s = planned_watch_s(&p);
        opts.watch = planned_watch_s.map(Duration::from_secs_f64);
        opts.buffer_samples = p.sampled.then_some(Duration::from_millis(100));
        let (active, done, records) = (active.clone(), done.clone(), records.clone());
        let (edge_name, object) = (edge.name.clone(), names[p.object].to_string());
        let Planned { id, at_s, .. } = p;
        plays.spawn(async move {
            tokio::time::sleep_until(start + Duration::from_secs_f64(at_s)).await;
            active.fetch_add(1, Ordering::Relaxed);
            let report = play(&opts).await;
            active.fetch_sub(1, Ordering::Relaxed);
            done.fetch_add(1, Ordering::Relaxed);
            records.lock().await.push(PlayRecord {
                id,
                edge: edge_name,
                object,
                arrival_s: at_s,
                planned_watch_s,
                cut: false,
                report,
            });
        });
    }

    // Sample traffic until every play is done or the bound is reached.
    let mut traffic = Vec::new();
    let mut tick = tokio::time::interval(Duration::from_millis(250));
    loop {
        tick.tick().await;
        traffic.push(TrafficSample {
            t_s: start.elapsed().as_secs_f64(),
            origin_bytes: edges
                .iter()
                .map(|e| Counters::get(&e.origin_relay.stats.down.bytes_out))
                .sum::<u64>()
                - base_origin,
            edge_bytes: edges
                .iter()
                .map(|e| Counters::get(&e.player_relay.stats.down.bytes_out))
                .sum(),
            active_plays: active.load(Ordering::Relaxed),
        });
        if let Some(b) = &bar {
            b.set_position(done.load(Ordering::Relaxed) as u64);
            b.set_message(format!("{} playing", active.load(Ordering::Relaxed)));
        }
        while plays.try_join_next().is_some() {}
        if plays.is_empty() {
            break;
        }
        if Instant::now() >= deadline {
            tracing::warn!(
                "scenario bound of {} s reached: cutting the remaining plays",
                s.max_duration_s
            );
            plays.shutdown().await;
            break;
        }
    }
    if let Some(b) = &bar {
        b.finish_and_clear();
    }
    let mut records = std::mem::take(&mut *records.lock().await);
    // Plays the bound cut are reported, not silently dropped.
    for p in &planned {
        if !records.iter().any(|r| r.id == p.id) {
            records.push(PlayRecord {
                id: p.id,
                edge: edges[p.edge].name.clone(),
                object: names[p.object].to_string(),
                arrival_s: p.at_s,
                planned_watch_s: planned_watch_s(p),
                cut: true,
                report: Report {
                    error: Some("cut by the scenario's max_duration_s".into()),
                    ..Report::default()
                },
            });
        }
    }
    records.sort_by_key(|r| r.id);

    let edge_counters = edges
        .iter()
        .map(|e| {
            let st = e.source.stats();
            let l = &e.origin_relay.stats.down;
            EdgeCounters {
                name: e.name.clone(),
                full_hits: st.full_hits.load(Ordering::Relaxed),
                prefix_hits: st.prefix_hits.load(Ordering::Relaxed),
                misses: st.misses.load(Ordering::Relaxed),
                segments_from_origin: st.segments_from_origin.load(Ordering::Relaxed),
                collapsed_fetches: st.collapsed.load(Ordering::Relaxed),
                origin_payload_bytes: e.source.upstream().stats.bytes.load(Ordering::Relaxed),
                origin_link_lost: Counters::get(&l.lost)
                    + Counters::get(&e.origin_relay.stats.up.lost),
                origin_link_blackholed: Counters::get(&l.blackholed)
                    + Counters::get(&e.origin_relay.stats.up.blackholed),
                origin_link_queue_drops: Counters::get(&l.queue_drops)
                    + Counters::get(&e.origin_relay.stats.up.queue_drops),
            }
        })
        .collect();

    let _ = stop_tx.send(true);
    let _ = tokio::time::timeout(Duration::from_secs(3), async {
        while servers.join_next().await.is_some() {}
    })
    .await;
    servers.shutdown().await;
    for e in edges {
        e.origin_relay.stop().await;
        e.player_relay.stop().await;
    }
    Ok(Outcome {
        scenario: s.name.clone(),
        description: s.description.clone(),
        seed: s.seed,
        catalog: names.iter().map(ToString::to_string).collect(),
        bitrate_kbps,
        wall_s: t0.elapsed().as_secs_f64(),
        plays: records,
        traffic,
        edges: edge_counters,
    })
}
