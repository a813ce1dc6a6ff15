//! The view: who holds what, as of when, from the adverts received (PROTOCOL.md §8.8).
//! Pure: the caller passes the time.

use std::collections::HashMap;
use std::time::Duration;

use segue_wire::ObjectName;
use segue_wire::advert::{Advert, Ranges};
use tokio::time::Instant;

use super::scope::EXPIRY_PERIODS;

/// Shortest period an advert may claim (a smaller one is taken as this).
const MIN_PERIOD: Duration = Duration::from_millis(50);

/// What one peer told us.
#[derive(Debug)]
struct PeerView {
    epoch: u64,
    version: u64,
    received: Instant,
    expires: Instant,
    /// How much later than promised its adverts arrive (each one against the period the
    /// one before declared), smoothed: its temporal distance.
    late: Option<Duration>,
    /// The period its last advert declared.
    declared: Duration,
    holdings: HashMap<ObjectName, (u64, Ranges)>,
}

/// What [`View::apply`] did with an advert.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Applied {
    Applied,
    /// A delta on a version this view does not hold: the sender must send a snapshot.
    NeedSnapshot,
    /// Older than what the view holds: ignored.
    Old,
}

/// One peer's entry as the admin API shows it.
#[derive(Debug, Clone, serde::Serialize)]
pub struct PeerHoldings {
    pub peer: String,
    pub version: u64,
    /// Seconds since its last advert.
    pub age_s: f64,
    /// Seconds until what it said expires (negative: expired).
    pub expires_in_s: f64,
    pub objects: Vec<HeldObject>,
}

#[derive(Debug, Clone, serde::Serialize)]
pub struct HeldObject {
    pub object: String,
    pub revision: u64,
    /// Held segments as `[start, end)` ranges.
    pub segments: Vec<(u64, u64)>,
}

/// Who holds what, as of when.
#[derive(Debug, Default)]
pub struct View {
    peers: HashMap<String, PeerView>,
}

impl View {
    /// Takes an advert received at `now`.
    pub fn apply(&mut self, a: &Advert, now: Instant) -> Applied {
        let period = Duration::from_millis(a.period_ms).max(MIN_PERIOD);
        let expires = now + period * EXPIRY_PERIODS;
        let fresh = |holdings| PeerView {
            epoch: a.epoch,
            version: a.version,
            received: now,
            expires,
            late: None,
            declared: period,
            holdings,
        };
        let all = || {
            a.holdings
                .iter()
                .filter(|h| !h.segments.is_empty())
                .map(|h| (h.object.clone(), (h.revision, h.segments.clone())))
                .collect()
        };
        let Some(p) = self.peers.get_mut(&a.sender) else {
            if !a.is_snapshot() {
                return Applied::NeedSnapshot;
            }
            self.peers.insert(a.sender.clone(), fresh(all()));
            return Applied::Applied;
        };
        if a.epoch != p.epoch {
            // The sender restarted: only a snapshot of the new epoch counts.
            if !a.is_snapshot() {
                return Applied::NeedSnapshot;
            }
            *p = fresh(all());
            return Applied::Applied;
        }
        if a.version <= p.version {
            return Applied::Old;
        }
        if a.is_snapshot() {
            p.holdings = all();
        } else if a.base == p.version {
            for h in &a.holdings {
                if h.segments.is_empty() {
                    p.holdings.remove(&h.object);
                } else {
                    p.holdings
                        .insert(h.object.clone(), (h.revision, h.segments.clone()));
                }
            }
        } else {
            return Applied::NeedSnapshot;
        }
        let late = now
            .saturating_duration_since(p.received)
            .saturating_sub(p.declared);
        p.late = Some(match p.late {
            None => late,
            Some(old) => (old * 3 + late) / 4,
        });
        p.version = a.version;
        p.declared = period;
        p.received = now;
        p.expires = expires;
        Applied::Applied
    }

    /// Peers that hold segment `i` of `object` at `revision` and whose word has not expired.
    pub fn holders(&self, object: &ObjectName, revision: u64, i: u64, now: Instant) -> Vec<&str> {
        let mut v: Vec<&str> = self
            .peers
            .iter()
            .filter(|(_, p)| p.expires > now)
            .filter(|(_, p)| {
                p.holdings
                    .get(object)
                    .is_some_and(|(rev, r)| *rev == revision && r.contains(i))
            })
            .map(|(name, _)| name.as_str())
            .collect();
        v.sort_unstable();
        v
    }

    /// Whether `peer` said anything that has not expired.
    pub fn alive(&self, peer: &str, now: Instant) -> bool {
        self.peers.get(peer).is_some_and(|p| p.expires > now)
    }

    /// How much staler `peer`'s word is than its period promises (its temporal distance):
    /// how much later than the previous advert declared each advert arrived (lost or late on
    /// the way), smoothed. Not the period itself: that is our own choice reflected back.
    pub fn lateness(&self, peer: &str) -> Option<Duration> {
        self.peers.get(peer).and_then(|p| p.late)
    }

    /// Forgets what `peer` said (it went away: its connection failed).
    pub fn forget(&mut self, peer: &str) {
        self.peers.remove(peer);
    }

    /// Drops expired entries; returns how many peers' word expired.
    pub fn expire(&mut self, now: Instant) -> usize {
        let before = self.peers.len();
        self.peers.retain(|_, p| p.expires > now);
        before - self.peers.len()
    }

    /// Everything, for the admin API, peers by name.
    pub fn report(&self, now: Instant) -> Vec<PeerHoldings> {
        let mut v: Vec<PeerHoldings> = self
            .peers
            .iter()
            .map(|(name, p)| {
                let mut objects: Vec<HeldObject> = p
                    .holdings
                    .iter()
                    .map(|(o, (rev, r))| HeldObject {
                        object: o.to_string(),
                        revision: *rev,
                        segments: r.ranges().to_vec(),
                    })
                    .collect();
                objects.sort_by(|a, b| a.object.cmp(&b.object));
                PeerHoldings {
                    peer: name.clone(),
                    version: p.version,
                    age_s: now.saturating_duration_since(p.received).as_secs_f64(),
                    expires_in_s: if p.expires > now {
                        (p.expires - now).as_secs_f64()
                    } else {
                        -now.saturating_duration_since(p.expires).as_secs_f64()
                    },
                    objects,
                }
            })
            .collect();
        v.sort_by(|a, b| a.peer.cmp(&b.peer));
        v
    }
}

#[cfg(test)]
mod tests {
    use segue_wire::advert::Holding;

    use super::*;

    fn name(s: &str) -> ObjectName {
        ObjectName::new(s, 1024).unwrap()
    }

    fn advert(version: u64, base: u64, holdings: &[(&str, &[u64])]) -> Advert {
        Advert {
            sender: "b".into(),
            epoch: 1,
            version,
            base,
            period_ms: 1000,
            holdings: holdings
                .iter()
                .map(|(o, idx)| Holding {
                    object: name(o),
                    revision: 7,
                    segments: Ranges::from_indices(idx.iter().copied()),
                })
                .collect(),
        }
    }

    #[test]
    fn snapshots_deltas_versions_and_expiry() {
        let t0 = Instant::now();
        let s = Duration::from_secs;
        let mut v = View::default();
        // A delta before any snapshot cannot be applied.
        assert_eq!(v.apply(&advert(2, 1, &[]), t0), Applied::NeedSnapshot);
        assert_eq!(
            v.apply(&advert(1, 0, &[("x", &[0, 1, 2])]), t0),
            Applied::Applied
        );
        assert_eq!(v.holders(&name("x"), 7, 1, t0), vec!["b"]);
        assert!(v.holders(&name("x"), 7, 3, t0).is_empty());
        assert!(
            v.holders(&name("x"), 8, 1, t0).is_empty(),
            "another revision"
        );
        // A delta: x gone, y held.
        assert_eq!(
            v.apply(&advert(2, 1, &[("x", &[]), ("y", &[4])]), t0 + s(1)),
            Applied::Applied
        );
        assert!(v.holders(&name("x"), 7, 1, t0 + s(1)).is_empty());
        assert_eq!(v.holders(&name("y"), 7, 4, t0 + s(1)), vec!["b"]);
        // Stale (an old version arriving late) is ignored.
        assert_eq!(
            v.apply(&advert(2, 1, &[("x", &[1])]), t0 + s(1)),
            Applied::Old
        );
        // A delta on a version we never saw (one got lost): ask for a snapshot.
        assert_eq!(
            v.apply(&advert(5, 4, &[]), t0 + s(2)),
            Applied::NeedSnapshot
        );
        assert_eq!(
            v.lateness("b"),
            Some(Duration::ZERO),
            "on time for its 1 s period"
        );
        // Expiry: 3 periods of 1 s after the last advert (at 1 s).
        assert!(v.alive("b", t0 + s(3)));
        assert_eq!(v.holders(&name("y"), 7, 4, t0 + s(4)), Vec::<&str>::new());
        assert!(!v.alive("b", t0 + s(4)));
        assert_eq!(v.expire(t0 + s(4)), 1);
        assert!(v.report(t0 + s(4)).is_empty());
    }

    #[test]
    fn lost_adverts_make_a_peer_late() {
        let t0 = Instant::now();
        let mut v = View::default();
        v.apply(&advert(1, 0, &[]), t0);
        // Declares 1 s, but three of every four adverts are lost: one every 4 s arrives.
        for k in 1..=8u64 {
            let a = advert(1 + 4 * k, 4 * k - 3, &[]);
            let mut snap = a.clone();
            snap.base = 0;
            v.apply(&snap, t0 + Duration::from_secs(4 * k));
        }
        assert_eq!(v.lateness("b"), Some(Duration::from_secs(3)));
    }

    #[test]
    fn a_restarted_sender_starts_over() {
        let t0 = Instant::now();
        let mut v = View::default();
        v.apply(&advert(9, 0, &[("x", &[0])]), t0);
        let mut again = advert(1, 0, &[("y", &[0])]);
        again.epoch = 2;
        assert_eq!(v.apply(&again, t0), Applied::Applied);
        assert!(v.holders(&name("x"), 7, 0, t0).is_empty());
        assert_eq!(v.holders(&name("y"), 7, 0, t0), vec!["b"]);
        let mut delta = advert(3, 2, &[]);
        delta.epoch = 3;
        assert_eq!(v.apply(&delta, t0), Applied::NeedSnapshot);
    }
}
