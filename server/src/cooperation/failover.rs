//! Failover for one segment: ask the source [`super::choose`] names, and on a failure (or a
//! timeout, which the attempt enforces) the next one, helpers before the origin; the origin's
//! answer is final (its own retries happen inside its attempt).

use std::future::Future;

use super::choose::SourceId;

/// Fetches with `attempt` from the sources `pick` names in turn (`pick` gets the peers tried
/// so far); `none_left` when there is nothing to ask.
pub async fn fetch_any<T, E, F>(
    mut pick: impl FnMut(&[usize]) -> Option<SourceId>,
    mut attempt: impl FnMut(SourceId) -> F,
    none_left: E,
) -> Result<T, E>
where
    F: Future<Output = Result<T, E>>,
{
    let mut tried = Vec::new();
    let mut last = None;
    loop {
        let Some(source) = pick(&tried) else {
            return Err(last.unwrap_or(none_left));
        };
        match (attempt(source).await, source) {
            (Ok(v), _) => return Ok(v),
            (Err(e), SourceId::Origin) => return Err(e),
            (Err(e), SourceId::Peer(p)) => {
                tried.push(p);
                last = Some(e);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Mutex;
    use std::time::Duration;

    use tokio::time::Instant;

    use super::*;
    use crate::cooperation::choose::{Candidate, Estimate, Role, choose};

    /// Fake sources: what each does when asked.
    #[derive(Clone, Copy)]
    enum Fake {
        Fails,
        Hangs,
        Delivers(u32),
    }

    fn est(rtt_ms: u64) -> Estimate {
        Estimate {
            rtt: Duration::from_millis(rtt_ms),
            throughput: 10e6,
            queued: 0,
        }
    }

    async fn run(
        peers: &[(Fake, u64)],
        origin: Fake,
    ) -> (Result<u32, String>, Vec<SourceId>, Duration) {
        let asked = Mutex::new(Vec::new());
        let t0 = Instant::now();
        let cands: Vec<Candidate> = peers
            .iter()
            .enumerate()
            .map(|(p, &(_, rtt))| Candidate {
                peer: p,
                role: Role::Holder,
                est: est(rtt),
            })
            .collect();
        let origin_est = est(60);
        let r = fetch_any(
            |tried| {
                let left: Vec<Candidate> = cands
                    .iter()
                    .filter(|c| !tried.contains(&c.peer))
                    .copied()
                    .collect();
                choose(100_000, Duration::from_secs(2), &left, Some(&origin_est))
            },
            |s| {
                asked.lock().unwrap().push(s);
                let fake = match s {
                    SourceId::Origin => origin,
                    SourceId::Peer(p) => peers[p].0,
                };
                async move {
                    // Each attempt has its time budget, as the edge gives a helper.
                    let work = async move {
                        match fake {
                            Fake::Fails => Err("refused".to_string()),
                            Fake::Hangs => std::future::pending().await,
                            Fake::Delivers(v) => Ok(v),
                        }
                    };
                    tokio::time::timeout(Duration::from_millis(300), work)
                        .await
                        .unwrap_or_else(|_| Err("timed out".into()))
                }
            },
            "nothing to ask".to_string(),
        )
        .await;
        (r, asked.into_inner().unwrap(), t0.elapsed())
    }

    #[tokio::test(start_paused = true)]
    async fn the_quickest_helper_first_then_the_next_then_the_origin() {
        // Peer 1 is nearest (2 ms) and delivers.
        let (r, asked, _) = run(
            &[(Fake::Delivers(10), 20), (Fake::Delivers(11), 2)],
            Fake::Delivers(0),
        )
        .await;
        assert_eq!(r, Ok(11));
        assert_eq!(asked, vec![SourceId::Peer(1)]);
        // The nearest fails, the next hangs (300 ms budget), the origin delivers.
        let (r, asked, took) = run(&[(Fake::Hangs, 20), (Fake::Fails, 2)], Fake::Delivers(7)).await;
        assert_eq!(r, Ok(7));
        assert_eq!(
            asked,
            vec![SourceId::Peer(1), SourceId::Peer(0), SourceId::Origin]
        );
        assert_eq!(
            took,
            Duration::from_millis(300),
            "only the hung helper cost time"
        );
        // Everything fails: the origin's error is the answer.
        let (r, asked, _) = run(&[(Fake::Fails, 5)], Fake::Fails).await;
        assert_eq!(r, Err("refused".into()));
        assert_eq!(asked, vec![SourceId::Peer(0), SourceId::Origin]);
    }

    #[tokio::test]
    async fn nothing_to_ask() {
        let r: Result<(), &str> = fetch_any(|_| None, |_| async { Ok(()) }, "none").await;
        assert_eq!(r, Err("none"));
    }
}
