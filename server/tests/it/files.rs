//! File objects (PROTOCOL.md §8.9) over HTTP/3 and hq-interop, from an edge (through its
//! cache: prefix from disk, the rest from the origin) and from an origin: the original file's
//! bytes, whole or by Range, on real servers on loopback.

use crate::common;

use segue_server::node::admission::ConnectionLimits;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::Ordering;

use segue_interop::ClientOptions;
use segue_net::NodeTls;
use segue_server::files::ObjectFiles;
use segue_server::files::hq;
use segue_server::node::source::Source;

const SAMPLE: &str = "hd.mp4";

fn sample_bytes() -> Vec<u8> {
    std::fs::read(
        Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../media/samples")
            .join(SAMPLE),
    )
    .unwrap()
}

/// Serves `source`'s file objects on a loopback port until `stop`; returns the port.
fn serve_files<S: Source>(
    tls: &NodeTls,
    source: S,
    stop: tokio::sync::watch::Receiver<bool>,
) -> u16 {
    let ep = hq::server_endpoint("127.0.0.1:0".parse().unwrap(), &tls.cert, &tls.key).unwrap();
    let port = ep.endpoint.local_addr().unwrap().port();
    let files = Arc::new(ObjectFiles::new(Arc::new(source)));
    tokio::spawn(hq::serve(ep, files, ConnectionLimits::default(), stop));
    port
}

/// Downloads `path` from `port`; the downloaded file's bytes.
async fn get(
    tls: &NodeTls,
    port: u16,
    path: &str,
    http3: bool,
    range: Option<&str>,
) -> anyhow::Result<Vec<u8>> {
    let opts = ClientOptions {
        http3,
        range: range.map(str::to_owned),
        ..ClientOptions::default()
    };
    let ep = segue_interop::client_endpoint(&tls.ca, &opts)?;
    let out = tempfile::tempdir()?;
    let url = url::Url::parse(&format!("https://localhost:{port}/{path}"))?;
    let got = segue_interop::get(&ep, &[url], out.path(), &opts).await?;
    let name = Path::new(path).file_name().unwrap();
    let bytes = std::fs::read(out.path().join(name))?;
    assert_eq!(got[0].bytes, bytes.len() as u64);
    Ok(bytes)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn edge_serves_the_original_file_through_its_cache() {
    let origin = common::origin_with_sample(SAMPLE).await;
    let original = sample_bytes();
    // A 4 s prefix: the edge keeps the first segments of the file on disk.
    let edge = origin.edge(4_000_000).await;
    let port = serve_files(&origin.tls, edge.edge.clone(), origin.stop_rx());

    // Not cached: fetched from the origin while it streams.
    let got = get(&origin.tls, port, SAMPLE, true, None).await.unwrap();
    assert!(got == original, "HTTP/3 download differs from the file");
    let m = edge
        .edge
        .manifest(&segue_wire::ObjectName::new(SAMPLE, 64).unwrap())
        .await
        .unwrap();
    assert!(
        m.is_file() && m.segments.len() >= 10,
        "{} segments",
        m.segments.len()
    );
    let s = edge.edge.stats();
    assert_eq!(s.misses.load(Ordering::Relaxed), 1);
    let from_origin = s.segments_from_origin.load(Ordering::Relaxed);
    assert_eq!(
        from_origin,
        m.segments.len() as u64,
        "each segment fetched once"
    );

    // Again, over hq-interop: the prefix is on the edge's disk now.
    let got = get(&origin.tls, port, SAMPLE, false, None).await.unwrap();
    assert!(got == original, "hq-interop download differs from the file");
    let hits = s.prefix_hits.load(Ordering::Relaxed) + s.full_hits.load(Ordering::Relaxed);
    assert_eq!(hits, 1, "the second download is a cache hit");
    let prefix = edge.edge.store().prefix_len(&m) as u64;
    assert!(prefix >= 1);
    assert!(
        s.segments_from_origin.load(Ordering::Relaxed)
            <= from_origin + m.segments.len() as u64 - prefix,
        "the cached prefix came from disk"
    );

    // A range across a segment boundary, and one at the end.
    let (a, b) = (262_000usize, 530_000usize);
    let part = get(
        &origin.tls,
        port,
        SAMPLE,
        true,
        Some(&format!("bytes={a}-{b}")),
    )
    .await
    .unwrap();
    assert!(part == original[a..=b], "range {a}-{b}");
    let tail = get(&origin.tls, port, SAMPLE, true, Some("bytes=-1000"))
        .await
        .unwrap();
    assert!(tail == original[original.len() - 1000..], "last 1000 bytes");

    // What is not a file: the media object itself, a missing file, a bad path.
    for bad in ["hd", "nope.mp4", "a%20b.mp4"] {
        let e = get(&origin.tls, port, bad, true, None).await.err();
        assert!(format!("{e:?}").contains("404"), "{bad}: {e:?}");
    }
    origin.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn origin_serves_its_files_and_players_get_415_for_them() {
    let origin = common::origin_with_sample(SAMPLE).await;
    let port = serve_files(&origin.tls, origin.source.clone(), origin.stop_rx());
    let got = get(&origin.tls, port, SAMPLE, true, None).await.unwrap();
    assert!(got == sample_bytes());

    // A player asking to stream a file object gets a clear 415.
    let url = segue_wire::SegueUrl::parse(&format!(
        "segue://localhost:{}/{SAMPLE}",
        origin.addr.port()
    ))
    .unwrap();
    let r = segue_client::play::play(&segue_client::play::PlayOptions::new(
        url,
        origin.tls.ca.clone(),
    ))
    .await;
    let e = r.error.unwrap_or_default();
    assert!(e.contains("415") && e.contains("is a file"), "{e}");
    origin.shutdown().await;
}

/// The origin's file changes on disk behind its back: the changed bytes fail their checksums
/// and are never served; the download fails instead.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_file_changed_behind_the_origins_back_is_not_served() {
    let origin = common::origin_with_sample(SAMPLE).await;
    let port = serve_files(&origin.tls, origin.source.clone(), origin.stop_rx());
    let path = origin.dir.path().join("media").join(SAMPLE);
    let mut bytes = std::fs::read(&path).unwrap();
    bytes[300_000] ^= 0xff; // in the second segment
    std::fs::write(&path, &bytes).unwrap();
    let whole = get(&origin.tls, port, SAMPLE, true, None).await;
    assert!(whole.is_err(), "a changed file was served");
    // hq-interop has no status: the stream is reset.
    let whole = get(&origin.tls, port, SAMPLE, false, None).await;
    assert!(whole.is_err(), "a changed file was served over hq-interop");
    // The first segment is intact and still served.
    let first = get(&origin.tls, port, SAMPLE, true, Some("bytes=0-9999"))
        .await
        .unwrap();
    assert_eq!(first, bytes[..10_000]);
    origin.shutdown().await;
}

/// `$QLOGDIR` on a node started as a process: a qlog trace per accepted segue/1 connection.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_writes_a_qlog_trace_per_connection() {
    use std::process::{Command, Stdio};
    let dir = tempfile::tempdir().unwrap();
    let tls = NodeTls::dev(&dir.path().join("certs")).unwrap();
    let media = dir.path().join("media");
    std::fs::create_dir_all(&media).unwrap();
    std::fs::write(
        media.join("demo.mp4"),
        std::fs::read(Path::new(env!("CARGO_MANIFEST_DIR")).join("../media/samples/demo.mp4"))
            .unwrap(),
    )
    .unwrap();
    let port = std::net::UdpSocket::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let qlog = dir.path().join("qlog");
    let mut origin = Command::new(env!("CARGO_BIN_EXE_segue"))
        .args(["origin", "--listen", &format!("127.0.0.1:{port}")])
        .arg("--media")
        .arg(&media)
        .arg("--data")
        .arg(dir.path().join("data"))
        .arg("--cert")
        .arg(&tls.cert)
        .arg("--key")
        .arg(&tls.key)
        .arg("--ca")
        .arg(&tls.ca)
        .env("QLOGDIR", &qlog)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let url = segue_wire::SegueUrl::parse(&format!("segue://localhost:{port}/demo")).unwrap();
    let mut report = None;
    for _ in 0..50 {
        let mut o = segue_client::play::PlayOptions::new(url.clone(), tls.ca.clone());
        o.pace = false;
        let r = segue_client::play::play(&o).await;
        if r.ok() {
            report = Some(r);
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    let _ = origin.kill();
    let _ = origin.wait();
    assert!(report.is_some(), "the origin never served the play");
    let traces: Vec<_> = std::fs::read_dir(&qlog)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| {
            p.file_name()
                .unwrap()
                .to_str()
                .unwrap()
                .starts_with("server-")
        })
        .collect();
    assert!(!traces.is_empty());
    let text = std::fs::read_to_string(traces.last().unwrap()).unwrap();
    assert!(text.contains("qlog_version") && text.contains("packet_received"));
}
