//! `--congestion` reaches every endpoint: the player's connection, the nodes' accepted
//! connections (counted by controller in /metrics), the connections a node opens (its
//! Dialer, which the edge and origin commands build with the same flag), and its HTTP/3 file
//! endpoint. Each is read back
//! from the connection itself (quinn's controller), not from the configuration.

use crate::common;

use std::time::Duration;

use common::process::{free_port, media_with, origin_args, segue, tls_args};
use segue_client::ConnectOptions;
use segue_net::NodeTls;
use segue_net::{Congestion, TransportSettings, transport::controller_of};
use segue_wire::SegueUrl;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn congestion_reaches_every_endpoint() {
    let dir = tempfile::tempdir().unwrap();
    let tls = NodeTls::dev(&dir.path().join("certs")).unwrap();
    let media = media_with(dir.path(), "demo.mp4");
    let p = |p: &std::path::Path| p.display().to_string();
    let (oport, eport, oadmin, eadmin) = (free_port(), free_port(), free_port(), free_port());
    let mut args = origin_args(&media, &dir.path().join("origin"), oport, &tls);
    args.extend(
        [
            "--admin",
            &format!("127.0.0.1:{oadmin}"),
            "--admin-token",
            "t",
        ]
        .into_iter()
        .chain(["--congestion", "newreno"])
        .map(String::from),
    );
    let _origin = segue(&args, &dir.path().join("origin.log"));
    let mut args = vec![
        "edge".to_string(),
        "--origin".into(),
        format!("segue://localhost:{oport}/"),
        "--cache-dir".into(),
        p(&dir.path().join("edge")),
        "--listen".into(),
        format!("127.0.0.1:{eport}"),
        "--admin".into(),
        format!("127.0.0.1:{eadmin}"),
        "--admin-token".into(),
        "t".into(),
        "--congestion".into(),
        "cubic".into(),
    ];
    args.extend(tls_args(&tls));
    let _edge = segue(&args, &dir.path().join("edge.log"));

    // The player, with its own controller: a play through the edge (a miss: the edge
    // connects to the origin).
    let url = SegueUrl::parse(&format!("segue://localhost:{eport}/demo")).unwrap();
    let mut played = false;
    for _ in 0..100 {
        let mut o = segue_client::PlayOptions::new(url.clone(), tls.ca.clone());
        o.pace = false;
        o.connect.transport = TransportSettings::with(Congestion::NewReno);
        if segue_client::play(&o).await.ok() {
            played = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(
        played,
        "no play through the edge (logs in {:?})",
        dir.path()
    );
    let opts = ConnectOptions {
        transport: TransportSettings::with(Congestion::Bbr),
        ..Default::default()
    };
    let (_ep, conn, _c) = segue_client::connect_with(&url, &tls.ca, Duration::from_secs(5), &opts)
        .await
        .unwrap();
    assert_eq!(controller_of(&conn), Some(Congestion::Bbr), "the player's");

    // The edge's accepted connections run its --congestion (cubic), the origin's its own
    // (newreno), whatever the other side runs.
    let e = common::process::admin_metrics(eadmin).await;
    assert!(
        e.contains("segue_edge_connections_established_total{controller=\"cubic\"}")
            && !e.contains("segue_edge_connections_established_total{controller=\"cubic\"} 0"),
        "{e}"
    );
    assert!(
        e.contains("segue_edge_connections_established_total{controller=\"bbr\"} 0"),
        "{e}"
    );
    let o = common::process::admin_metrics(oadmin).await;
    assert!(
        !o.contains("connections_established_total{controller=\"newreno\"} 0")
            && o.contains("connections_established_total{controller=\"newreno\"}"),
        "{o}"
    );
    assert!(
        o.contains("connections_established_total{controller=\"cubic\"} 0"),
        "{o}"
    );

    // A node's outgoing connections run what its Dialer was built with.
    for cc in Congestion::ALL {
        let dialer = segue_net::client_endpoint(&tls, TransportSettings::with(cc)).unwrap();
        let conn = dialer
            .connect(format!("127.0.0.1:{oport}").parse().unwrap(), "localhost")
            .unwrap()
            .await
            .unwrap();
        assert_eq!(controller_of(&conn), Some(cc), "a dialer built for {cc}");
    }
}

/// A node's HTTP/3 file endpoint (`--files-listen`, `segue hq serve --congestion`) runs the
/// transport it is given, read back from the connection it accepts.
#[tokio::test]
async fn the_file_endpoint_runs_the_transport_it_is_given() {
    let dir = tempfile::tempdir().unwrap();
    let tls = NodeTls::dev(&dir.path().join("certs")).unwrap();
    for cc in Congestion::ALL {
        let srv = segue_server::files::hq::server_endpoint(
            "127.0.0.1:0".parse().unwrap(),
            &tls.cert,
            &tls.key,
        )
        .unwrap()
        .with_transport(TransportSettings::with(cc));
        let addr = srv.endpoint.local_addr().unwrap();
        let client_tls = segue_certs::tls::client_config(&tls.ca, &[b"hq-interop"]).unwrap();
        let quic = quinn::crypto::rustls::QuicClientConfig::try_from(client_tls).unwrap();
        let mut client = quinn::Endpoint::client("127.0.0.1:0".parse().unwrap()).unwrap();
        client.set_default_client_config(quinn::ClientConfig::new(std::sync::Arc::new(quic)));
        let connecting = client.connect(addr, "localhost").unwrap();
        let (accepted, dialed) = tokio::join!(
            async { srv.endpoint.accept().await.unwrap().await.unwrap() },
            connecting
        );
        dialed.unwrap();
        assert_eq!(
            controller_of(&accepted),
            Some(cc),
            "a file endpoint given {cc}"
        );
    }
}

/// `segue-lab hq get --congestion` (the interop client) dials with the transport it is given,
/// read back from its own connection.
#[tokio::test]
async fn the_hq_client_runs_the_transport_it_is_given() {
    let dir = tempfile::tempdir().unwrap();
    let tls = NodeTls::dev(&dir.path().join("certs")).unwrap();
    let srv = segue_server::files::hq::server_endpoint(
        "127.0.0.1:0".parse().unwrap(),
        &tls.cert,
        &tls.key,
    )
    .unwrap();
    let addr = srv.endpoint.local_addr().unwrap();
    tokio::spawn(async move {
        // Accept and hold the connections until the test ends.
        let mut held = Vec::new();
        while let Some(inc) = srv.endpoint.accept().await {
            if let Ok(c) = inc.await {
                held.push(c);
            }
        }
    });
    for cc in Congestion::ALL {
        let opts = segue_interop::ClientOptions {
            transport: Some(TransportSettings::with(cc)),
            ..Default::default()
        };
        let client = segue_interop::client_endpoint(&tls.ca, &opts).unwrap();
        let conn = client.connect(addr, "localhost", &opts).await.unwrap();
        assert_eq!(controller_of(&conn), Some(cc), "an hq client given {cc}");
    }
}
