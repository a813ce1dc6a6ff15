//! Verified cut-through (PROTOCOL.md §8.6.1, issue 19): an edge streams a segment to its
//! sessions chunk by verified chunk as it arrives, never a chunk that fails, and a crowd
//! streams from one fill. The upstream here is a stand-in origin written from the spec (it
//! answers manifest and segment requests from the real origin's library) that can trickle a
//! segment and corrupt one chunk in flight while sending the right chunk hashes, which no
//! honest origin would do.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use segue_net::{TransportLimits, server_endpoint};
use segue_server::config::EdgeConfig;
use segue_server::edge::node::Edge;
use segue_server::node::source::Source;
use segue_wire::segment::{
    FrameReader, ResponseHeader, SegmentHeader, SegmentRequest, chunk, decode_request,
    encode_chunk_hashes, encode_manifest_frame,
};
use segue_wire::{Limits, ObjectName, SegueUrl};

use crate::common::{self, TestOrigin};

/// What the stand-in origin does to segment 0.
#[derive(Clone, Copy)]
struct Tamper {
    /// Flip a byte of this chunk in the first answer for segment 0.
    corrupt_chunk: Option<usize>,
    /// Pause before each chunk of segment 0 after the first.
    trickle: Duration,
}

/// What the stand-in origin saw.
#[derive(Default)]
struct Seen {
    manifests: AtomicU32,
    segment0: AtomicU32,
    /// When it finished sending segment 0 the first time (ms after `t0`).
    segment0_done_ms: AtomicU64,
    t0: Mutex<Option<Instant>>,
}

/// Serves the segment protocol on loopback from `origin`'s library, with `tamper` applied.
async fn stand_in(origin: &TestOrigin, tamper: Tamper) -> (SocketAddr, Arc<Seen>) {
    let ep = server_endpoint(
        SocketAddr::from(([127, 0, 0, 1], 0)),
        &origin.tls,
        TransportLimits::default(),
    )
    .unwrap();
    let addr = ep.local_addr().unwrap();
    let seen = Arc::new(Seen::default());
    *seen.t0.lock().unwrap() = Some(Instant::now());
    let source = origin.source.clone();
    let s = seen.clone();
    tokio::spawn(async move {
        while let Some(incoming) = ep.accept().await {
            let Ok(conn) = incoming.await else { continue };
            let (source, seen) = (source.clone(), s.clone());
            tokio::spawn(async move {
                while let Ok((mut send, mut recv)) = conn.accept_bi().await {
                    let (source, seen) = (source.clone(), seen.clone());
                    tokio::spawn(async move {
                        // Stream 0 (control) sends nothing: this reads until the end.
                        let Ok(req) = recv.read_to_end(4096).await else {
                            return;
                        };
                        let Ok(Some((req, _))) = decode_request(&req, &Limits::default()) else {
                            return;
                        };
                        let Ok(m) = source.manifest(req.object()).await else {
                            return;
                        };
                        match req {
                            SegmentRequest::Manifest { .. } => {
                                seen.manifests.fetch_add(1, Ordering::Relaxed);
                                let _ = send.write_all(&ResponseHeader::ok().encode()).await;
                                let _ = send.write_all(&encode_manifest_frame(&m)).await;
                            }
                            SegmentRequest::Segments { first, params, .. } => {
                                assert!(params.chunks, "edges ask for chunk hashes");
                                let i = first as usize;
                                let payload = source.segment(&m, i).await.unwrap();
                                let hashes = chunk::chunk_hashes(&payload, m.chunk_size);
                                let _ = send.write_all(&ResponseHeader::ok().encode()).await;
                                let h = SegmentHeader {
                                    index: first,
                                    size: payload.len() as u64,
                                    checksum: m.segments[i].checksum,
                                };
                                let _ = send.write_all(&h.encode()).await;
                                // The right hashes, always.
                                let _ = send.write_all(&encode_chunk_hashes(&hashes)).await;
                                let nth = if i == 0 {
                                    seen.segment0.fetch_add(1, Ordering::Relaxed)
                                } else {
                                    1
                                };
                                for (k, c) in payload.chunks(m.chunk_size as usize).enumerate() {
                                    if i == 0 && k > 0 {
                                        tokio::time::sleep(tamper.trickle).await;
                                    }
                                    let mut c = c.to_vec();
                                    if nth == 0 && i == 0 && tamper.corrupt_chunk == Some(k) {
                                        let mid = c.len() / 2;
                                        c[mid] ^= 0x40;
                                    }
                                    if send.write_all(&c).await.is_err() {
                                        return; // the edge stopped reading (STOP_SENDING)
                                    }
                                }
                                if i == 0 && nth == 0 {
                                    let t0 = seen.t0.lock().unwrap().unwrap();
                                    seen.segment0_done_ms
                                        .store(t0.elapsed().as_millis() as u64, Ordering::Relaxed);
                                }
                            }
                            SegmentRequest::PushOffer { .. } => return,
                        }
                        let _ = send.finish();
                        let _ = send.stopped().await;
                    });
                }
            });
        }
    });
    (addr, seen)
}

/// An edge as `segue edge` runs it, its origin the stand-in at `upstream`: its URL.
async fn edge_of(origin: &TestOrigin, upstream: SocketAddr, cache: &str) -> (Edge, SegueUrl) {
    let url = SegueUrl::parse(&format!("segue://localhost:{}/", upstream.port())).unwrap();
    let mut c = EdgeConfig::new(&url).unwrap();
    c.set_tls(&origin.tls);
    c.listen = SocketAddr::from(([127, 0, 0, 1], 0));
    c.cache_dir = origin.dir.path().join(cache);
    c.cache_size = 1 << 30;
    let edge = Edge::start(c, origin.stop_rx()).await.unwrap();
    let url = SegueUrl::parse(&format!("segue://localhost:{}/demo", edge.addr().port())).unwrap();
    (edge, url)
}

/// An origin serving the demo sample, and its manifest.
async fn demo_origin() -> (TestOrigin, Arc<segue_wire::segment::Manifest>) {
    let origin = common::origin_with_sample("demo.mp4").await;
    let name = ObjectName::new("demo", 64).unwrap();
    let m = origin.source.manifest(&name).await.unwrap();
    (origin, m)
}

fn options(origin: &TestOrigin, url: &SegueUrl) -> segue_client::PlayOptions {
    let mut o = segue_client::PlayOptions::new(url.clone(), origin.tls.ca.clone());
    o.pace = false;
    o
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_chunk_corrupted_in_flight_is_never_forwarded_and_the_play_stays_byte_exact() {
    let (origin, m) = demo_origin().await;
    let chunks = chunk::chunk_count(m.segments[0].size, m.chunk_size) as usize;
    assert!(chunks >= 3, "segment 0 has {chunks} chunks");
    // Chunks 0 and 1 arrive (and are forwarded) before chunk 2, which is corrupted.
    let tamper = Tamper {
        corrupt_chunk: Some(2),
        trickle: Duration::from_millis(100),
    };
    let (up, seen) = stand_in(&origin, tamper).await;
    let (edge, url) = edge_of(&origin, up, "edge").await;
    let r = segue_client::play(&options(&origin, &url)).await;
    // Every frame, every byte: the player checks each track's content hash against the
    // manifest, so a forwarded corrupt chunk (or a frame sent twice after the refetch)
    // would fail it.
    assert!(r.ok(), "{}", r.render());
    assert!(r.hash_ok && r.frames_received == r.frames_expected, "{r:?}");
    // The bad answer was abandoned and segment 0 fetched again.
    assert_eq!(seen.segment0.load(Ordering::Relaxed), 2);
    let s = edge.source().snapshot();
    assert_eq!(s.misses, 1, "{s:?}");
    // What the edge stored is the verified segment.
    let stored = edge.source().store().read(&m, 0).await;
    assert!(stored.is_some(), "segment 0 kept after the refetch");
    let _ = origin.stop.send(true);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_crowd_streams_from_one_fill_as_it_arrives() {
    let (origin, m) = demo_origin().await;
    // Where the first frame of segment 0 ends, in chunks.
    let payload = origin.source.segment(&m, 0).await.unwrap();
    let first_end = {
        let f = FrameReader::new(&payload, 1 << 24).next().unwrap().unwrap();
        f.data.as_ptr() as usize - payload.as_ptr() as usize + f.data.len()
    };
    let first_chunk = first_end / m.chunk_size as usize;
    let chunks = chunk::chunk_count(m.segments[0].size, m.chunk_size) as usize;
    assert!(
        chunks >= first_chunk + 2,
        "the first frame ends in chunk {first_chunk} of {chunks}"
    );
    // Segment 0 trickles: chunk k leaves the origin k × 400 ms after the request.
    let pause = Duration::from_millis(400);
    let tamper = Tamper {
        corrupt_chunk: None,
        trickle: pause,
    };
    let (up, seen) = stand_in(&origin, tamper).await;
    let (edge, url) = edge_of(&origin, up, "edge").await;
    let plays: Vec<_> = (0..8)
        .map(|_| {
            let o = options(&origin, &url);
            tokio::spawn(async move { segue_client::play(&o).await })
        })
        .collect();
    let whole_ms = (chunks - 1) as f64 * pause.as_secs_f64() * 1000.0;
    for p in plays {
        let r = p.await.unwrap();
        assert!(r.ok(), "{}", r.render());
        let ttff = r.ttff_ms.unwrap();
        // Store-and-forward would take the whole segment (whole_ms); every player has its
        // first frame within half a pause of the chunk that completes it.
        assert!(
            ttff < whole_ms - pause.as_secs_f64() * 500.0,
            "TTFF {ttff:.0} ms, the segment takes {whole_ms:.0} ms (first frame in chunk {first_chunk})"
        );
    }
    // One origin fetch of segment 0 for all eight.
    assert_eq!(seen.segment0.load(Ordering::Relaxed), 1);
    assert_eq!(seen.manifests.load(Ordering::Relaxed), 1);
    let s = edge.source().snapshot();
    assert_eq!(s.misses, 8, "{s:?}");
    assert_eq!(s.segments_pipelined, 1, "{s:?}");
    let _ = origin.stop.send(true);
}

/// A second play from the same process resumes its TLS session and sends DESCRIBE, SETUP
/// and PLAY as 0-RTT data (the node answers them before the handshake completes); the play
/// is as byte-exact as the first, and `no_resume` turns it off.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_play_resumes_and_starts_in_0rtt() {
    let origin = common::origin_with_sample("demo.mp4").await;
    let e = origin.edge(4_000_000).await;
    let url = SegueUrl::parse(&format!("{}demo", e.url)).unwrap();
    let first = segue_client::play(&options(&origin, &url)).await;
    assert!(first.ok(), "{}", first.render());
    assert_eq!(first.resumed, Some(false), "no ticket yet");
    let second = segue_client::play(&options(&origin, &url)).await;
    assert!(second.ok(), "{}", second.render());
    assert_eq!(second.resumed, Some(true), "resumed with 0-RTT accepted");
    let mut o = options(&origin, &url);
    o.connect.no_resume = true;
    let third = segue_client::play(&o).await;
    assert!(third.ok(), "{}", third.render());
    assert_eq!(third.resumed, Some(false));
    let _ = origin.stop.send(true);
}

/// A ticket from one node offered to another of the same name (edges behind one DNS name):
/// the other cannot resume it and rejects the 0-RTT data; the player sends its start again
/// in 1-RTT and plays as well.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rejected_0rtt_is_sent_again() {
    let origin = common::origin_with_sample("demo.mp4").await;
    let a = origin.edge_with("a", |_| {}).await;
    let b = origin.edge_with("b", |_| {}).await;
    let on = |e: &common::TestEdge| SegueUrl::parse(&format!("{}demo", e.url)).unwrap();
    let first = segue_client::play(&options(&origin, &on(&a))).await;
    assert!(first.ok(), "{}", first.render());
    let other = segue_client::play(&options(&origin, &on(&b))).await;
    assert!(other.ok(), "{}", other.render());
    assert_eq!(other.resumed, Some(false), "b knows nothing of a's ticket");
    let _ = origin.stop.send(true);
}

/// On a path with a real round trip (40 ms through a relay) a play resumes with its start in
/// 0-RTT and is byte-exact; a full handshake's click to first frame is at least 2 RTT. (What
/// resuming saves is printed, not asserted: in most runs nothing yet — issue 19's note.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_resumed_play_over_a_real_round_trip() {
    use segue_impair::relay::{self, RelaySpec};
    let origin = common::origin_with_sample("demo.mp4").await;
    let e = origin.edge(4_000_000).await;
    let spec = RelaySpec::round_trip(40.0, 1);
    let r = relay::udp("127.0.0.1:0".parse().unwrap(), e.addr, spec)
        .await
        .unwrap();
    let url = SegueUrl::parse(&format!("segue://localhost:{}/demo", r.local.port())).unwrap();
    // Warm the cache (and take a ticket): the plays below are full hits.
    let warm = segue_client::play(&options(&origin, &url)).await;
    assert!(warm.ok(), "{}", warm.render());
    let mut cold = options(&origin, &url);
    cold.connect.no_resume = true;
    let cold = segue_client::play(&cold).await;
    let resumed = segue_client::play(&options(&origin, &url)).await;
    assert!(
        cold.ok() && resumed.ok(),
        "{}{}",
        cold.render(),
        resumed.render()
    );
    assert_eq!((cold.resumed, resumed.resumed), (Some(false), Some(true)));
    let (c, w) = (cold.click_ms.unwrap(), resumed.click_ms.unwrap());
    println!(
        "click to first frame over a 40 ms RTT: full handshake {c:.1} ms (connect {:.1}, \
         smoothed RTT {:.1}), resumed {w:.1} ms (smoothed RTT {:.1})",
        cold.connect_ms.unwrap_or(f64::NAN),
        cold.rtt_ms.unwrap_or(f64::NAN),
        resumed.rtt_ms.unwrap_or(f64::NAN),
    );
    // A full handshake costs 1 RTT before the request, the request 1 more: 2 RTT. Resumed,
    // the request goes with the ClientHello and saves one of them, provided the node may
    // answer with more than three times what the client sent before its address is
    // validated: the player presents the address-validation token (NEW_TOKEN) of its last
    // connection. Without it (session 23; again in session 28) the resumed play saved the
    // round trip in only 2 to 7 of every 8-13 runs; with it, 10 of 10 (full 92-96 ms, resumed
    // 48-51 ms).
    assert!(c >= 80.0, "{c}");
    assert!(w > 40.0, "{w}: faster than the round trip itself");
    assert!(
        w + 20.0 < c,
        "resumed {w} ms, full handshake {c} ms: no round trip saved"
    );
    r.stop().await;
    let _ = origin.stop.send(true);
}
