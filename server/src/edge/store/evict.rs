//! Eviction: which segments go when a write needs room, least valuable first
//! (`placement::value::segment_value`, the one value the simulator uses too).

use segue_wire::ObjectName;

use super::{POPULARITY_HALF_LIFE_S, State, Store};
use crate::placement::value::segment_value;

/// An immediate start is worth this many segments of byte hits (docs/PLACEMENT.md).
const START_BONUS: f64 = 30.0;
impl Store {
    /// Picks segments to evict so that `need` more bytes fit; `None` if impossible.
    /// Order: least valuable first (see the module doc); ties: least recently used object,
    /// later segments first.
    pub(super) fn evict_for(
        &self,
        st: &mut State,
        need: u64,
        keep: &ObjectName,
        keep_i: usize,
    ) -> Option<Vec<(ObjectName, usize)>> {
        let capacity = self.cap(st);
        if need > capacity {
            return None;
        }
        let mut victims = Vec::new();
        if st.used + need <= capacity {
            return Some(victims);
        }
        // (log2 value, last used, name, later segments first, size)
        let mut order: Vec<(f64, u64, ObjectName, usize, u64)> = Vec::new();
        for (name, e) in &st.objects {
            let m = &e.manifest;
            let prefix_us = Self::prefix_us_with(self.prefix_us, st.effective_link(), m);
            let prefix_n = (0..m.segments.len())
                .take_while(|&i| Self::in_prefix(prefix_us, m, i))
                .count()
                .max(1);
            let score = st
                .popularity
                .score(name)
                .max(e.added_s / POPULARITY_HALF_LIFE_S);
            for (j, h) in e.have.iter().enumerate() {
                if *h && !(name == keep && j == keep_i) {
                    let seg = &m.segments[j];
                    let v = segment_value(
                        score,
                        &st.watch,
                        seg.start_us as f64 / m.duration_us.max(1) as f64,
                        Self::in_prefix(prefix_us, m, j),
                        START_BONUS,
                        prefix_n,
                    );
                    order.push((v, e.last_used, name.clone(), usize::MAX - j, seg.size));
                }
            }
        }
        order.sort_by(|a, b| {
            a.0.total_cmp(&b.0)
                .then(a.1.cmp(&b.1))
                .then_with(|| a.2.as_str().cmp(b.2.as_str()))
                .then(a.3.cmp(&b.3))
        });
        let mut freed = 0;
        for (_, _, name, rj, size) in order {
            if st.used - freed + need <= capacity {
                break;
            }
            victims.push((name, usize::MAX - rj));
            freed += size;
        }
        if st.used - freed + need > capacity {
            return None;
        }
        for (name, j) in &victims {
            if let Some(e) = st.objects.get_mut(name) {
                e.have[*j] = false;
            }
        }
        st.used -= freed;
        st.evictions += victims.len() as u64;
        Some(victims)
    }
}
