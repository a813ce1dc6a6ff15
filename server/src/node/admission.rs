//! Admission of QUIC connections: how many a server holds at once, in total and per client
//! address, and which clients must first prove their address with a Retry. Applied before the
//! handshake (a refused client costs one packet), by the segue/1 servers (`node`) and the
//! file servers (`hq`).

use std::collections::HashMap;
use std::net::{IpAddr, Ipv6Addr, SocketAddr};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

/// When a server asks a new client to prove its address (a Retry: one more round trip,
/// but spoofed sources cannot make the server send a handshake's worth of bytes).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum RetryPolicy {
    /// Every client.
    Always,
    /// No client.
    Never,
    /// Clients from public addresses (not loopback, private, link-local or unique-local):
    /// the internet, but not a lab or a LAN.
    #[default]
    Public,
}

impl RetryPolicy {
    pub fn parse(s: &str) -> Result<Self, String> {
        match s {
            "always" => Ok(Self::Always),
            "never" => Ok(Self::Never),
            "public" => Ok(Self::Public),
            _ => Err(format!("{s:?}: expected always, never or public")),
        }
    }

    /// Whether a client at `addr` must be validated with a Retry.
    pub fn wants(self, addr: IpAddr) -> bool {
        match self {
            Self::Always => true,
            Self::Never => false,
            Self::Public => is_public(addr),
        }
    }
}

/// Not loopback, private (RFC 1918, RFC 6598 shared), link-local, unique-local, unspecified
/// or broadcast: an address a client on the internet would have.
pub fn is_public(addr: IpAddr) -> bool {
    match canonical(addr) {
        IpAddr::V4(a) => {
            let shared = a.octets()[0] == 100 && (a.octets()[1] & 0xc0) == 64;
            !(a.is_loopback()
                || a.is_private()
                || a.is_link_local()
                || a.is_unspecified()
                || a.is_broadcast()
                || shared)
        }
        IpAddr::V6(a) => {
            let seg = a.segments()[0];
            let unique_local = (seg & 0xfe00) == 0xfc00;
            let link_local = (seg & 0xffc0) == 0xfe80;
            !(a.is_loopback() || a.is_unspecified() || unique_local || link_local)
        }
    }
}

/// An IPv4-mapped IPv6 address as the IPv4 address it is.
fn canonical(addr: IpAddr) -> IpAddr {
    match addr {
        IpAddr::V6(a) => a.to_ipv4_mapped().map_or(addr, IpAddr::V4),
        v4 => v4,
    }
}

/// What the per-address limit counts: an IPv4 address, or an IPv6 /64 (one subscriber's
/// prefix: an IPv6 client can pick any address in it).
fn client_key(addr: IpAddr) -> IpAddr {
    match canonical(addr) {
        IpAddr::V6(a) => {
            let s = a.segments();
            IpAddr::V6(Ipv6Addr::new(s[0], s[1], s[2], s[3], 0, 0, 0, 0))
        }
        v4 => v4,
    }
}

/// Connection limits of one server.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ConnectionLimits {
    /// Connections held at once (handshaking or established).
    pub max_connections: usize,
    /// Connections held at once from one client address (IPv6: one /64).
    pub max_per_client: usize,
    pub retry: RetryPolicy,
}

impl Default for ConnectionLimits {
    fn default() -> Self {
        Self {
            max_connections: 10_000,
            max_per_client: 64,
            retry: RetryPolicy::Public,
        }
    }
}

impl ConnectionLimits {
    /// The default limits with Retry `policy`.
    pub fn with_retry(retry: RetryPolicy) -> Self {
        Self {
            retry,
            ..Self::default()
        }
    }
}

/// What to do with a new connection attempt.
#[derive(Debug)]
pub enum Decision {
    /// Send a Retry (the client comes back with a token proving its address).
    Retry,
    /// Refuse it, and why.
    Refuse(&'static str),
    /// Accept it; the ticket holds its place until dropped.
    Admit(Ticket),
}

/// Counts the connections a server holds, by client.
#[derive(Debug)]
pub struct Admission {
    limits: ConnectionLimits,
    held: Mutex<Held>,
    pub refused: AtomicU64,
    pub retries: AtomicU64,
    /// Connections established, by the congestion controller they run, in the order of
    /// `Congestion::ALL`: what `--congestion` became.
    pub by_congestion: [AtomicU64; segue_net::Congestion::ALL.len()],
    /// The RTSP face's own counts (its connections are also in `held`).
    pub faces: FaceStats,
    /// Requests refused (counted; logged at most once per client per [`REFUSAL_LOG_EVERY`]).
    pub refusals: Refusals,
    /// TCP connections (the RTSP face, the admin API) open now, and how many may be.
    pub tcp: TcpBudget,
}

/// File descriptors kept free of TCP connections, for the cache's files, the UDP sockets,
/// upstream connections and logs: strangers' connections cannot starve the cache.
pub const FD_RESERVE: u64 = 256;
/// The least TCP budget, however low the descriptor limit.
const MIN_TCP: usize = 16;

/// The process's open-file limit, raised (once) to the hard limit where allowed.
pub fn nofile_limit() -> u64 {
    static LIMIT: std::sync::OnceLock<u64> = std::sync::OnceLock::new();
    *LIMIT.get_or_init(|| match rlimit::increase_nofile_limit(u64::MAX) {
        Ok(n) => n,
        Err(e) => {
            tracing::warn!("cannot read or raise the open-file limit: {e}");
            rlimit::getrlimit(rlimit::Resource::NOFILE).map_or(1024, |(soft, _)| soft)
        }
    })
}

/// TCP connections held at once, each costing a file descriptor: at most the open-file
/// limit less [`FD_RESERVE`].
#[derive(Debug)]
pub struct TcpBudget {
    limit: usize,
    open: AtomicU64,
}

impl Default for TcpBudget {
    fn default() -> Self {
        let limit = usize::try_from(nofile_limit().saturating_sub(FD_RESERVE))
            .unwrap_or(usize::MAX)
            .max(MIN_TCP);
        Self {
            limit,
            open: AtomicU64::new(0),
        }
    }
}

impl TcpBudget {
    pub fn limit(&self) -> usize {
        self.limit
    }

    pub fn open(&self) -> u64 {
        self.open.load(Ordering::Relaxed)
    }
}

impl Admission {
    /// A place for one more TCP connection (given back when the slot drops), or None when
    /// the budget is spent.
    pub fn take_tcp(self: &Arc<Self>) -> Option<TcpSlot> {
        let limit = self.tcp.limit as u64;
        self.tcp
            .open
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| {
                (n < limit).then_some(n + 1)
            })
            .ok()
            .map(|_| TcpSlot(self.clone()))
    }
}

/// One TCP connection's place in the [`TcpBudget`].
#[derive(Debug)]
pub struct TcpSlot(Arc<Admission>);

impl Drop for TcpSlot {
    fn drop(&mut self) {
        self.0.tcp.open.fetch_sub(1, Ordering::AcqRel);
    }
}

/// How often one client's refused requests are logged (one line, with how many were not).
pub const REFUSAL_LOG_EVERY: std::time::Duration = std::time::Duration::from_secs(10);
/// Clients whose last refusal log time is remembered; past it the oldest are forgotten.
const REFUSAL_CLIENTS: usize = 4096;

/// Requests refused to clients (unauthorised, malformed, over a limit): every one counted,
/// one log line per client per [`REFUSAL_LOG_EVERY`] at most, so that a client sending
/// refused requests as fast as it can costs the node a counter, not its log.
#[derive(Debug, Default)]
pub struct Refusals {
    pub count: AtomicU64,
    /// Per client: when its last refusal was logged, and how many since were not.
    logged: Mutex<HashMap<IpAddr, (std::time::Instant, u64)>>,
}

impl Refusals {
    /// Counts a refusal of `peer`'s request, and logs it unless this client was logged
    /// within [`REFUSAL_LOG_EVERY`].
    pub fn note(&self, peer: SocketAddr, why: &str) {
        self.note_at(peer, why, std::time::Instant::now());
    }

    /// [`Self::note`] at `now`; true if it was logged.
    pub fn note_at(&self, peer: SocketAddr, why: &str, now: std::time::Instant) -> bool {
        self.count.fetch_add(1, Ordering::Relaxed);
        let key = client_key(peer.ip());
        let mut logged = self.logged.lock().unwrap_or_else(|e| e.into_inner());
        let suppressed = match logged.get_mut(&key) {
            Some((at, n)) if now.saturating_duration_since(*at) < REFUSAL_LOG_EVERY => {
                *n += 1;
                return false;
            }
            Some((_, n)) => std::mem::take(n),
            None => 0,
        };
        if logged.len() >= REFUSAL_CLIENTS && !logged.contains_key(&key) {
            logged.retain(|_, (at, _)| now.saturating_duration_since(*at) < REFUSAL_LOG_EVERY);
            if logged.len() >= REFUSAL_CLIENTS {
                // Still full of clients refused within the period: log nothing new.
                return false;
            }
        }
        logged.insert(key, (now, 0));
        drop(logged);
        if suppressed > 0 {
            tracing::warn!(%peer, "refused: {why} ({suppressed} more from this client not logged)");
        } else {
            tracing::warn!(%peer, "refused: {why}");
        }
        true
    }
}

/// What the RTSP face did, by scheme (`rtsp`, `rtsps`: `FaceStats::SCHEMES` order), so an
/// operator can tell its players from segue/1's.
#[derive(Debug, Default)]
pub struct FaceStats {
    /// Connections admitted.
    pub accepted: [AtomicU64; 2],
    /// Connections open now.
    pub open: AtomicU64,
    /// PLAY requests answered with success.
    pub plays: [AtomicU64; 2],
}

impl FaceStats {
    pub const SCHEMES: [segue_wire::rtsp::Scheme; 2] = [
        segue_wire::rtsp::Scheme::Rtsp,
        segue_wire::rtsp::Scheme::Rtsps,
    ];

    pub fn index(s: segue_wire::rtsp::Scheme) -> usize {
        match s {
            segue_wire::rtsp::Scheme::Rtsp => 0,
            segue_wire::rtsp::Scheme::Rtsps => 1,
        }
    }
}

#[derive(Debug, Default)]
struct Held {
    total: usize,
    per_client: HashMap<IpAddr, usize>,
}

impl Admission {
    pub fn new(limits: ConnectionLimits) -> Arc<Self> {
        Arc::new(Self {
            limits,
            held: Mutex::new(Held::default()),
            refused: AtomicU64::new(0),
            retries: AtomicU64::new(0),
            by_congestion: Default::default(),
            faces: FaceStats::default(),
            refusals: Refusals::default(),
            tcp: TcpBudget::default(),
        })
    }

    pub fn limits(&self) -> ConnectionLimits {
        self.limits
    }

    /// Counts an established connection by its congestion controller.
    pub fn established(&self, conn: &quinn::Connection) {
        let running = segue_net::transport::controller_of(conn);
        if let Some(i) = segue_net::Congestion::ALL
            .iter()
            .position(|c| Some(*c) == running)
        {
            self.by_congestion[i].fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        }
    }

    /// Connections held now.
    pub fn held(&self) -> usize {
        self.lock().total
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Held> {
        // A panic while holding the lock leaves only counters behind: keep using them.
        self.held.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Whether an attempt from `remote` gets a Retry; `validated`: it came back with a
    /// Retry token.
    pub fn wants_retry(&self, remote: SocketAddr, validated: bool) -> bool {
        !validated && self.limits.retry.wants(remote.ip())
    }

    /// Decides on an attempt from `remote`; `validated`: it came back with a Retry token.
    pub fn decide(self: &Arc<Self>, remote: SocketAddr, validated: bool) -> Decision {
        if self.wants_retry(remote, validated) {
            self.retries.fetch_add(1, Ordering::Relaxed);
            return Decision::Retry;
        }
        let key = client_key(remote.ip());
        let mut held = self.lock();
        let why = if held.total >= self.limits.max_connections {
            Some("too many connections")
        } else if held.per_client.get(&key).copied().unwrap_or(0) >= self.limits.max_per_client {
            Some("too many connections from this client")
        } else {
            None
        };
        if let Some(why) = why {
            self.refused.fetch_add(1, Ordering::Relaxed);
            return Decision::Refuse(why);
        }
        held.total += 1;
        *held.per_client.entry(key).or_insert(0) += 1;
        Decision::Admit(Ticket {
            admission: self.clone(),
            key,
        })
    }

    /// Applies [`Admission::decide`] to a quinn connection attempt: sends the Retry or the
    /// refusal itself and returns only an admitted attempt, with its ticket.
    pub fn admit(self: &Arc<Self>, incoming: quinn::Incoming) -> Option<(quinn::Incoming, Ticket)> {
        let remote = incoming.remote_address();
        match self.decide(remote, incoming.remote_address_validated()) {
            Decision::Admit(t) => Some((incoming, t)),
            Decision::Retry => {
                tracing::debug!(peer = %remote, "address validation: Retry sent");
                if let Err(e) = incoming.retry() {
                    tracing::debug!(peer = %remote, "cannot send a Retry: {e}");
                }
                None
            }
            Decision::Refuse(why) => {
                tracing::info!(peer = %remote, "connection refused: {why}");
                incoming.refuse();
                None
            }
        }
    }
}

/// A held connection's place; dropping it frees the place.
#[derive(Debug)]
pub struct Ticket {
    admission: Arc<Admission>,
    key: IpAddr,
}

impl Drop for Ticket {
    fn drop(&mut self) {
        let mut held = self.admission.lock();
        held.total = held.total.saturating_sub(1);
        if let Some(n) = held.per_client.get_mut(&self.key) {
            *n -= 1;
            if *n == 0 {
                held.per_client.remove(&self.key);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refusals_are_all_counted_and_logged_once_per_client_per_period() {
        let r = Refusals::default();
        let t0 = std::time::Instant::now();
        let a: SocketAddr = "192.0.2.1:1000".parse().unwrap();
        let a2: SocketAddr = "192.0.2.1:2000".parse().unwrap(); // same client, another port
        let b: SocketAddr = "192.0.2.2:1000".parse().unwrap();
        assert!(r.note_at(a, "x", t0));
        // A flood from one client: counted, not logged, until the period is over.
        for i in 0..10_000u64 {
            assert!(!r.note_at(a2, "x", t0 + std::time::Duration::from_micros(i)));
        }
        assert!(r.note_at(b, "x", t0), "another client is logged");
        assert!(r.note_at(a, "x", t0 + REFUSAL_LOG_EVERY));
        assert_eq!(r.count.load(Ordering::Relaxed), 10_003);
        // The clients remembered are bounded, however many addresses refusals come from.
        for i in 0..3 * REFUSAL_CLIENTS as u32 {
            let ip = std::net::Ipv4Addr::from(0x0a00_0000 + i);
            r.note_at(SocketAddr::from((ip, 1)), "x", t0);
        }
        assert!(r.logged.lock().unwrap().len() <= REFUSAL_CLIENTS);
    }

    fn at(s: &str) -> SocketAddr {
        SocketAddr::new(s.parse().unwrap(), 4433)
    }

    #[test]
    fn public_addresses() {
        for a in [
            "8.8.8.8",
            "2001:4860::8888",
            "::ffff:8.8.8.8",
            "100.128.0.1",
        ] {
            assert!(is_public(a.parse().unwrap()), "{a}");
        }
        for a in [
            "127.0.0.1",
            "10.1.2.3",
            "192.168.0.7",
            "172.16.0.1",
            "169.254.1.1",
            "100.64.0.1",
            "::1",
            "fd00::1",
            "fe80::1",
            "::ffff:10.0.0.1",
            "0.0.0.0",
        ] {
            assert!(!is_public(a.parse().unwrap()), "{a}");
        }
    }

    #[test]
    fn retry_policy() {
        let p = RetryPolicy::parse("public").unwrap();
        assert!(p.wants("8.8.8.8".parse().unwrap()));
        assert!(!p.wants("127.0.0.1".parse().unwrap()));
        assert!(RetryPolicy::Always.wants("127.0.0.1".parse().unwrap()));
        assert!(!RetryPolicy::Never.wants("8.8.8.8".parse().unwrap()));
        assert!(RetryPolicy::parse("sometimes").is_err());
        // A validated client is not asked again.
        let a = Admission::new(ConnectionLimits {
            retry: RetryPolicy::Always,
            ..ConnectionLimits::default()
        });
        assert!(matches!(a.decide(at("127.0.0.1"), false), Decision::Retry));
        assert!(matches!(
            a.decide(at("127.0.0.1"), true),
            Decision::Admit(_)
        ));
        assert_eq!(a.retries.load(Ordering::Relaxed), 1);
    }

    #[test]
    fn limits_total_and_per_client_and_tickets_free_places() {
        let a = Admission::new(ConnectionLimits {
            max_connections: 3,
            max_per_client: 2,
            retry: RetryPolicy::Never,
        });
        let t1 = a.decide(at("10.0.0.1"), false);
        let t2 = a.decide(at("10.0.0.1"), false);
        assert!(matches!(t1, Decision::Admit(_)) && matches!(t2, Decision::Admit(_)));
        assert!(matches!(
            a.decide(at("10.0.0.1"), false),
            Decision::Refuse("too many connections from this client")
        ));
        // The same address mapped into IPv6 is the same client.
        assert!(matches!(
            a.decide(at("::ffff:10.0.0.1"), false),
            Decision::Refuse(_)
        ));
        let t3 = a.decide(at("10.0.0.2"), false);
        assert!(matches!(t3, Decision::Admit(_)));
        assert!(matches!(
            a.decide(at("10.0.0.3"), false),
            Decision::Refuse("too many connections")
        ));
        assert_eq!(a.held(), 3);
        drop(t1);
        assert_eq!(a.held(), 2);
        assert!(matches!(
            a.decide(at("10.0.0.1"), false),
            Decision::Admit(_)
        ));
        assert_eq!(a.refused.load(Ordering::Relaxed), 3);
    }

    #[test]
    fn an_ipv6_client_is_its_64() {
        let a = Admission::new(ConnectionLimits {
            max_connections: 100,
            max_per_client: 1,
            retry: RetryPolicy::Never,
        });
        let _t = a.decide(at("2001:db8:1:2::1"), false);
        assert!(matches!(
            a.decide(at("2001:db8:1:2:ffff::9"), false),
            Decision::Refuse(_)
        ));
        assert!(matches!(
            a.decide(at("2001:db8:1:3::1"), false),
            Decision::Admit(_)
        ));
    }
}
