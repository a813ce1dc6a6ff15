//! The media sender of one PLAY: turns the session's segments into RTP on RoQ streams,
//! paced to real time plus the send-ahead (PROTOCOL.md §7), and ends the stream with
//! PLAY_NOTIFY.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use segue_wire::control::{Method, NptRange, Request, RtpInfo, SessionHeader};
use segue_wire::sdp::Description;
use segue_wire::segment::Manifest;
use segue_wire::{AppError, Resource, SegueUrl, roq};
use tokio::sync::watch;
use tokio::time::Instant;

use super::Progress;
use super::ahead::{SEND_AHEAD_RTTS, SendAhead};
use super::path::PlayPath;
use super::preview::Preview;
use crate::clock::rescale;
use crate::node::control::ControlOut;
use crate::node::packets::{Cursor, PacketCache, SegmentPackets};
use crate::node::source::{Body, Growing, Source, SourceError};

/// Bytes of frames due that a sender writes at most before writing every track's stream
/// up to where it is due: far under a player's stream window (quinn's 1.25 MB), so no
/// track waits behind another's, and few writes per segment.
const WRITE_BATCH: usize = 64 * 1024;

/// How often a paced sender waiting for media to fall due reads its path's RTTs again
/// (the send-ahead may have grown meanwhile).
const AHEAD_CHECK: Duration = Duration::from_millis(100);

/// What a paced play puts on the wire over its segments' bytes: RTP and RoQ headers and
/// QUIC's packet and frame overhead (~50 bytes of a 1200-byte datagram), and the frame
/// records' own headers: the media rate the connection's controller is told.
const WIRE_OVERHEAD: f64 = 1.1;

/// The media rate of an object on the wire, bytes per second ([`WIRE_OVERHEAD`]): its
/// segments' bytes over its duration (None for an object without either).
fn media_rate(manifest: &Manifest) -> Option<u64> {
    let bytes: u64 = manifest.segments.iter().map(|s| s.size).sum();
    (manifest.duration_us > 0 && bytes > 0)
        .then(|| (bytes as f64 * 1e6 / manifest.duration_us as f64 * WIRE_OVERHEAD) as u64)
}

/// Per-track RTP state of a playing session.
#[derive(Debug, Clone)]
pub(super) struct TrackSend {
    pub(super) index: u32,
    pub(super) flow: u64,
    pub(super) clock: u32,
    pub(super) ssrc: u32,
    /// Next sequence number.
    pub(super) seq: u16,
    pub(super) ts_offset: u32,
}

/// The media sender of one PLAY.
pub(super) struct Sender<S: Source> {
    pub(super) source: Arc<S>,
    pub(super) path: PlayPath,
    pub(super) out: ControlOut,
    /// The PLAY's response ([`ControlOut::this_response`]): no media before it is written.
    pub(super) answered: u64,
    pub(super) manifest: Arc<Manifest>,
    pub(super) url: SegueUrl,
    pub(super) session: String,
    pub(super) tracks: Vec<TrackSend>,
    pub(super) first: usize,
    pub(super) start_us: u64,
    pub(super) pacing: bool,
    pub(super) send_ahead: Duration,
    pub(super) send_ahead_max: Duration,
    pub(super) packets: Arc<PacketCache>,
    pub(super) desc: Description,
    pub(super) cancel: watch::Receiver<bool>,
    pub(super) progress: Arc<Progress>,
}

enum Stop {
    Cancelled,
    /// This node failed the play (a stream, a segment that would not packetize): the
    /// details, for the log.
    Failed(String),
    /// The source failed it: its error, and where (for the log).
    Source(SourceError, String),
}

impl Stop {
    /// What a failed play logs and tells its player (with incident id `incident`): the
    /// details, and the object with a reason class; None for a cancel.
    fn report(self, object: &segue_wire::ObjectName, incident: &str) -> Option<(String, String)> {
        match self {
            Stop::Cancelled => None,
            Stop::Source(e, at) => Some((format!("{at}{e}"), e.public(object, incident))),
            Stop::Failed(d) => Some((
                d,
                format!("{object}: playback failed (incident {incident})"),
            )),
        }
    }
}

/// The source's readiness (`Source::ready`), awaited while the first picture goes out.
type Ready = Pin<Box<dyn Future<Output = Result<(), SourceError>> + Send>>;

/// A paced play's clock: media is due at `t0` plus its offset into the play, minus the
/// send-ahead. Until the source is ready (`gate`) only the [`Preview`] goes out; the clock
/// starts when it is.
struct Pace {
    t0: Instant,
    ahead: SendAhead,
    gate: Option<(Ready, Preview)>,
}

impl Pace {
    /// A clock starting now, with a send-ahead growing up to `max`.
    fn new(max: Duration, gate: Option<(Ready, Preview)>) -> Self {
        let t0 = Instant::now();
        Self {
            t0,
            ahead: SendAhead::new(t0.into_std(), max),
            gate,
        }
    }
}

/// A task aborted when dropped (a session cancelled while its source gets ready).
struct Aborting<T>(tokio::task::JoinHandle<T>);

impl<T> Drop for Aborting<T> {
    fn drop(&mut self) {
        self.0.abort();
    }
}

impl<S: Source> Sender<S> {
    /// How far ahead of real time media is sent at first: the configured send-ahead, and at least
    /// [`SEND_AHEAD_RTTS`] round trips of this connection's path, so the buffer it builds in
    /// the player covers a few loss recoveries on a long path too (docs/TRANSPORT.md).
    /// The path's RTT is the least seen, not the smoothed one: that includes the queue the
    /// send-ahead itself builds, so sizing by it grew the send-ahead with its own queue
    /// (seen: 0.3 s path, 0.9 s smoothed RTT on a slow last mile, 7 s sent ahead, and a
    /// loss there recovered after 2 s).
    fn send_ahead(&self) -> Duration {
        self.path.rtts().map_or(self.send_ahead, |(_, min)| {
            self.send_ahead.max(min * SEND_AHEAD_RTTS)
        })
    }

    /// The send-ahead now over `base`, grown while the path was clear ([`SendAhead`]): the
    /// path's RTTs are read (a connection lock each) only for a send-ahead that can still
    /// grow, and at most every [`AHEAD_CHECK`].
    fn ahead_now(&self, ahead: &mut SendAhead, base: Duration) -> Duration {
        let now = std::time::Instant::now();
        match self.path.rtts() {
            Some((rtt, min)) if ahead.grows(base) && ahead.stale(now, AHEAD_CHECK) => {
                ahead.at(now, base, rtt, min)
            }
            _ => ahead.current(base),
        }
    }

    /// Where track `track` (SDP index) is among the tracks this PLAY sends, if it is.
    fn slot(&self, track: usize) -> Option<usize> {
        self.tracks.iter().position(|t| t.index as usize == track)
    }

    /// Each track's next number is where the segment about to be sent starts (what a PLAY
    /// after PAUSE numbers from).
    fn mark_segment_start(&self) {
        for t in &self.tracks {
            if let Some(q) = self.progress.seq_at_segment.get(t.index as usize) {
                q.store(u32::from(t.seq), Ordering::Relaxed);
            }
        }
    }

    pub(super) async fn run(mut self) {
        let result = self.send_all().await;
        self.source.stopped(
            &self.manifest,
            self.progress.next_segment.load(Ordering::Relaxed),
        );
        match result {
            Ok(()) => {
                if let PlayPath::Interleaved(il) = &self.path {
                    il.goodbye().await;
                }
                let mut n = Request::new(Method::PlayNotify, Some(self.url.clone()), 0);
                n.headers.notify_reason = Some("end-of-stream".into());
                n.headers.session = Some(SessionHeader {
                    id: self.session.clone(),
                    timeout: None,
                });
                n.headers.range = Some(NptRange {
                    start: self.start_us,
                    end: Some(self.manifest.duration_us),
                });
                n.headers.rtp_info = self
                    .tracks
                    .iter()
                    .map(|t| RtpInfo {
                        url: self
                            .url
                            .with_resource(Resource::Track(self.manifest.object.clone(), t.index)),
                        ssrc: t.ssrc,
                        seq: t.seq.wrapping_sub(1),
                        rtptime: (rescale(self.manifest.duration_us, 1_000_000, t.clock) as u32)
                            .wrapping_add(t.ts_offset),
                    })
                    .collect();
                self.out.request(n).await;
            }
            Err(stop) => {
                // The player is told the object, a reason class and an incident id; the
                // details are logged with the id.
                let incident = crate::node::source::incident();
                let object = &self.manifest.object;
                let Some((detail, public)) = stop.report(object, &incident) else {
                    return; // cancelled: nobody to tell
                };
                tracing::warn!(%incident, session = %self.session, %object, "{detail}");
                // An RTSP 1.0 client cannot be sent a TEARDOWN: its connection is closed,
                // so that it does not take the cut for the end.
                if self
                    .out
                    .face()
                    .is_some_and(|f| f.version() == segue_wire::rtsp::Version::V1)
                {
                    self.out.close(AppError::InternalError).await;
                    return;
                }
                let mut t = Request::new(Method::Teardown, Some(self.url.clone()), 0);
                t.headers.session = Some(SessionHeader {
                    id: self.session.clone(),
                    timeout: None,
                });
                t.headers.terminate_reason = Some("Internal-Error".into());
                t.headers.error = Some(public);
                self.out.request(t).await;
            }
        }
    }

    /// Waits for the source to be ready (`Source::ready`), or for the session's end.
    async fn until_ready(&mut self, ready: &mut Ready) -> Result<(), Stop> {
        tokio::select! {
            r = ready => r.map_err(|e| Stop::Source(e, String::new())),
            _ = Self::cancelled(&mut self.cancel) => Err(Stop::Cancelled),
        }
    }

    async fn cancelled(cancel: &mut watch::Receiver<bool>) {
        while !*cancel.borrow() {
            if cancel.changed().await.is_err() {
                // The session is gone: behave as cancelled.
                return;
            }
        }
    }

    async fn send_all(&mut self) -> Result<(), Stop> {
        // No media before the PLAY's response is written (`ControlOut::response_written`).
        tokio::select! {
            _ = self.out.response_written(self.answered) => {}
            _ = Self::cancelled(&mut self.cancel) => return Err(Stop::Cancelled),
        }
        let source = self.source.clone();
        let manifest = self.manifest.clone();
        let first = self.first;
        // Judged from now, not from when it is first awaited: a paced play awaits it only
        // after its preview is out, and by then a miss's whole first segment may have
        // landed and been taken for a hit (a flaky start before the sufficient portion).
        let mut task = Aborting(tokio::spawn(
            async move { source.ready(&manifest, first).await },
        ));
        let mut ready: Ready = Box::pin(async move {
            (&mut task.0).await.unwrap_or_else(|e| {
                Err(SourceError::Internal(format!(
                    "waiting for the source failed: {e}"
                )))
            })
        });
        // A paced play sends its first picture while a miss's sufficient portion comes in
        // (`preview`); an unpaced one, whose player starts on its first frame, waits.
        let gate = if self.pacing {
            let video = self
                .desc
                .tracks
                .iter()
                .map(|t| t.codec.is_video())
                .collect();
            Some((ready, Preview::new(video)))
        } else {
            self.until_ready(&mut ready).await?;
            None
        };
        // A paced play tells the connection's controller the media's rate, which it keeps
        // carrying beside a flow that ignores loss (docs/TRANSPORT.md, "Fairness").
        let _demand = match &self.path {
            PlayPath::Roq(conn) if self.pacing => {
                segue_net::transport::media_demand(conn).zip(media_rate(&self.manifest))
            }
            _ => None,
        }
        .map(|(demand, rate)| demand.add(rate));
        let mut pace = Pace::new(self.send_ahead_max, gate);
        for i in self.first..self.manifest.segments.len() {
            self.mark_segment_start();
            let body = tokio::select! {
                r = self.source.segment_body(&self.manifest, i) => r.map_err(|e: SourceError| Stop::Source(e, format!("segment {i}: ")))?,
                _ = Self::cancelled(&mut self.cancel) => return Err(Stop::Cancelled),
            };
            let mut streams: Vec<Option<quinn::SendStream>> =
                (0..self.tracks.len()).map(|_| None).collect();
            let r = match body {
                Body::Whole(payload) => {
                    match self.packets.get(&self.manifest, &self.desc, i, &payload) {
                        Ok(packets) => {
                            self.send_segment(i, &packets, &mut pace, &mut streams)
                                .await
                        }
                        Err(e) => Err(Stop::Failed(format!("segment {i}: {e}"))),
                    }
                }
                Body::Growing(g) => self.send_growing(i, g, &mut pace, &mut streams).await,
            };
            match r {
                Ok(()) => {
                    for s in streams.iter_mut().flatten() {
                        let _ = s.finish();
                    }
                    self.progress.next_segment.store(i + 1, Ordering::Relaxed);
                    if i + 1 == self.manifest.segments.len() {
                        self.mark_segment_start(); // the end: after the last packet
                    }
                }
                Err(e) => {
                    let code = match e {
                        Stop::Cancelled => AppError::Cancelled,
                        Stop::Failed(_) | Stop::Source(..) => AppError::InternalError,
                    };
                    for s in streams.iter_mut().flatten() {
                        let _ = s.reset(segue_net::app_code(code));
                    }
                    return Err(e);
                }
            }
        }
        Ok(())
    }

    /// Sends a segment still arriving (cut-through): each run of whole frame records the
    /// verified chunks complete is packetized and sent as [`Self::send_segment`] sends a
    /// whole one, on the same streams, numbering on from the run before.
    async fn send_growing(
        &mut self,
        index: usize,
        mut body: Growing,
        pace: &mut Pace,
        streams: &mut [Option<quinn::SendStream>],
    ) -> Result<(), Stop> {
        let failed = |e: &dyn std::fmt::Display| Stop::Failed(format!("segment {index}: {e}"));
        let mut pending = BytesMut::new();
        loop {
            let next = tokio::select! {
                r = body.next() => r.map_err(|e| Stop::Source(e, format!("segment {index}: ")))?,
                _ = Self::cancelled(&mut self.cancel) => return Err(Stop::Cancelled),
            };
            let Some(chunk) = next else {
                if !pending.is_empty() {
                    return Err(failed(&"the segment ends inside a frame record"));
                }
                return Ok(());
            };
            pending.extend_from_slice(&chunk);
            let whole = self
                .packets
                .whole_records(&pending)
                .map_err(|e| failed(&e))?;
            if whole == 0 {
                continue;
            }
            let records = pending.split_to(whole).freeze();
            let packets = self
                .packets
                .packetize_part(&self.desc, &records)
                .map_err(|e| failed(&e))?;
            self.send_segment(index, &packets, pace, streams).await?;
        }
    }

    /// Writes track `ti`'s bytes up to stream position `end`, opening its stream first.
    async fn write_until(
        &mut self,
        index: usize,
        ti: usize,
        end: usize,
        cursors: &mut [Cursor],
        streams: &mut [Option<quinn::SendStream>],
    ) -> Result<(), Stop> {
        if cursors[ti].pos() >= end {
            return Ok(());
        }
        let mut chunks = Vec::new();
        let conn = match &mut self.path {
            PlayPath::Roq(conn) => conn,
            PlayPath::Interleaved(il) => {
                let from = cursors[ti].pos();
                cursors[ti].take_until(end, &mut chunks);
                let sent = cursors[ti].pos() - from;
                let open = tokio::select! {
                    r = il.write(ti, chunks) => r.map_err(Stop::Failed)?,
                    _ = Self::cancelled(&mut self.cancel) => return Err(Stop::Cancelled),
                };
                if !open {
                    return Err(Stop::Cancelled);
                }
                self.source.sent(sent as u64);
                return Ok(());
            }
        };
        if streams[ti].is_none() {
            let s = tokio::select! {
                // No stream can be opened only on a connection that is gone (the player
                // left, or the node is shutting down): nobody to tell, nothing failed here.
                r = conn.open_uni() => r.map_err(|e| {
                    tracing::debug!(session = %self.session, "media stream not opened: {e}");
                    Stop::Cancelled
                })?,
                _ = Self::cancelled(&mut self.cancel) => return Err(Stop::Cancelled),
            };
            // Earlier segments first.
            let _ = s.set_priority(-(index.min(i32::MAX as usize) as i32));
            let mut header = Vec::with_capacity(8);
            roq::put_stream_header(&mut header, self.tracks[ti].flow);
            chunks.push(Bytes::from(header));
            streams[ti] = Some(s);
        }
        let from = cursors[ti].pos();
        cursors[ti].take_until(end, &mut chunks);
        let sent = cursors[ti].pos() - from;
        let Some(stream) = streams[ti].as_mut() else {
            return Ok(());
        };
        tokio::select! {
            r = stream.write_all_chunks(&mut chunks) => r.map_err(|e| Stop::Failed(format!("media stream: {e}")))?,
            _ = Self::cancelled(&mut self.cancel) => return Err(Stop::Cancelled),
        }
        self.source.sent(sent as u64);
        Ok(())
    }

    /// Writes every track's stream up to `due_end`.
    async fn write_due(
        &mut self,
        index: usize,
        due_end: &[usize],
        cursors: &mut [Cursor],
        streams: &mut [Option<quinn::SendStream>],
    ) -> Result<(), Stop> {
        for (ti, &end) in due_end.iter().enumerate() {
            self.write_until(index, ti, end, cursors, streams).await?;
        }
        Ok(())
    }

    /// Sends one segment: one stream per track, frames released at their due time when
    /// pacing (everything written before each wait), all at once otherwise.
    async fn send_segment(
        &mut self,
        index: usize,
        packets: &SegmentPackets,
        pace: &mut Pace,
        streams: &mut [Option<quinn::SendStream>],
    ) -> Result<(), Stop> {
        let mut cursors = Vec::with_capacity(self.tracks.len());
        for t in &mut self.tracks {
            let Some(tp) = packets.tracks.get(t.index as usize) else {
                cursors.push(Cursor::default());
                continue;
            };
            cursors.push(Cursor::new(tp.stamp(t.seq, t.ts_offset, t.ssrc)));
            t.seq = t.seq.wrapping_add(tp.packets as u16);
            if let Some(q) = self.progress.seq_next.get(t.index as usize) {
                q.store(u32::from(t.seq), Ordering::Relaxed);
            }
        }
        // Frames are written in record (decoding) order across tracks, every track up to
        // where it is due, at least every [`WRITE_BATCH`] bytes: written a whole track
        // after another, the first segment's video (2 MB at 8 Mbit/s, more than quinn's
        // 1.25 MB stream window) held the audio back until most of it was delivered, and
        // playback, which waits for every track's startup buffer, started ~300 ms late on
        // the matrix's 8 Mbit/s cells. (A write per frame instead cost unpaced egress
        // 44 % on the `long` sample.)
        let base = self.send_ahead();
        let mut current = self.ahead_now(&mut pace.ahead, base);
        // Where each track's stream is due up to, and the bytes due but not yet written.
        let mut due_end = vec![0usize; self.tracks.len()];
        let mut unwritten = 0usize;
        for (k, step) in packets.steps.iter().enumerate() {
            let Some(ti) = self.slot(step.track) else {
                continue;
            };
            if let Some((ready, preview)) = pace.gate.as_mut()
                && !preview.admits(step.track, step.dts_us, step.pts_us)
            {
                // The picture is out, with the sound that plays until it: that may decode
                // after video frames held here (an edit list that starts the audio a
                // B-frame delay in; held, it cost a miss's first frame a last-mile round
                // trip, lab-results/lastmile-s33-check/), and goes on its own streams.
                for later in &packets.steps[k..] {
                    if preview.plays_with_picture(later.track, later.pts_us) {
                        if let Some(tj) = self.slot(later.track) {
                            due_end[tj] = due_end[tj].max(later.end);
                        }
                    } else if !preview.is_video(later.track) {
                        break;
                    }
                }
                // The rest when the source is ready, on a clock that starts then.
                self.write_due(index, &due_end, &mut cursors, streams)
                    .await?;
                unwritten = 0;
                self.until_ready(ready).await?;
                *pace = Pace::new(self.send_ahead_max, None);
                current = self.ahead_now(&mut pace.ahead, base);
            }
            if self.pacing {
                let media =
                    pace.t0 + Duration::from_micros(step.dts_us.saturating_sub(self.start_us));
                if media
                    .checked_sub(current)
                    .is_some_and(|due| due > Instant::now())
                {
                    self.write_due(index, &due_end, &mut cursors, streams)
                        .await?;
                    unwritten = 0;
                    // Wait until it is due; a send-ahead that can grow is read again every
                    // AHEAD_CHECK meanwhile.
                    loop {
                        current = self.ahead_now(&mut pace.ahead, base);
                        let now = Instant::now();
                        let grows = pace.ahead.grows(base);
                        let Some(due) = media.checked_sub(current).filter(|d| *d > now) else {
                            break;
                        };
                        let wake = if grows {
                            due.min(now + AHEAD_CHECK)
                        } else {
                            due
                        };
                        tokio::select! {
                            _ = tokio::time::sleep_until(wake) => {}
                            _ = Self::cancelled(&mut self.cancel) => return Err(Stop::Cancelled),
                        }
                    }
                }
            }
            unwritten += step.end.saturating_sub(due_end[ti]);
            due_end[ti] = due_end[ti].max(step.end);
            self.progress
                .packets
                .fetch_add(u64::from(step.packets), Ordering::Relaxed);
            self.progress
                .bytes
                .fetch_add(u64::from(step.rtp_bytes), Ordering::Relaxed);
            self.progress
                .position_us
                .store(step.pts_us, Ordering::Relaxed);
            if let PlayPath::Interleaved(il) = &mut self.path {
                il.note(ti, step);
            }
            if unwritten >= WRITE_BATCH {
                self.write_due(index, &due_end, &mut cursors, streams)
                    .await?;
                unwritten = 0;
            }
        }
        for ti in 0..self.tracks.len() {
            self.write_until(index, ti, usize::MAX, &mut cursors, streams)
                .await?;
        }
        Ok(())
    }
}
