//! The origin's [`Source`]: its library on local disk, and what it served.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock};

use bytes::Bytes;
use segue_wire::ObjectName;
use segue_wire::segment::Manifest;

use crate::node::source::{CacheCase, Source, SourceError, checksum_ok};
use crate::origin::library::Library;

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
            // Why an object could not be ingested names files of the origin's disk: that
            // goes to the origin's log (at ingest), the player gets the object and the class.
            None => Err(SourceError::NotFound(
                if lib.failures.contains_key(name.as_str()) {
                    format!("{name} (its source could not be ingested; the origin's log says why)")
                } else {
                    name.to_string()
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
