//! The prefix the edge keeps of each object (the configured one, longer when the measured
//! origin link needs it) and which cached objects need theirs filled.

use std::sync::Arc;

use segue_wire::ObjectName;
use segue_wire::segment::Manifest;

use super::{Entry, State, Store};
use crate::placement::link::{LinkEstimate, required_prefix_s};

/// Margin added to the link-derived prefix, seconds.
const PREFIX_MARGIN_S: f64 = 1.0;

impl Store {
    /// The prefix the edge keeps of `m`, in media microseconds: the configured prefix, or
    /// longer when the measured origin link needs it (`placement::link`).
    pub fn prefix_us(&self, m: &Manifest) -> u64 {
        let link = self.lock().effective_link();
        Self::prefix_us_with(self.prefix_us, link, m)
    }

    pub(super) fn prefix_us_with(min_us: u64, link: Option<LinkEstimate>, m: &Manifest) -> u64 {
        let Some(link) = link else { return min_us };
        let length_s = m.duration_us as f64 / 1e6;
        let bytes: u64 = m.segments.iter().map(|s| s.size).sum();
        let bitrate = bytes as f64 / length_s.max(1e-3);
        let need = required_prefix_s(bitrate, length_s, link, PREFIX_MARGIN_S);
        min_us.max((need * 1e6) as u64)
    }

    pub(super) fn in_prefix(prefix_us: u64, m: &Manifest, i: usize) -> bool {
        i == 0 || m.segments.get(i).is_some_and(|s| s.start_us < prefix_us)
    }

    /// Whether segment `i` lies in the object's prefix.
    pub fn is_prefix(&self, m: &Manifest, i: usize) -> bool {
        Self::in_prefix(self.prefix_us(m), m, i)
    }

    pub fn prefix_len(&self, m: &Manifest) -> usize {
        Self::prefix_count(self.prefix_us(m), m)
    }

    /// How many segments a prefix of `prefix_us` takes.
    pub(super) fn prefix_count(prefix_us: u64, m: &Manifest) -> usize {
        (0..m.segments.len())
            .take_while(|&i| Self::in_prefix(prefix_us, m, i))
            .count()
    }

    /// Cached objects, most requested first (ties: by name).
    pub(super) fn by_popularity(st: &State) -> Vec<(&ObjectName, &Entry)> {
        let mut v: Vec<_> = st.objects.iter().collect();
        v.sort_by(|a, b| {
            let (sa, sb) = (st.popularity.score(a.0), st.popularity.score(b.0));
            sb.total_cmp(&sa).then_with(|| a.0.cmp(b.0))
        });
        v
    }

    /// Whether `name` was ever requested for a play, anticipated (hint, push) or warmed.
    fn wanted(st: &State, name: &ObjectName) -> bool {
        st.popularity.score(name).is_finite() || st.warmed.contains(name)
    }

    /// `name` (held in the index) is warmed: upkeep keeps its prefix up.
    pub fn warmed(&self, name: &ObjectName) {
        let mut st = self.lock();
        if st.objects.contains_key(name) {
            st.warmed.insert(name.clone());
        }
    }

    /// The most requested cached object whose prefix is incomplete and whose missing prefix
    /// segments fit in free space (the edge's upkeep fills it). Reads the index only: no use
    /// is recorded.
    pub fn prefix_to_refill(&self) -> Option<ObjectName> {
        self.prefix_to_refill_except(|_| false)
    }

    /// [`Self::prefix_to_refill`], passing over the objects `skip` names.
    pub fn prefix_to_refill_except(
        &self,
        skip: impl Fn(&ObjectName) -> bool,
    ) -> Option<ObjectName> {
        let st = self.lock();
        let free = self.cap(&st).saturating_sub(st.used);
        let link = st.effective_link();
        Self::by_popularity(&st).into_iter().find_map(|(name, e)| {
            // Only objects someone played or an operator anticipated: a manifest read
            // alone pulls nothing (a stranger's MANIFEST requests must not make the edge
            // fetch prefixes from the origin).
            if skip(name) || !Self::wanted(&st, name) {
                return None;
            }
            let m = &e.manifest;
            let n = Self::prefix_count(Self::prefix_us_with(self.prefix_us, link, m), m);
            let missing: u64 = (0..n)
                .filter(|&i| !e.have[i])
                .map(|i| m.segments[i].size)
                .sum();
            (missing > 0 && missing <= free).then(|| name.clone())
        })
    }

    /// The next missing segment of the most requested cached object whose next missing
    /// segment fits in free space (a useful segment to measure an idle link with). Reads the
    /// index only: no use is recorded.
    pub fn probe_target(&self) -> Option<(Arc<Manifest>, usize)> {
        let st = self.lock();
        let free = self.cap(&st).saturating_sub(st.used);
        Self::by_popularity(&st).into_iter().find_map(|(name, e)| {
            if !Self::wanted(&st, name) {
                return None;
            }
            let i = e.have.iter().position(|h| !h)?;
            (e.manifest.segments[i].size <= free).then(|| (e.manifest.clone(), i))
        })
    }
}
