//! Control channel: RTSP 2.0 (RFC 7826) syntax on the first client-initiated bidirectional
//! stream. Messages are framed and serialised by `rtsp-types`; this module adds segue/1's typed
//! view (only the methods and headers the protocol uses), the limits, and an incremental decoder.

pub(crate) mod decoder;
pub(crate) mod headers;
pub(crate) mod message;

pub use decoder::{ControlDecoder, ControlError};
pub use headers::{Headers, Npt, NptRange, RtpInfo, SEGUE_TOKEN, SessionHeader, Transport};
pub use message::{
    Message, Method, Request, Response, sanitize_header_text as message_text, status,
};

/// `Content-Type` of DESCRIBE bodies.
pub const SDP_CONTENT_TYPE: &str = "application/sdp";
/// `Content-Type` of GET_PARAMETER bodies.
pub const PARAMETERS_CONTENT_TYPE: &str = "text/parameters";
/// Session timeout (seconds) a server announces unless configured otherwise.
pub const DEFAULT_SESSION_TIMEOUT: u64 = 60;

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Limits, Resource, SegueUrl};

    fn decode_all(bytes: &[u8]) -> Vec<Result<Message, ControlError>> {
        let mut d = ControlDecoder::new(Limits::default());
        d.push(bytes);
        let mut out = Vec::new();
        loop {
            match d.next_message() {
                Ok(None) => break,
                Err(e) if e.fatal => {
                    out.push(Err(e));
                    break;
                }
                r => out.push(r.map(|m| m.expect("Some"))),
            }
        }
        out
    }

    // docs/PROTOCOL.md, "Pipelined start": the client's first flight.
    const FLIGHT: &str = "DESCRIBE segue://edge.example:8554/movies/demo RTSP/2.0\r\n\
        CSeq: 1\r\nAccept: application/sdp\r\n\r\n\
        SETUP segue://edge.example:8554/movies/demo RTSP/2.0\r\n\
        CSeq: 2\r\nPipelined-Requests: 1\r\nTransport: RTP/AVP/QUIC;unicast;flow-id=0\r\n\r\n\
        PLAY segue://edge.example:8554/movies/demo RTSP/2.0\r\n\
        CSeq: 3\r\nPipelined-Requests: 1\r\nRange: npt=0-\r\n\r\n";

    #[test]
    fn pipelined_flight() {
        let msgs = decode_all(FLIGHT.as_bytes());
        assert_eq!(msgs.len(), 3);
        let reqs: Vec<Request> = msgs
            .into_iter()
            .map(|m| match m.unwrap() {
                Message::Request(r) => r,
                other => panic!("{other:?}"),
            })
            .collect();
        let url = SegueUrl::parse("segue://edge.example/movies/demo").unwrap();
        assert_eq!(reqs[0].method, Method::Describe);
        assert_eq!(reqs[0].uri.as_ref(), Some(&url));
        assert_eq!(reqs[1].method, Method::Setup);
        assert_eq!(reqs[1].headers.transport, Some(Transport { flow_id: 0 }));
        assert_eq!(reqs[1].headers.pipelined_requests, Some(1));
        assert_eq!(reqs[2].method, Method::Play);
        assert_eq!(reqs[2].headers.cseq, 3);
        assert_eq!(
            reqs[2].headers.range,
            Some(NptRange {
                start: 0,
                end: None
            })
        );
        // Fed one byte at a time, the same three messages come out.
        let mut d = ControlDecoder::new(Limits::default());
        let mut n = 0;
        for b in FLIGHT.as_bytes() {
            d.push(&[*b]);
            while d.next_message().unwrap().is_some() {
                n += 1;
            }
        }
        assert_eq!(n, 3);
        assert_eq!(d.buffered(), 0);
    }

    // docs/PROTOCOL.md §5.4: the server's answers to the pipelined flight.
    #[test]
    fn pipelined_answers_example() {
        let sdp = crate::sdp::tests::sample().to_sdp();
        assert_eq!(
            sdp.len(),
            510,
            "update the Content-Length in docs/PROTOCOL.md §5.4"
        );
        let text = format!(
            "RTSP/2.0 200 OK\r\nCSeq: 1\r\nContent-Type: application/sdp\r\nContent-Length: 510\r\n\r\n{sdp}\
             RTSP/2.0 200 OK\r\nCSeq: 2\r\nPipelined-Requests: 1\r\nSession: 7f3a9c;timeout=60\r\n\
             Transport: RTP/AVP/QUIC;unicast;flow-id=0\r\n\r\n\
             RTSP/2.0 200 OK\r\nCSeq: 3\r\nPipelined-Requests: 1\r\nRange: npt=0-30\r\n\
             RTP-Info: url=\"segue://edge.example:8554/movies/demo/track=0\" ssrc=1234ABCD:seq=100;rtptime=90000, \
             url=\"segue://edge.example:8554/movies/demo/track=1\" ssrc=5E6F7A8B:seq=7;rtptime=48000\r\n\
             Session: 7f3a9c\r\n\r\n"
        );
        let msgs: Vec<Response> = decode_all(text.as_bytes())
            .into_iter()
            .map(|m| match m.unwrap() {
                Message::Response(r) => r,
                other => panic!("{other:?}"),
            })
            .collect();
        assert_eq!(msgs.len(), 3);
        assert_eq!(
            crate::sdp::Description::from_sdp(std::str::from_utf8(&msgs[0].body).unwrap(), 8)
                .unwrap(),
            crate::sdp::tests::sample()
        );
        assert_eq!(
            msgs[1].headers.session,
            Some(SessionHeader {
                id: "7f3a9c".into(),
                timeout: Some(60)
            })
        );
        assert_eq!(msgs[1].headers.transport, Some(Transport { flow_id: 0 }));
        let info = &msgs[2].headers.rtp_info;
        assert_eq!(info.len(), 2);
        assert_eq!(
            (info[1].ssrc, info[1].seq, info[1].rtptime),
            (0x5e6f_7a8b, 7, 48_000)
        );
        assert!(matches!(info[1].url.resource, Resource::Track(_, 1)));
        assert_eq!(
            msgs[2].headers.range,
            Some(NptRange {
                start: 0,
                end: Some(30_000_000)
            })
        );
        // Our encoder writes the entries comma-separated without the optional space.
        let again = msgs[2].encode();
        let again = String::from_utf8(again).unwrap();
        assert!(
            again.contains("ssrc=1234ABCD:seq=100;rtptime=90000,url="),
            "{again}"
        );
    }

    #[test]
    fn describe_response_with_body() {
        let sdp = "v=0\r\n";
        let text = format!(
            "RTSP/2.0 200 OK\r\nCSeq: 1\r\nContent-Type: application/sdp\r\n\
             Content-Length: {}\r\n\r\n{sdp}",
            sdp.len()
        );
        let m = decode_all(text.as_bytes()).remove(0).unwrap();
        let Message::Response(r) = m else { panic!() };
        assert_eq!(r.status, 200);
        assert_eq!(r.headers.content_type.as_deref(), Some(SDP_CONTENT_TYPE));
        assert_eq!(&r.body[..], sdp.as_bytes());
    }

    #[test]
    fn play_notify_end_of_stream() {
        let url = SegueUrl::parse("segue://e/movies/demo").unwrap();
        let mut n = Request::new(Method::PlayNotify, Some(url), 1);
        n.headers.notify_reason = Some("end-of-stream".into());
        n.headers.session = Some(SessionHeader {
            id: "s1".into(),
            timeout: None,
        });
        let m = decode_all(&n.encode()).remove(0).unwrap();
        assert_eq!(m, Message::Request(n));
    }

    #[test]
    fn errors_carry_status_and_cseq() {
        let cases: [(&str, u16, bool); 6] = [
            (
                "ANNOUNCE segue://h/a RTSP/2.0\r\nCSeq: 4\r\n\r\n",
                501,
                false,
            ),
            ("OPTIONS * RTSP/1.0\r\nCSeq: 4\r\n\r\n", 505, false),
            (
                "DESCRIBE segue://h/../x RTSP/2.0\r\nCSeq: 4\r\n\r\n",
                0,
                false,
            ),
            (
                "DESCRIBE segue://h/a b RTSP/2.0\r\nCSeq: 4\r\n\r\n",
                400,
                false,
            ),
            (
                "PLAY segue://h/a RTSP/2.0\r\nCSeq: 4\r\nRange: smpte=0-\r\n\r\n",
                400,
                false,
            ),
            (
                // Only other transports offered: 461, not a malformed message.
                "SETUP segue://h/a RTSP/2.0\r\nCSeq: 4\r\nTransport: RTP/AVP;unicast\r\n\r\n",
                461,
                false,
            ),
        ];
        for (text, status, fatal) in cases {
            let r = decode_all(text.as_bytes()).remove(0);
            if status == 0 {
                // `url` resolves the dot segment; the name that remains is inside the root.
                let Ok(Message::Request(r)) = r else {
                    panic!("{text}")
                };
                assert!(
                    matches!(r.uri.unwrap().resource, Resource::Object(o) if o.as_str() == "x")
                );
                continue;
            }
            let e = r.expect_err(text);
            assert_eq!(
                (e.status, e.fatal, e.cseq),
                (status, fatal, Some(4)),
                "{text}"
            );
        }
        // Status codes are 100..=599 (found by the control fuzz target: "020" did not round-trip).
        for st in ["020", "000", "600", "999"] {
            let text = format!("RTSP/2.0 {st} OK\r\nCSeq: 4\r\n\r\n");
            let e = decode_all(text.as_bytes()).remove(0).expect_err(&text);
            assert_eq!((e.status, e.fatal), (400, false), "{text}");
        }
        // Missing CSeq: 400 without a CSeq to echo.
        let e = decode_all(b"OPTIONS * RTSP/2.0\r\n\r\n")
            .remove(0)
            .unwrap_err();
        assert_eq!((e.status, e.cseq), (400, None));
    }

    #[test]
    fn limits_are_fatal() {
        let l = Limits::default();
        let long = format!(
            "OPTIONS * RTSP/2.0\r\nCSeq: 1\r\nX: {}\r\n\r\n",
            "a".repeat(9000)
        );
        let e = decode_all(long.as_bytes()).remove(0).unwrap_err();
        assert!(e.fatal && e.status == 413);
        // Its CSeq was readable before the limit: the answer carries it.
        assert_eq!(e.cseq, Some(1));
        let many: String = (0..=l.max_header_count)
            .map(|i| format!("X-{i}: y\r\n"))
            .collect();
        let text = format!("OPTIONS * RTSP/2.0\r\nCSeq: 1\r\n{many}\r\n");
        let e = decode_all(text.as_bytes()).remove(0).unwrap_err();
        assert!(e.fatal && e.status == 400 && e.cseq == Some(1));
        // A count says it is one (it said "header count is 34 bytes").
        assert_eq!(e.error.to_string(), "34 headers, limit is 32");
        let big = "OPTIONS * RTSP/2.0\r\nCSeq: 1\r\nContent-Length: 65537\r\n\r\n";
        let e = decode_all(big.as_bytes()).remove(0).unwrap_err();
        assert!(e.fatal && e.status == 413);
        // A head that never ends is cut off once it reaches the limit, not buffered forever.
        let mut d = ControlDecoder::new(l);
        d.push(&[b'a'; 8191]);
        assert_eq!(d.next_message(), Ok(None));
        d.push(b"a");
        let e = d.next_message().unwrap_err();
        assert!(e.fatal && e.cseq.is_none());
        assert_eq!(d.buffered(), 0);
        // A CSeq line the limit cuts through is not read (it could be another number).
        let mut d = ControlDecoder::new(l);
        let frame = "OPTIONS * RTSP/2.0\r\nX: \r\nCSeq: 1".len();
        let pad = "a".repeat(l.max_control_head - 1 - frame);
        d.push(format!("OPTIONS * RTSP/2.0\r\nX: {pad}\r\nCSeq: 1").as_bytes());
        assert_eq!(d.next_message(), Ok(None));
        d.push(b"3");
        assert_eq!(d.next_message().unwrap_err().cseq, None);
    }
}
