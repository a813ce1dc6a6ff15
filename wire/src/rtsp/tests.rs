use super::*;
use crate::control::{NptRange, Response, RtpInfo, SessionHeader, status};
use crate::{ObjectName, Resource};

fn decode(d: &mut FaceDecoder) -> Vec<Result<Incoming, FaceError>> {
    let mut out = Vec::new();
    loop {
        match d.next_request() {
            Ok(None) => return out,
            Err(e) if e.error.fatal => {
                out.push(Err(e));
                return out;
            }
            r => out.push(r.map(|m| m.expect("Some"))),
        }
    }
}

fn request(r: &Result<Incoming, FaceError>) -> &FaceRequest {
    match r {
        Ok(Incoming::Request(r)) => r.as_ref(),
        other => panic!("{other:?}"),
    }
}

// What ffmpeg 5.1 (`-rtsp_transport tcp`) sends, with an RTCP receiver report it
// interleaves after PLAY.
const FFMPEG: &str = "OPTIONS rtsp://127.0.0.1:8554/movies/demo.mp4 RTSP/1.0\r\n\
    CSeq: 1\r\nUser-Agent: Lavf59.27.100\r\n\r\n\
    DESCRIBE rtsp://127.0.0.1:8554/movies/demo.mp4 RTSP/1.0\r\n\
    Accept: application/sdp\r\nCSeq: 2\r\nUser-Agent: Lavf59.27.100\r\n\r\n\
    SETUP rtsp://127.0.0.1:8554/movies/demo.mp4/track=0 RTSP/1.0\r\n\
    Transport: RTP/AVP/TCP;unicast;interleaved=0-1\r\nCSeq: 3\r\n\r\n\
    SETUP rtsp://127.0.0.1:8554/movies/demo.mp4/track=1 RTSP/1.0\r\n\
    Transport: RTP/AVP/TCP;unicast;interleaved=2-3\r\nCSeq: 4\r\nSession: 0a1b2c3d\r\n\r\n\
    PLAY rtsp://127.0.0.1:8554/movies/demo.mp4/ RTSP/1.0\r\n\
    Range: npt=0.000-\r\nCSeq: 5\r\nSession: 0a1b2c3d\r\n\r\n";

fn rr() -> Vec<u8> {
    // An RTCP receiver report without report blocks, on channel 1.
    let mut b = b"$\x01\x00\x08".to_vec();
    b.extend_from_slice(&[0x80, 201, 0, 1, 0xde, 0xad, 0xbe, 0xef]);
    b
}

fn url(s: &str) -> SegueUrl {
    SegueUrl::parse(s).unwrap()
}

#[test]
fn ffmpegs_requests_in_segue_types() {
    let mut bytes = FFMPEG.as_bytes().to_vec();
    bytes.extend_from_slice(&rr());
    bytes.extend_from_slice(
        b"GET_PARAMETER rtsp://127.0.0.1:8554/movies/demo.mp4/ RTSP/1.0\r\nCSeq: 6\r\nSession: 0a1b2c3d\r\n\r\n",
    );
    // Whole, and a byte at a time: the same requests, the RTCP skipped.
    for step in [bytes.len(), 1] {
        let mut d = FaceDecoder::new(Limits::default());
        let mut got = Vec::new();
        for part in bytes.chunks(step) {
            d.push(part);
            got.extend(decode(&mut d));
        }
        let reqs: Vec<&FaceRequest> = got
            .iter()
            .filter(|r| !matches!(r, Ok(Incoming::Ignored)))
            .map(request)
            .collect();
        assert_eq!(got.len(), 7, "six requests and the report");
        assert_eq!(reqs.len(), 6);
        let object = url("segue://127.0.0.1:8554/movies/demo.mp4");
        assert!(reqs.iter().all(|r| r.version == Version::V1));
        assert_eq!(reqs[0].request.method, Method::Options);
        assert_eq!(reqs[1].request.method, Method::Describe);
        assert_eq!(reqs[1].request.uri.as_ref(), Some(&object));
        assert_eq!(reqs[2].request.method, Method::Setup);
        assert_eq!(
            reqs[2].request.uri.as_ref().map(|u| &u.resource),
            Some(&Resource::Track(
                ObjectName::new("movies/demo.mp4", 255).unwrap(),
                0
            ))
        );
        assert_eq!((reqs[2].channel, reqs[3].channel), (Some(0), Some(2)));
        assert_eq!(reqs[2].request.headers.transport, None, "the node sets it");
        assert_eq!(
            reqs[3]
                .request
                .headers
                .session
                .as_ref()
                .map(|s| s.id.as_str()),
            Some("0a1b2c3d")
        );
        // The aggregate URL with the slash players add to Content-Base is the object's.
        assert_eq!(reqs[4].request.uri.as_ref(), Some(&object));
        assert_eq!(
            reqs[4].request.headers.range,
            Some(NptRange {
                start: 0,
                end: None
            })
        );
        assert_eq!(reqs[5].request.method, Method::GetParameter);
        assert_eq!(d.buffered(), 0);
    }
}

#[test]
fn rtsp_2_and_a_resume() {
    let mut d = FaceDecoder::new(Limits::default());
    d.push(
        b"PLAY rtsps://edge.example/movies/demo.mp4?expires=9&token=ab RTSP/2.0\r\n\
          CSeq: 9\r\nSession: s1\r\nRange: npt=now-\r\n\r\n",
    );
    let got = decode(&mut d);
    let r = request(&got[0]);
    assert_eq!(r.version, Version::V2);
    assert_eq!(r.request.headers.range, None, "npt=now- resumes");
    assert_eq!(
        r.request.uri,
        Some(url(
            "segue://edge.example:322/movies/demo.mp4?expires=9&token=ab"
        )),
        "rtsps' default port made explicit, the query kept"
    );
}

#[test]
fn what_the_face_refuses() {
    let cases: [(&[u8], u16); 5] = [
        (
            b"SETUP rtsp://h/a.mp4/track=0 RTSP/1.0\r\nCSeq: 3\r\nTransport: RTP/AVP;unicast;client_port=5000-5001\r\n\r\n",
            status::UNSUPPORTED_TRANSPORT,
        ),
        (
            b"SETUP rtsp://h/a.mp4/track=0 RTSP/1.0\r\nCSeq: 3\r\n\r\n",
            status::UNSUPPORTED_TRANSPORT,
        ),
        (
            b"ANNOUNCE rtsp://h/a.mp4 RTSP/1.0\r\nCSeq: 3\r\n\r\n",
            status::NOT_IMPLEMENTED,
        ),
        (
            b"DESCRIBE http://h/a.mp4 RTSP/1.0\r\nCSeq: 3\r\n\r\n",
            status::BAD_REQUEST,
        ),
        (
            b"DESCRIBE rtsp://h/../etc/passwd RTSP/1.0\r\nCSeq: 3\r\n\r\n",
            status::BAD_REQUEST,
        ),
    ];
    for (bytes, st) in cases {
        let mut d = FaceDecoder::new(Limits::default());
        d.push(bytes);
        d.push(b"OPTIONS * RTSP/1.0\r\nCSeq: 4\r\n\r\n");
        let got = decode(&mut d);
        let text = String::from_utf8_lossy(bytes);
        match &got[0] {
            Err(e) => {
                assert_eq!(e.error.status, st, "{text}");
                assert_eq!(e.error.cseq, Some(3), "{text}");
                assert!(!e.error.fatal, "{text}");
                assert_eq!(e.version, Version::V1);
            }
            Ok(other) => {
                // `..` is resolved by the URL parser: what remains must stay in the root.
                let r = match other {
                    Incoming::Request(r) => r.as_ref(),
                    Incoming::Ignored => panic!("{text}"),
                };
                assert_eq!(st, status::BAD_REQUEST);
                assert_eq!(
                    r.request
                        .uri
                        .as_ref()
                        .and_then(|u| u.resource.object())
                        .map(|o| o.as_str()),
                    Some("etc/passwd"),
                    "{text}"
                );
            }
        }
        assert_eq!(request(&got[1]).request.method, Method::Options, "{text}");
    }
    // A head over the limit loses the framing: fatal, with the CSeq it had.
    let mut d = FaceDecoder::new(Limits::default());
    d.push(b"DESCRIBE rtsp://h/a.mp4 RTSP/1.0\r\nCSeq: 5\r\nX: ");
    d.push(&vec![b'a'; Limits::default().max_control_head]);
    let e = d.next_request().unwrap_err();
    assert!(e.error.fatal);
    assert_eq!(e.error.status, status::REQUEST_ENTITY_TOO_LARGE);
    assert_eq!(e.error.cseq, Some(5));
}

fn sample_sdp() -> String {
    crate::sdp::tests::sample().to_sdp()
}

#[test]
fn describe_answer_has_a_base_and_absolute_controls() {
    let u = url("segue://127.0.0.1:8554/movies/demo?expires=9&token=ab");
    let mut r = Response::new(status::OK, 2);
    r.headers.content_type = Some("application/sdp".into());
    r.body = sample_sdp().into();
    let a = Answer {
        version: Version::V1,
        scheme: Scheme::Rtsp,
        method: Method::Describe,
        url: Some(&u),
    };
    let text = String::from_utf8(encode_response(&r, &a)).unwrap();
    assert!(text.starts_with("RTSP/1.0 200 Ok\r\n"), "{text}");
    assert!(
        text.contains("Content-Base: rtsp://127.0.0.1:8554/movies/demo/\r\n"),
        "{text}"
    );
    assert!(
        text.contains("a=control:rtsp://127.0.0.1:8554/movies/demo?expires=9&token=ab\r\n"),
        "{text}"
    );
    assert!(
        text.contains("a=control:rtsp://127.0.0.1:8554/movies/demo/track=1?expires=9&token=ab\r\n"),
        "{text}"
    );
    assert!(!text.contains("a=control:track="), "{text}");
    let body = &text[text.find("\r\n\r\n").unwrap() + 4..];
    assert!(
        text.contains(&format!("Content-Length: {}\r\n", body.len())),
        "{text}"
    );
    // Only the control lines changed.
    let others = |t: &str| -> Vec<String> {
        t.lines()
            .filter(|l| !l.starts_with("a=control:"))
            .map(str::to_owned)
            .collect()
    };
    assert_eq!(others(body), others(&sample_sdp()));
}

#[test]
fn setup_and_play_answers_in_each_version() {
    let mut setup = Response::new(status::OK, 3);
    setup.headers.session = Some(SessionHeader {
        id: "0a1b2c3d".into(),
        timeout: Some(60),
    });
    set_channel_response(&mut setup, 2);
    let a = |version, method| Answer {
        version,
        scheme: Scheme::Rtsp,
        method,
        url: None,
    };
    let text = String::from_utf8(encode_response(&setup, &a(Version::V1, Method::Setup))).unwrap();
    assert!(
        text.contains("Transport: RTP/AVP/TCP;unicast;interleaved=2-3\r\n"),
        "{text}"
    );
    assert!(text.contains("Session: 0a1b2c3d;timeout=60\r\n"), "{text}");

    let mut play = Response::new(status::OK, 5);
    play.headers.range = Some(NptRange {
        start: 0,
        end: Some(30_000_000),
    });
    play.headers.rtp_info = vec![RtpInfo {
        url: url("segue://127.0.0.1:8554/movies/demo/track=0"),
        ssrc: 0x1234_abcd,
        seq: 100,
        rtptime: 90000,
    }];
    let v1 = String::from_utf8(encode_response(&play, &a(Version::V1, Method::Play))).unwrap();
    assert!(
        v1.contains(
            "RTP-Info: url=rtsp://127.0.0.1:8554/movies/demo/track=0;seq=100;rtptime=90000\r\n"
        ),
        "{v1}"
    );
    let v2 = String::from_utf8(encode_response(&play, &a(Version::V2, Method::Play))).unwrap();
    assert!(v2.starts_with("RTSP/2.0 200 Ok\r\n"), "{v2}");
    assert!(
        v2.contains("RTP-Info: url=\"rtsp://127.0.0.1:8554/movies/demo/track=0\" ssrc=1234ABCD:seq=100;rtptime=90000\r\n"),
        "{v2}"
    );
}

fn set_channel_response(r: &mut Response, ch: u8) {
    r.headers.transport = Some(crate::control::Transport {
        flow_id: u64::from(ch),
    });
}

#[test]
fn server_requests_only_in_rtsp_2() {
    let mut n = Request::new(
        Method::PlayNotify,
        Some(url("segue://127.0.0.1:8554/movies/demo")),
        1,
    );
    n.headers.notify_reason = Some("end-of-stream".into());
    assert_eq!(encode_request(&n, Version::V1, Scheme::Rtsp), None);
    let text = String::from_utf8(encode_request(&n, Version::V2, Scheme::Rtsps).unwrap()).unwrap();
    assert!(
        text.starts_with("PLAY_NOTIFY rtsps://127.0.0.1:8554/movies/demo RTSP/2.0\r\n"),
        "{text}"
    );
    assert!(text.contains("Notify-Reason: end-of-stream\r\n"), "{text}");
}

#[test]
fn urls_map_both_ways() {
    for (rtsp, segue) in [
        ("rtsp://h/a.mp4", "segue://h:554/a.mp4"),
        ("rtsp://h:8554/a/b.ts/", "segue://h:8554/a/b.ts"),
        (
            "rtsps://[::1]:9/a.mp4/track=1?t=1",
            "segue://[::1]:9/a.mp4/track=1?t=1",
        ),
    ] {
        let s = segue_url(&url::Url::parse(rtsp).unwrap(), 255).unwrap();
        assert_eq!(s, url(segue), "{rtsp}");
    }
    assert_eq!(
        face_url(&url("segue://h:554/a.mp4/track=1"), Scheme::Rtsp),
        "rtsp://h:554/a.mp4/track=1"
    );
}
