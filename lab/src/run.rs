//! The scenario runner: builds the origin, the edges and a relay on every link (all real
//! QUIC servers in this process, on loopback), drives the planned plays with the real player,
//! samples traffic and counters, and stops everything, even when a play misbehaves: the plays
//! are bounded by `max_duration_s` from their start (set-up has timeouts of its own).

use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use anyhow::{Context as _, bail};
use segue_client::{ConnectOptions, PlayOptions, Report, play};
use segue_net::TransportSettings;
use segue_wire::SegueUrl;
use serde::Serialize;
use tokio::sync::{Mutex, watch};
use tokio::task::JoinSet;
use tokio::time::Instant;

use super::population::{Planned, plan};
use super::relay::{self, Counters, Relay, RelaySpec, RelayStats};
use super::scenario::Scenario;
use crate::loopback::{self, NodeTls};
use segue_server::config::{EdgeConfig, OriginConfig};
use segue_server::edge::EdgeSource;
use segue_server::edge::node::Edge;
use segue_server::origin::Origin;
use segue_server::origin::library::{Library, LibraryOptions};

/// Which system carries the plays.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, serde::Deserialize)]
pub enum System {
    /// Segue's origin and edges, players are `segue-play`.
    #[default]
    #[serde(rename = "segue")]
    Segue,
    /// nginx as origin and caching edge serving HLS, players are the lab's HLS player.
    #[serde(rename = "nginx-hls")]
    NginxHls,
    /// Segue with the scenario's helpers not cooperating (independent edges).
    #[serde(rename = "segue-independent")]
    SegueIndependent,
}

impl std::fmt::Display for System {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            System::Segue => "segue",
            System::NginxHls => "nginx-hls",
            System::SegueIndependent => "segue-independent",
        })
    }
}

/// How to run.
#[derive(Debug, Clone)]
pub struct LabOptions {
    /// Where `media.samples` are looked up (the repo's media/samples).
    pub samples_dir: PathBuf,
    /// A live progress bar on stderr (when it is a terminal).
    pub progress: bool,
    pub system: System,
    /// Segue's nodes as processes in their own network namespaces (root only; see
    /// `lab::nodes`). Otherwise everything runs in this process on loopback.
    pub netns: bool,
    /// The `segue` binary the namespaced nodes run (default: this executable).
    pub segue_bin: Option<PathBuf>,
}

/// One play's record.
#[derive(Debug, Clone, Serialize)]
pub struct PlayRecord {
    pub id: usize,
    /// Its viewer: its own id, or an earlier play's for a returning viewer.
    pub viewer: usize,
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
    /// nginx edges: requests answered from the cache / from upstream ($upstream_cache_status).
    pub http_cache_hits: u64,
    pub http_cache_misses: u64,
    /// Segue edges run in process: mean prefix kept per cached object (seconds of media)
    /// when the plays started, at the end, and the largest seen (sampled every 0.5 s).
    pub prefix_s_start: f64,
    pub prefix_s_end: f64,
    pub prefix_s_max: f64,
}

impl EdgeCounters {
    /// An edge's own counters on top of its link's (`base`).
    pub(crate) fn from_snapshot(
        st: &segue_server::edge::StatsSnapshot,
        base: EdgeCounters,
    ) -> Self {
        EdgeCounters {
            full_hits: st.full_hits,
            prefix_hits: st.prefix_hits,
            misses: st.misses,
            segments_from_origin: st.segments_from_origin,
            collapsed_fetches: st.collapsed,
            origin_payload_bytes: st.origin_bytes,
            ..base
        }
    }
}

/// Everything a run produced.
#[derive(Debug, Clone, Serialize)]
pub struct Outcome {
    pub system: System,
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
    /// The helper network, when the edges cooperated.
    pub helpers: Option<HelperOutcome>,
    /// How the run's network was made: "loopback relays" or "packet-level (TUN, namespaces)",
    /// and the congestion controllers of each side.
    pub network: NetworkInfo,
    /// The competing bulk TCP flow, if the scenario had one.
    pub bulk: Option<BulkOutcome>,
}

/// The network a run crossed.
#[derive(Debug, Clone, Default, Serialize)]
pub struct NetworkInfo {
    pub kind: String,
    /// Segue's controller (nodes and players).
    pub segue_congestion: String,
    /// Kernel TCP's in the nodes' namespaces (nginx, bulk source), packet-level only.
    pub tcp_congestion: Option<String>,
}

/// What the competing TCP flow got, and what the plays through the same link got meanwhile.
#[derive(Debug, Clone, Default, Serialize)]
pub struct BulkOutcome {
    pub edge: String,
    pub start_s: f64,
    pub secs: f64,
    pub bulk_mbps: f64,
    /// Bytes down the shared link while the flow ran, all flows (bulk and plays), Mbit/s.
    pub link_mbps: f64,
    /// The bulk flow's share of it.
    pub bulk_share: f64,
    pub error: Option<String>,
}

/// What the helper network did.
#[derive(Debug, Clone, Default, Serialize)]
pub struct HelperOutcome {
    /// Advert bytes sent, by the receivers' scope: local, regional, national, global.
    pub advert_bytes: [u64; 4],
    /// Segment payload bytes helpers fetched from each other.
    pub peer_payload_bytes: u64,
    /// Wire bytes on the links between helpers (both directions, adverts included).
    pub peer_wire_bytes: u64,
    /// The edge stopped mid-run and when (seconds after the plays started).
    pub killed: Option<(String, f64)>,
    /// Fetches from the killed helper that failed and went to another source.
    pub failovers_from_killed: u64,
}

struct EdgeNode {
    links: EdgeLinks,
    /// The port of the relay in front of it, where its players connect.
    player_port: u16,
    source: EdgeSource,
}

/// An edge's name and the counters of its two links (origin side, player side), from the
/// relays in front of it (which stop with it) or from the packet-level network's links.
pub(crate) struct EdgeLinks {
    pub name: String,
    pub origin: Arc<RelayStats>,
    pub player: Arc<RelayStats>,
    relays: Vec<Relay>,
}

impl EdgeLinks {
    /// Through a relay on each link.
    pub(crate) fn relays(name: &str, origin: Relay, player: Relay) -> Self {
        Self {
            name: name.to_owned(),
            origin: origin.stats.clone(),
            player: player.stats.clone(),
            relays: vec![origin, player],
        }
    }

    /// Through links of the packet-level network.
    pub(crate) fn fabric(name: &str, origin: Arc<RelayStats>, player: Arc<RelayStats>) -> Self {
        Self {
            name: name.to_owned(),
            origin,
            player,
            relays: Vec::new(),
        }
    }

    pub(crate) async fn stop(self) {
        for r in self.relays {
            r.stop().await;
        }
    }
}

/// One play to make, whatever the system.
#[derive(Debug, Clone)]
pub(crate) struct PlaySpec {
    /// The play's viewer ([`Planned::viewer`](crate::population::Planned)): the source address
    /// and last mile are the viewer's.
    pub viewer: usize,
    /// The viewer keeps its TLS tickets from play to play (the scenario has returning
    /// viewers); otherwise no play resumes anything.
    pub resume: bool,
    pub edge: usize,
    pub object: usize,
    pub startup_buffer: Duration,
    pub stall_timeout: Duration,
    pub watch: Option<Duration>,
    pub buffer_samples: Option<Duration>,
    /// Stop here with a partial report (a little before the run's bound cuts the play).
    pub give_up_at: Instant,
}

/// The media of a run: object names (sorted; the population indexes them) and durations.
pub(crate) struct Catalog {
    pub names: Vec<String>,
    pub durations: Vec<f64>,
    /// Highest bitrate, kbit/s.
    pub bitrate_kbps: f64,
}

/// Samples too large to commit, made on demand by `media/make-samples.sh <stem> <dir>`.
pub const MADE_ON_DEMAND: &[&str] = &["hd3", "hd8"];

/// Makes a [`MADE_ON_DEMAND`] sample in `dir` if it is missing, with the script next to it
/// (`<dir>/../make-samples.sh`, needs ffmpeg).
pub fn ensure_sample(dir: &Path, stem: &str) -> anyhow::Result<()> {
    if !MADE_ON_DEMAND.contains(&stem) || dir.join(format!("{stem}.mp4")).is_file() {
        return Ok(());
    }
    let script = dir
        .parent()
        .map(|p| p.join("make-samples.sh"))
        .filter(|p| p.is_file())
        .with_context(|| {
            format!(
                "sample {stem} is missing and no make-samples.sh is next to {}",
                dir.display()
            )
        })?;
    eprintln!("making sample {stem} in {} (ffmpeg, once)", dir.display());
    let st = std::process::Command::new("bash")
        .arg(&script)
        .arg(stem)
        .arg(dir)
        .status()
        .with_context(|| format!("running {}", script.display()))?;
    if !st.success() {
        bail!(
            "{} {stem} failed ({st}); is ffmpeg installed?",
            script.display()
        );
    }
    Ok(())
}

/// Finds `<dir>/<stem>.*` media files.
fn sample_files(dir: &Path, stem: &str) -> anyhow::Result<Vec<PathBuf>> {
    ensure_sample(dir, stem)?;
    let mut v = Vec::new();
    let entries = std::fs::read_dir(dir).with_context(|| {
        format!(
            "samples dir {} (run from the repository's root, or give --samples DIR)",
            dir.display()
        )
    })?;
    for e in entries {
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

/// Runs a scenario on `o.system`. Files are written by the caller (see `summary::write`).
pub async fn run(s: &Scenario, o: &LabOptions) -> anyhow::Result<Outcome> {
    let t0 = Instant::now();
    let work = tempfile::tempdir()?;
    // SEGUE_LAB_KEEP=1 keeps the run's directory (node logs, configs, caches) for a look.
    let work = if std::env::var_os("SEGUE_LAB_KEEP").is_some() {
        let p = work.keep();
        eprintln!("keeping the run's files in {}", p.display());
        Err(p)
    } else {
        Ok(work)
    };
    let w: &Path = match &work {
        Ok(t) => t.path(),
        Err(p) => p,
    };
    let tls = NodeTls::dev(&w.join("certs"))?;
    prepare_media(s, o, &w.join("media"))?;
    let mut out = match o.system {
        _ if o.netns => super::nodes::run(s, o, t0, w, &tls).await,
        _ if s.bulk.is_some() || !s.players.last_mile.is_clean() => {
            bail!("players.last_mile and [bulk] need the packet-level network (--netns)")
        }
        System::Segue => run_segue(s, o, t0, w, &tls, true).await,
        System::NginxHls => super::hls::stack::run(s, o, t0, w, &tls).await,
        System::SegueIndependent => run_segue(s, o, t0, w, &tls, false).await,
    }?;
    out.network = NetworkInfo::of(s, o.netns);
    Ok(out)
}

impl NetworkInfo {
    /// The network scenario `s` runs on: the packet-level one (`netns`) or loopback relays.
    fn of(s: &Scenario, netns: bool) -> Self {
        let host_tcp = || {
            std::fs::read_to_string("/proc/sys/net/ipv4/tcp_congestion_control")
                .map(|c| c.trim().to_owned())
                .unwrap_or_else(|_| "unknown".into())
        };
        Self {
            kind: if netns {
                "packet-level (TUN, namespaces)"
            } else {
                "loopback relays"
            }
            .into(),
            segue_congestion: s.transport.describe(),
            tcp_congestion: netns
                .then(|| s.transport.tcp_congestion.clone().unwrap_or_else(host_tcp)),
        }
    }
}

/// Ingests the run's media (into `data`) and describes the catalog ([`catalog`]).
pub(crate) async fn ingest(s: &Scenario, w: &Path, data: &Path) -> anyhow::Result<Catalog> {
    let lib_opts = LibraryOptions {
        media_root: w.join("media"),
        data_dir: data.to_owned(),
        target_segment_us: s.media.segment_ms.saturating_mul(1000),
        scheme: segue_server::origin::ingest::segmenter::SegmentScheme::Uniform,
    };
    let lib = tokio::task::spawn_blocking(move || Library::open(&lib_opts)).await??;
    catalog(&lib)
}

/// The catalog of a run's library: names sorted, their durations, the highest bitrate; an
/// error if an object failed to ingest or there is none. Every system builds its catalog
/// here, so all agree.
pub(crate) fn catalog(lib: &Library) -> anyhow::Result<Catalog> {
    if !lib.failures.is_empty() {
        bail!("media failed to ingest: {:?}", lib.failures);
    }
    let mut names = lib.names();
    names.sort();
    if names.is_empty() {
        bail!("the scenario's media holds no object");
    }
    let mut durations = Vec::new();
    let mut bitrate_kbps: f64 = 0.0;
    for n in &names {
        let m = &lib.get(n).context("object vanished")?.manifest;
        bitrate_kbps = bitrate_kbps
            .max(m.total_size() as f64 * 8.0 / (m.duration_us.max(1) as f64 / 1e6) / 1000.0);
        durations.push(m.duration_us as f64 / 1e6);
    }
    Ok(Catalog {
        names: names.iter().map(ToString::to_string).collect(),
        durations,
        bitrate_kbps,
    })
}

/// A viewer's own loopback address, `127.1.x.y` by play id: players come from distinct
/// addresses, as real viewers do (an edge's per-client connection limit then applies to each).
pub(crate) fn loopback_viewer(id: usize) -> IpAddr {
    let id = id % (250 * 250);
    IpAddr::from([127, 1, (id / 250) as u8, (id % 250 + 1) as u8])
}

/// How the players of a run reach the edges: each edge's `host:port` (a relay in front of
/// it, or the edge itself), and each viewer's source address by play id.
pub(crate) struct Viewers {
    pub edges: Vec<String>,
    /// Addresses of the packet-level network, one per play; empty: [`loopback_viewer`].
    pub addresses: Vec<IpAddr>,
    pub transport: TransportSettings,
    /// Each viewer's TLS tickets (made as first asked for).
    tickets: std::sync::Mutex<std::collections::HashMap<usize, segue_client::Tickets>>,
}

impl Viewers {
    pub(crate) fn new(
        edges: Vec<String>,
        addresses: Vec<IpAddr>,
        transport: TransportSettings,
    ) -> Self {
        Self {
            edges,
            addresses,
            transport,
            tickets: Default::default(),
        }
    }

    /// Viewer `viewer`'s tickets, shared by its plays.
    pub(crate) fn tickets(&self, viewer: usize) -> segue_client::Tickets {
        let mut t = self.tickets.lock().unwrap_or_else(|e| e.into_inner());
        t.entry(viewer).or_default().clone()
    }

    pub(crate) fn source(&self, id: usize) -> IpAddr {
        match self.addresses.is_empty() {
            true => loopback_viewer(id),
            false => self.addresses[id % self.addresses.len()],
        }
    }
}

/// One Segue play of `spec` from the viewer's address to its edge, with the next edge to go
/// on from if that one fails (when the scenario gives fallbacks).
pub(crate) fn segue_play(
    spec: PlaySpec,
    viewers: &Viewers,
    fallback: bool,
    object: &str,
    ca: PathBuf,
) -> impl std::future::Future<Output = Report> + Send + 'static + use<> {
    let url = |e: usize| SegueUrl::parse(&format!("segue://{}/{object}", viewers.edges[e]));
    let next = (spec.edge + 1) % viewers.edges.len();
    let (url, fallback) = (
        url(spec.edge),
        (fallback && next != spec.edge)
            .then(|| url(next))
            .transpose(),
    );
    // A viewer resumes only its own sessions (a returning viewer's), never another's.
    let connect = ConnectOptions {
        bind: Some(viewers.source(spec.viewer)),
        transport: viewers.transport,
        no_resume: !spec.resume,
        tickets: spec.resume.then(|| viewers.tickets(spec.viewer)),
    };
    async move {
        let (url, fallback) = match (url, fallback) {
            (Ok(u), Ok(f)) => (u, f),
            (Err(e), _) | (_, Err(e)) => {
                return Report {
                    error: Some(format!("bad URL: {e}")),
                    ..Report::default()
                };
            }
        };
        let mut opts = PlayOptions::new(url, ca);
        opts.fallbacks = fallback.into_iter().collect();
        opts.startup_buffer = spec.startup_buffer;
        opts.stall_timeout = spec.stall_timeout;
        opts.watch = spec.watch;
        opts.buffer_samples = spec.buffer_samples;
        opts.give_up_at = Some(spec.give_up_at);
        opts.connect = connect;
        play(&opts).await
    }
}

async fn run_segue(
    s: &Scenario,
    o: &LabOptions,
    t0: Instant,
    w: &Path,
    tls: &NodeTls,
    cooperate: bool,
) -> anyhow::Result<Outcome> {
    let (stop_tx, stop_rx) = watch::channel(false);
    let mut servers = JoinSet::new();
    // The origin `segue origin` runs; it ingests the run's media.
    let mut oc = OriginConfig::with_flags(w.join("media"), s.transport.node_flags())?;
    oc.data = w.join("origin");
    oc.listen = loopback::any_port();
    oc.segment_ms = s.media.segment_ms;
    oc.set_tls(tls);
    let origin = Origin::start(oc, stop_rx.clone()).await?;
    let origin_addr = origin.addr();
    let lib = origin.source().library();
    servers.spawn(origin.wait());
    let catalog = catalog(&lib)?;
    let mut names: Vec<segue_wire::ObjectName> = lib.names();
    names.sort();
    let bitrate_kbps = catalog.bitrate_kbps;

    let helpers_conf = s.helpers.as_ref().filter(|_| cooperate);
    // Helpers present a certificate for their name (mTLS binds adverts to it).
    let edge_tls: Vec<NodeTls> = s
        .edges
        .iter()
        .map(|e| match (helpers_conf, tls.ca.parent()) {
            (Some(_), Some(dir)) => NodeTls::dev_node(dir, &e.name),
            _ => Ok(tls.clone()),
        })
        .collect::<Result<_, segue_net::Error>>()?;
    // Every edge's endpoint first: helpers need each other's addresses.
    let endpoints: Vec<quinn::Endpoint> = edge_tls
        .iter()
        .map(loopback::endpoint)
        .collect::<anyhow::Result<_>>()?;
    let addrs: Vec<std::net::SocketAddr> = endpoints
        .iter()
        .map(|e| e.local_addr())
        .collect::<Result<_, _>>()?;
    let mut peer_relays: Vec<Relay> = Vec::new();
    // Each edge's own stop signal (a kill stops one), all raised at the end.
    let edge_stops: Vec<watch::Sender<bool>> =
        s.edges.iter().map(|_| watch::channel(false).0).collect();

    let mut edges = Vec::new();
    for (i, (e, ep)) in s.edges.iter().zip(endpoints).enumerate() {
        let (up, down) = e.origin_link.resolve(bitrate_kbps);
        let seed = s.seed.wrapping_add(1000 * i as u64);
        let origin_relay = relay::udp(
            loopback::any_port(),
            origin_addr,
            RelaySpec { up, down, seed },
        )
        .await?;
        let origin_url =
            SegueUrl::parse(&format!("segue://localhost:{}/", origin_relay.local.port()))?;
        // The edge `segue edge` runs (upkeep, adverts), on the endpoint bound above.
        let mut c = EdgeConfig::with_flags(&origin_url, s.transport.node_flags())?;
        c.name = e.name.clone();
        c.cache_dir = w.join(format!("edge-{i}"));
        c.cache_size = e.cache_mb.saturating_mul(1 << 20);
        c.prefix_secs = e.prefix_s;
        c.parallel = e.parallel;
        c.send_ahead_ms = e.send_ahead_ms;
        c.limits.send_ahead_max_ms = e.send_ahead_max_ms();
        c.set_tls(&edge_tls[i]);
        if let Some(h) = helpers_conf {
            for (j, other) in s.edges.iter().enumerate().filter(|(j, _)| *j != i) {
                let scope = s.scope_between(i, j);
                let (up, down) = h.link(scope).resolve(bitrate_kbps);
                let r = relay::udp(
                    loopback::any_port(),
                    addrs[j],
                    RelaySpec {
                        up,
                        down,
                        seed: seed + 10 + j as u64,
                    },
                )
                .await?;
                c.peers.push(segue_server::cooperation::PeerConf {
                    name: other.name.clone(),
                    url: SegueUrl::parse(&format!("segue://localhost:{}/", r.local.port()))?,
                    scope: Some(scope),
                });
                peer_relays.push(r);
            }
            c.advert_periods = segue_server::cooperation::scope::Periods::parse(&h.periods)
                .map_err(anyhow::Error::msg)?;
            c.collective_scope = segue_server::cooperation::scope::Scope::parse(&h.collective)
                .map_err(anyhow::Error::msg)?;
        }
        let node = Edge::start_on(c, ep, edge_stops[i].subscribe()).await?;
        let (source, edge_addr) = (node.source().clone(), node.addr());
        servers.spawn(node.wait());
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
            for n in names.iter().filter(|n| w == "*" || n.as_str() == w) {
                source
                    .warm(n)
                    .await
                    .with_context(|| format!("edge {}: warming {n}", e.name))?;
            }
        }
        edges.push(EdgeNode {
            player_port: player_relay.local.port(),
            links: EdgeLinks::relays(&e.name, origin_relay, player_relay),
            source,
        });
    }

    // Prefix lengths over the run (they follow the measured origin link).
    let prefix_start: Vec<f64> = edges
        .iter()
        .map(|e| e.source.store().mean_prefix_s())
        .collect();
    let sampler = {
        let sources: Vec<EdgeSource> = edges.iter().map(|e| e.source.clone()).collect();
        let mut stop = stop_rx.clone();
        tokio::spawn(async move {
            let mut max = vec![0.0f64; sources.len()];
            let mut tick = tokio::time::interval(Duration::from_millis(500));
            loop {
                for (m, e) in max.iter_mut().zip(&sources) {
                    *m = m.max(e.store().mean_prefix_s());
                }
                tokio::select! {
                    _ = tick.tick() => {}
                    _ = stop.changed() => return max,
                }
            }
        })
    };
    let links: Vec<&EdgeLinks> = edges.iter().map(|e| &e.links).collect();
    let edge_stops = Arc::new(edge_stops);
    let advert_bytes = |edges: &[EdgeNode]| -> [u64; 4] {
        let mut v = [0u64; 4];
        for h in edges.iter().filter_map(|e| e.source.helpers()) {
            for (k, b) in h.stats.advert_bytes_sent.iter().enumerate() {
                v[k] += b.load(Ordering::Relaxed);
            }
        }
        v
    };
    let peer_wire = |relays: &[Relay]| -> u64 { relays.iter().map(|r| r.stats.bytes_out()).sum() };
    let (adverts_before, peer_wire_before) = (advert_bytes(&edges), peer_wire(&peer_relays));
    let peer_bytes_before: u64 = edges.iter().map(|e| e.source.snapshot().peer_bytes).sum();
    // A helper killed mid-run (cooperating or not: the same scenario): its endpoint closes,
    // its adverts stop.
    let kill = s.helper_kill().map(|(i, k)| {
        let stops = edge_stops.clone();
        let name = k.edge.clone();
        tokio::spawn(async move {
            tokio::time::sleep(Duration::from_secs_f64(k.at_s)).await;
            tracing::warn!(edge = %name, "killing the helper (scenario)");
            let _ = stops[i].send(true);
        });
        (k.edge, k.at_s, i)
    });
    let viewers = Viewers::new(
        edges
            .iter()
            .map(|e| format!("localhost:{}", e.player_port))
            .collect(),
        Vec::new(),
        s.transport.settings(),
    );
    let (plays, traffic) = drive_segue(s, o, &catalog, &links, &viewers, &tls.ca).await;
    drop(links);

    let mut edge_counters: Vec<EdgeCounters> = edges
        .iter()
        .zip(&prefix_start)
        .map(|(e, &start)| EdgeCounters {
            prefix_s_start: start,
            prefix_s_end: e.source.store().mean_prefix_s(),
            ..EdgeCounters::from_snapshot(
                &e.source.snapshot(),
                link_counters(&e.links.name, &e.links.origin),
            )
        })
        .collect();
    let helpers = s.helpers.as_ref().map(|_| {
        let after = advert_bytes(&edges);
        let mut adverts = [0u64; 4];
        for k in 0..4 {
            adverts[k] = after[k] - adverts_before[k];
        }
        let failovers = kill.as_ref().map_or(0, |(name, _, _)| {
            edges
                .iter()
                .filter_map(|e| e.source.helpers())
                .flat_map(|h| h.peers.iter())
                .filter(|p| &p.conf.name == name)
                .map(|p| p.stats.failures.load(Ordering::Relaxed))
                .sum()
        });
        HelperOutcome {
            advert_bytes: adverts,
            peer_payload_bytes: edges
                .iter()
                .map(|e| e.source.snapshot().peer_bytes)
                .sum::<u64>()
                - peer_bytes_before,
            peer_wire_bytes: peer_wire(&peer_relays) - peer_wire_before,
            killed: kill.as_ref().map(|(n, at, _)| (n.clone(), *at)),
            failovers_from_killed: failovers,
        }
    });

    let _ = stop_tx.send(true);
    for st in edge_stops.iter() {
        let _ = st.send(true);
    }
    if let Ok(max) = sampler.await {
        for (c, m) in edge_counters.iter_mut().zip(max) {
            c.prefix_s_max = m.max(c.prefix_s_end);
        }
    }
    let _ = tokio::time::timeout(Duration::from_secs(3), async {
        while servers.join_next().await.is_some() {}
    })
    .await;
    servers.shutdown().await;
    for e in edges {
        e.links.stop().await;
    }
    for r in peer_relays {
        r.stop().await;
    }
    let mut out = outcome(
        s,
        if cooperate || s.helpers.is_none() {
            System::Segue
        } else {
            System::SegueIndependent
        },
        t0,
        catalog,
        plays,
        traffic,
        edge_counters,
    );
    out.helpers = helpers;
    Ok(out)
}

/// An edge's counters that come from its origin link's relay (the rest zero).
pub(crate) fn link_counters(name: &str, origin: &RelayStats) -> EdgeCounters {
    let (up, down) = (&origin.up, &origin.down);
    EdgeCounters {
        name: name.to_owned(),
        full_hits: 0,
        prefix_hits: 0,
        misses: 0,
        segments_from_origin: 0,
        collapsed_fetches: 0,
        origin_payload_bytes: 0,
        origin_link_lost: Counters::get(&down.lost) + Counters::get(&up.lost),
        origin_link_blackholed: Counters::get(&down.blackholed) + Counters::get(&up.blackholed),
        origin_link_queue_drops: Counters::get(&down.queue_drops) + Counters::get(&up.queue_drops),
        http_cache_hits: 0,
        http_cache_misses: 0,
        prefix_s_start: 0.0,
        prefix_s_end: 0.0,
        prefix_s_max: 0.0,
    }
}

pub(crate) fn outcome(
    s: &Scenario,
    system: System,
    t0: Instant,
    catalog: Catalog,
    plays: Vec<PlayRecord>,
    traffic: Vec<TrafficSample>,
    edges: Vec<EdgeCounters>,
) -> Outcome {
    Outcome {
        system,
        scenario: s.name.clone(),
        description: s.description.clone(),
        seed: s.seed,
        catalog: catalog.names,
        bitrate_kbps: catalog.bitrate_kbps,
        wall_s: t0.elapsed().as_secs_f64(),
        plays,
        traffic,
        edges,
        helpers: None,
        // Set by `run`, which knows the network.
        network: NetworkInfo::default(),
        bulk: None,
    }
}

/// [`drive`] with Segue players, each from its own address.
pub(crate) async fn drive_segue(
    s: &Scenario,
    o: &LabOptions,
    catalog: &Catalog,
    edges: &[&EdgeLinks],
    viewers: &Viewers,
    ca: &Path,
) -> (Vec<PlayRecord>, Vec<TrafficSample>) {
    drive(s, o, catalog, edges, |spec: PlaySpec| {
        let object = &catalog.names[spec.object];
        segue_play(spec, viewers, s.players.fallback, object, ca.to_owned())
    })
    .await
}

/// Makes the scenario's planned plays with `play` (through each edge's player relay),
/// sampling traffic on the relays, until all are done or the scenario's bound cuts them.
/// Origin traffic before this call (warming) is not counted.
pub(crate) async fn drive<F, Fut>(
    s: &Scenario,
    o: &LabOptions,
    catalog: &Catalog,
    edges: &[&EdgeLinks],
    play: F,
) -> (Vec<PlayRecord>, Vec<TrafficSample>)
where
    F: Fn(PlaySpec) -> Fut,
    Fut: std::future::Future<Output = Report> + Send + 'static,
{
    let origin_bytes = || -> u64 {
        edges
            .iter()
            .map(|e| Counters::get(&e.origin.down.bytes_out))
            .sum()
    };
    let base_origin = origin_bytes();
    let planned = plan(&s.players, catalog.names.len(), edges.len(), s.seed);
    // Media seconds a planned viewer watches before quitting; None: to the end.
    let planned_watch_s = |p: &Planned| p.watch.map(|f| f * catalog.durations[p.object]);
    // The bound counts from the plays' start, as the links' schedules do: a system that takes
    // longer to set up (nginx's packaging, Segue's warming) does not get less time to play.
    let start = Instant::now();
    let deadline = start + Duration::from_secs(s.max_duration_s);
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
        let planned_watch_s = planned_watch_s(&p);
        let fut = play(PlaySpec {
            viewer: p.viewer,
            resume: s.players.returning > 0.0,
            edge: p.edge,
            object: p.object,
            startup_buffer: Duration::from_millis(s.players.startup_buffer_ms),
            stall_timeout: Duration::from_secs(s.players.stall_timeout_s.max(1)),
            watch: planned_watch_s.map(Duration::from_secs_f64),
            buffer_samples: p.sampled.then_some(Duration::from_millis(100)),
            give_up_at: deadline
                .checked_sub(Duration::from_secs(2))
                .unwrap_or(deadline),
        });
        let (active, done, records) = (active.clone(), done.clone(), records.clone());
        let (edge_name, object) = (
            edges[p.edge].name.to_owned(),
            catalog.names[p.object].clone(),
        );
        let Planned {
            id, viewer, at_s, ..
        } = p;
        plays.spawn(async move {
            tokio::time::sleep_until(start + Duration::from_secs_f64(at_s)).await;
            active.fetch_add(1, Ordering::Relaxed);
            let report = fut.await;
            active.fetch_sub(1, Ordering::Relaxed);
            done.fetch_add(1, Ordering::Relaxed);
            // A play that gave up at the bound is cut, with what it measured until then.
            let cut = report.gave_up;
            records.lock().await.push(PlayRecord {
                id,
                viewer,
                edge: edge_name,
                object,
                arrival_s: at_s,
                planned_watch_s,
                cut,
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
            origin_bytes: origin_bytes() - base_origin,
            edge_bytes: edges
                .iter()
                .map(|e| Counters::get(&e.player.down.bytes_out))
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
                viewer: p.viewer,
                edge: edges[p.edge].name.to_owned(),
                object: catalog.names[p.object].clone(),
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
    (records, traffic)
}
