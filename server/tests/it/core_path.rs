//! The core path on loopback: a real origin, a real edge and the real player, in process.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use segue_client::{PlayOptions, Report, play};
use segue_net::{NodeTls, TransportLimits, client_endpoint, server_endpoint};
use segue_server::edge::store::Store;
use segue_server::edge::{EdgeOptions, EdgeSource};
use segue_server::node::source::{CacheCase, Source, SourceError};
use segue_server::node::upstream::Upstream;
use segue_server::node::{NodeOptions, serve};
use segue_server::origin::library::{Library, LibraryOptions};
use segue_server::origin::source::LibrarySource;
use segue_wire::segment::Manifest;
use segue_wire::{ObjectName, SegueUrl};
use tokio::sync::watch;

fn sample(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../media/samples")
        .join(name)
}

/// The origin's source, counting how often each segment is read.
#[derive(Clone)]
struct Counting {
    inner: LibrarySource,
    reads: Arc<Mutex<HashMap<(String, usize), u32>>>,
    /// Bytes per second each segment read is held to (a slow origin link), if set.
    throttle: Option<u64>,
}

impl Source for Counting {
    async fn manifest(&self, name: &ObjectName) -> Result<Arc<Manifest>, SourceError> {
        self.inner.manifest(name).await
    }
    async fn segment(&self, m: &Arc<Manifest>, i: usize) -> Result<Bytes, SourceError> {
        *self
            .reads
            .lock()
            .unwrap()
            .entry((m.object.to_string(), i))
            .or_default() += 1;
        let b = self.inner.segment(m, i).await?;
        if let Some(rate) = self.throttle {
            tokio::time::sleep(Duration::from_secs_f64(b.len() as f64 / rate as f64)).await;
        }
        Ok(b)
    }
}

/// How to (re)start the lab's origin.
struct Origin {
    opts: LibraryOptions,
    tls: NodeTls,
    throttle: Option<u64>,
    delay: Duration,
    reads: Arc<Mutex<HashMap<(String, usize), u32>>>,
}

impl Origin {
    /// Starts the origin on `port` (0: any); returns its port, stop switch and task.
    fn start(&self, port: u16) -> (u16, watch::Sender<bool>, tokio::task::JoinHandle<()>) {
        let source = Counting {
            inner: LibrarySource::new(Arc::new(Library::open(&self.opts).unwrap())),
            reads: self.reads.clone(),
            throttle: self.throttle,
        };
        let addr = std::net::SocketAddr::from(([127, 0, 0, 1], port));
        let ep = server_endpoint(addr, &self.tls, TransportLimits::default()).unwrap();
        let port = ep.local_addr().unwrap().port();
        let (stop, rx) = watch::channel(false);
        let node = NodeOptions {
            response_delay: self.delay,
            ..NodeOptions::default()
        };
        (
            port,
            stop,
            tokio::spawn(serve(ep, Arc::new(source), node, rx)),
        )
    }
}

struct Lab {
    origin: Origin,
    origin_port: u16,
    dir: tempfile::TempDir,
    ca: PathBuf,
    origin_reads: Arc<Mutex<HashMap<(String, usize), u32>>>,
    origin_stop: watch::Sender<bool>,
    origin_task: Option<tokio::task::JoinHandle<()>>,
    edge: EdgeSource,
    edge_port: u16,
    _edge_stop: watch::Sender<bool>,
}

struct LabOptions {
    files: Vec<(&'static str, Vec<u8>)>,
    origin_delay: Duration,
    prefix_secs: u64,
    parallel: usize,
    retry_for: Duration,
    throttle: Option<u64>,
    margin: f64,
    /// The edge's patience with a silent origin stream.
    upstream_timeout: Duration,
}

impl Default for LabOptions {
    fn default() -> Self {
        Self {
            files: vec![("demo.mp4", std::fs::read(sample("demo.mp4")).unwrap())],
            origin_delay: Duration::from_millis(80),
            prefix_secs: 4,
            parallel: 4,
            retry_for: Duration::from_secs(10),
            throttle: None,
            margin: EdgeOptions::default().margin,
            upstream_timeout: Duration::from_secs(2),
        }
    }
}

async fn lab(o: LabOptions) -> (Lab, Library) {
    let dir = tempfile::tempdir().unwrap();
    let certs = dir.path().join("certs");
    segue_certs::init(&certs, &[]).unwrap();
    let media = dir.path().join("media");
    std::fs::create_dir_all(&media).unwrap();
    for (name, bytes) in &o.files {
        std::fs::write(media.join(name), bytes).unwrap();
    }
    let opts = LibraryOptions {
        media_root: media,
        data_dir: dir.path().join("origin"),
        target_segment_us: 2_000_000,
        scheme: segue_server::origin::ingest::segmenter::SegmentScheme::Uniform,
    };
    let lib = Library::open(&opts).unwrap();
    let tls = NodeTls::named(&certs, "localhost");
    let ca = tls.ca.clone();
    let reads = Arc::new(Mutex::new(HashMap::new()));
    let origin = Origin {
        opts,
        tls: tls.clone(),
        throttle: o.throttle,
        delay: o.origin_delay,
        reads: reads.clone(),
    };
    let (origin_port, origin_stop, origin_task) = origin.start(0);

    let store = Store::open(&dir.path().join("edge"), 1 << 30, o.prefix_secs * 1_000_000).unwrap();
    let url = SegueUrl::parse(&format!("segue://localhost:{origin_port}/")).unwrap();
    let upstream = Upstream::new(
        client_endpoint(&tls, Default::default()).unwrap(),
        url,
        o.upstream_timeout,
    );
    let edge = EdgeSource::new(
        store,
        upstream,
        EdgeOptions {
            parallel: o.parallel,
            retry_for: o.retry_for,
            margin: o.margin,
            ..EdgeOptions::default()
        },
    );
    let ep = server_endpoint(
        "127.0.0.1:0".parse().unwrap(),
        &tls,
        TransportLimits::default(),
    )
    .unwrap();
    let edge_port = ep.local_addr().unwrap().port();
    let (edge_stop, rx) = watch::channel(false);
    tokio::spawn(serve(
        ep,
        Arc::new(edge.clone()),
        NodeOptions::default(),
        rx,
    ));
    (
        Lab {
            origin,
            origin_port,
            dir,
            ca,
            origin_reads: reads,
            origin_stop,
            origin_task: Some(origin_task),
            edge,
            edge_port,
            _edge_stop: edge_stop,
        },
        lib,
    )
}

impl Lab {
    fn options(&self, object: &str, pace: bool) -> PlayOptions {
        let url =
            SegueUrl::parse(&format!("segue://localhost:{}/{object}", self.edge_port)).unwrap();
        let mut p = PlayOptions::new(url, self.ca.clone());
        p.pace = pace;
        p.stall_timeout = Duration::from_secs(8);
        p
    }

    async fn play(&self, object: &str, pace: bool) -> Report {
        play(&self.options(object, pace)).await
    }

    /// Stops the origin and waits until it has closed its connections and socket.
    async fn stop_origin(&mut self) {
        self.origin_stop.send(true).unwrap();
        let task = self.origin_task.take().unwrap();
        tokio::time::timeout(Duration::from_secs(5), task)
            .await
            .unwrap()
            .unwrap();
    }

    /// Starts the origin again on its old port (re-ingesting changed files).
    fn restart_origin(&mut self) {
        let (_, stop, task) = self.origin.start(self.origin_port);
        self.origin_stop = stop;
        self.origin_task = Some(task);
    }

    fn origin_segment_reads(&self) -> u32 {
        self.origin_reads.lock().unwrap().values().sum()
    }
}

fn assert_clean(r: &Report) {
    assert!(r.ok(), "play failed:\n{}", r.render());
    assert_eq!(r.stalls, 0, "stalled:\n{}", r.render());
    assert_eq!(r.lost_frames, 0);
}

/// Miss, prefix hit and full hit, paced in real time: exact frames and hashes, no stalls,
/// with an origin delay (80 ms) far below the prefix (4 s).
async fn three_cases(file: &'static str, sample_file: &str) {
    let bytes = std::fs::read(sample(sample_file)).unwrap();
    let object = file.rsplit_once('.').unwrap().0;
    let (lab, lib) = lab(LabOptions {
        files: vec![
            (file, bytes.clone()),
            ("warm.mp4", std::fs::read(sample("faststart.mp4")).unwrap()),
        ],
        ..LabOptions::default()
    })
    .await;
    let segments = lib
        .get(&ObjectName::new(object, 64).unwrap())
        .unwrap()
        .manifest
        .segments
        .len();

    let miss = lab.play(object, true).await;
    assert_clean(&miss);
    let s = lab.edge.stats();
    assert_eq!(s.misses.load(Ordering::Relaxed), 1);
    // Everything the session fetched stays cached: wait for the prefetch to settle.
    for _ in 0..100 {
        if lab.edge.store().count_from(
            &lab.edge
                .manifest(&ObjectName::new(object, 64).unwrap())
                .await
                .unwrap(),
            0,
        ) == segments
        {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    lab.edge
        .warm(&ObjectName::new("warm", 64).unwrap())
        .await
        .unwrap();
    let reads_before_prefix = lab.origin_segment_reads();
    let prefix = lab.play("warm", true).await;
    assert_clean(&prefix);
    assert_eq!(s.prefix_hits.load(Ordering::Relaxed), 1);
    assert!(
        lab.origin_segment_reads() > reads_before_prefix,
        "the suffix came from the origin"
    );

    let reads_before_full = lab.origin_segment_reads();
    let full = lab.play(object, true).await;
    assert_clean(&full);
    assert_eq!(s.full_hits.load(Ordering::Relaxed), 1);
    assert_eq!(
        lab.origin_segment_reads(),
        reads_before_full,
        "a full hit touched the origin"
    );
    // The prefix and full hits start from disk: no origin round trip before the first frame.
    assert!(prefix.ttff_ms.unwrap() < miss.ttff_ms.unwrap());
    assert!(
        full.ttff_ms.unwrap() < 80.0,
        "full hit TTFF {:?}",
        full.ttff_ms
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_cases_mp4_moov_at_end_with_b_frames() {
    three_cases("demo.mp4", "demo.mp4").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_cases_mpeg_ts() {
    three_cases("tsdemo.ts", "demo.ts").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn twenty_players_one_origin_fetch_per_segment() {
    let (lab, lib) = lab(LabOptions::default()).await;
    let segments = lib
        .get(&ObjectName::new("demo", 64).unwrap())
        .unwrap()
        .manifest
        .segments
        .len();
    let plays: Vec<_> = (0..20)
        .map(|_| {
            let opts = lab.options("demo", false);
            tokio::spawn(async move { play(&opts).await })
        })
        .collect();
    for p in plays {
        let r = p.await.unwrap();
        assert!(r.ok(), "{}", r.render());
    }
    let reads = lab.origin_reads.lock().unwrap().clone();
    assert_eq!(reads.len(), segments, "every segment fetched");
    assert!(
        reads.values().all(|n| *n == 1),
        "origin served a segment more than once: {reads:?}"
    );
    assert_eq!(
        lab.edge
            .stats()
            .manifests_from_origin
            .load(Ordering::Relaxed),
        1
    );
}

/// A miss on a cold edge asks for the manifest and segment 0 together: one origin round
/// trip (the origin answers each request after 300 ms), not two.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_miss_costs_one_origin_round_trip() {
    let delay = Duration::from_millis(300);
    let (lab, _lib) = lab(LabOptions {
        origin_delay: delay,
        ..LabOptions::default()
    })
    .await;
    let r = lab.play("demo", false).await;
    assert!(r.ok(), "{}", r.render());
    let ttff = r.ttff_ms.unwrap();
    // Two round trips would be 600 ms and more; one is 300 ms plus loopback transfer.
    assert!(ttff < 450.0, "TTFF {ttff:.0} ms with a 300 ms origin");
    let s = lab.edge.snapshot();
    assert_eq!((s.misses, s.manifests_from_origin), (1, 1), "{s:?}");
    assert_eq!(s.segments_pipelined, 1, "{s:?}");
    let reads = lab.origin_reads.lock().unwrap().clone();
    assert_eq!(reads.get(&("demo".to_owned(), 0)), Some(&1), "{reads:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn origin_killed_mid_suffix() {
    let (mut lab, _lib) = lab(LabOptions {
        files: vec![
            ("demo.mp4", std::fs::read(sample("demo.mp4")).unwrap()),
            ("long.mp4", std::fs::read(sample("long.mp4")).unwrap()),
        ],
        origin_delay: Duration::from_millis(400),
        prefix_secs: 2,
        parallel: 1,
        retry_for: Duration::from_secs(2),
        ..LabOptions::default()
    })
    .await;
    // `demo` becomes fully cached first.
    assert!(lab.play("demo", false).await.ok());
    for _ in 0..100 {
        if lab
            .edge
            .stats()
            .segments_from_origin
            .load(Ordering::Relaxed)
            >= 6
        {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let long_opts = lab.options("long", true);
    let long = tokio::spawn(async move { play(&long_opts).await });
    tokio::time::sleep(Duration::from_millis(1500)).await;
    // Kill the origin: it closes every connection and its socket.
    lab.stop_origin().await;
    let r = tokio::time::timeout(Duration::from_secs(60), long)
        .await
        .unwrap()
        .unwrap();
    assert!(!r.ok());
    let err = r.error.clone().unwrap_or_default();
    // The player learns the object, the reason class and an incident id (issue 21), not
    // the edge's upstream address (it was told "origin segue://localhost:PORT/ stalled").
    assert!(
        err.contains("server ended the session")
            && err.contains("long: upstream unavailable (incident "),
        "{}",
        r.render()
    );
    assert!(
        !err.contains("segue://") && !err.contains("localhost"),
        "{err}"
    );
    assert!(r.frames_received > 0, "the prefix played");

    // The edge is still up: a cached object plays, an uncached one gets a clear error.
    let again = lab.play("demo", false).await;
    assert!(again.ok(), "{}", again.render());
    let gone = lab.play("never-cached", false).await;
    let e = gone.error.unwrap_or_default();
    assert!(
        e.contains("502") && e.contains("never-cached: upstream unavailable (incident "),
        "{e}"
    );

    // The origin comes back on the same address: the edge reconnects (with backoff) and the
    // object that failed plays through, its missing segments fetched anew.
    lab.restart_origin();
    let mut reconnected = false;
    for _ in 0..100 {
        if lab.edge.upstream().connection().await.is_ok() {
            reconnected = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(
        reconnected,
        "edge did not reconnect to the restarted origin"
    );
    let back = lab.play("long", false).await;
    assert!(back.ok(), "{}", back.render());
    drop(lab.dir);
}

/// The origin dies while a paced play still needs segments from it and comes back within
/// what the player has buffered (its prefix and send-ahead): the edge reconnects, fetches the
/// rest, and the player never stalls.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn origin_back_within_the_buffer_no_stall() {
    let (mut lab, _lib) = lab(LabOptions {
        origin_delay: Duration::from_millis(300),
        prefix_secs: 6,
        parallel: 1,
        retry_for: Duration::from_secs(10),
        ..LabOptions::default()
    })
    .await;
    let demo = ObjectName::new("demo", 64).unwrap();
    let warmed = lab.edge.warm(&demo).await.unwrap();
    let total = lab.edge.manifest(&demo).await.unwrap().segments.len() as u64;
    let edge = lab.edge.clone();
    let from_origin = move || edge.stats().segments_from_origin.load(Ordering::Relaxed);
    let opts = lab.options("demo", true);
    let playing = tokio::spawn(async move { play(&opts).await });
    tokio::time::sleep(Duration::from_millis(400)).await;
    let before = from_origin();
    lab.stop_origin().await;
    tokio::time::sleep(Duration::from_millis(1500)).await;
    lab.restart_origin();
    let r = tokio::time::timeout(Duration::from_secs(60), playing)
        .await
        .unwrap()
        .unwrap();
    assert_clean(&r);
    // The outage hit segments the play still needed, and they came after the restart.
    assert!(before < total, "all {total} fetched before the outage");
    assert_eq!(
        from_origin(),
        total,
        "warmed {warmed}, {before} before the outage"
    );
    drop(lab.dir);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_media_files_do_not_stop_the_others() {
    let demo = std::fs::read(sample("demo.mp4")).unwrap();
    let (lab, lib) = lab(LabOptions {
        files: vec![
            ("demo.mp4", demo.clone()),
            ("cut.mp4", demo[..100_000].to_vec()),
            ("garbage.ts", vec![0x42; 5000]),
            ("empty.mp4", Vec::new()),
        ],
        ..LabOptions::default()
    })
    .await;
    assert_eq!(lib.failures.len(), 3, "{:?}", lib.failures);
    assert!(lib.failures["cut"].contains("cut.mp4") && lib.failures["cut"].contains("truncated"));
    assert!(lib.failures["garbage"].contains("sync byte"));
    assert!(lib.failures["empty"].contains("empty file"));
    let ok = lab.play("demo", false).await;
    assert!(ok.ok(), "{}", ok.render());
    let bad = lab.play("cut", false).await;
    let e = bad.error.unwrap_or_default();
    assert!(
        e.contains("404") && e.contains("could not be ingested"),
        "{e}"
    );
    // The player learns the object and why in general, not the origin's paths.
    let media_root = lab.origin.opts.media_root.display().to_string();
    assert!(
        !e.contains("cut.mp4") && !e.contains(&media_root) && !e.contains("truncated"),
        "{e}"
    );
}

/// `--record` output is readable by ffprobe with the source's frame counts. Needs ffprobe
/// (Debian: ffmpeg); CI sets SEGUE_REQUIRE_FFPROBE=1 so this cannot silently pass there.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn recording_is_readable_by_ffprobe() {
    let probe = |args: &[&str]| std::process::Command::new("ffprobe").args(args).output();
    if probe(&["-version"]).is_err() {
        assert!(
            std::env::var_os("SEGUE_REQUIRE_FFPROBE").is_none(),
            "ffprobe is required but missing"
        );
        eprintln!("SKIPPED: ffprobe not installed (apt-get install ffmpeg)");
        return;
    }
    let (lab, _lib) = lab(LabOptions::default()).await;
    let rec = lab.dir.path().join("rec.h264");
    let mut opts = lab.options("demo", false);
    opts.record = Some(rec.clone());
    let r = play(&opts).await;
    assert!(r.ok(), "{}", r.render());
    let count = |path: &Path| {
        let out = probe(&[
            "-v",
            "error",
            "-count_frames",
            "-show_entries",
            "stream=codec_name,nb_read_frames",
            "-of",
            "csv=p=0",
            path.to_str().unwrap(),
        ])
        .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).trim().to_string()
    };
    assert_eq!(count(&rec), "h264,360");
    assert_eq!(count(&lab.dir.path().join("rec.h264.aac")), "aac,564");
}

/// A miss over an origin link slower than the object's bitrate: the edge waits for a
/// sufficient portion and the play does not stall. The control run starts as soon as the first
/// segment is in (margin 0) and must stall, so this test can tell the difference. Meanwhile
/// the first picture is not held back: it reaches the player long before playback can start.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_origin_miss_waits_for_a_sufficient_portion() {
    // `demo` is 332 670 bytes over 12.07 s (27.6 KB/s); the link gives 2 x 9 KB/s.
    let slow = |margin| LabOptions {
        origin_delay: Duration::ZERO,
        parallel: 2,
        throttle: Some(9_000),
        margin,
        // The throttle holds a whole segment back, then sends it: no bytes for seconds.
        upstream_timeout: Duration::from_secs(20),
        retry_for: Duration::from_secs(30),
        ..LabOptions::default()
    };
    let (with, _l1) = lab(slow(1.25)).await;
    let (without, _l2) = lab(slow(0.0)).await;
    let mut o1 = with.options("demo", true);
    let mut o2 = without.options("demo", true);
    o1.stall_timeout = Duration::from_secs(30);
    o2.stall_timeout = Duration::from_secs(30);
    let (r1, r2) = tokio::join!(play(&o1), play(&o2));
    eprintln!(
        "with the sufficient portion:\n{}\nstarting at once (control):\n{}",
        r1.render(),
        r2.render()
    );
    assert!(r1.ok(), "{}", r1.render());
    assert_eq!(
        r1.stalls,
        0,
        "with the sufficient portion:\n{}",
        r1.render()
    );
    let (ttff, start) = (r1.ttff_ms.unwrap(), r1.startup_ms.unwrap());
    assert!(
        start > 3000.0,
        "started before a sufficient portion: {}",
        r1.render()
    );
    assert!(
        ttff + 2000.0 < start,
        "the first picture waited for the sufficient portion: {}",
        r1.render()
    );
    assert!(r2.ok(), "{}", r2.render());
    assert!(r2.stalls > 0, "control run did not stall:\n{}", r2.render());
    assert!(r2.startup_ms.unwrap() < start);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unknown_object_through_the_edge_is_a_clean_404() {
    let (lab, _lib) = lab(LabOptions::default()).await;
    let r = lab.play("nothing-here", false).await;
    let e = r.error.unwrap_or_default();
    assert!(
        e.contains("404 no object nothing-here") && !e.contains("no object no object"),
        "{e}"
    );
}

/// Asking for names that do not exist leaves nothing behind; a play that found nothing is
/// counted a miss once, when it starts.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn plays_that_found_nothing_leave_no_marks() {
    let (lab, _lib) = lab(LabOptions {
        origin_delay: Duration::ZERO,
        ..LabOptions::default()
    })
    .await;
    for i in 0..50 {
        let name = ObjectName::new(&format!("nothing-{i}"), 64).unwrap();
        assert!(lab.edge.manifest_for_play(&name).await.is_err());
    }
    assert_eq!(lab.edge.cold_marks(), 0);
    let demo = ObjectName::new("demo", 64).unwrap();
    let m = lab.edge.manifest_for_play(&demo).await.unwrap();
    assert_eq!(lab.edge.cold_marks(), 1);
    assert_eq!(lab.edge.will_play(&m, 0), Some(CacheCase::Miss));
    assert_eq!(lab.edge.cold_marks(), 0);
    lab.edge.stopped(&m, 0);
}

/// The file behind an object changes at the origin while the edge holds the old manifest: the
/// play that hits the change ends with a clear error, the edge drops its stale copy, and the
/// next play gets the new content. No byte of the old and new versions is ever mixed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn object_changed_at_the_origin_is_fetched_again() {
    let (mut lab, _lib) = lab(LabOptions {
        prefix_secs: 2,
        ..LabOptions::default()
    })
    .await;
    let demo = ObjectName::new("demo", 64).unwrap();
    lab.edge.warm(&demo).await.unwrap(); // manifest + first segment of the old version
    let old = lab.edge.manifest(&demo).await.unwrap();

    // New content under the same name; the origin restarts and re-ingests it.
    lab.stop_origin().await;
    std::fs::write(
        lab.origin.opts.media_root.join("demo.mp4"),
        std::fs::read(sample("long.mp4")).unwrap(),
    )
    .unwrap();
    lab.restart_origin();

    let first = lab.play("demo", false).await;
    let e = first.error.clone().unwrap_or_default();
    assert!(
        e.contains("demo changed at the origin"),
        "{}",
        first.render()
    );
    let second = lab.play("demo", false).await;
    assert!(second.ok(), "{}", second.render());
    assert_eq!(
        second.frames_expected,
        1800 + 2814,
        "the new content (long.mp4)"
    );
    assert_ne!(
        lab.edge.manifest(&demo).await.unwrap().revision,
        old.revision
    );
}
