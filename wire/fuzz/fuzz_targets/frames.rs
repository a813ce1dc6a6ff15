#![no_main]
//! Fuzz target: frame records inside segment payloads

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let b = bytes::Bytes::copy_from_slice(data);
    for f in segue_wire::segment::FrameReader::new(&b, 1 << 20) {
        if f.is_err() {
            break;
        }
    }
});
