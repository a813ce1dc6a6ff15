#![no_main]
//! Fuzz target: MPEG-TS ingest (demux, segment, manifest)

mod ingest;

libfuzzer_sys::fuzz_target!(|data: &[u8]| ingest::ingest(data, "ts"));
