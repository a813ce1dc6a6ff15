//! What the lab's loopback runs need besides `Origin::start` and `Edge::start_on`: endpoints
//! bound before their edges start (helpers need each other's addresses), free loopback ports.

use std::net::SocketAddr;

pub use segue_net::NodeTls;
use segue_net::{TransportLimits, server_endpoint};

/// 127.0.0.1 with a port the system picks.
pub fn any_port() -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], 0))
}

/// A server endpoint on loopback with the dev certificate (bind first, serve later: helpers
/// need each other's addresses before they start).
pub fn endpoint(tls: &NodeTls) -> anyhow::Result<quinn::Endpoint> {
    Ok(server_endpoint(
        any_port(),
        tls,
        TransportLimits::default(),
    )?)
}
