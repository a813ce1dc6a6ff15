//! ALPN identifiers of the file protocols next to segue/1 (segue/1's own is
//! `segue_wire::ALPN`): one definition for the servers and the interop client.

/// HTTP/0.9 over QUIC, as the quic-interop-runner's endpoints speak it.
pub const HQ_INTEROP: &[u8] = b"hq-interop";
/// HTTP/3 (RFC 9114).
pub const H3: &[u8] = b"h3";
