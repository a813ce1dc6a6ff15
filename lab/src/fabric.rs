//! The lab's packet-level network (root only). Every node runs in its own network namespace
//! whose only interface is a TUN device held by this process; the players' addresses live on
//! one more TUN device in the runner's namespace. Each IP packet a kernel sends (QUIC in UDP,
//! or a real kernel TCP segment with its congestion control, slow start and retransmissions)
//! is read here, crosses the links of its route through the sans-IO link model
//! ([`impair::Link`]: delay, jitter, loss, duplication, rate limit with its queue, blackholes,
//! changes), and is written into the destination's TUN device. So both stacks of a comparison
//! cross the same model, packet by packet.
//!
//! Addressing: one /16 per run (`10.(200 + pid % 50).0.0`); nodes get `10.S.0.n`, runner-side
//! addresses (one per player) `10.S.1.1` onwards. A route is a list of links between two
//! addresses, crossed in order in the `up` direction one way and in reverse, `down`, the
//! other; links are shared by every route that lists them (one queue and one rate per
//! direction, as a real link). Packets between addresses without a route are forwarded
//! unimpaired (counted); packets to unknown addresses, and anything not IPv4, are dropped.
//!
//! The forwarder runs on a thread of its own (a current-thread tokio runtime), so the
//! players' work does not delay its timers; it has 1 ms timer resolution.
//!
//! Links' schedules (`change_at_s`, blackhole windows) count from the moment the plays start
//! ([`ScenarioClock::begin`]), not from the fabric's start: the systems compared take
//! different times to set up (processes, warming, packaging), and a schedule counted from
//! the fabric's start met each system's plays at a different phase (a blackhole every 7 s
//! hit one system's first plays and missed the other's). Until then every link forwards as
//! its first phase does, without blackholes.

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap};
use std::net::Ipv4Addr;
use std::sync::Arc;
use std::sync::atomic::AtomicU64;
use std::time::Duration;

use anyhow::{Context as _, bail};
use bytes::{Bytes, BytesMut};
use tokio::sync::{SetOnce, mpsc, watch};
use tokio::time::Instant;
use tokio_tun::Tun;

use super::impair::{Fate, Link, LinkSpec};
use super::netns::{Topology, ip, run};
use super::relay::{Counters, RelayStats};

/// Packets held in flight (inside links) at most; beyond, arrivals are dropped (counted).
const MAX_IN_FLIGHT: usize = 500_000;
/// Largest packet read from a device (the devices' MTU is 1500; room to spare).
const MAX_PACKET: usize = 4096;
/// Runner-side addresses at most (players).
pub const MAX_LOCAL: usize = 250 * 40;

/// A link of the fabric (both directions).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct LinkId(usize);

/// Counters of the forwarder itself.
#[derive(Debug, Default)]
pub struct FabricStats {
    pub packets: AtomicU64,
    /// Between addresses without a route: forwarded unimpaired.
    pub unrouted: AtomicU64,
    /// To no known address, or not IPv4.
    pub dropped: AtomicU64,
    /// Dropped because too many packets were in flight, or a device would not take them.
    pub overflow: AtomicU64,
}

struct Device {
    name: String,
    tun: Arc<Tun>,
}

struct LinkDef {
    up: LinkSpec,
    down: LinkSpec,
    seed: u64,
    stats: Arc<RelayStats>,
}

#[derive(Debug, Clone, Copy)]
struct Hop {
    link: usize,
    up: bool,
}

/// The forwarder's runtime while the fabric is put together. A fabric dropped before it
/// started (an error building it) drops it in the caller's async context, where a tokio
/// runtime must not be dropped (it panicked there, hiding the error): it is shut down in
/// the background instead.
struct FabricRuntime(Option<tokio::runtime::Runtime>);

impl Drop for FabricRuntime {
    fn drop(&mut self) {
        if let Some(rt) = self.0.take() {
            rt.shutdown_background();
        }
    }
}

/// A network being put together: devices, addresses, links and routes. [`Fabric::start`]
/// starts forwarding; namespaces are removed when the running fabric is dropped.
pub struct Fabric {
    topo: Topology,
    rt: FabricRuntime,
    subnet: u8,
    devices: Vec<Device>,
    owner: HashMap<Ipv4Addr, usize>,
    links: Vec<LinkDef>,
    routes: HashMap<(Ipv4Addr, Ipv4Addr), Arc<[Hop]>>,
    nodes: u8,
    locals: usize,
}

impl Fabric {
    pub fn new() -> anyhow::Result<Self> {
        let topo = Topology::new()?;
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .context("the fabric's runtime")?;
        Ok(Self {
            topo,
            rt: FabricRuntime(Some(rt)),
            subnet: free_subnet(),
            devices: Vec::new(),
            owner: HashMap::new(),
            links: Vec::new(),
            routes: HashMap::new(),
            nodes: 0,
            locals: 0,
        })
    }

    fn device(&mut self) -> anyhow::Result<usize> {
        let name = format!("sgt{}d{}", std::process::id() % 100_000, self.devices.len());
        // The device's fd is registered with the forwarder's runtime.
        let Some(rt) = &self.rt.0 else {
            anyhow::bail!("the fabric's runtime is gone");
        };
        let _enter = rt.enter();
        let tun = Tun::builder()
            .name(&name)
            .build()
            .with_context(|| format!("cannot create TUN device {name} (/dev/net/tun)"))?
            .pop()
            .context("no TUN queue")?;
        self.devices.push(Device {
            name,
            tun: Arc::new(tun),
        });
        Ok(self.devices.len() - 1)
    }

    /// A node: a namespace named after `name` whose one interface is a device of the fabric,
    /// with one address. Returns the namespace and the address.
    pub fn node(&mut self, name: &str) -> anyhow::Result<(String, Ipv4Addr)> {
        self.nodes = self.nodes.checked_add(1).context("too many nodes")?;
        let addr = Ipv4Addr::new(10, self.subnet, 0, self.nodes);
        let ns = self.topo.namespace(name)?;
        let d = self.device()?;
        let dev = self.devices[d].name.clone();
        ip(&["link", "set", &dev, "netns", &ns])?;
        let cidr = format!("{addr}/16");
        ip(&["-n", &ns, "addr", "add", &cidr, "dev", &dev])?;
        ip(&["-n", &ns, "link", "set", &dev, "mtu", "1500", "up"])?;
        self.owner.insert(addr, d);
        Ok((ns, addr))
    }

    /// `count` addresses in the runner's namespace (players: one each), on one device. Once
    /// per fabric: replies to a runner-side address must arrive on the device its route
    /// names (reverse-path filtering), so there is one such device.
    pub fn local(&mut self, count: usize) -> anyhow::Result<Vec<Ipv4Addr>> {
        if self.locals > 0 {
            bail!("the runner-side addresses of a fabric are made at once");
        }
        if count == 0 || count > MAX_LOCAL {
            bail!("1 to {MAX_LOCAL} runner-side addresses");
        }
        let d = self.device()?;
        let dev = self.devices[d].name.clone();
        let mut batch = String::new();
        let mut addrs = Vec::with_capacity(count);
        for k in 0..count {
            let a = Ipv4Addr::new(10, self.subnet, 1 + (k / 250) as u8, 1 + (k % 250) as u8);
            batch.push_str(&format!("addr add {a}/32 dev {dev}\n"));
            self.owner.insert(a, d);
            addrs.push(a);
        }
        self.locals = count;
        ip_batch(&batch)?;
        ip(&["link", "set", &dev, "mtu", "1500", "up"])?;
        let net = format!("10.{}.0.0/16", self.subnet);
        ip(&["route", "add", &net, "dev", &dev])
            .with_context(|| format!("{net} is taken (another lab run at the same time?)"))?;
        Ok(addrs)
    }

    /// A link with `up` and `down` directions, seeded.
    pub fn link(&mut self, up: LinkSpec, down: LinkSpec, seed: u64) -> LinkId {
        self.links.push(LinkDef {
            up,
            down,
            seed,
            stats: Arc::new(RelayStats::default()),
        });
        LinkId(self.links.len() - 1)
    }

    /// The counters of a link (`up` and `down` as it was made).
    pub fn stats(&self, link: LinkId) -> Arc<RelayStats> {
        self.links[link.0].stats.clone()
    }

    /// Packets from `a` to `b` cross `path` in order, each link `up`; from `b` to `a` in
    /// reverse, each `down`.
    pub fn route(&mut self, a: Ipv4Addr, b: Ipv4Addr, path: &[LinkId]) {
        let fwd: Arc<[Hop]> = path
            .iter()
            .map(|l| Hop {
                link: l.0,
                up: true,
            })
            .collect();
        let back: Arc<[Hop]> = path
            .iter()
            .rev()
            .map(|l| Hop {
                link: l.0,
                up: false,
            })
            .collect();
        self.routes.insert((a, b), fwd);
        self.routes.insert((b, a), back);
    }

    /// The kernel TCP congestion control of the connections of `ns` (per namespace since
    /// Linux 4.15): `cubic`, `reno`, `bbr`, ... as the kernel offers. A namespace may only
    /// pick one of the host's `tcp_allowed_congestion_control`; one missing there is added
    /// to it (that list only says what unprivileged sockets may choose).
    pub fn tcp_congestion(&self, ns: &str, name: &str) -> anyhow::Result<()> {
        let set = || sysctl(Some(ns), "net.ipv4.tcp_congestion_control", name);
        if set().is_ok() {
            return Ok(());
        }
        let allowed_key = "net.ipv4.tcp_allowed_congestion_control";
        let allowed = std::fs::read_to_string("/proc/sys/net/ipv4/tcp_allowed_congestion_control")
            .unwrap_or_default();
        if !allowed.split_whitespace().any(|a| a == name) {
            let more = format!("{} {name}", allowed.trim());
            sysctl(None, allowed_key, more.trim())?;
            tracing::info!(congestion = name, "added to the host's {allowed_key}");
        }
        set()
    }

    /// Starts forwarding; links' schedules (`change_at_s`, blackholes) are held until the
    /// clock of the returned fabric ([`Running::clock`]) begins, and count from then.
    pub fn start(self) -> anyhow::Result<Running> {
        let Fabric {
            topo,
            rt,
            devices,
            owner,
            links,
            routes,
            ..
        } = self;
        let stats = Arc::new(FabricStats::default());
        let (stop_tx, stop_rx) = watch::channel(false);
        let clock = ScenarioClock::default();
        let held = |spec: &LinkSpec, seed: u64| {
            let mut l = Link::new(spec.clone(), seed);
            l.hold_schedule();
            l
        };
        let state = Forwarder {
            links: links
                .iter()
                .map(|l| {
                    [
                        held(&l.up, l.seed),
                        held(&l.down, l.seed.wrapping_add(0x9e37_79b9)),
                    ]
                })
                .collect(),
            clock: clock.clone(),
            clock_applied: false,
            link_stats: links.iter().map(|l| l.stats.clone()).collect(),
            tuns: devices.iter().map(|d| d.tun.clone()).collect(),
            owner,
            routes,
            stats: stats.clone(),
        };
        let mut rt = rt;
        let rt = rt.0.take().context("the fabric's runtime is gone")?;
        let thread = std::thread::Builder::new()
            .name("lab-fabric".into())
            .spawn(move || rt.block_on(state.run(stop_rx)))
            .context("the fabric's thread")?;
        Ok(Running {
            _topo: topo,
            stop: stop_tx,
            thread: Some(thread),
            stats,
            clock,
        })
    }
}

/// The second octet of this run's /16: from the pid, passing over one another run's
/// runner-side device routes already (concurrent runs, such as tests).
fn free_subnet() -> u8 {
    let pid = std::process::id();
    (0..50)
        .map(|k| 200 + ((pid + k) % 50) as u8)
        .find(|s| {
            std::process::Command::new("ip")
                .args(["-4", "route", "show", &format!("10.{s}.0.0/16")])
                .output()
                .is_ok_and(|o| o.stdout.is_empty())
        })
        .unwrap_or(200 + (pid % 50) as u8)
}

/// `sysctl -w key=value`, inside `ns` or in this namespace.
fn sysctl(ns: Option<&str>, key: &str, value: &str) -> anyhow::Result<()> {
    let kv = format!("{key}={value}");
    match ns {
        Some(ns) => run("ip", &["netns", "exec", ns, "sysctl", "-q", "-w", &kv]),
        None => run("sysctl", &["-q", "-w", &kv]),
    }
}

/// Feeds `ip -batch -` (many addresses at once).
fn ip_batch(batch: &str) -> anyhow::Result<()> {
    use std::io::Write as _;
    let mut child = std::process::Command::new("ip")
        .args(["-batch", "-"])
        .stdin(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .context("running ip")?;
    child
        .stdin
        .take()
        .context("ip's stdin")?
        .write_all(batch.as_bytes())?;
    let out = child.wait_with_output()?;
    if !out.status.success() {
        bail!("ip -batch: {}", String::from_utf8_lossy(&out.stderr).trim());
    }
    Ok(())
}

/// The scenario's clock: the moment the plays start, from which links' schedules, the bulk
/// flow's start and a scheduled kill count. Cheap to clone; set once.
#[derive(Clone, Default)]
pub struct ScenarioClock(Arc<SetOnce<Instant>>);

impl ScenarioClock {
    /// The plays start now (a second call changes nothing).
    pub fn begin(&self) {
        let _ = self.0.set(Instant::now());
    }

    /// When the plays started, if they have.
    pub fn started(&self) -> Option<Instant> {
        self.0.get().copied()
    }

    /// Waits for the plays to start; returns when they did.
    pub async fn wait(&self) -> Instant {
        *self.0.wait().await
    }
}

/// A forwarding fabric; dropping it stops the forwarder and removes the namespaces.
pub struct Running {
    // Dropped last: the namespaces (and the devices in them) go after the forwarder stops.
    _topo: Topology,
    stop: watch::Sender<bool>,
    thread: Option<std::thread::JoinHandle<()>>,
    pub stats: Arc<FabricStats>,
    clock: ScenarioClock,
}

impl Running {
    /// The clock the links' schedules count from: begin it when the plays start.
    pub fn clock(&self) -> ScenarioClock {
        self.clock.clone()
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.stop.send(true);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
        let g = |c: &AtomicU64| Counters::get(c);
        let s = &self.stats;
        let (packets, unrouted, dropped, overflow) =
            (g(&s.packets), g(&s.unrouted), g(&s.dropped), g(&s.overflow));
        tracing::info!(packets, unrouted, dropped, overflow, "fabric stopped");
        if overflow > 0 {
            // Not the links' loss: the emulator itself could not keep up.
            tracing::warn!(
                overflow,
                "the fabric dropped packets it could not forward in time"
            );
        }
    }
}

/// A packet inside a link, leaving it at `at` (since the start) for hop `hop` of `path`.
struct InFlight {
    at: Duration,
    seq: u64,
    hop: usize,
    path: Arc<[Hop]>,
    dst: usize,
    packet: Bytes,
}

impl PartialEq for InFlight {
    fn eq(&self, o: &Self) -> bool {
        (self.at, self.seq) == (o.at, o.seq)
    }
}
impl Eq for InFlight {}
impl PartialOrd for InFlight {
    fn partial_cmp(&self, o: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(o))
    }
}
impl Ord for InFlight {
    fn cmp(&self, o: &Self) -> std::cmp::Ordering {
        (self.at, self.seq).cmp(&(o.at, o.seq))
    }
}

struct Forwarder {
    links: Vec<[Link; 2]>,
    link_stats: Vec<Arc<RelayStats>>,
    tuns: Vec<Arc<Tun>>,
    owner: HashMap<Ipv4Addr, usize>,
    routes: HashMap<(Ipv4Addr, Ipv4Addr), Arc<[Hop]>>,
    stats: Arc<FabricStats>,
    clock: ScenarioClock,
    /// The links' schedules count from the clock's start.
    clock_applied: bool,
}

/// Source and destination of an IPv4 packet.
fn addresses(p: &[u8]) -> Option<(Ipv4Addr, Ipv4Addr)> {
    if p.len() < 20 || p[0] >> 4 != 4 {
        return None;
    }
    let a = |i: usize| Ipv4Addr::new(p[i], p[i + 1], p[i + 2], p[i + 3]);
    Some((a(12), a(16)))
}

impl Forwarder {
    async fn run(mut self, mut stop: watch::Receiver<bool>) {
        let (tx, mut rx) = mpsc::channel::<Bytes>(16_384);
        let mut readers = tokio::task::JoinSet::new();
        for tun in &self.tuns {
            let (tun, tx, stats) = (tun.clone(), tx.clone(), self.stats.clone());
            readers.spawn(async move {
                let mut buf = BytesMut::with_capacity(MAX_PACKET * 64);
                loop {
                    if buf.capacity() < MAX_PACKET {
                        buf.reserve(MAX_PACKET * 64);
                    }
                    buf.resize(MAX_PACKET, 0);
                    let n = match tun.recv(&mut buf).await {
                        Ok(n) => n,
                        Err(e) => {
                            tracing::warn!("fabric: reading a device: {e}");
                            return;
                        }
                    };
                    let packet = buf.split_to(n).freeze();
                    buf.clear();
                    if tx.try_send(packet).is_err() {
                        Counters::add(&stats.overflow, 1);
                    }
                }
            });
        }
        drop(tx);
        let start = Instant::now();
        let mut heap: BinaryHeap<Reverse<InFlight>> = BinaryHeap::new();
        let mut seq = 0u64;
        loop {
            let next = heap.peek().map(|Reverse(p)| start + p.at);
            tokio::select! {
                biased;
                _ = stop.changed() => break,
                Some(packet) = rx.recv() => {
                    self.apply_clock(start);
                    let now = start.elapsed();
                    self.arrive(packet, now, &mut heap, &mut seq);
                    // Take what else is waiting without going back to the timer.
                    while let Ok(packet) = rx.try_recv() {
                        self.arrive(packet, now, &mut heap, &mut seq);
                    }
                }
                _ = tokio::time::sleep_until(next.unwrap_or(start)), if next.is_some() => {
                    self.apply_clock(start);
                    let now = start.elapsed();
                    while heap.peek().is_some_and(|Reverse(p)| p.at <= now) {
                        let Some(Reverse(p)) = heap.pop() else { break };
                        self.hop(p, &mut heap, &mut seq);
                    }
                }
            }
        }
        readers.shutdown().await;
    }

    /// Once the scenario's clock has begun, the links' schedules count from it.
    fn apply_clock(&mut self, start: Instant) {
        if self.clock_applied {
            return;
        }
        if let Some(t) = self.clock.started() {
            let at = t.saturating_duration_since(start);
            for l in self.links.iter_mut().flatten() {
                l.schedule_from(at);
            }
            self.clock_applied = true;
        }
    }

    fn arrive(
        &mut self,
        packet: Bytes,
        now: Duration,
        heap: &mut BinaryHeap<Reverse<InFlight>>,
        seq: &mut u64,
    ) {
        Counters::add(&self.stats.packets, 1);
        let Some((src, dst)) = addresses(&packet) else {
            Counters::add(&self.stats.dropped, 1);
            return;
        };
        let Some(&to) = self.owner.get(&dst) else {
            Counters::add(&self.stats.dropped, 1);
            return;
        };
        let path = match self.routes.get(&(src, dst)) {
            Some(p) => p.clone(),
            None => {
                Counters::add(&self.stats.unrouted, 1);
                Arc::from(Vec::new())
            }
        };
        if heap.len() >= MAX_IN_FLIGHT {
            Counters::add(&self.stats.overflow, 1);
            return;
        }
        self.hop(
            InFlight {
                at: now,
                seq: 0,
                hop: 0,
                path,
                dst: to,
                packet,
            },
            heap,
            seq,
        );
    }

    /// `p` is at the entry of hop `p.hop` at `p.at`: admitted to that link, or delivered
    /// when it crossed them all.
    fn hop(&mut self, p: InFlight, heap: &mut BinaryHeap<Reverse<InFlight>>, seq: &mut u64) {
        let Some(&Hop { link, up }) = p.path.get(p.hop) else {
            if self.tuns[p.dst].try_send(&p.packet).is_err() {
                Counters::add(&self.stats.overflow, 1);
            }
            return;
        };
        let st = &self.link_stats[link];
        let c = if up { &st.up } else { &st.down };
        let len = p.packet.len();
        Counters::add(&c.packets_in, 1);
        Counters::add(&c.bytes_in, len as u64);
        match self.links[link][usize::from(!up)].admit(p.at, len) {
            Fate::Deliver(at, dup) => {
                let copies = 1 + u64::from(dup.is_some());
                Counters::add(&c.bytes_out, len as u64 * copies);
                if let Some(at2) = dup {
                    *seq += 1;
                    heap.push(Reverse(InFlight {
                        at: at2,
                        seq: *seq,
                        hop: p.hop + 1,
                        path: p.path.clone(),
                        dst: p.dst,
                        packet: p.packet.clone(),
                    }));
                }
                *seq += 1;
                heap.push(Reverse(InFlight {
                    at,
                    seq: *seq,
                    hop: p.hop + 1,
                    ..p
                }));
            }
            Fate::Lost => Counters::add(&c.lost, 1),
            Fate::Blackholed => Counters::add(&c.blackholed, 1),
            Fate::QueueFull => Counters::add(&c.queue_drops, 1),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A fabric that fails while being built is dropped in the runner's async code: its
    /// runtime must not panic there (it did, and hid the build error).
    #[tokio::test]
    async fn an_unstarted_fabrics_runtime_drops_in_async_code() {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        drop(FabricRuntime(Some(rt)));
    }

    #[test]
    fn addresses_of_ipv4_only() {
        let mut p = vec![0u8; 20];
        p[0] = 0x45;
        p[12..16].copy_from_slice(&[10, 1, 2, 3]);
        p[16..20].copy_from_slice(&[10, 4, 5, 6]);
        assert_eq!(
            addresses(&p),
            Some((Ipv4Addr::new(10, 1, 2, 3), Ipv4Addr::new(10, 4, 5, 6)))
        );
        p[0] = 0x60;
        assert_eq!(addresses(&p), None);
        assert_eq!(addresses(&[0x45; 10]), None);
    }
}
