//! `segue-lab hq get`: the interop client's command line.

use std::path::PathBuf;
use std::time::Duration;

use clap::Args;
use segue_net::{Congestion, TransportSettings};

use crate::client::{ClientOptions, client_endpoint, get};

/// Download URLs (https://HOST:PORT/path, one server) over one connection.
#[derive(Args, Debug)]
pub struct GetArgs {
    /// CA that signed the server's certificate.
    #[arg(long, default_value = "certs/dev/ca.pem")]
    pub ca: PathBuf,
    /// Where the files go (the interop runner's /downloads).
    #[arg(long, default_value = "downloads")]
    pub downloads: PathBuf,
    /// Offer only the ChaCha20-Poly1305 cipher suite.
    #[arg(long)]
    pub chacha20: bool,
    /// Speak HTTP/3 (ALPN h3) instead of HTTP/0.9 (hq-interop).
    #[arg(long)]
    pub http3: bool,
    /// Fetch the first URL on one connection, the rest on a second one resuming its TLS
    /// session.
    #[arg(long)]
    pub resumption: bool,
    /// Update the 1-RTT keys before the requests.
    #[arg(long)]
    pub key_update: bool,
    /// Like --resumption, the second connection's requests sent as 0-RTT data (logged at
    /// info: whether the server accepted them).
    #[arg(long)]
    pub zero_rtt: bool,
    /// HTTP/3: send this Range header with every request (e.g. bytes=0-1023).
    #[arg(long, requires = "http3")]
    pub range: Option<String>,
    /// A connection without any packet for this long is given up, in seconds; so is a
    /// handshake not done by then.
    #[arg(long, default_value_t = 30, value_parser = clap::value_parser!(u64).range(1..))]
    pub idle_timeout_secs: u64,
    /// Congestion controller (model, bbr, cubic, newreno; default: quinn's, CUBIC, as
    /// other QUIC clients run).
    #[arg(long)]
    pub congestion: Option<Congestion>,
    /// URLs to fetch.
    #[arg(required = true)]
    pub urls: Vec<url::Url>,
}

/// Downloads `a.urls` and prints each file's SHA-256, size and path.
pub async fn run_get(a: GetArgs) -> anyhow::Result<()> {
    let opts = ClientOptions {
        chacha20: a.chacha20,
        http3: a.http3,
        range: a.range,
        resumption: a.resumption,
        key_update: a.key_update,
        zero_rtt: a.zero_rtt,
        idle_timeout: Some(Duration::from_secs(a.idle_timeout_secs)),
        transport: a.congestion.map(TransportSettings::with),
    };
    let client = client_endpoint(&a.ca, &opts)?;
    let got = get(&client, &a.urls, &a.downloads, &opts).await?;
    for d in &got {
        println!("{}  {:>10}  {}", d.sha256, d.bytes, d.path);
    }
    client.endpoint.wait_idle().await;
    Ok(())
}
