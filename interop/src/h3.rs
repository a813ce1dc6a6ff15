//! The HTTP/3 side of the interop client (hyperium's `h3` over quinn): GET requests, an
//! optional `Range`, bodies written and hashed as they arrive, lengths checked.

use std::path::Path;

use anyhow::{Context as _, bail};
use bytes::Buf as _;
use http::{Request, header};

use crate::download::{Download, Target, collect};

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
            let length = resp
                .headers()
                .get(header::CONTENT_LENGTH)
                .and_then(|v| v.to_str().ok()?.parse::<u64>().ok());
            let mut sink = target.create().await?;
            while let Some(mut chunk) = stream.recv_data().await? {
                while chunk.has_remaining() {
                    let n = chunk.chunk().len();
                    sink.write(chunk.chunk()).await?;
                    chunk.advance(n);
                }
            }
            let got = sink.finish().await?;
            if let Some(want) = length
                && want != got.bytes
            {
                bail!("{}: {} bytes of {want}", got.path, got.bytes);
            }
            Ok(got)
        });
    }
    let out = collect(tasks).await;
    drop(send);
    conn.close(0x100u32.into(), b""); // H3_NO_ERROR
    drive.abort();
    out
}
