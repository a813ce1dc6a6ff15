//! The origin's library: every media file under the media root, ingested into the data dir.
//!
//! Files with the same stem (`movies/a.mp4`, `movies/a.ts`) are one object (`movies/a`) in
//! several formats. The ingested form (manifest + one file per segment) lives in
//! `<data>/objects/<name>/.segue/` with a `stamp` of the sources (names, sizes, mtimes); while the
//! stamp matches, nothing is re-ingested. A file that fails to ingest is recorded with its
//! reason; every other object is still served.
//!
//! Each source file is also a *file object* (PROTOCOL.md §8.9) named by its path with the
//! extension (`movies/a.mp4`): its segments are consecutive byte ranges of the file, read from
//! the file itself and verified against checksums kept in `<data>/files/<name>/.segue/`.

use std::collections::{BTreeMap, HashMap};
use std::fs;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::UNIX_EPOCH;

use bytes::Bytes;
use segue_wire::segment::Manifest;
use segue_wire::{Limits, ObjectName};

use crate::layout::object_dir;
use crate::origin::ingest::{self, segmenter};

/// Bumped when the ingested form changes, so old data dirs are re-ingested.
const INGEST_VERSION: u32 = 2;

/// An ingested object.
#[derive(Debug)]
pub struct StoredObject {
    pub manifest: Arc<Manifest>,
    /// Where its manifest (and a media object's segments) live.
    dir: PathBuf,
    /// A file object's source file; `None` for a media object.
    file: Option<PathBuf>,
}

impl StoredObject {
    fn segment_path(&self, index: usize) -> PathBuf {
        self.dir.join(format!("seg-{index:06}"))
    }

    /// Reads segment `index` from disk (unverified: the caller checks its checksum).
    pub async fn read_segment(&self, index: usize) -> std::io::Result<Bytes> {
        let Some(path) = &self.file else {
            return tokio::fs::read(self.segment_path(index))
                .await
                .map(Bytes::from);
        };
        use tokio::io::{AsyncReadExt as _, AsyncSeekExt as _};
        let (offset, size) = file_range(&self.manifest, index)
            .ok_or_else(|| std::io::Error::new(std::io::ErrorKind::NotFound, "no such segment"))?;
        let mut f = tokio::fs::File::open(path).await?;
        f.seek(std::io::SeekFrom::Start(offset)).await?;
        let mut buf = vec![0u8; size as usize];
        f.read_exact(&mut buf).await?;
        Ok(Bytes::from(buf))
    }
}

/// Byte offset and size of segment `index` of a file object.
fn file_range(manifest: &Manifest, index: usize) -> Option<(u64, u64)> {
    let size = manifest.segments.get(index)?.size;
    let offset = manifest.segments[..index].iter().map(|s| s.size).sum();
    Some((offset, size))
}

/// Size of a file object's segments: 256 KiB, more for files that would otherwise need more
/// segments than a manifest holds.
fn file_segment_size(len: u64, limits: &Limits) -> u64 {
    let max_segments = limits.max_segments.max(1) as u64;
    len.div_ceil(max_segments)
        .next_power_of_two()
        .max(FILE_SEGMENT)
}

/// Smallest segment of a file object.
pub const FILE_SEGMENT: u64 = 256 * 1024;

/// What the library holds.
#[derive(Debug, Default)]
pub struct Library {
    objects: HashMap<ObjectName, Arc<StoredObject>>,
    /// File objects, by their names (paths with extensions).
    files: HashMap<ObjectName, Arc<StoredObject>>,
    /// Objects that could not be ingested, with the reasons.
    pub failures: BTreeMap<String, String>,
}

/// Options of [`Library::open`].
#[derive(Debug, Clone)]
pub struct LibraryOptions {
    pub media_root: PathBuf,
    pub data_dir: PathBuf,
    pub target_segment_us: u64,
    pub scheme: segmenter::SegmentScheme,
}

fn stamp_of(
    sources: &[PathBuf],
    target_us: u64,
    scheme: segmenter::SegmentScheme,
) -> std::io::Result<String> {
    let mut s = format!(
        "segue-ingest {INGEST_VERSION} target {target_us} scheme {}\n",
        scheme.as_str()
    );
    for p in sources {
        let m = fs::metadata(p)?;
        let mtime = m
            .modified()?
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos());
        s.push_str(&format!("{} {} {mtime}\n", p.display(), m.len()));
    }
    Ok(s)
}

/// A 62-bit revision number derived from the stamp (FNV-1a).
fn revision_of(stamp: &str) -> u64 {
    stamp.bytes().fold(0xcbf2_9ce4_8422_2325u64, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
    }) & segue_wire::varint::MAX
}

/// Media file extensions the library ingests.
pub const EXTENSIONS: [&str; 3] = ["mp4", "m4v", "ts"];

/// Where object `name`'s source files live under the media root: the directory and the
/// file stem (`films/a` → `<root>/films`, `a`).
pub fn source_dir_and_stem<'a>(root: &Path, name: &'a ObjectName) -> (PathBuf, &'a str) {
    let mut comps: Vec<&str> = name.components().collect();
    let leaf = comps.pop().unwrap_or_default();
    (
        comps.iter().fold(root.to_path_buf(), |d, c| d.join(c)),
        leaf,
    )
}

/// The source files of object `name` under the media root (every format).
pub fn sources_of(root: &Path, name: &ObjectName) -> Vec<PathBuf> {
    let (dir, leaf) = source_dir_and_stem(root, name);
    let Ok(entries) = fs::read_dir(&dir) else {
        return Vec::new();
    };
    let mut out: Vec<PathBuf> = entries
        .filter_map(|e| e.ok())
        .filter(|e| e.file_type().is_ok_and(|t| t.is_file()))
        .map(|e| e.path())
        .filter(|p| {
            p.file_stem().and_then(|s| s.to_str()) == Some(leaf)
                && p.extension()
                    .and_then(|e| e.to_str())
                    .is_some_and(|e| EXTENSIONS.contains(&e.to_ascii_lowercase().as_str()))
        })
        .collect();
    out.sort();
    out
}

/// Where the ingested form of `name` lives under the data dir.
pub fn ingested_dir(data_dir: &Path, name: &ObjectName) -> PathBuf {
    object_dir(&data_dir.join("objects"), name)
}

/// Media files under `root` (no symlinks, no hidden entries), grouped by object name.
fn scan(
    root: &Path,
    failures: &mut BTreeMap<String, String>,
) -> std::io::Result<BTreeMap<ObjectName, Vec<PathBuf>>> {
    let mut out: BTreeMap<ObjectName, Vec<PathBuf>> = BTreeMap::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(dir) = stack.pop() {
        for entry in fs::read_dir(&dir)? {
            let entry = entry?;
            let name = entry.file_name();
            let Some(name) = name.to_str() else { continue };
            if name.starts_with('.') {
                continue; // hidden files, and our own `.segue` directories
            }
            let ft = entry.file_type()?;
            let path = entry.path();
            if ft.is_symlink() {
                tracing::warn!(path = %path.display(), "skipping symlink in media root");
                continue;
            }
            if ft.is_dir() {
                stack.push(path);
                continue;
            }
            let Some(ext) = path
                .extension()
                .and_then(|e| e.to_str())
                .map(str::to_ascii_lowercase)
            else {
                continue;
            };
            if !EXTENSIONS.contains(&ext.as_str()) {
                continue;
            }
            let rel = path.strip_prefix(root).unwrap_or(&path).with_extension("");
            let rel = rel.to_string_lossy().replace('\\', "/");
            match ObjectName::new(&rel, Limits::default().max_object_name) {
                Ok(obj) => out.entry(obj).or_default().push(path),
                Err(e) => {
                    failures.insert(
                        path.display().to_string(),
                        format!("not a valid object name: {e}"),
                    );
                }
            }
        }
    }
    for paths in out.values_mut() {
        // Preferred source first: MP4, then TS.
        paths.sort_by_key(|p| {
            (
                p.extension().is_some_and(|e| e.eq_ignore_ascii_case("ts")),
                p.clone(),
            )
        });
    }
    Ok(out)
}

fn load(dir: &Path, stamp: &str) -> Option<Arc<Manifest>> {
    let old = fs::read_to_string(dir.join("stamp")).ok()?;
    if old != stamp {
        return None;
    }
    let bytes = fs::read(dir.join("manifest")).ok()?;
    let m = Manifest::decode(&bytes, &Limits::default()).ok()?;
    let complete = (0..m.segments.len()).all(|i| {
        fs::metadata(dir.join(format!("seg-{i:06}"))).is_ok_and(|md| md.len() == m.segments[i].size)
    });
    complete.then(|| Arc::new(m))
}

fn write_object(dir: &Path, stamp: &str, s: &segmenter::Segmented) -> std::io::Result<()> {
    write_dir(dir, stamp, &s.manifest, &s.payloads)
}

/// Writes a manifest, its segments (none for a file object) and the stamp into `dir`, which
/// appears complete or not at all.
fn write_dir(dir: &Path, stamp: &str, m: &Manifest, payloads: &[Bytes]) -> std::io::Result<()> {
    let parent = dir.parent().unwrap_or(dir);
    fs::create_dir_all(parent)?;
    let tmp = parent.join(format!(".segue.tmp-{}", std::process::id()));
    let _ = fs::remove_dir_all(&tmp);
    fs::create_dir_all(&tmp)?;
    for (i, p) in payloads.iter().enumerate() {
        fs::write(tmp.join(format!("seg-{i:06}")), p)?;
    }
    fs::write(tmp.join("manifest"), m.encode())?;
    fs::write(tmp.join("stamp"), stamp)?;
    // The directory appears complete or not at all.
    let _ = fs::remove_dir_all(dir);
    fs::rename(&tmp, dir)
}

/// The manifest of file object `name` from source file `src` of media object `media`: from
/// `dir` while the file's stamp is unchanged, else by hashing the file.
fn file_manifest(
    src: &Path,
    name: &ObjectName,
    media: &Manifest,
    dir: &Path,
) -> std::io::Result<Arc<Manifest>> {
    use std::io::Read as _;
    let stamp = format!(
        "{}duration {}\n",
        stamp_of(&[src.to_path_buf()], 0, segmenter::SegmentScheme::Uniform)?,
        media.duration_us
    );
    if let Ok(old) = fs::read_to_string(dir.join("stamp"))
        && old == stamp
        && let Ok(bytes) = fs::read(dir.join("manifest"))
        && let Ok(m) = Manifest::decode(&bytes, &Limits::default())
    {
        return Ok(Arc::new(m));
    }
    let len = fs::metadata(src)?.len();
    if len == 0 {
        return Err(std::io::Error::other("empty file"));
    }
    let limits = Limits::default();
    let chunk = file_segment_size(len, &limits);
    if chunk > limits.max_segment_size {
        return Err(std::io::Error::other(format!(
            "{len} bytes is more than a manifest can describe"
        )));
    }
    let mut f = fs::File::open(src)?;
    let mut buf = vec![0u8; chunk as usize];
    let chunk_size = segue_wire::segment::chunk::chunk_size_for(chunk);
    let mut segments = Vec::new();
    let mut offset = 0u64;
    // Segment times are the file's byte positions scaled to the media duration: a
    // progressive download plays about that far in when it has received that much.
    let at = |off: u64| (u128::from(media.duration_us) * u128::from(off) / u128::from(len)) as u64;
    while offset < len {
        let n = chunk.min(len - offset) as usize;
        f.read_exact(&mut buf[..n])?;
        let start_us = at(offset);
        segments.push(segue_wire::segment::SegmentEntry {
            start_us,
            duration_us: at(offset + n as u64) - start_us,
            size: n as u64,
            frames: 0,
            checksum: ring::digest::digest(&ring::digest::SHA256, &buf[..n])
                .as_ref()
                .try_into()
                .map_err(|_| std::io::Error::other("SHA-256 is 32 bytes"))?,
            chunk_root: segue_wire::segment::chunk::payload_root(&buf[..n], chunk_size),
        });
        offset += n as u64;
    }
    let ext = src
        .extension()
        .and_then(|e| e.to_str())
        .unwrap_or_default()
        .to_ascii_lowercase();
    let m = Manifest {
        object: name.clone(),
        revision: revision_of(&stamp),
        duration_us: media.duration_us,
        chunk_size,
        formats: vec![ext],
        sdp: String::new(),
        tracks: Vec::new(),
        segments,
    };
    write_dir(dir, &stamp, &m, &[])?;
    Ok(Arc::new(m))
}

/// Why the library cannot be opened (a per-object failure is not one: see
/// [`Library::failures`]).
#[derive(Debug, thiserror::Error)]
pub enum OpenError {
    #[error("cannot read media root {}: {error}", path.display())]
    MediaRoot {
        path: std::path::PathBuf,
        error: std::io::Error,
    },
    #[error("cannot create data dir {}: {error}", path.display())]
    DataDir {
        path: std::path::PathBuf,
        error: std::io::Error,
    },
}

impl Library {
    /// Scans the media root and ingests what changed. Per-object failures are recorded in
    /// [`Library::failures`]; only an unreadable media root or data dir is an error.
    pub fn open(opts: &LibraryOptions) -> Result<Self, OpenError> {
        let mut lib = Library::default();
        let groups =
            scan(&opts.media_root, &mut lib.failures).map_err(|error| OpenError::MediaRoot {
                path: opts.media_root.clone(),
                error,
            })?;
        let objects_dir = opts.data_dir.join("objects");
        fs::create_dir_all(&objects_dir).map_err(|error| OpenError::DataDir {
            path: objects_dir.clone(),
            error,
        })?;
        for (name, sources) in groups {
            // `<data>/objects/a/.segue`, so object `a` never clobbers object `a/b`'s files.
            let dir = object_dir(&objects_dir, &name);
            match Self::ingest_object(&name, &sources, &dir, opts) {
                Ok(manifest) => {
                    for src in &sources {
                        lib.add_file(src, &manifest, opts);
                    }
                    lib.objects.insert(
                        name,
                        Arc::new(StoredObject {
                            manifest,
                            dir,
                            file: None,
                        }),
                    );
                }
                Err(reasons) => {
                    for r in &reasons {
                        tracing::error!("{r}");
                    }
                    lib.failures.insert(name.to_string(), reasons.join("; "));
                }
            }
        }
        Ok(lib)
    }

    fn ingest_object(
        name: &ObjectName,
        sources: &[PathBuf],
        dir: &Path,
        opts: &LibraryOptions,
    ) -> Result<Arc<Manifest>, Vec<String>> {
        let stamp = stamp_of(sources, opts.target_segment_us, opts.scheme)
            .map_err(|e| vec![e.to_string()])?;
        if let Some(m) = load(dir, &stamp) {
            tracing::debug!(object = %name, "ingested form is current");
            return Ok(m);
        }
        let formats: Vec<String> = sources
            .iter()
            .filter_map(|p| {
                p.extension()
                    .and_then(|e| e.to_str())
                    .map(str::to_ascii_lowercase)
            })
            .collect();
        let mut reasons = Vec::new();
        // Any format will do for streaming: the first that ingests wins.
        for src in sources {
            let result = ingest::demux(src).and_then(|d| {
                for w in &d.warnings {
                    tracing::warn!(object = %name, source = %src.display(), "{w}");
                }
                segmenter::segment(
                    &d,
                    name,
                    formats.clone(),
                    revision_of(&stamp),
                    segmenter::Cut {
                        target_us: opts.target_segment_us,
                        scheme: opts.scheme,
                    },
                    src,
                )
            });
            match result {
                Ok(s) => {
                    write_object(dir, &stamp, &s)
                        .map_err(|e| vec![format!("{}: cannot store: {e}", dir.display())])?;
                    tracing::info!(
                        object = %name,
                        source = %src.display(),
                        segments = s.manifest.segments.len(),
                        bytes = s.manifest.total_size(),
                        "ingested"
                    );
                    return Ok(Arc::new(s.manifest));
                }
                Err(e) => reasons.push(e.to_string()),
            }
        }
        Err(reasons)
    }

    /// Makes the source file `src` of media object `media` a file object (its path with the
    /// extension), unless a media object has that name.
    fn add_file(&mut self, src: &Path, media: &Manifest, opts: &LibraryOptions) {
        let rel = src.strip_prefix(&opts.media_root).unwrap_or(src);
        let rel = rel.to_string_lossy().replace('\\', "/");
        let Ok(name) = ObjectName::new(&rel, Limits::default().max_object_name) else {
            return; // its media object's name was valid, so this cannot happen
        };
        let dir = object_dir(&opts.data_dir.join("files"), &name);
        match file_manifest(src, &name, media, &dir) {
            Ok(manifest) => {
                self.files.insert(
                    name,
                    Arc::new(StoredObject {
                        manifest,
                        dir,
                        file: Some(src.to_path_buf()),
                    }),
                );
            }
            Err(e) => {
                tracing::error!(file = %src.display(), "not served as a file: {e}");
                self.failures
                    .insert(rel, format!("not served as a file: {e}"));
            }
        }
    }

    /// A media object or, failing that, a file object.
    pub fn get(&self, name: &ObjectName) -> Option<Arc<StoredObject>> {
        self.objects
            .get(name)
            .or_else(|| self.files.get(name))
            .cloned()
    }

    /// Media object names, sorted.
    pub fn names(&self) -> Vec<ObjectName> {
        let mut v: Vec<_> = self.objects.keys().cloned().collect();
        v.sort();
        v
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn samples() -> PathBuf {
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../media/samples")
    }

    /// A library of `media`, its data in `dir/data`, 2 s segments.
    fn options(dir: &Path, media: PathBuf) -> LibraryOptions {
        LibraryOptions {
            media_root: media,
            data_dir: dir.join("data"),
            target_segment_us: 2_000_000,
            scheme: crate::origin::ingest::segmenter::SegmentScheme::Uniform,
        }
    }

    #[test]
    fn ingests_once_and_again_when_the_file_changes() {
        let dir = tempfile::tempdir().unwrap();
        let media = dir.path().join("media/movies");
        fs::create_dir_all(&media).unwrap();
        fs::copy(samples().join("demo.mp4"), media.join("a.mp4")).unwrap();
        fs::copy(samples().join("demo.ts"), media.join("a.ts")).unwrap();
        let opts = options(dir.path(), dir.path().join("media"));
        let lib = Library::open(&opts).unwrap();
        let name = ObjectName::new("movies/a", 64).unwrap();
        let obj = lib.get(&name).unwrap();
        // One object, two formats; the MP4 was preferred for streaming.
        assert_eq!(
            obj.manifest.formats,
            vec!["mp4".to_string(), "ts".to_string()]
        );
        let manifest_file = obj.dir.join("manifest");
        let first = fs::metadata(&manifest_file).unwrap().modified().unwrap();
        let rev = obj.manifest.revision;

        std::thread::sleep(std::time::Duration::from_millis(20));
        let again = Library::open(&opts).unwrap();
        assert_eq!(
            fs::metadata(&manifest_file).unwrap().modified().unwrap(),
            first,
            "re-ingested an unchanged file"
        );
        assert_eq!(again.get(&name).unwrap().manifest.revision, rev);

        // A changed file is ingested again, with a new revision.
        fs::copy(samples().join("faststart.mp4"), media.join("a.mp4")).unwrap();
        let changed = Library::open(&opts).unwrap();
        assert_ne!(changed.get(&name).unwrap().manifest.revision, rev);
        assert!(fs::metadata(&manifest_file).unwrap().modified().unwrap() > first);
    }

    #[test]
    fn names_that_are_not_valid_objects_are_reported() {
        let dir = tempfile::tempdir().unwrap();
        let media = dir.path().join("media");
        fs::create_dir_all(&media).unwrap();
        fs::copy(samples().join("demo.mp4"), media.join("bad name.mp4")).unwrap();
        let lib = Library::open(&options(dir.path(), media)).unwrap();
        assert!(lib.names().is_empty());
        let (file, why) = lib.failures.iter().next().unwrap();
        assert!(
            file.ends_with("bad name.mp4") && why.contains("not a valid object name"),
            "{why}"
        );
    }

    #[test]
    fn symlinks_do_not_lead_out_of_the_media_root() {
        let dir = tempfile::tempdir().unwrap();
        let media = dir.path().join("media");
        let outside = dir.path().join("outside");
        fs::create_dir_all(media.join("in")).unwrap();
        fs::create_dir_all(&outside).unwrap();
        fs::copy(samples().join("demo.mp4"), media.join("in/ok.mp4")).unwrap();
        fs::copy(samples().join("demo.mp4"), outside.join("secret.mp4")).unwrap();
        // A link to a file outside, and a link to a directory outside.
        std::os::unix::fs::symlink(outside.join("secret.mp4"), media.join("in/leak.mp4")).unwrap();
        std::os::unix::fs::symlink(&outside, media.join("escape")).unwrap();
        let lib = Library::open(&options(dir.path(), media)).unwrap();
        let names: Vec<String> = lib.names().iter().map(|n| n.to_string()).collect();
        assert_eq!(names, vec!["in/ok".to_string()]);
    }
}
