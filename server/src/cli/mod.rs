//! The `segue` command line: the commands, their flags (the node configs are both the clap
//! and the settings-file shape) and what each runs. `main.rs` only dispatches here; the lab's
//! node commands run the same functions.

use std::path::PathBuf;

use clap::{Parser, Subcommand};

use crate::config::OriginConfig;

pub mod certs;
mod hq;
pub mod media;
mod node;
pub mod status;
pub mod token;

pub use hq::{HqCommand, run_hq};
pub use node::{SHUTDOWN_GRACE, block_on_main, on_hangup, run_edge, run_origin, shutdown_signal};

#[derive(Parser, Debug)]
#[command(
    name = "segue",
    version,
    about = "Segue: stored media over QUIC, origin to edge to player"
)]
pub struct Cli {
    /// Settings file: a TOML section per command ([origin], [edge]) whose keys are that
    /// command's flags; flags on the command line win. See docs/CONFIG.md.
    #[arg(long, global = true, value_name = "FILE", env = "SEGUE_CONFIG")]
    pub config: Option<PathBuf>,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Serve media files from a directory (MP4, fragmented MP4, MPEG-TS with H.264/AAC).
    Origin(Box<OriginConfig>),
    /// Serve players from a prefix cache, fetching the rest from an origin
    /// (`segue edge status`: a running edge's state).
    Edge(status::EdgeCmd),
    /// Manage the origin's media: ingest, list, info, rm (a running origin rescans on SIGHUP).
    Media {
        #[command(subcommand)]
        command: media::MediaCommand,
    },
    /// Dev PKI: a dev CA and node certificates.
    Certs {
        #[command(subcommand)]
        command: certs::CertsCommand,
    },
    /// Sign a URL for a node that requires signed URLs (--token-key-file): prints it with
    /// `?expires=…&token=…`.
    Token(token::TokenArgs),
    /// HTTP/0.9 (ALPN hq-interop) and HTTP/3 (h3) file endpoints, for interop tests with
    /// other QUIC stacks.
    Hq {
        #[command(subcommand)]
        command: HqCommand,
    },
}

/// Runs a parsed `segue` command line.
pub async fn run(cli: Cli) -> anyhow::Result<()> {
    match cli.command {
        Command::Origin(c) => run_origin(*c).await,
        Command::Edge(status::EdgeCmd {
            command: Some(status::EdgeCommand::Status { admin, admin_token }),
            ..
        }) => {
            let token = admin_token.filter(|t| !t.is_empty());
            print!("{}", status::edge_status(admin, token.as_deref()).await?);
            Ok(())
        }
        Command::Edge(status::EdgeCmd { run, .. }) => run_edge(*run).await,
        Command::Media { command } => media::run(command).await,
        Command::Hq { command } => run_hq(command).await,
        Command::Token(a) => token::run(a),
        Command::Certs { command } => certs::run(command),
    }
}

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

/// Logs to stderr at the levels `RUST_LOG` names, `default` without it (and then without
/// `mp4-atom`'s warnings about boxes it does not know, e.g. `fiel` in every AV1 file
/// ffmpeg writes: ingest reports what matters itself).
pub fn init_logging(default: &str) {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| format!("{default},mp4_atom=error").into()),
        )
        .with_writer(std::io::stderr)
        .init();
}
