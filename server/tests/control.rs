//! The control conversation of PROTOCOL.md §5 against a real node, request by request.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use segue_client::ControlClient;
use segue_server::library::{Library, LibraryOptions};
use segue_server::node::{NodeOptions, serve};
use segue_server::quic::{NodeTls, TransportLimits, server_endpoint};
use segue_server::source::LibrarySource;
use segue_wire::control::{
    Message, Method, NptRange, PARAMETERS_CONTENT_TYPE, Request, Response, SessionHeader, Transport,
};
use segue_wire::{Resource, SegueUrl};
use tokio::sync::watch;

struct Node {
    _dir: tempfile::TempDir,
    _stop: watch::Sender<bool>,
    control: ControlClient,
    _conn: quinn::Connection,
    url: SegueUrl,
}

async fn node() -> Node {
    node_with(NodeOptions::default()).await
}

async fn node_with(opts: NodeOptions) -> Node {
    let dir = tempfile::tempdir().unwrap();
    let certs = dir.path().join("certs");
    segue_certs::init(&certs, &[]).unwrap();
    let media = dir.path().join("media");
    std::fs::create_dir_all(&media).unwrap();
    let sample = Path::new(env!("CARGO_MANIFEST_DIR")).join("../media/samples/demo.mp4");
    std::fs::copy(sample, media.join("demo.mp4")).unwrap();
    let lib = Library::open(&LibraryOptions {
        media_root: media,
        data_dir: dir.path().join("data"),
        target_segment_us: 2_000_000,
        scheme: segue_server::ingest::segmenter::SegmentScheme::Uniform,
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
    let url = SegueUrl::parse(&format!("segue://localhost:{port}/demo")).unwrap();
    let (_ep, conn, control) =
        segue_client::connect(&url, &certs.join("ca.pem"), Duration::from_secs(5))
            .await
            .unwrap();
    Node {
        _dir: dir,
        _stop: stop,
        control,
        _conn: conn,
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

fn with_session(mut r: Request, id: &str) -> Request {
    r.headers.session = Some(SessionHeader {
        id: id.into(),
        timeout: None,
    });
    r
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

    // PLAY: unknown session 454, track URL 405, then from 5 s: starts at the segment holding it.
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
    assert_eq!(
        n.ask(with_session(
            Request::new(Method::GetParameter, Some(url.clone()), 0),
            &id
        ))
        .await
        .status,
        200
    );
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
    let r = n
        .ask(with_session(
            Request::new(Method::Pause, Some(url.clone()), 0),
            &id,
        ))
        .await;
    assert_eq!(r.status, 200);
    assert!(r.headers.range.unwrap().start >= 4_000_000);
    assert_eq!(
        n.ask(with_session(
            Request::new(Method::Teardown, Some(url.clone()), 0),
            &id
        ))
        .await
        .status,
        200
    );
    assert_eq!(
        n.ask(with_session(
            Request::new(Method::Play, Some(url.clone()), 0),
            &id
        ))
        .await
        .status,
        454
    );
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
