//! The origin's distribution module: pushes object prefixes to edges (PROTOCOL.md §8.7), on an
//! operator's request (admin API) or a hint's schedule. One pooled, verified QUIC connection
//! per edge; the edge decides which offered segments it takes.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use segue_wire::{ObjectName, SegueUrl};

use crate::clock::unix_now;
use crate::node::push::{self, PushError, Pushed};
use crate::node::source::{Offer, Source};
use crate::node::upstream::Upstream;
use crate::origin::source::LibrarySource;
use crate::placement::hint::Hint;

/// How long connecting to an edge may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// Push counters.
#[derive(Debug, Default)]
pub struct PushStats {
    pub pushes: AtomicU64,
    pub failed: AtomicU64,
    pub segments: AtomicU64,
}

/// What [`Distributor::push_each`] did: a line per edge, and whether any push failed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PushReport {
    pub lines: Vec<String>,
    pub failed: bool,
}

/// Pushes prefixes from an origin's library to edges.
pub struct Distributor {
    source: LibrarySource,
    /// The client endpoint, or why there is none (pushes then fail with that reason).
    endpoint: Result<segue_net::Dialer, Arc<segue_net::Error>>,
    prefix_us: u64,
    /// Edges to push to when a hint names none.
    edges: Vec<SegueUrl>,
    links: tokio::sync::Mutex<HashMap<String, Arc<Upstream>>>,
    pub stats: PushStats,
}

impl Distributor {
    /// `endpoint` is a client endpoint trusting the edges' CA (or why there is none);
    /// `prefix_us` of media is offered.
    pub fn new(
        source: LibrarySource,
        endpoint: Result<segue_net::Dialer, Arc<segue_net::Error>>,
        prefix_us: u64,
        edges: Vec<SegueUrl>,
    ) -> Arc<Self> {
        Arc::new(Self {
            source,
            endpoint,
            prefix_us,
            edges,
            links: tokio::sync::Mutex::default(),
            stats: PushStats::default(),
        })
    }

    pub fn source(&self) -> &LibrarySource {
        &self.source
    }

    pub fn edges(&self) -> &[SegueUrl] {
        &self.edges
    }

    async fn link(&self, edge: &SegueUrl) -> Result<Arc<Upstream>, PushError> {
        let endpoint = self
            .endpoint
            .as_ref()
            .map_err(|e| PushError::NoEndpoint(e.to_string()))?;
        let key = format!("{}:{}", edge.host, edge.port);
        Ok(self
            .links
            .lock()
            .await
            .entry(key)
            .or_insert_with(|| {
                Arc::new(
                    Upstream::new(endpoint.clone(), edge.clone(), CONNECT_TIMEOUT).labelled("edge"),
                )
            })
            .clone())
    }

    /// Offers `object`'s prefix to `edge`.
    pub async fn push(
        &self,
        object: &ObjectName,
        edge: &SegueUrl,
        viewers: Option<u64>,
        deadline_ms: Option<u64>,
    ) -> Result<Pushed, PushError> {
        let r = async {
            let m = self.source.manifest(object).await?;
            let count = (0..m.segments.len())
                .take_while(|&i| i == 0 || m.segments[i].start_us < self.prefix_us)
                .count();
            let conn = self.link(edge).await?.connection().await?;
            let offer = Offer {
                first: 0,
                count,
                viewers,
                deadline_ms,
            };
            push::offer(&conn, &self.source, &m, offer).await
        }
        .await;
        match &r {
            Ok(p) => {
                self.stats.pushes.fetch_add(1, Ordering::Relaxed);
                self.stats
                    .segments
                    .fetch_add(p.stored as u64, Ordering::Relaxed);
                tracing::info!(object = %object, edge = %edge, stored = p.stored, "pushed prefix");
            }
            Err(e) => {
                self.stats.failed.fetch_add(1, Ordering::Relaxed);
                tracing::warn!(object = %object, edge = %edge, "push failed: {e}");
            }
        }
        r
    }

    /// Pushes `object`'s prefix to each of `targets` in turn: one line per edge (failures
    /// first), and whether any failed.
    pub async fn push_each(
        &self,
        object: &ObjectName,
        targets: &[SegueUrl],
        viewers: Option<u64>,
        deadline_ms: Option<u64>,
    ) -> PushReport {
        let mut done = Vec::new();
        let mut failed = Vec::new();
        for t in targets {
            match self.push(object, t, viewers, deadline_ms).await {
                Ok(p) if p.not_needed => done.push(format!("{t}: {object} already held")),
                Ok(p) => done.push(format!("{t}: {object}: {} segments pushed", p.stored)),
                Err(e) => failed.push(format!("{t}: {e}")),
            }
        }
        PushReport {
            failed: !failed.is_empty(),
            lines: failed.into_iter().chain(done).collect(),
        }
    }

    /// Acts on a hint: pushes the prefix to every edge URL it lists (or, if it lists none,
    /// to the configured edges).
    pub async fn position(&self, hint: Hint) -> Result<String, String> {
        let object = ObjectName::new(&hint.object, 1024).map_err(|e| e.to_string())?;
        let mut targets: Vec<SegueUrl> = Vec::new();
        for e in hint.edge_urls() {
            targets.push(SegueUrl::parse(e).map_err(|err| format!("edge {e}: {err}"))?);
        }
        let names: Vec<&String> = hint
            .edges
            .iter()
            .filter(|e| !e.starts_with("segue://"))
            .collect();
        if !names.is_empty() {
            tracing::warn!(object = %object, "the origin pushes to segue:// URLs only; ignoring {names:?}");
        }
        if hint.edges.is_empty() {
            targets = self.edges.clone();
        }
        if targets.is_empty() {
            return Err("no edge to push to (list segue:// URLs or start with --push-edge)".into());
        }
        let deadline_ms = Some(((hint.at_s - unix_now()).max(0.0) * 1000.0) as u64);
        let r = self
            .push_each(&object, &targets, Some(hint.viewers), deadline_ms)
            .await;
        let text = r.lines.join("; ");
        if r.failed { Err(text) } else { Ok(text) }
    }
}
