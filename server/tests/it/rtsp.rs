//! The RTSP face (`--rtsp-listen`, `--rtsps-listen`; PROTOCOL.md §12) with the standard
//! clients from Debian: ffmpeg and GStreamer play from a real edge on loopback in all three
//! cases, every frame byte for byte; seeks, TLS, signed URLs, and what a stranger can send.

use crate::common::tools::{have, have_ffmpeg, packets, run, run_gst};
use crate::common::{self, TestEdge, TestOrigin};

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use segue_server::config::EdgeConfig;
use segue_server::node::access;
use segue_server::node::source::Source;
use segue_wire::ObjectName;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const LOOPBACK: &str = "127.0.0.1:0";

fn samples() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../media/samples")
}

fn strings(a: &[&str]) -> Vec<String> {
    a.iter().map(|s| (*s).to_owned()).collect()
}

/// `ffmpeg -rtsp_transport tcp [before…] -i url -c copy out.mp4`.
async fn ffmpeg_copy(url: &str, before: &[&str], out: &Path) -> Result<(), String> {
    let mut args = strings(&["-v", "error", "-rtsp_transport", "tcp"]);
    args.extend(strings(before));
    args.extend(strings(&["-i", url, "-map", "0", "-c", "copy", "-y"]));
    args.push(out.display().to_string());
    run("ffmpeg", &args).await
}

/// Packets per stream type (`video`, `audio`), as ffprobe counts them.
fn counts(file: &Path) -> Vec<(String, u64)> {
    packets(file, "codec_type")
}

/// A hash of each stream's packet data (ffmpeg's `streamhash` muxer): equal when every
/// frame is, byte for byte.
fn stream_hashes(file: &Path) -> String {
    let out = Command::new("ffmpeg")
        .args(["-v", "error", "-i"])
        .arg(file)
        .args([
            "-map",
            "0",
            "-c",
            "copy",
            "-f",
            "streamhash",
            "-hash",
            "md5",
            "-",
        ])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// The source as an MP4 file ffmpeg made (what a copy from RTSP must equal): the sample
/// itself, or an MPEG-TS sample remuxed (AVCC video, raw AAC, as out of RTSP) without the
/// access unit delimiters and filler data that ingest drops (PROTOCOL.md §8.6.0).
fn reference(dir: &Path, sample: &str) -> PathBuf {
    let src = samples().join(sample);
    if sample.ends_with(".mp4") {
        return src;
    }
    let out = dir.join(format!("{sample}.ref.mp4"));
    let ok = Command::new("ffmpeg")
        .args(["-v", "error", "-i"])
        .arg(&src)
        .args(["-map", "0", "-c", "copy", "-bsf:a", "aac_adtstoasc"])
        .args(["-bsf:v", "filter_units=remove_types=9|12", "-y"])
        .arg(&out)
        .status()
        .unwrap()
        .success();
    assert!(ok, "remuxing {sample}");
    out
}

/// An edge of `origin` with its RTSP face (and `rtsps`) on loopback; `send_ahead_ms` large
/// sends a whole object at once (a copy then takes no play time).
async fn edge(origin: &TestOrigin, cache: &str, send_ahead_ms: u64) -> TestEdge {
    edge_with(origin, cache, |c| c.send_ahead_ms = send_ahead_ms).await
}

async fn edge_with(
    origin: &TestOrigin,
    cache: &str,
    set: impl FnOnce(&mut EdgeConfig),
) -> TestEdge {
    origin
        .edge_with(cache, |c| {
            c.tls.rtsp_listen = Some(LOOPBACK.parse().unwrap());
            c.tls.rtsps_listen = Some(LOOPBACK.parse().unwrap());
            c.send_ahead_ms = 60_000;
            set(c);
        })
        .await
}

fn rtsp_url(addr: SocketAddr, object: &str) -> String {
    format!("rtsp://127.0.0.1:{}/{object}", addr.port())
}

/// ffmpeg copies an object from the edge three times: a miss (cold edge), then, once the
/// play's segments are in, a full hit; and a prefix hit of a second object whose prefix
/// alone was warmed. Each copy has the source's frame counts and bytes.
async fn ffmpeg_three_cases(sample: &str, warm_sample: &str) {
    if !have_ffmpeg() {
        return;
    }
    let origin = common::origin_with_samples(&[sample, warm_sample]).await;
    let admin = common::process::free_port();
    let e = edge_with(&origin, "edge", |c| {
        c.admin.admin = Some(SocketAddr::from(([127, 0, 0, 1], admin)));
        c.admin.admin_token = Some("t".into());
    })
    .await;
    let rtsp = e.rtsp.expect("the RTSP face");
    let object = sample.rsplit_once('.').unwrap().0;
    let warm = warm_sample.rsplit_once('.').unwrap().0;
    let dir = origin.dir.path();
    let stats = e.edge.stats();
    let check = |out: &Path, sample: &str, case: &str| {
        let want = reference(dir, sample);
        assert_eq!(counts(out), counts(&want), "{case}: frame counts");
        assert_eq!(stream_hashes(out), stream_hashes(&want), "{case}: bytes");
    };

    let miss = dir.join("miss.mp4");
    ffmpeg_copy(&rtsp_url(rtsp, object), &[], &miss)
        .await
        .unwrap();
    assert_eq!(stats.misses.load(Ordering::Relaxed), 1);
    check(&miss, sample, "miss");

    // Everything the play fetched stays: wait for it, then a full hit.
    let name = ObjectName::new(object, 64).unwrap();
    let manifest = e.edge.manifest(&name).await.unwrap();
    for _ in 0..100 {
        if e.edge.store().count_from(&manifest, 0) == manifest.segments.len() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let full = dir.join("full.mp4");
    ffmpeg_copy(&rtsp_url(rtsp, object), &[], &full)
        .await
        .unwrap();
    assert_eq!(stats.full_hits.load(Ordering::Relaxed), 1);
    check(&full, sample, "full hit");

    e.edge
        .warm(&ObjectName::new(warm, 64).unwrap())
        .await
        .unwrap();
    let prefix = dir.join("prefix.mp4");
    ffmpeg_copy(&rtsp_url(rtsp, warm), &[], &prefix)
        .await
        .unwrap();
    assert_eq!(stats.prefix_hits.load(Ordering::Relaxed), 1);
    check(&prefix, warm_sample, "prefix hit");

    // And over TLS (ffmpeg's rtsps does not verify the certificate; the test below does).
    let tls = dir.join("tls.mp4");
    let url = format!("rtsps://localhost:{}/{object}", e.rtsps.unwrap().port());
    ffmpeg_copy(&url, &[], &tls).await.unwrap();
    check(&tls, sample, "rtsps");

    // The face's own metrics tell its players from segue/1's: four plays, three over rtsp
    // and one over rtsps, each on its own connection. Every connection ended with its
    // client, and gave back its place under the connection limits (a connection's task
    // ends just after ffmpeg's exit).
    let mut m = String::new();
    for _ in 0..40 {
        m = common::process::admin_metrics(admin).await;
        let open = [
            "segue_edge_rtsp_connections 0",
            "segue_edge_connections 0.0",
        ];
        if open.iter().all(|o| m.lines().any(|l| l == *o)) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    for line in [
        "segue_edge_rtsp_connections_accepted_total{scheme=\"rtsp\"} 3",
        "segue_edge_rtsp_connections_accepted_total{scheme=\"rtsps\"} 1",
        "segue_edge_rtsp_plays_total{scheme=\"rtsp\"} 3",
        "segue_edge_rtsp_plays_total{scheme=\"rtsps\"} 1",
        "segue_edge_rtsp_connections 0",
        "segue_edge_connections 0.0",
    ] {
        assert!(m.lines().any(|l| l == line), "{line} in\n{m}");
    }
    origin.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ffmpeg_copies_every_frame_of_an_mp4_in_all_three_cases() {
    ffmpeg_three_cases("demo.mp4", "faststart.mp4").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ffmpeg_copies_every_frame_of_an_mpeg_ts_in_all_three_cases() {
    ffmpeg_three_cases("demo.ts", "long.mp4").await;
}

/// A seek (`-ss`: PLAY with `Range: npt=`) starts at the segment holding that time: the
/// copy has exactly the frames of the segments from there on.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ffmpeg_seeks_with_a_range() {
    if !have_ffmpeg() {
        return;
    }
    let origin = common::origin_with_sample("long.mp4").await;
    let e = edge(&origin, "edge", 60_000).await;
    let name = ObjectName::new("long", 64).unwrap();
    let manifest = e.edge.manifest(&name).await.unwrap();
    // Not on a segment boundary: ffmpeg asks for a little earlier than `-ss` when a stream
    // has B-frames (3/23 s) and adds the input's start time.
    for at_s in [7u64, 31] {
        let first = manifest.segment_at(at_s * 1_000_000).unwrap();
        assert!(first > 0);
        let want: u64 = manifest.segments[first..].iter().map(|s| s.frames).sum();
        // Counted as ffmpeg's demuxer delivers them (`framecrc`, a line per packet): the
        // MP4 muxer drops a packet it is given before time 0 (the segment starts before
        // the seek point), which says nothing about what was received.
        let out = origin.dir.path().join(format!("seek{at_s}.crc"));
        let ss = at_s.to_string();
        let mut args = strings(&["-v", "error", "-rtsp_transport", "tcp", "-ss", &ss, "-i"]);
        args.push(rtsp_url(e.rtsp.unwrap(), "long"));
        args.extend(strings(&[
            "-map", "0", "-c", "copy", "-f", "framecrc", "-y",
        ]));
        args.push(out.display().to_string());
        run("ffmpeg", &args).await.unwrap();
        let got = std::fs::read_to_string(&out)
            .unwrap()
            .lines()
            .filter(|l| !l.starts_with('#') && l.contains(','))
            .count() as u64;
        assert_eq!(got, want, "seek to {at_s} s: segment {first} on");
    }
    origin.shutdown().await;
}

/// GStreamer's `rtspsrc` (RTSP 1.0 by default, 2.0 when asked) depayloads every access unit
/// of a paced play, byte for byte: one file per buffer (`multifilesink`), counted and
/// summed against ffprobe's view of the source.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gstreamer_depayloads_every_access_unit() {
    if !have_ffmpeg() || !have("gst-launch-1.0", "--version", "SEGUE_REQUIRE_GSTREAMER") {
        return;
    }
    let origin = common::origin_with_sample("demo.mp4").await;
    // Segue's defaults: paced, 2 s ahead.
    let e = edge(&origin, "edge", 2000).await;
    let src = samples().join("demo.mp4");
    let sizes = |kind: &str| -> Vec<u64> {
        let out = Command::new("ffprobe")
            .args(["-v", "error", "-select_streams", kind, "-show_entries"])
            .args(["packet=size", "-of", "csv=p=0"])
            .arg(&src)
            .output()
            .unwrap();
        String::from_utf8_lossy(&out.stdout)
            .lines()
            .filter_map(|l| l.trim().trim_end_matches(',').parse().ok())
            .collect()
    };
    let (video, audio) = (sizes("v"), sizes("a"));
    for version in ["1-0", "2-0"] {
        let dir = origin.dir.path().join(format!("gst-{version}"));
        let (v, a) = (dir.join("v"), dir.join("a"));
        std::fs::create_dir_all(&v).unwrap();
        std::fs::create_dir_all(&a).unwrap();
        let pipeline = format!(
            "rtspsrc location={} protocols=tcp default-rtsp-version={version} name=s \
             s. ! rtph264depay ! video/x-h264,stream-format=avc,alignment=au ! multifilesink location={}/%05d \
             s. ! rtpmp4gdepay ! multifilesink location={}/%05d",
            rtsp_url(e.rtsp.unwrap(), "demo"),
            v.display(),
            a.display()
        );
        run_gst(&pipeline).await.unwrap();
        let got = |d: &Path| -> Vec<u64> {
            let mut files: Vec<_> = std::fs::read_dir(d)
                .unwrap()
                .map(|f| f.unwrap().path())
                .collect();
            files.sort();
            files
                .iter()
                .map(|f| std::fs::metadata(f).unwrap().len())
                .collect()
        };
        assert_eq!(got(&v), video, "RTSP {version}: video access units");
        assert_eq!(got(&a), audio, "RTSP {version}: audio access units");
    }
    origin.shutdown().await;
}

/// A raw RTSP exchange: writes `req`, reads until a whole answer (head and body) is in.
async fn exchange<S>(s: &mut S, req: &str) -> String
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
{
    s.write_all(req.as_bytes()).await.unwrap();
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        let text = String::from_utf8_lossy(&got).into_owned();
        if let Some(end) = text.find("\r\n\r\n") {
            let len = text[..end]
                .lines()
                .find_map(|l| l.strip_prefix("Content-Length: "))
                .map_or(0, |n| n.trim().parse::<usize>().unwrap());
            if got.len() >= end + 4 + len {
                return text;
            }
        }
        let n = tokio::time::timeout(Duration::from_secs(10), s.read(&mut buf))
            .await
            .expect("an answer within 10 s")
            .unwrap();
        if n == 0 {
            return text;
        }
        got.extend_from_slice(&buf[..n]);
    }
}

/// `rtsps` is TLS with the node's certificate, verified against the dev CA by a client that
/// trusts nothing else; a client with other roots is refused in the handshake.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rtsps_is_tls_with_the_nodes_certificate() {
    let origin = common::origin_with_sample("demo.mp4").await;
    let e = edge(&origin, "edge", 2000).await;
    let addr = e.rtsps.unwrap();
    let connect = |ca: &Path| {
        let config = segue_certs::tls::client_config(ca, &[]).unwrap();
        let c = tokio_rustls::TlsConnector::from(Arc::new(config));
        async move {
            let tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
            let name = rustls::pki_types::ServerName::try_from("localhost").unwrap();
            c.connect(name, tcp).await
        }
    };
    let mut s = connect(&origin.tls.ca).await.expect("verified");
    let url = format!("rtsps://localhost:{}/demo", addr.port());
    let a = exchange(
        &mut s,
        &format!("DESCRIBE {url} RTSP/1.0\r\nCSeq: 1\r\nAccept: application/sdp\r\n\r\n"),
    )
    .await;
    assert!(a.starts_with("RTSP/1.0 200"), "{a}");
    assert!(a.contains(&format!("Content-Base: {url}/")), "{a}");
    assert!(a.contains(&format!("a=control:{url}/track=0\r\n")), "{a}");

    let other = tempfile::tempdir().unwrap();
    let stranger = segue_net::NodeTls::dev(other.path()).unwrap();
    assert!(connect(&stranger.ca).await.is_err(), "another CA's client");
    origin.shutdown().await;
}

/// With signed URLs required, the RTSP face asks what segue/1 asks: no grant, 401; a grant
/// in the URL's query travels with every control URL the SDP gives (absolute, with the
/// query), so ffmpeg plays the whole object with nothing but the signed URL.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn signed_urls_over_rtsp() {
    let origin = common::origin_with_sample("demo.mp4").await;
    const KEY: &[u8] = b"rtsp-key-0123456789abcdef";
    let key_file = origin.dir.path().join("token-keys");
    std::fs::write(&key_file, [KEY, b"\n".as_slice()].concat()).unwrap();
    let e = edge_with(&origin, "edge", |c| c.tls.token_key_file = Some(key_file)).await;
    let rtsp = e.rtsp.unwrap();
    let mut s = tokio::net::TcpStream::connect(rtsp).await.unwrap();
    let url = rtsp_url(rtsp, "demo");
    let a = exchange(
        &mut s,
        &format!("DESCRIBE {url} RTSP/1.0\r\nCSeq: 1\r\n\r\n"),
    )
    .await;
    assert!(a.starts_with("RTSP/1.0 401"), "{a}");
    let grant = access::grant(KEY, "demo", access::now() + 3600, None);
    let wrong = access::grant(KEY, "other", access::now() + 3600, None);
    let a = exchange(
        &mut s,
        &format!("DESCRIBE {url}?{wrong} RTSP/1.0\r\nCSeq: 2\r\n\r\n"),
    )
    .await;
    assert!(a.starts_with("RTSP/1.0 403"), "{a}");
    if have_ffmpeg() {
        let out = origin.dir.path().join("signed.mp4");
        ffmpeg_copy(&format!("{url}?{grant}"), &[], &out)
            .await
            .unwrap();
        let want = samples().join("demo.mp4");
        assert_eq!(counts(&out), counts(&want));
        assert_eq!(stream_hashes(&out), stream_hashes(&want));
    }
    origin.shutdown().await;
}

/// What a stranger can send the face: each malformed or unsupported request gets its
/// status and the connection goes on; a head over the limit is answered and the connection
/// closed; a client that vanishes mid-play leaves the edge serving the next.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_requests_get_statuses_not_a_dead_edge() {
    let origin = common::origin_with_sample("demo.mp4").await;
    let e = edge(&origin, "edge", 2000).await;
    let rtsp = e.rtsp.unwrap();
    let url = rtsp_url(rtsp, "demo");
    let mut s = tokio::net::TcpStream::connect(rtsp).await.unwrap();
    let cases = [
        (format!("BREW {url} RTSP/1.0\r\nCSeq: 1\r\n\r\n"), 501),
        (format!("DESCRIBE {url} RTSP/1.0\r\nCSeq: x\r\n\r\n"), 400),
        (
            format!(
                "DESCRIBE rtsp://127.0.0.1:{}/nothing RTSP/1.0\r\nCSeq: 2\r\n\r\n",
                rtsp.port()
            ),
            404,
        ),
        (
            format!(
                "SETUP {url}/track=0 RTSP/1.0\r\nCSeq: 3\r\nTransport: RTP/AVP;unicast;client_port=5000-5001\r\n\r\n"
            ),
            461,
        ),
        (
            format!(
                "SETUP {url} RTSP/1.0\r\nCSeq: 4\r\nTransport: RTP/AVP/TCP;unicast;interleaved=0-1\r\n\r\n"
            ),
            459,
        ),
        (
            format!(
                "SETUP {url}/track=9 RTSP/1.0\r\nCSeq: 5\r\nTransport: RTP/AVP/TCP;unicast;interleaved=0-1\r\n\r\n"
            ),
            404,
        ),
        (format!("PLAY {url} RTSP/1.0\r\nCSeq: 6\r\n\r\n"), 455),
        (
            format!("PLAY {url} RTSP/1.0\r\nCSeq: 7\r\nSession: nosuch\r\n\r\n"),
            454,
        ),
        (
            "$\x01\x00\x04abcdOPTIONS * RTSP/1.0\r\nCSeq: 8\r\n\r\n".to_owned(),
            200,
        ),
    ];
    for (req, want) in cases {
        let a = exchange(&mut s, &req).await;
        assert!(a.starts_with(&format!("RTSP/1.0 {want} ")), "{req:?} → {a}");
    }
    // A head over the limit: 413 and the connection closed.
    let big = format!(
        "DESCRIBE {url} RTSP/1.0\r\nCSeq: 9\r\nX: {}\r\n\r\n",
        "a".repeat(64 * 1024)
    );
    let a = exchange(&mut s, &big).await;
    assert!(a.starts_with("RTSP/1.0 413 "), "{a}");
    let mut rest = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(5), s.read_to_end(&mut rest))
        .await
        .expect("the edge closes the connection");

    // A client that sets up, plays and vanishes.
    let mut s = tokio::net::TcpStream::connect(rtsp).await.unwrap();
    let a = exchange(
        &mut s,
        &format!("SETUP {url}/track=0 RTSP/1.0\r\nCSeq: 1\r\nTransport: RTP/AVP/TCP;unicast;interleaved=0-1\r\n\r\n"),
    )
    .await;
    assert!(a.starts_with("RTSP/1.0 200"), "{a}");
    let session = a
        .lines()
        .find_map(|l| l.strip_prefix("Session: "))
        .unwrap()
        .split(';')
        .next()
        .unwrap()
        .to_owned();
    s.write_all(format!("PLAY {url} RTSP/1.0\r\nCSeq: 2\r\nSession: {session}\r\n\r\n").as_bytes())
        .await
        .unwrap();
    let mut some = [0u8; 1024];
    s.read_exact(&mut some).await.unwrap();
    drop(s);
    // The edge goes on: a fresh connection is answered at once.
    let t0 = Instant::now();
    let mut s = tokio::net::TcpStream::connect(rtsp).await.unwrap();
    let a = exchange(&mut s, "OPTIONS * RTSP/1.0\r\nCSeq: 1\r\n\r\n").await;
    assert!(a.starts_with("RTSP/1.0 200"), "{a}");
    assert!(a.contains("Public: "), "{a}");
    assert!(t0.elapsed() < Duration::from_secs(2));
    origin.shutdown().await;
}
