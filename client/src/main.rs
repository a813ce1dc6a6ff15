//! `segue-play`: the Segue reference player.

#![warn(clippy::unwrap_used, clippy::expect_used)]

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::Parser;
use segue_client::{PlayOptions, play};
use segue_wire::SegueUrl;

#[derive(Parser, Debug)]
#[command(
    name = "segue-play",
    version,
    about = "Segue reference player: plays an object in real time and reports continuity",
    long_about = "Plays segue://HOST[:PORT]/OBJECT from an edge or origin, measures time to first \
                  frame, stalls, late and lost frames, and checks every frame against the \
                  object's manifest (content hash). Exits non-zero when the stream is incomplete \
                  or the content differs."
)]
struct Cli {
    /// What to play: segue://HOST[:PORT]/OBJECT.
    url: SegueUrl,
    /// CA certificate that signed the server's certificate (see `segue certs init`).
    #[arg(long, default_value = "certs/dev/ca.pem")]
    ca: PathBuf,
    /// Media to buffer before playback starts, in milliseconds.
    #[arg(long, default_value_t = 500)]
    buffer_ms: u64,
    /// ... and at least this many round trips (the connection's RTT) of media: a lost
    /// packet holds playback for about one RTT, so a long path needs a deeper start-up
    /// buffer. 0: --buffer-ms alone.
    #[arg(long, default_value_t = 4.0)]
    buffer_rtts: f64,
    /// Consume as fast as possible (server sends unpaced); for verification and throughput.
    #[arg(long)]
    no_pace: bool,
    /// Write the report as JSON to this file (`-` for stdout).
    #[arg(long, value_name = "FILE")]
    json: Option<PathBuf>,
    /// Record received video as Annex-B H.264 to FILE (audio as ADTS to FILE.aac).
    #[arg(long, value_name = "FILE")]
    record: Option<PathBuf>,
    /// Give up connecting after this many seconds.
    #[arg(long, default_value_t = 10)]
    connect_timeout: u64,
    /// Give up (or skip a gap) after this many seconds without media.
    #[arg(long, default_value_t = 10)]
    stall_timeout: u64,
    /// No live progress line.
    #[arg(long, short)]
    quiet: bool,
    /// Stop after this many seconds of media, as a viewer who quits (no hash check then).
    #[arg(long, value_name = "SECS")]
    watch: Option<f64>,
    /// Another node serving the object (segue://HOST[:PORT]/OBJECT), played from where
    /// playback is when the current node fails (connection lost, session ended, no media for
    /// --stall-timeout). Repeat for more, tried in order.
    #[arg(long, value_name = "URL")]
    fallback: Vec<SegueUrl>,
    /// With a fallback left, leave a node that sends no media for this many milliseconds
    /// during playback.
    #[arg(long, default_value_t = 1000)]
    failover_after_ms: u64,
    /// Congestion controller of the player's connection (the edge's, which sends the media,
    /// is set on the edge).
    #[arg(long, default_value_t = segue_net::Congestion::default())]
    congestion: segue_net::Congestion,
    /// Send from this local address (e.g. one of several on a test host).
    #[arg(long, value_name = "ADDR")]
    bind: Option<std::net::IpAddr>,
    /// Never resume a TLS session nor send 0-RTT data, and keep no address-validation
    /// tokens. (Tickets and tokens live in memory: within one process, e.g. a failover back
    /// to a node already played from, a connection resumes and sends DESCRIBE, SETUP and
    /// PLAY before its handshake completes.)
    #[arg(long)]
    no_resume: bool,
}

#[tokio::main]
async fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "warn".into()),
        )
        .with_writer(std::io::stderr)
        .init();
    let cli = Cli::parse();
    let mut opts = PlayOptions::new(cli.url, cli.ca);
    opts.startup_buffer = Duration::from_millis(cli.buffer_ms);
    opts.startup_rtts = cli.buffer_rtts;
    opts.pace = !cli.no_pace;
    opts.record = cli.record;
    opts.connect_timeout = Duration::from_secs(cli.connect_timeout);
    opts.stall_timeout = Duration::from_secs(cli.stall_timeout);
    opts.progress = !cli.quiet;
    opts.fallbacks = cli.fallback;
    opts.failover_after = Duration::from_millis(cli.failover_after_ms);
    opts.connect.bind = cli.bind;
    opts.connect.no_resume = cli.no_resume;
    opts.connect.transport = segue_net::TransportSettings::with(cli.congestion);
    if let Some(w) = cli.watch {
        match Duration::try_from_secs_f64(w) {
            Ok(d) => opts.watch = Some(d),
            Err(_) => {
                eprintln!("--watch takes a non-negative number of seconds, not {w}");
                return ExitCode::FAILURE;
            }
        }
    }
    let report = play(&opts).await;
    print!("{}", report.render());
    if let Some(path) = cli.json {
        let json = match serde_json::to_string_pretty(&report) {
            Ok(j) => j,
            Err(e) => {
                eprintln!("cannot serialise the report: {e}");
                return ExitCode::FAILURE;
            }
        };
        let written = if path.as_os_str() == "-" {
            println!("{json}");
            Ok(())
        } else {
            std::fs::write(&path, json + "\n")
        };
        if let Err(e) = written {
            eprintln!("cannot write {}: {e}", path.display());
            return ExitCode::FAILURE;
        }
    }
    if report.ok() {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}
