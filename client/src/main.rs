//! `segue-play`: the Segue reference player.

#![warn(clippy::unwrap_used, clippy::expect_used)]

use std::path::PathBuf;
use std::time::Duration;

use anyhow::bail;
use clap::Parser;
use segue_wire::SegueUrl;
use segue_wire::control::{Method, Request};

#[derive(Parser, Debug)]
#[command(name = "segue-play", version, about = "Segue reference player")]
struct Cli {
    /// What to play: segue://HOST[:PORT]/OBJECT (or segue://HOST/ to probe a node).
    url: SegueUrl,
    /// CA certificate that signed the server's certificate (see `segue certs init`).
    #[arg(long, default_value = "certs/dev/ca.pem")]
    ca: PathBuf,
    /// Give up connecting after this many seconds.
    #[arg(long, default_value_t = 10)]
    connect_timeout: u64,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "warn".into()),
        )
        .with_writer(std::io::stderr)
        .init();
    let cli = Cli::parse();
    let (ep, conn, mut control) =
        segue_client::connect(&cli.url, &cli.ca, Duration::from_secs(cli.connect_timeout)).await?;
    let cseq = control.next_cseq();
    let resp = control
        .request(&Request::new(Method::Options, None, cseq))
        .await?;
    if !resp.is_success() {
        bail!(
            "OPTIONS failed: {} {}",
            resp.status,
            resp.headers.error.unwrap_or_default()
        );
    }
    let methods: Vec<&str> = resp.headers.public.iter().map(|m| m.as_str()).collect();
    println!("{}: segue/1, methods: {}", cli.url, methods.join(", "));
    conn.close(0u32.into(), b"done");
    ep.wait_idle().await;
    Ok(())
}
