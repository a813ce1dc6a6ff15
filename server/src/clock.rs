//! The two clocks nodes read: wall time (persisted and operator-facing times) and a
//! process-wide monotonic millisecond count (relative deadlines, idle times).

use std::sync::OnceLock;
use std::time::Instant;

/// Unix time now, seconds (hint times, popularity that survives restarts).
pub fn unix_now() -> f64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64())
}

/// Milliseconds since the first call in this process (monotonic).
pub fn monotonic_ms() -> u64 {
    static EPOCH: OnceLock<Instant> = OnceLock::new();
    EPOCH.get_or_init(Instant::now).elapsed().as_millis() as u64
}

/// A time `v` in a clock of `from` Hz in one of `to` Hz (`v * to / from`), floored, without
/// overflow: media timestamps between a track's clock and microseconds.
pub fn rescale(v: u64, from: u32, to: u32) -> u64 {
    if from == to || from == 0 {
        return v;
    }
    (u128::from(v) * u128::from(to) / u128::from(from)) as u64
}
