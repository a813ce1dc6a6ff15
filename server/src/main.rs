//! `segue`: the Segue server binary.

#![warn(clippy::unwrap_used, clippy::expect_used)]

use std::path::PathBuf;

use anyhow::Context as _;
use clap::{Parser, Subcommand};

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
    /// Dev PKI: a dev CA and node certificates.
    Certs {
        #[command(subcommand)]
        command: CertsCommand,
    },
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

fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()),
        )
        .with_writer(std::io::stderr)
        .init();
    let cli = Cli::parse();
    match cli.command {
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
