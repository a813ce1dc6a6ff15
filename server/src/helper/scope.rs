//! Scopes: how far a peer is, and so how often it hears from us (docs/HELPERS.md).
//!
//! A peer's scope comes from configuration, or is derived as the farther of two distances:
//! **network** (the measured round-trip time against [`RTT_LOCAL`], [`RTT_REGIONAL`],
//! [`RTT_NATIONAL`]) and **temporal** (how stale what it tells us can be: the mean interval
//! between its adverts, against the periods of the scopes). A peer that advertises every 30 s
//! is national to us however near it is, because what we know of it is up to 30 s old.

use std::time::Duration;

/// Round trips below this are local.
pub const RTT_LOCAL: Duration = Duration::from_millis(5);
/// Below this, regional.
pub const RTT_REGIONAL: Duration = Duration::from_millis(30);
/// Below this, national; above, global.
pub const RTT_NATIONAL: Duration = Duration::from_millis(100);

/// How far a peer is, nearest first.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Scope {
    Local,
    Regional,
    National,
    Global,
}

impl Scope {
    pub const ALL: [Scope; 4] = [
        Scope::Local,
        Scope::Regional,
        Scope::National,
        Scope::Global,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Scope::Local => "local",
            Scope::Regional => "regional",
            Scope::National => "national",
            Scope::Global => "global",
        }
    }

    pub fn parse(s: &str) -> Result<Self, String> {
        Scope::ALL
            .into_iter()
            .find(|x| x.name() == s)
            .ok_or_else(|| format!("unknown scope {s:?} (local, regional, national, global)"))
    }

    /// The scope a round-trip time puts a peer in.
    pub fn by_rtt(rtt: Duration) -> Self {
        if rtt < RTT_LOCAL {
            Scope::Local
        } else if rtt < RTT_REGIONAL {
            Scope::Regional
        } else if rtt < RTT_NATIONAL {
            Scope::National
        } else {
            Scope::Global
        }
    }

    /// The scope whose period covers `interval` between a peer's adverts (10 % slack).
    pub fn by_staleness(interval: Duration, periods: &Periods) -> Self {
        Scope::ALL
            .into_iter()
            .find(|&s| interval.as_secs_f64() <= periods.of(s).as_secs_f64() * 1.1)
            .unwrap_or(Scope::Global)
    }

    /// The rule: the farther of the network and the temporal distance (either unknown: the
    /// other; both unknown: global, the cautious one, until something is measured).
    pub fn derive(rtt: Option<Duration>, interval: Option<Duration>, periods: &Periods) -> Self {
        let by_rtt = rtt.map(Scope::by_rtt);
        let by_time = interval.map(|i| Scope::by_staleness(i, periods));
        match (by_rtt, by_time) {
            (Some(a), Some(b)) => a.max(b),
            (Some(a), None) | (None, Some(a)) => a,
            (None, None) => Scope::Global,
        }
    }
}

impl std::fmt::Display for Scope {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// Advert period per scope; what a receiver hears expires after [`EXPIRY_PERIODS`] of them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Periods(pub [Duration; 4]);

/// Advertised holdings expire after this many of their sender's periods without news.
pub const EXPIRY_PERIODS: u32 = 3;

impl Default for Periods {
    fn default() -> Self {
        Periods([
            Duration::from_secs(1),
            Duration::from_secs(5),
            Duration::from_secs(30),
            Duration::from_secs(120),
        ])
    }
}

impl Periods {
    pub fn of(&self, s: Scope) -> Duration {
        self.0[s as usize]
    }

    /// From "1,5,30,120" (seconds, fractions allowed), each at least 50 ms and not shorter
    /// than the nearer scope's.
    pub fn parse(s: &str) -> Result<Self, String> {
        let v: Vec<f64> = s
            .split(',')
            .map(|x| x.trim().parse::<f64>().map_err(|e| format!("{x:?}: {e}")))
            .collect::<Result<_, _>>()?;
        let [a, b, c, d] = v[..] else {
            return Err("four periods, local,regional,national,global (seconds)".into());
        };
        let mut out = [Duration::ZERO; 4];
        for (k, x) in [a, b, c, d].into_iter().enumerate() {
            if !(x.is_finite() && (0.05..=86_400.0).contains(&x)) {
                return Err(format!("period {x} s out of 0.05..86400"));
            }
            out[k] = Duration::from_secs_f64(x);
            if k > 0 && out[k] < out[k - 1] {
                return Err("periods must not shrink with distance".into());
            }
        }
        Ok(Periods(out))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_farther_distance_decides() {
        let p = Periods::default();
        let ms = Duration::from_millis;
        assert_eq!(Scope::by_rtt(ms(1)), Scope::Local);
        assert_eq!(Scope::by_rtt(ms(20)), Scope::Regional);
        assert_eq!(Scope::by_rtt(ms(60)), Scope::National);
        assert_eq!(Scope::by_rtt(ms(250)), Scope::Global);
        // Near on the network, but its news comes every 30 s: national.
        assert_eq!(
            Scope::derive(Some(ms(1)), Some(ms(30_000)), &p),
            Scope::National
        );
        // Far on the network, frequent news: still as far as the network says.
        assert_eq!(
            Scope::derive(Some(ms(60)), Some(ms(900)), &p),
            Scope::National
        );
        assert_eq!(Scope::derive(None, Some(ms(1000)), &p), Scope::Local);
        assert_eq!(Scope::derive(None, None, &p), Scope::Global);
        assert_eq!(Scope::by_staleness(ms(500_000), &p), Scope::Global);
    }

    #[test]
    fn periods_parse_and_grow() {
        let p = Periods::parse("0.5, 2, 10, 60").unwrap();
        assert_eq!(p.of(Scope::Local), Duration::from_millis(500));
        assert_eq!(p.of(Scope::Global), Duration::from_secs(60));
        assert!(Periods::parse("5,1,30,120").is_err());
        assert!(Periods::parse("1,5,30").is_err());
        assert!(Periods::parse("0,5,30,120").is_err());
        assert!(Periods::parse("1,x,30,120").is_err());
    }
}
