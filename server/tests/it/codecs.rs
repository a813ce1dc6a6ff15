//! Codecs beyond H.264 and AAC (issue 20), with samples `media/make-samples.sh` makes: each
//! plays through the RTSP face of an edge with ffmpeg and with GStreamer in all three cases
//! (miss, full hit, prefix hit), frame for frame, and with segue-play (every frame, content
//! hash, a recording ffprobe decodes to the source's pictures).

use crate::common;
use crate::common::tools::{have, have_elements, packets, run, run_gst};

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use std::sync::atomic::Ordering;

use bytes::Bytes;
use segue_client::play::{PlayOptions, play};
use segue_server::node::source::Source;
use segue_server::origin::ingest::{Demuxed, demux};
use segue_wire::{ObjectName, SegueUrl};

/// Makes `names` with media/make-samples.sh into `dir`: false (a skip) when ffmpeg or an
/// encoder is missing, a failure when CI requires ffmpeg.
fn make_samples(dir: &Path, names: &[&str]) -> bool {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../media/make-samples.sh");
    let ok = Command::new("bash")
        .arg(script)
        .args(names)
        .arg(dir)
        .status()
        .is_ok_and(|s| s.success());
    if !ok {
        assert!(
            std::env::var_os("SEGUE_REQUIRE_FFPROBE").is_none(),
            "media/make-samples.sh {names:?} failed (ffmpeg with libx265, libaom, libopus is required)"
        );
        eprintln!("SKIPPED: media/make-samples.sh {names:?} failed");
    }
    ok
}

/// Packets per stream (`codec_name`, count), as ffprobe counts them.
fn probe(file: &Path) -> Vec<(String, u64)> {
    packets(file, "codec_name")
}

/// Each stream's packet sizes, in order.
fn sizes(file: &Path, stream: &str) -> Vec<u64> {
    sizes_and_keys(file, stream)
        .into_iter()
        .map(|(n, _)| n)
        .collect()
}

/// Each stream's packet sizes and keyframe flags, in order.
fn sizes_and_keys(file: &Path, stream: &str) -> Vec<(u64, bool)> {
    let out = Command::new("ffprobe")
        .args(["-v", "error", "-select_streams", stream, "-show_entries"])
        .args(["packet=size,flags", "-of", "csv=p=0"])
        .arg(file)
        .output()
        .unwrap();
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| {
            let mut f = l.split(',');
            let n = f.next()?.trim().parse().ok()?;
            Some((n, f.next().is_some_and(|k| k.starts_with('K'))))
        })
        .collect()
}

/// The MD5 of every decoded picture of a `framemd5` file, in output order.
fn pictures(file: &Path) -> Vec<String> {
    std::fs::read_to_string(file)
        .unwrap()
        .lines()
        .filter(|l| !l.starts_with('#'))
        .filter_map(|l| l.rsplit(',').next().map(|h| h.trim().to_owned()))
        .collect()
}

/// A `framemd5` file of the source's video as ffmpeg decodes it.
fn decoded_source(file: &Path) -> PathBuf {
    let out = file.with_extension("src.md5");
    let ok = Command::new("ffmpeg")
        .args(["-v", "error", "-i"])
        .arg(file)
        .args(["-map", "0:v", "-f", "framemd5", "-y"])
        .arg(&out)
        .status()
        .unwrap()
        .success();
    assert!(ok);
    out
}

/// `(stream, size, checksum)` per packet of a `framecrc` file.
fn framecrc(file: &Path) -> Vec<(usize, u64, String)> {
    std::fs::read_to_string(file)
        .unwrap()
        .lines()
        .filter(|l| !l.starts_with('#'))
        .filter_map(|l| {
            let f: Vec<&str> = l.split(',').map(str::trim).collect();
            Some((
                f.first()?.parse().ok()?,
                f.get(4)?.parse().ok()?,
                f.get(5)?.to_string(),
            ))
        })
        .collect()
}

/// [`framecrc`] of a file's packets as its demuxer gives them.
fn framecrc_of(file: &Path) -> Vec<(usize, u64, String)> {
    let out = file.with_extension("src.crc");
    let ok = Command::new("ffmpeg")
        .args(["-v", "error", "-i"])
        .arg(file)
        .args(["-map", "0", "-c", "copy", "-f", "framecrc", "-y"])
        .arg(&out)
        .status()
        .unwrap()
        .success();
    assert!(ok);
    framecrc(&out)
}

/// A codec sample and what standard clients depayload it with.
struct Case {
    file: &'static str,
    /// GStreamer's depayloader chain for the video and the audio track.
    gst_video: &'static str,
    gst_audio: &'static str,
    /// What GStreamer's video depayloader puts before each access unit that the source's
    /// sample does not hold (AV1: a temporal delimiter OBU, `obu-stream` starts each temporal
    /// unit with one; MP4 samples carry none).
    gst_video_lead: &'static [u8],
    /// Which ffmpeg reads the video's RTP payload format: Debian's (None), or the one an
    /// environment variable names (Some(var)); without it only the audio is checked.
    ffmpeg_video_from: Option<&'static str>,
}

async fn plays_everywhere(case: Case) {
    let samples = tempfile::tempdir().unwrap();
    let stem = case.file.rsplit_once('.').unwrap().0;
    if !make_samples(samples.path(), &[stem]) {
        return;
    }
    let file = samples.path().join(case.file);
    let want = probe(&file);
    if case.file.ends_with(".mp4") {
        fragmented_ingests_alike(&file);
    }
    // What the copies are compared with: an MP4 sample itself; an MPEG-TS one remuxed to
    // MP4 (raw AAC, and without the access unit delimiters and filler ingest drops, §8.6.0).
    let src = if case.file.ends_with(".ts") {
        let dropped = if want[0].0 == "hevc" { "35|38" } else { "9|12" };
        let out = samples.path().join("reference.mp4");
        let ok = Command::new("ffmpeg")
            .args(["-v", "error", "-i"])
            .arg(&file)
            .args(["-map", "0", "-c", "copy"])
            .args(if want[1].0 == "aac" {
                &["-bsf:a", "aac_adtstoasc"][..]
            } else {
                &[]
            })
            .arg("-bsf:v")
            .arg(format!("filter_units=remove_types={dropped}"))
            .arg("-y")
            .arg(&out)
            .status()
            .unwrap()
            .success();
        assert!(ok, "remuxing {}", case.file);
        out
    } else {
        file.clone()
    };
    // The object, and a copy of it whose prefix alone an edge warms (the prefix hit).
    let ext = case.file.rsplit_once('.').unwrap().1;
    let copy = samples.path().join(format!("{stem}-w.{ext}"));
    std::fs::copy(&file, &copy).unwrap();
    let origin = common::origin_with_files(&[file.clone(), copy]).await;
    let dir = origin.dir.path().to_path_buf();
    let have_gst = have("gst-launch-1.0", "--version", "SEGUE_REQUIRE_GSTREAMER")
        && [case.gst_video, case.gst_audio]
            .iter()
            .all(|chain| have_elements(chain));
    // The ffmpeg that reads this object's video over RTSP, if there is one here.
    let video_ffmpeg: Option<String> = match case.ffmpeg_video_from {
        None => Some("ffmpeg".to_owned()),
        Some(var) => match std::env::var(var) {
            Ok(p) => Some(p),
            Err(_) => {
                assert!(
                    std::env::var_os("SEGUE_REQUIRE_FFMPEG_AV1").is_none(),
                    "{var} must name an ffmpeg that reads AV1 over RTP (.ci/run installs one)"
                );
                eprintln!("SKIPPED: {var} unset: ffmpeg checks this object's audio only");
                None
            }
        },
    };
    let video_ffmpeg = video_ffmpeg.as_deref();
    let want_ref = &want;
    let src_ref = &src;
    let case_ref = &case;
    // ffmpeg on an edge sending whole objects at once; GStreamer on one pacing as by default
    // (GStreamer 1.22's rtspsrc sometimes never ends a play whose whole object arrives
    // within milliseconds; docs/PROTOCOL.md §12).
    for (client, send_ahead) in [("ffmpeg", 60_000), ("gstreamer", 2000)] {
        if client == "gstreamer" && !have_gst {
            continue;
        }
        let e = origin
            .edge_with(client, |c| {
                c.tls.rtsp_listen = Some("127.0.0.1:0".parse().unwrap());
                c.send_ahead_ms = send_ahead;
            })
            .await;
        let port = e.rtsp.unwrap().port();
        let stats = e.edge.stats();
        let check = |object: &str, label: &'static str| {
            let url = format!("rtsp://127.0.0.1:{port}/{object}");
            let out = dir.join(format!("{client}-{label}"));
            async move {
                std::fs::create_dir_all(&out).unwrap();
                let tag = format!("{client}, {label}");
                if client == "ffmpeg" {
                    ffmpeg_check(video_ffmpeg, &url, &out, src_ref, want_ref, &tag).await;
                } else {
                    gst_check(case_ref, &url, &out, src_ref, &tag).await;
                }
            }
        };
        // A miss, then (once the play's segments are in) a full hit, then a prefix hit.
        check(stem, "miss").await;
        assert_eq!(stats.misses.load(Ordering::Relaxed), 1, "{client}: miss");
        let name = ObjectName::new(stem, 64).unwrap();
        let manifest = e.edge.manifest(&name).await.unwrap();
        for _ in 0..100 {
            if e.edge.store().count_from(&manifest, 0) == manifest.segments.len() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        check(stem, "full").await;
        assert_eq!(
            stats.full_hits.load(Ordering::Relaxed),
            1,
            "{client}: full hit"
        );
        let warm = format!("{stem}-w");
        e.edge
            .warm(&ObjectName::new(&warm, 64).unwrap())
            .await
            .unwrap();
        check(&warm, "prefix").await;
        assert_eq!(
            stats.prefix_hits.load(Ordering::Relaxed),
            1,
            "{client}: prefix hit"
        );

        if client == "ffmpeg" {
            segue_play_check(&e, &origin, stem, &src, &want).await;
        }
    }
    origin.shutdown().await;
}

/// The sample as fragmented MP4 (ffmpeg's `frag_keyframe+empty_moov`: an empty `moov`,
/// the samples in `moof`/`trun`) ingests to the same frames (bytes, keyframes, composition
/// offsets) as the sample itself, each at the time ffmpeg presents it in the fragmented
/// file (the fragmenter writes no edit lists and lengthens a track's first frame instead,
/// so the times are the fragmented file's own).
fn fragmented_ingests_alike(file: &Path) {
    let frag = file.with_extension("frag.mp4");
    let ok = Command::new("ffmpeg")
        .args(["-v", "error", "-i"])
        .arg(file)
        .args(["-map", "0", "-c", "copy", "-movflags"])
        .args(["frag_keyframe+empty_moov+default_base_moof", "-y"])
        .arg(&frag)
        .status()
        .unwrap()
        .success();
    assert!(ok, "fragmenting {}", file.display());
    let (plain, fragmented) = (demux(file).unwrap(), demux(&frag).unwrap());
    assert_eq!(plain.tracks, fragmented.tracks, "{}", file.display());
    let frames = |d: &Demuxed| -> Vec<Vec<(u32, bool, Bytes)>> {
        d.samples
            .iter()
            .map(|t| {
                t.iter()
                    .map(|s| (s.cto, s.keyframe, s.data.clone()))
                    .collect()
            })
            .collect()
    };
    assert!(
        frames(&plain) == frames(&fragmented),
        "{}: fragmented frames differ",
        file.display()
    );
    // Decode times from each track's first, against ffprobe's in the stream's time base
    // (§8.6.0: floor(v × clock / timescale), then one shift per track).
    for (i, (t, samples)) in fragmented
        .tracks
        .iter()
        .zip(&fragmented.samples)
        .enumerate()
    {
        let (timescale, dts) = ffprobe_dts(&frag, i);
        let clock = u64::from(t.clock_rate);
        let want: Vec<u64> = dts
            .iter()
            .map(|v| v * clock / timescale - dts[0] * clock / timescale)
            .collect();
        let got: Vec<u64> = samples.iter().map(|s| s.dts - samples[0].dts).collect();
        assert_eq!(got, want, "{}: track {i} decode times", frag.display());
    }
    std::fs::remove_file(frag).unwrap();
}

/// A stream's time base denominator and its packets' decode times, as ffprobe reports them.
fn ffprobe_dts(file: &Path, stream: usize) -> (u64, Vec<u64>) {
    let out = Command::new("ffprobe")
        .args(["-v", "error", "-select_streams", &stream.to_string()])
        .args([
            "-show_entries",
            "stream=time_base:packet=dts",
            "-of",
            "csv=p=0",
        ])
        .arg(file)
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    let mut timescale = 0;
    let mut dts = Vec::new();
    for l in text.lines().map(str::trim).filter(|l| !l.is_empty()) {
        match l.split_once('/') {
            Some((_, den)) => timescale = den.trim_end_matches(',').parse().unwrap(),
            None => dts.push(l.trim_end_matches(',').parse().unwrap()),
        }
    }
    assert!(
        timescale > 0 && !dts.is_empty(),
        "ffprobe {}: {text}",
        file.display()
    );
    (timescale, dts)
}

/// segue-play: every frame, the content hash, and a recording ffprobe reads and decodes to
/// the source's pictures.
async fn segue_play_check(
    e: &common::TestEdge,
    origin: &common::TestOrigin,
    stem: &str,
    src: &Path,
    want: &[(String, u64)],
) {
    let url = SegueUrl::parse(&format!("segue://localhost:{}/{stem}", e.addr.port())).unwrap();
    let mut o = PlayOptions::new(url, origin.tls.ca.clone());
    o.pace = false;
    let rec = origin.dir.path().join("rec.video");
    o.record = Some(rec.clone());
    let r = play(&o).await;
    assert!(r.ok(), "{}", r.render());
    assert!(r.hash_ok);
    let got: Vec<(String, u64)> = r
        .tracks
        .iter()
        .map(|t| (t.codec.clone(), t.frames_received))
        .collect();
    assert_eq!(
        got, want,
        "segue-play's tracks against ffprobe's view of the source"
    );
    let audio_ext = if want[1].0 == "opus" { "opus" } else { "aac" };
    let recorded = [
        probe(&rec),
        probe(&rec.with_extension(format!("video.{audio_ext}"))),
    ]
    .concat();
    assert_eq!(recorded, want, "--record");
    let decoded = |f: &Path| pictures(&decoded_source(f));
    assert_eq!(decoded(&rec), decoded(src), "--record: decoded video");
}

/// ffmpeg through the RTSP face, as its demuxer delivers the packets (`framecrc`: a line per
/// packet with its size and Adler-32; the MP4 muxer drops an Opus packet it cannot time,
/// which says nothing of what was received): every audio packet byte for byte; every video
/// frame, decoded, the same picture as the source's (ffmpeg's RTP depacketizers give video
/// as Annex B, and its muxers rewrite HEVC's, so the pictures are what can be compared).
async fn ffmpeg_check(
    video: Option<&str>,
    rtsp: &str,
    dir: &Path,
    src: &Path,
    want: &[(String, u64)],
    tag: &str,
) {
    let input: Vec<String> = ["-v", "error", "-rtsp_transport", "tcp", "-i", rtsp]
        .iter()
        .map(|s| (*s).to_owned())
        .collect();
    let crcs = dir.join("rtsp.crc");
    let map: &[&str] = if video.is_some() {
        &["-map", "0"]
    } else {
        &["-map", "0:a"]
    };
    // One play, two outputs: the packets as received, and the video decoded.
    let decoded = dir.join("rtsp.md5");
    let mut args = input.clone();
    args.extend(map.iter().map(|s| (*s).to_owned()));
    args.extend(["-c", "copy", "-f", "framecrc", "-y"].map(str::to_owned));
    args.push(crcs.display().to_string());
    if video.is_some() {
        args.extend(["-map", "0:v", "-f", "framemd5", "-y"].map(str::to_owned));
        args.push(decoded.display().to_string());
    }
    run(video.unwrap_or("ffmpeg"), &args)
        .await
        .unwrap_or_else(|e| panic!("{tag}: {e}"));
    let got = framecrc(&crcs);
    let source = framecrc_of(src);
    let audio = |v: &[(usize, u64, String)], s: usize| -> Vec<(u64, String)> {
        v.iter()
            .filter(|p| p.0 == s)
            .map(|p| (p.1, p.2.clone()))
            .collect()
    };
    let (got_a, got_v) = if video.is_some() {
        (1, Some(0))
    } else {
        (0, None)
    };
    assert_eq!(
        audio(&got, got_a),
        audio(&source, 1),
        "{tag}: audio packets"
    );
    if let Some(v) = got_v {
        let n = got.iter().filter(|p| p.0 == v).count() as u64;
        assert_eq!(n, want[0].1, "{tag}: video frames");
        assert_eq!(
            pictures(&decoded),
            pictures(&decoded_source(src)),
            "{tag}: decoded video"
        );
    }
}

/// GStreamer through the RTSP face: every access unit with the source's size.
async fn gst_check(case: &Case, rtsp: &str, dir: &Path, src: &Path, tag: &str) {
    let (v, a) = (dir.join("gv"), dir.join("ga"));
    std::fs::create_dir_all(&v).unwrap();
    std::fs::create_dir_all(&a).unwrap();
    let pipeline = format!(
        "rtspsrc location={rtsp} protocols=tcp name=s \
         s. ! {} ! multifilesink location={}/%05d \
         s. ! {} ! multifilesink location={}/%05d",
        case.gst_video,
        v.display(),
        case.gst_audio,
        a.display()
    );
    run_gst(&pipeline)
        .await
        .unwrap_or_else(|e| panic!("{tag}: {e}"));
    let files = |d: &Path| -> Vec<PathBuf> {
        let mut f: Vec<PathBuf> = std::fs::read_dir(d)
            .unwrap()
            .map(|f| f.unwrap().path())
            .collect();
        f.sort();
        f
    };
    let len = |f: &PathBuf| std::fs::metadata(f).unwrap().len();
    let got = files(&v);
    let want = sizes_and_keys(src, "v");
    assert_eq!(got.len(), want.len(), "{tag}: video access units");
    // `rtph265depay` moves parameter sets it finds in a keyframe (MPEG-TS sources carry
    // them in-band) into its caps: keyframes are compared only from MP4 sources.
    let from_ts = case.file.ends_with(".ts");
    let lead = case.gst_video_lead;
    for (i, (g, (w, key))) in got.iter().zip(&want).enumerate() {
        if !lead.is_empty() {
            let head = std::fs::read(g).unwrap();
            assert!(head.starts_with(lead), "{tag}: video access unit {i}: lead");
        }
        if !(from_ts && *key) {
            assert_eq!(
                len(g),
                w + lead.len() as u64,
                "{tag}: video access unit {i}"
            );
        }
    }
    let got: Vec<u64> = files(&a).iter().map(len).collect();
    assert_eq!(got, sizes(src, "a"), "{tag}: audio access units");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hevc_plays_everywhere() {
    plays_everywhere(Case {
        file: "hevc.mp4",
        gst_video: "rtph265depay ! video/x-h265,stream-format=hvc1,alignment=au",
        gst_video_lead: &[],
        gst_audio: "rtpmp4gdepay",
        ffmpeg_video_from: None,
    })
    .await;
}

/// HEVC from MPEG-TS (stream type 0x24): Annex B in, the same pictures out.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hevc_from_mpeg_ts_plays_everywhere() {
    plays_everywhere(Case {
        file: "hevc.ts",
        gst_video: "rtph265depay ! video/x-h265,stream-format=hvc1,alignment=au",
        gst_video_lead: &[],
        gst_audio: "rtpmp4gdepay",
        ffmpeg_video_from: None,
    })
    .await;
}

/// AV1 (with Opus): ffmpeg 5.1 and GStreamer 1.22, as Debian 12 ships them, have no AV1
/// RTP depayloader. FFmpeg 7.1 and later do, and `.ci/run` installs one from PyPI
/// (imageio-ffmpeg, `SEGUE_FFMPEG_AV1`): that ffmpeg plays the object, video and audio, in
/// all three cases (without it, Debian's checks the audio). GStreamer's is `rtpav1depay` of
/// gst-plugins-rs, which `.ci/run` builds from crates.io (interop/gstreamer); without it
/// GStreamer is not run. segue-play's recording of the video decodes to the source's
/// pictures.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn av1_plays_everywhere() {
    plays_everywhere(Case {
        file: "av1.mp4",
        gst_video: "rtpav1depay",
        gst_video_lead: &[0x12, 0x00],
        gst_audio: "rtpopusdepay",
        ffmpeg_video_from: Some("SEGUE_FFMPEG_AV1"),
    })
    .await;
}

/// Opus from MPEG-TS (stream type 0x06 registered as `Opus`, with control headers): the
/// packets as stored, the same as the MP4 sample's.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn opus_from_mpeg_ts_plays_everywhere() {
    plays_everywhere(Case {
        file: "opus.ts",
        gst_video: "rtph264depay ! video/x-h264,stream-format=avc,alignment=au",
        gst_video_lead: &[],
        gst_audio: "rtpopusdepay",
        ffmpeg_video_from: None,
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn opus_plays_everywhere() {
    plays_everywhere(Case {
        file: "opus.mp4",
        gst_video: "rtph264depay ! video/x-h264,stream-format=avc,alignment=au",
        gst_video_lead: &[],
        gst_audio: "rtpopusdepay",
        ffmpeg_video_from: None,
    })
    .await;
}
