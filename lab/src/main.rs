//! `segue-lab`: Segue's tooling (the demo, the bench, the soak and the continuity lab),
//! apart from the production `segue` binary. Its `origin` and `edge` commands (hidden) are
//! `segue origin` and `segue edge` exactly (`segue_server::cli`): the lab, the bench and the
//! soak start their nodes as processes of this binary.

#![warn(clippy::unwrap_used, clippy::expect_used)]

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context as _;
use clap::{Args, Parser, Subcommand};
use segue_lab::demo::{self, DemoOptions};
use segue_net::Congestion;
use segue_server::cli::shutdown_signal;
use segue_server::config::{EdgeConfig, OriginConfig};

#[derive(Parser, Debug)]
#[command(
    name = "segue-lab",
    version,
    about = "Segue's demo, bench, soak and continuity lab (the server is `segue`)"
)]
struct Cli {
    /// Settings file: a TOML section per command ([demo], [bench], [origin], [edge]) whose
    /// keys are that command's flags; flags on the command line win. See docs/CONFIG.md.
    #[arg(long, global = true, value_name = "FILE", env = "SEGUE_CONFIG")]
    config: Option<PathBuf>,
    #[command(subcommand)]
    command: Command,
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
    #[command(flatten)]
    Lab(LabCommand),
    /// `segue origin`, for the nodes the lab, the bench and the soak start.
    #[command(hide = true)]
    Origin(Box<OriginConfig>),
    /// `segue edge`, for the nodes the lab, the bench and the soak start.
    #[command(hide = true)]
    Edge(Box<EdgeConfig>),
    /// The interop endpoints: `hq serve` (as `segue hq serve`) and `hq get`, the interop
    /// client (hq-interop and HTTP/3 downloads; interop/run.sh).
    Hq {
        #[command(subcommand)]
        command: HqCommand,
    },
}

#[derive(clap::Subcommand, Debug)]
enum HqCommand {
    #[command(flatten)]
    Serve(segue_server::cli::HqCommand),
    Get(segue_interop::cli::GetArgs),
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
    /// Round trip added between the TTFF players and the edge, in milliseconds (a UDP relay
    /// delaying each direction by half): what a 0-RTT play saves is a round trip, which
    /// loopback does not have. 0: players talk to the edge directly.
    #[arg(long, default_value_t = 0)]
    rtt_ms: u32,
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
    hop: Vec<segue_lab::matrix::Hop>,
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
    /// Let the edge's send-ahead grow to this, ms (its `--send-ahead-max-ms`; default: no
    /// growth).
    #[arg(long)]
    send_ahead_max_ms: Option<u64>,
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

async fn lab(command: LabCommand) -> anyhow::Result<()> {
    use segue_lab::{impair::LinkSpec, relay, run, scenario::Scenario, summary};
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
            use segue_lab::sim::{SimConfig, render, simulate};
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
            use segue_lab::matrix::{self, Loss, MatrixSpec};
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
                send_ahead_max_ms: a.send_ahead_max_ms,
            };
            matrix::validate(&spec)?;
            segue_lab::netns::available()
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
                r = segue_lab::bulk::serve(l, bytes) => r,
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

fn main() -> anyhow::Result<()> {
    segue_server::cli::block_on_main(run())
}

async fn run() -> anyhow::Result<()> {
    let cli: Cli = segue_server::cli::parse_args()?;
    // The demo, the bench and the runner print tables and only log problems; nodes log
    // what they do.
    segue_server::cli::init_logging(match cli.command {
        Command::Demo(_) | Command::Bench(_) | Command::Lab(LabCommand::Run(_)) => "warn",
        _ => "info",
    });
    match cli.command {
        Command::Demo(a) => run_demo(a).await,
        Command::Soak(a) => {
            let exe = std::env::current_exe()?;
            let opts = segue_lab::soak::SoakOptions {
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
            until_signal(segue_lab::soak::run(&exe, &opts), "soak").await?;
            Ok(())
        }
        Command::Bench(a) => {
            let exe = std::env::current_exe()?;
            let opts = segue_lab::bench::BenchOptions {
                samples: a.samples,
                rounds: a.rounds.max(1),
                players: a.players,
                egress_secs: a.egress_secs.max(1),
                sessions: a.sessions.max(1),
                idle_connections: a.idle_connections,
                congestion: a.congestion,
                rtt_ms: a.rtt_ms,
            };
            let report = until_signal(segue_lab::bench::run(&exe, &opts), "bench").await?;
            print!("{report}");
            Ok(())
        }
        Command::Lab(command) => lab(command).await,
        Command::Origin(c) => segue_server::cli::run_origin(*c).await,
        Command::Edge(c) => segue_server::cli::run_edge(*c).await,
        Command::Hq {
            command: HqCommand::Serve(c),
        } => segue_server::cli::run_hq(c).await,
        Command::Hq {
            command: HqCommand::Get(a),
        } => segue_interop::cli::run_get(a).await,
    }
}
