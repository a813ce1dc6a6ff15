//! Player sessions: the control handler for DESCRIBE/SETUP/PLAY/PAUSE/TEARDOWN/GET_PARAMETER and
//! the media sender that turns segments into RTP on RoQ streams (PROTOCOL.md §5, §7).

use std::sync::Arc;
use std::sync::atomic::{AtomicU32, AtomicU64, AtomicUsize, Ordering};
use std::time::Duration;

use bytes::Bytes;
use ring::rand::{SecureRandom, SystemRandom};
use segue_wire::control::{
    Method, NptRange, PARAMETERS_CONTENT_TYPE, Request, Response, RtpInfo, SDP_CONTENT_TYPE,
    SessionHeader, Transport, status,
};
use segue_wire::sdp::Description;
use segue_wire::segment::Manifest;
use segue_wire::{Limits, ObjectName, Resource, SegueUrl};
use std::time::Instant;
use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::node::control::{ControlHandler, ControlOut, options_response};
use crate::node::packets::PacketCache;
use crate::node::source::Source;

mod ahead;
mod path;
mod preview;
mod sender;
pub mod table;

use crate::clock::rescale;
pub use path::MediaPath;
use path::PlayPath;
use sender::{Sender, TrackSend};
pub use table::{Refusal, SessionTable};

/// Methods a node serves to players: all of segue/1's but PLAY_NOTIFY, which servers send.
fn public_methods() -> Vec<Method> {
    Method::ALL
        .into_iter()
        .filter(|m| *m != Method::PlayNotify)
        .collect()
}

pub use ahead::{SEND_AHEAD_GROWTH, SEND_AHEAD_RTTS};

/// Session behaviour.
#[derive(Debug, Clone, Copy)]
pub struct SessionOptions {
    /// Media sent ahead of real time (fills the player's buffer at start); at least
    /// [`SEND_AHEAD_RTTS`] round trips of the session's path.
    pub send_ahead: Duration,
    /// The send-ahead grows by [`SEND_AHEAD_GROWTH`] per second of play while the path
    /// holds no queue, up to this: the deepest buffer a player is given (`ahead::SendAhead`;
    /// equal to `send_ahead` by default: no growth).
    pub send_ahead_max: Duration,
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
            send_ahead_max: Duration::from_secs(2),
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
    /// RTP bytes (headers and payloads, without RoQ framing) and packets handed to the
    /// session's streams, over all its PLAYs (GET_PARAMETER, PROTOCOL.md §5.9).
    bytes: AtomicU64,
    packets: AtomicU64,
    position_us: AtomicU64,
    /// Per track (SDP order): the sequence number segment `next_segment` starts at (the
    /// one after the last packet once every segment is sent), and the next one not yet
    /// given to a packet. A PLAY after PAUSE numbers from the first, a seek from the
    /// second (PROTOCOL.md §5.7).
    seq_at_segment: Vec<AtomicU32>,
    seq_next: Vec<AtomicU32>,
}

impl Progress {
    /// A PLAY's progress from `next_segment`, numbering each track from `seqs`, with the
    /// counters of the PLAYs before it (`before`).
    fn starting(next_segment: usize, seqs: &[u16], before: &Progress) -> Self {
        let at = |v: &[u16]| v.iter().map(|&q| AtomicU32::new(u32::from(q))).collect();
        Self {
            next_segment: AtomicUsize::new(next_segment),
            bytes: AtomicU64::new(before.bytes.load(Ordering::Relaxed)),
            packets: AtomicU64::new(before.packets.load(Ordering::Relaxed)),
            position_us: AtomicU64::new(0),
            seq_at_segment: at(seqs),
            seq_next: at(seqs),
        }
    }

    /// Track `i`'s number at the start of segment `next_segment` (`resume`) or the next
    /// unused one; None before the session's first PLAY.
    fn seq(&self, i: usize, resume: bool) -> Option<u16> {
        let v = if resume {
            &self.seq_at_segment
        } else {
            &self.seq_next
        };
        v.get(i).map(|q| q.load(Ordering::Relaxed) as u16)
    }
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
    progress: Arc<Progress>,
    /// Per track (SDP order): SSRC and timestamp offset, chosen at the first PLAY and kept
    /// for the session's life (PROTOCOL.md §7.3).
    stamps: Vec<(u32, u32)>,
    playing: Option<Playing>,
}

impl Session {
    fn is_playing(&self) -> bool {
        self.playing.as_ref().is_some_and(|p| !p.task.is_finished())
    }

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
    path: MediaPath,
    opts: SessionOptions,
    limits: Limits,
    sessions: SessionTable<Session>,
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

/// 455 for a method that names no session: it comes before SETUP (PROTOCOL.md §5.3).
fn before_setup(req: &Request) -> Response {
    err(
        status::METHOD_NOT_VALID_IN_THIS_STATE,
        req,
        format!("{} before SETUP: no Session", req.method),
    )
}

fn refuse(req: &Request, r: Refusal) -> Response {
    err(r.status, req, r.reason)
}

impl<S: Source> Sessions<S> {
    pub fn new(
        source: Arc<S>,
        path: MediaPath,
        opts: SessionOptions,
        limits: Limits,
        packets: Arc<PacketCache>,
    ) -> Self {
        Self {
            source,
            path,
            opts,
            limits,
            sessions: SessionTable::new(opts.max_sessions),
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
            self.path.remote_ip(),
            crate::node::access::now(),
        )
        .map_err(|d| Refusal::new(d.status(), d.to_string()))
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
            return Err(Refusal::new(
                status::BAD_REQUEST,
                "request needs an object URL",
            ));
        };
        match url.resource.object() {
            Some(o) => Ok((url, o)),
            None => Err(Refusal::new(status::NOT_FOUND, "URL names no object")),
        }
    }

    async fn describe(&mut self, req: &Request) -> Response {
        let (url, name) = match Self::object_of(req) {
            Ok(x) => x,
            Err(r) => return refuse(req, r),
        };
        if !matches!(url.resource, Resource::Object(_)) {
            return err(
                status::METHOD_NOT_ALLOWED,
                req,
                "DESCRIBE takes the object URL",
            );
        }
        if let Err(r) = self.authorize(req, url, name) {
            return refuse(req, r);
        }
        match self.source.manifest_for_play(name).await {
            Ok(m) if m.is_file() => not_media(req, name),
            Ok(m) => {
                let mut r = Response::new(status::OK, req.headers.cseq);
                r.headers.content_type = Some(SDP_CONTENT_TYPE.into());
                r.body = Bytes::from(m.sdp.clone());
                r
            }
            Err(e) => err(e.rtsp_status(), req, e.for_player(name)),
        }
    }

    /// Tears down sessions that are not playing and saw no request for their timeout.
    async fn expire(&mut self) {
        let timeout = Duration::from_secs(self.opts.timeout_s);
        for id in self
            .sessions
            .stale(Instant::now(), timeout, Session::is_playing)
        {
            tracing::debug!(session = %id, "session timed out");
            self.remove(&id).await;
        }
    }

    async fn remove(&mut self, id: &str) {
        if let Some(mut s) = self.sessions.remove(id) {
            s.data.stop().await;
        }
    }

    async fn setup(&mut self, req: &Request) -> Response {
        let r = self.setup_inner(req).await;
        if let Some(p) = req.headers.pipelined_requests
            && !r.is_success()
        {
            let why = Refusal::new(r.status, r.headers.error.clone().unwrap_or_default());
            self.sessions.pipelined_setup(p, Err(&why));
        }
        r
    }

    async fn setup_inner(&mut self, req: &Request) -> Response {
        let (url, name) = match Self::object_of(req) {
            Ok((u, n)) => (u.clone(), n.clone()),
            Err(r) => return refuse(req, r),
        };
        let Some(Transport { flow_id }) = req.headers.transport else {
            return err(
                status::UNSUPPORTED_TRANSPORT,
                req,
                "SETUP needs Transport: RTP/AVP/QUIC;unicast;flow-id=N",
            );
        };
        let existing = match self.sessions.resolve(req) {
            Ok(s) => s,
            Err(r) => return refuse(req, r),
        };
        let (id, created) = match existing {
            Some(id) => (id, false),
            None => {
                if let Err(r) = self
                    .authorize(req, &url, &name)
                    .and_then(|()| self.sessions.has_room())
                {
                    return refuse(req, r);
                }
                let manifest = match self.source.manifest_for_play(&name).await {
                    Ok(m) if m.is_file() => return not_media(req, &name),
                    Ok(m) => m,
                    Err(e) => return err(e.rtsp_status(), req, e.for_player(&name)),
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
                let tracks = desc.tracks.len();
                let session = Session {
                    url: url.object_url().unwrap_or_else(|| url.clone()),
                    cache_case: None,
                    manifest,
                    desc,
                    progress: Arc::default(),
                    stamps: Vec::new(),
                    playing: None,
                };
                self.sessions
                    .insert(id.clone(), name.clone(), tracks, session, Instant::now());
                (id, true)
            }
        };
        if let Err(r) = self.sessions.bind(&id, &name, &url.resource, flow_id) {
            if created {
                self.sessions.remove(&id);
            }
            return refuse(req, r);
        }
        if let Some(p) = req.headers.pipelined_requests {
            self.sessions.pipelined_setup(p, Ok(&id));
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

    async fn play(&mut self, req: &Request, out: &ControlOut) -> Response {
        let id = match self.sessions.resolve(req) {
            Ok(Some(id)) => id,
            Ok(None) => return before_setup(req),
            Err(r) => return refuse(req, r),
        };
        if matches!(
            req.uri.as_ref().map(|u| &u.resource),
            Some(Resource::Track(..))
        ) {
            return err(status::METHOD_NOT_ALLOWED, req, "PLAY takes the object URL");
        }
        let rand: Vec<u32> = (0..24).map(|_| self.random_u32()).collect();
        let Some(entry) = self.sessions.get_mut(&id) else {
            return err(status::SESSION_NOT_FOUND, req, "no such session");
        };
        let (flows, s) = (&entry.flows, &mut entry.data);
        if flows.iter().all(Option::is_none) {
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
        let next = s.progress.next_segment.load(Ordering::Relaxed);
        let resume = req.headers.range.is_none();
        let first = match req.headers.range {
            Some(r) => s.manifest.segment_at(r.start).unwrap_or(0),
            // Everything was sent: nothing to resume (a Range plays again).
            None if next >= n && !s.stamps.is_empty() => {
                return err(
                    status::INVALID_RANGE,
                    req,
                    "the session is at the end; PLAY with a Range to play again",
                );
            }
            None => next.min(n.saturating_sub(1)),
        };
        let start_us = s.manifest.segments.get(first).map_or(0, |e| e.start_us);
        if s.stamps.is_empty() {
            s.stamps = (0..s.desc.tracks.len())
                .map(|i| (rand[i * 3], rand[i * 3 + 2]))
                .collect();
        }
        // Numbering goes on from the PLAY before: a resume sends segment `next` again with
        // the numbers it had, so what the client holds of it arrives as duplicates; a seek
        // goes on after the last number given.
        let seqs: Vec<u16> = (0..s.desc.tracks.len())
            .map(|i| s.progress.seq(i, resume).unwrap_or(rand[i * 3 + 1] as u16))
            .collect();
        let mut tracks = Vec::new();
        let mut rtp_info = Vec::new();
        for (i, t) in s.desc.tracks.iter().enumerate() {
            let Some(flow) = flows[i] else { continue };
            let (ssrc, ts_offset) = s.stamps[i];
            let ts = TrackSend {
                index: i as u32,
                flow,
                clock: t.clock_rate,
                ssrc,
                seq: seqs[i],
                ts_offset,
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
        s.progress = Arc::new(Progress::starting(first, &seqs, &s.progress));
        let (cancel, cancel_rx) = watch::channel(false);
        s.cache_case = self.source.will_play(&s.manifest, first);
        let path = PlayPath::new(&self.path, &tracks, start_us);
        let ctx = Sender {
            source: self.source.clone(),
            path,
            out: out.clone(),
            answered: out.this_response(),
            manifest: s.manifest.clone(),
            url: s.url.clone(),
            session: id.clone(),
            tracks,
            first,
            start_us,
            pacing: !req.headers.unpaced,
            send_ahead: self.opts.send_ahead,
            send_ahead_max: self.opts.send_ahead_max,
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
        let id = match self.sessions.resolve(req) {
            Ok(Some(id)) => id,
            Ok(None) => return before_setup(req),
            Err(r) => return refuse(req, r),
        };
        let Some(s) = self.sessions.get_mut(&id).map(|e| &mut e.data) else {
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
        let id = match self.sessions.resolve(req) {
            Ok(Some(id)) => id,
            Ok(None) => return before_setup(req),
            Err(r) => return refuse(req, r),
        };
        self.remove(&id).await;
        Response::new(status::OK, req.headers.cseq)
    }

    fn get_parameter(&self, req: &Request) -> Response {
        let id = match self.sessions.resolve(req) {
            Ok(id) => id,
            Err(r) => return refuse(req, r),
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
        let session = id
            .as_ref()
            .and_then(|id| self.sessions.get(id))
            .map(|e| &e.data);
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

    /// Whether the connection holds no session.
    pub fn is_empty(&self) -> bool {
        self.sessions.is_empty()
    }

    /// Stops every session (connection closing).
    pub async fn shutdown(&mut self) {
        for s in self.sessions.data_mut() {
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
        self.sessions.touch(&req, Instant::now());
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
