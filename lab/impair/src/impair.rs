//! The link model of the impairment relay, sans-IO: given a packet's arrival time and size, it
//! says when (and how many times) the packet leaves, or that it is dropped. Seeded, so the same
//! seed and the same arrivals give the same fates. `relay` moves real packets through it.
//!
//! Per packet, in order: blackhole window (dropped while the link is down), loss (Bernoulli or
//! Gilbert-Elliott), rate limit (serialised at `rate_kbps` behind a tail-drop queue of
//! `queue_bytes`), then delay + jitter. Packets leave in arrival order (jitter does not
//! reorder) unless `jitter_reorders` (each packet its own delay, as netem's jitter) or for the
//! `reorder` fraction, which skips the delay and overtakes what is in flight (as netem's
//! `reorder`). A `duplicate` fraction leaves twice.

use std::time::Duration;

use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};
use serde::Deserialize;

/// How jitter is distributed around the fixed delay.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Jitter {
    /// Uniform in ±jitter.
    #[default]
    Uniform,
    /// Normal with standard deviation `jitter`, cut at ±3σ.
    Normal,
}

/// One direction of a link. Every field defaults to "no impairment".
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LinkSpec {
    /// One-way delay, milliseconds.
    pub delay_ms: f64,
    /// Jitter, milliseconds (see `jitter_dist`).
    pub jitter_ms: f64,
    pub jitter_dist: Jitter,
    /// Jitter reorders: each packet leaves at its own delay + jitter, so a later packet
    /// with less jitter overtakes an earlier one (Wi-Fi, multipath). Default: packets keep
    /// their order (a later one waits for the one before).
    pub jitter_reorders: bool,
    /// Independent random loss, 0..1.
    pub loss: f64,
    /// Bursty loss (Gilbert-Elliott): mean loss rate, 0..1 (used with `burst_len`).
    pub bursty_loss: f64,
    /// Mean burst length in packets for `bursty_loss` (default 4).
    pub burst_len: f64,
    /// At most this many packets in a row lost by `loss` or `bursty_loss`; the next one
    /// passes (0: no limit). As the quic-network-simulator's drop-rate `burst_to_*`, which the
    /// quic-interop-runner's loss cases set to 3.
    pub max_loss_run: u32,
    /// This packet of the direction is lost, whatever else (1: the first; 0: none): one
    /// handshake packet exactly, say.
    pub drop_nth: u64,
    /// Fraction of packets that skip the delay and overtake earlier ones, 0..1.
    pub reorder: f64,
    /// Fraction of packets delivered twice, 0..1.
    pub duplicate: f64,
    /// Rate limit, kbit/s (0: none).
    pub rate_kbps: u64,
    /// Queue in front of the rate limit, bytes (default 64 KiB); arrivals beyond it are dropped.
    pub queue_bytes: u64,
    /// Link down for `blackhole_s` seconds every `blackhole_every_s` seconds (the first
    /// window starts at `blackhole_every_s - blackhole_s`).
    pub blackhole_s: f64,
    pub blackhole_every_s: f64,
    /// From `change_at_s` seconds after the link's start (0: never) it behaves as `then`
    /// (which may change again): a link that worsens or recovers mid-run.
    pub change_at_s: f64,
    pub then: Option<Box<LinkSpec>>,
}

impl LinkSpec {
    /// True when the link changes nothing.
    pub fn is_clean(&self) -> bool {
        *self == Self::default()
    }

    /// Checks ranges; a clear message for the first bad field.
    pub fn validate(&self) -> Result<(), String> {
        let frac = [
            ("loss", self.loss),
            ("bursty_loss", self.bursty_loss),
            ("reorder", self.reorder),
            ("duplicate", self.duplicate),
        ];
        for (name, v) in frac {
            if !(0.0..=1.0).contains(&v) {
                return Err(format!("{name} must be within 0..1, not {v}"));
            }
        }
        for (name, v) in [
            ("delay_ms", self.delay_ms),
            ("jitter_ms", self.jitter_ms),
            ("burst_len", self.burst_len),
            ("blackhole_s", self.blackhole_s),
            ("blackhole_every_s", self.blackhole_every_s),
        ] {
            if !v.is_finite() || v < 0.0 {
                return Err(format!("{name} must be a non-negative number, not {v}"));
            }
        }
        if self.bursty_loss >= 1.0 {
            return Err("bursty_loss must be below 1".into());
        }
        if self.blackhole_s > 0.0 && self.blackhole_every_s <= self.blackhole_s {
            return Err("blackhole_every_s must be longer than blackhole_s".into());
        }
        if !self.change_at_s.is_finite() || self.change_at_s < 0.0 {
            return Err("change_at_s must be a non-negative number".into());
        }
        match &self.then {
            Some(next) => {
                if self.change_at_s <= 0.0 {
                    return Err("`then` needs change_at_s > 0".into());
                }
                if next.change_at_s > 0.0 && next.change_at_s <= self.change_at_s {
                    return Err("a later change_at_s must come after the earlier one".into());
                }
                next.validate().map_err(|e| format!("then: {e}"))
            }
            None if self.change_at_s > 0.0 => Err("change_at_s without `then`".into()),
            None => Ok(()),
        }
    }

    /// Parses `key=value,...` as on the command line, e.g. `delay_ms=50,jitter_ms=10,loss=0.01`.
    pub fn parse_kv(text: &str) -> Result<Self, String> {
        let toml_text: String = text
            .split(',')
            .map(str::trim)
            .filter(|kv| !kv.is_empty())
            .map(|kv| match kv.split_once('=') {
                Some((k, v)) if k.trim() == "jitter_dist" => {
                    format!("{} = \"{}\"\n", k.trim(), v.trim())
                }
                Some((k, v)) => format!("{} = {}\n", k.trim(), v.trim()),
                None => format!("{kv} = ?\n"),
            })
            .collect();
        let spec: Self = toml::from_str(&toml_text).map_err(|e| format!("link {text:?}: {e}"))?;
        spec.validate()?;
        Ok(spec)
    }
}

/// What happens to one packet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fate {
    /// Leaves at these times (since the link's start); the second is a duplicate.
    Deliver(Duration, Option<Duration>),
    Lost,
    Blackholed,
    /// The rate-limit queue was full.
    QueueFull,
}

/// The rate limiter of one direction of a link, shared by every flow crossing it (a link
/// has one capacity however many connections use it): when it is next free, seconds.
#[derive(Debug, Clone, Default)]
pub struct SharedRate(std::sync::Arc<std::sync::Mutex<f64>>);

/// One direction's state.
#[derive(Debug)]
pub struct Link {
    spec: LinkSpec,
    rng: SmallRng,
    /// Gilbert-Elliott: in the bad state.
    bad: bool,
    /// Packets lost in a row by the loss processes, up to now.
    loss_run: u32,
    /// Datagrams admitted so far.
    admitted: u64,
    /// When the rate limiter is next free, seconds.
    busy_until: SharedRate,
    /// Latest departure so far (FIFO).
    last_out: f64,
    /// Where the schedule (`change_at_s`, blackhole windows) counts from.
    clock: ScheduleClock,
}

/// Where a link's schedule counts from: its own start, or a moment given later (a lab
/// run's plays), so that every system compared meets the same windows at the same moment of
/// its plays, however long its set-up took.
#[derive(Debug, Clone, Copy, PartialEq)]
enum ScheduleClock {
    /// From the link's start (time 0).
    FromStart,
    /// Not yet: the link stays as at time 0 (first phase, no blackhole).
    Held,
    /// From this time since the link's start, seconds.
    From(f64),
}

impl Link {
    pub fn new(spec: LinkSpec, seed: u64) -> Self {
        Self::sharing(spec, seed, SharedRate::default())
    }

    /// A link whose rate limit (and queue) is `rate`, shared with other flows.
    pub fn sharing(spec: LinkSpec, seed: u64, rate: SharedRate) -> Self {
        Self {
            spec,
            rng: SmallRng::seed_from_u64(seed),
            bad: false,
            loss_run: 0,
            admitted: 0,
            busy_until: rate,
            last_out: 0.0,
            clock: ScheduleClock::FromStart,
        }
    }

    pub fn spec(&self) -> &LinkSpec {
        &self.spec
    }

    /// Holds the schedule (`change_at_s`, blackhole windows) at time 0 until
    /// [`Link::schedule_from`]: the link forwards as its first phase does, never blackholed.
    pub fn hold_schedule(&mut self) {
        self.clock = ScheduleClock::Held;
    }

    /// The schedule counts from `at` (since the link's start) on.
    pub fn schedule_from(&mut self, at: Duration) {
        self.clock = ScheduleClock::From(at.as_secs_f64());
    }

    /// The time on the schedule at `t` seconds since the link's start.
    fn schedule_time(&self, t: f64) -> f64 {
        match self.clock {
            ScheduleClock::FromStart => t,
            ScheduleClock::Held => 0.0,
            ScheduleClock::From(at) => (t - at).max(0.0),
        }
    }

    /// Whether the link is inside a blackhole window at `t` seconds of its schedule.
    pub fn down_at(&self, t: f64) -> bool {
        let s = &self.spec;
        s.blackhole_s > 0.0
            && t.rem_euclid(s.blackhole_every_s) >= s.blackhole_every_s - s.blackhole_s
    }

    /// Whether the loss processes take the next packet, within `max_loss_run`.
    fn lost(&mut self) -> bool {
        let lost = self.draw_loss();
        let max = self.spec.max_loss_run;
        if lost && (max == 0 || self.loss_run < max) {
            self.loss_run += 1;
            true
        } else {
            self.loss_run = 0;
            false
        }
    }

    fn draw_loss(&mut self) -> bool {
        let s = &self.spec;
        if s.bursty_loss > 0.0 {
            // Bad state loses everything; mean burst = burst_len, stationary loss = bursty_loss.
            let len = if s.burst_len > 0.0 {
                s.burst_len.max(1.0)
            } else {
                4.0
            };
            let r = 1.0 / len;
            let p = s.bursty_loss * r / (1.0 - s.bursty_loss);
            let flip: f64 = self.rng.random();
            self.bad = if self.bad { flip >= r } else { flip < p };
            if self.bad {
                return true;
            }
        }
        s.loss > 0.0 && self.rng.random::<f64>() < s.loss
    }

    fn jitter(&mut self) -> f64 {
        let j = self.spec.jitter_ms / 1000.0;
        if j <= 0.0 {
            return 0.0;
        }
        match self.spec.jitter_dist {
            Jitter::Uniform => self.rng.random_range(-j..=j),
            Jitter::Normal => {
                // Box-Muller.
                let u1: f64 = self.rng.random_range(f64::EPSILON..1.0);
                let u2: f64 = self.rng.random();
                let z = (-2.0 * u1.ln()).sqrt() * (2.0 * std::f64::consts::PI * u2).cos();
                z.clamp(-3.0, 3.0) * j
            }
        }
    }

    /// Moves to the next phase of the link once its time has come.
    fn advance(&mut self, t: f64) {
        while self.spec.change_at_s > 0.0 && t >= self.spec.change_at_s {
            let Some(next) = self.spec.then.take() else {
                break;
            };
            self.spec = *next;
            self.bad = false;
            self.loss_run = 0;
        }
    }

    /// The fate of a packet of `len` bytes arriving at `now` (since the link's start).
    pub fn admit(&mut self, now: Duration, len: usize) -> Fate {
        let t = now.as_secs_f64();
        let on_schedule = self.schedule_time(t);
        self.advance(on_schedule);
        self.admitted += 1;
        if self.admitted == self.spec.drop_nth {
            return Fate::Lost;
        }
        if self.down_at(on_schedule) {
            return Fate::Blackholed;
        }
        if self.lost() {
            return Fate::Lost;
        }
        self.schedule(t, len)
    }

    /// For a byte stream (TCP): `len` bytes that would travel as `len / mss` packets. The
    /// loss process is drawn once per packet, as for datagrams; the result is the fate of
    /// the bytes (never `Lost`: a stream retransmits) and how many of their packets were lost.
    pub fn admit_stream(&mut self, now: Duration, len: usize, mss: usize) -> (Fate, usize) {
        let t = now.as_secs_f64();
        let on_schedule = self.schedule_time(t);
        self.advance(on_schedule);
        if self.down_at(on_schedule) {
            return (Fate::Blackholed, 0);
        }
        let packets = len.div_ceil(mss.max(1)).max(1);
        let lost = (0..packets).filter(|_| self.lost()).count();
        (self.schedule(t, len), lost)
    }

    fn schedule(&mut self, t: f64, len: usize) -> Fate {
        let mut ready = t;
        if self.spec.rate_kbps > 0 {
            let bps = self.spec.rate_kbps as f64 * 1000.0 / 8.0;
            let queue = if self.spec.queue_bytes > 0 {
                self.spec.queue_bytes as f64
            } else {
                64.0 * 1024.0
            };
            let mut busy = self.busy_until.0.lock().unwrap_or_else(|e| e.into_inner());
            let backlog = (*busy - t).max(0.0) * bps;
            if backlog + len as f64 > queue + bps * 0.001 {
                return Fate::QueueFull;
            }
            *busy = busy.max(t) + len as f64 / bps;
            ready = *busy;
        }
        let reorder = self.spec.reorder > 0.0 && self.rng.random::<f64>() < self.spec.reorder;
        let out = if reorder {
            ready
        } else {
            let d = (self.spec.delay_ms / 1000.0 + self.jitter()).max(0.0);
            if self.spec.jitter_reorders {
                ready + d
            } else {
                let out = (ready + d).max(self.last_out);
                self.last_out = out;
                out
            }
        };
        let dup = self.spec.duplicate > 0.0 && self.rng.random::<f64>() < self.spec.duplicate;
        let at = Duration::from_secs_f64(out);
        Fate::Deliver(at, dup.then_some(at))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(spec: &LinkSpec, seed: u64, n: usize, gap: Duration, len: usize) -> Vec<Fate> {
        let mut l = Link::new(spec.clone(), seed);
        (0..n).map(|i| l.admit(gap * i as u32, len)).collect()
    }

    fn delivered(f: &[Fate]) -> Vec<Duration> {
        f.iter()
            .filter_map(|f| match f {
                Fate::Deliver(a, _) => Some(*a),
                _ => None,
            })
            .collect()
    }

    #[test]
    fn a_link_changes_at_its_time() {
        let spec = LinkSpec::parse_kv("delay_ms=10").unwrap();
        let spec = LinkSpec {
            change_at_s: 1.0,
            then: Some(Box::new(LinkSpec {
                delay_ms: 100.0,
                change_at_s: 2.0,
                then: Some(Box::new(LinkSpec::default())),
                ..Default::default()
            })),
            ..spec
        };
        spec.validate().unwrap();
        let f = run(&spec, 1, 6, Duration::from_millis(500), 1200);
        let delays: Vec<u64> = delivered(&f)
            .iter()
            .enumerate()
            .map(|(i, at)| (at.as_millis() as u64).saturating_sub(500 * i as u64))
            .collect();
        assert_eq!(delays, [10, 10, 100, 100, 0, 0]);
        let bad = LinkSpec {
            change_at_s: 0.0,
            then: Some(Box::new(LinkSpec::default())),
            ..Default::default()
        };
        assert!(bad.validate().unwrap_err().contains("change_at_s"));
        let toml: LinkSpec =
            toml::from_str("delay_ms = 5\nchange_at_s = 3\nthen = { rate_kbps = 300 }").unwrap();
        assert_eq!(toml.then.unwrap().rate_kbps, 300);
    }

    #[test]
    fn jitter_reorders_only_when_asked() {
        let mut spec = LinkSpec::parse_kv("delay_ms=50,jitter_ms=20").unwrap();
        let count_inversions = |spec: &LinkSpec| {
            let d = delivered(&run(spec, 3, 2000, Duration::from_millis(1), 1200));
            assert_eq!(d.len(), 2000);
            d.windows(2).filter(|w| w[1] < w[0]).count()
        };
        assert_eq!(count_inversions(&spec), 0);
        spec.jitter_reorders = true;
        // Packets 1 ms apart with ±20 ms of jitter: most pairs cross.
        let inv = count_inversions(&spec);
        assert!(inv > 500, "{inv} inversions");
        let spec = LinkSpec::parse_kv("delay_ms=50,jitter_ms=20,jitter_reorders=true").unwrap();
        assert!(spec.jitter_reorders);
    }

    #[test]
    fn fixed_delay() {
        let spec = LinkSpec {
            delay_ms: 40.0,
            ..Default::default()
        };
        let f = run(&spec, 1, 10, Duration::from_millis(5), 1200);
        for (i, at) in delivered(&f).iter().enumerate() {
            let want = Duration::from_millis(5 * i as u64 + 40);
            assert!(
                at.abs_diff(want) < Duration::from_micros(1),
                "{at:?} vs {want:?}"
            );
        }
    }

    #[test]
    fn jitter_stays_in_bounds_keeps_order_and_has_the_right_spread() {
        for dist in [Jitter::Uniform, Jitter::Normal] {
            let spec = LinkSpec {
                delay_ms: 100.0,
                jitter_ms: 20.0,
                jitter_dist: dist,
                ..Default::default()
            };
            // Far apart: FIFO never binds, so the delays are the model's own.
            let gap = Duration::from_millis(200);
            let f = run(&spec, 7, 5000, gap, 1200);
            let delays: Vec<f64> = delivered(&f)
                .iter()
                .enumerate()
                .map(|(i, at)| (at.as_secs_f64() - gap.as_secs_f64() * i as f64) * 1000.0)
                .collect();
            let mean = delays.iter().sum::<f64>() / delays.len() as f64;
            let sd = (delays.iter().map(|d| (d - mean).powi(2)).sum::<f64>() / delays.len() as f64)
                .sqrt();
            assert!((mean - 100.0).abs() < 1.5, "{dist:?} mean {mean}");
            let (lo, hi) = match dist {
                Jitter::Uniform => (80.0, 120.0),
                Jitter::Normal => (40.0, 160.0),
            };
            assert!(delays.iter().all(|d| (lo - 1e-6..=hi + 1e-6).contains(d)));
            // Uniform ±20 has sd 20/√3 ≈ 11.5; normal sd 20 (slightly less after the cut).
            let want = if dist == Jitter::Uniform { 11.55 } else { 19.7 };
            assert!((sd - want).abs() < 1.0, "{dist:?} sd {sd}");
            // Close together: departures never go backwards.
            let f = run(&spec, 7, 2000, Duration::from_millis(1), 1200);
            assert!(delivered(&f).windows(2).all(|w| w[0] <= w[1]));
        }
    }

    #[test]
    fn random_loss_rate_is_close() {
        let spec = LinkSpec {
            loss: 0.05,
            ..Default::default()
        };
        let f = run(&spec, 3, 100_000, Duration::from_micros(10), 100);
        let lost = f.iter().filter(|f| **f == Fate::Lost).count() as f64 / f.len() as f64;
        assert!((lost - 0.05).abs() < 0.003, "{lost}");
    }

    #[test]
    fn bursty_loss_rate_and_burst_length() {
        let spec = LinkSpec {
            bursty_loss: 0.02,
            burst_len: 4.0,
            ..Default::default()
        };
        let f = run(&spec, 5, 400_000, Duration::from_micros(10), 100);
        let lost: Vec<bool> = f.iter().map(|f| *f == Fate::Lost).collect();
        let rate = lost.iter().filter(|l| **l).count() as f64 / lost.len() as f64;
        assert!((rate - 0.02).abs() < 0.003, "{rate}");
        let bursts = lost.windows(2).filter(|w| !w[0] && w[1]).count() as f64;
        let mean_burst = lost.iter().filter(|l| **l).count() as f64 / bursts;
        assert!((mean_burst - 4.0).abs() < 0.4, "{mean_burst}");
    }

    /// The longest run of `true`s.
    fn longest_run(lost: &[bool]) -> usize {
        lost.split(|l| !l).map(<[bool]>::len).max().unwrap_or(0)
    }

    #[test]
    fn loss_runs_stop_at_max_loss_run() {
        let losses = |spec: &LinkSpec| -> Vec<bool> {
            let f = run(spec, 9, 100_000, Duration::from_micros(10), 100);
            f.iter().map(|f| *f == Fate::Lost).collect()
        };
        let free = LinkSpec {
            loss: 0.3,
            ..Default::default()
        };
        // 30 % independent loss: runs of 4 and more come up (0.3^4 ≈ 1 in 120 packets)...
        assert!(longest_run(&losses(&free)) > 5);
        // ...but not with a limit of 3, whose next packet passes; the rate stays near
        // (1 - 0.3^3 of the runs that would go on are cut short).
        let capped = LinkSpec {
            max_loss_run: 3,
            ..free
        };
        let lost = losses(&capped);
        assert_eq!(longest_run(&lost), 3);
        let rate = lost.iter().filter(|l| **l).count() as f64 / lost.len() as f64;
        assert!((0.27..0.30).contains(&rate), "{rate}");
        // The same for bursty loss, whose bad state would otherwise lose ~8 in a row.
        let bursty = LinkSpec {
            bursty_loss: 0.1,
            burst_len: 8.0,
            max_loss_run: 2,
            ..Default::default()
        };
        assert_eq!(longest_run(&losses(&bursty)), 2);
    }

    #[test]
    fn drop_nth_loses_that_packet_only() {
        let spec = LinkSpec::parse_kv("drop_nth=2").unwrap();
        let f = run(&spec, 1, 5, Duration::from_millis(1), 100);
        let lost: Vec<bool> = f.iter().map(|f| *f == Fate::Lost).collect();
        assert_eq!(lost, [false, true, false, false, false]);
    }

    #[test]
    fn rate_limit_paces_and_drops_beyond_the_queue() {
        // 8 Mbit/s = 1 MB/s: a 1000-byte packet takes 1 ms.
        let spec = LinkSpec {
            rate_kbps: 8000,
            queue_bytes: 10_000,
            ..Default::default()
        };
        // 100 packets at once: ~11 fit (queue + the one being sent), the rest are dropped.
        let f = run(&spec, 1, 100, Duration::ZERO, 1000);
        let out = delivered(&f);
        assert!((10..=12).contains(&out.len()), "{}", out.len());
        assert!(f.contains(&Fate::QueueFull));
        for (i, at) in out.iter().enumerate() {
            let want = Duration::from_millis(i as u64 + 1);
            assert!(at.abs_diff(want) < Duration::from_micros(1));
        }
        // Offered at 2 MB/s for 2 s: ~1 MB/s gets through.
        let f = run(&spec, 1, 4000, Duration::from_micros(500), 1000);
        let out = delivered(&f);
        let last = out.last().unwrap().as_secs_f64();
        let rate = out.len() as f64 * 1000.0 / last;
        assert!((rate - 1_000_000.0).abs() < 20_000.0, "{rate}");
    }

    #[test]
    fn flows_share_a_links_rate() {
        // Two flows through one 800 kbit/s link: together they get 100 kB/s, not twice that.
        let spec = LinkSpec {
            rate_kbps: 800,
            queue_bytes: 1 << 30,
            ..LinkSpec::default()
        };
        let shared = SharedRate::default();
        let mut a = Link::sharing(spec.clone(), 1, shared.clone());
        let mut b = Link::sharing(spec, 2, shared);
        let mut last = Duration::ZERO;
        for _ in 0..100 {
            for l in [&mut a, &mut b] {
                if let Fate::Deliver(at, _) = l.admit(Duration::ZERO, 1000) {
                    last = last.max(at);
                }
            }
        }
        // 200 kB at 100 kB/s: 2 s.
        assert!((last.as_secs_f64() - 2.0).abs() < 1e-6, "{last:?}");
    }

    #[test]
    fn stream_losses_are_drawn_per_packet() {
        let mut l = Link::new(
            LinkSpec {
                loss: 0.01,
                ..LinkSpec::default()
            },
            3,
        );
        // 10 000 reads of 14 480 bytes = 100 000 packets at 1 %: about 1000 lost.
        let mut lost = 0;
        for i in 0..10_000 {
            let (f, n) = l.admit_stream(Duration::from_millis(i), 14_480, 1448);
            assert!(matches!(f, Fate::Deliver(..)));
            lost += n;
        }
        assert!((800..1200).contains(&lost), "{lost}");
    }

    #[test]
    fn blackhole_windows() {
        let spec = LinkSpec {
            blackhole_s: 2.0,
            blackhole_every_s: 7.0,
            ..Default::default()
        };
        let l = Link::new(spec, 0);
        assert!(!l.down_at(0.0) && !l.down_at(4.9));
        assert!(l.down_at(5.0) && l.down_at(6.9));
        assert!(!l.down_at(7.0) && l.down_at(12.5) && !l.down_at(14.1));
        let f = run(l.spec(), 0, 1400, Duration::from_millis(10), 100);
        let holed = f.iter().filter(|f| **f == Fate::Blackholed).count();
        assert_eq!(holed, 400); // 5..7 s and 12..14 s
    }

    #[test]
    fn a_held_schedule_counts_from_the_moment_it_is_given() {
        let spec = LinkSpec {
            blackhole_s: 2.0,
            blackhole_every_s: 7.0,
            change_at_s: 3.0,
            then: Some(Box::new(LinkSpec {
                loss: 1.0,
                blackhole_s: 2.0,
                blackhole_every_s: 7.0,
                ..Default::default()
            })),
            ..Default::default()
        };
        let mut l = Link::new(spec, 0);
        l.hold_schedule();
        // Held: neither the blackhole at 5 s nor the change at 3 s happens.
        assert!(matches!(
            l.admit(Duration::from_secs(6), 100),
            Fate::Deliver(..)
        ));
        assert!(matches!(
            l.admit(Duration::from_secs(20), 100),
            Fate::Deliver(..)
        ));
        // From 20 s on: the window is 25..27 s and the change comes at 23 s.
        l.schedule_from(Duration::from_secs(20));
        assert!(matches!(
            l.admit(Duration::from_secs(22), 100),
            Fate::Deliver(..)
        ));
        assert_eq!(l.admit(Duration::from_millis(23_500), 100), Fate::Lost);
        assert_eq!(l.admit(Duration::from_secs(26), 100), Fate::Blackholed);
    }

    #[test]
    fn reorder_and_duplicate() {
        let spec = LinkSpec {
            delay_ms: 50.0,
            reorder: 0.1,
            duplicate: 0.05,
            ..Default::default()
        };
        let f = run(&spec, 9, 20_000, Duration::from_millis(1), 100);
        let out = delivered(&f);
        let overtakes = out.windows(2).filter(|w| w[1] < w[0]).count() as f64 / out.len() as f64;
        assert!((overtakes - 0.1).abs() < 0.02, "{overtakes}");
        let dups = f
            .iter()
            .filter(|f| matches!(f, Fate::Deliver(_, Some(_))))
            .count() as f64
            / f.len() as f64;
        assert!((dups - 0.05).abs() < 0.01, "{dups}");
    }

    #[test]
    fn same_seed_same_fates_other_seed_other_fates() {
        let spec = LinkSpec {
            delay_ms: 30.0,
            jitter_ms: 10.0,
            loss: 0.1,
            bursty_loss: 0.05,
            reorder: 0.05,
            duplicate: 0.02,
            rate_kbps: 10_000,
            ..Default::default()
        };
        let gap = Duration::from_micros(700);
        assert_eq!(
            run(&spec, 42, 5000, gap, 900),
            run(&spec, 42, 5000, gap, 900)
        );
        assert_ne!(
            run(&spec, 42, 5000, gap, 900),
            run(&spec, 43, 5000, gap, 900)
        );
    }

    #[test]
    fn parsing_and_validation() {
        let s =
            LinkSpec::parse_kv("delay_ms=50, jitter_ms=10,jitter_dist=normal,loss=0.01").unwrap();
        assert_eq!(s.delay_ms, 50.0);
        assert_eq!(s.jitter_dist, Jitter::Normal);
        assert!(LinkSpec::parse_kv("").unwrap().is_clean());
        assert!(LinkSpec::parse_kv("loss=2").unwrap_err().contains("loss"));
        assert!(LinkSpec::parse_kv("delay=5").is_err()); // unknown field
        assert!(LinkSpec::parse_kv("delay_ms").is_err());
        assert!(LinkSpec::parse_kv("blackhole_s=3,blackhole_every_s=2").is_err());
    }
}
