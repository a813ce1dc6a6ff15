//! What a file endpoint did (tests, logs, the interop checks).

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use crate::node::resumption::Handshake;

/// What the server did (tests, logs).
#[derive(Debug, Default)]
pub struct ServerStats {
    pub connections: AtomicU64,
    /// Connection attempts answered with a Retry (address validation).
    pub retries: AtomicU64,
    pub files: AtomicU64,
    pub bytes: AtomicU64,
    pub refused: AtomicU64,
    /// Connection attempts refused by the connection limits.
    pub refused_connections: AtomicU64,
    /// TLS sessions resumed (a client's ticket found).
    pub resumed_sessions: Arc<AtomicU64>,
    /// Connections whose requests came as 0-RTT data.
    pub zero_rtt_connections: AtomicU64,
}

/// Called as a connection starts and as each request is taken: a connection whose requests
/// came as 0-RTT data is counted (once) and logged.
pub(crate) fn note_0rtt(conn: &quinn::Connection, handshake: &Handshake, stats: &ServerStats) {
    if handshake.first_sight_of_0rtt(conn) {
        stats.zero_rtt_connections.fetch_add(1, Ordering::Relaxed);
        let peer = conn.remote_address();
        tracing::info!(%peer, "0-RTT: requests received before the handshake completed");
    }
}
