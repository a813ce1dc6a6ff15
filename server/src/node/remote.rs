//! Who is at the other end of a connection: one of our nodes, authenticated by a client
//! certificate of the node CA (mTLS, verified in the handshake), or anyone else (a player).
//! What each may do is decided where requests are answered (`segserve`).

use std::net::SocketAddr;
use std::sync::Arc;

use rustls::pki_types::CertificateDer;

/// The remote end of one connection.
#[derive(Debug, Clone)]
pub struct Remote {
    pub addr: SocketAddr,
    /// The verified end-entity certificate of a node; `None`: not a node.
    cert: Option<Arc<CertificateDer<'static>>>,
}

impl Remote {
    /// The peer of `conn`, as its handshake authenticated it.
    pub fn of(conn: &quinn::Connection) -> Self {
        let cert = conn
            .peer_identity()
            .and_then(|id| id.downcast::<Vec<CertificateDer<'static>>>().ok())
            .and_then(|chain| chain.into_iter().next())
            .map(Arc::new);
        Self {
            addr: conn.remote_address(),
            cert,
        }
    }

    /// A peer without a certificate (tests, and anything not reached over QUIC).
    pub fn anonymous(addr: SocketAddr) -> Self {
        Self { addr, cert: None }
    }

    /// Presented a certificate of the node CA.
    pub fn is_node(&self) -> bool {
        self.cert.is_some()
    }

    /// Is the node called `name`: its certificate is valid for that DNS name (how a helper's
    /// configured name is bound to its certificate).
    pub fn is_node_named(&self, name: &str) -> bool {
        self.cert
            .as_deref()
            .is_some_and(|c| segue_certs::tls::certifies_name(c, name))
    }
}

impl std::fmt::Display for Remote {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.is_node() {
            true => write!(f, "node at {}", self.addr),
            false => write!(f, "{}", self.addr),
        }
    }
}
