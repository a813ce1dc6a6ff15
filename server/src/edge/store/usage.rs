//! Measured usage: requests per object (decayed, anticipated viewers included), how far
//! viewers watch, how many objects are fetched at once, the origin link; saved to
//! `<cache>/usage.json` across restarts.

use std::collections::HashMap;
use std::fs;

use segue_wire::segment::Manifest;
use segue_wire::{Limits, ObjectName};

use super::{MAX_ANTICIPATED, POPULARITY_HALF_LIFE_S, State, Store};
use crate::clock::unix_now;
use crate::placement::link::LinkEstimate;
use crate::placement::watch::WatchModel;

/// Measured usage as saved in `<cache>/usage.json`.
#[derive(Debug, serde::Serialize, serde::Deserialize)]
struct Usage {
    version: u32,
    half_life_s: f64,
    /// Object → log2(count · 2^(t/h)), t in unix seconds.
    popularity: HashMap<String, f64>,
    watch: Vec<f64>,
    #[serde(default = "one")]
    concurrency: f64,
}

fn one() -> f64 {
    1.0
}

const USAGE_VERSION: u32 = 1;

impl Store {
    /// Restores measured usage saved by [`Store::save_usage`]; an unreadable file is
    /// ignored (usage is relearned), never fatal.
    pub(super) fn load_usage(&self, state: &mut State) {
        let Ok(text) = fs::read(&self.usage_path) else {
            return;
        };
        let u: Usage = match serde_json::from_slice(&text) {
            Ok(u) => u,
            Err(e) => {
                tracing::warn!(file = %self.usage_path.display(), "ignoring unreadable usage: {e}");
                return;
            }
        };
        if u.version != USAGE_VERSION || u.half_life_s != POPULARITY_HALF_LIFE_S {
            return;
        }
        for (name, score) in u.popularity {
            if let Ok(n) = ObjectName::new(&name, Limits::default().max_object_name) {
                state.popularity.restore(n, score);
            }
        }
        if let Some(w) = WatchModel::from_bins(u.watch) {
            state.watch = w;
        }
        if u.concurrency.is_finite() && u.concurrency >= 1.0 {
            state.concurrency = u.concurrency;
        }
    }

    /// Saves measured usage (popularity of every object, the watch model) atomically, so a
    /// restarted edge keeps valuing objects as before.
    pub fn save_usage(&self) -> std::io::Result<()> {
        let u = {
            let st = self.lock();
            Usage {
                version: USAGE_VERSION,
                half_life_s: POPULARITY_HALF_LIFE_S,
                popularity: st
                    .popularity
                    .entries()
                    .map(|(k, v)| (k.to_string(), v))
                    .collect(),
                watch: st.watch.bins().to_vec(),
                concurrency: st.concurrency,
            }
        };
        let tmp = self.usage_path.with_extension("json.tmp");
        fs::write(&tmp, serde_json::to_vec(&u).map_err(std::io::Error::other)?)?;
        fs::rename(&tmp, &self.usage_path)
    }

    /// `n` objects are being fetched from the origin at once (sampled as a session starts,
    /// weight 1/5, and every 2 s while any is, weight 1/20): prefixes assume the link is
    /// shared that many ways.
    pub fn fetching_concurrently(&self, n: usize, weight: f64) {
        let w = weight.clamp(0.0, 1.0);
        let mut st = self.lock();
        st.concurrency = (1.0 - w) * st.concurrency + w * (n.max(1) as f64);
    }

    /// The measured origin link changed: prefixes follow it.
    pub fn set_link(&self, link: LinkEstimate) {
        self.lock().link = Some(link);
    }

    /// A session asked for `name` (measured usage).
    pub fn requested(&self, name: &ObjectName) {
        let t = unix_now();
        self.lock().popularity.hit(name, t);
    }

    /// An operator expects `viewers` requests for `name` (a hint or a push): they count
    /// as requests now (anticipated demand), at most [`MAX_ANTICIPATED`].
    pub fn anticipate(&self, name: &ObjectName, viewers: u64) {
        let t = unix_now();
        let n = viewers.clamp(1, MAX_ANTICIPATED) as f64;
        self.lock().popularity.add(name, t, n);
    }

    /// A session of `m` ended having played up to (not including) segment `reached`.
    pub fn watched(&self, m: &Manifest, reached: usize) {
        let at_us = m
            .segments
            .get(reached)
            .map_or(m.duration_us, |s| s.start_us);
        let fraction = at_us as f64 / m.duration_us.max(1) as f64;
        self.lock().watch.ended(fraction);
    }

    /// Requests seen for `name` (decayed, anticipated viewers included).
    pub fn request_count(&self, name: &ObjectName) -> f64 {
        let t = unix_now();
        self.lock().popularity.count(name, t)
    }

    /// Requests per second for `name`, as measured (decayed).
    pub fn request_rate(&self, name: &ObjectName) -> f64 {
        let t = unix_now();
        self.lock().popularity.rate(name, t)
    }
}
