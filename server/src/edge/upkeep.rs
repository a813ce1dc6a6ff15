//! The edge's upkeep: prefixes grown to follow the measured origin link and refilled,
//! the origin connection kept warm and probed, measured usage saved.

use std::collections::HashMap;
use std::time::Duration;

use segue_wire::ObjectName;
use tokio::sync::watch;
use tokio::time::Instant;

use super::*;

/// How often [`EdgeSource::upkeep`] looks at prefixes.
const UPKEEP_EVERY: Duration = Duration::from_secs(2);
/// How often measured usage is saved.
const USAGE_SAVE_EVERY: Duration = Duration::from_secs(30);
/// How long upkeep leaves an object whose prefix refill made no progress.
const STALLED_RETRY: Duration = Duration::from_secs(60);

impl EdgeSource {
    /// Background upkeep until `stop`, every 2 s: when the required prefix of a cached
    /// object grows (the origin link got worse), its missing prefix segments are pulled in
    /// the background (after anything a session waits for), most requested object first,
    /// into free space only (never evicting for it); otherwise, after
    /// [`EdgeOptions::probe_after`] without origin traffic, one useful segment is fetched
    /// to measure the link. Measured usage is saved every 30 s and at the end. Beside it the
    /// origin connection is kept open ahead of need.
    pub async fn upkeep(self, mut stop: watch::Receiver<bool>) {
        let warm = tokio::spawn(self.clone().keep_origin_warm(stop.clone()));
        let mut tick = tokio::time::interval(UPKEEP_EVERY);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut saved = Instant::now();
        // Objects whose prefix refill made no progress, and when to try again.
        let mut stalled: HashMap<ObjectName, Instant> = HashMap::new();
        loop {
            tokio::select! {
                _ = tick.tick() => {}
                _ = stop.changed() => break,
            }
            if let Some(h) = &self.0.helpers {
                h.expire();
            }
            let fetching = self.objects_fetching(&lock(&self.0.playing));
            if fetching > 0 {
                self.0.store.fetching_concurrently(fetching, 0.05);
            }
            // The round's fetches end with the node: shutdown never waits for an upstream.
            let round = self.round(&mut stalled);
            tokio::select! {
                () = round => {}
                _ = stop.changed() => break,
            }
            if saved.elapsed() >= USAGE_SAVE_EVERY {
                self.save_usage();
                saved = Instant::now();
            }
        }
        self.save_usage();
        warm.abort();
    }

    /// One upkeep round's fetches: a prefix refill, or a link probe.
    async fn round(&self, stalled: &mut HashMap<ObjectName, Instant>) {
        stalled.retain(|_, until| Instant::now() < *until);
        if let Some(name) = self
            .0
            .store
            .prefix_to_refill_except(|n| stalled.contains_key(n))
        {
            match self.warm(&name).await {
                // Never again and again without progress: a refill that leaves the
                // prefix as short as it was (the disk refusing writes, say) is not
                // retried for a while.
                Ok(_)
                    if self
                        .0
                        .store
                        .prefix_to_refill_except(|n| *n != name)
                        .is_some() =>
                {
                    tracing::warn!(object = %name, "prefix refill made no progress: retried in {STALLED_RETRY:?}");
                    stalled.insert(name, Instant::now() + STALLED_RETRY);
                }
                Ok(n) => {
                    tracing::info!(object = %name, segments = n, "prefix grown to follow the link")
                }
                Err(e) => tracing::debug!(object = %name, "prefix refill failed: {e}"),
            }
        } else if let Some(after) = self.0.opts.probe_after
            && self.0.upstream.stats.idle_for().is_some_and(|d| d >= after)
            && let Some((m, i)) = self.0.store.probe_target()
        {
            let due = Instant::now() + BACKGROUND;
            match self.fill(m.clone(), i, due).await {
                Ok(_) => tracing::debug!(object = %m.object, segment = i, "link probed"),
                Err(e) => tracing::debug!(object = %m.object, "link probe failed: {e}"),
            }
        }
    }

    /// Until `stop`: the pooled origin connection is opened at start-up and re-opened within
    /// [`UPKEEP_EVERY`] of being lost, so a miss finds it ready (keep-alives hold it open).
    pub(super) async fn keep_origin_warm(self, mut stop: watch::Receiver<bool>) {
        loop {
            self.0.upstream.warm().await;
            tokio::select! {
                _ = tokio::time::sleep(UPKEEP_EVERY) => {}
                _ = stop.changed() => break,
            }
        }
    }

    /// Objects someone plays that are not wholly cached: those fetched from the origin.
    pub(super) fn objects_fetching(&self, playing: &HashMap<ObjectName, usize>) -> usize {
        playing.keys().filter(|o| !self.0.store.complete(o)).count()
    }

    pub(super) fn save_usage(&self) {
        if let Err(e) = self.0.store.save_usage() {
            tracing::warn!("cannot save measured usage: {e}");
        }
    }
}
