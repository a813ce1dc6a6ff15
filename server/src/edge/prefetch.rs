//! Reading ahead of the sessions: the segments after what a session plays, the prefix of an
//! object warmed or anticipated, fetched in the background under the scheduler.

use std::sync::Arc;
use std::time::Duration;

use segue_wire::ObjectName;
use segue_wire::segment::Manifest;
use tokio::time::Instant;

use super::*;

impl EdgeSource {
    /// Fetches an object's manifest and prefix into the cache (pre-positioning).
    pub async fn warm(&self, name: &ObjectName) -> Result<usize, SourceError> {
        let m = self.manifest(name).await?;
        self.0.store.warmed(name);
        let n = self.0.store.prefix_len(&m);
        let due = Instant::now() + BACKGROUND;
        let via = Via {
            keep: true,
            ..Via::OWN
        };
        let fills: Vec<_> = (0..n)
            .map(|i| self.fill_via(m.clone(), i, due, via))
            .collect();
        for (i, f) in fills.into_iter().enumerate() {
            let b = f.await?;
            // A segment found in the memory tier is written through: a warmed prefix is on
            // disk, whatever tier it came from.
            if !self.0.store.has(&m, i) {
                self.0.store.put(&m, i, &b).await;
            }
        }
        Ok(n)
    }

    /// Drops object `name` from every tier this edge keeps: memory, disk and index, and
    /// the segment 0 request a play sent ahead (the node's packet cache is dropped by the
    /// caller: [`crate::node::packets::PacketCache::remove_object`]). A fill in flight for it
    /// still completes.
    pub fn purge(&self, name: &ObjectName) {
        self.0.hot.remove_object(name);
        self.0.store.drop_object(name);
        lock(&self.0.early).remove(name);
        lock(&self.0.not_found).remove(name);
    }

    /// Acts on a hint: its viewers count as requests, and the prefix is pulled now.
    pub async fn anticipate(&self, hint: &crate::placement::hint::Hint) -> Result<String, String> {
        let name = ObjectName::new(&hint.object, 1024).map_err(|e| e.to_string())?;
        self.0.store.anticipate(&name, hint.viewers);
        let n = self.warm(&name).await.map_err(|e| e.to_string())?;
        Ok(format!("{n} prefix segments cached"))
    }

    /// Whether a fetched segment goes to disk: always on an edge on its own; on a helper,
    /// when collective storage gives it to this one ([`Helpers::keeps`]).
    pub(super) fn keeps(&self, m: &Manifest, i: usize) -> bool {
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
    pub(super) fn prefetch(&self, m: Arc<Manifest>, first: usize) {
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

    /// Contiguous bytes available from segment `first` on: held on disk or in the memory
    /// tier (where a segment fetched and not kept, as a helper's share, lives), verified.
    pub(super) fn contiguous(&self, m: &Manifest, first: usize) -> (u64, bool) {
        let mut bytes = 0;
        for i in first..m.segments.len() {
            if !self.0.store.has(m, i) && self.0.hot.get(m, i).is_none() {
                // And what the fill in flight has verified of the next one.
                let key = (m.object.clone(), m.revision, i);
                let partial = lock(&self.0.fills)
                    .get(&key)
                    .map_or(0, |p| p.body.verified());
                return (bytes + partial, false);
            }
            bytes += m.segments[i].size;
        }
        (bytes, true)
    }
}
