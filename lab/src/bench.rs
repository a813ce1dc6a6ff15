//! `segue-lab bench`: figures, not pass/fail. Origin and edge run as child processes (so the
//! edge's memory can be read); players run in this process.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context as _, bail};
use quinn::crypto::rustls::{QuicClientConfig, QuicServerConfig};
use segue_client::{PlayOptions, Report, play};
use segue_impair::relay::RelaySpec;
use segue_net::{Congestion, TransportSettings};
use segue_wire::SegueUrl;
use tokio::time::Instant;

/// Benchmark settings.
#[derive(Debug, Clone)]
pub struct BenchOptions {
    /// Directory holding demo.mp4 and long.mp4 (the repo's media/samples).
    pub samples: PathBuf,
    /// Plays per TTFF figure.
    pub rounds: usize,
    /// Concurrent unpaced players for the egress figures.
    pub players: Vec<usize>,
    /// Seconds each egress measurement runs.
    pub egress_secs: u64,
    /// Concurrent paced sessions for the memory figures.
    pub sessions: usize,
    /// Idle connections for the per-connection memory figure.
    pub idle_connections: usize,
    /// The congestion controller of the nodes, the players and the raw-quinn baseline.
    pub congestion: Congestion,
    /// Round trip a relay adds between the TTFF players and the edge, ms (0: none).
    pub rtt_ms: u32,
}

pub(crate) struct Kid(pub(crate) Child);

impl Drop for Kid {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// A temporary directory for nodes run as processes: a dev PKI (`certs/`) and `media/`.
pub(crate) struct Stage {
    _tmp: tempfile::TempDir,
    pub(crate) dir: PathBuf,
    pub(crate) certs: PathBuf,
    pub(crate) ca: PathBuf,
    pub(crate) media: PathBuf,
}

impl Stage {
    pub(crate) fn new() -> anyhow::Result<Self> {
        let tmp = tempfile::tempdir()?;
        let dir = tmp.path().to_path_buf();
        let certs = dir.join("certs");
        segue_certs::init(&certs, &[])?;
        let media = dir.join("media");
        std::fs::create_dir_all(&media)?;
        Ok(Self {
            _tmp: tmp,
            ca: certs.join("ca.pem"),
            certs,
            media,
            dir,
        })
    }

    /// `segue origin` of this stage's media on 127.0.0.1:`port`.
    pub(crate) fn origin_args(&self, port: u16) -> Vec<String> {
        let mut v = vec![
            "origin".into(),
            "--media".into(),
            self.media.display().to_string(),
            "--data".into(),
            self.dir.join("origin").display().to_string(),
            "--listen".into(),
            format!("127.0.0.1:{port}"),
        ];
        v.extend(self.tls_args());
        v
    }

    /// `--congestion` for a node.
    pub(crate) fn congestion_args(c: Congestion) -> Vec<String> {
        vec!["--congestion".into(), c.as_str().into()]
    }

    /// `--cert`, `--key` (the dev localhost certificate) and `--ca` for a node.
    pub(crate) fn tls_args(&self) -> Vec<String> {
        let s = |p: PathBuf| p.display().to_string();
        vec![
            "--cert".into(),
            s(self.certs.join("localhost.pem")),
            "--key".into(),
            s(self.certs.join("localhost.key")),
            "--ca".into(),
            s(self.ca.clone()),
        ]
    }
}

pub(crate) fn free_port() -> anyhow::Result<u16> {
    Ok(std::net::UdpSocket::bind("127.0.0.1:0")?
        .local_addr()?
        .port())
}

pub(crate) fn rss_kib(pid: u32) -> anyhow::Result<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .context("no VmRSS")
}

fn pct(v: &mut [f64], p: f64) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    v.get(((v.len() as f64 - 1.0) * p).round() as usize)
        .copied()
        .unwrap_or(f64::NAN)
}

pub(crate) async fn wait_ready(url: &SegueUrl, ca: &Path) -> anyhow::Result<()> {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        if segue_client::connect(url, ca, Duration::from_secs(1))
            .await
            .is_ok()
        {
            return Ok(());
        }
        if Instant::now() > deadline {
            bail!("{url} did not come up");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Raw quinn: `streams` unidirectional streams pushing data for `secs`, same TLS, loopback.
async fn raw_quinn(
    certs: &Path,
    streams: usize,
    secs: u64,
    congestion: Congestion,
) -> anyhow::Result<f64> {
    let transport = Arc::new(TransportSettings::with(congestion).config());
    let tls = segue_certs::tls::server_config(
        &certs.join("localhost.pem"),
        &certs.join("localhost.key"),
        &[b"bench"],
    )?;
    let mut server_config =
        quinn::ServerConfig::with_crypto(Arc::new(QuicServerConfig::try_from(tls)?));
    server_config.transport_config(transport.clone());
    let server = quinn::Endpoint::server(server_config, "127.0.0.1:0".parse()?)?;
    let addr = server.local_addr()?;
    let dur = Duration::from_secs(secs);
    let srv = tokio::spawn(async move {
        let Some(inc) = server.accept().await else {
            return;
        };
        let Ok(conn) = inc.await else { return };
        let chunk = bytes::Bytes::from(vec![0x5a; 64 * 1024]);
        let mut tasks = Vec::new();
        for _ in 0..streams {
            let conn = conn.clone();
            let chunk = chunk.clone();
            tasks.push(tokio::spawn(async move {
                let Ok(mut s) = conn.open_uni().await else {
                    return;
                };
                let end = Instant::now() + dur;
                while Instant::now() < end {
                    if s.write_chunk(chunk.clone()).await.is_err() {
                        return;
                    }
                }
                let _ = s.finish();
            }));
        }
        for t in tasks {
            let _ = t.await;
        }
        let _ = conn.closed().await;
    });
    let tls = segue_certs::tls::client_config(&certs.join("ca.pem"), &[b"bench"])?;
    let mut client = quinn::Endpoint::client("127.0.0.1:0".parse()?)?;
    let mut client_config = quinn::ClientConfig::new(Arc::new(QuicClientConfig::try_from(tls)?));
    client_config.transport_config(transport);
    client.set_default_client_config(client_config);
    let conn = client.connect(addr, "localhost")?.await?;
    let start = Instant::now();
    let mut readers = Vec::new();
    for _ in 0..streams {
        let mut s = conn.accept_uni().await?;
        readers.push(tokio::spawn(async move {
            let mut n = 0u64;
            while let Ok(Some(c)) = s.read_chunk(usize::MAX, true).await {
                n += c.bytes.len() as u64;
            }
            n
        }));
    }
    let mut total = 0;
    for r in readers {
        total += r.await?;
    }
    let rate = total as f64 / start.elapsed().as_secs_f64();
    conn.close(0u32.into(), b"done");
    srv.abort();
    Ok(rate)
}

/// A client that speaks segue/1 but only counts media bytes: on one connection, session after
/// session (DESCRIBE + SETUP + PLAY unpaced, read every RoQ stream to its end, PLAY_NOTIFY,
/// TEARDOWN) until `end`. Isolates the edge's cost from depacketizing, hashing and handshakes.
async fn sink_until(
    url: &SegueUrl,
    ca: &Path,
    end: Instant,
    from: std::net::IpAddr,
    congestion: Congestion,
) -> anyhow::Result<u64> {
    use segue_wire::control::{Message, Method, Request, SessionHeader};
    use std::sync::atomic::{AtomicU64, Ordering::SeqCst};
    let connect = segue_client::ConnectOptions {
        bind: Some(from),
        transport: TransportSettings::with(congestion),
        no_resume: true,
        tickets: None,
    };
    let (_ep, conn, mut control) =
        segue_client::connect_with(url, ca, Duration::from_secs(5), &connect).await?;
    let readers = Arc::new(AtomicU64::new(0));
    let bytes = Arc::new(AtomicU64::new(0));
    let drained = Arc::new(tokio::sync::Notify::new());
    let acceptor = {
        let conn = conn.clone();
        let (readers, bytes, drained) = (readers.clone(), bytes.clone(), drained.clone());
        tokio::spawn(async move {
            while let Ok(mut s) = conn.accept_uni().await {
                readers.fetch_add(1, SeqCst);
                let (readers, bytes, drained) = (readers.clone(), bytes.clone(), drained.clone());
                tokio::spawn(async move {
                    while let Ok(Some(c)) = s.read_chunk(usize::MAX, false).await {
                        bytes.fetch_add(c.bytes.len() as u64, std::sync::atomic::Ordering::Relaxed);
                    }
                    if readers.fetch_sub(1, SeqCst) == 1 {
                        drained.notify_waiters();
                    }
                });
            }
        })
    };
    while Instant::now() < end {
        let cseq = control.start(url, 0, true).await?;
        let mut session = None;
        loop {
            match control.recv().await? {
                Message::Request(r) if r.method == Method::PlayNotify => break,
                Message::Response(r) if !r.is_success() => {
                    bail!("sink: {} {:?}", r.status, r.headers.error)
                }
                Message::Response(r) if r.headers.cseq == cseq.setup => session = r.headers.session,
                _ => {}
            }
        }
        // Every media stream was finished before PLAY_NOTIFY was sent; drain what is in flight.
        // (Woken by the last reader, not by a timer: tokio timers tick in milliseconds.)
        loop {
            let wait = drained.notified();
            if readers.load(SeqCst) == 0 {
                tokio::task::yield_now().await; // let a just-arrived stream be accepted
                if readers.load(SeqCst) == 0 {
                    break;
                }
                continue;
            }
            let _ = tokio::time::timeout(Duration::from_millis(50), wait).await;
        }
        let mut td = Request::new(Method::Teardown, Some(url.clone()), control.next_cseq());
        td.headers.session = session.map(|s| SessionHeader {
            id: s.id,
            timeout: None,
        });
        control.request(&td).await?;
    }
    acceptor.abort();
    conn.close(0u32.into(), b"done");
    Ok(bytes.load(std::sync::atomic::Ordering::Relaxed))
}

/// Aggregate bytes/s of `n` clients looping over `url` for `secs`.
async fn egress(
    n: usize,
    secs: u64,
    url: &SegueUrl,
    ca: &Path,
    sink: bool,
    congestion: Congestion,
) -> anyhow::Result<f64> {
    let end = Instant::now() + Duration::from_secs(secs);
    let start = Instant::now();
    let tasks: Vec<_> = (0..n)
        .map(|k| {
            let (url, ca) = (url.clone(), ca.to_path_buf());
            // Each client from its own address, as viewers are (the edge's per-client limit).
            let from = crate::run::loopback_viewer(k);
            tokio::spawn(async move {
                let mut bytes = 0u64;
                if sink {
                    return sink_until(&url, &ca, end, from, congestion)
                        .await
                        .unwrap_or(0);
                }
                while Instant::now() < end {
                    {
                        let mut p = PlayOptions::new(url.clone(), ca.clone());
                        p.pace = false;
                        p.connect.bind = Some(from);
                        p.connect.transport = TransportSettings::with(congestion);
                        let r = play(&p).await;
                        if !r.ok() {
                            break;
                        }
                        bytes += r.bytes;
                    }
                }
                bytes
            })
        })
        .collect();
    let mut total = 0;
    for t in tasks {
        total += t.await?;
    }
    Ok(total as f64 / start.elapsed().as_secs_f64())
}

/// One unpaced play; `resume`: with this process's TLS tickets (0-RTT), else as a new viewer.
async fn ttff(
    url: &SegueUrl,
    ca: &Path,
    congestion: Congestion,
    resume: bool,
) -> anyhow::Result<Report> {
    let mut p = PlayOptions::new(url.clone(), ca.to_path_buf());
    p.pace = false;
    p.connect.transport = TransportSettings::with(congestion);
    p.connect.no_resume = !resume;
    let r = play(&p).await;
    if !r.ok() {
        bail!("bench play failed:\n{}", r.render());
    }
    Ok(r)
}

/// The round trip a datagram takes through a relay of `rtt_ms` (the least of 10 echoes),
/// ms: the path the TTFF players see, the relay's timer granularity included.
async fn relay_rtt(rtt_ms: u32) -> anyhow::Result<f64> {
    let echo = tokio::net::UdpSocket::bind("127.0.0.1:0").await?;
    let echo_addr = echo.local_addr()?;
    let relay = segue_impair::relay::udp(
        "127.0.0.1:0".parse()?,
        echo_addr,
        RelaySpec::round_trip(f64::from(rtt_ms), 1),
    )
    .await?;
    let echoing = tokio::spawn(async move {
        let mut buf = [0u8; 64];
        while let Ok((n, from)) = echo.recv_from(&mut buf).await {
            let _ = echo.send_to(&buf[..n], from).await;
        }
    });
    let probe = tokio::net::UdpSocket::bind("127.0.0.1:0").await?;
    let mut least = f64::INFINITY;
    let mut buf = [0u8; 64];
    for i in 0..10u8 {
        let t = std::time::Instant::now();
        probe.send_to(&[i], relay.local).await?;
        let got = tokio::time::timeout(Duration::from_secs(2), probe.recv_from(&mut buf)).await;
        if matches!(got, Ok(Ok((1, _)))) && buf[0] == i {
            least = least.min(t.elapsed().as_secs_f64() * 1000.0);
        }
    }
    echoing.abort();
    relay.stop().await;
    anyhow::ensure!(least.is_finite(), "no echo came back through the relay");
    Ok(least)
}

/// Runs every measurement and returns the printed report.
pub async fn run(exe: &Path, o: &BenchOptions) -> anyhow::Result<String> {
    let stage = Stage::new()?;
    let (dir, certs, media) = (&stage.dir, &stage.certs, &stage.media);
    let ca = stage.ca.clone();
    let demo = std::fs::read(o.samples.join("demo.mp4")).context("samples: demo.mp4")?;
    let long = std::fs::read(o.samples.join("long.mp4")).context("samples: long.mp4")?;
    let hd = std::fs::read(o.samples.join("hd.mp4")).context("samples: hd.mp4")?;
    // Fresh copies for every miss and prefix-hit round: each of those plays must be the first.
    for i in 0..o.rounds {
        std::fs::write(media.join(format!("miss{i}.mp4")), &demo)?;
        std::fs::write(media.join(format!("prefix{i}.mp4")), &demo)?;
        std::fs::write(media.join(format!("prefixr{i}.mp4")), &demo)?;
        std::fs::write(media.join(format!("prefixt{i}.mp4")), &demo)?;
    }
    std::fs::write(media.join("full.mp4"), &demo)?;
    std::fs::write(media.join("long.mp4"), &long)?;
    std::fs::write(media.join("hd.mp4"), &hd)?;

    let (oport, eport, rport) = (free_port()?, free_port()?, free_port()?);
    let spawn = |args: Vec<String>| -> anyhow::Result<Kid> {
        Ok(Kid(Command::new(exe)
            .args(args)
            .env("RUST_LOG", "warn")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()?))
    };
    let s = |p: &Path| p.display().to_string();
    let node_cc = Stage::congestion_args(o.congestion);
    let _origin = spawn([stage.origin_args(oport), node_cc.clone()].concat())?;
    let origin_url = SegueUrl::parse(&format!("segue://localhost:{oport}/"))?;
    wait_ready(&origin_url, &ca).await?;
    let mut edge_args = vec![
        "edge".into(),
        "--origin".into(),
        origin_url.to_string(),
        "--cache-dir".into(),
        s(&dir.join("edge")),
        "--listen".into(),
        format!("127.0.0.1:{eport}"),
        "--prefix-secs".into(),
        "4".into(),
        "--rtsp-listen".into(),
        format!("127.0.0.1:{rport}"),
    ];
    edge_args.extend(stage.tls_args());
    edge_args.extend(node_cc);
    for i in 0..o.rounds {
        edge_args.push("--warm".into());
        edge_args.push(format!("prefix{i}"));
        edge_args.push("--warm".into());
        edge_args.push(format!("prefixr{i}"));
        edge_args.push("--warm".into());
        edge_args.push(format!("prefixt{i}"));
    }
    let edge = spawn(edge_args)?;
    let edge_pid = edge.0.id();
    let eurl = |obj: &str| SegueUrl::parse(&format!("segue://localhost:{eport}/{obj}"));
    wait_ready(&eurl("")?, &ca).await?;
    tokio::time::sleep(Duration::from_millis(500)).await; // let the warm-up finish

    let mut out = String::new();
    out.push_str(&format!(
        "Segue bench: origin and edge as child processes on loopback, players in process ({} build; congestion control {} on the nodes, the players and raw quinn)\n\n",
        if cfg!(debug_assertions) { "debug" } else { "release" },
        o.congestion.as_str()
    ));
    let cc = o.congestion;

    // TTFF per case, through a relay adding `rtt_ms` if asked.
    ttff(&eurl("full")?, &ca, cc, false).await?; // fills the full-hit object
    tokio::time::sleep(Duration::from_millis(300)).await;
    let (relay, path_rtt) = if o.rtt_ms > 0 {
        let edge_addr = std::net::SocketAddr::from(([127, 0, 0, 1], eport));
        let relay = segue_impair::relay::udp(
            "127.0.0.1:0".parse()?,
            edge_addr,
            RelaySpec::round_trip(f64::from(o.rtt_ms), 1),
        )
        .await?;
        (Some(relay), Some(relay_rtt(o.rtt_ms).await?))
    } else {
        (None, None)
    };
    let tport = relay.as_ref().map_or(eport, |r| r.local.port());
    let turl = |obj: &str| SegueUrl::parse(&format!("segue://localhost:{tport}/{obj}"));
    let mut rows = Vec::new();
    let mut handshake = Vec::new();
    let mut rtt = Vec::new();
    for (case, name, resume) in [
        ("full hit", "full", false),
        ("prefix hit", "prefix", false),
        ("miss", "miss", false),
        // Resuming: the first play takes a ticket (the rows above keep none), the others
        // resume and send their start as 0-RTT data.
        ("prefix 0rtt", "prefixr", true),
    ] {
        let (mut v, mut click, mut resumed) = (Vec::new(), Vec::new(), 0);
        for i in 0..o.rounds {
            let obj = if name == "full" {
                "full".to_string()
            } else {
                format!("{name}{i}")
            };
            let r = ttff(&turl(&obj)?, &ca, cc, resume).await?;
            v.push(r.ttff_ms.unwrap_or(f64::NAN));
            click.push(r.click_ms.unwrap_or(f64::NAN));
            resumed += usize::from(r.resumed == Some(true));
            if !resume {
                // The handshake median is a full handshake's.
                handshake.push(r.connect_ms.unwrap_or(f64::NAN));
            }
            rtt.push(r.rtt_ms.unwrap_or(f64::NAN));
        }
        rows.push((
            case,
            pct(&mut v.clone(), 0.5),
            pct(&mut v, 0.95),
            pct(&mut click.clone(), 0.5),
            pct(&mut click, 0.95),
            resumed,
        ));
    }
    if let Some(r) = relay {
        r.stop().await;
    }
    // The RTSP face, as ffmpeg starts (RTSP 1.0: a round trip per request), through a TCP
    // relay of the same round trip.
    let rtsp_addr = std::net::SocketAddr::from(([127, 0, 0, 1], rport));
    let trelay = if o.rtt_ms > 0 {
        Some(
            segue_impair::relay::tcp(
                "127.0.0.1:0".parse()?,
                rtsp_addr,
                RelaySpec::round_trip(f64::from(o.rtt_ms), 1),
            )
            .await?,
        )
    } else {
        None
    };
    let raddr = trelay.as_ref().map_or(rtsp_addr, |r| r.local);
    let mut rtsp_rows = Vec::new();
    for (case, name) in [("full hit", "full"), ("prefix hit", "prefixt")] {
        let (mut click, mut requests) = (Vec::new(), 0);
        for i in 0..o.rounds {
            let obj = if name == "full" {
                "full".to_string()
            } else {
                format!("{name}{i}")
            };
            let r = crate::rtsp_probe::start(raddr, &obj).await?;
            click.push(r.first_frame_ms);
            requests = r.requests;
        }
        rtsp_rows.push((
            case,
            pct(&mut click.clone(), 0.5),
            pct(&mut click, 0.95),
            requests,
        ));
    }
    if let Some(r) = trelay {
        r.stop().await;
    }
    let hs = pct(&mut handshake, 0.5);
    let conn_rt = pct(&mut rtt, 0.5);
    // The relay's own timers add to its delay: the targets take the round trip a datagram
    // takes through it, measured.
    let rt = path_rtt.unwrap_or(conn_rt);
    let through = path_rtt.map_or(String::new(), |p| {
        format!(
            ", through a relay of {} ms nominal round trip, {p:.2} ms measured by UDP echo: the targets' RTT",
            o.rtt_ms
        )
    });
    out.push_str(&format!(
        "TTFF, request sent -> first complete frame, unpaced, {} plays each (handshake median {hs:.2} ms, connections' RTT median {conn_rt:.3} ms{through})\n",
        o.rounds
    ));
    for (case, p50, p95, c50, c95, resumed) in &rows {
        out.push_str(&format!(
            "  {case:<11} p50 {p50:>7.2} ms   p95 {p95:>7.2} ms   click to first frame p50 {c50:>7.2} ms   p95 {c95:>7.2} ms   resumed {resumed}/{}\n",
            o.rounds
        ));
    }
    let target = |out: &mut String, what: &str, got: f64, limit: f64, end: &str| {
        let verdict = if got <= limit { "met" } else { "NOT met" };
        out.push_str(&format!(
            "  target: {what}: {got:.2} ms <= {limit:.2} ms: {verdict}\n{end}"
        ));
    };
    target(
        &mut out,
        "prefix hit <= handshake + 1 RTT + 5 ms",
        hs + rows[1].1,
        hs + rt + 5.0,
        "",
    );
    target(
        &mut out,
        "prefix hit click to first frame <= 2 RTT + 5 ms (full handshake)",
        rows[1].3,
        2.0 * rt + 5.0,
        "",
    );
    target(
        &mut out,
        "prefix hit click to first frame <= 1 RTT + 5 ms (resumed, 0-RTT)",
        rows[3].3,
        rt + 5.0,
        "",
    );
    let requests = rtsp_rows.first().map_or(0, |r| r.3);
    out.push_str(&format!(
        "RTSP face, RTSP 1.0 as ffmpeg starts (TCP connect, then {requests} requests each waiting for its answer), click -> first complete video frame, {} plays each{}\n",
        o.rounds,
        if o.rtt_ms > 0 {
            " (the TCP relay accepts the connect itself: its round trip is not in these figures; a real path adds one)"
        } else {
            ""
        }
    ));
    for (case, p50, p95, _) in &rtsp_rows {
        out.push_str(&format!(
            "  {case:<11} click to first frame p50 {p50:>7.2} ms   p95 {p95:>7.2} ms\n"
        ));
    }
    // segue/1 needs the handshake and one pipelined flight (2 RTT); RTSP 1.0 one round trip
    // per request (the connect is not charged by the relay): the extra round trips are its,
    // not the node's.
    let extra = requests.saturating_sub(2) as f64;
    target(
        &mut out,
        &format!(
            "RTSP prefix hit click <= segue-play's ({:.2} ms) + {extra} RTT RTSP cannot pipeline + 5 ms",
            rows[1].3
        ),
        rtsp_rows.get(1).map_or(f64::NAN, |r| r.1),
        rows[1].3 + extra * rt + 5.0,
        "\n",
    );

    // Egress, for a low-bitrate object (per-frame costs dominate) and a realistic one.
    out.push_str(&format!(
        "Egress, {} s per level, unpaced, objects fully cached; sinks count RoQ bytes and run session after session on one connection, players open a connection per play and depacketize and hash every frame\n",
        o.egress_secs
    ));
    for (obj, what) in [
        ("long", "60 s at 0.23 Mbit/s"),
        ("hd", "8 s of 720p at 3.3 Mbit/s"),
    ] {
        let url = eurl(obj)?;
        ttff(&url, &ca, cc, false).await?; // cache it fully
        tokio::time::sleep(Duration::from_millis(500)).await;
        out.push_str(&format!("  object `{obj}` ({what})\n"));
        for &n in &o.players {
            let raw = raw_quinn(certs, n, o.egress_secs, cc).await?;
            let sink = egress(n, o.egress_secs, &url, &ca, true, cc).await?;
            let full = egress(n, o.egress_secs, &url, &ca, false, cc).await?;
            out.push_str(&format!(
                "    {n:>3} clients: raw quinn {:>7.1} MB/s | edge to sinks {:>7.1} MB/s ({:>5.1}% of raw) | edge to players {:>7.1} MB/s ({:>5.1}%)\n",
                raw / 1e6,
                sink / 1e6,
                sink / raw * 100.0,
                full / 1e6,
                full / raw * 100.0
            ));
        }
    }

    // Memory per session.
    out.push_str(&format!(
        "\nEdge RSS with {} concurrent paced sessions (sampled after 3 s)\n",
        o.sessions
    ));
    for obj in ["full", "long"] {
        let base = rss_kib(edge_pid)?;
        let tasks: Vec<_> = (0..o.sessions)
            .map(|k| {
                let url = eurl(obj);
                let ca = ca.clone();
                tokio::spawn(async move {
                    if let Ok(url) = url {
                        let mut p = PlayOptions::new(url, ca);
                        p.connect.bind = Some(crate::run::loopback_viewer(k));
                        p.connect.transport = TransportSettings::with(cc);
                        p.stall_timeout = Duration::from_secs(30);
                        play(&p).await;
                    }
                })
            })
            .collect();
        tokio::time::sleep(Duration::from_secs(3)).await;
        let loaded = rss_kib(edge_pid)?;
        for t in &tasks {
            t.abort();
        }
        for t in tasks {
            let _ = t.await;
        }
        let size = std::fs::metadata(media.join(format!("{obj}.mp4")))?.len();
        out.push_str(&format!(
            "  object {obj:<5} ({:>5} KiB): baseline {base} KiB, loaded {loaded} KiB, {:+.1} KiB per session\n",
            size / 1024,
            (loaded as f64 - base as f64) / o.sessions as f64
        ));
        tokio::time::sleep(Duration::from_secs(3)).await;
    }

    // Idle connections: handshaken, the control stream used once, then quiet.
    let n = o.idle_connections;
    out.push_str(&format!(
        "\nEdge RSS with {n} idle connections (handshake + one OPTIONS each, then nothing; the edge's keep-alives hold them)\n"
    ));
    let base = rss_kib(edge_pid)?;
    let (client, conns) = idle_connections(&eurl("")?, &ca, n).await?;
    tokio::time::sleep(Duration::from_secs(2)).await;
    let held = rss_kib(edge_pid)?;
    // Past the keep-alive interval (10 s): still there, memory unchanged.
    tokio::time::sleep(Duration::from_secs(12)).await;
    let later = rss_kib(edge_pid)?;
    let alive = conns
        .iter()
        .filter(|c| c.conn.close_reason().is_none())
        .count();
    out.push_str(&format!(
        "  baseline {base} KiB, with them {held} KiB ({:+.1} KiB per connection), 12 s later {later} KiB with {alive}/{n} still open\n",
        (held as f64 - base as f64) / n.max(1) as f64
    ));
    drop(conns);
    for ep in client {
        ep.close(0u32.into(), b"done");
    }
    Ok(out)
}

/// A player connection and its open control stream.
struct Idle {
    conn: quinn::Connection,
    _control: (quinn::SendStream, quinn::RecvStream),
}

/// `n` player connections to `url` (no client certificate), each having asked OPTIONS once,
/// from one address per 50 (the edge's default per-client limit is 64).
async fn idle_connections(
    url: &SegueUrl,
    ca: &Path,
    n: usize,
) -> anyhow::Result<(Vec<quinn::Endpoint>, Vec<Idle>)> {
    let tls = segue_certs::tls::client_config(ca, &[segue_wire::ALPN])?;
    let quic = Arc::new(QuicClientConfig::try_from(tls)?);
    let addr: std::net::SocketAddr = format!("127.0.0.1:{}", url.port).parse()?;
    let mut conns = Vec::with_capacity(n);
    let mut endpoints = Vec::new();
    // 50 handshakes at a time, each 50 from an address of their own.
    for (k, chunk) in (0..n).collect::<Vec<_>>().chunks(50).enumerate() {
        let from = std::net::SocketAddr::new(crate::run::loopback_viewer(10_000 + k), 0);
        let mut ep = quinn::Endpoint::client(from)?;
        ep.set_default_client_config(quinn::ClientConfig::new(quic.clone()));
        let mut set = tokio::task::JoinSet::new();
        for _ in chunk {
            let connecting = ep.connect(addr, "localhost")?;
            set.spawn(async move {
                let conn = connecting.await?;
                let (mut send, mut recv) = conn.open_bi().await?;
                send.write_all(b"OPTIONS segue://localhost/ RTSP/2.0\r\nCSeq: 1\r\n\r\n")
                    .await?;
                let mut buf = [0u8; 256];
                recv.read(&mut buf).await?;
                // Kept with the connection: dropping the send side would finish the stream.
                anyhow::Ok(Idle {
                    conn,
                    _control: (send, recv),
                })
            });
        }
        while let Some(r) = set.join_next().await {
            conns.push(r??);
        }
        endpoints.push(ep);
    }
    Ok((endpoints, conns))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The targets' RTT is what a datagram takes through the relay: at least its nominal
    /// delay, and not far beyond it on an idle box.
    #[tokio::test]
    async fn the_relay_round_trip_is_measured_not_assumed() {
        let rtt = relay_rtt(40).await.unwrap();
        assert!(
            (40.0..60.0).contains(&rtt),
            "{rtt} ms through a 40 ms relay"
        );
        let none = relay_rtt(1).await.unwrap();
        assert!(none < 20.0, "{none} ms through a 1 ms relay");
    }
}
