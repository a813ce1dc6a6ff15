//! `segue`: the Segue server binary.

#![warn(clippy::unwrap_used, clippy::expect_used)]

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use clap::{Args, Parser, Subcommand};
use segue_server::library::{Library, LibraryOptions};
use segue_server::quic::{TransportLimits, server_endpoint};
use segue_server::session::SessionOptions;
use segue_server::source::LibrarySource;
use segue_wire::Limits;

#[derive(Parser, Debug)]
#[command(
    name = "segue",
    version,
    about = "Segue: stored media over QUIC, origin to edge to player"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Serve media files from a directory (MP4, fragmented MP4, MPEG-TS with H.264/AAC).
    Origin(OriginArgs),
    /// Dev PKI: a dev CA and node certificates.
    Certs {
        #[command(subcommand)]
        command: CertsCommand,
    },
}

#[derive(Args, Debug, Clone)]
struct TlsArgs {
    /// Certificate chain (PEM) this node presents.
    #[arg(long, default_value = "certs/dev/localhost.pem")]
    cert: PathBuf,
    /// Private key (PEM) of --cert.
    #[arg(long, default_value = "certs/dev/localhost.key")]
    key: PathBuf,
}

#[derive(Args, Debug)]
struct OriginArgs {
    /// Directory of media files; an object is a file's path without extension.
    #[arg(long)]
    media: PathBuf,
    /// Where ingested objects are kept (re-ingested only when a file changes).
    #[arg(long, default_value = "segue-data/origin")]
    data: PathBuf,
    /// UDP address to listen on.
    #[arg(long, default_value = "[::]:8554")]
    listen: SocketAddr,
    #[command(flatten)]
    tls: TlsArgs,
    /// Target segment duration in milliseconds (segments start at keyframes).
    #[arg(long, default_value_t = 2000)]
    segment_ms: u64,
    /// Media sent ahead of real time to fill a player's buffer, in milliseconds.
    #[arg(long, default_value_t = 2000)]
    send_ahead_ms: u64,
}

#[derive(Subcommand, Debug)]
enum CertsCommand {
    /// Write a dev CA (reused if present) and certificates for localhost and named nodes.
    Init {
        /// Directory for ca.pem, ca.key, <name>.pem and <name>.key.
        #[arg(long, default_value = segue_certs::pki::DEFAULT_DIR)]
        dir: PathBuf,
        /// Also issue a certificate for this node name (repeatable).
        #[arg(long = "node", value_name = "NAME")]
        nodes: Vec<String>,
    },
}

fn shutdown_signal() -> tokio::sync::watch::Receiver<bool> {
    let (tx, rx) = tokio::sync::watch::channel(false);
    tokio::spawn(async move {
        let _ = tokio::signal::ctrl_c().await;
        tracing::info!("shutting down");
        let _ = tx.send(true);
    });
    rx
}

async fn origin(a: OriginArgs) -> anyhow::Result<()> {
    let opts = LibraryOptions {
        media_root: a.media.clone(),
        data_dir: a.data.clone(),
        target_segment_us: a.segment_ms.saturating_mul(1000),
    };
    let lib = tokio::task::spawn_blocking(move || Library::open(&opts)).await??;
    for (name, why) in &lib.failures {
        tracing::error!(object = %name, "not served: {why}");
    }
    tracing::info!(
        objects = lib.names().len(),
        failed = lib.failures.len(),
        "library ready"
    );
    let endpoint = server_endpoint(
        a.listen,
        &a.tls.cert,
        &a.tls.key,
        TransportLimits::default(),
    )?;
    tracing::info!(listen = %endpoint.local_addr()?, "origin serving segue/1");
    let sessions = SessionOptions {
        send_ahead: Duration::from_millis(a.send_ahead_ms),
        ..SessionOptions::default()
    };
    segue_server::node::serve(
        endpoint,
        Arc::new(LibrarySource(Arc::new(lib))),
        sessions,
        Limits::default(),
        shutdown_signal(),
    )
    .await;
    Ok(())
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()),
        )
        .with_writer(std::io::stderr)
        .init();
    let cli = Cli::parse();
    match cli.command {
        Command::Origin(a) => origin(a).await,
        Command::Certs {
            command: CertsCommand::Init { dir, nodes },
        } => {
            let issued = segue_certs::init(&dir, &nodes)
                .with_context(|| format!("cannot create the dev PKI in {}", dir.display()))?;
            println!(
                "{} {}",
                if issued.ca_created {
                    "created CA"
                } else {
                    "reused CA "
                },
                issued.ca_cert.display()
            );
            for (name, cert, key) in &issued.leaves {
                println!("issued {name}: {} {}", cert.display(), key.display());
            }
            Ok(())
        }
    }
}
