//! `segue hq`: the HTTP/0.9 (hq-interop) and HTTP/3 file endpoints of the interop tests.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use segue_net::{Congestion, TransportSettings};

use super::shutdown_signal;
use crate::config::node::CertArgs;

/// `segue hq`: the HTTP/0.9 (hq-interop) and HTTP/3 file endpoints of the interop tests.
#[derive(clap::Subcommand, Debug)]
pub enum HqCommand {
    /// Serve the files of a directory (the interop runner's /www) over hq-interop and h3.
    Serve {
        /// Directory served.
        #[arg(long)]
        www: PathBuf,
        /// UDP address to listen on.
        #[arg(long, default_value = "[::]:443")]
        listen: SocketAddr,
        #[command(flatten)]
        cert: CertArgs,
        /// Validate every client address with a Retry first.
        #[arg(long)]
        retry: bool,
        /// A connection without any packet for this long is closed, in seconds.
        #[arg(long, default_value_t = 30, value_parser = clap::value_parser!(u64).range(1..))]
        idle_timeout_secs: u64,
        /// Congestion controller (model, bbr, cubic, newreno; default: quinn's, CUBIC, as
        /// other QUIC file servers run).
        #[arg(long)]
        congestion: Option<Congestion>,
    },
    /// Download URLs (https://HOST:PORT/path, one server) over one connection.
    Get {
        /// CA that signed the server's certificate.
        #[arg(long, default_value = "certs/dev/ca.pem")]
        ca: PathBuf,
        /// Where the files go (the interop runner's /downloads).
        #[arg(long, default_value = "downloads")]
        downloads: PathBuf,
        /// Offer only the ChaCha20-Poly1305 cipher suite.
        #[arg(long)]
        chacha20: bool,
        /// Speak HTTP/3 (ALPN h3) instead of HTTP/0.9 (hq-interop).
        #[arg(long)]
        http3: bool,
        /// Fetch the first URL on one connection, the rest on a second one resuming its TLS
        /// session.
        #[arg(long)]
        resumption: bool,
        /// Update the 1-RTT keys before the requests.
        #[arg(long)]
        key_update: bool,
        /// Like --resumption, the second connection's requests sent as 0-RTT data (logged at
        /// info: whether the server accepted them).
        #[arg(long)]
        zero_rtt: bool,
        /// HTTP/3: send this Range header with every request (e.g. bytes=0-1023).
        #[arg(long, requires = "http3")]
        range: Option<String>,
        /// A connection without any packet for this long is given up, in seconds; so is a
        /// handshake not done by then.
        #[arg(long, default_value_t = 30, value_parser = clap::value_parser!(u64).range(1..))]
        idle_timeout_secs: u64,
        /// Congestion controller (model, bbr, cubic, newreno; default: quinn's, CUBIC, as
        /// other QUIC clients run).
        #[arg(long)]
        congestion: Option<Congestion>,
        /// URLs to fetch.
        #[arg(required = true)]
        urls: Vec<url::Url>,
    },
}

/// Runs `segue hq serve` or `segue hq get`.
pub async fn run_hq(command: HqCommand) -> anyhow::Result<()> {
    use crate::files::hq;
    match command {
        HqCommand::Serve {
            www,
            listen,
            cert,
            retry,
            idle_timeout_secs,
            congestion,
        } => {
            let mut ep = hq::server_endpoint(listen, &cert.cert, &cert.key)?
                .with_idle_timeout(Duration::from_secs(idle_timeout_secs));
            if let Some(c) = congestion {
                ep = ep.with_transport(TransportSettings::with(c));
            }
            tracing::info!(listen = %ep.endpoint.local_addr()?, www = %www.display(), retry, "serving hq-interop");
            let files = crate::files::DirFiles::new(&www)
                .with_context(|| format!("cannot serve {}", www.display()))?;
            use crate::node::admission::{ConnectionLimits, RetryPolicy};
            let policy = if retry {
                RetryPolicy::Always
            } else {
                RetryPolicy::Never
            };
            let limits = ConnectionLimits::with_retry(policy);
            hq::serve(ep, Arc::new(files), limits, shutdown_signal()).await;
            Ok(())
        }
        HqCommand::Get {
            ca,
            downloads,
            chacha20,
            http3,
            resumption,
            key_update,
            zero_rtt,
            range,
            idle_timeout_secs,
            congestion,
            urls,
        } => {
            let opts = hq::ClientOptions {
                chacha20,
                http3,
                range,
                resumption,
                key_update,
                zero_rtt,
                idle_timeout: Some(Duration::from_secs(idle_timeout_secs)),
                transport: congestion.map(TransportSettings::with),
            };
            let client = hq::client_endpoint(&ca, &opts)?;
            let got = hq::get(&client, &urls, &downloads, &opts).await?;
            for d in &got {
                println!("{}  {:>10}  {}", d.sha256, d.bytes, d.path);
            }
            client.endpoint.wait_idle().await;
            Ok(())
        }
    }
}
