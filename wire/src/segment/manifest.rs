//! The object manifest: tracks (SDP), duration, formats and the segment table.

use bytes::BufMut;

use super::{Hash, chunk};
use crate::address::ObjectName;
use crate::error::DecodeError;
use crate::limits::Limits;
use crate::sdp::{Description, MAX_SDP};
use crate::varint::{self, Reader};

/// Manifest encoding version. Version 2 added the chunk size and each segment's chunk root
/// (§8.6.1); a version-1 manifest is refused (nodes re-ingest or re-fetch it).
pub const MANIFEST_VERSION: u64 = 2;

/// Per-track totals, so a player can verify what it received.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TrackEntry {
    pub frames: u64,
    /// SHA-256 over the concatenated frame records of this track, in segment order.
    pub content_hash: Hash,
}

/// One row of the segment table. Segment `i` is the `i`-th entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SegmentEntry {
    /// Presentation start in microseconds of normal play time.
    pub start_us: u64,
    pub duration_us: u64,
    pub size: u64,
    /// Frames of all tracks in this segment.
    pub frames: u64,
    /// SHA-256 of the segment payload.
    pub checksum: Hash,
    /// SHA-256 over the SHA-256 of each of the payload's chunks ([`super::chunk`]).
    pub chunk_root: Hash,
}

/// Everything a node needs to serve an object, apart from the segment payloads.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Manifest {
    pub object: ObjectName,
    /// Changes whenever the origin re-ingests the object from a changed file.
    pub revision: u64,
    pub duration_us: u64,
    /// Bytes per chunk of every segment ([`super::chunk`]): a power of two, 1 KiB to 1 MiB.
    pub chunk_size: u64,
    /// Source formats the origin holds the object in (`"mp4"`, `"ts"`, ...).
    pub formats: Vec<String>,
    /// SDP text, as DESCRIBE returns it.
    pub sdp: String,
    /// One entry per SDP media section, same order.
    pub tracks: Vec<TrackEntry>,
    pub segments: Vec<SegmentEntry>,
}

impl Manifest {
    /// A file object (PROTOCOL.md §8.9): no tracks, segments are byte ranges of a file.
    pub fn is_file(&self) -> bool {
        self.tracks.is_empty()
    }

    pub fn total_size(&self) -> u64 {
        self.segments.iter().map(|s| s.size).sum()
    }

    /// Parses the SDP into typed tracks.
    pub fn description(&self, limits: &Limits) -> Result<Description, DecodeError> {
        Description::from_sdp(&self.sdp, limits.max_tracks)
    }

    /// Index of the segment that contains `npt_us` (the last one past the end).
    pub fn segment_at(&self, npt_us: u64) -> Option<usize> {
        if self.segments.is_empty() {
            return None;
        }
        Some(
            self.segments
                .partition_point(|s| s.start_us <= npt_us)
                .saturating_sub(1),
        )
    }

    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(128 + self.sdp.len() + self.segments.len() * 80);
        varint::put(&mut out, MANIFEST_VERSION);
        varint::put_str(&mut out, self.object.as_str());
        varint::put(&mut out, self.revision);
        varint::put(&mut out, self.duration_us);
        varint::put(&mut out, self.chunk_size);
        varint::put(&mut out, self.formats.len() as u64);
        for f in &self.formats {
            varint::put_str(&mut out, f);
        }
        varint::put_str(&mut out, &self.sdp);
        varint::put(&mut out, self.tracks.len() as u64);
        for t in &self.tracks {
            varint::put(&mut out, t.frames);
            out.put_slice(&t.content_hash);
        }
        varint::put(&mut out, self.segments.len() as u64);
        for s in &self.segments {
            varint::put(&mut out, s.start_us);
            varint::put(&mut out, s.duration_us);
            varint::put(&mut out, s.size);
            varint::put(&mut out, s.frames);
            out.put_slice(&s.checksum);
            out.put_slice(&s.chunk_root);
        }
        out
    }

    pub fn decode(buf: &[u8], limits: &Limits) -> Result<Self, DecodeError> {
        if buf.len() > limits.max_manifest {
            return Err(DecodeError::TooLarge {
                what: "manifest",
                size: buf.len() as u64,
                limit: limits.max_manifest as u64,
            });
        }
        let mut r = Reader::new(buf);
        let version = r.varint()?;
        if version != MANIFEST_VERSION {
            return Err(DecodeError::Unknown {
                what: "manifest version",
                value: version,
            });
        }
        let object = ObjectName::new(
            r.string(limits.max_object_name as u64, "object name")?,
            limits.max_object_name,
        )?;
        let revision = r.varint()?;
        let duration_us = r.varint()?;
        let chunk_size = r.varint()?;
        if !chunk::valid_chunk_size(chunk_size) {
            return Err(DecodeError::Malformed(
                "chunk size must be a power of two from 1 KiB to 1 MiB",
            ));
        }
        let nformats = r.varint_count(8, "formats")?;
        let formats = (0..nformats)
            .map(|_| {
                let f = r.string(16, "format")?;
                if f.is_empty() || !f.bytes().all(|b| b.is_ascii_alphanumeric()) {
                    return Err(DecodeError::Malformed("format must be [A-Za-z0-9]+"));
                }
                Ok(f.to_owned())
            })
            .collect::<Result<Vec<_>, _>>()?;
        let sdp = r.string(MAX_SDP as u64, "SDP")?.to_owned();
        let ntracks = r.varint_count(limits.max_tracks as u64, "tracks")?;
        let tracks = (0..ntracks)
            .map(|_| {
                Ok(TrackEntry {
                    frames: r.varint()?,
                    content_hash: r.array()?,
                })
            })
            .collect::<Result<Vec<_>, DecodeError>>()?;
        let nsegs = r.varint_count(limits.max_segments as u64, "segments")?;
        // Each entry takes at least 68 bytes: refuse counts the buffer cannot hold before
        // allocating for them.
        if nsegs > r.remaining() / 68 {
            return Err(DecodeError::Truncated);
        }
        let mut segments = Vec::with_capacity(nsegs);
        let mut prev_start = 0;
        for _ in 0..nsegs {
            let s = SegmentEntry {
                start_us: r.varint()?,
                duration_us: r.varint()?,
                size: r.varint()?,
                frames: r.varint()?,
                checksum: r.array()?,
                chunk_root: r.array()?,
            };
            if s.start_us < prev_start {
                return Err(DecodeError::Malformed("segment start times go backwards"));
            }
            if s.size == 0 || s.size > limits.max_segment_size {
                return Err(DecodeError::TooLarge {
                    what: "segment",
                    size: s.size,
                    limit: limits.max_segment_size,
                });
            }
            if chunk::chunk_count(s.size, chunk_size) > chunk::MAX_CHUNKS {
                return Err(DecodeError::Malformed(
                    "a segment has more than 4096 chunks: the chunk size is too small",
                ));
            }
            prev_start = s.start_us;
            segments.push(s);
        }
        r.finish("manifest")?;
        Ok(Self {
            object,
            revision,
            duration_us,
            chunk_size,
            formats,
            sdp,
            tracks,
            segments,
        })
    }
}
