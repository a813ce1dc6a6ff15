//! `segue-lab soak`: many paced players against one edge for a bounded time, printing what a
//! long run shows and a short test does not: stalls and failures under load, every play's
//! bytes checked against the manifest, and the edge's memory and CPU over time (a leak shows
//! as a rising RSS). Origin and edge run as child processes on loopback (so their memory and
//! CPU can be read); the players run in this process. Figures, not pass/fail.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::Duration;

use anyhow::Context as _;
use segue_client::{PlayOptions, play};
use segue_net::{Congestion, TransportSettings};
use segue_wire::SegueUrl;
use tokio::time::Instant;

use crate::bench::{Kid, Stage, free_port, rss_kib, wait_ready};

/// Soak settings.
#[derive(Debug, Clone)]
pub struct SoakOptions {
    /// Directory holding the samples (the repo's media/samples).
    pub samples: PathBuf,
    /// Sample stems the players play, alternating (`<stem>.mp4`; hd3 and hd8 are made on
    /// demand).
    pub objects: Vec<String>,
    /// The edge on one core and everything else (players, origin) on another, so the figure
    /// is the edge's (needs two cores and `taskset`).
    pub pin: bool,
    /// The share of its core the edge may use (a cgroup CPU quota), when the players cannot
    /// load a whole edge core: `players / share` is then the sessions-per-core figure.
    pub edge_cpu: Option<f64>,
    /// Concurrent paced players.
    pub players: usize,
    /// How long the run lasts; plays still going then are stopped.
    pub duration: Duration,
    /// Players start evenly over this long (not 500 handshakes at once).
    pub ramp: Duration,
    /// Seconds between samples of the edge's memory and CPU.
    pub sample_every: Duration,
    /// The congestion controller of the nodes and the players.
    pub congestion: Congestion,
}

/// What the players saw, shared by their tasks.
#[derive(Debug, Default)]
struct Tally {
    playing: AtomicUsize,
    plays: AtomicU64,
    exact: AtomicU64,
    failed: AtomicU64,
    /// Plays stopped at the run's end (not counted as failures).
    cut: AtomicU64,
    stalls: AtomicU64,
    stall_us: AtomicU64,
    late: AtomicU64,
    lost: AtomicU64,
    frames: AtomicU64,
    bytes: AtomicU64,
}

/// CPU seconds (user + system) a process used so far, from /proc/PID/stat.
fn cpu_s(pid: u32) -> anyhow::Result<f64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))?;
    // Fields after the command name (which may hold spaces) start after the last ')'.
    let rest = stat.rsplit_once(')').context("malformed stat")?.1;
    let f: Vec<&str> = rest.split_whitespace().collect();
    // utime and stime are fields 14 and 15 of the whole line: 11 and 12 after the name.
    let ticks: f64 = f
        .get(11..13)
        .context("short stat")?
        .iter()
        .map(|v| v.parse::<f64>().unwrap_or(0.0))
        .sum();
    Ok(ticks / 100.0) // USER_HZ is 100 on Linux
}

/// One player: paced plays one after another (alternating objects) until `end`.
async fn player(
    urls: Arc<Vec<SegueUrl>>,
    ca: PathBuf,
    k: usize,
    end: Instant,
    t: Arc<Tally>,
    congestion: Congestion,
) {
    let mut n = k;
    while Instant::now() < end {
        let mut o = PlayOptions::new(urls[n % urls.len()].clone(), ca.clone());
        o.connect.transport = TransportSettings::with(congestion);
        // Each player from its own address, as viewers are (the edge's per-client limit).
        o.connect.bind = Some(crate::run::loopback_viewer(k));
        o.give_up_at = Some(end);
        o.stall_timeout = Duration::from_secs(20);
        n += 1;
        t.playing.fetch_add(1, Ordering::Relaxed);
        let r = play(&o).await;
        t.playing.fetch_sub(1, Ordering::Relaxed);
        t.stalls.fetch_add(u64::from(r.stalls), Ordering::Relaxed);
        t.stall_us
            .fetch_add((r.stall_ms * 1000.0) as u64, Ordering::Relaxed);
        t.late.fetch_add(r.late_frames, Ordering::Relaxed);
        t.frames.fetch_add(r.frames_received, Ordering::Relaxed);
        t.bytes.fetch_add(r.bytes, Ordering::Relaxed);
        if r.gave_up {
            t.cut.fetch_add(1, Ordering::Relaxed);
            continue;
        }
        t.plays.fetch_add(1, Ordering::Relaxed);
        t.lost.fetch_add(r.lost_frames, Ordering::Relaxed);
        if r.ok() {
            t.exact.fetch_add(1, Ordering::Relaxed);
        } else {
            t.failed.fetch_add(1, Ordering::Relaxed);
            tracing::warn!(url = %r.url, "play failed: {}", r.error.as_deref().unwrap_or("frames or hash"));
            // A failing edge is not hammered in a tight loop.
            tokio::time::sleep(Duration::from_secs(1)).await;
        }
    }
}

/// Runs the soak and returns the printed report (lines are also printed as they come).
pub async fn run(exe: &Path, o: &SoakOptions) -> anyhow::Result<String> {
    let stage = Stage::new()?;
    let (dir, media) = (&stage.dir, &stage.media);
    let ca = stage.ca.clone();
    for stem in &o.objects {
        crate::run::ensure_sample(&o.samples, stem)?;
        let f = format!("{stem}.mp4");
        std::fs::copy(o.samples.join(&f), media.join(&f))
            .with_context(|| format!("samples: {f}"))?;
    }
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    let pin = o.pin && cores >= 2;
    if pin {
        // Players and the origin (spawned next, inheriting it) on the last core.
        let me = std::process::id().to_string();
        let last = (cores - 1).to_string();
        let st = std::process::Command::new("taskset")
            .args(["-a", "-cp", &last, &me])
            .stdout(Stdio::null())
            .status()
            .context("taskset (util-linux) pins the players; --no-pin runs without")?;
        anyhow::ensure!(st.success(), "taskset -a -cp {last} {me} failed");
    }
    let (oport, eport) = (free_port()?, free_port()?);
    let s = |p: &Path| p.display().to_string();
    let spawn_on = |core: Option<usize>, args: Vec<String>, log: &str| -> anyhow::Result<Kid> {
        let mut c = match core {
            Some(k) => {
                let mut c = Command::new("taskset");
                c.args(["-c", &k.to_string()]).arg(exe);
                c
            }
            None => Command::new(exe),
        };
        Ok(Kid(c
            .args(args)
            .env("RUST_LOG", "warn")
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(dir.join(log))?)
            .spawn()?))
    };
    let spawn = |args: Vec<String>, log: &str| spawn_on(None, args, log);
    let node_cc = Stage::congestion_args(o.congestion);
    let _origin = spawn(
        [stage.origin_args(oport), node_cc.clone()].concat(),
        "origin.log",
    )?;
    wait_ready(
        &SegueUrl::parse(&format!("segue://localhost:{oport}/"))?,
        &ca,
    )
    .await?;
    let mut args = vec![
        "edge".into(),
        "--origin".into(),
        format!("segue://localhost:{oport}/"),
        "--cache-dir".into(),
        s(&dir.join("edge")),
        "--listen".into(),
        format!("127.0.0.1:{eport}"),
    ];
    args.extend(stage.tls_args());
    args.extend(node_cc);
    // Declared before the edge, so the edge is gone when the limit's cgroup is removed.
    let limit;
    // The edge alone on core 0 (taskset execs it: the pid is the edge's).
    let edge = spawn_on(pin.then_some(0), args, "edge.log")?;
    let pid = edge.0.id();
    limit = o
        .edge_cpu
        .map(|share| crate::cpulimit::CpuLimit::apply(pid, share, &format!("segue-soak-{pid}")))
        .transpose()?;
    wait_ready(
        &SegueUrl::parse(&format!("segue://localhost:{eport}/"))?,
        &ca,
    )
    .await?;

    let urls: Vec<SegueUrl> = o
        .objects
        .iter()
        .map(|n| SegueUrl::parse(&format!("segue://localhost:{eport}/{n}")))
        .collect::<Result<_, _>>()?;
    // Each object played once unpaced first (the edge's cache holds it from then on); its
    // bitrate from the manifest.
    let lib_opts = segue_server::origin::library::LibraryOptions {
        media_root: media.to_owned(),
        data_dir: dir.join("describe"),
        target_segment_us: 2_000_000,
        scheme: segue_server::origin::ingest::segmenter::SegmentScheme::Uniform,
    };
    // Ingest reads the files: off the runtime the players share.
    let lib = tokio::task::spawn_blocking(move || {
        segue_server::origin::library::Library::open(&lib_opts)
    })
    .await??;
    let mut described = Vec::new();
    for (u, name) in urls.iter().zip(&o.objects) {
        let mut p = PlayOptions::new(u.clone(), ca.clone());
        p.pace = false;
        p.connect.transport = TransportSettings::with(o.congestion);
        let r = play(&p).await;
        anyhow::ensure!(r.ok(), "the first play of {u} failed: {:?}", r.error);
        let obj = lib
            .names()
            .into_iter()
            .find(|n| n.as_str() == name)
            .and_then(|n| lib.get(&n))
            .with_context(|| format!("{name} was not ingested: {:?}", lib.failures))?;
        let m = &obj.manifest;
        let secs = m.duration_us as f64 / 1e6;
        described.push(format!(
            "{name} ({secs:.0} s, {:.2} Mbit/s)",
            m.total_size() as f64 * 8.0 / secs.max(1e-6) / 1e6
        ));
    }
    let urls = Arc::new(urls);
    let mut out = String::new();
    let mut say = |line: String| {
        println!("{line}");
        out.push_str(&line);
        out.push('\n');
    };
    say(format!(
        "Segue soak: {} paced players for {} s against one edge ({} build, congestion control {}; origin and edge as child processes on loopback, players in process from their own 127.1.x.y addresses, starting over {} s; {}; objects {}, alternating, cached by a first play)",
        o.players,
        o.duration.as_secs(),
        if cfg!(debug_assertions) {
            "debug"
        } else {
            "release"
        },
        o.congestion.as_str(),
        o.ramp.as_secs(),
        if pin {
            format!(
                "the edge pinned to core 0{}, players and origin to core {}",
                limit.as_ref().map_or(String::new(), |l| format!(
                    " and limited to {:.0} % of it",
                    l.share * 100.0
                )),
                cores - 1
            )
        } else {
            format!("not pinned: the edge shares {cores} core(s) with the players")
        },
        described.join(", ")
    ));
    say(format!(
        "{:>6} {:>13} {:>12} {:>8} {:>10} {:>7} {:>7}",
        "t (s)", "edge RSS MiB", "edge CPU %", "playing", "plays done", "failed", "stalls"
    ));
    let t0 = Instant::now();
    let end = t0 + o.duration;
    let tally = Arc::new(Tally::default());
    let mut players = tokio::task::JoinSet::new();
    let gap = o.ramp / o.players.max(1) as u32;
    let starter = {
        let (urls, ca, tally) = (urls.clone(), ca.clone(), tally.clone());
        let (n, cc) = (o.players, o.congestion);
        tokio::spawn(async move {
            for k in 0..n {
                players.spawn(player(urls.clone(), ca.clone(), k, end, tally.clone(), cc));
                tokio::time::sleep(gap).await;
            }
            while players.join_next().await.is_some() {}
        })
    };
    let (mut rss, mut cpu) = (Vec::new(), Vec::new());
    let me = std::process::id();
    let mut last = (t0, cpu_s(pid)?, cpu_s(me)?);
    // The players' CPU (this process): if it is near 100 % of their core, they, not the
    // edge, bound the figure.
    let mut players_cpu = Vec::new();
    while Instant::now() < end {
        tokio::time::sleep(o.sample_every.min(end - Instant::now())).await;
        let now = Instant::now();
        let (r, c, m) = (rss_kib(pid)?, cpu_s(pid)?, cpu_s(me)?);
        let dt = (now - last.0).as_secs_f64();
        let pct = (c - last.1) / dt * 100.0;
        players_cpu.push((m - last.2) / dt * 100.0);
        last = (now, c, m);
        rss.push(r as f64 / 1024.0);
        cpu.push(pct);
        say(format!(
            "{:>6.0} {:>13.1} {:>12.1} {:>8} {:>10} {:>7} {:>7}",
            (now - t0).as_secs_f64(),
            r as f64 / 1024.0,
            pct,
            tally.playing.load(Ordering::Relaxed),
            tally.plays.load(Ordering::Relaxed),
            tally.failed.load(Ordering::Relaxed),
            tally.stalls.load(Ordering::Relaxed),
        ));
    }
    // Plays still going were told to stop at `end`; give them a moment to report.
    let _ = tokio::time::timeout(Duration::from_secs(30), starter).await;
    let g = |a: &AtomicU64| a.load(Ordering::Relaxed);
    let (first, peak, lastr) = (
        rss.first().copied().unwrap_or(0.0),
        rss.iter().copied().fold(0.0, f64::max),
        rss.last().copied().unwrap_or(0.0),
    );
    // After the ramp: what a leak would move.
    let ramp_samples = (o.ramp.as_secs_f64() / o.sample_every.as_secs_f64()).ceil() as usize;
    let steady: Vec<f64> = rss.iter().skip(ramp_samples + 1).copied().collect();
    let (smin, smax) = steady
        .iter()
        .fold((f64::MAX, 0.0f64), |(lo, hi), v| (lo.min(*v), hi.max(*v)));
    let mean_cpu = cpu.iter().sum::<f64>() / cpu.len().max(1) as f64;
    say(String::new());
    say(format!(
        "plays completed   {} ({} byte-exact: every track's frame count and content hash match the manifest; {} failed); {} cut at the end of the run",
        g(&tally.plays),
        g(&tally.exact),
        g(&tally.failed),
        g(&tally.cut)
    ));
    say(format!(
        "stalls            {} ({:.1} s in all); late frames {}, lost frames {}",
        g(&tally.stalls),
        g(&tally.stall_us) as f64 / 1e6,
        g(&tally.late),
        g(&tally.lost)
    ));
    say(format!(
        "delivered         {} frames, {:.1} MB",
        g(&tally.frames),
        g(&tally.bytes) as f64 / 1e6
    ));
    let after_ramp = if steady.is_empty() {
        "no sample after the ramp".to_string()
    } else {
        format!("after the ramp between {smin:.1} and {smax:.1} MiB")
    };
    say(format!(
        "edge RSS          first sample {first:.1} MiB, peak {peak:.1} MiB, last {lastr:.1} MiB; {after_ramp}"
    ));
    say(format!(
        "edge CPU          mean {mean_cpu:.1} % of one core (max {:.1} %)",
        cpu.iter().copied().fold(0.0, f64::max)
    ));
    say(format!(
        "players CPU       mean {:.1} % (this process: the players, depacketizing and hashing every frame)",
        players_cpu.iter().sum::<f64>() / players_cpu.len().max(1) as f64
    ));
    if let Some((periods, throttled)) = limit.as_ref().and_then(|l| l.throttled()) {
        say(format!(
            "edge CPU limit    quota ran out in {throttled} of {periods} {} ms periods ({:.1} %)",
            crate::cpulimit::PERIOD_US / 1000,
            throttled as f64 * 100.0 / periods.max(1) as f64
        ));
    }
    if pin {
        let held = g(&tally.stalls) == 0 && g(&tally.failed) == 0;
        let share = limit.as_ref().map_or(1.0, |l| l.share);
        say(format!(
            "per edge core     {} paced sessions on {}: {} stalls, {} failed plays{}",
            o.players,
            if limit.is_some() {
                format!("{:.0} % of one core", share * 100.0)
            } else {
                "one core".into()
            },
            g(&tally.stalls),
            g(&tally.failed),
            match (held, limit.is_some()) {
                (true, true) => format!(": {:.0} sessions per edge core", o.players as f64 / share),
                (true, false) => String::new(),
                (false, _) =>
                    " (above the ceiling: fewer players or a larger share to find it)".into(),
            }
        ));
    }
    drop(edge);
    Ok(out)
}
