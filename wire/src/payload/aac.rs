//! AAC over RTP (RFC 3640, mode AAC-hbr: 13-bit AU-size, 3-bit AU-Index/AU-Index-delta).
//! Senders put one AU per packet, or fragment a large AU over several packets, each with the
//! same AU header (size of the whole AU); the marker bit ends the AU.

use bytes::{BufMut, Bytes, BytesMut};

use super::Payloads;
use crate::error::DecodeError;

/// Largest AU the 13-bit size field can describe.
pub const MAX_AU: usize = (1 << 13) - 1;

/// Packetizes one AU into payloads of at most `max_payload` bytes (at least 5).
pub fn packetize(au: &Bytes, max_payload: usize) -> Result<Payloads, DecodeError> {
    if au.is_empty() || au.len() > MAX_AU {
        return Err(DecodeError::TooLarge {
            what: "AAC access unit",
            size: au.len() as u64,
            limit: MAX_AU as u64,
        });
    }
    let header = ((au.len() as u16) << 3).to_be_bytes();
    let chunk = max_payload.max(5) - 4;
    let n = au.len().div_ceil(chunk);
    Ok(au
        .chunks(chunk)
        .enumerate()
        .map(|(i, part)| {
            let mut p = BytesMut::with_capacity(part.len() + 4);
            p.put_u16(16); // AU-headers-length in bits: one header
            p.put_slice(&header);
            p.put_slice(part);
            (p.freeze(), i + 1 == n)
        })
        .collect())
}

/// Rebuilds AUs from payloads.
#[derive(Debug, Default)]
pub struct Depacketizer {
    au: BytesMut,
    expected: Option<usize>,
}

impl Depacketizer {
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds one payload; returns the AU when complete. On error the partial AU is dropped.
    pub fn push(&mut self, p: &[u8], marker: bool) -> Result<Option<Bytes>, DecodeError> {
        let r = self.push_inner(p, marker);
        if r.is_err() {
            self.reset();
        }
        r
    }

    fn push_inner(&mut self, p: &[u8], marker: bool) -> Result<Option<Bytes>, DecodeError> {
        let [h0, h1, a0, a1, data @ ..] = p else {
            return Err(DecodeError::Malformed(
                "AAC payload shorter than its headers",
            ));
        };
        if u16::from_be_bytes([*h0, *h1]) != 16 {
            return Err(DecodeError::Malformed(
                "AAC payload must carry exactly one AU header",
            ));
        }
        let header = u16::from_be_bytes([*a0, *a1]);
        if header & 0x7 != 0 {
            return Err(DecodeError::Malformed(
                "AU-Index must be 0 (no interleaving)",
            ));
        }
        let size = usize::from(header >> 3);
        match self.expected {
            None => self.expected = Some(size),
            Some(s) if s == size => {}
            Some(_) => return Err(DecodeError::Malformed("AU size changed inside a fragment")),
        }
        if self.au.len() + data.len() > size {
            return Err(DecodeError::Malformed("AAC data exceeds its AU size"));
        }
        self.au.put_slice(data);
        let complete = self.au.len() == size;
        match (complete, marker) {
            (true, true) => {
                self.expected = None;
                Ok(Some(self.au.split().freeze()))
            }
            (false, false) => Ok(None),
            (true, false) => Err(DecodeError::Malformed("complete AU without marker")),
            (false, true) => Err(DecodeError::Malformed("marker before the AU is complete")),
        }
    }

    pub fn reset(&mut self) {
        self.au.clear();
        self.expected = None;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn example_and_fragments() {
        // docs/PROTOCOL.md, "AAC example": a 3-byte AU.
        let au = Bytes::from_static(&[0x21, 0x10, 0x05]);
        let p = packetize(&au, 1400).unwrap();
        assert_eq!(p.len(), 1);
        assert_eq!(&p[0].0[..], &[0x00, 0x10, 0x00, 0x18, 0x21, 0x10, 0x05]);
        assert!(p[0].1);
        let mut d = Depacketizer::new();
        assert_eq!(d.push(&p[0].0, true).unwrap(), Some(au));

        let big = Bytes::from((0..1000u32).map(|i| i as u8).collect::<Vec<_>>());
        let parts = packetize(&big, 104).unwrap();
        assert_eq!(parts.len(), 10);
        let mut out = None;
        for (payload, m) in &parts {
            out = d.push(payload, *m).unwrap();
        }
        assert_eq!(out, Some(big));
    }

    #[test]
    fn errors() {
        let mut d = Depacketizer::new();
        assert!(d.push(&[0, 16, 0, 0x18, 1], true).is_err()); // marker before complete
        assert!(d.push(&[0, 32, 0, 0x18, 0, 0x18, 1, 2, 3], true).is_err()); // two headers
        assert!(d.push(&[0, 16, 0, 0x19, 1, 2, 3], true).is_err()); // index != 0
        assert!(d.push(&[0, 16], true).is_err());
        assert!(packetize(&Bytes::new(), 100).is_err());
        assert!(packetize(&Bytes::from(vec![0; MAX_AU + 1]), 100).is_err());
    }
}
