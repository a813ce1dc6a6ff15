//! Pushing a prefix to another node (PROTOCOL.md §8.7): the pusher offers segments, the
//! receiver asks for the ones it lacks, checks each against the manifest *it* trusts (its own
//! cache or upstream, never the pusher's word) and keeps them.
//!
//! - [`offer`]: the pusher's side (the origin, on an operator's push or a hint).
//! - [`receive`]: the receiver's side, called by the segment responder on a PUSH_OFFER.

use std::sync::Arc;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use quinn::{RecvStream, SendStream};
use segue_net::{StreamError, app_code};
use segue_wire::segment::{
    Params, ResponseFrame, ResponseHeader, SegmentReceiver, SegmentRequest, Status, decode_request,
    decode_response_frame, encode_segment_head,
};
use segue_wire::{AppError, Limits};

use crate::node::source::{Offer, Source, SourceError};

/// How long either side waits for the other's next bytes.
const IDLE: Duration = Duration::from_secs(30);

/// Reads more of `recv` into `buf` (at most `max` bytes buffered); false at FIN.
async fn read_more(
    recv: &mut RecvStream,
    buf: &mut BytesMut,
    max: usize,
) -> Result<bool, StreamError> {
    if buf.len() >= max {
        return Err(StreamError::Unasked(max));
    }
    let want = (max - buf.len()).min(64 * 1024);
    match tokio::time::timeout(IDLE, recv.read_chunk(want, true)).await {
        Err(_) => Err(StreamError::Silent(IDLE)),
        Ok(r) => match r? {
            Some(c) => {
                buf.extend_from_slice(&c.bytes);
                Ok(true)
            }
            None => Ok(false),
        },
    }
}

async fn answer(send: &mut SendStream, h: ResponseHeader) -> Result<(), StreamError> {
    send.write_all(&h.encode()).await?;
    send.finish()?;
    Ok(())
}

/// Refuses a push mid-stream: answers, then stops the pusher's stream, in that order so
/// that the pusher can read why its writes were stopped.
async fn refuse(
    send: &mut SendStream,
    recv: &mut quinn::RecvStream,
    h: ResponseHeader,
) -> Result<(), StreamError> {
    let r = answer(send, h).await;
    let _ = recv.stop(app_code(AppError::ProtocolViolation));
    r
}

/// The receiver's side of a PUSH_OFFER whose object resolved to `manifest` (revision
/// already checked). `buf` holds what followed the offer on the stream.
pub async fn receive<S: Source>(
    source: &S,
    manifest: &Arc<segue_wire::segment::Manifest>,
    offer: Offer,
    mut send: SendStream,
    mut recv: RecvStream,
    mut buf: BytesMut,
    limits: &Limits,
) -> Result<(), StreamError> {
    let n = manifest.segments.len();
    if offer.first >= n || offer.count > n - offer.first {
        let h = ResponseHeader::error(
            Status::RangeNotSatisfiable,
            format!("object has {n} segments"),
        );
        return answer(&mut send, h).await;
    }
    let (first, count) = match source.offered(manifest, offer) {
        Err(e) => {
            return answer(
                &mut send,
                ResponseHeader::error(e.segment_status(), e.to_string()),
            )
            .await;
        }
        Ok(None) => {
            return answer(
                &mut send,
                ResponseHeader::error(Status::NotNeeded, "every offered segment is held"),
            )
            .await;
        }
        Ok(Some(r)) => r,
    };
    let want = SegmentRequest::Segments {
        object: manifest.object.clone(),
        first: first as u64,
        count: count as u64,
        params: Params {
            revision: Some(manifest.revision),
            chunks: true,
            ..Params::default()
        },
    };
    send.write_all(&ResponseHeader::ok().encode()).await?;
    send.write_all(&want.encode()).await?;
    let mut stored = 0usize;
    for i in first..first + count {
        // Checked against our manifest as it arrives: the chunk hashes against its chunk
        // root, each chunk against its hash, the whole against its checksum (§8.6.1).
        let Some(mut rx) = SegmentReceiver::new(manifest, i, true, *limits) else {
            return Err(StreamError::violation(format!("no segment {i}")));
        };
        let mut verified = Vec::new();
        loop {
            match rx.push(&buf, &mut verified) {
                Ok(used) => {
                    let _ = buf.split_to(used);
                }
                Err(e) => {
                    let why = format!("segment {i}: {e}");
                    let refusal = ResponseHeader::error(Status::BadRequest, why);
                    return refuse(&mut send, &mut recv, refusal).await;
                }
            }
            verified.clear();
            if rx.is_done() {
                break;
            }
            // `rx` took all of `buf`: read up to one more 64 KiB piece.
            if !read_more(&mut recv, &mut buf, 64 * 1024).await? {
                return Err(StreamError::violation(format!(
                    "pusher ended after {stored} of {count} segments"
                )));
            }
        }
        let payload = match rx.into_payload() {
            Ok(p) => p,
            Err(e) => {
                let why = format!("segment {i}: {e}");
                let refusal = ResponseHeader::error(Status::BadRequest, why);
                return refuse(&mut send, &mut recv, refusal).await;
            }
        };
        if let Err(e) = source.pushed(manifest, i, payload).await {
            let refusal = ResponseHeader::error(e.segment_status(), e.to_string());
            return refuse(&mut send, &mut recv, refusal).await;
        }
        stored += 1;
    }
    // Only FIN may follow.
    let mut rest = BytesMut::new();
    if !buf.is_empty() || read_more(&mut recv, &mut rest, 1).await? {
        return Err(StreamError::violation(
            "pusher sent more than it was asked for",
        ));
    }
    answer(
        &mut send,
        ResponseHeader::error(Status::Ok, format!("stored {stored} segments")),
    )
    .await
}

/// What a push achieved.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pushed {
    /// Segments the receiver asked for and stored.
    pub stored: usize,
    /// The receiver already held every offered segment.
    pub not_needed: bool,
}

/// Why a push failed.
#[derive(Debug, thiserror::Error)]
pub enum PushError {
    #[error("receiver refused: {status:?} {reason}")]
    Refused { status: Status, reason: String },
    #[error("cannot read what to push: {0}")]
    Source(#[from] SourceError),
    #[error("push failed: {0}")]
    Transport(#[from] StreamError),
    /// The pusher has no endpoint to dial from (it could not be made at start).
    #[error("cannot push: {0}")]
    NoEndpoint(String),
}

/// Reads the next RESPONSE frame (then whatever follows stays in `buf`).
async fn read_response(
    recv: &mut RecvStream,
    buf: &mut BytesMut,
    limits: &Limits,
) -> Result<ResponseHeader, StreamError> {
    loop {
        match decode_response_frame(buf, limits)? {
            Some((ResponseFrame::Response(h), used)) => {
                let _ = buf.split_to(used);
                return Ok(h);
            }
            Some(_) => {
                return Err(StreamError::violation(
                    "receiver sent a frame other than RESPONSE",
                ));
            }
            None => {
                if !read_more(recv, buf, limits.max_frame_header + 16).await? {
                    return Err(StreamError::violation(
                        "receiver ended the stream without a response",
                    ));
                }
            }
        }
    }
}

/// How long an offer whose request write failed waits for the receiver's answer.
const REFUSAL_WAIT: std::time::Duration = std::time::Duration::from_secs(2);

/// A write failed mid-push: a receiver that refused a segment stops the stream as it
/// answers, and the write can see the stop before the answer is read. The refusal, if it
/// comes, says more than the stop.
async fn answer_or(
    recv: &mut quinn::RecvStream,
    buf: &mut BytesMut,
    limits: &Limits,
    e: quinn::WriteError,
) -> PushError {
    match tokio::time::timeout(REFUSAL_WAIT, read_response(recv, buf, limits)).await {
        Ok(Ok(h)) if h.status != Status::Ok => PushError::Refused {
            status: h.status,
            reason: h.reason,
        },
        _ => StreamError::from(e).into(),
    }
}

/// Offers `offer.first..offer.first + offer.count` of `manifest` to the node at the other
/// end of `conn` and sends the segments it asks for, read from `source`. `conn` must already
/// have opened its control stream (as [`crate::node::upstream::Upstream`] connections do).
pub async fn offer<S: Source>(
    conn: &quinn::Connection,
    source: &S,
    manifest: &Arc<segue_wire::segment::Manifest>,
    offer: Offer,
) -> Result<Pushed, PushError> {
    let limits = Limits::default();
    let (mut send, mut recv) = conn.open_bi().await.map_err(StreamError::from)?;
    if send.id().index() == 0 {
        // Stream 0 is control (PROTOCOL.md §4): the connection must have claimed it.
        return Err(StreamError::violation(
            "stream 0 is the control stream; open it before pushing",
        )
        .into());
    }
    let req = SegmentRequest::PushOffer {
        object: manifest.object.clone(),
        first: offer.first as u64,
        count: offer.count as u64,
        params: Params {
            revision: Some(manifest.revision),
            deadline_ms: offer.deadline_ms,
            viewers: offer.viewers,
            ..Params::default()
        },
    };
    let wrote = send.write_all(&req.encode()).await;
    let mut buf = BytesMut::new();
    let h = match wrote {
        Ok(()) => read_response(&mut recv, &mut buf, &limits).await?,
        // A receiver that refuses may stop the stream as it answers, and the write can see
        // the stop before the answer is read: the answer, if it comes, says more.
        Err(e) => {
            match tokio::time::timeout(REFUSAL_WAIT, read_response(&mut recv, &mut buf, &limits))
                .await
            {
                Ok(Ok(h)) => h,
                _ => return Err(StreamError::from(e).into()),
            }
        }
    };
    match h.status {
        Status::Ok => {}
        Status::NotNeeded => {
            let _ = send.finish();
            return Ok(Pushed {
                stored: 0,
                not_needed: true,
            });
        }
        status => {
            return Err(PushError::Refused {
                status,
                reason: h.reason,
            });
        }
    }
    let (first, count, chunks) = loop {
        match decode_request(&buf, &limits).map_err(StreamError::from)? {
            Some((
                SegmentRequest::Segments {
                    object,
                    first,
                    count,
                    params,
                },
                used,
            )) if object == manifest.object => {
                let _ = buf.split_to(used);
                break (first as usize, count as usize, params.chunks);
            }
            Some(_) => {
                return Err(StreamError::violation("receiver asked for something else").into());
            }
            None => {
                if !read_more(&mut recv, &mut buf, limits.max_frame_header + 16).await? {
                    return Err(StreamError::violation(
                        "receiver ended before saying what it wants",
                    )
                    .into());
                }
            }
        }
    };
    let end = offer.first + offer.count;
    if first < offer.first || first.saturating_add(count) > end {
        return Err(StreamError::violation(format!(
            "receiver asked for {first}+{count}, outside the offer"
        ))
        .into());
    }
    for i in first..first + count {
        let payload: Bytes = source.segment(manifest, i).await?;
        let head = encode_segment_head(
            i as u64,
            &payload,
            manifest.segments[i].checksum,
            chunks.then_some(manifest.chunk_size),
        );
        let mut wrote = send.write_all(&head).await;
        if wrote.is_ok() {
            wrote = send.write_all(&payload).await;
        }
        if let Err(e) = wrote {
            return Err(answer_or(&mut recv, &mut buf, &limits, e).await);
        }
    }
    send.finish().map_err(StreamError::from)?;
    let done = read_response(&mut recv, &mut buf, &limits).await?;
    if done.status != Status::Ok {
        return Err(PushError::Refused {
            status: done.status,
            reason: done.reason,
        });
    }
    Ok(Pushed {
        stored: count,
        not_needed: false,
    })
}
