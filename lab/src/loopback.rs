//! In-process nodes on loopback, as `segue-lab demo` and the lab run them: dev credentials, an
//! origin serving a library and edges in front of it, all real QUIC servers stopped by one
//! shared signal. Each returns its address and the future that serves; the caller spawns it
//! (a `JoinSet` aborts what it holds when dropped, which the lab relies on for Ctrl-C).

use std::net::SocketAddr;
use std::sync::Arc;

use segue_wire::SegueUrl;
use tokio::sync::watch;

pub use segue_net::NodeTls;
use segue_net::{TransportLimits, client_endpoint, server_endpoint};
use segue_server::edge::store::Store;
use segue_server::edge::upstream::{self, Upstream};
use segue_server::edge::{EdgeOptions, EdgeSource};
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

/// An edge over `store`, fetching from `origin`, serving until `stop`.
pub fn edge(
    tls: &NodeTls,
    store: Store,
    origin: SegueUrl,
    opts: EdgeOptions,
    node: NodeOptions,
    stop: watch::Receiver<bool>,
) -> anyhow::Result<(
    EdgeSource,
    SocketAddr,
    impl Future<Output = ()> + Send + 'static,
)> {
    let ep = endpoint(tls)?;
    helper(tls, ep, store, origin, opts, node, None, stop)
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

/// An edge serving on `ep`, cooperating with the peers of `helpers` (if any). The caller
/// spawns its `upkeep` and `advertise` tasks.
#[allow(clippy::too_many_arguments)]
pub fn helper(
    tls: &NodeTls,
    ep: quinn::Endpoint,
    store: Store,
    origin: SegueUrl,
    opts: EdgeOptions,
    node: NodeOptions,
    helpers: Option<segue_server::helper::HelperOptions>,
    stop: watch::Receiver<bool>,
) -> anyhow::Result<(
    EdgeSource,
    SocketAddr,
    impl Future<Output = ()> + Send + 'static,
)> {
    let client = client_endpoint(tls, Default::default())?;
    let helpers = helpers.map(|h| {
        Arc::new(segue_server::helper::Helpers::new(
            h,
            &client,
            upstream::DEFAULT_TIMEOUT,
        ))
    });
    let up = Upstream::new(client, origin, upstream::DEFAULT_TIMEOUT);
    let source = EdgeSource::with_helpers(store, up, opts, helpers);
    let addr = ep.local_addr()?;
    let serving = serve(ep, Arc::new(source.clone()), node, stop);
    Ok((source, addr, serving))
}
