//! Scopes: how far a peer is, and so how often it hears from us (docs/HELPERS.md).
//!
//! A peer's scope comes from configuration, or is derived as the farther of two distances:
//! **network** (the measured round-trip time against [`RttLimits`], by default 5, 30 and
//! 100 ms) and **temporal** (how much staler what it tells us is than its period
//! promises: the mean interval between its adverts beyond the period they declare, against
//! the periods of the scopes). A peer near on the network whose adverts mostly get lost, so
//! that what we know of it is 10 s staler than it should be, is regional. (The period itself
//! is not the measure: it is our own choice for that peer reflected back, and would keep a
//! peer as far as it was first guessed.)

use std::time::Duration;

/// Round trips below `0` are local, below `1` regional, below `2` national, else global.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RttLimits(pub [Duration; 3]);

impl Default for RttLimits {
    fn default() -> Self {
        RttLimits([5, 30, 100].map(Duration::from_millis))
    }
}

impl RttLimits {
    /// From "5,30,100" (milliseconds, increasing).
    pub fn parse(s: &str) -> Result<Self, String> {
        let v: Vec<u64> = s
            .split(',')
            .map(|x| x.trim().parse::<u64>().map_err(|e| format!("{x:?}: {e}")))
            .collect::<Result<_, _>>()?;
        let [a, b, c] = v[..] else {
            return Err("three round trips, local,regional,national (ms)".into());
        };
        if !(0 < a && a < b && b < c && c <= 60_000) {
            return Err("round trips must increase, within 1..60000 ms".into());
        }
        Ok(RttLimits([a, b, c].map(Duration::from_millis)))
    }
}

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
    pub fn by_rtt(rtt: Duration, limits: &RttLimits) -> Self {
        let [local, regional, national] = limits.0;
        if rtt < local {
            Scope::Local
        } else if rtt < regional {
            Scope::Regional
        } else if rtt < national {
            Scope::National
        } else {
            Scope::Global
        }
    }

    /// The nearest scope whose period covers `late` (10 % slack): a peer whose word is that
    /// much staler than promised is at least that far.
    pub fn by_staleness(late: Duration, periods: &Periods) -> Self {
        Scope::ALL
            .into_iter()
            .find(|&s| late.as_secs_f64() <= periods.of(s).as_secs_f64() * 1.1)
            .unwrap_or(Scope::Global)
    }

    /// The rule: the farther of the network and the temporal distance (either unknown: the
    /// other; both unknown: global, the cautious one, until something is measured).
    pub fn derive(
        rtt: Option<Duration>,
        late: Option<Duration>,
        periods: &Periods,
        limits: &RttLimits,
    ) -> Self {
        let by_rtt = rtt.map(|r| Scope::by_rtt(r, limits));
        let by_time = late.map(|i| Scope::by_staleness(i, periods));
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
        let l = RttLimits::default();
        let ms = Duration::from_millis;
        assert_eq!(Scope::by_rtt(ms(1), &l), Scope::Local);
        assert_eq!(Scope::by_rtt(ms(20), &l), Scope::Regional);
        assert_eq!(Scope::by_rtt(ms(60), &l), Scope::National);
        assert_eq!(Scope::by_rtt(ms(250), &l), Scope::Global);
        // Near on the network, but its news comes 30 s later than promised: national.
        assert_eq!(
            Scope::derive(Some(ms(1)), Some(ms(30_000)), &p, &l),
            Scope::National
        );
        // Far on the network, news on time: as far as the network says.
        assert_eq!(
            Scope::derive(Some(ms(60)), Some(ms(900)), &p, &l),
            Scope::National
        );
        assert_eq!(Scope::derive(None, Some(ms(1000)), &p, &l), Scope::Local);
        assert_eq!(
            Scope::derive(Some(ms(1)), Some(ms(0)), &p, &l),
            Scope::Local
        );
        assert_eq!(
            Scope::derive(Some(ms(1)), Some(ms(4000)), &p, &l),
            Scope::Regional
        );
        assert_eq!(Scope::derive(None, None, &p, &l), Scope::Global);
        assert_eq!(Scope::by_staleness(ms(500_000), &p), Scope::Global);
    }

    #[test]
    fn rtt_limits_parse() {
        assert_eq!(
            RttLimits::parse("2, 20, 80").unwrap().0[1],
            Duration::from_millis(20)
        );
        assert!(RttLimits::parse("20,2,80").is_err());
        assert!(RttLimits::parse("0,2,80").is_err());
        assert!(RttLimits::parse("5,30").is_err());
        let wide = RttLimits::parse("50,100,200").unwrap();
        assert_eq!(
            Scope::by_rtt(Duration::from_millis(20), &wide),
            Scope::Local
        );
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
