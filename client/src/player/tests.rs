//! The player's state machine driven by hand: no sockets, no runtime, time as given.

use super::playout::hash_record;
use super::*;
use ring::digest::{Context, SHA256};
use segue_wire::ObjectName;
use segue_wire::control::{NptRange, Request, RtpInfo, SessionHeader};
use segue_wire::rtp::FrameInfo;
use segue_wire::sdp::{Codec, Track as SdpTrack};
use segue_wire::segment::{Frame, SegmentEntry, TrackEntry};

/// 25 frames/s on a 90 kHz clock.
const STEP: u32 = 3600;
const CSEQ: StartCseqs = StartCseqs {
    describe: 1,
    setup: 2,
    play: 3,
};

fn url(host: &str) -> SegueUrl {
    SegueUrl::parse(&format!("segue://{host}/clip")).unwrap()
}

fn description() -> Description {
    Description {
        left_out: Vec::new(),
        name: "clip".into(),
        duration_us: 10_000_000,
        tracks: vec![SdpTrack {
            index: 0,
            payload_type: 96,
            clock_rate: 90_000,
            codec: Codec::H264 {
                profile_level_id: [0x42, 0, 0x1e],
                parameter_sets: vec![
                    Bytes::from_static(&[0x67, 0x42, 0, 0x1e]),
                    Bytes::from_static(&[0x68, 0xce]),
                ],
            },
            frame_info_ext: 1,
        }],
    }
}

fn config() -> PlayerConfig {
    PlayerConfig {
        startup_buffer: Duration::from_millis(200),
        startup_rtts: 0.0,
        pace: true,
        stall_timeout: Duration::from_secs(2),
        failover_after: Duration::from_secs(1),
        watch: None,
        buffer_samples: None,
        give_up_at: None,
    }
}

/// The bytes of frame `i` of the object.
fn data(i: u32) -> Bytes {
    Bytes::from(vec![i as u8; 8])
}

/// A node's numbering of the object from frame `first` on: the frame's first sequence
/// number and the RTP timestamp of frame `first`.
#[derive(Clone, Copy)]
struct Numbering {
    first: u32,
    seq: u16,
    rtptime: u32,
}

impl Numbering {
    fn frame(&self, i: u32) -> ReceivedFrame {
        ReceivedFrame {
            track: 0,
            first_seq: self.seq.wrapping_add((i - self.first) as u16),
            last_seq: self.seq.wrapping_add((i - self.first) as u16),
            timestamp: self.rtptime.wrapping_add((i - self.first) * STEP),
            info: FrameInfo {
                keyframe: i % 25 == 0,
                cto: 0,
            },
            data: data(i),
            wire_bytes: 20,
        }
    }
}

/// A player on `fallbacks.len() + 1` nodes, with its clock.
struct Play {
    p: Player,
    t0: Instant,
    played: Vec<u8>,
    actions: Vec<Action>,
}

impl Play {
    fn new(cfg: PlayerConfig, fallbacks: &[&str]) -> Self {
        let t0 = Instant::now();
        let fallbacks = fallbacks.iter().map(|h| url(h)).collect();
        let mut p = Self {
            p: Player::new(cfg, url("a.test"), fallbacks, t0),
            t0,
            played: Vec::new(),
            actions: Vec::new(),
        };
        p.drain();
        p
    }

    fn at(&self, ms: u64) -> Instant {
        self.t0 + Duration::from_millis(ms)
    }

    /// Takes the actions: played frames by their first byte, the others kept.
    fn drain(&mut self) {
        while let Some(a) = self.p.poll() {
            match a {
                Action::Played { data, .. } => self.played.push(data[0]),
                a => self.actions.push(a),
            }
        }
    }

    fn take_actions(&mut self) -> Vec<Action> {
        std::mem::take(&mut self.actions)
    }

    /// The node connected at `ms` answers the pipelined start: the description, a session,
    /// and PLAY from `start_us` with `n`'s numbering.
    fn start(&mut self, ms: u64, start_us: u64, n: Numbering) {
        self.start_described(ms, start_us, &description(), n);
    }

    /// [`Play::start`] of the object `desc` describes, every track numbered as `n`.
    fn start_described(&mut self, ms: u64, start_us: u64, desc: &Description, n: Numbering) {
        let now = self.at(ms);
        self.p.handle_connected(now, CSEQ, now, false);
        let mut d = Response::new(200, CSEQ.describe);
        d.headers.content_type = Some(SDP_CONTENT_TYPE.into());
        d.body = Bytes::from(desc.to_sdp());
        self.p.handle_control(now, Message::Response(d));
        let mut s = Response::new(200, CSEQ.setup);
        s.headers.session = Some(SessionHeader {
            id: "s1".into(),
            timeout: None,
        });
        self.p.handle_control(now, Message::Response(s));
        let mut p = Response::new(200, CSEQ.play);
        p.headers.range = Some(NptRange {
            start: start_us,
            end: None,
        });
        p.headers.rtp_info = desc
            .tracks
            .iter()
            .map(|t| RtpInfo {
                url: SegueUrl::parse(&format!("segue://a.test/clip/track={}", t.index)).unwrap(),
                ssrc: t.index + 1,
                seq: n.seq,
                // rtptime is the RTP time of `start_us`.
                rtptime: n.rtptime,
            })
            .collect();
        self.p.handle_control(now, Message::Response(p));
        self.drain();
    }

    fn frames(&mut self, ms: u64, n: Numbering, frames: impl IntoIterator<Item = u32>) {
        for i in frames {
            self.p.handle_frame(self.at(ms), n.frame(i));
        }
        self.drain();
    }

    /// PLAY_NOTIFY end-of-stream: `last` is the last frame.
    fn end_of_stream(&mut self, ms: u64, n: Numbering, last: u32) {
        let mut r = Request::new(Method::PlayNotify, Some(url("a.test")), 9);
        r.headers.notify_reason = Some("end-of-stream".into());
        r.headers.rtp_info = vec![RtpInfo {
            url: SegueUrl::parse("segue://a.test/clip/track=0").unwrap(),
            ssrc: 1,
            seq: n.frame(last).last_seq,
            rtptime: 0,
        }];
        self.p.handle_control(self.at(ms), Message::Request(r));
        self.drain();
    }

    /// Runs the machine's timers up to `ms` (as a driver with nothing arriving would).
    fn run_until(&mut self, ms: u64) {
        let until = self.at(ms);
        let mut last = self.t0;
        while let Some(t) = self.p.poll_timeout() {
            if t > until || self.p.is_done() {
                break;
            }
            assert!(t >= last, "wake-ups go forward");
            last = t;
            self.p.handle_timeout(t);
            self.drain();
        }
        if !self.p.is_done() {
            self.p.handle_timeout(until);
            self.drain();
        }
    }
}

/// A manifest of the object's first `frames` frames, from the same frame records.
fn manifest(frames: u32) -> Manifest {
    let mut h = Context::new(&SHA256);
    for i in 0..frames {
        let rec = Frame {
            track: 0,
            keyframe: i % 25 == 0,
            pts: u64::from(i * STEP),
            cto: 0,
            data: data(i),
        };
        hash_record(&mut h, &rec);
    }
    let mut content_hash = [0u8; 32];
    content_hash.copy_from_slice(h.finish().as_ref());
    Manifest {
        object: ObjectName::new("clip", 255).unwrap(),
        revision: 1,
        duration_us: u64::from(frames) * 40_000,
        chunk_size: 16_384,
        formats: vec!["mp4".into()],
        sdp: description().to_sdp(),
        tracks: vec![TrackEntry {
            frames: u64::from(frames),
            content_hash,
        }],
        segments: vec![SegmentEntry {
            start_us: 0,
            duration_us: u64::from(frames) * 40_000,
            size: 0,
            frames: u64::from(frames),
            checksum: [0; 32],
            chunk_root: [0; 32],
        }],
    }
}

const A: Numbering = Numbering {
    first: 0,
    seq: 65_530,
    rtptime: 4_000_000_000,
};

#[test]
fn reordered_frames_play_in_order_each_at_its_time() {
    let mut p = Play::new(config(), &[]);
    assert!(matches!(
        p.take_actions()[..],
        [Action::Connect { resume_us: 0, .. }]
    ));
    p.start(10, 0, A);
    assert!(matches!(p.take_actions()[..], [Action::Described(_)]));
    assert_eq!(p.p.report().connect_ms, Some(10.0));
    // Out of order, across the sequence numbers' wrap: nothing plays before frames 0..=5
    // (200 ms) are held in order.
    p.frames(20, A, [3, 1, 0, 4, 2, 7]);
    assert!(p.played.is_empty(), "{:?}", p.played);
    p.frames(30, A, [5]);
    assert_eq!(p.p.report().startup_ms, Some(20.0));
    assert_eq!(p.p.report().ttff_ms, Some(10.0));
    // Click to first frame: the 10 ms handshake, then the 10 ms from the request.
    assert_eq!(p.p.report().click_ms, Some(20.0));
    assert_eq!(p.p.report().resumed, Some(false));
    assert_eq!(p.played, [0], "the first frame plays at once");
    // The next one is due 40 ms later, and the machine asks to be woken then.
    assert_eq!(p.p.poll_timeout(), Some(p.at(70)));
    p.run_until(69);
    assert_eq!(p.played, [0]);
    p.run_until(70);
    assert_eq!(p.played, [0, 1]);
    p.frames(100, A, 6..10);
    p.end_of_stream(100, A, 9);
    p.run_until(2000);
    assert_eq!(p.played, (0..10).collect::<Vec<u8>>());
    assert!(matches!(p.p.take_result(), Some(Ok(()))));
    assert_eq!(p.p.report().stalls, 0);
    assert_eq!(p.p.session(), Some("s1"));
    p.p.verify(&manifest(10));
    let r = p.p.into_report();
    assert!(r.hash_ok && r.ok(), "{r:?}");
    assert_eq!((r.frames_received, r.lost_frames), (10, 0));
}

#[test]
fn a_late_frame_is_a_stall_timed_from_when_it_was_due() {
    let mut p = Play::new(config(), &[]);
    p.start(0, 0, A);
    p.frames(10, A, 0..=5);
    assert_eq!(p.p.report().startup_ms, Some(10.0));
    // Frame 6 is due 240 ms after playback start; it comes at 400.
    p.run_until(300);
    assert_eq!(p.played.len(), 6);
    assert_eq!(p.p.report().stalls, 1);
    p.frames(400, A, [6]);
    let r = p.p.report();
    assert_eq!(p.played.len(), 7);
    assert!(
        (149.0..=150.0).contains(&r.stall_ms),
        "stalled from 250 to 400 ms: {}",
        r.stall_ms
    );
    p.end_of_stream(400, A, 6);
    p.run_until(1000);
    assert!(matches!(p.p.take_result(), Some(Ok(()))));
    p.p.verify(&manifest(7));
    let r = p.p.into_report();
    assert_eq!((r.stalls, r.late_frames, r.lost_frames), (1, 1, 0));
    assert!(r.hash_ok);
}

#[test]
fn a_gap_outliving_the_stall_timeout_is_skipped_and_verification_sees_it() {
    let mut p = Play::new(config(), &[]);
    p.start(0, 0, A);
    // Frame 3 never comes.
    p.frames(10, A, (0..10).filter(|&i| i != 3));
    assert!(p.p.report().startup_ms.is_none(), "3 holds the buffer");
    p.end_of_stream(10, A, 9);
    // The whole object is in but for 3: playback starts, then stalls at 3 for the timeout.
    p.run_until(5000);
    assert!(matches!(p.p.take_result(), Some(Ok(()))));
    assert_eq!(p.played, [0, 1, 2, 4, 5, 6, 7, 8, 9]);
    p.p.verify(&manifest(10));
    let r = p.p.into_report();
    assert_eq!((r.stalls, r.lost_frames, r.hash_ok), (1, 1, false));
    assert!(r.stall_ms >= 2000.0, "{}", r.stall_ms);
    assert!(!r.ok());
}

#[test]
fn a_silent_node_is_left_for_the_fallback_and_nothing_plays_twice() {
    let mut p = Play::new(config(), &["b.test"]);
    p.take_actions();
    p.start(0, 0, A);
    p.take_actions();
    p.frames(10, A, 0..50);
    // Node A goes silent. After 1 s without media the player leaves it, keeping what it
    // holds, and asks B for the rest from the end of that.
    p.run_until(1011);
    let a = p.take_actions();
    let [
        Action::Leave { play_out: false },
        Action::Connect { url, resume_us },
    ] = &a[..]
    else {
        panic!("{a:?}");
    };
    assert_eq!(url.host, "b.test");
    assert_eq!(
        *resume_us,
        49 * 40_000,
        "frames 0..=49 are played or carried"
    );
    let f = &p.p.report().failovers;
    assert_eq!(f.len(), 1);
    assert!(f[0].why.contains("no media for 1s"), "{}", f[0].why);
    // B resumes at the start of its segment holding that point (frame 45), with its own
    // numbering; the frames it sends again are skipped.
    let b = Numbering {
        first: 45,
        seq: 100,
        rtptime: 7,
    };
    p.start(1100, 45 * 40_000, b);
    p.frames(1110, b, 45..75);
    p.end_of_stream(1110, b, 74);
    p.run_until(10_000);
    assert!(matches!(p.p.take_result(), Some(Ok(()))));
    assert_eq!(p.played, (0..75).collect::<Vec<u8>>());
    assert_eq!(p.p.report().stalls, 0, "the buffer covered the switch");
    p.p.verify(&manifest(75));
    assert!(p.p.into_report().ok());
}

#[test]
fn a_node_failing_without_a_fallback_ends_the_play_with_why() {
    let mut p = Play::new(config(), &[]);
    p.start(0, 0, A);
    p.frames(10, A, 0..8);
    p.run_until(10_000);
    let Some(Err(PlayError::Failed(why))) = p.p.take_result() else {
        panic!("the play must fail");
    };
    assert!(why.starts_with("stalled for 2s"), "{why}");
    assert_eq!(p.played.len(), 8);
    // A failed PLAY is said as such.
    let mut p = Play::new(config(), &[]);
    p.p.handle_connected(p.at(0), CSEQ, p.at(0), false);
    let r = Response::error(404, CSEQ.play, "no such object");
    p.p.handle_control(p.at(5), Message::Response(r));
    let Some(Err(PlayError::Failed(why))) = p.p.take_result() else {
        panic!("the play must fail");
    };
    assert_eq!(why, "PLAY failed: 404 no such object");
}

#[test]
fn unreachable_nodes_are_tried_in_order() {
    let mut p = Play::new(config(), &["b.test", "c.test"]);
    p.take_actions();
    p.p.handle_connect_failed(p.at(100), "refused".into());
    p.drain();
    let a = p.take_actions();
    assert!(matches!(&a[..], [Action::Connect { url, .. }] if url.host == "b.test"));
    p.p.handle_connect_failed(p.at(200), "timed out".into());
    p.p.handle_connect_failed(p.at(300), "reset".into());
    let f = &p.p.report().failovers;
    assert_eq!(f[0].why, "segue://a.test:8554/clip: refused");
    assert_eq!(f[1].at_s, 0.2);
    let Some(Err(PlayError::Failed(why))) = p.p.take_result() else {
        panic!("the play must fail");
    };
    assert_eq!(why, "segue://c.test:8554/clip: reset");
    // Alone, a node's error is given as it is.
    let mut p = Play::new(config(), &[]);
    p.p.handle_connect_failed(p.at(100), "refused".into());
    assert!(matches!(p.p.take_result(), Some(Err(PlayError::Failed(w))) if w == "refused"));
}

#[test]
fn the_time_bound_stops_the_play() {
    let mut cfg = config();
    let t0 = Instant::now();
    cfg.give_up_at = Some(t0 + Duration::from_millis(500));
    let mut p = Play::new(cfg, &[]);
    p.t0 = t0;
    p.start(0, 0, A);
    p.run_until(600);
    assert!(matches!(p.p.take_result(), Some(Err(PlayError::GaveUp))));
}

#[test]
fn a_node_that_sends_nothing_is_refused_after_the_stall_timeout() {
    let mut p = Play::new(config(), &[]);
    p.start(0, 0, A);
    p.run_until(1900);
    assert!(p.p.take_result().is_none());
    p.run_until(2100);
    let Some(Err(PlayError::Failed(why))) = p.p.take_result() else {
        panic!("the play must fail");
    };
    assert_eq!(why, "no playable media within 2s: the server sent none");
}

/// `d` with an audio track beside its video (the same 90 kHz clock, for simplicity).
fn with_audio(mut d: Description) -> Description {
    let mut audio = d.tracks[0].clone();
    audio.index = 1;
    audio.payload_type = 97;
    audio.codec = Codec::Aac {
        config: Bytes::from_static(&[0x11, 0x90]),
        channels: 2,
    };
    d.tracks.push(audio);
    d
}

#[test]
fn a_track_cut_off_mid_play_ends_the_play_after_the_stall_timeout_whatever_the_others_hold() {
    // Video and audio (each 25 frames/s on a 90 kHz clock, for simplicity). Video stops
    // at frame 50 while audio is in to frame 99: the clock freezes at 2 s with audio
    // frames pending but not due. Seen in the lab (0.25 Mbit/s last mile, 3 % bursty
    // loss): a play missing its last 8 frames waited 133 s, to the run's time bound, its
    // stall timeout of 10 s never firing because another track held frames.
    let mut p = Play::new(config(), &[]);
    p.start_described(0, 0, &with_audio(description()), A);
    for i in 0..100 {
        if i < 50 {
            p.p.handle_frame(p.at(10), A.frame(i));
        }
        let mut f = A.frame(i);
        f.track = 1;
        p.p.handle_frame(p.at(10), f);
    }
    p.drain();
    p.run_until(20_000);
    let Some(Err(e)) = p.p.take_result() else {
        panic!("the play is still waiting at 20 s");
    };
    assert!(e.to_string().contains("stalled for 2s"), "{e}");
    let r = p.p.into_report();
    assert_eq!(r.stalls, 1);
    assert!(
        (2000.0..2200.0).contains(&r.stall_ms),
        "left within a wake-up of the timeout: {} ms stalled",
        r.stall_ms
    );
}

#[test]
fn a_track_cut_off_ends_the_play_after_the_stall_timeout_while_another_keeps_arriving() {
    // Video stops at frame 50 (2 s) while audio goes on arriving in real time, as a paced
    // node sends it: the clock freezes at 2 s, and media keeps coming, none of it for the
    // track that holds the clock. The play used to wait until the audio ended too.
    let mut p = Play::new(config(), &[]);
    p.start_described(0, 0, &with_audio(description()), A);
    for i in 0..50 {
        p.p.handle_frame(p.at(10), A.frame(i));
        let mut f = A.frame(i);
        f.track = 1;
        p.p.handle_frame(p.at(10), f);
    }
    p.drain();
    let mut ended = None;
    for i in 50..500 {
        let t = 40 * u64::from(i);
        p.run_until(t);
        if let Some(r) = p.p.take_result() {
            ended = Some((t, r));
            break;
        }
        let mut f = A.frame(i);
        f.track = 1;
        p.p.handle_frame(p.at(t), f);
        p.drain();
    }
    let Some((t, Err(e))) = ended else {
        panic!("the play was still waiting at 20 s, audio arriving all along");
    };
    assert!(e.to_string().contains("stalled for 2s"), "{e}");
    assert!(t <= 4400, "ended at {t} ms, the stall began at about 2 s");
    let r = p.p.into_report();
    assert_eq!(r.stalls, 1);
    assert!((2000.0..2200.0).contains(&r.stall_ms), "{} ms", r.stall_ms);
}
