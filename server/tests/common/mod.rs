//! Shared by integration tests: an origin serving one shipped sample on loopback.

// Each test binary compiles this module and uses a part of it.
#![allow(dead_code)]

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;

use segue_server::library::{Library, LibraryOptions};
use segue_server::loopback::{self, DevTls};
use segue_server::node::NodeOptions;
use segue_server::source::LibrarySource;
use tokio::sync::watch;

/// A running origin over a temporary directory (dev PKI, media, ingested objects).
pub struct TestOrigin {
    pub dir: tempfile::TempDir,
    pub tls: DevTls,
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

    /// Stops the origin and waits for it.
    pub async fn shutdown(self) {
        let _ = self.stop.send(true);
        let _ = self.serving.await;
    }
}

/// Serves `media/samples/<file>` (2 s segments) from an origin on loopback.
pub fn origin_with_sample(file: &str) -> TestOrigin {
    let dir = tempfile::tempdir().unwrap();
    let tls = DevTls::init(&dir.path().join("certs")).unwrap();
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
