//! HEVC over RTP (RFC 7798). Frames are 4-byte-length-prefixed NAL units, as for H.264
//! ([`super::h264::nal_units`]). Senders emit single NAL unit packets and fragmentation
//! units (FU, type 49); receivers also accept aggregation packets (AP, type 48). Without
//! `sprop-max-don-diff` no DONL fields are sent or expected.

use bytes::{BufMut, Bytes};

use super::Payloads;
use super::nal::{self, NalFrame};
use crate::error::DecodeError;

const AP: u8 = 48;
const FU: u8 = 49;

fn nal_type(h0: u8) -> u8 {
    (h0 >> 1) & 0x3f
}

/// Packetizes one frame into payloads of at most `max_payload` bytes (at least 4).
pub fn packetize(frame: &Bytes, max_payload: usize) -> Result<Payloads, DecodeError> {
    nal::packetize(
        frame,
        max_payload,
        2,
        3,
        |n| {
            // Types 48..=63 mean aggregation, fragmentation or PACI in RTP (or are
            // unspecified): such a NAL cannot be carried. The forbidden bit must be zero.
            if nal_type(n[0]) >= AP || n[0] & 0x80 != 0 {
                return Err(DecodeError::Malformed(
                    "NAL unit type not carriable over RTP",
                ));
            }
            Ok(())
        },
        |h, start, end, p| {
            // RFC 7798 §4.4.3: the payload header is the NAL's with type 49, then the FU
            // header S|E|FuType.
            p.put_u8((h[0] & 0x81) | (FU << 1));
            p.put_u8(h[1]);
            p.put_u8(u8::from(start) << 7 | u8::from(end) << 6 | nal_type(h[0]));
        },
    )
}

/// Rebuilds frames from payloads.
#[derive(Debug)]
pub struct Depacketizer {
    f: NalFrame,
}

impl Depacketizer {
    pub fn new(max_frame: usize) -> Self {
        Self {
            f: NalFrame::new("HEVC frame", max_frame),
        }
    }

    /// Adds one payload; returns the frame when `marker` ends it. On error the partial frame
    /// is dropped.
    pub fn push(&mut self, payload: &[u8], marker: bool) -> Result<Option<Bytes>, DecodeError> {
        let added = self.push_inner(payload);
        self.f.after(added, marker)
    }

    fn push_inner(&mut self, p: &[u8]) -> Result<(), DecodeError> {
        let [h0, h1, rest @ ..] = p else {
            return Err(DecodeError::Malformed("HEVC payload without its header"));
        };
        let ty = nal_type(*h0);
        if self.f.in_fragment() && ty != FU {
            return Err(DecodeError::Malformed("fragmented NAL interrupted"));
        }
        match ty {
            0..=47 => self.f.nal(p, 2),
            AP => self.f.aggregated(rest, 2),
            FU => {
                let (&fu, data) = rest
                    .split_first()
                    .ok_or(DecodeError::Malformed("FU without header"))?;
                // The NAL's header: the payload header's with the FU's type.
                let header = [(h0 & 0x81) | ((fu & 0x3f) << 1), *h1];
                self.f
                    .fragment(fu & 0x80 != 0, fu & 0x40 != 0, &header, data)
            }
            _ => Err(DecodeError::Unknown {
                what: "HEVC payload type",
                value: u64::from(ty),
            }),
        }
    }

    /// Drops a partial frame.
    pub fn reset(&mut self) {
        self.f.reset();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::BytesMut;

    fn frame(nals: &[&[u8]]) -> Bytes {
        let mut b = BytesMut::new();
        for n in nals {
            b.put_u32(n.len() as u32);
            b.put_slice(n);
        }
        b.freeze()
    }

    #[test]
    fn single_and_fu_example() {
        // docs/PROTOCOL.md §7.5: a VPS fits (`40 01 0c`); an IDR_W_RADL (type 19, header
        // `26 01`) of 8 bytes split with max_payload 6 into FUs of 3 + 3 body bytes.
        let f = frame(&[&[0x40, 0x01, 0x0c], &[0x26, 0x01, 1, 2, 3, 4, 5, 6]]);
        let p = packetize(&f, 6).unwrap();
        let want: Vec<(&[u8], bool)> = vec![
            (&[0x40, 0x01, 0x0c], false),
            (&[0x62, 0x01, 0x93, 1, 2, 3], false),
            (&[0x62, 0x01, 0x53, 4, 5, 6], true),
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
        assert_eq!(out, Some(f));
    }

    #[test]
    fn aggregation_is_accepted_and_errors() {
        let mut d = Depacketizer::new(1 << 20);
        let ap = [
            0x60, 0x01, 0x00, 0x02, 0x40, 0x01, 0x00, 0x03, 0x42, 0x01, 0x07,
        ];
        let f = d.push(&ap, true).unwrap().unwrap();
        assert_eq!(f, frame(&[&[0x40, 0x01], &[0x42, 0x01, 0x07]]));
        assert!(d.push(&[0x62, 0x01, 0x13, 1], false).is_err()); // continuation without start
        assert!(d.push(&[0x62, 0x01, 0x93, 1], true).is_err()); // ends inside fragment
        assert!(d.push(&[0x64, 0x01, 0], true).is_err()); // PACI
        assert!(d.push(&[0x40], true).is_err());
        let mut small = Depacketizer::new(10);
        assert!(small.push(&[0x26; 20], true).is_err());
        assert!(packetize(&frame(&[&[0x60, 0x01, 1]]), 100).is_err()); // type 48
        assert!(packetize(&frame(&[&[0xc0, 0x01, 1]]), 100).is_err()); // forbidden bit
        assert!(packetize(&frame(&[&[0x40]]), 100).is_err()); // no header
    }
}
