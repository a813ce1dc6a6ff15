//! RTP payload formats: how one frame (access unit) becomes RTP payloads and back.
//!
//! - H.264: RFC 6184, packetization-mode 1. Senders emit Single NAL Unit packets and FU-A;
//!   receivers also accept STAP-A.
//! - AAC: RFC 3640, mode AAC-hbr, one AU (or a fragment of one) per packet.
//!
//! Packetizers return `(payload, marker)` pairs; the marker is set on the last packet of a
//! frame. Depacketizers take payloads in sequence order and return a frame when its last packet
//! has arrived.

pub mod aac;
pub mod h264;

use bytes::Bytes;

/// A packetizer's output for one frame.
pub type Payloads = Vec<(Bytes, bool)>;

/// Default largest RTP payload a Segue sender produces (PROTOCOL.md §7.5). Media travels on QUIC streams, so
/// packets need not fit a datagram; this keeps per-packet overhead small while bounding the
/// receiver's reassembly work per packet.
pub const DEFAULT_MAX_PAYLOAD: usize = 60 * 1024;
