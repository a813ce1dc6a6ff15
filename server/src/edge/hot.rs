//! A small in-memory tier above the disk cache: recently served segments, already verified,
//! bounded in bytes, least recently used out first. Popular objects are served without a disk
//! read or a checksum per session.

use std::collections::HashMap;
use std::sync::Mutex;

use bytes::Bytes;
use segue_wire::ObjectName;
use segue_wire::segment::Manifest;

type Key = (ObjectName, u64, usize);

#[derive(Debug, Default)]
struct State {
    map: HashMap<Key, (Bytes, u64)>,
    bytes: u64,
    tick: u64,
}

/// The memory tier.
#[derive(Debug)]
pub struct Hot {
    capacity: u64,
    state: Mutex<State>,
}

impl Hot {
    pub fn new(capacity: u64) -> Self {
        Self {
            capacity,
            state: Mutex::default(),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub fn get(&self, m: &Manifest, i: usize) -> Option<Bytes> {
        let mut st = self.lock();
        st.tick += 1;
        let tick = st.tick;
        let e = st.map.get_mut(&(m.object.clone(), m.revision, i))?;
        e.1 = tick;
        Some(e.0.clone())
    }

    /// Keeps a verified segment, evicting the least recently used ones to stay in bounds.
    pub fn put(&self, m: &Manifest, i: usize, b: &Bytes) {
        let size = b.len() as u64;
        if size > self.capacity / 4 {
            return; // one segment must not flush the tier
        }
        let mut st = self.lock();
        st.tick += 1;
        let tick = st.tick;
        if st
            .map
            .insert((m.object.clone(), m.revision, i), (b.clone(), tick))
            .is_none()
        {
            st.bytes += size;
        }
        while st.bytes > self.capacity {
            let Some(oldest) = st
                .map
                .iter()
                .min_by_key(|(_, (_, t))| *t)
                .map(|(k, _)| k.clone())
            else {
                break;
            };
            if let Some((b, _)) = st.map.remove(&oldest) {
                st.bytes -= b.len() as u64;
            }
        }
    }

    pub fn bytes(&self) -> u64 {
        self.lock().bytes
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
            formats: vec![],
            sdp: String::new(),
            tracks: vec![],
            segments: vec![],
        }
    }

    #[test]
    fn bounded_and_lru() {
        let h = Hot::new(1000);
        let m = manifest("a");
        for i in 0..10 {
            h.put(&m, i, &Bytes::from(vec![0u8; 200]));
            if i == 5 {
                assert!(h.get(&m, 0).is_none()); // the oldest went first
            }
        }
        assert!(h.bytes() <= 1000);
        assert!(h.get(&m, 9).is_some());
        assert!(h.get(&m, 0).is_none());
        h.put(&m, 99, &Bytes::from(vec![0u8; 600])); // > capacity/4: not kept
        assert!(h.get(&m, 99).is_none());
    }
}
