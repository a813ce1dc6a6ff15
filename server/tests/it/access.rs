//! Signed URLs (docs/SECURITY.md) on a real edge on loopback: players, file downloads and
//! segment-protocol requests get nothing without a grant signed by a current key for that
//! object (and address), and everything with one; two keys verify at once (rotation).

use crate::common;

use std::path::Path;
use std::sync::Arc;

use segue_client::play::{PlayOptions, play};
use segue_interop::ClientOptions;
use segue_server::files::ObjectFiles;
use segue_server::files::hq;
use segue_server::node::access::{self, Keys};
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
async fn setup() -> Setup {
    let origin = common::origin_with_sample("demo.mp4").await;
    let keys = Arc::new(Keys::new(&[OLD.to_vec(), NEW.to_vec()]).unwrap());
    let key_file = origin.dir.path().join("token-keys");
    let mut lines = [OLD, NEW]
        .map(|k| String::from_utf8(k.to_vec()).unwrap())
        .join("\n");
    lines.push('\n');
    std::fs::write(&key_file, lines).unwrap();
    let common::TestEdge { edge, addr, .. } = origin
        .edge_with("edge", |c| c.tls.token_key_file = Some(key_file))
        .await;
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
        segue_server::node::admission::ConnectionLimits::default(),
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
    let s = setup().await;
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

/// Who asks: a player (no client certificate) or a node (the dev certificate: mTLS).
#[derive(Clone, Copy, PartialEq)]
enum Asker {
    Player,
    Node,
}

/// A segment-protocol exchange on a new connection to the edge: the status it answers.
async fn status_of(s: &Setup, who: Asker, req: Vec<u8>) -> Status {
    answer(s, who, req).await.status
}

/// The RESPONSE to one exchange.
async fn answer(s: &Setup, who: Asker, req: Vec<u8>) -> segue_wire::segment::ResponseHeader {
    let url = SegueUrl::parse(&format!("segue://localhost:{}/", s.edge_port)).unwrap();
    let conn = match who {
        // The player's own connect (stream 0 claimed by its control client).
        Asker::Player => {
            let (_ep, conn, _control) = segue_client::session::connect(
                &url,
                &s.origin.tls.ca,
                std::time::Duration::from_secs(5),
            )
            .await
            .unwrap();
            conn
        }
        Asker::Node => {
            let ep = segue_net::client_endpoint(&s.origin.tls, Default::default()).unwrap();
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
            conn
        }
    };
    let (mut send, mut recv) = conn.open_bi().await.unwrap();
    send.write_all(&req).await.unwrap();
    send.finish().unwrap();
    let data = recv.read_to_end(1 << 22).await.unwrap();
    let limits = segue_wire::Limits::default();
    match decode_response_frame(&data, &limits).unwrap() {
        Some((ResponseFrame::Response(h), _)) => h,
        other => panic!("no RESPONSE: {other:?}"),
    }
}

fn demo() -> segue_wire::ObjectName {
    segue_wire::ObjectName::new("demo", 64).unwrap()
}

fn manifest(params: Params) -> Vec<u8> {
    SegmentRequest::Manifest {
        object: demo(),
        params,
    }
    .encode()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn manifest_requests_need_a_grant_too() {
    let s = setup().await;
    let asked = |p| status_of(&s, Asker::Player, manifest(p));
    assert_eq!(asked(Params::default()).await, Status::Unauthorized);
    let g = access::grant(NEW, "demo", in_an_hour(), None);
    let token = segue_wire::token::Grant::from_query(&g).unwrap().unwrap();
    let granted = Params {
        token: Some(token),
        ..Params::default()
    };
    assert_eq!(asked(granted).await, Status::Ok);
    // A grant for another object is no grant for this one.
    let other = access::grant(NEW, "hd", in_an_hour(), None);
    let other = segue_wire::token::Grant::from_query(&other)
        .unwrap()
        .unwrap();
    let p = Params {
        token: Some(other),
        ..Params::default()
    };
    assert_eq!(asked(p).await, Status::Unauthorized);
    // Nodes (authenticated by their certificates) need no grant.
    assert_eq!(
        status_of(&s, Asker::Node, manifest(Params::default())).await,
        Status::Ok
    );
    s.origin.shutdown().await;
}

/// mTLS between nodes: segments and push offers are for nodes only, whatever grant a player
/// holds; an advert must come from the node it names.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn only_nodes_fetch_segments_push_or_advertise() {
    let s = setup().await;
    let g = access::grant(NEW, "demo", in_an_hour(), None);
    let granted = Params {
        token: Some(segue_wire::token::Grant::from_query(&g).unwrap().unwrap()),
        ..Params::default()
    };
    let segments = |params: Params| {
        SegmentRequest::Segments {
            object: demo(),
            first: 0,
            count: 1,
            params,
        }
        .encode()
    };
    assert_eq!(
        status_of(&s, Asker::Player, segments(granted)).await,
        Status::Unauthorized
    );
    assert_eq!(
        status_of(&s, Asker::Node, segments(Params::default())).await,
        Status::Ok
    );
    let push = SegmentRequest::PushOffer {
        object: demo(),
        first: 0,
        count: 1,
        params: Params {
            revision: Some(1),
            ..granted
        },
    };
    assert_eq!(
        status_of(&s, Asker::Player, push.encode()).await,
        Status::Unauthorized
    );
    // Adverts: only from the node their sender names (the dev certificate is localhost's).
    let advert = |sender: &str| common::empty_advert(sender).encode();
    assert_eq!(
        status_of(&s, Asker::Player, advert("localhost")).await,
        Status::Unauthorized
    );
    let other = answer(&s, Asker::Node, advert("edge-b")).await;
    assert_eq!(other.status, Status::Unauthorized);
    assert!(other.reason.contains("certificate"), "{}", other.reason);
    // The node it names gets past mTLS (this edge, without peers, then refuses it).
    let named = answer(&s, Asker::Node, advert("localhost")).await;
    assert!(named.reason.contains("no peers"), "{}", named.reason);

    // Refused from the frame type alone (issue 21): a player's ADVERT announcing 1 MiB, of
    // which nothing more comes, is answered at once; it was buffered up to the advert limit
    // and decoded before the refusal (or, cut short, waited for until the request timeout).
    let url = SegueUrl::parse(&format!("segue://localhost:{}/", s.edge_port)).unwrap();
    let (_ep, conn, _control) =
        segue_client::session::connect(&url, &s.origin.tls.ca, std::time::Duration::from_secs(5))
            .await
            .unwrap();
    let (mut send, mut recv) = conn.open_bi().await.unwrap();
    send.write_all(&[0x04, 0x80, 0x10, 0x00, 0x00])
        .await
        .unwrap();
    let data = tokio::time::timeout(std::time::Duration::from_secs(2), recv.read_to_end(1 << 16))
        .await
        .expect("answered before the advert's body")
        .unwrap();
    match decode_response_frame(&data, &segue_wire::Limits::default()).unwrap() {
        Some((ResponseFrame::Response(h), _)) => {
            assert_eq!(h.status, Status::Unauthorized);
            assert!(h.reason.contains("node certificate"), "{}", h.reason);
        }
        other => panic!("no RESPONSE: {other:?}"),
    }
    s.origin.shutdown().await;
}

/// A client certificate of another CA is refused in the handshake (not let in as a player).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_certificate_of_another_ca_is_refused() {
    let s = setup().await;
    let other = tempfile::tempdir().unwrap();
    let foreign = segue_net::NodeTls::dev_node(other.path(), "edge-b").unwrap();
    // It trusts our CA for the server, and presents a certificate of its own CA.
    let tls = segue_net::NodeTls {
        ca: s.origin.tls.ca.clone(),
        ..foreign
    };
    let ep = segue_net::client_endpoint(&tls, Default::default()).unwrap();
    let conn = ep
        .connect(
            format!("127.0.0.1:{}", s.edge_port).parse().unwrap(),
            "localhost",
        )
        .unwrap()
        .await;
    // TLS 1.3: the client may finish its side before the server's verdict; then the
    // connection dies at its first use.
    let refused = match conn {
        Err(_) => true,
        Ok(c) => {
            let used = async {
                let (mut send, mut recv) = c.open_bi().await?;
                send.write_all(b"OPTIONS segue://localhost/ RTSP/2.0\r\nCSeq: 1\r\n\r\n")
                    .await?;
                send.finish()?;
                recv.read_to_end(1 << 16).await?;
                anyhow::Ok(())
            };
            used.await.is_err()
        }
    };
    assert!(refused, "a foreign client certificate was accepted");
    s.origin.shutdown().await;
}

async fn download(s: &Setup, query: &str, http3: bool) -> anyhow::Result<Vec<u8>> {
    let opts = ClientOptions {
        http3,
        ..ClientOptions::default()
    };
    let c = segue_interop::client_endpoint(&s.origin.tls.ca, &opts)?;
    let out = tempfile::tempdir()?;
    let u = url::Url::parse(&format!(
        "https://localhost:{}/demo.mp4{query}",
        s.files_port
    ))?;
    segue_interop::get(&c, &[u], out.path(), &opts).await?;
    Ok(std::fs::read(out.path().join("demo.mp4"))?)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn file_downloads_need_a_grant_for_the_file() {
    let s = setup().await;
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
