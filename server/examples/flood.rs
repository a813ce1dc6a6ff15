//! Measures what a stranger's floods cost a running node (issue 21), by hand: RSS of the
//! node before, during and after.
//!
//!     cargo run --release -p segue-server --example flood -- pipelined PORT CA PID [COUNT]
//!     cargo run --release -p segue-server --example flood -- advert PORT CA PID [STREAMS]
//!
//! `pipelined`: COUNT (1 000 000) SETUPs with fresh `Pipelined-Requests` values on one
//! control stream, each failing (no Transport). `advert`: STREAMS (256) streams each
//! carrying a ~1 MiB ADVERT of ~80 000 objects, from a connection without a node
//! certificate. PID is the node's process, whose VmRSS is printed.

use std::sync::Arc;
use std::time::{Duration, Instant};

use quinn::crypto::rustls::QuicClientConfig;
use segue_wire::ObjectName;
use segue_wire::advert::{Advert, Holding, Ranges};

fn rss_kb(pid: &str) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("VmRSS:"))
                .and_then(|v| v.split_whitespace().next()?.parse().ok())
        })
        .unwrap_or(0)
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().collect();
    let [_, mode, port, ca, pid, rest @ ..] = &args[..] else {
        anyhow::bail!("usage: flood pipelined|advert PORT CA PID [COUNT]");
    };
    let count: usize = rest.first().map_or(Ok(0), |c| c.parse())?;
    let tls = segue_certs::tls::client_config(std::path::Path::new(ca), &[segue_wire::ALPN])?;
    let mut ep = quinn::Endpoint::client("127.0.0.1:0".parse()?)?;
    ep.set_default_client_config(quinn::ClientConfig::new(Arc::new(
        QuicClientConfig::try_from(tls)?,
    )));
    let conn = ep
        .connect(format!("127.0.0.1:{port}").parse()?, "localhost")?
        .await?;
    println!("RSS before: {} kB", rss_kb(pid));
    let t = Instant::now();
    let (mut control, mut answers) = conn.open_bi().await?;
    match mode.as_str() {
        "pipelined" => {
            let n = if count == 0 { 1_000_000 } else { count };
            let reader = tokio::spawn(async move {
                let mut buf = vec![0u8; 1 << 16];
                let mut seen = 0usize;
                let mut tail = Vec::new();
                while seen < n {
                    let Ok(Some(k)) = answers.read(&mut buf).await else {
                        break;
                    };
                    tail.extend_from_slice(&buf[..k]);
                    let text = String::from_utf8_lossy(&tail);
                    seen += text.matches("RTSP/2.0 ").count();
                    let keep = tail.len().min(16);
                    tail = tail.split_off(tail.len() - keep);
                }
                seen
            });
            let mut batch = String::new();
            for p in 1..=n {
                batch.push_str(&format!(
                    "SETUP segue://localhost:{port}/demo RTSP/2.0\r\nCSeq: {p}\r\nPipelined-Requests: {p}\r\n\r\n"
                ));
                if p % 1000 == 0 || p == n {
                    control.write_all(batch.as_bytes()).await?;
                    batch.clear();
                }
            }
            let seen = reader.await?;
            println!("{seen} answers in {:?}", t.elapsed());
        }
        "advert" => {
            let streams = if count == 0 { 256 } else { count };
            control
                .write_all(b"OPTIONS segue://localhost/ RTSP/2.0\r\nCSeq: 1\r\n\r\n")
                .await?;
            let holdings: Vec<Holding> = (0..80_000)
                .map(|i| Holding {
                    object: ObjectName::new(&format!("o{i}"), 64).expect("a name"),
                    revision: 1,
                    segments: Ranges::from_indices([0u64, 1, 2]),
                })
                .collect();
            let frame = Advert {
                sender: "localhost".into(),
                epoch: 1,
                version: 1,
                base: 0,
                period_ms: 1000,
                holdings,
            }
            .encode();
            println!("advert frame: {} bytes", frame.len());
            let frame = bytes::Bytes::from(frame);
            let mut tasks = Vec::new();
            for _ in 0..streams {
                let (conn, frame) = (conn.clone(), frame.clone());
                tasks.push(tokio::spawn(async move {
                    let Ok((mut s, mut r)) = conn.open_bi().await else {
                        return false;
                    };
                    let _ = s.write_all(&frame).await;
                    let _ = s.finish();
                    r.read_to_end(1 << 16).await.is_ok()
                }));
            }
            let mut answered = 0;
            for t in tasks {
                answered += usize::from(t.await.unwrap_or(false));
            }
            println!("{answered} of {streams} answered in {:?}", t.elapsed());
        }
        m => anyhow::bail!("unknown mode {m}"),
    }
    println!("RSS, connection open: {} kB", rss_kb(pid));
    conn.close(0u32.into(), b"done");
    drop(control);
    tokio::time::sleep(Duration::from_secs(3)).await;
    println!("RSS, 3 s after close: {} kB", rss_kb(pid));
    Ok(())
}
