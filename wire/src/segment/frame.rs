//! Request, response and segment-header frames: `Type (i) | Length (i) | Body`.

use bytes::BufMut;

use super::{HASH_LEN, Hash, Manifest, frame_type as ft, param_type as pt};
use crate::address::ObjectName;
use crate::error::DecodeError;
use crate::limits::Limits;
use crate::varint::{self, Reader};

/// Optional request parameters (`Type (i) | Length (i) | Value`); unknown ones are skipped.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Params {
    /// Remaining hops a helper may forward this request (absent: not forwarded yet).
    pub hop_limit: Option<u8>,
    /// Manifest revision the client holds; a server with another revision answers
    /// [`Status::StaleRevision`] instead of mixing versions of the object.
    pub revision: Option<u64>,
    /// Milliseconds until the requested segments are due at a player (0: a player is
    /// waiting now; absent: no deadline, e.g. pre-positioning). Servers send the exchanges
    /// of a connection earliest deadline first.
    pub deadline_ms: Option<u64>,
    /// Viewers expected for the object (PUSH_OFFER: anticipated demand).
    pub viewers: Option<u64>,
    /// The requesting helper ([`super::helper_id`] of its name), on requests between helpers.
    pub sender: Option<u64>,
    /// A player's signed-URL grant, for nodes that require one (docs/SECURITY.md).
    pub token: Option<crate::token::Grant>,
    /// CHUNKS: the client wants each SEGMENT followed by its CHUNK_HASHES (§8.6.1), to
    /// verify and forward the payload chunk by chunk.
    pub chunks: bool,
}

/// A request on a segment stream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SegmentRequest {
    Manifest {
        object: ObjectName,
        params: Params,
    },
    Segments {
        object: ObjectName,
        first: u64,
        count: u64,
        params: Params,
    },
    /// The client offers segments `first..first + count` for the server to store
    /// (pre-positioning by push). REVISION is required.
    PushOffer {
        object: ObjectName,
        first: u64,
        count: u64,
        params: Params,
    },
}

/// Response status codes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Status {
    Ok,
    BadRequest,
    NotFound,
    RangeNotSatisfiable,
    UpstreamUnavailable,
    Busy,
    Internal,
    HopLimitExceeded,
    Unauthorized,
    StaleRevision,
    /// PUSH_OFFER: the receiver already holds every offered segment.
    NotNeeded,
    /// A code this implementation does not know; treat as a failure.
    Other(u64),
}

impl Status {
    pub fn code(self) -> u64 {
        match self {
            Status::Ok => 0,
            Status::BadRequest => 1,
            Status::NotFound => 2,
            Status::RangeNotSatisfiable => 3,
            Status::UpstreamUnavailable => 4,
            Status::Busy => 5,
            Status::Internal => 6,
            Status::HopLimitExceeded => 7,
            Status::Unauthorized => 8,
            Status::StaleRevision => 9,
            Status::NotNeeded => 10,
            Status::Other(c) => c,
        }
    }

    pub fn from_code(c: u64) -> Self {
        match c {
            0 => Status::Ok,
            1 => Status::BadRequest,
            2 => Status::NotFound,
            3 => Status::RangeNotSatisfiable,
            4 => Status::UpstreamUnavailable,
            5 => Status::Busy,
            6 => Status::Internal,
            7 => Status::HopLimitExceeded,
            8 => Status::Unauthorized,
            9 => Status::StaleRevision,
            10 => Status::NotNeeded,
            c => Status::Other(c),
        }
    }
}

/// First frame of every response.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResponseHeader {
    pub status: Status,
    /// Human-readable reason, empty on success; at most 256 bytes.
    pub reason: String,
}

/// Precedes each segment's payload (`size` raw bytes follow the frame).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SegmentHeader {
    pub index: u64,
    pub size: u64,
    /// SHA-256 of the payload; must equal the manifest's checksum.
    pub checksum: Hash,
}

/// A frame a server sends on a segment stream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ResponseFrame {
    Response(ResponseHeader),
    Manifest(Manifest),
    Segment(SegmentHeader),
    /// The chunk hashes of the segment whose header precedes it (§8.6.1).
    ChunkHashes(Vec<Hash>),
}

pub const MAX_REASON: u64 = 256;
/// Largest CHUNK_HASHES body: [`super::chunk::MAX_CHUNKS`] hashes.
pub const MAX_CHUNK_HASHES_BODY: usize = super::chunk::MAX_CHUNKS as usize * HASH_LEN;

fn put_frame(out: &mut Vec<u8>, ty: u64, body: &[u8]) {
    varint::put(out, ty);
    varint::put(out, body.len() as u64);
    out.put_slice(body);
}

impl SegmentRequest {
    pub fn object(&self) -> &ObjectName {
        match self {
            SegmentRequest::Manifest { object, .. }
            | SegmentRequest::Segments { object, .. }
            | SegmentRequest::PushOffer { object, .. } => object,
        }
    }

    pub fn params(&self) -> Params {
        match self {
            SegmentRequest::Manifest { params, .. }
            | SegmentRequest::Segments { params, .. }
            | SegmentRequest::PushOffer { params, .. } => *params,
        }
    }

    pub fn encode(&self) -> Vec<u8> {
        let mut body = Vec::new();
        varint::put_str(&mut body, self.object().as_str());
        let ty = match self {
            SegmentRequest::Manifest { .. } => ft::MANIFEST_REQUEST,
            SegmentRequest::Segments { first, count, .. } => {
                varint::put(&mut body, *first);
                varint::put(&mut body, *count);
                ft::SEGMENTS_REQUEST
            }
            SegmentRequest::PushOffer { first, count, .. } => {
                varint::put(&mut body, *first);
                varint::put(&mut body, *count);
                ft::PUSH_OFFER
            }
        };
        let params = self.params();
        if let Some(h) = params.hop_limit {
            varint::put(&mut body, pt::HOP_LIMIT);
            varint::put(&mut body, 1);
            body.push(h);
        }
        if let Some(rev) = params.revision {
            varint::put(&mut body, pt::REVISION);
            varint::put(&mut body, varint::size(rev) as u64);
            varint::put(&mut body, rev);
        }
        for (ty, v) in [
            (pt::DEADLINE, params.deadline_ms),
            (pt::VIEWERS, params.viewers),
            (pt::SENDER, params.sender),
        ] {
            if let Some(v) = v {
                varint::put(&mut body, ty);
                varint::put(&mut body, varint::size(v) as u64);
                varint::put(&mut body, v);
            }
        }
        if let Some(g) = params.token {
            varint::put(&mut body, pt::TOKEN);
            varint::put(&mut body, (varint::size(g.expires) + 32) as u64);
            varint::put(&mut body, g.expires);
            body.put_slice(&g.tag);
        }
        if params.chunks {
            varint::put(&mut body, pt::CHUNKS);
            varint::put(&mut body, 0);
        }
        let mut out = Vec::with_capacity(body.len() + 4);
        put_frame(&mut out, ty, &body);
        out
    }
}

impl ResponseHeader {
    pub fn ok() -> Self {
        Self {
            status: Status::Ok,
            reason: String::new(),
        }
    }

    pub fn error(status: Status, reason: impl Into<String>) -> Self {
        let mut reason: String = reason.into();
        let mut cut = reason.len().min(MAX_REASON as usize);
        while !reason.is_char_boundary(cut) {
            cut -= 1;
        }
        reason.truncate(cut);
        Self { status, reason }
    }

    pub fn encode(&self) -> Vec<u8> {
        let mut body = Vec::new();
        varint::put(&mut body, self.status.code());
        varint::put_str(&mut body, &self.reason);
        let mut out = Vec::new();
        put_frame(&mut out, ft::RESPONSE, &body);
        out
    }
}

impl SegmentHeader {
    pub fn encode(&self) -> Vec<u8> {
        let mut body = Vec::with_capacity(48);
        varint::put(&mut body, self.index);
        varint::put(&mut body, self.size);
        body.put_slice(&self.checksum);
        let mut out = Vec::with_capacity(52);
        put_frame(&mut out, ft::SEGMENT, &body);
        out
    }
}

/// A whole frame found at the start of a buffer: type, body, bytes taken.
type RawFrame<'a> = (u64, &'a [u8], usize);

/// Reads `Type | Length` and, if the whole body is buffered, returns it.
/// `limit` gives the largest body allowed for a type (`None`: unknown type).
fn split_frame(
    buf: &[u8],
    limit: impl Fn(u64) -> Option<usize>,
) -> Result<Option<RawFrame<'_>>, DecodeError> {
    let Some((ty, n1)) = varint::get(buf) else {
        return Ok(None);
    };
    let max = limit(ty).ok_or(DecodeError::Unknown {
        what: "frame type",
        value: ty,
    })?;
    let Some((len, n2)) = varint::get(&buf[n1..]) else {
        return Ok(None);
    };
    if len > max as u64 {
        return Err(DecodeError::TooLarge {
            what: "frame",
            size: len,
            limit: max as u64,
        });
    }
    let start = n1 + n2;
    let end = start + len as usize; // len <= max, a usize
    match buf.get(start..end) {
        Some(body) => Ok(Some((ty, body, end))),
        None => Ok(None),
    }
}

fn read_params(r: &mut Reader<'_>) -> Result<Params, DecodeError> {
    let mut p = Params::default();
    let mut count = 0;
    while !r.is_empty() {
        count += 1;
        if count > 16 {
            return Err(DecodeError::Malformed("more than 16 request parameters"));
        }
        let ty = r.varint()?;
        let len = r.varint_bounded(255, "parameter")?;
        let value = r.bytes(len)?;
        if ty == pt::HOP_LIMIT {
            let [h] = value else {
                return Err(DecodeError::Malformed("hop limit must be 1 byte"));
            };
            p.hop_limit = Some(*h);
        } else if ty == pt::REVISION {
            let mut v = Reader::new(value);
            p.revision = Some(v.varint()?);
            v.finish("revision parameter")?;
        } else if ty == pt::DEADLINE {
            let mut v = Reader::new(value);
            p.deadline_ms = Some(v.varint()?);
            v.finish("deadline parameter")?;
        } else if ty == pt::VIEWERS {
            let mut v = Reader::new(value);
            p.viewers = Some(v.varint()?);
            v.finish("viewers parameter")?;
        } else if ty == pt::SENDER {
            let mut v = Reader::new(value);
            p.sender = Some(v.varint()?);
            v.finish("sender parameter")?;
        } else if ty == pt::TOKEN {
            let mut v = Reader::new(value);
            let expires = v.varint()?;
            let tag = v.array()?;
            v.finish("token parameter")?;
            p.token = Some(crate::token::Grant { expires, tag });
        } else if ty == pt::CHUNKS {
            if !value.is_empty() {
                return Err(DecodeError::Malformed("the chunks parameter has no value"));
            }
            p.chunks = true;
        }
    }
    Ok(p)
}

/// Decodes the request at the start of `buf`: `Ok(None)` until it is complete. Returns the
/// request and the bytes it took. Nothing may follow it but FIN.
pub fn decode_request(
    buf: &[u8],
    limits: &Limits,
) -> Result<Option<(SegmentRequest, usize)>, DecodeError> {
    let Some((ty, body, used)) = split_frame(buf, |ty| {
        matches!(
            ty,
            ft::MANIFEST_REQUEST | ft::SEGMENTS_REQUEST | ft::PUSH_OFFER
        )
        .then_some(limits.max_frame_header)
    })?
    else {
        return Ok(None);
    };
    let mut r = Reader::new(body);
    let name = r.string(limits.max_object_name as u64, "object name")?;
    let object = ObjectName::new(name, limits.max_object_name)?;
    let req = if ty == ft::MANIFEST_REQUEST {
        SegmentRequest::Manifest {
            object,
            params: read_params(&mut r)?,
        }
    } else {
        let first = r.varint()?;
        let count = r.varint()?;
        if count == 0 {
            return Err(DecodeError::Malformed("segment request for zero segments"));
        }
        if count > limits.max_segments_per_request {
            return Err(DecodeError::TooMany {
                what: "segments requested",
                count,
                limit: limits.max_segments_per_request,
            });
        }
        let params = read_params(&mut r)?;
        if ty == ft::PUSH_OFFER {
            if params.revision.is_none() {
                return Err(DecodeError::Malformed("push offer without a revision"));
            }
            SegmentRequest::PushOffer {
                object,
                first,
                count,
                params,
            }
        } else {
            SegmentRequest::Segments {
                object,
                first,
                count,
                params,
            }
        }
    };
    Ok(Some((req, used)))
}

/// Decodes the next server frame at the start of `buf`; `Ok(None)` until it is complete.
/// For a SEGMENT, the payload (`size` bytes) follows and is not consumed.
pub fn decode_response_frame(
    buf: &[u8],
    limits: &Limits,
) -> Result<Option<(ResponseFrame, usize)>, DecodeError> {
    let Some((ty, body, used)) = split_frame(buf, |ty| match ty {
        ft::RESPONSE | ft::SEGMENT => Some(limits.max_frame_header),
        ft::MANIFEST => Some(limits.max_manifest),
        ft::CHUNK_HASHES => Some(MAX_CHUNK_HASHES_BODY),
        _ => None,
    })?
    else {
        return Ok(None);
    };
    let mut r = Reader::new(body);
    let frame = match ty {
        ft::RESPONSE => {
            let status = Status::from_code(r.varint()?);
            let reason = r.string(MAX_REASON, "reason")?.to_owned();
            // Later versions may append fields: ignore the rest.
            ResponseFrame::Response(ResponseHeader { status, reason })
        }
        ft::MANIFEST => ResponseFrame::Manifest(Manifest::decode(body, limits)?),
        ft::CHUNK_HASHES => {
            if body.is_empty() || body.len() % HASH_LEN != 0 {
                return Err(DecodeError::Malformed(
                    "chunk hashes must be a whole, non-zero number of 32-byte hashes",
                ));
            }
            ResponseFrame::ChunkHashes(
                body.chunks_exact(HASH_LEN)
                    .map(|h| {
                        let mut a = [0u8; HASH_LEN];
                        a.copy_from_slice(h);
                        a
                    })
                    .collect(),
            )
        }
        _ => {
            let index = r.varint()?;
            let size = r.varint()?;
            if size == 0 || size > limits.max_segment_size {
                return Err(DecodeError::TooLarge {
                    what: "segment",
                    size,
                    limit: limits.max_segment_size,
                });
            }
            let checksum = r.array()?;
            r.finish("segment header")?;
            ResponseFrame::Segment(SegmentHeader {
                index,
                size,
                checksum,
            })
        }
    };
    Ok(Some((frame, used)))
}

/// The CHUNK_HASHES frame carrying `hashes` (at most [`super::chunk::MAX_CHUNKS`]).
pub fn encode_chunk_hashes(hashes: &[Hash]) -> Vec<u8> {
    let mut out = Vec::with_capacity(hashes.len() * HASH_LEN + 8);
    varint::put(&mut out, ft::CHUNK_HASHES);
    varint::put(&mut out, (hashes.len() * HASH_LEN) as u64);
    for h in hashes {
        out.put_slice(h);
    }
    out
}

/// What precedes a segment's payload in an answer or a push: its SEGMENT header and, when
/// the request carried CHUNKS (`chunk_size`: the manifest's), its CHUNK_HASHES (§8.6.1).
pub fn encode_segment_head(
    index: u64,
    payload: &[u8],
    checksum: Hash,
    chunk_size: Option<u64>,
) -> Vec<u8> {
    let mut out = SegmentHeader {
        index,
        size: payload.len() as u64,
        checksum,
    }
    .encode();
    if let Some(c) = chunk_size {
        out.extend(encode_chunk_hashes(&super::chunk::chunk_hashes(payload, c)));
    }
    out
}

/// The MANIFEST frame carrying `m`.
pub fn encode_manifest_frame(m: &Manifest) -> Vec<u8> {
    let body = m.encode();
    let mut out = Vec::with_capacity(body.len() + 10);
    put_frame(&mut out, ft::MANIFEST, &body);
    out
}
