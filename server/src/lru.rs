//! A memory cache keyed by segment (object, revision, index), bounded by a byte weight, least
//! recently used out first. The edge's memory tier keeps verified segments in one; every node
//! keeps packetized segments in another.

use std::collections::HashMap;
use std::sync::Mutex;

use segue_wire::ObjectName;
use segue_wire::segment::Manifest;

type Key = (ObjectName, u64, usize);

#[derive(Debug)]
struct Entry<V> {
    value: V,
    weight: u64,
    used: u64,
}

#[derive(Debug)]
struct State<V> {
    map: HashMap<Key, Entry<V>>,
    weight: u64,
    tick: u64,
}

/// The cache. Values are cloned out (make them cheap to clone: `Bytes`, `Arc`).
#[derive(Debug)]
pub struct SegmentLru<V> {
    capacity: u64,
    state: Mutex<State<V>>,
}

impl<V: Clone> SegmentLru<V> {
    pub fn new(capacity: u64) -> Self {
        Self {
            capacity,
            state: Mutex::new(State {
                map: HashMap::new(),
                weight: 0,
                tick: 0,
            }),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State<V>> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub fn get(&self, m: &Manifest, i: usize) -> Option<V> {
        let mut st = self.lock();
        st.tick += 1;
        let tick = st.tick;
        let e = st.map.get_mut(&(m.object.clone(), m.revision, i))?;
        e.used = tick;
        Some(e.value.clone())
    }

    /// Keeps `value`, evicting the least recently used entries to stay within the capacity.
    /// An entry heavier than a quarter of the capacity is not kept (one must not flush the
    /// cache).
    pub fn put(&self, m: &Manifest, i: usize, value: V, weight: u64) {
        if weight > self.capacity / 4 {
            return;
        }
        let mut st = self.lock();
        st.tick += 1;
        let used = st.tick;
        let entry = Entry {
            value,
            weight,
            used,
        };
        if let Some(old) = st.map.insert((m.object.clone(), m.revision, i), entry) {
            st.weight -= old.weight;
        }
        st.weight += weight;
        while st.weight > self.capacity {
            let Some(oldest) = st
                .map
                .iter()
                .min_by_key(|(_, e)| e.used)
                .map(|(k, _)| k.clone())
            else {
                break;
            };
            if let Some(e) = st.map.remove(&oldest) {
                st.weight -= e.weight;
            }
        }
    }

    /// Total weight held.
    pub fn weight(&self) -> u64 {
        self.lock().weight
    }

    /// Drops every entry of object `name`, whatever its revision (a purge).
    pub fn remove_object(&self, name: &ObjectName) {
        let mut st = self.lock();
        let mut freed = 0;
        st.map.retain(|(object, _, _), e| {
            let keep = object != name;
            if !keep {
                freed += e.weight;
            }
            keep
        });
        st.weight -= freed;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn manifest(name: &str) -> Manifest {
        Manifest {
            object: ObjectName::new(name, 64).unwrap(),
            revision: 1,
            duration_us: 0,
            chunk_size: 16_384,
            formats: vec![],
            sdp: String::new(),
            tracks: vec![],
            segments: vec![],
        }
    }

    #[test]
    fn bounded_and_lru() {
        let c = SegmentLru::new(1000);
        let m = manifest("a");
        for i in 0..10 {
            c.put(&m, i, i, 200);
            if i == 5 {
                assert!(c.get(&m, 0).is_none()); // the oldest went first
            }
        }
        assert!(c.weight() <= 1000);
        assert_eq!(c.get(&m, 9), Some(9));
        assert!(c.get(&m, 0).is_none());
        c.put(&m, 99, 99, 600); // > capacity/4: not kept
        assert!(c.get(&m, 99).is_none());
    }

    #[test]
    fn removing_an_object_drops_all_its_entries() {
        let c = SegmentLru::new(10_000);
        let (a, b) = (manifest("a"), manifest("b"));
        let mut a2 = manifest("a");
        a2.revision = 2;
        for i in 0..3 {
            c.put(&a, i, i, 100);
            c.put(&a2, i, i, 100);
            c.put(&b, i, i, 100);
        }
        c.remove_object(&a.object);
        assert_eq!(c.weight(), 300);
        assert!((0..3).all(|i| c.get(&a, i).is_none() && c.get(&a2, i).is_none()));
        assert!((0..3).all(|i| c.get(&b, i) == Some(i)));
    }

    #[test]
    fn replacing_an_entry_keeps_the_weight_right() {
        let c = SegmentLru::new(1000);
        let m = manifest("a");
        c.put(&m, 0, 'x', 200);
        c.put(&m, 0, 'y', 100);
        assert_eq!(c.weight(), 100);
        assert_eq!(c.get(&m, 0), Some('y'));
        let mut newer = manifest("a");
        newer.revision = 2;
        assert!(c.get(&newer, 0).is_none()); // another revision is another segment
    }

    #[test]
    fn recently_used_entries_survive() {
        let c = SegmentLru::new(800);
        let m = manifest("a");
        for i in 0..4 {
            c.put(&m, i, i, 200);
        }
        assert!(c.get(&m, 0).is_some()); // 0 is now the most recent
        c.put(&m, 4, 4, 200);
        assert!(c.get(&m, 0).is_some());
        assert!(c.get(&m, 1).is_none());
    }
}
