//! What an edge counts (sessions by cache case, bytes by source, fills), as the admin API,
//! the stats file and `segue edge status` show it.

use std::sync::atomic::{AtomicU64, Ordering};

use super::*;

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
    /// Segments 0 fetched in the same round trip as their manifest (a play's miss).
    pub pipelined: AtomicU64,
    /// Manifest requests answered "not found" from memory (the origin said so recently).
    pub not_found_cached: AtomicU64,
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
    /// Segments 0 fetched along with their manifest, in one origin round trip.
    #[serde(default)]
    pub segments_pipelined: u64,
    /// Names answered "not found" without asking the origin (it said so within 10 s).
    #[serde(default)]
    pub not_found_cached: u64,
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

impl EdgeSource {
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
            segments_pipelined: get(&s.pipelined),
            not_found_cached: get(&s.not_found_cached),
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
}
