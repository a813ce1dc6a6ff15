#![no_main]
//! Fuzz target: helper advertisements (ADVERT frames)

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let l = segue_wire::Limits::default();
    if let Ok(Some((a, _))) = segue_wire::advert::decode(data, &l) {
        let enc = a.encode();
        assert_eq!(segue_wire::advert::decode(&enc, &l), Ok(Some((a, enc.len()))));
    }
});
