//! One RoQ media stream into frames, sans IO: the bytes of a unidirectional media stream go in
//! as they arrive ([`MediaStream::push`]), whole frames come out. The async reader in `play`
//! only moves quinn's chunks here.

use std::sync::Arc;

use bytes::Bytes;
use segue_wire::Limits;
use segue_wire::error::DecodeError;
use segue_wire::payload::Depacketizer;
use segue_wire::roq::{RoqDecoder, RoqItem};
use segue_wire::rtp::{FrameInfo, RtpPacket};
use segue_wire::sdp::Description;

/// A frame rebuilt from one media stream: what the player's state machine takes in.
#[derive(Debug, Clone)]
pub struct ReceivedFrame {
    /// The track's index in the description.
    pub track: u32,
    /// RTP sequence numbers of its first and last packet.
    pub first_seq: u16,
    pub last_seq: u16,
    /// RTP timestamp (the server's offset included).
    pub timestamp: u32,
    pub info: FrameInfo,
    /// The frame as the segment stores it (AVCC for H.264, a raw access unit for AAC).
    pub data: Bytes,
    /// RTP bytes it took on the stream (its packets, RoQ length fields not counted).
    pub wire_bytes: u64,
}

/// Why a media stream was given up.
#[derive(Debug, thiserror::Error)]
pub enum StreamError {
    #[error(transparent)]
    Decode(#[from] DecodeError),
    #[error("media on unknown flow {0}")]
    UnknownFlow(u64),
    #[error("packet before flow id")]
    NoFlow,
    #[error("frame starts without frame-info")]
    NoFrameInfo,
    #[error("media stream ended inside a packet: {0}")]
    EndedInPacket(DecodeError),
    #[error("media stream ended inside a frame")]
    EndedInFrame,
}

/// The track a stream carries: its index, frame-info extension id and depacketizer.
#[derive(Debug)]
struct Bound {
    index: u32,
    ext: u8,
    depack: Depacketizer,
}

/// The first packet's fields of the frame being reassembled, and its bytes so far.
#[derive(Debug, Clone, Copy)]
struct Partial {
    first_seq: u16,
    timestamp: u32,
    info: FrameInfo,
    wire_bytes: u64,
}

/// The receiving end of one RoQ media stream (PROTOCOL.md §7): flow id, then RTP packets,
/// depacketized into frames.
#[derive(Debug)]
pub struct MediaStream {
    desc: Arc<Description>,
    dec: RoqDecoder,
    track: Option<Bound>,
    max_frame: usize,
    current: Option<Partial>,
}

impl MediaStream {
    /// A stream of the session `desc` describes (the player binds track i to flow i).
    pub fn new(desc: Arc<Description>, limits: &Limits) -> Self {
        Self {
            desc,
            dec: RoqDecoder::new(limits.max_rtp_packet),
            track: None,
            max_frame: limits.max_frame_size as usize,
            current: None,
        }
    }

    /// Takes the stream's next bytes; the frames they complete are appended to `out`.
    pub fn push(&mut self, data: &[u8], out: &mut Vec<ReceivedFrame>) -> Result<(), StreamError> {
        self.dec.push(data);
        while let Some(item) = self.dec.next_item()? {
            match item {
                RoqItem::Flow(flow) => {
                    let t = self
                        .desc
                        .tracks
                        .get(usize::try_from(flow).unwrap_or(usize::MAX))
                        .ok_or(StreamError::UnknownFlow(flow))?;
                    self.track = Some(Bound {
                        index: t.index,
                        ext: t.frame_info_ext,
                        depack: Depacketizer::new(&t.codec, self.max_frame),
                    });
                }
                RoqItem::Packet(p) => {
                    if let Some(f) = self.packet(&p)? {
                        out.push(f);
                    }
                }
            }
        }
        Ok(())
    }

    fn packet(&mut self, p: &[u8]) -> Result<Option<ReceivedFrame>, StreamError> {
        let track = self.track.as_mut().ok_or(StreamError::NoFlow)?;
        let pkt = RtpPacket::decode_with_ext_id(p, track.ext)?;
        let mut partial = match self.current.take() {
            Some(c) => c,
            None => Partial {
                first_seq: pkt.sequence,
                timestamp: pkt.timestamp,
                info: pkt.frame_info.ok_or(StreamError::NoFrameInfo)?,
                wire_bytes: 0,
            },
        };
        partial.wire_bytes += p.len() as u64;
        let done = track.depack.push(&pkt.payload, pkt.marker)?;
        let Some(data) = done else {
            self.current = Some(partial);
            return Ok(None);
        };
        Ok(Some(ReceivedFrame {
            track: track.index,
            first_seq: partial.first_seq,
            last_seq: pkt.sequence,
            timestamp: partial.timestamp,
            info: partial.info,
            data,
            wire_bytes: partial.wire_bytes,
        }))
    }

    /// The stream ended (FIN): an error if it ended inside a packet or a frame.
    pub fn finish(&self) -> Result<(), StreamError> {
        self.dec.finish().map_err(StreamError::EndedInPacket)?;
        if self.current.is_some() {
            return Err(StreamError::EndedInFrame);
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use segue_wire::payload::{aac, h264};
    use segue_wire::roq;
    use segue_wire::sdp::Codec;
    use segue_wire::sdp::Track;

    fn desc() -> Arc<Description> {
        Arc::new(Description {
            left_out: Vec::new(),
            name: "clip".into(),
            duration_us: 1_000_000,
            tracks: vec![
                Track {
                    index: 0,
                    payload_type: 96,
                    clock_rate: 90_000,
                    codec: Codec::H264 {
                        profile_level_id: [0x42, 0, 0x1e],
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
                    frame_info_ext: 1,
                },
            ],
        })
    }

    /// A stream carrying `frames` of track `flow`, packetized as a node sends them.
    fn stream(flow: u64, frames: &[(u32, Bytes)], max_payload: usize) -> Vec<u8> {
        let mut out = Vec::new();
        roq::put_stream_header(&mut out, flow);
        let mut seq = 100u16;
        for (ts, frame) in frames {
            let payloads = if flow == 0 {
                h264::packetize(frame, max_payload).unwrap()
            } else {
                aac::packetize(frame, max_payload).unwrap()
            };
            for (i, (payload, marker)) in payloads.into_iter().enumerate() {
                let p = RtpPacket {
                    marker,
                    payload_type: 96,
                    sequence: seq,
                    timestamp: *ts,
                    ssrc: 7,
                    frame_info: (i == 0).then_some(FrameInfo {
                        keyframe: true,
                        cto: 0,
                    }),
                    payload,
                };
                seq = seq.wrapping_add(1);
                roq::put_packet(&mut out, &p.encode_with_ext_id(1));
            }
        }
        out
    }

    fn avcc(len: usize) -> Bytes {
        let mut f = (len as u32).to_be_bytes().to_vec();
        f.push(0x65);
        f.extend((1..len).map(|i| i as u8));
        Bytes::from(f)
    }

    #[test]
    fn frames_come_out_whole_whatever_the_chunking() {
        let frames = [(0u32, avcc(3000)), (3000, avcc(40)), (6000, avcc(1300))];
        let bytes = stream(0, &frames, 1200);
        for chunk in [1, 7, 500, bytes.len()] {
            let mut s = MediaStream::new(desc(), &Limits::default());
            let mut out = Vec::new();
            for c in bytes.chunks(chunk) {
                s.push(c, &mut out).unwrap();
            }
            s.finish().unwrap();
            assert_eq!(out.len(), 3, "chunks of {chunk}");
            for (got, (ts, data)) in out.iter().zip(&frames) {
                assert_eq!((got.track, got.timestamp, &got.data), (0, *ts, data));
            }
            // The 3000-byte frame took three packets: sequence numbers 100..=102.
            assert_eq!((out[0].first_seq, out[0].last_seq), (100, 102));
            assert_eq!((out[1].first_seq, out[1].last_seq), (103, 103));
            let wire: u64 = out.iter().map(|f| f.wire_bytes).sum();
            assert!(wire > 4340 && wire < 4340 + 6 * 40, "{wire}");
        }
    }

    #[test]
    fn audio_binds_to_its_flow() {
        let au = Bytes::from_static(&[1, 2, 3, 4, 5]);
        let mut s = MediaStream::new(desc(), &Limits::default());
        let mut out = Vec::new();
        s.push(&stream(1, &[(960, au.clone())], 1200), &mut out)
            .unwrap();
        assert_eq!(
            (out[0].track, out[0].timestamp, &out[0].data),
            (1, 960, &au)
        );
    }

    #[test]
    fn bad_streams_are_refused() {
        let mut out = Vec::new();
        // A flow the description does not have.
        let mut s = MediaStream::new(desc(), &Limits::default());
        let e = s.push(&stream(5, &[], 1200), &mut out).unwrap_err();
        assert!(matches!(e, StreamError::UnknownFlow(5)), "{e}");
        // Cut anywhere after its flow id and short of its end, a stream fails: inside a
        // packet or between the packets of a frame.
        let bytes = stream(0, &[(0, avcc(3000))], 1200);
        let (mut in_packet, mut in_frame) = (0, 0);
        for cut in 2..bytes.len() {
            let mut s = MediaStream::new(desc(), &Limits::default());
            s.push(&bytes[..cut], &mut out).unwrap();
            match s.finish() {
                Err(StreamError::EndedInPacket(_)) => in_packet += 1,
                Err(StreamError::EndedInFrame) => in_frame += 1,
                r => panic!("cut at {cut}: {r:?}"),
            }
        }
        assert!(in_packet > 0 && in_frame == 2, "{in_packet} {in_frame}");
        assert!(out.is_empty());
        // A frame whose first packet lacks frame-info.
        let mut raw = Vec::new();
        roq::put_stream_header(&mut raw, 0);
        let p = RtpPacket {
            marker: true,
            payload_type: 96,
            sequence: 1,
            timestamp: 0,
            ssrc: 7,
            frame_info: None,
            payload: Bytes::from_static(&[0x65, 1]),
        };
        roq::put_packet(&mut raw, &p.encode_with_ext_id(1));
        let mut s = MediaStream::new(desc(), &Limits::default());
        assert!(matches!(
            s.push(&raw, &mut out),
            Err(StreamError::NoFrameInfo)
        ));
    }
}
