//! Receiving one segment of a segments answer or a push (sans IO): the SEGMENT header, the
//! CHUNK_HASHES frame if they were asked for, then the payload, checked against the manifest
//! the receiver trusts. With chunk hashes, each chunk is released as soon as it is verified
//! (PROTOCOL.md §8.6.1); without, nothing until the whole payload passes its SHA-256.

use bytes::{Bytes, BytesMut};
use ring::digest::{SHA256, digest};

use super::chunk::{ChunkError, ChunkVerifier};
use super::frame::{ResponseFrame, decode_response_frame};
use super::{Manifest, SegmentEntry};
use crate::error::DecodeError;
use crate::limits::Limits;

/// Why a received segment was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ReceiveError {
    #[error(transparent)]
    Decode(#[from] DecodeError),
    #[error("expected {0}")]
    Unexpected(&'static str),
    #[error("segment header says {got}, the manifest segment {want}")]
    WrongSegment { got: String, want: u64 },
    #[error(transparent)]
    Chunk(#[from] ChunkError),
    #[error("the payload fails its SHA-256")]
    Checksum,
}

#[derive(Debug)]
enum State {
    Header,
    Hashes,
    Payload,
    Done,
}

/// One segment being received. Feed it the stream's bytes with [`Self::push`] until
/// [`Self::is_done`], then take the payload with [`Self::into_payload`].
#[derive(Debug)]
pub struct SegmentReceiver {
    index: u64,
    entry: SegmentEntry,
    chunk_size: u64,
    chunks: bool,
    limits: Limits,
    state: State,
    /// Bytes of a frame not yet complete.
    head: Vec<u8>,
    verifier: Option<ChunkVerifier>,
    payload: BytesMut,
}

impl SegmentReceiver {
    /// Segment `index` of `m`; `chunks`: the request asked for CHUNKS. `None` if `m` has no
    /// such segment.
    pub fn new(m: &Manifest, index: usize, chunks: bool, limits: Limits) -> Option<Self> {
        let entry = m.segments.get(index)?.clone();
        Some(Self {
            index: index as u64,
            payload: BytesMut::with_capacity(entry.size as usize),
            entry,
            chunk_size: m.chunk_size,
            chunks,
            limits,
            state: State::Header,
            head: Vec::new(),
            verifier: None,
        })
    }

    /// The whole segment is in.
    pub fn is_done(&self) -> bool {
        matches!(self.state, State::Done)
    }

    /// Takes bytes of the stream; returns how many belong to this segment (what follows is
    /// the next frame). With CHUNKS, each chunk they complete is appended to `out`, verified.
    pub fn push(&mut self, data: &[u8], out: &mut Vec<Bytes>) -> Result<usize, ReceiveError> {
        let mut used = 0;
        while used < data.len() {
            let rest = &data[used..];
            match self.state {
                State::Header | State::Hashes => {
                    // A frame split across pushes is buffered until it is whole.
                    let decoded = if self.head.is_empty() {
                        decode_response_frame(rest, &self.limits)?
                    } else {
                        let before = self.head.len();
                        self.head.extend_from_slice(rest);
                        decode_response_frame(&self.head, &self.limits)?
                            .map(|(f, n)| (f, n - before))
                    };
                    match decoded {
                        None => {
                            if self.head.is_empty() {
                                self.head.extend_from_slice(rest);
                            }
                            return Ok(data.len());
                        }
                        Some((frame, n)) => {
                            used += n;
                            self.head.clear();
                            self.frame(frame)?;
                        }
                    }
                }
                State::Payload => {
                    let want = (self.entry.size - self.payload.len() as u64) as usize;
                    let take = want.min(rest.len());
                    let bytes = &rest[..take];
                    if let Some(v) = &mut self.verifier {
                        v.push(bytes, out)?;
                    }
                    self.payload.extend_from_slice(bytes);
                    used += take;
                    if self.payload.len() as u64 == self.entry.size {
                        self.state = State::Done;
                    }
                }
                State::Done => break,
            }
        }
        Ok(used)
    }

    fn frame(&mut self, frame: ResponseFrame) -> Result<(), ReceiveError> {
        match (&self.state, frame) {
            (State::Header, ResponseFrame::Segment(h)) => {
                if h.index != self.index
                    || h.size != self.entry.size
                    || h.checksum != self.entry.checksum
                {
                    return Err(ReceiveError::WrongSegment {
                        got: format!("segment {} of {} bytes", h.index, h.size),
                        want: self.index,
                    });
                }
                self.state = if self.chunks {
                    State::Hashes
                } else {
                    State::Payload
                };
                Ok(())
            }
            (State::Hashes, ResponseFrame::ChunkHashes(hashes)) => {
                self.verifier = Some(ChunkVerifier::new(&self.entry, self.chunk_size, hashes)?);
                self.state = State::Payload;
                Ok(())
            }
            (State::Header, _) => Err(ReceiveError::Unexpected("a SEGMENT frame")),
            _ => Err(ReceiveError::Unexpected("a CHUNK_HASHES frame")),
        }
    }

    /// The verified payload: every byte in, and its SHA-256 the manifest's.
    pub fn into_payload(self) -> Result<Bytes, ReceiveError> {
        if !self.is_done() {
            return Err(ChunkError::Short {
                got: self.payload.len() as u64,
                want: self.entry.size,
            }
            .into());
        }
        if let Some(v) = &self.verifier {
            v.finish()?;
        }
        let payload = self.payload.freeze();
        if digest(&SHA256, &payload).as_ref() != self.entry.checksum {
            return Err(ReceiveError::Checksum);
        }
        Ok(payload)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ObjectName;
    use crate::segment::{SegmentHeader, chunk, encode_chunk_hashes};

    fn manifest(payloads: &[Vec<u8>]) -> Manifest {
        Manifest {
            object: ObjectName::new("a", 64).unwrap(),
            revision: 1,
            duration_us: 1,
            chunk_size: 1024,
            formats: vec![],
            sdp: String::new(),
            tracks: vec![],
            segments: payloads
                .iter()
                .map(|p| SegmentEntry {
                    start_us: 0,
                    duration_us: 1,
                    size: p.len() as u64,
                    frames: 0,
                    checksum: digest(&SHA256, p).as_ref().try_into().unwrap(),
                    chunk_root: chunk::payload_root(p, 1024),
                })
                .collect(),
        }
    }

    fn wire(m: &Manifest, i: usize, payload: &[u8], chunks: bool) -> Vec<u8> {
        let mut out = SegmentHeader {
            index: i as u64,
            size: payload.len() as u64,
            checksum: m.segments[i].checksum,
        }
        .encode();
        if chunks {
            out.extend(encode_chunk_hashes(&chunk::chunk_hashes(payload, 1024)));
        }
        out.extend_from_slice(payload);
        out
    }

    #[test]
    fn chunks_come_out_as_bytes_come_in_and_the_rest_is_left() {
        let p0: Vec<u8> = (0..3000u32).map(|i| i as u8).collect();
        let p1 = vec![5u8; 10];
        let m = manifest(&[p0.clone(), p1.clone()]);
        let mut bytes = wire(&m, 0, &p0, true);
        let next = wire(&m, 1, &p1, true);
        bytes.extend(&next);
        for step in [1, 7, 100, 5000] {
            let mut r = SegmentReceiver::new(&m, 0, true, Limits::default()).unwrap();
            let (mut at, mut out) = (0, Vec::new());
            let mut first_chunk_at = None;
            while !r.is_done() {
                let end = (at + step).min(bytes.len());
                at += r.push(&bytes[at..end], &mut out).unwrap();
                if first_chunk_at.is_none() && !out.is_empty() {
                    first_chunk_at = Some(at);
                }
            }
            // The first chunk is out once its 1024 bytes are, not the segment's 3000.
            if step <= 100 {
                assert!(first_chunk_at.unwrap() < bytes.len() - next.len() - 1000);
            }
            assert_eq!(&bytes[at..], &next[..], "step {step}");
            assert_eq!(out.concat(), p0);
            assert_eq!(r.into_payload().unwrap(), p0);
        }
    }

    #[test]
    fn without_chunks_nothing_comes_out_before_the_end() {
        let p0 = vec![1u8; 2000];
        let m = manifest(std::slice::from_ref(&p0));
        let bytes = wire(&m, 0, &p0, false);
        let mut r = SegmentReceiver::new(&m, 0, false, Limits::default()).unwrap();
        let mut out = Vec::new();
        assert_eq!(r.push(&bytes, &mut out).unwrap(), bytes.len());
        assert!(out.is_empty());
        assert_eq!(r.into_payload().unwrap(), p0);
    }

    #[test]
    fn a_corrupted_chunk_stops_the_segment() {
        let p0: Vec<u8> = (0..3000u32).map(|i| (i / 3) as u8).collect();
        let m = manifest(std::slice::from_ref(&p0));
        let mut bytes = wire(&m, 0, &p0, true);
        let at = bytes.len() - 3000 + 1500; // inside chunk 1
        bytes[at] ^= 0x80;
        let mut r = SegmentReceiver::new(&m, 0, true, Limits::default()).unwrap();
        let mut out = Vec::new();
        assert_eq!(
            r.push(&bytes, &mut out),
            Err(ReceiveError::Chunk(ChunkError::Mismatch(1)))
        );
        assert_eq!(out.concat(), p0[..1024], "only chunk 0 was released");
    }

    #[test]
    fn wrong_headers_and_hash_lists_are_refused() {
        let p0 = vec![3u8; 2000];
        let p1 = vec![4u8; 2000];
        let m = manifest(&[p0.clone(), p1.clone()]);
        let mut out = Vec::new();
        // Segment 1's header where segment 0 is expected.
        let mut r = SegmentReceiver::new(&m, 0, true, Limits::default()).unwrap();
        assert!(matches!(
            r.push(&wire(&m, 1, &p1, true), &mut out),
            Err(ReceiveError::WrongSegment { .. })
        ));
        // Hashes of another payload.
        let mut bytes = SegmentHeader {
            index: 0,
            size: 2000,
            checksum: m.segments[0].checksum,
        }
        .encode();
        bytes.extend(encode_chunk_hashes(&chunk::chunk_hashes(&p1, 1024)));
        let mut r = SegmentReceiver::new(&m, 0, true, Limits::default()).unwrap();
        assert_eq!(
            r.push(&bytes, &mut out),
            Err(ReceiveError::Chunk(ChunkError::Root))
        );
        // The payload right after the header when hashes were asked for.
        let mut r = SegmentReceiver::new(&m, 0, true, Limits::default()).unwrap();
        assert!(r.push(&wire(&m, 0, &p0, false), &mut out).is_err());
        // Cut short.
        let mut r = SegmentReceiver::new(&m, 0, false, Limits::default()).unwrap();
        let bytes = wire(&m, 0, &p0, false);
        r.push(&bytes[..bytes.len() - 1], &mut out).unwrap();
        assert!(r.into_payload().is_err());
        assert!(out.is_empty());
    }
}
