//! Pre-positioning on loopback, with real origin and edge servers: the origin pushes a prefix
//! (PROTOCOL.md §8.7) and the first play is a prefix hit with nothing fetched; the receiver
//! checks what it is pushed; a hint makes the edge pull the prefix before the hint's time.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use bytes::Bytes;
use segue_net::client_endpoint;
use segue_server::clock::unix_now;
use segue_server::edge::EdgeOptions;
use segue_server::edge::store::Store;
use segue_server::node::hints::{HintSchedule, HintState};
use segue_server::node::push::{self, PushError};
use segue_server::node::source::{Offer, Source, SourceError};
use segue_server::node::upstream::Upstream;
use segue_server::origin::distribute::Distributor;
use segue_server::origin::source::LibrarySource;
use segue_server::placement::hint::parse_json;
use segue_wire::segment::{Manifest, Status};
use segue_wire::{ObjectName, SegueUrl};

use crate::common;

async fn play_case(origin: &common::TestOrigin, edge: &common::TestEdge, object: &str) {
    let u = SegueUrl::parse(&format!("{}{object}", edge.url)).unwrap();
    let mut o = segue_client::PlayOptions::new(u, origin.tls.ca.clone());
    o.pace = false;
    let r = segue_client::play(&o).await;
    assert!(r.ok(), "{r:?}");
}

/// An edge with default options (no pushes), on its own cache directory: its URL.
async fn start_closed_edge(origin: &common::TestOrigin) -> SegueUrl {
    origin.edge_with("closed", |_| {}).await.url
}

/// The status a refused push got (panics on any other outcome).
fn refused(r: Result<push::Pushed, PushError>) -> (Status, String) {
    match r {
        Err(PushError::Refused { status, reason }) => (status, reason),
        other => panic!("expected a refusal, got {other:?}"),
    }
}

fn demo() -> ObjectName {
    ObjectName::new("demo", 64).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn origin_push_positions_a_prefix_and_the_first_play_is_a_prefix_hit() {
    let origin = common::origin_with_sample("demo.mp4").await;
    let e = origin.edge(4_000_000).await;
    let dist = Distributor::new(
        origin.source.clone(),
        client_endpoint(&origin.tls, Default::default()).map_err(std::sync::Arc::new),
        4_000_000,
        vec![],
    );
    let m = origin.source.manifest(&demo()).await.unwrap();
    let prefix = (0..m.segments.len())
        .take_while(|&i| i == 0 || m.segments[i].start_us < 4_000_000)
        .count();
    assert!(prefix >= 2 && prefix < m.segments.len(), "{prefix}");

    let p = dist.push(&demo(), &e.url, Some(100), None).await.unwrap();
    assert_eq!(p.stored, prefix);
    assert!(!p.not_needed);
    let s = e.edge.snapshot();
    assert_eq!(s.segments_pushed, prefix as u64);
    // The edge fetched the manifest from its origin (its own trust anchor), no segment.
    assert_eq!(s.segments_from_origin, 0);
    assert_eq!(s.manifests_from_origin, 1);
    let objects = e.edge.store().objects();
    assert!(objects[0].prefix_complete, "{objects:?}");
    // Pushed viewers count as requests (anticipated demand).
    assert!(objects[0].request_rate > 0.0);

    // Pushing again: the edge holds it all and says so; nothing is sent.
    let again = dist.push(&demo(), &e.url, None, None).await.unwrap();
    assert!(again.not_needed);
    assert_eq!(e.edge.snapshot().segments_pushed, prefix as u64);
    assert_eq!(dist.stats.pushes.load(Ordering::Relaxed), 2);

    play_case(&origin, &e, "demo").await;
    let s = e.edge.snapshot();
    assert_eq!((s.prefix_hits, s.misses), (1, 0), "{s:?}");
    origin.shutdown().await;
}

/// A source that corrupts one segment it pushes.
struct Corrupting(LibrarySource);

impl Source for Corrupting {
    async fn manifest(&self, name: &ObjectName) -> Result<Arc<Manifest>, SourceError> {
        self.0.manifest(name).await
    }
    async fn segment(&self, m: &Arc<Manifest>, i: usize) -> Result<Bytes, SourceError> {
        let b = self.0.segment(m, i).await?;
        if i == 1 {
            let mut v = b.to_vec();
            v[10] ^= 0xff;
            return Ok(Bytes::from(v));
        }
        Ok(b)
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_receiver_checks_what_it_is_pushed() {
    let origin = common::origin_with_sample("demo.mp4").await;
    let e = origin.edge(4_000_000).await;
    let ep = client_endpoint(&origin.tls, Default::default()).unwrap();
    // A node connection: stream 0 claimed for control (Upstream does that), exchanges after.
    let node_conn = |url: SegueUrl| {
        let ep = ep.clone();
        async move {
            Upstream::new(ep, url, Duration::from_secs(5))
                .connection()
                .await
                .unwrap()
        }
    };
    let conn = node_conn(e.url.clone()).await;
    let m = origin.source.manifest(&demo()).await.unwrap();
    let offer = Offer {
        first: 0,
        count: 3,
        viewers: None,
        deadline_ms: None,
    };

    // A corrupted segment is refused and never stored; the good one before it is kept.
    let corrupt = Corrupting(origin.source.clone());
    let (status, reason) = refused(push::offer(&conn, &corrupt, &m, offer).await);
    assert_eq!(status, Status::BadRequest);
    // Caught before any of its bytes are used: its chunk hashes (computed by the pusher
    // from the corrupted bytes) do not match the edge's manifest's chunk root.
    assert!(reason.contains("segment 1: the chunk hashes"), "{reason}");
    assert!(e.edge.store().has(&m, 0));
    assert!(!e.edge.store().has(&m, 1));

    // A manifest the edge's origin does not have (another revision): stale, nothing stored.
    let mut other = (*m).clone();
    other.revision += 1;
    let stale = push::offer(&conn, &origin.source, &Arc::new(other), offer).await;
    assert_eq!(refused(stale).0, Status::StaleRevision);
    // Out of range.
    let far = Offer {
        first: m.segments.len(),
        ..offer
    };
    let far = push::offer(&conn, &origin.source, &m, far).await;
    assert_eq!(refused(far).0, Status::RangeNotSatisfiable);
    // The honest push then fills in only what is missing (1 and 2).
    let p = push::offer(&conn, &origin.source, &m, offer).await.unwrap();
    assert_eq!(p.stored, 2);
    assert!((0..3).all(|i| e.edge.store().has(&m, i)));

    // An origin takes no pushes.
    let oconn =
        node_conn(SegueUrl::parse(&format!("segue://localhost:{}/", origin.addr.port())).unwrap())
            .await;
    let to_origin = push::offer(&oconn, &origin.source, &m, offer).await;
    assert_eq!(refused(to_origin).0, Status::Unauthorized);
    // Nor does an edge that was not told to.
    let closed = start_closed_edge(&origin).await;
    let cconn = node_conn(closed).await;
    let (status, reason) = refused(push::offer(&cconn, &origin.source, &m, offer).await);
    assert_eq!(status, Status::Unauthorized);
    assert!(reason.contains("--accept-pushes"), "{reason}");
    origin.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hint_prepositions_the_prefix_before_its_time() {
    let origin = common::origin_with_sample("demo.mp4").await;
    let e = origin.edge(4_000_000).await;
    // Viewers expected in 3 s; positioning starts 2 s before.
    let hints = HintSchedule::new(Duration::from_secs(2));
    let at = unix_now() + 3.0;
    let mut h = parse_json(br#"{"object": "demo", "in_s": 3, "viewers": 40}"#, at - 3.0).unwrap();
    assert!(h[0].applies_to("edge", None));
    hints.add(std::mem::take(&mut h));
    let (stop, stop_rx) = tokio::sync::watch::channel(false);
    let edge = e.edge.clone();
    tokio::spawn(hints.clone().run(
        move |h| {
            let edge = edge.clone();
            async move { edge.anticipate(&h).await }
        },
        stop_rx,
    ));
    // Nothing happens before the lead...
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(e.edge.store().objects().is_empty());
    assert_eq!(hints.list()[0].state, HintState::Pending);
    // ...and the prefix is in before the viewers' time.
    loop {
        if matches!(hints.list()[0].state, HintState::Done(_)) {
            break;
        }
        assert!(
            unix_now() < at,
            "not positioned by the hint's time: {:?}",
            hints.list()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let objects = e.edge.store().objects();
    assert!(objects[0].prefix_complete, "{objects:?}");
    assert!(unix_now() < at);
    let fetched = e.edge.snapshot().segments_from_origin;
    assert_eq!(fetched as usize, objects[0].prefix_segments);

    // The first request is a full prefix hit.
    while unix_now() < at {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    play_case(&origin, &e, "demo").await;
    let s = e.edge.snapshot();
    assert_eq!((s.prefix_hits, s.misses), (1, 0), "{s:?}");
    let _ = stop.send(true);
    origin.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn prefixes_grow_when_the_origin_link_worsens() {
    use segue_impair::impair::LinkSpec;
    use segue_impair::relay::{self, RelaySpec};
    let origin = common::origin_with_sample("demo.mp4").await;
    // The origin link: fast, then from 3 s on 100 kbit/s (under half the sample's bitrate).
    let down = LinkSpec {
        delay_ms: 5.0,
        change_at_s: 3.0,
        then: Some(Box::new(LinkSpec {
            delay_ms: 20.0,
            rate_kbps: 100,
            queue_bytes: 32 * 1024,
            ..LinkSpec::default()
        })),
        ..LinkSpec::default()
    };
    let spec = RelaySpec {
        up: LinkSpec::parse_kv("delay_ms=5").unwrap(),
        down,
        seed: 1,
    };
    let r = relay::udp("127.0.0.1:0".parse().unwrap(), origin.addr, spec)
        .await
        .unwrap();
    let store = Store::open(&origin.dir.path().join("edge"), 1 << 30, 4_000_000).unwrap();
    let url = SegueUrl::parse(&format!("segue://localhost:{}/", r.local.port())).unwrap();
    let opts = EdgeOptions {
        probe_after: Some(Duration::from_secs(2)),
        ..EdgeOptions::default()
    };
    // The edge's source alone (no sessions here), with a short probe period.
    let client = client_endpoint(&origin.tls, Default::default()).unwrap();
    let up = Upstream::new(client, url, segue_server::node::upstream::DEFAULT_TIMEOUT);
    let edge = segue_server::edge::EdgeSource::new(store, up, opts);
    // The configured 4 s prefix (two segments), fetched over the fast link.
    assert_eq!(edge.warm(&demo()).await.unwrap(), 2);
    let before = edge.store().objects()[0].clone();
    assert!((before.prefix_s - 4.0).abs() < 1e-9 && before.prefix_complete);
    tokio::spawn(edge.clone().upkeep(origin.stop_rx()));
    // The idle edge probes the link, sees it slow, and its required prefix grows
    // (L = 12 s, B/r < 0.5: about 12 * 0.5 + 1 s margin, over 7 s), then gets filled.
    let t = std::time::Instant::now();
    let grown = loop {
        let o = edge.store().objects()[0].clone();
        if o.prefix_s >= 7.0 && o.prefix_complete {
            break o;
        }
        assert!(
            t.elapsed() < Duration::from_secs(60),
            "prefix did not grow: {o:?}, link {:?}",
            edge.upstream().link_estimate(4)
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    assert!(grown.prefix_segments > before.prefix_segments, "{grown:?}");
    // Measured usage is saved by the upkeep's end.
    let _ = origin.stop.send(true);
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(origin.dir.path().join("edge/usage.json").is_file());
    r.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_corrupted_cached_segment_is_refetched_not_served() {
    let origin = common::origin_with_sample("demo.mp4").await;
    let first = origin.edge(4_000_000).await;
    assert_eq!(first.edge.warm(&demo()).await.unwrap(), 2);
    // Damage segment 0 on disk, then start a second edge over the same cache directory (a
    // restart: nothing in memory).
    let seg = origin
        .dir
        .path()
        .join("edge/objects/demo/.segue/seg-000000");
    let mut bytes = std::fs::read(&seg).unwrap();
    bytes[100] ^= 0x55;
    std::fs::write(&seg, &bytes).unwrap();
    let e = origin.edge(4_000_000).await;
    play_case(&origin, &e, "demo").await; // asserts byte-exact (hashes against the manifest)
    let s = e.edge.snapshot();
    assert_eq!(s.prefix_hits, 1, "{s:?}");
    assert!(
        s.segments_from_origin >= 1,
        "the bad segment was not refetched: {s:?}"
    );
    // The file is whole again.
    let m = origin.source.manifest(&demo()).await.unwrap();
    let fixed = std::fs::read(&seg).unwrap();
    assert!(segue_server::node::source::checksum_ok(&m, 0, &fixed));
    origin.shutdown().await;
}

/// Polls `edge`'s pool until a connection other than `not` is open, for at most `within`.
async fn pooled_other_than(edge: &common::TestEdge, not: Option<usize>, within: Duration) -> usize {
    let t = std::time::Instant::now();
    loop {
        if let Some(id) = edge.edge.upstream().pooled().await
            && Some(id) != not
        {
            return id;
        }
        assert!(
            t.elapsed() < within,
            "no origin connection within {within:?}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test]
async fn upkeep_opens_the_origin_connection_before_the_first_miss() {
    let origin = common::origin_with_sample("demo.mp4").await;
    let edge = origin.edge(4_000_000).await;
    assert_eq!(edge.edge.upstream().pooled().await, None);
    tokio::spawn(edge.edge.clone().upkeep(origin.stop_rx()));
    // Open before any request: the first miss pays no handshake to the origin.
    let first = pooled_other_than(&edge, None, Duration::from_secs(3)).await;
    // Lost (the origin closed it, say): open again within an upkeep period, still unasked.
    edge.edge
        .upstream()
        .connection()
        .await
        .unwrap()
        .close(0u32.into(), b"test");
    let second = pooled_other_than(&edge, Some(first), Duration::from_secs(4)).await;
    assert_ne!(first, second);
    // The warm connection serves: this play is a miss, fetched over it.
    play_case(&origin, &edge, "demo").await;
    assert_eq!(edge.edge.stats().misses.load(Ordering::Relaxed), 1);
    assert_eq!(edge.edge.upstream().pooled().await, Some(second));
    origin.shutdown().await;
}

#[tokio::test]
async fn a_failed_warm_up_sets_no_backoff() {
    let origin = common::origin_with_sample("demo.mp4").await;
    // Nothing listens there: the warm-up fails after its timeout.
    let url = SegueUrl::parse(&format!(
        "segue://localhost:{}/",
        common::process::free_port()
    ))
    .unwrap();
    let ep = client_endpoint(&origin.tls, Default::default()).unwrap();
    let up = Upstream::new(ep, url, Duration::from_millis(300));
    assert!(!up.warm().await);
    // A request after it dials on its own (waiting out its timeout again) rather than being
    // refused at once by a backoff the warm-up would have set.
    let t = std::time::Instant::now();
    assert!(up.connection().await.is_err());
    assert!(
        t.elapsed() >= Duration::from_millis(250),
        "{:?}",
        t.elapsed()
    );
    // Its failure does set one: the next request is refused at once.
    let t = std::time::Instant::now();
    assert!(up.connection().await.is_err());
    assert!(
        t.elapsed() < Duration::from_millis(100),
        "{:?}",
        t.elapsed()
    );
    origin.shutdown().await;
}
