//! `segue`: the Segue server binary. The commands live in `segue_server::cli`.

#![warn(clippy::unwrap_used, clippy::expect_used)]

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let cli: segue_server::cli::Cli = segue_server::cli::parse_args()?;
    // Servers log what they do.
    segue_server::cli::init_logging("info");
    segue_server::cli::run(cli).await
}
