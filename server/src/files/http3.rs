//! HTTP/3 (hyperium's `h3` over quinn) for files: `GET /path` with `Range` support, served
//! from [`Files`] (a directory, or a node's file objects), and a client that downloads URLs.
//! Offered next to hq-interop by `segue hq serve` and by nodes' `--files-listen`, so HTTP/3
//! stacks (ngtcp2's examples, aioquic, browsers) can talk to us.

use std::sync::Arc;
use std::sync::atomic::Ordering;

use bytes::Bytes;
use http::{Request, Response, StatusCode, header};

use crate::files::stats::{ServerStats, note_0rtt};
use crate::files::{Body as _, FileError, Files, ServeError};
use crate::node::resumption::Handshake;

/// ALPN of HTTP/3.
pub const ALPN: &[u8] = segue_net::alpn::H3;

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

/// Serves one HTTP/3 connection's requests from `files`.
pub async fn serve_connection<F: Files>(
    conn: quinn::Connection,
    handshake: &Handshake,
    files: Arc<F>,
    stats: Arc<ServerStats>,
) {
    let peer = conn.remote_address().ip();
    let mut h3 = match h3::server::builder()
        .build::<_, Bytes>(h3_quinn::Connection::new(conn.clone()))
        .await
    {
        Ok(c) => c,
        Err(e) => return tracing::debug!("HTTP/3 setup failed: {e}"),
    };
    loop {
        match h3.accept().await {
            Ok(Some(resolver)) => {
                note_0rtt(&conn, handshake, &stats);
                let (files, stats) = (files.clone(), stats.clone());
                tokio::spawn(async move {
                    match resolver.resolve_request().await {
                        Ok((req, stream)) => {
                            if let Err(e) = answer(&*files, req, stream, &stats, peer).await {
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

async fn answer<F: Files, S>(
    files: &F,
    req: Request<()>,
    mut stream: h3::server::RequestStream<S, Bytes>,
    stats: &ServerStats,
    peer: std::net::IpAddr,
) -> Result<(), ServeError>
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
    let token = req
        .headers()
        .get(segue_wire::control::SEGUE_TOKEN)
        .and_then(|v| v.to_str().ok());
    if let Err(d) = files.authorize(req.uri().path(), req.uri().query(), token, peer) {
        stats.refused.fetch_add(1, Ordering::Relaxed);
        tracing::debug!(path = req.uri().path(), "HTTP/3: {d}");
        let status = StatusCode::from_u16(d.status()).unwrap_or(StatusCode::FORBIDDEN);
        stream.send_response(simple(status)).await?;
        stream.finish().await?;
        return Ok(());
    }
    let mut file = match files.open(req.uri().path()).await {
        Ok(f) => f,
        Err(e) => {
            let status = match e {
                FileError::NotFound(_) => {
                    stats.refused.fetch_add(1, Ordering::Relaxed);
                    StatusCode::NOT_FOUND
                }
                FileError::Unavailable(_) => StatusCode::BAD_GATEWAY,
                FileError::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
            };
            tracing::debug!(path = req.uri().path(), "HTTP/3: {e}");
            stream.send_response(simple(status)).await?;
            stream.finish().await?;
            return Ok(());
        }
    };
    let len = file.len;
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
        .header(header::CONTENT_TYPE, file.content_type)
        .header(header::ACCEPT_RANGES, "bytes");
    if let Some(etag) = &file.etag {
        resp = resp.header(header::ETAG, etag);
    }
    if status == StatusCode::PARTIAL_CONTENT {
        resp = resp.header(header::CONTENT_RANGE, format!("bytes {first}-{last}/{len}"));
    }
    if req.method() == http::Method::GET && n > 0 {
        // The first bytes are had before the response goes out, so a file that cannot be
        // read gets an error status rather than a cut body.
        let mut next = match file.body.next(first, last).await {
            Ok(c) => c,
            Err(e) => {
                tracing::warn!(path = req.uri().path(), "HTTP/3: {e}");
                stream
                    .send_response(simple(StatusCode::BAD_GATEWAY))
                    .await?;
                stream.finish().await?;
                return Ok(());
            }
        };
        stream.send_response(resp.body(())?).await?;
        while let Some(chunk) = next {
            stream.send_data(chunk).await?;
            next = match file.body.next(first, last).await {
                Ok(n) => n,
                Err(e) => {
                    // The length is sent: all that is left is to cut the stream, never to
                    // end it as if complete (dropping a quinn stream would finish it).
                    stream.stop_stream(h3::error::Code::H3_INTERNAL_ERROR);
                    return Err(e.into());
                }
            };
        }
    } else {
        stream.send_response(resp.body(())?).await?;
    }
    stats.files.fetch_add(1, Ordering::Relaxed);
    stats.bytes.fetch_add(n, Ordering::Relaxed);
    stream.finish().await?;
    Ok(())
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
