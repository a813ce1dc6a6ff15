//! What starting a node can fail on, and the part of starting that every node shares: its
//! hint schedule, admin API, file endpoint and segue/1 serving, in that order. The origin
//! ([`crate::origin::Origin::start`]) and the edge ([`crate::edge::node::Edge::start`]) do
//! their own work first, then hand the rest to [`serve`].

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use segue_net::{NodeTls, TransportLimits};
use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::config::node::{
    AdminArgs, HintArgs, LimitArgs, TlsArgs, add_hint_file, node_options, serve_admin,
};
use crate::node::access::{KeyError, Keys};
use crate::node::admission::Admission;
use crate::node::hints::HintSchedule;
use crate::node::source::Source;
use crate::placement::hint::Hint;

/// Why a node cannot start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// A flag (or config key) that cannot work as given, and why.
    #[error("{0}")]
    Flag(String),
    #[error("{what}: {error}")]
    Io { what: String, error: std::io::Error },
    #[error("{what}: {error}")]
    Endpoint {
        what: String,
        error: segue_net::Error,
    },
    #[error(transparent)]
    Net(#[from] segue_net::Error),
    #[error(transparent)]
    Keys(#[from] KeyError),
    #[error(transparent)]
    Library(#[from] crate::origin::library::OpenError),
    #[error("{0}")]
    Internal(String),
}

impl StartError {
    pub fn flag(why: impl Into<String>) -> Self {
        Self::Flag(why.into())
    }

    pub fn io(what: impl Into<String>, error: std::io::Error) -> Self {
        Self::Io {
            what: what.into(),
            error,
        }
    }
}

/// The flags every node has, and what it built from them.
pub(crate) struct Common<'a> {
    pub tls: &'a TlsArgs,
    pub limits: &'a LimitArgs,
    pub hints: &'a HintArgs,
    pub admin: &'a AdminArgs,
    pub send_ahead_ms: u64,
    pub response_delay_ms: u64,
    pub node_tls: &'a NodeTls,
    pub transport: TransportLimits,
    pub access: Option<Arc<Keys>>,
    pub admission: Arc<Admission>,
}

/// A node's hint schedule with its lead time from `--hint-lead-secs`.
pub(crate) fn hint_schedule(a: &HintArgs) -> Arc<HintSchedule> {
    HintSchedule::new(Duration::from_secs(a.hint_lead_secs))
}

/// Where a node serves players.
#[derive(Debug, Clone, Copy)]
pub struct Addresses {
    /// segue/1 (UDP).
    pub segue: SocketAddr,
    /// The RTSP face over TCP (`--rtsp-listen`) and TLS (`--rtsps-listen`).
    pub rtsp: Option<SocketAddr>,
    pub rtsps: Option<SocketAddr>,
}

/// Runs what every node runs besides its own work, until `stop`: the hint schedule (each due
/// hint handed to `position`), the admin API for `admin`, the file endpoint over `source`,
/// and segue/1 on `endpoint` (and the RTSP face). Returns the addresses and the serving task.
#[allow(clippy::too_many_arguments)]
pub(crate) async fn serve<S, P, Fut>(
    c: Common<'_>,
    admin: crate::node::admin::Node,
    schedule: Arc<HintSchedule>,
    position: P,
    source: S,
    endpoint: quinn::Endpoint,
    role: &'static str,
    stop: watch::Receiver<bool>,
) -> Result<(Addresses, JoinHandle<()>), StartError>
where
    S: Source + Clone,
    P: Fn(Hint) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Result<String, String>> + Send + 'static,
{
    let opts = node_options(
        c.send_ahead_ms,
        c.response_delay_ms,
        c.node_tls,
        c.limits,
        c.transport,
        c.access.clone(),
        c.admission,
    )?;
    let mut admin = admin;
    if let crate::node::admin::Node::Edge { packets, .. } = &mut admin {
        *packets = opts.packets.clone();
    }
    add_hint_file(c.hints, &admin)?;
    tokio::spawn(schedule.run(position, stop.clone()));
    serve_admin(c.admin, admin, stop.clone()).await?;
    c.tls.serve_files(
        &source,
        c.access.clone(),
        c.limits.connections(),
        c.transport.transport,
        &stop,
    )?;
    let addr = endpoint
        .local_addr()
        .map_err(|e| StartError::io("the segue/1 socket", e))?;
    tracing::info!(listen = %addr, "{role} serving segue/1");
    let faces = c.tls.bind_rtsp().await?;
    let mut addrs = Addresses {
        segue: addr,
        rtsp: None,
        rtsps: None,
    };
    for f in &faces {
        let a = f
            .local_addr()
            .map_err(|e| StartError::io("the RTSP socket", e))?;
        tracing::info!(listen = %a, "{role} serving {}", f.scheme().as_str());
        match f.scheme() {
            segue_wire::rtsp::Scheme::Rtsp => addrs.rtsp = Some(a),
            segue_wire::rtsp::Scheme::Rtsps => addrs.rtsps = Some(a),
        }
    }
    let serving = tokio::spawn(crate::node::serve_with_faces(
        endpoint,
        faces,
        Arc::new(source),
        opts,
        stop,
    ));
    Ok((addrs, serving))
}
