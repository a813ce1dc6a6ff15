//! Serves the segment protocol (PROTOCOL.md §8) on one bidirectional stream: manifest and
//! segment requests here, push offers in [`crate::node::push`].

use std::sync::Arc;

use quinn::{RecvStream, SendStream};
use segue_net::{StreamError, app_code};
use segue_wire::segment::{
    ResponseHeader, SegmentRequest, Status, decode_request, encode_manifest_frame,
    encode_segment_head, frame_type,
};
use segue_wire::{AppError, Limits};

use crate::node::remote::Remote;
use crate::node::source::{Offer, Requester, Source};

/// Stream priority for an exchange whose segments are due `deadline_ms` after now: earliest
/// *absolute* due time first (a DEADLINE is relative to when the request arrived, so two
/// requests received at different times compare by arrival + DEADLINE), in 10 ms steps from
/// the process's start; no deadline: last.
fn priority(deadline_ms: Option<u64>) -> i32 {
    let Some(d) = deadline_ms else {
        return i32::MIN;
    };
    let due = crate::clock::monotonic_ms().saturating_add(d) / 10;
    -(due.min(i32::MAX as u64) as i32)
}

/// How a node answers exchanges, and whom.
#[derive(Debug, Clone, Copy)]
pub struct Exchange<'a> {
    pub limits: Limits,
    /// Delay before answering each request (lab and demo aid).
    pub delay: std::time::Duration,
    /// The request must arrive whole within this long of the stream's opening (slowloris).
    pub request_timeout: std::time::Duration,
    pub peer: &'a Remote,
    /// Signed URLs required of players (`None`: open access).
    pub access: Option<&'a crate::node::access::Keys>,
    /// Where refusals are counted and (rate-limited) logged.
    pub refusals: &'a crate::node::admission::Refusals,
}

/// Reads one request and answers it. Errors are reported to the peer; the result says only
/// whether the exchange completed.
pub async fn serve_exchange<S: Source>(
    source: Arc<S>,
    mut send: SendStream,
    mut recv: RecvStream,
    x: Exchange<'_>,
) -> Result<(), StreamError> {
    let Exchange {
        limits,
        delay,
        request_timeout,
        peer,
        access,
        refusals,
    } = x;
    let mut buf = Vec::with_capacity(256);
    let deadline = tokio::time::Instant::now() + request_timeout;
    let (req, used) = loop {
        // Frames only nodes may send (segment requests, push offers, adverts) are refused to
        // a peer without a node certificate as soon as their type is read: nothing of them
        // is buffered or decoded.
        if let Some((ty, _)) = segue_wire::varint::get(&buf)
            && ty != frame_type::MANIFEST_REQUEST
            && !peer.is_node()
        {
            recv.stop(app_code(AppError::Cancelled)).ok();
            let why = "segment requests, push offers and adverts need a node certificate (mTLS)";
            refusals.note(peer.addr, why);
            return refuse(send, Status::Unauthorized, why).await;
        }
        match decode_incoming(&buf, &limits) {
            Ok(Some(Incoming::Advert(a))) => {
                // Only the node the advert names may speak for it.
                if !peer.is_node_named(&a.sender) {
                    let why = format!(
                        "an advert from {:?} needs that node's certificate (mTLS)",
                        a.sender
                    );
                    refusals.note(peer.addr, &why);
                    return refuse(send, Status::Unauthorized, why).await;
                }
                return answer_advert(&*source, &a, send).await;
            }
            Ok(Some(Incoming::Request(r, used))) => break (r, used),
            Ok(None) => {}
            Err(e) => return refuse(send, Status::BadRequest, e.to_string()).await,
        }
        // An ADVERT may be larger than a request.
        let max = if is_advert(&buf) {
            limits.max_advert
        } else {
            limits.max_frame_header
        } + 16;
        let mut chunk = [0u8; 4096];
        let read = tokio::time::timeout_at(deadline, recv.read(&mut chunk));
        let Ok(read) = read.await else {
            recv.stop(app_code(AppError::LimitExceeded))?;
            let why = format!(
                "request not complete within {} s",
                request_timeout.as_secs_f64()
            );
            return refuse(send, Status::BadRequest, why).await;
        };
        match read? {
            Some(n) if buf.len() + n <= max => buf.extend_from_slice(&chunk[..n]),
            Some(_) => {
                recv.stop(app_code(AppError::LimitExceeded))?;
                return Err(StreamError::violation("segment request too large"));
            }
            None => {
                return Err(StreamError::violation(
                    "stream ended before a complete request",
                ));
            }
        }
    };
    // Lab/demo aid: an artificial upstream latency before answering.
    if !delay.is_zero() {
        tokio::time::sleep(delay).await;
    }
    // A peer without a node certificate got here with a MANIFEST request only (refused by
    // frame type above otherwise: docs/SECURITY.md, mTLS).
    let object = req.object().clone();
    // Signed URLs: a player's manifest request carries its grant (TOKEN); nodes need none.
    if let Some(keys) = access
        && !peer.is_node()
        && let Err(d) = keys.check(
            object.as_str(),
            req.params().token.map(Ok),
            peer.addr.ip(),
            crate::node::access::now(),
        )
    {
        return refuse(send, Status::Unauthorized, d.to_string()).await;
    }
    let manifest = match source.manifest(&object).await {
        Ok(m) => m,
        // A node gets the details (an edge asking its origin); a player the class only.
        Err(e) if peer.is_node() => {
            return refuse(send, e.segment_status(), e.to_string()).await;
        }
        Err(e) => return refuse(send, e.segment_status(), e.for_player(&object)).await,
    };
    let req_deadline = req.params().deadline_ms;
    if let Some(rev) = req.params().revision
        && rev != manifest.revision
    {
        let why = format!("revision is {}", manifest.revision);
        return refuse(send, Status::StaleRevision, why).await;
    }
    match req {
        SegmentRequest::PushOffer {
            first,
            count,
            params,
            ..
        } => {
            let offer = Offer {
                first: usize::try_from(first).unwrap_or(usize::MAX),
                count: usize::try_from(count).unwrap_or(usize::MAX),
                viewers: params.viewers,
                deadline_ms: params.deadline_ms,
            };
            let rest = bytes::BytesMut::from(&buf[used..]);
            return crate::node::push::receive(
                &*source, &manifest, offer, send, recv, rest, &limits,
            )
            .await;
        }
        SegmentRequest::Manifest { .. } => {
            send.write_all(&ResponseHeader::ok().encode()).await?;
            send.write_all(&encode_manifest_frame(&manifest)).await?;
        }
        SegmentRequest::Segments { first, count, .. } => {
            let n = manifest.segments.len() as u64;
            if first >= n || count > n - first {
                let why = format!("object has {n} segments");
                return refuse(send, Status::RangeNotSatisfiable, why).await;
            }
            let _ = send.set_priority(priority(req_deadline));
            let p = req.params();
            let from = Requester {
                hop_limit: p.hop_limit,
                sender: p.sender,
                deadline_ms: p.deadline_ms,
            };
            // The first segment before the RESPONSE: a helper that cannot serve it (its hop
            // limit, a loop, its upstream) says why, and the requester asks elsewhere at once.
            let mut next = Some(source.segment_for(&manifest, first as usize, from).await);
            if let Some(Err(e)) = &next {
                tracing::debug!(object = %object, segment = first, "not served: {e}");
                return refuse(send, e.segment_status(), e.to_string()).await;
            }
            send.write_all(&ResponseHeader::ok().encode()).await?;
            for i in first..first + count {
                let i = i as usize;
                let r = match next.take() {
                    Some(r) => r,
                    None => source.segment_for(&manifest, i, from).await,
                };
                match r {
                    Ok(payload) => {
                        let head = encode_segment_head(
                            i as u64,
                            &payload,
                            manifest.segments[i].checksum,
                            p.chunks.then_some(manifest.chunk_size),
                        );
                        send.write_all(&head).await?;
                        send.write_all(&payload).await?;
                    }
                    Err(e) => {
                        tracing::warn!(object = %object, segment = i, "cannot serve: {e}");
                        send.reset(app_code(AppError::UpstreamFailed))?;
                        return Ok(());
                    }
                }
            }
        }
    }
    send.finish()?;
    Ok(())
}

/// Answers with an error RESPONSE and ends the exchange.
async fn refuse(
    mut send: SendStream,
    status: Status,
    why: impl Into<String>,
) -> Result<(), StreamError> {
    send.write_all(&ResponseHeader::error(status, why.into()).encode())
        .await?;
    send.finish()?;
    Ok(())
}

/// What opens a segment stream: a request (and the bytes it took) or a helper's advert.
enum Incoming {
    Request(SegmentRequest, usize),
    Advert(segue_wire::advert::Advert),
}

fn is_advert(buf: &[u8]) -> bool {
    segue_wire::varint::get(buf).is_some_and(|(ty, _)| ty == frame_type::ADVERT)
}

fn decode_incoming(
    buf: &[u8],
    limits: &Limits,
) -> Result<Option<Incoming>, segue_wire::DecodeError> {
    Ok(if is_advert(buf) {
        segue_wire::advert::decode(buf, limits)?.map(|(a, _)| Incoming::Advert(a))
    } else {
        decode_request(buf, limits)?.map(|(r, used)| Incoming::Request(r, used))
    })
}

/// Answers an ADVERT with one RESPONSE: OK, STALE_REVISION (send a snapshot) or the refusal.
async fn answer_advert<S: Source>(
    source: &S,
    a: &segue_wire::advert::Advert,
    mut send: SendStream,
) -> Result<(), StreamError> {
    let h = match source.advertised(a) {
        Ok(Status::Ok) => ResponseHeader::ok(),
        Ok(Status::StaleRevision) => {
            ResponseHeader::error(Status::StaleRevision, "send a snapshot")
        }
        Ok(s) => ResponseHeader::error(s, ""),
        Err(e) => ResponseHeader::error(e.segment_status(), e.to_string()),
    };
    send.write_all(&h.encode()).await?;
    send.finish()?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::priority;

    #[test]
    fn priorities_follow_absolute_due_times() {
        // Due in 20 s asked now beats due in 10 s asked 15 s later (due at 25 s): the same
        // clock, the second request's deadline shifted by the 15 s.
        assert!(priority(Some(20_000)) > priority(Some(15_000 + 10_000)));
        assert!(priority(Some(0)) > priority(Some(1000)));
        assert!(priority(Some(u64::MAX)) > priority(None));
        assert_eq!(priority(None), i32::MIN);
    }
}
