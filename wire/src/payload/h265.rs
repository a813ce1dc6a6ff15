//! HEVC over RTP (RFC 7798). Frames are 4-byte-length-prefixed NAL units, as for H.264
//! ([`super::h264::nal_units`]). Senders emit single NAL unit packets and fragmentation
//! units (FU, type 49); receivers also accept aggregation packets (AP, type 48). Without
//! `sprop-max-don-diff` no DONL fields are sent or expected.

use bytes::{BufMut, Bytes, BytesMut};

use super::Payloads;
use super::h264::nal_units;
use crate::error::DecodeError;

const AP: u8 = 48;
const FU: u8 = 49;

fn nal_type(h0: u8) -> u8 {
    (h0 >> 1) & 0x3f
}

/// Packetizes one frame into payloads of at most `max_payload` bytes (at least 4).
pub fn packetize(frame: &Bytes, max_payload: usize) -> Result<Payloads, DecodeError> {
    let max_payload = max_payload.max(4);
    let nals = nal_units(frame)?;
    if nals.is_empty() {
        return Err(DecodeError::Malformed("frame without NAL units"));
    }
    let mut out = Vec::new();
    for nal in nals {
        // Types 48..=63 mean aggregation, fragmentation or PACI in RTP (or are unspecified):
        // such a NAL cannot be carried. The forbidden bit must be zero.
        let [h0, h1, ..] = nal[..] else {
            return Err(DecodeError::Malformed("HEVC NAL unit without its header"));
        };
        if nal_type(h0) >= AP || h0 & 0x80 != 0 {
            return Err(DecodeError::Malformed(
                "NAL unit type not carriable over RTP",
            ));
        }
        if nal.len() <= max_payload {
            out.push((nal, false));
            continue;
        }
        // RFC 7798 §4.4.3: the payload header is the NAL's with type 49; the FU header
        // S|E|FuType; then the NAL's body without its 2-byte header.
        let body = nal.slice(2..);
        let chunk = max_payload - 3;
        let n = body.len().div_ceil(chunk);
        for (i, part) in body.chunks(chunk).enumerate() {
            let mut fu = nal_type(h0);
            if i == 0 {
                fu |= 0x80;
            }
            if i + 1 == n {
                fu |= 0x40;
            }
            let mut p = BytesMut::with_capacity(part.len() + 3);
            p.put_u8((h0 & 0x81) | (FU << 1));
            p.put_u8(h1);
            p.put_u8(fu);
            p.put_slice(part);
            out.push((p.freeze(), false));
        }
    }
    if let Some(last) = out.last_mut() {
        last.1 = true;
    }
    Ok(out)
}

/// Rebuilds frames from payloads.
#[derive(Debug)]
pub struct Depacketizer {
    max_frame: usize,
    frame: BytesMut,
    /// Index in `frame` of the length prefix of the NAL being reassembled from FUs.
    fu_start: Option<usize>,
}

impl Depacketizer {
    pub fn new(max_frame: usize) -> Self {
        Self {
            max_frame,
            frame: BytesMut::new(),
            fu_start: None,
        }
    }

    fn reserve(&mut self, extra: usize) -> Result<(), DecodeError> {
        if self.frame.len() + extra > self.max_frame {
            return Err(DecodeError::TooLarge {
                what: "HEVC frame",
                size: (self.frame.len() + extra) as u64,
                limit: self.max_frame as u64,
            });
        }
        Ok(())
    }

    fn push_nal(&mut self, nal: &[u8]) -> Result<(), DecodeError> {
        if nal.len() < 2 {
            return Err(DecodeError::Malformed("HEVC NAL unit without its header"));
        }
        self.reserve(4 + nal.len())?;
        self.frame.put_u32(nal.len() as u32);
        self.frame.put_slice(nal);
        Ok(())
    }

    /// Adds one payload; returns the frame when `marker` ends it. On error the partial frame
    /// is dropped.
    pub fn push(&mut self, payload: &[u8], marker: bool) -> Result<Option<Bytes>, DecodeError> {
        let r = self.push_inner(payload);
        if r.is_err() {
            self.reset();
            return r.map(|_| None);
        }
        if marker {
            if self.fu_start.is_some() {
                self.reset();
                return Err(DecodeError::Malformed(
                    "frame ended inside a fragmented NAL",
                ));
            }
            return Ok(Some(self.frame.split().freeze()));
        }
        Ok(None)
    }

    fn push_inner(&mut self, p: &[u8]) -> Result<(), DecodeError> {
        let [h0, h1, rest @ ..] = p else {
            return Err(DecodeError::Malformed("HEVC payload without its header"));
        };
        let ty = nal_type(*h0);
        if self.fu_start.is_some() && ty != FU {
            return Err(DecodeError::Malformed("fragmented NAL interrupted"));
        }
        match ty {
            0..=47 => self.push_nal(p),
            AP => {
                let mut rest = rest;
                if rest.is_empty() {
                    return Err(DecodeError::Malformed("empty aggregation packet"));
                }
                while !rest.is_empty() {
                    let [a, b, tail @ ..] = rest else {
                        return Err(DecodeError::Malformed("AP size cut short"));
                    };
                    let n = usize::from(u16::from_be_bytes([*a, *b]));
                    let nal = tail
                        .get(..n)
                        .ok_or(DecodeError::Malformed("AP unit overruns packet"))?;
                    self.push_nal(nal)?;
                    rest = &tail[n..];
                }
                Ok(())
            }
            FU => {
                let (&fu, data) = rest
                    .split_first()
                    .ok_or(DecodeError::Malformed("FU without header"))?;
                let (start, end) = (fu & 0x80 != 0, fu & 0x40 != 0);
                match (start, self.fu_start) {
                    (true, None) => {
                        self.reserve(6 + data.len())?;
                        self.fu_start = Some(self.frame.len());
                        self.frame.put_u32(0);
                        self.frame.put_u8((h0 & 0x81) | ((fu & 0x3f) << 1));
                        self.frame.put_u8(*h1);
                    }
                    (false, Some(_)) => self.reserve(data.len())?,
                    (true, Some(_)) => {
                        return Err(DecodeError::Malformed("FU start inside a fragment"));
                    }
                    (false, None) => {
                        return Err(DecodeError::Malformed("FU continuation without start"));
                    }
                }
                self.frame.put_slice(data);
                if end && let Some(at) = self.fu_start.take() {
                    let len = (self.frame.len() - at - 4) as u32;
                    self.frame[at..at + 4].copy_from_slice(&len.to_be_bytes());
                }
                Ok(())
            }
            _ => Err(DecodeError::Unknown {
                what: "HEVC payload type",
                value: u64::from(ty),
            }),
        }
    }

    /// Drops a partial frame.
    pub fn reset(&mut self) {
        self.frame.clear();
        self.fu_start = None;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
