//! Shared by the ingest targets: the input becomes a media file (demuxers read files), is
//! demuxed and segmented as the origin's library does, and whatever is accepted must make a
//! manifest that survives its own encoding.

use segue_server::origin::ingest::{self, segmenter};
use segue_wire::ObjectName;
use segue_wire::segment::Manifest;

pub fn ingest(data: &[u8], ext: &str) {
    // One file per process, rewritten for each input (tmpfs when there is one).
    let dir = if std::path::Path::new("/dev/shm").is_dir() {
        "/dev/shm".into()
    } else {
        std::env::temp_dir()
    };
    let path = std::path::Path::new(&dir).join(format!("segue-fuzz-{}.{ext}", std::process::id()));
    std::fs::write(&path, data).expect("cannot write the input file");
    let Ok(d) = ingest::demux(&path) else { return };
    let name = ObjectName::new("fuzz", 255).expect("a valid name");
    for scheme in [
        segmenter::SegmentScheme::Uniform,
        segmenter::SegmentScheme::Exponential,
    ] {
        let cut = segmenter::Cut {
            target_us: 200_000,
            scheme,
        };
        let Ok(s) = segmenter::segment(&d, &name, vec![ext.into()], 1, cut, &path) else {
            continue;
        };
        assert_eq!(s.payloads.len(), s.manifest.segments.len());
        let limits = segue_wire::Limits::default();
        assert_eq!(
            Manifest::decode(&s.manifest.encode(), &limits),
            Ok(s.manifest)
        );
    }
}
