//! The periodic advertiser: one task per peer sends it what this helper holds, every period
//! of the peer's scope, as a snapshot or as a delta on the last advert it acknowledged.

use std::collections::HashMap;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use segue_wire::ObjectName;
use segue_wire::advert::{Advert, Holding, Ranges};
use segue_wire::segment::Status;
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
    ) -> impl Future<Output = Result<(Status, usize), String>> + Send;
}

/// The sender's state for one peer.
#[derive(Debug, Default)]
pub struct OutState {
    version: u64,
    /// The last advert the peer accepted: its version and the holdings it described.
    acked: Option<(u64, Holdings)>,
    need_snapshot: bool,
    since_snapshot: u32,
}

impl OutState {
    /// The next advert for holdings `now`: a snapshot when the peer has none of ours (or
    /// asked, or every [`SNAPSHOT_EVERY`]), else a delta listing the objects that changed
    /// since the acknowledged one (an object gone: no ranges).
    pub fn next(&mut self, sender: &str, epoch: u64, period: Duration, now: &Holdings) -> Advert {
        self.version += 1;
        let as_holding = |o: &ObjectName, (rev, r): &(u64, Ranges)| Holding {
            object: o.clone(),
            revision: *rev,
            segments: r.clone(),
        };
        let (base, mut holdings) = match &self.acked {
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
                (*v, h)
            }
            _ => (0, now.iter().map(|(o, x)| as_holding(o, x)).collect()),
        };
        holdings.sort_by(|a, b| a.object.cmp(&b.object));
        Advert {
            sender: sender.to_owned(),
            epoch,
            version: self.version,
            base,
            period_ms: period.as_millis() as u64,
            holdings,
        }
    }

    /// The peer answered `status` to `a`, which described `holdings`.
    pub fn answered(&mut self, a: &Advert, holdings: Holdings, status: Status) {
        match status {
            Status::Ok => {
                self.since_snapshot = if a.is_snapshot() {
                    0
                } else {
                    self.since_snapshot + 1
                };
                self.acked = Some((a.version, holdings));
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
                match sink.send(p, a.clone()).await {
                    Ok((status, _)) => st.answered(&a, holdings, status),
                    Err(e) => tracing::debug!(peer = p, "advert not delivered: {e}"),
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
    use crate::helper::scope::{Periods, Scope};
    use crate::helper::view::View;

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
        async fn send(&self, p: usize, a: Advert) -> Result<(Status, usize), String> {
            let t = self.t0.elapsed().as_secs_f64();
            self.sent.lock().unwrap().push((p, t, a.is_snapshot()));
            let n = a.encode().len();
            let st = match self.views.lock().unwrap()[p].apply(&a, Instant::now()) {
                crate::helper::view::Applied::NeedSnapshot => Status::StaleRevision,
                _ => Status::Ok,
            };
            Ok((st, n))
        }
    }

    fn name(s: &str) -> ObjectName {
        ObjectName::new(s, 1024).unwrap()
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
    fn deltas_list_changes_and_a_lost_ack_heals_with_a_snapshot() {
        let mut st = OutState::default();
        let p = Duration::from_secs(1);
        let mut h: Holdings = HashMap::from([(name("a"), (1, Ranges::from_indices([0])))]);
        let mut view = View::default();
        let t = Instant::now();
        let a1 = st.next("me", 1, p, &h);
        assert!(a1.is_snapshot());
        view.apply(&a1, t);
        st.answered(&a1, h.clone(), Status::Ok);
        // Nothing changed: an empty delta (a heartbeat).
        let a2 = st.next("me", 1, p, &h);
        assert_eq!((a2.base, a2.holdings.len()), (1, 0));
        view.apply(&a2, t);
        st.answered(&a2, h.clone(), Status::Ok);
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
            crate::helper::view::Applied::NeedSnapshot => Status::StaleRevision,
            _ => Status::Ok,
        };
        assert_eq!(status, Status::StaleRevision);
        st.answered(&a4, h.clone(), status);
        let a5 = st.next("me", 1, p, &h);
        assert!(a5.is_snapshot());
        assert_eq!(view.apply(&a5, t), crate::helper::view::Applied::Applied);
        assert_eq!(view.holders(&name("b"), 2, 5, t), vec!["me"]);
        assert!(view.holders(&name("a"), 1, 0, t).is_empty());
    }
}
