//! The interop client: downloads URLs over HTTP/0.9 (ALPN `hq-interop`, as the
//! quic-interop-runner's endpoints speak it) or HTTP/3, on one connection or, for the
//! runner's resumption and zerortt cases, on two (the second resuming the first's TLS
//! session, its requests as 0-RTT data). `segue-lab hq get` is this; `interop/run.sh` runs it
//! against `segue hq serve` and other stacks' servers.

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use anyhow::{Context as _, bail};
use quinn::crypto::rustls::QuicClientConfig;

use crate::download::{Download, Target, collect};
use crate::verifier::CountingVerifier;

/// How long a connection may stay silent before it is given up (also the longest a client
/// waits for a handshake), unless told otherwise.
pub const IDLE_TIMEOUT: Duration = Duration::from_secs(30);

fn client_transport(
    idle: Duration,
    settings: Option<&segue_net::TransportSettings>,
) -> quinn::TransportConfig {
    // A client takes no request streams from the server.
    let mut t = segue_net::alpn::file_transport(0, idle, settings);
    t.keep_alive_interval(Some(Duration::from_secs(1)));
    t
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
        segue_net::alpn::H3
    } else {
        segue_net::alpn::HQ_INTEROP
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
        return crate::h3::get(conn, urls, downloads, opts.range.as_deref()).await;
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
