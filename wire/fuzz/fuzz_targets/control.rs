#![no_main]
//! Fuzz target: RTSP-style control messages (ControlDecoder)

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    // Whole input, then again in small pieces: both must agree and never panic.
    let collect = |chunk: usize| {
        let mut d = segue_wire::control::ControlDecoder::new(segue_wire::Limits::default());
        let mut out = Vec::new();
        for c in data.chunks(chunk) {
            d.push(c);
            loop {
                match d.next_message() {
                    Ok(Some(m)) => out.push(Ok(m)),
                    Ok(None) => break,
                    Err(e) => {
                        let fatal = e.fatal;
                        out.push(Err(e));
                        if fatal {
                            return out;
                        }
                    }
                }
            }
        }
        out
    };
    let whole = collect(data.len().max(1));
    let pieces = collect(7);
    assert_eq!(whole.len(), pieces.len());
    // Whatever decodes must re-encode to something that decodes to the same message.
    for m in whole.into_iter().flatten() {
        let mut d = segue_wire::control::ControlDecoder::new(segue_wire::Limits::default());
        d.push(&m.encode());
        assert_eq!(d.next_message().ok().flatten(), Some(m));
    }
});
