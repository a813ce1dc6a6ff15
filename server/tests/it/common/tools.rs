//! The tools tests drive (ffmpeg, ffprobe, GStreamer): whether they are here, and running
//! one to completion.

use std::process::Command;
use std::time::Duration;

/// Whether `tool version_flag` runs: a skip when not, a failure when CI requires it.
pub fn have(tool: &str, version_flag: &str, require_var: &str) -> bool {
    let check = Command::new(tool)
        .arg(version_flag)
        .output()
        .map_err(|e| format!("{tool}: {e}"))
        .and_then(|o| {
            o.status
                .success()
                .then_some(())
                .ok_or(format!("{tool} {version_flag} failed"))
        });
    super::available_or_required(check, require_var, tool)
}

/// Whether GStreamer has every element of a chain (`rtph264depay ! video/x-h264,... !
/// ...`: caps are skipped): a skip when not, a failure when CI requires GStreamer
/// (`SEGUE_REQUIRE_GSTREAMER`: with every depayloader the tests use, .ci/run builds AV1's).
pub fn have_elements(chain: &str) -> bool {
    chain
        .split('!')
        .filter_map(|part| part.split_whitespace().next())
        .filter(|name| !name.contains('/'))
        .all(|name| {
            let check = Command::new("gst-inspect-1.0")
                .arg(name)
                .output()
                .map_err(|e| format!("gst-inspect-1.0: {e}"))
                .and_then(|o| {
                    o.status
                        .success()
                        .then_some(())
                        .ok_or(format!("GStreamer has no element {name}"))
                });
            super::available_or_required(check, "SEGUE_REQUIRE_GSTREAMER", "GStreamer elements")
        })
}

pub fn have_ffmpeg() -> bool {
    have("ffmpeg", "-version", "SEGUE_REQUIRE_FFPROBE")
        && have("ffprobe", "-version", "SEGUE_REQUIRE_FFPROBE")
}

/// Runs a client to completion (at most 90 s), returning its stderr on failure.
pub async fn run(program: &str, args: &[String]) -> Result<(), String> {
    let child = tokio::process::Command::new(program)
        .args(args)
        .stdin(std::process::Stdio::null())
        .kill_on_drop(true)
        .output();
    let out = tokio::time::timeout(Duration::from_secs(90), child)
        .await
        .map_err(|_| format!("{program} {args:?} did not end within 90 s"))?
        .map_err(|e| format!("{program}: {e}"))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(format!(
            "{program} {args:?}: {}\n{}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        ))
    }
}

/// Runs a GStreamer pipeline (`gst-launch-1.0 -q` with `pipeline`'s words) to completion.
///
/// GStreamer 1.22's `rtspsrc` races with itself when `gst-launch-1.0` shuts the pipeline
/// down after the end of stream: the PAUSE it sends on leaving PLAYING is cut off by the
/// connection flush of the CLOSE that follows at once, and it posts an error ("Could not
/// send message. (Received end-of-file)" from `gst_rtspsrc_pause`) although the server
/// answers the TEARDOWN after it (seen with `GST_DEBUG=rtspsrc:5`, about 1 run in 16 under
/// load). That exit, after every buffer arrived (the callers count them), is not a failure
/// of the play; any other error is.
pub async fn run_gst(pipeline: &str) -> Result<(), String> {
    let args: Vec<String> = std::iter::once("-q".to_owned())
        .chain(pipeline.split_whitespace().map(str::to_owned))
        .collect();
    let Err(e) = run("gst-launch-1.0", &args).await else {
        return Ok(());
    };
    let lines: Vec<&str> = e.lines().collect();
    let errors: Vec<usize> = (0..lines.len())
        .filter(|i| lines[*i].starts_with("ERROR: from element"))
        .collect();
    let teardown_race = !errors.is_empty()
        && e.contains("gst_rtspsrc_pause ()")
        && errors.iter().all(|i| {
            let near = lines[*i..lines.len().min(i + 5)].join("\n");
            (near.contains("gst_rtspsrc_try_send ()") || near.contains("gst_rtspsrc_pause ()"))
                && near.contains("(Received end-of-file)")
        });
    if teardown_race {
        eprintln!("gst-launch-1.0: rtspsrc's PAUSE at shutdown was cut off (not a failure)");
        Ok(())
    } else {
        Err(e)
    }
}

/// Packets per stream, as ffprobe counts them, each named by its `key` (`codec_type`:
/// video, audio; `codec_name`: h264, opus, ...).
pub fn packets(file: &std::path::Path, key: &str) -> Vec<(String, u64)> {
    let out = Command::new("ffprobe")
        .args(["-v", "error", "-count_packets", "-show_entries"])
        .arg(format!("stream={key},nb_read_packets"))
        .args(["-of", "json"])
        .arg(file)
        .output()
        .unwrap();
    // JSON: MPEG-TS streams are listed once (CSV lists them under their program again).
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    v["streams"]
        .as_array()
        .map(|streams| {
            streams
                .iter()
                .filter_map(|st| {
                    let name = st[key].as_str()?.to_owned();
                    let n = st["nb_read_packets"].as_str()?.parse().ok()?;
                    Some((name, n))
                })
                .collect()
        })
        .unwrap_or_default()
}
