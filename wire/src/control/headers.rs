//! The header fields segue/1 uses, as typed values, converted to and from `rtsp-types`.

use rtsp_types::headers::{self as rh, HeaderName};

use crate::address::SegueUrl;
use crate::control::Method;
use crate::error::DecodeError;

/// Custom header carrying a human-readable error in error responses and server TEARDOWNs.
pub const SEGUE_ERROR: &str = "Segue-Error";
/// Custom PLAY header: `Segue-Pacing: none` asks for media as fast as flow control allows.
pub const SEGUE_PACING: &str = "Segue-Pacing";
/// A signed-URL grant (`expires=E&token=T`) when the URL does not carry it.
pub const SEGUE_TOKEN: &str = "Segue-Token";

/// A position in normal play time, in microseconds from the start of the object.
pub type Npt = u64;

/// `Range: npt=<start>-[<end>]`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NptRange {
    pub start: Npt,
    pub end: Option<Npt>,
}

/// `Transport: RTP/AVP/QUIC;unicast;flow-id=<n>` — binds a track (or, on an aggregate
/// SETUP, the first track; track `i` gets `flow_id + i`) to a RoQ flow id.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Transport {
    pub flow_id: u64,
}

/// `Session: <id>[;timeout=<seconds>]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SessionHeader {
    pub id: String,
    pub timeout: Option<u64>,
}

/// One entry of `RTP-Info` (RTSP 2.0 form): `url="<track url>" ssrc=<hex>:seq=<n>;rtptime=<n>`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RtpInfo {
    pub url: SegueUrl,
    pub ssrc: u32,
    pub seq: u16,
    pub rtptime: u32,
}

/// The header fields of one message, typed. `CSeq` is mandatory on every message;
/// `Content-Length` is derived from the body.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Headers {
    pub cseq: u32,
    pub session: Option<SessionHeader>,
    pub pipelined_requests: Option<u32>,
    pub transport: Option<Transport>,
    pub range: Option<NptRange>,
    pub rtp_info: Vec<RtpInfo>,
    pub public: Vec<Method>,
    pub notify_reason: Option<String>,
    pub terminate_reason: Option<String>,
    pub error: Option<String>,
    pub content_type: Option<String>,
    /// `Segue-Pacing: none` on PLAY: no real-time pacing.
    pub unpaced: bool,
    /// `Segue-Token: expires=E&token=T`: a signed-URL grant (docs/SECURITY.md).
    pub token: Option<String>,
}

const PROFILE_LOWER: &str = "QUIC";
const FLOW_ID: &str = "flow-id";

fn bad(what: &str) -> DecodeError {
    DecodeError::Rtsp(format!("bad {what} header"))
}

impl Headers {
    /// Reads the typed view out of a parsed message's header map.
    pub(crate) fn from_rtsp(h: &rtsp_types::Headers) -> Result<Self, DecodeError> {
        let cseq = h
            .get_typed::<rh::CSeq>()
            .map_err(|_| bad("CSeq"))?
            .ok_or_else(|| DecodeError::Rtsp("missing CSeq".into()))?;
        let session = h
            .get_typed::<rh::Session>()
            .map_err(|_| bad("Session"))?
            .map(|s| SessionHeader {
                id: s.0,
                timeout: s.1,
            });
        if let Some(s) = &session {
            validate_session_id(&s.id)?;
        }
        let pipelined_requests = h
            .get_typed::<rh::PipelinedRequests>()
            .map_err(|_| bad("Pipelined-Requests"))?
            .map(|p| *p);
        let transport = match h
            .get_typed::<rh::transport::Transports>()
            .map_err(|_| bad("Transport"))?
        {
            None => None,
            Some(ts) => Some(transport_from_rtsp(&ts)?),
        };
        let range = match h.get_typed::<rh::Range>().map_err(|_| bad("Range"))? {
            None => None,
            Some(r) => Some(range_from_rtsp(&r)?),
        };
        let rtp_info = match h.get_typed::<rh::RtpInfos>().map_err(|_| bad("RTP-Info"))? {
            None => Vec::new(),
            Some(r) => rtp_info_from_rtsp(r)?,
        };
        let public = h
            .get_typed::<rh::Public>()
            .map_err(|_| bad("Public"))?
            .map(|p| {
                p.iter()
                    .filter_map(|m| Method::from_rtsp(m).ok())
                    .collect::<Vec<_>>()
            })
            .unwrap_or_default();
        let text = |name: &HeaderName| h.get(name).map(|v| v.as_str().trim().to_owned());
        Ok(Headers {
            cseq: *cseq,
            session,
            pipelined_requests,
            transport,
            range,
            rtp_info,
            public,
            notify_reason: text(&rh::NOTIFY_REASON),
            terminate_reason: text(&rh::TERMINATE_REASON),
            error: text(&HeaderName::from_static_str(SEGUE_ERROR).map_err(|_| bad("name"))?),
            content_type: text(&rh::CONTENT_TYPE),
            unpaced: text(&HeaderName::from_static_str(SEGUE_PACING).map_err(|_| bad("name"))?)
                .is_some_and(|v| v.eq_ignore_ascii_case("none")),
            token: text(&HeaderName::from_static_str(SEGUE_TOKEN).map_err(|_| bad("name"))?),
        })
    }

    /// Writes the typed view into a header map (everything but Content-Length).
    pub(crate) fn to_rtsp(&self, h: &mut rtsp_types::Headers) {
        h.insert_typed(&rh::CSeq::from(self.cseq));
        if let Some(s) = &self.session {
            h.insert_typed(&rh::Session(s.id.clone(), s.timeout));
        }
        if let Some(p) = self.pipelined_requests {
            h.insert_typed(&rh::PipelinedRequests::from(p));
        }
        if let Some(t) = self.transport {
            h.insert_typed(&transport_to_rtsp(t));
        }
        if let Some(r) = self.range {
            h.insert_typed(&range_to_rtsp(r));
        }
        if !self.rtp_info.is_empty() {
            h.insert_typed(&rtp_info_to_rtsp(&self.rtp_info));
        }
        if !self.public.is_empty() {
            let p: rh::Public = self
                .public
                .iter()
                .map(|m| m.to_rtsp())
                .collect::<Vec<_>>()
                .into();
            h.insert_typed(&p);
        }
        let mut put = |name: HeaderName, v: &Option<String>| {
            if let Some(v) = v {
                h.insert(name, v.as_str());
            }
        };
        put(rh::NOTIFY_REASON, &self.notify_reason);
        put(rh::TERMINATE_REASON, &self.terminate_reason);
        if let Ok(name) = HeaderName::from_static_str(SEGUE_ERROR) {
            put(name, &self.error);
        }
        put(rh::CONTENT_TYPE, &self.content_type);
        if let Ok(name) = HeaderName::from_static_str(SEGUE_TOKEN) {
            put(name, &self.token);
        }
        if self.unpaced
            && let Ok(name) = HeaderName::from_static_str(SEGUE_PACING)
        {
            h.insert(name, "none");
        }
    }
}

/// Session ids: 1 to 64 characters of `[A-Za-z0-9$-_.+]` (RFC 7826 §4.2, shortened).
pub fn validate_session_id(id: &str) -> Result<(), DecodeError> {
    let ok = !id.is_empty()
        && id.len() <= 64
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"$-_.+".contains(&b));
    if ok {
        Ok(())
    } else {
        Err(DecodeError::Rtsp(format!("bad session id {id:?}")))
    }
}

fn transport_from_rtsp(ts: &rh::transport::Transports) -> Result<Transport, DecodeError> {
    use rh::transport::{RtpLowerTransport, RtpProfile, Transport as T};
    // A request may offer alternatives; the first RTP/AVP/QUIC one is ours.
    for t in ts.iter() {
        let T::Rtp(rtp) = t else { continue };
        let quic =
            matches!(&rtp.lower_transport, Some(RtpLowerTransport::Other(l)) if l == PROFILE_LOWER);
        if rtp.profile != RtpProfile::Avp || !quic {
            continue;
        }
        let flow = rtp
            .params
            .others
            .get(FLOW_ID)
            .and_then(|v| v.as_deref())
            .ok_or_else(|| DecodeError::Rtsp("Transport without flow-id".into()))?;
        if flow.is_empty() || flow.len() > 19 || !flow.bytes().all(|b| b.is_ascii_digit()) {
            return Err(bad("Transport flow-id"));
        }
        let flow_id: u64 = flow.parse().map_err(|_| bad("Transport flow-id"))?;
        let flow_id = crate::varint::checked(flow_id)?;
        return Ok(Transport { flow_id });
    }
    Err(DecodeError::UnsupportedTransport)
}

fn transport_to_rtsp(t: Transport) -> rh::transport::Transports {
    use rh::transport::{RtpLowerTransport, RtpProfile, RtpTransport, RtpTransportParameters};
    let mut params = RtpTransportParameters {
        unicast: true,
        ..Default::default()
    };
    params
        .others
        .insert(FLOW_ID.into(), Some(t.flow_id.to_string()));
    vec![rh::transport::Transport::Rtp(RtpTransport {
        profile: RtpProfile::Avp,
        lower_transport: Some(RtpLowerTransport::Other(PROFILE_LOWER.into())),
        params,
    })]
    .into()
}

fn npt_to_us(t: &rh::NptTime) -> Result<Npt, DecodeError> {
    let (secs, nanos) = match *t {
        rh::NptTime::Now => return Err(DecodeError::Rtsp("npt=now is not seekable".into())),
        rh::NptTime::Seconds(s, n) => (s, n),
        rh::NptTime::Hms(h, m, s, n) => {
            if m > 59 || s > 59 {
                return Err(bad("Range"));
            }
            let secs = h
                .checked_mul(3600)
                .and_then(|x| x.checked_add(u64::from(m) * 60 + u64::from(s)))
                .ok_or_else(|| bad("Range"))?;
            (secs, n)
        }
    };
    secs.checked_mul(1_000_000)
        .and_then(|us| us.checked_add(u64::from(nanos.unwrap_or(0) / 1000)))
        .ok_or_else(|| bad("Range"))
}

fn range_from_rtsp(r: &rh::Range) -> Result<NptRange, DecodeError> {
    let rh::Range::Npt(npt) = r else {
        return Err(DecodeError::Rtsp("only npt ranges are supported".into()));
    };
    let (start, end) = match npt {
        rh::NptRange::Empty => return Err(bad("Range")),
        rh::NptRange::From(t) => (npt_to_us(t)?, None),
        rh::NptRange::FromTo(a, b) => (npt_to_us(a)?, Some(npt_to_us(b)?)),
        rh::NptRange::To(b) => (0, Some(npt_to_us(b)?)),
    };
    if end.is_some_and(|e| e < start) {
        return Err(DecodeError::Rtsp("Range ends before it starts".into()));
    }
    Ok(NptRange { start, end })
}

fn us_to_npt(us: Npt) -> rh::NptTime {
    let nanos = (us % 1_000_000) as u32 * 1000;
    rh::NptTime::Seconds(us / 1_000_000, (nanos != 0).then_some(nanos))
}

fn range_to_rtsp(r: NptRange) -> rh::Range {
    rh::Range::Npt(match r.end {
        None => rh::NptRange::From(us_to_npt(r.start)),
        Some(e) => rh::NptRange::FromTo(us_to_npt(r.start), us_to_npt(e)),
    })
}

fn rtp_info_from_rtsp(r: rh::RtpInfos) -> Result<Vec<RtpInfo>, DecodeError> {
    let rh::RtpInfos::V2(v2) = r else {
        return Err(DecodeError::Rtsp(
            "RTP-Info must use the RTSP 2.0 form".into(),
        ));
    };
    v2.into_iter()
        .map(|info| {
            let url = SegueUrl::from_url(&info.uri)?;
            let [s] = info.ssrc_infos.as_slice() else {
                return Err(DecodeError::Rtsp(
                    "RTP-Info needs exactly one ssrc per url".into(),
                ));
            };
            Ok(RtpInfo {
                url,
                ssrc: s.ssrc,
                seq: s.seq.ok_or_else(|| bad("RTP-Info seq"))?,
                rtptime: s.rtptime.ok_or_else(|| bad("RTP-Info rtptime"))?,
            })
        })
        .collect()
}

fn rtp_info_to_rtsp(infos: &[RtpInfo]) -> rh::RtpInfos {
    rtp_info_v2(infos, |u| Some(u.to_url()))
}

/// `RTP-Info` in the RTSP 2.0 form, each entry's URL written by `url` (an entry without one
/// is left out).
pub(crate) fn rtp_info_v2(
    infos: &[RtpInfo],
    url: impl Fn(&SegueUrl) -> Option<url::Url>,
) -> rh::RtpInfos {
    use rh::rtp_info::v2;
    rh::RtpInfos::V2(
        infos
            .iter()
            .filter_map(|i| {
                Some(v2::RtpInfo {
                    uri: url(&i.url)?,
                    ssrc_infos: vec![v2::SsrcInfo {
                        ssrc: i.ssrc,
                        seq: Some(i.seq),
                        rtptime: Some(i.rtptime),
                        others: Default::default(),
                    }],
                })
            })
            .collect(),
    )
}
