//! QUIC endpoints with segue/1's transport limits.

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use quinn::crypto::rustls::{QuicClientConfig, QuicServerConfig};

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
    let tls = segue_certs::tls::server_config(cert, key, &[segue_wire::ALPN])?;
    let quic = QuicServerConfig::try_from(tls).context("TLS config unusable for QUIC")?;
    let mut cfg = quinn::ServerConfig::with_crypto(Arc::new(quic));
    cfg.transport_config(Arc::new(transport(limits)?));
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

/// qlog traces, one file per connection, in the directory `$QLOGDIR` names (the QUIC interop
/// runner's convention), through quinn's `qlog` feature. Unset or empty: no traces.
#[derive(Debug, Clone)]
pub struct Qlog {
    dir: std::path::PathBuf,
}

impl Qlog {
    pub fn from_env() -> Option<Self> {
        std::env::var_os("QLOGDIR")
            .filter(|d| !d.is_empty())
            .map(|d| Self { dir: d.into() })
    }

    /// A trace for a new connection (`role`: "client" or "server", `peer`: its address), in
    /// `<dir>/<role>-<unix ms>-<n>.sqlog` (JSON text sequences). A directory that cannot be
    /// written is logged and the connection goes untraced.
    pub fn stream(&self, role: &str, peer: SocketAddr) -> Option<quinn::QlogStream> {
        use std::sync::atomic::{AtomicU64, Ordering};
        static NEXT: AtomicU64 = AtomicU64::new(0);
        let n = NEXT.fetch_add(1, Ordering::Relaxed);
        let ms = (crate::clock::unix_now() * 1000.0) as u64;
        let path = self.dir.join(format!("{role}-{ms}-{n}.sqlog"));
        let file = std::fs::create_dir_all(&self.dir).and_then(|()| std::fs::File::create(&path));
        match file {
            Ok(f) => {
                let mut c = quinn::QlogConfig::default();
                c.writer(Box::new(f))
                    .title(Some(format!("segue {role}, peer {peer}")));
                c.into_stream()
            }
            Err(e) => {
                tracing::warn!(path = %path.display(), "no qlog: {e}");
                None
            }
        }
    }
}
