//! What a node process does around its node: stop on SIGTERM or Ctrl-C, react to SIGHUP.
//! Shared by `segue` and by `segue-lab`'s node commands, so that a lab node is run exactly
//! as `segue origin` / `segue edge` run it.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use segue_net::{Congestion, TransportSettings};

use crate::config::node::CertArgs;
use crate::config::{EdgeConfig, OriginConfig};
use crate::edge::node::Edge;
use crate::origin::Origin;

/// The command line of `C` with the `--config` file's settings for its subcommand spliced
/// in (docs/CONFIG.md); a flag given twice (config file, then command line) takes its last
/// value. Exits with clap's message on a bad command line.
pub fn parse_args<C: clap::Parser>() -> anyhow::Result<C> {
    let argv = crate::config::argv_with_config(&C::command(), std::env::args_os().collect())?;
    let matches = C::command()
        .args_override_self(true)
        .mut_subcommands(|s| s.args_override_self(true))
        .get_matches_from(argv);
    Ok(C::from_arg_matches(&matches)?)
}

/// Logs to stderr at the levels `RUST_LOG` names, `default` without it.
pub fn init_logging(default: &str) {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| default.into()),
        )
        .with_writer(std::io::stderr)
        .init();
}

/// `segue origin`: serves until SIGTERM or Ctrl-C; SIGHUP rescans the media root.
pub async fn run_origin(c: OriginConfig) -> anyhow::Result<()> {
    let origin = Origin::start(c, shutdown_signal()).await?;
    on_hangup(origin.reloader());
    origin.wait().await;
    Ok(())
}

/// `segue edge`: serves until SIGTERM or Ctrl-C (SIGHUP is logged).
pub async fn run_edge(c: EdgeConfig) -> anyhow::Result<()> {
    let edge = Edge::start(c, shutdown_signal()).await?;
    ignore_hangup();
    edge.wait().await;
    Ok(())
}

/// Turns true at Ctrl-C or SIGTERM.
pub fn shutdown_signal() -> tokio::sync::watch::Receiver<bool> {
    let (tx, rx) = tokio::sync::watch::channel(false);
    tokio::spawn(async move {
        // Ctrl-C or SIGTERM (service managers, the lab runner): stop accepting, end sessions.
        #[cfg(unix)]
        {
            use tokio::signal::unix::{SignalKind, signal};
            match signal(SignalKind::terminate()) {
                Ok(mut term) => {
                    tokio::select! {
                        _ = tokio::signal::ctrl_c() => {}
                        _ = term.recv() => {}
                    }
                }
                Err(_) => {
                    let _ = tokio::signal::ctrl_c().await;
                }
            }
        }
        #[cfg(not(unix))]
        let _ = tokio::signal::ctrl_c().await;
        tracing::info!("shutting down");
        let _ = tx.send(true);
    });
    rx
}

/// Runs `on_hup` at every SIGHUP (sent by `pkill -HUP`, a closing terminal, an operator).
pub fn on_hangup<F, Fut>(mut on_hup: F)
where
    F: FnMut() -> Fut + Send + 'static,
    Fut: std::future::Future<Output = ()> + Send,
{
    #[cfg(unix)]
    tokio::spawn(async move {
        use tokio::signal::unix::{SignalKind, signal};
        let Ok(mut hup) = signal(SignalKind::hangup()) else {
            return;
        };
        while hup.recv().await.is_some() {
            tracing::info!("SIGHUP");
            on_hup().await;
        }
    });
    #[cfg(not(unix))]
    let _ = &mut on_hup;
}

/// An edge has nothing to rescan: SIGHUP is logged, not fatal.
fn ignore_hangup() {
    on_hangup(|| async {
        tracing::info!(
            "SIGHUP ignored: an edge has nothing to reload (restart it to change its flags)"
        );
    });
}

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
    use crate::hq;
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
            use crate::admission::{ConnectionLimits, RetryPolicy};
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
