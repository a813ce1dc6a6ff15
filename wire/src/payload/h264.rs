//! H.264 over RTP (RFC 6184, packetization-mode=1). Frames are AVCC: each NAL unit preceded by
//! its 4-byte big-endian length.

use bytes::{BufMut, Bytes};

use super::Payloads;
use super::nal::{self, NalFrame};
use crate::error::DecodeError;

const STAP_A: u8 = 24;
const FU_A: u8 = 28;

/// Splits an AVCC frame into NAL units.
pub fn nal_units(frame: &Bytes) -> Result<Vec<Bytes>, DecodeError> {
    let mut out = Vec::new();
    let mut pos = 0usize;
    while pos < frame.len() {
        let len_bytes = frame
            .get(pos..pos + 4)
            .ok_or(DecodeError::Malformed("AVCC length cut short"))?;
        let len =
            u32::from_be_bytes([len_bytes[0], len_bytes[1], len_bytes[2], len_bytes[3]]) as usize;
        pos += 4;
        if len == 0 {
            return Err(DecodeError::Malformed("empty NAL unit"));
        }
        let end = pos
            .checked_add(len)
            .filter(|e| *e <= frame.len())
            .ok_or(DecodeError::Malformed("NAL unit overruns frame"))?;
        out.push(frame.slice(pos..end));
        pos = end;
    }
    Ok(out)
}

/// Packetizes one AVCC frame into payloads of at most `max_payload` bytes (at least 3).
pub fn packetize(frame: &Bytes, max_payload: usize) -> Result<Payloads, DecodeError> {
    nal::packetize(
        frame,
        max_payload,
        1,
        2,
        |n| {
            // Types 0 and 24..=31 are unspecified in H.264 and mean aggregation or
            // fragmentation in RTP: such a NAL cannot be carried. The forbidden bit must be 0.
            if !(1..=23).contains(&(n[0] & 0x1f)) || n[0] & 0x80 != 0 {
                return Err(DecodeError::Malformed(
                    "NAL unit type not carriable over RTP",
                ));
            }
            Ok(())
        },
        |h, start, end, p| {
            // FU indicator, then FU header S|E|0|type.
            p.put_u8((h[0] & 0xe0) | FU_A);
            p.put_u8(u8::from(start) << 7 | u8::from(end) << 6 | (h[0] & 0x1f));
        },
    )
}

/// Rebuilds AVCC frames from payloads.
#[derive(Debug)]
pub struct Depacketizer {
    f: NalFrame,
}

impl Depacketizer {
    pub fn new(max_frame: usize) -> Self {
        Self {
            f: NalFrame::new("H.264 frame", max_frame),
        }
    }

    /// Adds one payload; returns the frame when `marker` ends it. On error the partial frame
    /// is dropped.
    pub fn push(&mut self, payload: &[u8], marker: bool) -> Result<Option<Bytes>, DecodeError> {
        let added = self.push_inner(payload);
        self.f.after(added, marker)
    }

    fn push_inner(&mut self, p: &[u8]) -> Result<(), DecodeError> {
        let (&h, rest) = p
            .split_first()
            .ok_or(DecodeError::Malformed("empty H.264 payload"))?;
        let ty = h & 0x1f;
        if self.f.in_fragment() && ty != FU_A {
            return Err(DecodeError::Malformed("fragmented NAL interrupted"));
        }
        match ty {
            1..=23 => self.f.nal(p, 1),
            STAP_A => self.f.aggregated(rest, 1),
            FU_A => {
                let (&fu, data) = rest
                    .split_first()
                    .ok_or(DecodeError::Malformed("FU-A without header"))?;
                let header = [(h & 0xe0) | (fu & 0x1f)];
                self.f
                    .fragment(fu & 0x80 != 0, fu & 0x40 != 0, &header, data)
            }
            _ => Err(DecodeError::Unknown {
                what: "H.264 payload type",
                value: u64::from(ty),
            }),
        }
    }

    /// Drops a partial frame (after a lost or reset stream).
    pub fn reset(&mut self) {
        self.f.reset();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::BytesMut;

    fn avcc(nals: &[&[u8]]) -> Bytes {
        let mut b = BytesMut::new();
        for n in nals {
            b.put_u32(n.len() as u32);
            b.put_slice(n);
        }
        b.freeze()
    }

    #[test]
    fn single_and_fu_a_example() {
        // docs/PROTOCOL.md, "H.264 example": an SPS-sized NAL fits, an IDR of 7 bytes is
        // split with max_payload 5 into FU-A packets carrying 3 + 3 bytes.
        let frame = avcc(&[&[0x67, 0x42], &[0x65, 1, 2, 3, 4, 5, 6]]);
        let p = packetize(&frame, 5).unwrap();
        let want: Vec<(&[u8], bool)> = vec![
            (&[0x67, 0x42], false),
            (&[0x7c, 0x85, 1, 2, 3], false),
            (&[0x7c, 0x45, 4, 5, 6], true),
        ];
        assert_eq!(p.len(), want.len());
        for ((got, gm), (w, wm)) in p.iter().zip(want) {
            assert_eq!((&got[..], *gm), (w, wm));
        }
        let mut d = Depacketizer::new(1 << 20);
        let mut out = None;
        for (payload, m) in &p {
            out = d.push(payload, *m).unwrap();
        }
        assert_eq!(out, Some(frame));
    }

    #[test]
    fn stap_a_is_accepted() {
        let mut d = Depacketizer::new(1 << 20);
        let stap = [0x78, 0x00, 0x02, 0x67, 0x42, 0x00, 0x01, 0x68];
        let f = d.push(&stap, true).unwrap().unwrap();
        assert_eq!(f, avcc(&[&[0x67, 0x42], &[0x68]]));
    }

    #[test]
    fn errors() {
        let mut d = Depacketizer::new(1 << 20);
        assert!(d.push(&[0x7c, 0x05, 1], false).is_err()); // continuation without start
        assert!(d.push(&[0x7c, 0x85, 1], true).is_err()); // ends inside fragment
        assert!(d.push(&[0x7e, 0x00], true).is_err()); // FU-B unsupported
        assert!(d.push(&[], true).is_err());
        let mut small = Depacketizer::new(10);
        assert!(small.push(&[0x65; 20], true).is_err());
        assert!(nal_units(&Bytes::from_static(&[0, 0, 0, 9, 1])).is_err());
        assert!(packetize(&Bytes::new(), 100).is_err());
        assert!(packetize(&avcc(&[&[0x78, 1]]), 100).is_err()); // type 24
        assert!(packetize(&avcc(&[&[0x00, 1]]), 100).is_err()); // type 0
        assert!(packetize(&avcc(&[&[0xe5, 1]]), 100).is_err()); // forbidden bit
    }
}
