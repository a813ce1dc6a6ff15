//! What a node process does around its node: stop on SIGTERM or Ctrl-C, react to SIGHUP.
//! Shared by `segue` and by `segue-lab`'s node commands, so that a lab node is run exactly
//! as `segue origin` / `segue edge` run it.

use crate::config::{EdgeConfig, OriginConfig};
use crate::edge::node::Edge;
use crate::origin::Origin;

/// `segue origin`: serves until SIGTERM or Ctrl-C; SIGHUP rescans the media root.
pub async fn run_origin(c: OriginConfig) -> anyhow::Result<()> {
    let origin = Origin::start(c, shutdown_signal()).await?;
    on_hangup(origin.reloader());
    origin.wait().await;
    Ok(())
}

/// `segue edge`: serves until SIGTERM or Ctrl-C (SIGHUP is logged).
pub async fn run_edge(c: EdgeConfig) -> anyhow::Result<()> {
    let edge = Edge::start(c, shutdown_signal()).await?;
    ignore_hangup();
    edge.wait().await;
    Ok(())
}

/// Turns true at Ctrl-C or SIGTERM.
pub fn shutdown_signal() -> tokio::sync::watch::Receiver<bool> {
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

/// Runs `on_hup` at every SIGHUP (sent by `pkill -HUP`, a closing terminal, an operator).
pub fn on_hangup<F, Fut>(mut on_hup: F)
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
