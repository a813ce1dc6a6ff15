//! The player population of a scenario: arrival times (a Poisson process with a given number
//! of arrivals in a window: sorted uniform times), objects by Zipf popularity, watch times
//! with early quits, edges round robin. Seeded: the same scenario plans the same plays.

use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};

use super::scenario::PlayersConf;

/// A returning viewer's play comes at least this long after the play it returns from
/// (whose handshake, and so its ticket, is done by then).
pub const RETURN_AFTER_S: f64 = 1.0;

/// One planned play.
#[derive(Debug, Clone, PartialEq)]
pub struct Planned {
    pub id: usize,
    /// Who plays: the id of the viewer's first play (its own id for a new viewer). A viewer
    /// has one source address and last mile, and returns to the same edge.
    pub viewer: usize,
    /// Seconds after the start.
    pub at_s: f64,
    /// Catalog index; 0 is the most popular.
    pub object: usize,
    pub edge: usize,
    /// Fraction of the object watched before quitting; None watches to the end.
    pub watch: Option<f64>,
    /// Its buffer level is recorded.
    pub sampled: bool,
}

/// Zipf(α) over `n` ranks: cumulative weights for sampling.
#[derive(Debug, Clone)]
pub struct Zipf {
    cdf: Vec<f64>,
}

impl Zipf {
    pub fn new(n: usize, alpha: f64) -> Self {
        let mut acc = 0.0;
        let cdf = (1..=n.max(1))
            .map(|k| {
                acc += 1.0 / (k as f64).powf(alpha);
                acc
            })
            .collect();
        Self { cdf }
    }

    pub fn sample(&self, rng: &mut impl Rng) -> usize {
        let total = self.cdf.last().copied().unwrap_or(1.0);
        let u = rng.random::<f64>() * total;
        self.cdf
            .partition_point(|c| *c <= u)
            .min(self.cdf.len() - 1)
    }
}

/// Plans `p.count` plays over a catalog of `objects` and `edges` edges; a fraction
/// `p.returning` of them by viewers who played before.
pub fn plan(p: &PlayersConf, objects: usize, edges: usize, seed: u64) -> Vec<Planned> {
    let mut rng = SmallRng::seed_from_u64(seed ^ 0x005e_ed0f_91a7);
    let mut times: Vec<f64> = (0..p.count)
        .map(|_| p.start_s.max(0.0) + rng.random::<f64>() * p.arrival_window_s)
        .collect();
    times.sort_by(f64::total_cmp);
    let zipf = Zipf::new(objects, p.zipf_alpha);
    let every = (p.count / p.sampled.max(1)).max(1);
    let mut plays: Vec<Planned> = Vec::with_capacity(times.len());
    for (id, at_s) in times.into_iter().enumerate() {
        let object = zipf.sample(&mut rng);
        let watch = p.watch.as_ref().and_then(|w| {
            (rng.random::<f64>() < w.early_quit).then(|| rng.random::<f64>() * w.within)
        });
        // (Drawn only when asked for: scenarios without returning viewers plan as before.)
        let back_from = (p.returning > 0.0 && rng.random::<f64>() < p.returning)
            .then(|| {
                let before = plays.partition_point(|x| x.at_s + RETURN_AFTER_S <= at_s);
                (before > 0).then(|| rng.random_range(0..before))
            })
            .flatten();
        let (viewer, edge) = match back_from {
            Some(j) => (plays[j].viewer, plays[j].edge),
            None => (id, id % edges.max(1)),
        };
        plays.push(Planned {
            id,
            viewer,
            at_s,
            object,
            edge,
            watch,
            sampled: p.sampled > 0 && id % every == 0 && id / every < p.sampled,
        });
    }
    plays
}

#[cfg(test)]
mod tests {
    use super::super::scenario::WatchConf;
    use super::*;

    fn players(count: usize) -> PlayersConf {
        PlayersConf {
            count,
            arrival_window_s: 100.0,
            start_s: 0.0,
            zipf_alpha: 0.8,
            startup_buffer_ms: 500,
            watch: Some(WatchConf {
                early_quit: 0.6,
                within: 0.2,
            }),
            sampled: 5,
            immediate_ms: 250.0,
            stall_timeout_s: 10,
            fallback: false,
            last_mile: Default::default(),
            returning: 0.0,
        }
    }

    #[test]
    fn zipf_frequencies_follow_the_law() {
        let z = Zipf::new(50, 0.8);
        let mut rng = SmallRng::seed_from_u64(1);
        let mut counts = [0u32; 50];
        for _ in 0..200_000 {
            counts[z.sample(&mut rng)] += 1;
        }
        // P(1)/P(k) = k^0.8.
        for k in [2usize, 5, 10, 50] {
            let ratio = f64::from(counts[0]) / f64::from(counts[k - 1]);
            let want = (k as f64).powf(0.8);
            assert!(
                (ratio / want - 1.0).abs() < 0.08,
                "k={k}: {ratio} vs {want}"
            );
        }
        let u = Zipf::new(4, 0.0);
        let mut c = [0u32; 4];
        for _ in 0..40_000 {
            c[u.sample(&mut rng)] += 1;
        }
        assert!(c.iter().all(|&n| (9_000..11_000).contains(&n)), "{c:?}");
    }

    #[test]
    fn arrivals_watch_times_edges_and_samples() {
        let p = players(2000);
        let plan = plan(&p, 50, 3, 7);
        assert_eq!(plan.len(), 2000);
        assert!(plan.windows(2).all(|w| w[0].at_s <= w[1].at_s));
        assert!(plan.iter().all(|x| (0.0..100.0).contains(&x.at_s)));
        // Poisson: about count/window per second, so ~200 per 10 s bucket.
        let in_first_10 = plan.iter().filter(|x| x.at_s < 10.0).count();
        assert!((150..250).contains(&in_first_10), "{in_first_10}");
        let quit = plan.iter().filter(|x| x.watch.is_some()).count() as f64 / 2000.0;
        assert!((quit - 0.6).abs() < 0.04, "{quit}");
        assert!(
            plan.iter()
                .filter_map(|x| x.watch)
                .all(|w| (0.0..0.2).contains(&w))
        );
        assert_eq!(plan.iter().filter(|x| x.edge == 2).count(), 666);
        assert_eq!(plan.iter().filter(|x| x.sampled).count(), 5);
        assert!(plan.iter().all(|x| x.object < 50));
    }

    #[test]
    fn returning_viewers_come_back_to_their_edge_later() {
        let p = players(400);
        let first = plan(&p, 50, 3, 7);
        assert!(
            first.iter().all(|x| x.viewer == x.id),
            "none return unless asked"
        );
        let mut back = p.clone();
        back.returning = 0.5;
        let plan = plan(&back, 50, 3, 7);
        let returning: Vec<&Planned> = plan.iter().filter(|x| x.viewer != x.id).collect();
        let share = returning.len() as f64 / 400.0;
        assert!((0.4..0.6).contains(&share), "{share}");
        for r in returning {
            let earlier = &plan[r.viewer];
            assert_eq!(
                earlier.viewer, earlier.id,
                "a viewer is named by its first play"
            );
            assert_eq!(r.edge, earlier.edge);
            assert!(
                plan.iter()
                    .any(|x| x.viewer == r.viewer && x.at_s + RETURN_AFTER_S <= r.at_s),
                "play {} returns {} s after no play of viewer {}",
                r.id,
                RETURN_AFTER_S,
                r.viewer
            );
        }
        // The rest of the plan is drawn as before only where nothing returns.
        assert_eq!(
            plan.iter().map(|x| x.at_s).collect::<Vec<_>>(),
            first.iter().map(|x| x.at_s).collect::<Vec<_>>()
        );
    }

    #[test]
    fn seeded() {
        let p = players(100);
        assert_eq!(plan(&p, 10, 2, 1), plan(&p, 10, 2, 1));
        assert_ne!(plan(&p, 10, 2, 1), plan(&p, 10, 2, 2));
        let mut burst = players(10);
        burst.arrival_window_s = 0.0;
        assert!(plan(&burst, 10, 1, 1).iter().all(|x| x.at_s == 0.0));
    }
}
