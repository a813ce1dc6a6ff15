//! Decode errors and the QUIC application error codes of segue/1.

/// Why a decoder rejected its input. Decoders never panic; every malformed, truncated or
/// oversized input ends here.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DecodeError {
    #[error("input ended inside a message")]
    Truncated,
    #[error("malformed message: {0}")]
    Malformed(&'static str),
    #[error("{what} is {size} bytes, limit is {limit}")]
    TooLarge {
        what: &'static str,
        size: u64,
        limit: u64,
    },
    /// More items than a limit allows (headers, tracks, segments requested, ...).
    #[error("{count} {what}, limit is {limit}")]
    TooMany {
        what: &'static str,
        count: u64,
        limit: u64,
    },
    /// A value (not a size) beyond its range.
    #[error("{what} {value} out of range (at most {limit})")]
    OutOfRange {
        what: &'static str,
        value: u64,
        limit: u64,
    },
    #[error("unexpected bytes after {0}")]
    TrailingBytes(&'static str),
    #[error("unknown {what} {value}")]
    Unknown { what: &'static str, value: u64 },
    #[error("invalid RTSP message: {0}")]
    Rtsp(String),
    #[error("invalid SDP: {0}")]
    Sdp(String),
    #[error("invalid RTP packet: {0}")]
    Rtp(String),
    #[error("invalid URL or object name: {0}")]
    Url(String),
    /// A `Transport` header that offers no `RTP/AVP/QUIC` transport (answered `461`).
    #[error("no RTP/AVP/QUIC transport offered")]
    UnsupportedTransport,
}

/// QUIC application error codes (used in CONNECTION_CLOSE, RESET_STREAM and STOP_SENDING).
/// The values are part of the protocol; see docs/PROTOCOL.md, "Error codes".
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[repr(u64)]
pub enum AppError {
    /// Orderly close, nothing wrong.
    NoError = 0x00,
    /// The peer violated the protocol (bad framing, a stream it must not open).
    ProtocolViolation = 0x01,
    /// An implementation fault on the sender's side.
    InternalError = 0x02,
    /// A message or frame exceeded a limit of docs/PROTOCOL.md.
    LimitExceeded = 0x03,
    /// The stream's content is no longer wanted (e.g. PAUSE, TEARDOWN, seek).
    Cancelled = 0x04,
    /// Media data arrived or would arrive after its playout deadline; sender gave up.
    DeadlineMissed = 0x05,
    /// The upstream (origin or helper) failed while this stream was being filled.
    UpstreamFailed = 0x06,
    /// The node is shutting down.
    ShuttingDown = 0x07,
    /// Too many connections, streams or sessions.
    Busy = 0x08,
    /// An idle or keep-alive timeout expired.
    Timeout = 0x09,
}

impl AppError {
    pub const ALL: [AppError; 10] = [
        AppError::NoError,
        AppError::ProtocolViolation,
        AppError::InternalError,
        AppError::LimitExceeded,
        AppError::Cancelled,
        AppError::DeadlineMissed,
        AppError::UpstreamFailed,
        AppError::ShuttingDown,
        AppError::Busy,
        AppError::Timeout,
    ];

    pub fn code(self) -> u64 {
        self as u64
    }

    /// Maps a received code; unknown codes are `None` and must be treated as `InternalError`.
    pub fn from_code(code: u64) -> Option<Self> {
        Self::ALL.into_iter().find(|e| e.code() == code)
    }
}

impl std::fmt::Display for AppError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let name = match self {
            AppError::NoError => "NO_ERROR",
            AppError::ProtocolViolation => "PROTOCOL_VIOLATION",
            AppError::InternalError => "INTERNAL_ERROR",
            AppError::LimitExceeded => "LIMIT_EXCEEDED",
            AppError::Cancelled => "CANCELLED",
            AppError::DeadlineMissed => "DEADLINE_MISSED",
            AppError::UpstreamFailed => "UPSTREAM_FAILED",
            AppError::ShuttingDown => "SHUTTING_DOWN",
            AppError::Busy => "BUSY",
            AppError::Timeout => "TIMEOUT",
        };
        f.write_str(name)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_round_trip_and_are_distinct() {
        for (i, e) in AppError::ALL.into_iter().enumerate() {
            assert_eq!(e.code(), i as u64);
            assert_eq!(AppError::from_code(e.code()), Some(e));
        }
        assert_eq!(AppError::from_code(0x1000), None);
    }
}
