//! Telling resumed TLS sessions and 0-RTT data apart from full handshakes, which quinn does
//! not report: the interop runner's resumption and zerortt cases need it on our side, as
//! client and as server, whoever the peer is.
//!
//! - Server, resumption: a session store that counts the sessions it hands back. In TLS 1.3
//!   a client resumes by naming a ticket the server issued; found means resumed (the
//!   handshake then still has to complete for the connection to be used).
//! - Client, resumption: the interop client's (`segue-interop`) certificate verifier counts
//!   its calls: a resumed TLS 1.3 handshake carries no server certificate.
//! - Server, 0-RTT: STREAM frames received while the handshake is still under way came in
//!   0-RTT packets, since a server decrypts no 1-RTT packet before the handshake completes
//!   ([`Handshake`]).

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use futures_util::FutureExt as _;
use futures_util::future::Shared;

use rustls::server::StoresServerSessions;

/// A server's session store that counts (and logs) the sessions clients resume.
#[derive(Debug)]
pub struct CountingSessions {
    inner: Arc<dyn StoresServerSessions>,
    resumed: Arc<AtomicU64>,
}

impl CountingSessions {
    /// Wraps `inner`, counting resumed sessions into `resumed`.
    pub fn new(inner: Arc<dyn StoresServerSessions>, resumed: Arc<AtomicU64>) -> Self {
        Self { inner, resumed }
    }
}

impl StoresServerSessions for CountingSessions {
    fn put(&self, key: Vec<u8>, value: Vec<u8>) -> bool {
        self.inner.put(key, value)
    }

    fn get(&self, key: &[u8]) -> Option<Vec<u8>> {
        self.inner.get(key)
    }

    fn take(&self, key: &[u8]) -> Option<Vec<u8>> {
        let found = self.inner.take(key);
        if found.is_some() {
            self.resumed.fetch_add(1, Ordering::Relaxed);
            tracing::info!("TLS session resumed (a client's ticket found)");
        }
        found
    }

    fn can_cache(&self) -> bool {
        self.inner.can_cache()
    }
}

/// A server connection's handshake, to tell whether stream data came as 0-RTT: STREAM
/// frames received while the handshake is still under way came in 0-RTT packets.
///
/// Exact on what it reports, sampled when asked: a server reads no 1-RTT packet before its
/// handshake completes, and quinn processes a datagram and reports the handshake complete
/// under one lock, so reading the frame count first and then finding the handshake still
/// under way means every frame counted came before completion. Asked too late (after the
/// handshake), it says nothing: 0-RTT may be missed, never claimed wrongly. Ask as the
/// connection starts (0-RTT packets that came with the first Initial) and as each request
/// is taken (those that came after).
#[derive(Clone)]
pub struct Handshake {
    done: Shared<quinn::ZeroRttAccepted>,
    seen: Arc<AtomicBool>,
}

impl Handshake {
    /// From a server's [`quinn::Connecting::into_0rtt`].
    pub fn new(handshake: quinn::ZeroRttAccepted) -> Self {
        Self {
            done: handshake.shared(),
            seen: Arc::new(AtomicBool::new(false)),
        }
    }

    /// Completes when the handshake does, whatever its outcome.
    pub async fn completed(&self) {
        self.done.clone().await;
    }

    /// `true` the first time `conn` is seen to have received stream data as 0-RTT (see the
    /// type), `false` otherwise.
    pub fn first_sight_of_0rtt(&self, conn: &quinn::Connection) -> bool {
        let streams = conn.stats().frame_rx.stream;
        // Each clone polls with its own waker: this one does not take `completed`'s place.
        let under_way = self.done.clone().now_or_never().is_none();
        streams > 0 && under_way && !self.seen.swap(true, Ordering::Relaxed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rustls::server::ServerSessionMemoryCache;

    #[test]
    fn a_session_taken_counts_once_a_missing_one_not() {
        let resumed = Arc::new(AtomicU64::new(0));
        let store = CountingSessions::new(ServerSessionMemoryCache::new(4), resumed.clone());
        assert!(store.put(b"ticket".to_vec(), b"secrets".to_vec()));
        assert_eq!(store.get(b"ticket").as_deref(), Some(&b"secrets"[..]));
        assert_eq!(
            resumed.load(Ordering::Relaxed),
            0,
            "a look is no resumption"
        );
        assert_eq!(store.take(b"ticket").as_deref(), Some(&b"secrets"[..]));
        assert_eq!(store.take(b"ticket"), None, "a ticket is used once");
        assert_eq!(store.take(b"other"), None);
        assert_eq!(resumed.load(Ordering::Relaxed), 1);
    }
}
