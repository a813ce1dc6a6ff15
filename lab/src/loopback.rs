//! What the lab's loopback runs need besides `Edge::start_on`: an origin serving a library it
//! ingested itself (returned with the future that serves; the caller spawns it: a `JoinSet`
//! aborts what it holds when dropped, which the lab relies on for Ctrl-C), endpoints bound
//! before their edges start (helpers need each other's addresses), free loopback ports.

use std::net::SocketAddr;
use std::sync::Arc;

use tokio::sync::watch;

pub use segue_net::NodeTls;
use segue_net::{TransportLimits, server_endpoint};
use segue_server::library::Library;
use segue_server::node::{NodeOptions, serve};
use segue_server::source::LibrarySource;

/// 127.0.0.1 with a port the system picks.
pub fn any_port() -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], 0))
}

/// Serves `library` as an origin until `stop`.
pub fn origin(
    tls: &NodeTls,
    library: Arc<Library>,
    opts: NodeOptions,
    stop: watch::Receiver<bool>,
) -> anyhow::Result<(SocketAddr, impl Future<Output = ()> + Send + 'static)> {
    origin_with(tls, LibrarySource::new(library), opts, stop)
}

/// Serves `source` as an origin until `stop` (keep a clone for its counters or pushes).
pub fn origin_with(
    tls: &NodeTls,
    source: LibrarySource,
    opts: NodeOptions,
    stop: watch::Receiver<bool>,
) -> anyhow::Result<(SocketAddr, impl Future<Output = ()> + Send + 'static)> {
    let ep = endpoint(tls)?;
    let addr = ep.local_addr()?;
    Ok((addr, serve(ep, Arc::new(source), opts, stop)))
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
