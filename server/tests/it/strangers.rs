//! What a stranger (a player's connection, no node certificate, no play) can make an edge
//! do (issue 21): a manifest read pulls no prefix from the origin, and a name the origin
//! does not have costs one origin round trip, not one per request.

use crate::common;

use std::sync::atomic::Ordering;
use std::time::Duration;

use segue_wire::segment::{Params, ResponseFrame, SegmentRequest, Status, decode_response_frame};
use segue_wire::{ObjectName, SegueUrl};

/// A player's connection to `e` (its control stream claimed, as a player's is): the
/// endpoint, the connection and the control client, to be held as long as it is used.
async fn stranger(
    origin: &common::TestOrigin,
    e: &common::TestEdge,
) -> (
    quinn::Endpoint,
    quinn::Connection,
    segue_client::session::ControlClient,
) {
    let url = SegueUrl::parse(&format!("segue://localhost:{}/", e.addr.port())).unwrap();
    segue_client::session::connect(&url, &origin.tls.ca, Duration::from_secs(5))
        .await
        .unwrap()
}

/// A MANIFEST exchange on `conn`: its status.
async fn manifest(conn: &quinn::Connection, object: &str) -> Status {
    let req = SegmentRequest::Manifest {
        object: ObjectName::new(object, 64).unwrap(),
        params: Params::default(),
    };
    let (mut send, mut recv) = conn.open_bi().await.unwrap();
    send.write_all(&req.encode()).await.unwrap();
    send.finish().unwrap();
    let data = recv.read_to_end(1 << 22).await.unwrap();
    match decode_response_frame(&data, &segue_wire::Limits::default()).unwrap() {
        Some((ResponseFrame::Response(h), _)) => h.status,
        other => panic!("no RESPONSE: {other:?}"),
    }
}

/// MANIFEST requests alone (3 objects' worth, read again and again) fetch manifests and
/// nothing else: the edge's upkeep refills prefixes of objects played or anticipated only.
/// (It refilled every object whose manifest it held: 3 requests pulled 6.6 MB of prefixes.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_manifest_read_pulls_no_prefix() {
    let origin = common::origin_with_samples(&["demo.mp4", "long.mp4", "hd.mp4"]).await;
    let e = origin.edge_with("edge", |_| {}).await;
    let (_ep, conn, _control) = stranger(&origin, &e).await;
    for _ in 0..3 {
        for object in ["demo", "long", "hd"] {
            assert_eq!(manifest(&conn, object).await, Status::Ok);
        }
    }
    // Three upkeep rounds (every 2 s).
    tokio::time::sleep(Duration::from_millis(6500)).await;
    let s = e.edge.snapshot();
    assert_eq!(s.manifests_from_origin, 3);
    assert_eq!(
        s.segments_from_origin, 0,
        "segments fetched for manifest reads"
    );
    assert_eq!(e.edge.store().used(), 0);
    origin.shutdown().await;
}

/// A name the origin does not have is asked of it once; asked again within 10 s, the edge
/// answers "not found" itself (each request cost an origin round trip).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_missing_name_costs_one_origin_round_trip() {
    let origin = common::origin_with_sample("demo.mp4").await;
    let e = origin.edge_with("edge", |_| {}).await;
    let (_ep, conn, _control) = stranger(&origin, &e).await;
    for _ in 0..20 {
        assert_eq!(manifest(&conn, "nope").await, Status::NotFound);
    }
    let stats = e.edge.stats();
    assert_eq!(stats.not_found_cached.load(Ordering::Relaxed), 19);
    // Other names are asked as before; a real object is unaffected.
    assert_eq!(manifest(&conn, "nope2").await, Status::NotFound);
    assert_eq!(stats.not_found_cached.load(Ordering::Relaxed), 19);
    assert_eq!(manifest(&conn, "demo").await, Status::Ok);
    origin.shutdown().await;
}
