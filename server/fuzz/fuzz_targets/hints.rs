#![no_main]
//! Fuzz target: hints, as the admin API's `POST /hints` (JSON) and a schedule file (TOML)
//! take them

use segue_server::placement::hint;

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    if let Ok(hints) = hint::parse_json(data, 1.0e9) {
        for h in &hints {
            assert!(h.at_s.is_finite(), "{h:?}");
        }
    }
    if let Ok(text) = std::str::from_utf8(data) {
        let _ = hint::parse_schedule(text, 1.0e9);
    }
});
