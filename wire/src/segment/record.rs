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

/// Bytes of whole frame records at the start of `buf`, the beginning of a segment payload
/// still arriving (chunk by chunk): what a sender can packetize now. A record that does not
/// decode (other than being cut short) is an error.
pub fn complete_records(buf: &[u8], max_frame: u64) -> Result<usize, DecodeError> {
    let mut r = Reader::new(buf);
    let mut end = 0;
    loop {
        if r.is_empty() {
            return Ok(end);
        }
        match read_head(&mut r, max_frame).and_then(|h| r.bytes(h.size).map(|_| ())) {
            Ok(()) => end = r.position(),
            Err(DecodeError::Truncated) => return Ok(end),
            Err(e) => return Err(e),
        }
    }
}

/// A record's fields before `Data`.
struct Head {
    track: u32,
    keyframe: bool,
    pts: u64,
    cto: u32,
    size: usize,
}

fn read_head(r: &mut Reader<'_>, max_frame: u64) -> Result<Head, DecodeError> {
    let track =
        u32::try_from(r.varint()?).map_err(|_| DecodeError::Malformed("track number too large"))?;
    let flags = r.u8()?;
    if flags & !FLAG_KEYFRAME != 0 {
        return Err(DecodeError::Malformed("reserved frame flags set"));
    }
    let pts = r.varint()?;
    let cto = r.varint_at_most(u64::from(MAX_CTO), "composition offset")? as u32;
    if u64::from(cto) > pts {
        return Err(DecodeError::Malformed("composition offset exceeds pts"));
    }
    let size = r.varint_bounded(max_frame, "frame")?;
    Ok(Head {
        track,
        keyframe: flags & FLAG_KEYFRAME != 0,
        pts,
        cto,
        size,
    })
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
        let h = read_head(&mut self.r, self.max_frame)?;
        let start = self.r.position();
        self.r.bytes(h.size)?;
        Ok(Frame {
            track: h.track,
            keyframe: h.keyframe,
            pts: h.pts,
            cto: h.cto,
            data: self.src.slice(start..start + h.size),
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
