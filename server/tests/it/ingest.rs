//! Ingest of the shipped samples and of broken files.

use std::path::{Path, PathBuf};

use segue_server::origin::ingest::{IngestError, demux, segmenter};
use segue_wire::segment::FrameReader;
use segue_wire::{Limits, ObjectName};

fn sample(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../media/samples")
        .join(name)
}

fn ingest(path: &Path) -> segmenter::Segmented {
    let d = demux(path).unwrap();
    let name = ObjectName::new("demo", 1024).unwrap();
    segmenter::segment(&d, &name, vec!["mp4".into()], 1, 2_000_000, path).unwrap()
}

#[test]
fn mp4_moov_at_end_with_b_frames() {
    let path = sample("demo.mp4");
    let bytes = std::fs::read(&path).unwrap();
    let moov = bytes.windows(4).position(|w| w == b"moov").unwrap();
    let mdat = bytes.windows(4).position(|w| w == b"mdat").unwrap();
    assert!(moov > mdat, "sample must have moov after mdat");

    let d = demux(&path).unwrap();
    assert_eq!(d.tracks.len(), 2);
    assert!(d.tracks[0].codec.is_video());
    assert_eq!(d.samples[0].len(), 360); // ffprobe: 360 video frames
    assert_eq!(d.samples[1].len(), 564); // ffprobe: 564 audio frames
    // B-frames: presentation order differs from decode order.
    let pts: Vec<u64> = d.samples[0]
        .iter()
        .map(|s| s.dts + u64::from(s.cto))
        .collect();
    assert!(pts.windows(2).any(|w| w[1] < w[0]), "no reordered frames");

    let s = ingest(&path);
    let m = &s.manifest;
    assert_eq!(m.tracks[0].frames, 360);
    assert_eq!(m.tracks[1].frames, 564);
    assert_eq!(m.segments.len(), 6);
    assert!(
        m.duration_us > 11_900_000 && m.duration_us < 12_200_000,
        "{}",
        m.duration_us
    );
    let l = Limits::default();
    let mut frames = 0;
    for (entry, payload) in m.segments.iter().zip(&s.payloads) {
        assert_eq!(entry.size, payload.len() as u64);
        assert!(
            (1_900_000..=2_100_000).contains(&entry.duration_us)
                || entry == m.segments.last().unwrap()
        );
        let recs: Vec<_> = FrameReader::new(payload, l.max_frame_size)
            .collect::<Result<_, _>>()
            .unwrap();
        assert_eq!(recs.len() as u64, entry.frames);
        // Every segment starts its video with a keyframe (GOP-aligned).
        let first_video = recs.iter().find(|f| f.track == 0).unwrap();
        assert!(first_video.keyframe);
        frames += recs.len();
    }
    assert_eq!(frames, 360 + 564);
    // The SDP parses and describes H.264 + AAC.
    let desc = m.description(&l).unwrap();
    assert_eq!(desc.tracks.len(), 2);
    assert_eq!(desc.tracks[1].clock_rate, 48_000);
}

#[test]
fn faststart_and_fragmented_carry_the_same_video() {
    let base = ingest(&sample("demo.mp4")).manifest;
    let fast = ingest(&sample("faststart.mp4")).manifest;
    assert_eq!(fast.tracks, base.tracks);
    assert_eq!(fast.segments, base.segments);
    let frag = ingest(&sample("fragmented.mp4")).manifest;
    assert_eq!(
        frag.tracks[0], base.tracks[0],
        "fragmented MP4 video differs"
    );
    assert_eq!(frag.tracks[1].frames, base.tracks[1].frames);
}

#[test]
fn mpeg_ts() {
    let s = ingest(&sample("demo.ts"));
    let m = &s.manifest;
    assert_eq!(m.tracks[0].frames, 360);
    assert_eq!(m.tracks[1].frames, 564);
    assert_eq!(m.segments.len(), 6);
    // Timestamps are rebased: the object starts at 0 although TS starts at 1.4 s.
    let first = FrameReader::new(&s.payloads[0], 1 << 24)
        .next()
        .unwrap()
        .unwrap();
    assert!(first.pts < 90_000, "{}", first.pts);
}

fn broken(name: &str, bytes: &[u8]) -> String {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join(name);
    std::fs::write(&p, bytes).unwrap();
    let e: IngestError = demux(&p).expect_err(name);
    let msg = e.to_string();
    assert!(msg.contains(name), "error does not name the file: {msg}");
    msg
}

#[test]
fn broken_files_get_clear_errors() {
    let mp4 = std::fs::read(sample("demo.mp4")).unwrap();
    let fast = std::fs::read(sample("faststart.mp4")).unwrap();
    let ts = std::fs::read(sample("demo.ts")).unwrap();
    assert!(broken("empty.mp4", b"").contains("empty file"));
    assert!(broken("garbage.mp4", &[0x9c; 4000]).contains("not an MP4"));
    assert!(broken("cut.mp4", &mp4[..150_000]).contains("truncated"));
    // A fast-start file cut in its media data: the frames it has, every track up to the
    // same time, with a warning.
    let dir = tempfile::tempdir().unwrap();
    let cut = dir.path().join("cut-fast.mp4");
    std::fs::write(&cut, &fast[..150_000]).unwrap();
    let d = demux(&cut).expect("a cut fast-start file serves what it has");
    assert!(d.warnings[0].contains("cut short"), "{:?}", d.warnings);
    let end = |t: usize| {
        d.samples[t]
            .last()
            .map_or(0.0, |s| s.dts as f64 / f64::from(d.tracks[t].clock_rate))
    };
    let whole = demux(&sample("faststart.mp4")).unwrap();
    assert!(!d.samples[0].is_empty() && d.samples[0].len() < whole.samples[0].len());
    assert!(
        (end(0) - end(1)).abs() < 0.2,
        "tracks end together: {} {}",
        end(0),
        end(1)
    );
    let s = segmenter::segment(
        &d,
        &ObjectName::new("cut", 64).unwrap(),
        vec![],
        1,
        2_000_000,
        &cut,
    )
    .expect("it segments");
    assert!(s.manifest.duration_us > 0);
    assert!(broken("garbage.ts", &[0x11; 4000]).contains("sync byte"));
    assert!(broken("cut.ts", &ts[..200_001]).contains("malformed"));
    assert!(broken("clip.avi", b"RIFF").contains("unsupported"));
    // A corrupted sample table must not panic or allocate wildly.
    let mut bad = fast.clone();
    let stsz = bad.windows(4).position(|w| w == b"stsz").unwrap();
    // After the type: version/flags (4), sample_size (4), sample_count (4).
    bad[stsz + 8..stsz + 12].copy_from_slice(&7u32.to_be_bytes()); // uniform size 7
    bad[stsz + 12..stsz + 16].copy_from_slice(&u32::MAX.to_be_bytes()); // 4 billion samples
    let msg = broken("hostile.mp4", &bad);
    assert!(
        msg.contains("stsz count exceeds stts") || msg.contains("box"),
        "{msg}"
    );
}

#[test]
fn exponential_segments_grow_from_the_start_and_hold_the_same_frames() {
    use segmenter::{Cut, SegmentScheme};
    let path = sample("long.mp4");
    let d = demux(&path).unwrap();
    let name = ObjectName::new("long", 1024).unwrap();
    let cut = |scheme| Cut {
        target_us: 2_000_000,
        scheme,
    };
    let uni = segmenter::segment(&d, &name, vec![], 1, cut(SegmentScheme::Uniform), &path).unwrap();
    let exp =
        segmenter::segment(&d, &name, vec![], 1, cut(SegmentScheme::Exponential), &path).unwrap();
    let durations: Vec<u64> = exp
        .manifest
        .segments
        .iter()
        .map(|s| s.duration_us)
        .collect();
    // 2 s, 4 s, 8 s, 16 s (keyframes every 2 s in the sample), then the rest.
    assert_eq!(
        &durations[..4],
        &[2_000_000, 4_000_000, 8_000_000, 16_000_000],
        "{durations:?}"
    );
    assert!(exp.manifest.segments.len() < uni.manifest.segments.len());
    // Same media either way: frames, bytes of frame records, duration.
    let frames =
        |s: &segmenter::Segmented| -> u64 { s.manifest.segments.iter().map(|x| x.frames).sum() };
    assert_eq!(frames(&exp), frames(&uni));
    assert_eq!(exp.manifest.total_size(), uni.manifest.total_size());
    assert_eq!(exp.manifest.duration_us, uni.manifest.duration_us);
    assert_eq!(exp.manifest.tracks, uni.manifest.tracks);
}

/// Per track (frames, content hash in hex) from `interop/segue_ingest.py`, an MPEG-TS
/// ingest written from PROTOCOL.md §8.6.0 alone.
fn independent_ingest(ts: &Path) -> Vec<(u64, String)> {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../interop/segue_ingest.py");
    let out = std::process::Command::new("python3")
        .arg(&script)
        .arg(ts)
        .output()
        .expect("python3 runs");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{text}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    text.lines()
        .map(|l| {
            let w: Vec<&str> = l.split_whitespace().collect();
            // track <i> <codec> frames <n> hash <hex>
            assert_eq!((w.len(), w[3], w[5]), (7, "frames", "hash"), "{l}");
            (w[4].parse().unwrap(), w[6].to_string())
        })
        .collect()
}

fn hex(h: &[u8]) -> String {
    h.iter().map(|b| format!("{b:02x}")).collect()
}

/// PROTOCOL.md §8.6.0 is enough to reproduce an origin's content hashes: an independent
/// ingest (Python, standard library) gets the frame counts and hashes of Segue's manifest
/// for the shipped TS sample and, if ffmpeg is installed, for the HD sample remuxed to TS
/// by ffmpeg (in-band parameter sets, access unit delimiters, 4-byte start codes), a file
/// with streams left out, and HEVC with Opus.
#[test]
fn an_independent_ts_ingest_gets_the_same_hashes() {
    let dir = tempfile::tempdir().unwrap();
    let mut files = vec![sample("demo.ts")];
    let hd = sample("hd.mp4");
    let hd = hd.to_str().unwrap();
    files.extend(ffmpeg_made(
        dir.path(),
        "hd.ts",
        &["-i", hd, "-c", "copy", "-f", "mpegts"],
    ));
    // With a stream Segue does not carry (MPEG audio, 0x03/0x04) and a second audio one:
    // both left out, by both ingests.
    let demo = sample("demo.mp4");
    if let Some(extra) = ffmpeg_made(
        dir.path(),
        "extra.ts",
        &[
            "-i",
            demo.to_str().unwrap(),
            "-map",
            "0:v",
            "-map",
            "0:a",
            "-map",
            "0:a",
            "-map",
            "0:a",
            "-c:v",
            "copy",
            "-c:a:0",
            "copy",
            "-c:a:1",
            "mp2",
            "-c:a:2",
            "copy",
            "-f",
            "mpegts",
        ],
    ) {
        let d = demux(&extra).unwrap();
        assert_eq!(d.tracks.len(), 2);
        assert_eq!(d.left_out.len(), 2, "{:?}", d.left_out);
        assert!(
            d.left_out
                .iter()
                .any(|l| l.contains("is not carried (H.264 0x1b"))
        );
        assert!(
            d.left_out
                .iter()
                .any(|l| l.contains("a second audio stream"))
        );
        files.push(extra);
    }
    // HEVC (0x24) with Opus (0x06 registered as `Opus`, access units with control headers
    // and ffmpeg's start trim), as ffmpeg writes them: 4 s of the demo re-encoded.
    let demo_s = demo.to_str().unwrap();
    #[rustfmt::skip]
    let hevc_opus = [
        "-t", "4", "-i", demo_s, "-c:v", "libx265", "-preset", "ultrafast",
        "-x265-params", "keyint=30:pools=1:frame-threads=1:log-level=error",
        "-c:a", "libopus", "-b:a", "48k", "-f", "mpegts",
    ];
    if let Some(ts) = ffmpeg_made(dir.path(), "hevc-opus.ts", &hevc_opus) {
        let d = demux(&ts).unwrap();
        let codecs: Vec<&str> = d.tracks.iter().map(|t| t.codec.name()).collect();
        assert_eq!(codecs, ["hevc", "opus"], "{:?}", d.left_out);
        files.push(ts);
    }
    for ts in files {
        let ours = ingest(&ts).manifest;
        let theirs = independent_ingest(&ts);
        let ours: Vec<(u64, String)> = ours
            .tracks
            .iter()
            .map(|t| (t.frames, hex(&t.content_hash)))
            .collect();
        assert_eq!(ours, theirs, "{}", ts.display());
    }
}

/// The least presentation time of a stream's first packets, µs, as ffprobe reports them.
fn ffprobe_first_pts_us(file: &Path, stream: &str) -> Option<f64> {
    let out = std::process::Command::new("ffprobe")
        .args(["-v", "error", "-select_streams", stream, "-show_entries"])
        .args([
            "packet=pts_time",
            "-of",
            "csv=p=0",
            "-read_intervals",
            "%+#8",
        ])
        .arg(file)
        .output()
        .ok()?;
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| l.trim().trim_end_matches(',').parse::<f64>().ok())
        .map(|s| s * 1e6)
        .reduce(f64::min)
}

/// MP4 edit lists (PROTOCOL.md §8.6.0): `demo.mp4` delays its video by a B-frame (edit
/// media time 1024 of 15360) and its audio by AAC priming (1024 of 48000). Audio and video
/// keep the offset ffmpeg presents them at (video 21.3 ms after audio's first packet), where
/// ignoring the edits put them 66.7 ms apart; a file without an edit list
/// (`fragmented.mp4`) keeps its own timing.
#[test]
fn edit_lists_keep_audio_and_video_as_ffmpeg_presents_them() {
    let first_pts_us = |path: &Path| {
        let d = demux(path).unwrap();
        let us = |t: usize, n: usize| {
            d.samples[t]
                .iter()
                .take(n)
                .map(|s| {
                    (s.dts + u64::from(s.cto)) as f64 * 1e6 / f64::from(d.tracks[t].clock_rate)
                })
                .fold(f64::INFINITY, f64::min)
        };
        (us(0, 8), us(1, 1))
    };
    let (video, audio) = first_pts_us(&sample("demo.mp4"));
    // ffprobe: video from pts 0, audio from pts -1024/48000 s.
    let want = 21_333.3;
    assert!((video - audio - want).abs() < 50.0, "{video} - {audio}");
    // Decode times start at 0: the object is moved as a whole, as little as needed.
    let d = demux(&sample("demo.mp4")).unwrap();
    assert_eq!(d.samples[0][0].dts, 0);
    let (fv, fa) = first_pts_us(&sample("fragmented.mp4"));
    assert!((fv - fa - 66_666.7).abs() < 50.0, "{fv} - {fa}");
    // And as ffprobe says, where it is installed.
    for (file, ours) in [("demo.mp4", video - audio), ("fragmented.mp4", fv - fa)] {
        let path = sample(file);
        match (
            ffprobe_first_pts_us(&path, "v"),
            ffprobe_first_pts_us(&path, "a"),
        ) {
            (Some(v), Some(a)) => assert!((v - a - ours).abs() < 50.0, "{file}: {v} - {a}"),
            _ => assert!(
                std::env::var_os("SEGUE_REQUIRE_FFPROBE").is_none(),
                "ffprobe is required but missing"
            ),
        }
    }
}

/// `ffmpeg ARGS… OUT` into `dir`; None (and a note) where ffmpeg is not installed, a
/// failure where CI requires it.
fn ffmpeg_made(dir: &Path, out: &str, args: &[&str]) -> Option<PathBuf> {
    let path = dir.join(out);
    let ok = std::process::Command::new("ffmpeg")
        .args(["-v", "error", "-y"])
        .args(args)
        .arg(&path)
        .status()
        .is_ok_and(|s| s.success());
    if !ok {
        assert!(
            std::env::var_os("SEGUE_REQUIRE_FFPROBE").is_none(),
            "ffmpeg is required but missing or failed"
        );
        eprintln!("SKIPPED: ffmpeg not installed or failed");
        return None;
    }
    Some(path)
}

/// An object with a track Segue cannot carry is served with the tracks it can, and its
/// SDP (so DESCRIBE and the manifest) says which track was left out and why; with no
/// track left to carry, the file is refused saying why.
#[test]
fn a_track_we_cannot_carry_is_left_out_not_the_object() {
    let dir = tempfile::tempdir().unwrap();
    let demo = sample("demo.mp4");
    let demo = demo.to_str().unwrap();
    let Some(with_ac3) = ffmpeg_made(
        dir.path(),
        "ac3.mp4",
        &[
            "-i", demo, "-map", "0:v", "-map", "0:a", "-map", "0:a", "-c:v", "copy", "-c:a:0",
            "copy", "-c:a:1", "ac3",
        ],
    ) else {
        return;
    };
    let s = ingest(&with_ac3);
    let m = &s.manifest;
    assert_eq!(m.tracks.len(), 2);
    assert_eq!((m.tracks[0].frames, m.tracks[1].frames), (360, 564));
    let desc = m.description(&Limits::default()).unwrap();
    assert_eq!(desc.left_out.len(), 1, "{:?}", desc.left_out);
    let why = &desc.left_out[0];
    assert!(
        why.starts_with("audio track") && why.contains("ac3"),
        "{why}"
    );
    assert!(
        m.sdp.contains("a=x-segue-left-out:audio track"),
        "{}",
        m.sdp
    );

    let Some(only_ac3) = ffmpeg_made(
        dir.path(),
        "only-ac3.mp4",
        &["-i", demo, "-map", "0:a", "-c:a", "ac3"],
    ) else {
        return;
    };
    let e = demux(&only_ac3).expect_err("nothing to carry").to_string();
    assert!(
        e.contains("no video or audio track Segue carries") && e.contains("ac3"),
        "{e}"
    );
}
