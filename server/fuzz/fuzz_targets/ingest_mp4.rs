#![no_main]
//! Fuzz target: MP4 and fragmented MP4 ingest (demux, segment, manifest)

mod ingest;

libfuzzer_sys::fuzz_target!(|data: &[u8]| ingest::ingest(data, "mp4"));
