//! The edge's disk cache: manifests and segments per object, under a capacity bound.
//!
//! Layout: `<cache>/objects/<name>/.segue/{manifest,seg-NNNNNN}`. Writes go to a temporary file
//! and are renamed into place, so a partially written segment is never visible. Every read is
//! checked against the manifest's SHA-256; a corrupt segment is deleted and reported missing.
//! When a write would exceed the capacity, the least valuable segments are evicted
//! (`crate::placement`): value follows each object's decayed request count and how far its
//! viewers watch, and the required prefix, whose length follows the measured origin link
//! (never shorter than the configured prefix), carries a bonus. So suffix segments of cold
//! objects go first and prefixes of hot objects last. An object counts as requested once
//! when it is stored (objects found on disk at start: once at start), so new and
//! pre-positioned objects are not the first to go; ties go least recently used first.
//!
//! One [`Store`] under one lock, its concerns in their own files: this file is the index
//! (which segments of which revision are held, the bytes used), `storage` the files on disk,
//! `usage` the measured usage and its persistence, `prefix` the prefix each object keeps,
//! `evict` the choice of victims.

use std::collections::HashMap;
use std::fs;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use segue_wire::ObjectName;
use segue_wire::segment::Manifest;

use crate::clock::unix_now;
use crate::placement::link::{LinkEstimate, share};
use crate::placement::popularity::Popularity;
use crate::placement::watch::WatchModel;

/// Half-life of request counts.
const POPULARITY_HALF_LIFE_S: f64 = 3600.0;
/// Most requests one hint counts for (a typo must not pin an object forever).
pub const MAX_ANTICIPATED: u64 = 10_000;
#[derive(Debug)]
struct Entry {
    manifest: Arc<Manifest>,
    have: Vec<bool>,
    last_used: u64,
    /// When it was stored (seconds since the store opened): an object counts as requested
    /// once then, so a new or pre-positioned object is not the first to go.
    added_s: f64,
}

#[derive(Debug)]
struct State {
    objects: HashMap<ObjectName, Entry>,
    used: u64,
    tick: u64,
    evictions: u64,
    popularity: Popularity<ObjectName>,
    watch: WatchModel,
    link: Option<LinkEstimate>,
    /// Objects whose suffix is fetched at once, as a session starts (smoothed; at least 1).
    concurrency: f64,
    /// The disk said it was full (ENOSPC) holding this many bytes, at that time: the
    /// capacity in effect until [`DISK_FULL_FOR`] later.
    disk_full: Option<(u64, std::time::Instant)>,
    /// Objects warmed (by an operator's `--warm`, the admin API or upkeep) whatever their
    /// requests: their prefixes are kept up like played ones.
    warmed: std::collections::HashSet<ObjectName>,
}

impl State {
    /// The link as one object's fetch sees it (`placement::link::share`).
    fn effective_link(&self) -> Option<LinkEstimate> {
        self.link.map(|l| share(l, self.concurrency))
    }
}

impl Default for State {
    fn default() -> Self {
        Self {
            objects: HashMap::new(),
            used: 0,
            tick: 0,
            evictions: 0,
            disk_full: None,
            warmed: Default::default(),
            popularity: Popularity::new(POPULARITY_HALF_LIFE_S),
            watch: WatchModel::new(20, 1.0),
            link: None,
            concurrency: 1.0,
        }
    }
}

/// One cached object, for status and the admin API.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct ObjectStatus {
    pub object: String,
    pub revision: u64,
    pub segments: usize,
    /// Segments held, as index ranges.
    pub held: Vec<(usize, usize)>,
    pub held_bytes: u64,
    /// The prefix kept (seconds of media, and segments), and whether all of it is held.
    pub prefix_s: f64,
    pub prefix_segments: usize,
    pub prefix_complete: bool,
    /// Measured requests per second (decayed).
    pub request_rate: f64,
}

impl ObjectStatus {
    /// Mean prefix kept over `objects`, seconds of media (0 for none).
    pub fn mean_prefix_s(objects: &[ObjectStatus]) -> f64 {
        if objects.is_empty() {
            return 0.0;
        }
        objects.iter().map(|x| x.prefix_s).sum::<f64>() / objects.len() as f64
    }
}

/// What a store write did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stored {
    Written,
    /// No room even after eviction (or the disk refused): served from memory only.
    NotStored,
}

/// How long a full disk (ENOSPC) lowers the capacity to what was held then; after it the
/// configured capacity is tried again (and lowered again if the disk is still full).
const DISK_FULL_FOR: std::time::Duration = std::time::Duration::from_secs(600);

/// The cache.
#[derive(Debug)]
pub struct Store {
    dir: PathBuf,
    capacity: u64,
    prefix_us: u64,
    state: Mutex<State>,
    /// Where measured usage (popularity, watch model) is saved across restarts.
    usage_path: PathBuf,
    /// Failed cache writes (disk full, directory unwritable): the edge serves what it could
    /// not write from memory and passes the rest through.
    disk: DiskHealth,
}

impl Store {
    /// Opens (and re-indexes) the cache in `dir`. Segments whose size disagrees with the
    /// manifest are removed; checksums are verified on read.
    pub fn open(dir: &Path, capacity: u64, prefix_us: u64) -> std::io::Result<Self> {
        let objects = dir.join("objects");
        fs::create_dir_all(&objects)?;
        let store = Store {
            dir: objects.clone(),
            capacity,
            prefix_us,
            state: Mutex::default(),
            usage_path: dir.join("usage.json"),
            disk: DiskHealth::default(),
        };
        let mut state = State::default();
        store.load_usage(&mut state);
        let mut stack = vec![objects.clone()];
        while let Some(d) = stack.pop() {
            for e in fs::read_dir(&d)? {
                let e = e?;
                let p = e.path();
                if !e.file_type()?.is_dir() {
                    continue;
                }
                if p.file_name().is_some_and(|n| n == ".segue") {
                    store.index_object(&p, &mut state);
                } else if !p
                    .file_name()
                    .and_then(|n| n.to_str())
                    .is_some_and(|n| n.starts_with('.'))
                {
                    stack.push(p);
                }
            }
        }
        // Stale temporaries of a crash are simply ignored: they never had a final name.
        *store.lock() = state;
        Ok(store)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        // A panic while holding the lock leaves consistent data (plain fields): keep going.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Every cached object, by name.
    pub fn objects(&self) -> Vec<ObjectStatus> {
        let t = unix_now();
        let st = self.lock();
        let mut v: Vec<ObjectStatus> = st
            .objects
            .iter()
            .map(|(name, e)| {
                let m = &e.manifest;
                let prefix_us = Self::prefix_us_with(self.prefix_us, st.effective_link(), m);
                let prefix_segments = Self::prefix_count(prefix_us, m);
                let mut held = Vec::new();
                let mut i = 0;
                while i < e.have.len() {
                    if e.have[i] {
                        let from = i;
                        while i < e.have.len() && e.have[i] {
                            i += 1;
                        }
                        held.push((from, i));
                    } else {
                        i += 1;
                    }
                }
                ObjectStatus {
                    object: name.to_string(),
                    revision: m.revision,
                    segments: m.segments.len(),
                    held,
                    held_bytes: m
                        .segments
                        .iter()
                        .zip(&e.have)
                        .filter(|(_, h)| **h)
                        .map(|(s, _)| s.size)
                        .sum(),
                    prefix_s: prefix_us.min(m.duration_us) as f64 / 1e6,
                    prefix_segments,
                    prefix_complete: e.have.iter().take(prefix_segments).all(|h| *h),
                    request_rate: st.popularity.rate(name, t),
                }
            })
            .collect();
        v.sort_by(|a, b| a.object.cmp(&b.object));
        v
    }

    /// Mean prefix kept per cached object, seconds of media (0 with nothing cached).
    pub fn mean_prefix_s(&self) -> f64 {
        ObjectStatus::mean_prefix_s(&self.objects())
    }

    /// Every segment held, per object: what a helper advertises.
    pub fn holdings(&self) -> crate::cooperation::advertise::Holdings {
        let st = self.lock();
        st.objects
            .iter()
            .filter(|(_, e)| e.have.iter().any(|h| *h))
            .map(|(name, e)| {
                let held = e
                    .have
                    .iter()
                    .enumerate()
                    .filter(|(_, h)| **h)
                    .map(|(i, _)| i as u64);
                (
                    name.clone(),
                    (
                        e.manifest.revision,
                        segue_wire::advert::Ranges::from_indices(held),
                    ),
                )
            })
            .collect()
    }

    /// The cached manifest of `name`, marking it used.
    pub fn manifest(&self, name: &ObjectName) -> Option<Arc<Manifest>> {
        let mut st = self.lock();
        st.tick += 1;
        let tick = st.tick;
        st.objects.get_mut(name).map(|e| {
            e.last_used = tick;
            e.manifest.clone()
        })
    }

    /// Stores a manifest. A new revision replaces the old one and its segments.
    pub fn put_manifest(&self, m: &Arc<Manifest>) -> std::io::Result<()> {
        let dir = self.dir_of(&m.object);
        {
            let mut st = self.lock();
            if let Some(old) = st.objects.get(&m.object) {
                if old.manifest.revision == m.revision {
                    return Ok(());
                }
                Self::forget_object(&mut st, &m.object);
                let _ = fs::remove_dir_all(&dir);
            }
            st.tick += 1;
            let tick = st.tick;
            let added_s = unix_now();
            st.objects.insert(
                m.object.clone(),
                Entry {
                    manifest: m.clone(),
                    have: vec![false; m.segments.len()],
                    last_used: tick,
                    added_s,
                },
            );
        }
        let tmp = dir.join("manifest.tmp");
        let bytes = m.encode();
        let write = || {
            let r = fs::create_dir_all(&dir)
                .and_then(|()| fs::write(&tmp, &bytes))
                .and_then(|()| fs::rename(&tmp, dir.join("manifest")));
            if r.is_err() {
                let _ = fs::remove_file(&tmp);
            }
            r
        };
        let mut r = write();
        // A full disk: the capacity drops to what is held and segments are evicted to make
        // room for the manifest, as for a segment (`put`); then one more try.
        if let Err(e) = &r
            && e.kind() == std::io::ErrorKind::StorageFull
        {
            self.disk.record("manifest", &r);
            let victims = {
                let mut st = self.lock();
                st.disk_full = Some((st.used, std::time::Instant::now()));
                let need = bytes.len() as u64;
                self.evict_for(&mut st, need, &m.object, usize::MAX)
                    .unwrap_or_default()
            };
            for (name, j) in victims {
                let _ = fs::remove_file(storage::seg_path(&self.dir_of(&name), j));
            }
            r = write();
        }
        self.disk.record("manifest", &r);
        r
    }

    /// Forgets an object entirely (its manifest went stale): the next request refetches it.
    pub fn drop_object(&self, name: &ObjectName) {
        Self::forget_object(&mut self.lock(), name);
        let _ = fs::remove_dir_all(self.dir_of(name));
    }

    /// Removes an object from the index and releases the bytes of its cached segments.
    fn forget_object(st: &mut State, name: &ObjectName) {
        st.warmed.remove(name);
        if let Some(e) = st.objects.remove(name) {
            let freed: u64 = e
                .manifest
                .segments
                .iter()
                .zip(&e.have)
                .filter(|(_, h)| **h)
                .map(|(s, _)| s.size)
                .sum();
            st.used -= freed;
        }
    }

    pub fn has(&self, m: &Manifest, i: usize) -> bool {
        let st = self.lock();
        st.objects.get(&m.object).is_some_and(|e| {
            e.manifest.revision == m.revision && e.have.get(i).copied().unwrap_or(false)
        })
    }

    /// Whether every segment of the cached object `name` is held.
    pub fn complete(&self, name: &ObjectName) -> bool {
        self.lock()
            .objects
            .get(name)
            .is_some_and(|e| e.have.iter().all(|h| *h))
    }

    /// How many of the segments from `first` on are cached.
    pub fn count_from(&self, m: &Manifest, first: usize) -> usize {
        let st = self.lock();
        st.objects
            .get(&m.object)
            .map_or(0, |e| e.have.iter().skip(first).filter(|h| **h).count())
    }

    fn forget(&self, m: &Manifest, i: usize) {
        let mut st = self.lock();
        if let Some(e) = st.objects.get_mut(&m.object)
            && e.have.get(i).copied().unwrap_or(false)
        {
            e.have[i] = false;
            st.used -= m.segments[i].size;
        }
    }

    /// Bytes of cached segments.
    pub fn used(&self) -> u64 {
        self.lock().used
    }

    pub fn evictions(&self) -> u64 {
        self.lock().evictions
    }

    /// The configured capacity (`--cache-size`).
    pub fn capacity(&self) -> u64 {
        self.capacity
    }

    /// The capacity in effect: the configured one, or less while the disk is full.
    pub fn effective_capacity(&self) -> u64 {
        self.cap(&self.lock())
    }

    fn cap(&self, st: &State) -> u64 {
        match st.disk_full {
            Some((held, at)) if at.elapsed() < DISK_FULL_FOR => held.min(self.capacity),
            _ => self.capacity,
        }
    }
}

mod evict;
mod prefix;
mod storage;
mod usage;

use storage::DiskHealth;

#[cfg(test)]
mod tests;
