//! How far viewers watch: the fraction of plays still watching at each point of an object,
//! learned from where sessions ended (a histogram over the object's length).

/// Survival curve S(x), x the fraction of the object played (0..1); S(0) = 1.
#[derive(Debug, Clone)]
pub struct WatchModel {
    /// Plays that ended in each bin (the last bin: watched to the end).
    ended: Vec<f64>,
}

impl WatchModel {
    /// `bins` bins, starting from a prior of `prior` plays spread as "everyone watches to the
    /// end" (so an edge with no history values suffixes like prefixes).
    pub fn new(bins: usize, prior: f64) -> Self {
        let bins = bins.max(1);
        let mut ended = vec![0.0; bins];
        ended[bins - 1] = prior.max(0.0);
        Self { ended }
    }

    /// Plays that ended in each bin (to persist them).
    pub fn bins(&self) -> &[f64] {
        &self.ended
    }

    /// A model from bins saved by [`WatchModel::bins`]; `None` if they are unusable.
    pub fn from_bins(bins: Vec<f64>) -> Option<Self> {
        (!bins.is_empty() && bins.iter().all(|b| b.is_finite() && *b >= 0.0))
            .then_some(Self { ended: bins })
    }

    /// A play ended after watching `fraction` of the object.
    pub fn ended(&mut self, fraction: f64) {
        let n = self.ended.len();
        let i = ((fraction.clamp(0.0, 1.0) * n as f64) as usize).min(n - 1);
        self.ended[i] += 1.0;
    }

    /// Fraction of plays still watching at `fraction` of the object.
    pub fn survival(&self, fraction: f64) -> f64 {
        let total: f64 = self.ended.iter().sum();
        if total <= 0.0 {
            return 1.0;
        }
        let n = self.ended.len();
        let x = fraction.clamp(0.0, 1.0) * n as f64;
        let i = (x as usize).min(n - 1);
        // Plays that ended in earlier bins are gone; those ending in bin i leave uniformly.
        let before: f64 = self.ended[..i].iter().sum();
        let within = self.ended[i] * (x - i as f64).clamp(0.0, 1.0);
        if i == n - 1 {
            // The last bin holds plays that watched to the end: they stay.
            return ((total - before) / total).clamp(0.0, 1.0);
        }
        ((total - before - within) / total).clamp(0.0, 1.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn learns_early_quits() {
        let mut w = WatchModel::new(10, 0.0);
        assert_eq!(w.survival(0.5), 1.0, "no history: everyone watches");
        // 60 % quit within the first 20 %, 40 % watch to the end.
        for i in 0..60 {
            w.ended(f64::from(i) / 300.0);
        }
        for _ in 0..40 {
            w.ended(1.0);
        }
        assert!((w.survival(0.0) - 1.0).abs() < 1e-9);
        assert!((w.survival(0.2) - 0.4).abs() < 0.02, "{}", w.survival(0.2));
        assert!((w.survival(0.1) - 0.7).abs() < 0.05, "{}", w.survival(0.1));
        assert!((w.survival(0.9) - 0.4).abs() < 1e-9);
        // Non-increasing.
        let mut last = 1.0;
        for k in 0..=100 {
            let s = w.survival(f64::from(k) / 100.0);
            assert!(s <= last + 1e-12);
            last = s;
        }
    }
}
