//! MPEG-TS demuxing with `mpeg2ts`: the first H.264 (stream type 0x1b) or HEVC (0x24) stream
//! and the first AAC in ADTS (0x0f) stream, by PID; other streams are left out and named
//! (`Demuxed::left_out`).

use std::fs::File;
use std::io::BufReader;
use std::path::Path;

use bytes::Bytes;
use mpeg2ts::pes::{PesPacketReader, ReadPesPacket};
use mpeg2ts::ts::{ReadTsPacket, TsPacketReader, TsPayload};
use segue_wire::sdp::Codec;

use super::{
    Demuxed, IngestError, NalSyntax, Sample, TrackMedia, VIDEO_CLOCK, annexb_to_lengths, rescale,
};

const STREAM_H264: u8 = 0x1b;
const STREAM_HEVC: u8 = 0x24;
const STREAM_AAC: u8 = 0x0f;

fn is_video(t: u8) -> bool {
    matches!(t, STREAM_H264 | STREAM_HEVC)
}

/// The message of an `mpeg2ts` error without its history and source locations.
fn brief(e: &mpeg2ts::Error) -> String {
    let s = e.to_string();
    let first = s.lines().next().unwrap_or("");
    first
        .split(" (at ")
        .next()
        .unwrap_or(first)
        .trim()
        .to_owned()
}

fn open(path: &Path) -> Result<BufReader<File>, IngestError> {
    let (f, _) = super::open_media(path)?;
    Ok(BufReader::new(f))
}

/// The elementary streams announced in the first PMT: (PID, stream type).
fn streams(path: &Path) -> Result<Vec<(u16, u8)>, IngestError> {
    let mut r = TsPacketReader::new(open(path)?);
    loop {
        match r.read_ts_packet() {
            Ok(Some(p)) => {
                if let Some(TsPayload::Pmt(pmt)) = p.payload {
                    return Ok(pmt
                        .es_info
                        .iter()
                        .map(|e| (e.elementary_pid.as_u16(), e.stream_type as u8))
                        .collect());
                }
            }
            Ok(None) => {
                return Err(IngestError::malformed(
                    path,
                    "no PMT (not an MPEG-TS file?)",
                ));
            }
            Err(e) => {
                return Err(IngestError::malformed(
                    path,
                    format!("TS packet: {}", brief(&e)),
                ));
            }
        }
    }
}

/// TS packets of the kept PIDs only: the PES reader never sees a stream left out.
struct KeptPids<R> {
    inner: R,
    kept: Vec<u16>,
}

impl<R: ReadTsPacket> ReadTsPacket for KeptPids<R> {
    fn read_ts_packet(&mut self) -> mpeg2ts::Result<Option<mpeg2ts::ts::TsPacket>> {
        loop {
            match self.inner.read_ts_packet()? {
                Some(p)
                    if matches!(
                        p.payload,
                        Some(TsPayload::PesStart(_) | TsPayload::PesContinuation(_))
                    ) && !self.kept.contains(&p.header.pid.as_u16()) => {}
                other => return Ok(other),
            }
        }
    }
}

struct Pes {
    pts: u64,
    dts: u64,
    data: Vec<u8>,
}

/// Demuxes an MPEG-TS file.
pub fn demux(path: &Path) -> Result<Demuxed, IngestError> {
    // The first video (H.264 or HEVC) and the first AAC stream are carried; every other
    // stream is left out, and said so (PROTOCOL.md §8.6.0).
    let mut kept = Vec::new();
    let mut types = Vec::new();
    let mut left_out = Vec::new();
    for (pid, t) in streams(path)? {
        let taken = if is_video(t) {
            types.iter().any(|k| is_video(*k))
        } else {
            types.contains(&t)
        };
        let carried = matches!(t, STREAM_H264 | STREAM_HEVC | STREAM_AAC) && !taken;
        if carried {
            kept.push(pid);
            types.push(t);
        } else {
            let kind = match t {
                STREAM_H264 | STREAM_HEVC => {
                    "a second video stream is not carried (one video track)".into()
                }
                STREAM_AAC => "a second AAC stream is not carried (one audio track)".into(),
                _ => format!(
                    "stream type 0x{t:02x} is not carried (H.264 0x1b, HEVC 0x24 and AAC 0x0f only)"
                ),
            };
            left_out.push(format!("TS stream (PID {pid}): {kind}"));
        }
    }
    if kept.is_empty() {
        return Err(IngestError::unsupported(
            path,
            match left_out.first() {
                Some(why) => format!("no stream Segue carries: {why}"),
                None => "no elementary stream".into(),
            },
        ));
    }
    let mut video = Vec::new();
    let mut audio = Vec::new();
    let mut r = PesPacketReader::new(KeptPids {
        inner: TsPacketReader::new(open(path)?),
        kept,
    });
    loop {
        let p = match r.read_pes_packet() {
            Ok(Some(p)) => p,
            Ok(None) => break,
            Err(e) => {
                return Err(IngestError::malformed(
                    path,
                    format!("PES packet: {}", brief(&e)),
                ));
            }
        };
        let id = p.header.stream_id.as_u8();
        let Some(pts) = p.header.pts.map(|t| t.as_u64()) else {
            return Err(IngestError::malformed(path, "PES packet without PTS"));
        };
        let dts = p.header.dts.map_or(pts, |t| t.as_u64());
        let pes = Pes {
            pts,
            dts,
            data: p.data,
        };
        match id {
            0xe0..=0xef => video.push(pes),
            0xc0..=0xdf => audio.push(pes),
            _ => {}
        }
    }
    let mut out = Demuxed {
        left_out,
        ..Demuxed::default()
    };
    let syntax = if types.contains(&STREAM_HEVC) {
        Some(NalSyntax::H265)
    } else if types.contains(&STREAM_H264) {
        Some(NalSyntax::H264)
    } else {
        None
    };
    if let Some(syntax) = syntax
        && !video.is_empty()
    {
        let (track, samples) = video_track(&video, syntax, path)?;
        out.tracks.push(track);
        out.samples.push(samples);
    }
    if !audio.is_empty() && types.contains(&STREAM_AAC) {
        let (track, samples) = audio_track(&audio, path)?;
        out.tracks.push(track);
        out.samples.push(samples);
    }
    // TS timestamps start anywhere (often 1.4 s): rebase every track to the earliest dts.
    let base_us = out
        .tracks
        .iter()
        .zip(&out.samples)
        .filter_map(|(t, s)| s.first().map(|f| rescale(f.dts, t.clock_rate, 1_000_000)))
        .min()
        .unwrap_or(0);
    for (t, samples) in out.tracks.iter().zip(out.samples.iter_mut()) {
        let base = rescale(base_us, 1_000_000, t.clock_rate);
        for s in samples {
            s.dts = s.dts.saturating_sub(base);
        }
    }
    Ok(out)
}

fn video_track(
    pes: &[Pes],
    syntax: NalSyntax,
    path: &Path,
) -> Result<(TrackMedia, Vec<Sample>), IngestError> {
    // The first parameter set of each kind: H.264 SPS, PPS; HEVC VPS, SPS, PPS.
    let kinds: &[u8] = match syntax {
        NalSyntax::H264 => &[7, 8],
        NalSyntax::H265 => &[32, 33, 34],
    };
    let mut sets: Vec<Option<Bytes>> = vec![None; kinds.len()];
    let mut samples: Vec<Sample> = Vec::with_capacity(pes.len());
    for p in pes {
        let (avcc, nals) = annexb_to_lengths(&p.data, syntax);
        if nals.is_empty() {
            return Err(IngestError::malformed(path, "video PES without NAL units"));
        }
        let mut keyframe = false;
        for n in &nals {
            keyframe |= syntax.keyframe(n);
            let ty = syntax.nal_type(n);
            if let Some(i) = kinds.iter().position(|k| *k == ty)
                && sets[i].is_none()
            {
                sets[i] = Some(Bytes::copy_from_slice(n));
            }
        }
        let cto = p
            .pts
            .checked_sub(p.dts)
            .ok_or_else(|| IngestError::malformed(path, "video PTS before DTS"))?;
        samples.push(Sample {
            dts: p.dts,
            cto: u32::try_from(cto)
                .map_err(|_| IngestError::malformed(path, "composition offset too large"))?,
            duration: 0,
            keyframe,
            data: Bytes::from(avcc),
        });
    }
    fill_durations(&mut samples);
    let names: &[&str] = match syntax {
        NalSyntax::H264 => &["SPS", "PPS"],
        NalSyntax::H265 => &["VPS", "SPS", "PPS"],
    };
    let sets = sets
        .into_iter()
        .zip(names)
        .map(|(s, name)| {
            s.ok_or_else(|| IngestError::malformed(path, format!("no {name} in the video stream")))
        })
        .collect::<Result<Vec<_>, _>>()?;
    let codec = match syntax {
        NalSyntax::H264 => Codec::H264 {
            profile_level_id: sets[0]
                .get(1..4)
                .map(|p| [p[0], p[1], p[2]])
                .ok_or_else(|| IngestError::malformed(path, "SPS too short"))?,
            parameter_sets: sets,
        },
        NalSyntax::H265 => Codec::H265 {
            parameter_sets: sets,
        },
    };
    Ok((
        TrackMedia {
            codec,
            clock_rate: VIDEO_CLOCK,
        },
        samples,
    ))
}

fn audio_track(pes: &[Pes], path: &Path) -> Result<(TrackMedia, Vec<Sample>), IngestError> {
    let mut config = None;
    let mut samples = Vec::new();
    let mut rate = 0u32;
    for p in pes {
        let mut d = &p.data[..];
        let mut i = 0u64;
        while !d.is_empty() {
            if d.len() < 7 || d[0] != 0xff || d[1] & 0xf0 != 0xf0 {
                return Err(IngestError::malformed(path, "audio is not ADTS"));
            }
            let protection_absent = d[1] & 1 == 1;
            let profile = (d[2] >> 6) + 1; // audio object type
            let freq_index = (d[2] >> 2) & 0x0f;
            let channels = ((d[2] & 1) << 2) | (d[3] >> 6);
            let frame_len = (usize::from(d[3] & 0x03) << 11)
                | (usize::from(d[4]) << 3)
                | usize::from(d[5] >> 5);
            let header = if protection_absent { 7 } else { 9 };
            if frame_len <= header || frame_len > d.len() {
                return Err(IngestError::malformed(
                    path,
                    "ADTS frame length out of range (truncated?)",
                ));
            }
            let r = *super::AAC_RATES
                .get(usize::from(freq_index))
                .ok_or_else(|| IngestError::unsupported(path, "AAC sampling frequency"))?;
            if config.is_none() {
                rate = r;
                let asc = (u16::from(profile) << 11)
                    | (u16::from(freq_index) << 7)
                    | (u16::from(channels) << 3);
                config = Some((Bytes::copy_from_slice(&asc.to_be_bytes()), channels.max(1)));
            }
            // One PES may carry several AAC frames of 1024 samples each.
            let pts = rescale(p.pts, 90_000, rate) + i * 1024;
            samples.push(Sample {
                dts: pts,
                cto: 0,
                duration: 1024,
                keyframe: true,
                data: Bytes::copy_from_slice(&d[header..frame_len]),
            });
            d = &d[frame_len..];
            i += 1;
        }
    }
    let (config, channels) = config.ok_or_else(|| IngestError::malformed(path, "no AAC frames"))?;
    Ok((
        TrackMedia {
            codec: Codec::Aac { config, channels },
            clock_rate: rate,
        },
        samples,
    ))
}

fn fill_durations(samples: &mut [Sample]) {
    for i in 0..samples.len() {
        let next = samples.get(i + 1).map(|n| n.dts);
        let d = match next {
            Some(n) => n.saturating_sub(samples[i].dts),
            None => i
                .checked_sub(1)
                .map_or(0, |p| samples[i].dts.saturating_sub(samples[p].dts)),
        };
        samples[i].duration = u32::try_from(d).unwrap_or(0);
    }
}
