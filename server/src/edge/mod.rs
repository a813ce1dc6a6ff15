//! The edge: serves players from its cache (a prefix of each object, plus whatever suffix has
//! room) and fetches the rest from the origin while streaming.
//!
//! - **Collapsing**: one origin fetch per segment however many sessions want it; waiters get
//!   the segment as soon as that fetch lands, not when the whole object is in.
//! - **Prefetch**: when a session starts, the segments it lacks are fetched in playout order
//!   with `parallel` exchanges in flight on the pooled origin connection.
//! - **Cases**: a session is a *full hit* (everything cached), a *prefix hit* (its first
//!   segment cached) or a *miss*. On a miss, playback starts once a *sufficient portion* is in:
//!   enough that, at the measured origin rate, the rest arrives before it is due.
//! - **Memory tier**: recently served segments, already verified, in a [`SegmentLru`], so
//!   popular objects are served without a disk read or a checksum per session.

pub mod node;
pub mod schedule;
pub mod store;
pub mod upstream;

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use segue_wire::ObjectName;
use segue_wire::segment::Manifest;
use tokio::sync::{Semaphore, watch};
use tokio::time::Instant;

use crate::cooperation::Helpers;
use crate::cooperation::choose::SourceId;
use crate::lru::SegmentLru;
use crate::node::source::{CacheCase, Offer, Requester, Source, SourceError, checksum_ok};
use schedule::{Scheduler, Ticket};
use segue_wire::segment::Status;
use store::Store;
use upstream::Upstream;

/// Edge behaviour.
#[derive(Debug, Clone)]
pub struct EdgeOptions {
    /// Segment exchanges in flight to the origin at once (K), admitted earliest deadline
    /// first; up to K more may run for segments a session is already waiting for.
    pub parallel: usize,
    /// How long a segment fetch is retried (reconnecting with backoff) before giving up.
    pub retry_for: Duration,
    /// Safety factor on the sufficient portion of a miss.
    pub margin: f64,
    /// Bytes of verified segments kept in memory above the disk cache.
    pub hot_bytes: u64,
    /// When no segment came from the origin for this long, the edge fetches one useful
    /// segment (the next one missing of the most requested cached object, into free space
    /// only) to keep its link estimate current; `None`: never.
    pub probe_after: Option<Duration>,
    /// Take prefixes other nodes push (PROTOCOL.md §8.7). Off by default: pushed bytes are
    /// verified, but a peer could still fill the cache; until node certificates are checked,
    /// turn it on only where the QUIC port is reachable by your origin and not the world.
    pub accept_pushes: bool,
}

impl Default for EdgeOptions {
    fn default() -> Self {
        Self {
            parallel: 4,
            retry_for: Duration::from_secs(10),
            margin: 1.25,
            hot_bytes: 64 << 20,
            probe_after: Some(Duration::from_secs(20)),
            accept_pushes: false,
        }
    }
}

/// Counters of an edge.
#[derive(Debug, Default)]
pub struct EdgeStats {
    pub full_hits: AtomicU64,
    pub prefix_hits: AtomicU64,
    pub misses: AtomicU64,
    pub segments_from_origin: AtomicU64,
    pub manifests_from_origin: AtomicU64,
    /// Segment fetches that joined one already in flight.
    pub collapsed: AtomicU64,
    /// Media bytes sessions sent to players.
    pub served_bytes: AtomicU64,
    /// Segments another node pushed here (verified and stored).
    pub segments_pushed: AtomicU64,
    /// Segments fetched from helpers, and their bytes.
    pub segments_from_peers: AtomicU64,
    pub peer_bytes: AtomicU64,
    /// Segments served to helpers' requests.
    pub segments_to_peers: AtomicU64,
    /// Fetched segments not stored on disk here (collective storage: another helper owns them).
    pub not_kept: AtomicU64,
}

/// A point-in-time copy of an edge's counters (status files, the lab).
#[derive(Debug, Clone, Default, serde::Serialize, serde::Deserialize, PartialEq, Eq)]
pub struct StatsSnapshot {
    pub full_hits: u64,
    pub prefix_hits: u64,
    pub misses: u64,
    pub segments_from_origin: u64,
    pub manifests_from_origin: u64,
    pub collapsed: u64,
    /// Bytes received from the origin (segment payloads and manifests).
    pub origin_bytes: u64,
    /// Media bytes sent to players.
    #[serde(default)]
    pub served_bytes: u64,
    /// Segments pushed here by another node.
    #[serde(default)]
    pub segments_pushed: u64,
    /// Segments (and their bytes) fetched from other helpers.
    #[serde(default)]
    pub segments_from_peers: u64,
    #[serde(default)]
    pub peer_bytes: u64,
    /// Segments served to other helpers.
    #[serde(default)]
    pub segments_to_peers: u64,
    /// Fetched segments left to the helper that owns them (memory tier only here).
    #[serde(default)]
    pub segments_not_kept: u64,
}

/// What `segue edge --stats FILE` writes (every second and at shutdown): the counters,
/// whether warming is done, the mean prefix held, and the helper counters if it cooperates.
#[derive(Debug, Clone, Default, serde::Serialize, serde::Deserialize)]
pub struct StatsFile {
    #[serde(flatten)]
    pub counters: StatsSnapshot,
    /// Every `--warm` object is in.
    #[serde(default)]
    pub ready: bool,
    /// Mean prefix held per object, seconds of media.
    #[serde(default)]
    pub mean_prefix_s: f64,
    #[serde(default)]
    pub helpers: Option<crate::cooperation::HelperSnapshot>,
}

type Fill<T> = watch::Receiver<Option<Result<T, SourceError>>>;

/// A segment fetch in flight: its result, and its place in the scheduler.
struct Pending {
    rx: Fill<Bytes>,
    ticket: u64,
    deadline: Instant,
    /// Woken when the deadline moves up: the exchange in flight carries the old DEADLINE
    /// (the origin would keep sending it last), so it is re-requested with the new one.
    promoted: Arc<tokio::sync::Notify>,
    /// The helper it is being fetched from now (its id; 0: the origin or none yet): a
    /// request from that helper for this segment would loop.
    from: Arc<AtomicU64>,
}

/// How a fetch may go, from who asked for it.
#[derive(Debug, Clone, Copy)]
struct Via {
    /// Never ask this helper (whose request for the segment is being served).
    exclude: Option<u64>,
    /// HOP_LIMIT on requests to helpers; at 0, only helpers that hold it are asked.
    hops: u8,
    /// Store it on disk whatever collective storage says (pre-positioning).
    keep: bool,
}

impl Via {
    /// A fetch this node starts itself.
    const OWN: Via = Via {
        exclude: None,
        hops: segue_wire::segment::DEFAULT_HOP_LIMIT,
        keep: false,
    };
}

/// How long pre-positioning may take: far behind anything a session waits for.
const BACKGROUND: Duration = Duration::from_secs(3600);
/// A fetch in flight that was due later than this from now (background: warming, refills,
/// probes, far read-ahead) and that a session comes to wait on is re-requested with the
/// session's DEADLINE: the origin orders its sends by the one it was given and may starve it.
/// Nearer fetches are left alone (re-requesting costs a second read at the origin).
const PROMOTE_REISSUE: Duration = Duration::from_secs(60);
/// How often [`EdgeSource::upkeep`] looks at prefixes.
const UPKEEP_EVERY: Duration = Duration::from_secs(2);
/// How often measured usage is saved.
const USAGE_SAVE_EVERY: Duration = Duration::from_secs(30);

struct Inner {
    store: Store,
    hot: SegmentLru<Bytes>,
    upstream: Upstream,
    opts: EdgeOptions,
    stats: EdgeStats,
    sched: Arc<Scheduler>,
    fills: Mutex<HashMap<(ObjectName, u64, usize), Pending>>,
    /// Sessions playing each object; the prefetcher only fetches for objects someone plays.
    playing: Mutex<HashMap<ObjectName, usize>>,
    manifests: Mutex<HashMap<ObjectName, Fill<Arc<Manifest>>>>,
    helpers: Option<Arc<Helpers>>,
}

/// The edge's [`Source`]. Cheap to clone.
#[derive(Clone)]
pub struct EdgeSource(Arc<Inner>);

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

async fn wait<T: Clone>(mut rx: Fill<T>) -> Result<T, SourceError> {
    match rx.wait_for(Option::is_some).await {
        Ok(v) => v
            .clone()
            .unwrap_or_else(|| Err(SourceError::Internal("fill vanished".into()))),
        Err(_) => Err(SourceError::Internal("fill abandoned".into())),
    }
}

impl EdgeSource {
    pub fn new(store: Store, upstream: Upstream, opts: EdgeOptions) -> Self {
        Self::with_helpers(store, upstream, opts, None)
    }

    /// An edge that cooperates with the peers of `helpers` (docs/HELPERS.md).
    pub fn with_helpers(
        store: Store,
        upstream: Upstream,
        opts: EdgeOptions,
        helpers: Option<Arc<Helpers>>,
    ) -> Self {
        let sched = Scheduler::new(opts.parallel.max(1), opts.parallel.max(1));
        Self(Arc::new(Inner {
            store,
            hot: SegmentLru::new(opts.hot_bytes),
            upstream,
            opts,
            stats: EdgeStats::default(),
            sched,
            fills: Mutex::default(),
            manifests: Mutex::default(),
            playing: Mutex::default(),
            helpers,
        }))
    }

    /// The helper network, if this edge cooperates.
    pub fn helpers(&self) -> Option<&Arc<Helpers>> {
        self.0.helpers.as_ref()
    }

    /// Advertises what this edge holds to its peers until `stop` (nothing without peers).
    pub async fn advertise(self, stop: watch::Receiver<bool>) {
        let Some(h) = self.0.helpers.clone() else {
            return;
        };
        let me = self.clone();
        let sink = crate::cooperation::LiveSink {
            helpers: h,
            holdings: move || me.0.store.holdings(),
        };
        crate::cooperation::advertise::run(Arc::new(sink), stop).await;
    }

    pub fn stats(&self) -> &EdgeStats {
        &self.0.stats
    }

    pub fn snapshot(&self) -> StatsSnapshot {
        let s = &self.0.stats;
        let get = |a: &AtomicU64| a.load(Ordering::Relaxed);
        StatsSnapshot {
            full_hits: get(&s.full_hits),
            prefix_hits: get(&s.prefix_hits),
            misses: get(&s.misses),
            segments_from_origin: get(&s.segments_from_origin),
            manifests_from_origin: get(&s.manifests_from_origin),
            collapsed: get(&s.collapsed),
            origin_bytes: get(&self.0.upstream.stats.bytes),
            served_bytes: get(&s.served_bytes),
            segments_pushed: get(&s.segments_pushed),
            segments_from_peers: get(&s.segments_from_peers),
            peer_bytes: get(&s.peer_bytes),
            segments_to_peers: get(&s.segments_to_peers),
            segments_not_kept: get(&s.not_kept),
        }
    }

    /// The edge's `--stats` file contents now.
    pub fn stats_file(&self, ready: bool) -> StatsFile {
        StatsFile {
            counters: self.snapshot(),
            ready,
            mean_prefix_s: self.0.store.mean_prefix_s(),
            helpers: self.helpers().map(|h| h.snapshot()),
        }
    }

    /// Segment exchanges in flight to the origin (K).
    pub fn parallel(&self) -> usize {
        self.0.opts.parallel
    }

    pub fn store(&self) -> &Store {
        &self.0.store
    }

    pub fn upstream(&self) -> &Upstream {
        &self.0.upstream
    }

    /// Fetches an object's manifest and prefix into the cache (pre-positioning).
    pub async fn warm(&self, name: &ObjectName) -> Result<usize, SourceError> {
        let m = self.manifest(name).await?;
        let n = self.0.store.prefix_len(&m);
        let due = Instant::now() + BACKGROUND;
        let via = Via {
            keep: true,
            ..Via::OWN
        };
        let fills: Vec<_> = (0..n)
            .map(|i| self.fill_via(m.clone(), i, due, via))
            .collect();
        for f in fills {
            f.await?;
        }
        Ok(n)
    }

    /// Background upkeep until `stop`, every 2 s: when the required prefix of a cached
    /// object grows (the origin link got worse), its missing prefix segments are pulled in
    /// the background (after anything a session waits for), most requested object first,
    /// into free space only (never evicting for it); otherwise, after
    /// [`EdgeOptions::probe_after`] without origin traffic, one useful segment is fetched
    /// to measure the link. Measured usage is saved every 30 s and at the end. Beside it the
    /// origin connection is kept open ahead of need.
    pub async fn upkeep(self, mut stop: watch::Receiver<bool>) {
        let warm = tokio::spawn(self.clone().keep_origin_warm(stop.clone()));
        let mut tick = tokio::time::interval(UPKEEP_EVERY);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut saved = Instant::now();
        loop {
            tokio::select! {
                _ = tick.tick() => {}
                _ = stop.changed() => break,
            }
            if let Some(h) = &self.0.helpers {
                h.expire();
            }
            let fetching = self.objects_fetching(&lock(&self.0.playing));
            if fetching > 0 {
                self.0.store.fetching_concurrently(fetching, 0.05);
            }
            if let Some(name) = self.0.store.prefix_to_refill() {
                match self.warm(&name).await {
                    Ok(n) => {
                        tracing::info!(object = %name, segments = n, "prefix grown to follow the link")
                    }
                    Err(e) => tracing::debug!(object = %name, "prefix refill failed: {e}"),
                }
            } else if let Some(after) = self.0.opts.probe_after
                && self.0.upstream.stats.idle_for().is_some_and(|d| d >= after)
                && let Some((m, i)) = self.0.store.probe_target()
            {
                let due = Instant::now() + BACKGROUND;
                match self.fill(m.clone(), i, due).await {
                    Ok(_) => tracing::debug!(object = %m.object, segment = i, "link probed"),
                    Err(e) => tracing::debug!(object = %m.object, "link probe failed: {e}"),
                }
            }
            if saved.elapsed() >= USAGE_SAVE_EVERY {
                self.save_usage();
                saved = Instant::now();
            }
        }
        self.save_usage();
        warm.abort();
    }

    /// Until `stop`: the pooled origin connection is opened at start-up and re-opened within
    /// [`UPKEEP_EVERY`] of being lost, so a miss finds it ready (keep-alives hold it open).
    async fn keep_origin_warm(self, mut stop: watch::Receiver<bool>) {
        loop {
            self.0.upstream.warm().await;
            tokio::select! {
                _ = tokio::time::sleep(UPKEEP_EVERY) => {}
                _ = stop.changed() => break,
            }
        }
    }

    /// Objects someone plays that are not wholly cached: those fetched from the origin.
    fn objects_fetching(&self, playing: &HashMap<ObjectName, usize>) -> usize {
        playing.keys().filter(|o| !self.0.store.complete(o)).count()
    }

    fn save_usage(&self) {
        if let Err(e) = self.0.store.save_usage() {
            tracing::warn!("cannot save measured usage: {e}");
        }
    }

    /// Acts on a hint: its viewers count as requests, and the prefix is pulled now.
    pub async fn anticipate(&self, hint: &crate::placement::hint::Hint) -> Result<String, String> {
        let name = ObjectName::new(&hint.object, 1024).map_err(|e| e.to_string())?;
        self.0.store.anticipate(&name, hint.viewers);
        let n = self.warm(&name).await.map_err(|e| e.to_string())?;
        Ok(format!("{n} prefix segments cached"))
    }

    /// Fetches segment `i` once a scheduler slot is free: from the helpers that can deliver
    /// it in time (when this edge cooperates), else from the origin; a helper that fails or
    /// times out is skipped and the choice made again, the origin last.
    async fn fetch(
        &self,
        m: &Manifest,
        i: usize,
        ticket: Ticket,
        via: Via,
        from: &AtomicU64,
    ) -> Result<Bytes, SourceError> {
        let _slot = ticket
            .slot()
            .await
            .ok_or_else(|| SourceError::Internal("edge shutting down".into()))?;
        let Some(h) = self.0.helpers.as_deref() else {
            return self.fetch_from_origin(m, i).await;
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
                        self.fetch_from_origin(m, i).await
                    }
                    SourceId::Peer(p) => self.fetch_from_peer(h, p, m, i, via, left(), from).await,
                }
            },
            SourceError::Unavailable("no source left".into()),
        )
        .await
    }

    /// Segment `i` from helper `p`, within the time left before the origin would have to
    /// start (at least 300 ms, at most the exchange timeout).
    #[allow(clippy::too_many_arguments)]
    async fn fetch_from_peer(
        &self,
        h: &Helpers,
        p: usize,
        m: &Manifest,
        i: usize,
        via: Via,
        left: Duration,
        from: &AtomicU64,
    ) -> Result<Bytes, SourceError> {
        let peer = &h.peers[p];
        from.store(peer.id, Ordering::Relaxed);
        let origin_time = self.0.upstream.rtt().unwrap_or(Duration::from_millis(50)) * 2;
        let allow = left
            .saturating_sub(origin_time)
            .clamp(Duration::from_millis(300), upstream::DEFAULT_TIMEOUT);
        let due_ms = Some(left.as_millis() as u64);
        let hop = Some((via.hops.saturating_sub(1), h.id));
        match tokio::time::timeout(allow, peer.link.segment(m, i, due_ms, hop)).await {
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
    async fn fetch_from_origin(&self, m: &Manifest, i: usize) -> Result<Bytes, SourceError> {
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
            let fetch = inner.upstream.segment(m, i, due, None);
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
    fn fill(
        &self,
        m: Arc<Manifest>,
        i: usize,
        deadline: Instant,
    ) -> impl std::future::Future<Output = Result<Bytes, SourceError>> + Send + 'static {
        self.fill_via(m, i, deadline, Via::OWN)
    }

    /// [`Self::fill`] for a request that came `via` a helper (or pre-positioning).
    fn fill_via(
        &self,
        m: Arc<Manifest>,
        i: usize,
        deadline: Instant,
        via: Via,
    ) -> impl std::future::Future<Output = Result<Bytes, SourceError>> + Send + 'static {
        let this = self.clone();
        async move {
            if let Some(b) = this.0.hot.get(&m, i) {
                return Ok(b);
            }
            if let Some(b) = this.0.store.read(&m, i).await {
                this.0.hot.put(&m, i, b.clone(), b.len() as u64);
                return Ok(b);
            }
            let key = (m.object.clone(), m.revision, i);
            let rx = {
                let mut fills = lock(&this.0.fills);
                match fills.get_mut(&key) {
                    Some(p) => {
                        // The helper asking is the one we are fetching this from: a loop.
                        if via
                            .exclude
                            .is_some_and(|x| x == p.from.load(Ordering::Relaxed))
                        {
                            if let Some(h) = &this.0.helpers {
                                h.stats.loops_refused.fetch_add(1, Ordering::Relaxed);
                            }
                            return Err(SourceError::Busy(format!(
                                "segment {i} of {} is being fetched from you",
                                m.object
                            )));
                        }
                        this.0.stats.collapsed.fetch_add(1, Ordering::Relaxed);
                        if deadline < p.deadline {
                            // A background fetch a session now waits on: the exchange in
                            // flight is re-requested with the new DEADLINE.
                            if p.deadline > Instant::now() + PROMOTE_REISSUE {
                                p.promoted.notify_one();
                            }
                            p.deadline = deadline;
                            this.0.sched.promote(p.ticket, deadline);
                        }
                        p.rx.clone()
                    }
                    None => {
                        let (tx, rx) = watch::channel(None);
                        let ticket = this.0.sched.enqueue(deadline);
                        let from = Arc::new(AtomicU64::new(0));
                        fills.insert(
                            key.clone(),
                            Pending {
                                rx: rx.clone(),
                                ticket: ticket.id,
                                deadline,
                                promoted: Arc::default(),
                                from: from.clone(),
                            },
                        );
                        let me = this.clone();
                        tokio::spawn(async move {
                            let r = me.fetch(&m, i, ticket, via, &from).await;
                            if let Err(SourceError::Stale(_)) = &r {
                                // The origin re-ingested the object: our manifest is old. Drop it
                                // so the next request fetches the new one; this session ends.
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
                            let _ = tx.send(Some(r));
                        });
                        rx
                    }
                }
            };
            wait(rx).await
        }
    }

    /// Whether a fetched segment goes to disk: always on an edge on its own; on a helper,
    /// when collective storage gives it to this one ([`Helpers::keeps`]).
    fn keeps(&self, m: &Manifest, i: usize) -> bool {
        match &self.0.helpers {
            None => true,
            Some(h) => h.keeps(
                &m.object,
                i,
                self.0.store.is_prefix(m, i),
                self.0.store.request_count(&m.object),
            ),
        }
    }

    /// Fetches the segments from `first` on that are not cached, in playout order, each due
    /// at its media time from now.
    fn prefetch(&self, m: Arc<Manifest>, first: usize) {
        let this = self.clone();
        let t0 = Instant::now();
        let origin = m.segments.get(first).map_or(0, |s| s.start_us);
        tokio::spawn(async move {
            let window = Arc::new(Semaphore::new(this.0.opts.parallel.max(1)));
            for i in first..m.segments.len() {
                if this.0.store.has(&m, i) {
                    continue;
                }
                let Ok(permit) = window.clone().acquire_owned().await else {
                    return;
                };
                // Every session of this object stopped (an early quit): stop fetching for it.
                if lock(&this.0.playing).get(&m.object).copied().unwrap_or(0) == 0 {
                    tracing::debug!(object = %m.object, next = i, "prefetch stopped: nobody playing");
                    return;
                }
                let due = t0 + Duration::from_micros(m.segments[i].start_us.saturating_sub(origin));
                let f = this.fill(m.clone(), i, due);
                tokio::spawn(async move {
                    if let Err(e) = f.await {
                        tracing::debug!("prefetch failed: {e}");
                    }
                    drop(permit);
                });
            }
        });
    }

    /// Contiguous bytes available from segment `first` on.
    fn contiguous(&self, m: &Manifest, first: usize) -> (u64, bool) {
        let mut bytes = 0;
        for i in first..m.segments.len() {
            if !self.0.store.has(m, i) {
                return (bytes, false);
            }
            bytes += m.segments[i].size;
        }
        (bytes, true)
    }
}

impl Source for EdgeSource {
    async fn manifest(&self, name: &ObjectName) -> Result<Arc<Manifest>, SourceError> {
        if let Some(m) = self.0.store.manifest(name) {
            return Ok(m);
        }
        let rx = {
            let mut pending = lock(&self.0.manifests);
            match pending.get(name) {
                Some(rx) => rx.clone(),
                None => {
                    let (tx, rx) = watch::channel(None);
                    pending.insert(name.clone(), rx.clone());
                    let me = self.clone();
                    let name = name.clone();
                    tokio::spawn(async move {
                        let r = me.0.upstream.manifest(&name).await.map(Arc::new);
                        if let Ok(m) = &r {
                            me.0.stats
                                .manifests_from_origin
                                .fetch_add(1, Ordering::Relaxed);
                            if let Err(e) = me.0.store.put_manifest(m) {
                                tracing::debug!(object = %name, "manifest kept in memory only: {e}");
                            }
                        }
                        lock(&me.0.manifests).remove(&name);
                        let _ = tx.send(Some(r));
                    });
                    rx
                }
            }
        };
        wait(rx).await
    }

    async fn segment(&self, m: &Arc<Manifest>, index: usize) -> Result<Bytes, SourceError> {
        // A session waits for this segment: it is due now.
        self.fill(m.clone(), index, Instant::now()).await
    }

    async fn segment_for(
        &self,
        m: &Arc<Manifest>,
        index: usize,
        from: Requester,
    ) -> Result<Bytes, SourceError> {
        let due = Instant::now() + Duration::from_millis(from.deadline_ms.unwrap_or(0));
        let Some(hops) = from.hop_limit else {
            // Another edge using this one as its origin.
            return self.fill(m.clone(), index, due).await;
        };
        // A helper's request: served from what is held, else fetched (never from it).
        if hops == 0 && !self.0.store.has(m, index) && self.0.hot.get(m, index).is_none() {
            return Err(SourceError::HopLimit(format!(
                "segment {index} of {} is not held here",
                m.object
            )));
        }
        let via = Via {
            exclude: from.sender,
            hops: hops.saturating_sub(1),
            keep: false,
        };
        let r = self.fill_via(m.clone(), index, due, via).await;
        if r.is_ok() {
            self.0
                .stats
                .segments_to_peers
                .fetch_add(1, Ordering::Relaxed);
        }
        r
    }

    fn advertised(&self, a: &segue_wire::advert::Advert) -> Result<Status, SourceError> {
        match &self.0.helpers {
            None => Err(SourceError::Refused(
                "this edge has no peers (segue edge --peer)".into(),
            )),
            Some(h) => h.received(a).map_err(SourceError::Refused),
        }
    }

    fn will_play(&self, m: &Arc<Manifest>, first: usize) -> Option<CacheCase> {
        let n = m.segments.len();
        let cached = self.0.store.count_from(m, first);
        let case = if cached >= n.saturating_sub(first) {
            self.0.stats.full_hits.fetch_add(1, Ordering::Relaxed);
            CacheCase::FullHit
        } else if self.0.store.has(m, first) {
            self.0.stats.prefix_hits.fetch_add(1, Ordering::Relaxed);
            CacheCase::PrefixHit
        } else {
            self.0.stats.misses.fetch_add(1, Ordering::Relaxed);
            CacheCase::Miss
        };
        tracing::info!(object = %m.object, case = case.as_str(), "session");
        self.0.store.requested(&m.object);
        let fetching = {
            let mut playing = lock(&self.0.playing);
            *playing.entry(m.object.clone()).or_default() += 1;
            self.objects_fetching(&playing)
        };
        if case != CacheCase::FullHit {
            // How many objects share the origin link as this one starts (prefix lengths).
            self.0.store.fetching_concurrently(fetching, 0.2);
            self.prefetch(m.clone(), first);
        }
        Some(case)
    }

    fn sent(&self, bytes: u64) {
        self.0
            .stats
            .served_bytes
            .fetch_add(bytes, Ordering::Relaxed);
    }

    fn offered(
        &self,
        m: &Arc<Manifest>,
        offer: Offer,
    ) -> Result<Option<(usize, usize)>, SourceError> {
        if !self.0.opts.accept_pushes {
            return Err(SourceError::Refused(
                "this edge takes no pushes (segue edge --accept-pushes)".into(),
            ));
        }
        self.0
            .store
            .anticipate(&m.object, offer.viewers.unwrap_or(1));
        let end = offer
            .first
            .saturating_add(offer.count)
            .min(m.segments.len());
        let mut missing = (offer.first..end).filter(|&i| !self.0.store.has(m, i));
        let Some(from) = missing.next() else {
            return Ok(None);
        };
        let to = missing.next_back().unwrap_or(from);
        Ok(Some((from, to - from + 1)))
    }

    async fn pushed(&self, m: &Arc<Manifest>, i: usize, payload: Bytes) -> Result<(), SourceError> {
        if !self.0.opts.accept_pushes {
            return Err(SourceError::Refused("this edge takes no pushes".into()));
        }
        if !checksum_ok(m, i, &payload) {
            return Err(SourceError::Invalid(format!(
                "pushed segment {i} of {} fails its checksum",
                m.object
            )));
        }
        if self.0.store.has(m, i) {
            return Ok(());
        }
        self.0.hot.put(m, i, payload.clone(), payload.len() as u64);
        self.0.store.put(m, i, &payload).await;
        self.0.stats.segments_pushed.fetch_add(1, Ordering::Relaxed);
        Ok(())
    }

    fn stopped(&self, m: &Arc<Manifest>, reached: usize) {
        self.0.store.watched(m, reached);
        let mut playing = lock(&self.0.playing);
        if let Some(n) = playing.get_mut(&m.object) {
            *n = n.saturating_sub(1);
            if *n == 0 {
                playing.remove(&m.object);
            }
        }
    }

    async fn ready(&self, m: &Arc<Manifest>, first: usize) -> Result<(), SourceError> {
        if self.0.store.has(m, first) {
            return Ok(()); // a hit: the prefix covers the fetch of the rest
        }
        // A miss: wait for the first segment, then for the sufficient portion.
        self.fill(m.clone(), first, Instant::now()).await?;
        let remaining: u64 = m.segments[first..].iter().map(|s| s.size).sum();
        let duration_s = (m.duration_us.saturating_sub(m.segments[first].start_us)) as f64 / 1e6;
        let rate = remaining as f64 / duration_s.max(0.001); // object bytes per second
        let deadline = Instant::now() + self.0.opts.retry_for;
        loop {
            let link = self.0.upstream.stats.throughput(self.0.opts.parallel) as f64;
            let need = if link <= 0.0 || link >= rate {
                0.0
            } else {
                remaining as f64 * (1.0 - link / rate) * self.0.opts.margin
            };
            let (have, all) = self.contiguous(m, first);
            if all || have as f64 >= need || Instant::now() >= deadline {
                tracing::debug!(object = %m.object, have, need, link, rate, "starting a miss");
                return Ok(());
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}
