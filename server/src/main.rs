//! `segue`: the Segue server binary.

#![warn(clippy::unwrap_used, clippy::expect_used)]

use std::net::SocketAddr;
use std::path::PathBuf;

use anyhow::Context as _;
use clap::{Args, Parser, Subcommand};
use segue_server::config::{EdgeConfig, OriginConfig};
use segue_server::ingest::segmenter::SegmentScheme;

#[derive(Parser, Debug)]
#[command(
    name = "segue",
    version,
    about = "Segue: stored media over QUIC, origin to edge to player"
)]
struct Cli {
    /// Settings file: a TOML section per command ([origin], [edge]) whose keys are that
    /// command's flags; flags on the command line win. See docs/CONFIG.md.
    #[arg(long, global = true, value_name = "FILE", env = "SEGUE_CONFIG")]
    config: Option<PathBuf>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
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
        command: segue_server::cli::HqCommand,
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

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let cli: Cli = segue_server::cli::parse_args()?;
    // Servers log what they do.
    segue_server::cli::init_logging("info");
    match cli.command {
        Command::Origin(c) => segue_server::cli::run_origin(*c).await,
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
        Command::Edge(EdgeCmd { run, .. }) => segue_server::cli::run_edge(*run).await,
        Command::Media { command } => media(command).await,
        Command::Hq { command } => segue_server::cli::run_hq(command).await,
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
