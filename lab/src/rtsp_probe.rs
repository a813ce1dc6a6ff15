//! A minimal RTSP 1.0 client that times a start as ffmpeg makes it (`-rtsp_transport tcp`):
//! TCP connect, OPTIONS, DESCRIBE, SETUP per track, PLAY, each waiting for its answer (RTSP
//! 1.0 cannot pipeline them), then the first complete video frame (the RTP marker bit on the
//! video track's channel). `segue-lab bench` prints it beside segue-play's click to first
//! frame; the tests play with the real ffmpeg and GStreamer.

use std::net::SocketAddr;
use std::time::Duration;

use anyhow::{Context as _, bail};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::time::Instant;

/// What a probe measured, ms from the click (before the TCP connect).
#[derive(Debug, Clone, Copy)]
pub struct RtspStart {
    pub connected_ms: f64,
    pub played_ms: f64,
    pub first_frame_ms: f64,
    /// Requests answered before the first frame (each a round trip).
    pub requests: usize,
}

struct Conn {
    s: TcpStream,
    buf: Vec<u8>,
    cseq: u32,
}

impl Conn {
    /// Sends a request and reads its answer (head and body), skipping interleaved frames.
    async fn ask(&mut self, method: &str, url: &str, headers: &str) -> anyhow::Result<String> {
        self.cseq += 1;
        let req = format!(
            "{method} {url} RTSP/1.0\r\nCSeq: {}\r\n{headers}\r\n",
            self.cseq
        );
        self.s.write_all(req.as_bytes()).await?;
        loop {
            if self.buf.first() == Some(&b'$') && self.buf.len() >= 4 {
                let n = 4 + usize::from(u16::from_be_bytes([self.buf[2], self.buf[3]]));
                if self.buf.len() >= n {
                    self.buf.drain(..n);
                    continue;
                }
            } else if let Some(end) = self.buf.windows(4).position(|w| w == b"\r\n\r\n") {
                let head = String::from_utf8_lossy(&self.buf[..end]).into_owned();
                let body = head
                    .lines()
                    .find_map(|l| l.strip_prefix("Content-Length:"))
                    .map_or(Ok(0), |v| v.trim().parse::<usize>())?;
                if self.buf.len() >= end + 4 + body {
                    let all = String::from_utf8_lossy(&self.buf[..end + 4 + body]).into_owned();
                    self.buf.drain(..end + 4 + body);
                    if !all.starts_with("RTSP/1.0 200") {
                        bail!("{method} {url}: {}", all.lines().next().unwrap_or(""));
                    }
                    return Ok(all);
                }
            }
            self.fill().await?;
        }
    }

    async fn fill(&mut self) -> anyhow::Result<()> {
        let mut b = [0u8; 16 * 1024];
        let n = self.s.read(&mut b).await?;
        if n == 0 {
            bail!("the server closed the connection");
        }
        self.buf.extend_from_slice(&b[..n]);
        Ok(())
    }

    /// Reads until an RTP packet with the marker bit on `channel`.
    async fn first_frame(&mut self, channel: u8) -> anyhow::Result<()> {
        loop {
            while self.buf.len() >= 4 && self.buf[0] == b'$' {
                let n = 4 + usize::from(u16::from_be_bytes([self.buf[2], self.buf[3]]));
                if self.buf.len() < n {
                    break;
                }
                let marker = n > 5 && self.buf[5] & 0x80 != 0;
                let ch = self.buf[1];
                self.buf.drain(..n);
                if ch == channel && marker {
                    return Ok(());
                }
            }
            if !self.buf.is_empty() && self.buf[0] != b'$' {
                bail!("expected interleaved media, got {:?}", self.buf.first());
            }
            self.fill().await?;
        }
    }
}

/// Times one start of `object` from the RTSP face at `addr` (ffmpeg's request sequence).
pub async fn start(addr: SocketAddr, object: &str) -> anyhow::Result<RtspStart> {
    let click = Instant::now();
    let ms = |t: Instant| t.duration_since(click).as_secs_f64() * 1000.0;
    let s = tokio::time::timeout(Duration::from_secs(10), TcpStream::connect(addr))
        .await
        .context("connect timed out")??;
    s.set_nodelay(true)?;
    let connected = Instant::now();
    let mut c = Conn {
        s,
        buf: Vec::new(),
        cseq: 0,
    };
    let url = format!("rtsp://127.0.0.1:{}/{object}", addr.port());
    let run = async {
        c.ask("OPTIONS", &url, "").await?;
        let sdp = c
            .ask("DESCRIBE", &url, "Accept: application/sdp\r\n")
            .await?;
        let controls: Vec<String> = sdp
            .lines()
            .skip_while(|l| !l.starts_with("m="))
            .filter_map(|l| l.strip_prefix("a=control:"))
            .map(str::to_owned)
            .collect();
        let video = sdp
            .lines()
            .filter(|l| l.starts_with("m="))
            .position(|l| l.starts_with("m=video"))
            .context("no video track")?;
        let mut session = String::new();
        for (i, control) in controls.iter().enumerate() {
            let mut h = format!(
                "Transport: RTP/AVP/TCP;unicast;interleaved={}-{}\r\n",
                2 * i,
                2 * i + 1
            );
            if !session.is_empty() {
                h.push_str(&format!("Session: {session}\r\n"));
            }
            let a = c.ask("SETUP", control, &h).await?;
            session = a
                .lines()
                .find_map(|l| l.strip_prefix("Session: "))
                .context("no Session")?
                .split(';')
                .next()
                .unwrap_or("")
                .to_owned();
        }
        c.ask(
            "PLAY",
            &url,
            &format!("Range: npt=0.000-\r\nSession: {session}\r\n"),
        )
        .await?;
        let played = Instant::now();
        c.first_frame(u8::try_from(2 * video)?).await?;
        Ok::<_, anyhow::Error>((played, 3 + controls.len()))
    };
    let (played, requests) = tokio::time::timeout(Duration::from_secs(20), run)
        .await
        .context("no first frame within 20 s")??;
    Ok(RtspStart {
        connected_ms: ms(connected),
        played_ms: ms(played),
        first_frame_ms: ms(Instant::now()),
        requests,
    })
}
