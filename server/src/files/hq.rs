//! HTTP/0.9 over QUIC (ALPN `hq-interop`), as the quic-interop-runner's endpoints speak it:
//! a client opens one bidirectional stream per file, sends `GET /path\r\n` and FIN; the
//! server answers the file's bytes and FIN (nothing for a missing file: the stream is reset).
//! For interop tests with other QUIC stacks (interop/), not for media delivery. The same
//! endpoints speak HTTP/3 ([`crate::files::http3`]) when the peer picks ALPN `h3`.

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use anyhow::{Context as _, bail};
use quinn::crypto::rustls::{QuicClientConfig, QuicServerConfig};
use tokio::sync::watch;

use crate::files::download::{Download, Target, collect};
use crate::files::stats::{ServerStats, note_0rtt};
use crate::files::{Body as _, FileError, Files};
use crate::node::admission::{Admission, ConnectionLimits};
use crate::node::resumption::{CountingSessions, CountingVerifier, Handshake};

/// ALPN of HTTP/0.9 over QUIC in the interop runner.
pub const ALPN: &[u8] = b"hq-interop";
/// Longest request line.
const MAX_REQUEST: usize = 8192;
/// Streams a client may have open at once on a server connection.
const MAX_STREAMS: u32 = 1000;

/// How long a connection may stay silent before it is given up (also the longest a client
/// waits for a handshake), unless told otherwise.
pub const IDLE_TIMEOUT: Duration = Duration::from_secs(30);

fn transport(
    streams: u32,
    idle: Duration,
    settings: Option<&segue_net::TransportSettings>,
) -> quinn::TransportConfig {
    let mut t = quinn::TransportConfig::default();
    if let Some(s) = settings {
        s.apply(&mut t);
    }
    t.max_concurrent_bidi_streams(streams.into())
        // HTTP/3's control and QPACK streams (HTTP/0.9 opens none).
        .max_concurrent_uni_streams(16u32.into())
        // Within QUIC's 2^62 ms; beyond that, no idle timeout at all is not what was asked.
        .max_idle_timeout(Some(
            quinn::IdleTimeout::try_from(idle).unwrap_or(quinn::VarInt::MAX.into()),
        ));
    t
}

/// A client's transport: no streams from the server, and a keep-alive, because quinn's
/// probe timeouts resend the oldest packet's control frames rather than a lost request: when
/// the request went in a 1-RTT packet the server could not yet decrypt (it drops them until
/// the handshake's Finished arrives), only an acknowledgement of a later packet gets the
/// request declared lost and sent again. A ping a second produces those acknowledgements; with
/// probe timeouts backing off exponentially under heavy loss, a request could otherwise wait
/// until the idle timeout.
fn client_transport(
    idle: Duration,
    settings: Option<&segue_net::TransportSettings>,
) -> quinn::TransportConfig {
    let mut t = transport(0, idle, settings);
    t.keep_alive_interval(Some(std::time::Duration::from_secs(1)));
    t
}

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
        let t = transport(MAX_STREAMS, self.idle, self.settings.as_ref());
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
    config.transport_config(Arc::new(transport(MAX_STREAMS, IDLE_TIMEOUT, None)));
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
                    transport(MAX_STREAMS, idle, settings.as_ref()),
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
) -> anyhow::Result<()> {
    let req = recv
        .read_to_end(MAX_REQUEST)
        .await
        .context("request too long or cut")?;
    let line = std::str::from_utf8(&req).context("request is not UTF-8")?;
    let path = line
        .trim_end()
        .strip_prefix("GET ")
        .map(|p| p.split_whitespace().next().unwrap_or(""))
        .context("not a GET request")?;
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
    send.finish()?;
    let _ = send.stopped().await;
    Ok(())
}

/// Client behaviour.
#[derive(Debug, Clone, Default)]
pub struct ClientOptions {
    /// Offer only TLS_CHACHA20_POLY1305_SHA256.
    pub chacha20: bool,
    /// Speak HTTP/3 (ALPN h3) instead of HTTP/0.9.
    pub http3: bool,
    /// HTTP/3: a `Range` header value sent with every request.
    pub range: Option<String>,
    /// Fetch the first URL on one connection and the rest on a second one, which resumes
    /// the first's TLS session (the interop runner's resumption case).
    pub resumption: bool,
    /// Update the 1-RTT keys once the handshake is confirmed, before the requests (the
    /// runner's keyupdate case).
    pub key_update: bool,
    /// Like `resumption`, with the second connection's requests sent as 0-RTT data (the
    /// runner's zerortt case); whether the server took them is logged.
    pub zero_rtt: bool,
    /// Give a connection up after this long silent, and a handshake after this long
    /// (default [`IDLE_TIMEOUT`]).
    pub idle_timeout: Option<Duration>,
    /// Congestion control and loss detection (None: quinn's defaults, as other QUIC
    /// clients run).
    pub transport: Option<segue_net::TransportSettings>,
}

impl ClientOptions {
    fn idle(&self) -> Duration {
        self.idle_timeout.unwrap_or(IDLE_TIMEOUT)
    }
}

/// A client endpoint and its configuration (each connection gets it, with its own qlog trace
/// when `$QLOGDIR` is set; clones share the TLS session store, so resumption works).
pub struct Client {
    pub endpoint: quinn::Endpoint,
    config: quinn::ClientConfig,
    /// Counts the server certificates verified: a handshake without one resumed.
    verifier: Arc<CountingVerifier>,
    resumed: AtomicU64,
}

impl Client {
    /// A new connection to `addr` (`host` the name its certificate must carry), handshake
    /// done within `opts`' idle timeout.
    pub async fn connect(
        &self,
        addr: SocketAddr,
        host: &str,
        opts: &ClientOptions,
    ) -> anyhow::Result<quinn::Connection> {
        let connecting = self
            .endpoint
            .connect_with(self.config.clone(), addr, host)?;
        handshake(connecting, opts.idle()).await
    }

    /// Connections whose TLS session resumed an earlier one.
    pub fn resumed(&self) -> u64 {
        self.resumed.load(Ordering::Relaxed)
    }
}

/// A client endpoint offering `hq-interop` (or `h3`), trusting `ca`.
pub fn client_endpoint(ca: &Path, opts: &ClientOptions) -> anyhow::Result<Client> {
    let full = segue_certs::tls::provider();
    // QUIC protects Initial packets with AES-128-GCM whatever TLS negotiates.
    let initial = full
        .cipher_suites
        .iter()
        .find(|s| s.suite() == rustls::CipherSuite::TLS13_AES_128_GCM_SHA256)
        .and_then(|s| s.tls13())
        .and_then(|s| s.quic_suite())
        .context("the crypto provider has no AES-128-GCM for QUIC Initial packets")?;
    let mut provider = (*full).clone();
    if opts.chacha20 {
        provider
            .cipher_suites
            .retain(|s| s.suite() == rustls::CipherSuite::TLS13_CHACHA20_POLY1305_SHA256);
    }
    let alpn = if opts.http3 {
        crate::files::http3::ALPN
    } else {
        ALPN
    };
    let provider = Arc::new(provider);
    let mut tls = segue_certs::tls::client_config_with(provider.clone(), ca, &[alpn])?;
    tls.enable_early_data = opts.zero_rtt;
    // webpki over the same roots, as `client_config_with` verifies; counted (see resumption).
    let roots = Arc::new(segue_certs::tls::load_roots(ca)?);
    let webpki = rustls::client::WebPkiServerVerifier::builder_with_provider(roots, provider)
        .build()
        .context("cannot build the certificate verifier")?;
    let verifier = Arc::new(CountingVerifier::new(webpki));
    tls.dangerous().set_certificate_verifier(verifier.clone());
    let quic = QuicClientConfig::with_initial(Arc::new(tls), initial)
        .context("TLS config unusable for QUIC")?;
    let mut cfg = quinn::ClientConfig::new(Arc::new(quic));
    cfg.transport_config(Arc::new(client_transport(
        opts.idle(),
        opts.transport.as_ref(),
    )));
    let endpoint = quinn::Endpoint::client(SocketAddr::from(([0, 0, 0, 0], 0)))
        .context("cannot bind a UDP socket")?;
    Ok(Client {
        endpoint,
        config: cfg,
        verifier,
        resumed: AtomicU64::new(0),
    })
}

/// Downloads `urls` (all on one server: `https://HOST:PORT/path`) over one connection, all
/// requests at once, into `downloads` (each under its path's last component).
pub async fn get(
    client: &Client,
    urls: &[url::Url],
    downloads: &Path,
    opts: &ClientOptions,
) -> anyhow::Result<Vec<Download>> {
    let first = urls.first().context("no URL to fetch")?;
    let host = first.host_str().context("URL without a host")?.to_owned();
    let port = first.port().unwrap_or(443);
    if urls
        .iter()
        .any(|u| u.host_str() != Some(host.as_str()) || u.port().unwrap_or(443) != port)
    {
        bail!("every URL must name the same server");
    }
    let host = host.trim_matches(['[', ']']).to_owned();
    let addr = tokio::net::lookup_host((host.as_str(), port))
        .await?
        .next()
        .with_context(|| format!("cannot resolve {host}"))?;
    tokio::fs::create_dir_all(downloads).await?;
    if (opts.resumption || opts.zero_rtt) && urls.len() > 1 {
        // The client configuration keeps the session ticket of the first connection.
        let mut got = fetch_on(client, addr, &host, &urls[..1], downloads, opts, false).await?;
        got.extend(
            fetch_on(
                client,
                addr,
                &host,
                &urls[1..],
                downloads,
                opts,
                opts.zero_rtt,
            )
            .await?,
        );
        return Ok(got);
    }
    fetch_on(client, addr, &host, urls, downloads, opts, false).await
}

/// Downloads `urls` over one new connection to `addr`; `early`: its requests go as 0-RTT
/// data if the session allows it.
async fn fetch_on(
    client: &Client,
    addr: SocketAddr,
    host: &str,
    urls: &[url::Url],
    downloads: &Path,
    opts: &ClientOptions,
    early: bool,
) -> anyhow::Result<Vec<Download>> {
    let config = match segue_net::Qlog::from_env() {
        Some(q) => q.client_config(
            &client.config,
            client_transport(opts.idle(), opts.transport.as_ref()),
            addr,
        ),
        None => client.config.clone(),
    };
    let verified = client.verifier.verified();
    let connecting = client.endpoint.connect_with(config, addr, host)?;
    let (conn, accepted) = if early {
        match connecting.into_0rtt() {
            Ok((conn, accepted)) => (conn, Some(accepted)),
            Err(connecting) => {
                tracing::info!("no 0-RTT: no resumable session for {host}");
                (handshake(connecting, opts.idle()).await?, None)
            }
        }
    } else {
        (handshake(connecting, opts.idle()).await?, None)
    };
    let got = fetch_over(conn, urls, downloads, opts).await?;
    if let Some(accepted) = accepted {
        tracing::info!(accepted = accepted.await, "0-RTT requests");
    }
    // The handshake has completed (the files came): no certificate verified means resumed.
    let resumed = client.verifier.verified() == verified;
    if resumed {
        client.resumed.fetch_add(1, Ordering::Relaxed);
    }
    tracing::info!(resumed, "TLS session");
    Ok(got)
}

async fn handshake(
    connecting: quinn::Connecting,
    within: Duration,
) -> anyhow::Result<quinn::Connection> {
    Ok(tokio::time::timeout(within, connecting)
        .await
        .with_context(|| format!("handshake timed out after {within:?}"))??)
}

/// Downloads `urls` over `conn`.
async fn fetch_over(
    conn: quinn::Connection,
    urls: &[url::Url],
    downloads: &Path,
    opts: &ClientOptions,
) -> anyhow::Result<Vec<Download>> {
    if opts.key_update {
        conn.force_key_update();
    }
    if opts.http3 {
        return crate::files::http3::get(conn, urls, downloads, opts.range.as_deref()).await;
    }
    let mut tasks = tokio::task::JoinSet::new();
    for u in urls {
        let conn = conn.clone();
        let target = Target::of(u, downloads)?;
        tasks.spawn(async move {
            let (mut send, mut recv) = conn.open_bi().await?;
            send.write_all(format!("GET {}\r\n", target.request).as_bytes())
                .await?;
            send.finish()?;
            let mut sink = target.create().await?;
            while let Some(chunk) = recv.read_chunk(1 << 16, true).await? {
                sink.write(&chunk.bytes).await?;
            }
            sink.finish().await
        });
    }
    let out = collect(tasks).await;
    conn.close(0u32.into(), b"done");
    out
}
