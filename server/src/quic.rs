//! QUIC endpoints with segue/1's transport limits.

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use quinn::crypto::rustls::{QuicClientConfig, QuicServerConfig};
pub use segue_client::qlog::Qlog;

/// Transport limits of a server endpoint.
#[derive(Debug, Clone, Copy)]
pub struct TransportLimits {
    /// Client-initiated bidirectional streams open at once (control + segment requests).
    pub max_bidi_streams: u32,
    /// Connection closed after this long without any packet.
    pub idle_timeout: Duration,
}

impl Default for TransportLimits {
    fn default() -> Self {
        Self {
            max_bidi_streams: 256,
            idle_timeout: Duration::from_secs(30),
        }
    }
}

fn transport(limits: TransportLimits) -> anyhow::Result<quinn::TransportConfig> {
    let mut t = quinn::TransportConfig::default();
    t.max_concurrent_bidi_streams(limits.max_bidi_streams.into())
        // Clients never open unidirectional streams in segue/1.
        .max_concurrent_uni_streams(0u32.into())
        .max_idle_timeout(Some(
            limits
                .idle_timeout
                .try_into()
                .context("idle timeout out of range")?,
        ))
        .keep_alive_interval(Some(limits.idle_timeout / 3));
    Ok(t)
}

/// A server endpoint on `listen` presenting `cert`/`key`, ALPN `segue/1`.
pub fn server_endpoint(
    listen: SocketAddr,
    cert: &Path,
    key: &Path,
    limits: TransportLimits,
) -> anyhow::Result<quinn::Endpoint> {
    let cfg = server_config(cert, key, limits)?;
    quinn::Endpoint::server(cfg, listen).with_context(|| format!("cannot listen on {listen}"))
}

/// A client endpoint (used by edges towards origins) trusting only `ca`.
pub fn client_endpoint(ca: &Path) -> anyhow::Result<quinn::Endpoint> {
    let tls = segue_certs::tls::client_config(ca, &[segue_wire::ALPN])?;
    let quic = QuicClientConfig::try_from(tls).context("TLS config unusable for QUIC")?;
    let mut cfg = quinn::ClientConfig::new(Arc::new(quic));
    cfg.transport_config(Arc::new(transport(TransportLimits::default())?));
    let any_v6 = SocketAddr::from((std::net::Ipv6Addr::UNSPECIFIED, 0));
    let any_v4 = SocketAddr::from((std::net::Ipv4Addr::UNSPECIFIED, 0));
    let mut ep = quinn::Endpoint::client(any_v6)
        .or_else(|_| quinn::Endpoint::client(any_v4))
        .context("cannot bind a UDP socket")?;
    ep.set_default_client_config(cfg);
    Ok(ep)
}

/// A server configuration for `cert`/`key`, ALPN `segue/1`, with segue/1's transport limits.
pub fn server_config(
    cert: &Path,
    key: &Path,
    limits: TransportLimits,
) -> anyhow::Result<quinn::ServerConfig> {
    let tls = segue_certs::tls::server_config(cert, key, &[segue_wire::ALPN])?;
    let quic = QuicServerConfig::try_from(tls).context("TLS config unusable for QUIC")?;
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
    pub fn from_env(
        cert: &Path,
        key: &Path,
        limits: TransportLimits,
    ) -> anyhow::Result<Option<Self>> {
        let Some(qlog) = Qlog::from_env() else {
            return Ok(None);
        };
        Ok(Some(Self {
            qlog,
            config: server_config(cert, key, limits)?,
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
