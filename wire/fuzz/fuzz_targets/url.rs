#![no_main]
//! Fuzz target: segue:// URLs and object names

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(s) = std::str::from_utf8(data) {
        if let Ok(u) = segue_wire::SegueUrl::parse(s) {
            assert_eq!(segue_wire::SegueUrl::parse(&u.to_string()), Ok(u));
        }
    }
});
