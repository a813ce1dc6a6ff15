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
}

/// Runs `segue hq serve` (the client, `segue-lab hq get`, is `segue-interop`'s).
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
    }
}
