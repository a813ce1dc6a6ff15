//! Player sessions: the control handler for DESCRIBE/SETUP/PLAY/PAUSE/TEARDOWN/GET_PARAMETER and
//! the media sender that turns segments into RTP on RoQ streams (PROTOCOL.md §5, §7).

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::Duration;

use bytes::Bytes;
use ring::rand::{SecureRandom, SystemRandom};
use segue_wire::control::{
    Method, NptRange, PARAMETERS_CONTENT_TYPE, Request, Response, RtpInfo, SDP_CONTENT_TYPE,
    SessionHeader, Transport, status,
};
use segue_wire::sdp::Description;
use segue_wire::segment::Manifest;
use segue_wire::{AppError, Limits, ObjectName, Resource, SegueUrl, roq};
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tokio::time::Instant;

use crate::node::control::{ControlHandler, ControlOut, options_response};
use crate::node::packets::{Cursor, PacketCache, SegmentPackets};
use crate::node::source::{Source, SourceError};
use crate::origin::ingest::rescale;

/// Methods a node serves to players: all of segue/1's but PLAY_NOTIFY, which servers send.
fn public_methods() -> Vec<Method> {
    Method::ALL
        .into_iter()
        .filter(|m| *m != Method::PlayNotify)
        .collect()
}

/// Bytes of frames due that a sender writes at most before writing every track's stream
/// up to where it is due: far under a player's stream window (quinn's 1.25 MB), so no
/// track waits behind another's, and few writes per segment.
const WRITE_BATCH: usize = 64 * 1024;

/// Round trips of the path a paced session sends ahead at least (see `Sender::send_ahead`).
pub const SEND_AHEAD_RTTS: u32 = 8;

/// Session behaviour.
#[derive(Debug, Clone, Copy)]
pub struct SessionOptions {
    /// Media sent ahead of real time (fills the player's buffer at start); at least
    /// [`SEND_AHEAD_RTTS`] round trips of the session's path.
    pub send_ahead: Duration,
    /// Largest RTP payload.
    pub max_payload: usize,
    /// Announced session timeout, seconds.
    pub timeout_s: u64,
    /// Sessions per connection.
    pub max_sessions: usize,
    /// Memory for packetized segments shared by all sessions of a node, bytes.
    pub packet_cache_bytes: u64,
}

impl Default for SessionOptions {
    fn default() -> Self {
        Self {
            send_ahead: Duration::from_secs(2),
            max_payload: segue_wire::payload::DEFAULT_MAX_PAYLOAD,
            timeout_s: segue_wire::control::DEFAULT_SESSION_TIMEOUT,
            max_sessions: 4,
            packet_cache_bytes: 64 << 20,
        }
    }
}

#[derive(Debug, Default)]
struct Progress {
    /// First segment not completely sent.
    next_segment: AtomicUsize,
    bytes: AtomicU64,
    packets: AtomicU64,
    position_us: AtomicU64,
}

struct Playing {
    cancel: watch::Sender<bool>,
    task: JoinHandle<()>,
}

struct Session {
    url: SegueUrl,
    /// How the edge served this session (`full-hit`, `prefix-hit`, `miss`), if an edge.
    cache_case: Option<crate::node::source::CacheCase>,
    manifest: Arc<Manifest>,
    desc: Description,
    flows: Vec<Option<u64>>,
    progress: Arc<Progress>,
    playing: Option<Playing>,
    /// Last request that named this session.
    last_request: Instant,
}

impl Session {
    async fn stop(&mut self) {
        if let Some(p) = self.playing.take() {
            let _ = p.cancel.send(true);
            let _ = p.task.await;
        }
    }
}

/// One connection's control handler.
pub struct Sessions<S: Source> {
    source: Arc<S>,
    conn: quinn::Connection,
    opts: SessionOptions,
    limits: Limits,
    sessions: HashMap<String, Session>,
    /// Pipelined-Requests id → session id, or the failure later requests inherit.
    pipelined: HashMap<u32, Result<String, (u16, String)>>,
    flows_in_use: HashSet<u64>,
    rng: SystemRandom,
    packets: Arc<PacketCache>,
    /// Signed URLs required (docs/SECURITY.md).
    access: Option<Arc<crate::node::access::Keys>>,
}

fn err(status: u16, req: &Request, reason: impl Into<String>) -> Response {
    Response::error(status, req.headers.cseq, reason)
}

/// 415 for a file object (PROTOCOL.md §8.9): it has no tracks to play.
fn not_media(req: &Request, name: &ObjectName) -> Response {
    err(
        status::UNSUPPORTED_MEDIA_TYPE,
        req,
        format!("{name} is a file, not a media object: fetch it over HTTP/3"),
    )
}

/// Why a request is refused: the status and a reason for `Segue-Error`.
type Refusal = (u16, String);

impl<S: Source> Sessions<S> {
    pub fn new(
        source: Arc<S>,
        conn: quinn::Connection,
        opts: SessionOptions,
        limits: Limits,
        packets: Arc<PacketCache>,
    ) -> Self {
        Self {
            source,
            conn,
            opts,
            limits,
            sessions: HashMap::new(),
            pipelined: HashMap::new(),
            flows_in_use: HashSet::new(),
            rng: SystemRandom::new(),
            packets,
            access: None,
        }
    }

    /// Requires signed URLs of DESCRIBE and of the SETUP that creates a session.
    pub fn with_access(mut self, access: Option<Arc<crate::node::access::Keys>>) -> Self {
        self.access = access;
        self
    }

    /// Whether the request's grant (URL query or `Segue-Token`) gives this client `name`.
    fn authorize(&self, req: &Request, url: &SegueUrl, name: &ObjectName) -> Result<(), Refusal> {
        let Some(keys) = &self.access else {
            return Ok(());
        };
        let grant =
            crate::node::access::grant_of(url.query.as_deref(), req.headers.token.as_deref());
        keys.check(
            name.as_str(),
            grant,
            self.conn.remote_address().ip(),
            crate::node::access::now(),
        )
        .map_err(|d| (d.status(), d.to_string()))
    }

    fn random_u32(&self) -> u32 {
        let mut b = [0u8; 4];
        // SystemRandom fails only if the OS has no randomness; fall back to time.
        if self.rng.fill(&mut b).is_err() {
            return std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0x5e9e, |d| d.subsec_nanos());
        }
        u32::from_be_bytes(b)
    }

    fn object_of(req: &Request) -> Result<(&SegueUrl, &ObjectName), Refusal> {
        let Some(url) = &req.uri else {
            return Err((status::BAD_REQUEST, "request needs an object URL".into()));
        };
        match url.resource.object() {
            Some(o) => Ok((url, o)),
            None => Err((status::NOT_FOUND, "URL names no object".into())),
        }
    }

    async fn describe(&mut self, req: &Request) -> Response {
        let (url, name) = match Self::object_of(req) {
            Ok(x) => x,
            Err((st, why)) => return err(st, req, why),
        };
        if !matches!(url.resource, Resource::Object(_)) {
            return err(
                status::METHOD_NOT_ALLOWED,
                req,
                "DESCRIBE takes the object URL",
            );
        }
        if let Err((st, why)) = self.authorize(req, url, name) {
            return err(st, req, why);
        }
        match self.source.manifest(name).await {
            Ok(m) if m.is_file() => not_media(req, name),
            Ok(m) => {
                let mut r = Response::new(status::OK, req.headers.cseq);
                r.headers.content_type = Some(SDP_CONTENT_TYPE.into());
                r.body = Bytes::from(m.sdp.clone());
                r
            }
            Err(e) => err(e.rtsp_status(), req, e.to_string()),
        }
    }

    /// Tears down sessions that are not playing and saw no request for their timeout.
    async fn expire(&mut self) {
        let timeout = Duration::from_secs(self.opts.timeout_s);
        let stale: Vec<String> = self
            .sessions
            .iter()
            .filter(|(_, s)| {
                let playing = s.playing.as_ref().is_some_and(|p| !p.task.is_finished());
                !playing && s.last_request.elapsed() > timeout
            })
            .map(|(id, _)| id.clone())
            .collect();
        for id in stale {
            tracing::debug!(session = %id, "session timed out");
            self.remove(&id).await;
        }
    }

    async fn remove(&mut self, id: &str) {
        if let Some(mut s) = self.sessions.remove(id) {
            s.stop().await;
            for f in s.flows.into_iter().flatten() {
                self.flows_in_use.remove(&f);
            }
        }
        self.pipelined
            .retain(|_, v| v.as_ref().map_or(true, |s| s != id));
    }

    /// The session a request refers to, through `Session` or `Pipelined-Requests`.
    fn session_id(&self, req: &Request) -> Result<Option<String>, Refusal> {
        if let Some(s) = &req.headers.session {
            return if self.sessions.contains_key(&s.id) {
                Ok(Some(s.id.clone()))
            } else {
                Err((status::SESSION_NOT_FOUND, format!("no session {}", s.id)))
            };
        }
        match req
            .headers
            .pipelined_requests
            .and_then(|p| self.pipelined.get(&p))
        {
            Some(Ok(id)) => Ok(Some(id.clone())),
            Some(Err((st, reason))) => Err((*st, format!("pipelined request failed: {reason}"))),
            None => Ok(None),
        }
    }

    async fn setup(&mut self, req: &Request) -> Response {
        let r = self.setup_inner(req).await;
        if let Some(p) = req.headers.pipelined_requests
            && !r.is_success()
        {
            self.pipelined
                .entry(p)
                .or_insert_with(|| Err((r.status, r.headers.error.clone().unwrap_or_default())));
        }
        r
    }

    async fn setup_inner(&mut self, req: &Request) -> Response {
        let (url, name) = match Self::object_of(req) {
            Ok((u, n)) => (u.clone(), n.clone()),
            Err((st, why)) => return err(st, req, why),
        };
        let Some(Transport { flow_id }) = req.headers.transport else {
            return err(
                status::UNSUPPORTED_TRANSPORT,
                req,
                "SETUP needs Transport: RTP/AVP/QUIC;unicast;flow-id=N",
            );
        };
        let existing = match self.session_id(req) {
            Ok(s) => s,
            Err((st, why)) => return err(st, req, why),
        };
        let (id, created) = match existing {
            Some(id) => (id, false),
            None => {
                if let Err((st, why)) = self.authorize(req, &url, &name) {
                    return err(st, req, why);
                }
                if self.sessions.len() >= self.opts.max_sessions {
                    return err(
                        status::SERVICE_UNAVAILABLE,
                        req,
                        "session limit of this connection reached",
                    );
                }
                let manifest = match self.source.manifest(&name).await {
                    Ok(m) if m.is_file() => return not_media(req, &name),
                    Ok(m) => m,
                    Err(e) => return err(e.rtsp_status(), req, e.to_string()),
                };
                let desc = match manifest.description(&self.limits) {
                    Ok(d) => d,
                    Err(e) => {
                        return err(
                            status::INTERNAL_SERVER_ERROR,
                            req,
                            format!("bad SDP in manifest: {e}"),
                        );
                    }
                };
                let id = format!("{:08x}{:08x}", self.random_u32(), self.random_u32());
                let flows = vec![None; desc.tracks.len()];
                self.sessions.insert(
                    id.clone(),
                    Session {
                        url: url.object_url().unwrap_or_else(|| url.clone()),
                        cache_case: None,
                        manifest,
                        desc,
                        flows,
                        progress: Arc::default(),
                        playing: None,
                        last_request: Instant::now(),
                    },
                );
                (id, true)
            }
        };
        let result = self.bind_flows(&id, &url, &name, flow_id);
        if let Err(r) = result {
            if created {
                self.sessions.remove(&id);
            }
            return err(r.0, req, r.1);
        }
        if let Some(p) = req.headers.pipelined_requests {
            self.pipelined.insert(p, Ok(id.clone()));
        }
        let mut r = Response::new(status::OK, req.headers.cseq);
        r.headers.session = Some(SessionHeader {
            id,
            timeout: Some(self.opts.timeout_s),
        });
        r.headers.transport = Some(Transport { flow_id });
        r.headers.pipelined_requests = req.headers.pipelined_requests;
        r
    }

    fn bind_flows(
        &mut self,
        id: &str,
        url: &SegueUrl,
        name: &ObjectName,
        base: u64,
    ) -> Result<(), (u16, String)> {
        let s = self
            .sessions
            .get_mut(id)
            .ok_or((status::SESSION_NOT_FOUND, "session vanished".to_string()))?;
        if s.manifest.object != *name {
            return Err((
                status::BAD_REQUEST,
                "session belongs to another object".into(),
            ));
        }
        let tracks: Vec<usize> = match url.resource {
            Resource::Track(_, n) if (n as usize) < s.flows.len() => vec![n as usize],
            Resource::Track(_, n) => return Err((status::NOT_FOUND, format!("no track {n}"))),
            _ => (0..s.flows.len()).collect(),
        };
        let wanted: Vec<u64> = tracks
            .iter()
            .enumerate()
            .map(|(i, _)| base.saturating_add(i as u64))
            .collect();
        if wanted
            .iter()
            .any(|f| self.flows_in_use.contains(f) || *f > segue_wire::varint::MAX)
        {
            return Err((
                status::UNSUPPORTED_TRANSPORT,
                "flow id already in use".into(),
            ));
        }
        for (t, f) in tracks.into_iter().zip(wanted) {
            if let Some(old) = s.flows[t].replace(f) {
                self.flows_in_use.remove(&old);
            }
            self.flows_in_use.insert(f);
        }
        Ok(())
    }

    async fn play(&mut self, req: &Request, out: &ControlOut) -> Response {
        let id = match self.session_id(req) {
            Ok(Some(id)) => id,
            Ok(None) => return err(status::SESSION_NOT_FOUND, req, "PLAY needs a Session"),
            Err((st, why)) => return err(st, req, why),
        };
        if matches!(
            req.uri.as_ref().map(|u| &u.resource),
            Some(Resource::Track(..))
        ) {
            return err(status::METHOD_NOT_ALLOWED, req, "PLAY takes the object URL");
        }
        let rand: Vec<u32> = (0..24).map(|_| self.random_u32()).collect();
        let Some(s) = self.sessions.get_mut(&id) else {
            return err(status::SESSION_NOT_FOUND, req, "no such session");
        };
        if s.flows.iter().all(Option::is_none) {
            return err(
                status::METHOD_NOT_VALID_IN_THIS_STATE,
                req,
                "no track is set up",
            );
        }
        // A refused PLAY leaves a playing session alone: validate before stopping it.
        if req
            .headers
            .range
            .is_some_and(|r| r.start > s.manifest.duration_us)
        {
            return err(status::INVALID_RANGE, req, "range starts after the end");
        }
        s.stop().await;
        let n = s.manifest.segments.len();
        let first = match req.headers.range {
            Some(r) => s.manifest.segment_at(r.start).unwrap_or(0),
            None => s
                .progress
                .next_segment
                .load(Ordering::Relaxed)
                .min(n.saturating_sub(1)),
        };
        let start_us = s.manifest.segments.get(first).map_or(0, |e| e.start_us);
        let mut tracks = Vec::new();
        let mut rtp_info = Vec::new();
        for (i, t) in s.desc.tracks.iter().enumerate() {
            let Some(flow) = s.flows[i] else { continue };
            let ts = TrackSend {
                index: i as u32,
                flow,
                clock: t.clock_rate,
                ssrc: rand[i * 3],
                seq: rand[i * 3 + 1] as u16,
                ts_offset: rand[i * 3 + 2],
            };
            rtp_info.push(RtpInfo {
                url: s
                    .url
                    .with_resource(Resource::Track(s.manifest.object.clone(), i as u32)),
                ssrc: ts.ssrc,
                seq: ts.seq,
                rtptime: (rescale(start_us, 1_000_000, ts.clock) as u32).wrapping_add(ts.ts_offset),
            });
            tracks.push(ts);
        }
        s.progress = Arc::default();
        s.progress.next_segment.store(first, Ordering::Relaxed);
        let (cancel, cancel_rx) = watch::channel(false);
        s.cache_case = self.source.will_play(&s.manifest, first);
        let ctx = Sender {
            source: self.source.clone(),
            conn: self.conn.clone(),
            out: out.clone(),
            manifest: s.manifest.clone(),
            url: s.url.clone(),
            session: id.clone(),
            tracks,
            first,
            start_us,
            pacing: !req.headers.unpaced,
            send_ahead: self.opts.send_ahead,
            packets: self.packets.clone(),
            desc: s.desc.clone(),
            cancel: cancel_rx,
            progress: s.progress.clone(),
        };
        let task = tokio::spawn(ctx.run());
        s.playing = Some(Playing { cancel, task });
        let mut r = Response::new(status::OK, req.headers.cseq);
        r.headers.session = Some(SessionHeader { id, timeout: None });
        r.headers.pipelined_requests = req.headers.pipelined_requests;
        r.headers.range = Some(NptRange {
            start: start_us,
            end: Some(s.manifest.duration_us),
        });
        r.headers.rtp_info = rtp_info;
        r
    }

    async fn pause(&mut self, req: &Request) -> Response {
        let id = match self.session_id(req) {
            Ok(Some(id)) => id,
            Ok(None) => return err(status::SESSION_NOT_FOUND, req, "PAUSE needs a Session"),
            Err((st, why)) => return err(st, req, why),
        };
        let Some(s) = self.sessions.get_mut(&id) else {
            return err(status::SESSION_NOT_FOUND, req, "no such session");
        };
        s.stop().await;
        let next = s.progress.next_segment.load(Ordering::Relaxed);
        let at = s
            .manifest
            .segments
            .get(next)
            .map_or(s.manifest.duration_us, |e| e.start_us);
        let mut r = Response::new(status::OK, req.headers.cseq);
        r.headers.session = Some(SessionHeader { id, timeout: None });
        r.headers.range = Some(NptRange {
            start: at,
            end: None,
        });
        r
    }

    async fn teardown(&mut self, req: &Request) -> Response {
        let id = match self.session_id(req) {
            Ok(Some(id)) => id,
            Ok(None) => return err(status::SESSION_NOT_FOUND, req, "TEARDOWN needs a Session"),
            Err((st, why)) => return err(st, req, why),
        };
        self.remove(&id).await;
        Response::new(status::OK, req.headers.cseq)
    }

    fn get_parameter(&self, req: &Request) -> Response {
        let id = match self.session_id(req) {
            Ok(id) => id,
            Err((st, why)) => return err(st, req, why),
        };
        let names = String::from_utf8_lossy(&req.body);
        let names: Vec<&str> = names
            .lines()
            .map(str::trim)
            .filter(|l| !l.is_empty())
            .collect();
        let mut r = Response::new(status::OK, req.headers.cseq);
        if names.is_empty() {
            return r;
        }
        let session = id.as_ref().and_then(|id| self.sessions.get(id));
        let progress = session.map(|s| s.progress.clone());
        let cache_case = session.and_then(|s| s.cache_case);
        let mut body = String::new();
        for n in names {
            let v = match (n, &progress) {
                ("position", Some(p)) => {
                    let us = p.position_us.load(Ordering::Relaxed);
                    format!("{}.{:06}", us / 1_000_000, us % 1_000_000)
                }
                ("bytes-sent", Some(p)) => p.bytes.load(Ordering::Relaxed).to_string(),
                ("packets-sent", Some(p)) => p.packets.load(Ordering::Relaxed).to_string(),
                ("cache", Some(_)) if let Some(c) = cache_case => c.to_string(),
                _ => {
                    return err(
                        status::PARAMETER_NOT_UNDERSTOOD,
                        req,
                        format!("unknown parameter {n:?}"),
                    );
                }
            };
            body.push_str(&format!("{n}: {v}\r\n"));
        }
        r.headers.content_type = Some(PARAMETERS_CONTENT_TYPE.into());
        r.body = Bytes::from(body);
        r
    }

    /// Stops every session (connection closing).
    pub async fn shutdown(&mut self) {
        for s in self.sessions.values_mut() {
            s.stop().await;
        }
    }
}

impl<S: Source> ControlHandler for Sessions<S> {
    async fn tick(&mut self) {
        self.expire().await;
    }

    async fn handle(&mut self, req: Request, out: &ControlOut) -> Response {
        // Any request naming a session keeps it alive.
        if let Some(id) = req.headers.session.as_ref().map(|s| s.id.clone())
            && let Some(s) = self.sessions.get_mut(&id)
        {
            s.last_request = Instant::now();
        }
        match req.method {
            Method::Options => options_response(req.headers.cseq, &public_methods()),
            Method::Describe => self.describe(&req).await,
            Method::Setup => self.setup(&req).await,
            Method::Play => self.play(&req, out).await,
            Method::Pause => self.pause(&req).await,
            Method::Teardown => self.teardown(&req).await,
            Method::GetParameter => self.get_parameter(&req),
            Method::PlayNotify => err(
                status::METHOD_NOT_ALLOWED,
                &req,
                "PLAY_NOTIFY is sent by servers",
            ),
        }
    }
}

/// Per-track RTP state of a playing session.
#[derive(Debug, Clone)]
struct TrackSend {
    index: u32,
    flow: u64,
    clock: u32,
    ssrc: u32,
    /// Next sequence number.
    seq: u16,
    ts_offset: u32,
}

/// The media sender of one PLAY.
struct Sender<S: Source> {
    source: Arc<S>,
    conn: quinn::Connection,
    out: ControlOut,
    manifest: Arc<Manifest>,
    url: SegueUrl,
    session: String,
    tracks: Vec<TrackSend>,
    first: usize,
    start_us: u64,
    pacing: bool,
    send_ahead: Duration,
    packets: Arc<PacketCache>,
    desc: Description,
    cancel: watch::Receiver<bool>,
    progress: Arc<Progress>,
}

enum Stop {
    Cancelled,
    Failed(String),
}

impl<S: Source> Sender<S> {
    /// How far ahead of real time media is sent: the configured send-ahead, and at least
    /// [`SEND_AHEAD_RTTS`] round trips of this connection's path, so the buffer it builds in
    /// the player covers a few loss recoveries on a long path too (docs/TRANSPORT.md).
    /// The path's RTT is the least seen, not the smoothed one: that includes the queue the
    /// send-ahead itself builds, so sizing by it grew the send-ahead with its own queue
    /// (seen: 0.3 s path, 0.9 s smoothed RTT on a slow last mile, 7 s sent ahead, and a
    /// loss there recovered after 2 s).
    fn send_ahead(&self) -> Duration {
        self.send_ahead.max(self.conn.min_rtt() * SEND_AHEAD_RTTS)
    }

    async fn run(mut self) {
        let result = self.send_all().await;
        self.source.stopped(
            &self.manifest,
            self.progress.next_segment.load(Ordering::Relaxed),
        );
        match result {
            Ok(()) => {
                let mut n = Request::new(Method::PlayNotify, Some(self.url.clone()), 0);
                n.headers.notify_reason = Some("end-of-stream".into());
                n.headers.session = Some(SessionHeader {
                    id: self.session.clone(),
                    timeout: None,
                });
                n.headers.range = Some(NptRange {
                    start: self.start_us,
                    end: Some(self.manifest.duration_us),
                });
                n.headers.rtp_info = self
                    .tracks
                    .iter()
                    .map(|t| RtpInfo {
                        url: self
                            .url
                            .with_resource(Resource::Track(self.manifest.object.clone(), t.index)),
                        ssrc: t.ssrc,
                        seq: t.seq.wrapping_sub(1),
                        rtptime: (rescale(self.manifest.duration_us, 1_000_000, t.clock) as u32)
                            .wrapping_add(t.ts_offset),
                    })
                    .collect();
                self.out.request(n).await;
            }
            Err(Stop::Cancelled) => {}
            Err(Stop::Failed(reason)) => {
                tracing::warn!(session = %self.session, object = %self.manifest.object, "{reason}");
                let mut t = Request::new(Method::Teardown, Some(self.url.clone()), 0);
                t.headers.session = Some(SessionHeader {
                    id: self.session.clone(),
                    timeout: None,
                });
                t.headers.terminate_reason = Some("Internal-Error".into());
                t.headers.error = Some(segue_wire::control::message_text(&reason));
                self.out.request(t).await;
            }
        }
    }

    async fn cancelled(cancel: &mut watch::Receiver<bool>) {
        while !*cancel.borrow() {
            if cancel.changed().await.is_err() {
                // The session is gone: behave as cancelled.
                return;
            }
        }
    }

    async fn send_all(&mut self) -> Result<(), Stop> {
        tokio::select! {
            r = self.source.ready(&self.manifest, self.first) => r.map_err(|e| Stop::Failed(e.to_string()))?,
            _ = Self::cancelled(&mut self.cancel) => return Err(Stop::Cancelled),
        }
        let t0 = Instant::now();
        for i in self.first..self.manifest.segments.len() {
            let payload = tokio::select! {
                r = self.source.segment(&self.manifest, i) => r.map_err(|e: SourceError| Stop::Failed(e.to_string()))?,
                _ = Self::cancelled(&mut self.cancel) => return Err(Stop::Cancelled),
            };
            let packets = self
                .packets
                .get(&self.manifest, &self.desc, i, &payload)
                .map_err(|e| Stop::Failed(format!("segment {i}: {e}")))?;
            let mut streams: Vec<Option<quinn::SendStream>> =
                (0..self.tracks.len()).map(|_| None).collect();
            let r = self.send_segment(i, &packets, t0, &mut streams).await;
            match r {
                Ok(()) => {
                    for s in streams.iter_mut().flatten() {
                        let _ = s.finish();
                    }
                    self.progress.next_segment.store(i + 1, Ordering::Relaxed);
                }
                Err(e) => {
                    let code = match e {
                        Stop::Cancelled => AppError::Cancelled,
                        Stop::Failed(_) => AppError::InternalError,
                    };
                    for s in streams.iter_mut().flatten() {
                        let _ =
                            s.reset(code.code().try_into().unwrap_or(quinn::VarInt::from_u32(2)));
                    }
                    return Err(e);
                }
            }
        }
        Ok(())
    }

    /// Writes track `ti`'s bytes up to stream position `end`, opening its stream first.
    async fn write_until(
        &mut self,
        index: usize,
        ti: usize,
        end: usize,
        cursors: &mut [Cursor],
        streams: &mut [Option<quinn::SendStream>],
    ) -> Result<(), Stop> {
        if cursors[ti].pos() >= end {
            return Ok(());
        }
        let mut chunks = Vec::new();
        if streams[ti].is_none() {
            let s = tokio::select! {
                r = self.conn.open_uni() => r.map_err(|e| Stop::Failed(format!("cannot open a media stream: {e}")))?,
                _ = Self::cancelled(&mut self.cancel) => return Err(Stop::Cancelled),
            };
            // Earlier segments first.
            let _ = s.set_priority(-(index.min(i32::MAX as usize) as i32));
            let mut header = Vec::with_capacity(8);
            roq::put_stream_header(&mut header, self.tracks[ti].flow);
            chunks.push(Bytes::from(header));
            streams[ti] = Some(s);
        }
        let from = cursors[ti].pos();
        cursors[ti].take_until(end, &mut chunks);
        let sent = cursors[ti].pos() - from;
        let Some(stream) = streams[ti].as_mut() else {
            return Ok(());
        };
        tokio::select! {
            r = stream.write_all_chunks(&mut chunks) => r.map_err(|e| Stop::Failed(format!("media stream: {e}")))?,
            _ = Self::cancelled(&mut self.cancel) => return Err(Stop::Cancelled),
        }
        self.progress
            .bytes
            .fetch_add(sent as u64, Ordering::Relaxed);
        self.source.sent(sent as u64);
        Ok(())
    }

    /// Writes every track's stream up to `due_end`.
    async fn write_due(
        &mut self,
        index: usize,
        due_end: &[usize],
        cursors: &mut [Cursor],
        streams: &mut [Option<quinn::SendStream>],
    ) -> Result<(), Stop> {
        for (ti, &end) in due_end.iter().enumerate() {
            self.write_until(index, ti, end, cursors, streams).await?;
        }
        Ok(())
    }

    /// Sends one segment: one stream per track, frames released at their due time when
    /// pacing (everything written before each wait), all at once otherwise.
    async fn send_segment(
        &mut self,
        index: usize,
        packets: &SegmentPackets,
        t0: Instant,
        streams: &mut [Option<quinn::SendStream>],
    ) -> Result<(), Stop> {
        let mut cursors = Vec::with_capacity(self.tracks.len());
        for t in &mut self.tracks {
            let Some(tp) = packets.tracks.get(t.index as usize) else {
                cursors.push(Cursor::default());
                continue;
            };
            cursors.push(Cursor::new(tp.stamp(t.seq, t.ts_offset, t.ssrc)));
            t.seq = t.seq.wrapping_add(tp.packets as u16);
        }
        // Frames are written in record (decoding) order across tracks, every track up to
        // where it is due, at least every [`WRITE_BATCH`] bytes: written a whole track
        // after another, the first segment's video (2 MB at 8 Mbit/s, more than quinn's
        // 1.25 MB stream window) held the audio back until most of it was delivered, and
        // playback, which waits for every track's startup buffer, started ~300 ms late on
        // the matrix's 8 Mbit/s cells. (A write per frame instead cost unpaced egress
        // 44 % on the `long` sample.)
        let ahead = self.send_ahead();
        // Where each track's stream is due up to, and the bytes due but not yet written.
        let mut due_end = vec![0usize; self.tracks.len()];
        let mut unwritten = 0usize;
        for step in &packets.steps {
            let Some(ti) = self
                .tracks
                .iter()
                .position(|t| t.index as usize == step.track)
            else {
                continue;
            };
            if self.pacing {
                let due = t0
                    + Duration::from_micros(step.dts_us.saturating_sub(self.start_us))
                        .saturating_sub(ahead);
                if due > Instant::now() {
                    self.write_due(index, &due_end, &mut cursors, streams)
                        .await?;
                    unwritten = 0;
                    tokio::select! {
                        _ = tokio::time::sleep_until(due) => {}
                        _ = Self::cancelled(&mut self.cancel) => return Err(Stop::Cancelled),
                    }
                }
            }
            unwritten += step.end.saturating_sub(due_end[ti]);
            due_end[ti] = step.end;
            self.progress
                .packets
                .fetch_add(u64::from(step.packets), Ordering::Relaxed);
            self.progress
                .position_us
                .store(step.pts_us, Ordering::Relaxed);
            if unwritten >= WRITE_BATCH {
                self.write_due(index, &due_end, &mut cursors, streams)
                    .await?;
                unwritten = 0;
            }
        }
        for ti in 0..self.tracks.len() {
            self.write_until(index, ti, usize::MAX, &mut cursors, streams)
                .await?;
        }
        Ok(())
    }
}
