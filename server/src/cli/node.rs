//! What a node process does around its node: stop on SIGTERM or Ctrl-C, react to SIGHUP.
//! Shared by `segue` and by `segue-lab`'s node commands, so that a lab node is run exactly
//! as `segue origin` / `segue edge` run it.

use crate::config::{EdgeConfig, OriginConfig};
use crate::edge::node::Edge;
use crate::origin::Origin;

/// How long a node, once told to stop, waits for its sessions and tasks to end before it
/// exits anyway: shutdown is bounded whatever an upstream does.
pub const SHUTDOWN_GRACE: std::time::Duration = std::time::Duration::from_secs(3);

/// How long the process waits, after its node returned, for blocking tasks (a file write, a
/// name lookup) before it exits.
const BLOCKING_GRACE: std::time::Duration = std::time::Duration::from_secs(1);

/// Runs a binary's `main` future on a new runtime; when it returns, blocking tasks get
/// [`BLOCKING_GRACE`] (a plain `#[tokio::main]` waits for them however long they take).
pub fn block_on_main<F: std::future::Future<Output = anyhow::Result<()>>>(
    main: F,
) -> anyhow::Result<()> {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    let r = rt.block_on(main);
    rt.shutdown_timeout(BLOCKING_GRACE);
    r
}

/// Waits for a node's `wait` until `stop` turns true, then at most [`SHUTDOWN_GRACE`].
async fn bounded(
    wait: impl std::future::Future<Output = ()>,
    mut stop: tokio::sync::watch::Receiver<bool>,
) {
    let grace = async {
        let _ = stop.wait_for(|s| *s).await;
        tokio::time::sleep(SHUTDOWN_GRACE).await;
    };
    tokio::select! {
        () = wait => {}
        () = grace => tracing::warn!("shutdown: gave up waiting after {SHUTDOWN_GRACE:?} (an upstream does not answer?)"),
    }
}

/// Raises the open-file limit where allowed, and says what it is.
fn log_fd_limit() {
    use crate::node::admission::{FD_RESERVE, nofile_limit};
    let n = nofile_limit();
    tracing::info!(
        limit = n,
        reserved = FD_RESERVE,
        "open files (TCP connections get what the reserve leaves)"
    );
}

/// `segue origin`: serves until SIGTERM or Ctrl-C; SIGHUP rescans the media root.
pub async fn run_origin(c: OriginConfig) -> anyhow::Result<()> {
    log_fd_limit();
    let stop = shutdown_signal();
    let origin = Origin::start(c, stop.clone()).await?;
    on_hangup(origin.reloader());
    bounded(origin.wait(), stop).await;
    Ok(())
}

/// `segue edge`: serves until SIGTERM or Ctrl-C (SIGHUP is logged).
pub async fn run_edge(c: EdgeConfig) -> anyhow::Result<()> {
    log_fd_limit();
    let stop = shutdown_signal();
    let edge = Edge::start(c, stop.clone()).await?;
    ignore_hangup();
    bounded(edge.wait(), stop).await;
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
