//! The edge's admin API over real HTTP on loopback: metrics without a token, everything else
//! refused without one; push pre-positions a prefix (the next play is a prefix hit), objects
//! lists it, purge drops it.

use std::sync::atomic::Ordering;
use std::time::Duration;

use segue_server::node::admission::{Admission, ConnectionLimits};

use crate::common;
use segue_wire::SegueUrl;
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};

async fn http(
    addr: std::net::SocketAddr,
    method: &str,
    path: &str,
    token: Option<&str>,
) -> (u16, String) {
    http_body(addr, method, path, token, "").await
}

async fn http_body(
    addr: std::net::SocketAddr,
    method: &str,
    path: &str,
    token: Option<&str>,
    body: &str,
) -> (u16, String) {
    let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
    let auth = token.map_or(String::new(), |t| format!("Authorization: Bearer {t}\r\n"));
    let req = format!(
        "{method} {path} HTTP/1.1\r\nHost: edge\r\n{auth}Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
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
    let origin = common::origin_with_sample("demo.mp4").await;
    let (tls, stop_rx) = (origin.tls.clone(), origin.stop_rx());
    let common::TestEdge {
        edge, addr: eaddr, ..
    } = origin.edge(4_000_000).await;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let admin = listener.local_addr().unwrap();
    // The segue/1 port's admission, as the edge command shares it with the admin API.
    let admission = Admission::new(ConnectionLimits::default());
    admission.retries.fetch_add(3, Ordering::Relaxed);
    admission.refused.fetch_add(2, Ordering::Relaxed);
    let node = segue_server::node::admin::Node::Edge {
        edge: edge.clone(),
        admission,
        hints: segue_server::node::hints::HintSchedule::new(Duration::from_secs(0)),
        name: "edge".into(),
        region: None,
        packets: None,
    };
    tokio::spawn(segue_server::node::admin::serve(
        listener,
        node,
        "s3cret".into(),
        stop_rx.clone(),
    ));

    // Metrics need no token and speak Prometheus.
    let (st, body) = http(admin, "GET", "/metrics", None).await;
    assert_eq!(st, 200);
    assert!(body.contains("segue_edge_misses_total 0"), "{body}");
    assert!(body.contains("# TYPE segue_edge_cache_capacity_bytes gauge"));
    assert!(body.contains("segue_edge_retries_total 3"), "{body}");
    assert!(
        body.contains("segue_edge_connections_refused_total 2"),
        "{body}"
    );
    assert!(body.contains("segue_edge_connections 0"), "{body}");
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
    // `segue edge status` reads the same API.
    let status = segue_server::cli::status::edge_status(admin, Some("s3cret"))
        .await
        .unwrap();
    assert!(status.contains("misses 0"), "{status}");
    assert!(status.lines().any(|l| l.starts_with("demo ")), "{status}");
    let status = segue_server::cli::status::edge_status(admin, None)
        .await
        .unwrap();
    assert!(status.contains("give --admin-token"), "{status}");
    assert!(
        segue_server::cli::status::edge_status(admin, Some("wrong"))
            .await
            .is_err()
    );
    // Purge drops it.
    assert_eq!(
        http(admin, "POST", "/purge?object=demo", Some("s3cret"))
            .await
            .0,
        200
    );
    assert!(edge.store().objects().is_empty());

    // Hints: token needed, bad ones refused with the reason, ones for other edges ignored.
    let hint = r#"[{"object": "demo", "in_s": 3600, "viewers": 9},
                   {"object": "demo", "in_s": 60, "edges": ["edge-elsewhere"]}]"#;
    assert_eq!(http_body(admin, "POST", "/hints", None, hint).await.0, 401);
    let (st, body) = http_body(admin, "POST", "/hints", Some("s3cret"), "{\"object\": 1}").await;
    assert_eq!(st, 400, "{body}");
    let (st, body) = http_body(admin, "POST", "/hints", Some("s3cret"), hint).await;
    assert_eq!(st, 200, "{body}");
    let v: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(
        (v["accepted"].as_u64(), v["not_for_this_node"].as_u64()),
        (Some(1), Some(1))
    );
    let (st, body) = http(admin, "GET", "/hints", Some("s3cret")).await;
    assert_eq!(st, 200);
    let v: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(v.as_array().unwrap().len(), 1, "{body}");
    assert_eq!(v[0]["object"], "demo");
    assert_eq!(v[0]["viewers"], 9);
    assert_eq!(v[0]["state"], "pending");
    let big = format!("[{}]", vec![r#"{"object":"a","in_s":1}"#; 4000].join(","));
    assert_eq!(
        http_body(admin, "POST", "/hints", Some("s3cret"), &big)
            .await
            .0,
        413
    );
    origin.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn origin_admin_api_pushes_to_an_edge() {
    let origin = common::origin_with_sample("demo.mp4").await;
    let common::TestEdge {
        edge, addr: eaddr, ..
    } = origin.edge(4_000_000).await;
    let dist = segue_server::origin::distribute::Distributor::new(
        origin.source.clone(),
        segue_net::client_endpoint(&origin.tls, Default::default()).map_err(std::sync::Arc::new),
        4_000_000,
        vec![],
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let admin = listener.local_addr().unwrap();
    let node = segue_server::node::admin::Node::Origin {
        dist,
        admission: Admission::new(ConnectionLimits::default()),
        hints: segue_server::node::hints::HintSchedule::new(Duration::from_secs(0)),
    };
    tokio::spawn(segue_server::node::admin::serve(
        listener,
        node,
        "t".into(),
        origin.stop_rx(),
    ));

    let (st, body) = http(admin, "GET", "/metrics", None).await;
    assert_eq!(st, 200);
    assert!(body.contains("segue_origin_objects 1"), "{body}");
    let (_, body) = http(admin, "GET", "/objects", Some("t")).await;
    let v: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(v[0]["object"], "demo");
    assert!(v[0]["segments"].as_u64().unwrap() > 2);
    // No edge configured or given: a clear 400; an unknown object: 404.
    assert_eq!(
        http(admin, "POST", "/push?object=demo", Some("t")).await.0,
        400
    );
    let edge_q = format!("edge=segue://localhost:{}", eaddr.port());
    let (st, _) = http(
        admin,
        "POST",
        &format!("/push?object=nope&{edge_q}"),
        Some("t"),
    )
    .await;
    assert_eq!(st, 404);
    let (st, body) = http(
        admin,
        "POST",
        &format!("/push?object=demo&{edge_q}"),
        Some("t"),
    )
    .await;
    assert_eq!(st, 200, "{body}");
    assert!(body.contains("segments pushed"), "{body}");
    assert!(edge.store().objects()[0].prefix_complete);
    assert_eq!(edge.snapshot().segments_from_origin, 0);
    let (_, body) = http(admin, "GET", "/metrics", None).await;
    assert!(body.contains("segue_origin_pushes_total 1"), "{body}");
    assert_eq!(
        http(admin, "POST", "/purge?object=demo", Some("t")).await.0,
        404
    );
    origin.shutdown().await;
}

/// A purge drops the object from every tier the edge keeps (issue 21): the next play is a
/// miss served from the origin again, every segment fetched anew (a purge that left the
/// memory tier served it from memory, and never refilled the disk), and the disk holds the
/// object again after it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn purge_drops_every_tier() {
    let origin = common::origin_with_sample("demo.mp4").await;
    let admin = std::net::SocketAddr::from(([127, 0, 0, 1], common::process::free_port()));
    let e = origin
        .edge_with("edge", |c| {
            c.admin.admin = Some(admin);
            c.admin.admin_token = Some("t".into());
        })
        .await;
    let name = segue_wire::ObjectName::new("demo", 64).unwrap();
    let play = || async {
        let url = SegueUrl::parse(&format!("segue://localhost:{}/demo", e.addr.port())).unwrap();
        let mut o = segue_client::play::PlayOptions::new(url, origin.tls.ca.clone());
        o.pace = false;
        let r = segue_client::play::play(&o).await;
        assert!(r.ok() && r.hash_ok, "{}", r.render());
    };
    let all_on_disk = || async {
        let m = e.edge.store().manifest(&name);
        for _ in 0..100 {
            if let Some(m) = &m
                && e.edge.store().count_from(m, 0) == m.segments.len()
            {
                return m.segments.len() as u64;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!("the object is not all on disk");
    };
    play().await;
    let segments = all_on_disk().await;
    let fetched = e.edge.snapshot().segments_from_origin;
    assert_eq!(fetched, segments);

    let (st, body) = http(admin, "POST", "/purge?object=demo", Some("t")).await;
    assert_eq!(st, 200, "{body}");
    assert!(e.edge.store().objects().is_empty());
    assert!(e.edge.store().manifest(&name).is_none());

    play().await;
    let stats = e.edge.stats();
    assert_eq!(
        stats.misses.load(Ordering::Relaxed),
        2,
        "the play after a purge"
    );
    assert_eq!(
        e.edge.snapshot().segments_from_origin,
        2 * segments,
        "every segment fetched from the origin again, none served from memory"
    );
    assert_eq!(all_on_disk().await, segments, "the disk refilled");
    origin.shutdown().await;
}
