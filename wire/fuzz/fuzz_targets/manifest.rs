#![no_main]
//! Fuzz target: manifests

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let l = segue_wire::Limits::default();
    if let Ok(m) = segue_wire::segment::Manifest::decode(data, &l) {
        assert_eq!(segue_wire::segment::Manifest::decode(&m.encode(), &l), Ok(m));
    }
});
