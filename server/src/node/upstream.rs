//! A node's link to another node (an edge to its origin or a helper, the origin to an edge
//! it pushes to): one pooled QUIC connection, reconnected with backoff, one
//! bidirectional stream per segment-protocol exchange, and estimates of the link's RTT and
//! throughput.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use segue_wire::segment::{
    Manifest, Params, ResponseFrame, ResponseHeader, SegmentReceiver, SegmentRequest, Status,
    decode_response_frame,
};
use segue_wire::{Limits, ObjectName, SegueUrl};
use tokio::sync::Mutex;
use tokio::time::Instant;

use crate::node::source::{Filling, SourceError};
use segue_net::Dialer;

/// How long the edge waits for the origin to answer (connect, or bytes on an exchange).
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(5);
/// Longest wait between reconnection attempts.
const MAX_BACKOFF: Duration = Duration::from_secs(5);
const FIRST_BACKOFF: Duration = Duration::from_millis(100);
/// An exchange that receives nothing waits at most this many timeouts while the connection
/// carries other exchanges.
const MAX_WAIT_TURNS: u32 = 12;
/// A pooled connection that received nothing for this long (and at least
/// [`SILENT_RTTS`] round trips) while keep-alives went out is dead: a peer killed or
/// restarted sends no close, and a restarted one's stateless resets do not match.
const SILENT_FOR: Duration = Duration::from_millis(1000);
const SILENT_RTTS: u32 = 4;
/// How often the watchdog looks.
const WATCH_EVERY: Duration = Duration::from_millis(100);

#[derive(Debug, Default)]
struct Conn {
    conn: Option<quinn::Connection>,
    /// Stream 0, the control stream: held open so segment exchanges use the later streams.
    control: Option<(quinn::SendStream, quinn::RecvStream)>,
    failures: u32,
    retry_at: Option<Instant>,
}

/// Measured properties of the origin link.
#[derive(Debug, Default)]
pub struct LinkStats {
    /// Smoothed round-trip time, microseconds.
    pub rtt_us: AtomicU64,
    /// Mean deviation of the round-trip time, microseconds.
    pub rtt_var_us: AtomicU64,
    /// Smoothed throughput of one segment exchange, bytes per second.
    pub stream_rate: AtomicU64,
    /// Smoothed link throughput, bytes per second: bytes the connection received over
    /// time while exchanges were in flight (so however the origin orders them).
    pub link_rate: AtomicU64,
    /// Start of the current measurement: when, and the connection's received bytes then.
    busy_mark: std::sync::Mutex<Option<(Instant, u64)>>,
    /// Segment exchanges in flight now.
    pub in_flight: AtomicU64,
    /// When the last segment exchange completed (ms since the process's first fetch).
    pub last_fetch_ms: AtomicU64,
    /// Bytes received from the origin (segment payloads and manifests).
    pub bytes: AtomicU64,
    /// Segment exchanges completed.
    pub fetches: AtomicU64,
    /// Segment bytes asked for and not received yet (the load on this link).
    pub queued: AtomicU64,
}

impl LinkStats {
    /// Estimated link throughput, bytes/s (0: unknown): the smaller of two estimates, each
    /// wrong in its own direction. Bytes over busy time overestimates when the origin sends
    /// in bursts (a burst straddles two spans); one exchange's rate times `parallel`
    /// overestimates when exchanges ran alone (a lone probe gets the whole link). The smaller
    /// one errs towards longer prefixes and later starts, never towards stalls.
    pub fn throughput(&self, parallel: usize) -> u64 {
        let per_stream = self
            .stream_rate
            .load(Ordering::Relaxed)
            .saturating_mul(parallel.max(1) as u64);
        match self.link_rate.load(Ordering::Relaxed) {
            0 => per_stream,
            r if per_stream == 0 => r,
            r => r.min(per_stream),
        }
    }

    /// How long since a segment exchange last completed (None: never).
    pub fn idle_for(&self) -> Option<Duration> {
        let last = self.last_fetch_ms.load(Ordering::Relaxed);
        (last > 0).then(|| Duration::from_millis(epoch_ms().saturating_sub(last)))
    }
}

/// `clock::monotonic_ms`, at least 1 (0 stands for "never" in `last_fetch_ms`).
fn epoch_ms() -> u64 {
    crate::clock::monotonic_ms() + 1
}

/// Shortest span a link-throughput sample covers.
const MIN_SAMPLE: Duration = Duration::from_millis(100);

/// Counts an exchange in flight for as long as it lives; when the last one ends, the
/// measurement span closes.
struct InFlight(Arc<LinkStats>);

impl Drop for InFlight {
    fn drop(&mut self) {
        if self.0.in_flight.fetch_sub(1, Ordering::Relaxed) == 1 {
            *self.0.mark() = None;
        }
    }
}

impl LinkStats {
    fn mark(&self) -> std::sync::MutexGuard<'_, Option<(Instant, u64)>> {
        self.busy_mark.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// An exchange starts on a connection that has received `rx` bytes so far.
    fn exchange_started(self: &Arc<Self>, rx: u64) -> InFlight {
        self.in_flight.fetch_add(1, Ordering::Relaxed);
        let mut m = self.mark();
        if m.is_none() {
            *m = Some((Instant::now(), rx));
        }
        InFlight(self.clone())
    }

    /// An exchange completed; the connection has received `rx` bytes so far. Bytes over time
    /// since the mark (exchanges in flight all along) are a sample of the link's throughput.
    fn exchange_done(&self, rx: u64) {
        let mut m = self.mark();
        let Some((t0, rx0)) = *m else { return };
        let dt = t0.elapsed();
        if dt < MIN_SAMPLE {
            return; // too short to say much: let the span grow
        }
        let sample = (rx.saturating_sub(rx0) as f64 / dt.as_secs_f64()) as u64;
        *m = Some((Instant::now(), rx));
        drop(m);
        // Quick to believe a worse link (at once when it halved, else half weight), slow to
        // believe a better one (a quarter): a prefix too short stalls a player, one too long
        // costs some cache.
        let old = self.link_rate.load(Ordering::Relaxed);
        let smoothed = match old {
            0 => sample,
            o if sample < o / 2 => sample,
            o if sample < o => (o + sample) / 2,
            o => (o * 3 + sample) / 4,
        };
        self.link_rate.store(smoothed, Ordering::Relaxed);
    }
}

/// The origin connection.
pub struct Upstream {
    link: Arc<Link>,
    url: SegueUrl,
    /// What the node at the other end is, in messages: "origin", "helper", "edge".
    label: &'static str,
    timeout: Duration,
    pub stats: Arc<LinkStats>,
}

/// What dialing the peer and pooling its connection take, shared with the watchdog.
struct Link {
    endpoint: Dialer,
    conn: Mutex<Conn>,
}

impl Upstream {
    pub fn new(endpoint: Dialer, url: SegueUrl, timeout: Duration) -> Self {
        Self {
            link: Arc::new(Link {
                endpoint,
                conn: Mutex::default(),
            }),
            url,
            label: "origin",
            timeout,
            stats: Arc::default(),
        }
    }

    /// The same link, named `label` in messages (a helper, an edge pushed to).
    pub fn labelled(mut self, label: &'static str) -> Self {
        self.label = label;
        self
    }

    pub fn url(&self) -> &SegueUrl {
        &self.url
    }

    async fn resolve(&self) -> Result<SocketAddr, SourceError> {
        let host = self
            .url
            .host
            .trim_start_matches('[')
            .trim_end_matches(']')
            .to_owned();
        tokio::net::lookup_host((host.as_str(), self.url.port))
            .await
            .ok()
            .and_then(|mut a| a.next())
            .ok_or_else(|| {
                SourceError::Unavailable(format!("cannot resolve {} {host}", self.label))
            })
    }

    /// The pooled connection, reconnecting (with backoff after failures) when needed.
    pub async fn connection(&self) -> Result<quinn::Connection, SourceError> {
        let mut c = self.link.conn.lock().await;
        if let Some(conn) = &c.conn {
            if conn.close_reason().is_none() {
                return Ok(conn.clone());
            }
            tracing::warn!(peer = %self.url, "{} connection lost: {:?}", self.label, conn.close_reason());
            c.conn = None;
            c.control = None;
        }
        if let Some(at) = c.retry_at
            && Instant::now() < at
        {
            return Err(SourceError::Unavailable(format!(
                "{} {} unreachable (retrying in {:?})",
                self.label,
                self.url,
                at - Instant::now()
            )));
        }
        let result = self.dial().await;
        match result {
            Ok((conn, send, recv)) => {
                tracing::info!(peer = %self.url, "connected to {}", self.label);
                self.pool(&mut c, &conn, (send, recv));
                Ok(conn)
            }
            Err(e) => {
                c.failures += 1;
                let backoff = FIRST_BACKOFF
                    .saturating_mul(1 << c.failures.min(6))
                    .min(MAX_BACKOFF);
                c.retry_at = Some(Instant::now() + backoff);
                Err(e)
            }
        }
    }

    /// The pooled connection's id, if one is pooled and open.
    pub async fn pooled(&self) -> Option<usize> {
        let c = self.link.conn.lock().await;
        c.conn
            .as_ref()
            .filter(|x| x.close_reason().is_none())
            .map(|x| x.stable_id())
    }

    /// Opens the pooled connection ahead of need, so the first miss after start-up (or after
    /// the connection was lost) does not pay a handshake to the origin. The handshake runs
    /// outside the pool's lock and a failure sets no backoff: a request meanwhile dials on its
    /// own, as if there were no warm-up. Returns whether a live connection is pooled.
    pub async fn warm(&self) -> bool {
        {
            let c = self.link.conn.lock().await;
            if c.conn.as_ref().is_some_and(|x| x.close_reason().is_none()) {
                return true;
            }
            if c.retry_at.is_some_and(|at| Instant::now() < at) {
                return false; // a request failed just now: its backoff decides
            }
        }
        match self.dial().await {
            Ok((conn, send, recv)) => {
                let mut c = self.link.conn.lock().await;
                if c.conn.as_ref().is_some_and(|x| x.close_reason().is_none()) {
                    // A request connected meanwhile: keep its connection.
                    conn.close(0u32.into(), b"not needed");
                } else {
                    tracing::info!(peer = %self.url, "connected to {} (ahead of need)", self.label);
                    self.pool(&mut c, &conn, (send, recv));
                }
                true
            }
            Err(e) => {
                tracing::debug!(peer = %self.url, "cannot connect ahead of need: {e}");
                false
            }
        }
    }

    /// Makes `conn` (with its claimed control stream) the pooled connection, watched, and
    /// clears the backoff.
    fn pool(
        &self,
        c: &mut Conn,
        conn: &quinn::Connection,
        control: (quinn::SendStream, quinn::RecvStream),
    ) {
        self.watch(conn);
        c.control = Some(control);
        c.failures = 0;
        c.retry_at = None;
        c.conn = Some(conn.clone());
    }

    /// The same link (pool, dialer, counters), as another handle.
    fn share(&self) -> Upstream {
        Upstream {
            link: self.link.clone(),
            url: self.url.clone(),
            label: self.label,
            timeout: self.timeout,
            stats: self.stats.clone(),
        }
    }

    /// Watches `conn` (pooled) until it closes. One that receives nothing for
    /// [`SILENT_FOR`] (and [`SILENT_RTTS`] round trips) while its keep-alives go out
    /// (`segue_net::NODE_KEEP_ALIVE`) is suspect: a peer killed, or restarted (a restarted
    /// peer sends no close, and its stateless resets do not match). A new connection is
    /// dialled; if the peer answers it, it replaces the silent one, which is closed, so its
    /// exchanges fail at once and their fills retry on the new one. If the peer answers no
    /// new connection either (the path is down), the old one is kept: it resumes if the
    /// path comes back within the idle timeout.
    fn watch(&self, conn: &quinn::Connection) {
        let (up, conn) = (self.share(), conn.clone());
        tokio::spawn(async move {
            let mut rx = conn.stats().udp_rx.datagrams;
            let mut heard = Instant::now();
            let mut tried: Option<Instant> = None;
            loop {
                tokio::select! {
                    _ = tokio::time::sleep(WATCH_EVERY) => {}
                    _ = conn.closed() => return,
                }
                let now_rx = conn.stats().udp_rx.datagrams;
                if now_rx != rx {
                    rx = now_rx;
                    heard = Instant::now();
                    continue;
                }
                let silent = heard.elapsed();
                if silent < SILENT_FOR.max(conn.rtt() * SILENT_RTTS)
                    || tried.is_some_and(|t| t.elapsed() < SILENT_FOR)
                {
                    continue;
                }
                tried = Some(Instant::now());
                match up.dial().await {
                    Ok((new, send, recv)) => {
                        let mut c = up.link.conn.lock().await;
                        if c.conn
                            .as_ref()
                            .is_some_and(|x| x.stable_id() == conn.stable_id())
                        {
                            up.pool(&mut c, &new, (send, recv));
                        } else {
                            new.close(0u32.into(), b"not needed");
                        }
                        drop(c);
                        tracing::warn!(peer = %up.url, "{} silent for {silent:?}: replaced by a new connection", up.label);
                        conn.close(
                            segue_net::app_code(segue_wire::AppError::Timeout),
                            b"peer silent",
                        );
                        return;
                    }
                    Err(e) => {
                        tracing::debug!(peer = %up.url, "{} silent for {silent:?}, and a new connection fails: {e}", up.label);
                    }
                }
            }
        });
    }

    /// A new connection with its control stream claimed (PROTOCOL.md §4), not yet pooled.
    async fn dial(
        &self,
    ) -> Result<(quinn::Connection, quinn::SendStream, quinn::RecvStream), SourceError> {
        let addr = self.resolve().await?;
        let host = self.url.host.trim_start_matches('[').trim_end_matches(']');
        let connecting =
            self.link.endpoint.connect(addr, host).map_err(|e| {
                SourceError::Unavailable(format!("{} {}: {e}", self.label, self.url))
            })?;
        let conn = tokio::time::timeout(self.timeout, connecting)
            .await
            .map_err(|_| {
                SourceError::Unavailable(format!(
                    "{} {} did not answer within {:?}",
                    self.label, self.url, self.timeout
                ))
            })?
            .map_err(|e| SourceError::Unavailable(format!("{} {}: {e}", self.label, self.url)))?;
        let unavailable = |e: &dyn std::fmt::Display| {
            SourceError::Unavailable(format!("{} {}: {e}", self.label, self.url))
        };
        // Claim stream 0 for control before any segment exchange.
        let (mut send, recv) = conn.open_bi().await.map_err(|e| unavailable(&e))?;
        let options =
            segue_wire::control::Request::new(segue_wire::control::Method::Options, None, 1);
        send.write_all(&options.encode())
            .await
            .map_err(|e| unavailable(&e))?;
        Ok((conn, send, recv))
    }

    fn note_rtt(&self, conn: &quinn::Connection) {
        let rtt = conn.rtt().as_micros() as u64;
        let old = self.stats.rtt_us.swap(rtt, Ordering::Relaxed);
        if old > 0 {
            let var = self.stats.rtt_var_us.load(Ordering::Relaxed);
            let sample = rtt.abs_diff(old);
            self.stats
                .rtt_var_us
                .store((var * 3 + sample) / 4, Ordering::Relaxed);
        }
    }

    /// The link as placement sees it: throughput with `parallel` exchanges, first byte after
    /// one round trip, jitter the round trip's deviation.
    pub fn link_estimate(&self, parallel: usize) -> crate::placement::link::LinkEstimate {
        crate::placement::link::LinkEstimate {
            throughput: self.stats.throughput(parallel) as f64,
            first_byte_s: self.stats.rtt_us.load(Ordering::Relaxed) as f64 / 1e6,
            jitter_s: self.stats.rtt_var_us.load(Ordering::Relaxed) as f64 / 1e6,
        }
    }

    /// One exchange: sends `req`, returns the frames and payload bytes of the answer (at
    /// most `max`).
    async fn exchange(&self, req: &[u8], max: usize) -> Result<Bytes, SourceError> {
        // Small answers (manifests, adverts): their time is round trips and the peer's
        // think time, not throughput, so they are not link samples.
        let opened = self.open(req, false).await?;
        let mut buf = BytesMut::new();
        let label = self.label;
        self.read(opened, |data| {
            if buf.len() + data.len() > max {
                return Err(SourceError::Internal(format!(
                    "{label} answer exceeds limits"
                )));
            }
            buf.extend_from_slice(data);
            Ok(())
        })
        .await?;
        Ok(buf.freeze())
    }

    /// The link broke under an exchange.
    fn lost(&self, e: &dyn std::fmt::Display) -> SourceError {
        SourceError::Unavailable(format!("{} {}: {e}", self.label, self.url))
    }

    /// Opens an exchange: its stream, with `req` sent and FIN. `measured`: its transfer is
    /// a sample of the link's throughput (segment exchanges).
    async fn open(&self, req: &[u8], measured: bool) -> Result<Opened, SourceError> {
        let conn = self.connection().await?;
        let lost = |e: &dyn std::fmt::Display| self.lost(e);
        let in_flight = measured.then(|| self.stats.exchange_started(conn.stats().udp_rx.bytes));
        let (mut send, recv) = conn.open_bi().await.map_err(|e| lost(&e))?;
        send.write_all(req).await.map_err(|e| lost(&e))?;
        send.finish().map_err(|e| lost(&e))?;
        Ok(Opened {
            conn,
            recv,
            _in_flight: in_flight,
        })
    }

    /// Reads an opened exchange's answer to the end, handing each piece to `on_data`. An
    /// error from `on_data` ends the exchange (STOP_SENDING) and is returned.
    async fn read(
        &self,
        opened: Opened,
        mut on_data: impl FnMut(&[u8]) -> Result<(), SourceError>,
    ) -> Result<(), SourceError> {
        let Opened {
            conn,
            mut recv,
            _in_flight: in_flight,
        } = opened;
        let mut chunk = vec![0u8; 64 * 1024];
        let mut total = 0u64;
        // Liveness is the connection's: an exchange may wait while the origin sends others
        // with earlier deadlines first, as long as the connection keeps receiving.
        let mut seen = conn.stats().udp_rx.bytes;
        let mut idle = Duration::ZERO;
        loop {
            match tokio::time::timeout(self.timeout, recv.read(&mut chunk)).await {
                Err(_) => {
                    let rx = conn.stats().udp_rx.bytes;
                    idle += self.timeout;
                    if rx > seen && idle < self.timeout * MAX_WAIT_TURNS {
                        seen = rx;
                        continue;
                    }
                    return Err(SourceError::Unavailable(format!(
                        "{} {} stalled for {:?}",
                        self.label, self.url, self.timeout
                    )));
                }
                Ok(Err(e)) => return Err(self.lost(&e)),
                Ok(Ok(None)) => break,
                Ok(Ok(Some(n))) => {
                    idle = Duration::ZERO;
                    total += n as u64;
                    if let Err(e) = on_data(&chunk[..n]) {
                        let _ =
                            recv.stop(segue_net::app_code(segue_wire::AppError::ProtocolViolation));
                        return Err(e);
                    }
                }
            }
        }
        self.note_rtt(&conn);
        if in_flight.is_some() {
            self.stats.exchange_done(conn.stats().udp_rx.bytes);
        }
        drop(in_flight);
        self.stats.bytes.fetch_add(total, Ordering::Relaxed);
        Ok(())
    }

    /// The error a non-OK RESPONSE stands for.
    fn refusal(&self, h: &ResponseHeader) -> Option<SourceError> {
        Some(match h.status {
            Status::Ok => return None,
            Status::NotFound => {
                // The origin's reason already says "no object ..." (SourceError's wording).
                let what = h.reason.strip_prefix("no object ").unwrap_or(&h.reason);
                SourceError::NotFound(what.to_owned())
            }
            Status::StaleRevision => SourceError::Stale(h.reason.clone()),
            Status::UpstreamUnavailable => SourceError::Unavailable(h.reason.clone()),
            Status::Busy => SourceError::Busy(h.reason.clone()),
            Status::HopLimitExceeded => SourceError::HopLimit(h.reason.clone()),
            s => SourceError::Internal(format!("{} answered {s:?}: {}", self.label, h.reason)),
        })
    }

    fn expect_ok(
        &self,
        data: &Bytes,
        limits: &Limits,
    ) -> Result<(ResponseFrame, usize), SourceError> {
        let bad = |e: String| SourceError::Internal(format!("bad answer from {}: {e}", self.label));
        let (frame, used) = decode_response_frame(data, limits)
            .map_err(|e| bad(e.to_string()))?
            .ok_or_else(|| bad("cut short".into()))?;
        if let ResponseFrame::Response(h) = &frame
            && let Some(e) = self.refusal(h)
        {
            return Err(e);
        }
        Ok((frame, used))
    }

    /// Fetches the manifest of `name`.
    pub async fn manifest(&self, name: &ObjectName) -> Result<Manifest, SourceError> {
        let limits = Limits::default();
        let req = SegmentRequest::Manifest {
            object: name.clone(),
            params: Params::default(),
        };
        let data = self
            .exchange(&req.encode(), limits.max_manifest + 4096)
            .await?;
        let (_, used) = self.expect_ok(&data, &limits)?;
        match decode_response_frame(&data[used..], &limits) {
            Ok(Some((ResponseFrame::Manifest(m), _))) if m.object == *name => Ok(m),
            _ => Err(SourceError::Internal(format!(
                "{} sent no valid manifest",
                self.label
            ))),
        }
    }

    /// Fetches segment `index`, verified against the manifest; a player needs it within
    /// `deadline_ms` (the origin sends earlier deadlines first). `hop`: a request between
    /// helpers, with the hops it may still be forwarded and our helper id. Each chunk is
    /// handed to `filling` as soon as it is verified (PROTOCOL.md §8.6.1).
    pub async fn segment(
        &self,
        m: &Manifest,
        index: usize,
        deadline_ms: Option<u64>,
        hop: Option<(u8, u64)>,
        filling: Option<&Filling>,
    ) -> Result<Bytes, SourceError> {
        let params = Params {
            hop_limit: hop.map(|h| h.0),
            revision: Some(m.revision),
            deadline_ms,
            sender: hop.map(|h| h.1),
            ..Params::default()
        };
        let opened = self.open_segment(&m.object, index, params).await?;
        self.receive_segment(opened, m, index, filling).await
    }

    /// Sends a request for segment `index` of `object` (with CHUNKS) before the manifest it
    /// will be checked against is known: a miss asks for the manifest and its first segment
    /// at once (one origin round trip for both); [`Self::receive_segment`] reads it.
    pub async fn open_segment(
        &self,
        object: &ObjectName,
        index: usize,
        params: Params,
    ) -> Result<SegmentExchange, SourceError> {
        let req = SegmentRequest::Segments {
            object: object.clone(),
            first: index as u64,
            count: 1,
            params: Params {
                chunks: true,
                ..params
            },
        };
        Ok(SegmentExchange(self.open(&req.encode(), true).await?))
    }

    /// Reads the segment an [`Self::open_segment`] asked for, verified against `m`.
    pub async fn receive_segment(
        &self,
        exchange: SegmentExchange,
        m: &Manifest,
        index: usize,
        filling: Option<&Filling>,
    ) -> Result<Bytes, SourceError> {
        let limits = Limits::default();
        let mut rx = SegmentReceiver::new(m, index, true, limits)
            .ok_or_else(|| SourceError::Internal(format!("no segment {index}")))?;
        let size = m.segments[index].size;
        let started = Instant::now();
        self.stats.queued.fetch_add(size, Ordering::Relaxed);
        let label = self.label;
        let bad = |what: String| {
            SourceError::Internal(format!(
                "segment {index} of {} from {label}: {what}",
                m.object
            ))
        };
        // The RESPONSE first (buffered until whole), then the segment.
        let mut head: Option<Vec<u8>> = Some(Vec::new());
        let (mut out, mut k) = (Vec::new(), 0usize);
        let r = self
            .read(exchange.0, |data| {
                let rest: std::borrow::Cow<'_, [u8]> = match head.as_mut() {
                    None => data.into(),
                    Some(h) => {
                        h.extend_from_slice(data);
                        match decode_response_frame(h, &limits) {
                            Ok(None) => return Ok(()),
                            Err(e) => return Err(bad(e.to_string())),
                            Ok(Some((ResponseFrame::Response(resp), used))) => {
                                if let Some(e) = self.refusal(&resp) {
                                    return Err(match e {
                                        SourceError::Stale(_) => {
                                            SourceError::Stale(m.object.to_string())
                                        }
                                        e => e,
                                    });
                                }
                                let rest = h.split_off(used);
                                head = None;
                                rest.into()
                            }
                            Ok(Some(_)) => return Err(bad("no RESPONSE first".into())),
                        }
                    }
                };
                let used = rx.push(&rest, &mut out).map_err(|e| bad(e.to_string()))?;
                if used < rest.len() {
                    return Err(bad("more than the segment".into()));
                }
                if let Some(f) = filling {
                    for c in out.drain(..) {
                        f.chunk(k, &c);
                        k += 1;
                    }
                } else {
                    out.clear();
                }
                Ok(())
            })
            .await;
        self.stats.queued.fetch_sub(size, Ordering::Relaxed);
        r?;
        let payload = rx.into_payload().map_err(|e| bad(e.to_string()))?;
        let secs = started.elapsed().as_secs_f64().max(1e-6);
        let rate = (payload.len() as f64 / secs) as u64;
        let old = self.stats.stream_rate.load(Ordering::Relaxed);
        let smoothed = if old == 0 { rate } else { (old * 7 + rate) / 8 };
        self.stats.stream_rate.store(smoothed, Ordering::Relaxed);
        self.stats
            .last_fetch_ms
            .store(epoch_ms(), Ordering::Relaxed);
        self.stats.fetches.fetch_add(1, Ordering::Relaxed);
        Ok(payload)
    }
}

/// An exchange whose request is sent, its answer not read yet.
struct Opened {
    conn: quinn::Connection,
    recv: quinn::RecvStream,
    _in_flight: Option<InFlight>,
}

/// A segment request sent ([`Upstream::open_segment`]), its answer to be read
/// ([`Upstream::receive_segment`]). Dropped unread, the stream is stopped.
pub struct SegmentExchange(Opened);

impl Upstream {
    /// Sends an advertisement; the receiver's status (OK, or STALE_REVISION: it needs a
    /// snapshot). Returns the bytes sent with it.
    pub async fn advert(
        &self,
        a: &segue_wire::advert::Advert,
    ) -> Result<(Status, usize), SourceError> {
        let enc = a.encode();
        let data = self.exchange(&enc, 4096).await?;
        match decode_response_frame(&data, &Limits::default()) {
            Ok(Some((ResponseFrame::Response(h), _))) => Ok((h.status, enc.len())),
            _ => Err(SourceError::Internal(format!(
                "{} answered an advert with no response",
                self.label
            ))),
        }
    }

    /// The round trip to it now, if connected.
    pub fn rtt(&self) -> Option<Duration> {
        match self.stats.rtt_us.load(Ordering::Relaxed) {
            0 => None,
            us => Some(Duration::from_micros(us)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn link_throughput_is_bytes_over_busy_time() {
        let s = Arc::new(LinkStats::default());
        assert_eq!(s.throughput(4), 0);
        // Only busy-time samples here (no per-exchange rate yet): they are the estimate.
        {
            let _a = s.exchange_started(1000);
            let _b = s.exchange_started(1500);
            std::thread::sleep(Duration::from_millis(200));
            // 40 kB arrived in ~0.2 s, whichever exchange they belonged to.
            s.exchange_done(41_000);
            let r = s.throughput(4) as f64;
            assert!((150_000.0..=205_000.0).contains(&r), "{r}");
        }
        // Nothing in flight: the next span starts afresh (idle time is not counted).
        std::thread::sleep(Duration::from_millis(150));
        let before = s.throughput(4);
        {
            let _c = s.exchange_started(41_000);
            std::thread::sleep(Duration::from_millis(120));
            // A much slower span (under half): believed at once.
            s.exchange_done(41_000 + 2_400);
        }
        let after = s.throughput(4);
        assert!(after < before / 2 && after > 10_000, "{before} -> {after}");
        // A faster one is believed by a quarter.
        {
            let _d = s.exchange_started(50_000);
            std::thread::sleep(Duration::from_millis(110));
            s.exchange_done(50_000 + 110_000);
        }
        let up = s.throughput(4);
        assert!(
            up > after && up < after + (1_000_000 - after) / 3,
            "{after} -> {up}"
        );
    }
}
