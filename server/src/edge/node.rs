//! The edge node, put together in one place: `segue edge`, the demo, the lab and the tests
//! all start an edge with [`Edge::start`] from an [`EdgeConfig`] (the flags and config keys
//! of `segue edge`), so that what they run, upkeep and adverts included, is what users run.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use segue_net::{TransportSettings, client_endpoint, server_config, server_endpoint};
use segue_wire::ObjectName;
use tokio::sync::watch;
use tokio::task::JoinHandle;

use super::store::Store;
use super::{EdgeOptions, EdgeSource};
use crate::config::EdgeConfig;
use crate::node::admission::Admission;
use crate::node::start::{Common, StartError, hint_schedule, serve};
use crate::node::upstream::{self, Upstream};

/// A running edge.
pub struct Edge {
    addrs: crate::node::start::Addresses,
    source: EdgeSource,
    ready: Arc<AtomicBool>,
    stats: Option<PathBuf>,
    serving: JoinHandle<()>,
    upkeep: JoinHandle<()>,
}

impl std::fmt::Debug for Edge {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Edge")
            .field("addr", &self.addrs.segue)
            .finish_non_exhaustive()
    }
}

impl Edge {
    /// Binds `--listen`, opens the cache, warms what `--warm` names (in the background), and
    /// serves segue/1 (and what `config` adds: helpers, files, admin API, hints, a stats
    /// file) with its upkeep and adverts running, until `stop` turns true.
    pub async fn start(c: EdgeConfig, stop: watch::Receiver<bool>) -> Result<Self, StartError> {
        // One for the connections it accepts and opens.
        let transport = c.limits.transport(TransportSettings::default())?;
        let tls = c.tls.node(&c.ca);
        let endpoint = server_endpoint(c.listen, &tls, transport)?;
        Self::serve_on(c, endpoint, transport, tls, stop).await
    }

    /// [`Edge::start`] serving on `endpoint`, bound already (instead of `--listen`): helpers
    /// on loopback need each other's addresses before any of them starts.
    pub async fn start_on(
        c: EdgeConfig,
        endpoint: quinn::Endpoint,
        stop: watch::Receiver<bool>,
    ) -> Result<Self, StartError> {
        let transport = c.limits.transport(TransportSettings::default())?;
        let tls = c.tls.node(&c.ca);
        // Whatever `endpoint` was bound with, it accepts with this edge's TLS and transport.
        endpoint.set_server_config(Some(server_config(&tls, transport)?));
        Self::serve_on(c, endpoint, transport, tls, stop).await
    }

    /// The edge of `c` on `endpoint`, which accepts with `tls` and `transport`.
    async fn serve_on(
        c: EdgeConfig,
        endpoint: quinn::Endpoint,
        transport: segue_net::TransportLimits,
        tls: segue_net::NodeTls,
        stop: watch::Receiver<bool>,
    ) -> Result<Self, StartError> {
        let origin = c
            .origin
            .clone()
            .ok_or_else(|| StartError::flag("--origin is required"))?;
        let store = Store::open(
            &c.cache_dir,
            c.cache_size,
            c.prefix_secs.saturating_mul(1_000_000),
        )
        .map_err(|e| StartError::io(format!("cannot open cache {}", c.cache_dir.display()), e))?;
        tracing::info!(cache = %c.cache_dir.display(), used = store.used(), capacity = store.capacity(), "cache ready");
        let client = client_endpoint(&tls, transport.transport)?;
        let upstream = Upstream::new(client.clone(), origin.clone(), upstream::DEFAULT_TIMEOUT);
        let helpers = if c.peers.is_empty() {
            None
        } else {
            crate::cooperation::check_name(&c.name).map_err(|e| StartError::Flag(e.to_string()))?;
            if c.peers.iter().any(|p| p.name == c.name) {
                return Err(StartError::Flag(format!(
                    "--peer {}: that is this edge's own --name",
                    c.name
                )));
            }
            let mut opts = crate::cooperation::HelperOptions::new(&c.name, c.peers.clone());
            opts.periods = c.advert_periods;
            opts.rtt_limits = c.scope_rtt_ms;
            opts.collective = c.collective_scope;
            opts.popular_requests = c.popular_requests;
            tracing::info!(name = %c.name, peers = c.peers.len(), "cooperating with helpers");
            Some(Arc::new(crate::cooperation::Helpers::new(
                opts,
                &client,
                upstream::DEFAULT_TIMEOUT,
            )))
        };
        let edge = EdgeSource::with_helpers(
            store,
            upstream,
            EdgeOptions {
                parallel: c.parallel,
                accept_pushes: c.accept_pushes,
                hot_bytes: c.memory_cache_size,
                ..EdgeOptions::default()
            },
            helpers,
        );
        let mut warming = tokio::task::JoinSet::new();
        for name in &c.warm {
            let obj = ObjectName::new(name, 1024)
                .map_err(|e| StartError::Flag(format!("--warm {name}: {e}")))?;
            let e = edge.clone();
            warming.spawn(async move {
                match e.warm(&obj).await {
                    Ok(n) => tracing::info!(object = %obj, segments = n, "prefix warmed"),
                    Err(err) => tracing::error!(object = %obj, "cannot warm: {err}"),
                }
            });
        }
        let ready = Arc::new(AtomicBool::new(false));
        {
            let ready = ready.clone();
            tokio::spawn(async move {
                while warming.join_next().await.is_some() {}
                ready.store(true, Ordering::Relaxed);
            });
        }
        if let Some(path) = c.stats.clone() {
            let (e, ready, mut stop) = (edge.clone(), ready.clone(), stop.clone());
            tokio::spawn(async move {
                let mut tick = tokio::time::interval(Duration::from_secs(1));
                loop {
                    tokio::select! {
                        _ = tick.tick() => write_stats(&path, &e, ready.load(Ordering::Relaxed)),
                        _ = stop.changed() => break,
                    }
                }
            });
        }
        let upkeep = tokio::spawn(edge.clone().upkeep(stop.clone()));
        tokio::spawn(edge.clone().advertise(stop.clone()));
        let hints = hint_schedule(&c.hints);
        let admission = Admission::new(c.limits.connections());
        let node = crate::node::admin::Node::Edge {
            edge: edge.clone(),
            admission: admission.clone(),
            hints: hints.clone(),
            name: c.name.clone(),
            region: c.region.clone(),
            packets: None,
        };
        let common = Common {
            tls: &c.tls,
            limits: &c.limits,
            hints: &c.hints,
            admin: &c.admin,
            send_ahead_ms: c.send_ahead_ms,
            response_delay_ms: 0,
            node_tls: &tls,
            transport,
            access: c.tls.access()?,
            admission,
        };
        let e = edge.clone();
        let position = move |h| {
            let e = e.clone();
            async move { e.anticipate(&h).await }
        };
        tracing::info!(origin = %origin, "edge upstream");
        let (addrs, serving) = serve(
            common,
            node,
            hints,
            position,
            edge.clone(),
            endpoint,
            "edge",
            stop,
        )
        .await?;
        Ok(Self {
            addrs,
            source: edge,
            ready,
            stats: c.stats,
            serving,
            upkeep,
        })
    }

    /// The segue/1 address it serves on.
    pub fn addr(&self) -> SocketAddr {
        self.addrs.segue
    }

    /// Where it serves players: segue/1 and the RTSP face.
    pub fn addresses(&self) -> crate::node::start::Addresses {
        self.addrs
    }

    /// What it serves (cache, upstream, counters).
    pub fn source(&self) -> &EdgeSource {
        &self.source
    }

    /// Whether every `--warm` object is in.
    pub fn is_ready(&self) -> bool {
        self.ready.load(Ordering::Relaxed)
    }

    /// Until it stopped (after `stop`): sessions ended, measured usage saved, the last stats
    /// written.
    pub async fn wait(self) {
        let _ = self.serving.await;
        // Saves measured usage on its way out.
        let _ = self.upkeep.await;
        if let Some(path) = &self.stats {
            write_stats(path, &self.source, self.ready.load(Ordering::Relaxed));
        }
        let s = self.source.stats();
        tracing::info!(
            full_hits = s.full_hits.load(Ordering::Relaxed),
            prefix_hits = s.prefix_hits.load(Ordering::Relaxed),
            misses = s.misses.load(Ordering::Relaxed),
            "edge stopped"
        );
    }
}

/// Writes the edge's counters to `path` atomically (temp file, then rename).
fn write_stats(path: &Path, edge: &EdgeSource, ready: bool) {
    let v = serde_json::to_vec(&edge.stats_file(ready)).unwrap_or_default();
    let tmp = path.with_extension("tmp");
    let r = std::fs::write(&tmp, v).and_then(|()| std::fs::rename(&tmp, path));
    if let Err(e) = r {
        tracing::warn!("cannot write stats to {}: {e}", path.display());
    }
}
