#![no_main]
//! Fuzz target: segment protocol response frames (response, manifest, segment header)

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let l = segue_wire::Limits::default();
    let mut rest = data;
    while let Ok(Some((_, used))) = segue_wire::segment::decode_response_frame(rest, &l) {
        rest = &rest[used..];
    }
});
