//! RTP packets (RFC 3550) as segue/1 sends them, parsed and written with `rtp-types`.
//!
//! The first packet of every frame carries the *frame-info* header extension (RFC 8285
//! one-byte form, id negotiated by `a=extmap` in the SDP, default 1): flags and the
//! composition time offset (pts - dts), so a receiver can rebuild each frame record exactly.

use bytes::Bytes;

use crate::error::DecodeError;

/// RFC 8285 one-byte header extension profile marker.
pub const ONE_BYTE_PROFILE: u16 = 0xBEDE;
/// Extension id of frame-info unless the SDP says otherwise.
pub const FRAME_INFO_EXT_ID: u8 = 1;
/// URI of the frame-info extension in `a=extmap`.
pub const FRAME_INFO_EXT_URI: &str = "urn:x-segue:frame-info";
/// Largest composition offset the extension can carry (24 bits).
pub const MAX_CTO: u32 = (1 << 24) - 1;

/// Per-frame information carried in the frame-info extension.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FrameInfo {
    /// A sync sample: decoding can start here.
    pub keyframe: bool,
    /// pts - dts in the track's clock (0 without B-frames), at most [`MAX_CTO`].
    pub cto: u32,
}

impl FrameInfo {
    fn encode(self) -> [u8; 4] {
        let c = self.cto.min(MAX_CTO).to_be_bytes();
        [u8::from(self.keyframe), c[1], c[2], c[3]]
    }

    fn decode(b: &[u8]) -> Result<Self, DecodeError> {
        let [flags, c1, c2, c3] = b else {
            return Err(DecodeError::Rtp(
                "frame-info extension must be 4 bytes".into(),
            ));
        };
        if flags & !1 != 0 {
            return Err(DecodeError::Rtp("reserved frame-info flags set".into()));
        }
        Ok(Self {
            keyframe: flags & 1 == 1,
            cto: u32::from_be_bytes([0, *c1, *c2, *c3]),
        })
    }
}

/// An RTP packet as segue/1 uses it (no CSRCs, no padding on send).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RtpPacket {
    pub marker: bool,
    pub payload_type: u8,
    pub sequence: u16,
    pub timestamp: u32,
    pub ssrc: u32,
    pub frame_info: Option<FrameInfo>,
    pub payload: Bytes,
}

impl RtpPacket {
    /// Encoded size in bytes.
    pub fn encoded_len(&self) -> usize {
        12 + if self.frame_info.is_some() { 12 } else { 0 } + self.payload.len()
    }

    /// Appends the packet's bytes to `out`, with the frame-info extension under id `ext_id`.
    fn append_to(&self, out: &mut Vec<u8>, ext_id: u8) {
        self.append_parts(out, ext_id, true)
    }

    /// Appends the header (and the payload if `with_payload`). An RTP header does not encode
    /// the payload length, so the header alone is the packet's first bytes.
    fn append_parts(&self, out: &mut Vec<u8>, ext_id: u8, with_payload: bool) {
        let ext;
        let payload: &[u8] = if with_payload { &self.payload } else { &[] };
        let mut b = rtp_types::RtpPacketBuilder::<&[u8], &[u8]>::new()
            .marker_bit(self.marker)
            .payload_type(self.payload_type & 0x7f)
            .sequence_number(self.sequence)
            .timestamp(self.timestamp)
            .ssrc(self.ssrc)
            .payload(payload);
        if let Some(fi) = self.frame_info {
            // One element: ID (4 bits) | L=3 (4 bits), 4 data bytes, padded to 8 bytes.
            let d = fi.encode();
            ext = [(ext_id & 0x0f) << 4 | 3, d[0], d[1], d[2], d[3], 0, 0, 0];
            b = b.extension(ONE_BYTE_PROFILE, &ext[..]);
        }
        // Fields are all in range and the payload is bounded by callers; a failure here would
        // be an internal bug, reported as a missing packet that the peer detects.
        let start = out.len();
        if b.write_into_vec(out).is_err() {
            out.truncate(start);
        }
    }

    /// Serialises with the frame-info extension under id `ext_id` (1..=14).
    pub fn encode_with_ext_id(&self, ext_id: u8) -> Vec<u8> {
        let mut out = Vec::with_capacity(self.encoded_len());
        self.append_to(&mut out, ext_id);
        out
    }

    pub fn encode(&self) -> Vec<u8> {
        self.encode_with_ext_id(FRAME_INFO_EXT_ID)
    }

    /// Appends the packet as one RoQ frame (`length varint`, packet) without an intermediate
    /// buffer. Same bytes as `roq::put_packet(out, &self.encode_with_ext_id(ext_id))`.
    pub fn write_framed(&self, out: &mut Vec<u8>, ext_id: u8) {
        crate::varint::put(out, self.encoded_len() as u64);
        self.append_to(out, ext_id);
    }

    /// Like [`RtpPacket::write_framed`] without the payload: the RoQ length and the RTP header.
    /// Followed by `self.payload`, it is the same bytes; senders use it to hand the payload to
    /// the transport without copying it.
    pub fn write_framed_header(&self, out: &mut Vec<u8>, ext_id: u8) {
        crate::varint::put(out, self.encoded_len() as u64);
        self.append_parts(out, ext_id, false);
    }

    /// Rewrites, in place, the fields a sender varies per session in an encoded packet that
    /// starts at `header[0]`: the sequence number becomes `sequence`, `ts_add` is added to
    /// the timestamp (wrapping) and the SSRC becomes `ssrc`. The fixed header layout (RFC 3550
    /// §5.1) puts them at bytes 2..4, 4..8 and 8..12; shorter input is left alone.
    pub fn restamp(header: &mut [u8], sequence: u16, ts_add: u32, ssrc: u32) {
        let Some(h) = header.get_mut(..12) else {
            return;
        };
        h[2..4].copy_from_slice(&sequence.to_be_bytes());
        let ts = u32::from_be_bytes([h[4], h[5], h[6], h[7]]).wrapping_add(ts_add);
        h[4..8].copy_from_slice(&ts.to_be_bytes());
        h[8..12].copy_from_slice(&ssrc.to_be_bytes());
    }

    /// Parses a packet; `ext_id` is the frame-info id negotiated in the SDP.
    pub fn decode_with_ext_id(data: &[u8], ext_id: u8) -> Result<Self, DecodeError> {
        let p = rtp_types::RtpPacket::parse(data).map_err(|e| DecodeError::Rtp(e.to_string()))?;
        let mut frame_info = None;
        if let Some((profile, ext)) = p.extension()
            && profile == ONE_BYTE_PROFILE
        {
            frame_info = find_one_byte_element(ext, ext_id)?
                .map(FrameInfo::decode)
                .transpose()?;
        }
        Ok(Self {
            marker: p.marker_bit(),
            payload_type: p.payload_type(),
            sequence: p.sequence_number(),
            timestamp: p.timestamp(),
            ssrc: p.ssrc(),
            frame_info,
            payload: Bytes::copy_from_slice(p.payload()),
        })
    }

    pub fn decode(data: &[u8]) -> Result<Self, DecodeError> {
        Self::decode_with_ext_id(data, FRAME_INFO_EXT_ID)
    }
}

/// Walks RFC 8285 one-byte elements and returns the data of element `id`.
fn find_one_byte_element(mut ext: &[u8], id: u8) -> Result<Option<&[u8]>, DecodeError> {
    while let Some((&h, rest)) = ext.split_first() {
        if h == 0 {
            ext = rest; // padding
            continue;
        }
        let el_id = h >> 4;
        if el_id == 15 {
            break; // reserved: stop processing (RFC 8285 §4.2)
        }
        let len = usize::from(h & 0x0f) + 1;
        let data = rest
            .get(..len)
            .ok_or_else(|| DecodeError::Rtp("header extension element overruns".into()))?;
        if el_id == id {
            return Ok(Some(data));
        }
        ext = &rest[len..];
    }
    Ok(None)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn restamp_matches_a_fresh_encoding() {
        let mut p = RtpPacket {
            marker: false,
            payload_type: 97,
            sequence: 3,
            timestamp: 0xffff_fff0,
            ssrc: 0,
            frame_info: Some(FrameInfo {
                keyframe: false,
                cto: 0,
            }),
            payload: Bytes::from_static(b"abc"),
        };
        let mut bytes = p.encode();
        RtpPacket::restamp(&mut bytes, 0xfffe, 0x20, 0xdead_beef);
        p.sequence = 0xfffe;
        p.timestamp = 0x10; // wrapped
        p.ssrc = 0xdead_beef;
        assert_eq!(bytes, p.encode());
        let mut short = [0u8; 11];
        RtpPacket::restamp(&mut short, 1, 1, 1);
        assert_eq!(short, [0u8; 11]);
    }

    #[test]
    fn spec_example() {
        // docs/PROTOCOL.md, "RTP packet example".
        let bytes: [u8; 27] = [
            0x90, 0xe0, 0x00, 0x07, // V=2, X=1, M=1, PT=96, seq 7
            0x00, 0x01, 0x5f, 0x90, // timestamp 90000
            0x12, 0x34, 0xab, 0xcd, // SSRC
            0xbe, 0xde, 0x00, 0x02, // one-byte extension, 2 words
            0x13, 0x01, 0x00, 0x0b, 0xb8, 0x00, 0x00, 0x00, // id 1 L=3: key, cto 3000
            0x65, 0x88, 0x84, // payload (an IDR NAL header and 2 bytes)
        ];
        let p = RtpPacket::decode(&bytes).unwrap();
        assert_eq!(
            p,
            RtpPacket {
                marker: true,
                payload_type: 96,
                sequence: 7,
                timestamp: 90_000,
                ssrc: 0x1234_abcd,
                frame_info: Some(FrameInfo {
                    keyframe: true,
                    cto: 3000
                }),
                payload: Bytes::from_static(&[0x65, 0x88, 0x84]),
            }
        );
        assert_eq!(p.encode(), bytes);
        assert_eq!(p.encoded_len(), bytes.len());
    }

    #[test]
    fn write_framed_matches_put_packet() {
        for fi in [
            None,
            Some(FrameInfo {
                keyframe: false,
                cto: 7,
            }),
        ] {
            let p = RtpPacket {
                marker: true,
                payload_type: 96,
                sequence: 1,
                timestamp: 2,
                ssrc: 3,
                frame_info: fi,
                payload: Bytes::from(vec![9u8; 300]),
            };
            let mut a = vec![0xee];
            p.write_framed(&mut a, 1);
            let mut b = vec![0xee];
            crate::roq::put_packet(&mut b, &p.encode());
            assert_eq!(a, b);
            let mut c = vec![0xee];
            p.write_framed_header(&mut c, 1);
            c.extend_from_slice(&p.payload);
            assert_eq!(c, b);
        }
    }

    #[test]
    fn without_extension_and_garbage() {
        let p = RtpPacket {
            marker: false,
            payload_type: 97,
            sequence: 65535,
            timestamp: u32::MAX,
            ssrc: 1,
            frame_info: None,
            payload: Bytes::from_static(b"x"),
        };
        let e = p.encode();
        assert_eq!(e.len(), 13);
        assert_eq!(RtpPacket::decode(&e).unwrap(), p);
        assert!(RtpPacket::decode(&[0x40; 12]).is_err()); // version 1
        assert!(RtpPacket::decode(&[0x80; 5]).is_err());
    }
}
