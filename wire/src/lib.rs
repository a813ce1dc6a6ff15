//! # segue-wire
//!
//! The `segue/1` protocol as a sans-IO codec: types, encoders and decoders for every message of
//! docs/PROTOCOL.md, on `bytes`, with no sockets, no async runtime and no QUIC library. The IO
//! lives in `segue-server` and `segue-client`, which feed received bytes in and write what the
//! encoders produce.
//!
//! Decoders never panic on any input; they return [`DecodeError`] and enforce [`Limits`].

#![cfg_attr(
    not(test),
    warn(clippy::unwrap_used, clippy::expect_used, clippy::panic)
)]

pub mod address;
pub mod advert;
pub mod control;
pub mod error;
pub mod limits;
pub mod payload;
pub mod roq;
pub mod rtcp;
pub mod rtp;
pub mod rtsp;
pub mod sdp;
pub mod segment;
pub mod token;
pub mod varint;

pub use address::{ObjectName, Resource, SegueUrl};
pub use error::{AppError, DecodeError};
pub use limits::Limits;

/// ALPN protocol id of segue/1.
pub const ALPN: &[u8] = b"segue/1";
