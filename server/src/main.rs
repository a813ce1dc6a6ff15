//! `segue`: the Segue server binary. The commands live in `segue_server::cli`.

#![warn(clippy::unwrap_used, clippy::expect_used)]

fn main() -> anyhow::Result<()> {
    segue_server::cli::block_on_main(async {
        let cli: segue_server::cli::Cli = segue_server::cli::parse_args()?;
        // Servers log what they do.
        segue_server::cli::init_logging("info");
        segue_server::cli::run(cli).await
    })
}
