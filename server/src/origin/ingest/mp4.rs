//! MP4 demuxing with `mp4-atom`: progressive files with `moov` anywhere (ffmpeg writes it at the
//! end by default; fast-start files have it first) and fragmented files (`moof` + `mdat`).

use std::fs::File;
use std::os::unix::fs::FileExt;
use std::path::Path;

use bytes::Bytes;
use mp4_atom::{Codec as Mp4Codec, Decode, Moof, Moov, Trak, Trex};
use segue_wire::sdp::Codec;

use super::{Demuxed, IngestError, NalSyntax, Sample, TrackMedia, VIDEO_CLOCK, rescale};

/// Largest `moov` or `moof` box read into memory.
const MAX_INDEX_BOX: u64 = 256 << 20;
/// Largest single sample.
const MAX_SAMPLE: u32 = 16 << 20;
/// Most samples (frames) in one file, all tracks: about 10 hours of 60 fps video with audio.
pub const MAX_SAMPLES: u64 = 4_000_000;

/// How many more samples a file's tables may describe: at most [`MAX_SAMPLES`], and at most
/// one per byte of the file (every sample holds at least a byte of it). Checked before
/// anything is allocated for them: sample counts in the tables are untrusted (a few bytes of
/// `stts` or `trun` can claim billions).
struct SampleBudget {
    left: u64,
}

impl SampleBudget {
    fn new(file_len: u64) -> Self {
        Self {
            left: MAX_SAMPLES.min(file_len),
        }
    }

    fn take(&mut self, n: u64, path: &Path) -> Result<(), IngestError> {
        if n > self.left {
            return Err(IngestError::unsupported(
                path,
                format!(
                    "sample tables describe more than {MAX_SAMPLES} samples, or more samples than the file has bytes"
                ),
            ));
        }
        self.left -= n;
        Ok(())
    }
}

struct TopBox {
    kind: [u8; 4],
    start: u64,
    size: u64,
}

/// Lists the top-level boxes, refusing sizes that run past the end of the file, but for a
/// last `mdat` (a file cut short in its media data): that one is taken as it is, and the
/// second value says so.
fn top_boxes(f: &File, len: u64, path: &Path) -> Result<(Vec<TopBox>, bool), IngestError> {
    let mut cut = false;
    let mut boxes = Vec::new();
    let mut pos = 0u64;
    while pos < len {
        if len - pos < 8 {
            return Err(IngestError::malformed(
                path,
                format!("trailing {} bytes at {pos}", len - pos),
            ));
        }
        let mut h = [0u8; 16];
        f.read_exact_at(&mut h[..8], pos)
            .map_err(|e| IngestError::io(path, e))?;
        let size32 = u32::from_be_bytes([h[0], h[1], h[2], h[3]]);
        let kind = [h[4], h[5], h[6], h[7]];
        let size = match size32 {
            0 => len - pos,
            1 => {
                if len - pos < 16 {
                    return Err(IngestError::malformed(path, "box header cut short"));
                }
                f.read_exact_at(&mut h[8..16], pos + 8)
                    .map_err(|e| IngestError::io(path, e))?;
                u64::from_be_bytes([h[8], h[9], h[10], h[11], h[12], h[13], h[14], h[15]])
            }
            n => u64::from(n),
        };
        if pos == 0 && !kind.iter().all(|b| b.is_ascii_alphanumeric() || *b == b' ') {
            return Err(IngestError::malformed(
                path,
                "not an MP4 file (no box structure)",
            ));
        }
        let size = if size > len - pos && &kind == b"mdat" {
            cut = true;
            len - pos
        } else {
            size
        };
        if size < 8 || size > len - pos {
            return Err(IngestError::malformed(
                path,
                format!(
                    "box {:?} at {pos} claims {size} bytes, file has {} left (truncated?)",
                    String::from_utf8_lossy(&kind),
                    len - pos
                ),
            ));
        }
        boxes.push(TopBox {
            kind,
            start: pos,
            size,
        });
        pos += size;
    }
    Ok((boxes, cut))
}

/// Containers whose children the demuxer reads, and the children it keeps. Every other child
/// of these becomes a `free` box before the index is decoded: mp4-atom allocates for some
/// boxes by the counts they claim (an `sgpd` of a few bytes claimed 640 MiB of entries: found
/// by the `ingest_mp4` fuzz target), and what is never used need not be decoded at all.
const USED_BOXES: &[(&[u8; 4], &[&[u8; 4]])] = &[
    (b"moov", &[b"mvhd", b"trak", b"mvex"]),
    (b"trak", &[b"tkhd", b"edts", b"mdia"]),
    (b"edts", &[b"elst"]),
    (b"mdia", &[b"mdhd", b"hdlr", b"minf"]),
    (
        b"minf",
        &[
            b"vmhd", b"smhd", b"nmhd", b"sthd", b"hmhd", b"gmhd", b"dinf", b"stbl",
        ],
    ),
    (
        b"stbl",
        &[
            b"stsd", b"stts", b"ctts", b"stss", b"stsc", b"stsz", b"stco", b"co64",
        ],
    ),
    (b"mvex", &[b"mehd", b"trex"]),
    (b"moof", &[b"mfhd", b"traf"]),
    (b"traf", &[b"tfhd", b"tfdt", b"trun"]),
];

/// Rewrites, in the box at the start of `buf`, the children of [`USED_BOXES`] containers that
/// the demuxer does not use into `free` boxes (sizes untouched). A child whose size cannot be
/// walked (below its header, past its parent) makes the whole index malformed: `false`.
/// `depth` bounds the recursion.
fn only_used_boxes(buf: &mut [u8], depth: usize) -> bool {
    let Some(kind) = buf.get(4..8).and_then(|k| <[u8; 4]>::try_from(k).ok()) else {
        return true;
    };
    let Some((_, keep)) = USED_BOXES.iter().find(|(c, _)| **c == kind) else {
        return true;
    };
    if depth > 8 {
        return false;
    }
    // Container boxes here have a plain header (8 bytes, or 16 with a 64-bit size).
    let mut pos = if u32::from_be_bytes([buf[0], buf[1], buf[2], buf[3]]) == 1 {
        16
    } else {
        8
    };
    while pos < buf.len() {
        let Some(h) = buf.get(pos..pos + 8) else {
            return false;
        };
        let (header, size) = match u32::from_be_bytes([h[0], h[1], h[2], h[3]]) {
            0 => (8, buf.len() - pos), // to the end of the parent
            1 => match buf.get(pos + 8..pos + 16) {
                Some(b) => (
                    16,
                    u64::from_be_bytes(b.try_into().unwrap_or([0; 8])) as usize,
                ),
                None => return false,
            },
            n => (8, n as usize),
        };
        if size < header || size > buf.len() - pos {
            return false;
        }
        let child = [buf[pos + 4], buf[pos + 5], buf[pos + 6], buf[pos + 7]];
        if keep.contains(&&child) {
            if !only_used_boxes(&mut buf[pos..pos + size], depth + 1) {
                return false;
            }
        } else {
            buf[pos + 4..pos + 8].copy_from_slice(b"free");
        }
        pos += size;
    }
    true
}

fn read_box<T: Decode>(f: &File, b: &TopBox, path: &Path) -> Result<T, IngestError> {
    if b.size > MAX_INDEX_BOX {
        return Err(IngestError::unsupported(
            path,
            format!("index box of {} bytes", b.size),
        ));
    }
    let mut buf = vec![0u8; b.size as usize];
    f.read_exact_at(&mut buf, b.start)
        .map_err(|e| IngestError::io(path, e))?;
    if !only_used_boxes(&mut buf, 0) {
        return Err(IngestError::malformed(
            path,
            format!(
                "box {:?} at {}: a box inside it has an impossible size",
                String::from_utf8_lossy(&b.kind),
                b.start
            ),
        ));
    }
    T::decode(&mut &buf[..]).map_err(|e| {
        IngestError::malformed(
            path,
            format!(
                "box {:?} at {}: {e}",
                String::from_utf8_lossy(&b.kind),
                b.start
            ),
        )
    })
}

/// Where a sample lives in the file and its timing in the media timescale.
struct RawSample {
    offset: u64,
    size: u32,
    dts: u64,
    duration: u32,
    cto: i64,
    keyframe: bool,
}

struct TrackPlan {
    track_id: u32,
    media: TrackMedia,
    timescale: u32,
    /// NAL length size of H.264 samples (1, 2 or 4).
    norm: Norm,
    /// Presentation offset from the edit list, in the media timescale ([`edit_offset`]).
    edit: i64,
    raw: Vec<RawSample>,
}

impl TrackPlan {
    /// When a sample decoding at `dts` (media timescale) is presented by the edit list,
    /// µs from the file's start, rounded down (negative before it).
    fn edited_us(&self, dts: u64) -> i128 {
        rescale_signed(
            i128::from(dts) + i128::from(self.edit),
            self.timescale,
            1_000_000,
        )
    }
}

/// Most an edit list may move a track: the longest object (`segmenter::MAX_MEDIA_US`).
const MAX_EDIT_US: i128 = super::segmenter::MAX_MEDIA_US as i128;

/// The presentation offset a track's edit list gives it, in its media timescale: the
/// leading empty edits' duration (movie timescale) minus the media time the first media
/// edit starts at (ISO/IEC 14496-12 §8.6.6), as ffmpeg applies it: a B-frame delay or AAC
/// priming. Only that leading part is honoured; later edits (cuts, repeats, rates) are
/// not (PROTOCOL.md §8.6.0).
fn edit_offset(trak: &Trak, movie_timescale: u32, path: &Path) -> Result<i64, IngestError> {
    let Some(elst) = trak.edts.as_ref().and_then(|e| e.elst.as_ref()) else {
        return Ok(0);
    };
    let media_timescale = trak.mdia.mdhd.timescale;
    let mut empty: u64 = 0;
    for e in &elst.entries {
        match e.media_time {
            None => empty = empty.saturating_add(e.segment_duration),
            Some(t) => {
                let empty = rescale(empty, movie_timescale, media_timescale);
                let off = i128::from(empty) - i128::from(t);
                if off.abs() * 1_000_000 / i128::from(media_timescale.max(1)) > MAX_EDIT_US {
                    return Err(IngestError::malformed(
                        path,
                        "edit list moves a track by more than 30 days",
                    ));
                }
                return Ok(off as i64); // bounded just above
            }
        }
    }
    Ok(0) // only empty edits: nothing is presented, nothing is moved
}

/// `v × to / from`, rounded down (towards −∞).
fn rescale_signed(v: i128, from: u32, to: u32) -> i128 {
    if from == 0 || from == to {
        return v;
    }
    (v * i128::from(to)).div_euclid(i128::from(from))
}

/// What ingest makes of an MP4 track.
enum TrackKind {
    /// Carried: its media and how its samples are normalised.
    Media(TrackMedia, Norm),
    /// A video or audio track in a format Segue does not carry: why.
    LeftOut(String),
    /// Not video or audio (text, timecode, metadata): not media to stream.
    Other,
}

/// How ingest turns a track's MP4 samples into frames (PROTOCOL.md §8.6.0).
enum Norm {
    /// Stored as they are (AAC, Opus).
    AsStored,
    /// NAL units with lengths of this size to 4-byte lengths, AUD and filler dropped.
    Nal(u8, NalSyntax),
    /// AV1 temporal units: sized OBUs, minimal sizes, no delimiters or padding; a keyframe
    /// without a sequence header gets this one (from `av1C`).
    Av1(Option<Bytes>),
}

/// A track left out, described for the SDP: which it was and why.
fn left_out(trak: &Trak, kind: &str, why: String) -> TrackKind {
    TrackKind::LeftOut(format!(
        "{kind} track (MP4 track id {}): {why}",
        trak.tkhd.track_id
    ))
}

/// An HEVC track from its `hvcC`: parameter sets VPS, SPS, PPS in that order.
fn hevc(c: &mp4_atom::Hvcc, path: &Path) -> Result<TrackKind, IngestError> {
    let length_size = c.length_size_minus_one + 1;
    if !matches!(length_size, 1 | 2 | 4) {
        return Err(IngestError::malformed(
            path,
            format!("hvcC length size {length_size}"),
        ));
    }
    let mut parameter_sets = Vec::new();
    for ty in [32, 33, 34] {
        for a in c.arrays.iter().filter(|a| a.nal_unit_type == ty) {
            parameter_sets.extend(a.nalus.iter().map(|n| Bytes::from(n.clone())));
        }
    }
    Ok(TrackKind::Media(
        TrackMedia {
            codec: Codec::H265 { parameter_sets },
            clock_rate: VIDEO_CLOCK,
        },
        Norm::Nal(length_size, NalSyntax::H265),
    ))
}

fn codec_of(trak: &Trak, path: &Path) -> Result<TrackKind, IngestError> {
    let handler = trak.mdia.hdlr.handler.as_ref().to_owned();
    if handler != *b"vide" && handler != *b"soun" {
        return Ok(TrackKind::Other); // text, timecode, metadata tracks are not media we stream
    }
    let kind = if handler == *b"vide" {
        "video"
    } else {
        "audio"
    };
    let Some(codec) = trak.mdia.minf.stbl.stsd.codecs.first() else {
        return Err(IngestError::malformed(
            path,
            "track without sample description",
        ));
    };
    Ok(match codec {
        Mp4Codec::Avc1(avc1) => {
            let c = &avc1.avcc;
            let mut sets: Vec<Bytes> = c
                .sequence_parameter_sets
                .iter()
                .map(|s| Bytes::from(s.clone()))
                .collect();
            sets.extend(
                c.picture_parameter_sets
                    .iter()
                    .map(|s| Bytes::from(s.clone())),
            );
            let profile_level_id = c
                .sequence_parameter_sets
                .first()
                .and_then(|sps| sps.get(1..4))
                .map(|p| [p[0], p[1], p[2]])
                .unwrap_or([
                    c.avc_profile_indication,
                    c.profile_compatibility,
                    c.avc_level_indication,
                ]);
            if !matches!(c.length_size, 1 | 2 | 4) {
                return Err(IngestError::malformed(
                    path,
                    format!("avcC length size {}", c.length_size),
                ));
            }
            TrackKind::Media(
                TrackMedia {
                    codec: Codec::H264 {
                        profile_level_id,
                        parameter_sets: sets,
                    },
                    clock_rate: VIDEO_CLOCK,
                },
                Norm::Nal(c.length_size, NalSyntax::H264),
            )
        }
        Mp4Codec::Av01(a) => {
            let c = &a.av1c;
            let config = Bytes::from(c.config_obus.clone());
            let seq = segue_wire::payload::av1::obus(&config)
                .map_err(|e| IngestError::malformed(path, format!("av1C: {e}")))?
                .into_iter()
                .find(|o| o.kind() == segue_wire::payload::av1::OBU_SEQUENCE_HEADER)
                .map(|o| {
                    let mut b = bytes::BytesMut::new();
                    o.write_sized(&mut b);
                    b.freeze()
                });
            TrackKind::Media(
                TrackMedia {
                    codec: Codec::Av1 {
                        profile: c.seq_profile,
                        level_idx: c.seq_level_idx_0,
                        tier: u8::from(c.seq_tier_0),
                    },
                    clock_rate: VIDEO_CLOCK,
                },
                Norm::Av1(seq),
            )
        }
        Mp4Codec::Hvc1(h) => hevc(&h.hvcc, path)?,
        Mp4Codec::Hev1(h) => hevc(&h.hvcc, path)?,
        Mp4Codec::Mp4a(mp4a) => {
            let dc = &mp4a.esds.es_desc.dec_config;
            if dc.object_type_indication != 0x40 {
                return Ok(left_out(
                    trak,
                    kind,
                    format!(
                        "audio object type 0x{:02x} is not carried (AAC only)",
                        dc.object_type_indication
                    ),
                ));
            }
            let config = dc
                .dec_specific
                .as_ref()
                .map(|d| Bytes::from(d.raw.clone()))
                .ok_or_else(|| {
                    IngestError::malformed(path, "AAC track without AudioSpecificConfig")
                })?;
            let Some((rate, channels)) = super::aac_config_info(&config) else {
                return Ok(left_out(
                    trak,
                    kind,
                    "its AAC sampling frequency is not carried".into(),
                ));
            };
            TrackKind::Media(
                TrackMedia {
                    codec: Codec::Aac { config, channels },
                    clock_rate: rate,
                },
                Norm::AsStored,
            )
        }
        Mp4Codec::Opus(opus) => {
            let channels = opus.dops.output_channel_count;
            // RFC 7587 carries mono and stereo (channel mapping family 0).
            if !matches!(channels, 1 | 2) || opus.dops.channel_mapping.is_some() {
                return Ok(left_out(
                    trak,
                    kind,
                    format!("Opus with {channels} channels is not carried (mono and stereo only)"),
                ));
            }
            TrackKind::Media(
                TrackMedia {
                    codec: Codec::Opus { channels },
                    clock_rate: segue_wire::payload::opus::CLOCK,
                },
                Norm::AsStored,
            )
        }
        other => {
            let name = format!("{other:?}");
            let name = name
                .split(['(', ' ', '{'])
                .next()
                .unwrap_or("?")
                .to_lowercase();
            left_out(
                trak,
                kind,
                format!("codec {name} is not carried (H.264, HEVC, AV1, AAC and Opus only)"),
            )
        }
    })
}

/// Samples of a progressive track, from its sample tables.
fn progressive_samples(
    trak: &Trak,
    budget: &mut SampleBudget,
    path: &Path,
) -> Result<Vec<RawSample>, IngestError> {
    let stbl = &trak.mdia.minf.stbl;
    let count = match &stbl.stsz.samples {
        mp4_atom::StszSamples::Identical { count, .. } => u64::from(*count),
        mp4_atom::StszSamples::Different { sizes } => sizes.len() as u64,
    };
    budget.take(count, path)?;
    let sizes: Vec<u32> = match &stbl.stsz.samples {
        mp4_atom::StszSamples::Identical { count, size } => {
            // `count` is untrusted: bound it by what stts can describe before allocating.
            let described: u64 = stbl
                .stts
                .entries
                .iter()
                .map(|e| u64::from(e.sample_count))
                .sum();
            if u64::from(*count) > described {
                return Err(IngestError::malformed(path, "stsz count exceeds stts"));
            }
            vec![*size; *count as usize]
        }
        mp4_atom::StszSamples::Different { sizes } => sizes.clone(),
    };
    let n = sizes.len();
    if n == 0 {
        return Ok(Vec::new());
    }
    let chunk_offsets: Vec<u64> = match (&stbl.stco, &stbl.co64) {
        (Some(s), _) => s.entries.iter().map(|&o| u64::from(o)).collect(),
        (None, Some(c)) => c.entries.clone(),
        (None, None) => return Err(IngestError::malformed(path, "no chunk offsets (stco/co64)")),
    };
    // Offsets from stsc + chunk offsets + sizes.
    let mut offsets = Vec::with_capacity(n);
    let stsc = &stbl.stsc.entries;
    let mut sample = 0usize;
    for (ci, &chunk_start) in chunk_offsets.iter().enumerate() {
        let chunk_no = ci as u32 + 1;
        let per_chunk = stsc
            .iter()
            .rev()
            .find(|e| e.first_chunk <= chunk_no)
            .map(|e| e.samples_per_chunk)
            .ok_or_else(|| IngestError::malformed(path, "stsc does not cover chunk 1"))?;
        let mut off = chunk_start;
        for _ in 0..per_chunk {
            if sample >= n {
                break;
            }
            offsets.push(off);
            off += u64::from(sizes[sample]);
            sample += 1;
        }
    }
    if offsets.len() != n {
        return Err(IngestError::malformed(
            path,
            format!("chunk tables place {} of {n} samples", offsets.len()),
        ));
    }
    let mut durations = Vec::with_capacity(n);
    for e in &stbl.stts.entries {
        for _ in 0..e.sample_count {
            if durations.len() == n {
                break;
            }
            durations.push(e.sample_delta);
        }
    }
    if durations.len() != n {
        return Err(IngestError::malformed(
            path,
            "stts does not cover every sample",
        ));
    }
    let mut ctos = Vec::with_capacity(n);
    if let Some(ctts) = &stbl.ctts {
        for e in &ctts.entries {
            for _ in 0..e.sample_count {
                if ctos.len() == n {
                    break;
                }
                ctos.push(e.sample_offset);
            }
        }
    }
    ctos.resize(n, 0);
    let sync: Option<std::collections::HashSet<u32>> = stbl
        .stss
        .as_ref()
        .map(|s| s.entries.iter().copied().collect());
    let mut dts = 0u64;
    let mut out = Vec::with_capacity(n);
    for i in 0..n {
        out.push(RawSample {
            offset: offsets[i],
            size: sizes[i],
            dts,
            duration: durations[i],
            cto: ctos[i],
            keyframe: sync.as_ref().is_none_or(|s| s.contains(&(i as u32 + 1))),
        });
        dts = dts.saturating_add(u64::from(durations[i]));
    }
    Ok(out)
}

/// Samples of every track from the movie fragments.
fn fragment_samples(
    plans: &mut [TrackPlan],
    moofs: &[(u64, Moof)],
    trex: &[Trex],
    budget: &mut SampleBudget,
    path: &Path,
) -> Result<(), IngestError> {
    let mut next_dts: Vec<u64> = plans
        .iter()
        .map(|p| {
            p.raw
                .last()
                .map_or(0, |s| s.dts.saturating_add(u64::from(s.duration)))
        })
        .collect();
    for (moof_start, moof) in moofs {
        for traf in &moof.traf {
            let tfhd = &traf.tfhd;
            let Some(pi) = plans.iter().position(|p| p.track_id == tfhd.track_id) else {
                continue;
            };
            let defaults = trex.iter().find(|t| t.track_id == tfhd.track_id);
            let base = tfhd.base_data_offset.unwrap_or(*moof_start);
            let mut dts = traf
                .tfdt
                .as_ref()
                .map_or(next_dts[pi], |t| t.base_media_decode_time);
            let mut cursor = base;
            for trun in &traf.trun {
                budget.take(trun.samples.len() as u64, path)?;
                if let Some(off) = trun.data_offset {
                    cursor = base.checked_add_signed(i64::from(off)).ok_or_else(|| {
                        IngestError::malformed(path, "trun data offset before file start")
                    })?;
                }
                for e in trun.samples.iter() {
                    let duration = e
                        .duration
                        .or(tfhd.default_sample_duration)
                        .or(defaults.map(|d| d.default_sample_duration))
                        .unwrap_or(0);
                    let size = e
                        .size
                        .or(tfhd.default_sample_size)
                        .or(defaults.map(|d| d.default_sample_size))
                        .unwrap_or(0);
                    let flags = e
                        .flags
                        .or(tfhd.default_sample_flags)
                        .or(defaults.map(|d| d.default_sample_flags))
                        .unwrap_or(0);
                    plans[pi].raw.push(RawSample {
                        offset: cursor,
                        size,
                        dts,
                        duration,
                        cto: e.cts.unwrap_or(0),
                        keyframe: flags & 0x0001_0000 == 0,
                    });
                    cursor = cursor.saturating_add(u64::from(size));
                    dts = dts.saturating_add(u64::from(duration));
                }
            }
            next_dts[pi] = dts;
        }
    }
    Ok(())
}

/// Rewrites H.264 samples with NAL length size `n` into 4-byte lengths, checking structure.
fn normalize_avcc(
    data: Vec<u8>,
    n: u8,
    syntax: NalSyntax,
    path: &Path,
) -> Result<Bytes, IngestError> {
    let n = usize::from(n);
    let mut out = Vec::with_capacity(data.len() + 16);
    let mut pos = 0;
    while pos < data.len() {
        let len_bytes = data
            .get(pos..pos + n)
            .ok_or_else(|| IngestError::malformed(path, "NAL length cut short"))?;
        let len = len_bytes
            .iter()
            .fold(0usize, |a, b| (a << 8) | usize::from(*b));
        pos += n;
        let nal = data
            .get(pos..pos + len)
            .ok_or_else(|| IngestError::malformed(path, "NAL unit overruns its sample"))?;
        if nal.is_empty() {
            return Err(IngestError::malformed(path, "empty NAL unit"));
        }
        pos += len;
        if syntax.dropped(nal) {
            continue; // access unit delimiter, filler
        }
        out.extend_from_slice(&(nal.len() as u32).to_be_bytes());
        out.extend_from_slice(nal);
    }
    Ok(Bytes::from(out))
}

/// An AV1 temporal unit as Segue stores it (PROTOCOL.md §8.6.0): every OBU with its size
/// field, sizes in minimal LEB128, temporal delimiters, padding and tile lists dropped; a
/// keyframe without a sequence header starts with `seq` (the `av1C` one), so that a player
/// starting there can decode it.
fn normalize_av1(
    data: Vec<u8>,
    keyframe: bool,
    seq: Option<&Bytes>,
    path: &Path,
) -> Result<Bytes, IngestError> {
    use segue_wire::payload::av1;
    let obus = av1::obus(&Bytes::from(data))
        .map_err(|e| IngestError::malformed(path, format!("AV1 sample: {e}")))?;
    let mut out = bytes::BytesMut::new();
    if keyframe
        && let Some(seq) = seq
        && !obus.iter().any(|o| o.kind() == av1::OBU_SEQUENCE_HEADER)
    {
        out.extend_from_slice(seq);
    }
    for o in obus.iter().filter(|o| {
        !matches!(
            o.kind(),
            av1::OBU_TEMPORAL_DELIMITER | av1::OBU_PADDING | av1::OBU_TILE_LIST
        )
    }) {
        o.write_sized(&mut out);
    }
    if out.is_empty() {
        return Err(IngestError::malformed(path, "AV1 sample without OBUs"));
    }
    Ok(out.freeze())
}

/// Demuxes an MP4 or fragmented MP4 file.
pub fn demux(path: &Path) -> Result<Demuxed, IngestError> {
    let (f, len) = super::open_media(path)?;
    let (boxes, cut) = top_boxes(&f, len, path)?;
    let moov_box = boxes.iter().find(|b| &b.kind == b"moov").ok_or_else(|| {
        IngestError::malformed(
            path,
            "no moov box (not an MP4, or truncated before the index)",
        )
    })?;
    let moov: Moov = read_box(&f, moov_box, path)?;
    let mut moofs = Vec::new();
    for b in boxes.iter().filter(|b| &b.kind == b"moof") {
        moofs.push((b.start, read_box::<Moof>(&f, b, path)?));
    }

    let mut budget = SampleBudget::new(len);
    let mut plans = Vec::new();
    let mut left_out_tracks = Vec::new();
    for trak in &moov.trak {
        let (media, norm) = match codec_of(trak, path)? {
            TrackKind::Media(m, n) => (m, n),
            TrackKind::LeftOut(why) => {
                left_out_tracks.push(why);
                continue;
            }
            TrackKind::Other => continue,
        };
        let timescale = trak.mdia.mdhd.timescale;
        if timescale == 0 {
            return Err(IngestError::malformed(path, "media timescale 0"));
        }
        plans.push(TrackPlan {
            track_id: trak.tkhd.track_id,
            media,
            timescale,
            norm,
            edit: edit_offset(trak, moov.mvhd.timescale, path)?,
            raw: progressive_samples(trak, &mut budget, path)?,
        });
    }
    if plans.is_empty() {
        return Err(IngestError::unsupported(
            path,
            match left_out_tracks.first() {
                Some(why) => format!("no video or audio track Segue carries: {why}"),
                None => "no video or audio track".into(),
            },
        ));
    }
    let trex = moov
        .mvex
        .as_ref()
        .map(|m| m.trex.clone())
        .unwrap_or_default();
    fragment_samples(&mut plans, &moofs, &trex, &mut budget, path)?;

    // Video first, then audio: the track order of the SDP.
    plans.sort_by_key(|p| !p.media.codec.is_video());
    // Edit lists move tracks against each other (presentation = media time + edit); the
    // whole object then moves by the least amount (µs) that keeps every decode time at or
    // above 0: A/V as ffmpeg presents them, decode times as frame records need them.
    let lift_us = plans
        .iter()
        .map(|p| -p.edited_us(p.raw.iter().map(|r| r.dts).min().unwrap_or(0)))
        .max()
        .unwrap_or(0)
        .max(0);
    // A file cut short in its media data serves what it has: every track up to the earliest
    // presentation time (µs, edits applied) at which any track's data is missing, so no
    // track plays on alone (PROTOCOL.md §8.6.0).
    let mut cut_us: Option<i128> = None;
    for p in &plans {
        if let Some(r) = p
            .raw
            .iter()
            .find(|r| r.offset.saturating_add(u64::from(r.size)) > len)
        {
            if !cut {
                return Err(IngestError::malformed(
                    path,
                    "sample data beyond the end of the file (truncated?)",
                ));
            }
            let at = p.edited_us(r.dts);
            cut_us = Some(cut_us.map_or(at, |c| c.min(at)));
        }
    }
    let mut out = Demuxed {
        left_out: left_out_tracks,
        ..Demuxed::default()
    };
    if let Some(c) = cut_us {
        out.warnings.push(format!(
            "the file is cut short in its media data: frames from {:.3} s on are left out",
            c.max(0) as f64 / 1e6
        ));
    }
    for mut p in plans {
        if let Some(c) = cut_us {
            let raw = std::mem::take(&mut p.raw);
            p.raw = raw.into_iter().filter(|r| p.edited_us(r.dts) < c).collect();
        }
        let clock = p.media.clock_rate;
        // The track's move, in its clock: its edit, and the object's lift.
        let shift = rescale_signed(i128::from(p.edit), p.timescale, clock)
            + rescale_signed(lift_us, 1_000_000, clock);
        let mut samples = Vec::with_capacity(p.raw.len());
        // Composition offsets may be negative (ctts v1); shift so that pts >= dts holds.
        let min_cto = p.raw.iter().map(|r| r.cto).min().unwrap_or(0).min(0);
        for r in &p.raw {
            if r.size == 0 || r.size > MAX_SAMPLE {
                return Err(IngestError::malformed(
                    path,
                    format!("sample of {} bytes", r.size),
                ));
            }
            if r.offset
                .checked_add(u64::from(r.size))
                .is_none_or(|end| end > len)
            {
                return Err(IngestError::malformed(
                    path,
                    "sample data beyond the end of the file (truncated?)",
                ));
            }
            let mut data = vec![0u8; r.size as usize];
            f.read_exact_at(&mut data, r.offset)
                .map_err(|e| IngestError::io(path, e))?;
            let data = match &p.norm {
                Norm::Nal(n, syntax) => normalize_avcc(data, *n, *syntax, path)?,
                Norm::Av1(seq) => normalize_av1(data, r.keyframe, seq.as_ref(), path)?,
                Norm::AsStored => Bytes::from(data),
            };
            let cto = (r.cto - min_cto) as u64;
            let cto = rescale(cto, p.timescale, p.media.clock_rate);
            let dts = i128::from(rescale(r.dts, p.timescale, clock)) + shift;
            // Rounding can leave the earliest a tick below 0.
            let dts = u64::try_from(dts.max(0))
                .map_err(|_| IngestError::malformed(path, "decode time out of range"))?;
            samples.push(Sample {
                dts,
                cto: u32::try_from(cto)
                    .map_err(|_| IngestError::malformed(path, "composition offset too large"))?,
                duration: rescale(u64::from(r.duration), p.timescale, p.media.clock_rate) as u32,
                keyframe: r.keyframe,
                data,
            });
        }
        out.tracks.push(p.media);
        out.samples.push(samples);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn boxed(kind: &[u8; 4], body: &[u8]) -> Vec<u8> {
        let mut b = ((body.len() + 8) as u32).to_be_bytes().to_vec();
        b.extend_from_slice(kind);
        b.extend_from_slice(body);
        b
    }

    /// What the demuxer does not use is never decoded (an `sgpd` claiming 640 MiB of entries
    /// in a few bytes was: `ingest_mp4` fuzz target, seed `regress-sgpd-count.mp4`).
    #[test]
    fn unused_boxes_become_free() {
        let stbl = boxed(
            b"stbl",
            &[boxed(b"stsz", &[0; 12]), boxed(b"sgpd", &[0xff; 16])].concat(),
        );
        let minf = boxed(b"minf", &[boxed(b"udta", &[1; 4]), stbl].concat());
        let mut moov = boxed(b"moov", &boxed(b"trak", &boxed(b"mdia", &minf)));
        let before = moov.clone();
        assert!(only_used_boxes(&mut moov, 0));
        assert_eq!(moov.len(), before.len());
        let text = String::from_utf8_lossy(&moov).into_owned();
        assert!(
            text.contains("stsz") && text.contains("stbl"),
            "kept what is used"
        );
        assert!(!text.contains("sgpd") && !text.contains("udta"), "{text:?}");
        assert_eq!(text.matches("free").count(), 2);
        // A child claiming more than its parent holds: the index is refused.
        let mut bad = boxed(b"stbl", &boxed(b"sgpd", &[0; 8]));
        bad[8..12].copy_from_slice(&1000u32.to_be_bytes());
        assert!(!only_used_boxes(&mut bad, 0));
    }
}
