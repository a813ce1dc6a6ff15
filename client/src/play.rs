//! Playing one object: pipelined start, RoQ/RTP reception, depacketizing, a playout clock with
//! stall accounting, and verification against the manifest.

use std::collections::BTreeMap;
use std::io::{IsTerminal, Write};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context as _, anyhow, bail};
use bytes::Bytes;
use ring::digest::{Context, SHA256};
use segue_wire::control::{Message, Method, Request, Response, SDP_CONTENT_TYPE};
use segue_wire::payload::{aac, h264};
use segue_wire::roq::{RoqDecoder, RoqItem};
use segue_wire::rtp::{FrameInfo, RtpPacket};
use segue_wire::sdp::{Codec, Description};
use segue_wire::segment::{
    Frame, Manifest, ResponseFrame, SegmentRequest, Status, decode_response_frame,
};
use segue_wire::{Limits, Resource, SegueUrl};
use tokio::sync::{mpsc, oneshot, watch};
use tokio::time::Instant;

use crate::playout::PlayoutClock;
use crate::report::{Report, TrackReport};
use crate::session::{ConnectOptions, connect_with};

/// How to play.
#[derive(Debug, Clone)]
pub struct PlayOptions {
    pub url: SegueUrl,
    pub ca: PathBuf,
    /// Media buffered before playback starts, at least.
    pub startup_buffer: Duration,
    /// ... and at least this many round trips of the connection's (smoothed) RTT of media:
    /// a lost packet holds its stream for about 1.1 RTT before its retransmission arrives,
    /// a lost retransmission for as long again (plus a probe timeout when it was a tail),
    /// while start-up on a long path is still ramping up; 500 ms alone stalled plays at
    /// 150 ms RTT with 3 % loss (docs/TRANSPORT.md). Default 4.
    pub startup_rtts: f64,
    /// Play in real time (false: consume as fast as possible, server unpaced).
    pub pace: bool,
    pub connect_timeout: Duration,
    /// Give up when no media arrives for this long, or skip a gap that lasts this long.
    pub stall_timeout: Duration,
    /// Write received video as Annex-B H.264 here (audio as ADTS next to it, `.aac`).
    pub record: Option<PathBuf>,
    /// One-line live display on stderr (only when it is a terminal).
    pub progress: bool,
    /// Stop after this much media has played (a viewer who quits); None plays to the end.
    pub watch: Option<Duration>,
    /// Record the buffer level this often into `Report::buffer`.
    pub buffer_samples: Option<Duration>,
    /// Give up at this instant with what was measured so far (a lab run's time bound).
    pub give_up_at: Option<tokio::time::Instant>,
    /// Other nodes serving the same object (the object URL on each), tried in order when the
    /// current one fails (or cannot be reached): its connection or control stream lost, the
    /// session ended by it, no media for `failover_after` during playback, or a stall past
    /// `stall_timeout`. Playback goes on from the buffer meanwhile and resumes there from
    /// where the buffer ends.
    pub fallbacks: Vec<SegueUrl>,
    /// With a fallback left: a node that sends no media for this long during playback (the
    /// stream not complete) is taken as failing. A paced node sends frames continuously, some
    /// seconds ahead, so this is well within the player's buffer.
    pub failover_after: Duration,
    /// The source address and transport settings of its connections.
    pub connect: ConnectOptions,
}

/// The error of a play stopped by [`PlayOptions::give_up_at`] ([`Report::gave_up`]).
#[derive(Debug, thiserror::Error)]
#[error("stopped at the run's time bound")]
pub struct GaveUp;

impl PlayOptions {
    pub fn new(url: SegueUrl, ca: PathBuf) -> Self {
        Self {
            url,
            ca,
            startup_buffer: Duration::from_millis(500),
            startup_rtts: 4.0,
            pace: true,
            connect_timeout: Duration::from_secs(10),
            stall_timeout: Duration::from_secs(10),
            record: None,
            progress: false,
            watch: None,
            buffer_samples: None,
            give_up_at: None,
            fallbacks: Vec::new(),
            failover_after: Duration::from_secs(1),
            connect: ConnectOptions::default(),
        }
    }
}

/// A frame rebuilt from one RoQ stream.
#[derive(Debug)]
struct FrameIn {
    track: u32,
    first_seq: u16,
    last_seq: u16,
    timestamp: u32,
    info: FrameInfo,
    data: Bytes,
    wire_bytes: u64,
}

enum Event {
    Frame(FrameIn),
    StreamFailed(String),
}

struct TrackState {
    clock: u32,
    codec: Codec,
    /// RTP timestamp offset (from RTP-Info).
    offset: Option<u32>,
    /// Extended sequence number of the next frame's first packet.
    next_seq: Option<i64>,
    /// Extended sequence number of the last packet (from PLAY_NOTIFY end-of-stream).
    last_seq: Option<i64>,
    pending: BTreeMap<i64, FrameIn>,
    last_pts: Option<u64>,
    last_dts_us: Option<u64>,
    interval_us: u64,
    hash: Context,
    frames: u64,
    late: u64,
    /// After a failover: frames decoded at or before this (µs) were played or carried
    /// over already (the new node sends them again).
    played_through_us: Option<u64>,
    /// After a failover: what the old node sent and was not played yet, in order, with its
    /// pts (the old node's RTP numbering is gone); played before the new node's frames.
    carry: std::collections::VecDeque<(u64, FrameIn)>,
}

impl TrackState {
    fn extend(&self, seq: u16) -> i64 {
        let base = self.next_seq.unwrap_or(i64::from(seq));
        base + i64::from(seq.wrapping_sub(base as u16) as i16)
    }

    /// Media held in order from the next frame to play, microseconds.
    fn buffered_us(&self) -> u64 {
        let off = self.offset.unwrap_or(0);
        let mut seq = self.next_seq;
        // Timestamps as pts modulo 2^32, in which carried frames and the new node's agree.
        let mut span = match (self.carry.front(), self.carry.back()) {
            (Some((a, _)), Some((b, _))) => Some((*a as u32, *b as u32)),
            _ => None,
        };
        while let Some(f) = seq.and_then(|k| self.pending.get(&k)) {
            let ts = f.timestamp.wrapping_sub(off);
            span = Some(span.map_or((ts, ts), |(a, _)| (a, ts)));
            seq = Some(self.extend(f.last_seq) + 1);
        }
        span.map_or(0, |(a, b): (u32, u32)| {
            u64::from(b.wrapping_sub(a)) * 1_000_000 / u64::from(self.clock.max(1))
        })
    }

    /// A failover: the frames held in order from the next one to play move to `carry` (with
    /// their pts: the old node's numbering ends here), the rest is dropped, and the track
    /// waits for the new node's numbering.
    fn carry_over(&mut self) {
        let mut prev = self.carry.back().map(|(p, _)| *p).or(self.last_pts);
        while let Some(f) = self.next_seq.and_then(|k| self.pending.remove(&k)) {
            self.next_seq = Some(self.extend(f.last_seq) + 1);
            let pts = unwrap_pts(f.timestamp.wrapping_sub(self.offset.unwrap_or(0)), prev);
            prev = Some(pts);
            // Sent again after an earlier failover and had already been played or carried.
            let dts = dts_us(pts, f.info.cto, self.clock);
            if self.played_through_us.is_some_and(|p| dts <= p) {
                continue;
            }
            self.carry.push_back((pts, f));
        }
        let carried = self
            .carry
            .back()
            .map(|(pts, f)| dts_us(*pts, f.info.cto, self.clock));
        self.played_through_us = [carried, self.last_dts_us, self.played_through_us]
            .into_iter()
            .flatten()
            .max();
        self.pending.clear();
        self.offset = None;
        self.next_seq = None;
        self.last_seq = None;
    }

    fn finished(&self) -> bool {
        matches!((self.next_seq, self.last_seq), (Some(n), Some(l)) if n > l)
    }

    /// The 64-bit pts of an RTP timestamp, unwrapped against the last consumed frame.
    fn pts_of(&self, ts: u32) -> u64 {
        unwrap_pts(ts.wrapping_sub(self.offset.unwrap_or(0)), self.last_pts)
    }
}

/// A 32-bit pts widened to 64 bits against the pts before it (the nearer of the wraps).
fn unwrap_pts(raw: u32, prev: Option<u64>) -> u64 {
    match prev {
        None => u64::from(raw),
        Some(prev) => {
            let d = raw.wrapping_sub(prev as u32) as i32;
            prev.saturating_add_signed(i64::from(d))
        }
    }
}

/// Records in `report` that the play went on to `to` at `t` since `t_req`, and why.
fn note_failover(report: &mut Report, t_req: Instant, to: &SegueUrl, why: String) {
    tracing::warn!(%to, "failing over: {why}");
    report.failovers.push(crate::report::Failover {
        at_s: t_req.elapsed().as_secs_f64(),
        to: to.to_string(),
        why,
    });
}

/// How long the play loop sleeps when nothing is due: the bound on how late a timeout (stall,
/// failover, give-up, all seconds long) is noticed.
const IDLE_WAKE: Duration = Duration::from_millis(50);

/// Moves `wake` earlier to `at`, if there is one.
fn soonest(wake: &mut Option<Instant>, at: Option<Instant>) {
    if let Some(at) = at {
        *wake = Some(wake.map_or(at, |w| w.min(at)));
    }
}

/// Media buffered by the least-buffered track (the one that stalls first), microseconds.
fn least_buffered_us(tracks: &[TrackState]) -> u64 {
    tracks
        .iter()
        .map(TrackState::buffered_us)
        .min()
        .unwrap_or(0)
}

fn dts_us(pts: u64, cto: u32, clock: u32) -> u64 {
    (u128::from(pts.saturating_sub(u64::from(cto))) * 1_000_000 / u128::from(clock.max(1))) as u64
}

/// Reads one RoQ media stream into frames.
async fn read_stream(
    mut recv: quinn::RecvStream,
    tx: mpsc::Sender<Event>,
    mut desc: watch::Receiver<Option<Arc<Description>>>,
) {
    if let Err(e) = read_stream_inner(&mut recv, &tx, &mut desc).await {
        let _ = tx.send(Event::StreamFailed(format!("{e:#}"))).await;
    }
}

async fn read_stream_inner(
    recv: &mut quinn::RecvStream,
    tx: &mpsc::Sender<Event>,
    desc_rx: &mut watch::Receiver<Option<Arc<Description>>>,
) -> anyhow::Result<()> {
    let limits = Limits::default();
    let mut dec = RoqDecoder::new(limits.max_rtp_packet);
    let mut track: Option<(u32, u8, bool)> = None; // index, ext id, h264
    let mut h = h264::Depacketizer::new(limits.max_frame_size as usize);
    let mut a = aac::Depacketizer::new();
    let mut current: Option<(u16, u32, FrameInfo, u64)> = None;
    loop {
        // Quinn's own buffers, not a copy into ours.
        let chunk = recv
            .read_chunk(64 * 1024, true)
            .await
            .context("media stream")?;
        let Some(chunk) = chunk else {
            dec.finish().context("media stream ended inside a packet")?;
            if current.is_some() {
                bail!("media stream ended inside a frame");
            }
            return Ok(());
        };
        dec.push(&chunk.bytes);
        while let Some(item) = dec.next_item()? {
            match item {
                RoqItem::Flow(flow) => {
                    let desc = desc_rx
                        .wait_for(Option::is_some)
                        .await
                        .map_err(|_| anyhow!("session ended"))?
                        .clone()
                        .ok_or_else(|| anyhow!("no description"))?;
                    // The player binds track i to flow i (aggregate SETUP with flow-id=0).
                    let t = desc
                        .tracks
                        .get(usize::try_from(flow).unwrap_or(usize::MAX))
                        .ok_or_else(|| anyhow!("media on unknown flow {flow}"))?;
                    track = Some((
                        t.index,
                        t.frame_info_ext,
                        matches!(t.codec, Codec::H264 { .. }),
                    ));
                }
                RoqItem::Packet(p) => {
                    let (index, ext, is_h264) =
                        track.ok_or_else(|| anyhow!("packet before flow id"))?;
                    let pkt = RtpPacket::decode_with_ext_id(&p, ext)?;
                    let (first_seq, ts, info, bytes) = match current.take() {
                        Some(c) => c,
                        None => {
                            let info = pkt
                                .frame_info
                                .ok_or_else(|| anyhow!("frame starts without frame-info"))?;
                            (pkt.sequence, pkt.timestamp, info, 0)
                        }
                    };
                    let bytes = bytes + p.len() as u64;
                    let done = if is_h264 {
                        h.push(&pkt.payload, pkt.marker)?
                    } else {
                        a.push(&pkt.payload, pkt.marker)?
                    };
                    match done {
                        Some(data) => {
                            let f = FrameIn {
                                track: index,
                                first_seq,
                                last_seq: pkt.sequence,
                                timestamp: ts,
                                info,
                                data,
                                wire_bytes: bytes,
                            };
                            if tx.send(Event::Frame(f)).await.is_err() {
                                return Ok(());
                            }
                        }
                        None => current = Some((first_seq, ts, info, bytes)),
                    }
                }
            }
        }
    }
}

/// Fetches the manifest on its own segment-protocol stream.
async fn fetch_manifest(conn: quinn::Connection, url: SegueUrl) -> anyhow::Result<Manifest> {
    let object = url
        .resource
        .object()
        .cloned()
        .ok_or_else(|| anyhow!("URL names no object"))?;
    let (mut send, mut recv) = conn.open_bi().await?;
    // A signed URL's grant goes with the request (TOKEN), as with the control requests.
    let token = url
        .query
        .as_deref()
        .and_then(segue_wire::token::Grant::from_query)
        .and_then(Result::ok);
    let req = SegmentRequest::Manifest {
        object,
        params: segue_wire::segment::Params {
            token,
            ..Default::default()
        },
    };
    send.write_all(&req.encode()).await?;
    send.finish()?;
    let limits = Limits::default();
    let data = recv
        .read_to_end(limits.max_manifest + 4096)
        .await
        .context("reading the manifest")?;
    let mut rest = &data[..];
    loop {
        let (frame, used) = decode_response_frame(rest, &limits)?
            .ok_or_else(|| anyhow!("manifest response cut short"))?;
        rest = &rest[used..];
        match frame {
            ResponseFrame::Response(h) if h.status == Status::Ok => {}
            ResponseFrame::Response(h) => bail!("manifest: {:?} {}", h.status, h.reason),
            ResponseFrame::Manifest(m) => return Ok(m),
            ResponseFrame::Segment(_) => bail!("unexpected segment in manifest response"),
        }
    }
}

struct Recorder {
    video: std::fs::File,
    audio: Option<std::fs::File>,
}

impl Recorder {
    fn open(path: &PathBuf, desc: &Description) -> anyhow::Result<Self> {
        let mut video = std::fs::File::create(path)
            .with_context(|| format!("cannot create {}", path.display()))?;
        for t in &desc.tracks {
            if let Codec::H264 { parameter_sets, .. } = &t.codec {
                for p in parameter_sets {
                    video.write_all(&[0, 0, 0, 1])?;
                    video.write_all(p)?;
                }
            }
        }
        let audio = if desc.tracks.iter().any(|t| !t.codec.is_video()) {
            let mut p = path.clone().into_os_string();
            p.push(".aac");
            Some(std::fs::File::create(&p)?)
        } else {
            None
        };
        Ok(Self { video, audio })
    }

    fn write(&mut self, codec: &Codec, data: &[u8]) -> std::io::Result<()> {
        match codec {
            Codec::H264 { .. } => {
                let mut pos = 0;
                while pos + 4 <= data.len() {
                    let len = u32::from_be_bytes([
                        data[pos],
                        data[pos + 1],
                        data[pos + 2],
                        data[pos + 3],
                    ]) as usize;
                    let end = (pos + 4 + len).min(data.len());
                    self.video.write_all(&[0, 0, 0, 1])?;
                    self.video.write_all(&data[pos + 4..end])?;
                    pos = end;
                }
                Ok(())
            }
            Codec::Aac { config, channels } => {
                let Some(f) = self.audio.as_mut() else {
                    return Ok(());
                };
                let [c0, c1, ..] = config[..] else {
                    return Ok(());
                };
                let profile = (c0 >> 3).saturating_sub(1) & 0x3;
                let freq = ((c0 & 0x07) << 1) | (c1 >> 7);
                let len = data.len() + 7;
                let hdr = [
                    0xff,
                    0xf1,
                    (profile << 6) | (freq << 2) | ((channels >> 2) & 1),
                    ((channels & 3) << 6) | ((len >> 11) as u8 & 0x3),
                    (len >> 3) as u8,
                    ((len as u8 & 0x7) << 5) | 0x1f,
                    0xfc,
                ];
                f.write_all(&hdr)?;
                f.write_all(data)
            }
        }
    }
}

/// Plays `opts.url` and reports. Never panics on what the network sends; failures end up in
/// `Report::error`.
pub async fn play(opts: &PlayOptions) -> Report {
    let mut report = Report {
        url: opts.url.to_string(),
        paced: opts.pace,
        ..Default::default()
    };
    let started = Instant::now();
    let r = play_inner(opts, &mut report, started).await;
    report.finish(started.into_std(), r);
    report
}

/// One node's connection playing the object: its control stream, the media streams it
/// opens (as events), the description and manifest it gives.
struct Link {
    _ep: quinn::Endpoint,
    conn: quinn::Connection,
    control: crate::session::ControlClient,
    cseq: crate::session::StartCseqs,
    url: SegueUrl,
    events: mpsc::Receiver<Event>,
    desc_tx: watch::Sender<Option<Arc<Description>>>,
    manifest: oneshot::Receiver<anyhow::Result<Manifest>>,
    session: Option<String>,
    /// Its control stream failed: nothing more comes from it.
    dead: bool,
    /// Its media streams may still bring frames.
    events_open: bool,
    /// It has sent a frame.
    got_media: bool,
}

/// Connects to `url` and sends the pipelined start (DESCRIBE, SETUP, PLAY from `start_us`);
/// media streams and the manifest are read as they come.
async fn open_link(url: &SegueUrl, opts: &PlayOptions, start_us: u64) -> anyhow::Result<Link> {
    match url.resource {
        Resource::Object(_) => {}
        Resource::Track(..) => bail!("play the object URL, not a track URL"),
        Resource::Server => bail!("{url} names no object"),
    }
    let (ep, conn, mut control) =
        connect_with(url, &opts.ca, opts.connect_timeout, &opts.connect).await?;
    let cseq = control.start(url, start_us, !opts.pace).await?;
    let (man_tx, manifest) = oneshot::channel();
    {
        let conn = conn.clone();
        let url = url.clone();
        tokio::spawn(async move {
            let _ = man_tx.send(fetch_manifest(conn, url).await);
        });
    }
    let (desc_tx, desc_rx) = watch::channel::<Option<Arc<Description>>>(None);
    let (ev_tx, events) = mpsc::channel::<Event>(1024);
    {
        let conn = conn.clone();
        tokio::spawn(async move {
            while let Ok(recv) = conn.accept_uni().await {
                tokio::spawn(read_stream(recv, ev_tx.clone(), desc_rx.clone()));
            }
        });
    }
    Ok(Link {
        _ep: ep,
        conn,
        control,
        cseq,
        url: url.clone(),
        events,
        desc_tx,
        manifest,
        session: None,
        dead: false,
        events_open: true,
        got_media: false,
    })
}

async fn play_inner(opts: &PlayOptions, report: &mut Report, t_req: Instant) -> anyhow::Result<()> {
    // Each node's object URL (with its query: a signed URL's grant) goes with every request
    // to it.
    let mut fallbacks = opts.fallbacks.iter();
    // A first node that cannot be reached: the fallbacks are tried, in order.
    let mut link = match open_link(&opts.url, opts, 0).await {
        Ok(l) => l,
        Err(e) if fallbacks.len() == 0 => return Err(e),
        Err(e) => {
            let mut why = format!("{}: {e:#}", opts.url);
            loop {
                let Some(next) = fallbacks.next() else {
                    bail!("{why}");
                };
                note_failover(report, t_req, next, why.clone());
                match open_link(next, opts, 0).await {
                    Ok(l) => break l,
                    Err(e) => why = format!("{next}: {e:#}"),
                }
            }
        }
    };
    report.connect_ms = Some(t_req.elapsed().as_secs_f64() * 1000.0);
    // TTFF and playback start count from here: the request, not the handshake.
    let t_req = Instant::now();
    // Why the current node is to be left, once it fails.
    let mut lost: Option<String> = None;

    let mut tracks: Vec<TrackState> = Vec::new();
    let mut early: Vec<FrameIn> = Vec::new();
    // Where the play began (the first PLAY's actual start: the content hash needs 0).
    let mut start_us: Option<u64> = None;
    let mut recorder: Option<Recorder> = None;
    let mut clock: Option<PlayoutClock> = None;
    let mut m0: Option<u64> = None; // media time at playback start
    let mut last_progress = Instant::now();
    let mut last_sample: Option<Instant> = None;
    let mut last_media = Instant::now();
    let mut stream_failures: Vec<String> = Vec::new();
    let tty = opts.progress && std::io::stderr().is_terminal();
    // The loop wakes for what arrives and, between arrivals, at the next instant playout has
    // something to do (a frame due, a stall beginning, a buffer sample), which the previous
    // pass computed; otherwise after `IDLE_WAKE`, which bounds how late a timeout is noticed.
    // (A fixed fine tick cost each player a wake-up every 2 ms: with hundreds of players in
    // one process that, not the media, was what took their core.)
    let mut next_wake: Option<Instant> = None;

    let handle_response = |r: Response,
                           cseq_desc: u32,
                           cseq_setup: u32,
                           cseq_play: u32|
     -> anyhow::Result<Response> {
        if !r.is_success() {
            let what = if r.headers.cseq == cseq_desc {
                "DESCRIBE"
            } else if r.headers.cseq == cseq_setup {
                "SETUP"
            } else if r.headers.cseq == cseq_play {
                "PLAY"
            } else {
                "request"
            };
            bail!(
                "{what} failed: {} {}",
                r.status,
                r.headers.error.unwrap_or_default()
            );
        }
        Ok(r)
    };

    // A failover's connection being made, and where it resumes: the play goes on from the
    // buffer meanwhile.
    let mut joining: Option<(SegueUrl, tokio::task::JoinHandle<anyhow::Result<Link>>)> = None;
    let mut resume_at = 0u64;
    macro_rules! join_next {
        ($why:expr) => {{
            let why: String = $why;
            let Some(next) = fallbacks.next() else {
                bail!("{why}");
            };
            tracing::debug!(resume_us = resume_at, "resuming");
            note_failover(report, t_req, next, why);
            let (url, o, at) = (next.clone(), opts.clone(), resume_at);
            joining = Some((
                next.clone(),
                tokio::spawn(async move { open_link(&url, &o, at).await }),
            ));
        }};
    }
    // The node is failing the play: on to the next one, if any (see the top of the loop).
    let mut stalled = false;
    macro_rules! leave {
        ($($arg:tt)*) => {{
            link.dead = true;
            lost = Some(format!($($arg)*));
            continue;
        }};
    }

    loop {
        if let Some(why) = lost.take() {
            let done =
                !stalled && !tracks.is_empty() && tracks.iter().all(|t| t.last_seq.is_some());
            stalled = false;
            if done {
                // Everything was sent before the node went: play out what is here.
                tracing::debug!("{} gone after the end of the stream: {why}", link.url);
            } else {
                if fallbacks.len() == 0 {
                    bail!("{why}");
                }
                // What the old node sent in order and was not played yet is kept and played
                // first; the new node resumes where that ends (at the start of the segment
                // holding that point, so nothing is missed; what it sends again is skipped),
                // and paces from there: the buffer the player had is kept.
                for t in tracks.iter_mut() {
                    t.carry_over();
                }
                resume_at = tracks
                    .iter()
                    .map(|t| t.played_through_us.or(start_us).unwrap_or(0))
                    .min()
                    .unwrap_or(0);
                // Nothing more is taken from the node left (its numbering is gone).
                link.dead = true;
                link.events_open = false;
                early.clear();
                stream_failures.clear();
                last_media = Instant::now();
                if let Some((_, h)) = joining.take() {
                    h.abort();
                }
                join_next!(format!("{}: {why}", link.url));
            }
        }
        tokio::select! {
            // `ControlClient::recv` is cancel-safe: quinn consumes data only on completion.
            m = link.control.recv(), if !link.dead => {
                let m = match m {
                    Ok(m) => m,
                    Err(e) => leave!("{e:#}"),
                };
                match m {
                    Message::Response(r) => {
                        let cseq = link.cseq;
                        let r = match handle_response(r, cseq.describe, cseq.setup, cseq.play) {
                            Ok(r) => r,
                            Err(e) => leave!("{e:#}"),
                        };
                        if r.headers.cseq == cseq.describe {
                            if r.headers.content_type.as_deref() != Some(SDP_CONTENT_TYPE) {
                                bail!("DESCRIBE returned no SDP");
                            }
                            let text = std::str::from_utf8(&r.body).context("SDP is not UTF-8")?;
                            let desc = Description::from_sdp(text, Limits::default().max_tracks)?;
                            if tracks.is_empty() {
                                tracks = desc.tracks.iter().map(|t| TrackState {
                                    clock: t.clock_rate,
                                    codec: t.codec.clone(),
                                    offset: None,
                                    next_seq: None,
                                    last_seq: None,
                                    pending: BTreeMap::new(),
                                    last_pts: None,
                                    last_dts_us: None,
                                    interval_us: 0,
                                    hash: Context::new(&SHA256),
                                    frames: 0,
                                    late: 0,
                                    played_through_us: None,
                                    carry: Default::default(),
                                }).collect();
                                if let Some(path) = &opts.record {
                                    recorder = Some(Recorder::open(path, &desc)?);
                                }
                            } else if desc.tracks.len() != tracks.len()
                                || desc.tracks.iter().zip(&tracks).any(|(d, t)| d.clock_rate != t.clock)
                            {
                                bail!("{} describes the object differently", link.url);
                            }
                            let _ = link.desc_tx.send(Some(Arc::new(desc)));
                        } else if r.headers.cseq == cseq.setup {
                            link.session = r.headers.session.map(|s| s.id);
                        } else if r.headers.cseq == cseq.play {
                            let play_start = r.headers.range.map_or(0, |r| r.start);
                            start_us.get_or_insert(play_start);
                            for info in &r.headers.rtp_info {
                                let Resource::Track(_, i) = info.url.resource else { continue };
                                let Some(t) = tracks.get_mut(i as usize) else { continue };
                                let base = (u128::from(play_start) * u128::from(t.clock) / 1_000_000) as u32;
                                t.offset = Some(info.rtptime.wrapping_sub(base));
                                t.next_seq = Some(i64::from(info.seq));
                            }
                            if tracks.iter().any(|t| t.next_seq.is_none()) {
                                bail!("PLAY response lacks RTP-Info for every track");
                            }
                            for f in early.drain(..) {
                                let t = &mut tracks[f.track as usize];
                                let k = t.extend(f.first_seq);
                                t.pending.insert(k, f);
                            }
                        }
                    }
                    Message::Request(req) => {
                        match req.method {
                            Method::PlayNotify if req.headers.notify_reason.as_deref() == Some("end-of-stream") => {
                                for info in &req.headers.rtp_info {
                                    let Resource::Track(_, i) = info.url.resource else { continue };
                                    if let Some(t) = tracks.get_mut(i as usize) {
                                        t.last_seq = Some(t.extend(info.seq));
                                    }
                                }
                            }
                            Method::Teardown => {
                                leave!("server ended the session: {}", req.headers.error.unwrap_or_else(|| "no reason given".into()));
                            }
                            _ => {}
                        }
                    }
                }
            }
            ev = link.events.recv(), if link.events_open => {
                match ev {
                    Some(Event::Frame(f)) => {
                        last_media = Instant::now();
                        link.got_media = true;
                        report.bytes += f.wire_bytes;
                        if report.ttff_ms.is_none() {
                            report.ttff_ms = Some(t_req.elapsed().as_secs_f64() * 1000.0);
                        }
                        match tracks.get_mut(f.track as usize) {
                            Some(t) if t.next_seq.is_some() => {
                                let k = t.extend(f.first_seq);
                                t.pending.insert(k, f);
                            }
                            _ => early.push(f),
                        }
                    }
                    Some(Event::StreamFailed(e)) => stream_failures.push(e),
                    None => link.events_open = false,
                }
            }
            j = async {
                match joining.as_mut() {
                    Some((_, h)) => h.await,
                    None => std::future::pending().await,
                }
            }, if joining.is_some() => {
                let Some((url, _)) = joining.take() else { continue };
                match j {
                    Ok(Ok(l)) => {
                        link = l;
                        last_media = Instant::now();
                    }
                    Ok(Err(e)) => join_next!(format!("{url}: {e:#}")),
                    Err(e) => join_next!(format!("{url}: {e}")),
                }
            }
            _ = tokio::time::sleep_until(
                next_wake.take().unwrap_or_else(|| Instant::now() + IDLE_WAKE)
            ) => {}
        }

        if opts
            .give_up_at
            .is_some_and(|t| tokio::time::Instant::now() >= t)
        {
            return Err(GaveUp.into());
        }
        // Before playback, every track waits for its numbering (the PLAY response); after a
        // failover, a track plays what was carried over meanwhile.
        if tracks.is_empty() || (clock.is_none() && tracks.iter().any(|t| t.next_seq.is_none())) {
            if last_media.elapsed() > opts.stall_timeout && t_req.elapsed() > opts.stall_timeout {
                stalled = true;
                leave!("no playable media within {:?}", opts.stall_timeout);
            }
            continue;
        }

        // Playout.
        let now = Instant::now();
        if clock.is_none() {
            let all_done = tracks.iter().all(|t| t.last_seq.is_some());
            // Media each track holds, in order, from its next frame: playback waits until every
            // track has the startup buffer (the least-buffered track is what stalls).
            let buffered = least_buffered_us(&tracks);
            let have_frame = tracks
                .iter()
                .any(|t| !t.pending.is_empty() || !t.carry.is_empty());
            // Playback starts with a frame in hand: once the startup buffer is full, at once
            // when unpaced, or when the whole (short) object is in.
            let target = opts
                .startup_buffer
                .max(link.conn.rtt().mul_f64(opts.startup_rtts.clamp(0.0, 100.0)));
            if have_frame && (!opts.pace || all_done || buffered >= target.as_micros() as u64) {
                report.startup_buffer_ms = Some(target.as_secs_f64() * 1000.0);
                clock = Some(PlayoutClock::start(now));
                report.startup_ms = Some(t_req.elapsed().as_secs_f64() * 1000.0);
            } else if last_media.elapsed() > opts.stall_timeout {
                let why = stream_failures
                    .last()
                    .cloned()
                    .unwrap_or_else(|| "the server sent none".into());
                stalled = true;
                leave!("no playable media within {:?}: {why}", opts.stall_timeout);
            } else {
                continue;
            }
        }
        let Some(clock) = clock.as_mut() else {
            continue;
        };
        let mut missing = false;
        // Waited long enough for what is missing: paced, a stall that outlived the timeout;
        // unpaced (no stalls are measured), no media for the timeout.
        let waited_out = clock.stalled_for(now) > opts.stall_timeout
            || (!opts.pace && last_media.elapsed() > opts.stall_timeout);
        for t in tracks.iter_mut() {
            loop {
                if t.finished() {
                    break;
                }
                // Nothing to play: a stall if this track's clock has run past its last frame
                // (only once the track's frame interval is known).
                // (and when it would be: the loop wakes then, so a stall is timed from its
                // start).
                let past_due = |t: &TrackState, wake: &mut Option<Instant>| {
                    let Some(last) = t.last_dts_us.filter(|_| opts.pace && t.interval_us > 0)
                    else {
                        return false;
                    };
                    let due = last.saturating_sub(m0.unwrap_or(0)) + t.interval_us;
                    if clock.position_us(now) > due {
                        return true;
                    }
                    soonest(wake, clock.when(due + 1));
                    false
                };
                // What the old node sent comes first after a failover; then the new node's.
                let (f, pts, dts, from_carry) = if let Some((pts, f)) = t.carry.pop_front() {
                    let dts = dts_us(pts, f.info.cto, t.clock);
                    (f, pts, dts, true)
                } else {
                    let Some(next) = t.next_seq else {
                        // Waiting for the new node's numbering.
                        missing |= past_due(t, &mut next_wake);
                        break;
                    };
                    let Some(f) = t.pending.remove(&next) else {
                        missing |= past_due(t, &mut next_wake);
                        // A gap that outlives the stall timeout: skip to what we have.
                        if let Some((&k, _)) = t.pending.iter().next()
                            && waited_out
                        {
                            t.next_seq = Some(k);
                            continue;
                        }
                        break;
                    };
                    let pts = t.pts_of(f.timestamp);
                    let dts = dts_us(pts, f.info.cto, t.clock);
                    // Sent again by the node failed over to, and played already.
                    if t.played_through_us.is_some_and(|p| dts <= p) {
                        t.last_pts = Some(pts);
                        t.next_seq = Some(t.extend(f.last_seq) + 1);
                        continue;
                    }
                    (f, pts, dts, false)
                };
                let base = *m0.get_or_insert(dts);
                // The media clock is frozen during a stall, so this also holds frames back then.
                if opts.pace && dts.saturating_sub(base) > clock.position_us(now) {
                    // Not due yet: the loop wakes when it is.
                    soonest(&mut next_wake, clock.when(dts.saturating_sub(base)));
                    if from_carry {
                        t.carry.push_front((pts, f));
                    } else if let Some(next) = t.next_seq {
                        t.pending.insert(next, f);
                    }
                    break;
                }
                t.last_pts = Some(pts);
                // Consumed during a stall: it was needed before it arrived.
                if clock.is_stalled() {
                    t.late += 1;
                }
                if let Some(prev) = t.last_dts_us
                    && dts > prev
                {
                    t.interval_us = dts - prev;
                }
                t.last_dts_us = Some(dts);
                if !from_carry {
                    t.next_seq = Some(t.extend(f.last_seq) + 1);
                }
                let rec = Frame {
                    track: f.track,
                    keyframe: f.info.keyframe,
                    pts,
                    cto: f.info.cto,
                    data: f.data,
                };
                // The record as the content hash covers it, without copying the frame.
                let mut head = [0u8; Frame::MAX_HEAD_LEN];
                let room = {
                    let mut w = &mut head[..];
                    rec.encode_head_into(&mut w);
                    w.len()
                };
                let n = head.len() - room;
                t.hash.update(&head[..n]);
                t.hash.update(&rec.data);
                t.frames += 1;
                report.frames_received += 1;
                if let Some(r) = recorder.as_mut() {
                    r.write(&t.codec, &rec.data).context("recording")?;
                }
            }
        }
        if clock.update(missing, now) {
            report.stalls += 1;
            tracing::debug!(
                media_us = clock.position_us(now),
                tracks = ?tracks.iter().map(|t| (t.next_seq, t.last_seq, t.last_dts_us, t.interval_us, t.pending.keys().next().copied(), t.pending.len())).collect::<Vec<_>>(),
                "stall begins"
            );
        }
        // Kept current, so a play that ends in an error still reports the time it stalled.
        report.stall_ms = clock.stall_time(now).as_secs_f64() * 1000.0;
        if waited_out
            && tracks
                .iter()
                .all(|t| t.pending.is_empty() && t.carry.is_empty())
            && last_media.elapsed() > opts.stall_timeout
        {
            let why = stream_failures
                .last()
                .cloned()
                .unwrap_or_else(|| "no media arriving".into());
            stalled = true;
            leave!("stalled for {:?}: {why}", opts.stall_timeout);
        }
        // A node gone silent (killed, cut off) says nothing: with a fallback left, leave it
        // while the buffer still covers the switch.
        // (A node just failed over to gets the stall timeout for its first frame.)
        let silence = if link.got_media {
            opts.failover_after
        } else {
            opts.stall_timeout
        };
        if fallbacks.len() > 0
            && joining.is_none()
            && last_media.elapsed() > silence
            && !tracks.iter().all(|t| t.last_seq.is_some())
        {
            stalled = true;
            leave!("no media for {silence:?}");
        }
        if let Some(every) = opts.buffer_samples {
            if last_sample.is_none_or(|t: Instant| t.elapsed() >= every) {
                last_sample = Some(Instant::now());
                let level = least_buffered_us(&tracks);
                report
                    .buffer
                    .push([t_req.elapsed().as_secs_f64(), level as f64 / 1000.0]);
            }
            soonest(&mut next_wake, last_sample.map(|t| t + every));
        }
        if let Some(w) = opts.watch {
            soonest(&mut next_wake, clock.when(w.as_micros() as u64));
        }
        if let Some(w) = opts.watch
            && !clock.is_stalled()
            && clock.position_us(now) >= w.as_micros() as u64
        {
            report.watched_until_s = Some(clock.position_us(now) as f64 / 1e6);
            break;
        }
        if tty && last_progress.elapsed() > Duration::from_millis(250) {
            last_progress = Instant::now();
            let frames: u64 = tracks.iter().map(|t| t.frames).sum();
            eprint!(
                "\r  {:>6.1} s  frames {frames:>6}  {:>6.0} kbit/s  stalls {}   ",
                clock.started().elapsed().as_secs_f64(),
                report.bytes as f64 * 8.0 / t_req.elapsed().as_secs_f64().max(0.001) / 1000.0,
                report.stalls
            );
        }
        if tracks.iter().all(TrackState::finished) {
            break;
        }
    }
    if let Some((_, h)) = joining.take() {
        h.abort();
    }
    if tty {
        eprintln!();
    }
    if let Some(c) = &clock {
        report.stall_ms = c.stall_time(Instant::now()).as_secs_f64() * 1000.0;
    }

    // Verify against the manifest.
    let manifest = tokio::time::timeout(opts.connect_timeout, link.manifest)
        .await
        .context("manifest did not arrive")?
        .context("manifest task ended")??;
    let first = manifest.segment_at(start_us.unwrap_or(0)).unwrap_or(0);
    report.tracks.clear();
    report.frames_received = 0;
    let mut all_ok = true;
    for (i, t) in tracks.into_iter().enumerate() {
        let expected = manifest.tracks.get(i).map_or(0, |m| m.frames);
        let digest = t.hash.finish();
        // The content hash covers the whole object: it can only match a play from the start.
        let hash_ok = first == 0
            && manifest
                .tracks
                .get(i)
                .is_some_and(|m| m.content_hash == digest.as_ref());
        // A viewer who quit saw only part of the object: nothing to compare, nothing lost.
        let quit = report.watched_until_s.is_some();
        let lost = if quit {
            0
        } else {
            expected.saturating_sub(t.frames)
        };
        all_ok &= hash_ok && t.frames == expected;
        report.frames_received += t.frames;
        report.frames_expected += expected;
        report.late_frames += t.late;
        report.lost_frames += lost;
        report.tracks.push(TrackReport {
            track: i as u32,
            codec: if t.codec.is_video() {
                "h264".into()
            } else {
                "aac".into()
            },
            frames_received: t.frames,
            frames_expected: expected,
            late_frames: t.late,
            lost_frames: lost,
            hash_ok,
        });
    }
    report.hash_ok = all_ok;

    report.rtt_ms = Some(link.conn.rtt().as_secs_f64() * 1000.0);
    // Orderly end.
    if let Some(id) = link.session.take()
        && !link.dead
    {
        let mut td = Request::new(
            Method::Teardown,
            Some(link.url.clone()),
            link.control.next_cseq(),
        );
        td.headers.session = Some(segue_wire::control::SessionHeader { id, timeout: None });
        let _ = tokio::time::timeout(Duration::from_secs(2), link.control.request(&td)).await;
    }
    link.conn.close(0u32.into(), b"done");
    Ok(())
}
