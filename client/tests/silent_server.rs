//! A server that accepts the session and then sends nothing: the player must end with a clear
//! error within its stall timeout, paced or not, and never hang.

use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use quinn::crypto::rustls::QuicServerConfig;
use segue_client::{PlayOptions, play};
use segue_wire::control::{
    ControlDecoder, Message, Method, NptRange, Response, RtpInfo, SessionHeader,
};
use segue_wire::sdp::{Codec, Description, Track};
use segue_wire::{Limits, Resource, SegueUrl};

/// Answers DESCRIBE, SETUP and PLAY on the control stream; never opens a media stream.
async fn silent_server(dir: &std::path::Path) -> u16 {
    let tls = segue_certs::tls::server_config(
        &dir.join("localhost.pem"),
        &dir.join("localhost.key"),
        &[segue_wire::ALPN],
    )
    .unwrap();
    let cfg = quinn::ServerConfig::with_crypto(Arc::new(QuicServerConfig::try_from(tls).unwrap()));
    let ep = quinn::Endpoint::server(cfg, "127.0.0.1:0".parse().unwrap()).unwrap();
    let port = ep.local_addr().unwrap().port();
    tokio::spawn(async move {
        while let Some(inc) = ep.accept().await {
            tokio::spawn(async move {
                let conn = inc.await.unwrap();
                let (mut send, mut recv) = conn.accept_bi().await.unwrap();
                let mut dec = ControlDecoder::new(Limits::default());
                let mut buf = [0u8; 4096];
                while let Ok(Some(n)) = recv.read(&mut buf).await {
                    dec.push(&buf[..n]);
                    while let Ok(Some(Message::Request(req))) = dec.next_message() {
                        let mut r = Response::new(200, req.headers.cseq);
                        let url = req.uri.clone().unwrap();
                        match req.method {
                            Method::Describe => {
                                let d = Description {
                                    left_out: Vec::new(),
                                    name: "x".into(),
                                    duration_us: 10_000_000,
                                    tracks: vec![Track {
                                        index: 0,
                                        payload_type: 96,
                                        clock_rate: 90_000,
                                        codec: Codec::H264 {
                                            profile_level_id: [0x42, 0, 0x1f],
                                            parameter_sets: vec![],
                                        },
                                        frame_info_ext: 1,
                                    }],
                                };
                                r.headers.content_type = Some("application/sdp".into());
                                r.body = Bytes::from(d.to_sdp());
                            }
                            Method::Setup => {
                                r.headers.session = Some(SessionHeader {
                                    id: "s".into(),
                                    timeout: Some(60),
                                });
                                r.headers.transport = req.headers.transport;
                            }
                            Method::Play => {
                                let Resource::Object(o) = url.resource.clone() else {
                                    panic!()
                                };
                                r.headers.range = Some(NptRange {
                                    start: 0,
                                    end: Some(10_000_000),
                                });
                                r.headers.rtp_info = vec![RtpInfo {
                                    url: url.with_resource(Resource::Track(o, 0)),
                                    ssrc: 1,
                                    seq: 1,
                                    rtptime: 0,
                                }];
                            }
                            _ => {}
                        }
                        send.write_all(&r.encode()).await.unwrap();
                    }
                }
                conn.closed().await;
            });
        }
    });
    port
}

#[tokio::test]
async fn a_silent_server_ends_the_play_with_an_error() {
    let dir = tempfile::tempdir().unwrap();
    segue_certs::init(dir.path(), &[]).unwrap();
    let port = silent_server(dir.path()).await;
    for pace in [true, false] {
        let url = SegueUrl::parse(&format!("segue://localhost:{port}/x")).unwrap();
        let mut o = PlayOptions::new(url, dir.path().join("ca.pem"));
        o.pace = pace;
        o.stall_timeout = Duration::from_secs(1);
        let started = Instant::now();
        let r = tokio::time::timeout(Duration::from_secs(10), play(&o))
            .await
            .expect("player hung");
        assert!(!r.ok());
        let e = r.error.unwrap_or_default();
        assert!(e.contains("no playable media"), "pace={pace}: {e}");
        assert!(started.elapsed() < Duration::from_secs(5));
    }
}

/// The binary: a failed play exits non-zero and still writes its JSON report.
#[tokio::test]
async fn segue_play_exits_non_zero_and_writes_json() {
    let dir = tempfile::tempdir().unwrap();
    segue_certs::init(dir.path(), &[]).unwrap();
    let port = silent_server(dir.path()).await;
    let json = dir.path().join("report.json");
    let out = tokio::process::Command::new(env!("CARGO_BIN_EXE_segue-play"))
        .arg(format!("segue://localhost:{port}/x"))
        .arg("--ca")
        .arg(dir.path().join("ca.pem"))
        .args(["--stall-timeout", "1", "--quiet", "--json"])
        .arg(&json)
        .output()
        .await
        .unwrap();
    assert!(!out.status.success());
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.contains("result               FAILED"), "{stdout}");
    let report: serde_json::Value = serde_json::from_slice(&std::fs::read(&json).unwrap()).unwrap();
    assert!(
        report["error"]
            .as_str()
            .unwrap()
            .contains("no playable media")
    );
    assert_eq!(report["hash_ok"], false);
    // A URL that is not segue:// is refused by argument parsing, with a clear message.
    let bad = std::process::Command::new(env!("CARGO_BIN_EXE_segue-play"))
        .arg("http://example/x")
        .output()
        .unwrap();
    assert!(!bad.status.success());
    assert!(String::from_utf8_lossy(&bad.stderr).contains("scheme must be segue://"));
}

/// A play given a time bound stops there with its partial report (the lab's runner uses it
/// so a play still stalling at the end of a run is reported, not dropped).
#[tokio::test]
async fn a_play_stops_at_its_time_bound() {
    let dir = tempfile::tempdir().unwrap();
    segue_certs::init(dir.path(), &[]).unwrap();
    let port = silent_server(dir.path()).await;
    let url = SegueUrl::parse(&format!("segue://localhost:{port}/x")).unwrap();
    let mut o = PlayOptions::new(url, dir.path().join("ca.pem"));
    o.stall_timeout = Duration::from_secs(30);
    o.give_up_at = Some(tokio::time::Instant::now() + Duration::from_secs(1));
    let started = Instant::now();
    let r = tokio::time::timeout(Duration::from_secs(10), play(&o))
        .await
        .expect("player hung");
    assert!(r.gave_up, "{r:?}");
    assert_eq!(
        r.error.as_deref(),
        Some(segue_client::PlayError::GaveUp.to_string().as_str())
    );
    assert!(r.connect_ms.is_some(), "the partial report is kept");
    let took = started.elapsed();
    assert!(
        took >= Duration::from_millis(900) && took < Duration::from_secs(5),
        "{took:?}"
    );
}
