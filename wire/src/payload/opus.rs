//! Opus over RTP (RFC 7587): one Opus packet (the frame a segment record holds, as MP4
//! stores it) per RTP packet, never fragmented; the marker bit is set on every packet (each
//! ends its frame). The RTP clock is 48 kHz whatever the coded bandwidth.

use bytes::Bytes;

use super::Payloads;
use crate::error::DecodeError;

/// The RTP clock of every Opus stream (RFC 7587 §4.1).
pub const CLOCK: u32 = 48_000;

/// The largest Opus packet: 120 ms of 1275-byte frames with the code-3 header
/// (RFC 6716 §3.2.5), rounded up.
pub const MAX_PACKET: usize = 6 * 1275 + 8;

/// How many samples (at 48 kHz) an Opus packet decodes to, from its TOC byte and, for code
/// 3, its frame count (RFC 6716 §3.1, §3.2.5); None for a packet that is empty, lacks its
/// frame count, or would last more than 120 ms (§3.2.5's limit).
pub fn packet_duration(packet: &[u8]) -> Option<u32> {
    let toc = *packet.first()?;
    let config = toc >> 3;
    // Frame sizes in samples at 48 kHz: SILK-only 10/20/40/60 ms, hybrid 10/20 ms, CELT-only
    // 2.5/5/10/20 ms (Table 2).
    let frame = match config {
        0..=11 => [480, 960, 1920, 2880][usize::from(config % 4)],
        12..=15 => [480, 960][usize::from(config % 2)],
        _ => [120, 240, 480, 960][usize::from(config % 4)],
    };
    let frames = match toc & 3 {
        0 => 1,
        1 | 2 => 2,
        _ => u32::from(*packet.get(1)? & 0x3f),
    };
    let total = frame * frames;
    (frames > 0 && total <= 5760).then_some(total)
}

/// One Opus packet as one payload.
pub fn packetize(packet: &Bytes, max_payload: usize) -> Result<Payloads, DecodeError> {
    let limit = max_payload.min(MAX_PACKET);
    if packet.is_empty() || packet.len() > limit {
        return Err(DecodeError::TooLarge {
            what: "Opus packet",
            size: packet.len() as u64,
            limit: limit as u64,
        });
    }
    Ok(vec![(packet.clone(), true)])
}

/// Each payload is a whole Opus packet.
#[derive(Debug, Default)]
pub struct Depacketizer;

impl Depacketizer {
    pub fn push(&mut self, p: &[u8], _marker: bool) -> Result<Option<Bytes>, DecodeError> {
        if p.is_empty() || p.len() > MAX_PACKET {
            return Err(DecodeError::Malformed("Opus payload size"));
        }
        Ok(Some(Bytes::copy_from_slice(p)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_packet_per_frame_and_back() {
        let f = Bytes::from_static(&[0xfc, 1, 2, 3]);
        let p = packetize(&f, 1200).unwrap();
        assert_eq!(p, vec![(f.clone(), true)]);
        assert_eq!(Depacketizer.push(&p[0].0, true).unwrap(), Some(f));
        assert!(packetize(&Bytes::new(), 1200).is_err());
        assert!(packetize(&Bytes::from(vec![0; 2000]), 1200).is_err());
        assert!(Depacketizer.push(&[], true).is_err());
    }

    #[test]
    fn durations_from_the_toc() {
        // CELT-only 20 ms (config 31), one frame: what libopus makes by default.
        assert_eq!(packet_duration(&[0xfc, 0xff]), Some(960));
        // SILK-only 60 ms (config 3), two equal frames (code 1).
        assert_eq!(packet_duration(&[0x19, 0]), Some(5760));
        // Hybrid 10 ms (config 12), code 3 with 4 frames.
        assert_eq!(packet_duration(&[0x63, 0x04]), Some(1920));
        // CELT 2.5 ms (config 16), code 3 with 48 frames: 120 ms, the most allowed.
        assert_eq!(packet_duration(&[0x83, 48]), Some(5760));
        // Too long, no frames, no frame count, nothing.
        assert_eq!(packet_duration(&[0x83, 49]), None);
        assert_eq!(packet_duration(&[0x83, 0]), None);
        assert_eq!(packet_duration(&[0x83]), None);
        assert_eq!(packet_duration(&[]), None);
    }
}
