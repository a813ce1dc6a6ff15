//! The player's logic as a sans-IO state machine, in the quinn-proto style: the driver
//! (`play`) feeds it what happened — a connection made or failed, a control message, a frame,
//! a media stream that failed, the time — through `handle_*(now, …)`, asks
//! [`Player::poll_timeout`] when to wake it next, and carries out the [`Action`]s
//! [`Player::poll`] returns (connect to a node, leave one, hand a description to the stream
//! readers, record a frame). Reordering, playout, stall accounting, failover and verification
//! against the manifest live here and are tested without sockets.

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use segue_wire::control::{Message, Method, Response, SDP_CONTENT_TYPE};
use segue_wire::error::DecodeError;
use segue_wire::sdp::Description;
use segue_wire::segment::Manifest;
use segue_wire::{Limits, Resource, SegueUrl};

use crate::playout::PlayoutClock;
use crate::report::{Failover, Report, TrackReport};
use crate::session::StartCseqs;
use crate::stream::ReceivedFrame;
use crate::track::Track;

mod playout;

/// How long the player may go without a wake-up when nothing is due: the bound on how late a
/// timeout (stall, failover, give-up, all seconds long) is noticed.
pub const IDLE_WAKE: Duration = Duration::from_millis(50);

/// What the state machine needs of [`crate::PlayOptions`].
#[derive(Debug, Clone)]
pub struct PlayerConfig {
    pub startup_buffer: Duration,
    pub startup_rtts: f64,
    pub pace: bool,
    pub stall_timeout: Duration,
    pub failover_after: Duration,
    pub watch: Option<Duration>,
    pub buffer_samples: Option<Duration>,
    pub give_up_at: Option<Instant>,
}

/// Why a play ended early.
#[derive(Debug, thiserror::Error)]
pub enum PlayError {
    /// Stopped by [`PlayerConfig::give_up_at`] ([`Report::gave_up`]).
    #[error("stopped at the run's time bound")]
    GaveUp,
    /// The node failed the play and no fallback was left (or none could take over): why.
    #[error("{0}")]
    Failed(String),
    #[error("DESCRIBE returned no SDP")]
    NoSdp,
    #[error("SDP is not UTF-8")]
    SdpNotUtf8,
    #[error(transparent)]
    Sdp(DecodeError),
    #[error("{0} describes the object differently")]
    DescribedDifferently(SegueUrl),
    #[error("PLAY response lacks RTP-Info for every track")]
    NoRtpInfo,
    #[error("cannot create {}: {error}", path.display())]
    RecordOpen {
        path: std::path::PathBuf,
        error: std::io::Error,
    },
    #[error("recording: {0}")]
    Record(std::io::Error),
    #[error("manifest did not arrive")]
    ManifestLate,
    #[error("{0}")]
    Manifest(String),
    #[error("no node was connected")]
    NoNode,
    #[error("the player has nothing left to wait for")]
    Stuck,
}

/// What the driver is to do.
#[derive(Debug)]
pub enum Action {
    /// Connect to `url` and send the pipelined start from `resume_us`; then
    /// [`Player::handle_connected`] or [`Player::handle_connect_failed`]. A connection still
    /// being made for an earlier `Connect` is abandoned.
    Connect { url: SegueUrl, resume_us: u64 },
    /// The node played from is left: read no more from its control stream, and, unless
    /// `play_out` (it sent everything before it went), none of its media streams either.
    Leave { play_out: bool },
    /// The node described the object: its media streams are read with this.
    Described(Arc<Description>),
    /// A frame was played (track index, the frame as the segment stores it).
    Played { track: u32, data: Bytes },
}

/// Where a play is ([`Player::progress`]).
#[derive(Debug, Clone, Copy)]
pub struct Progress {
    /// Wall time since playback started.
    pub playing: Duration,
    /// Frames played, every track.
    pub frames: u64,
    /// Mean received bitrate since the request.
    pub kbps: f64,
    pub stalls: u32,
}

/// The node played from: what its start was and what it said.
#[derive(Debug)]
struct Node {
    url: SegueUrl,
    cseq: StartCseqs,
    session: Option<String>,
    /// It failed (or ended the session): nothing more is taken from its control stream.
    dead: bool,
    /// It has sent a frame.
    got_media: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    /// Connecting to the first node that answers (the URL, then each fallback in turn).
    Connecting,
    Playing,
    Done,
}

/// One play of one object, sans IO.
pub struct Player {
    cfg: PlayerConfig,
    phase: Phase,
    /// The URL being connected to, first or after a failover.
    connecting: Option<SegueUrl>,
    /// Fallbacks not tried yet, in order.
    fallbacks: VecDeque<SegueUrl>,
    node: Option<Node>,
    report: Report,
    /// The instant failovers and, once connected, TTFF and playback start count from: the
    /// start, then the request (after the handshake).
    t_req: Instant,
    /// When the play was asked for (click-to-first-frame counts from here).
    t_click: Instant,
    tracks: Vec<Track>,
    /// Frames that came before the PLAY response (the numbering).
    early: Vec<ReceivedFrame>,
    /// Where the play began (the first PLAY's actual start: the content hash needs 0).
    start_us: Option<u64>,
    /// Where a failover's node resumes.
    resume_at: u64,
    clock: Option<PlayoutClock>,
    /// Media time at playback start.
    m0: Option<u64>,
    last_sample: Option<Instant>,
    last_media: Instant,
    last_input: Instant,
    stream_failure: Option<String>,
    /// The next instant playout has something to do, from the last pass.
    next_wake: Option<Instant>,
    rtt: Duration,
    actions: VecDeque<Action>,
    result: Option<Result<(), PlayError>>,
}

impl Player {
    /// A play of `url` (fallbacks tried in order when it fails) beginning at `now`: the first
    /// action connects to `url`.
    pub fn new(cfg: PlayerConfig, url: SegueUrl, fallbacks: Vec<SegueUrl>, now: Instant) -> Self {
        let report = Report {
            url: url.to_string(),
            paced: cfg.pace,
            ..Default::default()
        };
        let mut actions = VecDeque::new();
        actions.push_back(Action::Connect {
            url: url.clone(),
            resume_us: 0,
        });
        Self {
            cfg,
            phase: Phase::Connecting,
            connecting: Some(url),
            fallbacks: fallbacks.into(),
            node: None,
            report,
            t_req: now,
            t_click: now,
            tracks: Vec::new(),
            early: Vec::new(),
            start_us: None,
            resume_at: 0,
            clock: None,
            m0: None,
            last_sample: None,
            last_media: now,
            last_input: now,
            stream_failure: None,
            next_wake: None,
            rtt: Duration::ZERO,
            actions,
            result: None,
        }
    }

    // ---- inputs ----

    /// The connection asked for by the last [`Action::Connect`] is up and its pipelined start
    /// was sent with these CSeqs at `sent` (before `now` when it went as 0-RTT data on a
    /// resumed connection: `resumed`).
    pub fn handle_connected(
        &mut self,
        now: Instant,
        cseq: StartCseqs,
        sent: Instant,
        resumed: bool,
    ) {
        self.input(now);
        let Some(url) = self.connecting.take() else {
            return;
        };
        if self.phase == Phase::Connecting {
            // Between the connect start and now, whatever the caller's clocks say.
            let sent = sent.min(now).max(self.t_req);
            // Connect start to the request sent: the handshake (about nothing with 0-RTT).
            self.report.connect_ms = Some(ms(sent.saturating_duration_since(self.t_req)));
            self.report.resumed = Some(resumed);
            // TTFF and playback start count from the request, not the handshake.
            self.t_req = sent;
            self.phase = Phase::Playing;
        }
        self.node = Some(Node {
            url,
            cseq,
            session: None,
            dead: false,
            got_media: false,
        });
        self.last_media = now;
        self.advance(now);
    }

    /// The connection asked for by the last [`Action::Connect`] failed: the next fallback
    /// is tried, if there is one.
    pub fn handle_connect_failed(&mut self, now: Instant, why: String) {
        self.input(now);
        let Some(url) = self.connecting.take() else {
            return;
        };
        if self.phase == Phase::Connecting && self.report.failovers.is_empty() {
            // The first node: without fallbacks, its error as it is.
            if self.fallbacks.is_empty() {
                return self.fail(PlayError::Failed(why));
            }
        }
        self.join_next(now, format!("{url}: {why}"));
    }

    /// The node's control stream failed (or ended).
    pub fn handle_control_lost(&mut self, now: Instant, why: String) {
        self.input(now);
        self.leave(now, why, false);
    }

    /// A message from the node's control stream.
    pub fn handle_control(&mut self, now: Instant, m: Message) {
        self.input(now);
        if self.phase != Phase::Playing || self.node.as_ref().is_none_or(|n| n.dead) {
            return;
        }
        let r = match m {
            Message::Response(r) => self.response(now, r),
            Message::Request(req) => match req.method {
                Method::PlayNotify
                    if req.headers.notify_reason.as_deref() == Some("end-of-stream") =>
                {
                    for info in &req.headers.rtp_info {
                        let Resource::Track(_, i) = info.url.resource else {
                            continue;
                        };
                        if let Some(t) = self.tracks.get_mut(i as usize) {
                            t.last_seq = Some(t.extend(info.seq));
                        }
                    }
                    Ok(true)
                }
                Method::Teardown => {
                    let why = req
                        .headers
                        .error
                        .unwrap_or_else(|| "no reason given".into());
                    self.leave(now, format!("server ended the session: {why}"), false);
                    Ok(false)
                }
                _ => Ok(true),
            },
        };
        match r {
            Ok(true) => self.advance(now),
            Ok(false) => {}
            Err(e) => self.fail(e),
        }
    }

    /// A frame from one of the node's media streams.
    pub fn handle_frame(&mut self, now: Instant, f: ReceivedFrame) {
        self.input(now);
        if self.phase != Phase::Playing {
            return;
        }
        self.last_media = now;
        if let Some(n) = self.node.as_mut() {
            n.got_media = true;
        }
        self.report.bytes += f.wire_bytes;
        if self.report.ttff_ms.is_none() {
            self.report.ttff_ms = Some(ms(now - self.t_req));
            self.report.click_ms = Some(ms(now - self.t_click));
        }
        let left = match self.tracks.get_mut(f.track as usize) {
            Some(t) => {
                t.last_arrival = Some(now);
                t.receive(f)
            }
            None => Some(f),
        };
        self.early.extend(left);
        self.advance(now);
    }

    /// One of the node's media streams failed: the reason is given if the play stalls.
    pub fn handle_stream_failed(&mut self, now: Instant, why: String) {
        self.input(now);
        self.stream_failure = Some(why);
        self.advance(now);
    }

    /// The connection's smoothed RTT (the start-up buffer is a number of round trips).
    pub fn handle_rtt(&mut self, rtt: Duration) {
        self.rtt = rtt;
    }

    /// The instant [`Player::poll_timeout`] gave has come.
    pub fn handle_timeout(&mut self, now: Instant) {
        self.input(now);
        self.advance(now);
    }

    // ---- outputs ----

    /// The next action for the driver.
    pub fn poll(&mut self) -> Option<Action> {
        self.actions.pop_front()
    }

    /// When to call [`Player::handle_timeout`] (None: nothing is due until an input comes).
    pub fn poll_timeout(&self) -> Option<Instant> {
        if self.phase != Phase::Playing {
            return None;
        }
        Some(self.next_wake.unwrap_or(self.last_input + IDLE_WAKE))
    }

    /// Whether the play is over (see [`Player::take_result`]).
    pub fn is_done(&self) -> bool {
        self.phase == Phase::Done
    }

    /// How the play ended, once it did: played to the end (or the viewer quit), or why not.
    pub fn take_result(&mut self) -> Option<Result<(), PlayError>> {
        self.result.take()
    }

    /// What was measured so far.
    pub fn report(&self) -> &Report {
        &self.report
    }

    pub(crate) fn report_mut(&mut self) -> &mut Report {
        &mut self.report
    }

    pub fn into_report(self) -> Report {
        self.report
    }

    /// Where the play is at `now`, once playback has started.
    pub fn progress(&self, now: Instant) -> Option<Progress> {
        let clock = self.clock.as_ref()?;
        let since_request = now.saturating_duration_since(self.t_req).as_secs_f64();
        Some(Progress {
            playing: now.saturating_duration_since(clock.started()),
            frames: self.tracks.iter().map(|t| t.frames).sum(),
            kbps: self.report.bytes as f64 * 8.0 / since_request.max(0.001) / 1000.0,
            stalls: self.report.stalls,
        })
    }

    /// The session to tear down at the end: the node's, unless it failed.
    pub fn session(&self) -> Option<&str> {
        self.node
            .as_ref()
            .filter(|n| !n.dead)
            .and_then(|n| n.session.as_deref())
    }

    /// The node played from at the end.
    pub fn node_url(&self) -> Option<&SegueUrl> {
        self.node.as_ref().map(|n| &n.url)
    }

    /// Checks what was played against the object's manifest: frame counts and content hashes
    /// per track, into the report.
    pub fn verify(&mut self, manifest: &Manifest) {
        let first = manifest.segment_at(self.start_us.unwrap_or(0)).unwrap_or(0);
        let r = &mut self.report;
        r.tracks.clear();
        r.frames_received = 0;
        let mut all_ok = true;
        for (i, t) in std::mem::take(&mut self.tracks).into_iter().enumerate() {
            let expected = manifest.tracks.get(i).map_or(0, |m| m.frames);
            let digest = t.hash.finish();
            // The content hash covers the whole object: it can only match a play from the start.
            let hash_ok = first == 0
                && manifest
                    .tracks
                    .get(i)
                    .is_some_and(|m| m.content_hash == digest.as_ref());
            // A viewer who quit saw only part of the object: nothing to compare, nothing lost.
            let lost = if r.watched_until_s.is_some() {
                0
            } else {
                expected.saturating_sub(t.frames)
            };
            all_ok &= hash_ok && t.frames == expected;
            r.frames_received += t.frames;
            r.frames_expected += expected;
            r.late_frames += t.late;
            r.lost_frames += lost;
            r.tracks.push(TrackReport {
                track: i as u32,
                codec: t.codec.name().into(),
                frames_received: t.frames,
                frames_expected: expected,
                late_frames: t.late,
                lost_frames: lost,
                hash_ok,
            });
        }
        r.hash_ok = all_ok;
    }

    // ---- the machine ----

    fn input(&mut self, now: Instant) {
        self.last_input = now;
        // A wake-up computed by the last pass is for that pass's state.
        self.next_wake = None;
    }

    fn fail(&mut self, e: PlayError) {
        if self.phase == Phase::Done {
            return;
        }
        self.phase = Phase::Done;
        self.result = Some(Err(e));
    }

    fn end(&mut self, now: Instant) {
        if let Some(c) = &self.clock {
            self.report.stall_ms = ms(c.stall_time(now));
        }
        self.phase = Phase::Done;
        self.result = Some(Ok(()));
    }

    /// A response to the pipelined start. Ok(false): the node was left.
    fn response(&mut self, now: Instant, r: Response) -> Result<bool, PlayError> {
        let Some((cseq, url)) = self.node.as_ref().map(|n| (n.cseq, n.url.clone())) else {
            return Ok(true);
        };
        if !r.is_success() {
            let what = match r.headers.cseq {
                c if c == cseq.describe => "DESCRIBE",
                c if c == cseq.setup => "SETUP",
                c if c == cseq.play => "PLAY",
                _ => "request",
            };
            let why = format!(
                "{what} failed: {} {}",
                r.status,
                r.headers.error.unwrap_or_default()
            );
            self.leave(now, why, false);
            return Ok(false);
        }
        if r.headers.cseq == cseq.describe {
            self.described(&r, url)?;
        } else if r.headers.cseq == cseq.setup {
            if let Some(n) = self.node.as_mut() {
                n.session = r.headers.session.map(|s| s.id);
            }
        } else if r.headers.cseq == cseq.play {
            let play_start = r.headers.range.map_or(0, |r| r.start);
            self.start_us.get_or_insert(play_start);
            for info in &r.headers.rtp_info {
                let Resource::Track(_, i) = info.url.resource else {
                    continue;
                };
                let Some(t) = self.tracks.get_mut(i as usize) else {
                    continue;
                };
                let base = (u128::from(play_start) * u128::from(t.clock) / 1_000_000) as u32;
                t.offset = Some(info.rtptime.wrapping_sub(base));
                t.next_seq = Some(i64::from(info.seq));
            }
            if self.tracks.iter().any(|t| t.next_seq.is_none()) {
                return Err(PlayError::NoRtpInfo);
            }
            for f in std::mem::take(&mut self.early) {
                if let Some(t) = self.tracks.get_mut(f.track as usize) {
                    t.receive(f);
                }
            }
        }
        Ok(true)
    }

    fn described(&mut self, r: &Response, url: SegueUrl) -> Result<(), PlayError> {
        if r.headers.content_type.as_deref() != Some(SDP_CONTENT_TYPE) {
            return Err(PlayError::NoSdp);
        }
        let text = std::str::from_utf8(&r.body).map_err(|_| PlayError::SdpNotUtf8)?;
        let desc =
            Description::from_sdp(text, Limits::default().max_tracks).map_err(PlayError::Sdp)?;
        if self.tracks.is_empty() {
            self.tracks = desc
                .tracks
                .iter()
                .map(|t| Track::new(t.clock_rate, t.codec.clone()))
                .collect();
        } else if desc.tracks.len() != self.tracks.len()
            || desc
                .tracks
                .iter()
                .zip(&self.tracks)
                .any(|(d, t)| d.clock_rate != t.clock)
        {
            return Err(PlayError::DescribedDifferently(url));
        }
        self.actions.push_back(Action::Described(Arc::new(desc)));
        Ok(())
    }

    /// Records that the play went on to `to` at `now`, and why.
    fn note_failover(&mut self, now: Instant, to: &SegueUrl, why: String) {
        tracing::warn!(%to, "failing over: {why}");
        self.report.failovers.push(Failover {
            at_s: (now - self.t_req).as_secs_f64(),
            to: to.to_string(),
            why,
        });
    }

    /// On to the next fallback, from where the play is; the play fails with `why` when none
    /// is left.
    fn join_next(&mut self, now: Instant, why: String) {
        let Some(next) = self.fallbacks.pop_front() else {
            return self.fail(PlayError::Failed(why));
        };
        tracing::debug!(resume_us = self.resume_at, "resuming");
        self.note_failover(now, &next, why);
        self.connecting = Some(next.clone());
        self.actions.push_back(Action::Connect {
            url: next,
            resume_us: self.resume_at,
        });
    }

    /// The node is failing the play (`stalled`: by not sending media): on to the next one,
    /// unless everything was sent already.
    fn leave(&mut self, now: Instant, why: String, stalled: bool) {
        if self.phase != Phase::Playing {
            return;
        }
        let Some(node) = self.node.as_mut() else {
            return;
        };
        node.dead = true;
        let url = node.url.clone();
        let done =
            !stalled && !self.tracks.is_empty() && self.tracks.iter().all(|t| t.last_seq.is_some());
        if done {
            // Everything was sent before the node went: play out what is here.
            tracing::debug!("{url} gone after the end of the stream: {why}");
            self.actions.push_back(Action::Leave { play_out: true });
            return;
        }
        if self.fallbacks.is_empty() {
            return self.fail(PlayError::Failed(why));
        }
        // What the old node sent in order and was not played yet is kept and played first;
        // the new node resumes where that ends (at the start of the segment holding that
        // point, so nothing is missed; what it sends again is skipped), and paces from there:
        // the buffer the player had is kept.
        for t in self.tracks.iter_mut() {
            t.carry_over();
        }
        self.resume_at = self
            .tracks
            .iter()
            .map(|t| t.played_through_us.or(self.start_us).unwrap_or(0))
            .min()
            .unwrap_or(0);
        // Nothing more is taken from the node left (its numbering is gone).
        self.actions.push_back(Action::Leave { play_out: false });
        self.early.clear();
        self.stream_failure = None;
        self.last_media = now;
        self.join_next(now, format!("{url}: {why}"));
    }
}

/// Moves `wake` earlier to `at`, if there is one.
fn soonest(wake: &mut Option<Instant>, at: Option<Instant>) {
    if let Some(at) = at {
        *wake = Some(wake.map_or(at, |w| w.min(at)));
    }
}

/// Media buffered by the least-buffered track (the one that stalls first), microseconds.
fn least_buffered_us(tracks: &[Track]) -> u64 {
    tracks.iter().map(Track::buffered_us).min().unwrap_or(0)
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

#[cfg(test)]
mod tests;
