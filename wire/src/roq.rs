//! RTP over QUIC framing (draft-ietf-avtcore-rtp-over-quic, stream mode).
//!
//! Media travels on server-initiated unidirectional streams. A stream starts with the flow id
//! (varint), then carries `(length varint, RTP packet)*` until FIN. segue/1 opens one stream per
//! track per segment, so a slow or reset stream never blocks the next segment.

use bytes::{Buf, BufMut, Bytes, BytesMut};

use crate::error::DecodeError;
use crate::varint;

/// Writes the stream header: the flow id.
pub fn put_stream_header<B: BufMut>(buf: &mut B, flow_id: u64) {
    varint::put(buf, flow_id);
}

/// Writes one framed RTP packet. `packet` must not be empty nor exceed the limit the peer
/// enforces (`Limits::max_rtp_packet`).
pub fn put_packet<B: BufMut>(buf: &mut B, packet: &[u8]) {
    varint::put(buf, packet.len() as u64);
    buf.put_slice(packet);
}

/// What a RoQ stream yields.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RoqItem {
    /// The stream's flow id; always the first item.
    Flow(u64),
    /// One RTP packet (not yet parsed).
    Packet(Bytes),
}

/// Incremental decoder for one RoQ stream.
#[derive(Debug)]
pub struct RoqDecoder {
    max_packet: usize,
    flow: Option<u64>,
    buf: BytesMut,
}

impl RoqDecoder {
    pub fn new(max_packet: usize) -> Self {
        Self {
            max_packet,
            flow: None,
            buf: BytesMut::new(),
        }
    }

    /// The flow id, once read.
    pub fn flow_id(&self) -> Option<u64> {
        self.flow
    }

    pub fn push(&mut self, data: &[u8]) {
        self.buf.extend_from_slice(data);
    }

    /// The next item, `Ok(None)` when more bytes are needed.
    pub fn next_item(&mut self) -> Result<Option<RoqItem>, DecodeError> {
        if self.flow.is_none() {
            let Some((flow, n)) = varint::get(&self.buf) else {
                return Ok(None);
            };
            self.buf.advance(n);
            self.flow = Some(flow);
            return Ok(Some(RoqItem::Flow(flow)));
        }
        let Some((len, n)) = varint::get(&self.buf) else {
            return Ok(None);
        };
        if len == 0 {
            return Err(DecodeError::Malformed("empty RTP packet in RoQ stream"));
        }
        if len > self.max_packet as u64 {
            return Err(DecodeError::TooLarge {
                what: "RTP packet",
                size: len,
                limit: self.max_packet as u64,
            });
        }
        let len = len as usize; // bounded by max_packet
        if self.buf.len() < n + len {
            return Ok(None);
        }
        self.buf.advance(n);
        Ok(Some(RoqItem::Packet(self.buf.split_to(len).freeze())))
    }

    /// Call at FIN: fails if the stream ended inside a packet or before its header.
    pub fn finish(&self) -> Result<(), DecodeError> {
        if self.buf.is_empty() && self.flow.is_some() {
            Ok(())
        } else {
            Err(DecodeError::Truncated)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spec_example() {
        // docs/PROTOCOL.md, "RoQ stream example": flow 2, packets of 3 and 2 bytes.
        let bytes = [0x02, 0x03, 0x80, 0x60, 0x00, 0x02, 0xaa, 0xbb];
        let mut d = RoqDecoder::new(1500);
        // Byte at a time: the decoder must reassemble.
        let mut items = Vec::new();
        for b in bytes {
            d.push(&[b]);
            while let Some(i) = d.next_item().unwrap() {
                items.push(i);
            }
        }
        d.finish().unwrap();
        assert_eq!(
            items,
            vec![
                RoqItem::Flow(2),
                RoqItem::Packet(Bytes::from_static(&[0x80, 0x60, 0x00])),
                RoqItem::Packet(Bytes::from_static(&[0xaa, 0xbb])),
            ]
        );
        let mut out = Vec::new();
        put_stream_header(&mut out, 2);
        put_packet(&mut out, &[0x80, 0x60, 0x00]);
        put_packet(&mut out, &[0xaa, 0xbb]);
        assert_eq!(out, bytes);
    }

    #[test]
    fn limits_and_truncation() {
        let mut d = RoqDecoder::new(100);
        d.push(&[0x00, 0x40, 0x65]); // flow 0, length 101
        assert_eq!(d.next_item().unwrap(), Some(RoqItem::Flow(0)));
        assert!(matches!(
            d.next_item(),
            Err(DecodeError::TooLarge { size: 101, .. })
        ));
        let mut d = RoqDecoder::new(100);
        d.push(&[0x00, 0x05, 1, 2]);
        assert_eq!(d.next_item().unwrap(), Some(RoqItem::Flow(0)));
        assert_eq!(d.next_item().unwrap(), None);
        assert_eq!(d.finish(), Err(DecodeError::Truncated));
        let mut d = RoqDecoder::new(100);
        d.push(&[0x00, 0x00]);
        d.next_item().unwrap();
        assert!(d.next_item().is_err());
    }
}
