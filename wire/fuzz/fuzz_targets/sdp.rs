#![no_main]
//! Fuzz target: SDP track descriptions

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(s) = std::str::from_utf8(data) {
        if let Ok(d) = segue_wire::sdp::Description::from_sdp(s, 8) {
            assert_eq!(segue_wire::sdp::Description::from_sdp(&d.to_sdp(), 8), Ok(d));
        }
    }
});
