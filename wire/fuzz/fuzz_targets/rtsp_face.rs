#![no_main]
//! Fuzz target: the RTSP face's decoder (RTSP 1.0/2.0 requests and interleaved frames from
//! standard players) and its answers.

use libfuzzer_sys::fuzz_target;
use segue_wire::rtsp::{
    Answer, FaceDecoder, Incoming, Scheme, encode_response, rewrite_sdp,
};

fuzz_target!(|data: &[u8]| {
    // Whole input, then again in small pieces: both must agree and never panic.
    let collect = |chunk: usize| {
        let mut d = FaceDecoder::new(segue_wire::Limits::default());
        let mut out = Vec::new();
        for c in data.chunks(chunk) {
            d.push(c);
            loop {
                match d.next_request() {
                    Ok(Some(m)) => out.push(Ok(m)),
                    Ok(None) => break,
                    Err(e) => {
                        let fatal = e.error.fatal;
                        out.push(Err(e));
                        if fatal {
                            return out;
                        }
                    }
                }
            }
        }
        out
    };
    let whole = collect(data.len().max(1));
    let pieces = collect(7);
    assert_eq!(whole, pieces);
    // Answering whatever was read never panics, and neither does rewriting any text as SDP.
    for m in whole.into_iter().flatten() {
        let Incoming::Request(r) = m else { continue };
        let mut resp = segue_wire::control::Response::new(200, r.request.headers.cseq);
        resp.body = bytes::Bytes::copy_from_slice(data);
        let a = Answer {
            version: r.version,
            scheme: Scheme::Rtsp,
            method: r.request.method,
            url: r.request.uri.as_ref(),
        };
        let _ = encode_response(&resp, &a);
        if let (Some(u), Ok(text)) = (r.request.uri.as_ref(), std::str::from_utf8(data)) {
            let _ = rewrite_sdp(text, u, Scheme::Rtsps);
        }
    }
});
