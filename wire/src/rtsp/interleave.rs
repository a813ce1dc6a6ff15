//! Interleaved RTP and RTCP (RFC 2326 §10.12, RFC 7826 App. C.2): `$`, a channel byte, a
//! 16-bit length and the packet, in the RTSP connection. The media sender keeps segue/1's
//! RoQ-framed packet templates (`(length varint, packet)*`) and re-frames them here, sharing
//! large payloads instead of copying them.

use bytes::{Buf, Bytes};

use crate::error::DecodeError;
use crate::varint;

/// Largest packet an interleaved frame carries.
pub const MAX_INTERLEAVED: usize = u16::MAX as usize;

fn header(channel: u8, len: usize) -> Result<[u8; 4], DecodeError> {
    let len = u16::try_from(len).map_err(|_| DecodeError::TooLarge {
        what: "interleaved packet",
        size: len as u64,
        limit: MAX_INTERLEAVED as u64,
    })?;
    let [hi, lo] = len.to_be_bytes();
    Ok([b'$', channel, hi, lo])
}

/// One packet as an interleaved frame on `channel`.
pub fn frame(channel: u8, packet: &[u8]) -> Result<Bytes, DecodeError> {
    let mut out = Vec::with_capacity(4 + packet.len());
    out.extend_from_slice(&header(channel, packet.len())?);
    out.extend_from_slice(packet);
    Ok(Bytes::from(out))
}

/// Re-frames one track's RoQ packet stream (after its stream header) as interleaved frames
/// on one channel. Input may be cut anywhere; a packet split over chunks comes out as
/// slices of them.
#[derive(Debug)]
pub struct Interleaver {
    channel: u8,
    /// Bytes of a length varint read so far.
    length: Vec<u8>,
    /// Bytes of the current packet still to come.
    left: usize,
}

impl Interleaver {
    pub fn new(channel: u8) -> Self {
        Self {
            channel,
            length: Vec::with_capacity(8),
            left: 0,
        }
    }

    pub fn channel(&self) -> u8 {
        self.channel
    }

    /// Whether the input so far ended on a packet boundary.
    pub fn at_boundary(&self) -> bool {
        self.left == 0 && self.length.is_empty()
    }

    /// Appends the interleaved form of `chunk` to `out`.
    pub fn push(&mut self, mut chunk: Bytes, out: &mut Vec<Bytes>) -> Result<(), DecodeError> {
        while !chunk.is_empty() {
            if self.left > 0 {
                let n = self.left.min(chunk.len());
                out.push(chunk.split_to(n));
                self.left -= n;
                continue;
            }
            self.length.push(chunk[0]);
            chunk.advance(1);
            let Some((len, _)) = varint::get(&self.length) else {
                continue;
            };
            self.length.clear();
            let len = usize::try_from(len).unwrap_or(usize::MAX);
            if len == 0 {
                return Err(DecodeError::Malformed("empty RTP packet"));
            }
            out.push(Bytes::copy_from_slice(&header(self.channel, len)?));
            self.left = len;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::roq;

    fn roq_stream(packets: &[&[u8]]) -> Vec<u8> {
        let mut b = Vec::new();
        for p in packets {
            roq::put_packet(&mut b, p);
        }
        b
    }

    #[test]
    fn reframes_whatever_the_cuts() {
        let big = vec![7u8; 300];
        let packets: [&[u8]; 3] = [b"abc", &big, b"z"];
        let stream = roq_stream(&packets);
        let mut expect = Vec::new();
        for p in packets {
            expect.extend_from_slice(&frame(4, p).unwrap());
        }
        for cut in 1..stream.len() {
            let mut il = Interleaver::new(4);
            let mut out = Vec::new();
            for part in stream.chunks(cut) {
                il.push(Bytes::copy_from_slice(part), &mut out).unwrap();
            }
            assert!(il.at_boundary());
            assert_eq!(out.concat(), expect, "cut every {cut} bytes");
        }
    }

    #[test]
    fn frame_bytes_and_limits() {
        assert_eq!(
            &frame(1, b"\x80\xc8").unwrap()[..],
            b"$\x01\x00\x02\x80\xc8"
        );
        assert!(frame(0, &vec![0; MAX_INTERLEAVED + 1]).is_err());
        let mut il = Interleaver::new(0);
        let mut too_big = Vec::new();
        varint::put(&mut too_big, MAX_INTERLEAVED as u64 + 1);
        assert!(il.push(Bytes::from(too_big), &mut Vec::new()).is_err());
        let mut il = Interleaver::new(0);
        assert!(il.push(Bytes::from_static(&[0]), &mut Vec::new()).is_err());
    }

    #[test]
    fn large_payloads_are_shared_not_copied() {
        let payload = Bytes::from(vec![1u8; 4000]);
        let mut head = Vec::new();
        varint::put(&mut head, 4000);
        let mut il = Interleaver::new(2);
        let mut out = Vec::new();
        il.push(Bytes::from(head), &mut out).unwrap();
        il.push(payload.clone(), &mut out).unwrap();
        assert_eq!(out.len(), 2);
        assert_eq!(out[1].as_ptr(), payload.as_ptr());
    }
}
