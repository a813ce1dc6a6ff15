//! The control-stream loop: reads RTSP-style requests from the first bidirectional stream of a
//! connection and writes the responses a [`ControlHandler`] produces. Server-initiated
//! requests (PLAY_NOTIFY, TEARDOWN) go through the same ordered writer, [`ControlOut`].

use std::sync::Arc;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};

use crate::node::resumption::Handshake;
use bytes::Bytes;
use quinn::{RecvStream, SendStream};
use segue_net::{StreamError, app_code};
use segue_wire::control::{ControlDecoder, Message, Method, Request, Response, status};
use segue_wire::rtsp::{Scheme, Version};
use segue_wire::{AppError, Limits};
use tokio::io::{AsyncWrite, AsyncWriteExt};
use tokio::sync::{mpsc, watch};

/// Messages queued for the control stream before the writer blocks senders.
const OUT_QUEUE: usize = 64;

/// The control stream's send priority: above every media stream (segment *i*'s streams
/// have −*i*, PROTOCOL.md §7.2), so what is written to it goes out before media already
/// queued (a PLAY_NOTIFY, the answer to a PAUSE or a second PLAY).
pub const CONTROL_PRIORITY: i32 = 1;

/// Writes messages to the control stream (segue/1) or the RTSP connection (the RTSP
/// face, where interleaved media goes the same way), in order. Cheap to clone.
#[derive(Debug, Clone)]
pub struct ControlOut {
    tx: mpsc::Sender<Outgoing>,
    next_cseq: Arc<AtomicU32>,
    /// Responses queued so far (only the read loop queues them, one per request, in order).
    responses: Arc<AtomicU64>,
    /// Responses the writer has handed to quinn (or the socket) so far.
    written: watch::Receiver<u64>,
    /// On the RTSP face: the scheme, and the version of the client's last request, in
    /// which server requests are written.
    face: Option<Arc<Face>>,
}

/// The RTSP face's side of a [`ControlOut`].
#[derive(Debug)]
pub(crate) struct Face {
    pub scheme: Scheme,
    /// The client's last request was RTSP 2.0.
    pub v2: std::sync::atomic::AtomicBool,
}

impl Face {
    pub fn version(&self) -> Version {
        if self.v2.load(Ordering::Relaxed) {
            Version::V2
        } else {
            Version::V1
        }
    }
}

/// A message for the writer, and whether it is a response.
#[derive(Debug)]
struct Outgoing {
    chunks: Vec<Bytes>,
    response: bool,
    /// The last message: the writer finishes the stream, waits for the peer to have it
    /// (at most [`CLOSE_FLUSH`]), then closes the connection with this code.
    close: Option<AppError>,
}

/// Where a [`ControlOut`]'s writer writes.
pub(crate) enum Sink {
    /// segue/1's control stream, on its connection.
    Quic {
        send: SendStream,
        conn: quinn::Connection,
    },
    /// The RTSP face's TCP (or TLS) connection.
    Stream(Box<dyn AsyncWrite + Send + Unpin>),
}

/// How long a connection closed for a protocol violation waits for its last response to
/// be acknowledged: closing at once would discard it.
const CLOSE_FLUSH: std::time::Duration = std::time::Duration::from_secs(1);

impl ControlOut {
    /// Queues a response.
    pub async fn respond(&self, r: &Response) {
        self.queue_response(r, None).await;
    }

    /// Queues a last response, after which the connection is closed with `code` (PROTOCOL.md
    /// §5.3: a limit exceeded or the framing lost).
    async fn respond_and_close(&self, r: &Response, code: AppError) {
        self.queue_response(r, Some(code)).await;
    }

    async fn queue_response(&self, r: &Response, close: Option<AppError>) {
        self.queue_encoded(r.encode(), close).await;
    }

    /// Queues a response already written in the client's form (the RTSP face's).
    pub(crate) async fn queue_encoded(&self, bytes: Vec<u8>, close: Option<AppError>) {
        self.responses.fetch_add(1, Ordering::Relaxed);
        let out = Outgoing {
            chunks: vec![Bytes::from(bytes)],
            response: true,
            close,
        };
        let _ = self.tx.send(out).await;
    }

    /// Sends a server request with the next server CSeq. On the RTSP face it is written in
    /// the client's version, and not at all to an RTSP 1.0 client (which has no server
    /// PLAY_NOTIFY or TEARDOWN: the RTCP BYE ends its stream).
    pub async fn request(&self, mut r: Request) {
        r.headers.cseq = self.next_cseq.fetch_add(1, Ordering::Relaxed);
        let bytes = match &self.face {
            None => r.encode(),
            Some(f) => match segue_wire::rtsp::encode_request(&r, f.version(), f.scheme) {
                Some(b) => b,
                None => return,
            },
        };
        let out = Outgoing {
            chunks: vec![Bytes::from(bytes)],
            response: false,
            close: None,
        };
        let _ = self.tx.send(out).await;
    }

    /// Queues interleaved media (the RTSP face); false once the connection is gone.
    pub(crate) async fn media(&self, chunks: Vec<Bytes>) -> bool {
        let out = Outgoing {
            chunks,
            response: false,
            close: None,
        };
        self.tx.send(out).await.is_ok()
    }

    /// Closes the connection after what is queued (the RTSP face: a play that failed, for
    /// a client that cannot be told).
    pub(crate) async fn close(&self, code: AppError) {
        let out = Outgoing {
            chunks: Vec::new(),
            response: false,
            close: Some(code),
        };
        let _ = self.tx.send(out).await;
    }

    /// Until the writer is gone (its peer vanished or stalled).
    pub(crate) async fn closed(&self) {
        self.tx.closed().await;
    }

    /// The RTSP face this writer serves, if it does.
    pub(crate) fn face(&self) -> Option<&Face> {
        self.face.as_deref()
    }

    /// A writer on `sink`, and its task; `face`: it serves the RTSP face with this scheme.
    pub(crate) fn start(sink: Sink, face: Option<Scheme>) -> (Self, tokio::task::JoinHandle<()>) {
        let (tx, rx) = mpsc::channel(OUT_QUEUE);
        let (written_tx, written) = watch::channel(0);
        let out = ControlOut {
            tx,
            next_cseq: Arc::new(AtomicU32::new(1)),
            responses: Arc::new(AtomicU64::new(0)),
            written,
            face: face.map(|scheme| {
                Arc::new(Face {
                    scheme,
                    v2: std::sync::atomic::AtomicBool::new(false),
                })
            }),
        };
        let task = match sink {
            Sink::Quic { send, conn } => tokio::spawn(writer(send, rx, written_tx, conn)),
            Sink::Stream(w) => tokio::spawn(stream_writer(w, rx, written_tx)),
        };
        (out, task)
    }

    /// The number the response to the request being handled will have: called from
    /// [`ControlHandler::handle`], it names that request's own response, which the read
    /// loop queues next.
    pub fn this_response(&self) -> u64 {
        self.responses.load(Ordering::Relaxed) + 1
    }

    /// Waits until response `n` (and every one before it) is in quinn's send buffer, or the
    /// control stream is gone. A PLAY's media waits for its response: media written first
    /// went out in the initial window ahead of the DESCRIBE and PLAY responses, which the
    /// player needs to read it, and its first frame came ~115-160 ms later on a
    /// 0.5 Mbit/s last mile (7 packets of media queued ahead; session 27).
    pub async fn response_written(&self, n: u64) {
        let mut written = self.written.clone();
        let _ = written.wait_for(|w| *w >= n).await;
    }
}

/// Answers control requests. Origin and edge sessions implement it.
pub trait ControlHandler: Send {
    fn handle(
        &mut self,
        req: Request,
        out: &ControlOut,
    ) -> impl std::future::Future<Output = Response> + Send;

    /// Called every [`TICK`] while the control stream is open (session timeouts).
    fn tick(&mut self) -> impl std::future::Future<Output = ()> + Send {
        std::future::ready(())
    }
}

/// How often [`ControlHandler::tick`] runs.
pub const TICK: std::time::Duration = std::time::Duration::from_millis(500);

/// Answers OPTIONS only; every other method gets 501.
#[derive(Debug, Default)]
pub struct OptionsOnly;

impl ControlHandler for OptionsOnly {
    async fn handle(&mut self, req: Request, _out: &ControlOut) -> Response {
        match req.method {
            Method::Options => options_response(req.headers.cseq, &[Method::Options]),
            m => Response::error(
                status::NOT_IMPLEMENTED,
                req.headers.cseq,
                format!("{m} is not served by this node"),
            ),
        }
    }
}

/// Requests a node answers before the handshake completes (as 0-RTT data): the pipelined
/// start of a play, which reads and changes nothing but the new connection's own sessions.
pub fn answered_early(m: Method) -> bool {
    matches!(
        m,
        Method::Options | Method::Describe | Method::Setup | Method::Play
    )
}

/// The OPTIONS answer listing `methods`.
pub fn options_response(cseq: u32, methods: &[Method]) -> Response {
    let mut r = Response::new(status::OK, cseq);
    r.headers.public = methods.to_vec();
    r
}

async fn writer(
    mut send: SendStream,
    mut rx: mpsc::Receiver<Outgoing>,
    written: watch::Sender<u64>,
    conn: quinn::Connection,
) {
    while let Some(mut out) = rx.recv().await {
        if send.write_all_chunks(&mut out.chunks).await.is_err() {
            return;
        }
        if out.response {
            written.send_modify(|n| *n += 1);
        }
        if let Some(code) = out.close {
            let _ = send.finish();
            let _ = tokio::time::timeout(CLOSE_FLUSH, send.stopped()).await;
            conn.close(app_code(code), code.to_string().as_bytes());
            return;
        }
    }
    let _ = send.finish();
}

/// How long the RTSP face's writer waits for a client that reads nothing before it gives
/// the connection up: a player stalled this long is gone, and what is queued for it
/// (a writer buffer and up to [`OUT_QUEUE`] messages) is freed.
pub const WRITE_STALL: std::time::Duration = std::time::Duration::from_secs(20);

/// The RTSP face's writer: messages and interleaved media into one byte stream, buffered
/// and flushed whenever nothing more is queued.
async fn stream_writer(
    w: Box<dyn AsyncWrite + Send + Unpin>,
    mut rx: mpsc::Receiver<Outgoing>,
    written: watch::Sender<u64>,
) {
    let mut w = tokio::io::BufWriter::with_capacity(64 * 1024, w);
    while let Some(out) = rx.recv().await {
        for c in &out.chunks {
            match tokio::time::timeout(WRITE_STALL, w.write_all(c)).await {
                Ok(Ok(())) => {}
                Ok(Err(_)) => return,
                Err(_) => {
                    tracing::debug!("RTSP client read nothing for {WRITE_STALL:?}: closing");
                    return;
                }
            }
        }
        if out.response {
            written.send_modify(|n| *n += 1);
        }
        if out.close.is_some() {
            let _ = tokio::time::timeout(CLOSE_FLUSH, w.shutdown()).await;
            return;
        }
        if rx.is_empty()
            && !matches!(
                tokio::time::timeout(WRITE_STALL, w.flush()).await,
                Ok(Ok(()))
            )
        {
            return;
        }
    }
    let _ = tokio::time::timeout(CLOSE_FLUSH, w.shutdown()).await;
}

/// Runs the control loop until the peer finishes the stream or breaks the protocol. A
/// message must arrive whole within `request_timeout` of its first byte (slowloris: a peer
/// trickling a request keeps nothing open for long; the connection's keep-alives would
/// never let the idle timeout fire).
pub async fn serve_control<H: ControlHandler>(
    conn: quinn::Connection,
    send: SendStream,
    mut recv: RecvStream,
    limits: Limits,
    request_timeout: std::time::Duration,
    early: Option<&Handshake>,
    handler: &mut H,
) -> Result<(), StreamError> {
    let _ = send.set_priority(CONTROL_PRIORITY);
    let (out, writer) = ControlOut::start(Sink::Quic { send, conn }, None);
    let result = read_loop(&mut recv, limits, request_timeout, early, handler, &out).await;
    drop(out);
    let _ = writer.await;
    result
}

async fn read_loop<H: ControlHandler>(
    recv: &mut RecvStream,
    limits: Limits,
    request_timeout: std::time::Duration,
    early: Option<&Handshake>,
    handler: &mut H,
    out: &ControlOut,
) -> Result<(), StreamError> {
    let mut dec = ControlDecoder::new(limits);
    let mut buf = vec![0u8; 16 * 1024];
    // When the first byte of the message being read arrived.
    let mut started: Option<tokio::time::Instant> = None;
    loop {
        // Drain every complete message before reading more (pipelined requests).
        loop {
            let next = dec.next_message();
            if matches!(next, Ok(Some(_))) {
                started = None;
            }
            match next {
                Ok(None) => break,
                Ok(Some(Message::Request(req))) => {
                    // Before the handshake completes a request may be 0-RTT data, which an
                    // attacker can replay: only the play's start (OPTIONS, DESCRIBE, SETUP,
                    // PLAY) is answered early; anything else waits for the handshake
                    // (PROTOCOL.md §2).
                    if let Some(h) = early
                        && !answered_early(req.method)
                    {
                        h.completed().await;
                    }
                    let resp = handler.handle(req, out).await;
                    out.respond(&resp).await;
                }
                Ok(Some(Message::Response(_))) => {
                    // Answers to PLAY_NOTIFY / TEARDOWN need no action.
                }
                Err(e) => {
                    // A response whose request's CSeq could not be read carries `CSeq: 0`
                    // (PROTOCOL.md §5.3).
                    let resp = Response::error(e.status, e.cseq.unwrap_or(0), e.error.to_string());
                    if !e.fatal {
                        out.respond(&resp).await;
                    } else {
                        let code = match e.error {
                            segue_wire::DecodeError::TooLarge { .. }
                            | segue_wire::DecodeError::TooMany { .. } => AppError::LimitExceeded,
                            _ => AppError::ProtocolViolation,
                        };
                        out.respond_and_close(&resp, code).await;
                        recv.stop(app_code(code)).ok();
                        return Err(StreamError::violation(format!(
                            "control stream closed: {}",
                            e.error
                        )));
                    }
                }
            }
        }
        let since = match dec.buffered() {
            0 => None,
            _ => Some(*started.get_or_insert_with(tokio::time::Instant::now)),
        };
        if since.is_none() {
            started = None;
        }
        if let Some(t0) = since
            && t0.elapsed() > request_timeout
        {
            let why = format!(
                "request not complete within {} s",
                request_timeout.as_secs_f64()
            );
            out.respond(&Response::error(status::REQUEST_TIMEOUT, 0, why.clone()))
                .await;
            recv.stop(app_code(AppError::LimitExceeded)).ok();
            return Err(StreamError::violation(format!(
                "control stream closed: {why}"
            )));
        }
        // quinn's read is cancel-safe: a tick never loses data.
        let read = tokio::select! {
            r = recv.read(&mut buf) => r?,
            _ = tokio::time::sleep(TICK) => {
                handler.tick().await;
                continue;
            }
        };
        match read {
            Some(n) => dec.push(&buf[..n]),
            None => return Ok(()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_a_plays_start_is_answered_before_the_handshake() {
        for m in [
            Method::Options,
            Method::Describe,
            Method::Setup,
            Method::Play,
        ] {
            assert!(answered_early(m), "{m}");
        }
        for m in [
            Method::Pause,
            Method::Teardown,
            Method::GetParameter,
            Method::PlayNotify,
        ] {
            assert!(!answered_early(m), "{m}");
        }
    }
}
