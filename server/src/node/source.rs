//! Where a node gets manifests and segment payloads: the origin from its library, an edge
//! from its cache and upstream. Sessions and the segment responder only see this trait.

use std::future::Future;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock};

use bytes::Bytes;
use ring::digest::{SHA256, digest};
use segue_wire::ObjectName;
use segue_wire::segment::{Manifest, Status};

use crate::origin::library::Library;

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

/// A provider of objects.
pub trait Source: Send + Sync + 'static {
    fn manifest(
        &self,
        name: &ObjectName,
    ) -> impl Future<Output = Result<Arc<Manifest>, SourceError>> + Send;

    /// Segment `index` of the object `manifest` describes, checksum verified.
    fn segment(
        &self,
        manifest: &Arc<Manifest>,
        index: usize,
    ) -> impl Future<Output = Result<Bytes, SourceError>> + Send;

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

/// What an origin has served (its metrics).
#[derive(Debug, Default)]
pub struct OriginStats {
    /// Player sessions started on the origin itself.
    pub sessions: AtomicU64,
    /// Segments read for sessions, exchanges and pushes.
    pub segments: AtomicU64,
    pub segment_bytes: AtomicU64,
    /// Media bytes sessions sent to players.
    pub served_bytes: AtomicU64,
}

/// The origin's source: its library on local disk. Clones share the library (which
/// [`LibrarySource::reload`] replaces) and the counters.
#[derive(Debug, Clone)]
pub struct LibrarySource {
    library: Arc<RwLock<Arc<Library>>>,
    pub stats: Arc<OriginStats>,
}

impl LibrarySource {
    pub fn new(library: Arc<Library>) -> Self {
        Self {
            library: Arc::new(RwLock::new(library)),
            stats: Arc::default(),
        }
    }

    /// The library now.
    pub fn library(&self) -> Arc<Library> {
        self.library
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// Serves `library` from now on (sessions already playing keep their objects' files
    /// as long as they exist).
    pub fn reload(&self, library: Arc<Library>) {
        *self.library.write().unwrap_or_else(|e| e.into_inner()) = library;
    }
}

impl Source for LibrarySource {
    async fn manifest(&self, name: &ObjectName) -> Result<Arc<Manifest>, SourceError> {
        let lib = self.library();
        match lib.get(name) {
            Some(o) => Ok(o.manifest.clone()),
            None => Err(SourceError::NotFound(
                match lib.failures.get(name.as_str()) {
                    Some(why) => format!("{name} (cannot be ingested: {why})"),
                    None => name.to_string(),
                },
            )),
        }
    }

    async fn segment(&self, manifest: &Arc<Manifest>, index: usize) -> Result<Bytes, SourceError> {
        let obj = self
            .library()
            .get(&manifest.object)
            .ok_or_else(|| SourceError::NotFound(manifest.object.to_string()))?;
        if obj.manifest.revision != manifest.revision {
            return Err(SourceError::Stale(manifest.object.to_string()));
        }
        let payload = obj.read_segment(index).await.map_err(|e| {
            SourceError::Internal(format!("segment {index} of {}: {e}", manifest.object))
        })?;
        // A segment corrupted on disk is never served.
        if !checksum_ok(&obj.manifest, index, &payload) {
            return Err(SourceError::Internal(format!(
                "segment {index} of {} fails its checksum",
                manifest.object
            )));
        }
        self.stats.segments.fetch_add(1, Ordering::Relaxed);
        self.stats
            .segment_bytes
            .fetch_add(payload.len() as u64, Ordering::Relaxed);
        Ok(payload)
    }

    fn will_play(&self, _manifest: &Arc<Manifest>, _first: usize) -> Option<CacheCase> {
        self.stats.sessions.fetch_add(1, Ordering::Relaxed);
        None
    }

    fn sent(&self, bytes: u64) {
        self.stats.served_bytes.fetch_add(bytes, Ordering::Relaxed);
    }
}
