//! How far ahead of real time a paced session sends: a sans-IO rule fed the path's RTTs.
//!
//! A play starts with the configured send-ahead (at least [`SEND_AHEAD_RTTS`] round trips of
//! the path): enough for the player's start-up buffer and a few loss recoveries. From there
//! the send-ahead grows by [`SEND_AHEAD_GROWTH`] per second of play, up to a bound, so the
//! player's buffer deepens as an HLS player's does and rides out an outage longer than two
//! seconds. It grows only while the path holds no standing queue (smoothed RTT within
//! [`QUEUE_FACTOR`] × the least, plus [`QUEUE_SLACK`]): on a slow link with a deep queue,
//! sending faster than real time only fills the queue, raises the RTT and with it the probe
//! timeout, and a loss behind the queue then costs seconds (docs/TRANSPORT.md, "Growing the
//! send-ahead"). Off unless the bound is above the first send-ahead.

use std::time::{Duration, Instant};

/// Round trips of the path a paced session sends ahead at least.
pub const SEND_AHEAD_RTTS: u32 = 8;

/// Seconds of send-ahead a paced session gains per second of play while the path allows:
/// media then leaves at up to twice real time.
pub const SEND_AHEAD_GROWTH: f64 = 1.0;

/// The smoothed RTT over the least above which the path counts as queued.
pub const QUEUE_FACTOR: f64 = 1.5;

/// Added to the queued threshold: jitter and ACK delay on a short path are not a queue.
pub const QUEUE_SLACK: Duration = Duration::from_millis(20);

/// The send-ahead of one paced sender.
#[derive(Debug, Clone)]
pub struct SendAhead {
    max: Duration,
    grown: Duration,
    at: Instant,
}

impl SendAhead {
    /// A sender starting at `now` whose send-ahead grows up to `max`.
    pub fn new(now: Instant, max: Duration) -> Self {
        Self {
            max,
            grown: Duration::ZERO,
            at: now,
        }
    }

    /// The send-ahead at `now` over a first send-ahead of `base`, given the path's smoothed
    /// and least RTT: the time since the last call adds to the growth only if the path is
    /// not queued now.
    pub fn at(
        &mut self,
        now: Instant,
        base: Duration,
        srtt: Duration,
        min_rtt: Duration,
    ) -> Duration {
        let dt = now.saturating_duration_since(self.at);
        self.at = self.at.max(now);
        if !queued(srtt, min_rtt) {
            self.grown = self.grown.saturating_add(dt.mul_f64(SEND_AHEAD_GROWTH));
        }
        self.current(base)
    }

    /// The send-ahead over `base` as last grown, without reading the path.
    pub fn current(&mut self, base: Duration) -> Duration {
        self.grown = self.grown.min(self.max.max(base) - base);
        base + self.grown
    }

    /// Whether the send-ahead over `base` can still grow: a sender that cannot need not
    /// read the path's RTTs.
    pub fn grows(&self, base: Duration) -> bool {
        self.max > base + self.grown
    }

    /// Whether the path was last read at least `every` before `now`.
    pub fn stale(&self, now: Instant, every: Duration) -> bool {
        now.saturating_duration_since(self.at) >= every
    }
}

/// Whether a path with this smoothed and least RTT holds a standing queue.
pub fn queued(srtt: Duration, min_rtt: Duration) -> bool {
    srtt > min_rtt.mul_f64(QUEUE_FACTOR) + QUEUE_SLACK
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: fn(u64) -> Duration = Duration::from_millis;

    #[test]
    fn the_send_ahead_grows_while_the_path_is_clear_up_to_its_bound() {
        let t0 = Instant::now();
        let mut a = SendAhead::new(t0, Duration::from_secs(30));
        let (base, clear) = (MS(2000), (MS(45), MS(40)));
        assert_eq!(a.at(t0, base, clear.0, clear.1), MS(2000));
        // A second per second of play.
        assert_eq!(a.at(t0 + MS(10_000), base, clear.0, clear.1), MS(12_000));
        // Up to the bound, never past it.
        assert_eq!(a.at(t0 + MS(60_000), base, clear.0, clear.1), MS(30_000));
        assert_eq!(a.at(t0 + MS(90_000), base, clear.0, clear.1), MS(30_000));
    }

    #[test]
    fn a_queued_path_holds_the_send_ahead_where_it_is() {
        let t0 = Instant::now();
        let mut a = SendAhead::new(t0, Duration::from_secs(30));
        let base = MS(2000);
        assert_eq!(a.at(t0 + MS(3000), base, MS(45), MS(40)), MS(5000));
        // 20 ms path, 285 ms smoothed (a slow last mile's queue): no growth, no shrinking.
        assert_eq!(a.at(t0 + MS(8000), base, MS(285), MS(20)), MS(5000));
        // Clear again: growth goes on from there, counting only the clear time.
        assert_eq!(a.at(t0 + MS(9000), base, MS(25), MS(20)), MS(6000));
    }

    #[test]
    fn the_queue_threshold_leaves_jitter_and_long_paths_alone() {
        assert!(!queued(MS(30), MS(20)), "a short path's jitter");
        assert!(!queued(MS(440), MS(300)), "a long path with a little queue");
        assert!(queued(MS(285), MS(20)));
        assert!(queued(MS(700), MS(300)));
    }

    #[test]
    fn a_first_send_ahead_above_the_bound_is_kept() {
        let t0 = Instant::now();
        let mut a = SendAhead::new(t0, MS(1000));
        assert_eq!(a.at(t0 + MS(5000), MS(2400), MS(300), MS(300)), MS(2400));
        assert!(!a.grows(MS(2400)));
    }

    #[test]
    fn a_bound_equal_to_the_first_send_ahead_never_grows() {
        // The default: --send-ahead-max-ms equal to --send-ahead-ms.
        let t0 = Instant::now();
        let mut a = SendAhead::new(t0, MS(2000));
        assert!(!a.grows(MS(2000)));
        assert_eq!(a.at(t0 + MS(60_000), MS(2000), MS(21), MS(20)), MS(2000));
        assert!(
            a.grows(MS(1000)),
            "a shorter first send-ahead can grow to the bound"
        );
    }
}
