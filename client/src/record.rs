//! `--record`: received video written as an elementary stream (Annex B for H.264 and HEVC,
//! low-overhead OBUs with temporal delimiters for AV1), audio next to it as
//! ADTS (AAC, `FILE.aac`) or Ogg Opus (`FILE.opus`), so that ffprobe and players read what
//! the player received.

use std::io::Write;
use std::path::Path;

use ogg::writing::{PacketWriteEndInfo, PacketWriter};
use segue_wire::sdp::{Codec, Description};

/// The Ogg stream serial number of a recording's Opus track.
const OPUS_SERIAL: u32 = 0x5e9e;

/// Where a recording's audio goes.
enum Audio {
    Adts(std::fs::File),
    /// Ogg Opus (RFC 7845): the granule position after each packet.
    Ogg(PacketWriter<'static, std::fs::File>, u64),
}

/// The files one play records into.
pub(crate) struct Recorder {
    /// Each track's codec, by index.
    codecs: Vec<Codec>,
    video: std::fs::File,
    audio: Option<Audio>,
}

impl Recorder {
    pub fn open(path: &Path, desc: &Description) -> std::io::Result<Self> {
        let mut video = std::fs::File::create(path)?;
        for t in &desc.tracks {
            if let Codec::H264 { parameter_sets, .. } | Codec::H265 { parameter_sets } = &t.codec {
                for p in parameter_sets {
                    video.write_all(&[0, 0, 0, 1])?;
                    video.write_all(p)?;
                }
            }
        }
        let with_ext = |ext: &str| {
            let mut p = path.as_os_str().to_owned();
            p.push(ext);
            std::fs::File::create(&p)
        };
        let audio = match desc.tracks.iter().find(|t| !t.codec.is_video()) {
            None => None,
            Some(t) => match &t.codec {
                Codec::Opus { channels } => {
                    let mut w = PacketWriter::new(with_ext(".opus")?);
                    // RFC 7845 §5.1: OpusHead (no pre-skip: the object's edit list already
                    // applied), then §5.2 OpusTags, each on a page of its own.
                    let mut head = b"OpusHead".to_vec();
                    head.push(1);
                    head.push(*channels);
                    head.extend_from_slice(&0u16.to_le_bytes());
                    head.extend_from_slice(&48_000u32.to_le_bytes());
                    head.extend_from_slice(&0i16.to_le_bytes());
                    head.push(0);
                    w.write_packet(head, OPUS_SERIAL, PacketWriteEndInfo::EndPage, 0)?;
                    let mut tags = b"OpusTags".to_vec();
                    tags.extend_from_slice(&5u32.to_le_bytes());
                    tags.extend_from_slice(b"segue");
                    tags.extend_from_slice(&0u32.to_le_bytes());
                    w.write_packet(tags, OPUS_SERIAL, PacketWriteEndInfo::EndPage, 0)?;
                    Some(Audio::Ogg(w, 0))
                }
                _ => Some(Audio::Adts(with_ext(".aac")?)),
            },
        };
        let codecs = desc.tracks.iter().map(|t| t.codec.clone()).collect();
        Ok(Self {
            codecs,
            video,
            audio,
        })
    }

    /// Writes a frame of track `track`.
    pub fn write(&mut self, track: u32, data: &[u8]) -> std::io::Result<()> {
        let Some(codec) = self.codecs.get(track as usize) else {
            return Ok(());
        };
        match codec {
            Codec::H264 { .. } | Codec::H265 { .. } => {
                let mut pos = 0;
                while pos + 4 <= data.len() {
                    let len = u32::from_be_bytes([
                        data[pos],
                        data[pos + 1],
                        data[pos + 2],
                        data[pos + 3],
                    ]) as usize;
                    let end = (pos + 4 + len).min(data.len());
                    self.video.write_all(&[0, 0, 0, 1])?;
                    self.video.write_all(&data[pos + 4..end])?;
                    pos = end;
                }
                Ok(())
            }
            Codec::Aac { config, channels } => {
                let Some(Audio::Adts(f)) = self.audio.as_mut() else {
                    return Ok(());
                };
                let [c0, c1, ..] = config[..] else {
                    return Ok(());
                };
                let profile = (c0 >> 3).saturating_sub(1) & 0x3;
                let freq = ((c0 & 0x07) << 1) | (c1 >> 7);
                let len = data.len() + 7;
                let hdr = [
                    0xff,
                    0xf1,
                    (profile << 6) | (freq << 2) | ((channels >> 2) & 1),
                    ((channels & 3) << 6) | ((len >> 11) as u8 & 0x3),
                    (len >> 3) as u8,
                    ((len as u8 & 0x7) << 5) | 0x1f,
                    0xfc,
                ];
                f.write_all(&hdr)?;
                f.write_all(data)
            }
            Codec::Av1 { .. } => {
                // The low-overhead OBU stream ffmpeg's `obu` demuxer reads: a temporal
                // delimiter before each temporal unit.
                self.video.write_all(&[0x12, 0x00])?;
                self.video.write_all(data)
            }
            Codec::Opus { .. } => {
                let Some(Audio::Ogg(w, granule)) = self.audio.as_mut() else {
                    return Ok(());
                };
                *granule += segue_wire::payload::opus::packet_duration(data).map_or(0, u64::from);
                // A page per packet: the recording is readable however the play ends.
                w.write_packet(
                    data.to_vec(),
                    OPUS_SERIAL,
                    PacketWriteEndInfo::EndPage,
                    *granule,
                )
            }
        }
    }
}
