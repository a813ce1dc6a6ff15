//! `--record`: received video written as Annex-B H.264, audio as ADTS next to it (`.aac`),
//! so that ffprobe and players read what the player received.

use std::io::Write;
use std::path::Path;

use segue_wire::sdp::{Codec, Description};

/// The files one play records into.
pub(crate) struct Recorder {
    /// Each track's codec, by index.
    codecs: Vec<Codec>,
    video: std::fs::File,
    audio: Option<std::fs::File>,
}

impl Recorder {
    pub fn open(path: &Path, desc: &Description) -> std::io::Result<Self> {
        let mut video = std::fs::File::create(path)?;
        for t in &desc.tracks {
            if let Codec::H264 { parameter_sets, .. } = &t.codec {
                for p in parameter_sets {
                    video.write_all(&[0, 0, 0, 1])?;
                    video.write_all(p)?;
                }
            }
        }
        let audio = if desc.tracks.iter().any(|t| !t.codec.is_video()) {
            let mut p = path.as_os_str().to_owned();
            p.push(".aac");
            Some(std::fs::File::create(&p)?)
        } else {
            None
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
            Codec::H264 { .. } => {
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
                let Some(f) = self.audio.as_mut() else {
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
        }
    }
}
