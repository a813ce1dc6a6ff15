//! The origin node, put together in one place: `segue origin`, the demo, the lab and the
//! tests all start an origin with [`Origin::start`] from an [`OriginConfig`] (the flags and
//! config keys of `segue origin`), so that what they run is what users run.

pub mod distribute;
pub mod ingest;
pub mod library;
pub mod source;

use segue_net::{TransportSettings, client_endpoint, server_endpoint};
use std::net::SocketAddr;
use std::sync::Arc;
use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::config::OriginConfig;
use crate::node::admission::Admission;
use crate::node::start::{Common, StartError, hint_schedule, serve};
use crate::origin::library::{Library, LibraryOptions};
use crate::origin::source::LibrarySource;

/// A running origin.
#[derive(Debug)]
pub struct Origin {
    addrs: crate::node::start::Addresses,
    source: LibrarySource,
    library: LibraryOptions,
    serving: JoinHandle<()>,
}

impl Origin {
    /// Ingests the media root, then serves segue/1 (and what `config` adds: files, admin
    /// API, hints, pushes) until `stop` turns true.
    pub async fn start(c: OriginConfig, stop: watch::Receiver<bool>) -> Result<Self, StartError> {
        // Checked before the library is ingested; one for the connections it accepts and opens.
        let transport = c.limits.transport(TransportSettings::origin_default())?;
        let tls = c.tls.node(&c.ca);
        let access = c.tls.access()?;
        let library = LibraryOptions {
            media_root: c.media.clone(),
            data_dir: c.data.clone(),
            target_segment_us: c.segment_ms.saturating_mul(1000),
            scheme: c.segment_scheme,
        };
        let lib = open_library(library.clone()).await?;
        let source = LibrarySource::new(Arc::new(lib));
        let endpoint =
            server_endpoint(c.listen, &tls, transport).map_err(|error| StartError::Endpoint {
                what: "the origin's endpoint (--cert, --key, and --ca: the edges' CA)".into(),
                error,
            })?;
        let client = client_endpoint(&tls, transport.transport).map_err(Arc::new);
        let dist = crate::origin::distribute::Distributor::new(
            source.clone(),
            client,
            c.push_prefix_secs.saturating_mul(1_000_000),
            c.push_edges.clone(),
        );
        let hints = hint_schedule(&c.hints);
        let admission = Admission::new(c.limits.connections());
        let node = crate::node::admin::Node::Origin {
            dist: dist.clone(),
            admission: admission.clone(),
            hints: hints.clone(),
        };
        let common = Common {
            tls: &c.tls,
            limits: &c.limits,
            hints: &c.hints,
            admin: &c.admin,
            send_ahead_ms: c.send_ahead_ms,
            response_delay_ms: c.response_delay_ms,
            node_tls: &tls,
            transport,
            access,
            admission,
        };
        let position = move |h| {
            let d = dist.clone();
            async move { d.position(h).await }
        };
        let (addrs, serving) = serve(
            common,
            node,
            hints,
            position,
            source.clone(),
            endpoint,
            "origin",
            stop,
        )
        .await?;
        Ok(Self {
            addrs,
            source,
            library,
            serving,
        })
    }

    /// The segue/1 address it serves on.
    pub fn addr(&self) -> SocketAddr {
        self.addrs.segue
    }

    /// Where it serves players: segue/1 and the RTSP face.
    pub fn addresses(&self) -> crate::node::start::Addresses {
        self.addrs
    }

    /// What it serves (its counters, pushes).
    pub fn source(&self) -> &LibrarySource {
        &self.source
    }

    /// Scans the media root again (`segue media ingest|rm`, files copied in: SIGHUP); on
    /// failure it keeps serving the library it has.
    pub fn reloader(
        &self,
    ) -> impl Fn() -> std::pin::Pin<Box<dyn Future<Output = ()> + Send>> + Send + 'static + use<>
    {
        let (source, opts) = (self.source.clone(), self.library.clone());
        move || {
            let (source, opts) = (source.clone(), opts.clone());
            Box::pin(async move {
                tracing::info!("rescanning the media root");
                match open_library(opts).await {
                    Ok(lib) => source.reload(Arc::new(lib)),
                    Err(e) => {
                        tracing::error!("rescan failed, still serving the old library: {e:#}")
                    }
                }
            })
        }
    }

    /// Until it stopped serving (after `stop`).
    pub async fn wait(self) {
        let _ = self.serving.await;
    }
}

/// Ingests what changed under the media root (in a blocking task) and logs what failed.
pub async fn open_library(opts: LibraryOptions) -> Result<Library, StartError> {
    let lib = tokio::task::spawn_blocking(move || Library::open(&opts))
        .await
        .map_err(|e| StartError::Internal(format!("ingest task: {e}")))??;
    for (name, why) in &lib.failures {
        tracing::error!(object = %name, "not served: {why}");
    }
    tracing::info!(
        objects = lib.names().len(),
        failed = lib.failures.len(),
        "library ready"
    );
    Ok(lib)
}
