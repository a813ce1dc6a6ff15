//! The lab's HLS player: what an HLS viewer does, with `segue-play`'s accounting.
//!
//! It fetches the media playlist, then the segments in order over one HTTPS/1.1 keep-alive
//! connection (as hls.js does by default), at most `max_ahead` of media ahead of the playout
//! position. Bytes are parsed as they arrive (`ts::TsProgress`), so a frame counts as soon as
//! it is complete, not when its segment is: the most generous reading for HLS. Playout is
//! `segue-play`'s (the same `segue_client::playout::PlayoutClock`): playback starts once
//! the least-buffered stream holds the startup buffer (or the whole object is in), a stall is the playout position reaching media not yet arrived,
//! it ends when arrival resumes, and a stall longer than the stall timeout fails the play.
//! A failed request is retried on a new connection from the byte it stopped at (a Range
//! request), up to [`RETRIES`] times.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context as _, anyhow, bail};
use bytes::Bytes;
use http_body_util::{BodyExt as _, Empty};
use hyper::client::conn::http1::SendRequest;
use hyper::{Request, StatusCode, header};
use hyper_util::rt::TokioIo;
use ring::digest::{Context, SHA256};
use segue_client::Report;
use segue_client::playout::PlayoutClock;
use std::time::Instant;
use tokio::sync::{mpsc, watch};
use tokio_rustls::TlsConnector;
use tokio_rustls::rustls::ClientConfig;
use tokio_rustls::rustls::pki_types::ServerName;

use super::prepare::{HlsObject, parse_playlist};
use super::ts::TsProgress;

/// Attempts per request after the first.
pub const RETRIES: u32 = 3;
/// Largest playlist accepted.
const MAX_PLAYLIST: usize = 1 << 20;

/// One HLS play.
#[derive(Debug, Clone)]
pub struct HlsPlayOptions {
    /// The edge (or the relay in front of it).
    pub addr: SocketAddr,
    /// TLS server name (and Host).
    pub host: String,
    /// Object name: the playlist is `/<object>/index.m3u8`.
    pub object: String,
    pub tls: Arc<ClientConfig>,
    pub startup_buffer: Duration,
    pub stall_timeout: Duration,
    pub connect_timeout: Duration,
    /// Quit after this much media (an early quit).
    pub watch: Option<Duration>,
    pub buffer_samples: Option<Duration>,
    /// Media fetched ahead of the playout position, at most (hls.js: 30 s).
    pub max_ahead: Duration,
    /// What the origin holds, to check the bytes against.
    pub expected: Option<Arc<HlsObject>>,
    /// Connect from this local address (a lab player's own); any by default.
    pub bind: Option<std::net::IpAddr>,
}

impl HlsPlayOptions {
    pub fn url(&self) -> String {
        format!(
            "https://{}:{}/{}/index.m3u8",
            self.host,
            self.addr.port(),
            self.object
        )
    }
}

enum Ev {
    /// Connected after this many ms; whether TLS resumed a session.
    Connected(f64, bool),
    Playlist(Vec<(String, f64)>),
    Data(Bytes),
    /// Segment done; media before this time (µs) has arrived.
    SegmentDone(u64),
    Failed(String),
}

/// Where a response body goes.
enum Sink<'a> {
    /// Kept in memory, at most `limit` bytes (the playlist).
    Memory(&'a mut Vec<u8>, usize),
    /// Passed to the playout loop as it arrives (segments).
    Player(&'a mpsc::Sender<Ev>),
}

impl Sink<'_> {
    async fn put(&mut self, b: Bytes) -> anyhow::Result<()> {
        match self {
            Sink::Memory(v, limit) => {
                if v.len() + b.len() > *limit {
                    bail!("response larger than {limit} bytes");
                }
                v.extend_from_slice(&b);
                Ok(())
            }
            Sink::Player(tx) => tx
                .send(Ev::Data(b))
                .await
                .map_err(|_| anyhow!("player gone")),
        }
    }
}

struct Http {
    opts: HlsPlayOptions,
    sender: Option<SendRequest<Empty<Bytes>>>,
}

impl Http {
    /// Connects; returns the time it took (ms) and whether TLS resumed a session.
    async fn connect(&mut self) -> anyhow::Result<(f64, bool)> {
        let t = Instant::now();
        let o = &self.opts;
        let fut = async {
            let socket = if o.addr.is_ipv4() {
                tokio::net::TcpSocket::new_v4()?
            } else {
                tokio::net::TcpSocket::new_v6()?
            };
            if let Some(ip) = o.bind {
                socket.bind(SocketAddr::new(ip, 0))?;
            }
            let tcp = socket.connect(o.addr).await?;
            tcp.set_nodelay(true)?;
            let name = ServerName::try_from(o.host.clone())?;
            let tls = TlsConnector::from(o.tls.clone()).connect(name, tcp).await?;
            let resumed = tls.get_ref().1.handshake_kind()
                == Some(tokio_rustls::rustls::HandshakeKind::Resumed);
            let (sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(tls)).await?;
            tokio::spawn(async move {
                let _ = conn.await;
            });
            anyhow::Ok((sender, resumed))
        };
        let (sender, resumed) = tokio::time::timeout(o.connect_timeout, fut)
            .await
            .map_err(|_| anyhow!("no connection within {:?}", o.connect_timeout))??;
        self.sender = Some(sender);
        Ok((t.elapsed().as_secs_f64() * 1000.0, resumed))
    }

    /// GETs `path` from byte `*got` on, passing body chunks to `sink` and counting them in
    /// `got` (so a retry knows where to continue).
    async fn get(&mut self, path: &str, got: &mut u64, sink: &mut Sink<'_>) -> anyhow::Result<()> {
        if self.sender.as_ref().is_none_or(|s| s.is_closed()) {
            self.connect().await?;
        }
        let sender = self.sender.as_mut().context("no connection")?;
        let mut req = Request::get(path).header(header::HOST, self.opts.host.as_str());
        if *got > 0 {
            req = req.header(header::RANGE, format!("bytes={got}-"));
        }
        let req = req.body(Empty::<Bytes>::new())?;
        let wait = self.opts.stall_timeout;
        tokio::time::timeout(wait, sender.ready())
            .await
            .map_err(|_| anyhow!("connection not ready within {wait:?}"))??;
        let resp = tokio::time::timeout(wait, sender.send_request(req))
            .await
            .map_err(|_| anyhow!("no response within {wait:?}"))??;
        let want = if *got > 0 {
            StatusCode::PARTIAL_CONTENT
        } else {
            StatusCode::OK
        };
        if resp.status() != want {
            bail!("GET {path}: {}", resp.status());
        }
        let mut body = resp.into_body();
        loop {
            let frame = tokio::time::timeout(wait, body.frame())
                .await
                .map_err(|_| anyhow!("GET {path}: no bytes for {wait:?}"))?;
            let Some(f) = frame else { return Ok(()) };
            if let Ok(data) = f?.into_data() {
                *got += data.len() as u64;
                sink.put(data).await?;
            }
        }
    }

    /// GET with retries, each continuing from the byte the last one stopped at.
    async fn get_all(&mut self, path: &str, sink: &mut Sink<'_>) -> anyhow::Result<()> {
        let mut got = 0;
        let mut backoff = Duration::from_millis(200);
        let mut attempt = 0;
        loop {
            match self.get(path, &mut got, sink).await {
                Ok(()) => return Ok(()),
                Err(e) if attempt < RETRIES => {
                    tracing::debug!("GET {path} failed at byte {got}, retrying: {e:#}");
                    attempt += 1;
                    self.sender = None;
                    tokio::time::sleep(backoff).await;
                    backoff *= 2;
                }
                Err(e) => return Err(e),
            }
        }
    }
}

/// Fetches the playlist and the segments in order, no further than `max_ahead` past the
/// playout position (`position`, media µs).
async fn download(opts: HlsPlayOptions, tx: mpsc::Sender<Ev>, mut position: watch::Receiver<u64>) {
    let r = async {
        let mut http = Http {
            opts: opts.clone(),
            sender: None,
        };
        let (ms, resumed) = http.connect().await?;
        let _ = tx.send(Ev::Connected(ms, resumed)).await;
        let base = format!("/{}/", opts.object);
        let mut text = Vec::new();
        http.get_all(
            &format!("{base}index.m3u8"),
            &mut Sink::Memory(&mut text, MAX_PLAYLIST),
        )
        .await
        .context("playlist")?;
        let segments = parse_playlist(&text)?;
        if segments.is_empty() {
            bail!("empty playlist");
        }
        let _ = tx.send(Ev::Playlist(segments.clone())).await;
        let mut start_us = 0u64;
        for (uri, dur) in segments {
            let ahead = opts.max_ahead.as_micros() as u64;
            // Wait while this segment starts more than max_ahead past the playout position.
            while start_us > position.borrow().saturating_add(ahead) {
                if position.changed().await.is_err() {
                    return Ok(());
                }
            }
            if uri.contains("..") || uri.starts_with('/') || uri.contains("://") {
                bail!("playlist entry {uri:?} is not a plain segment name");
            }
            http.get_all(&format!("{base}{uri}"), &mut Sink::Player(&tx))
                .await?;
            start_us += (dur * 1e6) as u64;
            if tx.send(Ev::SegmentDone(start_us)).await.is_err() {
                return Ok(());
            }
        }
        anyhow::Ok(())
    }
    .await;
    if let Err(e) = r {
        let _ = tx.send(Ev::Failed(format!("{e:#}"))).await;
    }
}

/// Plays one object; never fails, the report says what happened.
pub async fn play(opts: &HlsPlayOptions) -> Report {
    let mut report = Report {
        url: opts.url(),
        paced: true,
        ..Report::default()
    };
    let t_req = Instant::now();
    let r = play_inner(opts, &mut report, t_req).await;
    report.finish(t_req, r);
    report
}

async fn play_inner(
    opts: &HlsPlayOptions,
    report: &mut Report,
    t_click: Instant,
) -> anyhow::Result<()> {
    // TTFF and playback start count from the request after the handshake, as segue-play's
    // do (the first playlist request follows the TLS handshake at once); click to first
    // frame from the start.
    let mut t_req = t_click;
    // Events are bounded: the downloader's chunks wait for the playout loop (64 KiB each at
    // most with hyper's default buffer), so memory per play stays small.
    let (tx, mut rx) = mpsc::channel(256);
    let (pos_tx, pos_rx) = watch::channel(0u64);
    let dl = tokio::spawn(download(opts.clone(), tx, pos_rx));
    let _abort = AbortOnDrop(dl);

    let mut ts = TsProgress::default();
    let mut hash = Context::new(&SHA256);
    let mut duration_us: Option<u64> = None;
    let mut all_in = false;
    let mut clock: Option<PlayoutClock> = None;
    let mut last_sample: Option<Instant> = None;
    let mut tick = tokio::time::interval(Duration::from_millis(2));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    let startup_us = opts.startup_buffer.as_micros() as u64;

    loop {
        tokio::select! {
            ev = rx.recv(), if !all_in => match ev {
                Some(Ev::Connected(ms, resumed)) => {
                    if report.connect_ms.is_none() {
                        t_req = Instant::now();
                        report.resumed = Some(resumed);
                    }
                    report.connect_ms.get_or_insert(ms);
                }
                Some(Ev::Playlist(segs)) => {
                    duration_us = Some(segs.iter().map(|(_, d)| (d * 1e6) as u64).sum());
                }
                Some(Ev::Data(b)) => {
                    report.bytes += b.len() as u64;
                    hash.update(&b);
                    ts.push(&b);
                    if let Some(e) = ts.error() {
                        bail!("bad MPEG-TS from the server: {e}");
                    }
                }
                Some(Ev::SegmentDone(end_us)) => {
                    ts.finish_segment_at(end_us);
                    if duration_us.is_some_and(|d| end_us >= d) {
                        all_in = true;
                    }
                }
                Some(Ev::Failed(e)) => bail!("{e}"),
                None => bail!("download ended early"),
            },
            _ = tick.tick() => {}
        }
        if report.ttff_ms.is_none() && ts.frames() > 0 {
            report.ttff_ms = Some(t_req.elapsed().as_secs_f64() * 1000.0);
            report.click_ms = Some(t_click.elapsed().as_secs_f64() * 1000.0);
        }
        let now = Instant::now();
        let buffered = ts.buffered_us().unwrap_or(0);
        let Some(clock) = clock.as_mut() else {
            if ts.frames() > 0 && (all_in || buffered >= startup_us) {
                clock = Some(PlayoutClock::start(now));
                report.startup_ms = Some(t_req.elapsed().as_secs_f64() * 1000.0);
            } else if t_click.elapsed() > opts.stall_timeout + opts.connect_timeout
                && ts.frames() == 0
            {
                bail!("no playable media within {:?}", opts.stall_timeout);
            }
            continue;
        };
        let end = duration_us.unwrap_or(u64::MAX);
        let pos = clock.position_us(now).min(end);
        let _ = pos_tx.send(pos);
        let missing = pos >= buffered && !(all_in && pos >= end);
        if clock.update(missing, now) {
            report.stalls += 1;
        }
        report.stall_ms = clock.stall_time(now).as_secs_f64() * 1000.0;
        if clock.stalled_for(now) > opts.stall_timeout {
            bail!("stalled for {:?}: no media arriving", opts.stall_timeout);
        }
        if let Some(every) = opts.buffer_samples
            && last_sample.is_none_or(|t: Instant| t.elapsed() >= every)
        {
            last_sample = Some(now);
            let level = buffered.saturating_sub(pos);
            report
                .buffer
                .push([t_req.elapsed().as_secs_f64(), level as f64 / 1000.0]);
        }
        if let Some(w) = opts.watch
            && !clock.is_stalled()
            && pos >= w.as_micros() as u64
        {
            report.watched_until_s = Some(pos as f64 / 1e6);
            break;
        }
        if all_in && pos >= end {
            break;
        }
    }
    report.frames_received = ts.frames();
    if let Some(x) = &opts.expected {
        report.frames_expected = x.frames;
        if report.watched_until_s.is_none() {
            report.hash_ok = hash.finish().as_ref() == x.sha256;
            report.lost_frames = x.frames.saturating_sub(report.frames_received);
        }
    }
    Ok(())
}

struct AbortOnDrop(tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// Fetches `/<object>/index.m3u8` and its first `segments` segments through `opts.addr`
/// (pre-positioning an edge's prefix, as Segue's edges warm theirs). Returns bytes fetched.
pub async fn warm(opts: &HlsPlayOptions, segments: usize) -> anyhow::Result<u64> {
    let mut http = Http {
        opts: opts.clone(),
        sender: None,
    };
    let base = format!("/{}/", opts.object);
    let mut text = Vec::new();
    http.get_all(
        &format!("{base}index.m3u8"),
        &mut Sink::Memory(&mut text, MAX_PLAYLIST),
    )
    .await?;
    let mut n = text.len() as u64;
    for (uri, _) in parse_playlist(&text)?.into_iter().take(segments) {
        let mut seg = Vec::new();
        http.get_all(
            &format!("{base}{uri}"),
            &mut Sink::Memory(&mut seg, 256 << 20),
        )
        .await?;
        n += seg.len() as u64;
    }
    Ok(n)
}
