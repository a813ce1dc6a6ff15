//! HTTP/0.9 over QUIC (hq-interop) between our own client and server on loopback: the cases
//! of the interop matrix our stack supports, each checked on its outcome.

use segue_server::node::admission::{ConnectionLimits, RetryPolicy};
use std::sync::Arc;
use std::sync::atomic::Ordering;

use segue_interop::ClientOptions;
use segue_net::NodeTls;
use segue_server::files::DirFiles;
use segue_server::files::hq;
use segue_server::files::stats::ServerStats;

struct Server {
    _dir: tempfile::TempDir,
    tls: NodeTls,
    port: u16,
    stats: Arc<ServerStats>,
    www: std::path::PathBuf,
    _stop: tokio::sync::watch::Sender<bool>,
}

fn sha256_hex(b: &[u8]) -> String {
    ring::digest::digest(&ring::digest::SHA256, b)
        .as_ref()
        .iter()
        .map(|x| format!("{x:02x}"))
        .collect()
}

/// A server over a /www of one 3 MB file and 1000 small ones.
fn server(retry: bool) -> Server {
    let dir = tempfile::tempdir().unwrap();
    let tls = NodeTls::dev(&dir.path().join("certs")).unwrap();
    let www = dir.path().join("www");
    std::fs::create_dir_all(&www).unwrap();
    let big: Vec<u8> = (0..3_000_000u32)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 24) as u8)
        .collect();
    std::fs::write(www.join("big.bin"), &big).unwrap();
    for k in 0..1000 {
        std::fs::write(
            www.join(format!("f{k:04}")),
            format!("file {k}\n").repeat(k % 7 + 1),
        )
        .unwrap();
    }
    std::fs::write(dir.path().join("secret"), b"not served").unwrap();
    let ep = hq::server_endpoint("127.0.0.1:0".parse().unwrap(), &tls.cert, &tls.key).unwrap();
    let port = ep.endpoint.local_addr().unwrap().port();
    let stats = ep.stats.clone();
    let (stop, stop_rx) = tokio::sync::watch::channel(false);
    tokio::spawn(hq::serve(
        ep,
        Arc::new(DirFiles::new(&www).unwrap()),
        ConnectionLimits::with_retry(match retry {
            true => RetryPolicy::Always,
            false => RetryPolicy::Never,
        }),
        stop_rx,
    ));
    Server {
        _dir: dir,
        tls,
        port,
        stats,
        www,
        _stop: stop,
    }
}

fn url(s: &Server, path: &str) -> url::Url {
    url::Url::parse(&format!("https://localhost:{}/{path}", s.port)).unwrap()
}

async fn fetch(
    s: &Server,
    opts: ClientOptions,
    paths: &[String],
) -> anyhow::Result<Vec<segue_interop::Download>> {
    let ep = segue_interop::client_endpoint(&s.tls.ca, &opts).unwrap();
    let out = tempfile::tempdir().unwrap();
    let urls: Vec<url::Url> = paths.iter().map(|p| url(s, p)).collect();
    let got = segue_interop::get(&ep, &urls, out.path(), &opts).await?;
    // What was written is what was hashed, and what the server holds.
    for d in &got {
        let name = d.path.trim_start_matches('/');
        let written = std::fs::read(out.path().join(name)).unwrap();
        assert_eq!(sha256_hex(&written), d.sha256);
        assert_eq!(written, std::fs::read(s.www.join(name)).unwrap(), "{name}");
    }
    Ok(got)
}

#[tokio::test]
async fn transfer_and_handshake() {
    let s = server(false);
    let got = fetch(&s, ClientOptions::default(), &["big.bin".into()])
        .await
        .unwrap();
    assert_eq!(got[0].bytes, 3_000_000);
    assert_eq!(s.stats.connections.load(Ordering::Relaxed), 1);
}

#[tokio::test]
async fn multiplexing_a_thousand_files_on_one_connection() {
    let s = server(false);
    let paths: Vec<String> = (0..1000).map(|k| format!("f{k:04}")).collect();
    let got = fetch(&s, ClientOptions::default(), &paths).await.unwrap();
    assert_eq!(got.len(), 1000);
    assert_eq!(s.stats.connections.load(Ordering::Relaxed), 1);
    assert_eq!(s.stats.files.load(Ordering::Relaxed), 1000);
}

#[tokio::test]
async fn chacha20_only() {
    // The client offers only TLS_CHACHA20_POLY1305_SHA256: a TLS 1.3 server must pick it
    // or fail the handshake.
    let s = server(false);
    let got = fetch(
        &s,
        ClientOptions {
            chacha20: true,
            ..ClientOptions::default()
        },
        &["f0001".into()],
    )
    .await
    .unwrap();
    assert_eq!(got.len(), 1);
}

#[tokio::test]
async fn retry_validates_the_address_first() {
    let s = server(true);
    fetch(&s, ClientOptions::default(), &["f0002".into()])
        .await
        .unwrap();
    assert_eq!(
        s.stats.retries.load(Ordering::Relaxed),
        1,
        "one Retry, then the connection"
    );
    assert_eq!(s.stats.connections.load(Ordering::Relaxed), 1);
}

#[tokio::test]
async fn paths_outside_www_are_refused() {
    let s = server(false);
    for bad in ["../secret", "nope"] {
        assert!(
            fetch(&s, ClientOptions::default(), &[bad.into()])
                .await
                .is_err(),
            "{bad}"
        );
    }
    assert_eq!(s.stats.refused.load(Ordering::Relaxed), 2);
}

fn h3() -> ClientOptions {
    ClientOptions {
        http3: true,
        ..ClientOptions::default()
    }
}

#[tokio::test]
async fn http3_transfer_and_multiplexing() {
    let s = server(false);
    let mut paths: Vec<String> = (0..1000).map(|k| format!("f{k:04}")).collect();
    paths.push("big.bin".into());
    let got = fetch(&s, h3(), &paths).await.unwrap();
    assert_eq!(got.len(), 1001);
    assert_eq!(
        got.iter().find(|d| d.path == "/big.bin").unwrap().bytes,
        3_000_000
    );
    assert_eq!(s.stats.connections.load(Ordering::Relaxed), 1);
}

#[tokio::test]
async fn http3_ranges_and_missing_files() {
    let s = server(false);
    let ep = segue_interop::client_endpoint(&s.tls.ca, &h3()).unwrap();
    let out = tempfile::tempdir().unwrap();
    let opts = ClientOptions {
        range: Some("bytes=1000000-1000099".into()),
        ..h3()
    };
    let got = segue_interop::get(&ep, &[url(&s, "big.bin")], out.path(), &opts)
        .await
        .unwrap();
    assert_eq!(got[0].bytes, 100);
    let full = std::fs::read(s.www.join("big.bin")).unwrap();
    assert_eq!(
        std::fs::read(out.path().join("big.bin")).unwrap(),
        &full[1_000_000..1_000_100]
    );
    let e = segue_interop::get(&ep, &[url(&s, "nope")], out.path(), &h3())
        .await
        .unwrap_err();
    assert!(e.to_string().contains("404"), "{e}");
    let unsat = ClientOptions {
        range: Some("bytes=5000000-".into()),
        ..h3()
    };
    let e = segue_interop::get(&ep, &[url(&s, "f0001")], out.path(), &unsat)
        .await
        .unwrap_err();
    assert!(e.to_string().contains("416"), "{e}");
}

/// ngtcp2's HTTP/3 example client (Debian's ngtcp2-client) downloads from our server.
#[tokio::test]
async fn ngtcp2_client_downloads_over_http3() {
    let Some(bin) = ngtcp2("gtlsclient", "ngtcp2-client") else {
        return;
    };
    let s = server(false);
    let out = tempfile::tempdir().unwrap();
    let status = gtlsclient(&bin, &s, &[], &["big.bin", "f0042"], out.path()).await;
    assert!(status.success(), "{status}");
    same_files(&s, out.path(), &["big.bin", "f0042"], "ngtcp2 client");
}

/// ngtcp2's example client `bin`, quiet, with `args`, downloading `files` from our server
/// into `out`. (It has no CA option: it does not verify us; we verify it when we are the
/// client.)
async fn gtlsclient(
    bin: &std::path::Path,
    s: &Server,
    args: &[String],
    files: &[&str],
    out: &std::path::Path,
) -> std::process::ExitStatus {
    tokio::process::Command::new(bin)
        .args(["--quiet", "--exit-on-all-streams-close"])
        .args(args)
        .arg("--download")
        .arg(out)
        .args(["localhost", &s.port.to_string()])
        .args(
            files
                .iter()
                .map(|f| format!("https://localhost:{}/{f}", s.port)),
        )
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .status()
        .await
        .unwrap()
}

/// Resumption and 0-RTT as both of our sides see them, over both protocols: the client's
/// second connection resumed (no certificate came to verify), the server found the client's
/// ticket, and with 0-RTT the server got the requests before the handshake completed.
#[tokio::test]
async fn resumption_and_0rtt_seen_by_both_sides() {
    let s = server(false);
    let paths = ["f0001", "f0002", "f0003"];
    let mut zero_rtts = 0;
    for (k, (zero_rtt, http3)) in [(false, false), (true, false), (false, true), (true, true)]
        .into_iter()
        .enumerate()
    {
        let what = format!("zero_rtt={zero_rtt} http3={http3}");
        let opts = ClientOptions {
            resumption: !zero_rtt,
            zero_rtt,
            http3,
            ..Default::default()
        };
        // A new client endpoint: its first connection has no session to resume.
        let ep = segue_interop::client_endpoint(&s.tls.ca, &opts).unwrap();
        let out = tempfile::tempdir().unwrap();
        let urls: Vec<url::Url> = paths.iter().map(|p| url(&s, p)).collect();
        let got = segue_interop::get(&ep, &urls, out.path(), &opts)
            .await
            .unwrap();
        assert_eq!(got.len(), 3, "{what}");
        same_files(&s, out.path(), &paths, &what);
        assert_eq!(
            ep.resumed(),
            1,
            "{what}: the second connection, not the first"
        );
        assert_eq!(
            s.stats.resumed_sessions.load(Ordering::Relaxed),
            k as u64 + 1,
            "{what}"
        );
        zero_rtts += u64::from(zero_rtt);
        assert_eq!(
            s.stats.zero_rtt_connections.load(Ordering::Relaxed),
            zero_rtts,
            "{what}"
        );
    }
    // One connection resumes nothing.
    let ep = segue_interop::client_endpoint(&s.tls.ca, &ClientOptions::default()).unwrap();
    let out = tempfile::tempdir().unwrap();
    segue_interop::get(
        &ep,
        &[url(&s, "f0004")],
        out.path(),
        &ClientOptions::default(),
    )
    .await
    .unwrap();
    assert_eq!(ep.resumed(), 0);
    assert_eq!(s.stats.resumed_sessions.load(Ordering::Relaxed), 4);
}

/// ngtcp2's client resumes its session with our server (its session and transport
/// parameters kept in files), without early data and then with its requests as 0-RTT data.
#[tokio::test]
async fn ngtcp2_client_resumes_and_sends_0rtt() {
    let Some(bin) = ngtcp2("gtlsclient", "ngtcp2-client") else {
        return;
    };
    let s = server(false);
    let keep = tempfile::tempdir().unwrap();
    for (early, files) in [(false, ["f0010", "f0011"]), (true, ["f0012", "f0013"])] {
        let session = keep.path().join(format!("session-{early}"));
        let params = keep.path().join(format!("tp-{early}"));
        let out = tempfile::tempdir().unwrap();
        let mut args = vec![
            format!("--session-file={}", session.display()),
            format!("--tp-file={}", params.display()),
        ];
        if !early {
            args.push("--disable-early-data".into());
        }
        for f in files {
            let status = gtlsclient(&bin, &s, &args, &[f], out.path()).await;
            assert!(status.success(), "{status}");
        }
        same_files(&s, out.path(), &files, "ngtcp2 client");
    }
    assert_eq!(s.stats.resumed_sessions.load(Ordering::Relaxed), 2);
    assert_eq!(s.stats.zero_rtt_connections.load(Ordering::Relaxed), 1);
}

/// An ngtcp2 example program on PATH (or /usr/sbin); `None` (the test is skipped) only when
/// SEGUE_REQUIRE_NGTCP2 is unset, as CI sets it.
fn ngtcp2(program: &str, package: &str) -> Option<std::path::PathBuf> {
    let found = std::env::var_os("PATH")
        .iter()
        .flat_map(std::env::split_paths)
        .chain([std::path::PathBuf::from("/usr/sbin")])
        .map(|d| d.join(program))
        .find(|p| p.is_file());
    if found.is_none() {
        assert!(
            std::env::var_os("SEGUE_REQUIRE_NGTCP2").is_none(),
            "{program} ({package}) is required here"
        );
        eprintln!("SKIPPED: no {program} (apt-get install {package})");
    }
    found
}

/// Files downloaded into `dir` equal the server's.
fn same_files(s: &Server, dir: &std::path::Path, names: &[&str], what: &str) {
    for f in names {
        assert_eq!(
            std::fs::read(dir.join(f)).unwrap(),
            std::fs::read(s.www.join(f)).unwrap(),
            "{what}: {f}"
        );
    }
}

/// Our HTTP/3 client against ngtcp2's example server (Debian's ngtcp2-server), verifying its
/// certificate: plainly, offering only ChaCha20, and through the server's Retry.
#[tokio::test]
async fn our_client_downloads_from_the_ngtcp2_server() {
    let Some(bin) = ngtcp2("gtlsserver", "ngtcp2-server") else {
        return;
    };
    // Our server's files and certificates, served by ngtcp2 instead.
    let s = server(false);
    for (case, args) in [
        ("plain", vec![]),
        ("chacha20", vec![]),
        ("retry", vec!["--validate-addr"]),
    ] {
        let port = std::net::UdpSocket::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let mut child = tokio::process::Command::new(&bin)
            .args(["--quiet", "--htdocs"])
            .arg(&s.www)
            .args(&args)
            .args(["127.0.0.1", &port.to_string()])
            .arg(&s.tls.key)
            .arg(&s.tls.cert)
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .unwrap();
        let opts = ClientOptions {
            chacha20: case == "chacha20",
            ..h3()
        };
        let ep = segue_interop::client_endpoint(&s.tls.ca, &opts).unwrap();
        let out = tempfile::tempdir().unwrap();
        let urls: Vec<url::Url> = ["big.bin", "f0007"]
            .iter()
            .map(|p| url::Url::parse(&format!("https://localhost:{port}/{p}")).unwrap())
            .collect();
        let mut got = None;
        for _ in 0..30 {
            match segue_interop::get(&ep, &urls, out.path(), &opts).await {
                Ok(g) => {
                    got = Some(g);
                    break;
                }
                Err(_) => tokio::time::sleep(std::time::Duration::from_millis(100)).await,
            }
        }
        let got = got.unwrap_or_else(|| panic!("{case}: no download from ngtcp2"));
        assert_eq!(got.len(), 2, "{case}");
        same_files(&s, out.path(), &["big.bin", "f0007"], case);
        let _ = child.kill().await;
    }
}

#[tokio::test]
async fn idle_timeouts_are_the_ones_asked_for() {
    use std::time::{Duration, Instant};
    let dir = tempfile::tempdir().unwrap();
    let tls = NodeTls::dev(&dir.path().join("certs")).unwrap();
    // The server's: a client that sends nothing after its handshake is given up after 1 s
    // (the default would take 30 s). The client offers 60 s and no keep-alive, so the 1 s
    // it ends with is the server's.
    let ep = hq::server_endpoint("127.0.0.1:0".parse().unwrap(), &tls.cert, &tls.key)
        .unwrap()
        .with_idle_timeout(Duration::from_secs(1));
    let addr = ep.endpoint.local_addr().unwrap();
    let (_stop, stop_rx) = tokio::sync::watch::channel(false);
    let www = dir.path().join("www");
    std::fs::create_dir_all(&www).unwrap();
    tokio::spawn(hq::serve(
        ep,
        Arc::new(DirFiles::new(&www).unwrap()),
        ConnectionLimits::with_retry(RetryPolicy::Never),
        stop_rx,
    ));
    let crypto = segue_certs::tls::client_config(&tls.ca, &[hq::ALPN]).unwrap();
    let quic = quinn::crypto::rustls::QuicClientConfig::try_from(crypto).unwrap();
    let mut transport = quinn::TransportConfig::default();
    transport.max_idle_timeout(Some(Duration::from_secs(60).try_into().unwrap()));
    let mut config = quinn::ClientConfig::new(Arc::new(quic));
    config.transport_config(Arc::new(transport));
    let client = quinn::Endpoint::client("127.0.0.1:0".parse().unwrap()).unwrap();
    let conn = client
        .connect_with(config, addr, "localhost")
        .unwrap()
        .await
        .unwrap();
    let t = Instant::now();
    let closed = tokio::time::timeout(Duration::from_secs(10), conn.closed())
        .await
        .expect("still open after 10 s");
    assert!(
        matches!(closed, quinn::ConnectionError::TimedOut),
        "{closed}"
    );
    assert!(t.elapsed() < Duration::from_secs(3), "{:?}", t.elapsed());

    // The client's: a handshake nobody answers is given up after its idle timeout.
    let silent = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    let port = silent.local_addr().unwrap().port();
    let opts = ClientOptions {
        idle_timeout: Some(Duration::from_secs(1)),
        ..ClientOptions::default()
    };
    let ep = segue_interop::client_endpoint(&tls.ca, &opts).unwrap();
    let url = url::Url::parse(&format!("https://localhost:{port}/x")).unwrap();
    let t = Instant::now();
    let err = segue_interop::get(&ep, &[url], dir.path(), &opts)
        .await
        .unwrap_err();
    assert!(t.elapsed() < Duration::from_secs(3), "{:?}", t.elapsed());
    assert!(format!("{err:#}").contains("timed out"), "{err:#}");
}

/// A ClientHello over two Initial packets whose second is lost: the server cannot know the
/// connection's protocol when it takes the connection, and waits for the handshake rather
/// than taking it for hq-interop.
#[tokio::test]
async fn a_client_hello_spread_over_packets_is_served_by_its_protocol() {
    use segue_impair::impair::LinkSpec;
    use segue_impair::relay::{self, Counters, RelaySpec};
    let s = server(false);
    // The relay loses the client's second datagram: the rest of its ClientHello.
    let spec = RelaySpec {
        up: LinkSpec {
            drop_nth: 2,
            ..LinkSpec::default()
        },
        ..RelaySpec::default()
    };
    let target = std::net::SocketAddr::from(([127, 0, 0, 1], s.port));
    let relay = relay::udp("127.0.0.1:0".parse().unwrap(), target, spec)
        .await
        .unwrap();
    // h3 after 1.4 KB of protocols nobody speaks: the ClientHello takes two packets.
    let mut crypto = segue_certs::tls::client_config(&s.tls.ca, &[]).unwrap();
    crypto.alpn_protocols = (0..60)
        .map(|i| format!("x-nobody-speaks-this-{i:03}").into_bytes())
        .chain([b"h3".to_vec()])
        .collect();
    let quic = quinn::crypto::rustls::QuicClientConfig::try_from(crypto).unwrap();
    let client = quinn::Endpoint::client("127.0.0.1:0".parse().unwrap()).unwrap();
    let conn = client
        .connect_with(
            quinn::ClientConfig::new(Arc::new(quic)),
            relay.local,
            "localhost",
        )
        .unwrap()
        .await
        .unwrap();
    assert_eq!(hq::alpn(&conn).as_deref(), Some(&b"h3"[..]));
    assert_eq!(Counters::get(&relay.stats.up.lost), 1, "no packet was lost");
    let out = tempfile::tempdir().unwrap();
    let got = segue_interop::get_h3(conn, &[url(&s, "f0003")], out.path(), None)
        .await
        .expect("an HTTP/3 request on an h3 connection is answered");
    same_files(
        &s,
        out.path(),
        &["f0003"],
        "HTTP/3 after a late ClientHello",
    );
    assert_eq!(got.len(), 1);
}
