#![no_main]
//! Fuzz target: RTP packets with the frame-info extension

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(p) = segue_wire::rtp::RtpPacket::decode(data) {
        let again = segue_wire::rtp::RtpPacket::decode(&p.encode()).expect("re-encoded packet decodes");
        assert_eq!(again, p);
    }
});
