//! Filling a segment: one fetch per segment however many sessions wait for it (collapsed
//! in `Inner::fills`), from a helper that holds it or the origin, verified, then kept in
//! memory and, where placement says so, on disk.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use bytes::Bytes;
use segue_wire::segment::Manifest;
use tokio::time::Instant;

use super::*;
use crate::node::source::{Body, Filling};
use crate::node::upstream::SegmentExchange;

/// A segment fetch in flight: what it has verified so far, and its place in the scheduler.
pub(super) struct Pending {
    pub(super) body: Arc<Filling>,
    pub(super) ticket: u64,
    pub(super) deadline: Instant,
    /// Woken when the deadline moves up: the exchange in flight carries the old DEADLINE
    /// (the origin would keep sending it last), so it is re-requested with the new one.
    pub(super) promoted: Arc<tokio::sync::Notify>,
    /// The helper it is being fetched from now (its id; 0: the origin or none yet): a
    /// request from that helper for this segment would loop.
    pub(super) from: Arc<AtomicU64>,
}

/// A play's segment 0 request sent along with the manifest's ([`EdgeSource::pipeline_first`]).
pub(super) enum Early {
    /// Being sent.
    Opening,
    /// Sent; waiting for the manifest to be checked against.
    Open(SegmentExchange),
}

/// How a fetch may go, from who asked for it.
#[derive(Debug, Clone, Copy)]
pub(super) struct Via {
    /// Never ask this helper (whose request for the segment is being served).
    pub(super) exclude: Option<u64>,
    /// HOP_LIMIT on requests to helpers; at 0, only helpers that hold it are asked.
    pub(super) hops: u8,
    /// Store it on disk whatever collective storage says (pre-positioning).
    pub(super) keep: bool,
}

impl Via {
    /// A fetch this node starts itself.
    pub(super) const OWN: Via = Via {
        exclude: None,
        hops: segue_wire::segment::DEFAULT_HOP_LIMIT,
        keep: false,
    };
}

impl EdgeSource {
    /// Fetches segment `i` once a scheduler slot is free: from the helpers that can deliver
    /// it in time (when this edge cooperates), else from the origin; a helper that fails or
    /// times out is skipped and the choice made again, the origin last.
    pub(super) async fn fetch(
        &self,
        m: &Manifest,
        i: usize,
        ticket: Ticket,
        via: Via,
        from: &AtomicU64,
        filling: &Filling,
    ) -> Result<Bytes, SourceError> {
        let _slot = ticket
            .slot()
            .await
            .ok_or_else(|| SourceError::Internal("edge shutting down".into()))?;
        let Some(h) = self.0.helpers.as_deref() else {
            return self.fetch_from_origin(m, i, filling).await;
        };
        let key = (m.object.clone(), m.revision, i);
        let left = || {
            lock(&self.0.fills).get(&key).map_or(Duration::ZERO, |p| {
                p.deadline.saturating_duration_since(Instant::now())
            })
        };
        crate::cooperation::failover::fetch_any(
            |tried| {
                h.choose(
                    m,
                    i,
                    left(),
                    tried,
                    via.exclude,
                    Some(&self.0.upstream),
                    self.0.opts.parallel,
                    via.hops > 0,
                )
            },
            |source| async move {
                match source {
                    SourceId::Origin => {
                        from.store(0, Ordering::Relaxed);
                        self.fetch_from_origin(m, i, filling).await
                    }
                    SourceId::Peer(p) => {
                        self.fetch_from_peer(h, p, m, i, via, left(), from, filling)
                            .await
                    }
                }
            },
            SourceError::Unavailable("no source left".into()),
        )
        .await
    }

    /// Segment `i` from helper `p`, within the time left before the origin would have to
    /// start (at least 300 ms, at most the exchange timeout).
    #[allow(clippy::too_many_arguments)]
    pub(super) async fn fetch_from_peer(
        &self,
        h: &Helpers,
        p: usize,
        m: &Manifest,
        i: usize,
        via: Via,
        left: Duration,
        from: &AtomicU64,
        filling: &Filling,
    ) -> Result<Bytes, SourceError> {
        let peer = &h.peers[p];
        from.store(peer.id, Ordering::Relaxed);
        let origin_time = self.0.upstream.rtt().unwrap_or(Duration::from_millis(50)) * 2;
        let allow = left.saturating_sub(origin_time).clamp(
            Duration::from_millis(300),
            crate::node::upstream::DEFAULT_TIMEOUT,
        );
        let due_ms = Some(left.as_millis() as u64);
        let hop = Some((via.hops.saturating_sub(1), h.id));
        match tokio::time::timeout(allow, peer.link.segment(m, i, due_ms, hop, Some(filling))).await
        {
            Ok(Ok(b)) => {
                let n = b.len() as u64;
                peer.stats.segments_from.fetch_add(1, Ordering::Relaxed);
                peer.stats.bytes_from.fetch_add(n, Ordering::Relaxed);
                self.0
                    .stats
                    .segments_from_peers
                    .fetch_add(1, Ordering::Relaxed);
                self.0.stats.peer_bytes.fetch_add(n, Ordering::Relaxed);
                Ok(b)
            }
            Ok(Err(e)) => {
                tracing::debug!(object = %m.object, segment = i, peer = %peer.conf.name, "helper failed: {e}");
                h.failed(p, matches!(e, SourceError::Unavailable(_)));
                Err(e)
            }
            Err(_) => {
                tracing::debug!(object = %m.object, segment = i, peer = %peer.conf.name, "helper too slow after {allow:?}: asking elsewhere");
                h.failed(p, false);
                Err(SourceError::Unavailable(format!(
                    "helper {} too slow",
                    peer.conf.name
                )))
            }
        }
    }

    /// Segment `i` from the origin, retried (reconnecting with backoff) for
    /// [`EdgeOptions::retry_for`], re-requested when a session comes to wait for it.
    pub(super) async fn fetch_from_origin(
        &self,
        m: &Manifest,
        i: usize,
        filling: &Filling,
    ) -> Result<Bytes, SourceError> {
        let inner = &self.0;
        let deadline = Instant::now() + inner.opts.retry_for;
        let mut backoff = Duration::from_millis(50);
        let key = (m.object.clone(), m.revision, i);
        let promoted = lock(&inner.fills).get(&key).map(|p| p.promoted.clone());
        loop {
            let due = lock(&inner.fills).get(&key).map(|p| {
                p.deadline
                    .saturating_duration_since(Instant::now())
                    .as_millis() as u64
            });
            let fetch = inner.upstream.segment(m, i, due, None, Some(filling));
            let r = match &promoted {
                Some(p) => tokio::select! {
                    r = fetch => r,
                    () = p.notified() => {
                        tracing::debug!(object = %m.object, segment = i, "a session waits: re-requesting with its deadline");
                        continue;
                    }
                },
                None => fetch.await,
            };
            match r {
                Ok(b) => {
                    inner
                        .stats
                        .segments_from_origin
                        .fetch_add(1, Ordering::Relaxed);
                    // Prefix lengths follow the measured link.
                    inner
                        .store
                        .set_link(inner.upstream.link_estimate(inner.opts.parallel));
                    return Ok(b);
                }
                Err(e @ SourceError::Unavailable(_)) if Instant::now() + backoff < deadline => {
                    tracing::debug!(object = %m.object, segment = i, "retrying: {e}");
                    tokio::time::sleep(backoff).await;
                    backoff = (backoff * 2).min(Duration::from_secs(1));
                }
                Err(e) => return Err(e),
            }
        }
    }

    /// Segment `i` from the cache, or from the single in-flight (or a new) fetch, which is
    /// due at `deadline` (a fetch in flight moves up if this one is earlier).
    pub(super) fn fill(
        &self,
        m: Arc<Manifest>,
        i: usize,
        deadline: Instant,
    ) -> impl std::future::Future<Output = Result<Bytes, SourceError>> + Send + 'static {
        self.fill_via(m, i, deadline, Via::OWN)
    }

    /// [`Self::fill`] for a request that came `via` a helper (or pre-positioning).
    pub(super) fn fill_via(
        &self,
        m: Arc<Manifest>,
        i: usize,
        deadline: Instant,
        via: Via,
    ) -> impl std::future::Future<Output = Result<Bytes, SourceError>> + Send + 'static {
        let this = self.clone();
        async move {
            match this.body(m, i, deadline, via).await? {
                Body::Whole(b) => Ok(b),
                Body::Growing(g) => g.whole().await,
            }
        }
    }

    /// Segment `i` whole from the memory tier or disk, else the fill that fetches it (joined,
    /// or started): its verified chunks as they arrive.
    pub(super) async fn body(
        &self,
        m: Arc<Manifest>,
        i: usize,
        deadline: Instant,
        via: Via,
    ) -> Result<Body, SourceError> {
        if let Some(b) = self.0.hot.get(&m, i) {
            return Ok(Body::Whole(b));
        }
        if let Some(b) = self.0.store.read(&m, i).await {
            self.0.hot.put(&m, i, b.clone(), b.len() as u64);
            return Ok(Body::Whole(b));
        }
        self.join(m, i, deadline, via, None)
            .map(|f| Body::Growing(f.reader()))
    }

    /// A play's first request for an object whose manifest is not held: segment 0 is asked
    /// for now, with the manifest (one origin round trip for both), and becomes that
    /// segment's fill once the manifest is in to check it against ([`Self::adopt_early`]).
    /// One per object however many players ask; a play from a later point wastes it.
    pub(super) fn pipeline_first(&self, name: &ObjectName) {
        match lock(&self.0.early).entry(name.clone()) {
            std::collections::hash_map::Entry::Occupied(_) => return,
            std::collections::hash_map::Entry::Vacant(v) => {
                v.insert(Early::Opening);
            }
        }
        let me = self.clone();
        let name = name.clone();
        tokio::spawn(async move {
            let params = segue_wire::segment::Params {
                deadline_ms: Some(0),
                ..Default::default()
            };
            let opened = me.0.upstream.open_segment(&name, 0, params).await.ok();
            if let (Some(x), Some(e)) = (opened, lock(&me.0.early).get_mut(&name)) {
                *e = Early::Open(x);
            }
            // The manifest fetch adopts it if it is open by then; else it is adopted here.
            if let Ok(m) = me.manifest(&name).await {
                me.adopt_early(&m);
            }
            lock(&me.0.early).remove(&name);
        });
    }

    /// Makes the segment 0 request sent with `m`'s fetch that segment's fill, if it is
    /// open (else [`Self::pipeline_first`] does once it is).
    pub(super) fn adopt_early(&self, m: &Arc<Manifest>) {
        let x = {
            let mut early = lock(&self.0.early);
            if !matches!(early.get(&m.object), Some(Early::Open(_))) {
                return;
            }
            match early.remove(&m.object) {
                Some(Early::Open(x)) => x,
                _ => return,
            }
        };
        if m.segments.is_empty() || m.is_file() {
            return;
        }
        let _ = self.join(m.clone(), 0, Instant::now(), Via::OWN, Some(x));
    }

    /// The fill of segment `i`: the one in flight (moved up to `deadline` if that is
    /// earlier) or a new one.
    /// `early`: the segment's request already sent (read first; on failure fetched anew).
    pub(super) fn join(
        &self,
        m: Arc<Manifest>,
        i: usize,
        deadline: Instant,
        via: Via,
        early: Option<SegmentExchange>,
    ) -> Result<Arc<Filling>, SourceError> {
        let key = (m.object.clone(), m.revision, i);
        let mut fills = lock(&self.0.fills);
        if let Some(p) = fills.get_mut(&key) {
            // The helper asking is the one we are fetching this from: a loop.
            if via
                .exclude
                .is_some_and(|x| x == p.from.load(Ordering::Relaxed))
            {
                if let Some(h) = &self.0.helpers {
                    h.stats.loops_refused.fetch_add(1, Ordering::Relaxed);
                }
                return Err(SourceError::Busy(format!(
                    "segment {i} of {} is being fetched from you",
                    m.object
                )));
            }
            self.0.stats.collapsed.fetch_add(1, Ordering::Relaxed);
            if deadline < p.deadline {
                // A background fetch a session now waits on: the exchange in flight is
                // re-requested with the new DEADLINE.
                if p.deadline > Instant::now() + PROMOTE_REISSUE {
                    p.promoted.notify_one();
                }
                p.deadline = deadline;
                self.0.sched.promote(p.ticket, deadline);
            }
            return Ok(p.body.clone());
        }
        let body = Filling::new();
        let ticket = self.0.sched.enqueue(deadline);
        let from = Arc::new(AtomicU64::new(0));
        fills.insert(
            key.clone(),
            Pending {
                body: body.clone(),
                ticket: ticket.id,
                deadline,
                promoted: Arc::default(),
                from: from.clone(),
            },
        );
        let me = self.clone();
        let filling = body.clone();
        tokio::spawn(async move {
            let mut r = Err(SourceError::Internal("not fetched".into()));
            if let Some(x) = early {
                r =
                    me.0.upstream
                        .receive_segment(x, &m, i, Some(&filling))
                        .await;
                match &r {
                    Ok(_) => {
                        me.0.stats
                            .segments_from_origin
                            .fetch_add(1, Ordering::Relaxed);
                        me.0.stats.pipelined.fetch_add(1, Ordering::Relaxed);
                    }
                    Err(e) => {
                        tracing::debug!(object = %m.object, "pipelined segment 0 failed, fetching it: {e}")
                    }
                }
            }
            if r.is_err() {
                r = me.fetch(&m, i, ticket, via, &from, &filling).await;
            }
            if let Err(SourceError::Stale(_)) = &r {
                // The origin re-ingested the object: our manifest is old. Drop it so the
                // next request fetches the new one; this session ends.
                tracing::warn!(object = %m.object, "object changed at the origin; dropping the cached copy");
                me.0.store.drop_object(&m.object);
            }
            if let Ok(b) = &r {
                me.0.hot.put(&m, i, b.clone(), b.len() as u64);
                if via.keep || me.keeps(&m, i) {
                    me.0.store.put(&m, i, b).await;
                } else {
                    me.0.stats.not_kept.fetch_add(1, Ordering::Relaxed);
                }
            }
            lock(&me.0.fills).remove(&key);
            filling.finish(r);
        });
        Ok(body)
    }
}
