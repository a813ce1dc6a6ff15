//! The file protocols next to segue/1 (segue/1's ALPN is `segue_wire::ALPN`): their ALPN
//! identifiers and their transport, one definition for the servers and the interop client.

use std::time::Duration;

/// HTTP/0.9 over QUIC, as the quic-interop-runner's endpoints speak it.
pub const HQ_INTEROP: &[u8] = b"hq-interop";
/// HTTP/3 (RFC 9114).
pub const H3: &[u8] = b"h3";

/// The transport of an `hq-interop` / `h3` connection: `settings` (congestion, loss
/// detection) when given, `bidi` request streams from the peer, room for HTTP/3's control
/// and QPACK streams (HTTP/0.9 opens none), and `idle` as the idle timeout.
pub fn file_transport(
    bidi: u32,
    idle: Duration,
    settings: Option<&crate::TransportSettings>,
) -> quinn::TransportConfig {
    let mut t = quinn::TransportConfig::default();
    if let Some(s) = settings {
        s.apply(&mut t);
    }
    t.max_concurrent_bidi_streams(bidi.into())
        .max_concurrent_uni_streams(16u32.into())
        // Within QUIC's 2^62 ms; beyond that, no idle timeout at all is not what was asked.
        .max_idle_timeout(Some(
            quinn::IdleTimeout::try_from(idle).unwrap_or(quinn::VarInt::MAX.into()),
        ));
    t
}
