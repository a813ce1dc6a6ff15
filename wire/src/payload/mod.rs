//! RTP payload formats: how one frame (access unit) becomes RTP payloads and back.
//!
//! - H.264: RFC 6184, packetization-mode 1. Senders emit Single NAL Unit packets and FU-A;
//!   receivers also accept STAP-A.
//! - AAC: RFC 3640, mode AAC-hbr, one AU (or a fragment of one) per packet.
//! - HEVC: RFC 7798. Senders emit single NAL unit packets and FU; receivers also accept AP.
//! - AV1: the AOMedia RTP payload format v1.0; senders write length-prefixed OBU elements
//!   without size fields (W = 0) and fragment large OBUs.
//! - Opus: RFC 7587, one Opus packet per RTP packet.
//!
//! Packetizers return `(payload, marker)` pairs; the marker is set on the last packet of a
//! frame. Depacketizers take payloads in sequence order and return a frame when its last packet
//! has arrived.

pub mod aac;
pub mod av1;
pub mod h264;
pub mod h265;
mod nal;
pub mod opus;

use bytes::Bytes;

use crate::error::DecodeError;
use crate::sdp::Codec;

/// A packetizer's output for one frame.
pub type Payloads = Vec<(Bytes, bool)>;

/// Default largest RTP payload a Segue sender produces (PROTOCOL.md §7.5). Media travels on QUIC streams, so
/// packets need not fit a datagram; this keeps per-packet overhead small while bounding the
/// receiver's reassembly work per packet.
pub const DEFAULT_MAX_PAYLOAD: usize = 60 * 1024;

/// Packetizes one frame of a track in `codec`.
pub fn packetize(
    codec: &Codec,
    frame: &Bytes,
    max_payload: usize,
) -> Result<Payloads, DecodeError> {
    match codec {
        Codec::H264 { .. } => h264::packetize(frame, max_payload),
        Codec::H265 { .. } => h265::packetize(frame, max_payload),
        Codec::Av1 { .. } => av1::packetize(frame, max_payload),
        Codec::Aac { .. } => aac::packetize(frame, max_payload),
        Codec::Opus { .. } => opus::packetize(frame, max_payload),
    }
}

/// Rebuilds frames of one track from its payloads, whatever its codec.
#[derive(Debug)]
pub enum Depacketizer {
    H264(h264::Depacketizer),
    H265(h265::Depacketizer),
    Av1(av1::Depacketizer),
    Aac(aac::Depacketizer),
    Opus(opus::Depacketizer),
}

impl Depacketizer {
    /// For a track in `codec`, frames at most `max_frame` bytes.
    pub fn new(codec: &Codec, max_frame: usize) -> Self {
        match codec {
            Codec::H264 { .. } => Self::H264(h264::Depacketizer::new(max_frame)),
            Codec::H265 { .. } => Self::H265(h265::Depacketizer::new(max_frame)),
            Codec::Av1 { .. } => Self::Av1(av1::Depacketizer::new(max_frame)),
            Codec::Aac { .. } => Self::Aac(aac::Depacketizer::new()),
            Codec::Opus { .. } => Self::Opus(opus::Depacketizer),
        }
    }

    /// Adds one payload (in sequence order); returns the frame it completes.
    pub fn push(&mut self, payload: &[u8], marker: bool) -> Result<Option<Bytes>, DecodeError> {
        match self {
            Self::H264(d) => d.push(payload, marker),
            Self::H265(d) => d.push(payload, marker),
            Self::Av1(d) => d.push(payload, marker),
            Self::Aac(d) => d.push(payload, marker),
            Self::Opus(d) => d.push(payload, marker),
        }
    }
}
