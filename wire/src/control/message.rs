//! Typed control messages and their serialisation through `rtsp-types`.

use bytes::Bytes;
use rtsp_types as rt;

use crate::address::SegueUrl;
use crate::control::Headers;
use crate::error::DecodeError;

/// The methods of segue/1. Anything else is answered with 501 Not Implemented.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Method {
    Options,
    Describe,
    Setup,
    Play,
    Pause,
    Teardown,
    GetParameter,
    /// Server to client: end of stream and other notifications.
    PlayNotify,
}

impl Method {
    pub const ALL: [Method; 8] = [
        Method::Options,
        Method::Describe,
        Method::Setup,
        Method::Play,
        Method::Pause,
        Method::Teardown,
        Method::GetParameter,
        Method::PlayNotify,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Method::Options => "OPTIONS",
            Method::Describe => "DESCRIBE",
            Method::Setup => "SETUP",
            Method::Play => "PLAY",
            Method::Pause => "PAUSE",
            Method::Teardown => "TEARDOWN",
            Method::GetParameter => "GET_PARAMETER",
            Method::PlayNotify => "PLAY_NOTIFY",
        }
    }

    pub(crate) fn from_rtsp(m: &rt::Method) -> Result<Self, DecodeError> {
        Ok(match m {
            rt::Method::Options => Method::Options,
            rt::Method::Describe => Method::Describe,
            rt::Method::Setup => Method::Setup,
            rt::Method::Play => Method::Play,
            rt::Method::Pause => Method::Pause,
            rt::Method::Teardown => Method::Teardown,
            rt::Method::GetParameter => Method::GetParameter,
            rt::Method::PlayNotify => Method::PlayNotify,
            other => {
                return Err(DecodeError::Rtsp(format!(
                    "method {} is not implemented",
                    <&str>::from(other)
                )));
            }
        })
    }

    pub(crate) fn to_rtsp(self) -> rt::Method {
        match self {
            Method::Options => rt::Method::Options,
            Method::Describe => rt::Method::Describe,
            Method::Setup => rt::Method::Setup,
            Method::Play => rt::Method::Play,
            Method::Pause => rt::Method::Pause,
            Method::Teardown => rt::Method::Teardown,
            Method::GetParameter => rt::Method::GetParameter,
            Method::PlayNotify => rt::Method::PlayNotify,
        }
    }
}

impl std::fmt::Display for Method {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Status codes segue/1 uses (RFC 7826 §17 values).
pub mod status {
    pub const OK: u16 = 200;
    pub const BAD_REQUEST: u16 = 400;
    pub const UNAUTHORIZED: u16 = 401;
    pub const FORBIDDEN: u16 = 403;
    pub const NOT_FOUND: u16 = 404;
    pub const METHOD_NOT_ALLOWED: u16 = 405;
    pub const REQUEST_TIMEOUT: u16 = 408;
    pub const REQUEST_ENTITY_TOO_LARGE: u16 = 413;
    pub const REQUEST_URI_TOO_LONG: u16 = 414;
    pub const UNSUPPORTED_MEDIA_TYPE: u16 = 415;
    pub const SESSION_NOT_FOUND: u16 = 454;
    pub const METHOD_NOT_VALID_IN_THIS_STATE: u16 = 455;
    pub const PARAMETER_NOT_UNDERSTOOD: u16 = 451;
    pub const INVALID_RANGE: u16 = 457;
    pub const AGGREGATE_OPERATION_NOT_ALLOWED: u16 = 459;
    pub const UNSUPPORTED_TRANSPORT: u16 = 461;
    pub const INTERNAL_SERVER_ERROR: u16 = 500;
    pub const NOT_IMPLEMENTED: u16 = 501;
    pub const BAD_GATEWAY: u16 = 502;
    pub const SERVICE_UNAVAILABLE: u16 = 503;
    pub const GATEWAY_TIMEOUT: u16 = 504;
    pub const VERSION_NOT_SUPPORTED: u16 = 505;
}

/// A control request. `uri` is `None` for `*` (OPTIONS only).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Request {
    pub method: Method,
    pub uri: Option<SegueUrl>,
    pub headers: Headers,
    pub body: Bytes,
}

/// A control response.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Response {
    pub status: u16,
    pub headers: Headers,
    pub body: Bytes,
}

/// Either direction's message on the control stream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Message {
    Request(Request),
    Response(Response),
}

impl Message {
    pub fn cseq(&self) -> u32 {
        match self {
            Message::Request(r) => r.headers.cseq,
            Message::Response(r) => r.headers.cseq,
        }
    }

    /// Serialises the message as RTSP/2.0 text.
    pub fn encode(&self) -> Vec<u8> {
        match self {
            Message::Request(r) => r.encode(),
            Message::Response(r) => r.encode(),
        }
    }
}

fn write_message(msg: rt::Message<&[u8]>) -> Vec<u8> {
    let mut out = Vec::with_capacity(256);
    // Writing into a Vec cannot fail; `rtsp-types` only reports io errors of the writer.
    if msg.write(&mut out).is_err() {
        out.clear();
    }
    out
}

impl Request {
    pub fn new(method: Method, uri: Option<SegueUrl>, cseq: u32) -> Self {
        Self {
            method,
            uri,
            headers: Headers {
                cseq,
                ..Default::default()
            },
            body: Bytes::new(),
        }
    }

    pub fn encode(&self) -> Vec<u8> {
        let mut b = rt::Request::builder(self.method.to_rtsp(), rt::Version::V2_0);
        if let Some(u) = &self.uri {
            b = b.request_uri(u.to_url());
        }
        let mut req = b.build(&self.body[..]);
        self.headers.to_rtsp(req.as_mut());
        write_message(rt::Message::Request(req))
    }
}

impl Response {
    pub fn new(status: u16, cseq: u32) -> Self {
        Self {
            status,
            headers: Headers {
                cseq,
                ..Default::default()
            },
            body: Bytes::new(),
        }
    }

    /// An error response carrying a human-readable reason in `Segue-Error`.
    pub fn error(status: u16, cseq: u32, reason: impl Into<String>) -> Self {
        let mut r = Self::new(status, cseq);
        r.headers.error = Some(sanitize_header_text(&reason.into()));
        r
    }

    pub fn is_success(&self) -> bool {
        (200..300).contains(&self.status)
    }

    pub fn encode(&self) -> Vec<u8> {
        let resp = rt::Response::builder(rt::Version::V2_0, rt::StatusCode::from(self.status))
            .build(&self.body[..]);
        let mut resp = resp;
        self.headers.to_rtsp(resp.as_mut());
        write_message(rt::Message::Response(resp))
    }
}

/// Makes free text safe for a header value: printable ASCII, at most 200 bytes.
pub fn sanitize_header_text(s: &str) -> String {
    s.chars()
        .map(|c| {
            if c.is_ascii_graphic() || c == ' ' {
                c
            } else {
                '?'
            }
        })
        .take(200)
        .collect::<String>()
        .trim()
        .to_owned()
}

/// Converts a parsed message; on error also says which status to answer with.
pub(crate) fn from_rtsp(
    msg: rt::Message<&[u8]>,
    max_name: usize,
) -> Result<Message, (DecodeError, u16)> {
    let version = |v: rt::Version| {
        if v == rt::Version::V2_0 {
            Ok(())
        } else {
            Err((
                DecodeError::Rtsp("version must be RTSP/2.0".into()),
                status::VERSION_NOT_SUPPORTED,
            ))
        }
    };
    let bad = |e: DecodeError| (e, status::BAD_REQUEST);
    match msg {
        rt::Message::Request(req) => {
            version(req.version())?;
            let method =
                Method::from_rtsp(req.method()).map_err(|e| (e, status::NOT_IMPLEMENTED))?;
            let headers = Headers::from_rtsp(req.as_ref()).map_err(|e| {
                let status = match e {
                    DecodeError::UnsupportedTransport => status::UNSUPPORTED_TRANSPORT,
                    _ => status::BAD_REQUEST,
                };
                (e, status)
            })?;
            let uri = match req.request_uri() {
                None if method == Method::Options => None,
                None => {
                    return Err(bad(DecodeError::Rtsp(format!("{method} needs a URL"))));
                }
                Some(u) => Some(SegueUrl::from_url_with_limit(u, max_name).map_err(bad)?),
            };
            Ok(Message::Request(Request {
                method,
                uri,
                headers,
                body: Bytes::copy_from_slice(req.body()),
            }))
        }
        rt::Message::Response(resp) => {
            version(resp.version())?;
            let status = u16::from(resp.status());
            if !(100..=599).contains(&status) {
                return Err(bad(DecodeError::Rtsp(format!(
                    "status code {status} out of range"
                ))));
            }
            Ok(Message::Response(Response {
                status,
                headers: Headers::from_rtsp(resp.as_ref()).map_err(bad)?,
                body: Bytes::copy_from_slice(resp.body()),
            }))
        }
        rt::Message::Data(_) => Err(bad(DecodeError::Rtsp(
            "interleaved data is not allowed on the control stream".into(),
        ))),
    }
}
