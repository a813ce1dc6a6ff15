//! Playing one object: the async driver of the player's state machine ([`crate::player`]).
//! It makes the connections the machine asks for, reads their control and media streams
//! (media through [`crate::stream::MediaStream`]), fetches the manifest, records, and feeds
//! everything to the machine with the time.

use std::io::IsTerminal;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use segue_wire::control::{Method, Request};
use segue_wire::sdp::Description;
use segue_wire::segment::{Manifest, ResponseFrame, SegmentRequest, Status, decode_response_frame};
use segue_wire::{Limits, Resource, SegueUrl};
use tokio::sync::{mpsc, oneshot, watch};
use tokio::task::JoinHandle;
use tokio::time::Instant;

use crate::player::{Action, PlayError, Player, PlayerConfig};
use crate::record::Recorder;
use crate::report::Report;
use crate::session::{ConnectError, ConnectOptions, ControlClient, StartCseqs, connect_early};
use crate::stream::{MediaStream, ReceivedFrame};
use segue_net::StreamError;

/// How to play.
#[derive(Debug, Clone)]
pub struct PlayOptions {
    pub url: SegueUrl,
    pub ca: PathBuf,
    /// Media buffered before playback starts, at least.
    pub startup_buffer: Duration,
    /// ... and at least this many round trips of the connection's (smoothed) RTT of media:
    /// a lost packet holds its stream for about 1.1 RTT before its retransmission arrives,
    /// a lost retransmission for as long again (plus a probe timeout when it was a tail),
    /// while start-up on a long path is still ramping up; 500 ms alone stalled plays at
    /// 150 ms RTT with 3 % loss (docs/TRANSPORT.md). Default 4.
    pub startup_rtts: f64,
    /// Play in real time (false: consume as fast as possible, server unpaced).
    pub pace: bool,
    pub connect_timeout: Duration,
    /// Give up when no media arrives for this long, or skip a gap that lasts this long.
    pub stall_timeout: Duration,
    /// Write received video as Annex-B H.264 here (audio as ADTS next to it, `.aac`).
    pub record: Option<PathBuf>,
    /// One-line live display on stderr (only when it is a terminal).
    pub progress: bool,
    /// Stop after this much media has played (a viewer who quits); None plays to the end.
    pub watch: Option<Duration>,
    /// Record the buffer level this often into `Report::buffer`.
    pub buffer_samples: Option<Duration>,
    /// Give up at this instant with what was measured so far (a lab run's time bound).
    pub give_up_at: Option<tokio::time::Instant>,
    /// Other nodes serving the same object (the object URL on each), tried in order when the
    /// current one fails (or cannot be reached): its connection or control stream lost, the
    /// session ended by it, no media for `failover_after` during playback, or a stall past
    /// `stall_timeout`. Playback goes on from the buffer meanwhile and resumes there from
    /// where the buffer ends.
    pub fallbacks: Vec<SegueUrl>,
    /// With a fallback left: a node that sends no media for this long during playback (the
    /// stream not complete) is taken as failing. A paced node sends frames continuously, some
    /// seconds ahead, so this is well within the player's buffer.
    pub failover_after: Duration,
    /// The source address and transport settings of its connections.
    pub connect: ConnectOptions,
}

impl PlayOptions {
    pub fn new(url: SegueUrl, ca: PathBuf) -> Self {
        Self {
            url,
            ca,
            startup_buffer: Duration::from_millis(500),
            startup_rtts: 4.0,
            pace: true,
            connect_timeout: Duration::from_secs(10),
            stall_timeout: Duration::from_secs(10),
            record: None,
            progress: false,
            watch: None,
            buffer_samples: None,
            give_up_at: None,
            fallbacks: Vec::new(),
            failover_after: Duration::from_secs(1),
            connect: ConnectOptions::default(),
        }
    }

    /// What the player's state machine takes of these.
    pub fn player_config(&self) -> PlayerConfig {
        PlayerConfig {
            startup_buffer: self.startup_buffer,
            startup_rtts: self.startup_rtts,
            pace: self.pace,
            stall_timeout: self.stall_timeout,
            failover_after: self.failover_after,
            watch: self.watch,
            buffer_samples: self.buffer_samples,
            give_up_at: self.give_up_at.map(Instant::into_std),
        }
    }
}

/// Why a node's connection, its manifest or one of its media streams failed (what the
/// state machine is told, as its reason).
#[derive(Debug, thiserror::Error)]
pub enum LinkError {
    #[error("play the object URL, not a track URL")]
    TrackUrl,
    #[error("{0} names no object")]
    NoObject(SegueUrl),
    #[error(transparent)]
    Connect(#[from] ConnectError),
    #[error(transparent)]
    Stream(#[from] StreamError),
    #[error(transparent)]
    Media(#[from] crate::stream::StreamError),
    #[error("media stream: {0}")]
    Read(#[from] quinn::ReadError),
    #[error("reading the manifest: {0}")]
    ReadManifest(#[from] quinn::ReadToEndError),
    #[error("manifest: {0:?} {1}")]
    ManifestRefused(Status, String),
    #[error("{0}")]
    Other(&'static str),
}

enum Event {
    Frame(ReceivedFrame),
    StreamFailed(String),
}

/// Reads one RoQ media stream into frames, once the session's description is known.
async fn read_stream(
    mut recv: quinn::RecvStream,
    tx: mpsc::Sender<Event>,
    mut desc: watch::Receiver<Option<Arc<Description>>>,
) {
    if let Err(e) = read_stream_inner(&mut recv, &tx, &mut desc).await {
        let _ = tx.send(Event::StreamFailed(format!("{e:#}"))).await;
    }
}

async fn read_stream_inner(
    recv: &mut quinn::RecvStream,
    tx: &mpsc::Sender<Event>,
    desc_rx: &mut watch::Receiver<Option<Arc<Description>>>,
) -> Result<(), LinkError> {
    let desc = desc_rx
        .wait_for(Option::is_some)
        .await
        .map_err(|_| LinkError::Other("session ended"))?
        .clone()
        .ok_or(LinkError::Other("no description"))?;
    let mut stream = MediaStream::new(desc, &Limits::default());
    let mut frames = Vec::new();
    loop {
        // Quinn's own buffers, not a copy into ours.
        let chunk = recv.read_chunk(64 * 1024, true).await?;
        let Some(chunk) = chunk else {
            stream.finish()?;
            return Ok(());
        };
        stream.push(&chunk.bytes, &mut frames)?;
        for f in frames.drain(..) {
            if tx.send(Event::Frame(f)).await.is_err() {
                return Ok(());
            }
        }
    }
}

/// Fetches the manifest on its own segment-protocol stream.
async fn fetch_manifest(conn: quinn::Connection, url: SegueUrl) -> Result<Manifest, LinkError> {
    let object = url
        .resource
        .object()
        .cloned()
        .ok_or(LinkError::Other("URL names no object"))?;
    let (mut send, mut recv) = conn.open_bi().await.map_err(StreamError::from)?;
    // A signed URL's grant goes with the request (TOKEN), as with the control requests.
    let token = url
        .query
        .as_deref()
        .and_then(segue_wire::token::Grant::from_query)
        .and_then(Result::ok);
    let req = SegmentRequest::Manifest {
        object,
        params: segue_wire::segment::Params {
            token,
            ..Default::default()
        },
    };
    send.write_all(&req.encode())
        .await
        .map_err(StreamError::from)?;
    send.finish().map_err(StreamError::from)?;
    let limits = Limits::default();
    let data = recv.read_to_end(limits.max_manifest + 4096).await?;
    let mut rest = &data[..];
    loop {
        let (frame, used) = decode_response_frame(rest, &limits)
            .map_err(StreamError::from)?
            .ok_or(LinkError::Other("manifest response cut short"))?;
        rest = &rest[used..];
        match frame {
            ResponseFrame::Response(h) if h.status == Status::Ok => {}
            ResponseFrame::Response(h) => {
                return Err(LinkError::ManifestRefused(h.status, h.reason));
            }
            ResponseFrame::Manifest(m) => return Ok(m),
            ResponseFrame::Segment(_) | ResponseFrame::ChunkHashes(_) => {
                return Err(LinkError::Other("unexpected segment in manifest response"));
            }
        }
    }
}

/// Plays `opts.url` and reports. Never panics on what the network sends; failures end up in
/// `Report::error`.
pub async fn play(opts: &PlayOptions) -> Report {
    let started = Instant::now();
    let mut player = Player::new(
        opts.player_config(),
        opts.url.clone(),
        opts.fallbacks.clone(),
        started.into_std(),
    );
    let r = drive(opts, &mut player).await;
    let mut report = player.into_report();
    report.gave_up = matches!(r, Err(PlayError::GaveUp));
    report.finish(started.into_std(), r);
    report
}

/// One node's connection playing the object: its control stream, the media streams it
/// opens (as events), the description and manifest it gives.
struct Link {
    _ep: quinn::Endpoint,
    conn: quinn::Connection,
    control: ControlClient,
    cseq: StartCseqs,
    /// When the pipelined start was sent.
    sent: std::time::Instant,
    /// The connection resumed a TLS session and its first requests went as 0-RTT data.
    resumed: bool,
    events: mpsc::Receiver<Event>,
    desc_tx: watch::Sender<Option<Arc<Description>>>,
    manifest: oneshot::Receiver<Result<Manifest, LinkError>>,
}

/// Asks `conn`'s node for the manifest of `url`'s object on a stream of its own.
fn spawn_manifest(
    conn: &quinn::Connection,
    url: &SegueUrl,
) -> oneshot::Receiver<Result<Manifest, LinkError>> {
    let (tx, rx) = oneshot::channel();
    let (conn, url) = (conn.clone(), url.clone());
    tokio::spawn(async move {
        let _ = tx.send(fetch_manifest(conn, url).await);
    });
    rx
}

/// Connects to `url` and sends the pipelined start (DESCRIBE, SETUP, PLAY from `start_us`);
/// media streams and the manifest are read as they come.
async fn open_link(url: &SegueUrl, opts: &PlayOptions, start_us: u64) -> Result<Link, LinkError> {
    match url.resource {
        Resource::Object(_) => {}
        Resource::Track(..) => return Err(LinkError::TrackUrl),
        Resource::Server => return Err(LinkError::NoObject(url.clone())),
    }
    let early = connect_early(url, &opts.ca, opts.connect_timeout, &opts.connect, true).await?;
    let (mut ep, mut conn, mut control) = (early.endpoint, early.conn, early.control);
    // On a resumed connection these go as 0-RTT data, before the handshake completes.
    let mut cseq = control.start(url, start_us, !opts.pace).await?;
    let mut sent = std::time::Instant::now();
    let mut manifest = spawn_manifest(&conn, url);
    let mut resumed = false;
    if let Some(accepted) = early.zero_rtt {
        let addr = conn.remote_address();
        let timeout = opts.connect_timeout;
        resumed = tokio::time::timeout(timeout, accepted)
            .await
            .map_err(|_| ConnectError::Timeout { addr, timeout })?;
        if let Some(error) = conn.close_reason() {
            return Err(ConnectError::Handshake { addr, error }.into());
        }
        if !resumed {
            // The node refused the 0-RTT data (e.g. a ticket of another node of that name):
            // the streams it was sent on are gone. Start again on a new connection with a
            // completed handshake (rare, and then no stream of the refused flight lingers).
            conn.close(0u32.into(), b"0-RTT refused");
            let again =
                connect_early(url, &opts.ca, opts.connect_timeout, &opts.connect, false).await?;
            (ep, conn, control) = (again.endpoint, again.conn, again.control);
            cseq = control.start(url, start_us, !opts.pace).await?;
            sent = std::time::Instant::now();
            manifest = spawn_manifest(&conn, url);
        }
    }
    let (desc_tx, desc_rx) = watch::channel::<Option<Arc<Description>>>(None);
    let (ev_tx, events) = mpsc::channel::<Event>(1024);
    {
        let conn = conn.clone();
        tokio::spawn(async move {
            while let Ok(recv) = conn.accept_uni().await {
                tokio::spawn(read_stream(recv, ev_tx.clone(), desc_rx.clone()));
            }
        });
    }
    Ok(Link {
        _ep: ep,
        conn,
        control,
        cseq,
        sent,
        resumed,
        events,
        desc_tx,
        manifest,
    })
}

/// Runs the state machine until the play ends: carries out its actions, feeds it what the
/// connections bring and wakes it when it asks; then verifies and tears down.
async fn drive(opts: &PlayOptions, player: &mut Player) -> Result<(), PlayError> {
    // The node played from, and whether its control and media streams are still read.
    let mut link: Option<Link> = None;
    let (mut control_open, mut events_open) = (false, false);
    // A connection being made (the first, or a failover's: the play goes on from the buffer
    // meanwhile).
    let mut joining: Option<JoinHandle<Result<Link, LinkError>>> = None;
    let mut recorder: Option<Recorder> = None;
    let tty = opts.progress && std::io::stderr().is_terminal();
    let mut last_progress = Instant::now();
    let result = loop {
        while let Some(action) = player.poll() {
            match action {
                Action::Connect { url, resume_us } => {
                    if let Some(h) = joining.take() {
                        h.abort();
                    }
                    let o = opts.clone();
                    joining = Some(tokio::spawn(
                        async move { open_link(&url, &o, resume_us).await },
                    ));
                }
                Action::Leave { play_out } => {
                    control_open = false;
                    events_open &= play_out;
                }
                Action::Described(desc) => {
                    player.report_mut().left_out = desc.left_out.clone();
                    if recorder.is_none()
                        && let Some(path) = &opts.record
                    {
                        let r =
                            Recorder::open(path, &desc).map_err(|error| PlayError::RecordOpen {
                                path: path.clone(),
                                error,
                            })?;
                        recorder = Some(r);
                    }
                    if let Some(l) = &link {
                        let _ = l.desc_tx.send(Some(desc));
                    }
                }
                Action::Played { track, data } => {
                    if let Some(r) = recorder.as_mut() {
                        r.write(track, &data).map_err(PlayError::Record)?;
                    }
                }
            }
        }
        if let Some(r) = player.take_result() {
            break r;
        }
        if tty && last_progress.elapsed() > Duration::from_millis(250) {
            last_progress = Instant::now();
            show_progress(player);
        }
        if let Some(l) = &link {
            player.handle_rtt(l.conn.rtt());
        }
        let wake = player.poll_timeout().map(Instant::from_std);
        let (control, events) = match link.as_mut() {
            Some(l) => (Some(&mut l.control), Some(&mut l.events)),
            None => (None, None),
        };
        tokio::select! {
            // `ControlClient::recv` is cancel-safe: quinn consumes data only on completion.
            m = async {
                match control {
                    Some(c) => c.recv().await,
                    None => std::future::pending().await,
                }
            }, if control_open => {
                let now = Instant::now().into_std();
                match m {
                    Ok(m) => player.handle_control(now, m),
                    Err(e) => player.handle_control_lost(now, format!("{e:#}")),
                }
            }
            ev = async {
                match events {
                    Some(e) => e.recv().await,
                    None => std::future::pending().await,
                }
            }, if events_open => {
                let now = Instant::now().into_std();
                match ev {
                    Some(Event::Frame(f)) => player.handle_frame(now, f),
                    Some(Event::StreamFailed(e)) => player.handle_stream_failed(now, e),
                    None => events_open = false,
                }
            }
            j = async {
                match joining.as_mut() {
                    Some(h) => h.await,
                    None => std::future::pending().await,
                }
            }, if joining.is_some() => {
                joining = None;
                let now = Instant::now().into_std();
                match j {
                    Ok(Ok(l)) => {
                        player.handle_rtt(l.conn.rtt());
                        let cseq = l.cseq;
                        let (resumed, sent) = (l.resumed, l.sent);
                        link = Some(l);
                        (control_open, events_open) = (true, true);
                        player.handle_connected(now, cseq, sent, resumed);
                    }
                    Ok(Err(e)) => player.handle_connect_failed(now, format!("{e:#}")),
                    Err(e) => player.handle_connect_failed(now, e.to_string()),
                }
            }
            _ = async {
                match wake {
                    Some(w) => tokio::time::sleep_until(w).await,
                    None => std::future::pending().await,
                }
            }, if wake.is_some() => player.handle_timeout(Instant::now().into_std()),
            else => break Err(PlayError::Stuck),
        }
    };
    if let Some(h) = joining.take() {
        h.abort();
    }
    if tty {
        eprintln!();
    }
    result?;
    let Some(link) = link else {
        return Err(PlayError::NoNode);
    };

    // Verify against the manifest.
    let manifest = tokio::time::timeout(opts.connect_timeout, link.manifest)
        .await
        .map_err(|_| PlayError::ManifestLate)?
        .map_err(|_| PlayError::Manifest("manifest task ended".into()))?
        .map_err(|e| PlayError::Manifest(e.to_string()))?;
    player.verify(&manifest);
    player.report_mut().rtt_ms = Some(link.conn.rtt().as_secs_f64() * 1000.0);
    // Orderly end.
    let mut control = link.control;
    if let (Some(id), Some(url)) = (player.session(), player.node_url()) {
        let mut td = Request::new(Method::Teardown, Some(url.clone()), control.next_cseq());
        td.headers.session = Some(segue_wire::control::SessionHeader {
            id: id.to_string(),
            timeout: None,
        });
        let _ = tokio::time::timeout(Duration::from_secs(2), control.request(&td)).await;
    }
    link.conn.close(0u32.into(), b"done");
    Ok(())
}

/// The one-line live display.
fn show_progress(player: &Player) {
    let Some(p) = player.progress(Instant::now().into_std()) else {
        return;
    };
    eprint!(
        "\r  {:>6.1} s  frames {:>6}  {:>6.0} kbit/s  stalls {}   ",
        p.playing.as_secs_f64(),
        p.frames,
        p.kbps,
        p.stalls
    );
}
