//! The HTTP admin API of an edge or an origin (plain HTTP/1.1; bind it to a private address):
//!
//! | request | edge | origin | token |
//! | --- | --- | --- | --- |
//! | `GET /metrics` | Prometheus text: sessions by case, bytes served and from origin, link estimates, cache, evictions, prefixes | sessions, segments and bytes served, pushes | no |
//! | `GET /objects` | cached objects with their prefix and segments held | the library | yes |
//! | `POST /push?object=NAME` | pull the prefix now | push the prefix to `&edge=segue://…` (or every `--push-edge`) | yes |
//! | `POST /purge?object=NAME` | drop it from the cache | — | yes |
//! | `GET /hints`, `POST /hints` | the hint schedule; add hints (JSON body, `placement::hint`) | same | yes |
//!
//! The token goes in `Authorization: Bearer TOKEN`; a wrong or missing token gets 401 and
//! nothing happens. Bodies are read only for `POST /hints`, at most [`MAX_BODY`] bytes.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::AtomicU64;

use bytes::Bytes;
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::{Method, Request, Response, StatusCode, header};
use hyper_util::rt::TokioIo;
use prometheus_client::encoding::text::encode;
use prometheus_client::metrics::counter::{ConstCounter, Counter};
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::ConstGauge;
use prometheus_client::registry::Registry;
use segue_wire::ObjectName;
use tokio::net::TcpListener;
use tokio::sync::watch;

use crate::clock::unix_now;
use crate::edge::EdgeSource;
use crate::edge::store::ObjectStatus;
use crate::node::admission::{Admission, FaceStats};
use crate::node::hints::HintSchedule;
use crate::node::packets::PacketCache;
use crate::node::source::Source as _;
use crate::origin::distribute::Distributor;
use crate::placement::hint::{Hint, parse_json};

/// Largest request body read (POST /hints).
pub const MAX_BODY: usize = 64 * 1024;

/// The node an admin API manages.
#[derive(Clone)]
pub enum Node {
    Edge {
        edge: EdgeSource,
        /// The segue/1 port's connection admission (its counters go to /metrics).
        admission: Arc<Admission>,
        hints: Arc<HintSchedule>,
        /// This edge's name and region, matched against hints.
        name: String,
        region: Option<String>,
        /// The node's packet cache (set when the node starts serving): purged with the rest.
        packets: Option<Arc<PacketCache>>,
    },
    Origin {
        dist: Arc<Distributor>,
        admission: Arc<Admission>,
        hints: Arc<HintSchedule>,
    },
}

impl Node {
    /// Adds the hints meant for this node to its schedule (an origin: all; an edge: those
    /// for its name or region); returns how many it took.
    pub fn add_hints(&self, hints: Vec<Hint>) -> usize {
        let mine: Vec<Hint> = match self {
            Node::Edge { name, region, .. } => hints
                .into_iter()
                .filter(|h| h.applies_to(name, region.as_deref()))
                .collect(),
            Node::Origin { .. } => hints,
        };
        let n = mine.len();
        self.hints().add(mine);
        n
    }

    fn hints(&self) -> &Arc<HintSchedule> {
        match self {
            Node::Edge { hints, .. } | Node::Origin { hints, .. } => hints,
        }
    }
}

type Resp = Response<Full<Bytes>>;

fn text(status: StatusCode, body: impl Into<Bytes>, ctype: &str) -> Resp {
    let mut r = Response::new(Full::new(body.into()));
    *r.status_mut() = status;
    if let Ok(v) = header::HeaderValue::from_str(ctype) {
        r.headers_mut().insert(header::CONTENT_TYPE, v);
    }
    r
}

fn plain(status: StatusCode, body: &str) -> Resp {
    text(status, format!("{body}\n"), "text/plain; charset=utf-8")
}

/// Compares the presented token with the configured one without an early exit (digests of
/// both, folded).
fn authorized(req: &Request<Incoming>, token: &str) -> bool {
    let Some(v) = req
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
    else {
        return false;
    };
    let Some(given) = v.strip_prefix("Bearer ") else {
        return false;
    };
    use ring::digest::{SHA256, digest};
    let (a, b) = (
        digest(&SHA256, given.as_bytes()),
        digest(&SHA256, token.as_bytes()),
    );
    a.as_ref()
        .iter()
        .zip(b.as_ref())
        .fold(0u8, |acc, (x, y)| acc | (x ^ y))
        == 0
}

/// A query parameter, decoded.
fn query_param(req: &Request<Incoming>, key: &str) -> Option<String> {
    url::form_urlencoded::parse(req.uri().query().unwrap_or("").as_bytes())
        .find(|(k, _)| k == key)
        .map(|(_, v)| v.into_owned())
}

/// The `object` query parameter, or why it is unusable.
fn object_param(req: &Request<Incoming>) -> Result<ObjectName, String> {
    let raw = query_param(req, "object").ok_or_else(|| "missing ?object=NAME".to_owned())?;
    ObjectName::new(&raw, 1024).map_err(|e| format!("bad object name: {e}"))
}

/// One library object, for the origin's `GET /objects` and `segue media list`.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct LibraryObject {
    pub object: String,
    pub revision: u64,
    pub formats: Vec<String>,
    pub segments: usize,
    pub duration_s: f64,
    pub bytes: u64,
}

/// Every object of a library.
pub fn library_objects(lib: &crate::origin::library::Library) -> Vec<LibraryObject> {
    lib.names()
        .iter()
        .filter_map(|n| lib.get(n))
        .map(|o| {
            let m = &o.manifest;
            LibraryObject {
                object: m.object.to_string(),
                revision: m.revision,
                formats: m.formats.clone(),
                segments: m.segments.len(),
                duration_s: m.duration_us as f64 / 1e6,
                bytes: m.total_size(),
            }
        })
        .collect()
}

/// The segue/1 port's connection counters (both nodes).
fn register_connections(r: &mut Registry, admission: &Admission) {
    use std::sync::atomic::Ordering::Relaxed;
    r.register(
        "connections_refused",
        "Connection attempts refused by the connection limits (before the handshake)",
        ConstCounter::new(admission.refused.load(Relaxed)),
    );
    r.register(
        "retries",
        "Connection attempts answered with a Retry (address validation)",
        ConstCounter::new(admission.retries.load(Relaxed)),
    );
    r.register(
        "connections",
        "Connections held now (segue/1 and the RTSP face)",
        ConstGauge::<f64>::new(admission.held() as f64),
    );
    r.register(
        "requests_refused",
        "Requests refused to clients (unauthorised, malformed, over a limit); logged at most once per client per 10 s",
        ConstCounter::new(admission.refusals.count.load(Relaxed)),
    );
    r.register(
        "tcp_connections",
        "TCP connections open now (RTSP face and admin API), each a file descriptor",
        ConstGauge::<i64>::new(i64::try_from(admission.tcp.open()).unwrap_or(i64::MAX)),
    );
    r.register(
        "tcp_connections_limit",
        "TCP connections allowed: the open-file limit less the descriptors kept for the cache",
        ConstGauge::<i64>::new(i64::try_from(admission.tcp.limit()).unwrap_or(i64::MAX)),
    );
    let faces = &admission.faces;
    let by_scheme = |counts: &[AtomicU64; 2]| {
        let f = Family::<Vec<(String, String)>, Counter>::default();
        for (s, n) in FaceStats::SCHEMES.iter().zip(counts) {
            f.get_or_create(&vec![("scheme".into(), s.as_str().into())])
                .inc_by(n.load(Relaxed));
        }
        f
    };
    r.register(
        "rtsp_connections_accepted",
        "Connections the RTSP face admitted, by scheme",
        by_scheme(&faces.accepted),
    );
    r.register(
        "rtsp_connections",
        "RTSP face connections open now",
        ConstGauge::<i64>::new(i64::try_from(faces.open.load(Relaxed)).unwrap_or(i64::MAX)),
    );
    r.register(
        "rtsp_plays",
        "PLAY requests the RTSP face answered with success, by scheme",
        by_scheme(&faces.plays),
    );
    let by = Family::<Vec<(String, String)>, Counter>::default();
    for (c, n) in segue_net::Congestion::ALL
        .iter()
        .zip(&admission.by_congestion)
    {
        by.get_or_create(&vec![("controller".into(), c.as_str().into())])
            .inc_by(n.load(Relaxed));
    }
    r.register(
        "connections_established",
        "Connections established (segue/1), by the congestion controller they run",
        by,
    );
}

/// The Prometheus exposition of an origin's state now.
pub fn origin_metrics(dist: &Distributor, admission: &Admission) -> String {
    use std::sync::atomic::Ordering::Relaxed;
    let s = &dist.source().stats;
    let p = &dist.stats;
    let lib = dist.source().library();
    let mut r = Registry::with_prefix("segue_origin");
    let counters = [
        (
            "sessions",
            "Player sessions started on the origin",
            &s.sessions,
        ),
        (
            "segments_read",
            "Segments read for sessions, edges and pushes",
            &s.segments,
        ),
        ("segment_bytes", "Bytes of those segments", &s.segment_bytes),
        (
            "served_bytes",
            "Media bytes sessions sent to players",
            &s.served_bytes,
        ),
        ("pushes", "Prefix pushes to edges that succeeded", &p.pushes),
        (
            "pushes_failed",
            "Prefix pushes to edges that failed",
            &p.failed,
        ),
        (
            "pushed_segments",
            "Segments edges took from pushes",
            &p.segments,
        ),
    ];
    for (name, help, v) in counters {
        r.register(name, help, ConstCounter::new(v.load(Relaxed)));
    }
    r.register(
        "objects",
        "Objects in the library",
        ConstGauge::<f64>::new(lib.names().len() as f64),
    );
    r.register(
        "ingest_failures",
        "Media files that could not be ingested",
        ConstGauge::<f64>::new(lib.failures.len() as f64),
    );
    register_connections(&mut r, admission);
    let mut out = String::new();
    if encode(&mut out, &r).is_err() {
        out.clear();
    }
    out
}

/// The Prometheus exposition of an edge's state now.
pub fn metrics(edge: &EdgeSource, admission: &Admission) -> String {
    let s = edge.snapshot();
    let store = edge.store();
    let link = edge.upstream().link_estimate(edge.parallel());
    // One walk over the cached objects per scrape.
    let objects = store.objects();
    let mut r = Registry::with_prefix("segue_edge");
    let counters = [
        (
            "full_hits",
            "Sessions and file downloads served entirely from the cache",
            s.full_hits,
        ),
        (
            "prefix_hits",
            "Sessions and file downloads started from a cached prefix",
            s.prefix_hits,
        ),
        (
            "misses",
            "Sessions and file downloads whose first segment was not cached",
            s.misses,
        ),
        (
            "segments_from_origin",
            "Segments fetched from the origin",
            s.segments_from_origin,
        ),
        (
            "collapsed_fetches",
            "Segment requests that joined a fetch in flight",
            s.collapsed,
        ),
        (
            "not_found_cached",
            "Requests for names the origin said it does not have (within 10 s), answered without asking it again",
            s.not_found_cached,
        ),
        (
            "origin_bytes",
            "Bytes received from the origin",
            s.origin_bytes,
        ),
        (
            "served_bytes",
            "Media bytes sent to players",
            s.served_bytes,
        ),
        (
            "pushed_segments",
            "Segments other nodes pushed here",
            s.segments_pushed,
        ),
        (
            "evictions",
            "Segments evicted from the disk cache",
            store.evictions(),
        ),
        (
            "cache_write_errors",
            "Cache writes (segments, manifests) that failed: disk full or unwritable",
            store.write_errors(),
        ),
        (
            "segments_from_peers",
            "Segments fetched from other helpers",
            s.segments_from_peers,
        ),
        (
            "peer_bytes",
            "Segment bytes fetched from other helpers",
            s.peer_bytes,
        ),
        (
            "segments_to_peers",
            "Segments served to other helpers",
            s.segments_to_peers,
        ),
        (
            "segments_not_kept",
            "Fetched segments left on disk to the helper owning them",
            s.segments_not_kept,
        ),
    ];
    for (name, help, v) in counters {
        r.register(name, help, ConstCounter::new(v));
    }
    if let Some(h) = edge.helpers() {
        use std::sync::atomic::Ordering::Relaxed;
        let sent = Family::<Vec<(String, String)>, Counter>::default();
        for scope in crate::cooperation::scope::Scope::ALL {
            sent.get_or_create(&vec![("scope".into(), scope.name().into())])
                .inc_by(h.stats.advert_bytes_sent[scope as usize].load(Relaxed));
        }
        r.register(
            "advert_bytes_sent",
            "Advertisement bytes sent to peers, by the peers' scope",
            sent,
        );
        for (name, help, v) in [
            (
                "adverts_received",
                "Advertisements taken from peers",
                &h.stats.adverts_received,
            ),
            (
                "adverts_refused",
                "Advertisements from unknown senders",
                &h.stats.adverts_refused,
            ),
            (
                "loops_refused",
                "Helper requests refused because they would loop",
                &h.stats.loops_refused,
            ),
        ] {
            r.register(name, help, ConstCounter::new(v.load(Relaxed)));
        }
    }
    let gauges = [
        (
            "cache_used_bytes",
            "Bytes of cached segments",
            store.used() as f64,
        ),
        (
            "cache_capacity_bytes",
            "Disk cache capacity",
            store.capacity() as f64,
        ),
        (
            "cache_capacity_effective_bytes",
            "Disk cache capacity in effect: the configured one, or what was held when the disk said it was full (for 10 minutes)",
            store.effective_capacity() as f64,
        ),
        (
            "cache_write_failing",
            "1 while cache writes fail (passing through), 0 when they succeed",
            f64::from(u8::from(store.write_failing())),
        ),
        (
            "origin_rtt_seconds",
            "Smoothed round-trip time to the origin",
            link.first_byte_s,
        ),
        (
            "origin_rtt_deviation_seconds",
            "Mean deviation of that round-trip time",
            link.jitter_s,
        ),
        (
            "origin_throughput_bytes_per_second",
            "Estimated origin link throughput",
            link.throughput,
        ),
        (
            "cached_objects",
            "Objects with a cached manifest",
            objects.len() as f64,
        ),
        (
            "prefix_seconds_mean",
            "Mean prefix length kept per cached object",
            ObjectStatus::mean_prefix_s(&objects),
        ),
    ];
    for (name, help, v) in gauges {
        r.register(name, help, ConstGauge::<f64>::new(v));
    }
    register_connections(&mut r, admission);
    let mut out = String::new();
    if encode(&mut out, &r).is_err() {
        out.clear();
    }
    out
}

fn json<T: serde::Serialize>(v: &T) -> Resp {
    match serde_json::to_string_pretty(v) {
        Ok(j) => text(StatusCode::OK, j + "\n", "application/json"),
        Err(e) => plain(StatusCode::INTERNAL_SERVER_ERROR, &e.to_string()),
    }
}

fn source_error(e: &crate::node::source::SourceError) -> Resp {
    plain(
        StatusCode::from_u16(e.rtsp_status()).unwrap_or(StatusCode::BAD_GATEWAY),
        &e.to_string(),
    )
}

async fn push(req: &Request<Incoming>, node: &Node) -> Resp {
    let name = match object_param(req) {
        Ok(n) => n,
        Err(e) => return plain(StatusCode::BAD_REQUEST, &e),
    };
    match node {
        Node::Edge { edge, .. } => match edge.warm(&name).await {
            Ok(n) => plain(
                StatusCode::OK,
                &format!("{name}: {n} prefix segments cached"),
            ),
            Err(e) => source_error(&e),
        },
        Node::Origin { dist, .. } => {
            let targets = match query_param(req, "edge") {
                Some(u) => match segue_wire::SegueUrl::parse(&u) {
                    Ok(u) => vec![u],
                    Err(e) => return plain(StatusCode::BAD_REQUEST, &format!("edge: {e}")),
                },
                None => dist.edges().to_vec(),
            };
            if targets.is_empty() {
                return plain(
                    StatusCode::BAD_REQUEST,
                    "no edge: add &edge=segue://HOST:PORT",
                );
            }
            if let Err(e) = dist.source().manifest(&name).await {
                return source_error(&e);
            }
            let r = dist.push_each(&name, &targets, None, None).await;
            let status = if r.failed {
                StatusCode::BAD_GATEWAY
            } else {
                StatusCode::OK
            };
            plain(status, &r.lines.join("\n"))
        }
    }
}

async fn add_hints(req: Request<Incoming>, node: &Node) -> Resp {
    use http_body_util::BodyExt as _;
    let body = match http_body_util::Limited::new(req.into_body(), MAX_BODY)
        .collect()
        .await
    {
        Ok(b) => b.to_bytes(),
        Err(e) => {
            return plain(
                StatusCode::PAYLOAD_TOO_LARGE,
                &format!("body unreadable or over {MAX_BODY} bytes: {e}"),
            );
        }
    };
    let hints = match parse_json(&body, unix_now()) {
        Ok(h) => h,
        Err(e) => return plain(StatusCode::BAD_REQUEST, &e),
    };
    let total = hints.len();
    let accepted = node.add_hints(hints);
    json(&serde_json::json!({ "accepted": accepted, "not_for_this_node": total - accepted }))
}

const ENDPOINTS: [&str; 6] = [
    "/metrics", "/objects", "/push", "/purge", "/hints", "/peers",
];

async fn handle(req: Request<Incoming>, node: Node, token: Arc<String>) -> Resp {
    let path = req.uri().path().to_owned();
    let method = req.method().clone();
    if !ENDPOINTS.contains(&path.as_str()) {
        return plain(StatusCode::NOT_FOUND, "no such endpoint");
    }
    if path != "/metrics" && !authorized(&req, &token) {
        return plain(
            StatusCode::UNAUTHORIZED,
            "a valid Authorization: Bearer token is needed",
        );
    }
    match (&method, path.as_str(), &node) {
        (
            &Method::GET,
            "/metrics",
            Node::Edge {
                edge, admission, ..
            },
        ) => text(
            StatusCode::OK,
            metrics(edge, admission),
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        ),
        (
            &Method::GET,
            "/metrics",
            Node::Origin {
                dist, admission, ..
            },
        ) => text(
            StatusCode::OK,
            origin_metrics(dist, admission),
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        ),
        (&Method::GET, "/objects", Node::Edge { edge, .. }) => json(&edge.store().objects()),
        (&Method::GET, "/peers", Node::Edge { edge, .. }) => {
            json(&edge.helpers().map(|h| h.report()).unwrap_or_default())
        }
        (&Method::GET, "/objects", Node::Origin { dist, .. }) => {
            json(&library_objects(&dist.source().library()))
        }
        (&Method::POST, "/push", _) => push(&req, &node).await,
        (&Method::POST, "/purge", Node::Edge { edge, packets, .. }) => match object_param(&req) {
            Err(e) => plain(StatusCode::BAD_REQUEST, &e),
            Ok(name) => {
                edge.purge(&name);
                if let Some(p) = packets {
                    p.remove_object(&name);
                }
                plain(StatusCode::OK, &format!("{name}: purged"))
            }
        },
        (&Method::POST, "/purge", Node::Origin { .. }) => plain(
            StatusCode::NOT_FOUND,
            "an origin has no cache to purge (remove media with `segue media rm`)",
        ),
        (&Method::GET, "/hints", _) => json(&node.hints().list()),
        (&Method::POST, "/hints", _) => add_hints(req, &node).await,
        _ => plain(StatusCode::METHOD_NOT_ALLOWED, "method not allowed"),
    }
}

/// Admin connections open at once; more are closed at once.
pub const MAX_ADMIN_CONNECTIONS: usize = 32;
/// An admin connection must send its request head within this long, and is closed after
/// its answer (no keep-alive): an idle one holds its file descriptor no longer.
const ADMIN_HEAD_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(5);
/// The longest an admin connection lives.
const ADMIN_CONNECTION_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(30);

/// Serves the admin API on `listener` until `stop`.
pub async fn serve(
    listener: TcpListener,
    node: Node,
    token: String,
    mut stop: watch::Receiver<bool>,
) {
    let token = Arc::new(token);
    let admission = match &node {
        Node::Edge { admission, .. } | Node::Origin { admission, .. } => admission.clone(),
    };
    let places = Arc::new(tokio::sync::Semaphore::new(MAX_ADMIN_CONNECTIONS));
    loop {
        let (tcp, peer): (tokio::net::TcpStream, SocketAddr) = tokio::select! {
            r = listener.accept() => match r {
                Ok(c) => c,
                Err(e) => {
                    tracing::warn!("admin accept: {e}");
                    tokio::time::sleep(std::time::Duration::from_millis(100)).await;
                    continue;
                }
            },
            _ = stop.changed() => return,
        };
        // Bounded: at most MAX_ADMIN_CONNECTIONS, and within the node's descriptor budget.
        let (Some(fd), Ok(place)) = (admission.take_tcp(), places.clone().try_acquire_owned())
        else {
            admission
                .refusals
                .note(peer, "admin connection: too many open");
            continue;
        };
        let (node, token) = (node.clone(), token.clone());
        tokio::spawn(async move {
            let _held = (fd, place);
            let svc = hyper::service::service_fn(move |req| {
                let (node, token) = (node.clone(), token.clone());
                async move { Ok::<_, std::convert::Infallible>(handle(req, node, token).await) }
            });
            let conn = hyper::server::conn::http1::Builder::new()
                .max_buf_size(16 * 1024)
                .timer(hyper_util::rt::TokioTimer::new())
                .header_read_timeout(ADMIN_HEAD_TIMEOUT)
                .keep_alive(false)
                .serve_connection(TokioIo::new(tcp), svc);
            if let Err(e) = tokio::time::timeout(ADMIN_CONNECTION_TIMEOUT, conn).await {
                tracing::debug!(%peer, "admin connection timed out: {e}");
            }
        });
    }
}
