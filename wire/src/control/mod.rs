//! Control channel: RTSP 2.0 (RFC 7826) syntax on the first client-initiated bidirectional
//! stream. Messages are framed and serialised by `rtsp-types`; this module adds segue/1's typed
//! view (only the methods and headers the protocol uses), the limits, and an incremental decoder.

mod decoder;
mod headers;
mod message;

pub use decoder::{ControlDecoder, ControlError};
pub use headers::{Headers, Npt, NptRange, RtpInfo, SessionHeader, Transport};
pub use message::{Message, Method, Request, Response, status};

/// `Content-Type` of DESCRIBE bodies.
pub const SDP_CONTENT_TYPE: &str = "application/sdp";
/// `Content-Type` of GET_PARAMETER bodies.
pub const PARAMETERS_CONTENT_TYPE: &str = "text/parameters";
/// Session timeout (seconds) a server announces unless configured otherwise.
pub const DEFAULT_SESSION_TIMEOUT: u64 = 60;
