//! Reordering tolerance for a server endpoint's handshakes.
//!
//! A client sends its TLS Finished (a Handshake packet) and, right after, its first 1-RTT
//! packets (segue/1's DESCRIBE, SETUP, PLAY). On a path that reorders, the 1-RTT packets can
//! arrive first; quinn-proto drops short-header packets while the handshake is in progress
//! (its `TODO: SHOULD buffer these`, RFC 9001 §5.7 allows servers to buffer them), so the
//! requests wait for the client's probe timeout, about 3 RTT, before they are sent again.
//! On the lab's reordering last mile that was most of the time to first frame.
//!
//! [`HoldingSocket`] wraps the endpoint's UDP socket and does the buffering quinn does not:
//! while a source address is in a handshake (a client Initial seen, no Handshake packet yet),
//! its short-header datagrams are held, and handed to quinn right after the next datagram
//! from that address that carries a Handshake packet. [`Hold`] is the sans-IO core: it
//! reads only the QUIC invariants (RFC 8999) and v1's long-header lengths (RFC 9000 §17.2).
//!
//! Bounds: at most [`MAX_PENDING`] addresses in a handshake, [`MAX_HELD_PER_PEER`] datagrams
//! and [`MAX_HELD_BYTES`] in all are held, for at most [`HOLD_FOR`]; past a bound a datagram
//! goes to quinn as it came (which drops it, as without the hold). Only datagrams padded as a
//! client Initial must be (1200 bytes) open a handshake, so a spoofed small packet holds
//! nothing, and an address whose handshake was seen is not held again for [`DONE_FOR`], so a
//! late duplicate Initial cannot hold an established connection's packets.

use std::collections::{HashMap, VecDeque};
use std::fmt;
use std::io::{self, IoSliceMut};
use std::net::{IpAddr, SocketAddr};
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll, ready};
use std::time::{Duration, Instant};

use quinn::udp::{EcnCodepoint, RecvMeta, Transmit};
use quinn::{AsyncUdpSocket, UdpPoller};

/// Addresses tracked in a handshake at once.
pub const MAX_PENDING: usize = 4096;
/// Datagrams held for one address.
pub const MAX_HELD_PER_PEER: usize = 16;
/// Bytes held in all.
pub const MAX_HELD_BYTES: usize = 4 << 20;
/// A handshake's held datagrams are handed on after this long even without its Handshake
/// packet (quinn then drops them, as it would have).
pub const HOLD_FOR: Duration = Duration::from_millis(500);
/// An address whose Handshake packet was seen is not held again for this long.
pub const DONE_FOR: Duration = Duration::from_secs(10);
/// Addresses remembered as done.
const MAX_DONE: usize = 8192;
/// RFC 9000 §14.1: a client's Initial datagrams are padded to at least this.
const MIN_INITIAL_DATAGRAM: usize = 1200;
const QUIC_V1: u32 = 1;

/// What a datagram means to the hold.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// Starts with a short-header (1-RTT) packet.
    Short,
    /// Long-header packets of QUIC v1: whether one is an Initial, one a Handshake.
    Long { initial: bool, handshake: bool },
    /// Anything else (another version, version negotiation, unparsable).
    Other,
}

/// Classifies one UDP datagram by its (possibly coalesced) QUIC packets.
pub fn classify(datagram: &[u8]) -> Kind {
    let Some(&first) = datagram.first() else {
        return Kind::Other;
    };
    if first & 0x80 == 0 {
        return Kind::Short;
    }
    let (mut initial, mut handshake) = (false, false);
    let mut rest = datagram;
    // Coalesced packets (RFC 9000 §12.2): long headers carry their length; a short header,
    // if any, is last and runs to the end.
    while let Some(&b) = rest.first() {
        if b & 0x80 == 0 {
            break;
        }
        match long_packet(rest) {
            Some((ty, len)) => {
                match ty {
                    LongType::Initial => initial = true,
                    LongType::Handshake => handshake = true,
                    LongType::ZeroRtt => {}
                }
                rest = &rest[len..];
            }
            None => break,
        }
    }
    if initial || handshake {
        Kind::Long { initial, handshake }
    } else {
        Kind::Other
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum LongType {
    Initial,
    ZeroRtt,
    Handshake,
}

/// The type and total length of the v1 long-header packet `p` starts with.
fn long_packet(p: &[u8]) -> Option<(LongType, usize)> {
    let version = u32::from_be_bytes(p.get(1..5)?.try_into().ok()?);
    if version != QUIC_V1 {
        return None;
    }
    let ty = match (p[0] >> 4) & 0x03 {
        0 => LongType::Initial,
        1 => LongType::ZeroRtt,
        2 => LongType::Handshake,
        _ => return None, // Retry: never sent by a client
    };
    let mut at = 5;
    for _ in 0..2 {
        // DCID, then SCID: a length byte and the id.
        let len = usize::from(*p.get(at)?);
        at += 1 + len;
    }
    if ty == LongType::Initial {
        let (token, n) = varint(p.get(at..)?)?;
        at += n;
        at = at.checked_add(usize::try_from(token).ok()?)?;
    }
    let (len, n) = varint(p.get(at..)?)?;
    let end = (at + n).checked_add(usize::try_from(len).ok()?)?;
    (end <= p.len()).then_some((ty, end))
}

/// A QUIC variable-length integer (RFC 9000 §16) and its encoded size.
fn varint(b: &[u8]) -> Option<(u64, usize)> {
    let first = *b.first()?;
    let n = 1usize << (first >> 6);
    let bytes = b.get(..n)?;
    let mut v = u64::from(first & 0x3f);
    for &x in &bytes[1..] {
        v = (v << 8) | u64::from(x);
    }
    Some((v, n))
}

/// A datagram with what quinn needs to know of it.
#[derive(Debug, Clone)]
pub struct Datagram {
    pub addr: SocketAddr,
    pub ecn: Option<EcnCodepoint>,
    pub dst_ip: Option<IpAddr>,
    pub data: Vec<u8>,
}

#[derive(Debug)]
struct Pending {
    since: Instant,
    held: Vec<Datagram>,
}

/// Counters of the hold (for logs and tests).
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct HoldStats {
    /// Short-header datagrams held until their handshake's packet arrived.
    pub held: u64,
    /// Held datagrams handed on because their handshake did not show up in [`HOLD_FOR`].
    pub expired: u64,
    /// Datagrams passed through because a bound was reached.
    pub over_bound: u64,
}

/// The sans-IO hold: feed it every received datagram in order ([`Hold::on_datagram`]); it
/// says whether to pass the datagram on now, and queues held ones to be passed on later
/// ([`Hold::pop_ready`]) right after the datagram that completed their handshake.
#[derive(Debug, Default)]
pub struct Hold {
    pending: HashMap<SocketAddr, Pending>,
    done: HashMap<SocketAddr, Instant>,
    ready: VecDeque<Datagram>,
    held_bytes: usize,
    last_sweep: Option<Instant>,
    stats: HoldStats,
}

impl Hold {
    /// Whether nothing is tracked: every short-header datagram passes untouched.
    pub fn is_idle(&self) -> bool {
        self.pending.is_empty() && self.ready.is_empty()
    }

    pub fn stats(&self) -> HoldStats {
        self.stats
    }

    /// One received datagram; `true`: pass it on now, `false`: it was held (taken by `take`).
    pub fn on_datagram(
        &mut self,
        now: Instant,
        d: &[u8],
        addr: SocketAddr,
        take: impl FnOnce() -> Datagram,
    ) -> bool {
        match classify(d) {
            Kind::Short => {
                let Some(p) = self.pending.get_mut(&addr) else {
                    return true;
                };
                if p.held.len() >= MAX_HELD_PER_PEER || self.held_bytes + d.len() > MAX_HELD_BYTES {
                    self.stats.over_bound += 1;
                    return true;
                }
                self.held_bytes += d.len();
                self.stats.held += 1;
                p.held.push(take());
                false
            }
            Kind::Long {
                handshake: true, ..
            } => {
                self.finish(now, addr);
                true
            }
            Kind::Long { initial: true, .. } if d.len() >= MIN_INITIAL_DATAGRAM => {
                self.open(now, addr);
                true
            }
            Kind::Long { .. } | Kind::Other => true,
        }
    }

    fn open(&mut self, now: Instant, addr: SocketAddr) {
        if self.pending.contains_key(&addr)
            || self
                .done
                .get(&addr)
                .is_some_and(|&t| now.duration_since(t) < DONE_FOR)
        {
            return;
        }
        if self.pending.len() >= MAX_PENDING {
            self.stats.over_bound += 1;
            return;
        }
        self.pending.insert(
            addr,
            Pending {
                since: now,
                held: Vec::new(),
            },
        );
    }

    /// `addr`'s Handshake packet came: its held datagrams go on, after that one.
    fn finish(&mut self, now: Instant, addr: SocketAddr) {
        if let Some(p) = self.pending.remove(&addr) {
            self.release(p);
        }
        if self.done.len() >= MAX_DONE {
            self.done.retain(|_, t| now.duration_since(*t) < DONE_FOR);
            if self.done.len() >= MAX_DONE {
                return;
            }
        }
        self.done.insert(addr, now);
    }

    fn release(&mut self, p: Pending) {
        for d in p.held {
            self.held_bytes -= d.data.len();
            self.ready.push_back(d);
        }
    }

    /// Hands on what waited longer than [`HOLD_FOR`].
    pub fn expire(&mut self, now: Instant) {
        if self.pending.is_empty()
            || self
                .last_sweep
                .is_some_and(|t| now.duration_since(t) < HOLD_FOR / 10)
        {
            return;
        }
        self.last_sweep = Some(now);
        let old: Vec<SocketAddr> = self
            .pending
            .iter()
            .filter(|(_, p)| now.duration_since(p.since) >= HOLD_FOR)
            .map(|(a, _)| *a)
            .collect();
        for a in old {
            if let Some(p) = self.pending.remove(&a) {
                self.stats.expired += p.held.len() as u64;
                self.release(p);
            }
        }
    }

    /// The next held datagram to pass on.
    pub fn pop_ready(&mut self) -> Option<Datagram> {
        self.ready.pop_front()
    }
}

/// A UDP socket for a server endpoint that holds a handshaking client's early 1-RTT
/// datagrams until its Handshake packet (see the module docs).
pub struct HoldingSocket {
    inner: Arc<dyn AsyncUdpSocket>,
    hold: Mutex<Hold>,
}

impl fmt::Debug for HoldingSocket {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("HoldingSocket")
            .field("inner", &self.inner)
            .finish_non_exhaustive()
    }
}

impl HoldingSocket {
    pub fn new(inner: Arc<dyn AsyncUdpSocket>) -> Self {
        Self {
            inner,
            hold: Mutex::new(Hold::default()),
        }
    }

    /// Held datagrams into the caller's buffers, one each.
    fn fill_ready(hold: &mut Hold, bufs: &mut [IoSliceMut<'_>], meta: &mut [RecvMeta]) -> usize {
        let mut n = 0;
        while n < bufs.len().min(meta.len()) {
            let Some(d) = hold.pop_ready() else { break };
            if d.data.len() > bufs[n].len() {
                continue; // cannot happen: it came in a buffer of the same size
            }
            bufs[n][..d.data.len()].copy_from_slice(&d.data);
            meta[n] = RecvMeta {
                addr: d.addr,
                len: d.data.len(),
                stride: d.data.len(),
                ecn: d.ecn,
                dst_ip: d.dst_ip,
            };
            n += 1;
        }
        n
    }

    /// Runs the first `n` received entries through the hold; returns how many remain.
    fn filter(
        hold: &mut Hold,
        now: Instant,
        bufs: &mut [IoSliceMut<'_>],
        meta: &mut [RecvMeta],
        n: usize,
    ) -> usize {
        hold.expire(now);
        // Fast path: nothing in a handshake and no long header in the batch.
        let any_long = || {
            (0..n).any(|i| {
                let m = &meta[i];
                (0..m.len)
                    .step_by(m.stride.max(1))
                    .any(|at| bufs[i].get(at).is_some_and(|b| b & 0x80 != 0))
            })
        };
        if hold.is_idle() && !any_long() {
            return n;
        }
        // Slow path (handshakes in progress): every segment through the hold; what it
        // keeps is copied there, nothing else is copied.
        let mut taken: Vec<(usize, usize)> = Vec::new();
        for i in 0..n {
            let m = meta[i];
            let stride = m.stride.max(1);
            for at in (0..m.len).step_by(stride) {
                let seg = &bufs[i][at..(at + stride).min(m.len)];
                let pass = hold.on_datagram(now, seg, m.addr, || Datagram {
                    addr: m.addr,
                    ecn: m.ecn,
                    dst_ip: m.dst_ip,
                    data: seg.to_vec(),
                });
                if !pass {
                    taken.push((i, at));
                }
            }
        }
        if taken.is_empty() {
            return n;
        }
        // Some were held (rare: a reordered handshake): the rest, entry by entry, closes up.
        // Kept segments stay `stride` long but for the last: still a valid batch.
        let mut kept: Vec<(RecvMeta, Vec<u8>)> = Vec::with_capacity(n);
        for i in 0..n {
            let m = meta[i];
            let stride = m.stride.max(1);
            let data: Vec<u8> = (0..m.len)
                .step_by(stride)
                .filter(|at| !taken.contains(&(i, *at)))
                .flat_map(|at| bufs[i][at..(at + stride).min(m.len)].iter().copied())
                .collect();
            if !data.is_empty() {
                kept.push((
                    RecvMeta {
                        len: data.len(),
                        ..m
                    },
                    data,
                ));
            }
        }
        let mut out = 0;
        for (m, data) in kept {
            if out >= bufs.len().min(meta.len()) {
                break; // cannot happen: entries only shrink
            }
            bufs[out][..data.len()].copy_from_slice(&data);
            meta[out] = m;
            out += 1;
        }
        out
    }
}

impl AsyncUdpSocket for HoldingSocket {
    fn create_io_poller(self: Arc<Self>) -> Pin<Box<dyn UdpPoller>> {
        self.inner.clone().create_io_poller()
    }

    fn try_send(&self, transmit: &Transmit) -> io::Result<()> {
        self.inner.try_send(transmit)
    }

    fn poll_recv(
        &self,
        cx: &mut Context,
        bufs: &mut [IoSliceMut<'_>],
        meta: &mut [RecvMeta],
    ) -> Poll<io::Result<usize>> {
        // Only quinn's endpoint driver calls this: the lock is never contended.
        let mut hold = self.hold.lock().unwrap_or_else(|e| e.into_inner());
        loop {
            let n = Self::fill_ready(&mut hold, bufs, meta);
            if n > 0 {
                return Poll::Ready(Ok(n));
            }
            let n = ready!(self.inner.poll_recv(cx, bufs, meta))?;
            let n = Self::filter(&mut hold, Instant::now(), bufs, meta, n);
            if n > 0 {
                return Poll::Ready(Ok(n));
            }
        }
    }

    fn local_addr(&self) -> io::Result<SocketAddr> {
        self.inner.local_addr()
    }

    fn max_transmit_segments(&self) -> usize {
        self.inner.max_transmit_segments()
    }

    fn max_receive_segments(&self) -> usize {
        self.inner.max_receive_segments()
    }

    fn may_fragment(&self) -> bool {
        self.inner.may_fragment()
    }
}

/// A server endpoint on `listen` whose socket holds early 1-RTT datagrams of handshakes.
pub fn server_endpoint(
    config: quinn::ServerConfig,
    listen: SocketAddr,
) -> io::Result<quinn::Endpoint> {
    let socket = std::net::UdpSocket::bind(listen)?;
    let runtime = Arc::new(quinn::TokioRuntime);
    let inner = quinn::Runtime::wrap_udp_socket(&*runtime, socket)?;
    quinn::Endpoint::new_with_abstract_socket(
        quinn::EndpointConfig::default(),
        Some(config),
        Arc::new(HoldingSocket::new(inner)),
        runtime,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A v1 long-header packet of type `ty` (0 Initial, 2 Handshake) with `payload` bytes
    /// of packet number and payload, as RFC 9000 §17.2 lays it out.
    fn long(ty: u8, payload: usize) -> Vec<u8> {
        let mut p = vec![0xc0 | (ty << 4) | 0x01];
        p.extend_from_slice(&1u32.to_be_bytes());
        p.push(8);
        p.extend_from_slice(&[0xd1; 8]);
        p.push(8);
        p.extend_from_slice(&[0x5c; 8]);
        if ty == 0 {
            p.push(0); // no token
        }
        // Length as a 2-byte varint.
        p.extend_from_slice(&(0x4000 | payload as u16).to_be_bytes());
        p.extend(std::iter::repeat_n(0xaa, payload));
        p
    }

    fn short(len: usize) -> Vec<u8> {
        let mut p = vec![0x41];
        p.extend(std::iter::repeat_n(0xbb, len - 1));
        p
    }

    fn addr(port: u16) -> SocketAddr {
        SocketAddr::from(([10, 0, 0, 1], port))
    }

    fn dgram(a: SocketAddr, data: &[u8]) -> Datagram {
        Datagram {
            addr: a,
            ecn: None,
            dst_ip: None,
            data: data.to_vec(),
        }
    }

    #[test]
    fn classifies_coalesced_packets() {
        assert_eq!(classify(&short(40)), Kind::Short);
        assert_eq!(classify(&[]), Kind::Other);
        let initial = long(0, 1162);
        assert_eq!(
            classify(&initial),
            Kind::Long {
                initial: true,
                handshake: false
            }
        );
        // The client's second flight: an Initial ACK, its Finished, a 1-RTT packet.
        let mut flight = long(0, 30);
        flight.extend(long(2, 60));
        flight.extend(short(50));
        assert_eq!(
            classify(&flight),
            Kind::Long {
                initial: true,
                handshake: true
            }
        );
        // A length running past the datagram is not a packet.
        let mut cut = long(2, 60);
        cut.truncate(40);
        assert_eq!(classify(&cut), Kind::Other);
        // Another version is not ours to read.
        let mut v2 = long(2, 60);
        v2[1..5].copy_from_slice(&0x6b33_43cfu32.to_be_bytes());
        assert_eq!(classify(&v2), Kind::Other);
    }

    #[test]
    fn early_short_packets_wait_for_their_handshake_packet() {
        let mut h = Hold::default();
        let t = Instant::now();
        let (a, b) = (addr(1), addr(2));
        let initial = long(0, 1180);
        assert!(h.on_datagram(t, &initial, a, || unreachable!()));
        // 1-RTT packets that overtook the Finished are held; another address's are not.
        let (s1, s2) = (short(100), short(101));
        assert!(!h.on_datagram(t, &s1, a, || dgram(a, &s1)));
        assert!(!h.on_datagram(t, &s2, a, || dgram(a, &s2)));
        assert!(h.on_datagram(t, &s1, b, || unreachable!()));
        assert!(h.pop_ready().is_none());
        // The Finished goes on, then the held packets in their order.
        let fin = long(2, 60);
        assert!(h.on_datagram(t, &fin, a, || unreachable!()));
        assert_eq!(h.pop_ready().unwrap().data, s1);
        assert_eq!(h.pop_ready().unwrap().data, s2);
        assert!(h.pop_ready().is_none());
        assert!(h.is_idle());
        // Done: a late duplicate Initial does not hold the connection's packets again.
        assert!(h.on_datagram(t, &initial, a, || unreachable!()));
        assert!(h.on_datagram(t, &s1, a, || unreachable!()));
        assert_eq!(h.stats().held, 2);
    }

    #[test]
    fn holds_are_bounded_in_count_size_and_time() {
        let mut h = Hold::default();
        let t = Instant::now();
        let a = addr(1);
        // A small Initial (not padded as a client's must be) opens nothing.
        assert!(h.on_datagram(t, &long(0, 100), a, || unreachable!()));
        assert!(h.on_datagram(t, &short(50), a, || unreachable!()));
        assert!(h.on_datagram(t, &long(0, 1180), a, || unreachable!()));
        let s = short(1200);
        for _ in 0..MAX_HELD_PER_PEER {
            assert!(!h.on_datagram(t, &s, a, || dgram(a, &s)));
        }
        assert!(h.on_datagram(t, &s, a, || unreachable!()));
        assert_eq!(h.stats().over_bound, 1);
        // No Handshake packet: the held ones go on after HOLD_FOR.
        h.expire(t + HOLD_FOR / 2);
        assert!(h.pop_ready().is_none());
        h.expire(t + HOLD_FOR);
        let mut n = 0;
        while h.pop_ready().is_some() {
            n += 1;
        }
        assert_eq!(n, MAX_HELD_PER_PEER);
        assert_eq!(h.stats().expired, MAX_HELD_PER_PEER as u64);
        // The total is bounded as well.
        let mut h = Hold::default();
        let big = short(1400);
        let per = MAX_HELD_BYTES / big.len();
        let mut held = 0;
        for port in 0..(per / MAX_HELD_PER_PEER + 2) as u16 {
            let a = addr(100 + port);
            assert!(h.on_datagram(t, &long(0, 1180), a, || unreachable!()));
            for _ in 0..MAX_HELD_PER_PEER {
                if !h.on_datagram(t, &big, a, || dgram(a, &big)) {
                    held += 1;
                }
            }
        }
        assert_eq!(held, per);
    }
}
