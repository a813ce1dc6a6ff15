//! Request counts with exponential decay: each request adds 1 and a count halves every
//! `half_life_s`. Counts are kept on a common time scale (scaled by 2^(t/h) from the epoch),
//! so comparing two objects never needs a decay step; [`Popularity::count`] converts back.

use std::collections::HashMap;
use std::hash::Hash;

#[derive(Debug, Clone)]
pub struct Popularity<K> {
    half_life_s: f64,
    /// count · 2^(t_last / h), in log2 to stay finite over long runs.
    log_scaled: HashMap<K, f64>,
}

fn log2_add(a: f64, b: f64) -> f64 {
    // log2(2^a + 2^b) without overflow.
    let (hi, lo) = if a > b { (a, b) } else { (b, a) };
    hi + (1.0 + (lo - hi).exp2()).log2()
}

impl<K: Hash + Eq + Clone> Popularity<K> {
    pub fn new(half_life_s: f64) -> Self {
        Self {
            half_life_s: half_life_s.max(1e-3),
            log_scaled: HashMap::new(),
        }
    }

    /// A request for `key` at time `t_s` (seconds since any fixed epoch).
    pub fn hit(&mut self, key: &K, t_s: f64) {
        let add = t_s / self.half_life_s; // log2 of 1 · 2^(t/h)
        let v = match self.log_scaled.get(key) {
            Some(&old) => log2_add(old, add),
            None => add,
        };
        self.log_scaled.insert(key.clone(), v);
    }

    /// `n` requests for `key` at once (e.g. an operator's expected viewers).
    pub fn add(&mut self, key: &K, t_s: f64, n: f64) {
        if n <= 0.0 || !n.is_finite() {
            return;
        }
        let add = t_s / self.half_life_s + n.log2();
        let v = match self.log_scaled.get(key) {
            Some(&old) => log2_add(old, add),
            None => add,
        };
        self.log_scaled.insert(key.clone(), v);
    }

    /// The decayed count at `t_s`.
    pub fn count(&self, key: &K, t_s: f64) -> f64 {
        self.log_scaled
            .get(key)
            .map_or(0.0, |v| (v - t_s / self.half_life_s).exp2())
    }

    /// Requests per second: the decayed count over the mean age it covers (h / ln 2).
    pub fn rate(&self, key: &K, t_s: f64) -> f64 {
        self.count(key, t_s) * std::f64::consts::LN_2 / self.half_life_s
    }

    /// A score that orders keys like their counts at any one time (log2, common scale).
    pub fn score(&self, key: &K) -> f64 {
        self.log_scaled
            .get(key)
            .copied()
            .unwrap_or(f64::NEG_INFINITY)
    }

    /// Every key with its score (to persist them).
    pub fn entries(&self) -> impl Iterator<Item = (&K, f64)> {
        self.log_scaled.iter().map(|(k, v)| (k, *v))
    }

    /// Restores a score saved by [`Popularity::entries`] (same half-life and epoch).
    pub fn restore(&mut self, key: K, score: f64) {
        if score.is_finite() {
            self.log_scaled.insert(key, score);
        }
    }

    pub fn forget(&mut self, key: &K) {
        self.log_scaled.remove(key);
    }

    pub fn len(&self) -> usize {
        self.log_scaled.len()
    }

    pub fn is_empty(&self) -> bool {
        self.log_scaled.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_decay_by_half_life() {
        let mut p = Popularity::new(100.0);
        p.hit(&"a", 0.0);
        p.hit(&"a", 0.0);
        assert!((p.count(&"a", 0.0) - 2.0).abs() < 1e-9);
        assert!((p.count(&"a", 100.0) - 1.0).abs() < 1e-9);
        assert!((p.count(&"a", 200.0) - 0.5).abs() < 1e-9);
        p.hit(&"a", 200.0);
        assert!((p.count(&"a", 200.0) - 1.5).abs() < 1e-9);
        assert_eq!(p.count(&"b", 5.0), 0.0);
    }

    #[test]
    fn order_is_stable_without_decay_steps() {
        let mut p = Popularity::new(10.0);
        // "a" had 4 requests long ago, "b" 1 request now: after 3 half-lives a is worth 0.5.
        for _ in 0..4 {
            p.hit(&"a", 0.0);
        }
        p.hit(&"b", 30.0);
        assert!(p.score(&"b") > p.score(&"a"));
        assert!(p.count(&"b", 30.0) > p.count(&"a", 30.0));
        // Far in the future the scale stays finite.
        p.hit(&"c", 1e7);
        assert!(p.score(&"c").is_finite());
        assert!((p.count(&"c", 1e7) - 1.0).abs() < 1e-9);
    }

    #[test]
    fn rate_of_a_steady_stream() {
        // One request per second for a long time: the rate estimate tends to 1/s.
        let mut p = Popularity::new(60.0);
        for t in 0..2000 {
            p.hit(&"a", f64::from(t));
        }
        let r = p.rate(&"a", 1999.0);
        assert!((r - 1.0).abs() < 0.02, "{r}");
    }
}
