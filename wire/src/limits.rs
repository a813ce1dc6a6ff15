//! Protocol limits. Every decoder takes a [`Limits`] and rejects input beyond it before
//! allocating for it. The defaults are the values docs/PROTOCOL.md states; a node may lower
//! them (never needs to raise them to talk to a conforming peer).

/// Limits enforced by the decoders.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Start line + headers + empty line of one RTSP message.
    pub max_control_head: usize,
    /// Body (Content-Length) of one RTSP message.
    pub max_control_body: usize,
    /// Header fields in one RTSP message.
    pub max_header_count: usize,
    /// Length of an object name (path) in bytes.
    pub max_object_name: usize,
    /// One RTP packet inside RoQ framing.
    pub max_rtp_packet: usize,
    /// One encoded manifest.
    pub max_manifest: usize,
    /// Segments listed in one manifest.
    pub max_segments: usize,
    /// Tracks in one object.
    pub max_tracks: usize,
    /// One segment payload.
    pub max_segment_size: u64,
    /// One frame inside a segment.
    pub max_frame_size: u64,
    /// Segments asked for in one segment request.
    pub max_segments_per_request: u64,
    /// Body of one segment-protocol frame (request, response header, segment header).
    pub max_frame_header: usize,
    /// Body of one ADVERT frame.
    pub max_advert: usize,
    /// Objects listed in one ADVERT.
    pub max_advert_objects: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_control_head: 8 * 1024,
            max_control_body: 64 * 1024,
            max_header_count: 32,
            max_object_name: 1024,
            max_rtp_packet: 65_535,
            max_manifest: 8 * 1024 * 1024,
            max_segments: 65_536,
            max_tracks: 8,
            max_segment_size: 64 * 1024 * 1024,
            max_frame_size: 16 * 1024 * 1024,
            max_segments_per_request: 1024,
            max_frame_header: 4096,
            max_advert: 1024 * 1024,
            max_advert_objects: 100_000,
        }
    }
}
