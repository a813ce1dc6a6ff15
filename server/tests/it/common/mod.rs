//! Shared by integration tests: an origin serving one shipped sample on loopback.

// Each test binary compiles this module and uses a part of it.
#![allow(dead_code)]

pub mod process;
pub mod tools;

use std::net::SocketAddr;
use std::path::Path;

use segue_net::NodeTls;
use segue_server::config::{EdgeConfig, OriginConfig};
use segue_server::edge::EdgeSource;
use segue_server::edge::node::Edge;
use segue_server::origin::Origin;
use segue_server::origin::source::LibrarySource;
use segue_wire::SegueUrl;
use tokio::sync::watch;

/// A running edge: its source, address and `segue://` URL.
pub struct TestEdge {
    pub edge: EdgeSource,
    pub addr: SocketAddr,
    pub url: SegueUrl,
    /// Its RTSP face, where configured (`tls.rtsp_listen`, `tls.rtsps_listen`).
    pub rtsp: Option<SocketAddr>,
    pub rtsps: Option<SocketAddr>,
}

/// A running origin over a temporary directory (dev PKI, media, ingested objects).
pub struct TestOrigin {
    pub dir: tempfile::TempDir,
    pub tls: NodeTls,
    pub addr: SocketAddr,
    pub stop: watch::Sender<bool>,
    pub serving: tokio::task::JoinHandle<()>,
    /// The origin's source (shared library and counters).
    pub source: LibrarySource,
}

impl TestOrigin {
    /// A receiver of the stop signal, for other nodes of the test.
    pub fn stop_rx(&self) -> watch::Receiver<bool> {
        self.stop.subscribe()
    }

    /// An edge of this origin as `segue edge` runs it (upkeep, adverts), caching in
    /// `<dir>/edge` with a `prefix_us` prefix, taking pushes, serving on loopback until the
    /// origin stops.
    pub async fn edge(&self, prefix_us: u64) -> TestEdge {
        self.edge_with("edge", |c| {
            c.prefix_secs = prefix_us.div_ceil(1_000_000);
            c.accept_pushes = true;
        })
        .await
    }

    /// An edge of this origin with `segue edge`'s defaults (4 s prefix) changed by `set`,
    /// caching in `<dir>/<cache>`, serving on loopback until the origin stops.
    pub async fn edge_with(&self, cache: &str, set: impl FnOnce(&mut EdgeConfig)) -> TestEdge {
        let url = SegueUrl::parse(&format!("segue://localhost:{}/", self.addr.port())).unwrap();
        let mut c = EdgeConfig::new(&url).unwrap();
        c.set_tls(&self.tls);
        c.listen = SocketAddr::from(([127, 0, 0, 1], 0));
        c.cache_dir = self.dir.path().join(cache);
        c.cache_size = 1 << 30;
        c.prefix_secs = 4;
        set(&mut c);
        let edge = Edge::start(c, self.stop_rx()).await.unwrap();
        let (source, addr, faces) = (edge.source().clone(), edge.addr(), edge.addresses());
        tokio::spawn(edge.wait());
        let url = SegueUrl::parse(&format!("segue://localhost:{}/", addr.port())).unwrap();
        TestEdge {
            edge: source,
            addr,
            url,
            rtsp: faces.rtsp,
            rtsps: faces.rtsps,
        }
    }

    /// Stops the origin and waits for it.
    pub async fn shutdown(self) {
        let _ = self.stop.send(true);
        let _ = self.serving.await;
    }
}

/// Serves `media/samples/<file>` (2 s segments) from an origin on loopback, as `segue
/// origin` runs it.
pub async fn origin_with_sample(file: &str) -> TestOrigin {
    origin_with_samples(&[file]).await
}

/// [`origin_with_sample`] with several samples.
pub async fn origin_with_samples(files: &[&str]) -> TestOrigin {
    let samples = Path::new(env!("CARGO_MANIFEST_DIR")).join("../media/samples");
    let paths: Vec<_> = files.iter().map(|f| samples.join(f)).collect();
    origin_with_files(&paths).await
}

/// An origin serving copies of `files` (any paths), as `segue origin` runs it.
pub async fn origin_with_files(files: &[std::path::PathBuf]) -> TestOrigin {
    let dir = tempfile::tempdir().unwrap();
    let tls = NodeTls::dev(&dir.path().join("certs")).unwrap();
    let media = dir.path().join("media");
    std::fs::create_dir_all(&media).unwrap();
    for file in files {
        let name = file.file_name().unwrap();
        std::fs::copy(file, media.join(name)).unwrap();
    }
    let mut c = OriginConfig::new(&media).unwrap();
    c.set_tls(&tls);
    c.listen = SocketAddr::from(([127, 0, 0, 1], 0));
    c.data = dir.path().join("origin");
    let (stop, stop_rx) = watch::channel(false);
    let origin = Origin::start(c, stop_rx).await.unwrap();
    let (addr, source) = (origin.addr(), origin.source().clone());
    let serving = tokio::spawn(origin.wait());
    TestOrigin {
        dir,
        tls,
        addr,
        stop,
        serving,
        source,
    }
}

/// A first advertisement from `sender` holding nothing (what a helper sends before it has
/// cached anything).
pub fn empty_advert(sender: &str) -> segue_wire::advert::Advert {
    segue_wire::advert::Advert {
        sender: sender.into(),
        epoch: 1,
        version: 1,
        base: 0,
        period_ms: 1000,
        holdings: vec![],
    }
}

/// A test's precondition: true when met; when not, a skip (false), or a failure when CI set
/// `require_var` to say the machine must have `what`.
pub fn available_or_required(check: Result<(), String>, require_var: &str, what: &str) -> bool {
    let Err(why) = check else { return true };
    assert!(
        std::env::var_os(require_var).is_none(),
        "{what} are required ({require_var} is set): {why}"
    );
    eprintln!("skipped: {why}");
    false
}
