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

use std::collections::HashMap;
use std::fs;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use segue_wire::segment::Manifest;
use segue_wire::{Limits, ObjectName};

use crate::clock::unix_now;
use crate::node::source::checksum_ok;
use crate::origin::library::object_dir;
use crate::placement::link::{LinkEstimate, required_prefix_s, share};
use crate::placement::popularity::Popularity;
use crate::placement::value::segment_value;
use crate::placement::watch::WatchModel;

/// Half-life of request counts.
const POPULARITY_HALF_LIFE_S: f64 = 3600.0;
/// An immediate start is worth this many segments of byte hits (docs/PLACEMENT.md).
const START_BONUS: f64 = 30.0;
/// Most requests one hint counts for (a typo must not pin an object forever).
pub const MAX_ANTICIPATED: u64 = 10_000;
/// Margin added to the link-derived prefix, seconds.
const PREFIX_MARGIN_S: f64 = 1.0;

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

/// Whether the cache directory takes writes, as the last write found.
#[derive(Debug, Default)]
struct DiskHealth {
    write_errors: std::sync::atomic::AtomicU64,
    failing: std::sync::atomic::AtomicBool,
}

impl DiskHealth {
    /// Records a write's outcome; logs the change between writable and failing once.
    fn record(&self, what: &str, r: &std::io::Result<()>) {
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

/// Measured usage as saved in `<cache>/usage.json`.
#[derive(Debug, serde::Serialize, serde::Deserialize)]
struct Usage {
    version: u32,
    half_life_s: f64,
    /// Object → log2(count · 2^(t/h)), t in unix seconds.
    popularity: HashMap<String, f64>,
    watch: Vec<f64>,
    #[serde(default = "one")]
    concurrency: f64,
}

fn one() -> f64 {
    1.0
}

const USAGE_VERSION: u32 = 1;

fn seg_path(dir: &Path, i: usize) -> PathBuf {
    dir.join(format!("seg-{i:06}"))
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

    fn index_object(&self, dir: &Path, state: &mut State) {
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

    /// Restores measured usage saved by [`Store::save_usage`]; an unreadable file is
    /// ignored (usage is relearned), never fatal.
    fn load_usage(&self, state: &mut State) {
        let Ok(text) = fs::read(&self.usage_path) else {
            return;
        };
        let u: Usage = match serde_json::from_slice(&text) {
            Ok(u) => u,
            Err(e) => {
                tracing::warn!(file = %self.usage_path.display(), "ignoring unreadable usage: {e}");
                return;
            }
        };
        if u.version != USAGE_VERSION || u.half_life_s != POPULARITY_HALF_LIFE_S {
            return;
        }
        for (name, score) in u.popularity {
            if let Ok(n) = ObjectName::new(&name, Limits::default().max_object_name) {
                state.popularity.restore(n, score);
            }
        }
        if let Some(w) = WatchModel::from_bins(u.watch) {
            state.watch = w;
        }
        if u.concurrency.is_finite() && u.concurrency >= 1.0 {
            state.concurrency = u.concurrency;
        }
    }

    /// Saves measured usage (popularity of every object, the watch model) atomically, so a
    /// restarted edge keeps valuing objects as before.
    pub fn save_usage(&self) -> std::io::Result<()> {
        let u = {
            let st = self.lock();
            Usage {
                version: USAGE_VERSION,
                half_life_s: POPULARITY_HALF_LIFE_S,
                popularity: st
                    .popularity
                    .entries()
                    .map(|(k, v)| (k.to_string(), v))
                    .collect(),
                watch: st.watch.bins().to_vec(),
                concurrency: st.concurrency,
            }
        };
        let tmp = self.usage_path.with_extension("json.tmp");
        fs::write(&tmp, serde_json::to_vec(&u).map_err(std::io::Error::other)?)?;
        fs::rename(&tmp, &self.usage_path)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        // A panic while holding the lock leaves consistent data (plain fields): keep going.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn dir_of(&self, name: &ObjectName) -> PathBuf {
        object_dir(&self.dir, name)
    }

    /// The prefix the edge keeps of `m`, in media microseconds: the configured prefix, or
    /// longer when the measured origin link needs it (`placement::link`).
    pub fn prefix_us(&self, m: &Manifest) -> u64 {
        let link = self.lock().effective_link();
        Self::prefix_us_with(self.prefix_us, link, m)
    }

    fn prefix_us_with(min_us: u64, link: Option<LinkEstimate>, m: &Manifest) -> u64 {
        let Some(link) = link else { return min_us };
        let length_s = m.duration_us as f64 / 1e6;
        let bytes: u64 = m.segments.iter().map(|s| s.size).sum();
        let bitrate = bytes as f64 / length_s.max(1e-3);
        let need = required_prefix_s(bitrate, length_s, link, PREFIX_MARGIN_S);
        min_us.max((need * 1e6) as u64)
    }

    fn in_prefix(prefix_us: u64, m: &Manifest, i: usize) -> bool {
        i == 0 || m.segments.get(i).is_some_and(|s| s.start_us < prefix_us)
    }

    /// Whether segment `i` lies in the object's prefix.
    pub fn is_prefix(&self, m: &Manifest, i: usize) -> bool {
        Self::in_prefix(self.prefix_us(m), m, i)
    }

    pub fn prefix_len(&self, m: &Manifest) -> usize {
        Self::prefix_count(self.prefix_us(m), m)
    }

    /// How many segments a prefix of `prefix_us` takes.
    fn prefix_count(prefix_us: u64, m: &Manifest) -> usize {
        (0..m.segments.len())
            .take_while(|&i| Self::in_prefix(prefix_us, m, i))
            .count()
    }

    /// Cached objects, most requested first (ties: by name).
    fn by_popularity(st: &State) -> Vec<(&ObjectName, &Entry)> {
        let mut v: Vec<_> = st.objects.iter().collect();
        v.sort_by(|a, b| {
            let (sa, sb) = (st.popularity.score(a.0), st.popularity.score(b.0));
            sb.total_cmp(&sa).then_with(|| a.0.cmp(b.0))
        });
        v
    }

    /// The most requested cached object whose prefix is incomplete and whose missing prefix
    /// segments fit in free space (the edge's upkeep fills it). Reads the index only: no use
    /// is recorded.
    pub fn prefix_to_refill(&self) -> Option<ObjectName> {
        let st = self.lock();
        let free = self.capacity.saturating_sub(st.used);
        let link = st.effective_link();
        Self::by_popularity(&st).into_iter().find_map(|(name, e)| {
            let m = &e.manifest;
            let n = Self::prefix_count(Self::prefix_us_with(self.prefix_us, link, m), m);
            let missing: u64 = (0..n)
                .filter(|&i| !e.have[i])
                .map(|i| m.segments[i].size)
                .sum();
            (missing > 0 && missing <= free).then(|| name.clone())
        })
    }

    /// The next missing segment of the most requested cached object whose next missing
    /// segment fits in free space (a useful segment to measure an idle link with). Reads the
    /// index only: no use is recorded.
    pub fn probe_target(&self) -> Option<(Arc<Manifest>, usize)> {
        let st = self.lock();
        let free = self.capacity.saturating_sub(st.used);
        Self::by_popularity(&st).into_iter().find_map(|(_, e)| {
            let i = e.have.iter().position(|h| !h)?;
            (e.manifest.segments[i].size <= free).then(|| (e.manifest.clone(), i))
        })
    }

    /// `n` objects are being fetched from the origin at once (sampled as a session starts,
    /// weight 1/5, and every 2 s while any is, weight 1/20): prefixes assume the link is
    /// shared that many ways.
    pub fn fetching_concurrently(&self, n: usize, weight: f64) {
        let w = weight.clamp(0.0, 1.0);
        let mut st = self.lock();
        st.concurrency = (1.0 - w) * st.concurrency + w * (n.max(1) as f64);
    }

    /// The measured origin link changed: prefixes follow it.
    pub fn set_link(&self, link: LinkEstimate) {
        self.lock().link = Some(link);
    }

    /// A session asked for `name` (measured usage).
    pub fn requested(&self, name: &ObjectName) {
        let t = unix_now();
        self.lock().popularity.hit(name, t);
    }

    /// An operator expects `viewers` requests for `name` (a hint or a push): they count
    /// as requests now (anticipated demand), at most [`MAX_ANTICIPATED`].
    pub fn anticipate(&self, name: &ObjectName, viewers: u64) {
        let t = unix_now();
        let n = viewers.clamp(1, MAX_ANTICIPATED) as f64;
        self.lock().popularity.add(name, t, n);
    }

    /// A session of `m` ended having played up to (not including) segment `reached`.
    pub fn watched(&self, m: &Manifest, reached: usize) {
        let at_us = m
            .segments
            .get(reached)
            .map_or(m.duration_us, |s| s.start_us);
        let fraction = at_us as f64 / m.duration_us.max(1) as f64;
        self.lock().watch.ended(fraction);
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

    /// Requests seen for `name` (decayed, anticipated viewers included).
    pub fn request_count(&self, name: &ObjectName) -> f64 {
        let t = unix_now();
        self.lock().popularity.count(name, t)
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

    /// Requests per second for `name`, as measured (decayed).
    pub fn request_rate(&self, name: &ObjectName) -> f64 {
        let t = unix_now();
        self.lock().popularity.rate(name, t)
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
        let r = fs::create_dir_all(&dir)
            .and_then(|()| fs::write(&tmp, m.encode()))
            .and_then(|()| fs::rename(&tmp, dir.join("manifest")));
        if r.is_err() {
            let _ = fs::remove_file(&tmp);
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

    fn forget(&self, m: &Manifest, i: usize) {
        let mut st = self.lock();
        if let Some(e) = st.objects.get_mut(&m.object)
            && e.have.get(i).copied().unwrap_or(false)
        {
            e.have[i] = false;
            st.used -= m.segments[i].size;
        }
    }

    /// Writes segment `i` (already verified by the caller), evicting if needed.
    pub async fn put(&self, m: &Arc<Manifest>, i: usize, payload: &Bytes) -> Stored {
        let size = payload.len() as u64;
        let victims = {
            let mut st = self.lock();
            match st.objects.get(&m.object) {
                Some(e) if e.manifest.revision == m.revision => {
                    if e.have.get(i).copied().unwrap_or(true) {
                        return Stored::Written; // already there (or out of range)
                    }
                }
                _ => return Stored::NotStored, // manifest not stored: nothing to hang it on
            }
            match self.evict_for(&mut st, size, &m.object, i) {
                Some(v) => {
                    st.used += size; // reserved; released below if the write fails
                    if let Some(e) = st.objects.get_mut(&m.object) {
                        e.have[i] = true;
                    }
                    v
                }
                None => return Stored::NotStored,
            }
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
        match r {
            Ok(()) => Stored::Written,
            Err(_) => {
                let _ = tokio::fs::remove_file(&tmp).await;
                self.forget(m, i);
                Stored::NotStored
            }
        }
    }

    /// Picks segments to evict so that `need` more bytes fit; `None` if impossible.
    /// Order: least valuable first (see the module doc); ties: least recently used object,
    /// later segments first.
    fn evict_for(
        &self,
        st: &mut State,
        need: u64,
        keep: &ObjectName,
        keep_i: usize,
    ) -> Option<Vec<(ObjectName, usize)>> {
        if need > self.capacity {
            return None;
        }
        let mut victims = Vec::new();
        if st.used + need <= self.capacity {
            return Some(victims);
        }
        // (log2 value, last used, name, later segments first, size)
        let mut order: Vec<(f64, u64, ObjectName, usize, u64)> = Vec::new();
        for (name, e) in &st.objects {
            let m = &e.manifest;
            let prefix_us = Self::prefix_us_with(self.prefix_us, st.effective_link(), m);
            let prefix_n = (0..m.segments.len())
                .take_while(|&i| Self::in_prefix(prefix_us, m, i))
                .count()
                .max(1);
            let score = st
                .popularity
                .score(name)
                .max(e.added_s / POPULARITY_HALF_LIFE_S);
            for (j, h) in e.have.iter().enumerate() {
                if *h && !(name == keep && j == keep_i) {
                    let seg = &m.segments[j];
                    let v = segment_value(
                        score,
                        &st.watch,
                        seg.start_us as f64 / m.duration_us.max(1) as f64,
                        Self::in_prefix(prefix_us, m, j),
                        START_BONUS,
                        prefix_n,
                    );
                    order.push((v, e.last_used, name.clone(), usize::MAX - j, seg.size));
                }
            }
        }
        order.sort_by(|a, b| {
            a.0.total_cmp(&b.0)
                .then(a.1.cmp(&b.1))
                .then_with(|| a.2.as_str().cmp(b.2.as_str()))
                .then(a.3.cmp(&b.3))
        });
        let mut freed = 0;
        for (_, _, name, rj, size) in order {
            if st.used - freed + need <= self.capacity {
                break;
            }
            victims.push((name, usize::MAX - rj));
            freed += size;
        }
        if st.used - freed + need > self.capacity {
            return None;
        }
        for (name, j) in &victims {
            if let Some(e) = st.objects.get_mut(name) {
                e.have[*j] = false;
            }
        }
        st.used -= freed;
        st.evictions += victims.len() as u64;
        Some(victims)
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

    /// Bytes of cached segments.
    pub fn used(&self) -> u64 {
        self.lock().used
    }

    pub fn evictions(&self) -> u64 {
        self.lock().evictions
    }

    pub fn capacity(&self) -> u64 {
        self.capacity
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use segue_wire::segment::SegmentEntry;

    fn manifest(name: &str, sizes: &[u64]) -> Arc<Manifest> {
        let segments = sizes
            .iter()
            .enumerate()
            .map(|(i, &size)| SegmentEntry {
                start_us: i as u64 * 2_000_000,
                duration_us: 2_000_000,
                size,
                frames: 1,
                checksum: [0; 32],
            })
            .collect();
        Arc::new(Manifest {
            object: ObjectName::new(name, 64).unwrap(),
            revision: 1,
            duration_us: sizes.len() as u64 * 2_000_000,
            formats: vec![],
            sdp: String::new(),
            tracks: vec![],
            segments,
        })
    }

    fn payload(n: u64) -> Bytes {
        Bytes::from(vec![7u8; n as usize])
    }

    #[tokio::test]
    async fn capacity_is_respected_and_suffixes_of_cold_objects_go_first() {
        let dir = tempfile::tempdir().unwrap();
        // 4 s prefix = segments 0 and 1; capacity for 10 segments of 100 bytes.
        let store = Store::open(dir.path(), 1000, 4_000_000).unwrap();
        let cold = manifest("cold", &[100; 5]);
        let hot = manifest("hot", &[100; 5]);
        store.put_manifest(&cold).unwrap();
        store.put_manifest(&hot).unwrap();
        for i in 0..5 {
            assert_eq!(store.put(&cold, i, &payload(100)).await, Stored::Written);
        }
        for i in 0..5 {
            assert_eq!(store.put(&hot, i, &payload(100)).await, Stored::Written);
        }
        assert_eq!(store.used(), 1000);
        // `hot` is used again; a new object needs room for 3 segments.
        store.manifest(&hot.object);
        let new = manifest("new", &[100; 3]);
        store.put_manifest(&new).unwrap();
        for i in 0..3 {
            assert_eq!(store.put(&new, i, &payload(100)).await, Stored::Written);
        }
        assert!(store.used() <= 1000);
        assert_eq!(store.evictions(), 3);
        // The cold object's suffix went first, its prefix stayed, the hot object is untouched.
        assert_eq!(
            (0..5).filter(|&i| store.has(&cold, i)).collect::<Vec<_>>(),
            vec![0, 1]
        );
        assert_eq!(store.count_from(&hot, 0), 5);
        // Nothing fits a segment larger than the whole cache: served from memory only.
        let huge = manifest("huge", &[5000]);
        store.put_manifest(&huge).unwrap();
        assert_eq!(store.put(&huge, 0, &payload(5000)).await, Stored::NotStored);
        // The index survives a restart.
        drop(store);
        let again = Store::open(dir.path(), 1000, 4_000_000).unwrap();
        assert_eq!(again.used(), 1000);
        assert_eq!(again.count_from(&hot, 0), 5);
    }

    #[tokio::test]
    async fn measured_popularity_beats_recency() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path(), 1000, 4_000_000).unwrap();
        let popular = manifest("popular", &[100; 5]);
        let rare = manifest("rare", &[100; 5]);
        for m in [&popular, &rare] {
            store.put_manifest(m).unwrap();
            for i in 0..5 {
                store.put(m, i, &payload(100)).await;
            }
        }
        for _ in 0..5 {
            store.requested(&popular.object);
        }
        store.requested(&rare.object);
        // Viewers quit early: later segments are worth less than prefixes.
        for _ in 0..10 {
            store.watched(&popular, 1);
        }
        // The rare object was touched last: recency alone would evict the popular one.
        store.manifest(&rare.object);
        let new = manifest("new", &[100; 3]);
        store.put_manifest(&new).unwrap();
        for i in 0..3 {
            assert_eq!(store.put(&new, i, &payload(100)).await, Stored::Written);
        }
        assert_eq!(
            store.count_from(&popular, 0),
            5,
            "the popular object is untouched"
        );
        // The rare object lost its suffix first, later segments before earlier ones.
        assert_eq!(
            (0..5).filter(|&i| store.has(&rare, i)).collect::<Vec<_>>(),
            vec![0, 1]
        );
        assert!(store.request_rate(&popular.object) > store.request_rate(&rare.object));
    }

    #[tokio::test]
    async fn upkeep_targets_follow_popularity_and_free_space() {
        let dir = tempfile::tempdir().unwrap();
        // 4 s prefix = segments 0 and 1.
        let store = Store::open(dir.path(), 700, 4_000_000).unwrap();
        let a = manifest("a", &[100; 4]);
        let b = manifest("b", &[100; 4]);
        for m in [&a, &b] {
            store.put_manifest(m).unwrap();
            store.put(m, 0, &payload(100)).await;
        }
        store.requested(&b.object);
        // Both prefixes lack segment 1; the requested object comes first.
        assert_eq!(store.prefix_to_refill(), Some(b.object.clone()));
        assert_eq!(
            store.probe_target().map(|(m, i)| (m.object.clone(), i)),
            Some((b.object.clone(), 1))
        );
        store.put(&b, 1, &payload(100)).await;
        assert_eq!(store.prefix_to_refill(), Some(a.object.clone()));
        // b's prefix is whole: the probe takes its next segment, then a's once b is whole.
        assert_eq!(store.probe_target().map(|(_, i)| i), Some(2));
        // b whole: a's next segment.
        store.put(&b, 2, &payload(100)).await;
        store.put(&b, 3, &payload(100)).await;
        assert_eq!(store.used(), 500);
        assert_eq!(
            store.probe_target().map(|(m, i)| (m.object.clone(), i)),
            Some((a.object.clone(), 1))
        );
        let big = manifest("big", &[50, 200, 200]);
        store.put_manifest(&big).unwrap();
        store.put(&big, 0, &payload(50)).await;
        store.requested(&big.object);
        store.requested(&big.object);
        // big is the most requested, but its missing prefix (200) exceeds the 150 free: a.
        assert_eq!(store.prefix_to_refill(), Some(a.object.clone()));
    }

    #[tokio::test]
    async fn measured_usage_survives_a_restart() {
        let dir = tempfile::tempdir().unwrap();
        let popular = manifest("popular", &[100; 5]);
        let rare = manifest("rare", &[100; 5]);
        {
            let store = Store::open(dir.path(), 1000, 4_000_000).unwrap();
            for m in [&popular, &rare] {
                store.put_manifest(m).unwrap();
                for i in 0..5 {
                    store.put(m, i, &payload(100)).await;
                }
            }
            for _ in 0..20 {
                store.requested(&popular.object);
            }
            for _ in 0..10 {
                store.watched(&popular, 1);
            }
            store.save_usage().unwrap();
        }
        let store = Store::open(dir.path(), 1000, 4_000_000).unwrap();
        // Rates as before the restart: 20 requests (rate 20 ln 2 / half-life), none.
        let (p, r) = (
            store.request_rate(&popular.object),
            store.request_rate(&rare.object),
        );
        let want = 20.0 * std::f64::consts::LN_2 / POPULARITY_HALF_LIFE_S;
        assert!((p - want).abs() < want * 0.01 && r == 0.0, "{p} {r}");
        // The rare object was touched last; the popular one still wins after the restart.
        store.manifest(&rare.object);
        let new = manifest("new", &[100; 3]);
        store.put_manifest(&new).unwrap();
        for i in 0..3 {
            assert_eq!(store.put(&new, i, &payload(100)).await, Stored::Written);
        }
        assert_eq!(store.count_from(&popular, 0), 5);
        assert_eq!(store.count_from(&rare, 0), 2);
        // An unreadable usage file is ignored, not fatal.
        std::fs::write(dir.path().join("usage.json"), b"{not json").unwrap();
        let store = Store::open(dir.path(), 1000, 4_000_000).unwrap();
        assert_eq!(store.request_rate(&popular.object), 0.0);
    }

    #[test]
    fn prefix_follows_the_link() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path(), 1 << 20, 4_000_000).unwrap();
        // 10 segments of 2 s, 100 bytes each: 50 bytes/s, 20 s.
        let m = manifest("m", &[100; 10]);
        assert_eq!(store.prefix_len(&m), 2, "configured 4 s");
        // A link faster than the media needs less than the configured prefix: 4 s stays.
        store.set_link(LinkEstimate {
            throughput: 1000.0,
            first_byte_s: 0.1,
            jitter_s: 0.02,
        });
        assert_eq!(store.prefix_len(&m), 2);
        // Half the media rate, first byte 0.5 s, jitter 0.5 s: (1/2)(1) + 20 (1/2) + 1 s
        // margin = 11.5 s: segments starting at 0, 2, ..., 10.
        store.set_link(LinkEstimate {
            throughput: 25.0,
            first_byte_s: 0.5,
            jitter_s: 0.5,
        });
        assert_eq!(store.prefix_us(&m), 11_500_000);
        assert_eq!(store.prefix_len(&m), 6);
        assert!(store.is_prefix(&m, 5) && !store.is_prefix(&m, 6));
    }

    #[tokio::test]
    async fn capacity_holds_under_churn() {
        use rand::{Rng as _, SeedableRng as _};
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path(), 2000, 4_000_000).unwrap();
        let mut rng = rand::rngs::SmallRng::seed_from_u64(9);
        let objects: Vec<_> = (0..20)
            .map(|k| {
                let sizes: Vec<u64> = (0..8).map(|_| rng.random_range(50..300)).collect();
                manifest(&format!("o{k}"), &sizes)
            })
            .collect();
        for m in &objects {
            store.put_manifest(m).unwrap();
        }
        for _ in 0..500 {
            let m = &objects[rng.random_range(0..objects.len())];
            store.requested(&m.object);
            let i = rng.random_range(0..m.segments.len());
            store.put(m, i, &payload(m.segments[i].size)).await;
            if rng.random::<f64>() < 0.3 {
                store.watched(m, rng.random_range(0..=m.segments.len()));
            }
            assert!(store.used() <= 2000);
            let held: u64 = objects
                .iter()
                .flat_map(|m| {
                    (0..m.segments.len())
                        .filter(|&i| store.has(m, i))
                        .map(|i| m.segments[i].size)
                })
                .sum();
            assert_eq!(held, store.used(), "the index counts what it holds");
        }
        assert!(store.evictions() > 0);
    }

    #[tokio::test]
    async fn a_corrupt_segment_is_dropped_not_served() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path(), 1 << 20, 4_000_000).unwrap();
        let body = payload(100);
        let mut m = (*manifest("obj", &[100])).clone();
        m.segments[0]
            .checksum
            .copy_from_slice(ring::digest::digest(&ring::digest::SHA256, &body).as_ref());
        let m = Arc::new(m);
        store.put_manifest(&m).unwrap();
        store.put(&m, 0, &body).await;
        assert_eq!(store.read(&m, 0).await, Some(body));
        // Flip a byte on disk: the read refuses it and forgets the segment.
        let path = seg_path(&object_dir(&dir.path().join("objects"), &m.object), 0);
        let mut bytes = std::fs::read(&path).unwrap();
        bytes[10] ^= 1;
        std::fs::write(&path, bytes).unwrap();
        assert_eq!(store.read(&m, 0).await, None);
        assert!(!store.has(&m, 0));
        assert!(!path.exists());
    }
}
