//! Frame records: the content of a segment payload.
//!
//! `Track (i) | Flags (8) | PTS (i) | CTO (i) | Size (i) | Data`, repeated, in decode order.
//! PTS and CTO (pts - dts) are in the track's RTP clock. Data is the codec's access unit:
//! AVCC NAL units (4-byte big-endian lengths) for H.264, a raw AU for AAC.

use bytes::{BufMut, Bytes};

use crate::error::DecodeError;
use crate::rtp::MAX_CTO;
use crate::varint::{self, Reader};

/// Flag bit: sync sample.
pub const FLAG_KEYFRAME: u8 = 0x01;

/// One frame (access unit) of one track.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Frame {
    pub track: u32,
    pub keyframe: bool,
    pub pts: u64,
    pub cto: u32,
    pub data: Bytes,
}

impl Frame {
    pub fn dts(&self) -> u64 {
        self.pts.saturating_sub(u64::from(self.cto))
    }

    pub fn encoded_len(&self) -> usize {
        varint::size(u64::from(self.track))
            + 1
            + varint::size(self.pts)
            + varint::size(u64::from(self.cto))
            + varint::size(self.data.len() as u64)
            + self.data.len()
    }

    /// Appends the record. Callers keep `cto <= MAX_CTO` (ingest enforces it).
    pub fn encode_into<B: BufMut>(&self, out: &mut B) {
        self.encode_head_into(out);
        out.put_slice(&self.data);
    }

    /// The most bytes [`Frame::encode_head_into`] appends: the track, PTS and size varints
    /// (8 bytes at most each), the flags, and the CTO (at most [`MAX_CTO`]: 4 bytes).
    pub const MAX_HEAD_LEN: usize = 29;

    /// Appends the record's fields before `Data` (at most [`Frame::MAX_HEAD_LEN`] bytes):
    /// with `data` after them, the record, for a reader (a content hash) that takes the two
    /// without copying the data.
    pub fn encode_head_into<B: BufMut>(&self, out: &mut B) {
        varint::put(out, u64::from(self.track));
        out.put_u8(if self.keyframe { FLAG_KEYFRAME } else { 0 });
        varint::put(out, self.pts);
        varint::put(out, u64::from(self.cto.min(MAX_CTO)));
        varint::put(out, self.data.len() as u64);
    }
}

/// Iterates over the frame records of a complete segment payload.
#[derive(Debug)]
pub struct FrameReader<'a> {
    r: Reader<'a>,
    src: &'a Bytes,
    max_frame: u64,
    failed: bool,
}

impl<'a> FrameReader<'a> {
    pub fn new(payload: &'a Bytes, max_frame: u64) -> Self {
        Self {
            r: Reader::new(payload),
            src: payload,
            max_frame,
            failed: false,
        }
    }

    fn read(&mut self) -> Result<Frame, DecodeError> {
        let track = u32::try_from(self.r.varint()?)
            .map_err(|_| DecodeError::Malformed("track number too large"))?;
        let flags = self.r.u8()?;
        if flags & !FLAG_KEYFRAME != 0 {
            return Err(DecodeError::Malformed("reserved frame flags set"));
        }
        let pts = self.r.varint()?;
        let cto = self
            .r
            .varint_bounded(u64::from(MAX_CTO), "composition offset")? as u32;
        if u64::from(cto) > pts {
            return Err(DecodeError::Malformed("composition offset exceeds pts"));
        }
        let size = self.r.varint_bounded(self.max_frame, "frame")?;
        let start = self.r.position();
        self.r.bytes(size)?;
        Ok(Frame {
            track,
            keyframe: flags & FLAG_KEYFRAME != 0,
            pts,
            cto,
            data: self.src.slice(start..start + size),
        })
    }
}

impl Iterator for FrameReader<'_> {
    type Item = Result<Frame, DecodeError>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.failed || self.r.is_empty() {
            return None;
        }
        let f = self.read();
        self.failed = f.is_err();
        Some(f)
    }
}
