//! H.264 over RTP (RFC 6184, packetization-mode=1). Frames are AVCC: each NAL unit preceded by
//! its 4-byte big-endian length.

use bytes::{BufMut, Bytes, BytesMut};

use super::Payloads;
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
    let max_payload = max_payload.max(3);
    let nals = nal_units(frame)?;
    if nals.is_empty() {
        return Err(DecodeError::Malformed("frame without NAL units"));
    }
    let mut out = Vec::new();
    for nal in nals {
        // Types 0 and 24..=31 are unspecified in H.264 and mean aggregation or fragmentation
        // in RTP: such a NAL cannot be carried. The forbidden bit must be zero.
        if !(1..=23).contains(&(nal[0] & 0x1f)) || nal[0] & 0x80 != 0 {
            return Err(DecodeError::Malformed(
                "NAL unit type not carriable over RTP",
            ));
        }
        if nal.len() <= max_payload {
            out.push((nal, false));
            continue;
        }
        let header = nal[0];
        let indicator = (header & 0xe0) | FU_A;
        let body = nal.slice(1..);
        let chunk = max_payload - 2;
        let n = body.len().div_ceil(chunk);
        for (i, part) in body.chunks(chunk).enumerate() {
            let mut fu = 0u8;
            if i == 0 {
                fu |= 0x80;
            }
            if i + 1 == n {
                fu |= 0x40;
            }
            fu |= header & 0x1f;
            let mut p = BytesMut::with_capacity(part.len() + 2);
            p.put_u8(indicator);
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

/// Rebuilds AVCC frames from payloads.
#[derive(Debug)]
pub struct Depacketizer {
    max_frame: usize,
    frame: BytesMut,
    /// Index in `frame` of the length prefix of the NAL being reassembled from FU-A.
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
                what: "H.264 frame",
                size: (self.frame.len() + extra) as u64,
                limit: self.max_frame as u64,
            });
        }
        Ok(())
    }

    fn push_nal(&mut self, nal: &[u8]) -> Result<(), DecodeError> {
        if nal.is_empty() {
            return Err(DecodeError::Malformed("empty NAL unit"));
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
        let (&h, rest) = p
            .split_first()
            .ok_or(DecodeError::Malformed("empty H.264 payload"))?;
        let ty = h & 0x1f;
        if self.fu_start.is_some() && ty != FU_A {
            return Err(DecodeError::Malformed("fragmented NAL interrupted"));
        }
        match ty {
            1..=23 => self.push_nal(p),
            STAP_A => {
                let mut rest = rest;
                if rest.is_empty() {
                    return Err(DecodeError::Malformed("empty STAP-A"));
                }
                while !rest.is_empty() {
                    let [a, b, tail @ ..] = rest else {
                        return Err(DecodeError::Malformed("STAP-A size cut short"));
                    };
                    let n = usize::from(u16::from_be_bytes([*a, *b]));
                    let nal = tail
                        .get(..n)
                        .ok_or(DecodeError::Malformed("STAP-A unit overruns packet"))?;
                    self.push_nal(nal)?;
                    rest = &tail[n..];
                }
                Ok(())
            }
            FU_A => {
                let (&fu, data) = rest
                    .split_first()
                    .ok_or(DecodeError::Malformed("FU-A without header"))?;
                let (start, end) = (fu & 0x80 != 0, fu & 0x40 != 0);
                match (start, self.fu_start) {
                    (true, None) => {
                        self.reserve(5 + data.len())?;
                        self.fu_start = Some(self.frame.len());
                        self.frame.put_u32(0);
                        self.frame.put_u8((h & 0xe0) | (fu & 0x1f));
                    }
                    (false, Some(_)) => self.reserve(data.len())?,
                    (true, Some(_)) => {
                        return Err(DecodeError::Malformed("FU-A start inside a fragment"));
                    }
                    (false, None) => {
                        return Err(DecodeError::Malformed("FU-A continuation without start"));
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
                what: "H.264 payload type",
                value: u64::from(ty),
            }),
        }
    }

    /// Drops a partial frame (after a lost or reset stream).
    pub fn reset(&mut self) {
        self.frame.clear();
        self.fu_start = None;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
