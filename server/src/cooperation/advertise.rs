//! The periodic advertiser: one task per peer sends it what this helper holds, every period
//! of the peer's scope, as a snapshot or as a delta on the last advert it acknowledged.

use std::collections::HashMap;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use segue_wire::ObjectName;
use segue_wire::advert::{Advert, Holding, Ranges};
use segue_wire::segment::Status;

use crate::node::source::SourceError;
use tokio::sync::watch;

/// What a helper holds: object → (revision, segments).
pub type Holdings = HashMap<ObjectName, (u64, Ranges)>;

/// A full snapshot at least every this many adverts to one peer (deltas in between).
pub const SNAPSHOT_EVERY: u32 = 60;
/// How often a waiting advertiser looks at its peer's period again.
const RECHECK: Duration = Duration::from_millis(100);

/// What the advertiser needs from the helper.
pub trait AdvertSink: Send + Sync + 'static {
    /// This helper's name and epoch.
    fn identity(&self) -> (String, u64);
    fn peers(&self) -> usize;
    /// The period for peer `p` now (its scope's).
    fn period(&self, p: usize) -> Duration;
    fn holdings(&self) -> Holdings;
    /// Sends `a` to peer `p`: the receiver's status and the bytes sent.
    fn send(
        &self,
        p: usize,
        a: Advert,
    ) -> impl Future<Output = Result<(Status, usize), SourceError>> + Send;
}

/// How big one advert may be: what every receiver takes (PROTOCOL.md §8.8: a body of at
/// most 1 MiB, at most 100 000 objects). Holdings beyond it go in the adverts that follow.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Budget {
    pub bytes: usize,
    pub objects: usize,
}

impl Default for Budget {
    fn default() -> Self {
        let l = segue_wire::Limits::default();
        Self {
            bytes: l.max_advert,
            objects: l.max_advert_objects,
        }
    }
}

/// The sender's state for one peer.
#[derive(Debug, Default)]
pub struct OutState {
    budget: Budget,
    version: u64,
    /// The last advert the peer accepted: its version and the holdings it has from us since.
    acked: Option<(u64, Holdings)>,
    /// The advert sent last: its version and what the peer has from us once it accepts it.
    sent: Option<(u64, Holdings)>,
    /// The advert sent last left changes out (over the budget): the next goes at once.
    more: bool,
    need_snapshot: bool,
    since_snapshot: u32,
}

impl OutState {
    /// A sender whose adverts stay within `budget`.
    pub fn with_budget(budget: Budget) -> Self {
        Self {
            budget,
            ..Self::default()
        }
    }

    /// The next advert for holdings `now`: a snapshot when the peer has none of ours (or
    /// asked, or every [`SNAPSHOT_EVERY`]), else a delta listing the objects that changed
    /// since the acknowledged one (an object gone: no ranges). Either lists objects in name
    /// order as far as the budget goes; what is left out goes in deltas on it ([`Self::more`]).
    pub fn next(&mut self, sender: &str, epoch: u64, period: Duration, now: &Holdings) -> Advert {
        self.version += 1;
        let as_holding = |o: &ObjectName, (rev, r): &(u64, Ranges)| Holding {
            object: o.clone(),
            revision: *rev,
            segments: r.clone(),
        };
        let (base, mut holdings, known) = match &self.acked {
            Some((v, acked)) if !self.need_snapshot && self.since_snapshot < SNAPSHOT_EVERY => {
                let mut h: Vec<Holding> = now
                    .iter()
                    .filter(|(o, x)| acked.get(*o) != Some(*x))
                    .map(|(o, x)| as_holding(o, x))
                    .collect();
                h.extend(
                    acked
                        .keys()
                        .filter(|o| !now.contains_key(*o))
                        .map(|o| Holding {
                            object: o.clone(),
                            revision: 0,
                            segments: Ranges::default(),
                        }),
                );
                (*v, h, acked.clone())
            }
            _ => (
                0,
                now.iter().map(|(o, x)| as_holding(o, x)).collect(),
                Holdings::new(),
            ),
        };
        holdings.sort_by(|a, b| a.object.cmp(&b.object));
        let fit = self.fitting(sender, &holdings);
        self.more = fit < holdings.len();
        holdings.truncate(fit);
        // What the peer has from us once it takes this one.
        let mut after = known;
        for h in &holdings {
            if h.segments.is_empty() {
                after.remove(&h.object);
            } else {
                after.insert(h.object.clone(), (h.revision, h.segments.clone()));
            }
        }
        self.sent = Some((self.version, after));
        Advert {
            sender: sender.to_owned(),
            epoch,
            version: self.version,
            base,
            period_ms: period.as_millis() as u64,
            holdings,
        }
    }

    /// How many of `holdings`, from the first, fit one advert (at least one: a holding
    /// takes at most ~200 KB, names of 1 KiB and 32 768 ranges, far below the budget).
    fn fitting(&self, sender: &str, holdings: &[Holding]) -> usize {
        let mut room = self
            .budget
            .bytes
            .saturating_sub(segue_wire::advert::max_head_len(sender));
        let mut n = 0;
        for h in holdings.iter().take(self.budget.objects) {
            let len = h.encoded_len();
            if len > room && n > 0 {
                break;
            }
            room = room.saturating_sub(len);
            n += 1;
        }
        n
    }

    /// The last advert left changes out for lack of room: send the next one at once.
    pub fn more(&self) -> bool {
        self.more
    }

    /// The peer answered `status` to `a`, the advert [`Self::next`] made last.
    pub fn answered(&mut self, a: &Advert, status: Status) {
        match status {
            Status::Ok => {
                self.since_snapshot = if a.is_snapshot() {
                    0
                } else {
                    self.since_snapshot + 1
                };
                if let Some((v, after)) = self.sent.take()
                    && v == a.version
                {
                    self.acked = Some((v, after));
                }
                self.need_snapshot = false;
            }
            Status::StaleRevision => self.need_snapshot = true,
            _ => {}
        }
    }
}

/// Advertises to every peer until `stop`: at once, then every period of its scope.
pub async fn run<S: AdvertSink>(sink: Arc<S>, stop: watch::Receiver<bool>) {
    let mut tasks = tokio::task::JoinSet::new();
    for p in 0..sink.peers() {
        let (sink, mut stop) = (sink.clone(), stop.clone());
        tasks.spawn(async move {
            let (name, epoch) = sink.identity();
            let mut st = OutState::default();
            loop {
                let sent = tokio::time::Instant::now();
                let period = sink.period(p);
                let holdings = sink.holdings();
                let a = st.next(&name, epoch, period, &holdings);
                let rest_now = match sink.send(p, a.clone()).await {
                    Ok((status, _)) => {
                        st.answered(&a, status);
                        status == Status::Ok && st.more()
                    }
                    Err(e) => {
                        tracing::debug!(peer = p, "advert not delivered: {e}");
                        false
                    }
                };
                // What did not fit goes at once, in deltas on what the peer took.
                if rest_now && !*stop.borrow() {
                    continue;
                }
                // The period is looked at again while waiting: a derived scope changes as
                // the peer's RTT and advert interval are measured.
                loop {
                    let due = sent + sink.period(p);
                    let now = tokio::time::Instant::now();
                    if now >= due {
                        break;
                    }
                    tokio::select! {
                        () = tokio::time::sleep((due - now).min(RECHECK)) => {}
                        _ = stop.changed() => return,
                    }
                }
            }
        });
    }
    while tasks.join_next().await.is_some() {}
}

#[cfg(test)]
mod tests {
    use std::sync::Mutex;

    use tokio::time::Instant;

    use super::*;
    use crate::cooperation::scope::{Periods, Scope};
    use crate::cooperation::view::View;

    /// Four peers, one per scope; records every send and delivers it to a view per peer.
    struct Fake {
        t0: Instant,
        holdings: Mutex<Holdings>,
        sent: Mutex<Vec<(usize, f64, bool)>>,
        views: Mutex<Vec<View>>,
    }

    impl AdvertSink for Fake {
        fn identity(&self) -> (String, u64) {
            ("me".into(), 1)
        }
        fn peers(&self) -> usize {
            4
        }
        fn period(&self, p: usize) -> Duration {
            Periods::default().of(Scope::ALL[p])
        }
        fn holdings(&self) -> Holdings {
            self.holdings.lock().unwrap().clone()
        }
        async fn send(&self, p: usize, a: Advert) -> Result<(Status, usize), SourceError> {
            let t = self.t0.elapsed().as_secs_f64();
            self.sent.lock().unwrap().push((p, t, a.is_snapshot()));
            let n = a.encode().len();
            let st = match self.views.lock().unwrap()[p].apply(&a, Instant::now()) {
                crate::cooperation::view::Applied::NeedSnapshot => Status::StaleRevision,
                _ => Status::Ok,
            };
            Ok((st, n))
        }
    }

    fn name(s: &str) -> ObjectName {
        ObjectName::new(s, 1024).unwrap()
    }

    /// `n` objects with realistic names, each holding its first 30 segments.
    fn many(n: usize) -> Holdings {
        (0..n)
            .map(|i| {
                let o = name(&format!("catalog/series-{:03}/episode-{i:06}", i % 997));
                (o, (1, Ranges::from_indices(0..30)))
            })
            .collect()
    }

    /// How many objects `peer` holds in `view`.
    fn held(view: &View, peer: &str) -> usize {
        view.report(Instant::now())
            .iter()
            .find(|p| p.peer == peer)
            .map_or(0, |p| p.objects.len())
    }

    #[tokio::test(start_paused = true)]
    async fn each_scope_is_advertised_at_its_period() {
        let fake = Arc::new(Fake {
            t0: Instant::now(),
            holdings: Mutex::new(HashMap::from([(
                name("a"),
                (1, Ranges::from_indices([0, 1])),
            )])),
            sent: Mutex::default(),
            views: Mutex::new((0..4).map(|_| View::default()).collect()),
        });
        let (stop_tx, stop) = watch::channel(false);
        let task = tokio::spawn(run(fake.clone(), stop));
        tokio::time::sleep(Duration::from_millis(60_500)).await;
        // The helper gets a segment of a new object at 60.5 s.
        fake.holdings
            .lock()
            .unwrap()
            .insert(name("b"), (3, Ranges::from_indices([0])));
        tokio::time::sleep(Duration::from_millis(60_000)).await;
        stop_tx.send(true).unwrap();
        task.await.unwrap();
        let sent = fake.sent.lock().unwrap().clone();
        let count = |p: usize| sent.iter().filter(|s| s.0 == p).count();
        // 120.5 s: at 0, then every period.
        assert_eq!(count(0), 121, "local every 1 s");
        assert_eq!(count(1), 25, "regional every 5 s");
        assert_eq!(count(2), 5, "national every 30 s");
        assert_eq!(count(3), 2, "global every 120 s");
        // Sends of one peer are a period apart.
        let local: Vec<f64> = sent.iter().filter(|s| s.0 == 0).map(|s| s.1).collect();
        assert!(local.windows(2).all(|w| (w[1] - w[0] - 1.0).abs() < 1e-6));
        // The first advert is a snapshot, then deltas, with a snapshot every 60 (local).
        let snaps: Vec<f64> = sent
            .iter()
            .filter(|s| s.0 == 0 && s.2)
            .map(|s| s.1)
            .collect();
        assert_eq!(snaps, vec![0.0, 61.0]);
        // Every receiver's view ends with both objects, from deltas.
        let t = Instant::now();
        for v in fake.views.lock().unwrap().iter() {
            assert_eq!(v.holders(&name("b"), 3, 0, t), vec!["me"]);
            assert_eq!(v.holders(&name("a"), 1, 1, t), vec!["me"]);
        }
    }

    #[test]
    fn what_does_not_fit_one_advert_follows_in_deltas() {
        let mut st = OutState::with_budget(Budget {
            bytes: 1 << 20,
            objects: 3,
        });
        let p = Duration::from_secs(1);
        let mut h: Holdings = (0..10)
            .map(|i| (name(&format!("o{i}")), (1, Ranges::from_indices([i]))))
            .collect();
        let mut view = View::default();
        let t = Instant::now();
        let mut sizes = Vec::new();
        loop {
            let a = st.next("me", 1, p, &h);
            sizes.push((a.is_snapshot(), a.holdings.len()));
            assert_eq!(
                view.apply(&a, t),
                crate::cooperation::view::Applied::Applied
            );
            st.answered(&a, Status::Ok);
            if !st.more() {
                break;
            }
        }
        // A snapshot of the first three (by name), then deltas on it for the rest.
        assert_eq!(sizes, vec![(true, 3), (false, 3), (false, 3), (false, 1)]);
        assert_eq!(held(&view, "me"), 10);
        assert_eq!(view.holders(&name("o9"), 1, 9, t), vec!["me"]);
        // Then only changes: one gone, one new.
        h.remove(&name("o0"));
        h.insert(name("p"), (2, Ranges::from_indices([0])));
        let a = st.next("me", 1, p, &h);
        assert_eq!((a.base, a.holdings.len(), st.more()), (4, 2, false));
        view.apply(&a, t);
        st.answered(&a, Status::Ok);
        assert_eq!(held(&view, "me"), 10);
        // A peer that lost track mid-way gets a snapshot, in parts again.
        let a = st.next("me", 1, p, &h);
        st.answered(&a, Status::StaleRevision);
        let a = st.next("me", 1, p, &h);
        assert!(a.is_snapshot() && a.holdings.len() == 3 && st.more());
    }

    #[test]
    fn a_large_cache_is_advertised_within_the_receivers_limits() {
        // 60 000 objects: ~2.6 MB as one snapshot, which every receiver refuses.
        let h = many(60_000);
        let limits = segue_wire::Limits::default();
        let mut whole = OutState::with_budget(Budget {
            bytes: usize::MAX,
            objects: usize::MAX,
        });
        let one = whole.next("me", 1, Duration::from_secs(1), &h).encode();
        assert!(segue_wire::advert::decode(&one, &limits).is_err());
        // Split: every advert decodes, and the receiver ends with all of them.
        let mut st = OutState::default();
        let mut view = View::default();
        let mut sent = 0;
        loop {
            let bytes = st.next("me", 1, Duration::from_secs(1), &h).encode();
            let (a, _) = segue_wire::advert::decode(&bytes, &limits)
                .unwrap()
                .unwrap();
            assert!(bytes.len() <= limits.max_advert + 16);
            view.apply(&a, Instant::now());
            st.answered(&a, Status::Ok);
            sent += 1;
            if !st.more() {
                break;
            }
        }
        assert_eq!((sent, held(&view, "me")), (3, 60_000));
    }

    #[tokio::test(start_paused = true)]
    async fn the_rest_of_a_split_advert_goes_at_once() {
        let fake = Arc::new(Fake {
            t0: Instant::now(),
            holdings: Mutex::new(many(60_000)),
            sent: Mutex::default(),
            views: Mutex::new((0..4).map(|_| View::default()).collect()),
        });
        let (stop_tx, stop) = watch::channel(false);
        let task = tokio::spawn(run(fake.clone(), stop));
        tokio::time::sleep(Duration::from_millis(1_500)).await;
        stop_tx.send(true).unwrap();
        task.await.unwrap();
        let sent = fake.sent.lock().unwrap().clone();
        let local: Vec<(f64, bool)> = sent
            .iter()
            .filter(|s| s.0 == 0)
            .map(|s| (s.1, s.2))
            .collect();
        // A snapshot and two deltas at 0 s, then the period's heartbeat at 1 s.
        assert_eq!(
            local,
            vec![(0.0, true), (0.0, false), (0.0, false), (1.0, false)]
        );
        for p in 0..4 {
            assert_eq!(held(&fake.views.lock().unwrap()[p], "me"), 60_000);
        }
    }

    #[test]
    fn deltas_list_changes_and_a_lost_ack_heals_with_a_snapshot() {
        let mut st = OutState::default();
        let p = Duration::from_secs(1);
        let mut h: Holdings = HashMap::from([(name("a"), (1, Ranges::from_indices([0])))]);
        let mut view = View::default();
        let t = Instant::now();
        let a1 = st.next("me", 1, p, &h);
        assert!(a1.is_snapshot());
        view.apply(&a1, t);
        st.answered(&a1, Status::Ok);
        // Nothing changed: an empty delta (a heartbeat).
        let a2 = st.next("me", 1, p, &h);
        assert_eq!((a2.base, a2.holdings.len()), (1, 0));
        view.apply(&a2, t);
        st.answered(&a2, Status::Ok);
        // "a" dropped, "b" added: two entries.
        h.remove(&name("a"));
        h.insert(name("b"), (2, Ranges::from_indices([4, 5])));
        let a3 = st.next("me", 1, p, &h);
        assert_eq!(a3.holdings.len(), 2);
        // The receiver applies it but the answer is lost.
        view.apply(&a3, t);
        let a4 = st.next("me", 1, p, &h);
        assert_eq!(a4.base, 2, "still on the acknowledged version");
        let status = match view.apply(&a4, t) {
            crate::cooperation::view::Applied::NeedSnapshot => Status::StaleRevision,
            _ => Status::Ok,
        };
        assert_eq!(status, Status::StaleRevision);
        st.answered(&a4, status);
        let a5 = st.next("me", 1, p, &h);
        assert!(a5.is_snapshot());
        assert_eq!(
            view.apply(&a5, t),
            crate::cooperation::view::Applied::Applied
        );
        assert_eq!(view.holders(&name("b"), 2, 5, t), vec!["me"]);
        assert!(view.holders(&name("a"), 1, 0, t).is_empty());
    }
}
