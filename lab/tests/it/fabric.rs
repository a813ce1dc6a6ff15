//! The lab's packet-level network (root only; CI sets SEGUE_REQUIRE_NETNS): a real kernel
//! TCP transfer and a real QUIC transfer, each from a process in a node's namespace to this
//! process, through an 80 ms RTT link, clean and with 2 % loss. Both stacks must be slowed
//! by the loss (their congestion control reacts to it): a model that kept a stream's rate on
//! loss, as the old TCP relay did, fails this. The TCP sender uses CUBIC, Linux's default
//! (this kernel's default may be BBR, which random loss slows far less).

use std::net::{Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use segue_lab::bulk;
use segue_lab::fabric::{Fabric, Running};
use segue_lab::impair::LinkSpec;
use segue_lab::relay::{Counters, RelayStats};
use std::sync::Arc;

const BYTES: u64 = 1_000_000;

fn segue() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_segue-lab"))
}

/// One way: 40 ms delay and `loss`.
fn link(loss: f64) -> LinkSpec {
    LinkSpec {
        delay_ms: 40.0,
        loss,
        ..LinkSpec::default()
    }
}

/// A fabric with one node (a server) and one local address (the client), joined by an
/// 80 ms RTT link with `loss` both ways.
struct Net {
    _running: Running,
    ns: String,
    server: Ipv4Addr,
    client: Ipv4Addr,
    stats: Arc<RelayStats>,
}

impl Net {
    fn new(loss: f64, seed: u64) -> Self {
        let mut f = Fabric::new().unwrap();
        let (ns, server) = f.node("s").unwrap();
        f.tcp_congestion(&ns, "cubic").unwrap();
        let client = f.local(1).unwrap()[0];
        let l = f.link(link(loss), link(loss), seed);
        f.route(client, server, &[l]);
        let stats = f.stats(l);
        Self {
            _running: f.start().unwrap(),
            ns,
            server,
            client,
            stats,
        }
    }

    /// Packets the link lost, both ways, and packets it carried server → client.
    fn counts(&self) -> (u64, u64) {
        let g = Counters::get;
        (
            g(&self.stats.up.lost) + g(&self.stats.down.lost),
            g(&self.stats.down.packets_in),
        )
    }
}

async fn spawn_in(ns: &str, args: &[String]) -> tokio::process::Child {
    segue_lab::netns::Topology::command(ns, &segue())
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .kill_on_drop(true)
        .spawn()
        .unwrap()
}

/// Seconds to fetch BYTES over kernel TCP, and the link's losses.
async fn tcp_secs(loss: f64) -> (f64, (u64, u64)) {
    let net = Net::new(loss, 7);
    let to = SocketAddr::from((net.server, 9000));
    let _src = spawn_in(
        &net.ns,
        &[
            "bulk".into(),
            "--listen".into(),
            to.to_string(),
            "--bytes".into(),
            BYTES.to_string(),
        ],
    )
    .await;
    let mut got = None;
    for _ in 0..100 {
        match bulk::fetch(
            Some(net.client.into()),
            to,
            None,
            Some(Duration::from_secs(40)),
        )
        .await
        {
            Ok(f) if f.bytes > 0 => {
                got = Some(f);
                break;
            }
            _ => tokio::time::sleep(Duration::from_millis(100)).await,
        }
    }
    let f = got.expect("the bulk source never answered");
    assert_eq!(f.bytes, BYTES, "the transfer was cut");
    (f.secs, net.counts())
}

/// Seconds to fetch a BYTES file over QUIC (hq-interop), and the link's losses.
async fn quic_secs(loss: f64, dir: &Path) -> (f64, (u64, u64)) {
    let net = Net::new(loss, 11);
    let name = net.server.to_string();
    segue_certs::init(&dir.join("certs"), std::slice::from_ref(&name)).unwrap();
    let (cert, key) = segue_certs::pki::leaf_paths(&dir.join("certs"), &name);
    let www = dir.join("www");
    std::fs::create_dir_all(&www).unwrap();
    std::fs::write(www.join("f"), vec![7u8; BYTES as usize]).unwrap();
    let listen = SocketAddr::from((net.server, 4433));
    let _srv = spawn_in(
        &net.ns,
        &[
            "hq".into(),
            "serve".into(),
            "--www".into(),
            www.display().to_string(),
            "--listen".into(),
            listen.to_string(),
            "--cert".into(),
            cert.display().to_string(),
            "--key".into(),
            key.display().to_string(),
        ],
    )
    .await;
    let opts = segue_interop::ClientOptions {
        chacha20: false,
        http3: false,
        range: None,
        resumption: false,
        key_update: false,
        zero_rtt: false,
        idle_timeout: Some(Duration::from_secs(30)),
        transport: None,
    };
    let ca = dir.join("certs").join(segue_certs::pki::CA_CERT);
    let url = url::Url::parse(&format!("https://{listen}/f")).unwrap();
    let downloads = dir.join("downloads");
    // Until the server listens (its UDP port is not known to be open before).
    tokio::time::sleep(Duration::from_millis(500)).await;
    let t0 = std::time::Instant::now();
    let mut ok = false;
    for _ in 0..5 {
        let client = segue_interop::client_endpoint(&ca, &opts).unwrap();
        if let Ok(got) =
            segue_interop::get(&client, std::slice::from_ref(&url), &downloads, &opts).await
        {
            assert_eq!(got[0].bytes, BYTES);
            ok = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    assert!(ok, "the QUIC download failed");
    (t0.elapsed().as_secs_f64(), net.counts())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn loss_slows_kernel_tcp_and_quic_alike() {
    if !crate::support::netns_available() {
        return;
    }
    let (clean, (lost_clean, carried)) = tcp_secs(0.0).await;
    let (lossy, (lost, _)) = tcp_secs(0.02).await;
    // The bytes crossed the link as packets (about 1448 bytes of payload each).
    assert!(carried as f64 > BYTES as f64 / 1500.0, "{carried} packets");
    assert_eq!(lost_clean, 0);
    assert!(lost > 0, "the lossy link lost nothing");
    eprintln!("kernel TCP, {BYTES} B over 80 ms RTT: clean {clean:.2} s, 2 % loss {lossy:.2} s");
    assert!(
        clean > 0.16,
        "faster than two round trips: the delay was not applied ({clean} s)"
    );
    assert!(
        lossy > clean * 1.5,
        "loss did not slow TCP: clean {clean:.2} s, lossy {lossy:.2} s"
    );

    let dir = tempfile::tempdir().unwrap();
    let (clean, (lost_clean, carried)) = quic_secs(0.0, dir.path()).await;
    let (lossy, (lost, _)) = quic_secs(0.02, dir.path()).await;
    assert!(carried as f64 > BYTES as f64 / 1500.0, "{carried} packets");
    assert_eq!(lost_clean, 0);
    assert!(lost > 0, "the lossy link lost nothing");
    eprintln!(
        "QUIC (hq-interop), {BYTES} B over 80 ms RTT: clean {clean:.2} s, 2 % loss {lossy:.2} s"
    );
    assert!(clean > 0.16, "faster than two round trips ({clean} s)");
    assert!(
        lossy > clean * 1.5,
        "loss did not slow QUIC: clean {clean:.2} s, lossy {lossy:.2} s"
    );
}

/// Datagrams sent every 20 ms for `secs` from the client to the server through the link,
/// and how many of them the link blackholed.
async fn blackholed_while_sending(net: &Net, secs: f64) -> u64 {
    let sock = tokio::net::UdpSocket::bind(SocketAddr::from((net.client, 0)))
        .await
        .unwrap();
    let to = SocketAddr::from((net.server, 9));
    let before = Counters::get(&net.stats.up.blackholed);
    let end = tokio::time::Instant::now() + Duration::from_secs_f64(secs);
    while tokio::time::Instant::now() < end {
        sock.send_to(&[0u8; 100], to).await.unwrap();
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    Counters::get(&net.stats.up.blackholed) - before
}

/// A link's blackhole windows count from the moment the plays start (the scenario clock),
/// not from the fabric's start: until then the link is never down, whatever the time.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn link_schedules_wait_for_the_scenario_clock() {
    if !crate::support::netns_available() {
        return;
    }
    // Down 1 s in every 2 s: the first window from 1 s to 2 s on the schedule.
    let spec = LinkSpec {
        blackhole_s: 1.0,
        blackhole_every_s: 2.0,
        ..LinkSpec::default()
    };
    let mut f = Fabric::new().unwrap();
    let (ns, server) = f.node("s").unwrap();
    let client = f.local(1).unwrap()[0];
    let l = f.link(spec.clone(), spec, 3);
    f.route(client, server, &[l]);
    let stats = f.stats(l);
    let running = f.start().unwrap();
    let clock = running.clock();
    let net = Net {
        _running: running,
        ns,
        server,
        client,
        stats,
    };
    let held = blackholed_while_sending(&net, 2.5).await;
    assert_eq!(held, 0, "a window opened before the clock began");
    clock.begin();
    let begun = blackholed_while_sending(&net, 2.5).await;
    // About 1 s of the 2.5 s in windows: ~50 datagrams of ~125.
    assert!(
        begun >= 25,
        "only {begun} datagrams blackholed after the clock began"
    );
}
