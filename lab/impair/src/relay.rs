//! The impairment relay: UDP (for QUIC) and TCP (for HTTP peers), each direction through its
//! own seeded [`Link`]. Listens on one address and forwards to a target; replies come back
//! through the other direction's link. Counters are shared atomics the lab samples.
//!
//! UDP: every client address gets its own upstream socket (so replies find their way back) and
//! its own pair of links, seeded from the relay's seed and the flow's number. TCP: a byte
//! stream cannot lose bytes; each read is cut into MSS-sized packets for the loss process (so
//! a loss rate means the same per packet as for UDP), and a read with a lost packet is
//! delivered one loss recovery late (about 1.25 RTT, as fast retransmit; head-of-line
//! blocking, everything behind it waits). A blackhole holds bytes until the link is back, a
//! full rate-limit queue applies backpressure; reordering and duplication do not apply.

use std::collections::{BinaryHeap, HashMap};
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use bytes::Bytes;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream, UdpSocket};
use tokio::sync::mpsc;
use tokio::task::JoinSet;
use tokio::time::Instant;

use crate::impair::{Fate, Link, LinkSpec, SharedRate};

/// Most UDP flows (client addresses) one relay keeps; later ones are refused.
pub const MAX_FLOWS: usize = 4096;
/// Largest datagram forwarded.
const MAX_DATAGRAM: usize = 65_535;

/// One direction's counters.
#[derive(Debug, Default)]
pub struct Counters {
    /// Bytes offered to the link.
    pub bytes_in: AtomicU64,
    /// Bytes delivered (duplicates count twice).
    pub bytes_out: AtomicU64,
    pub packets_in: AtomicU64,
    pub lost: AtomicU64,
    pub blackholed: AtomicU64,
    pub queue_drops: AtomicU64,
}

impl Counters {
    pub fn get(c: &AtomicU64) -> u64 {
        c.load(Ordering::Relaxed)
    }
    pub fn add(c: &AtomicU64, v: u64) {
        c.fetch_add(v, Ordering::Relaxed);
    }
}

/// Both directions: `up` is client → target, `down` target → client.
#[derive(Debug, Default)]
pub struct RelayStats {
    pub up: Counters,
    pub down: Counters,
    pub flows: AtomicU64,
}

impl RelayStats {
    /// Bytes sent on, both directions together.
    pub fn bytes_out(&self) -> u64 {
        Counters::get(&self.up.bytes_out) + Counters::get(&self.down.bytes_out)
    }
}

/// A running relay; dropping it stops it.
#[derive(Debug)]
pub struct Relay {
    pub local: SocketAddr,
    pub stats: Arc<RelayStats>,
    tasks: JoinSet<()>,
}

impl Relay {
    pub async fn stop(mut self) {
        self.tasks.shutdown().await;
    }
}

/// What the two directions look like.
#[derive(Debug, Clone, Default)]
pub struct RelaySpec {
    pub up: LinkSpec,
    pub down: LinkSpec,
    pub seed: u64,
}

impl RelaySpec {
    /// A plain delay of `rtt_ms` per round trip, half each way, nothing else impaired.
    pub fn round_trip(rtt_ms: f64, seed: u64) -> Self {
        let half = LinkSpec {
            delay_ms: rtt_ms / 2.0,
            ..LinkSpec::default()
        };
        Self {
            up: half.clone(),
            down: half,
            seed,
        }
    }
}

fn flow_seed(seed: u64, flow: u64, dir: u64) -> u64 {
    // splitmix64 of the triple: distinct, well-spread seeds per flow and direction.
    let mut z =
        seed ^ flow.wrapping_mul(0x9e37_79b9_7f4a_7c15) ^ dir.wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

struct Due {
    at: Instant,
    n: u64,
    data: Bytes,
}

impl PartialEq for Due {
    fn eq(&self, o: &Self) -> bool {
        (self.at, self.n) == (o.at, o.n)
    }
}
impl Eq for Due {}
impl PartialOrd for Due {
    fn partial_cmp(&self, o: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(o))
    }
}
impl Ord for Due {
    fn cmp(&self, o: &Self) -> std::cmp::Ordering {
        // Earliest first in a max-heap.
        (o.at, o.n).cmp(&(self.at, self.n))
    }
}

/// Sends datagrams at their due times: `send(data)` is called in due order.
async fn delay_line<F, Fut>(mut rx: mpsc::UnboundedReceiver<(Instant, Bytes)>, mut send: F)
where
    F: FnMut(Bytes) -> Fut,
    Fut: std::future::Future<Output = ()>,
{
    let mut heap = BinaryHeap::new();
    let mut n = 0u64;
    loop {
        let next = heap.peek().map(|d: &Due| d.at);
        tokio::select! {
            m = rx.recv() => match m {
                Some((at, data)) => {
                    if heap.is_empty() && at <= Instant::now() {
                        send(data).await;
                    } else {
                        n += 1;
                        heap.push(Due { at, n, data });
                    }
                }
                None => return,
            },
            _ = async { if let Some(at) = next { tokio::time::sleep_until(at).await } else { std::future::pending::<()>().await } } => {
                let now = Instant::now();
                while heap.peek().is_some_and(|d| d.at <= now) {
                    if let Some(d) = heap.pop() {
                        send(d.data).await;
                    }
                }
            }
        }
    }
}

/// Runs one datagram through `link`, queueing its deliveries on `tx`.
fn impair(
    link: &mut Link,
    start: Instant,
    data: Bytes,
    c: &Counters,
    tx: &mpsc::UnboundedSender<(Instant, Bytes)>,
) {
    Counters::add(&c.bytes_in, data.len() as u64);
    Counters::add(&c.packets_in, 1);
    match link.admit(start.elapsed(), data.len()) {
        Fate::Deliver(at, dup) => {
            Counters::add(&c.bytes_out, data.len() as u64);
            if let Some(d) = dup {
                Counters::add(&c.bytes_out, data.len() as u64);
                let _ = tx.send((start + d, data.clone()));
            }
            let _ = tx.send((start + at, data));
        }
        Fate::Lost => Counters::add(&c.lost, 1),
        Fate::Blackholed => Counters::add(&c.blackholed, 1),
        Fate::QueueFull => Counters::add(&c.queue_drops, 1),
    }
}

/// Starts a UDP relay on `listen` forwarding to `target`.
pub async fn udp(
    listen: SocketAddr,
    target: SocketAddr,
    spec: RelaySpec,
) -> std::io::Result<Relay> {
    let front = Arc::new(UdpSocket::bind(listen).await?);
    let local = front.local_addr()?;
    let stats = Arc::new(RelayStats::default());
    let mut tasks = JoinSet::new();
    let start = Instant::now();
    // One rate limit per direction for the whole link, whatever the number of flows.
    let (up_rate, down_rate) = (SharedRate::default(), SharedRate::default());
    {
        let stats = stats.clone();
        tasks.spawn(async move {
            let mut flows: HashMap<SocketAddr, (Link, mpsc::UnboundedSender<(Instant, Bytes)>)> =
                HashMap::new();
            let mut flow_tasks = JoinSet::new();
            let mut buf = vec![0u8; MAX_DATAGRAM];
            loop {
                let (n, from) = match front.recv_from(&mut buf).await {
                    Ok(v) => v,
                    Err(e) => {
                        // ICMP errors surface here on Linux; they do not end the relay.
                        tracing::debug!("relay recv: {e}");
                        continue;
                    }
                };
                let data = Bytes::copy_from_slice(&buf[..n]);
                if !flows.contains_key(&from) {
                    if flows.len() >= MAX_FLOWS {
                        tracing::warn!(%from, "relay: too many flows, datagram dropped");
                        continue;
                    }
                    // Loopback targets from loopback (a client's own 127.x.y.z address,
                    // so a crowd from many addresses stays many clients to the server);
                    // others (a namespace's veth) from whatever address routes there.
                    let bind: SocketAddr = match (target.is_ipv4(), target.ip().is_loopback()) {
                        (true, true) if from.ip().is_loopback() => (from.ip(), 0).into(),
                        (true, true) => ([127, 0, 0, 1], 0).into(),
                        (true, false) => ([0, 0, 0, 0], 0).into(),
                        (false, true) => (std::net::Ipv6Addr::LOCALHOST, 0).into(),
                        (false, false) => (std::net::Ipv6Addr::UNSPECIFIED, 0).into(),
                    };
                    let back = match UdpSocket::bind(bind).await {
                        Ok(s) => Arc::new(s),
                        Err(e) => {
                            tracing::warn!("relay: cannot open a flow socket: {e}");
                            continue;
                        }
                    };
                    if let Err(e) = back.connect(target).await {
                        tracing::warn!("relay: cannot reach {target}: {e}");
                        continue;
                    }
                    let k = flows.len() as u64;
                    stats.flows.fetch_add(1, Ordering::Relaxed);
                    // Up: client → target through `back`.
                    let (up_tx, up_rx) = mpsc::unbounded_channel();
                    let b = back.clone();
                    flow_tasks.spawn(delay_line(up_rx, move |d: Bytes| {
                        let b = b.clone();
                        async move {
                            let _ = b.send(&d).await;
                        }
                    }));
                    // Down: target → client through `front`.
                    let (down_tx, down_rx) = mpsc::unbounded_channel();
                    let f = front.clone();
                    flow_tasks.spawn(delay_line(down_rx, move |d: Bytes| {
                        let f = f.clone();
                        async move {
                            let _ = f.send_to(&d, from).await;
                        }
                    }));
                    let mut down_link = Link::sharing(
                        spec.down.clone(),
                        flow_seed(spec.seed, k, 1),
                        down_rate.clone(),
                    );
                    let stats2 = stats.clone();
                    flow_tasks.spawn(async move {
                        let mut buf = vec![0u8; MAX_DATAGRAM];
                        loop {
                            match back.recv(&mut buf).await {
                                Ok(n) => {
                                    let d = Bytes::copy_from_slice(&buf[..n]);
                                    impair(&mut down_link, start, d, &stats2.down, &down_tx);
                                }
                                Err(e) => tracing::debug!("relay flow recv: {e}"),
                            }
                        }
                    });
                    flows.insert(
                        from,
                        (
                            Link::sharing(
                                spec.up.clone(),
                                flow_seed(spec.seed, k, 0),
                                up_rate.clone(),
                            ),
                            up_tx,
                        ),
                    );
                }
                if let Some((link, tx)) = flows.get_mut(&from) {
                    impair(link, start, data, &stats.up, tx);
                }
            }
        });
    }
    Ok(Relay {
        local,
        stats,
        tasks,
    })
}

/// Pumps one TCP direction through `link`.
async fn tcp_pump(
    mut r: tokio::net::tcp::OwnedReadHalf,
    mut w: tokio::net::tcp::OwnedWriteHalf,
    mut link: Link,
    start: Instant,
    stats: Arc<RelayStats>,
    up: bool,
) {
    let c = || if up { &stats.up } else { &stats.down };
    let (tx, mut rx) = mpsc::channel::<(Instant, Bytes)>(64);
    let writer = tokio::spawn(async move {
        while let Some((at, data)) = rx.recv().await {
            tokio::time::sleep_until(at).await;
            if w.write_all(&data).await.is_err() {
                return;
            }
        }
        let _ = w.shutdown().await;
    });
    // A lost packet of a stream is recovered by fast retransmit / RACK about 1.25 round
    // trips after it was due (both directions taken as this one's delay), at least 5 ms.
    // Congestion-window reduction is not modelled: the stream keeps its rate.
    let recovery = Duration::from_secs_f64((2.5 * link.spec().delay_ms / 1000.0).max(0.005));
    let mut last = start;
    let mut buf = vec![0u8; 16 * 1024];
    loop {
        let n = match r.read(&mut buf).await {
            Ok(0) | Err(_) => break,
            Ok(n) => n,
        };
        let data = Bytes::copy_from_slice(&buf[..n]);
        Counters::add(&c().bytes_in, n as u64);
        Counters::add(&c().packets_in, n.div_ceil(TCP_MSS) as u64);
        let at = loop {
            match link.admit_stream(start.elapsed(), n, TCP_MSS) {
                (Fate::Deliver(at, _), 0) => break start + at,
                (Fate::Deliver(at, _), lost) => {
                    Counters::add(&c().lost, lost as u64);
                    // Late, not gone; everything behind it waits (in-order delivery).
                    break start + at + recovery;
                }
                (Fate::Blackholed, _) => {
                    Counters::add(&c().blackholed, 1);
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
                (Fate::QueueFull, _) => tokio::time::sleep(Duration::from_millis(1)).await,
                (Fate::Lost, _) => break Instant::now() + recovery,
            }
        };
        last = last.max(at);
        Counters::add(&c().bytes_out, n as u64);
        if tx.send((last, data)).await.is_err() {
            break;
        }
    }
    drop(tx);
    let _ = writer.await;
}

/// Bytes per packet when a TCP stream is cut into packets for the loss process.
pub const TCP_MSS: usize = 1448;

/// Starts a TCP relay on `listen` forwarding to `target`.
pub async fn tcp(
    listen: SocketAddr,
    target: SocketAddr,
    spec: RelaySpec,
) -> std::io::Result<Relay> {
    let listener = TcpListener::bind(listen).await?;
    let local = listener.local_addr()?;
    let stats = Arc::new(RelayStats::default());
    let mut tasks = JoinSet::new();
    let start = Instant::now();
    // One rate limit per direction for the whole link, whatever the number of flows.
    let (up_rate, down_rate) = (SharedRate::default(), SharedRate::default());
    {
        let stats = stats.clone();
        tasks.spawn(async move {
            let mut conns = JoinSet::new();
            let mut k = 0u64;
            loop {
                let client = match listener.accept().await {
                    Ok((c, _)) => c,
                    Err(e) => {
                        // E.g. out of file descriptors: do not spin.
                        tracing::warn!("relay accept: {e}");
                        tokio::time::sleep(Duration::from_millis(50)).await;
                        continue;
                    }
                };
                let server = match TcpStream::connect(target).await {
                    Ok(s) => s,
                    Err(e) => {
                        tracing::warn!("relay: cannot reach {target}: {e}");
                        continue;
                    }
                };
                let _ = client.set_nodelay(true);
                let _ = server.set_nodelay(true);
                stats.flows.fetch_add(1, Ordering::Relaxed);
                let (cr, cw) = client.into_split();
                let (sr, sw) = server.into_split();
                let up =
                    Link::sharing(spec.up.clone(), flow_seed(spec.seed, k, 0), up_rate.clone());
                let down = Link::sharing(
                    spec.down.clone(),
                    flow_seed(spec.seed, k, 1),
                    down_rate.clone(),
                );
                k += 1;
                conns.spawn(tcp_pump(cr, sw, up, start, stats.clone(), true));
                conns.spawn(tcp_pump(sr, cw, down, start, stats.clone(), false));
                while conns.try_join_next().is_some() {}
            }
        });
    }
    Ok(Relay {
        local,
        stats,
        tasks,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn echo_udp() -> SocketAddr {
        let s = UdpSocket::bind("127.0.0.1:0").await.unwrap();
        let a = s.local_addr().unwrap();
        tokio::spawn(async move {
            let mut b = vec![0u8; 2048];
            while let Ok((n, from)) = s.recv_from(&mut b).await {
                let _ = s.send_to(&b[..n], from).await;
            }
        });
        a
    }

    #[tokio::test]
    async fn udp_round_trip_pays_both_delays() {
        let target = echo_udp().await;
        let spec = RelaySpec {
            up: LinkSpec {
                delay_ms: 30.0,
                ..Default::default()
            },
            down: LinkSpec {
                delay_ms: 20.0,
                ..Default::default()
            },
            seed: 1,
        };
        let relay = udp("127.0.0.1:0".parse().unwrap(), target, spec)
            .await
            .unwrap();
        let c = UdpSocket::bind("127.0.0.1:0").await.unwrap();
        c.connect(relay.local).await.unwrap();
        let mut b = [0u8; 64];
        for i in 0..3u8 {
            let t = Instant::now();
            c.send(&[i; 10]).await.unwrap();
            let n = tokio::time::timeout(Duration::from_secs(2), c.recv(&mut b))
                .await
                .unwrap()
                .unwrap();
            let rtt = t.elapsed();
            assert_eq!(&b[..n], &[i; 10]);
            assert!(rtt >= Duration::from_millis(50), "{rtt:?}");
            assert!(rtt < Duration::from_millis(90), "{rtt:?}");
        }
        assert_eq!(Counters::get(&relay.stats.up.bytes_out), 30);
        assert_eq!(Counters::get(&relay.stats.down.bytes_out), 30);
        relay.stop().await;
    }

    #[tokio::test]
    async fn udp_loss_drops_packets() {
        let target = echo_udp().await;
        let spec = RelaySpec {
            up: LinkSpec {
                loss: 0.5,
                ..Default::default()
            },
            ..Default::default()
        };
        let relay = udp("127.0.0.1:0".parse().unwrap(), target, spec)
            .await
            .unwrap();
        let c = UdpSocket::bind("127.0.0.1:0").await.unwrap();
        c.connect(relay.local).await.unwrap();
        for _ in 0..400 {
            c.send(&[1; 8]).await.unwrap();
        }
        let mut got = 0;
        let mut b = [0u8; 64];
        while tokio::time::timeout(Duration::from_millis(300), c.recv(&mut b))
            .await
            .is_ok()
        {
            got += 1;
        }
        assert!((150..=250).contains(&got), "{got}");
        assert_eq!(Counters::get(&relay.stats.up.lost) + got, 400);
    }

    #[tokio::test]
    async fn tcp_rate_limit_and_delay() {
        let server = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let target = server.local_addr().unwrap();
        tokio::spawn(async move {
            let (mut s, _) = server.accept().await.unwrap();
            s.write_all(&vec![7u8; 200_000]).await.unwrap();
            s.shutdown().await.unwrap();
        });
        let spec = RelaySpec {
            down: LinkSpec {
                delay_ms: 50.0,
                rate_kbps: 4000, // 500 kB/s
                ..Default::default()
            },
            ..Default::default()
        };
        let relay = tcp("127.0.0.1:0".parse().unwrap(), target, spec)
            .await
            .unwrap();
        let t = Instant::now();
        let mut c = TcpStream::connect(relay.local).await.unwrap();
        let mut all = Vec::new();
        c.read_to_end(&mut all).await.unwrap();
        let took = t.elapsed().as_secs_f64();
        assert_eq!(all.len(), 200_000);
        assert!(all.iter().all(|b| *b == 7));
        // 200 kB at 500 kB/s = 0.4 s, plus the 50 ms delay.
        assert!((0.42..0.7).contains(&took), "{took}");
    }
}
