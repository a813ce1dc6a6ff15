//! The RTSP face: RTSP 1.0 (RFC 2326) and RTSP 2.0 (RFC 7826) over TCP or TLS, with RTP
//! and RTCP interleaved in the connection (`RTP/AVP/TCP;interleaved=`), for standard
//! players (ffmpeg, VLC, GStreamer). Requests are read into segue/1's typed [`Request`], so
//! a node answers them with the same session handler as segue/1; answers and server
//! requests go out in the client's RTSP version and URL scheme ([`answer`]); media is
//! re-framed from RoQ ([`interleave`]). docs/PROTOCOL.md §12.

pub mod answer;
pub mod interleave;

use bytes::{Buf, BytesMut};
use rtsp_types as rt;
use rtsp_types::headers as rh;

use crate::address::SegueUrl;
use crate::control::decoder::{ControlError, fatal, parse_frame, skipped, take_frame};
use crate::control::message::{Method, Request, status};
use crate::control::{Headers, Transport};
use crate::error::DecodeError;
use crate::limits::Limits;

pub use answer::{Answer, encode_request, encode_response, rewrite_sdp};
pub use interleave::{Interleaver, MAX_INTERLEAVED, frame as interleaved_frame};

/// The RTSP version a client speaks; answers use the version of the request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Version {
    V1,
    V2,
}

impl Version {
    pub(crate) fn rt(self) -> rt::Version {
        match self {
            Version::V1 => rt::Version::V1_0,
            Version::V2 => rt::Version::V2_0,
        }
    }
}

/// The URL scheme of a face: `rtsp` over TCP, `rtsps` over TLS.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scheme {
    Rtsp,
    Rtsps,
}

impl Scheme {
    pub fn as_str(self) -> &'static str {
        match self {
            Scheme::Rtsp => "rtsp",
            Scheme::Rtsps => "rtsps",
        }
    }

    /// The port a URL without one means (RFC 7826 §19.2: 554 and 322).
    pub fn default_port(self) -> u16 {
        match self {
            Scheme::Rtsp => 554,
            Scheme::Rtsps => 322,
        }
    }

    fn of(url: &url::Url) -> Option<Self> {
        match url.scheme() {
            "rtsp" => Some(Scheme::Rtsp),
            "rtsps" => Some(Scheme::Rtsps),
            _ => None,
        }
    }
}

/// An RTSP URL as segue/1's [`SegueUrl`]: same host, path and query; the port made explicit
/// (the scheme's default when absent), a trailing `/` dropped (players append one to the
/// `Content-Base` of the aggregate URL).
pub fn segue_url(url: &url::Url, max_name: usize) -> Result<SegueUrl, DecodeError> {
    let scheme = Scheme::of(url).ok_or_else(|| {
        DecodeError::Url(format!(
            "scheme must be rtsp:// or rtsps://, got {}://",
            url.scheme()
        ))
    })?;
    let mut u = url.clone();
    if u.port().is_none() && u.set_port(Some(scheme.default_port())).is_err() {
        return Err(DecodeError::Url(format!("{url}: no host")));
    }
    let path = u.path().trim_end_matches('/').to_owned();
    u.set_path(&path);
    u.set_scheme(crate::address::SCHEME)
        .map_err(|()| DecodeError::Url(format!("{url}: not an RTSP URL")))?;
    SegueUrl::from_url_with_limit(&u, max_name)
}

/// A segue/1 URL as the face writes it: `scheme://host:port/path[?query]`.
pub fn face_url(url: &SegueUrl, scheme: Scheme) -> String {
    let s = url.to_string();
    let rest = s.strip_prefix(crate::address::SCHEME).unwrap_or(s.as_str());
    format!("{}{rest}", scheme.as_str())
}

/// A request the face read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FaceRequest {
    /// The request as segue/1 types it. A SETUP carries no `transport`: the node picks the
    /// channel ([`FaceRequest::channel`] or the next free one) and sets it.
    pub request: Request,
    pub version: Version,
    /// SETUP: the interleaved channel the client asked RTP on (RTCP on the next one), if any.
    pub channel: Option<u8>,
}

/// What the face reads from a client's byte stream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Incoming {
    Request(Box<FaceRequest>),
    /// A response to a request the server sent, or interleaved data (the client's RTCP
    /// receiver reports), which the node does not act on.
    Ignored,
}

/// A message the face could not accept, and the version to answer in.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{error}")]
pub struct FaceError {
    pub error: ControlError,
    pub version: Version,
}

/// Buffers an RTSP connection's bytes and yields requests. Interleaved frames from the
/// client are skipped without being buffered; a request is held to the same limits as
/// segue/1's control stream (`max_control_head`, `max_control_body`, header count).
#[derive(Debug)]
pub struct FaceDecoder {
    limits: Limits,
    buf: BytesMut,
    /// Bytes of an interleaved frame still to skip.
    skip: usize,
    /// The version of the last request, for answers to what cannot be read.
    version: Version,
    failed: bool,
}

impl FaceDecoder {
    pub fn new(limits: Limits) -> Self {
        Self {
            limits,
            buf: BytesMut::new(),
            skip: 0,
            version: Version::V1,
            failed: false,
        }
    }

    pub fn push(&mut self, mut data: &[u8]) {
        if self.failed {
            return;
        }
        if self.skip > 0 {
            let n = self.skip.min(data.len());
            self.skip -= n;
            data = &data[n..];
        }
        self.buf.extend_from_slice(data);
    }

    /// Bytes of a request buffered and not yet returned.
    pub fn buffered(&self) -> usize {
        self.buf.len()
    }

    /// The next request, `Ok(None)` when more bytes are needed. After a fatal error every
    /// call returns it again.
    pub fn next_request(&mut self) -> Result<Option<Incoming>, FaceError> {
        let version = self.version;
        let fail = |error| FaceError { error, version };
        if self.failed {
            return Err(fail(fatal(
                DecodeError::Rtsp("connection already failed".into()),
                status::BAD_REQUEST,
                None,
            )));
        }
        let r = self.decode();
        if let Err(e) = &r
            && e.error.fatal
        {
            self.failed = true;
            self.buf.clear();
        }
        r
    }

    fn decode(&mut self) -> Result<Option<Incoming>, FaceError> {
        let version = self.version;
        // Empty lines between messages (and frames) are ignored, as by `take_frame`.
        while self.buf.starts_with(b"\r\n") {
            self.buf.advance(2);
        }
        if self.buf.first() == Some(&b'$') {
            // RFC 2326 §10.12: `$`, channel, 16-bit length, data.
            let Some(&[_, _, hi, lo]) = self.buf.get(..4) else {
                return Ok(None);
            };
            let len = 4 + usize::from(u16::from_be_bytes([hi, lo]));
            let n = len.min(self.buf.len());
            self.buf.advance(n);
            self.skip = len - n;
            return Ok(Some(Incoming::Ignored));
        }
        let fail = |error| FaceError { error, version };
        let Some((frame, cseq)) = take_frame(&mut self.buf, &self.limits).map_err(fail)? else {
            return Ok(None);
        };
        let msg = parse_frame(&frame, cseq).map_err(fail)?;
        let req = match msg {
            rt::Message::Request(req) => req,
            rt::Message::Response(_) | rt::Message::Data(_) => return Ok(Some(Incoming::Ignored)),
        };
        let version = match req.version() {
            rt::Version::V1_0 => Version::V1,
            rt::Version::V2_0 => Version::V2,
        };
        self.version = version;
        let fail = |e: DecodeError, st: u16| FaceError {
            error: skipped(e, st, cseq),
            version,
        };
        read_request(&req, self.limits.max_object_name)
            .map(|(request, channel)| {
                Some(Incoming::Request(Box::new(FaceRequest {
                    request,
                    version,
                    channel,
                })))
            })
            .map_err(|(e, st)| fail(e, st))
    }
}

/// A parsed request in segue/1's types, and the interleaved channel a SETUP asked for.
fn read_request(
    req: &rt::Request<&[u8]>,
    max_name: usize,
) -> Result<(Request, Option<u8>), (DecodeError, u16)> {
    let bad = |e: DecodeError| (e, status::BAD_REQUEST);
    let method = Method::from_rtsp(req.method()).map_err(|e| (e, status::NOT_IMPLEMENTED))?;
    if method == Method::PlayNotify {
        return Err((
            DecodeError::Rtsp("PLAY_NOTIFY is sent by servers".into()),
            status::METHOD_NOT_ALLOWED,
        ));
    }
    let mut headers: rt::Headers = req.as_ref().clone();
    // The transport is the face's (TCP, interleaved), not segue/1's.
    let transports = headers
        .get_typed::<rh::transport::Transports>()
        .map_err(|_| bad(DecodeError::Rtsp("bad Transport header".into())))?;
    headers.remove(&rh::TRANSPORT);
    // `npt=now-` (a resume, RFC 7826 §18.40) is a PLAY without a Range.
    if headers
        .get(&rh::RANGE)
        .is_some_and(|v| v.as_str().trim().starts_with("npt=now"))
    {
        headers.remove(&rh::RANGE);
    }
    let typed = Headers::from_rtsp(&headers).map_err(bad)?;
    let channel = match (&transports, method) {
        (Some(ts), Method::Setup) => interleaved_channel(ts)?,
        (None, Method::Setup) => {
            return Err((
                DecodeError::UnsupportedTransport,
                status::UNSUPPORTED_TRANSPORT,
            ));
        }
        _ => None,
    };
    let uri = match req.request_uri() {
        None if method == Method::Options => None,
        None => return Err(bad(DecodeError::Rtsp(format!("{method} needs a URL")))),
        Some(u) => Some(segue_url(u, max_name).map_err(bad)?),
    };
    Ok((
        Request {
            method,
            uri,
            headers: typed,
            body: bytes::Bytes::copy_from_slice(req.body()),
        },
        channel,
    ))
}

/// The RTP channel of the first `RTP/AVP/TCP` transport offered (None: the server picks);
/// 461 when none is TCP (the face offers no UDP).
fn interleaved_channel(ts: &rh::transport::Transports) -> Result<Option<u8>, (DecodeError, u16)> {
    use rh::transport::{RtpLowerTransport, RtpProfile, Transport as T};
    for t in ts.iter() {
        let T::Rtp(rtp) = t else { continue };
        if rtp.profile == RtpProfile::Avp && rtp.lower_transport == Some(RtpLowerTransport::Tcp) {
            return Ok(rtp.params.interleaved.map(|(a, _)| a));
        }
    }
    Err((
        DecodeError::UnsupportedTransport,
        status::UNSUPPORTED_TRANSPORT,
    ))
}

/// Sets a SETUP's transport to interleaved channel `channel` (RTP; RTCP on the next).
pub fn set_channel(req: &mut Request, channel: u8) {
    req.headers.transport = Some(Transport {
        flow_id: u64::from(channel),
    });
}

#[cfg(test)]
mod tests;
