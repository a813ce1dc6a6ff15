//! QUIC endpoints with segue/1's transport limits.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use quinn::crypto::rustls::{QuicClientConfig, QuicServerConfig};

use crate::qlog::Qlog;
use crate::transport::TransportSettings;

/// Why an endpoint or its configuration could not be made.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("dev PKI: {0}")]
    Pki(#[source] segue_certs::Error),
    #[error("TLS configuration: {0}")]
    Tls(#[from] segue_certs::Error),
    #[error("TLS config unusable for QUIC: {0}")]
    Quic(#[from] quinn::crypto::rustls::NoInitialCipherSuite),
    #[error("idle timeout {0:?} out of range")]
    IdleTimeout(Duration),
    #[error("cannot listen on {addr}: {source}")]
    Listen {
        addr: SocketAddr,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot bind a UDP socket: {0}")]
    Bind(#[source] std::io::Error),
}

/// Transport limits of a server endpoint.
#[derive(Debug, Clone, Copy)]
pub struct TransportLimits {
    /// Client-initiated bidirectional streams open at once (control + segment requests).
    pub max_bidi_streams: u32,
    /// Connection closed after this long without any packet.
    pub idle_timeout: Duration,
    /// Congestion control and loss detection of the connections.
    pub transport: TransportSettings,
    /// A PING after this long without sending (None: a third of the idle timeout).
    pub keep_alive: Option<Duration>,
}

/// How often a node's connections to other nodes are kept alive: a live peer answers
/// several times a second, so one that went silent is known dead within about a second
/// (`server::node::upstream`), not at the idle timeout.
pub const NODE_KEEP_ALIVE: Duration = Duration::from_millis(250);

impl Default for TransportLimits {
    fn default() -> Self {
        Self {
            max_bidi_streams: 256,
            idle_timeout: Duration::from_secs(30),
            transport: TransportSettings::default(),
            keep_alive: None,
        }
    }
}

fn transport(limits: TransportLimits) -> Result<quinn::TransportConfig, Error> {
    let mut t = limits.transport.config();
    t.max_concurrent_bidi_streams(limits.max_bidi_streams.into())
        // Clients never open unidirectional streams in segue/1.
        .max_concurrent_uni_streams(0u32.into())
        .max_idle_timeout(Some(
            limits
                .idle_timeout
                .try_into()
                .map_err(|_| Error::IdleTimeout(limits.idle_timeout))?,
        ))
        .keep_alive_interval(Some(limits.keep_alive.unwrap_or(limits.idle_timeout / 3)));
    Ok(t)
}

/// A node's TLS credentials: the certificate and key it presents (as a server, and as a
/// client to other nodes: mTLS), and the CA the other nodes' certificates chain to.
#[derive(Debug, Clone)]
pub struct NodeTls {
    pub cert: PathBuf,
    pub key: PathBuf,
    pub ca: PathBuf,
}

impl NodeTls {
    /// The dev PKI in `dir` (created, or reused): its CA and its `localhost` certificate.
    pub fn dev(dir: &Path) -> Result<Self, Error> {
        segue_certs::init(dir, &[]).map_err(Error::Pki)?;
        Ok(Self::named(dir, segue_certs::pki::LOCALHOST))
    }

    /// The dev PKI in `dir` (created, or reused) with a certificate for node `name`: helpers
    /// are known to each other by name, and their certificates must carry it.
    pub fn dev_node(dir: &Path, name: &str) -> Result<Self, Error> {
        segue_certs::init(dir, &[name.to_owned()]).map_err(Error::Pki)?;
        Ok(Self::named(dir, name))
    }

    /// The files `segue certs init --node NAME` writes in `dir` for node `name`.
    pub fn named(dir: &Path, name: &str) -> Self {
        let (cert, key) = segue_certs::pki::leaf_paths(dir, name);
        Self {
            cert,
            key,
            ca: dir.join(segue_certs::pki::CA_CERT),
        }
    }
}

/// A server endpoint on `listen` presenting `tls`' certificate, ALPN `segue/1`; clients
/// presenting a certificate of `tls.ca` are authenticated as nodes, others let in as players.
pub fn server_endpoint(
    listen: SocketAddr,
    tls: &NodeTls,
    limits: TransportLimits,
) -> Result<quinn::Endpoint, Error> {
    let cfg = server_config(tls, limits)?;
    crate::handshake_hold::server_endpoint(cfg, listen).map_err(|source| Error::Listen {
        addr: listen,
        source,
    })
}

/// A client endpoint of a node (an edge towards origins and helpers, an origin towards the
/// edges it pushes to): trusts only `tls.ca` and presents `tls`' certificate; its
/// connections use `transport`.
pub fn client_endpoint(tls: &NodeTls, transport: TransportSettings) -> Result<Dialer, Error> {
    let tls = segue_certs::tls::client_config_presenting(
        &tls.ca,
        &tls.cert,
        &tls.key,
        &[segue_wire::ALPN],
    )?;
    let quic = QuicClientConfig::try_from(tls)?;
    let mut config = quinn::ClientConfig::new(Arc::new(quic));
    let limits = TransportLimits {
        transport,
        keep_alive: Some(NODE_KEEP_ALIVE),
        ..TransportLimits::default()
    };
    config.transport_config(Arc::new(self::transport(limits)?));
    let any_v6 = SocketAddr::from((std::net::Ipv6Addr::UNSPECIFIED, 0));
    let any_v4 = SocketAddr::from((std::net::Ipv4Addr::UNSPECIFIED, 0));
    let mut endpoint = quinn::Endpoint::client(any_v6)
        .or_else(|_| quinn::Endpoint::client(any_v4))
        .map_err(Error::Bind)?;
    endpoint.set_default_client_config(config.clone());
    Ok(Dialer {
        endpoint,
        config,
        limits,
        qlog: Qlog::from_env(),
    })
}

/// How a node opens connections to other nodes (edge to origin, to helpers, origin to the
/// edges it pushes to): its client endpoint, and with `$QLOGDIR` set a qlog trace for each
/// connection it opens, as for those it accepts ([`NodeQlog`]).
#[derive(Debug, Clone)]
pub struct Dialer {
    endpoint: quinn::Endpoint,
    config: quinn::ClientConfig,
    limits: TransportLimits,
    qlog: Option<Qlog>,
}

impl Dialer {
    /// Starts a connection to `addr`, whose certificate must be valid for `host`.
    pub fn connect(
        &self,
        addr: SocketAddr,
        host: &str,
    ) -> Result<quinn::Connecting, quinn::ConnectError> {
        // The limits were checked when the endpoint was made: this cannot fail.
        match (&self.qlog, transport(self.limits)) {
            (Some(q), Ok(t)) => {
                self.endpoint
                    .connect_with(q.client_config(&self.config, t, addr), addr, host)
            }
            _ => self.endpoint.connect(addr, host),
        }
    }

    pub fn endpoint(&self) -> &quinn::Endpoint {
        &self.endpoint
    }

    /// The same, tracing its connections into `qlog` (`None`: untraced) instead of what
    /// `$QLOGDIR` said.
    pub fn with_qlog(mut self, qlog: Option<Qlog>) -> Self {
        self.qlog = qlog;
        self
    }
}

/// A server configuration for `tls`, ALPN `segue/1`, with segue/1's transport limits and
/// optional client certificates (see [`server_endpoint`]).
pub fn server_config(tls: &NodeTls, limits: TransportLimits) -> Result<quinn::ServerConfig, Error> {
    let mut rustls = segue_certs::tls::server_config_with_client_ca(
        &tls.cert,
        &tls.key,
        &tls.ca,
        &[segue_wire::ALPN],
    )?;
    // 0-RTT for resumed players (QUIC takes all or nothing): a node answers only a play's
    // start early (`server::node::control::answered_early`); tickets are single-use and held
    // by this process alone (rustls' default server store), so a replayed flight cannot
    // resume here or anywhere else (PROTOCOL.md §2).
    rustls.max_early_data_size = u32::MAX;
    let quic = QuicServerConfig::try_from(rustls)?;
    let mut cfg = quinn::ServerConfig::with_crypto(Arc::new(quic));
    cfg.transport_config(Arc::new(transport(limits)?));
    Ok(cfg)
}

/// With `$QLOGDIR` set: what a node needs to give each connection its own qlog trace.
#[derive(Clone)]
pub struct NodeQlog {
    qlog: Qlog,
    config: quinn::ServerConfig,
    limits: TransportLimits,
}

impl std::fmt::Debug for NodeQlog {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "NodeQlog({:?})", self.qlog)
    }
}

impl NodeQlog {
    /// `None` unless `$QLOGDIR` is set.
    pub fn from_env(tls: &NodeTls, limits: TransportLimits) -> Result<Option<Self>, Error> {
        let Some(qlog) = Qlog::from_env() else {
            return Ok(None);
        };
        Ok(Some(Self {
            qlog,
            config: server_config(tls, limits)?,
            limits,
        }))
    }

    /// Accepts `incoming` with a configuration tracing it.
    pub fn accept(
        &self,
        incoming: quinn::Incoming,
    ) -> Result<quinn::Connecting, quinn::ConnectionError> {
        // The limits were checked when the configuration was made: this cannot fail.
        let Ok(t) = transport(self.limits) else {
            return incoming.accept_with(Arc::new(self.config.clone()));
        };
        let peer = incoming.remote_address();
        incoming.accept_with(self.qlog.server_config(&self.config, t, peer))
    }
}
