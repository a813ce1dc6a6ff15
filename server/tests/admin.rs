//! The edge's admin API over real HTTP on loopback: metrics without a token, everything else
//! refused without one; push pre-positions a prefix (the next play is a prefix hit), objects
//! lists it, purge drops it.

use std::time::Duration;

use segue_server::edge::EdgeOptions;
use segue_server::edge::store::Store;
use segue_server::loopback;
use segue_server::node::NodeOptions;

mod common;
use segue_wire::SegueUrl;
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};

async fn http(
    addr: std::net::SocketAddr,
    method: &str,
    path: &str,
    token: Option<&str>,
) -> (u16, String) {
    let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
    let auth = token.map_or(String::new(), |t| format!("Authorization: Bearer {t}\r\n"));
    let req = format!(
        "{method} {path} HTTP/1.1\r\nHost: edge\r\n{auth}Content-Length: 0\r\nConnection: close\r\n\r\n"
    );
    s.write_all(req.as_bytes()).await.unwrap();
    let mut out = String::new();
    tokio::time::timeout(Duration::from_secs(20), s.read_to_string(&mut out))
        .await
        .unwrap()
        .unwrap();
    let status = out
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    let body = out.split("\r\n\r\n").nth(1).unwrap_or("").to_owned();
    (status, body)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn admin_api() {
    let origin = common::origin_with_sample("demo.mp4");
    let (tls, stop_rx) = (origin.tls.clone(), origin.stop_rx());
    let store = Store::open(&origin.dir.path().join("edge"), 1 << 30, 4_000_000).unwrap();
    let url = SegueUrl::parse(&format!("segue://localhost:{}/", origin.addr.port())).unwrap();
    let (edge, eaddr, eserve) = loopback::edge(
        &tls,
        store,
        url,
        EdgeOptions::default(),
        NodeOptions::default(),
        stop_rx.clone(),
    )
    .unwrap();
    tokio::spawn(eserve);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let admin = listener.local_addr().unwrap();
    tokio::spawn(segue_server::admin::serve(
        listener,
        edge.clone(),
        "s3cret".into(),
        stop_rx.clone(),
    ));

    // Metrics need no token and speak Prometheus.
    let (st, body) = http(admin, "GET", "/metrics", None).await;
    assert_eq!(st, 200);
    assert!(body.contains("segue_edge_misses_total 0"), "{body}");
    assert!(body.contains("# TYPE segue_edge_cache_capacity_bytes gauge"));
    // Everything else needs the token; a wrong one changes nothing.
    assert_eq!(http(admin, "GET", "/objects", None).await.0, 401);
    assert_eq!(
        http(admin, "POST", "/push?object=demo", Some("wrong"))
            .await
            .0,
        401
    );
    assert!(edge.store().objects().is_empty());
    // Bad requests are refused clearly.
    assert_eq!(http(admin, "POST", "/push", Some("s3cret")).await.0, 400);
    assert_eq!(
        http(admin, "POST", "/push?object=../x", Some("s3cret"))
            .await
            .0,
        400
    );
    assert_eq!(
        http(admin, "GET", "/push?object=demo", Some("s3cret"))
            .await
            .0,
        405
    );
    assert_eq!(http(admin, "GET", "/nope", Some("s3cret")).await.0, 404);
    assert_eq!(
        http(admin, "POST", "/push?object=absent", Some("s3cret"))
            .await
            .0,
        404
    );

    // Push: the prefix is cached before anyone asks.
    let (st, body) = http(admin, "POST", "/push?object=demo", Some("s3cret")).await;
    assert_eq!(st, 200, "{body}");
    let (st, body) = http(admin, "GET", "/objects", Some("s3cret")).await;
    assert_eq!(st, 200);
    let v: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(v[0]["object"], "demo");
    assert_eq!(v[0]["prefix_complete"], true, "{body}");
    // The first play is a prefix hit, and the metrics say so.
    let purl = SegueUrl::parse(&format!("segue://localhost:{}/demo", eaddr.port())).unwrap();
    let mut o = segue_client::PlayOptions::new(purl, tls.ca.clone());
    o.pace = false;
    let r = segue_client::play(&o).await;
    assert!(r.ok(), "{r:?}");
    let (_, body) = http(admin, "GET", "/metrics", None).await;
    assert!(
        body.contains("segue_edge_prefix_hits_total 1")
            || body.contains("segue_edge_full_hits_total 1"),
        "{body}"
    );
    assert!(body.contains("segue_edge_misses_total 0"));
    assert!(!body.contains("segue_edge_served_bytes_total 0\n"));
    // Purge drops it.
    assert_eq!(
        http(admin, "POST", "/purge?object=demo", Some("s3cret"))
            .await
            .0,
        200
    );
    assert!(edge.store().objects().is_empty());
    origin.shutdown().await;
}
