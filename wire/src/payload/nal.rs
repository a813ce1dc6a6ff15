//! What H.264 (RFC 6184) and HEVC (RFC 7798) depacketizers share: a frame of 4-byte-length
//! prefixed NAL units rebuilt from whole NAL units, aggregation packets and fragments.

use bytes::{BufMut, Bytes, BytesMut};

use super::Payloads;
use super::h264::nal_units;
use crate::error::DecodeError;

/// Packetizes a frame of length-prefixed NAL units: a NAL unit of at most `max_payload`
/// bytes as a single NAL unit packet, a larger one as fragments of its body (after its
/// `header_len`-byte header), each led by the `overhead` bytes `fu(header, start, end)`
/// writes. `check` refuses a NAL unit that cannot be carried. The marker is on the last.
pub(crate) fn packetize(
    frame: &Bytes,
    max_payload: usize,
    header_len: usize,
    overhead: usize,
    check: impl Fn(&[u8]) -> Result<(), DecodeError>,
    fu: impl Fn(&[u8], bool, bool, &mut BytesMut),
) -> Result<Payloads, DecodeError> {
    let max_payload = max_payload.max(overhead + 1);
    let nals = nal_units(frame)?;
    if nals.is_empty() {
        return Err(DecodeError::Malformed("frame without NAL units"));
    }
    let mut out = Vec::new();
    for nal in nals {
        if nal.len() < header_len {
            return Err(DecodeError::Malformed("NAL unit shorter than its header"));
        }
        check(&nal)?;
        if nal.len() <= max_payload {
            out.push((nal, false));
            continue;
        }
        let body = nal.slice(header_len..);
        let chunk = max_payload - overhead;
        let n = body.len().div_ceil(chunk);
        for (i, part) in body.chunks(chunk).enumerate() {
            let mut p = BytesMut::with_capacity(part.len() + overhead);
            fu(&nal[..header_len], i == 0, i + 1 == n, &mut p);
            p.put_slice(part);
            out.push((p.freeze(), false));
        }
    }
    if let Some(last) = out.last_mut() {
        last.1 = true;
    }
    Ok(out)
}

/// A frame being rebuilt, bounded by `max_frame`.
#[derive(Debug)]
pub(crate) struct NalFrame {
    what: &'static str,
    max_frame: usize,
    frame: BytesMut,
    /// Index in `frame` of the length prefix of the NAL being reassembled from fragments.
    fu_start: Option<usize>,
}

impl NalFrame {
    pub(crate) fn new(what: &'static str, max_frame: usize) -> Self {
        Self {
            what,
            max_frame,
            frame: BytesMut::new(),
            fu_start: None,
        }
    }

    pub(crate) fn in_fragment(&self) -> bool {
        self.fu_start.is_some()
    }

    fn reserve(&mut self, extra: usize) -> Result<(), DecodeError> {
        if self.frame.len() + extra > self.max_frame {
            return Err(DecodeError::TooLarge {
                what: self.what,
                size: (self.frame.len() + extra) as u64,
                limit: self.max_frame as u64,
            });
        }
        Ok(())
    }

    /// Appends a whole NAL unit (at least `header` bytes long).
    pub(crate) fn nal(&mut self, nal: &[u8], header: usize) -> Result<(), DecodeError> {
        if nal.len() < header.max(1) {
            return Err(DecodeError::Malformed("NAL unit shorter than its header"));
        }
        self.reserve(4 + nal.len())?;
        self.frame.put_u32(nal.len() as u32);
        self.frame.put_slice(nal);
        Ok(())
    }

    /// Appends the NAL units of an aggregation packet's body (`(16-bit size, NAL)*`).
    pub(crate) fn aggregated(&mut self, mut rest: &[u8], header: usize) -> Result<(), DecodeError> {
        if rest.is_empty() {
            return Err(DecodeError::Malformed("empty aggregation packet"));
        }
        while !rest.is_empty() {
            let [a, b, tail @ ..] = rest else {
                return Err(DecodeError::Malformed("aggregation unit size cut short"));
            };
            let n = usize::from(u16::from_be_bytes([*a, *b]));
            let nal = tail
                .get(..n)
                .ok_or(DecodeError::Malformed("aggregation unit overruns packet"))?;
            self.nal(nal, header)?;
            rest = &tail[n..];
        }
        Ok(())
    }

    /// Appends a fragment of a NAL unit: the first (`start`) opens it with the rebuilt NAL
    /// `header`, the last (`end`) closes it.
    pub(crate) fn fragment(
        &mut self,
        start: bool,
        end: bool,
        header: &[u8],
        data: &[u8],
    ) -> Result<(), DecodeError> {
        match (start, self.fu_start) {
            (true, None) => {
                self.reserve(4 + header.len() + data.len())?;
                self.fu_start = Some(self.frame.len());
                self.frame.put_u32(0);
                self.frame.put_slice(header);
            }
            (false, Some(_)) => self.reserve(data.len())?,
            (true, Some(_)) => {
                return Err(DecodeError::Malformed("fragment start inside a fragment"));
            }
            (false, None) => {
                return Err(DecodeError::Malformed(
                    "fragment continuation without start",
                ));
            }
        }
        self.frame.put_slice(data);
        if end && let Some(at) = self.fu_start.take() {
            let len = (self.frame.len() - at - 4) as u32;
            self.frame[at..at + 4].copy_from_slice(&len.to_be_bytes());
        }
        Ok(())
    }

    /// After a payload was added (`added`, dropping the partial frame on error): the frame
    /// when `marker` ends it.
    pub(crate) fn after(
        &mut self,
        added: Result<(), DecodeError>,
        marker: bool,
    ) -> Result<Option<Bytes>, DecodeError> {
        if let Err(e) = added {
            self.reset();
            return Err(e);
        }
        if !marker {
            return Ok(None);
        }
        if self.fu_start.is_some() {
            self.reset();
            return Err(DecodeError::Malformed(
                "frame ended inside a fragmented NAL",
            ));
        }
        Ok(Some(self.frame.split().freeze()))
    }

    /// Drops a partial frame.
    pub(crate) fn reset(&mut self) {
        self.frame.clear();
        self.fu_start = None;
    }
}
