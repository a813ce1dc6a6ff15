#![no_main]
//! Fuzz target: segment protocol requests

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let l = segue_wire::Limits::default();
    if let Ok(Some((r, _))) = segue_wire::segment::decode_request(data, &l) {
        let enc = r.encode();
        assert_eq!(segue_wire::segment::decode_request(&enc, &l), Ok(Some((r, enc.len()))));
    }
});
