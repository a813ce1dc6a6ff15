//! Where a session's media goes: RoQ streams on its QUIC connection (segue/1), or RTP and
//! RTCP interleaved in the RTSP face's connection (PROTOCOL.md §12), with the sender reports
//! and the goodbye that standard players need.

use std::net::{IpAddr, SocketAddr};
use std::time::{Duration, Instant, SystemTime};

use bytes::Bytes;
use segue_wire::rtcp::{self, SenderInfo};
use segue_wire::rtsp::Interleaver;

use super::sender::TrackSend;
use crate::clock::rescale;
use crate::node::control::ControlOut;
use crate::node::packets::Step;

/// How often each track's RTCP sender report goes out (RFC 3550 §6.2's 5 s minimum is for
/// a session's whole RTCP; players sync sooner with more frequent reports).
const REPORT_EVERY: Duration = Duration::from_secs(2);

/// The CNAME of a node's RTCP (one per session would do as well; players only need one per
/// sender, the same for every track so that they are synchronised).
const CNAME: &str = "segue";

/// Where a connection's sessions send their media.
#[derive(Debug, Clone)]
pub enum MediaPath {
    /// RoQ streams on the session's QUIC connection.
    Roq(quinn::Connection),
    /// Interleaved in the RTSP face's connection, through its ordered writer.
    Interleaved { out: ControlOut, peer: SocketAddr },
}

impl MediaPath {
    /// The client's address (signed URLs bind to it).
    pub fn remote_ip(&self) -> IpAddr {
        match self {
            MediaPath::Roq(c) => c.remote_address().ip(),
            MediaPath::Interleaved { peer, .. } => peer.ip(),
        }
    }
}

/// Where one PLAY's media goes: the connection's RoQ streams, or its interleaving (with the
/// play's RTCP state).
#[derive(Debug)]
pub(super) enum PlayPath {
    Roq(quinn::Connection),
    Interleaved(InterleavedPlay),
}

impl PlayPath {
    /// A PLAY of `tracks` from `start_us` on `path`.
    pub(super) fn new(path: &MediaPath, tracks: &[TrackSend], start_us: u64) -> Self {
        match path {
            MediaPath::Roq(c) => PlayPath::Roq(c.clone()),
            MediaPath::Interleaved { out, .. } => {
                PlayPath::Interleaved(InterleavedPlay::new(out.clone(), tracks, start_us))
            }
        }
    }

    /// The path's smoothed and least RTT, where measured (QUIC's).
    pub(super) fn rtts(&self) -> Option<(Duration, Duration)> {
        match self {
            PlayPath::Roq(c) => Some((c.rtt(), c.min_rtt())),
            PlayPath::Interleaved(_) => None,
        }
    }
}

/// One track's interleaved state in a PLAY.
#[derive(Debug)]
struct Track {
    framer: Interleaver,
    ssrc: u32,
    ts_offset: u32,
    clock: u32,
    packets: u32,
    octets: u32,
    /// The presentation time of its latest frame sent, µs.
    pts_us: Option<u64>,
    reported: Option<Instant>,
}

/// A PLAY's media on the RTSP face: RoQ templates re-framed as interleaved frames on each
/// track's channel, RTCP sender reports on the next channel, and the goodbye at the end.
/// Every track's reports map media time to one wall clock (`ntp0` at `start_us`), so players
/// keep the tracks in sync.
#[derive(Debug)]
pub(super) struct InterleavedPlay {
    out: ControlOut,
    /// By the sender's track slot.
    tracks: Vec<Track>,
    start_us: u64,
    ntp0: Duration,
}

impl InterleavedPlay {
    pub(super) fn new(out: ControlOut, tracks: &[TrackSend], start_us: u64) -> Self {
        let ntp0 = SystemTime::now()
            .duration_since(SystemTime::UNIX_EPOCH)
            .unwrap_or_default();
        Self {
            out,
            tracks: tracks
                .iter()
                .map(|t| Track {
                    // Channels are a SETUP's (the face binds only channels 0..=254).
                    framer: Interleaver::new(u8::try_from(t.flow).unwrap_or(u8::MAX - 1)),
                    ssrc: t.ssrc,
                    ts_offset: t.ts_offset,
                    clock: t.clock,
                    packets: 0,
                    octets: 0,
                    pts_us: None,
                    reported: None,
                })
                .collect(),
            start_us,
            ntp0,
        }
    }

    /// Counts a frame of track `slot` as sent.
    pub(super) fn note(&mut self, slot: usize, step: &Step) {
        if let Some(t) = self.tracks.get_mut(slot) {
            t.packets = t.packets.wrapping_add(step.packets);
            t.octets = t.octets.wrapping_add(step.payload_bytes);
            t.pts_us = Some(step.pts_us);
        }
    }

    fn info(&self, t: &Track) -> SenderInfo {
        let media = t.pts_us.unwrap_or(self.start_us);
        // Media time `media` is wall time ntp0 + (media − start).
        let wall = if media >= self.start_us {
            self.ntp0 + Duration::from_micros(media - self.start_us)
        } else {
            self.ntp0
                .saturating_sub(Duration::from_micros(self.start_us - media))
        };
        SenderInfo {
            ssrc: t.ssrc,
            ntp: rtcp::ntp_timestamp(wall),
            rtp_time: (rescale(media, 1_000_000, t.clock) as u32).wrapping_add(t.ts_offset),
            packets: t.packets,
            octets: t.octets,
        }
    }

    fn rtcp(&self, t: &Track, packet: Result<Vec<u8>, segue_wire::DecodeError>) -> Option<Bytes> {
        let channel = t.framer.channel().wrapping_add(1);
        packet
            .and_then(|p| segue_wire::rtsp::interleaved_frame(channel, &p))
            .map_err(|e| tracing::debug!("RTCP not sent: {e}"))
            .ok()
    }

    /// Writes `chunks` of track `slot`'s RoQ stream, after a sender report when one is due.
    /// False when the connection is gone.
    pub(super) async fn write(&mut self, slot: usize, chunks: Vec<Bytes>) -> Result<bool, String> {
        let now = Instant::now();
        let Some(t) = self.tracks.get(slot) else {
            return Ok(true);
        };
        let mut out = Vec::with_capacity(chunks.len() * 2 + 1);
        let report = t
            .reported
            .is_none_or(|at| now.duration_since(at) >= REPORT_EVERY);
        if report {
            out.extend(self.rtcp(t, rtcp::sender_report(&self.info(t), CNAME)));
        }
        // `slot` was found above.
        let t = &mut self.tracks[slot];
        if report {
            t.reported = Some(now);
        }
        for c in chunks {
            t.framer
                .push(c, &mut out)
                .map_err(|e| format!("cannot interleave: {e}"))?;
        }
        Ok(self.out.media(out).await)
    }

    /// The last report and a BYE on every track: the stream ends (standard players end on
    /// a BYE for each of their streams).
    pub(super) async fn goodbye(&self) {
        let out: Vec<Bytes> = self
            .tracks
            .iter()
            .filter_map(|t| self.rtcp(t, rtcp::goodbye(&self.info(t), CNAME)))
            .collect();
        self.out.media(out).await;
    }
}
