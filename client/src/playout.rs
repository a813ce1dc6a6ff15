//! The playout clock both lab players share (`segue-play` and the lab's HLS player), so a
//! stall means the same thing for both: media time runs with wall time from playback start,
//! stands still while a stall lasts, and the stall time is counted.

use std::time::Duration;

use std::time::Instant;

/// Media position and stall accounting of one play, from playback start.
#[derive(Debug, Clone)]
pub struct PlayoutClock {
    started: Instant,
    stall_total: Duration,
    stalled_since: Option<Instant>,
}

impl PlayoutClock {
    /// Playback starts at `at`.
    pub fn start(at: Instant) -> Self {
        Self {
            started: at,
            stall_total: Duration::ZERO,
            stalled_since: None,
        }
    }

    /// When playback started.
    pub fn started(&self) -> Instant {
        self.started
    }

    /// Media position at `now`, µs from playback start (frozen while stalled).
    pub fn position_us(&self, now: Instant) -> u64 {
        self.stalled_since
            .unwrap_or(now)
            .saturating_duration_since(self.started)
            .saturating_sub(self.stall_total)
            .as_micros() as u64
    }

    /// Whether media is `missing` at `now`: starts or ends a stall. True when a stall begins.
    pub fn update(&mut self, missing: bool, now: Instant) -> bool {
        match (missing, self.stalled_since) {
            (true, None) => {
                self.stalled_since = Some(now);
                true
            }
            (false, Some(s)) => {
                self.stall_total += now.saturating_duration_since(s);
                self.stalled_since = None;
                false
            }
            _ => false,
        }
    }

    /// When the media position reaches `media_us` (µs from playback start): `None` while
    /// stalled, since the position stands still until media arrives (a past instant when it
    /// has been reached already).
    pub fn when(&self, media_us: u64) -> Option<Instant> {
        if self.stalled_since.is_some() {
            return None;
        }
        Some(self.started + self.stall_total + Duration::from_micros(media_us))
    }

    pub fn is_stalled(&self) -> bool {
        self.stalled_since.is_some()
    }

    /// How long the stall in progress has lasted (zero when not stalled).
    pub fn stalled_for(&self, now: Instant) -> Duration {
        self.stalled_since
            .map_or(Duration::ZERO, |s| now.saturating_duration_since(s))
    }

    /// Time stalled so far, the stall in progress included.
    pub fn stall_time(&self, now: Instant) -> Duration {
        self.stall_total + self.stalled_for(now)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn media_time_stands_still_during_a_stall() {
        let t0 = Instant::now();
        let ms = |n: u64| t0 + Duration::from_millis(n);
        let mut c = PlayoutClock::start(t0);
        assert_eq!(c.position_us(ms(1000)), 1_000_000);
        assert!(c.update(true, ms(1000)), "a stall begins");
        assert!(!c.update(true, ms(1200)), "the same stall goes on");
        assert!(c.is_stalled());
        assert_eq!(c.position_us(ms(1500)), 1_000_000);
        assert_eq!(c.stalled_for(ms(1500)), Duration::from_millis(500));
        assert!(!c.update(false, ms(1600)));
        assert_eq!(c.position_us(ms(2000)), 1_400_000);
        assert_eq!(c.stall_time(ms(2000)), Duration::from_millis(600));
        // A second stall adds up, counting while in progress.
        c.update(true, ms(3000));
        assert_eq!(c.stall_time(ms(3100)), Duration::from_millis(700));
        assert_eq!(c.started(), t0);
    }

    #[test]
    fn the_instant_a_media_position_is_reached_follows_the_stalls() {
        let t0 = Instant::now();
        let ms = |n: u64| t0 + Duration::from_millis(n);
        let mut c = PlayoutClock::start(t0);
        assert_eq!(c.when(250_000), Some(ms(250)));
        c.update(true, ms(1000));
        assert_eq!(
            c.when(1_500_000),
            None,
            "no instant while the clock stands still"
        );
        c.update(false, ms(1300));
        // 300 ms were stalled: every later position comes 300 ms later.
        assert_eq!(c.when(1_500_000), Some(ms(1800)));
        assert_eq!(c.position_us(ms(1800)), 1_500_000);
    }
}
