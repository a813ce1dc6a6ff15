//! qlog traces of QUIC connections (quinn's `qlog` feature), for the player and the nodes.

use std::net::SocketAddr;
use std::sync::Arc;

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

    /// Traces in `dir` (what `$QLOGDIR` names, given directly).
    pub fn in_dir(dir: impl Into<std::path::PathBuf>) -> Self {
        Self { dir: dir.into() }
    }

    /// `base` for a connection to `peer`, with `transport` tracing it.
    pub fn client_config(
        &self,
        base: &quinn::ClientConfig,
        transport: quinn::TransportConfig,
        peer: SocketAddr,
    ) -> quinn::ClientConfig {
        let mut c = base.clone();
        c.transport_config(self.traced(transport, "client", peer));
        c
    }

    /// `base` for a connection accepted from `peer`, with `transport` tracing it.
    pub fn server_config(
        &self,
        base: &quinn::ServerConfig,
        transport: quinn::TransportConfig,
        peer: SocketAddr,
    ) -> Arc<quinn::ServerConfig> {
        let mut c = base.clone();
        c.transport_config(self.traced(transport, "server", peer));
        Arc::new(c)
    }

    fn traced(
        &self,
        mut transport: quinn::TransportConfig,
        role: &str,
        peer: SocketAddr,
    ) -> Arc<quinn::TransportConfig> {
        transport.qlog_stream(self.stream(role, peer));
        Arc::new(transport)
    }

    /// A trace for a new connection (`role`: "client" or "server", `peer`: its address), in
    /// `<dir>/<role>-<unix ms>-<n>.sqlog` (JSON text sequences). A directory that cannot be
    /// written is logged and the connection goes untraced.
    fn stream(&self, role: &str, peer: SocketAddr) -> Option<quinn::QlogStream> {
        use std::sync::atomic::{AtomicU64, Ordering};
        static NEXT: AtomicU64 = AtomicU64::new(0);
        let n = NEXT.fetch_add(1, Ordering::Relaxed);
        let ms = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_millis());
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
