//! Segment protocol: how an edge (or a helper) fetches an object's manifest and segments from
//! an origin (or another helper). Each request has its own client-initiated bidirectional
//! stream (never the first one, which is control), so many run in parallel.
//!
//! Client: one request frame, then FIN. Server: a RESPONSE frame; on success for a manifest
//! request a MANIFEST frame, for a segments request one SEGMENT header + payload per segment;
//! then FIN. A failure after the RESPONSE is signalled by resetting the stream with an
//! [`crate::AppError`] code.
//!
//! A push runs the other way on the same kind of stream: the pusher (client) sends a
//! PUSH_OFFER; the receiver answers a RESPONSE and, if it wants any of the offered segments,
//! a SEGMENTS_REQUEST for the range it wants; the pusher sends those SEGMENT frames and
//! FIN; the receiver ends with a second RESPONSE (what it stored) and FIN.

pub mod chunk;
mod frame;
mod manifest;
mod receive;
mod record;

pub use chunk::{ChunkError, ChunkVerifier};
pub use frame::{
    Params, ResponseFrame, ResponseHeader, SegmentHeader, SegmentRequest, Status, decode_request,
    decode_response_frame, encode_chunk_hashes, encode_manifest_frame, encode_segment_head,
};
pub use manifest::{Manifest, SegmentEntry, TrackEntry};
pub use receive::{ReceiveError, SegmentReceiver};
pub use record::{Frame, FrameReader, complete_records};

/// Size of every checksum and content hash (SHA-256).
pub const HASH_LEN: usize = 32;
/// A SHA-256 digest.
pub type Hash = [u8; HASH_LEN];
/// Hop limit a helper puts on a request it originates.
pub const DEFAULT_HOP_LIMIT: u8 = 4;

/// A helper's id in the SENDER parameter: the 64-bit FNV-1a hash of its name, top two bits
/// cleared (a QUIC varint holds 62). An identifier, not a credential.
pub fn helper_id(name: &str) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in name.bytes() {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    h >> 2
}

/// Frame types.
pub mod frame_type {
    pub const MANIFEST_REQUEST: u64 = 0x01;
    pub const SEGMENTS_REQUEST: u64 = 0x02;
    pub const PUSH_OFFER: u64 = 0x03;
    /// Helper advertisement ([`crate::advert`]).
    pub const ADVERT: u64 = 0x04;
    pub const RESPONSE: u64 = 0x10;
    pub const MANIFEST: u64 = 0x11;
    pub const SEGMENT: u64 = 0x12;
    /// The chunk hashes of the segment just announced (§8.6.1), on request.
    pub const CHUNK_HASHES: u64 = 0x13;
}

/// Request parameter types.
pub mod param_type {
    pub const HOP_LIMIT: u64 = 0x01;
    pub const REVISION: u64 = 0x02;
    pub const DEADLINE: u64 = 0x03;
    pub const VIEWERS: u64 = 0x04;
    pub const SENDER: u64 = 0x05;
    /// Signed-URL grant of a player's request: Expires (i) + HMAC tag (32 bytes).
    pub const TOKEN: u64 = 0x06;
    /// No value: send each segment's CHUNK_HASHES (§8.6.1).
    pub const CHUNKS: u64 = 0x07;
}

#[cfg(test)]
mod tests {
    use bytes::Bytes;

    use super::*;
    use crate::{DecodeError, Limits, ObjectName};

    fn name(s: &str) -> ObjectName {
        ObjectName::new(s, 1024).unwrap()
    }

    // The examples of docs/PROTOCOL.md §8.8.
    #[test]
    fn helper_ids() {
        assert_eq!(helper_id("h1"), 0x022e_a1c1_ed57_c1f4);
        assert_eq!(helper_id("edge-a"), 0x3c75_f62d_0d4b_0529);
        assert!(helper_id("x") < 1 << 62);
    }

    // Byte vectors below are the examples of docs/PROTOCOL.md, "Segment protocol".
    #[test]
    fn segments_request_example() {
        let bytes = [
            0x02, 0x09, 0x03, b'a', b'/', b'b', 0x03, 0x02, 0x01, 0x01, 0x04,
        ];
        let req = SegmentRequest::Segments {
            object: name("a/b"),
            first: 3,
            count: 2,
            params: Params {
                hop_limit: Some(4),
                revision: None,
                deadline_ms: None,
                viewers: None,
                sender: None,
                token: None,
                chunks: false,
            },
        };
        assert_eq!(req.encode(), bytes);
        let l = Limits::default();
        assert_eq!(
            decode_request(&bytes, &l).unwrap(),
            Some((req, bytes.len()))
        );
        for cut in 0..bytes.len() {
            assert_eq!(decode_request(&bytes[..cut], &l).unwrap(), None);
        }
    }

    #[test]
    fn revision_param_example() {
        // SEGMENTS_REQUEST "a", first 0, count 1, REVISION 300 (0x41 0x2c).
        let bytes = [0x02, 0x08, 0x01, b'a', 0x00, 0x01, 0x02, 0x02, 0x41, 0x2c];
        let req = SegmentRequest::Segments {
            object: name("a"),
            first: 0,
            count: 1,
            params: Params {
                hop_limit: None,
                revision: Some(300),
                deadline_ms: None,
                viewers: None,
                sender: None,
                token: None,
                chunks: false,
            },
        };
        assert_eq!(req.encode(), bytes);
        assert_eq!(
            decode_request(&bytes, &Limits::default()).unwrap(),
            Some((req, bytes.len()))
        );
        // A revision parameter with bytes after the varint is refused.
        let bad = [
            0x02, 0x09, 0x01, b'a', 0x00, 0x01, 0x02, 0x03, 0x41, 0x2c, 0x00,
        ];
        assert!(decode_request(&bad, &Limits::default()).is_err());
    }

    #[test]
    fn deadline_param_example() {
        // SEGMENTS_REQUEST "a", first 5, count 1, REVISION 7, DEADLINE 1500 ms (0x45 0xdc).
        let bytes = [
            0x02, 0x0b, 0x01, b'a', 0x05, 0x01, 0x02, 0x01, 0x07, 0x03, 0x02, 0x45, 0xdc,
        ];
        let req = SegmentRequest::Segments {
            object: name("a"),
            first: 5,
            count: 1,
            params: Params {
                hop_limit: None,
                revision: Some(7),
                deadline_ms: Some(1500),
                viewers: None,
                sender: None,
                token: None,
                chunks: false,
            },
        };
        assert_eq!(req.encode(), bytes);
        assert_eq!(
            decode_request(&bytes, &Limits::default()).unwrap(),
            Some((req, bytes.len()))
        );
    }

    #[test]
    fn push_offer_example() {
        // PUSH_OFFER "a", first 0, count 3, REVISION 7, VIEWERS 500 (0x41 0xf4).
        let bytes = [
            0x03, 0x0b, 0x01, b'a', 0x00, 0x03, 0x02, 0x01, 0x07, 0x04, 0x02, 0x41, 0xf4,
        ];
        let req = SegmentRequest::PushOffer {
            object: name("a"),
            first: 0,
            count: 3,
            params: Params {
                revision: Some(7),
                viewers: Some(500),
                ..Params::default()
            },
        };
        assert_eq!(req.encode(), bytes);
        assert_eq!(
            decode_request(&bytes, &Limits::default()).unwrap(),
            Some((req, bytes.len()))
        );
        // Without a revision the receiver could not check what it is offered: refused.
        let bare = SegmentRequest::PushOffer {
            object: name("a"),
            first: 0,
            count: 3,
            params: Params::default(),
        }
        .encode();
        assert!(decode_request(&bare, &Limits::default()).is_err());
        assert_eq!(Status::from_code(10), Status::NotNeeded);
        assert_eq!(Status::NotNeeded.code(), 10);
    }

    #[test]
    fn manifest_request_and_unknown_params() {
        // MANIFEST_REQUEST "x" with an unknown parameter 0x21 (2 bytes), which is skipped.
        let bytes = [0x01, 0x06, 0x01, b'x', 0x21, 0x02, 0xff, 0xff];
        let (req, n) = decode_request(&bytes, &Limits::default()).unwrap().unwrap();
        assert_eq!(n, 8);
        assert_eq!(
            req,
            SegmentRequest::Manifest {
                object: name("x"),
                params: Params::default()
            }
        );
    }

    #[test]
    fn response_and_segment_header_examples() {
        let l = Limits::default();
        let ok = [0x10, 0x02, 0x00, 0x00];
        assert_eq!(ResponseHeader::ok().encode(), ok);
        let nf = [0x10, 0x04, 0x02, 0x02, b'n', b'o'];
        let h = ResponseHeader::error(Status::NotFound, "no");
        assert_eq!(h.encode(), nf);
        assert_eq!(
            decode_response_frame(&nf, &l).unwrap(),
            Some((ResponseFrame::Response(h), 6))
        );
        let mut seg = vec![0x12, 0x23, 0x03, 0x43, 0xe8];
        seg.extend([0xaa; 32]);
        let sh = SegmentHeader {
            index: 3,
            size: 1000,
            checksum: [0xaa; 32],
        };
        assert_eq!(sh.encode(), seg);
        // Payload bytes after the header are not consumed.
        seg.extend([0u8; 10]);
        assert_eq!(
            decode_response_frame(&seg, &l).unwrap(),
            Some((ResponseFrame::Segment(sh), 37))
        );
    }

    #[test]
    fn request_limits() {
        let l = Limits {
            max_segments_per_request: 10,
            ..Limits::default()
        };
        let req = SegmentRequest::Segments {
            object: name("a"),
            first: 0,
            count: 11,
            params: Params::default(),
        };
        let e = decode_request(&req.encode(), &l).unwrap_err();
        assert!(matches!(e, DecodeError::TooMany { count: 11, .. }));
        assert_eq!(e.to_string(), "11 segments requested, limit is 10");
        // A request frame claiming 1 MB is refused from its header alone.
        assert!(matches!(
            decode_request(&[0x02, 0x80, 0x10, 0x00, 0x00], &l),
            Err(DecodeError::TooLarge { .. })
        ));
        assert!(matches!(
            decode_request(&[0x07, 0x00], &l),
            Err(DecodeError::Unknown { value: 7, .. })
        ));
        // Traversal in a name is rejected.
        let evil = [0x01, 0x06, 0x05, b'.', b'.', b'/', b'e', b't'];
        assert!(decode_request(&evil, &l).is_err());
    }

    #[test]
    fn frame_record_example() {
        let bytes = Bytes::from_static(&[
            0x00, 0x01, 0x4b, 0xb8, 0x00, 0x05, 0x00, 0x00, 0x00, 0x01, 0x65,
        ]);
        let f = Frame {
            track: 0,
            keyframe: true,
            pts: 3000,
            cto: 0,
            data: Bytes::from_static(&[0, 0, 0, 1, 0x65]),
        };
        let mut out = Vec::new();
        f.encode_into(&mut out);
        assert_eq!(out, bytes);
        assert_eq!(f.encoded_len(), bytes.len());
        let mut head = Vec::new();
        f.encode_head_into(&mut head);
        assert_eq!(head, bytes[..bytes.len() - f.data.len()]);
        let widest = Frame {
            track: u32::MAX,
            pts: crate::varint::MAX,
            cto: crate::rtp::MAX_CTO,
            data: Bytes::from(vec![0; 1 << 14]),
            ..f.clone()
        };
        head.clear();
        widest.encode_head_into(&mut head);
        // (The size of a frame of 1 GiB or more would take 4 bytes more.)
        assert_eq!(head.len() + 4, Frame::MAX_HEAD_LEN);
        let frames: Vec<_> = FrameReader::new(&bytes, 1 << 20)
            .collect::<Result<_, _>>()
            .unwrap();
        assert_eq!(frames, vec![f]);
        let cut = bytes.slice(..bytes.len() - 1);
        let r: Result<Vec<_>, _> = FrameReader::new(&cut, 1 << 20).collect();
        assert_eq!(r, Err(DecodeError::Truncated));
        // cto > pts is refused.
        let bad = Bytes::from_static(&[0x00, 0x00, 0x01, 0x02, 0x00]);
        assert!(FrameReader::new(&bad, 1 << 20).next().unwrap().is_err());
    }

    fn manifest() -> Manifest {
        Manifest {
            object: name("movies/demo"),
            revision: 7,
            duration_us: 4_000_000,
            chunk_size: 1024,
            formats: vec!["mp4".into(), "ts".into()],
            sdp: "v=0\r\n".into(),
            tracks: vec![TrackEntry {
                frames: 100,
                content_hash: [1; 32],
            }],
            segments: vec![
                SegmentEntry {
                    start_us: 0,
                    duration_us: 2_000_000,
                    size: 5000,
                    frames: 50,
                    checksum: [2; 32],
                    chunk_root: [4; 32],
                },
                SegmentEntry {
                    start_us: 2_000_000,
                    duration_us: 2_000_000,
                    size: 4000,
                    frames: 50,
                    checksum: [3; 32],
                    chunk_root: [5; 32],
                },
            ],
        }
    }

    #[test]
    fn manifest_round_trip_and_lookup() {
        let m = manifest();
        let l = Limits::default();
        let frame = encode_manifest_frame(&m);
        assert_eq!(u64::from(frame[0]), frame_type::MANIFEST);
        assert_eq!(
            decode_response_frame(&frame, &l).unwrap(),
            Some((ResponseFrame::Manifest(m.clone()), frame.len()))
        );
        assert_eq!(m.total_size(), 9000);
        assert_eq!(m.segment_at(0), Some(0));
        assert_eq!(m.segment_at(1_999_999), Some(0));
        assert_eq!(m.segment_at(2_000_000), Some(1));
        assert_eq!(m.segment_at(99_000_000), Some(1));
        let enc = m.encode();
        for cut in 0..enc.len() {
            assert!(Manifest::decode(&enc[..cut], &l).is_err());
        }
        let mut backwards = m.clone();
        backwards.segments[1].start_us = 1;
        backwards.segments[0].start_us = 2;
        assert!(Manifest::decode(&backwards.encode(), &l).is_err());
        let mut odd = m.clone();
        odd.chunk_size = 1000;
        assert!(
            Manifest::decode(&odd.encode(), &l).is_err(),
            "not a power of two"
        );
        let mut tiny = m.clone();
        tiny.segments[0].size = 4097 * 1024;
        assert!(Manifest::decode(&tiny.encode(), &l).is_err(), "4097 chunks");
    }

    #[test]
    fn whole_records_of_a_payload_still_arriving() {
        // Two copies of §8.6's example record (11 bytes each).
        let one = [
            0x00, 0x01, 0x4b, 0xb8, 0x00, 0x05, 0x00, 0x00, 0x00, 0x01, 0x65,
        ];
        let two: Vec<u8> = one.iter().chain(one.iter()).copied().collect();
        for cut in 0..=two.len() {
            let want = if cut == 22 {
                22
            } else if cut >= 11 {
                11
            } else {
                0
            };
            assert_eq!(
                complete_records(&two[..cut], 1 << 20),
                Ok(want),
                "cut {cut}"
            );
        }
        // A record that cannot be valid is an error, not "wait for more".
        assert!(complete_records(&[0x00, 0x02], 1 << 20).is_err());
        assert!(complete_records(&[0x00, 0x01, 0x4b, 0xb8, 0x00, 0x05], 4).is_err());
    }

    fn hex(s: &str) -> Vec<u8> {
        let s: String = s.split_whitespace().collect();
        (0..s.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
            .collect()
    }

    // The examples of docs/PROTOCOL.md §8.6.1: a segment of 2500 bytes of 0x61 in 1024-byte
    // chunks; its manifest, the request asking for chunk hashes, and the CHUNK_HASHES frame.
    const CHECKSUM: &str = "40a8d9b953c2402cdebec4888b4c3ca2f4f577f9cfd8675ac2a57852879e0db2";
    const ROOT: &str = "349b2324d13ffeba004b0aeeb5f60e94cb93738c5e5d6583e3ecaabe59e58494";
    const H0: &str = "2edc986847e209b4016e141a6dc8716d3207350f416969382d431539bf292e4a";
    const H2: &str = "1a5f1e3257e0a76d098a6099a52a63211186ba68834b5db3bf5dc484831aa470";

    #[test]
    fn chunked_manifest_example() {
        let payload = vec![0x61u8; 2500];
        let hash = |s: &str| -> Hash { hex(s).try_into().unwrap() };
        let m = Manifest {
            object: name("a"),
            revision: 1,
            duration_us: 1_000_000,
            chunk_size: 1024,
            formats: vec![],
            sdp: String::new(),
            tracks: vec![],
            segments: vec![SegmentEntry {
                start_us: 0,
                duration_us: 1_000_000,
                size: 2500,
                frames: 0,
                checksum: hash(CHECKSUM),
                chunk_root: hash(ROOT),
            }],
        };
        assert_eq!(
            m.segments[0].chunk_root,
            chunk::payload_root(&payload, 1024)
        );
        let bytes = hex(&format!(
            "02 01 61 01 80 0f 42 40 44 00 00 00 00 01 00 80 0f 42 40 49 c4 00 {CHECKSUM} {ROOT}"
        ));
        assert_eq!(m.encode(), bytes);
        assert_eq!(Manifest::decode(&bytes, &Limits::default()).unwrap(), m);
        // A version-1 manifest is refused.
        let mut v1 = bytes.clone();
        v1[0] = 1;
        assert!(Manifest::decode(&v1, &Limits::default()).is_err());

        // SEGMENTS_REQUEST for `a`, first 0, count 1, CHUNKS.
        let req = SegmentRequest::Segments {
            object: name("a"),
            first: 0,
            count: 1,
            params: Params {
                chunks: true,
                ..Params::default()
            },
        };
        let req_bytes = hex("02 06 01 61 00 01 07 00");
        assert_eq!(req.encode(), req_bytes);
        assert_eq!(
            decode_request(&req_bytes, &Limits::default()).unwrap(),
            Some((req, req_bytes.len()))
        );

        // CHUNK_HASHES: 3 hashes, 96 bytes.
        let hashes = chunk::chunk_hashes(&payload, 1024);
        assert_eq!(hashes[0], hash(H0));
        assert_eq!(hashes[2], hash(H2));
        let frame = encode_chunk_hashes(&hashes);
        assert_eq!(frame, hex(&format!("13 40 60 {H0} {H0} {H2}")));
        assert_eq!(
            decode_response_frame(&frame, &Limits::default()).unwrap(),
            Some((ResponseFrame::ChunkHashes(hashes), frame.len()))
        );
        for bad in ["13 00", "13 01 00", "13 80 02 00 01"] {
            assert!(
                decode_response_frame(&hex(bad), &Limits::default()).is_err(),
                "{bad}"
            );
        }
    }
}
