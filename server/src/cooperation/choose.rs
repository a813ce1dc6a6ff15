//! Which source a segment is fetched from (pure): every helper that holds it, the helper that
//! owns it in our collective (which fetches what it lacks), and the origin, each with an
//! estimated delivery time from its round trip, recent throughput and the bytes already queued
//! on it. Helpers are preferred whenever they can deliver before the segment is due; the origin
//! is the last resort. A failed or timed-out source is excluded and the choice made again.

use std::time::Duration;

/// Throughput assumed for a source not measured yet, bytes/s (10 Mbit/s).
pub const UNMEASURED_BPS: f64 = 1_250_000.0;

/// Where a segment can come from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum SourceId {
    Origin,
    /// A peer, by its index in the helper's peer list.
    Peer(usize),
}

/// What is known of a source now.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Estimate {
    pub rtt: Duration,
    /// Recent throughput, bytes/s (0: not measured).
    pub throughput: f64,
    /// Bytes of exchanges in flight on it (its load).
    pub queued: u64,
}

impl Estimate {
    /// When `size` more bytes would arrive: a round trip, then everything queued before
    /// them and them at the measured rate.
    pub fn delivery(&self, size: u64) -> Duration {
        let rate = if self.throughput > 0.0 {
            self.throughput
        } else {
            UNMEASURED_BPS
        };
        self.rtt + Duration::from_secs_f64((self.queued + size) as f64 / rate)
    }
}

/// How a peer would serve a segment.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// It advertised holding it.
    Holder,
    /// It owns it in our collective but may lack it: it fetches it first.
    Owner,
}

#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Candidate {
    pub peer: usize,
    pub role: Role,
    pub est: Estimate,
}

/// The source for a segment of `size` bytes due in `time_left`, among `peers` (not already
/// tried) and the origin (`None`: already tried and failed). `None`: nothing left to try.
pub fn choose(
    size: u64,
    time_left: Duration,
    peers: &[Candidate],
    origin: Option<&Estimate>,
) -> Option<SourceId> {
    let origin_time = origin.map(|o| o.delivery(size));
    let time_of = |c: &Candidate| match c.role {
        Role::Holder => c.est.delivery(size),
        // The owner asks the origin first (or another helper): at least the origin's time.
        Role::Owner => c.est.delivery(size) + origin_time.unwrap_or(c.est.rtt),
    };
    let best = |role: Role| {
        peers
            .iter()
            .filter(|c| c.role == role)
            .map(|c| (time_of(c), c.peer))
            .min()
    };
    for role in [Role::Holder, Role::Owner] {
        if let Some((t, p)) = best(role)
            && t <= time_left
        {
            return Some(SourceId::Peer(p));
        }
    }
    if origin_time.is_some_and(|t| t <= time_left) {
        return Some(SourceId::Origin);
    }
    // Nobody makes it in time: whoever is quickest.
    let peer = peers.iter().map(|c| (time_of(c), c.peer)).min();
    match (peer, origin_time) {
        (Some((tp, p)), Some(to)) if tp < to => Some(SourceId::Peer(p)),
        (_, Some(_)) => Some(SourceId::Origin),
        (Some((_, p)), None) => Some(SourceId::Peer(p)),
        (None, None) => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn est(rtt_ms: u64, mbps: f64, queued: u64) -> Estimate {
        Estimate {
            rtt: Duration::from_millis(rtt_ms),
            throughput: mbps * 125_000.0,
            queued,
        }
    }

    fn holder(peer: usize, e: Estimate) -> Candidate {
        Candidate {
            peer,
            role: Role::Holder,
            est: e,
        }
    }

    const MB: u64 = 1_000_000;

    #[test]
    fn the_quickest_helper_that_makes_the_deadline() {
        let origin = est(60, 20.0, 0);
        let peers = [holder(0, est(40, 8.0, 0)), holder(1, est(2, 100.0, 0))];
        // 1 MB: peer 1 takes 82 ms, peer 0 1.04 s, the origin 460 ms.
        assert_eq!(
            choose(MB, Duration::from_secs(2), &peers, Some(&origin)),
            Some(SourceId::Peer(1))
        );
        // Peer 1 loaded with 30 MB: 2.4 s; peer 0 still makes 2 s, so a helper is used.
        let loaded = [
            holder(0, est(40, 8.0, 0)),
            holder(1, est(2, 100.0, 30 * MB)),
        ];
        assert_eq!(
            choose(MB, Duration::from_secs(2), &loaded, Some(&origin)),
            Some(SourceId::Peer(0))
        );
        // Due in 0.6 s: no helper makes it, the origin does.
        assert_eq!(
            choose(MB, Duration::from_millis(600), &loaded, Some(&origin)),
            Some(SourceId::Origin)
        );
        // Due in 0.1 s: nobody makes it; the quickest is the origin (460 ms).
        assert_eq!(
            choose(MB, Duration::from_millis(100), &loaded, Some(&origin)),
            Some(SourceId::Origin)
        );
    }

    #[test]
    fn holders_before_owners_before_the_origin() {
        let origin = est(20, 50.0, 0);
        let owner = Candidate {
            peer: 3,
            role: Role::Owner,
            est: est(1, 1000.0, 0),
        };
        let far_holder = holder(2, est(50, 10.0, 0));
        let late = Duration::from_secs(10);
        assert_eq!(
            choose(MB, late, &[owner, far_holder], Some(&origin)),
            Some(SourceId::Peer(2))
        );
        assert_eq!(
            choose(MB, late, &[owner], Some(&origin)),
            Some(SourceId::Peer(3))
        );
        // The owner must fetch first: its time includes the origin's (181 ms + 1 ms + 8 ms).
        assert_eq!(
            choose(MB, Duration::from_millis(150), &[owner], Some(&origin)),
            Some(SourceId::Origin)
        );
    }

    #[test]
    fn failover_excludes_what_failed_origin_last() {
        // The caller drops each failed source: helpers first, the origin last, then nothing.
        let origin = est(20, 50.0, 0);
        let mut peers = vec![holder(0, est(2, 100.0, 0)), holder(1, est(5, 50.0, 0))];
        let t = Duration::from_secs(5);
        let mut tried = Vec::new();
        let mut origin_left = true;
        while let Some(s) = choose(MB, t, &peers, origin_left.then_some(&origin)) {
            tried.push(s);
            match s {
                SourceId::Peer(p) => peers.retain(|c| c.peer != p),
                SourceId::Origin => origin_left = false,
            }
        }
        assert_eq!(
            tried,
            vec![SourceId::Peer(0), SourceId::Peer(1), SourceId::Origin]
        );
    }

    #[test]
    fn unmeasured_sources_get_a_default_rate() {
        let e = Estimate {
            rtt: Duration::from_millis(10),
            throughput: 0.0,
            queued: 0,
        };
        let d = e.delivery(1_250_000);
        assert!((d.as_secs_f64() - 1.01).abs() < 1e-6, "{d:?}");
    }
}
