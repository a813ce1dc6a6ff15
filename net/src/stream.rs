//! What goes wrong on one QUIC stream of a segue/1 exchange (control, segment, push), typed,
//! and the application error codes as quinn takes them.

use std::time::Duration;

use segue_wire::{AppError, DecodeError};

/// Why an exchange on a stream ended early.
#[derive(Debug, thiserror::Error)]
pub enum StreamError {
    #[error("connection: {0}")]
    Connection(#[from] quinn::ConnectionError),
    #[error("stream write failed: {0}")]
    Write(#[from] quinn::WriteError),
    #[error("stream read failed: {0}")]
    Read(#[from] quinn::ReadError),
    #[error("stream already closed")]
    Closed(#[from] quinn::ClosedStream),
    #[error(transparent)]
    Decode(#[from] DecodeError),
    #[error("peer silent for {} s", .0.as_secs())]
    Silent(Duration),
    #[error("peer sent more than {0} bytes unasked")]
    Unasked(usize),
    /// The peer did not follow the exchange (what it sent, or when it ended).
    #[error("{0}")]
    Violation(String),
}

impl StreamError {
    pub fn violation(why: impl Into<String>) -> Self {
        Self::Violation(why.into())
    }
}

/// `e` as a QUIC application error code (RESET_STREAM, STOP_SENDING, CONNECTION_CLOSE).
pub fn app_code(e: AppError) -> quinn::VarInt {
    // Every code of segue/1 is far below 2^62.
    quinn::VarInt::from_u64(e.code()).unwrap_or(quinn::VarInt::from_u32(0x02))
}
