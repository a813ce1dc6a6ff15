//! Track descriptions (SDP, RFC 8866) of an object: what DESCRIBE returns and the manifest
//! embeds. Made and parsed with the `sdp` crate; this module is the typed view segue/1 needs.

use std::io::Cursor;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;
use bytes::Bytes;
use sdp::description::common::Attribute;
use sdp::description::media::{MediaDescription, MediaName, RangedPort};
use sdp::description::session::{Origin, SessionDescription, TimeDescription, Timing};

use crate::error::DecodeError;
use crate::rtp::FRAME_INFO_EXT_URI;

/// Largest SDP text accepted (also bounded by the control body limit).
pub const MAX_SDP: usize = 16 * 1024;

/// A track's codec and its out-of-band configuration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Codec {
    /// H.264 (RFC 6184, packetization-mode=1). Frames are AVCC: 4-byte-length-prefixed NALs.
    H264 {
        /// profile_idc, constraint flags, level_idc.
        profile_level_id: [u8; 3],
        /// Sequence and picture parameter sets (sprop-parameter-sets), in order.
        parameter_sets: Vec<Bytes>,
    },
    /// HEVC (RFC 7798). Frames are 4-byte-length-prefixed NAL units, as for H.264.
    H265 {
        /// VPS, SPS and PPS NAL units (types 32, 33, 34), in that order
        /// (`sprop-vps`, `sprop-sps`, `sprop-pps`).
        parameter_sets: Vec<Bytes>,
    },
    /// AV1 (AOMedia RTP payload format). Frames are temporal units of sized OBUs.
    Av1 {
        /// `seq_profile`, `seq_level_idx[0]`, `seq_tier[0]` (fmtp `profile`, `level-idx`,
        /// `tier`).
        profile: u8,
        level_idx: u8,
        tier: u8,
    },
    /// AAC (RFC 3640 mode AAC-hbr). Frames are raw access units (no ADTS header).
    Aac {
        /// AudioSpecificConfig (ISO 14496-3 §1.6.2.1).
        config: Bytes,
        channels: u8,
    },
    /// Opus (RFC 7587), mono or stereo; clock 48 kHz. Frames are Opus packets.
    Opus {
        /// 1 or 2 (`sprop-stereo`).
        channels: u8,
    },
}

impl Codec {
    /// The codec's short name, as reports print it (`h264`, `aac`, `opus`).
    pub fn name(&self) -> &'static str {
        match self {
            Codec::H264 { .. } => "h264",
            Codec::H265 { .. } => "hevc",
            Codec::Av1 { .. } => "av1",
            Codec::Aac { .. } => "aac",
            Codec::Opus { .. } => "opus",
        }
    }

    pub fn is_video(&self) -> bool {
        matches!(
            self,
            Codec::H264 { .. } | Codec::H265 { .. } | Codec::Av1 { .. }
        )
    }
}

/// One track of an object.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Track {
    /// Position in the SDP, 0-based; the control URL is `<object>/track=<index>`.
    pub index: u32,
    /// Dynamic RTP payload type (96..=127).
    pub payload_type: u8,
    /// RTP clock rate: 90000 for video, the sample rate for audio. Frame timestamps in
    /// segments use the same clock.
    pub clock_rate: u32,
    pub codec: Codec,
    /// RFC 8285 id of the frame-info extension (1..=14).
    pub frame_info_ext: u8,
}

/// What DESCRIBE returns: the object's name, duration and tracks.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Description {
    pub name: String,
    /// Duration in microseconds.
    pub duration_us: u64,
    pub tracks: Vec<Track>,
    /// Tracks of the source that are not carried, each with why (`a=x-segue-left-out`).
    pub left_out: Vec<String>,
}

/// The session-level attribute naming a source track that is not carried, and why.
pub const LEFT_OUT_ATTR: &str = "x-segue-left-out";
/// Most `a=x-segue-left-out` lines kept, and the longest (bytes).
pub const MAX_LEFT_OUT: usize = 16;
pub const MAX_LEFT_OUT_LEN: usize = 200;

/// `text` as an attribute value: printable ASCII, at most [`MAX_LEFT_OUT_LEN`] bytes.
fn left_out_value(text: &str) -> String {
    text.chars()
        .map(|c| {
            if c.is_ascii_graphic() || c == ' ' {
                c
            } else {
                '?'
            }
        })
        .take(MAX_LEFT_OUT_LEN)
        .collect()
}

fn attr(key: &str, value: impl Into<String>) -> Attribute {
    Attribute {
        key: key.into(),
        value: Some(value.into()),
    }
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

fn unhex(s: &str) -> Result<Vec<u8>, DecodeError> {
    if s.len() % 2 != 0 || !s.is_ascii() {
        return Err(DecodeError::Sdp(format!("bad hex {s:?}")));
    }
    (0..s.len())
        .step_by(2)
        .map(|i| {
            u8::from_str_radix(&s[i..i + 2], 16)
                .map_err(|_| DecodeError::Sdp(format!("bad hex {s:?}")))
        })
        .collect()
}

fn fmt_npt(us: u64) -> String {
    format!("{}.{:06}", us / 1_000_000, us % 1_000_000)
}

fn parse_npt(s: &str) -> Result<u64, DecodeError> {
    let bad = || DecodeError::Sdp(format!("bad npt {s:?}"));
    let (secs, frac) = s.split_once('.').unwrap_or((s, ""));
    if secs.is_empty() || secs.len() > 12 || frac.len() > 9 {
        return Err(bad());
    }
    let secs: u64 = secs.parse().map_err(|_| bad())?;
    let mut micro = 0u64;
    for (i, c) in frac.chars().take(6).enumerate() {
        let d = c.to_digit(10).ok_or_else(bad)?;
        micro += u64::from(d) * 10u64.pow(5 - i as u32);
    }
    if !frac.chars().all(|c| c.is_ascii_digit()) {
        return Err(bad());
    }
    Ok(secs * 1_000_000 + micro)
}

impl Description {
    /// Serialises as SDP text (CRLF line ends).
    pub fn to_sdp(&self) -> String {
        let mut sd = SessionDescription {
            version: 0,
            origin: Origin {
                username: "-".into(),
                session_id: 0,
                session_version: 0,
                network_type: "IN".into(),
                address_type: "IP4".into(),
                unicast_address: "0.0.0.0".into(),
            },
            session_name: self.name.clone(),
            time_descriptions: vec![TimeDescription {
                timing: Timing {
                    start_time: 0,
                    stop_time: 0,
                },
                repeat_times: vec![],
            }],
            attributes: vec![
                attr("control", "*"),
                attr("range", format!("npt=0-{}", fmt_npt(self.duration_us))),
            ],
            ..Default::default()
        };
        for l in self.left_out.iter().take(MAX_LEFT_OUT) {
            sd.attributes.push(attr(LEFT_OUT_ATTR, left_out_value(l)));
        }
        for t in &self.tracks {
            let pt = t.payload_type.to_string();
            let (media, rtpmap, fmtp) = match &t.codec {
                Codec::H264 {
                    profile_level_id,
                    parameter_sets,
                } => {
                    let sets: Vec<String> = parameter_sets.iter().map(|p| B64.encode(p)).collect();
                    let mut fmtp = format!(
                        "{pt} packetization-mode=1;profile-level-id={}",
                        hex(profile_level_id)
                    );
                    if !sets.is_empty() {
                        fmtp.push_str(&format!(";sprop-parameter-sets={}", sets.join(",")));
                    }
                    ("video", format!("{pt} H264/{}", t.clock_rate), fmtp)
                }
                Codec::H265 { parameter_sets } => {
                    let of = |ty: u8| -> String {
                        parameter_sets
                            .iter()
                            .filter(|p| p.first().is_some_and(|h| (h >> 1) & 0x3f == ty))
                            .map(|p| B64.encode(p))
                            .collect::<Vec<_>>()
                            .join(",")
                    };
                    let mut fmtp = Vec::new();
                    for (name, ty) in [("sprop-vps", 32), ("sprop-sps", 33), ("sprop-pps", 34)] {
                        let v = of(ty);
                        if !v.is_empty() {
                            fmtp.push(format!("{name}={v}"));
                        }
                    }
                    (
                        "video",
                        format!("{pt} H265/{}", t.clock_rate),
                        format!("{pt} {}", fmtp.join(";")),
                    )
                }
                Codec::Av1 {
                    profile,
                    level_idx,
                    tier,
                } => (
                    "video",
                    format!("{pt} AV1/{}", t.clock_rate),
                    format!("{pt} profile={profile};level-idx={level_idx};tier={tier}"),
                ),
                Codec::Opus { channels } => (
                    "audio",
                    // RFC 7587 §7: always `/2` in the rtpmap; mono is said by sprop-stereo.
                    format!("{pt} opus/48000/2"),
                    format!("{pt} sprop-stereo={}", u8::from(*channels == 2)),
                ),
                Codec::Aac { config, channels } => (
                    "audio",
                    format!("{pt} MPEG4-GENERIC/{}/{channels}", t.clock_rate),
                    format!(
                        "{pt} streamtype=5;profile-level-id=1;mode=AAC-hbr;sizelength=13;\
                         indexlength=3;indexdeltalength=3;config={}",
                        hex(config)
                    ),
                ),
            };
            sd.media_descriptions.push(MediaDescription {
                media_name: MediaName {
                    media: media.into(),
                    port: RangedPort {
                        value: 0,
                        range: None,
                    },
                    protos: vec!["RTP".into(), "AVP".into()],
                    formats: vec![pt.clone()],
                },
                attributes: vec![
                    attr("control", format!("track={}", t.index)),
                    attr("rtpmap", rtpmap),
                    attr("fmtp", fmtp),
                    attr(
                        "extmap",
                        format!("{} {FRAME_INFO_EXT_URI}", t.frame_info_ext),
                    ),
                ],
                ..Default::default()
            });
        }
        sd.marshal()
    }

    /// Parses SDP text as produced by [`Description::to_sdp`] (attribute order free; unknown
    /// attributes ignored).
    pub fn from_sdp(text: &str, max_tracks: usize) -> Result<Self, DecodeError> {
        if text.len() > MAX_SDP {
            return Err(DecodeError::TooLarge {
                what: "SDP",
                size: text.len() as u64,
                limit: MAX_SDP as u64,
            });
        }
        let sd = SessionDescription::unmarshal(&mut Cursor::new(text.as_bytes()))
            .map_err(|e| DecodeError::Sdp(e.to_string()))?;
        let range = sd
            .attribute("range")
            .ok_or_else(|| DecodeError::Sdp("missing a=range".into()))?;
        let duration_us = range
            .strip_prefix("npt=")
            .and_then(|r| r.split_once('-'))
            .filter(|(a, _)| a.trim() == "0" || parse_npt(a.trim()) == Ok(0))
            .ok_or_else(|| DecodeError::Sdp(format!("bad a=range {range:?}")))
            .and_then(|(_, end)| parse_npt(end.trim()))?;
        if sd.media_descriptions.len() > max_tracks {
            return Err(DecodeError::TooMany {
                what: "tracks",
                count: sd.media_descriptions.len() as u64,
                limit: max_tracks as u64,
            });
        }
        let tracks = sd
            .media_descriptions
            .iter()
            .enumerate()
            .map(|(i, md)| parse_track(i as u32, md))
            .collect::<Result<Vec<_>, _>>()?;
        let left_out = sd
            .attributes
            .iter()
            .filter(|a| a.key == LEFT_OUT_ATTR)
            .filter_map(|a| a.value.as_deref())
            .take(MAX_LEFT_OUT)
            .map(left_out_value)
            .collect();
        Ok(Self {
            name: sd.session_name.clone(),
            duration_us,
            tracks,
            left_out,
        })
    }
}

fn parse_track(index: u32, md: &MediaDescription) -> Result<Track, DecodeError> {
    let err = |m: String| DecodeError::Sdp(format!("track {index}: {m}"));
    let get = |k: &str| md.attribute(k).flatten();
    let control = get("control").ok_or_else(|| err("missing a=control".into()))?;
    if control != format!("track={index}") {
        return Err(err(format!(
            "a=control must be track={index}, got {control:?}"
        )));
    }
    let [pt] = md.media_name.formats.as_slice() else {
        return Err(err("exactly one payload format expected".into()));
    };
    let payload_type: u8 = pt
        .parse()
        .ok()
        .filter(|p| (96..=127).contains(p))
        .ok_or_else(|| err(format!("payload type {pt:?} not dynamic")))?;
    let rtpmap = get("rtpmap").ok_or_else(|| err("missing a=rtpmap".into()))?;
    let (map_pt, enc) = rtpmap
        .split_once(' ')
        .ok_or_else(|| err("bad a=rtpmap".into()))?;
    if map_pt != pt {
        return Err(err("a=rtpmap for another payload type".into()));
    }
    let mut enc_parts = enc.split('/');
    let name = enc_parts.next().unwrap_or("");
    let clock_rate: u32 = enc_parts
        .next()
        .and_then(|c| c.parse().ok())
        .filter(|c| *c > 0)
        .ok_or_else(|| err("bad clock rate".into()))?;
    let channels = enc_parts.next();
    let fmtp = get("fmtp").ok_or_else(|| err("missing a=fmtp".into()))?;
    let params = fmtp
        .strip_prefix(pt.as_str())
        .ok_or_else(|| err("a=fmtp for another payload type".into()))?;
    let param = |k: &str| {
        params.trim().split(';').find_map(|kv| {
            let (key, v) = kv.trim().split_once('=')?;
            key.eq_ignore_ascii_case(k).then_some(v.trim())
        })
    };
    let codec = match (
        md.media_name.media.as_str(),
        name.to_ascii_uppercase().as_str(),
    ) {
        ("video", "H264") => {
            if param("packetization-mode") != Some("1") {
                return Err(err("H264 needs packetization-mode=1".into()));
            }
            let pli = unhex(param("profile-level-id").unwrap_or(""))?;
            let profile_level_id: [u8; 3] = pli
                .try_into()
                .map_err(|_| err("profile-level-id must be 3 bytes".into()))?;
            let parameter_sets = match param("sprop-parameter-sets") {
                None | Some("") => Vec::new(),
                Some(s) => s
                    .split(',')
                    .map(|p| B64.decode(p).map(Bytes::from))
                    .collect::<Result<_, _>>()
                    .map_err(|_| err("bad sprop-parameter-sets".into()))?,
            };
            Codec::H264 {
                profile_level_id,
                parameter_sets,
            }
        }
        ("audio", "MPEG4-GENERIC") => {
            if !param("mode").is_some_and(|m| m.eq_ignore_ascii_case("AAC-hbr"))
                || param("sizelength") != Some("13")
                || param("indexlength") != Some("3")
                || param("indexdeltalength") != Some("3")
            {
                return Err(err("AAC needs mode=AAC-hbr with 13/3/3 AU headers".into()));
            }
            let config = Bytes::from(unhex(param("config").unwrap_or(""))?);
            let channels = channels
                .map_or(Some(1), |c| c.parse().ok())
                .filter(|c| *c > 0)
                .ok_or_else(|| err("bad channel count".into()))?;
            Codec::Aac { config, channels }
        }
        ("video", "H265") => {
            let mut parameter_sets = Vec::new();
            for name in ["sprop-vps", "sprop-sps", "sprop-pps"] {
                if let Some(v) = param(name).filter(|v| !v.is_empty()) {
                    for p in v.split(',') {
                        let p = B64.decode(p).map_err(|_| err(format!("bad {name}")))?;
                        parameter_sets.push(Bytes::from(p));
                    }
                }
            }
            Codec::H265 { parameter_sets }
        }
        ("video", "AV1") => {
            let num = |k: &str, max: u8| -> Result<u8, DecodeError> {
                param(k)
                    .map_or(Some(0), |v| v.parse().ok())
                    .filter(|v| *v <= max)
                    .ok_or_else(|| err(format!("bad AV1 {k}")))
            };
            Codec::Av1 {
                profile: num("profile", 2)?,
                level_idx: num("level-idx", 31)?,
                tier: num("tier", 1)?,
            }
        }
        ("audio", "OPUS") => {
            if clock_rate != crate::payload::opus::CLOCK || channels != Some("2") {
                return Err(err("Opus needs opus/48000/2".into()));
            }
            Codec::Opus {
                channels: if param("sprop-stereo") == Some("1") {
                    2
                } else {
                    1
                },
            }
        }
        (m, n) => return Err(err(format!("unsupported media {m} {n}"))),
    };
    let frame_info_ext = md
        .attributes
        .iter()
        .filter(|a| a.key == "extmap")
        .filter_map(|a| a.value.as_deref())
        .find_map(|v| {
            let (id, uri) = v.split_once(' ')?;
            (uri.trim() == FRAME_INFO_EXT_URI).then(|| id.parse::<u8>().ok())?
        })
        .filter(|id| (1..=14).contains(id))
        .ok_or_else(|| err(format!("missing a=extmap for {FRAME_INFO_EXT_URI}")))?;
    Ok(Track {
        index,
        payload_type,
        clock_rate,
        codec,
        frame_info_ext,
    })
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    pub(crate) fn sample() -> Description {
        Description {
            left_out: Vec::new(),
            name: "movies/demo".into(),
            duration_us: 30_000_000,
            tracks: vec![
                Track {
                    index: 0,
                    payload_type: 96,
                    clock_rate: 90_000,
                    codec: Codec::H264 {
                        profile_level_id: [0x64, 0x00, 0x1f],
                        parameter_sets: vec![
                            Bytes::from_static(&[0x67, 0x64, 0x00, 0x1f]),
                            Bytes::from_static(&[0x68, 0xeb, 0xe3, 0xcb]),
                        ],
                    },
                    frame_info_ext: 1,
                },
                Track {
                    index: 1,
                    payload_type: 97,
                    clock_rate: 48_000,
                    codec: Codec::Aac {
                        config: Bytes::from_static(&[0x11, 0x90]),
                        channels: 2,
                    },
                    frame_info_ext: 1,
                },
            ],
        }
    }

    #[test]
    fn spec_example_round_trip() {
        let text = sample().to_sdp();
        // The exact text of docs/PROTOCOL.md, "DESCRIBE example".
        let expected = "v=0\r\no=- 0 0 IN IP4 0.0.0.0\r\ns=movies/demo\r\nt=0 0\r\n\
            a=control:*\r\na=range:npt=0-30.000000\r\n\
            m=video 0 RTP/AVP 96\r\na=control:track=0\r\na=rtpmap:96 H264/90000\r\n\
            a=fmtp:96 packetization-mode=1;profile-level-id=64001f;sprop-parameter-sets=Z2QAHw==,aOvjyw==\r\n\
            a=extmap:1 urn:x-segue:frame-info\r\n\
            m=audio 0 RTP/AVP 97\r\na=control:track=1\r\na=rtpmap:97 MPEG4-GENERIC/48000/2\r\n\
            a=fmtp:97 streamtype=5;profile-level-id=1;mode=AAC-hbr;sizelength=13;indexlength=3;indexdeltalength=3;config=1190\r\n\
            a=extmap:1 urn:x-segue:frame-info\r\n";
        assert_eq!(text, expected);
        assert_eq!(Description::from_sdp(&text, 8).unwrap(), sample());
    }

    /// Source tracks not carried: one session-level line each, printable ASCII, bounded.
    #[test]
    fn left_out_tracks_round_trip() {
        let mut d = sample();
        d.left_out = vec![
            "audio track (MP4 track id 3): codec ac3 is not carried (H.264, AAC and Opus only)"
                .into(),
            "video track (MP4 track id 4): codec hev1\u{e9}\r\nm=x".into(),
        ];
        let text = d.to_sdp();
        assert!(text.contains(
            "a=range:npt=0-30.000000\r\na=x-segue-left-out:audio track (MP4 track id 3): codec ac3"
        ));
        let back = Description::from_sdp(&text, 8).unwrap();
        // What could break a line or the text is replaced; the tracks are as they were.
        assert_eq!(
            back.left_out[1],
            "video track (MP4 track id 4): codec hev1???m=x"
        );
        assert_eq!(back.tracks, d.tracks);
        d.left_out = vec!["x".repeat(500); 40];
        let back = Description::from_sdp(&d.to_sdp(), 8).unwrap();
        assert_eq!(back.left_out.len(), MAX_LEFT_OUT);
        assert!(back.left_out.iter().all(|l| l.len() == MAX_LEFT_OUT_LEN));
    }

    #[test]
    fn rejects_bad_sdp() {
        let good = sample().to_sdp();
        for (from, to) in [
            ("H264/90000", "VP8/90000"),
            ("a=control:track=1", "a=control:track=7"),
            ("packetization-mode=1", "packetization-mode=0"),
            ("a=range:npt=0-30.000000", "a=range:npt=now-"),
            ("a=extmap:1 urn:x-segue:frame-info\r\nm=audio", "m=audio"),
            ("96 H264", "95 H264"),
        ] {
            let bad = good.replacen(from, to, 1);
            assert_ne!(bad, good, "{from}");
            assert!(Description::from_sdp(&bad, 8).is_err(), "accepted {to}");
        }
        assert!(Description::from_sdp(&good, 1).is_err());
        assert!(Description::from_sdp("garbage", 8).is_err());
    }
}
