//! HTTP/0.9 over QUIC (ALPN `hq-interop`), as the quic-interop-runner's endpoints speak it:
//! a client opens one bidirectional stream per file, sends `GET /path\r\n` and FIN; the
//! server answers the file's bytes and FIN (nothing for a missing file: the stream is reset).
//! For interop tests with other QUIC stacks (interop/; the client is `segue-interop`), not for
//! media delivery. The same endpoints speak HTTP/3 ([`crate::files::http3`]) when the peer
//! picks ALPN `h3`.

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use quinn::crypto::rustls::QuicServerConfig;
use tokio::sync::watch;

use crate::files::stats::{ServerStats, note_0rtt};
use crate::files::{Body as _, FileError, Files, ServeError};
use crate::node::admission::{Admission, ConnectionLimits};
use crate::node::resumption::{CountingSessions, Handshake};

/// ALPN of HTTP/0.9 over QUIC in the interop runner.
pub const ALPN: &[u8] = segue_net::alpn::HQ_INTEROP;
/// Longest request line.
const MAX_REQUEST: usize = 8192;
/// Streams a client may have open at once on a server connection.
const MAX_STREAMS: u32 = 1000;

/// How long a connection may stay silent before it is given up (also the longest a client
/// waits for a handshake), unless told otherwise.
pub const IDLE_TIMEOUT: Duration = Duration::from_secs(30);

/// A bound server endpoint offering `hq-interop` and `h3`, and its configuration (which each
/// connection gets, with its own qlog trace when `$QLOGDIR` is set).
pub struct Server {
    pub endpoint: quinn::Endpoint,
    config: quinn::ServerConfig,
    /// What it did once served.
    pub stats: Arc<ServerStats>,
    idle: Duration,
    /// Congestion control and loss detection (None: quinn's defaults).
    settings: Option<segue_net::TransportSettings>,
}

impl Server {
    /// Connections silent for `idle` are given up (default [`IDLE_TIMEOUT`]).
    pub fn with_idle_timeout(mut self, idle: Duration) -> Self {
        self.idle = idle;
        self.reconfigure()
    }

    /// Connections run `settings` (a node's `--congestion` and thresholds).
    pub fn with_transport(mut self, settings: segue_net::TransportSettings) -> Self {
        self.settings = Some(settings);
        self.reconfigure()
    }

    fn reconfigure(mut self) -> Self {
        let t = segue_net::alpn::file_transport(MAX_STREAMS, self.idle, self.settings.as_ref());
        self.config.transport_config(Arc::new(t));
        self.endpoint.set_server_config(Some(self.config.clone()));
        self
    }
}

/// A server endpoint on `listen` offering `hq-interop` and `h3` with `cert`/`key`.
pub fn server_endpoint(
    listen: SocketAddr,
    cert: &Path,
    key: &Path,
) -> Result<Server, segue_net::Error> {
    let mut tls = segue_certs::tls::server_config(cert, key, &[ALPN, crate::files::http3::ALPN])?;
    // 0-RTT for resumed clients (QUIC takes all or nothing). Files only: GET is idempotent,
    // so a replayed request costs bytes, not correctness. Never on the media path.
    tls.max_early_data_size = u32::MAX;
    let stats = Arc::new(ServerStats::default());
    tls.session_storage = Arc::new(CountingSessions::new(
        tls.session_storage.clone(),
        stats.resumed_sessions.clone(),
    ));
    let quic = QuicServerConfig::try_from(tls)?;
    let mut config = quinn::ServerConfig::with_crypto(Arc::new(quic));
    config.transport_config(Arc::new(segue_net::alpn::file_transport(
        MAX_STREAMS,
        IDLE_TIMEOUT,
        None,
    )));
    let endpoint =
        segue_net::handshake_hold::server_endpoint(config.clone(), listen).map_err(|source| {
            segue_net::Error::Listen {
                addr: listen,
                source,
            }
        })?;
    Ok(Server {
        endpoint,
        config,
        stats,
        idle: IDLE_TIMEOUT,
        settings: None,
    })
}

/// Serves `files` until `stop`, holding connections within `limits` (and validating client
/// addresses with a Retry as they say).
pub async fn serve<F: Files>(
    server: Server,
    files: Arc<F>,
    limits: ConnectionLimits,
    mut stop: watch::Receiver<bool>,
) {
    let Server {
        endpoint,
        config,
        stats,
        idle,
        settings,
    } = server;
    let admission = Admission::new(limits);
    let qlog = segue_net::Qlog::from_env();
    loop {
        let incoming = tokio::select! {
            i = endpoint.accept() => match i { Some(i) => i, None => break },
            _ = stop.changed() => break,
        };
        let (peer, validated) = (
            incoming.remote_address(),
            incoming.remote_address_validated(),
        );
        let retry = admission.wants_retry(peer, validated);
        if retry {
            stats.retries.fetch_add(1, Ordering::Relaxed);
            tracing::info!(%peer, "address validation: Retry sent");
        }
        let Some((incoming, ticket)) = admission.admit(incoming) else {
            if !retry {
                stats.refused_connections.fetch_add(1, Ordering::Relaxed);
            }
            continue;
        };
        let connecting = match &qlog {
            None => incoming.accept(),
            Some(q) => {
                let peer = incoming.remote_address();
                incoming.accept_with(q.server_config(
                    &config,
                    segue_net::alpn::file_transport(MAX_STREAMS, idle, settings.as_ref()),
                    peer,
                ))
            }
        };
        // A server's connection is usable before its handshake completes: requests that came
        // as 0-RTT data are answered at once (0.5-RTT data; GET is idempotent, and quinn holds
        // what we send to 3x what an unvalidated client sent).
        let (conn, handshake) = match connecting.map(quinn::Connecting::into_0rtt) {
            Ok(Ok((conn, handshake))) => (conn, Handshake::new(handshake)),
            Ok(Err(_)) => {
                tracing::debug!("no connection before the handshake");
                continue;
            }
            Err(e) => {
                tracing::debug!("handshake failed: {e}");
                continue;
            }
        };
        // 0-RTT packets that came with the first Initial, checked before anything else runs
        // (the client's Finished cannot have come yet); later ones as requests are taken.
        note_0rtt(&conn, &handshake, &stats);
        let (files, stats) = (files.clone(), stats.clone());
        tokio::spawn(async move {
            // The connection's place, held until it ends.
            let _ticket = ticket;
            let established = async {
                handshake.completed().await;
                match conn.close_reason() {
                    None => {
                        stats.connections.fetch_add(1, Ordering::Relaxed);
                    }
                    Some(e) => tracing::debug!("handshake failed: {e}"),
                }
            };
            let serving = async {
                // Known once the ClientHello is in, which is at once unless it spanned
                // several packets: then after the handshake.
                let protocol = match alpn(&conn) {
                    Some(p) => Some(p),
                    None => {
                        handshake.completed().await;
                        alpn(&conn)
                    }
                };
                if protocol.as_deref() == Some(crate::files::http3::ALPN) {
                    let conn = conn.clone();
                    return crate::files::http3::serve_connection(
                        conn,
                        &handshake,
                        files,
                        stats.clone(),
                    )
                    .await;
                }
                let peer = conn.remote_address().ip();
                while let Ok((send, recv)) = conn.accept_bi().await {
                    note_0rtt(&conn, &handshake, &stats);
                    let (files, stats) = (files.clone(), stats.clone());
                    tokio::spawn(async move {
                        if let Err(e) = answer(&*files, send, recv, &stats, peer).await {
                            tracing::debug!("hq request: {e}");
                        }
                    });
                }
            };
            tokio::join!(established, serving);
        });
    }
    endpoint.close(0u32.into(), b"shutting down");
}

/// The protocol a connection negotiated.
pub fn alpn(conn: &quinn::Connection) -> Option<Vec<u8>> {
    conn.handshake_data()?
        .downcast::<quinn::crypto::rustls::HandshakeData>()
        .ok()?
        .protocol
}

async fn answer<F: Files>(
    files: &F,
    mut send: quinn::SendStream,
    mut recv: quinn::RecvStream,
    stats: &ServerStats,
    peer: std::net::IpAddr,
) -> Result<(), ServeError> {
    let req = recv
        .read_to_end(MAX_REQUEST)
        .await
        .map_err(|_| ServeError::Request("request too long or cut"))?;
    let line =
        std::str::from_utf8(&req).map_err(|_| ServeError::Request("request is not UTF-8"))?;
    let path = line
        .trim_end()
        .strip_prefix("GET ")
        .map(|p| p.split_whitespace().next().unwrap_or(""))
        .ok_or(ServeError::Request("not a GET request"))?;
    // HTTP/0.9 has no status: a file that cannot be sent resets the stream.
    let (bare, query) = match path.split_once('?') {
        Some((p, q)) => (p, Some(q)),
        None => (path, None),
    };
    let sent = async {
        files
            .authorize(bare, query, None, peer)
            .map_err(|d| FileError::NotFound(d.to_string()))?;
        let mut f = files.open(path).await?;
        let mut n = 0;
        while f.len > 0
            && let Some(chunk) = f.body.next(0, f.len - 1).await?
        {
            n += chunk.len() as u64;
            send.write_chunk(chunk)
                .await
                .map_err(|e| FileError::Internal(e.to_string()))?;
        }
        Ok::<u64, FileError>(n)
    }
    .await;
    let n = match sent {
        Ok(n) => n,
        Err(e) => {
            if matches!(e, FileError::NotFound(_)) {
                stats.refused.fetch_add(1, Ordering::Relaxed);
            }
            let _ = send.reset(0x10u32.into());
            return Err(e.into());
        }
    };
    // Counted before the FIN goes out, so a client that has everything sees the count.
    stats.files.fetch_add(1, Ordering::Relaxed);
    stats.bytes.fetch_add(n, Ordering::Relaxed);
    send.finish().map_err(segue_net::StreamError::from)?;
    let _ = send.stopped().await;
    Ok(())
}
