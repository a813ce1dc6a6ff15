//! Accepts connections and routes their streams: the first client bidirectional stream to the
//! control handler (player sessions), every other one to the segment protocol.

pub mod access;
pub mod admin;
pub mod admission;
pub mod control;
pub mod hints;
pub mod packets;
pub mod push;
pub mod remote;
pub mod resumption;
pub mod rtsp;
pub mod segserve;
pub mod session;
pub mod source;
pub mod start;
pub mod upstream;

use std::sync::Arc;

use segue_wire::{AppError, Limits};
use tokio::sync::watch;

use crate::node::admission::{Admission, ConnectionLimits};
use crate::node::control::serve_control;
use crate::node::packets::PacketCache;
use crate::node::remote::Remote;
use crate::node::resumption::Handshake;
use crate::node::segserve::{Exchange, serve_exchange};
use crate::node::session::{MediaPath, SessionOptions, Sessions};
use crate::node::source::Source;

/// How a node serves.
#[derive(Debug, Clone)]
pub struct NodeOptions {
    pub sessions: SessionOptions,
    pub limits: Limits,
    /// Delay before answering each segment request (lab and demo aid; zero in production).
    pub response_delay: std::time::Duration,
    /// Signed URLs required of players (docs/SECURITY.md); `None`: open access.
    pub access: Option<Arc<crate::node::access::Keys>>,
    /// A qlog trace per connection (`$QLOGDIR`).
    pub qlog: Option<segue_net::NodeQlog>,
    /// Connections held at once, in total and per client, Retry policy, and their counters
    /// (shared with the admin API's metrics).
    pub admission: Arc<Admission>,
    /// A control message or segment request must arrive whole within this long (slowloris).
    pub request_timeout: std::time::Duration,
    /// The node's packet cache, when the caller shares it (the admin API's purge); None:
    /// [`serve_with_faces`] makes one from `sessions` and `limits`.
    pub packets: Option<Arc<PacketCache>>,
}

/// Default [`NodeOptions::request_timeout`].
pub const REQUEST_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(10);

impl NodeOptions {
    /// A packet cache as `sessions` and `limits` size it.
    pub fn packet_cache(&self) -> Arc<PacketCache> {
        Arc::new(PacketCache::new(
            self.sessions.packet_cache_bytes,
            self.sessions.max_payload,
            self.limits.max_frame_size,
        ))
    }
}

impl Default for NodeOptions {
    fn default() -> Self {
        Self {
            sessions: SessionOptions::default(),
            limits: Limits::default(),
            response_delay: std::time::Duration::ZERO,
            access: None,
            qlog: None,
            admission: Admission::new(ConnectionLimits::default()),
            request_timeout: REQUEST_TIMEOUT,
            packets: None,
        }
    }
}

/// Serves `endpoint` until `shutdown` turns true, then closes every connection.
pub async fn serve<S: Source>(
    endpoint: quinn::Endpoint,
    source: Arc<S>,
    opts: NodeOptions,
    shutdown: watch::Receiver<bool>,
) {
    serve_with_faces(endpoint, Vec::new(), source, opts, shutdown).await;
}

/// [`serve`], and the RTSP `faces` (sharing its packet cache and limits).
pub async fn serve_with_faces<S: Source>(
    endpoint: quinn::Endpoint,
    faces: Vec<rtsp::Listener>,
    source: Arc<S>,
    opts: NodeOptions,
    mut shutdown: watch::Receiver<bool>,
) {
    let packets = opts.packets.clone().unwrap_or_else(|| opts.packet_cache());
    let faces: Vec<_> = faces
        .into_iter()
        .map(|l| {
            tokio::spawn(rtsp::serve(
                l,
                source.clone(),
                opts.clone(),
                packets.clone(),
                shutdown.clone(),
            ))
        })
        .collect();
    let admission = opts.admission.clone();
    loop {
        tokio::select! {
            incoming = endpoint.accept() => {
                let Some(incoming) = incoming else { break };
                let Some((incoming, ticket)) = admission.admit(incoming) else { continue };
                let connecting = match &opts.qlog {
                    Some(q) => q.accept(incoming),
                    None => incoming.accept(),
                };
                let source = source.clone();
                let opts = opts.clone();
                let packets = packets.clone();
                let admission = admission.clone();
                tokio::spawn(async move {
                    // The connection's place, held until it ends.
                    let _ticket = ticket;
                    // Usable before the handshake completes when the client sent 0-RTT data:
                    // a resumed player's DESCRIBE, SETUP and PLAY are answered at once
                    // (PROTOCOL.md §2: what is served early, and why a replay gains little).
                    let (conn, early) = match connecting.map(quinn::Connecting::into_0rtt) {
                        Ok(Ok((conn, accepted))) => (Ok(conn), Some(Handshake::new(accepted))),
                        Ok(Err(connecting)) => (connecting.await, None),
                        Err(e) => (Err(e), None),
                    };
                    match conn {
                        Ok(conn) => {
                            admission.established(&conn);
                            connection(conn, source, opts, packets, early).await
                        }
                        Err(e) => tracing::debug!("handshake failed: {e}"),
                    }
                });
            }
            _ = shutdown.changed() => break,
        }
    }
    endpoint.close(
        AppError::ShuttingDown
            .code()
            .try_into()
            .unwrap_or(0u32.into()),
        b"shutting down",
    );
    endpoint.wait_idle().await;
    for f in faces {
        let _ = f.await;
    }
}

async fn connection<S: Source>(
    conn: quinn::Connection,
    source: Arc<S>,
    opts: NodeOptions,
    packets: Arc<PacketCache>,
    early: Option<Handshake>,
) {
    let limits = opts.limits;
    // Who the peer is (a node's certificate) is known once the handshake is: on a
    // connection that began in 0-RTT, segment exchanges (only nodes may run them) wait for it.
    let who = Arc::new(Remote::of(&conn));
    let peer = who.addr;
    tracing::debug!(peer = %who, "connection");
    loop {
        let (send, recv) = match conn.accept_bi().await {
            Ok(s) => s,
            Err(e) => {
                tracing::debug!(%peer, "connection ended: {e}");
                return;
            }
        };
        if send.id().index() == 0 {
            let request_timeout = opts.request_timeout;
            let mut sessions = Sessions::new(
                source.clone(),
                MediaPath::Roq(conn.clone()),
                opts.sessions,
                limits,
                packets.clone(),
            )
            .with_access(opts.access.clone());
            let (early, conn) = (early.clone(), conn.clone());
            tokio::spawn(async move {
                let r = serve_control(
                    conn,
                    send,
                    recv,
                    limits,
                    request_timeout,
                    early.as_ref(),
                    &mut sessions,
                );
                if let Err(e) = r.await {
                    tracing::debug!(%peer, "control: {e}");
                }
                sessions.shutdown().await;
            });
        } else {
            let source = source.clone();
            let (delay, request_timeout) = (opts.response_delay, opts.request_timeout);
            let access = opts.access.clone();
            let admission = opts.admission.clone();
            let (who, early, conn) = (who.clone(), early.clone(), conn.clone());
            tokio::spawn(async move {
                let who = match early {
                    Some(h) => {
                        h.completed().await;
                        Arc::new(Remote::of(&conn))
                    }
                    None => who,
                };
                let x = Exchange {
                    limits,
                    delay,
                    request_timeout,
                    peer: &who,
                    access: access.as_deref(),
                    refusals: &admission.refusals,
                };
                if let Err(e) = serve_exchange(source, send, recv, x).await {
                    tracing::debug!(%peer, "segment exchange: {e}");
                }
            });
        }
    }
}
