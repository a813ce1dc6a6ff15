//! Playout: when playback starts, which frames are due, stall accounting, and when the node
//! playing is failing the play (no media for too long).

use std::time::Instant;

use segue_wire::segment::Frame;

use super::{Action, Phase, PlayError, Player, least_buffered_us, ms, soonest};
use crate::playout::PlayoutClock;
use crate::track::{Track, after, dts_us};

impl Player {
    /// One pass of playout at `now`: start, play what is due, account stalls, decide whether
    /// the node is failing, and compute the next wake-up.
    pub(super) fn advance(&mut self, now: Instant) {
        if self.phase != Phase::Playing {
            return;
        }
        if self.cfg.give_up_at.is_some_and(|t| now >= t) {
            return self.fail(PlayError::GaveUp);
        }
        let st = self.cfg.stall_timeout;
        let since_media = now.saturating_duration_since(self.last_media);
        // Before playback, every track waits for its numbering (the PLAY response); after a
        // failover, a track plays what was carried over meanwhile.
        if self.tracks.is_empty()
            || (self.clock.is_none() && self.tracks.iter().any(|t| t.next_seq.is_none()))
        {
            if since_media > st && now.saturating_duration_since(self.t_req) > st {
                self.leave(now, format!("no playable media within {st:?}"), true);
            }
            return;
        }
        if self.clock.is_none() && !self.start(now) {
            if since_media > st {
                let why = self
                    .stream_failure
                    .clone()
                    .unwrap_or_else(|| "the server sent none".into());
                self.leave(now, format!("no playable media within {st:?}: {why}"), true);
            }
            return;
        }
        let (waited_out, blocked) = self.play_due(now);
        // Nothing can play and nothing that would came for the timeout: every track is
        // drained and no media arrives, or one holds the clock with nothing to skip to and
        // nothing of its own arriving (a track cut off while the others hold frames that can
        // never be due: seen waiting 133 s in the lab; or while the others keep arriving).
        let drained = self
            .tracks
            .iter()
            .all(|t| t.pending.is_empty() && t.carry.is_empty());
        if waited_out && (blocked || (drained && since_media > st)) {
            let why = self
                .stream_failure
                .clone()
                .unwrap_or_else(|| "no media arriving".into());
            return self.leave(now, format!("stalled for {st:?}: {why}"), true);
        }
        // A node gone silent (killed, cut off) says nothing: with a fallback left, leave it
        // while the buffer still covers the switch.
        // (A node just failed over to gets the stall timeout for its first frame.)
        let silence = if self.node.as_ref().is_some_and(|n| n.got_media) {
            self.cfg.failover_after
        } else {
            st
        };
        if !self.fallbacks.is_empty()
            && self.connecting.is_none()
            && since_media > silence
            && !self.tracks.iter().all(|t| t.last_seq.is_some())
        {
            return self.leave(now, format!("no media for {silence:?}"), true);
        }
        if let Some(every) = self.cfg.buffer_samples {
            if self
                .last_sample
                .is_none_or(|t| now.saturating_duration_since(t) >= every)
            {
                self.last_sample = Some(now);
                let level = least_buffered_us(&self.tracks);
                self.report.buffer.push([
                    now.saturating_duration_since(self.t_req).as_secs_f64(),
                    level as f64 / 1000.0,
                ]);
            }
            let at = self.last_sample.map(|t| t + every);
            soonest(&mut self.next_wake, at);
        }
        let Some(clock) = self.clock.as_ref() else {
            return;
        };
        if let Some(w) = self.cfg.watch {
            let w = w.as_micros() as u64;
            soonest(&mut self.next_wake, clock.when(w));
            if !clock.is_stalled() && clock.position_us(now) >= w {
                self.report.watched_until_s = Some(clock.position_us(now) as f64 / 1e6);
                return self.end(now);
            }
        }
        if self.tracks.iter().all(Track::finished) {
            self.end(now);
        }
    }

    /// Starts playback if the start-up buffer is in (or the object is, or the play is
    /// unpaced).
    fn start(&mut self, now: Instant) -> bool {
        let all_done = self.tracks.iter().all(|t| t.last_seq.is_some());
        // Media each track holds, in order, from its next frame: playback waits until every
        // track has the startup buffer (the least-buffered track is what stalls).
        let buffered = least_buffered_us(&self.tracks);
        let have_frame = self
            .tracks
            .iter()
            .any(|t| !t.pending.is_empty() || !t.carry.is_empty());
        // Playback starts with a frame in hand: once the startup buffer is full, at once when
        // unpaced, or when the whole (short) object is in.
        let target = self
            .cfg
            .startup_buffer
            .max(self.rtt.mul_f64(self.cfg.startup_rtts.clamp(0.0, 100.0)));
        if !(have_frame && (!self.cfg.pace || all_done || buffered >= target.as_micros() as u64)) {
            return false;
        }
        self.report.startup_buffer_ms = Some(ms(target));
        self.clock = Some(PlayoutClock::start(now));
        self.report.startup_ms = Some(ms(now.saturating_duration_since(self.t_req)));
        true
    }

    /// Plays every frame due at `now` and accounts a stall; returns whether what is missing
    /// was waited for long enough (paced: a stall past the timeout; unpaced: no media for
    /// it), and whether a track is past due with nothing to play or skip to.
    fn play_due(&mut self, now: Instant) -> (bool, bool) {
        let pace = self.cfg.pace;
        let Some(clock) = self.clock.as_mut() else {
            return (false, false);
        };
        let mut blocked = false;
        let st = self.cfg.stall_timeout;
        let waited_out = clock.stalled_for(now) > st
            || (!pace && now.saturating_duration_since(self.last_media) > st);
        let mut missing = false;
        let m0 = &mut self.m0;
        for t in self.tracks.iter_mut() {
            loop {
                if t.finished() {
                    break;
                }
                // What the old node sent comes first after a failover; then the new node's.
                let (f, pts, dts, from_carry) = if let Some((pts, f)) = t.carry.pop_front() {
                    let dts = dts_us(pts, f.info.cto, t.clock);
                    (f, pts, dts, true)
                } else {
                    let Some(next) = t.next_seq else {
                        // Waiting for the new node's numbering.
                        let due = past_due(t, clock, *m0, pace, now, &mut self.next_wake);
                        missing |= due;
                        blocked |= due;
                        break;
                    };
                    let Some(f) = t.pending.remove(&next) else {
                        let due = past_due(t, clock, *m0, pace, now, &mut self.next_wake);
                        missing |= due;
                        // A gap that outlives the stall timeout: skip to what we have.
                        if let Some((&k, _)) = t.pending.iter().next()
                            && waited_out
                        {
                            t.next_seq = Some(k);
                            continue;
                        }
                        blocked |= due && t.pending.is_empty() && t.quiet_for(now, st);
                        break;
                    };
                    let pts = t.pts_of(f.timestamp);
                    let dts = dts_us(pts, f.info.cto, t.clock);
                    // Sent again by the node failed over to, and played already.
                    if t.played_through_us.is_some_and(|p| dts <= p) {
                        t.last_pts = Some(pts);
                        t.next_seq = t.next_seq.map(|k| after(k, &f));
                        continue;
                    }
                    (f, pts, dts, false)
                };
                let base = *m0.get_or_insert(dts);
                // The media clock is frozen during a stall, so this also holds frames back then.
                if pace && dts.saturating_sub(base) > clock.position_us(now) {
                    // Not due yet: the driver wakes the machine when it is.
                    soonest(&mut self.next_wake, clock.when(dts.saturating_sub(base)));
                    if from_carry {
                        t.carry.push_front((pts, f));
                    } else if let Some(next) = t.next_seq {
                        t.pending.insert(next, f);
                    }
                    break;
                }
                t.last_pts = Some(pts);
                // Consumed during a stall: it was needed before it arrived.
                if clock.is_stalled() {
                    t.late += 1;
                }
                if let Some(prev) = t.last_dts_us
                    && dts > prev
                {
                    t.interval_us = dts - prev;
                }
                t.last_dts_us = Some(dts);
                if !from_carry {
                    t.next_seq = t.next_seq.map(|k| after(k, &f));
                }
                let rec = Frame {
                    track: f.track,
                    keyframe: f.info.keyframe,
                    pts,
                    cto: f.info.cto,
                    data: f.data,
                };
                hash_record(&mut t.hash, &rec);
                t.frames += 1;
                self.report.frames_received += 1;
                self.actions.push_back(Action::Played {
                    track: rec.track,
                    data: rec.data,
                });
            }
        }
        if clock.update(missing, now) {
            self.report.stalls += 1;
            tracing::debug!(
                media_us = clock.position_us(now),
                tracks = ?self.tracks.iter().map(|t| (t.next_seq, t.last_seq, t.last_dts_us, t.interval_us, t.pending.keys().next().copied(), t.pending.len())).collect::<Vec<_>>(),
                "stall begins"
            );
        }
        // Kept current, so a play that ends in an error still reports the time it stalled.
        self.report.stall_ms = ms(clock.stall_time(now));
        (waited_out, blocked)
    }
}

/// Whether the track has nothing to play although its clock has run past its last frame (a
/// stall; only once the track's frame interval is known); if not yet, the instant it would
/// be goes into `wake`, so a stall is timed from its start.
fn past_due(
    t: &Track,
    clock: &PlayoutClock,
    m0: Option<u64>,
    pace: bool,
    now: Instant,
    wake: &mut Option<Instant>,
) -> bool {
    let Some(last) = t.last_dts_us.filter(|_| pace && t.interval_us > 0) else {
        return false;
    };
    let due = last.saturating_sub(m0.unwrap_or(0)) + t.interval_us;
    if clock.position_us(now) > due {
        return true;
    }
    soonest(wake, clock.when(due + 1));
    false
}

/// The frame record as the content hash covers it, without copying the frame.
pub(super) fn hash_record(hash: &mut ring::digest::Context, rec: &Frame) {
    let mut head = [0u8; Frame::MAX_HEAD_LEN];
    let room = {
        let mut w = &mut head[..];
        rec.encode_head_into(&mut w);
        w.len()
    };
    let n = head.len() - room;
    hash.update(&head[..n]);
    hash.update(&rec.data);
}
