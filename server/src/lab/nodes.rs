//! A scenario with Segue's nodes as separate processes in their own network namespaces
//! (`segue lab run --netns`): the origin in one, each edge in another, joined to the runner's
//! namespace by veths with `tc tbf` rate limits; the relays (delay, jitter, loss, blackholes)
//! and the players stay in the runner. Root only; `netns::Topology` removes what it made.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use anyhow::{Context as _, bail};
use segue_wire::SegueUrl;
use tokio::time::Instant;

use super::impair::LinkSpec;
use super::netns::{Rate, Topology};
use super::relay::{self, RelaySpec};
use super::run::{
    EdgeCounters, EdgeLinks, LabOptions, Outcome, System, drive_segue, ingest, link_counters,
    outcome,
};
use super::scenario::Scenario;
use crate::edge::StatsSnapshot;
use crate::loopback::NodeTls;

const ORIGIN_PORT: u16 = 8554;
const EDGE_PORT: u16 = 8555;

/// Moves a link's rate limit from the relay to the kernel (tbf).
fn split_rate(spec: &mut LinkSpec) -> Option<Rate> {
    if spec.then.is_some() {
        // A link that changes mid-run keeps its rate in the relay (tbf is set once).
        return None;
    }
    if spec.rate_kbps == 0 {
        return None;
    }
    let r = Rate {
        kbps: spec.rate_kbps,
        queue_bytes: if spec.queue_bytes == 0 {
            64 * 1024
        } else {
            spec.queue_bytes
        },
    };
    spec.rate_kbps = 0;
    spec.queue_bytes = 0;
    Some(r)
}

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

fn read_stats(path: &Path) -> Option<serde_json::Value> {
    serde_json::from_slice(&std::fs::read(path).ok()?).ok()
}

struct EdgeNode {
    links: EdgeLinks,
    node: Node,
    stats: PathBuf,
}

pub async fn run(
    s: &Scenario,
    o: &LabOptions,
    t0: Instant,
    w: &Path,
    tls: &NodeTls,
) -> anyhow::Result<Outcome> {
    let bin = match &o.segue_bin {
        Some(b) => b.clone(),
        None => std::env::current_exe().context("finding the segue binary")?,
    };
    // The catalog (the origin process ingests the same files into its own data dir).
    let (_, catalog) = ingest(s, w, &w.join("catalog")).await?;
    let bitrate_kbps = catalog.bitrate_kbps;
    // The origin's certificate names it "origin"; edges resolve that name to their relay.
    segue_certs::init(&w.join("certs"), &["origin".to_owned()]).context("origin certificate")?;
    let (ocert, okey) = segue_certs::pki::leaf_paths(&w.join("certs"), "origin");
    let logs = w.join("logs");
    std::fs::create_dir_all(&logs)?;

    let mut topo = Topology::new()?;
    let ons = topo.namespace("o")?;
    let ov = topo.veth(&ons, None, None)?;
    let origin_addr = SocketAddr::from((ov.node_ip, ORIGIN_PORT));
    let p = |p: &Path| p.display().to_string();
    let mut origin = Node::spawn(
        "origin",
        &ons,
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
        ],
        &logs,
    )?;

    let mut edges = Vec::new();
    for (i, e) in s.edges.iter().enumerate() {
        let ens = topo.namespace(&format!("e{i}"))?;
        let (mut up, mut down) = e.origin_link.resolve(bitrate_kbps);
        let (o_up, o_down) = (split_rate(&mut up), split_rate(&mut down));
        let ev_origin = topo.veth(&ens, o_up, o_down)?;
        let (mut pup, mut pdown) = e.player_link.resolve(bitrate_kbps);
        // Player link: "down" is edge → players, the node's egress on its veth.
        let (p_up, p_down) = (split_rate(&mut pup), split_rate(&mut pdown));
        let ev_player = topo.veth(&ens, p_down, p_up)?;
        let seed = s.seed.wrapping_add(1000 * i as u64);
        // Reachable from the edge's namespace (its veth) and from here (loopback).
        let origin_relay = relay::udp(
            SocketAddr::from(([0, 0, 0, 0], 0)),
            origin_addr,
            RelaySpec { up, down, seed },
        )
        .await?;
        topo.hosts(&ens, &[("origin", ev_origin.root_ip)])?;
        if i == 0 {
            let url =
                SegueUrl::parse(&format!("segue://localhost:{}/", origin_relay.local.port()))?;
            wait_up(&mut origin, &url, &tls.ca).await?;
        }
        let edge_addr = SocketAddr::from((ev_player.node_ip, EDGE_PORT));
        let stats = w.join(format!("edge-{i}.json"));
        let mut args: Vec<String> = vec![
            "edge".into(),
            "--origin".into(),
            format!("segue://origin:{}/", origin_relay.local.port()),
            "--ca".into(),
            p(&tls.ca),
            "--cache-dir".into(),
            p(&w.join(format!("edge-{i}"))),
            "--cache-size".into(),
            format!("{}M", e.cache_mb),
            "--listen".into(),
            edge_addr.to_string(),
            "--cert".into(),
            p(&tls.cert),
            "--key".into(),
            p(&tls.key),
            "--prefix-secs".into(),
            e.prefix_s.to_string(),
            "--parallel".into(),
            e.parallel.to_string(),
            "--stats".into(),
            p(&stats),
            "--send-ahead-ms".into(),
            e.send_ahead_ms.to_string(),
        ];
        for n in &catalog.names {
            if e.warm.iter().any(|w| w == "*" || w == n) {
                args.extend(["--warm".into(), n.clone()]);
            }
        }
        let mut node = Node::spawn(&e.name, &ens, &bin, &args, &logs)?;
        let player_relay = relay::udp(
            SocketAddr::from(([127, 0, 0, 1], 0)),
            edge_addr,
            RelaySpec {
                up: pup,
                down: pdown,
                seed: seed + 1,
            },
        )
        .await?;
        let url = SegueUrl::parse(&format!("segue://localhost:{}/", player_relay.local.port()))?;
        wait_up(&mut node, &url, &tls.ca).await?;
        // Warming done before the plays (its traffic is not theirs).
        let deadline = Instant::now() + Duration::from_secs(120);
        while !read_stats(&stats).is_some_and(|v| v["ready"] == true) {
            node.check()?;
            if Instant::now() > deadline {
                bail!("{} did not finish warming", e.name);
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        edges.push(EdgeNode {
            links: EdgeLinks {
                name: e.name.clone(),
                origin: origin_relay,
                player: player_relay,
            },
            node,
            stats,
        });
    }

    let links: Vec<&EdgeLinks> = edges.iter().map(|e| &e.links).collect();
    let (plays, traffic) = drive_segue(s, o, t0, &catalog, &links, &tls.ca).await;
    drop(links);

    let mut counters: Vec<EdgeCounters> = Vec::new();
    for e in edges {
        let base = link_counters(&e.links.name, &e.links.origin);
        // A clean stop writes the final counters.
        e.node.stop().await;
        let st: StatsSnapshot = read_stats(&e.stats)
            .and_then(|v| serde_json::from_value(v).ok())
            .unwrap_or_default();
        counters.push(EdgeCounters::from_snapshot(&st, base));
        e.links.stop().await;
    }
    origin.stop().await;
    drop(topo);
    Ok(outcome(
        s,
        System::Segue,
        t0,
        catalog,
        plays,
        traffic,
        counters,
    ))
}
