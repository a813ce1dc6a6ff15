//! Limits on a real node on loopback: connections per client and in total, streams per
//! connection, and the slowloris cut-offs for control messages and segment requests.

use crate::common;

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use quinn::crypto::rustls::QuicClientConfig;
use segue_net::{TransportLimits, server_endpoint};
use segue_server::node::admission::{Admission, ConnectionLimits, RetryPolicy};
use segue_server::node::{NodeOptions, serve};
use segue_wire::SegueUrl;
use segue_wire::segment::{ResponseFrame, Status, decode_response_frame};

/// A node over the test origin's library with `opts` and `transport`; its address.
fn node(origin: &common::TestOrigin, opts: NodeOptions, transport: TransportLimits) -> SocketAddr {
    let ep = server_endpoint("127.0.0.1:0".parse().unwrap(), &origin.tls, transport).unwrap();
    let addr = ep.local_addr().unwrap();
    tokio::spawn(serve(
        ep,
        Arc::new(origin.source.clone()),
        opts,
        origin.stop_rx(),
    ));
    addr
}

/// A node with `admission` and otherwise default options and transport; its address.
fn admitting(origin: &common::TestOrigin, admission: Arc<Admission>) -> SocketAddr {
    node(
        origin,
        NodeOptions {
            admission,
            ..NodeOptions::default()
        },
        TransportLimits::default(),
    )
}

/// A player's connection (no client certificate) from its own endpoint.
async fn player(
    origin: &common::TestOrigin,
    addr: SocketAddr,
) -> Result<(quinn::Endpoint, quinn::Connection), quinn::ConnectionError> {
    let tls = segue_certs::tls::client_config(&origin.tls.ca, &[segue_wire::ALPN]).unwrap();
    let quic = QuicClientConfig::try_from(tls).unwrap();
    let mut ep = quinn::Endpoint::client("127.0.0.1:0".parse().unwrap()).unwrap();
    ep.set_default_client_config(quinn::ClientConfig::new(Arc::new(quic)));
    let conn = ep.connect(addr, "localhost").unwrap().await?;
    Ok((ep, conn))
}

/// Whether `conn` is served: an OPTIONS on its control stream is answered.
async fn served(conn: &quinn::Connection) -> bool {
    let asked = async {
        let (mut send, mut recv) = conn.open_bi().await?;
        send.write_all(b"OPTIONS segue://localhost/ RTSP/2.0\r\nCSeq: 1\r\n\r\n")
            .await?;
        let mut buf = [0u8; 64];
        let n = recv.read(&mut buf).await?.unwrap_or(0);
        anyhow::Ok(buf[..n].starts_with(b"RTSP/2.0 200"))
    };
    tokio::time::timeout(Duration::from_secs(5), asked)
        .await
        .is_ok_and(|r| r.unwrap_or(false))
}

/// Admission of at most `total` connections, `per_client` from one client, no Retry.
fn at_most(total: usize, per_client: usize) -> Arc<Admission> {
    Admission::new(ConnectionLimits {
        max_connections: total,
        max_per_client: per_client,
        retry: RetryPolicy::Never,
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connections_per_client_and_in_total() {
    let origin = common::origin_with_sample("demo.mp4").await;
    let admission = at_most(100, 2);
    let per_client = admitting(&origin, admission.clone());
    let (_e1, c1) = player(&origin, per_client).await.unwrap();
    let (_e2, c2) = player(&origin, per_client).await.unwrap();
    assert!(served(&c1).await && served(&c2).await);
    // The third from the same address is refused before its handshake.
    let third = player(&origin, per_client).await;
    assert!(
        matches!(third, Err(quinn::ConnectionError::ConnectionClosed(ref c))
            if c.error_code == quinn::TransportErrorCode::CONNECTION_REFUSED),
        "{third:?}"
    );
    // Counted, as /metrics shows them.
    assert_eq!(admission.refused.load(Ordering::Relaxed), 1);
    assert_eq!(admission.held(), 2);
    // A closed connection frees its place.
    c1.close(0u32.into(), b"done");
    let mut again = None;
    for _ in 0..50 {
        tokio::time::sleep(Duration::from_millis(100)).await;
        if let Ok(c) = player(&origin, per_client).await {
            again = Some(c);
            break;
        }
    }
    let (_e3, c3) = again.expect("a freed place is taken again");
    assert!(served(&c3).await);

    // The total, whoever asks.
    let total = admitting(&origin, at_most(1, 10));
    let (_e4, c4) = player(&origin, total).await.unwrap();
    assert!(served(&c4).await);
    assert!(player(&origin, total).await.is_err());
    origin.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_retry_first_then_served() {
    let origin = common::origin_with_sample("demo.mp4").await;
    let admission = Admission::new(ConnectionLimits::with_retry(RetryPolicy::Always));
    let addr = admitting(&origin, admission.clone());
    let (_e, c) = player(&origin, addr).await.unwrap();
    assert!(served(&c).await);
    assert_eq!(admission.retries.load(Ordering::Relaxed), 1);
    origin.shutdown().await;
}

/// A returning player presents the address-validation token its previous connection got
/// (NEW_TOKEN, PROTOCOL.md §2): however often the node asks new clients to prove their
/// address, it pays the Retry's round trip once. With `--no-resume` it keeps no token: a
/// Retry every time.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_returning_player_skips_the_retry() {
    let origin = common::origin_with_sample("demo.mp4").await;
    let admission = Admission::new(ConnectionLimits::with_retry(RetryPolicy::Always));
    let addr = admitting(&origin, admission.clone());
    let url = SegueUrl::parse(&format!("segue://localhost:{}/demo", addr.port())).unwrap();
    let play = |no_resume: bool| {
        let mut o = segue_client::PlayOptions::new(url.clone(), origin.tls.ca.clone());
        o.pace = false;
        o.connect.no_resume = no_resume;
        o
    };
    let retries = || admission.retries.load(Ordering::Relaxed);
    for (no_resume, after) in [(true, 1), (true, 2), (false, 3), (false, 3), (false, 3)] {
        let r = segue_client::play(&play(no_resume)).await;
        assert!(r.ok(), "{}", r.render());
        assert_eq!(retries(), after, "no_resume {no_resume}");
    }
    origin.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn streams_per_connection() {
    let origin = common::origin_with_sample("demo.mp4").await;
    let addr = node(
        &origin,
        NodeOptions::default(),
        TransportLimits {
            max_bidi_streams: 2,
            ..TransportLimits::default()
        },
    );
    let (_e, c) = player(&origin, addr).await.unwrap();
    let mut open = Vec::new();
    for _ in 0..2 {
        let (mut s, r) = c.open_bi().await.unwrap();
        s.write_all(b"x").await.unwrap();
        open.push((s, r));
    }
    // A third waits for the server's permission, which does not come while two are open.
    let third = tokio::time::timeout(Duration::from_millis(500), c.open_bi()).await;
    assert!(third.is_err(), "a third stream was opened");
    origin.shutdown().await;
}

/// A node cutting off requests not complete within 1 s.
fn impatient(origin: &common::TestOrigin) -> SocketAddr {
    node(
        origin,
        NodeOptions {
            request_timeout: Duration::from_secs(1),
            ..NodeOptions::default()
        },
        TransportLimits::default(),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_control_message_is_cut_off() {
    let origin = common::origin_with_sample("demo.mp4").await;
    let addr = impatient(&origin);
    let (_e, c) = player(&origin, addr).await.unwrap();
    let (mut send, mut recv) = c.open_bi().await.unwrap();
    let t0 = Instant::now();
    // A byte every 300 ms: never a whole message.
    let trickle = tokio::spawn(async move {
        for b in b"OPTIONS segue://localhost/ RTSP/2.0\r\nCSeq: 1\r\n" {
            if send.write_all(&[*b]).await.is_err() {
                return;
            }
            tokio::time::sleep(Duration::from_millis(300)).await;
        }
    });
    let answer = tokio::time::timeout(Duration::from_secs(5), recv.read_to_end(4096))
        .await
        .expect("cut off within 5 s")
        .unwrap();
    let text = String::from_utf8_lossy(&answer);
    assert!(
        text.starts_with("RTSP/2.0 408") && text.contains("not complete within 1 s"),
        "{text}"
    );
    assert!(t0.elapsed() < Duration::from_secs(4), "{:?}", t0.elapsed());
    trickle.abort();
    // A prompt client on another connection is served all along.
    let (_e2, c2) = player(&origin, addr).await.unwrap();
    assert!(served(&c2).await);
    origin.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_segment_request_is_cut_off() {
    let origin = common::origin_with_sample("demo.mp4").await;
    let addr = impatient(&origin);
    let (_e, c) = player(&origin, addr).await.unwrap();
    assert!(served(&c).await, "control claimed");
    let (mut send, mut recv) = c.open_bi().await.unwrap();
    // The first bytes of a request, then nothing.
    let req = segue_wire::segment::SegmentRequest::Manifest {
        object: segue_wire::ObjectName::new("demo", 64).unwrap(),
        params: Default::default(),
    }
    .encode();
    send.write_all(&req[..3]).await.unwrap();
    let t0 = Instant::now();
    let data = tokio::time::timeout(Duration::from_secs(5), recv.read_to_end(4096))
        .await
        .expect("cut off within 5 s")
        .unwrap();
    let limits = segue_wire::Limits::default();
    match decode_response_frame(&data, &limits).unwrap() {
        Some((ResponseFrame::Response(h), _)) => {
            assert_eq!(h.status, Status::BadRequest);
            assert!(h.reason.contains("not complete within 1 s"), "{}", h.reason);
        }
        other => panic!("no RESPONSE: {other:?}"),
    }
    assert!(t0.elapsed() < Duration::from_secs(3), "{:?}", t0.elapsed());
    origin.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sessions_per_connection() {
    use segue_wire::control::{Method, Request, Transport};
    let origin = common::origin_with_sample("demo.mp4").await;
    let mut opts = NodeOptions::default();
    opts.sessions.max_sessions = 1;
    let addr = node(&origin, opts, TransportLimits::default());
    let url =
        segue_wire::SegueUrl::parse(&format!("segue://localhost:{}/demo", addr.port())).unwrap();
    let (_ep, _conn, mut control) =
        segue_client::connect(&url, &origin.tls.ca, Duration::from_secs(5))
            .await
            .unwrap();
    let mut statuses = Vec::new();
    for flow_id in [0, 16] {
        let mut setup = Request::new(Method::Setup, Some(url.clone()), control.next_cseq());
        setup.headers.transport = Some(Transport { flow_id });
        statuses.push(control.request(&setup).await.unwrap().status);
    }
    assert_eq!(statuses, vec![200, 503]);
    origin.shutdown().await;
}

/// A client that vanishes (its packets stop: no close) keeps its place only until the idle
/// timeout: then the connection is closed and its place freed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_vanished_client_is_dropped_at_the_idle_timeout() {
    use segue_impair::relay::{RelaySpec, udp};
    let origin = common::origin_with_sample("demo.mp4").await;
    let addr = node(
        &origin,
        NodeOptions {
            admission: at_most(1, 1),
            ..NodeOptions::default()
        },
        TransportLimits {
            idle_timeout: Duration::from_secs(1),
            ..TransportLimits::default()
        },
    );
    // Through a relay that will stop forwarding: the client's packets then never arrive.
    let relay = udp("127.0.0.1:0".parse().unwrap(), addr, RelaySpec::default())
        .await
        .unwrap();
    let (_e, c) = player(&origin, relay.local).await.unwrap();
    assert!(served(&c).await);
    relay.stop().await;
    // The place is held while the server still waits for it...
    assert!(player(&origin, addr).await.is_err());
    // ...and freed by the idle timeout (1 s; keep-alives go unanswered).
    let t0 = Instant::now();
    let mut freed = None;
    while t0.elapsed() < Duration::from_secs(10) {
        tokio::time::sleep(Duration::from_millis(250)).await;
        if let Ok(c) = player(&origin, addr).await {
            freed = Some((c, t0.elapsed()));
            break;
        }
    }
    let ((_e2, c2), after) = freed.expect("the vanished client's place was never freed");
    assert!(served(&c2).await);
    assert!(after < Duration::from_secs(5), "{after:?}");
    origin.shutdown().await;
}
