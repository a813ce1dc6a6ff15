#![no_main]
//! Fuzz target: every codec's depacketizer (H.264, HEVC, AV1, AAC, Opus)

use bytes::Bytes;
use libfuzzer_sys::fuzz_target;
use segue_wire::payload::Depacketizer;
use segue_wire::sdp::Codec;

fuzz_target!(|data: &[u8]| {
    // First byte picks the marker pattern; the rest is cut into payloads.
    let Some((&pattern, rest)) = data.split_first() else { return };
    let codecs = [
        Codec::H264 {
            profile_level_id: [0x42, 0, 0x1e],
            parameter_sets: vec![],
        },
        Codec::H265 {
            parameter_sets: vec![],
        },
        Codec::Av1 {
            profile: 0,
            level_idx: 0,
            tier: 0,
        },
        Codec::Aac {
            config: Bytes::from_static(&[0x11, 0x90]),
            channels: 2,
        },
        Codec::Opus { channels: 2 },
    ];
    let mut d: Vec<Depacketizer> = codecs.iter().map(|c| Depacketizer::new(c, 1 << 20)).collect();
    for (i, part) in rest.chunks(usize::from(pattern % 61) + 3).enumerate() {
        let marker = (pattern >> (i % 8)) & 1 == 1;
        for x in &mut d {
            let _ = x.push(part, marker);
        }
    }
});
