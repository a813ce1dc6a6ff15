//! A scenario on the packet-level network (`segue-lab run --netns`, root only): the origin
//! and every edge run as processes in their own network namespaces, each behind one TUN
//! device of the [`fabric`](super::fabric), and the players (one source address each) live on
//! the runner's own device. Every packet between them, Segue's QUIC or nginx's kernel TCP,
//! crosses the scenario's links in the fabric's link model: the origin link between an edge
//! and the origin, the edge's player link (shared by its viewers), each viewer's last mile.
//! Segue's nodes are the real `segue origin` / `segue edge` binaries; the nginx-HLS stack is
//! the real nginx, in the same namespaces, through the same links.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context as _, bail};
use segue_wire::SegueUrl;
use tokio::time::Instant;

use super::fabric::{Fabric, LinkId, ScenarioClock};
use super::hls::{nginx, player, prepare, stack};
use super::netns::Topology;
use super::relay::{Counters, RelayStats};
use super::run::{
    BulkOutcome, EdgeCounters, EdgeLinks, HelperOutcome, LabOptions, Outcome, PlaySpec, System,
    Viewers, drive, drive_segue, ingest, link_counters, outcome,
};
use super::scenario::Scenario;
use crate::loopback::NodeTls;
use segue_server::edge::StatsFile;

const ORIGIN_PORT: u16 = 8554;
const EDGE_PORT: u16 = 8555;
const HTTPS_PORT: u16 = 8443;
const BULK_PORT: u16 = 9000;

/// A node process; killed if still running when dropped.
struct Node {
    name: String,
    child: tokio::process::Child,
    log: PathBuf,
}

impl Node {
    fn spawn(
        name: &str,
        ns: &str,
        bin: &Path,
        args: &[String],
        logs: &Path,
    ) -> anyhow::Result<Self> {
        let log = logs.join(format!("{name}.log"));
        let f = std::fs::File::create(&log)?;
        let child = Topology::command(ns, bin)
            .args(args)
            .env(
                "RUST_LOG",
                std::env::var("RUST_LOG").unwrap_or_else(|_| "info".into()),
            )
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(f)
            .kill_on_drop(true)
            .spawn()
            .with_context(|| format!("starting {name}"))?;
        Ok(Self {
            name: name.to_owned(),
            child,
            log,
        })
    }

    /// Fails with the node's log if it exited.
    fn check(&mut self) -> anyhow::Result<()> {
        if let Ok(Some(st)) = self.child.try_wait() {
            let log = std::fs::read_to_string(&self.log).unwrap_or_default();
            let tail: Vec<_> = log.lines().rev().take(5).collect();
            bail!(
                "{} exited ({st}): {}",
                self.name,
                tail.into_iter().rev().collect::<Vec<_>>().join(" | ")
            );
        }
        Ok(())
    }

    /// SIGTERM (a clean shutdown), then SIGKILL after 5 s.
    async fn stop(mut self) {
        if let Some(pid) = self.child.id() {
            let _ = tokio::process::Command::new("kill")
                .args(["-TERM", &pid.to_string()])
                .status()
                .await;
        }
        if tokio::time::timeout(Duration::from_secs(5), self.child.wait())
            .await
            .is_err()
        {
            let _ = self.child.kill().await;
        }
    }
}

/// Waits until `url` accepts a verified segue/1 connection, while `node` runs.
async fn wait_up(node: &mut Node, url: &SegueUrl, ca: &Path) -> anyhow::Result<()> {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        node.check()?;
        if segue_client::connect(url, ca, Duration::from_secs(1))
            .await
            .is_ok()
        {
            return Ok(());
        }
        if Instant::now() > deadline {
            bail!("{} did not come up at {url}", node.name);
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// The edge's `--stats` file (`None` until it is first written, or if unreadable).
fn read_stats(path: &Path) -> Option<StatsFile> {
    serde_json::from_slice(&std::fs::read(path).ok()?).ok()
}

/// The network of a run: namespaces, addresses, links.
struct Net {
    origin_ns: String,
    origin: Ipv4Addr,
    edges: Vec<(String, Ipv4Addr)>,
    /// The runner's own address (readiness checks, warming), unimpaired.
    control: Ipv4Addr,
    /// One per planned play.
    viewers: Vec<Ipv4Addr>,
    /// The bulk flow's sink, behind the shared player link.
    bulk_sink: Ipv4Addr,
    origin_links: Vec<LinkId>,
    player_links: Vec<LinkId>,
    /// With `[helpers]`: one link per pair of edges, by their scope.
    helper_links: Vec<LinkId>,
}

fn build(s: &Scenario, bitrate_kbps: f64, f: &mut Fabric) -> anyhow::Result<Net> {
    let (origin_ns, origin) = f.node("o")?;
    let mut edges = Vec::new();
    for i in 0..s.edges.len() {
        edges.push(f.node(&format!("e{i}"))?);
    }
    // One device for every runner-side address: control, bulk sink, then the viewers.
    let locals = f.local(s.players.count + 2)?;
    let (control, bulk_sink, viewers) = (locals[0], locals[1], locals[2..].to_vec());
    if let Some(cc) = &s.transport.tcp_congestion {
        f.tcp_congestion(&origin_ns, cc)?;
        for (ns, _) in &edges {
            f.tcp_congestion(ns, cc)?;
        }
    }
    let mut origin_links = Vec::new();
    let mut player_links = Vec::new();
    for (i, (e, (_, addr))) in s.edges.iter().zip(&edges).enumerate() {
        let seed = s.seed.wrapping_add(1000 * i as u64);
        let (up, down) = e.origin_link.resolve(bitrate_kbps);
        let ol = f.link(up, down, seed);
        f.route(*addr, origin, &[ol]);
        let (up, down) = e.player_link.resolve(bitrate_kbps);
        let pl = f.link(up, down, seed + 1);
        f.route(bulk_sink, *addr, &[pl]);
        origin_links.push(ol);
        player_links.push(pl);
    }
    let mut helper_links = Vec::new();
    if let Some(h) = &s.helpers {
        for i in 0..edges.len() {
            for j in i + 1..edges.len() {
                let (up, down) = h.link(s.scope_between(i, j)).resolve(bitrate_kbps);
                let seed = s.seed.wrapping_add(1000 * i as u64 + 10 + j as u64);
                let l = f.link(up, down, seed);
                f.route(edges[i].1, edges[j].1, &[l]);
                helper_links.push(l);
            }
        }
    }
    let (up, down) = s.players.last_mile.resolve(bitrate_kbps);
    for (k, v) in viewers.iter().enumerate() {
        let lm = f.link(
            up.clone(),
            down.clone(),
            s.seed.wrapping_add(7919 * k as u64 + 3),
        );
        for ((_, addr), pl) in edges.iter().zip(&player_links) {
            f.route(*v, *addr, &[lm, *pl]);
        }
    }
    Ok(Net {
        origin_ns,
        origin,
        edges,
        control,
        viewers,
        bulk_sink,
        origin_links,
        player_links,
        helper_links,
    })
}

/// Runs scenario `s` on the packet-level network, for Segue or for nginx-HLS.
pub async fn run(
    s: &Scenario,
    o: &LabOptions,
    t0: Instant,
    w: &Path,
    tls: &NodeTls,
) -> anyhow::Result<Outcome> {
    // The catalog (the origin process ingests the same files into its own data dir).
    let catalog = ingest(s, w, &w.join("catalog")).await?;
    let mut f = Fabric::new()?;
    let net = build(s, catalog.bitrate_kbps, &mut f)?;
    let stats = |l: &[LinkId]| -> Vec<Arc<RelayStats>> { l.iter().map(|l| f.stats(*l)).collect() };
    let (origin_stats, player_stats) = (stats(&net.origin_links), stats(&net.player_links));
    let helper_stats = stats(&net.helper_links);
    let links: Vec<EdgeLinks> = s
        .edges
        .iter()
        .zip(origin_stats.iter().zip(&player_stats))
        .map(|(e, (os, ps))| EdgeLinks::fabric(&e.name, os.clone(), ps.clone()))
        .collect();
    let running = f.start()?;
    let logs = w.join("logs");
    std::fs::create_dir_all(&logs)?;
    let bulk = s.bulk.as_ref().map(|b| {
        let i = s.edges.iter().position(|e| e.name == b.edge).unwrap_or(0);
        (b.clone(), i)
    });
    let mut bulk_source = match &bulk {
        Some((_, i)) => {
            let bin = segue_bin(o)?;
            let addr = SocketAddr::from((net.edges[*i].1, BULK_PORT));
            Some(Node::spawn(
                "bulk",
                &net.edges[*i].0,
                &bin,
                &["bulk".into(), "--listen".into(), addr.to_string()],
                &logs,
            )?)
        }
        None => None,
    };
    let clock = running.clock();
    let bulk_task = bulk.as_ref().map(|(b, i)| {
        let to = SocketAddr::from((net.edges[*i].1, BULK_PORT));
        let (sink, stats, b) = (net.bulk_sink, player_stats[*i].clone(), b.clone());
        let clock = clock.clone();
        tokio::spawn(async move {
            // `start_s` after the plays start, whatever the system's set-up took.
            let plays = clock.wait().await;
            tokio::time::sleep_until(plays + Duration::from_secs_f64(b.start_s)).await;
            let before = Counters::get(&stats.down.bytes_out);
            let t = Instant::now();
            let r = super::bulk::fetch(
                Some(sink.into()),
                to,
                None,
                Some(Duration::from_secs_f64(b.duration_s)),
            )
            .await;
            let secs = t.elapsed().as_secs_f64();
            let link_mbps =
                (Counters::get(&stats.down.bytes_out) - before) as f64 * 8.0 / secs.max(1e-9) / 1e6;
            match r {
                Ok(f) => BulkOutcome {
                    edge: b.edge.clone(),
                    start_s: b.start_s,
                    secs,
                    bulk_mbps: f.mbps(),
                    link_mbps,
                    bulk_share: f.mbps() / link_mbps.max(1e-9),
                    error: None,
                },
                Err(e) => BulkOutcome {
                    edge: b.edge.clone(),
                    start_s: b.start_s,
                    secs,
                    link_mbps,
                    error: Some(format!("{e:#}")),
                    ..BulkOutcome::default()
                },
            }
        })
    });
    let run = Run {
        s,
        o,
        t0,
        w,
        tls,
        net: &net,
        links: &links,
        helper_links: &helper_stats,
        clock: &clock,
    };
    let result = match o.system {
        System::Segue => segue(&run, catalog, &logs, true).await,
        System::NginxHls => hls(&run, catalog).await,
        System::SegueIndependent => segue(&run, catalog, &logs, false).await,
    };
    let mut out = result?;
    if let Some((mut t, b)) = bulk_task.zip(s.bulk.as_ref()) {
        // Plays that end before the bulk flow must not lose its figures: it ends by itself
        // at its duration (bounded here too).
        let since_plays = clock.started().map_or(Duration::ZERO, |t| t.elapsed());
        let left = Duration::from_secs_f64(b.start_s + b.duration_s).saturating_sub(since_plays);
        out.bulk = match tokio::time::timeout(left + Duration::from_secs(10), &mut t).await {
            Ok(r) => r.ok(),
            Err(_) => {
                t.abort();
                None
            }
        };
    }
    if let Some(b) = bulk_source.take() {
        b.stop().await;
    }
    drop(running);
    Ok(out)
}

fn segue_bin(o: &LabOptions) -> anyhow::Result<PathBuf> {
    match &o.segue_bin {
        Some(b) => Ok(b.clone()),
        None => std::env::current_exe().context("finding the segue binary"),
    }
}

/// What a system's run on the fabric is given.
#[derive(Clone, Copy)]
struct Run<'a> {
    s: &'a Scenario,
    o: &'a LabOptions,
    t0: Instant,
    /// The run's work directory.
    w: &'a Path,
    tls: &'a NodeTls,
    net: &'a Net,
    links: &'a [EdgeLinks],
    /// Counters of [`Net::helper_links`], in that order.
    helper_links: &'a [Arc<RelayStats>],
    /// Begun when the plays start: links' schedules, the bulk flow and a kill count from it.
    clock: &'a ScenarioClock,
}

/// Segue on the fabric: `segue origin` and one `segue edge` per scenario edge, with
/// `[helpers]` (and `cooperate`) each edge a peer of every other over their helper link.
async fn segue(
    r: &Run<'_>,
    catalog: super::run::Catalog,
    logs: &Path,
    cooperate: bool,
) -> anyhow::Result<Outcome> {
    let Run {
        s,
        o,
        t0,
        w,
        tls,
        net,
        links,
        helper_links,
        ..
    } = *r;
    let bin = segue_bin(o)?;
    let helpers = s.helpers.as_ref().filter(|_| cooperate);
    // Each node's certificate names its address: edges reach the origin, and players the
    // edges, by address. A helper's also names it: its peers bind its adverts to that name.
    let certs = w.join("certs");
    let mut names = vec![(net.origin.to_string(), Vec::new())];
    for (e, (_, a)) in s.edges.iter().zip(&net.edges) {
        let alias = helpers.map(|_| e.name.clone());
        names.push((a.to_string(), alias.into_iter().collect()));
    }
    segue_certs::init_with_aliases(&certs, &names).context("node certificates")?;
    let (ocert, okey) = segue_certs::pki::leaf_paths(&certs, &net.origin.to_string());
    let origin_addr = SocketAddr::from((net.origin, ORIGIN_PORT));
    let p = |p: &Path| p.display().to_string();
    // Both nodes' transport flags.
    let transport = s.transport.node_flags();
    let mut origin = Node::spawn(
        "origin",
        &net.origin_ns,
        &bin,
        &[
            "origin".into(),
            "--media".into(),
            p(&w.join("media")),
            "--data".into(),
            p(&w.join("origin")),
            "--listen".into(),
            origin_addr.to_string(),
            "--cert".into(),
            p(&ocert),
            "--key".into(),
            p(&okey),
            // The edges' CA: they present their certificates to fetch (mTLS).
            "--ca".into(),
            p(&tls.ca),
            "--segment-ms".into(),
            s.media.segment_ms.to_string(),
        ]
        .into_iter()
        .chain(transport.iter().cloned())
        .collect::<Vec<_>>(),
        logs,
    )?;
    let url = SegueUrl::parse(&format!("segue://{origin_addr}/"))?;
    wait_up(&mut origin, &url, &tls.ca).await?;

    let mut nodes = Vec::new();
    let mut prefix_start = Vec::new();
    for (i, (e, (ns, addr))) in s.edges.iter().zip(&net.edges).enumerate() {
        let (cert, key) = segue_certs::pki::leaf_paths(&certs, &addr.to_string());
        let edge_addr = SocketAddr::from((*addr, EDGE_PORT));
        let stats = w.join(format!("edge-{i}.json"));
        let mut args: Vec<String> = vec![
            "edge".into(),
            "--name".into(),
            e.name.clone(),
            "--origin".into(),
            format!("segue://{origin_addr}/"),
            "--ca".into(),
            p(&tls.ca),
            "--cache-dir".into(),
            p(&w.join(format!("edge-{i}"))),
            "--cache-size".into(),
            format!("{}M", e.cache_mb),
            "--listen".into(),
            edge_addr.to_string(),
            "--cert".into(),
            p(&cert),
            "--key".into(),
            p(&key),
            "--prefix-secs".into(),
            e.prefix_s.to_string(),
            "--parallel".into(),
            e.parallel.to_string(),
            "--stats".into(),
            p(&stats),
            "--send-ahead-ms".into(),
            e.send_ahead_ms.to_string(),
            "--send-ahead-max-ms".into(),
            e.send_ahead_max_ms().to_string(),
        ];
        args.extend(transport.iter().cloned());
        if let Some(h) = helpers {
            args.extend([
                "--advert-periods".into(),
                h.periods.clone(),
                "--collective-scope".into(),
                h.collective.clone(),
            ]);
            for (j, (other, (_, a))) in s.edges.iter().zip(&net.edges).enumerate() {
                if j != i {
                    let scope = s.scope_between(i, j);
                    let peer = format!("{}=segue://{a}:{EDGE_PORT}/,{scope}", other.name);
                    args.extend(["--peer".into(), peer]);
                }
            }
        }
        for n in &catalog.names {
            if e.warm.iter().any(|w| w == "*" || w == n) {
                args.extend(["--warm".into(), n.clone()]);
            }
        }
        let mut node = Node::spawn(&e.name, ns, &bin, &args, logs)?;
        let url = SegueUrl::parse(&format!("segue://{edge_addr}/"))?;
        wait_up(&mut node, &url, &tls.ca).await?;
        // Warming done before the plays (its traffic is not theirs).
        let deadline = Instant::now() + Duration::from_secs(120);
        let ready = loop {
            match read_stats(&stats) {
                Some(st) if st.ready => break st,
                _ => {}
            }
            node.check()?;
            if Instant::now() > deadline {
                bail!("{} did not finish warming", e.name);
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        };
        prefix_start.push(ready.mean_prefix_s);
        nodes.push((node, stats));
    }

    let stats_files: Vec<PathBuf> = nodes.iter().map(|(_, f)| f.clone()).collect();
    let read_all = |files: &[PathBuf]| -> Vec<StatsFile> {
        files
            .iter()
            .map(|f| read_stats(f).unwrap_or_default())
            .collect()
    };
    let wire = |l: &[Arc<RelayStats>]| -> u64 { l.iter().map(|r| r.bytes_out()).sum() };
    let (before, wire_before) = (read_all(&stats_files), wire(helper_links));
    // Prefix lengths over the run (they follow the measured origin link), from the files.
    let (sampler_stop, mut sampler_rx) = tokio::sync::watch::channel(false);
    let sampler = {
        let files = stats_files.clone();
        tokio::spawn(async move {
            let mut max = vec![0.0f64; files.len()];
            let mut tick = tokio::time::interval(Duration::from_millis(500));
            loop {
                for (m, f) in max.iter_mut().zip(&files) {
                    if let Some(st) = read_stats(f) {
                        *m = m.max(st.mean_prefix_s);
                    }
                }
                tokio::select! {
                    _ = tick.tick() => {}
                    _ = sampler_rx.changed() => return max,
                }
            }
        })
    };
    // A helper killed mid-run, as a crash is: SIGKILL, no goodbye to its peers or players.
    let kill = s.helper_kill().and_then(|(i, k)| {
        let pid = nodes[i].0.child.id()?;
        let (at, name) = (Duration::from_secs_f64(k.at_s), k.edge.clone());
        let clock = r.clock.clone();
        let task = tokio::spawn(async move {
            let plays = clock.wait().await;
            tokio::time::sleep_until(plays + at).await;
            tracing::warn!(edge = %name, "killing the helper (scenario): SIGKILL");
            let _ = tokio::process::Command::new("kill")
                .args(["-KILL", &pid.to_string()])
                .status()
                .await;
        });
        Some((k.edge, k.at_s, task))
    });

    let refs: Vec<&EdgeLinks> = links.iter().collect();
    let viewers = Viewers::new(
        net.edges
            .iter()
            .map(|(_, a)| format!("{a}:{EDGE_PORT}"))
            .collect(),
        net.viewers.iter().map(|a| IpAddr::V4(*a)).collect(),
        s.transport.settings(),
    );
    r.clock.begin();
    let (plays, traffic) = drive_segue(s, o, &catalog, &refs, &viewers, &tls.ca).await;
    let wire_after = wire(helper_links);
    if let Some((_, _, t)) = &kill {
        t.abort();
    }
    let _ = sampler_stop.send(true);
    let prefix_max = sampler.await.unwrap_or_default();

    for (node, _) in nodes {
        // A clean stop writes the final counters.
        node.stop().await;
    }
    origin.stop().await;
    let after = read_all(&stats_files);
    let mut counters: Vec<EdgeCounters> = Vec::new();
    for (k, (st, l)) in after.iter().zip(links).enumerate() {
        counters.push(EdgeCounters {
            prefix_s_start: prefix_start[k],
            prefix_s_end: st.mean_prefix_s,
            prefix_s_max: prefix_max
                .get(k)
                .copied()
                .unwrap_or(0.0)
                .max(st.mean_prefix_s),
            ..EdgeCounters::from_snapshot(&st.counters, link_counters(&l.name, &l.origin))
        });
    }
    let mut out = outcome(
        s,
        match (cooperate, &s.helpers) {
            (false, Some(_)) => System::SegueIndependent,
            _ => System::Segue,
        },
        t0,
        catalog,
        plays,
        traffic,
        counters,
    );
    out.helpers = s.helpers.as_ref().map(|_| {
        let helper = |f: &StatsFile| f.helpers.clone().unwrap_or_default();
        let mut advert_bytes = [0u64; 4];
        for (b, a) in before.iter().zip(&after) {
            let (b, a) = (helper(b), helper(a));
            for (k, v) in advert_bytes.iter_mut().enumerate() {
                *v += a.advert_bytes_sent[k].saturating_sub(b.advert_bytes_sent[k]);
            }
        }
        let peer_bytes = |v: &[StatsFile]| v.iter().map(|f| f.counters.peer_bytes).sum::<u64>();
        let failovers_from_killed = kill.as_ref().map_or(0, |(name, _, _)| {
            after
                .iter()
                .flat_map(|f| helper(f).peers)
                .filter(|p| &p.name == name)
                .map(|p| p.failures)
                .sum()
        });
        HelperOutcome {
            advert_bytes,
            peer_payload_bytes: peer_bytes(&after).saturating_sub(peer_bytes(&before)),
            peer_wire_bytes: wire_after - wire_before,
            killed: kill.as_ref().map(|(n, at, _)| (n.clone(), *at)),
            failovers_from_killed,
        }
    });
    Ok(out)
}

async fn hls(r: &Run<'_>, catalog: super::run::Catalog) -> anyhow::Result<Outcome> {
    let Run {
        s,
        o,
        t0,
        w,
        tls,
        net,
        links,
        ..
    } = *r;
    let bin = nginx::binary().await?;
    let hls_root = w.join("hls");
    let mut objects = Vec::new();
    for n in &catalog.names {
        let src = stack::source_file(&w.join("media"), n)?;
        objects.push(Arc::new(
            prepare::prepare(&src, &hls_root, n, s.media.segment_ms).await?,
        ));
    }
    let viewer_configs = stack::ViewerTls::new(&tls.ca, s)?;
    let origin_place = nginx::Place {
        ns: Some(net.origin_ns.clone()),
        addr: SocketAddr::from((net.origin, HTTPS_PORT)),
    };
    let origin =
        nginx::origin(&bin, &w.join("nginx-origin"), &hls_root, tls, &origin_place).await?;
    let mut edges = Vec::new();
    for (i, (e, (ns, addr))) in s.edges.iter().zip(&net.edges).enumerate() {
        let place = nginx::Place {
            ns: Some(ns.clone()),
            addr: SocketAddr::from((*addr, HTTPS_PORT)),
        };
        let ng = nginx::edge(
            &bin,
            &w.join(format!("nginx-edge-{i}")),
            origin_place.addr,
            e.cache_mb,
            tls,
            &place,
        )
        .await?;
        // Warm the same prefix Segue's edge would, from the runner's own address.
        for (k, n) in catalog.names.iter().enumerate() {
            if !e.warm.iter().any(|w| w == "*" || w == n) {
                continue;
            }
            let segs = stack::prefix_segments(&objects[k], e.prefix_s as f64);
            let opts = stack::play_options(
                ng.addr,
                n,
                viewer_configs.fresh(),
                &objects[k],
                None,
                Some(net.control.into()),
            );
            player::warm(&opts, segs)
                .await
                .with_context(|| format!("edge {}: warming {n}", e.name))?;
        }
        edges.push(ng);
    }
    let refs: Vec<&EdgeLinks> = links.iter().collect();
    let addrs: Vec<SocketAddr> = edges.iter().map(|e| e.addr).collect();
    let viewers = &net.viewers;
    r.clock.begin();
    let (plays, traffic) = drive(s, o, &catalog, &refs, |spec: PlaySpec| {
        let mut opts = stack::play_options(
            addrs[spec.edge],
            &catalog.names[spec.object],
            viewer_configs.of(spec.viewer),
            &objects[spec.object],
            Some(&spec),
            Some(viewers[spec.viewer % viewers.len()].into()),
        );
        opts.startup_buffer = spec.startup_buffer;
        async move { player::play(&opts).await }
    })
    .await;
    let counters = edges
        .iter()
        .zip(links)
        .map(|(ng, l)| {
            let c = ng.cache_counts();
            EdgeCounters {
                segments_from_origin: c.misses,
                origin_payload_bytes: c.upstream_bytes,
                http_cache_hits: c.hits,
                http_cache_misses: c.misses,
                ..link_counters(&l.name, &l.origin)
            }
        })
        .collect();
    for ng in edges {
        ng.stop().await;
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
