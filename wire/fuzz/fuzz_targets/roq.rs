#![no_main]
//! Fuzz target: RoQ stream framing

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let mut d = segue_wire::roq::RoqDecoder::new(65_535);
    d.push(data);
    while let Ok(Some(_)) = d.next_item() {}
    let _ = d.finish();
});
