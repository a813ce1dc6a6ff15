//! The edge's HTTP admin API (plain HTTP/1.1; bind it to a private address):
//!
//! | request | what | token |
//! | --- | --- | --- |
//! | `GET /metrics` | Prometheus text: sessions by case, bytes served from origin, link estimates, cache use, evictions, prefix lengths | no |
//! | `GET /objects` | JSON: every cached object with its prefix and the segments held | yes |
//! | `POST /push?object=NAME` | fetch the object's prefix now (pre-positioning) | yes |
//! | `POST /purge?object=NAME` | drop the object from the cache | yes |
//!
//! The token goes in `Authorization: Bearer TOKEN`; a wrong or missing token gets 401 and
//! nothing happens. Requests are small and bounded (no bodies are read).

use std::net::SocketAddr;
use std::sync::Arc;

use bytes::Bytes;
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::{Method, Request, Response, StatusCode, header};
use hyper_util::rt::TokioIo;
use prometheus_client::encoding::text::encode;
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::gauge::ConstGauge;
use prometheus_client::registry::Registry;
use segue_wire::ObjectName;
use tokio::net::TcpListener;
use tokio::sync::watch;

use crate::edge::EdgeSource;

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

/// The `object` query parameter, or why it is unusable.
fn object_param(req: &Request<Incoming>) -> Result<ObjectName, String> {
    let q = req.uri().query().unwrap_or("");
    let raw = q
        .split('&')
        .find_map(|kv| kv.strip_prefix("object="))
        .ok_or_else(|| "missing ?object=NAME".to_owned())?;
    let decoded = url::form_urlencoded::parse(format!("o={raw}").as_bytes())
        .next()
        .map(|(_, v)| v.into_owned())
        .unwrap_or_default();
    ObjectName::new(&decoded, 1024).map_err(|e| format!("bad object name: {e}"))
}

/// The Prometheus exposition of an edge's state now.
pub fn metrics(edge: &EdgeSource) -> String {
    let s = edge.snapshot();
    let store = edge.store();
    let link = edge.upstream().link_estimate(edge.parallel());
    let mut r = Registry::with_prefix("segue_edge");
    let counter = |r: &mut Registry, name: &str, help: &str, v: u64| {
        r.register(name, help, ConstCounter::new(v));
    };
    counter(
        &mut r,
        "full_hits",
        "Sessions served entirely from the cache",
        s.full_hits,
    );
    counter(
        &mut r,
        "prefix_hits",
        "Sessions started from a cached prefix",
        s.prefix_hits,
    );
    counter(
        &mut r,
        "misses",
        "Sessions whose first segment was not cached",
        s.misses,
    );
    counter(
        &mut r,
        "segments_from_origin",
        "Segments fetched from the origin",
        s.segments_from_origin,
    );
    counter(
        &mut r,
        "collapsed_fetches",
        "Segment requests that joined a fetch in flight",
        s.collapsed,
    );
    counter(
        &mut r,
        "origin_bytes",
        "Bytes received from the origin",
        s.origin_bytes,
    );
    counter(
        &mut r,
        "served_bytes",
        "Media bytes sent to players",
        s.served_bytes,
    );
    counter(
        &mut r,
        "evictions",
        "Segments evicted from the disk cache",
        store.evictions(),
    );
    let gauge = |r: &mut Registry, name: &str, help: &str, v: f64| {
        r.register(name, help, ConstGauge::<f64>::new(v));
    };
    gauge(
        &mut r,
        "cache_used_bytes",
        "Bytes of cached segments",
        store.used() as f64,
    );
    gauge(
        &mut r,
        "cache_capacity_bytes",
        "Disk cache capacity",
        store.capacity() as f64,
    );
    gauge(
        &mut r,
        "origin_rtt_seconds",
        "Smoothed round-trip time to the origin",
        link.first_byte_s,
    );
    gauge(
        &mut r,
        "origin_rtt_deviation_seconds",
        "Mean deviation of that round-trip time",
        link.jitter_s,
    );
    gauge(
        &mut r,
        "origin_throughput_bytes_per_second",
        "Estimated origin throughput with K exchanges",
        link.throughput,
    );
    let objects = store.objects();
    let mean_prefix = if objects.is_empty() {
        0.0
    } else {
        objects.iter().map(|o| o.prefix_s).sum::<f64>() / objects.len() as f64
    };
    gauge(
        &mut r,
        "cached_objects",
        "Objects with a cached manifest",
        objects.len() as f64,
    );
    gauge(
        &mut r,
        "prefix_seconds_mean",
        "Mean prefix length kept per cached object",
        mean_prefix,
    );
    let mut out = String::new();
    if encode(&mut out, &r).is_err() {
        out.clear();
    }
    out
}

async fn handle(req: Request<Incoming>, edge: EdgeSource, token: Arc<String>) -> Resp {
    let path = req.uri().path().to_owned();
    match (req.method(), path.as_str()) {
        (&Method::GET, "/metrics") => text(
            StatusCode::OK,
            metrics(&edge),
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        ),
        (_, "/objects" | "/push" | "/purge") if !authorized(&req, &token) => plain(
            StatusCode::UNAUTHORIZED,
            "a valid Authorization: Bearer token is needed",
        ),
        (&Method::GET, "/objects") => match serde_json::to_string_pretty(&edge.store().objects()) {
            Ok(j) => text(StatusCode::OK, j + "\n", "application/json"),
            Err(e) => plain(StatusCode::INTERNAL_SERVER_ERROR, &e.to_string()),
        },
        (&Method::POST, "/push") => match object_param(&req) {
            Err(e) => plain(StatusCode::BAD_REQUEST, &e),
            Ok(name) => match edge.warm(&name).await {
                Ok(n) => plain(
                    StatusCode::OK,
                    &format!("{name}: {n} prefix segments cached"),
                ),
                Err(e) => plain(
                    StatusCode::from_u16(e.rtsp_status()).unwrap_or(StatusCode::BAD_GATEWAY),
                    &e.to_string(),
                ),
            },
        },
        (&Method::POST, "/purge") => match object_param(&req) {
            Err(e) => plain(StatusCode::BAD_REQUEST, &e),
            Ok(name) => {
                edge.store().drop_object(&name);
                plain(StatusCode::OK, &format!("{name}: purged"))
            }
        },
        (_, "/metrics" | "/objects" | "/push" | "/purge") => {
            plain(StatusCode::METHOD_NOT_ALLOWED, "method not allowed")
        }
        _ => plain(StatusCode::NOT_FOUND, "no such endpoint"),
    }
}

/// Serves the admin API on `listener` until `stop`.
pub async fn serve(
    listener: TcpListener,
    edge: EdgeSource,
    token: String,
    mut stop: watch::Receiver<bool>,
) {
    let token = Arc::new(token);
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
        let (edge, token) = (edge.clone(), token.clone());
        tokio::spawn(async move {
            let svc = hyper::service::service_fn(move |req| {
                let (edge, token) = (edge.clone(), token.clone());
                async move { Ok::<_, std::convert::Infallible>(handle(req, edge, token).await) }
            });
            let conn = hyper::server::conn::http1::Builder::new()
                .max_buf_size(16 * 1024)
                .serve_connection(TokioIo::new(tcp), svc);
            if let Err(e) = tokio::time::timeout(std::time::Duration::from_secs(60), conn).await {
                tracing::debug!(%peer, "admin connection timed out: {e}");
            }
        });
    }
}
