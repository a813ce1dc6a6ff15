//! A bulk TCP flow for the lab: a source that sends bytes to whoever connects, and a sink
//! that reads them and measures the rate. The competing flow of a shared-bottleneck scenario
//! and the kernel-TCP half of the fabric's tests (`segue-lab bulk` runs the source inside a
//! node's namespace).

use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use anyhow::Context as _;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpSocket};
use tokio::time::Instant;

/// Connections served at once at most.
const MAX_CONNECTIONS: usize = 64;

/// Sends `bytes` (None: until the peer closes) of zeros to every connection on `listener`.
pub async fn serve(listener: TcpListener, bytes: Option<u64>) -> anyhow::Result<()> {
    let slots = std::sync::Arc::new(tokio::sync::Semaphore::new(MAX_CONNECTIONS));
    loop {
        let (mut s, peer) = listener.accept().await.context("accepting")?;
        let Ok(permit) = slots.clone().try_acquire_owned() else {
            tracing::warn!(%peer, "bulk source: too many connections, refused");
            continue;
        };
        tokio::spawn(async move {
            let _permit = permit;
            let buf = vec![0u8; 64 * 1024];
            let mut left = bytes.unwrap_or(u64::MAX);
            while left > 0 {
                let n = left.min(buf.len() as u64) as usize;
                if s.write_all(&buf[..n]).await.is_err() {
                    return;
                }
                left -= n as u64;
            }
            let _ = s.shutdown().await;
        });
    }
}

/// What a sink read.
#[derive(Debug, Clone, Copy, serde::Serialize)]
pub struct Fetched {
    pub bytes: u64,
    /// From the connect to the last byte.
    pub secs: f64,
}

impl Fetched {
    pub fn mbps(&self) -> f64 {
        self.bytes as f64 * 8.0 / self.secs.max(1e-9) / 1e6
    }
}

/// Connects to `to` (from `from`, if given) and reads until the source closes, `max` bytes
/// were read, or `until` passed.
pub async fn fetch(
    from: Option<IpAddr>,
    to: SocketAddr,
    max: Option<u64>,
    until: Option<Duration>,
) -> anyhow::Result<Fetched> {
    let socket = if to.is_ipv4() {
        TcpSocket::new_v4()?
    } else {
        TcpSocket::new_v6()?
    };
    if let Some(ip) = from {
        socket
            .bind(SocketAddr::new(ip, 0))
            .with_context(|| format!("cannot bind to {ip}"))?;
    }
    let t0 = Instant::now();
    let mut s = tokio::time::timeout(Duration::from_secs(30), socket.connect(to))
        .await
        .with_context(|| format!("no connection to {to} within 30 s"))?
        .with_context(|| format!("cannot connect to {to}"))?;
    let end = until.map(|d| t0 + d);
    let mut buf = vec![0u8; 64 * 1024];
    let mut bytes = 0u64;
    let mut last = t0;
    loop {
        let read = match end {
            Some(e) => match tokio::time::timeout_at(e, s.read(&mut buf)).await {
                Ok(r) => r,
                Err(_) => break,
            },
            None => s.read(&mut buf).await,
        };
        let n = read.context("reading")?;
        if n == 0 {
            break;
        }
        bytes += n as u64;
        last = Instant::now();
        if max.is_some_and(|m| bytes >= m) {
            break;
        }
    }
    Ok(Fetched {
        bytes,
        secs: last.duration_since(t0).as_secs_f64(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_sink_reads_what_the_source_sends() {
        let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = l.local_addr().unwrap();
        tokio::spawn(serve(l, Some(3_000_000)));
        let f = fetch(None, addr, None, None).await.unwrap();
        assert_eq!(f.bytes, 3_000_000);
        let f = fetch(None, addr, Some(100_000), None).await.unwrap();
        assert!(f.bytes >= 100_000 && f.bytes < 3_000_000, "{f:?}");
    }
}
