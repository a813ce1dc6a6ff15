//! Property tests: decode(encode(x)) == x for every message, and no decoder panics on
//! arbitrary or mutated input.

use bytes::Bytes;
use proptest::prelude::*;
use segue_wire::advert::{self, Advert, Holding, Ranges};
use segue_wire::control::{
    ControlDecoder, Headers, Message, Method, NptRange, Request, Response, RtpInfo, SessionHeader,
    Transport,
};
use segue_wire::payload::{aac, h264};
use segue_wire::roq::{self, RoqDecoder, RoqItem};
use segue_wire::rtp::{FrameInfo, MAX_CTO, RtpPacket};
use segue_wire::sdp::{Codec, Description, Track};
use segue_wire::segment::{
    self, ChunkVerifier, Frame, FrameReader, Manifest, Params, ResponseFrame, ResponseHeader,
    SegmentEntry, SegmentHeader, SegmentRequest, Status, TrackEntry, chunk,
};
use segue_wire::{Limits, ObjectName, Resource, SegueUrl, varint};

fn object_name() -> impl Strategy<Value = ObjectName> {
    "[a-z0-9_~-][a-zA-Z0-9._~-]{0,12}(/[a-z0-9_~-][a-z0-9._~-]{0,12}){0,3}"
        .prop_map(|s| ObjectName::new(&s, 1024).expect("strategy yields valid names"))
}

fn url() -> impl Strategy<Value = SegueUrl> {
    let host = prop_oneof![
        "[a-z]{1,10}(\\.[a-z]{2,5})?",
        Just("127.0.0.1".to_string()),
        Just("[::1]".to_string())
    ];
    let resource = prop_oneof![
        Just(Resource::Server),
        object_name().prop_map(Resource::Object),
        (object_name(), 0u32..8).prop_map(|(o, t)| Resource::Track(o, t)),
    ];
    (host, any::<u16>(), resource).prop_map(|(host, port, resource)| SegueUrl {
        host,
        port,
        resource,
        query: None,
    })
}

fn token() -> impl Strategy<Value = String> {
    "[a-z][a-z0-9-]{0,15}"
}

fn headers() -> impl Strategy<Value = Headers> {
    let session =
        proptest::option::of(("[A-Za-z0-9$_.+-]{1,20}", proptest::option::of(1u64..3600)))
            .prop_map(|s| s.map(|(id, timeout)| SessionHeader { id, timeout }));
    let range = proptest::option::of((0u64..10_000_000_000, proptest::option::of(0u64..1_000_000)))
        .prop_map(|r| {
            r.map(|(start, len)| NptRange {
                start,
                end: len.map(|l| start + l),
            })
        });
    let rtp_info = proptest::collection::vec(
        (url(), any::<u32>(), any::<u16>(), any::<u32>()).prop_map(|(url, ssrc, seq, rtptime)| {
            RtpInfo {
                url,
                ssrc,
                seq,
                rtptime,
            }
        }),
        0..3,
    );
    let public = proptest::sample::subsequence(Method::ALL.to_vec(), 0..=8);
    (
        any::<u32>(),
        session,
        proptest::option::of(any::<u32>()),
        proptest::option::of(0..=varint::MAX).prop_map(|f| f.map(|flow_id| Transport { flow_id })),
        range,
        rtp_info,
        public,
        proptest::option::of(token()),
        proptest::option::of(token()),
        proptest::option::of("[A-Za-z0-9][A-Za-z0-9 .:/_-]{0,40}[A-Za-z0-9]"),
        any::<bool>(),
        proptest::option::of("expires=[0-9]{1,12}&token=[A-Za-z0-9_-]{43}"),
    )
        .prop_map(
            |(
                cseq,
                session,
                pipelined_requests,
                transport,
                range,
                rtp_info,
                public,
                notify,
                term,
                error,
                unpaced,
                token,
            )| {
                Headers {
                    cseq,
                    session,
                    pipelined_requests,
                    transport,
                    range,
                    rtp_info,
                    public,
                    notify_reason: notify,
                    terminate_reason: term,
                    error,
                    content_type: None,
                    unpaced,
                    token,
                }
            },
        )
}

fn body() -> impl Strategy<Value = (Option<String>, Bytes)> {
    prop_oneof![
        Just((None, Bytes::new())),
        proptest::collection::vec(any::<u8>(), 1..300)
            .prop_map(|b| (Some("application/sdp".to_string()), Bytes::from(b))),
    ]
}

fn request() -> impl Strategy<Value = Request> {
    (
        proptest::sample::select(Method::ALL.to_vec()),
        url(),
        any::<bool>(),
        headers(),
        body(),
    )
        .prop_map(|(method, url, star, mut headers, (ct, body))| {
            headers.content_type = ct;
            let uri = if method == Method::Options && star {
                None
            } else {
                Some(url)
            };
            Request {
                method,
                uri,
                headers,
                body,
            }
        })
}

fn response() -> impl Strategy<Value = Response> {
    let status = proptest::sample::select(vec![
        200u16, 400, 401, 403, 404, 454, 455, 457, 461, 500, 501, 502, 503, 505,
    ]);
    (status, headers(), body()).prop_map(|(status, mut headers, (ct, body))| {
        headers.content_type = ct;
        Response {
            status,
            headers,
            body,
        }
    })
}

fn rtp_packet() -> impl Strategy<Value = RtpPacket> {
    (
        any::<bool>(),
        96u8..128,
        any::<u16>(),
        any::<u32>(),
        any::<u32>(),
        proptest::option::of((any::<bool>(), 0..=MAX_CTO))
            .prop_map(|f| f.map(|(keyframe, cto)| FrameInfo { keyframe, cto })),
        proptest::collection::vec(any::<u8>(), 1..1500),
    )
        .prop_map(
            |(marker, payload_type, sequence, timestamp, ssrc, frame_info, payload)| RtpPacket {
                marker,
                payload_type,
                sequence,
                timestamp,
                ssrc,
                frame_info,
                payload: Bytes::from(payload),
            },
        )
}

fn bytes_vec(max: usize) -> impl Strategy<Value = Bytes> {
    proptest::collection::vec(any::<u8>(), 1..max).prop_map(Bytes::from)
}

fn description() -> impl Strategy<Value = Description> {
    let codec = prop_oneof![
        (
            any::<[u8; 3]>(),
            proptest::collection::vec(bytes_vec(40), 0..3)
        )
            .prop_map(|(profile_level_id, parameter_sets)| Codec::H264 {
                profile_level_id,
                parameter_sets
            }),
        (bytes_vec(8), 1u8..9).prop_map(|(config, channels)| Codec::Aac { config, channels }),
        (1u8..3).prop_map(|channels| Codec::Opus { channels }),
        (0u8..3, 0u8..32, 0u8..2).prop_map(|(profile, level_idx, tier)| Codec::Av1 {
            profile,
            level_idx,
            tier
        }),
        proptest::collection::vec((0u8..3, bytes_vec(20)), 0..4).prop_map(|mut sets| {
            // VPS, SPS, PPS (types 32..34), in that order, as the SDP lists them.
            sets.sort_by_key(|(k, _)| *k);
            Codec::H265 {
                parameter_sets: sets
                    .into_iter()
                    .map(|(k, body)| {
                        let mut n = vec![(32 + k) << 1, 1];
                        n.extend_from_slice(&body);
                        bytes::Bytes::from(n)
                    })
                    .collect(),
            }
        }),
    ];
    (
        "[a-z][a-z0-9/_.-]{0,30}",
        0u64..100_000_000_000,
        proptest::collection::vec((codec, 96u8..128, 1u32..200_000, 1u8..15), 0..4),
    )
        .prop_map(|(name, duration_us, tracks)| Description {
            left_out: Vec::new(),
            name,
            duration_us,
            tracks: tracks
                .into_iter()
                .enumerate()
                .map(
                    |(i, (codec, payload_type, clock_rate, frame_info_ext))| Track {
                        index: i as u32,
                        payload_type,
                        // Opus runs on a 48 kHz clock whatever it codes (RFC 7587).
                        clock_rate: if matches!(codec, Codec::Opus { .. }) {
                            48_000
                        } else {
                            clock_rate
                        },
                        codec,
                        frame_info_ext,
                    },
                )
                .collect(),
        })
}

fn hash() -> impl Strategy<Value = [u8; 32]> {
    any::<[u8; 32]>()
}

fn manifest() -> impl Strategy<Value = Manifest> {
    (
        object_name(),
        0..=varint::MAX,
        0u64..1 << 40,
        proptest::collection::vec("[a-z0-9]{1,8}", 0..3),
        "[ -~]{0,200}",
        proptest::collection::vec(
            (0..=varint::MAX, hash()).prop_map(|(frames, content_hash)| TrackEntry {
                frames,
                content_hash,
            }),
            0..8,
        ),
        proptest::collection::vec(
            (
                1u64..10_000_000,
                1u64..64 << 20,
                0u64..10_000,
                hash(),
                hash(),
            ),
            0..50,
        ),
        10u32..=20,
    )
        .prop_map(
            |(object, revision, duration_us, formats, sdp, tracks, segs, chunk_bits)| {
                let chunk_size = 1u64 << chunk_bits;
                let mut start = 0;
                let segments = segs
                    .into_iter()
                    .map(|(duration_us, size, frames, checksum, chunk_root)| {
                        // At most 4096 chunks per segment.
                        let size = size.min(chunk_size * 4096);
                        let s = SegmentEntry {
                            start_us: start,
                            duration_us,
                            size,
                            frames,
                            checksum,
                            chunk_root,
                        };
                        start += duration_us;
                        s
                    })
                    .collect();
                Manifest {
                    object,
                    revision,
                    duration_us,
                    chunk_size,
                    formats,
                    sdp,
                    tracks,
                    segments,
                }
            },
        )
}

fn params() -> impl Strategy<Value = Params> {
    (
        proptest::option::of(any::<u8>()),
        proptest::option::of(0..=varint::MAX),
        proptest::option::of(0..=varint::MAX),
        proptest::option::of(0..=varint::MAX),
        proptest::option::of(0..=varint::MAX),
        proptest::option::of((0..=varint::MAX, any::<[u8; 32]>())),
        any::<bool>(),
    )
        .prop_map(
            |(hop_limit, revision, deadline_ms, viewers, sender, token, chunks)| Params {
                hop_limit,
                revision,
                deadline_ms,
                viewers,
                sender,
                token: token.map(|(expires, tag)| segue_wire::token::Grant { expires, tag }),
                chunks,
            },
        )
}

fn advert() -> impl Strategy<Value = Advert> {
    let holding = (
        object_name(),
        0..=varint::MAX,
        proptest::collection::vec(0u64..65_536, 0..40),
    )
        .prop_map(|(object, revision, idx)| Holding {
            object,
            revision,
            segments: Ranges::from_indices(idx),
        });
    (
        "[a-z0-9-]{1,64}",
        0..=varint::MAX,
        1..=varint::MAX,
        any::<bool>(),
        0..=varint::MAX,
        proptest::collection::vec(holding, 0..8),
    )
        .prop_map(
            |(sender, epoch, version, snapshot, period_ms, holdings)| Advert {
                sender,
                epoch,
                version,
                base: if snapshot { 0 } else { version - 1 },
                period_ms,
                holdings,
            },
        )
}

fn segment_request() -> impl Strategy<Value = SegmentRequest> {
    prop_oneof![
        (object_name(), params())
            .prop_map(|(object, params)| SegmentRequest::Manifest { object, params }),
        (object_name(), 0..=varint::MAX, 1u64..=1024, params()).prop_map(
            |(object, first, count, params)| SegmentRequest::Segments {
                object,
                first,
                count,
                params
            }
        ),
        // A push offer always carries a revision.
        (
            object_name(),
            0..=varint::MAX,
            1u64..=1024,
            params(),
            0..=varint::MAX
        )
            .prop_map(|(object, first, count, params, rev)| {
                SegmentRequest::PushOffer {
                    object,
                    first,
                    count,
                    params: Params {
                        revision: Some(rev),
                        ..params
                    },
                }
            }),
    ]
}

fn frame() -> impl Strategy<Value = Frame> {
    (
        0u32..8,
        any::<bool>(),
        0u64..1 << 40,
        0..=MAX_CTO,
        proptest::collection::vec(any::<u8>(), 0..500),
    )
        .prop_map(|(track, keyframe, pts, cto, data)| Frame {
            track,
            keyframe,
            pts: pts + u64::from(cto),
            cto,
            data: Bytes::from(data),
        })
}

/// Feeds `bytes` to a control decoder in chunks and collects what it yields.
fn control_decode(bytes: &[u8], chunk: usize) -> Vec<Message> {
    let mut d = ControlDecoder::new(Limits::default());
    let mut out = Vec::new();
    for c in bytes.chunks(chunk.max(1)) {
        d.push(c);
        loop {
            match d.next_message() {
                Ok(Some(m)) => out.push(m),
                Ok(None) => break,
                Err(e) if e.fatal => return out,
                Err(_) => {}
            }
        }
    }
    out
}

fn all_decoders(data: &[u8]) {
    let l = Limits::default();
    control_decode(data, 7);
    let mut r = RoqDecoder::new(l.max_rtp_packet);
    r.push(data);
    while let Ok(Some(_)) = r.next_item() {}
    let _ = r.finish();
    let _ = RtpPacket::decode(data);
    let _ = segment::decode_request(data, &l);
    let _ = segment::decode_response_frame(data, &l);
    let _ = Manifest::decode(data, &l);
    let b = Bytes::copy_from_slice(data);
    for f in FrameReader::new(&b, l.max_frame_size) {
        if f.is_err() {
            break;
        }
    }
    let mut h = h264::Depacketizer::new(1 << 20);
    let mut a = aac::Depacketizer::new();
    for (i, part) in data.chunks(97).enumerate() {
        let _ = h.push(part, i % 3 == 2);
        let _ = a.push(part, i % 2 == 1);
    }
    if let Ok(s) = std::str::from_utf8(data) {
        let _ = Description::from_sdp(s, l.max_tracks);
        let _ = SegueUrl::parse(s);
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    #[test]
    fn url_round_trip(u in url()) {
        prop_assert_eq!(SegueUrl::parse(&u.to_string()).unwrap(), u);
    }

    #[test]
    fn request_round_trip(r in request(), chunk in 1usize..64) {
        let enc = r.encode();
        prop_assert_eq!(control_decode(&enc, chunk), vec![Message::Request(r)]);
    }

    #[test]
    fn response_round_trip(r in response()) {
        let enc = r.encode();
        prop_assert_eq!(control_decode(&enc, 1500), vec![Message::Response(r)]);
    }

    #[test]
    fn rtp_round_trip(p in rtp_packet()) {
        prop_assert_eq!(RtpPacket::decode(&p.encode()).unwrap(), p);
    }

    #[test]
    fn roq_round_trip(flow in 0..=varint::MAX, packets in proptest::collection::vec(bytes_vec(3000), 0..20), chunk in 1usize..100) {
        let mut buf = Vec::new();
        roq::put_stream_header(&mut buf, flow);
        for p in &packets {
            roq::put_packet(&mut buf, p);
        }
        let mut d = RoqDecoder::new(65_535);
        let mut items = Vec::new();
        for c in buf.chunks(chunk) {
            d.push(c);
            while let Some(i) = d.next_item().unwrap() {
                items.push(i);
            }
        }
        d.finish().unwrap();
        let mut want = vec![RoqItem::Flow(flow)];
        want.extend(packets.into_iter().map(RoqItem::Packet));
        prop_assert_eq!(items, want);
    }

    #[test]
    fn sdp_round_trip(d in description()) {
        prop_assert_eq!(Description::from_sdp(&d.to_sdp(), 8).unwrap(), d);
    }

    #[test]
    fn advert_round_trip(a in advert()) {
        let enc = a.encode();
        let l = Limits::default();
        prop_assert_eq!(advert::decode(&enc, &l).unwrap(), Some((a.clone(), enc.len())));
        // Cut anywhere: incomplete, never an error or a panic.
        for cut in [0, 1, enc.len() / 2, enc.len() - 1] {
            prop_assert_eq!(advert::decode(&enc[..cut], &l).unwrap(), None);
        }
        // What a sender budgets with: each holding's own size, and a bound for the rest
        // (the body's length is the frame's second varint).
        let body_len = |enc: &[u8]| {
            let (_, n) = varint::get(enc).unwrap();
            varint::get(&enc[n..]).unwrap().0 as usize
        };
        let empty = body_len(&advert::Advert { holdings: Vec::new(), ..a.clone() }.encode());
        let held: usize = a.holdings.iter().map(|h| h.encoded_len()).sum();
        let body = body_len(&enc);
        // The empty one's object count (0) takes one byte.
        prop_assert_eq!(body, empty - 1 + varint::size(a.holdings.len() as u64) + held);
        prop_assert!(body <= advert::max_head_len(&a.sender) + held);
    }

    #[test]
    fn advert_ranges_hold_exactly_their_indexes(idx in proptest::collection::vec(0u64..200, 0..60)) {
        let r = Ranges::from_indices(idx.clone());
        for i in 0..210 {
            prop_assert_eq!(r.contains(i), idx.contains(&i));
        }
        let mut sorted = idx;
        sorted.sort_unstable();
        sorted.dedup();
        prop_assert_eq!(r.iter().collect::<Vec<_>>(), sorted);
    }

    #[test]
    fn mutated_adverts_never_panic(a in advert(), flips in proptest::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 1..8)) {
        let mut enc = a.encode();
        for (i, b) in flips {
            let k = i.index(enc.len());
            enc[k] ^= b;
        }
        let _ = advert::decode(&enc, &Limits::default());
    }

    #[test]
    fn segment_request_round_trip(r in segment_request()) {
        let enc = r.encode();
        prop_assert_eq!(segment::decode_request(&enc, &Limits::default()).unwrap(), Some((r, enc.len())));
    }

    #[test]
    fn response_frames_round_trip(status in 0u64..20, reason in "[ -~]{0,256}", index in 0..=varint::MAX, size in 1u64..=64 << 20, checksum in hash()) {
        let l = Limits::default();
        let h = ResponseHeader { status: Status::from_code(status), reason };
        let enc = h.encode();
        prop_assert_eq!(segment::decode_response_frame(&enc, &l).unwrap(), Some((ResponseFrame::Response(h), enc.len())));
        let s = SegmentHeader { index, size, checksum };
        let enc = s.encode();
        prop_assert_eq!(segment::decode_response_frame(&enc, &l).unwrap(), Some((ResponseFrame::Segment(s), enc.len())));
    }

    #[test]
    fn chunk_verifier_releases_exactly_the_payload(
        payload in proptest::collection::vec(any::<u8>(), 1..12_000),
        chunk_bits in 10u32..13,
        cuts in proptest::collection::vec(any::<prop::sample::Index>(), 0..8),
        flip in proptest::option::of((any::<prop::sample::Index>(), 1u8..=255)),
    ) {
        let c = 1u64 << chunk_bits;
        let hashes = chunk::chunk_hashes(&payload, c);
        let entry = SegmentEntry {
            start_us: 0,
            duration_us: 1,
            size: payload.len() as u64,
            frames: 1,
            checksum: [0; 32],
            chunk_root: chunk::chunk_root(&hashes),
        };
        let mut received = payload.clone();
        let bad = flip.map(|(at, x)| {
            let at = at.index(received.len());
            received[at] ^= x;
            at
        });
        let mut v = ChunkVerifier::new(&entry, c, hashes).unwrap();
        let mut points: Vec<usize> = cuts.iter().map(|i| i.index(received.len())).collect();
        points.push(received.len());
        points.sort_unstable();
        let (mut from, mut out, mut failed) = (0, Vec::new(), false);
        for to in points {
            if v.push(&received[from..to], &mut out).is_err() {
                failed = true;
                break;
            }
            from = to;
        }
        let released: Vec<u8> = out.concat();
        match bad {
            None => {
                prop_assert!(!failed);
                prop_assert!(v.finish().is_ok());
                prop_assert_eq!(released, payload);
            }
            Some(at) => {
                // Everything before the corrupted chunk, nothing from it on.
                prop_assert!(failed);
                let chunk_start = at / c as usize * c as usize;
                prop_assert_eq!(&released[..], &payload[..chunk_start]);
            }
        }
    }

    #[test]
    fn chunk_hash_frames_round_trip(hashes in proptest::collection::vec(hash(), 1..300)) {
        let f = segment::encode_chunk_hashes(&hashes);
        prop_assert_eq!(
            segment::decode_response_frame(&f, &Limits::default()).unwrap(),
            Some((ResponseFrame::ChunkHashes(hashes), f.len()))
        );
    }

    #[test]
    fn manifest_round_trip(m in manifest()) {
        let l = Limits::default();
        prop_assert_eq!(Manifest::decode(&m.encode(), &l).unwrap(), m.clone());
        let f = segment::encode_manifest_frame(&m);
        prop_assert_eq!(segment::decode_response_frame(&f, &l).unwrap(), Some((ResponseFrame::Manifest(m), f.len())));
    }

    #[test]
    fn frames_round_trip(frames in proptest::collection::vec(frame(), 0..20)) {
        let mut buf = Vec::new();
        for f in &frames {
            f.encode_into(&mut buf);
        }
        let buf = Bytes::from(buf);
        let back: Vec<Frame> = FrameReader::new(&buf, 1 << 20).collect::<Result<_, _>>().unwrap();
        prop_assert_eq!(back, frames);
    }

    #[test]
    fn arbitrary_bytes_never_panic(data in proptest::collection::vec(any::<u8>(), 0..2048)) {
        all_decoders(&data);
    }

    #[test]
    fn mutated_messages_never_panic(
        which in 0usize..6,
        seed in (request(), rtp_packet(), manifest(), segment_request(), description(), proptest::collection::vec(frame(), 1..4)),
        flips in proptest::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 1..8),
        cut in any::<prop::sample::Index>(),
    ) {
        let (req, pkt, man, sreq, desc, frames) = seed;
        let mut data = match which {
            0 => req.encode(),
            1 => pkt.encode(),
            2 => segment::encode_manifest_frame(&man),
            3 => sreq.encode(),
            4 => desc.to_sdp().into_bytes(),
            _ => {
                let mut b = Vec::new();
                for f in &frames { f.encode_into(&mut b); }
                b
            }
        };
        if !data.is_empty() {
            for (i, v) in flips {
                let i = i.index(data.len());
                data[i] ^= v;
            }
            data.truncate(cut.index(data.len() + 1));
        }
        all_decoders(&data);
    }

    #[test]
    fn h264_round_trip(
        nals in proptest::collection::vec(
            (0u8..4, 1u8..=23, proptest::collection::vec(any::<u8>(), 0..3000))
                .prop_map(|(nri, ty, rest)| [vec![nri << 5 | ty], rest].concat()),
            1..6,
        ),
        max in 3usize..2000,
    ) {
        let mut frame = Vec::new();
        for n in &nals {
            frame.extend((n.len() as u32).to_be_bytes());
            frame.extend(n);
        }
        let frame = Bytes::from(frame);
        let packets = h264::packetize(&frame, max).unwrap();
        prop_assert!(packets.iter().all(|(p, _)| p.len() <= max));
        prop_assert_eq!(packets.iter().filter(|(_, m)| *m).count(), 1);
        let mut d = h264::Depacketizer::new(1 << 20);
        let mut out = None;
        for (p, m) in &packets {
            out = d.push(p, *m).unwrap();
        }
        prop_assert_eq!(out, Some(frame));
    }

    #[test]
    fn aac_round_trip(au in proptest::collection::vec(any::<u8>(), 1..=aac::MAX_AU), max in 5usize..2000) {
        let au = Bytes::from(au);
        let packets = aac::packetize(&au, max).unwrap();
        prop_assert!(packets.iter().all(|(p, _)| p.len() <= max));
        let mut d = aac::Depacketizer::new();
        let mut out = None;
        for (p, m) in &packets {
            out = d.push(p, *m).unwrap();
        }
        prop_assert_eq!(out, Some(au));
    }
}
