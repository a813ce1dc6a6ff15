//! The HLS side's media: each object of the scenario cut by ffmpeg into MPEG-TS segments with
//! a VOD playlist (`<root>/<object>/index.m3u8`, `segNNNNN.ts`), streams copied (no
//! re-encoding), segments as long as Segue's target segment. What a player must receive is
//! recorded here: the SHA-256 of all segment bytes in order and the PES count per stream.

use std::path::{Path, PathBuf};
use std::process::Stdio;

use anyhow::{Context as _, bail};
use ring::digest::{Context, SHA256};

use super::ts::TsProgress;

/// One object as HLS.
#[derive(Debug, Clone)]
pub struct HlsObject {
    pub name: String,
    /// Segment file names and durations (seconds), in order.
    pub segments: Vec<(String, f64)>,
    /// SHA-256 of every segment's bytes, concatenated in order.
    pub sha256: [u8; 32],
    /// Frames (PES packets) in the whole object.
    pub frames: u64,
    pub bytes: u64,
}

impl HlsObject {
    pub fn duration_s(&self) -> f64 {
        self.segments.iter().map(|s| s.1).sum()
    }
}

/// Finds ffmpeg: `SEGUE_FFMPEG` or `ffmpeg` on PATH.
fn ffmpeg() -> PathBuf {
    std::env::var_os("SEGUE_FFMPEG").map_or_else(|| PathBuf::from("ffmpeg"), PathBuf::from)
}

/// Parses a VOD media playlist into (URI, duration) pairs.
pub fn parse_playlist(text: &[u8]) -> anyhow::Result<Vec<(String, f64)>> {
    match m3u8_rs::parse_playlist_res(text) {
        Ok(m3u8_rs::Playlist::MediaPlaylist(p)) => Ok(p
            .segments
            .into_iter()
            .map(|s| (s.uri, f64::from(s.duration)))
            .collect()),
        Ok(m3u8_rs::Playlist::MasterPlaylist(_)) => bail!("a master playlist, not a media one"),
        Err(e) => bail!("bad playlist: {e}"),
    }
}

/// Cuts `file` into `<root>/<name>/` and describes the result.
pub async fn prepare(
    file: &Path,
    root: &Path,
    name: &str,
    segment_ms: u64,
) -> anyhow::Result<HlsObject> {
    let dir = root.join(name);
    tokio::fs::create_dir_all(&dir).await?;
    let out = tokio::process::Command::new(ffmpeg())
        .args(["-hide_banner", "-loglevel", "error", "-nostdin", "-y", "-i"])
        .arg(file)
        .args(["-c", "copy", "-f", "hls", "-hls_playlist_type", "vod"])
        .args(["-hls_time", &format!("{:.3}", segment_ms as f64 / 1000.0)])
        .arg("-hls_segment_filename")
        .arg(dir.join("seg%05d.ts"))
        .arg(dir.join("index.m3u8"))
        .stdin(Stdio::null())
        .output()
        .await
        .context("running ffmpeg (install it, or set SEGUE_FFMPEG)")?;
    if !out.status.success() {
        bail!(
            "ffmpeg could not cut {} into HLS: {}",
            file.display(),
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    let playlist = tokio::fs::read(dir.join("index.m3u8")).await?;
    let segments = parse_playlist(&playlist)?;
    if segments.is_empty() {
        bail!("ffmpeg wrote an empty playlist for {}", file.display());
    }
    let mut hash = Context::new(&SHA256);
    let mut ts = TsProgress::default();
    let mut bytes = 0;
    for (uri, _) in &segments {
        let data = tokio::fs::read(dir.join(uri))
            .await
            .with_context(|| format!("segment {uri}"))?;
        hash.update(&data);
        ts.push(&data);
        bytes += data.len() as u64;
    }
    ts.finish_segment();
    let mut sha256 = [0u8; 32];
    sha256.copy_from_slice(hash.finish().as_ref());
    Ok(HlsObject {
        name: name.to_owned(),
        segments,
        sha256,
        frames: ts.frames(),
        bytes,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn vod_playlist() {
        let p = b"#EXTM3U\n#EXT-X-VERSION:3\n#EXT-X-TARGETDURATION:2\n#EXT-X-PLAYLIST-TYPE:VOD\n\
#EXTINF:2.000000,\nseg00000.ts\n#EXTINF:1.500000,\nseg00001.ts\n#EXT-X-ENDLIST\n";
        let s = parse_playlist(p).unwrap();
        assert_eq!(
            s,
            vec![("seg00000.ts".into(), 2.0), ("seg00001.ts".into(), 1.5)]
        );
        assert!(parse_playlist(b"not a playlist").is_err());
    }
}
