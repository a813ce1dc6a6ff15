//! Where a node gets manifests and segment payloads: the origin from its library
//! (`origin::source::LibrarySource`), an edge from its cache and upstream
//! (`edge::EdgeSource`). Sessions and the segment responder only see this trait.

use std::collections::VecDeque;
use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use ring::digest::{SHA256, digest};
use segue_wire::ObjectName;
use segue_wire::segment::{Manifest, Status};
use tokio::sync::watch;

/// Why a source could not deliver.
#[derive(Debug, Clone, thiserror::Error)]
pub enum SourceError {
    #[error("no object {0}")]
    NotFound(String),
    #[error("upstream unavailable: {0}")]
    Unavailable(String),
    /// The object changed upstream since its manifest was fetched.
    #[error("{0} changed at the origin; request it again")]
    Stale(String),
    /// The request is not allowed here (e.g. a push to a node that takes none).
    #[error("refused: {0}")]
    Refused(String),
    /// What the peer sent is wrong (e.g. a pushed segment failing its checksum).
    #[error("invalid: {0}")]
    Invalid(String),
    /// A helper may not forward this request further (HOP_LIMIT reached 0).
    #[error("hop limit reached: {0}")]
    HopLimit(String),
    /// Serving it would loop or overload: ask another source.
    #[error("busy: {0}")]
    Busy(String),
    #[error("{0}")]
    Internal(String),
}

impl SourceError {
    /// The RTSP status a control request failing with this error gets.
    pub fn rtsp_status(&self) -> u16 {
        use segue_wire::control::status;
        match self {
            SourceError::NotFound(_) => status::NOT_FOUND,
            SourceError::Unavailable(_) | SourceError::Stale(_) | SourceError::HopLimit(_) => {
                status::BAD_GATEWAY
            }
            SourceError::Busy(_) => status::SERVICE_UNAVAILABLE,
            SourceError::Refused(_) => status::FORBIDDEN,
            SourceError::Invalid(_) => status::BAD_REQUEST,
            SourceError::Internal(_) => status::INTERNAL_SERVER_ERROR,
        }
    }

    /// What a player is told: the object and a reason class, never the node's internals
    /// (upstream addresses, file paths, OS errors). Where the error is this node's or its
    /// upstream's, the text carries an incident id, and the details are logged with it.
    pub fn for_player(&self, object: &ObjectName) -> String {
        let id = incident();
        if self.incident_class().is_some() {
            tracing::warn!(incident = %id, object = %object, "{self}");
        }
        self.public(object, &id)
    }

    /// [`Self::for_player`]'s text with incident id `id` (used where it names one), without
    /// logging: the caller logs the details with the id.
    pub fn public(&self, object: &ObjectName, id: &str) -> String {
        if let Some(class) = self.incident_class() {
            return format!("{object}: {class} (incident {id})");
        }
        match self {
            SourceError::Stale(_) => format!("{object} changed at the origin; request it again"),
            // Policy texts written for the requester ("this edge takes no pushes").
            SourceError::Refused(why) => format!("{object}: refused: {why}"),
            SourceError::Busy(_) => format!("{object}: busy, try again"),
            // Written for players where it is made ("no object X", "X (its source could not
            // be ingested; ...)"), origin or edge.
            _ => self.to_string(),
        }
    }

    /// The reason class a player is told, with an incident id, for an error of this node or
    /// its upstream (whose details are the node's); None for one told in its own words.
    fn incident_class(&self) -> Option<&'static str> {
        match self {
            SourceError::Unavailable(_) | SourceError::HopLimit(_) => Some("upstream unavailable"),
            SourceError::Invalid(_) => Some("invalid"),
            SourceError::Internal(_) => Some("internal error"),
            SourceError::NotFound(_)
            | SourceError::Stale(_)
            | SourceError::Refused(_)
            | SourceError::Busy(_) => None,
        }
    }

    /// The segment-protocol status.
    pub fn segment_status(&self) -> Status {
        match self {
            SourceError::NotFound(_) => Status::NotFound,
            SourceError::Unavailable(_) => Status::UpstreamUnavailable,
            SourceError::Stale(_) => Status::StaleRevision,
            SourceError::Refused(_) => Status::Unauthorized,
            SourceError::Invalid(_) => Status::BadRequest,
            SourceError::HopLimit(_) => Status::HopLimitExceeded,
            SourceError::Busy(_) => Status::Busy,
            SourceError::Internal(_) => Status::Internal,
        }
    }
}

/// A new incident id: what a player is told instead of the details, which the node logs
/// with it (`incident=...`). Unique within the process, and across restarts with high
/// probability (its high bits come from the start time).
pub fn incident() -> String {
    use std::sync::atomic::AtomicU64;
    static NEXT: AtomicU64 = AtomicU64::new(0);
    static BASE: std::sync::OnceLock<u64> = std::sync::OnceLock::new();
    let base = *BASE.get_or_init(|| {
        let t = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap_or_default();
        (t.as_nanos() as u64).rotate_left(24)
    });
    let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    format!(
        "{:012x}",
        (base ^ n.wrapping_mul(0x9e37_79b9_7f4a_7c15)) & 0xffff_ffff_ffff
    )
}

/// Segments another node offers to push (PUSH_OFFER, PROTOCOL.md §8.7).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Offer {
    pub first: usize,
    pub count: usize,
    /// Viewers the pusher expects (anticipated demand).
    pub viewers: Option<u64>,
    /// Milliseconds until they are expected.
    pub deadline_ms: Option<u64>,
}

/// Who asks for a segment over the segment protocol, from its request's parameters.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Requester {
    /// HOP_LIMIT: present on requests between helpers.
    pub hop_limit: Option<u8>,
    /// SENDER: the requesting helper's id.
    pub sender: Option<u64>,
    /// DEADLINE: milliseconds until the segment is due at a player.
    pub deadline_ms: Option<u64>,
}

/// How an edge serves a session's request (GET_PARAMETER `cache`, logs, counters).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CacheCase {
    /// Every segment from the start point on is cached.
    FullHit,
    /// The segment it starts at is cached, not all that follow.
    PrefixHit,
    /// Not even the first segment is cached.
    Miss,
}

impl CacheCase {
    /// Its name on the wire (PROTOCOL.md, GET_PARAMETER `cache`).
    pub fn as_str(self) -> &'static str {
        match self {
            Self::FullHit => "full-hit",
            Self::PrefixHit => "prefix-hit",
            Self::Miss => "miss",
        }
    }
}

impl std::fmt::Display for CacheCase {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A segment arriving at a node: the chunks verified so far (PROTOCOL.md §8.6.1), then the
/// whole payload or why it failed. Written by the one fetch of the segment, read by every
/// session waiting for it ([`Growing`]), so a crowd streams from one fill as it lands.
#[derive(Debug)]
pub struct Filling {
    tx: watch::Sender<FillState>,
    started: Instant,
}

#[derive(Debug, Default)]
struct FillState {
    /// Verified chunks, in order.
    chunks: Vec<Bytes>,
    /// Bytes in `chunks`.
    verified: u64,
    /// When the last [`ARRIVALS_KEPT`] chunks were verified, and the bytes verified by then.
    arrivals: VecDeque<(Instant, u64)>,
    end: Option<Result<Bytes, SourceError>>,
}

/// Chunk arrivals a [`Filling`] remembers for its rate ([`rate_over`]).
const ARRIVALS_KEPT: usize = 256;

/// Bytes per second a fill that began at `started` sustained at `now`, from its `arrivals`
/// (when chunks were verified, and the bytes verified by then): the lesser of its rates over
/// the last two `window`s, or over the whole fill (request included) while it is younger
/// than two. `None` before the first chunk. A fill in its connection's start-up delivers
/// more each round trip, so its rate since the request lags what the link carries now (a
/// miss over an 8 Mbit/s × 300 ms origin link waited a round or two longer than its
/// sufficient portion asked); the lesser of two windows keeps a burst after a silence (an
/// origin that sends a segment at once after holding it) from reading as the link's rate.
pub fn rate_over(
    arrivals: &VecDeque<(Instant, u64)>,
    started: Instant,
    now: Instant,
    window: Duration,
) -> Option<f64> {
    let &(_, verified) = arrivals.back()?;
    let age = now.saturating_duration_since(started);
    if age <= window * 2 || window.is_zero() {
        return (!age.is_zero()).then(|| verified as f64 / age.as_secs_f64());
    }
    // Bytes verified by `t`: at the last arrival at or before it; nothing if none and no
    // arrival was dropped; unknown if dropped ones may have been before it.
    let at = |t: Instant| match arrivals.iter().rev().find(|(a, _)| *a <= t) {
        Some(&(_, v)) => Some(v),
        None if arrivals.len() < ARRIVALS_KEPT => Some(0),
        None => None,
    };
    let secs = window.as_secs_f64();
    match (at(now - window), at(now - window * 2)) {
        (Some(mid), Some(old)) => Some(((verified - mid) as f64).min((mid - old) as f64) / secs),
        // The arrivals kept span less than two windows: their own rate.
        _ => {
            let &(t, v) = arrivals.front()?;
            let span = now.saturating_duration_since(t);
            (!span.is_zero()).then(|| (verified - v) as f64 / span.as_secs_f64())
        }
    }
}

impl Filling {
    pub fn new() -> Arc<Self> {
        Arc::new(Self {
            tx: watch::Sender::new(FillState::default()),
            started: Instant::now(),
        })
    }

    /// Verified chunk `k` of the segment. An attempt after a failed one delivers the chunks
    /// again from 0: those already held are skipped, so readers see one clean sequence.
    pub fn chunk(&self, k: usize, data: &Bytes) {
        self.tx.send_if_modified(|s| {
            if s.end.is_some() || k != s.chunks.len() {
                return false;
            }
            s.verified += data.len() as u64;
            s.chunks.push(data.clone());
            if s.arrivals.len() == ARRIVALS_KEPT {
                s.arrivals.pop_front();
            }
            s.arrivals.push_back((Instant::now(), s.verified));
            true
        });
    }

    /// The fetch ended: the whole verified payload, or the error every reader gets.
    pub fn finish(&self, r: Result<Bytes, SourceError>) {
        self.tx.send_modify(|s| s.end = Some(r));
    }

    /// Bytes verified so far.
    pub fn verified(&self) -> u64 {
        self.tx.borrow().verified
    }

    /// Bytes per second sustained over the last two `window`s ([`rate_over`]); `None` before
    /// the first chunk.
    pub fn rate(&self, window: Duration) -> Option<f64> {
        rate_over(
            &self.tx.borrow().arrivals,
            self.started,
            Instant::now(),
            window,
        )
    }

    /// The fetch ended (either way).
    pub fn is_done(&self) -> bool {
        self.tx.borrow().end.is_some()
    }

    /// A reader from the first byte.
    pub fn reader(&self) -> Growing {
        Growing {
            rx: self.tx.subscribe(),
            next: 0,
            offset: 0,
        }
    }
}

/// One session's read of a [`Filling`]: the segment's bytes in order, verified, as they come.
#[derive(Debug)]
pub struct Growing {
    rx: watch::Receiver<FillState>,
    /// Next chunk to hand out.
    next: usize,
    /// Bytes handed out.
    offset: usize,
}

impl Growing {
    /// Waits for the whole payload.
    pub async fn whole(mut self) -> Result<Bytes, SourceError> {
        match self.rx.wait_for(|s| s.end.is_some()).await {
            Ok(s) => s
                .end
                .clone()
                .unwrap_or_else(|| Err(SourceError::Internal("fill vanished".into()))),
            Err(_) => Err(SourceError::Internal("fill abandoned".into())),
        }
    }

    /// The next verified bytes; `None` at the end of the segment.
    pub async fn next(&mut self) -> Result<Option<Bytes>, SourceError> {
        loop {
            {
                let s = self.rx.borrow_and_update();
                if let Some(c) = s.chunks.get(self.next) {
                    self.next += 1;
                    self.offset += c.len();
                    return Ok(Some(c.clone()));
                }
                match &s.end {
                    // A fetch that delivered no chunks (e.g. read from disk meanwhile): the
                    // rest of the whole payload.
                    Some(Ok(p)) if self.offset < p.len() => {
                        let rest = p.slice(self.offset..);
                        self.offset = p.len();
                        return Ok(Some(rest));
                    }
                    Some(Ok(_)) => return Ok(None),
                    Some(Err(e)) => return Err(e.clone()),
                    None => {}
                }
            }
            if self.rx.changed().await.is_err() {
                return Err(SourceError::Internal("fill abandoned".into()));
            }
        }
    }
}

/// A segment as a session gets it.
#[derive(Debug)]
pub enum Body {
    /// Held and verified: all of it.
    Whole(Bytes),
    /// Being fetched: verified chunks as they arrive (cut-through).
    Growing(Growing),
}

/// A provider of objects.
pub trait Source: Send + Sync + 'static {
    fn manifest(
        &self,
        name: &ObjectName,
    ) -> impl Future<Output = Result<Arc<Manifest>, SourceError>> + Send;

    /// The manifest for a player's request (DESCRIBE, SETUP): a source may start fetching
    /// what a play needs first along with it.
    fn manifest_for_play(
        &self,
        name: &ObjectName,
    ) -> impl Future<Output = Result<Arc<Manifest>, SourceError>> + Send {
        self.manifest(name)
    }

    /// Segment `index` of the object `manifest` describes, checksum verified.
    fn segment(
        &self,
        manifest: &Arc<Manifest>,
        index: usize,
    ) -> impl Future<Output = Result<Bytes, SourceError>> + Send;

    /// Segment `index` for a session: whole when held, else as it arrives, chunk by
    /// verified chunk, so the session starts sending before the segment is in.
    fn segment_body(
        &self,
        manifest: &Arc<Manifest>,
        index: usize,
    ) -> impl Future<Output = Result<Body, SourceError>> + Send {
        async move { self.segment(manifest, index).await.map(Body::Whole) }
    }

    /// Segment `index` for a segment-protocol request from `from` (another edge or helper).
    fn segment_for(
        &self,
        manifest: &Arc<Manifest>,
        index: usize,
        _from: Requester,
    ) -> impl Future<Output = Result<Bytes, SourceError>> + Send {
        self.segment(manifest, index)
    }

    /// A helper's advertisement arrived (PROTOCOL.md §8.8): the status to answer with.
    fn advertised(&self, _advert: &segue_wire::advert::Advert) -> Result<Status, SourceError> {
        Err(SourceError::Refused("this node takes no adverts".into()))
    }

    /// A session will play from segment `first`: a source may start fetching ahead. Returns
    /// how the request was served, for edges.
    fn will_play(&self, _manifest: &Arc<Manifest>, _first: usize) -> Option<CacheCase> {
        None
    }

    /// A session that called [`Source::will_play`] stopped (finished, paused, torn down or
    /// failed) having sent segments up to (not including) `reached`: a source may stop
    /// fetching ahead for it, and learn how far viewers watch.
    fn stopped(&self, _manifest: &Arc<Manifest>, _reached: usize) {}

    /// A session sent `bytes` of media to its player (counters).
    fn sent(&self, _bytes: u64) {}

    /// Another node offers segments of `manifest` (the manifest this source trusts, whose
    /// revision the offer matched): the range `(first, count)` it wants, `None` if it holds
    /// them all. Sources that take no pushes refuse.
    fn offered(
        &self,
        _manifest: &Arc<Manifest>,
        _offer: Offer,
    ) -> Result<Option<(usize, usize)>, SourceError> {
        Err(SourceError::Refused("this node takes no pushes".into()))
    }

    /// A pushed segment arrived: verify it against `manifest` and keep it.
    fn pushed(
        &self,
        _manifest: &Arc<Manifest>,
        _index: usize,
        _payload: Bytes,
    ) -> impl Future<Output = Result<(), SourceError>> + Send {
        std::future::ready(Err(SourceError::Refused(
            "this node takes no pushes".into(),
        )))
    }

    /// Resolves when enough of the object from `first` is available that playback started now
    /// will not run dry (an edge's "sufficient portion" on a miss). Origins are always ready.
    fn ready(
        &self,
        _manifest: &Arc<Manifest>,
        _first: usize,
    ) -> impl Future<Output = Result<(), SourceError>> + Send {
        std::future::ready(Ok(()))
    }
}

/// SHA-256 of `payload` equals the manifest's checksum of segment `index`.
pub fn checksum_ok(manifest: &Manifest, index: usize, payload: &[u8]) -> bool {
    manifest.segments.get(index).is_some_and(|s| {
        s.size == payload.len() as u64 && digest(&SHA256, payload).as_ref() == s.checksum
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: Duration = Duration::from_millis(1);

    /// A fill in start-up: 12 kB in its first round trip (300 ms after a 300 ms first
    /// byte), then 24, 48, 96 kB, chunk by chunk.
    fn start_up(t0: Instant) -> VecDeque<(Instant, u64)> {
        let mut a = VecDeque::new();
        let mut verified = 0;
        for (round, bytes) in [12_000u64, 24_000, 48_000, 96_000].into_iter().enumerate() {
            let begin = t0 + 300 * MS * (round as u32 + 1);
            for k in 0..4u32 {
                verified += bytes / 4;
                a.push_back((begin + 50 * MS * k, verified));
            }
        }
        a
    }

    #[test]
    fn the_rate_follows_the_last_windows_not_the_fill_since_its_request() {
        let t0 = Instant::now();
        let a = start_up(t0);
        let now = t0 + 1350 * MS;
        // 180 kB since the request: 133 kB/s; the last two round trips (750-1350 ms)
        // brought the 48 and 96 kB rounds: the lesser, 160 kB/s.
        let whole = rate_over(&a, t0, now, Duration::from_secs(10)).unwrap();
        assert!((whole - 180_000.0 / 1.35).abs() < 1.0, "{whole}");
        let recent = rate_over(&a, t0, now, 300 * MS).unwrap();
        assert!((recent - 48_000.0 / 0.3).abs() < 1.0, "{recent}");
    }

    #[test]
    fn a_burst_after_a_silence_is_not_the_links_rate() {
        let t0 = Instant::now();
        // A 55 kB segment held back 3 s, then sent at once.
        let a: VecDeque<_> = (1..=4u32)
            .map(|k| (t0 + 3000 * MS + k * MS, u64::from(k) * 13_750))
            .collect();
        assert_eq!(rate_over(&a, t0, t0 + 3100 * MS, 300 * MS), Some(0.0));
    }

    #[test]
    fn a_young_fill_is_measured_from_its_request_and_a_silent_one_reads_zero() {
        let t0 = Instant::now();
        assert_eq!(
            rate_over(&VecDeque::new(), t0, t0 + 500 * MS, 300 * MS),
            None
        );
        let a = VecDeque::from([(t0 + 250 * MS, 10_000)]);
        let r = rate_over(&a, t0, t0 + 500 * MS, 300 * MS).unwrap();
        assert!((r - 20_000.0).abs() < 1.0, "{r}");
        // Nothing since 250 ms: over the last 300 ms at 900 ms, nothing came.
        assert_eq!(rate_over(&a, t0, t0 + 900 * MS, 300 * MS), Some(0.0));
    }

    #[test]
    fn arrivals_beyond_those_kept_measure_from_the_oldest_kept() {
        let t0 = Instant::now();
        // 256 chunks of 1 kB, one per ms from 1 s (more came before): two 300 ms windows
        // reach back before the oldest kept: measured from it, over the 255 ms since (1 MB/s).
        let a: VecDeque<_> = (0..ARRIVALS_KEPT as u32)
            .map(|k| (t0 + 1000 * MS + k * MS, 1_000_000 + u64::from(k + 1) * 1000))
            .collect();
        let now = t0 + 1000 * MS + (ARRIVALS_KEPT as u32 - 1) * MS;
        let r = rate_over(&a, t0, now, 300 * MS).unwrap();
        assert!((r - 1_000_000.0).abs() < 5_000.0, "{r}");
    }
}
