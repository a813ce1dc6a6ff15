//! Answers of the RTSP face: segue/1's typed responses and server requests written in the
//! client's RTSP version, with `rtsp://` URLs, the interleaved transport, `Content-Base`
//! and absolute control URLs in the SDP.

use rtsp_types as rt;
use rtsp_types::headers as rh;

use super::{Scheme, Version, face_url};
use crate::address::{Resource, SegueUrl};
use crate::control::RtpInfo;
use crate::control::headers::rtp_info_v2;
use crate::control::message::{Method, Request, Response};

/// What an answer depends on besides the response: the request it answers.
#[derive(Debug, Clone, Copy)]
pub struct Answer<'a> {
    pub version: Version,
    pub scheme: Scheme,
    pub method: Method,
    /// The request's URL (segue/1 form).
    pub url: Option<&'a SegueUrl>,
}

/// The name this server gives in `Server`.
const SERVER: &str = "Segue";

fn write(msg: rt::Message<&[u8]>) -> Vec<u8> {
    let mut out = Vec::with_capacity(256);
    // Writing into a Vec cannot fail; `rtsp-types` only reports io errors of the writer.
    if msg.write(&mut out).is_err() {
        out.clear();
    }
    out
}

fn url_of(u: &SegueUrl, scheme: Scheme) -> Option<url::Url> {
    url::Url::parse(&face_url(u, scheme)).ok()
}

/// `RTP-Info` in the version's form: RTSP 1.0 `url=U;seq=N;rtptime=T`, RTSP 2.0
/// `url="U" ssrc=S:seq=N;rtptime=T`.
fn rtp_info(infos: &[RtpInfo], version: Version, scheme: Scheme) -> rh::RtpInfos {
    use rh::rtp_info::v1;
    match version {
        Version::V1 => rh::RtpInfos::V1(
            infos
                .iter()
                .filter_map(|i| {
                    Some(v1::RtpInfo {
                        uri: url_of(&i.url, scheme)?,
                        seq: Some(i.seq),
                        rtptime: Some(i.rtptime),
                    })
                })
                .collect(),
        ),
        Version::V2 => rtp_info_v2(infos, |u| url_of(u, scheme)),
    }
}

/// The response as RTSP text of the request's version.
pub fn encode_response(r: &Response, a: &Answer<'_>) -> Vec<u8> {
    let mut headers = r.headers.clone();
    let transport = headers.transport.take();
    let infos = std::mem::take(&mut headers.rtp_info);
    let mut body = r.body.to_vec();
    let mut content_base = None;
    if a.method == Method::Describe
        && r.is_success()
        && let Some(url) = a.url
        && let Ok(sdp) = std::str::from_utf8(&body)
    {
        let object = url.object_url().unwrap_or_else(|| url.clone());
        content_base = Some(format!("{}/", face_url(&object, a.scheme)));
        body = rewrite_sdp(sdp, url, a.scheme).into_bytes();
    }
    let mut resp =
        rt::Response::builder(a.version.rt(), rt::StatusCode::from(r.status)).build(&body[..]);
    headers.to_rtsp(resp.as_mut());
    resp.insert_header(rh::SERVER, SERVER);
    if a.version == Version::V2 && a.method == Method::Setup && r.is_success() {
        // RFC 7826 §18.29 and §18.5: what a client may do with the media (seek to any
        // point, nothing changes while it plays) is said in every SETUP response.
        resp.insert_header(rh::MEDIA_PROPERTIES, "Random-Access, Immutable, Unlimited");
        resp.insert_header(rh::ACCEPT_RANGES, "npt");
    }
    if let Some(t) = transport {
        let ch = t.flow_id;
        resp.insert_header(
            rh::TRANSPORT,
            format!("RTP/AVP/TCP;unicast;interleaved={ch}-{}", ch + 1),
        );
    }
    if !infos.is_empty() {
        resp.insert_typed_header(&rtp_info(&infos, a.version, a.scheme));
    }
    if let Some(base) = content_base {
        resp.insert_header(rh::CONTENT_BASE, base);
    }
    write(rt::Message::Response(resp))
}

/// A server request (PLAY_NOTIFY, TEARDOWN) for the client. RTSP 1.0 has neither from a
/// server (RFC 2326 §10): None; there the RTCP BYE ends the stream.
pub fn encode_request(r: &Request, version: Version, scheme: Scheme) -> Option<Vec<u8>> {
    if version == Version::V1 {
        return None;
    }
    let mut b = rt::Request::builder(r.method.to_rtsp(), version.rt());
    if let Some(u) = r.uri.as_ref().and_then(|u| url_of(u, scheme)) {
        b = b.request_uri(u);
    }
    let mut headers = r.headers.clone();
    let infos = std::mem::take(&mut headers.rtp_info);
    let mut req = b.build(&r.body[..]);
    headers.to_rtsp(req.as_mut());
    if !infos.is_empty() {
        req.insert_typed_header(&rtp_info(&infos, version, scheme));
    }
    Some(write(rt::Message::Request(req)))
}

/// The object's SDP with absolute control URLs: the aggregate URL for `a=control:*`, the
/// track URL for `a=control:track=N`, each with the request's query (a signed URL's grant
/// then travels with every SETUP and PLAY a player makes from it).
pub fn rewrite_sdp(sdp: &str, url: &SegueUrl, scheme: Scheme) -> String {
    let Some(object) = url.resource.object() else {
        return sdp.to_owned();
    };
    let query = url
        .query
        .as_ref()
        .map_or(String::new(), |q| format!("?{q}"));
    let at = |r: Resource| {
        let u = face_url(&url.with_resource(r), scheme);
        format!("{u}{query}")
    };
    let mut out = String::with_capacity(sdp.len() + 256);
    for line in sdp.split_inclusive('\n') {
        let (text, end) = match line.strip_suffix("\r\n") {
            Some(t) => (t, "\r\n"),
            None => line.strip_suffix('\n').map_or((line, ""), |t| (t, "\n")),
        };
        let control = text.strip_prefix("a=control:");
        let track = control
            .and_then(|c| c.strip_prefix(crate::address::TRACK_PREFIX))
            .and_then(|n| n.parse::<u32>().ok());
        match (control, track) {
            (Some("*"), _) => {
                out.push_str("a=control:");
                out.push_str(&at(Resource::Object(object.clone())));
            }
            (Some(_), Some(n)) => {
                out.push_str("a=control:");
                out.push_str(&at(Resource::Track(object.clone(), n)));
            }
            _ => out.push_str(text),
        }
        out.push_str(end);
    }
    out
}
