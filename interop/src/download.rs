//! The client side's files: where a URL's bytes go, written and hashed as they arrive, for
//! both the hq-interop and the HTTP/3 client.

use std::path::{Path, PathBuf};

use anyhow::Context as _;
use tokio::io::AsyncWriteExt as _;

/// One downloaded file.
#[derive(Debug, Clone)]
pub struct Download {
    pub path: String,
    pub bytes: u64,
    /// SHA-256, hex.
    pub sha256: String,
}

/// Where one URL's file goes: `downloads/<last path component>`.
pub(crate) struct Target {
    pub path: String,
    /// What an HTTP/0.9 request asks for: the path and the query (a signed URL's grant).
    pub(crate) request: String,
    out: PathBuf,
}

/// A file being downloaded: written and hashed as it arrives.
pub(crate) struct Sink {
    path: String,
    file: tokio::fs::File,
    ctx: ring::digest::Context,
    bytes: u64,
}

impl Target {
    pub(crate) fn of(url: &url::Url, downloads: &Path) -> anyhow::Result<Self> {
        let path = url.path().to_owned();
        let name = Path::new(&path)
            .file_name()
            .with_context(|| format!("{url}: no file name"))?;
        let request = match url.query() {
            Some(q) => format!("{path}?{q}"),
            None => path.clone(),
        };
        Ok(Self {
            out: downloads.join(name),
            path,
            request,
        })
    }

    pub(crate) async fn create(self) -> anyhow::Result<Sink> {
        Ok(Sink {
            file: tokio::fs::File::create(&self.out).await?,
            path: self.path,
            ctx: ring::digest::Context::new(&ring::digest::SHA256),
            bytes: 0,
        })
    }
}

impl Sink {
    pub(crate) async fn write(&mut self, b: &[u8]) -> anyhow::Result<()> {
        self.ctx.update(b);
        self.file.write_all(b).await?;
        self.bytes += b.len() as u64;
        Ok(())
    }

    pub(crate) async fn finish(mut self) -> anyhow::Result<Download> {
        self.file.flush().await?;
        Ok(Download {
            path: self.path,
            bytes: self.bytes,
            sha256: hex(self.ctx.finish().as_ref()),
        })
    }
}

/// Every download task's result, by path; the first failure fails all.
pub(crate) async fn collect(
    mut tasks: tokio::task::JoinSet<anyhow::Result<Download>>,
) -> anyhow::Result<Vec<Download>> {
    let mut out = Vec::new();
    while let Some(r) = tasks.join_next().await {
        out.push(r.context("download task")??);
    }
    out.sort_by(|a, b| a.path.cmp(&b.path));
    Ok(out)
}

/// Lower-case hex.
pub fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}
