#![no_main]
//! Fuzz target: H.264 and AAC depacketizers

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    // First byte picks the marker pattern; the rest is cut into payloads.
    let Some((&pattern, rest)) = data.split_first() else { return };
    let mut h = segue_wire::payload::h264::Depacketizer::new(1 << 20);
    let mut a = segue_wire::payload::aac::Depacketizer::new();
    for (i, part) in rest.chunks(usize::from(pattern % 61) + 3).enumerate() {
        let marker = (pattern >> (i % 8)) & 1 == 1;
        let _ = h.push(part, marker);
        let _ = a.push(part, marker);
    }
});
