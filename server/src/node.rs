//! Accepts connections and routes their streams: the first client bidirectional stream to the
//! control handler (player sessions), every other one to the segment protocol.

use std::sync::Arc;

use segue_wire::{AppError, Limits};
use tokio::sync::watch;

use crate::control::serve_control;
use crate::packets::PacketCache;
use crate::peer::Peer;
use crate::segserve::serve_exchange;
use crate::session::{SessionOptions, Sessions};
use crate::source::Source;

/// How a node serves.
#[derive(Debug, Clone, Default)]
pub struct NodeOptions {
    pub sessions: SessionOptions,
    pub limits: Limits,
    /// Delay before answering each segment request (lab and demo aid; zero in production).
    pub response_delay: std::time::Duration,
    /// Signed URLs required of players (docs/SECURITY.md); `None`: open access.
    pub access: Option<Arc<crate::access::Keys>>,
    /// A qlog trace per connection (`$QLOGDIR`).
    pub qlog: Option<crate::quic::NodeQlog>,
}

/// Serves `endpoint` until `shutdown` turns true, then closes every connection.
pub async fn serve<S: Source>(
    endpoint: quinn::Endpoint,
    source: Arc<S>,
    opts: NodeOptions,
    mut shutdown: watch::Receiver<bool>,
) {
    let packets = Arc::new(PacketCache::new(
        opts.sessions.packet_cache_bytes,
        opts.sessions.max_payload,
        opts.limits.max_frame_size,
    ));
    loop {
        tokio::select! {
            incoming = endpoint.accept() => {
                let Some(incoming) = incoming else { break };
                let connecting = match &opts.qlog {
                    Some(q) => q.accept(incoming),
                    None => incoming.accept(),
                };
                let source = source.clone();
                let opts = opts.clone();
                let packets = packets.clone();
                tokio::spawn(async move {
                    let conn = match connecting {
                        Ok(c) => c.await,
                        Err(e) => Err(e),
                    };
                    match conn {
                        Ok(conn) => connection(conn, source, opts, packets).await,
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
}

async fn connection<S: Source>(
    conn: quinn::Connection,
    source: Arc<S>,
    opts: NodeOptions,
    packets: Arc<PacketCache>,
) {
    let limits = opts.limits;
    let who = Arc::new(Peer::of(&conn));
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
            let mut sessions = Sessions::new(
                source.clone(),
                conn.clone(),
                opts.sessions,
                limits,
                packets.clone(),
            )
            .with_access(opts.access.clone());
            tokio::spawn(async move {
                if let Err(e) = serve_control(send, recv, limits, &mut sessions).await {
                    tracing::debug!(%peer, "control: {e}");
                }
                sessions.shutdown().await;
            });
        } else {
            let source = source.clone();
            let delay = opts.response_delay;
            let access = opts.access.clone();
            let who = who.clone();
            tokio::spawn(async move {
                let r = serve_exchange(source, send, recv, limits, delay, &who, access.as_deref());
                if let Err(e) = r.await {
                    tracing::debug!(%peer, "segment exchange: {e}");
                }
            });
        }
    }
}
