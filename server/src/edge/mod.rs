//! The edge: serves players from its cache (a prefix of each object, plus whatever suffix has
//! room) and fetches the rest from the origin while streaming.
//!
//! - **Collapsing**: one origin fetch per segment however many sessions want it; waiters get
//!   the segment as soon as that fetch lands, not when the whole object is in.
//! - **Prefetch**: when a session starts, the segments it lacks are fetched in playout order
//!   with `parallel` exchanges in flight on the pooled origin connection.
//! - **Cases**: a session is a *full hit* (everything cached), a *prefix hit* (its first
//!   segment cached) or a *miss*. On a miss, playback starts once a *sufficient portion* is in:
//!   enough that, at the measured origin rate, the rest arrives before it is due. A paced
//!   play's first picture goes out before that (`node::session::preview`).
//! - **Memory tier**: recently served segments, already verified, in a [`SegmentLru`], so
//!   popular objects are served without a disk read or a checksum per session.

mod fill;
pub mod node;
mod prefetch;
pub mod schedule;
mod stats;
pub mod store;
mod upkeep;

use fill::{Early, Pending, Via};
pub use stats::{EdgeStats, StatsFile, StatsSnapshot};

use std::collections::HashMap;
use std::sync::atomic::Ordering;
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
use crate::node::source::{Body, CacheCase, Offer, Requester, Source, SourceError, checksum_ok};
use crate::node::upstream::Upstream;
use schedule::{Scheduler, Ticket};
use segue_wire::segment::Status;
use store::Store;

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

type Fill<T> = watch::Receiver<Option<Result<T, SourceError>>>;

/// How long after its first request a play that found nothing still counts as a miss (a
/// request that never became a play is forgotten after it).
const COLD_PLAY_WINDOW: Duration = Duration::from_secs(30);
/// Objects (and plays per object) [`Inner::cold_plays`] holds marks for at most.
const MAX_COLD_OBJECTS: usize = 4096;
/// How long pre-positioning may take: far behind anything a session waits for.
const BACKGROUND: Duration = Duration::from_secs(3600);
/// A fetch in flight that was due later than this from now (background: warming, refills,
/// probes, far read-ahead) and that a session comes to wait on is re-requested with the
/// session's DEADLINE: the origin orders its sends by the one it was given and may starve it.
/// Nearer fetches are left alone (re-requesting costs a second read at the origin).
const PROMOTE_REISSUE: Duration = Duration::from_secs(60);
/// Round trips of the origin link whose media a miss holds before playback starts, however
/// fast the link: a lost packet among the next bytes costs about a probe timeout and its
/// retransmission's trip. Without it a miss on a link faster than the media started on its
/// first chunk, and a loss there held the next chunk past what the player had buffered
/// (matrix, 0.25 Mbit/s × 300 ms × 1 % origin link: two plays stalled 171 ms).
const RECOVERY_RTTS: f64 = 3.0;
/// The least window a first fill's rate is measured over ([`crate::node::source::rate_over`]):
/// chunks land in bursts, and on a short link a round trip holds few of them.
const RATE_WINDOW_MIN: Duration = Duration::from_millis(250);

/// How long a manifest fetch is retried while the origin is unavailable.
const MANIFEST_RETRY_FOR: Duration = Duration::from_secs(3);
/// How long the origin's "no such object" is believed without asking it again.
const NOT_FOUND_FOR: Duration = Duration::from_secs(10);
/// Names remembered as not found at most (a stranger asking for fresh names holds no more).
const MAX_NOT_FOUND: usize = 4096;

/// Bytes from the play's start a miss must hold (verified) before playback starts: what the
/// link (`link` bytes/s, 0 unknown) falls behind the media (`rate` bytes/s) over the
/// `remaining` bytes, times `margin`, and at least [`RECOVERY_RTTS`] round trips of media.
fn portion_needed(remaining: u64, rate: f64, link: f64, rtt: Duration, margin: f64) -> f64 {
    let behind = if link <= 0.0 || link >= rate {
        0.0
    } else {
        remaining as f64 * (1.0 - link / rate) * margin
    };
    let recovery = rate * rtt.as_secs_f64() * RECOVERY_RTTS;
    behind.max(recovery.min(remaining as f64))
}

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
    /// Segment 0 requests sent along with a play's manifest fetch, waiting for the manifest
    /// to be checked against (one per object).
    early: Mutex<HashMap<ObjectName, Early>>,
    /// When plays asked for objects whose manifest was not held: each is a miss when it
    /// starts (within [`COLD_PLAY_WINDOW`]).
    cold_plays: Mutex<HashMap<ObjectName, Vec<Instant>>>,
    /// Names the origin said it does not have, and when: asked again within
    /// [`NOT_FOUND_FOR`], they are answered "not found" without an origin round trip.
    not_found: Mutex<HashMap<ObjectName, Instant>>,
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
            early: Mutex::default(),
            cold_plays: Mutex::default(),
            not_found: Mutex::default(),
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

    /// Segment exchanges in flight to the origin (K).
    pub fn parallel(&self) -> usize {
        self.0.opts.parallel
    }

    /// Plays that found nothing and have not started yet (marks that make their PLAY a
    /// miss), over all objects.
    pub fn cold_marks(&self) -> usize {
        lock(&self.0.cold_plays).values().map(Vec::len).sum()
    }

    pub fn store(&self) -> &Store {
        &self.0.store
    }

    /// The manifest of `name` from the origin, asked again (with backoff) while the origin
    /// is unavailable, for up to [`MANIFEST_RETRY_FOR`] (a player waits for the answer): a
    /// request in flight on a connection that died (an origin restarted, noticed within
    /// about a second) is re-issued on the next one.
    async fn manifest_from_origin(&self, name: &ObjectName) -> Result<Manifest, SourceError> {
        let deadline = Instant::now() + MANIFEST_RETRY_FOR.min(self.0.opts.retry_for);
        let mut backoff = Duration::from_millis(50);
        loop {
            match self.0.upstream.manifest(name).await {
                Err(e @ SourceError::Unavailable(_)) if Instant::now() + backoff < deadline => {
                    tracing::debug!(object = %name, "manifest: retrying: {e}");
                    tokio::time::sleep(backoff).await;
                    backoff = (backoff * 2).min(Duration::from_secs(1));
                }
                r => return r,
            }
        }
    }

    /// Remembers that the origin has no `name` (bounded: expired names go first, then, if
    /// still full, nothing new is remembered).
    fn remember_not_found(&self, name: &ObjectName) {
        let mut nf = lock(&self.0.not_found);
        if nf.len() >= MAX_NOT_FOUND {
            nf.retain(|_, at| at.elapsed() < NOT_FOUND_FOR);
        }
        if nf.len() < MAX_NOT_FOUND {
            nf.insert(name.clone(), Instant::now());
        }
    }

    pub fn upstream(&self) -> &Upstream {
        &self.0.upstream
    }
}

impl Source for EdgeSource {
    async fn manifest(&self, name: &ObjectName) -> Result<Arc<Manifest>, SourceError> {
        if let Some(m) = self.0.store.manifest(name) {
            return Ok(m);
        }
        if let Some(at) = lock(&self.0.not_found).get(name)
            && at.elapsed() < NOT_FOUND_FOR
        {
            self.0
                .stats
                .not_found_cached
                .fetch_add(1, Ordering::Relaxed);
            return Err(SourceError::NotFound(name.to_string()));
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
                        let r = me.manifest_from_origin(&name).await.map(Arc::new);
                        if let Err(SourceError::NotFound(_)) = &r {
                            me.remember_not_found(&name);
                        }
                        if let Ok(m) = &r {
                            me.0.stats
                                .manifests_from_origin
                                .fetch_add(1, Ordering::Relaxed);
                            if let Err(e) = me.0.store.put_manifest(m) {
                                tracing::debug!(object = %name, "manifest kept in memory only: {e}");
                            }
                            // Before the sessions waiting for the manifest go on to ask for
                            // segment 0: the request sent along with this one becomes its fill.
                            me.adopt_early(m);
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

    async fn manifest_for_play(&self, name: &ObjectName) -> Result<Arc<Manifest>, SourceError> {
        if let Some(m) = self.0.store.manifest(name) {
            return Ok(m);
        }
        {
            let mut cold = lock(&self.0.cold_plays);
            // Bounded whatever names strangers ask for: the oldest marks go first.
            if cold.len() >= MAX_COLD_OBJECTS {
                cold.retain(|_, v| v.iter().any(|t| t.elapsed() < COLD_PLAY_WINDOW));
            }
            if cold.len() < MAX_COLD_OBJECTS {
                let v = cold.entry(name.clone()).or_default();
                if v.len() < MAX_COLD_OBJECTS {
                    v.push(Instant::now());
                }
            }
        }
        self.pipeline_first(name);
        let m = self.manifest(name).await;
        if m.is_err() {
            // No play follows a failed DESCRIBE: forget its mark.
            lock(&self.0.cold_plays).remove(name);
        }
        m
    }

    async fn segment(&self, m: &Arc<Manifest>, index: usize) -> Result<Bytes, SourceError> {
        // A session waits for this segment: it is due now.
        self.fill(m.clone(), index, Instant::now()).await
    }

    async fn segment_body(&self, m: &Arc<Manifest>, index: usize) -> Result<Body, SourceError> {
        self.body(m.clone(), index, Instant::now(), Via::OWN).await
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
            Some(h) => h.received(a),
        }
    }

    fn will_play(&self, m: &Arc<Manifest>, first: usize) -> Option<CacheCase> {
        let n = m.segments.len();
        let cached = self.0.store.count_from(m, first);
        // A play that found nothing when it asked (its DESCRIBE waited for the manifest,
        // and for segment 0 with it) is a miss, whatever has landed since.
        let cold = {
            let mut c = lock(&self.0.cold_plays);
            let waited = c.get_mut(&m.object).and_then(|v| {
                v.retain(|t| t.elapsed() < COLD_PLAY_WINDOW);
                v.pop()
            });
            if c.get(&m.object).is_some_and(Vec::is_empty) {
                c.remove(&m.object);
            }
            waited.is_some()
        };
        let case = if cold {
            self.0.stats.misses.fetch_add(1, Ordering::Relaxed);
            CacheCase::Miss
        } else if cached >= n.saturating_sub(first) {
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
        // A miss: start once what is verified (cached, or chunks of the fill in flight) plus
        // what the link delivers by each deadline suffices; the session then streams the
        // first segment chunk by chunk as it is verified (cut-through). With no measure of
        // the link yet, the first segment's arrival is the measure: the rate its fill
        // verifies chunks at, the lesser over its last two round trips (250 ms at least),
        // counted from the request while the fill is younger (so a long first byte slows it).
        let unmeasured = self.0.upstream.stats.throughput(self.0.opts.parallel) == 0;
        let fill = if unmeasured && self.0.hot.get(m, first).is_none() {
            Some(self.join(m.clone(), first, Instant::now(), Via::OWN, None)?)
        } else {
            None
        };
        let remaining: u64 = m.segments[first..].iter().map(|s| s.size).sum();
        let duration_s = (m.duration_us.saturating_sub(m.segments[first].start_us)) as f64 / 1e6;
        let rate = remaining as f64 / duration_s.max(0.001); // object bytes per second
        let deadline = Instant::now() + self.0.opts.retry_for;
        loop {
            let rtt = self.0.upstream.rtt().unwrap_or_default();
            let mut link = self.0.upstream.stats.throughput(self.0.opts.parallel) as f64;
            if link <= 0.0
                && let Some(f) = &fill
            {
                link = match f.rate(rtt.max(RATE_WINDOW_MIN)) {
                    // Nothing verified in one of the last two windows: a stalled link.
                    Some(r) if r <= 0.0 => f64::MIN_POSITIVE,
                    Some(r) => r,
                    // Nothing verified yet: wait for the first chunks, or the end.
                    None if !f.is_done() => f64::MIN_POSITIVE,
                    None => 0.0,
                };
            }
            let need = portion_needed(remaining, rate, link, rtt, self.0.opts.margin);
            let (have, all) = self.contiguous(m, first);
            if all || have as f64 >= need || Instant::now() >= deadline {
                tracing::debug!(object = %m.object, have, need, link, rate, "starting a miss");
                return Ok(());
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: Duration = Duration::from_millis(1);

    #[test]
    fn a_link_slower_than_the_media_needs_what_it_falls_behind() {
        // 1 MB left at 100 kB/s over a 50 kB/s link: half of it, times the margin.
        let need = portion_needed(1_000_000, 100_000.0, 50_000.0, 20 * MS, 1.25);
        assert_eq!(need, 625_000.0);
    }

    #[test]
    fn a_fast_link_still_needs_a_loss_recovery_of_media() {
        // 300 ms round trips: 3 of them, 0.9 s of media at 31 kB/s.
        let need = portion_needed(330_000, 31_000.0, 125_000.0, 300 * MS, 1.25);
        assert!((need - 27_900.0).abs() < 1.0, "{need}");
        // Never more than what is left.
        assert_eq!(
            portion_needed(10_000, 31_000.0, 125_000.0, 300 * MS, 1.25),
            10_000.0
        );
        // Unknown round trip: nothing beyond what the rate asks.
        assert_eq!(
            portion_needed(330_000, 31_000.0, 125_000.0, Duration::ZERO, 1.25),
            0.0
        );
    }

    #[test]
    fn the_larger_of_the_two_needs_wins() {
        let behind = portion_needed(1_000_000, 100_000.0, 90_000.0, Duration::ZERO, 1.0);
        let both = portion_needed(1_000_000, 100_000.0, 90_000.0, 1000 * MS, 1.0);
        assert!((behind - 100_000.0).abs() < 1.0, "{behind}");
        assert!((both - 300_000.0).abs() < 1.0, "{both}");
    }
}
