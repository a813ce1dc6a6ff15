//! MPEG-TS demuxing with `mpeg2ts`: the first H.264 (stream type 0x1b) or HEVC (0x24) stream
//! and the first audio stream, AAC in ADTS (0x0f) or Opus (0x06 registered as `Opus`, the
//! Opus-in-TS draft's access units), by PID; other streams are left out and named
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
/// PES private data: what it holds is named by a registration descriptor.
const STREAM_PRIVATE: u8 = 0x06;
/// Registration descriptor (H.222.0 §2.6.8): a format identifier.
const DESC_REGISTRATION: u8 = 0x05;
/// DVB extension descriptor (EN 300 468 §6.2.16); the Opus-in-TS draft's
/// `opus_audio_descriptor` is its extension tag 0x80 with a channel configuration code.
const DESC_EXTENSION: u8 = 0x7f;
const EXT_OPUS_AUDIO: u8 = 0x80;

/// An elementary stream Segue carries.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Es {
    Video(NalSyntax),
    Aac,
    Opus { channels: u8 },
}

impl Es {
    fn is_video(self) -> bool {
        matches!(self, Es::Video(_))
    }
}

/// What a PMT entry holds: a stream Segue carries, or why it is not carried.
fn classify(stream_type: u8, descriptors: &[(u8, Vec<u8>)]) -> Result<Es, String> {
    match stream_type {
        STREAM_H264 => Ok(Es::Video(NalSyntax::H264)),
        STREAM_HEVC => Ok(Es::Video(NalSyntax::H265)),
        STREAM_AAC => Ok(Es::Aac),
        STREAM_PRIVATE
            if descriptors
                .iter()
                .any(|(tag, d)| *tag == DESC_REGISTRATION && d.starts_with(b"Opus")) =>
        {
            // Channel configuration codes 1 and 2: mono and stereo with mapping family 0.
            let code = descriptors
                .iter()
                .find(|(tag, d)| *tag == DESC_EXTENSION && d.first() == Some(&EXT_OPUS_AUDIO))
                .and_then(|(_, d)| d.get(1).copied());
            match code {
                Some(c @ (1 | 2)) => Ok(Es::Opus { channels: c }),
                Some(c) => Err(format!(
                    "Opus with channel configuration code 0x{c:02x} is not carried (mono and stereo only)"
                )),
                None => Err("Opus without its opus_audio_descriptor is not carried".into()),
            }
        }
        t => Err(format!(
            "stream type 0x{t:02x} is not carried (H.264 0x1b, HEVC 0x24, AAC 0x0f and Opus only)"
        )),
    }
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

/// An elementary stream announced in the first PMT: PID, stream type, descriptors (tag, data).
type PmtEntry = (u16, u8, Vec<(u8, Vec<u8>)>);

/// The elementary streams announced in the first PMT.
fn streams(path: &Path) -> Result<Vec<PmtEntry>, IngestError> {
    let mut r = TsPacketReader::new(open(path)?);
    loop {
        match r.read_ts_packet() {
            Ok(Some(p)) => {
                if let Some(TsPayload::Pmt(pmt)) = p.payload {
                    return Ok(pmt
                        .es_info
                        .iter()
                        .map(|e| {
                            let d = e.descriptors.iter().map(|d| (d.tag, d.data.clone()));
                            (e.elementary_pid.as_u16(), e.stream_type as u8, d.collect())
                        })
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
    // The first video (H.264 or HEVC) and the first audio (AAC or Opus) stream are carried;
    // every other stream is left out, and said so (PROTOCOL.md §8.6.0).
    let mut kept = Vec::new();
    let mut carried: Vec<Es> = Vec::new();
    let mut left_out = Vec::new();
    for (pid, t, descriptors) in streams(path)? {
        let why = match classify(t, &descriptors) {
            Ok(es) if carried.iter().any(|k| k.is_video() == es.is_video()) => {
                if es.is_video() {
                    "a second video stream is not carried (one video track)".to_owned()
                } else {
                    "a second audio stream is not carried (one audio track)".to_owned()
                }
            }
            Ok(es) => {
                kept.push(pid);
                carried.push(es);
                continue;
            }
            Err(why) => why,
        };
        left_out.push(format!("TS stream (PID {pid}): {why}"));
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
        // Only the kept PIDs reach here: one video and one audio stream at most.
        match id {
            0xe0..=0xef => video.push(pes),
            0xc0..=0xdf | mpeg2ts::es::StreamId::PRIVATE_STREAM_1 => audio.push(pes),
            _ => {}
        }
    }
    let mut out = Demuxed {
        left_out,
        ..Demuxed::default()
    };
    for es in carried {
        let (track, samples) = match es {
            Es::Video(syntax) if !video.is_empty() => video_track(&video, syntax, path)?,
            Es::Aac if !audio.is_empty() => audio_track(&audio, path)?,
            Es::Opus { channels } if !audio.is_empty() => opus_track(&audio, channels, path)?,
            _ => continue,
        };
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

/// Opus audio: each PES holds access units, each an `opus_control_header` (the 11-bit
/// prefix 0x3ff, start/end trim and control extension flags, the packet's size as a run of
/// 0xff bytes and a last byte below 0xff, then the optional trims and extension) and one Opus
/// packet. The packets are the samples, as stored; the trims are read and not applied
/// (ffmpeg presents them so too: its decoder trims). An access unit's time is its PES's PTS
/// plus the durations (from each packet's TOC) of the packets before it in that PES.
fn opus_track(
    pes: &[Pes],
    channels: u8,
    path: &Path,
) -> Result<(TrackMedia, Vec<Sample>), IngestError> {
    let rate = segue_wire::payload::opus::CLOCK;
    let mut samples = Vec::new();
    for p in pes {
        let mut at = rescale(p.pts, 90_000, rate);
        for packet in opus_access_units(&p.data).map_err(|why| IngestError::malformed(path, why))? {
            let duration = segue_wire::payload::opus::packet_duration(packet)
                .ok_or_else(|| IngestError::malformed(path, "Opus packet with a bad TOC"))?;
            samples.push(Sample {
                dts: at,
                cto: 0,
                duration,
                keyframe: true,
                data: Bytes::copy_from_slice(packet),
            });
            at += u64::from(duration);
        }
    }
    if samples.is_empty() {
        return Err(IngestError::malformed(path, "no Opus packets"));
    }
    Ok((
        TrackMedia {
            codec: Codec::Opus { channels },
            clock_rate: rate,
        },
        samples,
    ))
}

/// The Opus packets of one PES's access units (see [`opus_track`]).
fn opus_access_units(mut d: &[u8]) -> Result<Vec<&[u8]>, &'static str> {
    let mut out = Vec::new();
    while !d.is_empty() {
        let [b0, b1, rest @ ..] = d else {
            return Err("Opus access unit header cut short");
        };
        if (u16::from(*b0) << 3 | u16::from(*b1) >> 5) != 0x3ff {
            return Err("Opus access unit without its control header prefix");
        }
        let (start_trim, end_trim, extension) = (b1 & 0x10 != 0, b1 & 0x08 != 0, b1 & 0x04 != 0);
        d = rest;
        let mut size = 0usize;
        loop {
            let (&b, rest) = d.split_first().ok_or("Opus access unit size cut short")?;
            d = rest;
            size += usize::from(b);
            if b != 0xff {
                break;
            }
        }
        let skip = 2 * usize::from(start_trim) + 2 * usize::from(end_trim);
        d = d.get(skip..).ok_or("Opus access unit trims cut short")?;
        if extension {
            let (&n, rest) = d.split_first().ok_or("Opus control extension cut short")?;
            d = rest
                .get(usize::from(n)..)
                .ok_or("Opus control extension cut short")?;
        }
        if size == 0 || size > segue_wire::payload::opus::MAX_PACKET {
            return Err("Opus access unit size out of range");
        }
        let (packet, rest) = d
            .split_at_checked(size)
            .ok_or("Opus access unit cut short (truncated?)")?;
        out.push(packet);
        d = rest;
    }
    Ok(out)
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn opus_access_units_as_ffmpeg_writes_them() {
        // ffmpeg's first access unit: start trim flag, size 0xff 0x2a (297), start trim 312.
        let mut pes = vec![0x7f, 0xf0, 0xff, 0x2a, 0x01, 0x38];
        pes.extend(std::iter::repeat_n(0xfc, 297));
        // A plain one (no trims), size 3; then one with an end trim and a control extension.
        pes.extend([0x7f, 0xe0, 0x03, 0xfc, 1, 2]);
        pes.extend([0x7f, 0xec, 0x01, 0x00, 0x10, 0x02, 0xaa, 0xbb, 0xf8]);
        let units = opus_access_units(&pes).unwrap();
        assert_eq!(units.len(), 3);
        assert_eq!(units[0].len(), 297);
        assert_eq!(units[1], &[0xfc, 1, 2]);
        assert_eq!(units[2], &[0xf8]);
        // A size of exactly 255 takes a trailing zero byte.
        let mut pes = vec![0x7f, 0xe0, 0xff, 0x00];
        pes.extend(std::iter::repeat_n(0xfc, 255));
        assert_eq!(opus_access_units(&pes).unwrap()[0].len(), 255);
    }

    #[test]
    fn bad_opus_access_units_are_errors() {
        for bad in [
            &[0x7f][..],                  // header cut short
            &[0x12, 0x00, 0x01, 0xfc],    // no 0x3ff prefix
            &[0x7f, 0xe0, 0x05, 0xfc],    // packet cut short
            &[0x7f, 0xe0, 0xff],          // size cut short
            &[0x7f, 0xf0, 0x01, 0x01],    // start trim cut short
            &[0x7f, 0xe4, 0x01, 0x09, 0], // extension cut short
            &[0x7f, 0xe0, 0x00],          // empty packet
        ] {
            assert!(opus_access_units(bad).is_err(), "{bad:02x?}");
        }
    }

    #[test]
    fn streams_are_classified_by_type_and_descriptors() {
        let opus = |code: u8| {
            vec![
                (DESC_REGISTRATION, b"Opus".to_vec()),
                (DESC_EXTENSION, vec![EXT_OPUS_AUDIO, code]),
            ]
        };
        assert_eq!(classify(0x1b, &[]), Ok(Es::Video(NalSyntax::H264)));
        assert_eq!(classify(0x24, &[]), Ok(Es::Video(NalSyntax::H265)));
        assert_eq!(classify(0x0f, &[]), Ok(Es::Aac));
        assert_eq!(classify(0x06, &opus(2)), Ok(Es::Opus { channels: 2 }));
        assert_eq!(classify(0x06, &opus(1)), Ok(Es::Opus { channels: 1 }));
        assert!(
            classify(0x06, &opus(6))
                .unwrap_err()
                .contains("mono and stereo")
        );
        assert!(
            classify(0x06, &opus(6)[..1])
                .unwrap_err()
                .contains("opus_audio_descriptor")
        );
        // Private data without a registration (ffmpeg's AV1 in TS): not carried, named.
        assert!(classify(0x06, &[]).unwrap_err().contains("0x06"));
        assert!(classify(0x03, &[]).unwrap_err().contains("0x03"));
    }
}
