//! One track's reception: frames put back in RTP sequence order, timestamps turned into
//! presentation times, and what a failover carries over from the node left.

use std::collections::{BTreeMap, VecDeque};
use std::time::{Duration, Instant};

use ring::digest::{Context, SHA256};
use segue_wire::sdp::Codec;

use crate::stream::ReceivedFrame;

/// A track of the play, as the player's state machine holds it.
pub(crate) struct Track {
    pub clock: u32,
    pub codec: Codec,
    /// RTP timestamp offset (from RTP-Info).
    pub offset: Option<u32>,
    /// Extended sequence number of the next frame's first packet.
    pub next_seq: Option<i64>,
    /// Extended sequence number of the newest frame received (its first packet): what a
    /// new number is extended against, so a buffer deeper than half the 16-bit space
    /// (32 768 packets: 30 s at about 10 Mbit/s) still numbers in order.
    pub newest_seq: Option<i64>,
    /// Extended sequence number of the last packet (from PLAY_NOTIFY end-of-stream).
    pub last_seq: Option<i64>,
    /// Frames received and not played, by the extended sequence number of their first packet.
    pub pending: BTreeMap<i64, ReceivedFrame>,
    pub last_pts: Option<u64>,
    pub last_dts_us: Option<u64>,
    /// The decode-time step between the last two frames played, µs (0 until known).
    pub interval_us: u64,
    /// The content hash over the frame records played, as the manifest's.
    pub hash: Context,
    pub frames: u64,
    pub late: u64,
    /// After a failover: frames decoded at or before this (µs) were played or carried
    /// over already (the new node sends them again).
    pub played_through_us: Option<u64>,
    /// After a failover: what the old node sent and was not played yet, in order, with its
    /// pts (the old node's RTP numbering is gone); played before the new node's frames.
    pub carry: VecDeque<(u64, ReceivedFrame)>,
    /// When a frame of this track last arrived.
    pub last_arrival: Option<Instant>,
}

impl Track {
    pub fn new(clock: u32, codec: Codec) -> Self {
        Self {
            clock,
            codec,
            offset: None,
            next_seq: None,
            newest_seq: None,
            last_seq: None,
            pending: BTreeMap::new(),
            last_pts: None,
            last_dts_us: None,
            interval_us: 0,
            hash: Context::new(&SHA256),
            frames: 0,
            late: 0,
            played_through_us: None,
            carry: VecDeque::new(),
            last_arrival: None,
        }
    }

    /// A 16-bit sequence number extended against the newest received, or else the next one
    /// expected (the nearer wrap): numbers arrive nearly in order, while the next to play
    /// may be a whole buffer behind them.
    pub fn extend(&self, seq: u16) -> i64 {
        let base = self.newest_seq.or(self.next_seq).unwrap_or(i64::from(seq));
        base + i64::from(seq.wrapping_sub(base as u16) as i16)
    }

    /// Whether nothing of this track arrived for longer than `d` before `now`.
    pub fn quiet_for(&self, now: Instant, d: Duration) -> bool {
        self.last_arrival
            .is_none_or(|a| now.saturating_duration_since(a) > d)
    }

    /// Takes a received frame: into the reorder buffer once the track's numbering is known;
    /// otherwise it is handed back (it came before the PLAY response).
    pub fn receive(&mut self, f: ReceivedFrame) -> Option<ReceivedFrame> {
        if self.next_seq.is_none() {
            return Some(f);
        }
        let k = self.extend(f.first_seq);
        self.newest_seq = Some(self.newest_seq.map_or(k, |n| n.max(k)));
        self.pending.insert(k, f);
        None
    }

    /// Media held in order from the next frame to play, microseconds.
    pub fn buffered_us(&self) -> u64 {
        let off = self.offset.unwrap_or(0);
        let mut seq = self.next_seq;
        // Timestamps as pts modulo 2^32, in which carried frames and the new node's agree.
        let mut span = match (self.carry.front(), self.carry.back()) {
            (Some((a, _)), Some((b, _))) => Some((*a as u32, *b as u32)),
            _ => None,
        };
        while let Some((k, f)) = seq.and_then(|k| self.pending.get(&k).map(|f| (k, f))) {
            let ts = f.timestamp.wrapping_sub(off);
            span = Some(span.map_or((ts, ts), |(a, _)| (a, ts)));
            seq = Some(after(k, f));
        }
        span.map_or(0, |(a, b): (u32, u32)| {
            u64::from(b.wrapping_sub(a)) * 1_000_000 / u64::from(self.clock.max(1))
        })
    }

    /// A failover: the frames held in order from the next one to play move to `carry` (with
    /// their pts: the old node's numbering ends here), the rest is dropped, and the track
    /// waits for the new node's numbering.
    pub fn carry_over(&mut self) {
        let mut prev = self.carry.back().map(|(p, _)| *p).or(self.last_pts);
        while let Some((k, f)) = self
            .next_seq
            .and_then(|k| self.pending.remove(&k).map(|f| (k, f)))
        {
            self.next_seq = Some(after(k, &f));
            let pts = unwrap_pts(f.timestamp.wrapping_sub(self.offset.unwrap_or(0)), prev);
            prev = Some(pts);
            // Sent again after an earlier failover and had already been played or carried.
            let dts = dts_us(pts, f.info.cto, self.clock);
            if self.played_through_us.is_some_and(|p| dts <= p) {
                continue;
            }
            self.carry.push_back((pts, f));
        }
        let carried = self
            .carry
            .back()
            .map(|(pts, f)| dts_us(*pts, f.info.cto, self.clock));
        self.played_through_us = [carried, self.last_dts_us, self.played_through_us]
            .into_iter()
            .flatten()
            .max();
        self.pending.clear();
        self.offset = None;
        self.next_seq = None;
        self.newest_seq = None;
        self.last_seq = None;
    }

    /// Every frame up to the end of the stream was played.
    pub fn finished(&self) -> bool {
        matches!((self.next_seq, self.last_seq), (Some(n), Some(l)) if n > l)
    }

    /// The 64-bit pts of an RTP timestamp, unwrapped against the last consumed frame.
    pub fn pts_of(&self, ts: u32) -> u64 {
        unwrap_pts(ts.wrapping_sub(self.offset.unwrap_or(0)), self.last_pts)
    }
}

/// The extended sequence number after frame `f`, whose first packet is numbered `key`.
pub(crate) fn after(key: i64, f: &ReceivedFrame) -> i64 {
    key + i64::from(f.last_seq.wrapping_sub(f.first_seq)) + 1
}

/// A 32-bit pts widened to 64 bits against the pts before it (the nearer of the wraps).
pub(crate) fn unwrap_pts(raw: u32, prev: Option<u64>) -> u64 {
    match prev {
        None => u64::from(raw),
        Some(prev) => {
            let d = raw.wrapping_sub(prev as u32) as i32;
            prev.saturating_add_signed(i64::from(d))
        }
    }
}

/// Decode time in µs of a frame with presentation time `pts` and composition offset `cto`
/// (both in the track's `clock`).
pub(crate) fn dts_us(pts: u64, cto: u32, clock: u32) -> u64 {
    (u128::from(pts.saturating_sub(u64::from(cto))) * 1_000_000 / u128::from(clock.max(1))) as u64
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;
    use segue_wire::rtp::FrameInfo;

    fn frame(seq: u16, ts: u32) -> ReceivedFrame {
        ReceivedFrame {
            track: 0,
            first_seq: seq,
            last_seq: seq,
            timestamp: ts,
            info: FrameInfo {
                keyframe: false,
                cto: 0,
            },
            data: Bytes::new(),
            wire_bytes: 0,
        }
    }

    fn track() -> Track {
        Track::new(
            1000,
            Codec::Aac {
                config: Bytes::from_static(&[0x11, 0x90]),
                channels: 2,
            },
        )
    }

    #[test]
    fn sequence_numbers_and_timestamps_unwrap_across_their_wrap() {
        let mut t = track();
        t.next_seq = Some(65_534);
        assert_eq!(t.extend(65_535), 65_535);
        assert_eq!(t.extend(1), 65_537, "past the wrap");
        assert_eq!(t.extend(65_530), 65_530, "behind, not a wrap ahead");
        assert_eq!(unwrap_pts(5, Some(u64::from(u32::MAX) - 5)), 1 << 32 | 5);
        assert_eq!(unwrap_pts(u32::MAX, Some(1 << 32 | 3)), u64::from(u32::MAX));
        assert_eq!(dts_us(3000, 1000, 1000), 2_000_000);
    }

    #[test]
    fn only_media_held_in_order_counts_as_buffered() {
        let mut t = track();
        assert!(t.receive(frame(10, 0)).is_some(), "before the numbering");
        t.next_seq = Some(10);
        t.offset = Some(0);
        for (seq, ts) in [(10, 0), (11, 100), (13, 300)] {
            assert!(t.receive(frame(seq, ts)).is_none());
        }
        // 10 and 11 are in order; 13 waits behind the hole at 12.
        assert_eq!(t.buffered_us(), 100_000);
        t.receive(frame(12, 200));
        assert_eq!(t.buffered_us(), 300_000);
    }

    #[test]
    fn a_buffer_deeper_than_half_the_sequence_space_stays_in_order() {
        // 30 s of 20 Mbit/s video is ~60 000 packets: more than 32 768, so numbers extended
        // against the next frame to play would fold back behind it.
        let mut t = track();
        t.next_seq = Some(65_000);
        t.offset = Some(0);
        let frames = 20_000u32;
        for i in 0..frames {
            // Three packets a frame, 1 ms of media each.
            let first = (65_000 + 3 * i) as u16;
            let mut f = frame(first, i);
            f.last_seq = first.wrapping_add(2);
            assert!(t.receive(f).is_none());
        }
        assert_eq!(t.pending.len(), frames as usize);
        assert_eq!(
            t.pending.keys().last().copied(),
            Some(65_000 + 3 * i64::from(frames - 1)),
            "numbered in arrival order across several wraps"
        );
        assert_eq!(t.buffered_us(), u64::from(frames - 1) * 1000);
        // Playing from the front walks every frame by its own number.
        t.carry_over();
        assert_eq!(t.carry.len(), frames as usize);
    }

    #[test]
    fn a_failover_carries_what_was_held_in_order_and_drops_the_rest() {
        let mut t = track();
        t.next_seq = Some(10);
        t.offset = Some(50);
        t.last_pts = Some(0);
        t.last_dts_us = Some(0);
        for (seq, ts) in [(10, 150), (11, 250), (14, 550)] {
            t.receive(frame(seq, ts));
        }
        t.carry_over();
        let carried: Vec<u64> = t.carry.iter().map(|(pts, _)| *pts).collect();
        assert_eq!(carried, [100, 200], "pts, the old offset taken off");
        assert_eq!(t.played_through_us, Some(200_000));
        assert!(t.pending.is_empty() && t.next_seq.is_none() && t.offset.is_none());
        // A second failover before anything was played carries nothing twice.
        t.next_seq = Some(500);
        t.offset = Some(0);
        t.receive(frame(500, 200));
        t.receive(frame(501, 300));
        t.carry_over();
        let carried: Vec<u64> = t.carry.iter().map(|(pts, _)| *pts).collect();
        assert_eq!(carried, [100, 200, 300]);
        assert_eq!(t.played_through_us, Some(300_000));
    }
}
