//! Ingest: turns a media file (MP4, fragmented MP4, MPEG-TS with H.264 and AAC) into the
//! object's manifest and GOP-aligned segments of frame records (PROTOCOL.md §8.5–8.6).
//!
//! Demuxers (`mp4`, `ts`) produce [`Demuxed`]: per-track samples in decode order, timestamps
//! already in the track's RTP clock. [`segmenter`] cuts them into segments.

pub mod mp4;
pub mod segmenter;
pub mod ts;

use std::path::Path;

use bytes::Bytes;
use segue_wire::sdp::Codec;

/// Why a file could not be ingested. Always names the file.
#[derive(Debug, thiserror::Error)]
pub enum IngestError {
    #[error("{file}: {source}")]
    Io {
        file: String,
        source: std::io::Error,
    },
    #[error("{file}: unsupported: {reason}")]
    Unsupported { file: String, reason: String },
    #[error("{file}: malformed: {reason}")]
    Malformed { file: String, reason: String },
}

impl IngestError {
    pub(crate) fn malformed(file: &Path, reason: impl Into<String>) -> Self {
        IngestError::Malformed {
            file: file.display().to_string(),
            reason: reason.into(),
        }
    }

    pub(crate) fn unsupported(file: &Path, reason: impl Into<String>) -> Self {
        IngestError::Unsupported {
            file: file.display().to_string(),
            reason: reason.into(),
        }
    }

    pub(crate) fn io(file: &Path, source: std::io::Error) -> Self {
        IngestError::Io {
            file: file.display().to_string(),
            source,
        }
    }
}

/// Largest file ingest accepts; bigger files are refused rather than read.
pub const MAX_FILE_SIZE: u64 = 8 << 30;

/// Opens a media file, refusing empty and oversized ones. Returns the file and its length.
pub(crate) fn open_media(path: &Path) -> Result<(std::fs::File, u64), IngestError> {
    let f = std::fs::File::open(path).map_err(|e| IngestError::io(path, e))?;
    let len = f.metadata().map_err(|e| IngestError::io(path, e))?.len();
    if len == 0 {
        return Err(IngestError::malformed(path, "empty file"));
    }
    if len > MAX_FILE_SIZE {
        return Err(IngestError::unsupported(
            path,
            format!("file of {len} bytes exceeds {MAX_FILE_SIZE}"),
        ));
    }
    Ok((f, len))
}
/// RTP clock of video tracks.
pub const VIDEO_CLOCK: u32 = 90_000;

/// A track as the demuxer found it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TrackMedia {
    pub codec: Codec,
    /// RTP clock: 90000 for video, the sample rate for audio.
    pub clock_rate: u32,
}

/// One access unit.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Sample {
    /// Decode time in the track clock.
    pub dts: u64,
    /// pts - dts in the track clock.
    pub cto: u32,
    /// Duration in the track clock (0 if unknown).
    pub duration: u32,
    pub keyframe: bool,
    /// AVCC (4-byte lengths) for H.264, raw AU for AAC.
    pub data: Bytes,
}

/// A demuxed file: tracks and their samples in decode order.
#[derive(Debug, Clone, Default)]
pub struct Demuxed {
    pub tracks: Vec<TrackMedia>,
    pub samples: Vec<Vec<Sample>>,
    /// What ingest left out and why (a file cut short), for the origin's log.
    pub warnings: Vec<String>,
    /// Source tracks not carried, each with why: the SDP says so (`a=x-segue-left-out`).
    pub left_out: Vec<String>,
}

/// Source formats, by file extension.
pub const FORMATS: [&str; 2] = ["mp4", "ts"];

/// Demuxes `path` according to its extension.
pub fn demux(path: &Path) -> Result<Demuxed, IngestError> {
    let ext = path
        .extension()
        .and_then(|e| e.to_str())
        .map(str::to_ascii_lowercase);
    let d = match ext.as_deref() {
        Some("mp4") | Some("m4v") => mp4::demux(path)?,
        Some("ts") => ts::demux(path)?,
        other => {
            return Err(IngestError::unsupported(
                path,
                format!("file extension {other:?}"),
            ));
        }
    };
    if d.tracks.is_empty() || d.samples.iter().all(Vec::is_empty) {
        return Err(IngestError::malformed(path, "no H.264 or AAC samples"));
    }
    Ok(d)
}

pub use crate::clock::rescale;

/// AAC sampling frequencies by index (ISO 14496-3 Table 1.18).
pub const AAC_RATES: [u32; 13] = [
    96000, 88200, 64000, 48000, 44100, 32000, 24000, 22050, 16000, 12000, 11025, 8000, 7350,
];

/// Sample rate and channel count from an AudioSpecificConfig.
pub fn aac_config_info(config: &[u8]) -> Option<(u32, u8)> {
    let [a, b, ..] = config else { return None };
    let freq_index = ((a & 0x07) << 1) | (b >> 7);
    let channels = (b >> 3) & 0x0f;
    let rate = *AAC_RATES.get(usize::from(freq_index))?;
    Some((rate, channels.max(1)))
}

/// Converts Annex-B H.264 (start codes) to AVCC (4-byte lengths), dropping access unit
/// delimiters and filler. Returns the NAL units too, for parameter-set discovery.
/// Which NAL unit syntax a video track uses: H.264's one-byte header or HEVC's two-byte one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NalSyntax {
    H264,
    H265,
}

impl NalSyntax {
    /// The NAL unit's type (`nal` is not empty).
    pub fn nal_type(self, nal: &[u8]) -> u8 {
        match self {
            NalSyntax::H264 => nal[0] & 0x1f,
            NalSyntax::H265 => (nal[0] >> 1) & 0x3f,
        }
    }

    /// Access unit delimiters and filler data, which ingest drops (PROTOCOL.md §8.6.0).
    pub fn dropped(self, nal: &[u8]) -> bool {
        match self {
            NalSyntax::H264 => matches!(self.nal_type(nal), 9 | 12),
            NalSyntax::H265 => matches!(self.nal_type(nal), 35 | 38),
        }
    }

    /// A random access point: an IDR slice (H.264), an IRAP picture (HEVC, types 16..=23).
    pub fn keyframe(self, nal: &[u8]) -> bool {
        match self {
            NalSyntax::H264 => self.nal_type(nal) == 5,
            NalSyntax::H265 => (16..=23).contains(&self.nal_type(nal)),
        }
    }
}

/// [`annexb_to_avcc`] for H.264.
pub fn annexb_to_avcc(data: &[u8]) -> (Vec<u8>, Vec<&[u8]>) {
    annexb_to_lengths(data, NalSyntax::H264)
}

/// Annex B to 4-byte-length-prefixed NAL units, without the dropped ones; also the NAL units.
pub fn annexb_to_lengths(data: &[u8], syntax: NalSyntax) -> (Vec<u8>, Vec<&[u8]>) {
    let mut nals = Vec::new();
    let mut i = 0;
    let mut start = None;
    while i + 2 < data.len() {
        if data[i] == 0 && data[i + 1] == 0 && data[i + 2] == 1 {
            if let Some(s) = start {
                nals.push(trim_trailing_zeros(&data[s..i]));
            }
            i += 3;
            start = Some(i);
        } else {
            i += 1;
        }
    }
    if let Some(s) = start {
        nals.push(trim_trailing_zeros(&data[s..]));
    }
    nals.retain(|n| !n.is_empty() && !syntax.dropped(n));
    let mut out = Vec::with_capacity(data.len() + nals.len() * 4);
    for n in &nals {
        out.extend_from_slice(&(n.len() as u32).to_be_bytes());
        out.extend_from_slice(n);
    }
    (out, nals)
}

fn trim_trailing_zeros(n: &[u8]) -> &[u8] {
    let end = n.iter().rposition(|&b| b != 0).map_or(0, |p| p + 1);
    &n[..end]
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Found by the `ingest_mp4` fuzz target: a fragment's base decode time near 2^64 made
    /// the running decode time overflow (a panic with overflow checks, a wrap without).
    #[test]
    fn decode_times_never_overflow() {
        let file = Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("fuzz/corpus/ingest_mp4/regress-dts-overflow.mp4");
        // Refused, one way or another, without a panic.
        assert!(demux(&file).is_err());
    }

    /// Found by the `ingest_mp4` fuzz target (its memory peaked at 3 GB): a fragment whose
    /// `trun` claims millions of samples in a few bytes made the demuxer allocate for each.
    #[test]
    fn sample_counts_are_bounded_before_allocating() {
        let file = Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("fuzz/corpus/ingest_mp4/regress-sample-count.mp4");
        let e = demux(&file).expect_err("refused");
        assert!(e.to_string().contains("more than"), "{e}");
    }

    /// Found by the `ingest_mp4` fuzz target: an MP4 whose decode times reach 1.8e19 µs made
    /// a manifest whose durations did not fit a varint (it did not survive its own encoding).
    #[test]
    fn huge_timestamps_are_refused() {
        let file = Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("fuzz/corpus/ingest_mp4/regress-huge-timestamps.mp4");
        let d = demux(&file).expect("it demuxes");
        let name = segue_wire::ObjectName::new("fuzz", 64).unwrap();
        let e = segmenter::segment(&d, &name, vec!["mp4".into()], 1, 2_000_000, &file)
            .expect_err("refused");
        assert!(e.to_string().contains("timestamps reach"), "{e}");
    }

    #[test]
    fn annexb_conversion() {
        let data = [
            0, 0, 0, 1, 0x09, 0xf0, 0, 0, 1, 0x67, 0x42, 0, 0, 0, 1, 0x65, 0x88, 0,
        ];
        let (avcc, nals) = annexb_to_avcc(&data);
        assert_eq!(nals, vec![&[0x67, 0x42][..], &[0x65, 0x88][..]]);
        assert_eq!(avcc, [0, 0, 0, 2, 0x67, 0x42, 0, 0, 0, 2, 0x65, 0x88]);
    }

    #[test]
    fn aac_config() {
        assert_eq!(aac_config_info(&[0x11, 0x90]), Some((48_000, 2)));
        assert_eq!(aac_config_info(&[0x17, 0x90]), None);
        assert_eq!(rescale(512, 15_360, 90_000), 3000);
    }
}
