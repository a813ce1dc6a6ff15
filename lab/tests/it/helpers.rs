//! Helpers on loopback: three real edges cooperating over the segment protocol, with real
//! adverts, in front of a real origin.

use crate::common;

use std::sync::atomic::Ordering;
use std::time::Duration;

use segue_lab::loopback;
use segue_net::NodeTls;
use segue_server::config::EdgeConfig;
use segue_server::cooperation::PeerConf;
use segue_server::cooperation::scope::{Periods, RttLimits, Scope};
use segue_server::edge::EdgeSource;
use segue_server::edge::node::Edge;
use segue_server::node::source::Source;
use segue_wire::{ObjectName, SegueUrl};

const NAMES: [&str; 3] = ["h1", "h2", "h3"];

struct Net {
    origin: common::TestOrigin,
    helpers: Vec<EdgeSource>,
    urls: Vec<SegueUrl>,
    /// Each helper's stop signal (serving and advertising).
    stops: Vec<tokio::sync::watch::Sender<bool>>,
}

/// Three helpers, each a peer of the other two (local scope, adverts every 200 ms), over
/// one origin serving `long.mp4` (30 segments of 2 s). Each sends a whole object at once.
async fn three_helpers() -> Net {
    helpers_with(Some(Scope::Local)).await
}

/// [`three_helpers`] with every peer's scope `scope` (`None`: derived).
async fn helpers_with(scope: Option<Scope>) -> Net {
    let origin = common::origin_with_sample("long.mp4").await;
    let origin_url =
        SegueUrl::parse(&format!("segue://localhost:{}/", origin.addr.port())).unwrap();
    // Each helper presents a certificate for its name (mTLS: adverts are bound to it).
    let certs = origin.tls.ca.parent().unwrap();
    let tls: Vec<NodeTls> = NAMES
        .iter()
        .map(|n| NodeTls::dev_node(certs, n).unwrap())
        .collect();
    let eps: Vec<quinn::Endpoint> = tls.iter().map(|t| loopback::endpoint(t).unwrap()).collect();
    let urls: Vec<SegueUrl> = eps
        .iter()
        .map(|e| {
            SegueUrl::parse(&format!(
                "segue://localhost:{}/",
                e.local_addr().unwrap().port()
            ))
            .unwrap()
        })
        .collect();
    let mut helpers = Vec::new();
    let mut stops = Vec::new();
    for (k, ep) in eps.into_iter().enumerate() {
        let (stop, stop_rx) = tokio::sync::watch::channel(false);
        let peers = (0..3)
            .filter(|&j| j != k)
            .map(|j| PeerConf {
                name: NAMES[j].into(),
                url: urls[j].clone(),
                scope,
            })
            .collect();
        let mut c = EdgeConfig::new(&origin_url).unwrap();
        c.name = NAMES[k].into();
        c.peers = peers;
        c.advert_periods = Periods::parse("0.2,1,5,20").unwrap();
        // Loopback in a debug build on a busy 2-core box measures up to ~5 ms.
        c.scope_rtt_ms = RttLimits::parse("50,100,200").unwrap();
        c.cache_dir = origin.dir.path().join(NAMES[k]);
        c.cache_size = 1 << 30;
        c.prefix_secs = 2;
        c.send_ahead_ms = 3_600_000;
        c.set_tls(&tls[k]);
        let node = Edge::start_on(c, ep, stop_rx).await.unwrap();
        let edge = node.source().clone();
        tokio::spawn(node.wait());
        helpers.push(edge);
        stops.push(stop);
    }
    Net {
        origin,
        helpers,
        urls,
        stops,
    }
}

fn long() -> ObjectName {
    ObjectName::new("long", 1024).unwrap()
}

async fn play(net: &Net, k: usize) -> segue_client::Report {
    let u = SegueUrl::parse(&format!("{}long", net.urls[k])).unwrap();
    let mut o = segue_client::PlayOptions::new(u, net.origin.tls.ca.clone());
    o.pace = false;
    segue_client::play(&o).await
}

/// Waits until every helper has heard a snapshot from both its peers.
async fn adverts_exchanged(net: &Net) {
    for _ in 0..100 {
        if net.helpers.iter().all(|h| {
            h.helpers()
                .unwrap()
                .report()
                .iter()
                .all(|p| p.holds.is_some())
        }) {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("helpers never heard each other's adverts");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_play_is_fed_by_several_helpers_and_the_origin_byte_exact() {
    let net = three_helpers().await;
    adverts_exchanged(&net).await;
    let m = net.helpers[1].manifest(&long()).await.unwrap();
    let n = m.segments.len();
    // h2 and h3 play the object first: between them (collective storage) they keep it.
    for k in [1, 2] {
        let r = play(&net, k).await;
        assert!(r.ok(), "h{}: {r:?}", k + 1);
    }
    let kept = |k: usize| net.helpers[k].store().count_from(&m, 0);
    assert!(
        kept(1) < n && kept(2) < n,
        "each keeps a part: {} {}",
        kept(1),
        kept(2)
    );
    // Adverts carry what they hold to h1.
    tokio::time::sleep(Duration::from_millis(600)).await;
    let h1 = net.helpers[0].helpers().unwrap();
    let per_peer = || -> Vec<u64> { h1.report().iter().map(|p| p.segments_from).collect() };
    let (peers_before, s_before) = (per_peer(), net.helpers[0].snapshot());
    let origin_before = net.origin.source.stats.segments.load(Ordering::Relaxed);

    let r = play(&net, 0).await;
    assert!(r.ok(), "{r:?}");
    assert!(r.hash_ok && r.frames_received == r.frames_expected);

    // This play was fed by both other helpers (and h1's own share, kept when h2 and h3
    // asked it, as the owner, for those segments).
    let fed: Vec<u64> = per_peer()
        .iter()
        .zip(&peers_before)
        .map(|(a, b)| a - b)
        .collect();
    assert!(
        fed.iter().all(|&x| x > 0),
        "segments from h2, h3 during the play: {fed:?}"
    );
    let s = net.helpers[0].snapshot();
    let from_origin = s.segments_from_origin - s_before.segments_from_origin;
    let origin_after = net.origin.source.stats.segments.load(Ordering::Relaxed);
    assert_eq!(origin_after - origin_before, from_origin);
    // Three plays of the object at three helpers: about one origin read per segment (a few
    // more where a helper's deadline made it ask the origin itself), not three.
    assert!(
        origin_after <= n as u64 + n as u64 / 5,
        "origin read {origin_after} segments for 3 plays of {n}"
    );
    // h2 and h3 count what they served to helpers.
    let served: u64 = net.helpers[1..]
        .iter()
        .map(|h| h.snapshot().segments_to_peers)
        .sum();
    assert!(served >= fed.iter().sum::<u64>(), "{served}");
    net.origin.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_vanished_helper_is_replaced_by_the_other_sources() {
    let net = three_helpers().await;
    adverts_exchanged(&net).await;
    for k in [1, 2] {
        let r = play(&net, k).await;
        assert!(r.ok(), "{r:?}");
        // A helper's share lives in its memory tier, not on its disk: it counts towards the
        // sufficient portion (it was not seen, and the plays waited out the edge's 10 s
        // bound before starting).
        assert!(r.startup_ms.is_some_and(|ms| ms < 5000.0), "{r:?}");
    }
    tokio::time::sleep(Duration::from_millis(600)).await;
    let m = net.helpers[0].manifest(&long()).await.unwrap();
    let h1 = net.helpers[0].helpers().unwrap();
    let held_by_h3 = (0..m.segments.len())
        .filter(|&i| net.helpers[2].store().has(&m, i))
        .count();
    assert!(held_by_h3 > 0);
    // h3 stops at once (its endpoint closes); h1 still believes its advert.
    net.stops[2].send(true).unwrap();
    let r = play(&net, 0).await;
    assert!(r.ok(), "{r:?}");
    assert!(r.startup_ms.is_some_and(|ms| ms < 5000.0), "{r:?}");
    let report = h1.report();
    let h3 = report.iter().find(|p| p.name == "h3").unwrap();
    assert!(h3.failures >= 1, "h1 tried h3 and failed over: {h3:?}");
    assert!(h3.holds.is_none(), "what h3 said was dropped");
    let s = net.helpers[0].snapshot();
    assert_eq!(
        s.segments_from_peers + s.segments_from_origin,
        m.segments.len() as u64,
        "{s:?}"
    );
    net.origin.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn adverts_from_strangers_are_refused() {
    let net = three_helpers().await;
    adverts_exchanged(&net).await;
    let certs = net.origin.tls.ca.parent().unwrap();
    let h1_url = &net.urls[0];
    // An advert sent to h1 by the node of certificate `cert` claiming to be `sender`.
    let advert_to_h1 = |cert: &'static str, sender: &'static str| async move {
        let tls = NodeTls::dev_node(certs, cert).unwrap();
        let ep = segue_net::client_endpoint(&tls, Default::default()).unwrap();
        let link =
            segue_server::node::upstream::Upstream::new(ep, h1_url.clone(), Duration::from_secs(5));
        link.advert(&common::empty_advert(sender)).await.unwrap().0
    };
    let h1 = net.helpers[0].helpers().unwrap();
    let refused = || h1.stats.adverts_refused.load(Ordering::Relaxed);
    // A node of our CA that is not a configured peer.
    let unauthorized = segue_wire::segment::Status::Unauthorized;
    assert_eq!(advert_to_h1("mallory", "mallory").await, unauthorized);
    assert_eq!(refused(), 1);
    // Claiming to be a peer without its certificate: refused before the helper sees it.
    assert_eq!(advert_to_h1("mallory", "h3").await, unauthorized);
    assert_eq!(advert_to_h1("h2", "h3").await, unauthorized);
    assert_eq!(refused(), 1);
    assert!(h1.report().iter().all(|p| p.name != "mallory"));
    net.origin.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unconfigured_scopes_are_derived_from_rtt_and_advert_interval() {
    // Nothing measured yet: global (advertised every 20 s here). On loopback the RTT is
    // under 5 ms and, once the scope is local, adverts come every 200 ms: local.
    let net = helpers_with(None).await;
    let mut scopes = Vec::new();
    for _ in 0..60 {
        scopes = net
            .helpers
            .iter()
            .flat_map(|h| h.helpers().unwrap().report())
            .map(|p| (p.scope, p.scope_configured))
            .collect();
        if scopes.iter().all(|s| s.0 == Scope::Local) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let rtts: Vec<Option<f64>> = net
        .helpers
        .iter()
        .flat_map(|h| h.helpers().unwrap().report())
        .map(|p| p.rtt_ms)
        .collect();
    assert_eq!(scopes, vec![(Scope::Local, false); 6], "rtt ms {rtts:?}");
    // And they advertise at the local period from then on.
    let sent = |net: &Net| -> u64 {
        net.helpers[0]
            .helpers()
            .unwrap()
            .report()
            .iter()
            .map(|p| p.adverts_sent)
            .sum()
    };
    let before = sent(&net);
    tokio::time::sleep(Duration::from_millis(1000)).await;
    let n = sent(&net) - before;
    assert!(
        (8..=12).contains(&n),
        "{n} adverts to 2 peers in 1 s at 200 ms"
    );
    net.origin.shutdown().await;
}
