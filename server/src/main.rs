//! `segue`: the Segue server binary.

#![warn(clippy::unwrap_used, clippy::expect_used)]

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use clap::{Args, Parser, Subcommand};
use segue_net::{Congestion, TransportSettings};
use segue_server::config::node::CertArgs;
use segue_server::config::{EdgeConfig, OriginConfig};
use segue_server::demo::{self, DemoOptions};
use segue_server::edge::node::Edge;
use segue_server::ingest::segmenter::SegmentScheme;
use segue_server::origin::Origin;

#[derive(Parser, Debug)]
#[command(
    name = "segue",
    version,
    about = "Segue: stored media over QUIC, origin to edge to player"
)]
struct Cli {
    /// Settings file: a TOML section per command ([origin], [edge], [demo], [bench]) whose
    /// keys are that command's flags; flags on the command line win. See docs/CONFIG.md.
    #[arg(long, global = true, value_name = "FILE", env = "SEGUE_CONFIG")]
    config: Option<PathBuf>,
    #[command(subcommand)]
    command: Command,
}

/// The command line with the config file's settings for its subcommand spliced in.
fn argv_with_config() -> anyhow::Result<Vec<std::ffi::OsString>> {
    use clap::CommandFactory as _;
    use segue_server::config;
    let argv: Vec<std::ffi::OsString> = std::env::args_os().collect();
    let Some(path) = config::config_path(&argv) else {
        return Ok(argv);
    };
    let text = config::read(&path)?;
    let cmd = Cli::command();
    let found = argv.iter().enumerate().skip(1).find_map(|(i, a)| {
        let sub = cmd.find_subcommand(a.to_str()?)?;
        Some((i, sub))
    });
    let Some((at, sub)) = found else {
        return Ok(argv);
    };
    let known = |c: &clap::Command| -> Vec<(String, bool)> {
        c.get_arguments()
            .filter(|a| a.get_id() != "config")
            .filter_map(|a| Some((a.get_long()?.to_owned(), !a.get_action().takes_values())))
            .collect()
    };
    // A nested command (`edge status`, `media list`) takes what it knows from its parent's
    // section (`media` from `[origin]`).
    let nested = argv
        .get(at + 1)
        .and_then(|a| sub.find_subcommand(a.to_str()?));
    if let Some(n) = nested {
        let section = match sub.get_name() {
            "media" => "origin",
            other => other,
        };
        let args = config::section_args_for(&path, &text, section, &known(n), false)?;
        return Ok(config::splice(argv, at + 1, args));
    }
    let args = config::section_args(&path, &text, sub.get_name(), &known(sub))?;
    Ok(config::splice(argv, at, args))
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Run the whole path on loopback with built-in samples and print a continuity table.
    Demo(DemoArgs),
    /// Measure TTFF per case, edge egress vs raw quinn, and edge memory per session.
    Bench(BenchArgs),
    /// Many paced players against one edge for a bounded time: stalls, byte-exact plays,
    /// the edge's memory and CPU over time.
    Soak(SoakArgs),
    /// Serve media files from a directory (MP4, fragmented MP4, MPEG-TS with H.264/AAC).
    Origin(Box<OriginConfig>),
    /// Serve players from a prefix cache, fetching the rest from an origin
    /// (`segue edge status`: a running edge's state).
    Edge(EdgeCmd),
    /// Manage the origin's media: ingest, list, info, rm (a running origin rescans on SIGHUP).
    Media {
        #[command(subcommand)]
        command: MediaCommand,
    },
    /// The continuity lab: impairment relay and scenario runner.
    Lab {
        #[command(subcommand)]
        command: LabCommand,
    },
    /// Dev PKI: a dev CA and node certificates.
    Certs {
        #[command(subcommand)]
        command: CertsCommand,
    },
    /// Sign a URL for a node that requires signed URLs (--token-key-file): prints it with
    /// `?expires=…&token=…`.
    Token(TokenArgs),
    /// HTTP/0.9 (ALPN hq-interop) and HTTP/3 (h3) file endpoints, for interop tests with
    /// other QUIC stacks.
    Hq {
        #[command(subcommand)]
        command: HqCommand,
    },
}

#[derive(Args, Debug)]
struct TokenArgs {
    /// The node's key file; its first key signs.
    #[arg(long)]
    key_file: PathBuf,
    /// What to sign: segue://HOST:PORT/OBJECT (a play) or https://HOST:PORT/FILE (a file
    /// object over HTTP/3).
    url: url::Url,
    /// Seconds the URL stays valid.
    #[arg(long, default_value_t = 3600)]
    ttl_secs: u64,
    /// Only this client address may use it.
    #[arg(long)]
    ip: Option<std::net::IpAddr>,
}

#[derive(Subcommand, Debug)]
enum HqCommand {
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

async fn hq(command: HqCommand) -> anyhow::Result<()> {
    use segue_server::hq;
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
            let files = segue_server::files::DirFiles::new(&www)
                .with_context(|| format!("cannot serve {}", www.display()))?;
            use segue_server::admission::{ConnectionLimits, RetryPolicy};
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

#[derive(Args, Debug)]
struct DemoArgs {
    /// Delay the origin adds to each segment request, in milliseconds.
    #[arg(long, default_value_t = 80)]
    origin_delay_ms: u64,
    /// Prefix the edge keeps, in seconds.
    #[arg(long, default_value_t = 4)]
    prefix_secs: u64,
    /// Parallel origin fetches (K).
    #[arg(long, default_value_t = 4)]
    parallel: usize,
    /// Play unpaced (seconds instead of three 12-second plays; no stall figures).
    #[arg(long)]
    quick: bool,
    /// Work directory (default: a fresh temporary directory, removed afterwards).
    #[arg(long)]
    dir: Option<PathBuf>,
}

#[derive(Args, Debug)]
struct BenchArgs {
    /// Directory with the sample media (demo.mp4, long.mp4).
    #[arg(long, default_value = "media/samples")]
    samples: PathBuf,
    /// Plays per TTFF figure.
    #[arg(long, default_value_t = 7)]
    rounds: usize,
    /// Concurrent players per egress level (comma-separated).
    #[arg(long, default_value = "1,4,16", value_delimiter = ',')]
    players: Vec<usize>,
    /// Seconds per egress level.
    #[arg(long, default_value_t = 3)]
    egress_secs: u64,
    /// Concurrent paced sessions for the memory figure.
    #[arg(long, default_value_t = 50)]
    sessions: usize,
    /// Idle connections for the per-connection memory figure.
    #[arg(long, default_value_t = 1000)]
    idle_connections: usize,
    /// Congestion controller of the origin, the edge, the players and the raw-quinn
    /// baseline (docs/TRANSPORT.md).
    #[arg(long, value_enum, default_value_t)]
    congestion: Congestion,
}

#[derive(Args, Debug)]
struct SoakArgs {
    /// Directory with the sample media.
    #[arg(long, default_value = "media/samples")]
    samples: PathBuf,
    /// Samples the players play, alternating (hd3: 3.3 Mbit/s and hd8: 8 Mbit/s HD, made
    /// on demand with ffmpeg).
    #[arg(long, value_delimiter = ',', default_value = "long,demo")]
    objects: Vec<String>,
    /// Do not pin the edge to one core and the players to another.
    #[arg(long)]
    no_pin: bool,
    /// Limit the pinned edge to this percentage of its core (a cgroup CPU quota; needs
    /// root): when the players cannot load a whole edge core, N players held in P % of a core
    /// measure N / P × 100 sessions per core.
    #[arg(long, value_name = "PERCENT", conflicts_with = "no_pin",
          value_parser = clap::value_parser!(u8).range(1..=100))]
    edge_cpu: Option<u8>,
    /// Concurrent paced players.
    #[arg(long, default_value_t = 500)]
    players: usize,
    /// How long the run lasts, in seconds (it stops by itself).
    #[arg(long, default_value_t = 600)]
    secs: u64,
    /// Players start evenly over this many seconds.
    #[arg(long, default_value_t = 60)]
    ramp_secs: u64,
    /// Seconds between samples of the edge's memory and CPU.
    #[arg(long, default_value_t = 10)]
    sample_secs: u64,
    /// Congestion controller of the origin, the edge and the players (docs/TRANSPORT.md).
    #[arg(long, value_enum, default_value_t)]
    congestion: Congestion,
}

#[derive(Args, Debug)]
#[command(args_conflicts_with_subcommands = true, subcommand_negates_reqs = true)]
struct EdgeCmd {
    #[command(subcommand)]
    command: Option<EdgeCommand>,
    #[command(flatten)]
    run: Box<EdgeConfig>,
}

#[derive(Subcommand, Debug)]
enum EdgeCommand {
    /// Print a running edge's state from its admin API: sessions by case, bytes, origin
    /// link, cache, and (with the token) every cached object's prefix.
    Status {
        /// The edge's admin API address.
        #[arg(long, default_value = "127.0.0.1:9555")]
        admin: SocketAddr,
        /// Admin token (objects are listed only with it).
        #[arg(long, env = "SEGUE_ADMIN_TOKEN", hide_env_values = true)]
        admin_token: Option<String>,
    },
}

#[derive(Args, Debug, Clone)]
struct MediaDirs {
    /// The origin's media root.
    #[arg(long)]
    media: PathBuf,
    /// The origin's data dir (ingested objects).
    #[arg(long, default_value = "segue-data/origin")]
    data: PathBuf,
    /// Target segment duration in milliseconds.
    #[arg(long, default_value_t = 2000)]
    segment_ms: u64,
    /// Segment durations: uniform (every segment about --segment-ms), or exponential
    /// (segment i about --segment-ms × 2^i, at most 16×; docs/PLACEMENT.md).
    #[arg(long, default_value = "uniform")]
    segment_scheme: SegmentScheme,
}

#[derive(Subcommand, Debug)]
enum MediaCommand {
    /// Check a media file, copy it into the media root and ingest it.
    Ingest {
        /// The file (MP4, fragmented MP4, MPEG-TS with H.264/AAC).
        file: PathBuf,
        /// Object name (default: the file name without extension), e.g. films/trailer.
        #[arg(long = "as", value_name = "NAME")]
        as_name: Option<String>,
        /// Replace an existing object of that name.
        #[arg(long)]
        replace: bool,
        #[command(flatten)]
        dirs: MediaDirs,
    },
    /// List the objects (ingesting what changed) and the files that failed.
    List {
        #[command(flatten)]
        dirs: MediaDirs,
    },
    /// Show one object: tracks, duration, every segment.
    Info {
        object: String,
        #[command(flatten)]
        dirs: MediaDirs,
    },
    /// Remove an object: its source files and its ingested form.
    Rm {
        object: String,
        #[command(flatten)]
        dirs: MediaDirs,
    },
}

#[derive(Subcommand, Debug)]
enum LabCommand {
    /// Run a scenario (see docs/LAB.md and lab/scenarios/) and print its summary table.
    Run(LabRunArgs),
    /// Relay UDP (or TCP) from --listen to --to through impaired links.
    Impair(ImpairArgs),
    /// Trace-driven placement simulator: byte hit ratio and immediate starts of Segue's
    /// placement policy against whole-object LRU, a fixed 10 % prefix and the offline optimum.
    Sim(SimArgs),
    /// The continuity matrix: a grid of short seeded cells (RTT x loss x impaired hop x
    /// bitrate), each run for Segue and nginx-HLS on the packet-level network (root); a
    /// table and heatmaps (see docs/LAB.md).
    Matrix(MatrixArgs),
    /// A bulk TCP source: sends bytes to every connection (the competing flow of a shared
    /// bottleneck, and kernel-TCP tests of the packet-level network).
    Bulk {
        /// Where to listen.
        #[arg(long)]
        listen: SocketAddr,
        /// Bytes per connection (default: until the peer closes).
        #[arg(long)]
        bytes: Option<u64>,
    },
}

#[derive(Args, Debug)]
struct MatrixArgs {
    /// Round-trip times of the impaired hop, ms.
    #[arg(long, default_value = "20,80,150,300")]
    rtt: String,
    /// Loss on the impaired hop, percent; `b` after it: bursty (Gilbert-Elliott).
    #[arg(long, default_value = "0,1,3,3b")]
    loss: String,
    /// Impaired hops.
    #[arg(
        long,
        value_enum,
        value_delimiter = ',',
        default_value = "last-mile,origin"
    )]
    hop: Vec<segue_server::lab::matrix::Hop>,
    /// Media bitrates, Mbit/s (0.25: the demo sample; 3.3 and 8: HD samples made on demand).
    #[arg(long, default_value = "0.25,3.3,8")]
    bitrate: String,
    /// Systems: segue, nginx-hls or both.
    #[arg(long, value_enum, default_value_t = SystemArg::Both)]
    system: SystemArg,
    /// Viewers per cell.
    #[arg(long, default_value_t = 6)]
    players: usize,
    /// The impaired hop's capacity as a multiple of the bitrate.
    #[arg(long, default_value_t = 2.0)]
    capacity_x: f64,
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// Segue's congestion controller (nodes and players).
    #[arg(long, default_value_t = Congestion::default())]
    congestion: Congestion,
    /// Kernel TCP's controller in the nodes' namespaces (default: the host's).
    #[arg(long)]
    tcp_congestion: Option<String>,
    /// Segue's initial congestion window, datagrams (default: the nodes' default).
    #[arg(long)]
    initial_window: Option<u32>,
    /// Where `media.samples` are found (and made).
    #[arg(long, default_value = "media/samples")]
    samples: PathBuf,
    /// Output directory.
    #[arg(long, default_value = "lab-results/matrix")]
    out: PathBuf,
    /// Keep cells already done in --out (an interrupted matrix goes on).
    #[arg(long)]
    resume: bool,
}

#[derive(Args, Debug)]
struct SimArgs {
    /// Zipf exponent of popularity.
    #[arg(long, default_value_t = 0.8)]
    alpha: f64,
    /// Cache size, percent of the catalog's bytes.
    #[arg(long, default_value_t = 5.0)]
    cache_pct: f64,
    #[arg(long, default_value_t = 1000)]
    objects: usize,
    #[arg(long, default_value_t = 40_000)]
    requests: usize,
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// Share of plays that quit early (uniformly within the first 20 %).
    #[arg(long, default_value_t = 0.6)]
    early_quit: f64,
    /// Weight of an immediate start against byte hits (the required prefix's bonus).
    #[arg(long, default_value_t = 30.0)]
    start_bonus: f64,
    /// Origin link throughput as a multiple of the bitrate (below 1, prefixes must cover
    /// the deficit: see docs/PLACEMENT.md).
    #[arg(long, default_value_t = 2.0)]
    link_x: f64,
    /// Run alpha 0.6/0.8/1.0 x cache 1/5/10 % instead of one configuration.
    #[arg(long)]
    sweep: bool,
}

#[derive(Args, Debug)]
struct LabRunArgs {
    /// The scenario file.
    scenario: PathBuf,
    /// Directory for plays.json/csv, traffic.csv, summary.txt/json and the plots
    /// (default: lab-results/<scenario name>).
    #[arg(long)]
    out: Option<PathBuf>,
    /// Where `media.samples` are found.
    #[arg(long, default_value = "media/samples")]
    samples: PathBuf,
    /// No progress bar.
    #[arg(long, short)]
    quiet: bool,
    /// The system under test: Segue, the classic CDN stack (nginx caching edge serving
    /// ffmpeg-cut HLS over HTTPS, players with the same accounting), or both one after the
    /// other with a side-by-side table; for scenarios with [helpers]: segue-independent (the
    /// same edges not cooperating), or cooperation (Segue, then segue-independent, side by
    /// side).
    #[arg(long, value_enum, default_value_t = SystemArg::Segue)]
    system: SystemArg,
    /// Run on the packet-level network: the origin and edges (Segue's, or nginx) as processes
    /// in their own network namespaces, every packet of both systems through the scenario's
    /// links (root only; removed afterwards, even on Ctrl-C or SIGTERM).
    #[arg(long)]
    netns: bool,
    /// Segue's congestion controller, instead of the scenario's [transport] congestion.
    #[arg(long)]
    congestion: Option<Congestion>,
    /// Kernel TCP's controller in the nodes' namespaces (nginx), instead of the scenario's
    /// [transport] tcp_congestion (--netns only).
    #[arg(long)]
    tcp_congestion: Option<String>,
    /// Segue's loss detection, instead of the scenario's [transport] packet_threshold.
    #[arg(long)]
    loss_packet_threshold: Option<u32>,
    /// Segue's loss detection, instead of the scenario's [transport] time_threshold.
    #[arg(long)]
    loss_time_threshold: Option<f32>,
    /// Segue's initial congestion window (datagrams), instead of the scenario's
    /// [transport] initial_window.
    #[arg(long)]
    initial_window: Option<u32>,
}

#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
enum SystemArg {
    Segue,
    NginxHls,
    Both,
    SegueIndependent,
    Cooperation,
}

#[derive(Args, Debug)]
struct ImpairArgs {
    /// Address to listen on.
    #[arg(long)]
    listen: SocketAddr,
    /// Address to forward to.
    #[arg(long)]
    to: SocketAddr,
    /// Relay TCP instead of UDP.
    #[arg(long)]
    tcp: bool,
    /// Both directions, e.g. `delay_ms=50,jitter_ms=10,loss=0.01` (fields as in a scenario's link).
    #[arg(long, default_value = "")]
    both: String,
    /// Client → server direction (replaces --both for it).
    #[arg(long)]
    up: Option<String>,
    /// Server → client direction (replaces --both for it).
    #[arg(long)]
    down: Option<String>,
    /// Seed of every random choice.
    #[arg(long, default_value_t = 1)]
    seed: u64,
}

#[derive(Subcommand, Debug)]
enum CertsCommand {
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

/// Runs `job` unless Ctrl-C or SIGTERM comes first: then `job` is dropped, which stops the
/// nodes it runs as processes and removes its temporary files, and this is an error.
async fn until_signal<T>(
    job: impl std::future::Future<Output = anyhow::Result<T>>,
    what: &str,
) -> anyhow::Result<T> {
    let mut stop = shutdown_signal();
    tokio::select! {
        r = job => r,
        _ = stop.changed() => anyhow::bail!("{what} interrupted: its nodes were stopped"),
    }
}

fn shutdown_signal() -> tokio::sync::watch::Receiver<bool> {
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

async fn lab(command: LabCommand) -> anyhow::Result<()> {
    use segue_server::lab::{impair::LinkSpec, relay, run, scenario::Scenario, summary};
    match command {
        LabCommand::Run(a) => {
            let mut s = Scenario::load(&a.scenario).map_err(anyhow::Error::msg)?;
            if let Some(c) = a.congestion {
                s.transport.congestion = c;
            }
            if let Some(c) = &a.tcp_congestion {
                s.transport.tcp_congestion = Some(c.clone());
            }
            if let Some(n) = a.loss_packet_threshold {
                s.transport.packet_threshold = Some(n);
            }
            if let Some(x) = a.loss_time_threshold {
                s.transport.time_threshold = Some(x);
            }
            if let Some(n) = a.initial_window {
                s.transport.initial_window = Some(n);
            }
            // The flags are checked as the file's keys are.
            s.validate().map_err(anyhow::Error::msg)?;
            let out = a
                .out
                .unwrap_or_else(|| PathBuf::from("lab-results").join(&s.name));
            let systems = match a.system {
                SystemArg::Segue => vec![run::System::Segue],
                SystemArg::NginxHls => vec![run::System::NginxHls],
                SystemArg::Both => vec![run::System::Segue, run::System::NginxHls],
                SystemArg::SegueIndependent => vec![run::System::SegueIndependent],
                SystemArg::Cooperation => {
                    vec![run::System::Segue, run::System::SegueIndependent]
                }
            };
            if systems.contains(&run::System::SegueIndependent) && s.helpers.is_none() {
                anyhow::bail!("scenario {} has no [helpers]: nothing to turn off", s.name);
            }
            let mut sums = Vec::new();
            for system in systems {
                let opts = run::LabOptions {
                    samples_dir: a.samples.clone(),
                    progress: !a.quiet,
                    system,
                    netns: a.netns,
                    segue_bin: None,
                };
                eprintln!(
                    "running scenario {} on {system} ({} players, at most {} s)",
                    s.name, s.players.count, s.max_duration_s
                );
                // Ctrl-C or SIGTERM: the run is dropped, which stops and removes all it made.
                let mut stop = shutdown_signal();
                let outcome = tokio::select! {
                    o = run::run(&s, &opts) => o?,
                    _ = stop.changed() => anyhow::bail!("interrupted: everything the run started is stopped"),
                };
                let sum = summary::summarize(&outcome, s.players.immediate_ms);
                // Segue's results at the top (as before); the comparison's in a subfolder.
                let dir = match system {
                    run::System::Segue => out.clone(),
                    run::System::NginxHls => out.join("nginx-hls"),
                    run::System::SegueIndependent => out.join("segue-independent"),
                };
                summary::write(&dir, &outcome, &sum)?;
                print!("{}", summary::render(&outcome, &sum));
                println!("  results in {}", dir.display());
                sums.push(sum);
            }
            if sums.len() > 1 {
                let t = summary::render_comparison(&s.name, &sums);
                std::fs::write(out.join("comparison.md"), &t)?;
                print!("\n{t}");
            }
            Ok(())
        }
        LabCommand::Sim(a) => {
            use segue_server::lab::sim::{SimConfig, render, simulate};
            let base = SimConfig {
                alpha: a.alpha,
                cache_frac: a.cache_pct / 100.0,
                objects: a.objects,
                requests: a.requests,
                seed: a.seed,
                early_quit: a.early_quit.clamp(0.0, 1.0),
                start_bonus: a.start_bonus,
                ..SimConfig::default()
            };
            let base = SimConfig {
                link: segue_server::placement::link::LinkEstimate {
                    throughput: base.bitrate * a.link_x.max(0.0),
                    ..base.link
                },
                ..base
            };
            let configs: Vec<SimConfig> = if a.sweep {
                [0.6, 0.8, 1.0]
                    .iter()
                    .flat_map(|&alpha| {
                        let base = base.clone();
                        [0.01, 0.05, 0.10].map(move |cache_frac| SimConfig {
                            alpha,
                            cache_frac,
                            ..base.clone()
                        })
                    })
                    .collect()
            } else {
                vec![base]
            };
            for c in configs {
                print!("{}", render(&c, &simulate(&c)));
            }
            Ok(())
        }
        LabCommand::Matrix(a) => {
            use segue_server::lab::matrix::{self, Loss, MatrixSpec};
            let num = |s: &str| {
                s.parse::<f64>()
                    .map_err(|_| format!("{s:?} is not a number"))
            };
            let spec = MatrixSpec {
                rtts_ms: matrix::list(&a.rtt, num).map_err(anyhow::Error::msg)?,
                losses: matrix::list(&a.loss, Loss::parse).map_err(anyhow::Error::msg)?,
                hops: a.hop.clone(),
                bitrates_mbps: matrix::list(&a.bitrate, num).map_err(anyhow::Error::msg)?,
                systems: match a.system {
                    SystemArg::Segue => vec![run::System::Segue],
                    SystemArg::NginxHls => vec![run::System::NginxHls],
                    SystemArg::Both => vec![run::System::Segue, run::System::NginxHls],
                    _ => anyhow::bail!("--system: segue, nginx-hls or both"),
                },
                players: a.players,
                capacity_x: a.capacity_x,
                seed: a.seed,
                congestion: a.congestion,
                tcp_congestion: a.tcp_congestion.clone(),
                initial_window: a.initial_window,
            };
            matrix::validate(&spec)?;
            segue_server::lab::netns::available()
                .map_err(|e| anyhow::anyhow!("the matrix runs on the packet-level network: {e}"))?;
            let cells = spec.cells().len() * spec.systems.len();
            eprintln!("continuity matrix: {cells} runs into {}", a.out.display());
            let t = std::time::Instant::now();
            let mut stop = shutdown_signal();
            let rs = tokio::select! {
                r = matrix::run(&spec, &a.samples, None, &a.out, a.resume) => r?,
                _ = stop.changed() => anyhow::bail!("interrupted (--resume goes on from the cells done)"),
            };
            print!("{}", matrix::render(&spec, &rs));
            println!(
                "{cells} runs in {:.1} min; results in {}",
                t.elapsed().as_secs_f64() / 60.0,
                a.out.display()
            );
            Ok(())
        }
        LabCommand::Bulk { listen, bytes } => {
            let l = tokio::net::TcpListener::bind(listen)
                .await
                .with_context(|| format!("cannot listen on {listen}"))?;
            tracing::info!(%listen, "bulk source");
            let mut stop = shutdown_signal();
            tokio::select! {
                r = segue_server::lab::bulk::serve(l, bytes) => r,
                _ = stop.changed() => Ok(()),
            }
        }
        LabCommand::Impair(a) => {
            let both = LinkSpec::parse_kv(&a.both).map_err(anyhow::Error::msg)?;
            let dir = |d: &Option<String>| -> anyhow::Result<LinkSpec> {
                match d {
                    Some(t) => LinkSpec::parse_kv(t).map_err(anyhow::Error::msg),
                    None => Ok(both.clone()),
                }
            };
            let spec = relay::RelaySpec {
                up: dir(&a.up)?,
                down: dir(&a.down)?,
                seed: a.seed,
            };
            let r = if a.tcp {
                relay::tcp(a.listen, a.to, spec).await
            } else {
                relay::udp(a.listen, a.to, spec).await
            }
            .with_context(|| format!("cannot listen on {}", a.listen))?;
            tracing::info!(listen = %r.local, to = %a.to, tcp = a.tcp, "relaying");
            // SIGINT or SIGTERM: the counters below are how a test knows the loss happened.
            let _ = shutdown_signal().changed().await;
            let (u, d) = (&r.stats.up, &r.stats.down);
            let g = relay::Counters::get;
            tracing::info!(
                up_bytes = g(&u.bytes_out),
                up_lost = g(&u.lost),
                up_blackholed = g(&u.blackholed),
                up_queue_drops = g(&u.queue_drops),
                down_bytes = g(&d.bytes_out),
                down_lost = g(&d.lost),
                down_blackholed = g(&d.blackholed),
                down_queue_drops = g(&d.queue_drops),
                "relay stopped"
            );
            r.stop().await;
            Ok(())
        }
    }
}

async fn media(c: MediaCommand) -> anyhow::Result<()> {
    use segue_server::media;
    let o = |d: MediaDirs| media::options(d.media, d.data, d.segment_ms, d.segment_scheme);
    let out = tokio::task::spawn_blocking(move || match c {
        MediaCommand::Ingest {
            file,
            as_name,
            replace,
            dirs,
        } => media::ingest(&o(dirs), &file, as_name.as_deref(), replace),
        MediaCommand::List { dirs } => media::list(&o(dirs)),
        MediaCommand::Info { object, dirs } => media::info(&o(dirs), &object),
        MediaCommand::Rm { object, dirs } => media::rm(&o(dirs), &object),
    })
    .await??;
    print!("{out}");
    Ok(())
}

async fn run_demo(a: DemoArgs) -> anyhow::Result<()> {
    let tmp;
    let dir = match a.dir {
        Some(d) => d,
        None => {
            tmp = tempfile::tempdir()?;
            tmp.path().to_path_buf()
        }
    };
    let opts = DemoOptions {
        origin_delay: Duration::from_millis(a.origin_delay_ms),
        prefix_secs: a.prefix_secs,
        parallel: a.parallel,
        pace: !a.quick,
    };
    println!(
        "Segue demo: origin (+{} ms per request) -> edge ({} s prefix, {} parallel fetches) -> player, on loopback",
        a.origin_delay_ms, a.prefix_secs, a.parallel
    );
    if opts.pace {
        println!("playing three objects in real time (about 40 s)...");
    }
    let rows = demo::run(&dir, &opts).await?;
    print!("{}", demo::render(&rows));
    anyhow::ensure!(rows.iter().all(|r| r.report.ok()), "a play failed");
    Ok(())
}

/// Runs `on_hup` at every SIGHUP (sent by `pkill -HUP`, a closing terminal, an operator).
fn on_hangup<F, Fut>(mut on_hup: F)
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

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    use clap::{CommandFactory as _, FromArgMatches as _};
    let argv = argv_with_config()?;
    // A flag given twice (config file, then command line) takes its last value.
    let matches = Cli::command()
        .args_override_self(true)
        .mut_subcommands(|s| s.args_override_self(true))
        .get_matches_from(argv);
    let cli = Cli::from_arg_matches(&matches)?;
    // Servers log what they do; the demo and the bench print tables and only log problems.
    let default = match cli.command {
        Command::Demo(_)
        | Command::Bench(_)
        | Command::Lab {
            command: LabCommand::Run(_),
        } => "warn",
        _ => "info",
    };
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| default.into()),
        )
        .with_writer(std::io::stderr)
        .init();
    match cli.command {
        Command::Demo(a) => run_demo(a).await,
        Command::Soak(a) => {
            let exe = std::env::current_exe()?;
            let opts = segue_server::soak::SoakOptions {
                samples: a.samples,
                objects: a.objects,
                pin: !a.no_pin,
                edge_cpu: a.edge_cpu.map(|p| f64::from(p) / 100.0),
                players: a.players.max(1),
                duration: Duration::from_secs(a.secs.max(1)),
                ramp: Duration::from_secs(a.ramp_secs.min(a.secs)),
                sample_every: Duration::from_secs(a.sample_secs.max(1)),
                congestion: a.congestion,
            };
            until_signal(segue_server::soak::run(&exe, &opts), "soak").await?;
            Ok(())
        }
        Command::Bench(a) => {
            let exe = std::env::current_exe()?;
            let opts = segue_server::bench::BenchOptions {
                samples: a.samples,
                rounds: a.rounds.max(1),
                players: a.players,
                egress_secs: a.egress_secs.max(1),
                sessions: a.sessions.max(1),
                idle_connections: a.idle_connections,
                congestion: a.congestion,
            };
            let report = until_signal(segue_server::bench::run(&exe, &opts), "bench").await?;
            print!("{report}");
            Ok(())
        }
        Command::Origin(c) => {
            let origin = Origin::start(*c, shutdown_signal()).await?;
            on_hangup(origin.reloader());
            origin.wait().await;
            Ok(())
        }
        Command::Edge(EdgeCmd {
            command: Some(EdgeCommand::Status { admin, admin_token }),
            ..
        }) => {
            let token = admin_token.filter(|t| !t.is_empty());
            print!(
                "{}",
                segue_server::status::edge_status(admin, token.as_deref()).await?
            );
            Ok(())
        }
        Command::Edge(EdgeCmd { run, .. }) => {
            let edge = Edge::start(*run, shutdown_signal()).await?;
            ignore_hangup();
            edge.wait().await;
            Ok(())
        }
        Command::Media { command } => media(command).await,
        Command::Hq { command } => hq(command).await,
        Command::Lab { command } => lab(command).await,
        Command::Token(a) => {
            let secrets = segue_server::access::secrets_from_file(&a.key_file)?;
            segue_server::access::Keys::new(&secrets)
                .map_err(|e| anyhow::anyhow!("{}: {e}", a.key_file.display()))?;
            let object = segue_server::files::object_of(a.url.path())
                .map_err(|e| anyhow::anyhow!("{}: {e}", a.url))?;
            let expires = segue_server::access::now().saturating_add(a.ttl_secs);
            let mut url = a.url.clone();
            url.set_query(Some(&segue_server::access::grant(
                &secrets[0],
                object.as_str(),
                expires,
                a.ip,
            )));
            println!("{url}");
            Ok(())
        }
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
