//! Incremental decoder for the control stream, enforcing the limits before parsing.

use bytes::{Buf, BytesMut};

use crate::control::message::{self, Message, status};
use crate::error::DecodeError;
use crate::limits::Limits;

/// A control message that could not be accepted.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{error} (status {status})")]
pub struct ControlError {
    pub error: DecodeError,
    /// The status a server answers with.
    pub status: u16,
    /// CSeq of the offending message, when it could be read.
    pub cseq: Option<u32>,
    /// `true` when the stream's framing is lost: answer, then close the control stream
    /// (and the connection) with `LIMIT_EXCEEDED` or `PROTOCOL_VIOLATION`. When `false`, the
    /// message was skipped and decoding may continue.
    pub fatal: bool,
}

/// Buffers control-stream bytes and yields whole messages. Holds at most
/// `max_control_head + max_control_body` bytes of one message.
#[derive(Debug)]
pub struct ControlDecoder {
    limits: Limits,
    buf: BytesMut,
    failed: bool,
}

impl ControlDecoder {
    pub fn new(limits: Limits) -> Self {
        Self {
            limits,
            buf: BytesMut::new(),
            failed: false,
        }
    }

    /// Appends received bytes.
    pub fn push(&mut self, data: &[u8]) {
        if !self.failed {
            self.buf.extend_from_slice(data);
        }
    }

    /// Bytes buffered and not yet part of a returned message.
    pub fn buffered(&self) -> usize {
        self.buf.len()
    }

    /// The next complete message, `Ok(None)` if more bytes are needed. After a fatal error
    /// every call returns that error again.
    pub fn next_message(&mut self) -> Result<Option<Message>, ControlError> {
        if self.failed {
            return Err(fatal(
                DecodeError::Rtsp("control stream already failed".into()),
                status::BAD_REQUEST,
                None,
            ));
        }
        let r = self.decode();
        if let Err(e) = &r
            && e.fatal
        {
            self.failed = true;
            self.buf.clear();
        }
        r
    }

    fn decode(&mut self) -> Result<Option<Message>, ControlError> {
        let Some((frame, cseq)) = take_frame(&mut self.buf, &self.limits)? else {
            return Ok(None);
        };
        let parsed = parse_frame(&frame, cseq)?;
        message::from_rtsp(parsed, self.limits.max_object_name)
            .map(Some)
            .map_err(|(e, st)| skipped(e, st, cseq))
    }
}

/// Takes the next whole message (head and body) off `buf`, with its CSeq if readable;
/// `Ok(None)` while it is incomplete. Empty lines before it are dropped. Checks the
/// limits on the head, the header count and the body before anything is parsed.
pub(crate) fn take_frame(
    buf: &mut BytesMut,
    lim: &Limits,
) -> Result<Option<(BytesMut, Option<u32>)>, ControlError> {
    // Empty lines between messages are ignored (RFC 7826 §20.2.2 keep-alive practice).
    while buf.starts_with(b"\r\n") {
        buf.advance(2);
    }
    if buf.is_empty() {
        return Ok(None);
    }
    let window = &buf[..buf.len().min(lim.max_control_head)];
    let Some(end) = find(window, b"\r\n\r\n") else {
        if buf.len() >= lim.max_control_head {
            // The CSeq of a head too long to end is read from its complete lines.
            let lines = window
                .iter()
                .rposition(|&b| b == b'\n')
                .map_or(&window[..0], |i| &window[..=i]);
            return Err(fatal(
                DecodeError::TooLarge {
                    what: "control message head",
                    size: buf.len() as u64,
                    limit: lim.max_control_head as u64,
                },
                status::REQUEST_ENTITY_TOO_LARGE,
                scan_cseq(lines),
            ));
        }
        return Ok(None);
    };
    let head_len = end + 4;
    let head = &buf[..head_len];
    let cseq = scan_cseq(head);
    let lines = head[..end].split(|&b| b == b'\n').count();
    let header_count = lines.saturating_sub(1);
    if header_count > lim.max_header_count {
        return Err(fatal(
            DecodeError::TooMany {
                what: "headers",
                count: header_count as u64,
                limit: lim.max_header_count as u64,
            },
            status::BAD_REQUEST,
            cseq,
        ));
    }
    let body_len = match scan_content_length(head) {
        Ok(n) => n,
        Err(e) => return Err(fatal(e, status::BAD_REQUEST, cseq)),
    };
    if body_len > lim.max_control_body as u64 {
        return Err(fatal(
            DecodeError::TooLarge {
                what: "control message body",
                size: body_len,
                limit: lim.max_control_body as u64,
            },
            status::REQUEST_ENTITY_TOO_LARGE,
            cseq,
        ));
    }
    // Bounded by the limits above, so this fits in usize.
    let total = head_len + body_len as usize;
    if buf.len() < total {
        return Ok(None);
    }
    Ok(Some((buf.split_to(total), cseq)))
}

/// Parses a frame [`take_frame`] returned.
pub(crate) fn parse_frame(
    frame: &[u8],
    cseq: Option<u32>,
) -> Result<rtsp_types::Message<&[u8]>, ControlError> {
    match rtsp_types::Message::<&[u8]>::parse(frame) {
        Ok((msg, used)) if used == frame.len() => Ok(msg),
        Ok(_) | Err(rtsp_types::ParseError::Incomplete(_)) => Err(fatal(
            DecodeError::Rtsp("message framing disagrees with Content-Length".into()),
            status::BAD_REQUEST,
            cseq,
        )),
        Err(rtsp_types::ParseError::Error) => Err(skipped(
            DecodeError::Rtsp("unparseable message".into()),
            status::BAD_REQUEST,
            cseq,
        )),
    }
}

pub(crate) fn fatal(error: DecodeError, status: u16, cseq: Option<u32>) -> ControlError {
    ControlError {
        error,
        status,
        cseq,
        fatal: true,
    }
}

pub(crate) fn skipped(error: DecodeError, status: u16, cseq: Option<u32>) -> ControlError {
    ControlError {
        error,
        status,
        cseq,
        fatal: false,
    }
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

fn header_value<'a>(head: &'a [u8], name: &str) -> Option<&'a [u8]> {
    head.split(|&b| b == b'\n').skip(1).find_map(|line| {
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        let colon = line.iter().position(|&b| b == b':')?;
        let (n, v) = line.split_at(colon);
        n.trim_ascii()
            .eq_ignore_ascii_case(name.as_bytes())
            .then(|| v[1..].trim_ascii())
    })
}

fn scan_cseq(head: &[u8]) -> Option<u32> {
    std::str::from_utf8(header_value(head, "CSeq")?)
        .ok()?
        .parse()
        .ok()
}

fn scan_content_length(head: &[u8]) -> Result<u64, DecodeError> {
    match header_value(head, "Content-Length") {
        None => Ok(0),
        Some(v) if !v.is_empty() && v.len() <= 19 && v.iter().all(u8::is_ascii_digit) => {
            std::str::from_utf8(v)
                .ok()
                .and_then(|s| s.parse().ok())
                .ok_or(DecodeError::Rtsp("bad Content-Length".into()))
        }
        Some(_) => Err(DecodeError::Rtsp("bad Content-Length".into())),
    }
}
