//! HTTP/3 (hyperium's `h3` over quinn) for files: `GET /path` with `Range` support, served
//! from a directory, and a client that downloads URLs. The interop endpoints (`segue hq`)
//! offer it next to hq-interop, so HTTP/3 stacks (ngtcp2's examples, aioquic) can talk to us.

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::Ordering;

use anyhow::{Context as _, bail};
use bytes::{Buf as _, Bytes};
use http::{Request, Response, StatusCode, header};
use tokio::io::{AsyncReadExt as _, AsyncSeekExt as _};

use crate::hq::{Download, ServerStats, Target, collect, resolve};

/// ALPN of HTTP/3.
pub const ALPN: &[u8] = b"h3";
const CHUNK: usize = 64 * 1024;

/// What a `Range` header asks of a file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ByteRange {
    /// No range (or one we do not do: another unit, several ranges): the whole file.
    Whole,
    /// Bytes `first..=last`.
    Part(u64, u64),
    /// 416.
    Unsatisfiable,
}

/// The range a `Range` header value asks of a file of `len` bytes (RFC 9110 §14).
pub fn parse_range(value: Option<&str>, len: u64) -> ByteRange {
    let Some(spec) = value.and_then(|v| v.trim().strip_prefix("bytes=")) else {
        return ByteRange::Whole;
    };
    if spec.contains(',') {
        return ByteRange::Whole;
    }
    let Some((a, b)) = spec.split_once('-') else {
        return ByteRange::Unsatisfiable;
    };
    let (a, b) = (a.trim(), b.trim());
    let last_byte = len.checked_sub(1);
    let parsed = if a.is_empty() {
        // The last `b` bytes.
        match (b.parse::<u64>(), last_byte) {
            (Ok(n), Some(end)) if n > 0 => Some((len.saturating_sub(n), end)),
            _ => None,
        }
    } else {
        let first = a.parse::<u64>().ok();
        let last = if b.is_empty() {
            last_byte
        } else {
            b.parse::<u64>()
                .ok()
                .zip(last_byte)
                .map(|(x, end)| x.min(end))
        };
        first.zip(last).filter(|&(f, l)| f < len && f <= l)
    };
    match parsed {
        Some((f, l)) => ByteRange::Part(f, l),
        None => ByteRange::Unsatisfiable,
    }
}

/// Serves one HTTP/3 connection's requests from `root`.
pub async fn serve_connection(
    conn: quinn::Connection,
    root: Arc<std::path::PathBuf>,
    stats: Arc<ServerStats>,
) {
    let mut h3 = match h3::server::builder()
        .build::<_, Bytes>(h3_quinn::Connection::new(conn))
        .await
    {
        Ok(c) => c,
        Err(e) => return tracing::debug!("HTTP/3 setup failed: {e}"),
    };
    loop {
        match h3.accept().await {
            Ok(Some(resolver)) => {
                let (root, stats) = (root.clone(), stats.clone());
                tokio::spawn(async move {
                    match resolver.resolve_request().await {
                        Ok((req, stream)) => {
                            if let Err(e) = answer(&root, req, stream, &stats).await {
                                tracing::debug!("HTTP/3 request: {e}");
                            }
                        }
                        Err(e) => tracing::debug!("HTTP/3 request headers: {e}"),
                    }
                });
            }
            Ok(None) => break,
            Err(e) => {
                tracing::debug!("HTTP/3 connection: {e}");
                break;
            }
        }
    }
}

async fn answer<S>(
    root: &Path,
    req: Request<()>,
    mut stream: h3::server::RequestStream<S, Bytes>,
    stats: &ServerStats,
) -> anyhow::Result<()>
where
    S: h3::quic::BidiStream<Bytes>,
{
    let simple = |status: StatusCode| {
        Response::builder()
            .status(status)
            .body(())
            .unwrap_or_default()
    };
    if req.method() != http::Method::GET && req.method() != http::Method::HEAD {
        stream
            .send_response(simple(StatusCode::METHOD_NOT_ALLOWED))
            .await?;
        stream.finish().await?;
        return Ok(());
    }
    let file = match resolve(root, req.uri().path()) {
        Ok(f) => f,
        Err(_) => {
            stats.refused.fetch_add(1, Ordering::Relaxed);
            stream.send_response(simple(StatusCode::NOT_FOUND)).await?;
            stream.finish().await?;
            return Ok(());
        }
    };
    let mut f = tokio::fs::File::open(&file).await?;
    let len = f.metadata().await?.len();
    let range = req
        .headers()
        .get(header::RANGE)
        .and_then(|v| v.to_str().ok());
    let (status, first, last) = match parse_range(range, len) {
        ByteRange::Whole => (StatusCode::OK, 0, len.saturating_sub(1)),
        ByteRange::Part(a, b) => (StatusCode::PARTIAL_CONTENT, a, b),
        ByteRange::Unsatisfiable => {
            let resp = Response::builder()
                .status(StatusCode::RANGE_NOT_SATISFIABLE)
                .header(header::CONTENT_RANGE, format!("bytes */{len}"))
                .body(())?;
            stream.send_response(resp).await?;
            stream.finish().await?;
            return Ok(());
        }
    };
    let n = if len == 0 { 0 } else { last - first + 1 };
    let mut resp = Response::builder()
        .status(status)
        .header(header::CONTENT_LENGTH, n)
        .header(header::ACCEPT_RANGES, "bytes");
    if status == StatusCode::PARTIAL_CONTENT {
        resp = resp.header(header::CONTENT_RANGE, format!("bytes {first}-{last}/{len}"));
    }
    stream.send_response(resp.body(())?).await?;
    if req.method() == http::Method::GET && n > 0 {
        f.seek(std::io::SeekFrom::Start(first)).await?;
        let mut left = n;
        let mut buf = vec![0u8; CHUNK];
        while left > 0 {
            let want = (left as usize).min(CHUNK);
            let got = f.read(&mut buf[..want]).await?;
            if got == 0 {
                bail!("{} shrank while being sent", file.display());
            }
            stream
                .send_data(Bytes::copy_from_slice(&buf[..got]))
                .await?;
            left -= got as u64;
        }
    }
    stream.finish().await?;
    stats.files.fetch_add(1, Ordering::Relaxed);
    stats.bytes.fetch_add(n, Ordering::Relaxed);
    Ok(())
}

/// Downloads `urls` over the HTTP/3 connection `conn` (all requests at once) into
/// `downloads`; `range`: a `Range` header value for every request.
pub async fn get(
    conn: quinn::Connection,
    urls: &[url::Url],
    downloads: &Path,
    range: Option<&str>,
) -> anyhow::Result<Vec<Download>> {
    let (mut driver, send) = h3::client::new(h3_quinn::Connection::new(conn.clone()))
        .await
        .context("HTTP/3 setup")?;
    let drive = tokio::spawn(async move {
        let _ = std::future::poll_fn(|cx| driver.poll_close(cx)).await;
    });
    let mut tasks = tokio::task::JoinSet::new();
    for u in urls {
        let mut send = send.clone();
        let target = Target::of(u, downloads)?;
        let mut req = Request::get(u.as_str());
        if let Some(r) = range {
            req = req.header(header::RANGE, r);
        }
        let req = req.body(())?;
        tasks.spawn(async move {
            let mut stream = send.send_request(req).await?;
            stream.finish().await?;
            let resp = stream.recv_response().await?;
            if !resp.status().is_success() {
                bail!("{}: {}", target.path, resp.status());
            }
            let mut sink = target.create().await?;
            while let Some(mut chunk) = stream.recv_data().await? {
                while chunk.has_remaining() {
                    let n = chunk.chunk().len();
                    sink.write(chunk.chunk()).await?;
                    chunk.advance(n);
                }
            }
            sink.finish().await
        });
    }
    let out = collect(tasks).await;
    drop(send);
    conn.close(0x100u32.into(), b""); // H3_NO_ERROR
    drive.abort();
    out
}

#[cfg(test)]
mod tests {
    use super::ByteRange::{Part, Unsatisfiable, Whole};
    use super::parse_range;

    #[test]
    fn ranges() {
        assert_eq!(parse_range(None, 10), Whole);
        assert_eq!(parse_range(Some("bytes=0-3"), 10), Part(0, 3));
        assert_eq!(parse_range(Some("bytes=4-"), 10), Part(4, 9));
        assert_eq!(parse_range(Some("bytes=-3"), 10), Part(7, 9));
        assert_eq!(parse_range(Some("bytes=-30"), 10), Part(0, 9));
        assert_eq!(parse_range(Some("bytes=5-100"), 10), Part(5, 9));
        assert_eq!(parse_range(Some("bytes=0-1,4-5"), 10), Whole);
        assert_eq!(parse_range(Some("items=0-1"), 10), Whole);
        for bad in ["bytes=10-", "bytes=5-2", "bytes=x-2", "bytes=-0", "bytes=3"] {
            assert_eq!(parse_range(Some(bad), 10), Unsatisfiable, "{bad}");
        }
        assert_eq!(parse_range(Some("bytes=0-"), 0), Unsatisfiable);
    }
}
