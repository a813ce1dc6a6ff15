//! Packetized segments. A segment's frames are turned into RoQ-framed RTP once per (object,
//! revision, segment) and every session that sends the segment shares the result: a session
//! copies the small runs (RoQ lengths, RTP headers, small payloads), restamps SSRC, sequence
//! number and timestamp in place, and hands large payloads to quinn as slices of the segment.
//! Per-frame work (record parsing, NAL scanning, building headers) is paid once per segment,
//! not once per session.

use std::sync::Arc;

use bytes::{Bytes, BytesMut};
use segue_wire::rtp::{FrameInfo, RtpPacket};
use segue_wire::sdp::Description;
use segue_wire::segment::{FrameReader, Manifest};

use crate::clock::rescale;
use crate::lru::SegmentLru;

/// Payloads at least this large are referenced, not copied; smaller packets are copied and
/// coalesced (many tiny chunks cost quinn more than the copy).
const ZERO_COPY_MIN: usize = 2048;

/// A stretch of a track's stream: bytes copied per session, then perhaps a large payload that
/// is sent as it is.
#[derive(Debug)]
struct Part {
    run: Bytes,
    /// Where each RTP header starts in `run`, in packet order.
    headers: Vec<u32>,
    payload: Option<Bytes>,
}

/// One track's packets in one segment, with SSRC 0, sequence numbers 0.. and the frames' own
/// timestamps: a template that [`TrackPackets::stamp`] turns into a session's bytes.
#[derive(Debug, Default)]
pub struct TrackPackets {
    parts: Vec<Part>,
    /// RTP packets.
    pub packets: u32,
    /// Stream bytes (RoQ-framed packets, without the stream header).
    pub bytes: usize,
}

impl TrackPackets {
    /// A session's bytes for this track: SSRC `ssrc`, sequence numbers from `first_seq`,
    /// `ts_offset` added to every timestamp. Runs are copied; large payloads are shared.
    pub fn stamp(&self, first_seq: u16, ts_offset: u32, ssrc: u32) -> Vec<Bytes> {
        let mut out = Vec::with_capacity(self.parts.len() * 2);
        let mut seq = first_seq;
        for p in &self.parts {
            let mut run = BytesMut::from(&p.run[..]);
            for &h in &p.headers {
                if let Some(header) = run.get_mut(h as usize..) {
                    RtpPacket::restamp(header, seq, ts_offset, ssrc);
                }
                seq = seq.wrapping_add(1);
            }
            out.push(run.freeze());
            if let Some(payload) = &p.payload {
                out.push(payload.clone());
            }
        }
        out
    }

    fn weight(&self) -> u64 {
        self.parts
            .iter()
            .map(|p| p.run.len() + p.payload.as_ref().map_or(0, Bytes::len) + 4 * p.headers.len())
            .sum::<usize>() as u64
    }
}

/// A frame in the segment's record order: when it is due, and where its packets end in its
/// track's stream.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Step {
    /// Track index (SDP order).
    pub track: usize,
    pub dts_us: u64,
    pub pts_us: u64,
    /// End of the frame's packets in the track's stream bytes.
    pub end: usize,
    pub packets: u32,
    /// Bytes of the frame's RTP packets (headers and payloads, without RoQ framing).
    pub rtp_bytes: u32,
    /// Bytes of their payloads (an RTCP sender report's octet count).
    pub payload_bytes: u32,
}

/// A segment ready to send.
#[derive(Debug, Default)]
pub struct SegmentPackets {
    /// By track index (SDP order).
    pub tracks: Vec<TrackPackets>,
    /// Every frame, in record (decoding) order.
    pub steps: Vec<Step>,
}

/// Builds one track's template.
#[derive(Default)]
struct TrackBuilder {
    done: TrackPackets,
    run: Vec<u8>,
    headers: Vec<u32>,
}

impl TrackBuilder {
    fn pos(&self) -> usize {
        self.done.bytes + self.run.len()
    }

    fn push(&mut self, pkt: RtpPacket, ext_id: u8) {
        let payload_len = pkt.payload.len();
        let len = pkt.encoded_len();
        self.done.packets += 1;
        if payload_len >= ZERO_COPY_MIN {
            pkt.write_framed_header(&mut self.run, ext_id);
            self.headers
                .push((self.run.len() - (len - payload_len)) as u32);
            self.seal(Some(pkt.payload));
        } else {
            pkt.write_framed(&mut self.run, ext_id);
            self.headers.push((self.run.len() - len) as u32);
        }
    }

    fn seal(&mut self, payload: Option<Bytes>) {
        let run = Bytes::from(std::mem::take(&mut self.run));
        self.done.bytes += run.len() + payload.as_ref().map_or(0, Bytes::len);
        self.done.parts.push(Part {
            run,
            headers: std::mem::take(&mut self.headers),
            payload,
        });
    }

    fn finish(mut self) -> TrackPackets {
        if !self.run.is_empty() {
            self.seal(None);
        }
        self.done
    }
}

/// Why a segment could not be packetized.
#[derive(Debug, Clone, thiserror::Error)]
pub enum PacketizeError {
    /// Its frame records do not decode.
    #[error(transparent)]
    Record(segue_wire::DecodeError),
    #[error("cannot packetize: {0}")]
    Payload(segue_wire::DecodeError),
}

/// Packetizes a segment's frame records for the tracks of `desc`. Frames of tracks the SDP
/// does not list are skipped.
pub fn packetize(
    desc: &Description,
    payload: &Bytes,
    max_payload: usize,
    max_frame: u64,
) -> Result<SegmentPackets, PacketizeError> {
    let mut builders: Vec<TrackBuilder> = desc.tracks.iter().map(|_| Default::default()).collect();
    let mut steps = Vec::new();
    for frame in FrameReader::new(payload, max_frame) {
        let frame = frame.map_err(PacketizeError::Record)?;
        let ti = frame.track as usize;
        let (Some(t), Some(b)) = (desc.tracks.get(ti), builders.get_mut(ti)) else {
            continue;
        };
        let payloads = segue_wire::payload::packetize(&t.codec, &frame.data, max_payload)
            .map_err(PacketizeError::Payload)?;
        let count = payloads.len() as u32;
        let (mut rtp_bytes, mut payload_bytes) = (0usize, 0usize);
        for (k, (p, marker)) in payloads.into_iter().enumerate() {
            let pkt = RtpPacket {
                marker,
                payload_type: t.payload_type,
                sequence: 0,
                timestamp: frame.pts as u32,
                ssrc: 0,
                frame_info: (k == 0).then_some(FrameInfo {
                    keyframe: frame.keyframe,
                    cto: frame.cto,
                }),
                payload: p,
            };
            rtp_bytes += pkt.encoded_len();
            payload_bytes += pkt.payload.len();
            b.push(pkt, t.frame_info_ext);
        }
        steps.push(Step {
            track: ti,
            dts_us: rescale(frame.dts(), t.clock_rate, 1_000_000),
            pts_us: rescale(frame.pts, t.clock_rate, 1_000_000),
            end: b.pos(),
            packets: count,
            rtp_bytes: u32::try_from(rtp_bytes).unwrap_or(u32::MAX),
            payload_bytes: u32::try_from(payload_bytes).unwrap_or(u32::MAX),
        });
    }
    Ok(SegmentPackets {
        tracks: builders.into_iter().map(TrackBuilder::finish).collect(),
        steps,
    })
}

/// Reads a session's stamped chunks up to successive stream positions, as slices (no copy).
#[derive(Debug, Default)]
pub struct Cursor {
    chunks: Vec<Bytes>,
    index: usize,
    offset: usize,
    pos: usize,
}

impl Cursor {
    pub fn new(chunks: Vec<Bytes>) -> Self {
        Self {
            chunks,
            ..Self::default()
        }
    }

    /// Stream position reached so far.
    pub fn pos(&self) -> usize {
        self.pos
    }

    /// Appends to `out` the bytes from the current position up to `end` (or the end of the
    /// stream).
    pub fn take_until(&mut self, end: usize, out: &mut Vec<Bytes>) {
        while self.pos < end {
            let Some(chunk) = self.chunks.get(self.index) else {
                return;
            };
            let n = (chunk.len() - self.offset).min(end - self.pos);
            out.push(chunk.slice(self.offset..self.offset + n));
            self.offset += n;
            self.pos += n;
            if self.offset == chunk.len() {
                self.index += 1;
                self.offset = 0;
            }
        }
    }
}

/// Packetized segments shared by every session of a node, bounded in bytes.
#[derive(Debug)]
pub struct PacketCache {
    lru: SegmentLru<Arc<SegmentPackets>>,
    max_payload: usize,
    max_frame: u64,
}

impl PacketCache {
    pub fn new(capacity: u64, max_payload: usize, max_frame: u64) -> Self {
        Self {
            lru: SegmentLru::new(capacity),
            max_payload,
            max_frame,
        }
    }

    /// Segment `i` of `m` packetized: from the cache, or built from `payload` (the segment's
    /// verified bytes) and kept. `desc` is the object's SDP.
    pub fn get(
        &self,
        m: &Manifest,
        desc: &Description,
        i: usize,
        payload: &Bytes,
    ) -> Result<Arc<SegmentPackets>, PacketizeError> {
        if let Some(p) = self.lru.get(m, i) {
            return Ok(p);
        }
        let p = Arc::new(packetize(desc, payload, self.max_payload, self.max_frame)?);
        let weight = p.tracks.iter().map(TrackPackets::weight).sum::<u64>()
            + (p.steps.len() * std::mem::size_of::<Step>()) as u64;
        self.lru.put(m, i, p.clone(), weight);
        Ok(p)
    }

    /// Packetizes part of a segment still arriving (whole frame records, not cached).
    pub fn packetize_part(
        &self,
        desc: &Description,
        records: &Bytes,
    ) -> Result<SegmentPackets, PacketizeError> {
        packetize(desc, records, self.max_payload, self.max_frame)
    }

    /// Bytes of whole frame records at the start of `buf` (a segment still arriving).
    pub fn whole_records(&self, buf: &[u8]) -> Result<usize, PacketizeError> {
        segue_wire::segment::complete_records(buf, self.max_frame).map_err(PacketizeError::Record)
    }

    /// Drops every packetized segment of object `name` (a purge).
    pub fn remove_object(&self, name: &segue_wire::ObjectName) {
        self.lru.remove_object(name);
    }

    /// Bytes held.
    pub fn weight(&self) -> u64 {
        self.lru.weight()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use segue_wire::payload::{aac, h264};
    use segue_wire::sdp::{Codec, Track};
    use segue_wire::segment::Frame;

    fn desc() -> Description {
        Description {
            left_out: Vec::new(),
            name: "x".into(),
            duration_us: 0,
            tracks: vec![
                Track {
                    index: 0,
                    payload_type: 96,
                    clock_rate: 90_000,
                    codec: Codec::H264 {
                        profile_level_id: [0x64, 0, 0x1f],
                        parameter_sets: vec![],
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
                    frame_info_ext: 2,
                },
            ],
        }
    }

    fn avcc(sizes: &[usize]) -> Bytes {
        let mut v = Vec::new();
        for (i, &n) in sizes.iter().enumerate() {
            v.extend_from_slice(&(n as u32).to_be_bytes());
            v.push(0x41);
            v.extend((1..n).map(|j| (i + j) as u8));
        }
        Bytes::from(v)
    }

    fn frames() -> Vec<Frame> {
        vec![
            Frame {
                track: 0,
                keyframe: true,
                pts: 3000,
                cto: 3000,
                data: avcc(&[5000, 30]), // one large NAL (zero copy), one small
            },
            Frame {
                track: 1,
                keyframe: true,
                pts: 0,
                cto: 0,
                data: Bytes::from(vec![7u8; 300]),
            },
            Frame {
                track: 0,
                keyframe: false,
                pts: 12_000,
                cto: 6000,
                data: avcc(&[100_000]), // fragmented (FU-A)
            },
            Frame {
                track: 9, // not in the SDP: skipped
                keyframe: false,
                pts: 0,
                cto: 0,
                data: Bytes::from_static(b"zz"),
            },
        ]
    }

    fn segment(frames: &[Frame]) -> Bytes {
        let mut out = Vec::new();
        for f in frames {
            f.encode_into(&mut out);
        }
        Bytes::from(out)
    }

    /// What a sender that packetizes per session writes for one track.
    fn reference(frames: &[Frame], track: u32, seq: u16, ts_offset: u32, ssrc: u32) -> Vec<u8> {
        let d = desc();
        let t = &d.tracks[track as usize];
        let mut out = Vec::new();
        let mut seq = seq;
        for f in frames.iter().filter(|f| f.track == track) {
            let payloads = if track == 0 {
                h264::packetize(&f.data, 60 * 1024).unwrap()
            } else {
                aac::packetize(&f.data, 60 * 1024).unwrap()
            };
            for (k, (p, marker)) in payloads.into_iter().enumerate() {
                RtpPacket {
                    marker,
                    payload_type: t.payload_type,
                    sequence: seq,
                    timestamp: (f.pts as u32).wrapping_add(ts_offset),
                    ssrc,
                    frame_info: (k == 0).then_some(FrameInfo {
                        keyframe: f.keyframe,
                        cto: f.cto,
                    }),
                    payload: p,
                }
                .write_framed(&mut out, t.frame_info_ext);
                seq = seq.wrapping_add(1);
            }
        }
        out
    }

    #[test]
    fn stamped_bytes_equal_per_session_packetizing() {
        let f = frames();
        let p = packetize(&desc(), &segment(&f), 60 * 1024, 1 << 20).unwrap();
        for (track, seq, off, ssrc) in [(0u32, 65_534u16, 0xffff_0000u32, 7u32), (1, 9, 5, 8)] {
            let t = &p.tracks[track as usize];
            let got: Vec<u8> = t.stamp(seq, off, ssrc).concat();
            let want = reference(&f, track, seq, off, ssrc);
            assert_eq!(got, want, "track {track}");
            assert_eq!(t.bytes, want.len());
        }
        // Large payloads are shared with the segment, not copied.
        let seg = segment(&f);
        let p = packetize(&desc(), &seg, 60 * 1024, 1 << 20).unwrap();
        let chunks = p.tracks[0].stamp(0, 0, 0);
        let inside = |b: &Bytes| {
            let r = seg.as_ptr_range();
            r.contains(&b.as_ptr())
        };
        assert!(chunks.iter().any(inside));
    }

    #[test]
    fn steps_follow_record_order_and_end_at_frame_boundaries() {
        let f = frames();
        let p = packetize(&desc(), &segment(&f), 60 * 1024, 1 << 20).unwrap();
        let tracks: Vec<usize> = p.steps.iter().map(|s| s.track).collect();
        assert_eq!(tracks, [0, 1, 0]);
        assert_eq!(p.steps[0].dts_us, 0);
        assert_eq!(p.steps[0].pts_us, 33_333);
        assert_eq!(p.steps[2].dts_us, 66_666);
        assert!(p.steps[2].packets > 1);
        assert_eq!(p.steps[2].end, p.tracks[0].bytes);
        assert_eq!(p.steps[1].end, p.tracks[1].bytes);
        // The first frame's bytes alone are the reference for that frame alone.
        let mut c = Cursor::new(p.tracks[0].stamp(1, 2, 3));
        let mut out = Vec::new();
        c.take_until(p.steps[0].end, &mut out);
        assert_eq!(out.concat(), reference(&f[..1], 0, 1, 2, 3));
        out.clear();
        c.take_until(usize::MAX, &mut out);
        assert_eq!(c.pos(), p.tracks[0].bytes);
        c.take_until(usize::MAX, &mut out); // at the end: nothing more
        assert_eq!(c.pos(), p.tracks[0].bytes);
    }

    #[test]
    fn bad_frames_are_errors() {
        let mut f = frames();
        f[0].data = Bytes::from_static(&[0, 0, 0, 9, 1]); // NAL length beyond the frame
        assert!(packetize(&desc(), &segment(&f), 60 * 1024, 1 << 20).is_err());
        let truncated = segment(&frames()).slice(..100);
        assert!(packetize(&desc(), &truncated, 60 * 1024, 1 << 20).is_err());
    }
}
