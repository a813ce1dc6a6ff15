//! What every node is given, as flags and as config keys (`[origin]`, `[edge]`): its
//! certificate and CA, limits and transport, hints, admin API; and how they become the
//! node's serving options.

use crate::node::start::StartError;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use clap::Args;
use segue_net::{Congestion, NodeTls, TransportLimits, TransportSettings};

use crate::clock::unix_now;
use crate::node::NodeOptions;
use crate::node::admission::Admission;
use crate::node::session::SessionOptions;

/// The certificate a server presents.
#[derive(Args, Debug, Clone)]
pub struct CertArgs {
    /// Certificate chain (PEM) this node presents.
    #[arg(long, default_value = "certs/dev/localhost.pem")]
    pub cert: PathBuf,
    /// Private key (PEM) of --cert.
    #[arg(long, default_value = "certs/dev/localhost.key")]
    pub key: PathBuf,
}

/// A node's certificate and what it serves besides segue/1.
#[derive(Args, Debug, Clone)]
pub struct TlsArgs {
    #[command(flatten)]
    pub cert: CertArgs,
    /// Also serve the media files over HTTP/3 and hq-interop on this UDP address
    /// (`https://HOST:PORT/movies/a.mp4`, with Range; docs/PROTOCOL.md §8.9). Off by default.
    #[arg(long, value_name = "ADDR")]
    pub files_listen: Option<SocketAddr>,
    /// Also serve standard RTSP players (ffmpeg, GStreamer, ...) over RTSP 1.0 and 2.0 on this TCP
    /// address, RTP and RTCP interleaved (`rtsp://HOST:PORT/movies/a.mp4`; docs/PROTOCOL.md
    /// §12), from the same sessions, cache, limits and signed URLs as segue/1. Off by default.
    #[arg(long, value_name = "ADDR")]
    pub rtsp_listen: Option<SocketAddr>,
    /// The same over TLS with this node's certificate (`rtsps://HOST:PORT/...`). Off by
    /// default.
    #[arg(long, value_name = "ADDR")]
    pub rtsps_listen: Option<SocketAddr>,
    /// Require signed URLs of players and file downloads (docs/SECURITY.md): a file of 1 or 2
    /// secret keys, one per line (the first signs with `segue token`; both verify, for
    /// rotation). Nodes (mTLS) need none. Off by default.
    #[arg(long, value_name = "FILE")]
    pub token_key_file: Option<PathBuf>,
}

/// What one node lets its clients hold (docs/SECURITY.md#limits).
#[derive(Args, Debug, Clone)]
pub struct LimitArgs {
    /// Connections held at once (the segue/1 port; --files-listen counts its own).
    #[arg(long, default_value_t = 10_000)]
    pub max_connections: usize,
    /// Connections held at once from one client address (IPv6: one /64).
    #[arg(long, default_value_t = 64)]
    pub max_connections_per_client: usize,
    /// Streams a client may have open at once on one connection (control + segment
    /// exchanges).
    #[arg(long, default_value_t = 256)]
    pub max_streams_per_connection: u32,
    /// Player sessions per connection.
    #[arg(long, default_value_t = 4)]
    pub max_sessions_per_connection: usize,
    /// A connection without any packet for this long is closed, in seconds.
    #[arg(long, default_value_t = 30)]
    pub idle_timeout_secs: u64,
    /// A control message or segment request must arrive whole within this many seconds of
    /// its first byte, or it is cut off (slowloris).
    #[arg(long, default_value_t = 10)]
    pub request_timeout_secs: u64,
    /// Largest control message head (request line and header fields), e.g. 8K.
    #[arg(long, default_value = "8K", value_parser = parse_size)]
    pub max_control_head: u64,
    /// Largest control message body, e.g. 64K.
    #[arg(long, default_value = "64K", value_parser = parse_size)]
    pub max_control_body: u64,
    /// Media a paced session sends ahead of real time at most, in milliseconds: above
    /// --send-ahead-ms, the send-ahead grows by a second per second of play while the
    /// player's path holds no queue, up to this (a deeper buffer, as an HLS player's 30 s).
    /// Default: no growth; it helps outages and hurts slow, bloated, lossy links
    /// (docs/TRANSPORT.md, "Growing the send-ahead").
    #[arg(long, default_value_t = 2000)]
    pub send_ahead_max_ms: u64,
    /// Packetized segments kept in memory for all sessions, e.g. 64M.
    #[arg(long, default_value = "64M", value_parser = parse_size)]
    pub packet_cache_size: u64,
    /// Validate client addresses with a QUIC Retry first: always, never, or public (clients
    /// from public addresses; not loopback, private or link-local ones).
    #[arg(long, default_value = "public", value_parser = crate::node::admission::RetryPolicy::parse)]
    pub retry: crate::node::admission::RetryPolicy,
    /// Congestion controller of this node's connections, those it accepts (it sends the
    /// media or segments on them) and those it opens: model (Segue's own), bbr, cubic or
    /// newreno (docs/TRANSPORT.md).
    #[arg(long, default_value_t = Congestion::default(), help_heading = "Transport")]
    pub congestion: Congestion,
    /// A packet is declared lost once this many later packets were acknowledged (RFC 9002's
    /// kPacketThreshold, at least 3). Default: an edge 1000 (loss is left to the time
    /// threshold, so that a reordering last mile does not read as loss), an origin 3.
    #[arg(long, help_heading = "Transport")]
    pub loss_packet_threshold: Option<u32>,
    /// ... or once this many RTTs passed since it was sent and a later one was acknowledged
    /// (kTimeThreshold, at least 1.125). Default: an edge 1.5 (tolerates jitter), an origin
    /// 1.125.
    #[arg(long, help_heading = "Transport")]
    pub loss_time_threshold: Option<f32>,
    /// Initial congestion window, in 1200-byte datagrams. Default: an edge 10 (RFC 9002's:
    /// viewers' last miles may be slow), an origin 32 (its connections carry segments to
    /// edges; docs/TRANSPORT.md).
    #[arg(long, help_heading = "Transport")]
    pub initial_window: Option<u32>,
}

impl LimitArgs {
    /// The limits and transport settings; `defaults` are the node's (its role's) for what
    /// was not given.
    pub fn transport(&self, defaults: TransportSettings) -> Result<TransportLimits, StartError> {
        if self.max_streams_per_connection < 1 {
            return Err(StartError::flag(
                "--max-streams-per-connection must be at least 1 (the control stream)",
            ));
        }
        if self.idle_timeout_secs < 1 {
            return Err(StartError::flag("--idle-timeout-secs must be at least 1"));
        }
        let transport = TransportSettings {
            congestion: self.congestion,
            packet_threshold: self
                .loss_packet_threshold
                .unwrap_or(defaults.packet_threshold),
            time_threshold: self.loss_time_threshold.unwrap_or(defaults.time_threshold),
            initial_window: self.initial_window.unwrap_or(defaults.initial_window),
            tolerate_reordering: defaults.tolerate_reordering,
        };
        transport
            .check()
            .map_err(|e| StartError::Flag(e.to_string()))?;
        Ok(TransportLimits {
            max_bidi_streams: self.max_streams_per_connection,
            idle_timeout: Duration::from_secs(self.idle_timeout_secs),
            transport,
            keep_alive: None,
        })
    }

    pub fn connections(&self) -> crate::node::admission::ConnectionLimits {
        crate::node::admission::ConnectionLimits {
            max_connections: self.max_connections,
            max_per_client: self.max_connections_per_client,
            retry: self.retry,
        }
    }
}

#[derive(Args, Debug, Clone)]
pub struct HintArgs {
    /// Hint schedule (TOML, `[[hint]]` tables: object, at or in_s, viewers, edges, region;
    /// docs/ADMIN.md): prefixes are pre-positioned before each hint's time.
    #[arg(long, value_name = "FILE")]
    pub hints: Option<PathBuf>,
    /// How long before a hint's time pre-positioning starts, in seconds.
    #[arg(long, default_value_t = 120)]
    pub hint_lead_secs: u64,
}

#[derive(Args, Debug, Clone)]
pub struct AdminArgs {
    /// Serve the HTTP admin API (GET /metrics, GET /objects, POST /push, POST /purge,
    /// GET|POST /hints) on this TCP address; keep it private (e.g. 127.0.0.1:9555).
    #[arg(long, value_name = "ADDR")]
    pub admin: Option<SocketAddr>,
    /// Bearer token the admin API requires (all but /metrics).
    #[arg(long, env = "SEGUE_ADMIN_TOKEN", hide_env_values = true)]
    pub admin_token: Option<String>,
}

/// Parses sizes like `1048576`, `512K`, `64M`, `2G`, `1GiB`.
pub fn parse_size(s: &str) -> Result<u64, String> {
    let t = s.trim().trim_end_matches("iB").trim_end_matches('B');
    let (num, mult) = match t.chars().last() {
        Some('K' | 'k') => (&t[..t.len() - 1], 1u64 << 10),
        Some('M' | 'm') => (&t[..t.len() - 1], 1 << 20),
        Some('G' | 'g') => (&t[..t.len() - 1], 1 << 30),
        Some('T' | 't') => (&t[..t.len() - 1], 1 << 40),
        _ => (t, 1),
    };
    num.trim()
        .parse::<u64>()
        .ok()
        .and_then(|n| n.checked_mul(mult))
        .ok_or_else(|| format!("not a size: {s:?} (use e.g. 512M or 2G)"))
}

impl TlsArgs {
    /// With `--token-key-file`: the keys signed URLs are checked with.
    pub fn access(&self) -> Result<Option<Arc<crate::node::access::Keys>>, StartError> {
        let Some(f) = &self.token_key_file else {
            return Ok(None);
        };
        let keys = crate::node::access::Keys::from_file(f)?;
        tracing::info!(keys = ?keys, "signed URLs required");
        Ok(Some(Arc::new(keys)))
    }

    /// With `--files-listen`: the node's file objects over HTTP/3 and hq-interop until `stop`.
    pub fn serve_files<S: crate::node::source::Source + Clone>(
        &self,
        source: &S,
        access: Option<Arc<crate::node::access::Keys>>,
        limits: crate::node::admission::ConnectionLimits,
        transport: TransportSettings,
        stop: &tokio::sync::watch::Receiver<bool>,
    ) -> Result<(), StartError> {
        use crate::files::{ObjectFiles, hq};
        let Some(listen) = self.files_listen else {
            return Ok(());
        };
        // The node's congestion control and loss detection, as on its segue/1 endpoint.
        let ep = hq::server_endpoint(listen, &self.cert.cert, &self.cert.key)
            .map_err(|error| StartError::Endpoint {
                what: "--files-listen".into(),
                error,
            })?
            .with_transport(transport);
        let addr = ep
            .endpoint
            .local_addr()
            .map_err(|e| StartError::io("--files-listen", e))?;
        tracing::info!(files = %addr, "serving files over HTTP/3 and hq-interop");
        let files = Arc::new(ObjectFiles::new(Arc::new(source.clone())).with_access(access));
        tokio::spawn(hq::serve(ep, files, limits, stop.clone()));
        Ok(())
    }

    /// Binds `--rtsp-listen` and `--rtsps-listen`, those given.
    pub async fn bind_rtsp(&self) -> Result<Vec<crate::node::rtsp::Listener>, StartError> {
        let mut out = Vec::new();
        if let Some(addr) = self.rtsp_listen {
            let l = crate::node::rtsp::bind(addr, None)
                .await
                .map_err(|e| StartError::io(format!("--rtsp-listen {addr}"), e))?;
            out.push(l);
        }
        if let Some(addr) = self.rtsps_listen {
            let config = segue_certs::tls::server_config(&self.cert.cert, &self.cert.key, &[])
                .map_err(|e| StartError::flag(format!("--rtsps-listen: {e}")))?;
            let l = crate::node::rtsp::bind(addr, Some(Arc::new(config)))
                .await
                .map_err(|e| StartError::io(format!("--rtsps-listen {addr}"), e))?;
            out.push(l);
        }
        Ok(out)
    }

    /// This node's credentials, with `ca` the CA of the other nodes.
    pub fn node(&self, ca: &Path) -> NodeTls {
        NodeTls {
            cert: self.cert.cert.clone(),
            key: self.cert.key.clone(),
            ca: ca.to_owned(),
        }
    }
}

/// How a node serves: its sessions, limits, signed URLs, and a qlog trace per connection
/// when `$QLOGDIR` is set.
pub fn node_options(
    send_ahead_ms: u64,
    response_delay_ms: u64,
    tls: &NodeTls,
    limits: &LimitArgs,
    transport: TransportLimits,
    access: Option<Arc<crate::node::access::Keys>>,
    admission: Arc<Admission>,
) -> Result<NodeOptions, StartError> {
    let size = |v: u64, flag: &str| {
        usize::try_from(v)
            .map_err(|_| StartError::Flag(format!("{flag} {v} does not fit this machine")))
    };
    let mut opts = NodeOptions {
        sessions: SessionOptions {
            send_ahead: Duration::from_millis(send_ahead_ms),
            send_ahead_max: Duration::from_millis(limits.send_ahead_max_ms),
            max_sessions: limits.max_sessions_per_connection,
            packet_cache_bytes: limits.packet_cache_size,
            ..SessionOptions::default()
        },
        limits: segue_wire::Limits {
            max_control_head: size(limits.max_control_head, "--max-control-head")?,
            max_control_body: size(limits.max_control_body, "--max-control-body")?,
            ..segue_wire::Limits::default()
        },
        response_delay: Duration::from_millis(response_delay_ms),
        access,
        qlog: segue_net::NodeQlog::from_env(tls, transport)?,
        admission,
        request_timeout: Duration::from_secs(limits.request_timeout_secs.max(1)),
        packets: None,
    };
    opts.packets = Some(opts.packet_cache());
    Ok(opts)
}

/// Reads `--hints FILE` (if given) into the node's schedule.
pub fn add_hint_file(a: &HintArgs, node: &crate::node::admin::Node) -> Result<(), StartError> {
    let Some(file) = &a.hints else { return Ok(()) };
    let text = std::fs::read_to_string(file)
        .map_err(|e| StartError::io(format!("cannot read hints {}", file.display()), e))?;
    let hints = crate::placement::hint::parse_schedule(&text, unix_now())
        .map_err(|e| StartError::Flag(format!("hints {}: {e}", file.display())))?;
    let total = hints.len();
    let taken = node.add_hints(hints);
    tracing::info!(file = %file.display(), total, for_this_node = taken, "hint schedule loaded");
    Ok(())
}

/// Starts the admin API if `--admin` is given.
pub async fn serve_admin(
    a: &AdminArgs,
    node: crate::node::admin::Node,
    stop: tokio::sync::watch::Receiver<bool>,
) -> Result<(), StartError> {
    let Some(addr) = a.admin else { return Ok(()) };
    let token = a
        .admin_token
        .clone()
        .filter(|t| !t.is_empty())
        .ok_or_else(|| StartError::flag("--admin needs --admin-token (or SEGUE_ADMIN_TOKEN)"))?;
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .map_err(|e| StartError::io(format!("admin API: cannot listen on {addr}"), e))?;
    let bound = listener
        .local_addr()
        .map_err(|e| StartError::io("admin API", e))?;
    tracing::info!(admin = %bound, "admin API (HTTP)");
    tokio::spawn(crate::node::admin::serve(listener, node, token, stop));
    Ok(())
}
