//! Signed URLs (docs/SECURITY.md) on a real edge on loopback: players, file downloads and
//! segment-protocol requests get nothing without a grant signed by a current key for that
//! object (and address), and everything with one; two keys verify at once (rotation).

mod common;

use std::path::Path;
use std::sync::Arc;

use segue_client::play::{PlayOptions, play};
use segue_server::access::{self, Keys};
use segue_server::edge::EdgeOptions;
use segue_server::edge::store::Store;
use segue_server::files::ObjectFiles;
use segue_server::hq::{self, ClientOptions, ServerStats};
use segue_server::node::NodeOptions;
use segue_wire::SegueUrl;
use segue_wire::segment::{Params, ResponseFrame, SegmentRequest, Status, decode_response_frame};

const OLD: &[u8] = b"old-key-0123456789abcdef";
const NEW: &[u8] = b"new-key-0123456789abcdef";

struct Setup {
    origin: common::TestOrigin,
    edge_port: u16,
    files_port: u16,
}

/// An origin and an edge requiring signed URLs with keys `OLD` and `NEW`, its files on HTTP/3.
fn setup() -> Setup {
    let origin = common::origin_with_sample("demo.mp4");
    let keys = Arc::new(Keys::new(&[OLD.to_vec(), NEW.to_vec()]).unwrap());
    let store = Store::open(&origin.dir.path().join("edge"), 1 << 30, 4_000_000).unwrap();
    let up = SegueUrl::parse(&format!("segue://localhost:{}/", origin.addr.port())).unwrap();
    let (edge, addr, serving) = segue_server::loopback::edge(
        &origin.tls,
        store,
        up,
        EdgeOptions::default(),
        NodeOptions {
            access: Some(keys.clone()),
            ..NodeOptions::default()
        },
        origin.stop_rx(),
    )
    .unwrap();
    tokio::spawn(serving);
    let srv = hq::server_endpoint(
        "127.0.0.1:0".parse().unwrap(),
        &origin.tls.cert,
        &origin.tls.key,
    )
    .unwrap();
    let files_port = srv.endpoint.local_addr().unwrap().port();
    let files = ObjectFiles::new(Arc::new(edge)).with_access(Some(keys));
    tokio::spawn(hq::serve(
        srv,
        Arc::new(files),
        false,
        Arc::new(ServerStats::default()),
        origin.stop_rx(),
    ));
    Setup {
        origin,
        edge_port: addr.port(),
        files_port,
    }
}

fn in_an_hour() -> u64 {
    access::now() + 3600
}

async fn play_with(s: &Setup, query: Option<String>) -> segue_client::report::Report {
    let mut url = SegueUrl::parse(&format!("segue://localhost:{}/demo", s.edge_port)).unwrap();
    url.query = query;
    let mut o = PlayOptions::new(url, s.origin.tls.ca.clone());
    o.pace = false;
    play(&o).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn players_need_a_grant_for_the_object() {
    let s = setup();
    // None: 401; nothing played.
    let r = play_with(&s, None).await;
    let e = r.error.clone().unwrap_or_default();
    assert!(e.contains("401"), "{e}");
    assert_eq!(r.frames_received, 0);

    // Refused with 403: expired, tampered expiry, another object, another address, a key
    // the edge does not have.
    let good = access::grant(OLD, "demo", in_an_hour(), None);
    let refused = [
        access::grant(OLD, "demo", access::now() - 1, None),
        good.replace("expires=", "expires=9"),
        access::grant(OLD, "trailer", in_an_hour(), None),
        access::grant(
            OLD,
            "demo",
            in_an_hour(),
            Some("192.0.2.1".parse().unwrap()),
        ),
        access::grant(b"someone-elses-key-0123", "demo", in_an_hour(), None),
        "expires=1&token=not-base64!".to_owned(),
    ];
    for q in refused {
        let r = play_with(&s, Some(q.clone())).await;
        let e = r.error.clone().unwrap_or_default();
        assert!(e.contains("403"), "{q}: {e}");
        assert_eq!(r.frames_received, 0, "{q}");
    }

    // Granted: by either key (rotation), unbound or bound to this client's address; the
    // play is complete and byte-exact (its manifest fetch carried the grant as TOKEN).
    for q in [
        good,
        access::grant(NEW, "demo", in_an_hour(), None),
        access::grant(
            NEW,
            "demo",
            in_an_hour(),
            Some("127.0.0.1".parse().unwrap()),
        ),
    ] {
        let r = play_with(&s, Some(q.clone())).await;
        assert!(r.ok(), "{q}: {:?}", r.error);
        assert!(r.hash_ok && r.frames_received == r.frames_expected);
    }
    s.origin.shutdown().await;
}

/// A segment-protocol exchange on a new connection to the edge: the status it answers.
async fn manifest_status(s: &Setup, params: Params) -> Status {
    let ep = segue_server::quic::client_endpoint(&s.origin.tls.ca).unwrap();
    let conn = ep
        .connect(
            format!("127.0.0.1:{}", s.edge_port).parse().unwrap(),
            "localhost",
        )
        .unwrap()
        .await
        .unwrap();
    // Stream 0 is control: claim it, then ask on the next stream.
    let (mut c, _cr) = conn.open_bi().await.unwrap();
    c.write_all(b"OPTIONS segue://localhost/ RTSP/2.0\r\nCSeq: 1\r\n\r\n")
        .await
        .unwrap();
    let (mut send, mut recv) = conn.open_bi().await.unwrap();
    let req = SegmentRequest::Manifest {
        object: segue_wire::ObjectName::new("demo", 64).unwrap(),
        params,
    };
    send.write_all(&req.encode()).await.unwrap();
    send.finish().unwrap();
    let data = recv.read_to_end(1 << 22).await.unwrap();
    let limits = segue_wire::Limits::default();
    match decode_response_frame(&data, &limits).unwrap() {
        Some((ResponseFrame::Response(h), _)) => h.status,
        other => panic!("no RESPONSE: {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn segment_requests_need_a_grant_too() {
    let s = setup();
    assert_eq!(
        manifest_status(&s, Params::default()).await,
        Status::Unauthorized
    );
    let g = access::grant(NEW, "demo", in_an_hour(), None);
    let token = segue_wire::token::Grant::from_query(&g).unwrap().unwrap();
    let p = Params {
        token: Some(token),
        ..Params::default()
    };
    assert_eq!(manifest_status(&s, p).await, Status::Ok);
    s.origin.shutdown().await;
}

async fn download(s: &Setup, query: &str, http3: bool) -> anyhow::Result<Vec<u8>> {
    let opts = ClientOptions {
        http3,
        ..ClientOptions::default()
    };
    let c = hq::client_endpoint(&s.origin.tls.ca, &opts)?;
    let out = tempfile::tempdir()?;
    let u = url::Url::parse(&format!(
        "https://localhost:{}/demo.mp4{query}",
        s.files_port
    ))?;
    hq::get(&c, &[u], out.path(), &opts).await?;
    Ok(std::fs::read(out.path().join("demo.mp4"))?)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn file_downloads_need_a_grant_for_the_file() {
    let s = setup();
    let original =
        std::fs::read(Path::new(env!("CARGO_MANIFEST_DIR")).join("../media/samples/demo.mp4"))
            .unwrap();
    let e = download(&s, "", true).await.err().map(|e| format!("{e:#}"));
    assert!(e.as_deref().unwrap_or("").contains("401"), "{e:?}");
    // A grant for the media object is not one for its file.
    let other = access::grant(OLD, "demo", in_an_hour(), None);
    let e = download(&s, &format!("?{other}"), true)
        .await
        .err()
        .map(|e| format!("{e:#}"));
    assert!(e.as_deref().unwrap_or("").contains("403"), "{e:?}");
    let g = access::grant(OLD, "demo.mp4", in_an_hour(), None);
    for http3 in [true, false] {
        let got = download(&s, &format!("?{g}"), http3).await.unwrap();
        assert!(got == original, "http3 {http3}: bytes differ");
    }
    // hq-interop without a grant: the stream is reset, nothing is written.
    assert!(download(&s, "", false).await.is_err());
    s.origin.shutdown().await;
}
