//! The control conversation of PROTOCOL.md §5 against a real node, request by request.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use segue_client::ControlClient;
use segue_net::{NodeTls, TransportLimits, server_endpoint};
use segue_server::node::control::{ControlHandler, ControlOut, serve_control};
use segue_server::node::{NodeOptions, serve};
use segue_server::origin::library::{Library, LibraryOptions};
use segue_server::origin::source::LibrarySource;
use segue_wire::control::{
    Message, Method, NptRange, PARAMETERS_CONTENT_TYPE, Request, Response, SessionHeader, Transport,
};
use segue_wire::{Resource, SegueUrl};
use tokio::sync::watch;

struct Node {
    _dir: tempfile::TempDir,
    _stop: watch::Sender<bool>,
    control: ControlClient,
    conn: quinn::Connection,
    url: SegueUrl,
}

async fn node() -> Node {
    node_with(NodeOptions::default()).await
}

async fn node_with(opts: NodeOptions) -> Node {
    node_serving("demo.mp4", 2_000_000, opts).await
}

/// A node serving `media/samples/<file>` in segments of `segment_us`.
async fn node_serving(file: &str, segment_us: u64, opts: NodeOptions) -> Node {
    let dir = tempfile::tempdir().unwrap();
    let certs = dir.path().join("certs");
    segue_certs::init(&certs, &[]).unwrap();
    let media = dir.path().join("media");
    std::fs::create_dir_all(&media).unwrap();
    let sample = Path::new(env!("CARGO_MANIFEST_DIR")).join("../media/samples");
    std::fs::copy(sample.join(file), media.join(file)).unwrap();
    let lib = Library::open(&LibraryOptions {
        media_root: media,
        data_dir: dir.path().join("data"),
        target_segment_us: segment_us,
        scheme: segue_server::origin::ingest::segmenter::SegmentScheme::Uniform,
    })
    .unwrap();
    let ep = server_endpoint(
        "127.0.0.1:0".parse().unwrap(),
        &NodeTls::named(&certs, "localhost"),
        TransportLimits::default(),
    )
    .unwrap();
    let port = ep.local_addr().unwrap().port();
    let (stop, rx) = watch::channel(false);
    tokio::spawn(serve(
        ep,
        Arc::new(LibrarySource::new(Arc::new(lib))),
        opts,
        rx,
    ));
    let object = file.rsplit_once('.').map_or(file, |(stem, _)| stem);
    let url = SegueUrl::parse(&format!("segue://localhost:{port}/{object}")).unwrap();
    let (_ep, conn, control) =
        segue_client::connect(&url, &certs.join("ca.pem"), Duration::from_secs(5))
            .await
            .unwrap();
    Node {
        _dir: dir,
        _stop: stop,
        control,
        conn,
        url,
    }
}

impl Node {
    async fn ask(&mut self, mut r: Request) -> Response {
        r.headers.cseq = self.control.next_cseq();
        self.control.request(&r).await.unwrap()
    }

    fn track(&self, n: u32) -> SegueUrl {
        let Resource::Object(o) = &self.url.resource else {
            panic!()
        };
        self.url.with_resource(Resource::Track(o.clone(), n))
    }
}

/// A segment's tracks are written in decoding order: a track bigger than the player's
/// stream window (quinn's 1.25 MB; here the 8 s segment's ~3 MB of video) does not hold the
/// other tracks back. Written one track after another, the audio stream was opened only
/// once the player had read most of the video, and playback, which waits for every
/// track, started late (~300 ms on the 8 Mbit/s matrix cells).
#[tokio::test]
async fn a_big_track_does_not_hold_the_others_back() {
    let mut n = node_serving("hd.mp4", 8_000_000, NodeOptions::default()).await;
    let url = n.url.clone();
    let mut id: Option<String> = None;
    for (track, flow) in [(0, 20), (1, 21)] {
        let mut s = Request::new(Method::Setup, Some(n.track(track)), 0);
        if let Some(id) = &id {
            s = with_session(s, id);
        }
        s.headers.transport = Some(Transport { flow_id: flow });
        let r = n.ask(s).await;
        assert_eq!(r.status, 200);
        id = r.headers.session.map(|s| s.id);
    }
    let id = id.unwrap();
    let mut p = with_session(Request::new(Method::Play, Some(url), 0), &id);
    p.headers.unpaced = true;
    assert_eq!(n.ask(p).await.status, 200);
    // Read each media stream's flow id and no more: the video stream is left unread.
    let mut flows = Vec::new();
    let mut unread = Vec::new();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    while flows.len() < 2 {
        let mut s = tokio::time::timeout_at(deadline, n.conn.accept_uni())
            .await
            .unwrap_or_else(|_| panic!("only flows {flows:?} opened with the video unread"))
            .unwrap();
        let mut head = [0u8; 1];
        s.read_exact(&mut head).await.unwrap();
        // Flow ids 20 and 21 are one-byte QUIC varints.
        flows.push(head[0]);
        unread.push(s);
    }
    flows.sort();
    assert_eq!(flows, [20, 21]);
}

/// Answers every request after a pause (a busy node), having first started "media" that
/// waits for that request's response to be written, as a PLAY's sender does.
struct AnswersLate {
    conn: quinn::Connection,
}

impl ControlHandler for AnswersLate {
    async fn handle(&mut self, req: Request, out: &ControlOut) -> Response {
        let answered = out.this_response();
        let (conn, out) = (self.conn.clone(), out.clone());
        tokio::spawn(async move {
            out.response_written(answered).await;
            let mut s = conn.open_uni().await.unwrap();
            s.write_all(b"media").await.unwrap();
            let _ = s.finish();
        });
        tokio::time::sleep(Duration::from_millis(100)).await;
        Response::new(200, req.headers.cseq)
    }
}

/// A PLAY's media waits for the PLAY's response to be written (`ControlOut::response_written`):
/// the player reads no media before the DESCRIBE response and buffers none before the PLAY
/// response's RTP-Info. Media written first went out in the initial window ahead of the
/// responses (the lab's 0.5 Mbit/s last mile, a prefix hit: 7 of the first 10 datagrams,
/// the first frame ~115-160 ms late; session 27). Here the handler answers 100 ms after
/// starting the media, so media that did not wait arrives 100 ms before the response.
#[tokio::test]
async fn media_waits_for_its_plays_response() {
    let dir = tempfile::tempdir().unwrap();
    segue_certs::init(dir.path(), &[]).unwrap();
    let ep = server_endpoint(
        "127.0.0.1:0".parse().unwrap(),
        &NodeTls::named(dir.path(), "localhost"),
        TransportLimits::default(),
    )
    .unwrap();
    let port = ep.local_addr().unwrap().port();
    let media_at = Arc::new(std::sync::Mutex::new(None));
    tokio::spawn(async move {
        let Some(inc) = ep.accept().await else { return };
        let conn = inc.await.unwrap();
        let (send, recv) = conn.accept_bi().await.unwrap();
        let mut h = AnswersLate { conn: conn.clone() };
        let _ = serve_control(
            conn.clone(),
            send,
            recv,
            segue_wire::Limits::default(),
            Duration::from_secs(10),
            None,
            &mut h,
        )
        .await;
    });
    let url = SegueUrl::parse(&format!("segue://localhost:{port}/")).unwrap();
    let (_ep, conn, mut control) =
        segue_client::connect(&url, &dir.path().join("ca.pem"), Duration::from_secs(5))
            .await
            .unwrap();
    {
        let media_at = media_at.clone();
        tokio::spawn(async move {
            let mut s = conn.accept_uni().await.unwrap();
            let mut b = [0u8; 5];
            s.read_exact(&mut b).await.unwrap();
            *media_at.lock().unwrap() = Some(tokio::time::Instant::now());
        });
    }
    let cseq = control.next_cseq();
    let r = control
        .request(&Request::new(Method::Options, None, cseq))
        .await
        .unwrap();
    let answered_at = tokio::time::Instant::now();
    assert_eq!(r.status, 200);
    tokio::time::sleep(Duration::from_millis(300)).await;
    let media_at = media_at
        .lock()
        .unwrap()
        .expect("no media after the response");
    // Read on two tasks, what one datagram carries may be read in either order: a few ms.
    assert!(
        media_at + Duration::from_millis(30) >= answered_at,
        "media read {:?} before the response",
        answered_at - media_at
    );
}

fn with_session(mut r: Request, id: &str) -> Request {
    r.headers.session = Some(SessionHeader {
        id: id.into(),
        timeout: None,
    });
    r
}

impl Node {
    /// `method` on the object URL, naming session `id`.
    async fn ask_session(&mut self, method: Method, id: &str) -> Response {
        let url = self.url.clone();
        self.ask(with_session(Request::new(method, Some(url), 0), id))
            .await
    }
}

#[tokio::test]
async fn session_lifecycle() {
    let mut n = node().await;
    let url = n.url.clone();

    // OPTIONS lists the player methods.
    let r = n.ask(Request::new(Method::Options, None, 0)).await;
    assert_eq!(r.status, 200);
    assert!(
        r.headers.public.contains(&Method::Play) && !r.headers.public.contains(&Method::PlayNotify)
    );

    // DESCRIBE on a track URL is not allowed; on an unknown object, 404.
    assert_eq!(
        n.ask(Request::new(Method::Describe, Some(n.track(0)), 0))
            .await
            .status,
        405
    );
    let missing = url.with_resource(Resource::Object(
        segue_wire::ObjectName::new("nope", 64).unwrap(),
    ));
    let r = n
        .ask(Request::new(Method::Describe, Some(missing), 0))
        .await;
    assert_eq!(r.status, 404);
    assert!(r.headers.error.unwrap().contains("nope"));

    // SETUP without Transport: 461. Per-track SETUP creates the session; the second track joins it.
    assert_eq!(
        n.ask(Request::new(Method::Setup, Some(n.track(0)), 0))
            .await
            .status,
        461
    );
    let mut s = Request::new(Method::Setup, Some(n.track(0)), 0);
    s.headers.transport = Some(Transport { flow_id: 10 });
    let r = n.ask(s).await;
    assert_eq!(r.status, 200);
    let id = r.headers.session.unwrap().id;
    let mut s = with_session(Request::new(Method::Setup, Some(n.track(1)), 0), &id);
    s.headers.transport = Some(Transport { flow_id: 10 }); // taken by track 0
    assert_eq!(n.ask(s).await.status, 461);
    let mut s = with_session(Request::new(Method::Setup, Some(n.track(1)), 0), &id);
    s.headers.transport = Some(Transport { flow_id: 11 });
    assert_eq!(n.ask(s).await.status, 200);
    let mut s = with_session(Request::new(Method::Setup, Some(n.track(7)), 0), &id);
    s.headers.transport = Some(Transport { flow_id: 12 });
    assert_eq!(n.ask(s).await.status, 404);

    // PLAY: none before SETUP 455, unknown session 454, track URL 405, then from 5 s: starts
    // at the segment holding it.
    assert_eq!(
        n.ask(Request::new(Method::Play, Some(url.clone()), 0))
            .await
            .status,
        455
    );
    assert_eq!(
        n.ask(with_session(
            Request::new(Method::Play, Some(url.clone()), 0),
            "nosuch"
        ))
        .await
        .status,
        454
    );
    assert_eq!(
        n.ask(with_session(
            Request::new(Method::Play, Some(n.track(0)), 0),
            &id
        ))
        .await
        .status,
        405
    );
    let mut p = with_session(Request::new(Method::Play, Some(url.clone()), 0), &id);
    p.headers.range = Some(NptRange {
        start: 5_000_000,
        end: None,
    });
    let r = n.ask(p).await;
    assert_eq!(r.status, 200);
    let range = r.headers.range.unwrap();
    assert_eq!(
        range.start, 4_000_000,
        "starts at the segment containing 5 s"
    );
    assert_eq!(r.headers.rtp_info.len(), 2);
    let mut p = with_session(Request::new(Method::Play, Some(url.clone()), 0), &id);
    p.headers.range = Some(NptRange {
        start: 999_000_000,
        end: None,
    });
    assert_eq!(n.ask(p).await.status, 457);

    // GET_PARAMETER: keep-alive, known parameters, unknown ones.
    assert_eq!(n.ask_session(Method::GetParameter, &id).await.status, 200);
    tokio::time::sleep(Duration::from_millis(300)).await;
    let mut g = with_session(
        Request::new(Method::GetParameter, Some(url.clone()), 0),
        &id,
    );
    g.headers.content_type = Some(PARAMETERS_CONTENT_TYPE.into());
    g.body = Bytes::from_static(b"position\r\nbytes-sent\r\n");
    let r = n.ask(g).await;
    assert_eq!(r.status, 200);
    let body = String::from_utf8(r.body.to_vec()).unwrap();
    assert!(
        body.contains("position: ") && body.contains("bytes-sent: "),
        "{body}"
    );
    let sent: u64 = body
        .lines()
        .find_map(|l| l.strip_prefix("bytes-sent: "))
        .unwrap()
        .parse()
        .unwrap();
    assert!(sent > 0, "media was sent: {body}");
    let mut g = with_session(
        Request::new(Method::GetParameter, Some(url.clone()), 0),
        &id,
    );
    g.body = Bytes::from_static(b"cache\r\n"); // origins have no cache case
    assert_eq!(n.ask(g).await.status, 451);

    // PAUSE gives the resume point; TEARDOWN ends the session.
    let r = n.ask_session(Method::Pause, &id).await;
    assert_eq!(r.status, 200);
    assert!(r.headers.range.unwrap().start >= 4_000_000);
    assert_eq!(n.ask_session(Method::Teardown, &id).await.status, 200);
    assert_eq!(n.ask_session(Method::Play, &id).await.status, 454);
}

#[tokio::test]
async fn failed_pipeline_fails_its_later_requests() {
    let mut n = node().await;
    let missing = n.url.with_resource(Resource::Object(
        segue_wire::ObjectName::new("nope", 64).unwrap(),
    ));
    let mut s = Request::new(Method::Setup, Some(missing.clone()), 1);
    s.headers.transport = Some(Transport { flow_id: 0 });
    s.headers.pipelined_requests = Some(9);
    let mut p = Request::new(Method::Play, Some(missing), 2);
    p.headers.pipelined_requests = Some(9);
    let mut flight = s.encode();
    flight.extend(p.encode());
    n.control.send_raw(&flight).await.unwrap();
    let mut statuses = Vec::new();
    while statuses.len() < 2 {
        if let Message::Response(r) = n.control.recv().await.unwrap() {
            statuses.push((
                r.headers.cseq,
                r.status,
                r.headers.error.unwrap_or_default(),
            ));
        }
    }
    assert_eq!((statuses[0].0, statuses[0].1), (1, 404));
    assert_eq!((statuses[1].0, statuses[1].1), (2, 404));
    assert!(
        statuses[1].2.contains("pipelined request failed"),
        "{statuses:?}"
    );
}

#[tokio::test]
async fn idle_sessions_time_out_and_keep_alives_keep_them() {
    let mut opts = NodeOptions::default();
    opts.sessions.timeout_s = 1;
    let mut n = node_with(opts).await;
    let url = n.url.clone();
    let mut ids = Vec::new();
    for flow in [0, 10] {
        let mut s = Request::new(Method::Setup, Some(url.clone()), 0);
        s.headers.transport = Some(Transport { flow_id: flow });
        let r = n.ask(s).await;
        assert_eq!(r.headers.session.as_ref().unwrap().timeout, Some(1));
        ids.push(r.headers.session.unwrap().id);
    }
    // Keep the second session alive for 2.5 s; the first one hears nothing.
    for _ in 0..5 {
        tokio::time::sleep(Duration::from_millis(500)).await;
        let r = n
            .ask(with_session(
                Request::new(Method::GetParameter, Some(url.clone()), 0),
                &ids[1],
            ))
            .await;
        assert_eq!(r.status, 200);
    }
    let r = n
        .ask(with_session(
            Request::new(Method::GetParameter, Some(url.clone()), 0),
            &ids[0],
        ))
        .await;
    assert_eq!(r.status, 454, "idle session still there");
    // Its flows were released: flow 0 can be bound again.
    let mut s = Request::new(Method::Setup, Some(url.clone()), 0);
    s.headers.transport = Some(Transport { flow_id: 0 });
    assert_eq!(n.ask(s).await.status, 200);
}

/// Reads every media stream of `conn` to its end: (RTP packets, RTP bytes without the RoQ
/// framing) per stream, sent on `tx` as each ends.
fn drain_media(conn: quinn::Connection, tx: tokio::sync::mpsc::UnboundedSender<(u64, u64)>) {
    tokio::spawn(async move {
        while let Ok(mut s) = conn.accept_uni().await {
            let tx = tx.clone();
            tokio::spawn(async move {
                let mut dec = segue_wire::roq::RoqDecoder::new(64 * 1024);
                let (mut packets, mut bytes) = (0u64, 0u64);
                while let Ok(Some(chunk)) = s.read_chunk(64 * 1024, true).await {
                    dec.push(&chunk.bytes);
                    while let Ok(Some(item)) = dec.next_item() {
                        if let segue_wire::roq::RoqItem::Packet(p) = item {
                            packets += 1;
                            bytes += p.len() as u64;
                        }
                    }
                }
                let _ = tx.send((packets, bytes));
            });
        }
    });
}

/// `packets-sent` and `bytes-sent` of a session.
async fn counters(n: &mut Node, id: &str) -> (u64, u64) {
    let mut g = with_session(
        Request::new(Method::GetParameter, Some(n.url.clone()), 0),
        id,
    );
    g.headers.content_type = Some(PARAMETERS_CONTENT_TYPE.into());
    g.body = Bytes::from_static(b"packets-sent\r\nbytes-sent\r\n");
    let r = n.ask(g).await;
    assert_eq!(r.status, 200);
    let body = String::from_utf8(r.body.to_vec()).unwrap();
    let get = |name: &str| -> u64 {
        body.lines()
            .find_map(|l| l.strip_prefix(name))
            .unwrap()
            .parse()
            .unwrap()
    };
    (get("packets-sent: "), get("bytes-sent: "))
}

/// PROTOCOL.md §5.7 and §7.3: a PLAY after PAUSE keeps the session's SSRCs and timestamp
/// offsets and goes on with its numbering (segment `p` again, with the numbers it had);
/// the counters of §5.9 count the whole session, in RTP bytes; a PLAY once everything was
/// sent is refused (457) instead of sending the last segment again.
#[tokio::test]
async fn pause_and_play_go_on_with_the_sessions_numbering() {
    let mut n = node().await;
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
    drain_media(n.conn.clone(), tx);
    let url = n.url.clone();
    let mut s = Request::new(Method::Setup, Some(url.clone()), 0);
    s.headers.transport = Some(Transport { flow_id: 0 });
    let r = n.ask(s).await;
    assert_eq!(r.status, 200);
    let id = r.headers.session.unwrap().id;
    let first = n.ask_session(Method::Play, &id).await;
    assert_eq!(first.status, 200);
    // Paced: 2 s sent ahead at once, then real time; pause within the second segment.
    tokio::time::sleep(Duration::from_millis(2500)).await;
    let before = counters(&mut n, &id).await;
    assert!(before.0 > 0 && before.1 > before.0 * 12, "{before:?}");
    let r = n.ask_session(Method::Pause, &id).await;
    assert_eq!(r.status, 200);
    let p = r.headers.range.unwrap().start;
    assert!(p > 0, "a whole segment was sent before the pause");
    let paused = counters(&mut n, &id).await;
    let again = n.ask_session(Method::Play, &id).await;
    assert_eq!(again.status, 200);
    assert_eq!(again.headers.range.unwrap().start, p);
    let clocks = [90_000u64, 48_000];
    for (i, (a, b)) in first
        .headers
        .rtp_info
        .iter()
        .zip(&again.headers.rtp_info)
        .enumerate()
    {
        assert_eq!(a.ssrc, b.ssrc, "track {i}: one SSRC per session");
        // The same offset: rtptime moves by the resume point in the track's clock.
        let moved = (p * clocks[i] / 1_000_000) as u32;
        assert_eq!(b.rtptime, a.rtptime.wrapping_add(moved), "track {i}");
        // Numbering goes on: by the packets of the segments before `p`, no more than
        // were sent, and not from a new random base.
        let on = b.seq.wrapping_sub(a.seq) as u64;
        assert!(
            on > 0 && on <= paused.0,
            "track {i}: {} -> {}",
            a.seq,
            b.seq
        );
    }
    // The counters go on over the PLAYs.
    let resumed = counters(&mut n, &id).await;
    assert!(resumed.0 >= paused.0 && resumed.1 >= paused.1 && paused.0 >= before.0);

    // A session played to its end: the counters are what its streams carried, in RTP
    // bytes, and a PLAY after the end is refused.
    let mut s = Request::new(Method::Setup, Some(url.clone()), 0);
    s.headers.transport = Some(Transport { flow_id: 10 });
    let r = n.ask(s).await;
    let id2 = r.headers.session.unwrap().id;
    // Everything before is stopped: its streams end, the drain reports them.
    assert_eq!(n.ask_session(Method::Teardown, &id).await.status, 200);
    tokio::time::sleep(Duration::from_millis(300)).await;
    while rx.try_recv().is_ok() {}
    let mut play = with_session(Request::new(Method::Play, Some(url.clone()), 0), &id2);
    play.headers.unpaced = true;
    assert_eq!(n.ask(play).await.status, 200);
    let (mut packets, mut bytes) = (0u64, 0u64);
    let mut sent = (1, 0);
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    while (packets, bytes) != sent {
        assert!(
            tokio::time::Instant::now() < deadline,
            "{sent:?} vs {packets}/{bytes}"
        );
        while let Ok((p, b)) = rx.try_recv() {
            packets += p;
            bytes += b;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
        sent = counters(&mut n, &id2).await;
    }
    assert!(packets > 900, "the whole object: {packets}");
    let mut play = with_session(Request::new(Method::Play, Some(url.clone()), 0), &id2);
    play.headers.unpaced = true;
    let r = n.ask(play).await;
    assert_eq!(r.status, 457, "{:?}", r.headers.error);
}
