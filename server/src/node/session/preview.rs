//! What a paced play sends on a miss before the sufficient portion is in: its first picture.
//!
//! An edge that misses starts playback only once what it holds plus what its origin link
//! delivers by each deadline covers the object (`Source::ready`). Waiting for that before
//! the first byte kept the first frame behind the whole estimate: on the matrix's 8 Mbit/s
//! × 300 ms origin link the first picture (a 76 kB keyframe) was at the edge ~1.5 s before
//! the sender let it go. So a paced sender sends the first picture at once — the first
//! video frame in decoding order and whatever other tracks' frames decode no later — and
//! holds the rest until the source is ready. A player waits for its start-up buffer (many
//! frames) before playback starts, so a picture alone starts nothing; an unpaced play (whose
//! player starts on its first frame) waits for the source as before (PROTOCOL.md §5.6).

/// Which frames of a play's first segment go out before its source is ready, in decoding
/// order: sans-IO, fed each frame's track and decode time.
#[derive(Debug, Clone)]
pub struct Preview {
    /// Whether each track (by SDP index) is video.
    video: Vec<bool>,
    /// The object has a video track: the picture is its first video frame; otherwise the
    /// first frame of any track is the preview.
    has_video: bool,
    /// Decode time of the picture, once it was admitted.
    picture_dts: Option<u64>,
    /// Presentation time of the picture, once it was admitted.
    picture_pts: Option<u64>,
    /// A frame was held back: every later one is too.
    closed: bool,
}

impl Preview {
    /// A preview of an object whose tracks (by SDP index) are video or not.
    pub fn new(video: Vec<bool>) -> Self {
        Self {
            has_video: video.contains(&true),
            video,
            picture_dts: None,
            picture_pts: None,
            closed: false,
        }
    }

    /// Whether `track` is video.
    pub fn is_video(&self, track: usize) -> bool {
        self.video.get(track).copied().unwrap_or(false)
    }

    /// Whether a frame of `track` presented at `pts_us` plays no later than the picture:
    /// sound that goes out with it even if it decodes after frames held back (an edit list
    /// can start the audio after the video's first decode time but before its picture).
    pub fn plays_with_picture(&self, track: usize, pts_us: u64) -> bool {
        !self.is_video(track) && self.has_video && self.picture_pts.is_some_and(|p| pts_us <= p)
    }

    /// Whether the next frame in decoding order (of `track`, decoding at `dts_us`) may go
    /// out before the source is ready. Once this says no, every later frame waits too.
    pub fn admits(&mut self, track: usize, dts_us: u64, pts_us: u64) -> bool {
        let video = self.is_video(track);
        let admitted = match self.picture_dts {
            _ if self.closed => false,
            None => {
                if video || !self.has_video {
                    self.picture_dts = Some(dts_us);
                    self.picture_pts = Some(pts_us);
                }
                true
            }
            Some(p) => !video && self.has_video && dts_us <= p,
        };
        self.closed = !admitted;
        admitted
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const VIDEO: usize = 0;
    const AUDIO: usize = 1;

    #[test]
    fn the_picture_and_the_sound_decoded_with_it_go_ahead_and_nothing_after() {
        let mut p = Preview::new(vec![true, false]);
        // Audio before the keyframe, the keyframe, audio up to its decode time.
        assert!(p.admits(AUDIO, 0, 0));
        assert!(p.admits(AUDIO, 10_000, 10_000));
        assert!(p.admits(VIDEO, 20_000, 20_000));
        assert!(p.admits(AUDIO, 20_000, 20_000));
        // The next audio frame and the next picture wait.
        assert!(!p.admits(AUDIO, 30_000, 30_000));
        assert!(!p.admits(VIDEO, 53_333, 53_333));
    }

    /// demo.mp4 since edit lists: video decodes from 0 and shows at 66.7 ms, the second
    /// video frame decodes at 33.3 ms, audio starts at 45.3 ms. The second picture closes
    /// the preview in decoding order, but the sound up to the picture still goes with it.
    #[test]
    fn the_sound_until_the_picture_goes_with_it_past_held_video() {
        let mut p = Preview::new(vec![true, false]);
        assert!(p.admits(VIDEO, 0, 66_667));
        assert!(!p.admits(VIDEO, 33_333, 133_333));
        assert!(p.plays_with_picture(AUDIO, 45_333));
        assert!(p.plays_with_picture(AUDIO, 66_667));
        assert!(!p.plays_with_picture(AUDIO, 88_000));
        assert!(!p.plays_with_picture(VIDEO, 33_333));
        // Without video there is no picture to play with.
        let mut a = Preview::new(vec![false]);
        assert!(a.admits(0, 0, 0));
        assert!(!a.plays_with_picture(0, 0));
    }

    #[test]
    fn a_second_picture_waits_even_if_it_decodes_no_later() {
        let mut p = Preview::new(vec![true, false]);
        assert!(p.admits(VIDEO, 0, 0));
        assert!(!p.admits(VIDEO, 0, 0));
        // Held back once, held back for good (the sound of the held picture too).
        assert!(!p.admits(AUDIO, 0, 0));
    }

    #[test]
    fn without_video_the_first_frame_is_the_preview() {
        let mut p = Preview::new(vec![false, false]);
        assert!(p.admits(AUDIO, 0, 0));
        assert!(!p.admits(AUDIO, 0, 0));
        assert!(!p.admits(AUDIO, 23_220, 23_220));
    }
}
