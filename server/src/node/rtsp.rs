//! The RTSP face (`--rtsp-listen`, `--rtsps-listen`): standard players (ffmpeg,
//! GStreamer, ...) over RTSP 1.0 or 2.0 on TCP or TLS, with RTP and RTCP interleaved. Each
//! connection is answered by the same session handler as segue/1 ([`Sessions`]), over the
//! node's source, packet cache, signed URLs and connection limits; only the framing
//! differs (`segue_wire::rtsp`, PROTOCOL.md §12).

use std::collections::BTreeSet;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use segue_wire::control::{Method, Request, Response, status};
use segue_wire::rtsp::{
    Answer, FaceDecoder, FaceError, FaceRequest, Incoming, Scheme, Version, encode_response,
    set_channel,
};
use segue_wire::{AppError, Resource, SegueUrl};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite};
use tokio::net::TcpListener;
use tokio::sync::watch;

use crate::node::NodeOptions;
use crate::node::admission::{Admission, Decision, FaceStats};
use crate::node::control::{ControlHandler, ControlOut, Sink, TICK};
use crate::node::packets::PacketCache;
use crate::node::session::{MediaPath, Refusal, Sessions};
use crate::node::source::Source;

/// A bound RTSP face: its listener and, for `rtsps`, the TLS it speaks.
pub struct Listener {
    pub tcp: TcpListener,
    pub tls: Option<tokio_rustls::TlsAcceptor>,
}

impl Listener {
    /// The address it listens on.
    pub fn local_addr(&self) -> std::io::Result<SocketAddr> {
        self.tcp.local_addr()
    }

    pub fn scheme(&self) -> Scheme {
        if self.tls.is_some() {
            Scheme::Rtsps
        } else {
            Scheme::Rtsp
        }
    }
}

/// What a face's connection shares with the node.
struct Shared<S> {
    source: Arc<S>,
    opts: NodeOptions,
    packets: Arc<PacketCache>,
    scheme: Scheme,
}

/// Accepts RTSP connections on `l` until `stop`, each counted against the node's connection
/// limits (in total and per client, with segue/1's).
pub(crate) async fn serve<S: Source>(
    l: Listener,
    source: Arc<S>,
    opts: NodeOptions,
    packets: Arc<PacketCache>,
    mut stop: watch::Receiver<bool>,
) {
    let shared = Arc::new(Shared {
        source,
        opts,
        packets,
        scheme: l.scheme(),
    });
    loop {
        let (stream, peer) = tokio::select! {
            r = l.tcp.accept() => match r {
                Ok(x) => x,
                Err(e) => {
                    // Out of file descriptors and the like: wait rather than spin.
                    tracing::warn!("RTSP accept: {e}");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            },
            _ = stop.changed() => break,
        };
        let ticket = match shared.opts.admission.decide(peer, true) {
            Decision::Admit(t) => t,
            Decision::Refuse(why) => {
                tracing::debug!(%peer, "RTSP connection refused: {why}");
                continue;
            }
            Decision::Retry => continue,
        };
        // Each TCP connection holds a file descriptor: past the budget it is closed at once.
        let Some(fd) = shared.opts.admission.take_tcp() else {
            shared
                .opts
                .admission
                .refusals
                .note(peer, "RTSP connection: no file descriptor to spare");
            continue;
        };
        let faces = &shared.opts.admission.faces;
        faces.accepted[FaceStats::index(shared.scheme)].fetch_add(1, Ordering::Relaxed);
        let (shared, tls, stop) = (shared.clone(), l.tls.clone(), stop.clone());
        tokio::spawn(async move {
            let _ticket = ticket;
            let _fd = fd;
            let _open = Open::new(&shared.opts.admission.faces.open);
            let _ = stream.set_nodelay(true);
            let r = match tls {
                None => connection(stream, peer, &shared, stop).await,
                Some(acceptor) => {
                    let hs =
                        tokio::time::timeout(shared.opts.request_timeout, acceptor.accept(stream))
                            .await;
                    match hs {
                        Ok(Ok(s)) => connection(s, peer, &shared, stop).await,
                        Ok(Err(e)) => Err(format!("TLS handshake failed: {e}")),
                        Err(_) => Err("TLS handshake timed out".into()),
                    }
                }
            };
            if let Err(e) = r {
                tracing::debug!(%peer, "RTSP connection: {e}");
            }
        });
    }
}

/// One open connection in the face's gauge, for as long as it lives.
struct Open<'a>(&'a AtomicU64);

impl<'a> Open<'a> {
    fn new(gauge: &'a AtomicU64) -> Self {
        gauge.fetch_add(1, Ordering::Relaxed);
        Self(gauge)
    }
}

impl Drop for Open<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}

/// The interleaved channels a connection's SETUPs took (RTP on each, RTCP on the next).
#[derive(Debug, Default)]
struct Channels(BTreeSet<u8>);

impl Channels {
    fn free(&self, ch: u8) -> bool {
        ch < u8::MAX
            && !self.0.contains(&ch.wrapping_add(1))
            && (ch == 0 || !self.0.contains(&(ch - 1)))
    }

    /// The channel a SETUP gets: the one asked for, if it and the next are free (or it is
    /// this connection's already), else the first free even pair.
    fn pick(&self, asked: Option<u8>) -> Option<u8> {
        match asked {
            Some(ch) if self.0.contains(&ch) || self.free(ch) => Some(ch),
            Some(_) => None,
            None => (0..=252u8)
                .step_by(2)
                .find(|&c| !self.0.contains(&c) && self.free(c)),
        }
    }
}

async fn connection<S: Source, T>(
    stream: T,
    peer: SocketAddr,
    shared: &Shared<S>,
    mut stop: watch::Receiver<bool>,
) -> Result<(), String>
where
    T: AsyncRead + AsyncWrite + Send + Unpin + 'static,
{
    let (mut read, write) = tokio::io::split(stream);
    let (out, writer) = ControlOut::start(Sink::Stream(Box::new(write)), Some(shared.scheme));
    let opts = &shared.opts;
    let mut sessions = Sessions::new(
        shared.source.clone(),
        MediaPath::Interleaved {
            out: out.clone(),
            peer,
        },
        opts.sessions,
        opts.limits,
        shared.packets.clone(),
    )
    .with_access(opts.access.clone());
    let mut face = Face {
        dec: FaceDecoder::new(opts.limits),
        channels: Channels::default(),
        scheme: shared.scheme,
        out: out.clone(),
        admission: shared.opts.admission.clone(),
    };
    let r = face
        .run(
            &mut read,
            &mut sessions,
            opts.request_timeout,
            Duration::from_secs(opts.sessions.timeout_s),
            &mut stop,
        )
        .await;
    sessions.shutdown().await;
    // The writer ends when every sender is gone, the sessions' own included: dropped first,
    // or the connection (its socket, its admission ticket) would outlive the client.
    drop(sessions);
    drop(face);
    drop(out);
    let _ = writer.await;
    r
}

struct Face {
    dec: FaceDecoder,
    channels: Channels,
    scheme: Scheme,
    out: ControlOut,
    /// Where its plays are counted (`FaceStats`).
    admission: Arc<Admission>,
}

impl Face {
    async fn run<S: Source, R: AsyncRead + Unpin>(
        &mut self,
        read: &mut R,
        sessions: &mut Sessions<S>,
        request_timeout: Duration,
        idle: Duration,
        stop: &mut watch::Receiver<bool>,
    ) -> Result<(), String> {
        let mut buf = vec![0u8; 16 * 1024];
        // When the first byte of the request being read arrived; the last request.
        let mut started: Option<Instant> = None;
        let mut last = Instant::now();
        loop {
            loop {
                match self.dec.next_request() {
                    Ok(None) => break,
                    Ok(Some(Incoming::Ignored)) => {}
                    Ok(Some(Incoming::Request(r))) => {
                        started = None;
                        last = Instant::now();
                        self.answer(*r, sessions).await;
                    }
                    Err(e) => {
                        started = None;
                        let fatal = e.error.fatal;
                        self.refuse(&e).await;
                        if fatal {
                            return Err(format!("closed: {}", e.error.error));
                        }
                    }
                }
            }
            if self.dec.buffered() == 0 {
                started = None;
            } else if started.get_or_insert_with(Instant::now).elapsed() > request_timeout {
                let why = format!(
                    "request not complete within {} s",
                    request_timeout.as_secs_f64()
                );
                let r = Response::error(status::REQUEST_TIMEOUT, 0, why.clone());
                let version = self.out.face().map_or(Version::V1, |f| f.version());
                let close = Some(AppError::LimitExceeded);
                self.reply(&r, version, Method::Options, None, close).await;
                return Err(why);
            }
            let n = tokio::select! {
                r = read.read(&mut buf) => r.map_err(|e| format!("read: {e}"))?,
                _ = tokio::time::sleep(TICK) => {
                    sessions.tick().await;
                    // A connection without sessions or requests for a session timeout ends.
                    if sessions.is_empty() && last.elapsed() > idle {
                        return Ok(());
                    }
                    continue;
                }
                _ = stop.changed() => return Ok(()),
                _ = self.out.closed() => return Err("the connection's writer ended".into()),
            };
            if n == 0 {
                return Ok(());
            }
            self.dec.push(&buf[..n]);
        }
    }

    async fn answer<S: Source>(&mut self, r: FaceRequest, sessions: &mut Sessions<S>) {
        if let Some(f) = self.out.face() {
            f.v2.store(r.version == Version::V2, Ordering::Relaxed);
        }
        let FaceRequest {
            mut request,
            version,
            channel,
        } = r;
        let method = request.method;
        let url = request.uri.clone();
        let mut granted = None;
        if method == Method::Setup {
            match self.setup_channel(&mut request, channel) {
                Ok(ch) => granted = Some(ch),
                Err(why) => {
                    let resp = Response::error(why.status, request.headers.cseq, why.reason);
                    self.reply(&resp, version, method, url.as_ref(), None).await;
                    return;
                }
            }
        }
        let resp = sessions.handle(request, &self.out).await;
        if let Some(ch) = granted
            && resp.is_success()
        {
            self.channels.0.insert(ch);
        }
        if method == Method::Play && resp.is_success() {
            let plays = &self.admission.faces.plays[FaceStats::index(self.scheme)];
            plays.fetch_add(1, Ordering::Relaxed);
        }
        self.reply(&resp, version, method, url.as_ref(), None).await;
    }

    /// Binds a SETUP to an interleaved channel, or the answer refusing it.
    fn setup_channel(&self, req: &mut Request, asked: Option<u8>) -> Result<u8, Refusal> {
        // One channel pair per track: a SETUP of the aggregate URL would need several.
        if !matches!(
            req.uri.as_ref().map(|u| &u.resource),
            Some(Resource::Track(..))
        ) {
            return Err(Refusal::new(
                status::AGGREGATE_OPERATION_NOT_ALLOWED,
                "SETUP takes a track URL (a=control of the track) on RTSP",
            ));
        }
        let Some(ch) = self.channels.pick(asked) else {
            return Err(Refusal::new(
                status::UNSUPPORTED_TRANSPORT,
                "interleaved channels in use: ask for another pair",
            ));
        };
        set_channel(req, ch);
        Ok(ch)
    }

    /// Writes `r` as the answer to a `method` request of `version` on `url`; `close`: the
    /// connection is closed with it after it.
    async fn reply(
        &self,
        r: &Response,
        version: Version,
        method: Method,
        url: Option<&SegueUrl>,
        close: Option<AppError>,
    ) {
        let a = Answer {
            version,
            scheme: self.scheme,
            method,
            url,
        };
        self.out.queue_encoded(encode_response(r, &a), close).await;
    }

    /// Answers a request that could not be read (and closes after a fatal one).
    async fn refuse(&self, e: &FaceError) {
        let r = Response::error(
            e.error.status,
            e.error.cseq.unwrap_or(0),
            e.error.error.to_string(),
        );
        let close = e.error.fatal.then_some(AppError::ProtocolViolation);
        self.reply(&r, e.version, Method::Options, None, close)
            .await;
    }
}

/// Binds `addr` for the RTSP face (`tls`: rtsps).
pub async fn bind(
    addr: SocketAddr,
    tls: Option<Arc<rustls::ServerConfig>>,
) -> std::io::Result<Listener> {
    Ok(Listener {
        tcp: TcpListener::bind(addr).await?,
        tls: tls.map(tokio_rustls::TlsAcceptor::from),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn channels_are_pairs_that_do_not_overlap() {
        let mut c = Channels::default();
        assert_eq!(c.pick(Some(0)), Some(0));
        c.0.insert(0);
        assert_eq!(c.pick(Some(1)), None, "RTCP of channel 0");
        assert_eq!(c.pick(Some(0)), Some(0), "its own again");
        assert_eq!(c.pick(None), Some(2));
        assert_eq!(c.pick(Some(255)), None, "no channel for its RTCP");
        c.0.insert(2);
        assert_eq!(c.pick(Some(3)), None);
        assert_eq!(c.pick(None), Some(4));
    }
}
