//! Faults on loopback: a full disk under the edge's cache (pass-through, said in metrics), and
//! an edge killed with SIGKILL while it writes its cache, restarted on that cache with torn
//! and corrupted segment files (never served; the intact rest reused).

use crate::common;

use std::path::{Path, PathBuf};
use std::time::Duration;

use common::process::{Kid, edge_args, free_port, media_with, origin_args, segue, tls_args};
use segue_net::NodeTls;
use segue_wire::{ObjectName, SegueUrl};

/// Every file the store would write for `object` in `cache` (its manifest and `segments`
/// segment files, as temporaries) made a link to /dev/full: each write fails with ENOSPC, as
/// on a full disk, whoever runs the test (root ignores permissions, not a full device).
fn fill_disk(cache: &Path, object: &str, segments: usize) {
    let dir = cache.join("objects").join(object).join(".segue");
    std::fs::create_dir_all(&dir).unwrap();
    let mut names = vec!["manifest.tmp".to_string()];
    names.extend((0..segments).map(|i| format!("seg-{i:06}.tmp")));
    for n in names {
        std::os::unix::fs::symlink("/dev/full", dir.join(n)).unwrap();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_or_unwritable_disk_passes_through_and_says_so() {
    let origin = common::origin_with_sample("demo.mp4").await;
    std::fs::copy(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../media/samples/hd.mp4"),
        origin.dir.path().join("media/hd.mp4"),
    )
    .unwrap();
    let d = origin.dir.path();
    let lib = segue_server::origin::library::Library::open(
        &segue_server::origin::library::LibraryOptions {
            media_root: d.join("media"),
            data_dir: d.join("origin"),
            target_segment_us: 2_000_000,
            scheme: segue_server::origin::ingest::segmenter::SegmentScheme::Uniform,
        },
    )
    .unwrap();
    origin.source.reload(std::sync::Arc::new(lib));
    let cache = origin.dir.path().join("edge");
    // `demo`: every write fails with ENOSPC; `hd`: its directory is a file (ENOTDIR).
    fill_disk(&cache, "demo", 64);
    std::fs::create_dir_all(cache.join("objects")).unwrap();
    std::fs::write(cache.join("objects/hd"), b"not a directory").unwrap();
    let edge = origin.edge(4_000_000).await;
    for object in ["demo", "hd"] {
        let url = SegueUrl::parse(&format!("{}{object}", edge.url)).unwrap();
        let mut o = segue_client::PlayOptions::new(url, origin.tls.ca.clone());
        o.pace = false;
        let r = segue_client::play(&o).await;
        assert!(r.ok() && r.hash_ok, "{object}: {}", r.render());
        assert_eq!(r.frames_received, r.frames_expected, "{object}");
    }
    let store = edge.edge.store();
    assert!(store.write_failing());
    assert!(store.write_errors() >= 2);
    // Nothing reached the disk: the players were served from memory and the origin. A full
    // disk holding nothing to evict is a capacity of 0 in effect: segments are not tried.
    assert_eq!(store.used(), 0);
    assert_eq!(store.effective_capacity(), 0);
    let admission = segue_server::node::admission::Admission::new(Default::default());
    let metrics = segue_server::node::admin::metrics(&edge.edge, &admission);
    assert!(
        metrics.contains("segue_edge_cache_write_failing 1"),
        "{metrics}"
    );
    let errors = metrics
        .lines()
        .find_map(|l| l.strip_prefix("segue_edge_cache_write_errors_total "))
        .and_then(|v| v.trim().parse::<u64>().ok())
        .expect("the write error counter");
    assert_eq!(errors, store.write_errors());
    origin.shutdown().await;
}

/// A tmpfs of a given size mounted for a test, unmounted when dropped.
struct Tmpfs(PathBuf);

impl Tmpfs {
    /// None (a skip, or a failure where CI requires root) when mounting is not allowed here.
    fn mount(at: &Path, size: &str) -> Option<Self> {
        let r = std::process::Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(at)
            .output();
        let check = match r {
            Ok(o) if o.status.success() => Ok(()),
            Ok(o) => Err(format!(
                "mount: {}",
                String::from_utf8_lossy(&o.stderr).trim()
            )),
            Err(e) => Err(format!("mount: {e}")),
        };
        common::available_or_required(check, "SEGUE_REQUIRE_NETNS", "tmpfs mounts (root)")
            .then(|| Self(at.to_owned()))
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = std::process::Command::new("umount")
            .arg("-l")
            .arg(&self.0)
            .status();
    }
}

/// A cache capacity above the disk's free space (issue 21): a 1 GB cache on a 2 MiB tmpfs.
/// The disk saying it is full (ENOSPC) is the capacity reached: segments are evicted to make
/// room and the write tried again, so the edge goes on caching (the object played last is
/// all on disk) where it passed through for ever; the capacity in effect is in the metrics.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_disk_smaller_than_the_capacity_is_the_capacity() {
    let origin = common::origin_with_samples(&["hd.mp4", "demo.mp4"]).await;
    let disk = tempfile::tempdir().unwrap();
    let Some(_tmpfs) = Tmpfs::mount(disk.path(), "2m") else {
        return;
    };
    let e = origin
        .edge_with("unused", |c| c.cache_dir = disk.path().join("cache"))
        .await;
    assert_eq!(e.edge.store().capacity(), 1 << 30);
    for object in ["hd", "demo"] {
        let url = SegueUrl::parse(&format!("{}{object}", e.url)).unwrap();
        let mut o = segue_client::PlayOptions::new(url, origin.tls.ca.clone());
        o.pace = false;
        let r = segue_client::play(&o).await;
        assert!(r.ok() && r.hash_ok, "{object}: {}", r.render());
    }
    let store = e.edge.store();
    let demo = store
        .manifest(&ObjectName::new("demo", 64).unwrap())
        .unwrap();
    for _ in 0..100 {
        if store.count_from(&demo, 0) == demo.segments.len() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(
        store.count_from(&demo, 0),
        demo.segments.len(),
        "the last object played is all on disk ({} write errors)",
        store.write_errors()
    );
    assert!(store.write_errors() > 0, "the disk was full at least once");
    assert!(!store.write_failing(), "caching goes on");
    assert!(store.evictions() > 0);
    let effective = store.effective_capacity();
    assert!(effective <= 2 << 20, "capacity in effect {effective}");
    assert!(store.used() <= effective);
    let admission = segue_server::node::admission::Admission::new(Default::default());
    let metrics = segue_server::node::admin::metrics(&e.edge, &admission);
    assert!(
        metrics.contains(&format!(
            "segue_edge_cache_capacity_effective_bytes {effective}"
        )),
        "{metrics}"
    );
    origin.shutdown().await;
}

/// The edge's counter `name` from its `--stats` file (0 before the first write).
fn stat(stats: &Path, name: &str) -> u64 {
    std::fs::read(stats)
        .ok()
        .and_then(|b| serde_json::from_slice::<serde_json::Value>(&b).ok())
        .and_then(|v| v[name].as_u64())
        .unwrap_or(0)
}

fn segment_files(dir: &Path) -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = std::fs::read_dir(dir)
        .map(|d| d.filter_map(|e| e.ok().map(|e| e.path())).collect())
        .unwrap_or_default();
    v.retain(|p| {
        p.file_name()
            .and_then(|n| n.to_str())
            .is_some_and(|n| n.starts_with("seg-") && !n.ends_with(".tmp"))
    });
    v.sort();
    v
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_edge_killed_while_caching_serves_no_torn_segment() {
    let dir = tempfile::tempdir().unwrap();
    let tls = NodeTls::dev(&dir.path().join("certs")).unwrap();
    let media = media_with(dir.path(), "long.mp4");
    let p = |p: &Path| p.display().to_string();
    let (oport, eport) = (free_port(), free_port());
    let mut args = origin_args(&media, &dir.path().join("origin"), oport, &tls);
    // Slow enough that the kill lands among the writes.
    args.extend(["--response-delay-ms".into(), "100".into()]);
    let _origin = segue(&args, &dir.path().join("origin.log"));
    let cache = dir.path().join("cache");
    let stats = dir.path().join("edge.json");
    let edge_args = |warm: bool| {
        let mut a = vec![
            "edge".to_string(),
            "--origin".into(),
            format!("segue://localhost:{oport}/"),
            "--cache-dir".into(),
            p(&cache),
            "--listen".into(),
            format!("127.0.0.1:{eport}"),
            // The whole object is prefix: warming writes every segment.
            "--prefix-secs".into(),
            "600".into(),
            "--parallel".into(),
            "1".into(),
            "--stats".into(),
            p(&stats),
        ];
        if warm {
            a.extend(["--warm".into(), "long".into()]);
        }
        a.extend(tls_args(&tls));
        a
    };

    // Warming, killed with SIGKILL after some segments are written.
    let mut edge = segue(&edge_args(true), &dir.path().join("edge1.log"));
    let mut written = 0;
    for _ in 0..600 {
        written = stat(&stats, "segments_from_origin");
        if written >= 8 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(written >= 8, "the edge never warmed (see edge1.log)");
    edge.0.kill().unwrap();
    edge.0.wait().unwrap();
    let objdir = cache.join("objects/long/.segue");
    let files = segment_files(&objdir);
    assert!(files.len() >= 8, "{files:?}");
    // What a crash (or a bad disk) can leave: a torn file under a final name, a flipped byte,
    // a temporary that was never renamed.
    let torn = &files[1];
    let bytes = std::fs::read(torn).unwrap();
    std::fs::write(torn, &bytes[..bytes.len() / 2]).unwrap();
    let flipped = &files[3];
    let mut bytes = std::fs::read(flipped).unwrap();
    let mid = bytes.len() / 2;
    bytes[mid] ^= 0x40;
    std::fs::write(flipped, &bytes).unwrap();
    std::fs::write(objdir.join("seg-000099.tmp"), b"half a segment").unwrap();
    let intact = files.len() - 2;

    // Restarted on the same cache: every frame byte-exact, the intact segments reused.
    let _ = std::fs::remove_file(&stats);
    let _edge = segue(&edge_args(false), &dir.path().join("edge2.log"));
    let url = SegueUrl::parse(&format!("segue://localhost:{eport}/long")).unwrap();
    let mut report = None;
    for _ in 0..100 {
        let mut o = segue_client::PlayOptions::new(url.clone(), tls.ca.clone());
        o.pace = false;
        let r = segue_client::play(&o).await;
        if r.ok() || r.frames_received > 0 {
            report = Some(r);
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let r = report.expect("the restarted edge never served");
    assert!(r.ok() && r.hash_ok, "{}", r.render());
    assert_eq!(r.frames_received, r.frames_expected);
    let total = segment_files(&objdir).len();
    let manifest = std::fs::read(objdir.join("manifest")).unwrap();
    let m =
        segue_wire::segment::Manifest::decode(&manifest, &segue_wire::Limits::default()).unwrap();
    assert_eq!(m.object, ObjectName::new("long", 64).unwrap());
    assert_eq!(
        total,
        m.segments.len(),
        "every segment cached after the play"
    );
    // Fetched again: the segments never written and the two damaged ones, nothing else.
    let mut fetched = 0;
    for _ in 0..40 {
        fetched = stat(&stats, "segments_from_origin");
        if fetched as usize >= total - intact {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(
        fetched as usize,
        total - intact,
        "{intact} of {total} were intact"
    );
    let log = std::fs::read_to_string(dir.path().join("edge2.log")).unwrap();
    assert!(log.contains("missing or corrupt"), "{log}");
}

/// An origin and two edges of it as processes, serving `demo` (12 s), both checked serving:
/// the edges' processes and object URLs.
async fn two_edges(dir: &Path, tls: &NodeTls) -> (Vec<Kid>, SegueUrl, SegueUrl) {
    let media = media_with(dir, "demo.mp4");
    let p = |p: &Path| p.display().to_string();
    let oport = free_port();
    let args = origin_args(&media, &dir.join("origin"), oport, tls);
    let mut kids = vec![segue(&args, &dir.join("origin.log"))];
    let mut urls = Vec::new();
    for name in ["edge-a", "edge-b"] {
        let port = free_port();
        let mut a = vec![
            "edge".to_string(),
            "--origin".into(),
            format!("segue://localhost:{oport}/"),
            "--cache-dir".into(),
            p(&dir.join(name)),
            "--listen".into(),
            format!("127.0.0.1:{port}"),
        ];
        a.extend(tls_args(tls));
        kids.push(segue(&a, &dir.join(format!("{name}.log"))));
        urls.push(SegueUrl::parse(&format!("segue://localhost:{port}/demo")).unwrap());
    }
    // Both edges up and serving (an unpaced play through each; they cache the prefix only,
    // so the rest comes from the origin again).
    for url in &urls {
        let mut ready = false;
        for _ in 0..100 {
            let mut o = segue_client::PlayOptions::new(url.clone(), tls.ca.clone());
            o.pace = false;
            if segue_client::play(&o).await.ok() {
                ready = true;
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        assert!(ready, "{url} never served (see the logs in {dir:?})");
    }
    let b = urls.pop().unwrap();
    let a = urls.pop().unwrap();
    (kids, a, b)
}

/// Plays `o` (paced) and SIGKILLs `edge` 4 s into it: the report.
async fn play_and_kill(o: segue_client::PlayOptions, edge: &mut Kid) -> segue_client::Report {
    let play = tokio::spawn(async move { segue_client::play(&o).await });
    tokio::time::sleep(Duration::from_secs(4)).await;
    edge.0.kill().unwrap();
    edge.0.wait().unwrap();
    let r = play.await.unwrap();
    println!("{}", r.render());
    assert!(r.ok() && r.hash_ok, "{}", r.render());
    assert_eq!(r.frames_received, r.frames_expected, "{}", r.render());
    r
}

/// A player whose edge vanishes mid-play (SIGKILL: no close, just silence) goes on from a
/// fallback edge: from its buffer meanwhile, then from the new edge where the buffer ends,
/// without a stall, every frame byte-exact and none twice.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_player_fails_over_when_its_edge_dies() {
    let dir = tempfile::tempdir().unwrap();
    let tls = NodeTls::dev(&dir.path().join("certs")).unwrap();
    let (mut kids, a, b) = two_edges(dir.path(), &tls).await;
    let mut o = segue_client::PlayOptions::new(a, tls.ca.clone());
    o.fallbacks = vec![b.clone()];
    let r = play_and_kill(o, &mut kids[1]).await;
    assert_eq!(r.failovers.len(), 1, "{}", r.render());
    assert_eq!(r.failovers[0].to, b.to_string());
    assert!(r.failovers[0].why.contains("no media"), "{}", r.render());
    assert_eq!(r.stalls, 0, "the buffer covered the switch: {}", r.render());
    assert_eq!(r.late_frames, 0, "{}", r.render());
}

/// A fallback that does not answer is passed over for the next; playback goes on from the
/// buffer while it is tried, and every frame still arrives once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_fallback_that_does_not_answer_is_passed_over() {
    let dir = tempfile::tempdir().unwrap();
    let tls = NodeTls::dev(&dir.path().join("certs")).unwrap();
    let (mut kids, a, b) = two_edges(dir.path(), &tls).await;
    // A UDP port nobody answers on.
    let silent = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    let nobody = SegueUrl::parse(&format!(
        "segue://localhost:{}/demo",
        silent.local_addr().unwrap().port()
    ))
    .unwrap();
    let mut o = segue_client::PlayOptions::new(a, tls.ca.clone());
    o.fallbacks = vec![nobody.clone(), b.clone()];
    o.connect_timeout = Duration::from_millis(500);
    let r = play_and_kill(o, &mut kids[1]).await;
    let to: Vec<&str> = r.failovers.iter().map(|f| f.to.as_str()).collect();
    assert_eq!(to, [nobody.to_string(), b.to_string()], "{}", r.render());
    assert!(r.failovers[1].why.contains("no answer"), "{}", r.render());
}

/// An origin killed with SIGKILL and restarted on its address (a new process: new keys, so
/// no close and no stateless reset the edge would take) is noticed at once (issue 21): the
/// edge's pooled connection went silent, a new one is dialled and replaces it, and a play
/// of an object the edge does not hold succeeds within seconds of the restart. (The dead
/// connection was kept until QUIC's idle timeout, ~30 s; the play failed with "stalled".)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restarted_origin_is_noticed_at_once() {
    let dir = tempfile::tempdir().unwrap();
    let tls = NodeTls::dev(&dir.path().join("certs")).unwrap();
    let media = media_with(dir.path(), "demo.mp4");
    std::fs::copy(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../media/samples/long.mp4"),
        media.join("long.mp4"),
    )
    .unwrap();
    let (oport, eport) = (free_port(), free_port());
    let origin_args = origin_args(&media, &dir.path().join("origin"), oport, &tls);
    let mut origin = segue(&origin_args, &dir.path().join("origin1.log"));
    let edge_args = edge_args(oport, &dir.path().join("cache"), eport, &tls);
    let _edge = segue(&edge_args, &dir.path().join("edge.log"));
    let play = |object: &str| {
        let url = SegueUrl::parse(&format!("segue://localhost:{eport}/{object}")).unwrap();
        let mut o = segue_client::PlayOptions::new(url, tls.ca.clone());
        o.pace = false;
        o.stall_timeout = Duration::from_secs(30);
        async move { segue_client::play(&o).await }
    };
    // The edge up, its origin connection pooled by a play.
    let mut first = None;
    for _ in 0..100 {
        let r = play("demo").await;
        if r.ok() {
            first = Some(r);
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(first.is_some(), "the edge never served (see edge.log)");

    origin.0.kill().unwrap();
    origin.0.wait().unwrap();
    let _origin = segue(&origin_args, &dir.path().join("origin2.log"));
    let restarted = std::time::Instant::now();
    // The origin ingests and listens again; the play waits for it through the edge.
    let r = play("long").await;
    let took = restarted.elapsed();
    assert!(r.ok() && r.hash_ok, "{}", r.render());
    eprintln!("play of an uncached object after the origin's restart: {took:?}");
    assert!(
        took < Duration::from_secs(8),
        "the edge took {took:?} to use the restarted origin"
    );
    let log = std::fs::read_to_string(dir.path().join("edge.log")).unwrap();
    assert!(log.contains("replaced by a new connection"), "{log}");
}

/// Shutdown is bounded whatever the upstream does (issue 21): an edge refilling a prefix
/// from an origin that takes packets and answers none (each fetch waits out its connect
/// timeout and is retried for 10 s) exits within a few seconds of SIGTERM. (Its upkeep
/// finished the refill first: tens of seconds.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_is_bounded_with_a_silent_origin() {
    let dir = tempfile::tempdir().unwrap();
    let tls = NodeTls::dev(&dir.path().join("certs")).unwrap();
    let media = media_with(dir.path(), "long.mp4");
    let (oport, eport) = (free_port(), free_port());
    let mut origin = segue(
        &origin_args(&media, &dir.path().join("origin"), oport, &tls),
        &dir.path().join("origin.log"),
    );
    let stats = dir.path().join("edge.json");
    let edge_args = |prefix_secs: &str| {
        let mut a = edge_args(oport, &dir.path().join("cache"), eport, &tls);
        a.extend(["--prefix-secs", prefix_secs, "--warm", "long", "--stats"].map(String::from));
        a.push(stats.display().to_string());
        a
    };
    // A 2 s prefix cached while the origin answers.
    let mut edge = segue(&edge_args("2"), &dir.path().join("edge1.log"));
    let mut warmed = false;
    for _ in 0..200 {
        if stat(&stats, "segments_from_origin") >= 1 {
            warmed = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(warmed, "the edge never warmed (see edge1.log)");
    edge.0.kill().unwrap();
    edge.0.wait().unwrap();
    // The origin gone, its address silent: packets taken, nothing answered.
    origin.0.kill().unwrap();
    origin.0.wait().unwrap();
    let _silent = std::net::UdpSocket::bind(("127.0.0.1", oport)).unwrap();
    // Restarted wanting a 60 s prefix: its upkeep refills from the silent origin.
    let mut edge = segue(&edge_args("60"), &dir.path().join("edge2.log"));
    tokio::time::sleep(Duration::from_secs(4)).await;
    let asked = std::time::Instant::now();
    let ok = std::process::Command::new("kill")
        .args(["-TERM", &edge.0.id().to_string()])
        .status()
        .unwrap()
        .success();
    assert!(ok);
    let mut exited = None;
    for _ in 0..300 {
        if edge.0.try_wait().unwrap().is_some() {
            exited = Some(asked.elapsed());
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let took = exited.expect("the edge did not exit within 15 s of SIGTERM");
    eprintln!("SIGTERM to exit with a silent origin: {took:?}");
    assert!(
        took < segue_server::cli::SHUTDOWN_GRACE + Duration::from_secs(2),
        "shutdown took {took:?}"
    );
}

/// File descriptors (issue 21): an edge under a 128-descriptor limit, 300 idle TCP
/// connections opened to its admin API. Admin connections are bounded (32, and within the
/// descriptors left after the cache's reserve) and an idle one is closed after 5 s, so a
/// play is still cached to disk during the flood and the admin API answers once the idle
/// ones are cut. (1100 idle admin connections against a 1024 limit stopped cache writes
/// and made the admin API unreachable for 60 s.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_admin_connections_cannot_take_every_descriptor() {
    let dir = tempfile::tempdir().unwrap();
    let tls = NodeTls::dev(&dir.path().join("certs")).unwrap();
    let media = media_with(dir.path(), "demo.mp4");
    let (oport, eport, aport) = (free_port(), free_port(), free_port());
    let _origin = segue(
        &origin_args(&media, &dir.path().join("origin"), oport, &tls),
        &dir.path().join("origin.log"),
    );
    let mut edge_args = edge_args(oport, &dir.path().join("cache"), eport, &tls);
    edge_args.extend(["--admin".to_string(), format!("127.0.0.1:{aport}")]);
    edge_args.extend(["--admin-token", "t"].map(String::from));
    // The limit set for the edge alone (soft and hard: it cannot raise it).
    let quoted: Vec<String> = edge_args.iter().map(|a| format!("'{a}'")).collect();
    let script = format!(
        "ulimit -n 128 && exec '{}' {}",
        common::process::segue_bin(),
        quoted.join(" ")
    );
    let _edge = common::process::Kid(
        std::process::Command::new("bash")
            .args(["-c", &script])
            .env("RUST_LOG", "info")
            .stdout(std::process::Stdio::null())
            .stderr(std::fs::File::create(dir.path().join("edge.log")).unwrap())
            .spawn()
            .unwrap(),
    );
    // The edge's metrics, when its admin API answers with them.
    let metrics = || async {
        let body = common::process::admin_metrics(aport).await;
        body.contains("segue_edge_misses_total").then_some(body)
    };
    let mut up = false;
    for _ in 0..100 {
        if metrics().await.is_some() {
            up = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(up, "the admin API never answered (see edge.log)");
    let log = std::fs::read_to_string(dir.path().join("edge.log")).unwrap();
    assert!(
        log.lines()
            .any(|l| l.contains("open files") && l.contains("128")),
        "{log}"
    );

    // The flood: idle connections, held.
    let mut idle = Vec::new();
    for _ in 0..300 {
        if let Ok(Ok(s)) = tokio::time::timeout(
            Duration::from_millis(200),
            tokio::net::TcpStream::connect(("127.0.0.1", aport)),
        )
        .await
        {
            idle.push(s);
        }
    }
    // A play during the flood is served and cached.
    let url = SegueUrl::parse(&format!("segue://localhost:{eport}/demo")).unwrap();
    let mut o = segue_client::PlayOptions::new(url, tls.ca.clone());
    o.pace = false;
    let r = segue_client::play(&o).await;
    assert!(r.ok() && r.hash_ok, "{}", r.render());
    // The idle ones cut after 5 s, the admin API answers, and the cache took every write.
    let mut body = None;
    for _ in 0..100 {
        body = metrics().await;
        if body.is_some() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let body = body.expect("the admin API unreachable after the flood");
    let value = |name: &str| -> f64 {
        body.lines()
            .find_map(|l| l.strip_prefix(&format!("{name} ")))
            .and_then(|v| v.trim().parse().ok())
            .unwrap_or(-1.0)
    };
    assert_eq!(value("segue_edge_cache_write_errors_total"), 0.0, "{body}");
    assert!(value("segue_edge_cache_used_bytes") > 0.0, "{body}");
    assert!(value("segue_edge_tcp_connections_limit") <= 128.0, "{body}");
    drop(idle);
}

/// A player whose buffer covers the outage sees no stall (issue 21): a paced play from an
/// edge fetching the object slowly (one exchange at a time, the origin answering each after
/// 400 ms), the origin killed with SIGKILL mid-object and restarted at once. The edge
/// replaces its silent connection and re-issues the fetch that was in flight; the play
/// ends with every frame and no stall. (The in-flight exchange waited 5 s on the dead
/// connection, and every retry found it pooled.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_origin_restart_within_the_buffer_is_not_a_stall() {
    let dir = tempfile::tempdir().unwrap();
    let tls = NodeTls::dev(&dir.path().join("certs")).unwrap();
    let media = media_with(dir.path(), "demo.mp4");
    let (oport, eport) = (free_port(), free_port());
    let mut origin_args = origin_args(&media, &dir.path().join("origin"), oport, &tls);
    origin_args.extend(["--response-delay-ms", "400"].map(String::from));
    let mut origin = segue(&origin_args, &dir.path().join("origin1.log"));
    let mut args = edge_args(oport, &dir.path().join("cache"), eport, &tls);
    args.extend(["--parallel", "1", "--prefix-secs", "2"].map(String::from));
    let _edge = segue(&args, &dir.path().join("edge.log"));
    let url = SegueUrl::parse(&format!("segue://localhost:{eport}/demo")).unwrap();
    let mut o = segue_client::PlayOptions::new(url, tls.ca.clone());
    o.stall_timeout = Duration::from_secs(30);
    // The edge up, its origin connection pooled ahead of need.
    let mut up = false;
    for _ in 0..100 {
        if std::fs::read_to_string(dir.path().join("edge.log"))
            .is_ok_and(|l| l.contains("connected to origin"))
        {
            up = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(up, "the edge never connected (see edge.log)");
    let play = tokio::spawn(async move { segue_client::play(&o).await });
    tokio::time::sleep(Duration::from_millis(1500)).await;
    origin.0.kill().unwrap();
    origin.0.wait().unwrap();
    let _origin = segue(&origin_args, &dir.path().join("origin2.log"));
    let r = tokio::time::timeout(Duration::from_secs(60), play)
        .await
        .expect("the play ended")
        .unwrap();
    assert!(r.ok() && r.hash_ok, "{}", r.render());
    assert_eq!(r.frames_received, r.frames_expected);
    assert_eq!(r.stalls, 0, "{}", r.render());
    let log = std::fs::read_to_string(dir.path().join("edge.log")).unwrap();
    assert!(log.contains("replaced by a new connection"), "{log}");
}
