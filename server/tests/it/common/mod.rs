//! Shared by integration tests: an origin serving one shipped sample on loopback.

// Each test binary compiles this module and uses a part of it.
#![allow(dead_code)]

pub mod process;

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;

use segue_server::edge::store::Store;
use segue_server::edge::{EdgeOptions, EdgeSource};
use segue_server::library::{Library, LibraryOptions};
use segue_server::loopback::{self, NodeTls};
use segue_server::node::NodeOptions;
use segue_server::source::LibrarySource;
use segue_wire::SegueUrl;
use tokio::sync::watch;

/// A running edge: its source, address and `segue://` URL.
pub struct TestEdge {
    pub edge: EdgeSource,
    pub addr: SocketAddr,
    pub url: SegueUrl,
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

    /// An edge of this origin, caching in `<dir>/edge` with a `prefix_us` prefix, taking
    /// pushes, serving on loopback until the origin stops.
    pub fn edge(&self, prefix_us: u64) -> TestEdge {
        let store = Store::open(&self.dir.path().join("edge"), 1 << 30, prefix_us).unwrap();
        let url = SegueUrl::parse(&format!("segue://localhost:{}/", self.addr.port())).unwrap();
        let (edge, addr, serving) = loopback::edge(
            &self.tls,
            store,
            url,
            EdgeOptions {
                accept_pushes: true,
                ..EdgeOptions::default()
            },
            NodeOptions::default(),
            self.stop_rx(),
        )
        .unwrap();
        tokio::spawn(serving);
        let url = SegueUrl::parse(&format!("segue://localhost:{}/", addr.port())).unwrap();
        TestEdge { edge, addr, url }
    }

    /// Stops the origin and waits for it.
    pub async fn shutdown(self) {
        let _ = self.stop.send(true);
        let _ = self.serving.await;
    }
}

/// Serves `media/samples/<file>` (2 s segments) from an origin on loopback.
pub fn origin_with_sample(file: &str) -> TestOrigin {
    let dir = tempfile::tempdir().unwrap();
    let tls = NodeTls::dev(&dir.path().join("certs")).unwrap();
    let media = dir.path().join("media");
    std::fs::create_dir_all(&media).unwrap();
    let samples = Path::new(env!("CARGO_MANIFEST_DIR")).join("../media/samples");
    std::fs::copy(samples.join(file), media.join(file)).unwrap();
    let lib = Library::open(&LibraryOptions {
        media_root: media,
        data_dir: dir.path().join("origin"),
        target_segment_us: 2_000_000,
        scheme: segue_server::ingest::segmenter::SegmentScheme::Uniform,
    })
    .unwrap();
    let (stop, stop_rx) = watch::channel(false);
    let source = LibrarySource::new(Arc::new(lib));
    let (addr, serve) =
        loopback::origin_with(&tls, source.clone(), NodeOptions::default(), stop_rx).unwrap();
    let serving = tokio::spawn(serve);
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

/// Whether network namespaces work here (root); CI sets SEGUE_REQUIRE_NETNS, which turns a
/// missing one into a failure instead of a skip.
pub fn netns_available() -> bool {
    available_or_required(
        segue_server::lab::netns::available(),
        "SEGUE_REQUIRE_NETNS",
        "network namespaces",
    )
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
