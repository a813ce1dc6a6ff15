//! What a file request (HTTP/3 `GET /path`, hq-interop `GET /path`) is answered from: a
//! directory (`segue hq serve`) or a node's objects (`--files-listen` on an origin or an
//! edge), where the path names a file object (PROTOCOL.md §8.9) and its bytes come through
//! the node's [`Source`]: on an edge the cached prefix from disk, the rest from upstream,
//! every segment checksum-verified before a byte of it is sent.

pub mod hq;
pub mod http3;
pub mod stats;

use std::future::Future;
use std::path::{Path, PathBuf};

use std::sync::Arc;

use bytes::Bytes;
use segue_wire::ObjectName;
use segue_wire::segment::Manifest;
use tokio::io::{AsyncReadExt as _, AsyncSeekExt as _};

use crate::node::source::{Source, SourceError};

/// Read size for files on disk.
const CHUNK: usize = 64 * 1024;

/// Why a file request fails.
#[derive(Debug, thiserror::Error)]
pub enum FileError {
    /// No such file (also: a bad path, a media object): 404, or a reset hq-interop stream.
    #[error("not found: {0}")]
    NotFound(String),
    /// Its bytes cannot be had now (an edge's upstream): 502.
    #[error("unavailable: {0}")]
    Unavailable(String),
    #[error("{0}")]
    Internal(String),
}

/// Why a file request was not answered to its end (logged; the peer sees a reset stream or
/// an error status).
#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    #[error(transparent)]
    File(#[from] FileError),
    /// The request itself is unusable.
    #[error("{0}")]
    Request(&'static str),
    #[error(transparent)]
    Stream(#[from] segue_net::StreamError),
    #[error("HTTP/3: {0}")]
    H3(#[from] h3::error::StreamError),
    #[error("HTTP: {0}")]
    Http(#[from] http::Error),
}

impl From<SourceError> for FileError {
    fn from(e: SourceError) -> Self {
        match e {
            SourceError::NotFound(s) => FileError::NotFound(s),
            SourceError::Unavailable(_)
            | SourceError::Stale(_)
            | SourceError::HopLimit(_)
            | SourceError::Busy(_) => FileError::Unavailable(e.to_string()),
            _ => FileError::Internal(e.to_string()),
        }
    }
}

impl From<std::io::Error> for FileError {
    fn from(e: std::io::Error) -> Self {
        FileError::Internal(e.to_string())
    }
}

/// A file found for a request.
#[derive(Debug)]
pub struct Opened<B> {
    pub len: u64,
    pub content_type: &'static str,
    /// An entity tag (changes when the file does).
    pub etag: Option<String>,
    pub body: B,
}

/// The bytes of an opened file.
pub trait Body: Send + 'static {
    /// Bytes `first..=last` of the file, in order, a chunk per call; `None` after `last`.
    /// Call with the same range each time.
    fn next(
        &mut self,
        first: u64,
        last: u64,
    ) -> impl Future<Output = Result<Option<Bytes>, FileError>> + Send;
}

/// Where request paths are looked up.
pub trait Files: Send + Sync + 'static {
    type Body: Body;

    /// Whether `peer` may have `path` (signed URLs: the grant in `query` or in a
    /// `Segue-Token` header). Open unless the files say otherwise.
    fn authorize(
        &self,
        _path: &str,
        _query: Option<&str>,
        _header: Option<&str>,
        _peer: std::net::IpAddr,
    ) -> Result<(), crate::node::access::Denied> {
        Ok(())
    }

    fn open(
        &self,
        path: &str,
    ) -> impl Future<Output = Result<Opened<Self::Body>, FileError>> + Send;
}

/// Content type by file extension.
pub fn content_type(path: &str) -> &'static str {
    let ext = path.rsplit_once('.').map(|(_, e)| e.to_ascii_lowercase());
    match ext.as_deref() {
        Some("mp4" | "m4v") => "video/mp4",
        Some("ts") => "video/mp2t",
        Some("m3u8") => "application/vnd.apple.mpegurl",
        _ => "application/octet-stream",
    }
}

/// The object name a request path names (`/movies/a.mp4` → `movies/a.mp4`).
pub fn object_of(path: &str) -> Result<ObjectName, FileError> {
    let rel = path.split(['?', '#']).next().unwrap_or("");
    let rel = rel
        .strip_prefix('/')
        .ok_or_else(|| FileError::NotFound(format!("bad path {path:?}: not absolute")))?;
    ObjectName::new(rel, 1024).map_err(|e| FileError::NotFound(format!("bad path {path:?}: {e}")))
}

/// The file a request path names under `root`, which it may not leave (`..`, absolute
/// paths, symbolic links pointing out).
fn resolve(root: &Path, path: &str) -> Result<PathBuf, FileError> {
    let name = object_of(path)?;
    let full = root
        .join(name.as_str())
        .canonicalize()
        .map_err(|e| FileError::NotFound(format!("no file {path}: {e}")))?;
    if !full.starts_with(root) || !full.is_file() {
        return Err(FileError::NotFound(format!("no file {path}")));
    }
    Ok(full)
}

/// Files of a directory, which requests cannot leave (`..`, absolute paths, symbolic links
/// pointing out).
#[derive(Debug, Clone)]
pub struct DirFiles {
    root: Arc<PathBuf>,
}

impl DirFiles {
    /// Serves `root` (which must exist).
    pub fn new(root: &Path) -> std::io::Result<Self> {
        Ok(Self {
            root: Arc::new(root.canonicalize()?),
        })
    }
}

/// A file on disk being read.
#[derive(Debug)]
pub struct DiskBody {
    file: tokio::fs::File,
    /// Next byte to read; `None` before the first read.
    at: Option<u64>,
    path: PathBuf,
}

impl Files for DirFiles {
    type Body = DiskBody;

    async fn open(&self, path: &str) -> Result<Opened<DiskBody>, FileError> {
        let full = resolve(&self.root, path)?;
        let file = tokio::fs::File::open(&full).await?;
        let md = file.metadata().await?;
        let etag = md
            .modified()
            .ok()
            .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
            .map(|d| format!("\"{:x}-{:x}\"", md.len(), d.as_nanos()));
        Ok(Opened {
            len: md.len(),
            content_type: content_type(path),
            etag,
            body: DiskBody {
                file,
                at: None,
                path: full,
            },
        })
    }
}

impl Body for DiskBody {
    async fn next(&mut self, first: u64, last: u64) -> Result<Option<Bytes>, FileError> {
        let at = match self.at {
            Some(a) => a,
            None => {
                self.file.seek(std::io::SeekFrom::Start(first)).await?;
                first
            }
        };
        if at > last {
            return Ok(None);
        }
        let want = (last - at + 1).min(CHUNK as u64) as usize;
        let mut buf = vec![0u8; want];
        let got = self.file.read(&mut buf).await?;
        if got == 0 {
            return Err(FileError::Internal(format!(
                "{} shrank while being sent",
                self.path.display()
            )));
        }
        buf.truncate(got);
        self.at = Some(at + got as u64);
        Ok(Some(Bytes::from(buf)))
    }
}

/// File objects of a node's [`Source`].
#[derive(Debug)]
pub struct ObjectFiles<S> {
    source: Arc<S>,
    access: Option<Arc<crate::node::access::Keys>>,
}

impl<S> ObjectFiles<S> {
    pub fn new(source: Arc<S>) -> Self {
        Self {
            source,
            access: None,
        }
    }

    /// Requires signed URLs (docs/SECURITY.md) when `access` is given.
    pub fn with_access(mut self, access: Option<Arc<crate::node::access::Keys>>) -> Self {
        self.access = access;
        self
    }
}

impl<S> Clone for ObjectFiles<S> {
    fn clone(&self) -> Self {
        Self {
            source: self.source.clone(),
            access: self.access.clone(),
        }
    }
}

/// A file object being sent, segment by segment.
pub struct ObjectBody<S: Source> {
    source: Arc<S>,
    manifest: Arc<Manifest>,
    /// Byte offset of each segment, and the file length last.
    offsets: Vec<u64>,
    /// Next byte to send, and whether [`Source::will_play`] was called.
    at: Option<u64>,
    /// Segment to send next (for [`Source::stopped`]).
    reached: usize,
}

impl<S: Source> Files for ObjectFiles<S> {
    type Body = ObjectBody<S>;

    fn authorize(
        &self,
        path: &str,
        query: Option<&str>,
        header: Option<&str>,
        peer: std::net::IpAddr,
    ) -> Result<(), crate::node::access::Denied> {
        let Some(keys) = &self.access else {
            return Ok(());
        };
        // A bad path is refused like a bad grant; `open` says 404 to the authorized.
        let name = object_of(path)
            .map_err(|_| crate::node::access::Denied::Refused("not an object path"))?;
        keys.check(
            name.as_str(),
            crate::node::access::grant_of(query, header),
            peer,
            crate::node::access::now(),
        )
    }

    async fn open(&self, path: &str) -> Result<Opened<ObjectBody<S>>, FileError> {
        let name = object_of(path)?;
        let manifest = self.source.manifest(&name).await?;
        if !manifest.is_file() {
            return Err(FileError::NotFound(format!(
                "{name} is a media object (play segue://…/{name}); its files are {}",
                manifest
                    .formats
                    .iter()
                    .map(|f| format!("/{name}.{f}"))
                    .collect::<Vec<_>>()
                    .join(", ")
            )));
        }
        let mut offsets = Vec::with_capacity(manifest.segments.len() + 1);
        let mut total = 0u64;
        for s in &manifest.segments {
            offsets.push(total);
            total += s.size;
        }
        offsets.push(total);
        Ok(Opened {
            len: total,
            content_type: content_type(path),
            etag: Some(format!("\"{:x}\"", manifest.revision)),
            body: ObjectBody {
                source: self.source.clone(),
                manifest,
                offsets,
                at: None,
                reached: 0,
            },
        })
    }
}

impl<S: Source> ObjectBody<S> {
    /// The segment holding byte `at`.
    fn segment_of(&self, at: u64) -> usize {
        self.offsets.partition_point(|&o| o <= at).saturating_sub(1)
    }
}

impl<S: Source> Body for ObjectBody<S> {
    async fn next(&mut self, first: u64, last: u64) -> Result<Option<Bytes>, FileError> {
        let at = match self.at {
            Some(a) => a,
            None => {
                // The rest of the object is fetched ahead while this download runs.
                let i = self.segment_of(first);
                let case = self.source.will_play(&self.manifest, i);
                tracing::debug!(object = %self.manifest.object, first, last, case = case.map(|c| c.as_str()), "file download");
                self.reached = i;
                self.at = Some(first);
                first
            }
        };
        if at > last || at >= *self.offsets.last().unwrap_or(&0) {
            return Ok(None);
        }
        let i = self.segment_of(at);
        let payload = self.source.segment(&self.manifest, i).await?;
        let start = self.offsets[i];
        let from = (at - start) as usize;
        let to = ((last + 1).min(self.offsets[i + 1]) - start) as usize;
        if to > payload.len() || from >= to {
            return Err(FileError::Internal(format!(
                "segment {i} of {} is not the size its manifest says",
                self.manifest.object
            )));
        }
        self.at = Some(start + to as u64);
        self.reached = i + 1;
        Ok(Some(payload.slice(from..to)))
    }
}

impl<S: Source> Drop for ObjectBody<S> {
    fn drop(&mut self) {
        if self.at.is_some() {
            self.source.stopped(&self.manifest, self.reached);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_and_types() {
        assert_eq!(object_of("/movies/a.mp4").unwrap().as_str(), "movies/a.mp4");
        assert_eq!(object_of("/a.ts?token=x").unwrap().as_str(), "a.ts");
        for bad in [
            "/",
            "a.mp4",
            "/../a.mp4",
            "//etc/passwd",
            "/a/%2e%2e/b",
            "/a b",
        ] {
            assert!(object_of(bad).is_err(), "{bad}");
        }
        assert_eq!(content_type("/x/A.MP4"), "video/mp4");
        assert_eq!(content_type("/x.ts"), "video/mp2t");
        assert_eq!(content_type("/x"), "application/octet-stream");
    }

    #[test]
    fn paths_stay_under_the_root() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("www");
        std::fs::create_dir_all(root.join("sub")).unwrap();
        std::fs::write(root.join("sub/a.bin"), b"x").unwrap();
        std::fs::write(dir.path().join("secret"), b"s").unwrap();
        #[cfg(unix)]
        std::os::unix::fs::symlink(dir.path().join("secret"), root.join("link")).unwrap();
        let root = root.canonicalize().unwrap();
        assert!(resolve(&root, "/sub/a.bin").is_ok());
        for bad in [
            "/../secret",
            "/sub/../../secret",
            "/link",
            "/sub",
            "/nope",
            "//etc/passwd",
        ] {
            assert!(resolve(&root, bad).is_err(), "{bad}");
        }
    }
}
