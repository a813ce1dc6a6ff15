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
}
