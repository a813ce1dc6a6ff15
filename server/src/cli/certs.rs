//! `segue certs`: the dev PKI (a dev CA and node certificates).

use std::path::PathBuf;

use anyhow::Context as _;
use clap::Subcommand;

#[derive(Subcommand, Debug)]
pub enum CertsCommand {
    /// Write a dev CA (reused if present) and certificates for localhost and named nodes.
    /// Nodes present their certificate to each other (mTLS): a helper's must carry its
    /// --name, e.g. `segue certs init --node h1 --node h2` for `segue edge --name h1 --cert
    /// certs/dev/h1.pem --key certs/dev/h1.key …`.
    Init {
        /// Directory for ca.pem, ca.key, <name>.pem and <name>.key.
        #[arg(long, default_value = segue_certs::pki::DEFAULT_DIR)]
        dir: PathBuf,
        /// Also issue a certificate for this node name (repeatable).
        #[arg(long = "node", value_name = "NAME")]
        nodes: Vec<String>,
    },
}

/// Runs `segue certs init`.
pub fn run(command: CertsCommand) -> anyhow::Result<()> {
    let CertsCommand::Init { dir, nodes } = command;
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
