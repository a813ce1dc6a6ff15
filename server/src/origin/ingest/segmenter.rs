//! Cuts a demuxed file into GOP-aligned segments and builds the manifest.
//!
//! With a video track, a segment starts at a video keyframe at least `target` after the start
//! of the previous one; audio frames belong to the segment their decode time falls in. Without
//! video, segments are cut every `target` of audio. Frame records inside a segment are ordered
//! by decode time across tracks.

use bytes::Bytes;
use ring::digest::{Context, SHA256, digest};
use segue_wire::ObjectName;
use segue_wire::rtp::MAX_CTO;
use segue_wire::sdp::{Description, Track};
use segue_wire::segment::{Frame, Hash, Manifest, SegmentEntry, TrackEntry, chunk};

use super::{Demuxed, rescale};
use crate::origin::ingest::IngestError;

/// Default target segment duration.
pub const DEFAULT_TARGET_US: u64 = 2_000_000;

/// How segment durations are chosen (docs/PLACEMENT.md, "Segment sizes").
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SegmentScheme {
    /// Every segment about the target (the default).
    #[default]
    Uniform,
    /// Segment i about target × 2^i, up to [`EXPONENTIAL_MAX_FACTOR`] × target (Wu, Yu and
    /// Wolf's segment-based proxy caching): few, growing segments, so a cache drops an
    /// object's tail in large pieces and keeps its start in small ones.
    Exponential,
}

/// Largest growth of an exponential scheme's segments over the target.
pub const EXPONENTIAL_MAX_FACTOR: u64 = 16;

impl SegmentScheme {
    /// The name used in flags and stamps.
    pub fn as_str(self) -> &'static str {
        match self {
            SegmentScheme::Uniform => "uniform",
            SegmentScheme::Exponential => "exponential",
        }
    }

    /// The target duration of segment `index`.
    pub fn target_us(self, base_us: u64, index: usize) -> u64 {
        match self {
            SegmentScheme::Uniform => base_us,
            SegmentScheme::Exponential => {
                let factor = 1u64
                    .checked_shl(index.min(63) as u32)
                    .unwrap_or(u64::MAX)
                    .min(EXPONENTIAL_MAX_FACTOR);
                base_us.saturating_mul(factor)
            }
        }
    }
}

impl std::str::FromStr for SegmentScheme {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "uniform" => Ok(SegmentScheme::Uniform),
            "exponential" => Ok(SegmentScheme::Exponential),
            _ => Err(format!("{s:?}: expected uniform or exponential")),
        }
    }
}

/// Where segments are cut: a target duration and a scheme.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cut {
    pub target_us: u64,
    pub scheme: SegmentScheme,
}

impl From<u64> for Cut {
    /// Uniform segments of `target_us`.
    fn from(target_us: u64) -> Self {
        Cut {
            target_us,
            scheme: SegmentScheme::Uniform,
        }
    }
}

/// An ingested object: its manifest and one payload per segment.
#[derive(Debug, Clone)]
pub struct Segmented {
    pub manifest: Manifest,
    pub payloads: Vec<Bytes>,
}

fn sha256(b: &[u8]) -> Hash {
    let mut out = [0u8; 32];
    out.copy_from_slice(digest(&SHA256, b).as_ref());
    out
}

/// Longest media an object may span: 30 days, in µs (decode times beyond it are refused).
pub const MAX_MEDIA_US: u64 = 30 * 24 * 3600 * 1_000_000;

/// Builds segments and manifest. `file` names the source in errors.
pub fn segment(
    d: &Demuxed,
    object: &ObjectName,
    formats: Vec<String>,
    revision: u64,
    cut: impl Into<Cut>,
    file: &std::path::Path,
) -> Result<Segmented, IngestError> {
    let cut = cut.into();
    let limits = segue_wire::Limits::default();
    // Every segment fits the limit, so one chunk size (16 KiB) serves them all.
    let chunk_size = chunk::chunk_size_for(limits.max_segment_size);
    if d.tracks.len() > limits.max_tracks {
        return Err(IngestError::unsupported(
            file,
            format!("{} tracks", d.tracks.len()),
        ));
    }
    let target_us = cut.target_us.max(100_000);
    let us = |t: usize, v: u64| rescale(v, d.tracks[t].clock_rate, 1_000_000);

    // Segment start times.
    let anchor = d.tracks.iter().position(|t| t.codec.is_video());
    let mut bounds = vec![0u64];
    let anchor_track = anchor.unwrap_or(0);
    for s in &d.samples[anchor_track] {
        let t = us(anchor_track, s.dts);
        let last = *bounds.last().unwrap_or(&0);
        let target = cut.scheme.target_us(target_us, bounds.len() - 1);
        if s.keyframe && t >= last.saturating_add(target) {
            bounds.push(t);
        }
    }
    if bounds.len() > limits.max_segments {
        return Err(IngestError::unsupported(
            file,
            format!("{} segments", bounds.len()),
        ));
    }
    // The end of the last frame, over every sample (a hostile file's decode times need not
    // grow), in µs.
    let end_us = d
        .samples
        .iter()
        .enumerate()
        .flat_map(|(t, ss)| {
            ss.iter().map(move |s| {
                let end = s
                    .dts
                    .saturating_add(u64::from(s.cto))
                    .saturating_add(u64::from(s.duration));
                us(t, end)
            })
        })
        .max()
        .unwrap_or(0);
    // Every time of the object then fits the protocol's varints (and any sane file).
    if end_us > MAX_MEDIA_US {
        return Err(IngestError::malformed(
            file,
            format!(
                "timestamps reach {} s (more than {} s: a broken or hostile file)",
                end_us / 1_000_000,
                MAX_MEDIA_US / 1_000_000
            ),
        ));
    }

    // Frames per segment, with their decode time for interleaving.
    let mut per_segment: Vec<Vec<(u64, usize, Frame)>> = vec![Vec::new(); bounds.len()];
    for (t, samples) in d.samples.iter().enumerate() {
        let mut seen_key = !d.tracks[t].codec.is_video();
        for s in samples {
            // Video frames before the first keyframe cannot be decoded: drop them.
            seen_key |= s.keyframe;
            if !seen_key {
                continue;
            }
            if s.cto > MAX_CTO {
                return Err(IngestError::unsupported(
                    file,
                    "composition offset beyond 2^24",
                ));
            }
            if s.data.len() as u64 > limits.max_frame_size {
                return Err(IngestError::unsupported(
                    file,
                    format!("frame of {} bytes", s.data.len()),
                ));
            }
            let dts_us = us(t, s.dts);
            let seg = bounds.partition_point(|b| *b <= dts_us).saturating_sub(1);
            per_segment[seg].push((
                dts_us,
                t,
                Frame {
                    track: t as u32,
                    keyframe: s.keyframe,
                    pts: s.dts.saturating_add(u64::from(s.cto)),
                    cto: s.cto,
                    data: s.data.clone(),
                },
            ));
        }
    }

    let mut hashes: Vec<Context> = d.tracks.iter().map(|_| Context::new(&SHA256)).collect();
    let mut frame_counts = vec![0u64; d.tracks.len()];
    let mut payloads = Vec::with_capacity(bounds.len());
    let mut segments = Vec::with_capacity(bounds.len());
    for (i, mut frames) in per_segment.into_iter().enumerate() {
        // Stable sort keeps each track's decode order for equal times.
        frames.sort_by_key(|(t_us, track, _)| (*t_us, *track));
        let mut payload = Vec::with_capacity(frames.iter().map(|f| f.2.encoded_len()).sum());
        for (_, track, f) in &frames {
            let start = payload.len();
            f.encode_into(&mut payload);
            hashes[*track].update(&payload[start..]);
            frame_counts[*track] += 1;
        }
        if payload.is_empty() {
            continue; // a gap with no frames at all: nothing to serve
        }
        if payload.len() as u64 > limits.max_segment_size {
            return Err(IngestError::unsupported(
                file,
                format!("segment of {} bytes", payload.len()),
            ));
        }
        let start_us = bounds[i];
        let next = bounds.get(i + 1).copied().unwrap_or(end_us.max(start_us));
        segments.push(SegmentEntry {
            start_us,
            duration_us: next - start_us,
            size: payload.len() as u64,
            frames: frames.len() as u64,
            checksum: sha256(&payload),
            chunk_root: chunk::payload_root(&payload, chunk_size),
        });
        payloads.push(Bytes::from(payload));
    }
    if segments.is_empty() {
        return Err(IngestError::malformed(file, "no decodable frames"));
    }
    let description = Description {
        left_out: d.left_out.clone(),
        name: object.as_str().to_owned(),
        duration_us: end_us,
        tracks: d
            .tracks
            .iter()
            .enumerate()
            .map(|(i, t)| Track {
                index: i as u32,
                payload_type: 96 + i as u8,
                clock_rate: t.clock_rate,
                codec: t.codec.clone(),
                frame_info_ext: segue_wire::rtp::FRAME_INFO_EXT_ID,
            })
            .collect(),
    };
    let tracks = hashes
        .into_iter()
        .zip(frame_counts)
        .map(|(h, frames)| {
            let mut content_hash = [0u8; 32];
            content_hash.copy_from_slice(h.finish().as_ref());
            TrackEntry {
                frames,
                content_hash,
            }
        })
        .collect();
    Ok(Segmented {
        manifest: Manifest {
            object: object.clone(),
            revision,
            duration_us: end_us,
            chunk_size,
            formats,
            sdp: description.to_sdp(),
            tracks,
            segments,
        },
        payloads,
    })
}

#[cfg(test)]
mod tests {
    #[test]
    fn scheme_targets() {
        use super::SegmentScheme::*;
        assert_eq!(Uniform.target_us(2, 9), 2);
        let e: Vec<u64> = (0..7).map(|i| Exponential.target_us(2, i)).collect();
        assert_eq!(e, [2, 4, 8, 16, 32, 32, 32]);
        assert_eq!(Exponential.target_us(u64::MAX, 3), u64::MAX);
        assert_eq!(
            "exponential".parse::<super::SegmentScheme>(),
            Ok(Exponential)
        );
        assert!("expo".parse::<super::SegmentScheme>().is_err());
    }
}
