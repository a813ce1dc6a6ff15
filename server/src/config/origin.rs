//! `segue origin`'s flags and config keys.

use std::net::SocketAddr;
use std::path::PathBuf;

use clap::Args;
use segue_wire::SegueUrl;

use super::node::{AdminArgs, HintArgs, LimitArgs, TlsArgs};
use crate::origin::ingest::segmenter::SegmentScheme;

#[derive(Args, Debug)]
pub struct OriginConfig {
    /// Directory of media files; an object is a file's path without extension.
    #[arg(long)]
    pub media: PathBuf,
    /// Where ingested objects are kept (re-ingested only when a file changes).
    #[arg(long, default_value = "segue-data/origin")]
    pub data: PathBuf,
    /// UDP address to listen on.
    #[arg(long, default_value = "[::]:8554")]
    pub listen: SocketAddr,
    #[command(flatten)]
    pub tls: TlsArgs,
    #[command(flatten)]
    pub limits: LimitArgs,
    /// Target segment duration in milliseconds (segments start at keyframes).
    #[arg(long, default_value_t = 2000)]
    pub segment_ms: u64,
    /// Segment durations: uniform (every segment about --segment-ms), or exponential
    /// (segment i about --segment-ms × 2^i, at most 16×; docs/PLACEMENT.md).
    #[arg(long, default_value = "uniform")]
    pub segment_scheme: SegmentScheme,
    /// Media sent ahead of real time to fill a player's buffer, in milliseconds (at least 8
    /// round trips of the player's path).
    #[arg(long, default_value_t = 2000)]
    pub send_ahead_ms: u64,
    /// Delay before answering each segment request, in milliseconds (lab aid).
    #[arg(long, default_value_t = 0)]
    pub response_delay_ms: u64,
    /// CA of the nodes: the edges' certificates chain to it (edges fetching segments present
    /// theirs as client certificates: mTLS; pushes to edges verify theirs).
    #[arg(long, default_value = "certs/dev/ca.pem")]
    pub ca: PathBuf,
    /// An edge to push prefixes to when a push or hint names none: segue://HOST:PORT
    /// (repeatable).
    #[arg(long = "push-edge", value_name = "URL")]
    pub push_edges: Vec<SegueUrl>,
    /// Prefix offered to edges by a push, in seconds of media.
    #[arg(long, default_value_t = 10)]
    pub push_prefix_secs: u64,
    #[command(flatten)]
    pub hints: HintArgs,
    #[command(flatten)]
    pub admin: AdminArgs,
}

impl OriginConfig {
    /// `segue origin --media MEDIA` with every other flag at its default (clap's defaults are
    /// the only ones); set fields to change them.
    pub fn new(media: impl Into<PathBuf>) -> Result<Self, clap::Error> {
        Self::with_flags(media, std::iter::empty::<String>())
    }

    /// `segue origin --media MEDIA FLAGS…`, parsed as the command line is.
    pub fn with_flags(
        media: impl Into<PathBuf>,
        flags: impl IntoIterator<Item = impl Into<std::ffi::OsString>>,
    ) -> Result<Self, clap::Error> {
        #[derive(clap::Parser)]
        struct Flags {
            #[command(flatten)]
            c: OriginConfig,
        }
        let media: PathBuf = media.into();
        let argv = [
            std::ffi::OsString::from("origin"),
            "--media".into(),
            media.into_os_string(),
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
