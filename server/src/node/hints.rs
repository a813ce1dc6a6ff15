//! Acting on hints (anticipated demand): a schedule of hints, each started `lead` before its
//! time by a node-specific action (an edge pulls the prefix, the origin pushes it to edges).
//! The schedule is what the admin API's `GET /hints` shows.

use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde::Serialize;
use tokio::sync::{Notify, watch};

use crate::clock::unix_now;
use crate::placement::hint::{Hint, start_s};

/// Hints kept for display after they were acted on (the oldest finished go first).
const KEEP_FINISHED: usize = 256;

/// Where a hint stands.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "snake_case", tag = "state", content = "detail")]
pub enum HintState {
    Pending,
    Positioning,
    Done(String),
    Failed(String),
}

/// A hint in the schedule.
#[derive(Debug, Clone, Serialize)]
pub struct Planned {
    #[serde(flatten)]
    pub hint: Hint,
    /// When positioning starts (unix seconds).
    pub start_s: f64,
    #[serde(flatten)]
    pub state: HintState,
}

/// A node's hint schedule.
#[derive(Debug)]
pub struct HintSchedule {
    lead_s: f64,
    planned: Mutex<Vec<Planned>>,
    changed: Notify,
}

impl HintSchedule {
    /// Positioning starts `lead` before each hint's time.
    pub fn new(lead: Duration) -> Arc<Self> {
        Arc::new(Self {
            lead_s: lead.as_secs_f64(),
            planned: Mutex::default(),
            changed: Notify::new(),
        })
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Vec<Planned>> {
        self.planned.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Adds hints (already filtered for this node).
    pub fn add(&self, hints: Vec<Hint>) {
        let now = unix_now();
        let mut p = self.lock();
        for hint in hints {
            let start_s = start_s(hint.at_s, self.lead_s, now);
            p.push(Planned {
                hint,
                start_s,
                state: HintState::Pending,
            });
        }
        // Bound what is kept: drop the oldest finished entries.
        let finished = p
            .iter()
            .filter(|x| matches!(x.state, HintState::Done(_) | HintState::Failed(_)))
            .count();
        let mut excess = finished.saturating_sub(KEEP_FINISHED);
        p.retain(|x| {
            let drop = excess > 0 && matches!(x.state, HintState::Done(_) | HintState::Failed(_));
            if drop {
                excess -= 1;
            }
            !drop
        });
        drop(p);
        self.changed.notify_one();
    }

    /// The schedule, soonest first.
    pub fn list(&self) -> Vec<Planned> {
        let mut v = self.lock().clone();
        v.sort_by(|a, b| a.start_s.total_cmp(&b.start_s));
        v
    }

    /// Runs the schedule until `stop`: each pending hint whose start has come is handed to
    /// `position` (concurrently); its result is recorded.
    pub async fn run<F, Fut>(self: Arc<Self>, position: F, mut stop: watch::Receiver<bool>)
    where
        F: Fn(Hint) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<String, String>> + Send + 'static,
    {
        let position = Arc::new(position);
        loop {
            let now = unix_now();
            let mut next: Option<f64> = None;
            let due: Vec<(usize, Hint)> = {
                let mut p = self.lock();
                p.iter_mut()
                    .enumerate()
                    .filter(|(_, x)| x.state == HintState::Pending)
                    .filter_map(|(i, x)| {
                        if x.start_s <= now {
                            x.state = HintState::Positioning;
                            Some((i, x.hint.clone()))
                        } else {
                            next = Some(next.map_or(x.start_s, |n: f64| n.min(x.start_s)));
                            None
                        }
                    })
                    .collect()
            };
            for (_, hint) in due {
                let (me, position) = (self.clone(), position.clone());
                tokio::spawn(async move {
                    let key = (hint.object.clone(), hint.at_s);
                    let r = position(hint.clone()).await;
                    match &r {
                        Ok(d) => tracing::info!(object = %hint.object, "hint positioned: {d}"),
                        Err(e) => tracing::warn!(object = %hint.object, "hint failed: {e}"),
                    }
                    let mut p = me.lock();
                    if let Some(x) = p.iter_mut().find(|x| {
                        x.state == HintState::Positioning
                            && (x.hint.object.clone(), x.hint.at_s) == key
                    }) {
                        x.state = match r {
                            Ok(d) => HintState::Done(d),
                            Err(e) => HintState::Failed(e),
                        };
                    }
                });
            }
            let wait = next.map_or(Duration::from_secs(3600), |n| {
                Duration::from_secs_f64((n - now).clamp(0.0, 3600.0))
            });
            tokio::select! {
                _ = tokio::time::sleep(wait) => {}
                _ = self.changed.notified() => {}
                _ = stop.changed() => return,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::placement::hint::parse_json;

    #[tokio::test]
    async fn due_hints_are_positioned_and_later_ones_wait() {
        let s = HintSchedule::new(Duration::from_secs(60));
        let now = unix_now();
        // Due at once (its time is within the lead), and far in the future.
        let mut h = parse_json(
            br#"[{"object": "soon", "in_s": 30}, {"object": "later", "in_s": 7200}]"#,
            now,
        )
        .unwrap();
        h[0].viewers = 3;
        s.add(h);
        let (tx, rx) = watch::channel(false);
        let seen = Arc::new(Mutex::new(Vec::new()));
        let seen2 = seen.clone();
        let task = tokio::spawn(s.clone().run(
            move |h: Hint| {
                let seen = seen2.clone();
                async move {
                    seen.lock().unwrap().push(h.object.clone());
                    if h.viewers == 3 {
                        Ok("3 segments".to_owned())
                    } else {
                        Err("no".to_owned())
                    }
                }
            },
            rx,
        ));
        for _ in 0..100 {
            if s.list()
                .iter()
                .any(|p| matches!(p.state, HintState::Done(_)))
            {
                break;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        let l = s.list();
        assert_eq!(l[0].hint.object, "soon");
        assert_eq!(l[0].state, HintState::Done("3 segments".into()));
        assert_eq!(l[1].hint.object, "later");
        assert_eq!(l[1].state, HintState::Pending);
        assert!((l[1].start_s - (now + 7200.0 - 60.0)).abs() < 1.0);
        assert_eq!(*seen.lock().unwrap(), vec!["soon".to_owned()]);
        let _ = tx.send(true);
        task.await.unwrap();
    }
}
