//! The cache on disk: where an object's manifest and segments live, how they are written
//! (temporary file, then rename) and read (verified against the manifest), re-indexing at
//! start, and whether the directory takes writes.

use std::fs;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use bytes::Bytes;
use segue_wire::segment::Manifest;
use segue_wire::{Limits, ObjectName};

use super::{Entry, State, Store, Stored};
use crate::clock::unix_now;
use crate::layout::object_dir;
use crate::node::source::checksum_ok;

/// Whether the cache directory takes writes, as the last write found.
#[derive(Debug, Default)]
pub(super) struct DiskHealth {
    pub(super) write_errors: std::sync::atomic::AtomicU64,
    pub(super) failing: std::sync::atomic::AtomicBool,
}

impl DiskHealth {
    /// Records a write's outcome; logs the change between writable and failing once.
    pub(super) fn record(&self, what: &str, r: &std::io::Result<()>) {
        use std::sync::atomic::Ordering::Relaxed;
        match r {
            Ok(()) => {
                if self.failing.swap(false, Relaxed) {
                    tracing::info!("cache writable again: caching resumed");
                }
            }
            Err(e) => {
                self.write_errors.fetch_add(1, Relaxed);
                if !self.failing.swap(true, Relaxed) {
                    tracing::error!(
                        "cannot write the cache ({what}: {e}): passing through, serving from memory and upstream until writes succeed again"
                    );
                } else {
                    tracing::debug!("cache write failed ({what}): {e}");
                }
            }
        }
    }
}

/// What [`Store::reserve`] found.
enum Reserved {
    Already,
    No,
    Room(Vec<(ObjectName, usize)>),
}

pub(super) fn seg_path(dir: &Path, i: usize) -> PathBuf {
    dir.join(format!("seg-{i:06}"))
}

impl Store {
    pub(super) fn index_object(&self, dir: &Path, state: &mut State) {
        let Ok(bytes) = fs::read(dir.join("manifest")) else {
            return;
        };
        let Ok(m) = Manifest::decode(&bytes, &Limits::default()) else {
            tracing::warn!(dir = %dir.display(), "dropping cached object with unreadable manifest");
            let _ = fs::remove_dir_all(dir);
            return;
        };
        let mut have = vec![false; m.segments.len()];
        for (i, s) in m.segments.iter().enumerate() {
            let p = seg_path(dir, i);
            match fs::metadata(&p) {
                Ok(md) if md.len() == s.size => {
                    have[i] = true;
                    state.used += s.size;
                }
                Ok(_) => {
                    let _ = fs::remove_file(&p);
                }
                Err(_) => {}
            }
        }
        state.objects.insert(
            m.object.clone(),
            Entry {
                manifest: Arc::new(m),
                have,
                last_used: 0,
                // Found at start: counts as requested once now.
                added_s: unix_now(),
            },
        );
    }

    pub(super) fn dir_of(&self, name: &ObjectName) -> PathBuf {
        object_dir(&self.dir, name)
    }

    /// Reads segment `i`, verified. A corrupt segment is deleted and `None` returned.
    pub async fn read(&self, m: &Arc<Manifest>, i: usize) -> Option<Bytes> {
        if !self.has(m, i) {
            return None;
        }
        let path = seg_path(&self.dir_of(&m.object), i);
        let bytes = tokio::fs::read(&path).await.ok().map(Bytes::from);
        match bytes {
            Some(b) if checksum_ok(m, i, &b) => {
                let mut st = self.lock();
                st.tick += 1;
                let tick = st.tick;
                if let Some(e) = st.objects.get_mut(&m.object) {
                    e.last_used = tick;
                }
                Some(b)
            }
            _ => {
                tracing::warn!(object = %m.object, segment = i, "cached segment missing or corrupt: dropped");
                self.forget(m, i);
                let _ = tokio::fs::remove_file(&path).await;
                None
            }
        }
    }

    /// Writes segment `i` (already verified by the caller), evicting if needed.
    pub async fn put(&self, m: &Arc<Manifest>, i: usize, payload: &Bytes) -> Stored {
        // A full disk (ENOSPC) is the capacity reached: the capacity in effect drops to what
        // is held, room is made by eviction as for any write, and the write tried again once.
        for attempt in 0..2 {
            let victims = match self.reserve(m, i, payload.len() as u64) {
                Reserved::Already => return Stored::Written,
                Reserved::No => return Stored::NotStored,
                Reserved::Room(v) => v,
            };
            for (name, j) in victims {
                let _ = tokio::fs::remove_file(seg_path(&self.dir_of(&name), j)).await;
            }
            let dir = self.dir_of(&m.object);
            let path = seg_path(&dir, i);
            let tmp = path.with_extension("tmp");
            let write = async {
                tokio::fs::create_dir_all(&dir).await?;
                tokio::fs::write(&tmp, payload).await?;
                tokio::fs::rename(&tmp, &path).await
            };
            let r = write.await;
            self.disk.record("segment", &r);
            let Err(e) = r else {
                return Stored::Written;
            };
            let _ = tokio::fs::remove_file(&tmp).await;
            self.forget(m, i);
            if e.kind() != std::io::ErrorKind::StorageFull || attempt == 1 {
                break;
            }
            let mut st = self.lock();
            let held = st.used;
            tracing::warn!(
                held,
                capacity = self.capacity,
                "the cache's disk is full: capacity lowered to what is held, evicting to make room"
            );
            st.disk_full = Some((held, std::time::Instant::now()));
        }
        Stored::NotStored
    }

    /// Makes room for segment `i` of `m` (`size` bytes) in the index: the segments to evict
    /// for it, the segment marked held and its bytes counted (released by `forget` if the
    /// write fails).
    fn reserve(&self, m: &Arc<Manifest>, i: usize, size: u64) -> Reserved {
        let mut st = self.lock();
        match st.objects.get(&m.object) {
            Some(e) if e.manifest.revision == m.revision => {
                if e.have.get(i).copied().unwrap_or(true) {
                    return Reserved::Already; // already there (or out of range)
                }
            }
            _ => return Reserved::No, // manifest not stored: nothing to hang it on
        }
        let Some(victims) = self.evict_for(&mut st, size, &m.object, i) else {
            return Reserved::No;
        };
        st.used += size;
        if let Some(e) = st.objects.get_mut(&m.object) {
            e.have[i] = true;
        }
        Reserved::Room(victims)
    }

    /// Cache writes (segments, manifests) that failed.
    pub fn write_errors(&self) -> u64 {
        self.disk
            .write_errors
            .load(std::sync::atomic::Ordering::Relaxed)
    }

    /// Whether the last cache write failed (the edge is passing through).
    pub fn write_failing(&self) -> bool {
        self.disk.failing.load(std::sync::atomic::Ordering::Relaxed)
    }
}
