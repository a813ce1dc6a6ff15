//! `segue edge`'s flags and config keys.

use std::net::SocketAddr;
use std::path::PathBuf;

use clap::Args;
use segue_wire::SegueUrl;

use super::node::{AdminArgs, HintArgs, LimitArgs, TlsArgs, parse_size};

#[derive(Args, Debug)]
pub struct EdgeConfig {
    /// The origin: segue://HOST:PORT.
    #[arg(long, required = true)]
    pub origin: Option<SegueUrl>,
    /// CA of the nodes: the origin's and helpers' certificates chain to it, and theirs to
    /// this edge's (--cert is presented to them as a client certificate: mTLS).
    #[arg(long, default_value = "certs/dev/ca.pem")]
    pub ca: PathBuf,
    /// Cache directory (survives restarts).
    #[arg(long, default_value = "segue-data/edge")]
    pub cache_dir: PathBuf,
    /// Cache capacity, e.g. 512M, 20G.
    #[arg(long, default_value = "1G", value_parser = parse_size)]
    pub cache_size: u64,
    /// UDP address to listen on.
    #[arg(long, default_value = "[::]:8555")]
    pub listen: SocketAddr,
    #[command(flatten)]
    pub tls: TlsArgs,
    #[command(flatten)]
    pub limits: LimitArgs,
    /// Verified segments kept in memory above the disk cache, e.g. 64M.
    #[arg(long, default_value = "64M", value_parser = parse_size)]
    pub memory_cache_size: u64,
    /// Prefix kept per object, in seconds of media.
    #[arg(long, default_value_t = 10)]
    pub prefix_secs: u64,
    /// Segment fetches in flight to the origin (K).
    #[arg(long, default_value_t = 4)]
    pub parallel: usize,
    /// Fetch this object's prefix at start (repeatable).
    #[arg(long = "warm", value_name = "OBJECT")]
    pub warm: Vec<String>,
    /// Media sent ahead of real time to fill a player's buffer, in milliseconds (at least 8
    /// round trips of the player's path).
    #[arg(long, default_value_t = 2000)]
    pub send_ahead_ms: u64,
    /// Write the edge's counters as JSON to this file every second and at shutdown
    /// (`"ready": true` once every --warm object is in; `mean_prefix_s`; with --peer, the
    /// helper counters under `helpers`).
    #[arg(long, value_name = "FILE")]
    pub stats: Option<PathBuf>,
    /// Take prefixes the origin pushes (PROTOCOL.md §8.7; each segment is checked against
    /// this edge's own manifest). Off by default: enable it where only your nodes reach
    /// the QUIC port.
    #[arg(long)]
    pub accept_pushes: bool,
    /// This edge's name: hints listing edges apply to it when they list this name.
    #[arg(long, default_value = "edge")]
    pub name: String,
    /// This edge's region: hints for a region apply to it.
    #[arg(long)]
    pub region: Option<String>,
    /// A helper to cooperate with, NAME=segue://HOST:PORT[,SCOPE] (repeatable; SCOPE is
    /// local, regional, national or global; without it, derived from the measured RTT and
    /// how often the peer advertises). The peer must list this edge under --name too.
    #[arg(long = "peer", value_name = "NAME=URL[,SCOPE]")]
    pub peers: Vec<crate::cooperation::PeerConf>,
    /// Advert periods per scope, seconds: local,regional,national,global.
    #[arg(long, default_value = "1,5,30,120", value_parser = parse_periods)]
    pub advert_periods: crate::cooperation::scope::Periods,
    /// Round trips (ms) below which a peer with no configured scope is local, regional,
    /// national (above: global).
    #[arg(long, default_value = "5,30,100", value_parser = parse_rtt_limits)]
    pub scope_rtt_ms: crate::cooperation::scope::RttLimits,
    /// Segments are spread over the helpers of this scope and nearer (collective storage).
    #[arg(long, default_value = "local", value_parser = crate::cooperation::scope::Scope::parse)]
    pub collective_scope: crate::cooperation::scope::Scope,
    /// An object's prefix is kept at every helper that saw at least this many requests for
    /// it (decayed); below, only the helpers owning its segments keep them.
    #[arg(long, default_value_t = 1.0)]
    pub popular_requests: f64,
    #[command(flatten)]
    pub hints: HintArgs,
    #[command(flatten)]
    pub admin: AdminArgs,
}

pub fn parse_rtt_limits(s: &str) -> Result<crate::cooperation::scope::RttLimits, String> {
    crate::cooperation::scope::RttLimits::parse(s)
}

pub fn parse_periods(s: &str) -> Result<crate::cooperation::scope::Periods, String> {
    crate::cooperation::scope::Periods::parse(s)
}

impl EdgeConfig {
    /// `segue edge --origin ORIGIN` with every other flag at its default (clap's defaults
    /// are the only ones); set fields to change them.
    pub fn new(origin: &SegueUrl) -> Result<Self, clap::Error> {
        Self::with_flags(origin, std::iter::empty::<String>())
    }

    /// `segue edge --origin ORIGIN FLAGS…`, parsed as the command line is.
    pub fn with_flags(
        origin: &SegueUrl,
        flags: impl IntoIterator<Item = impl Into<std::ffi::OsString>>,
    ) -> Result<Self, clap::Error> {
        #[derive(clap::Parser)]
        struct Flags {
            #[command(flatten)]
            c: EdgeConfig,
        }
        let argv = [
            std::ffi::OsString::from("edge"),
            "--origin".into(),
            origin.to_string().into(),
        ]
        .into_iter()
        .chain(flags.into_iter().map(Into::into));
        <Flags as clap::Parser>::try_parse_from(argv).map(|f| f.c)
    }

    /// Presents `tls`' certificate and key, and trusts its node CA.
    pub fn set_tls(&mut self, tls: &segue_net::NodeTls) {
        self.tls.cert.cert = tls.cert.clone();
        self.tls.cert.key = tls.key.clone();
        self.ca = tls.ca.clone();
    }
}
