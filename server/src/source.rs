//! Where a node gets manifests and segment payloads: the origin from its library, an edge
//! from its cache and upstream. Sessions and the segment responder only see this trait.

use std::future::Future;
use std::sync::Arc;

use bytes::Bytes;
use ring::digest::{SHA256, digest};
use segue_wire::ObjectName;
use segue_wire::segment::{Manifest, Status};

use crate::library::Library;

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
    #[error("{0}")]
    Internal(String),
}

impl SourceError {
    /// The RTSP status a control request failing with this error gets.
    pub fn rtsp_status(&self) -> u16 {
        use segue_wire::control::status;
        match self {
            SourceError::NotFound(_) => status::NOT_FOUND,
            SourceError::Unavailable(_) | SourceError::Stale(_) => status::BAD_GATEWAY,
            SourceError::Internal(_) => status::INTERNAL_SERVER_ERROR,
        }
    }

    /// The segment-protocol status.
    pub fn segment_status(&self) -> Status {
        match self {
            SourceError::NotFound(_) => Status::NotFound,
            SourceError::Unavailable(_) => Status::UpstreamUnavailable,
            SourceError::Stale(_) => Status::StaleRevision,
            SourceError::Internal(_) => Status::Internal,
        }
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

    /// A session will play from segment `first`: a source may start fetching ahead. Returns
    /// how the request was served, for edges: `full-hit`, `prefix-hit` or `miss`.
    fn will_play(&self, _manifest: &Arc<Manifest>, _first: usize) -> Option<&'static str> {
        None
    }

    /// A session that called [`Source::will_play`] stopped (finished, paused, torn down or
    /// failed) having sent segments up to (not including) `reached`: a source may stop
    /// fetching ahead for it, and learn how far viewers watch.
    fn stopped(&self, _manifest: &Arc<Manifest>, _reached: usize) {}

    /// A session sent `bytes` of media to its player (counters).
    fn sent(&self, _bytes: u64) {}

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

/// The origin's source: its library on local disk.
#[derive(Debug, Clone)]
pub struct LibrarySource(pub Arc<Library>);

impl Source for LibrarySource {
    async fn manifest(&self, name: &ObjectName) -> Result<Arc<Manifest>, SourceError> {
        match self.0.get(name) {
            Some(o) => Ok(o.manifest.clone()),
            None => Err(SourceError::NotFound(
                match self.0.failures.get(name.as_str()) {
                    Some(why) => format!("{name} (cannot be ingested: {why})"),
                    None => name.to_string(),
                },
            )),
        }
    }

    async fn segment(&self, manifest: &Arc<Manifest>, index: usize) -> Result<Bytes, SourceError> {
        let obj = self
            .0
            .get(&manifest.object)
            .ok_or_else(|| SourceError::NotFound(manifest.object.to_string()))?;
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
        Ok(payload)
    }
}
