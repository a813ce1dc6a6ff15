use bytes::Bytes;

use super::storage::seg_path;
use super::*;
use crate::layout::object_dir;
use segue_wire::segment::SegmentEntry;

fn manifest(name: &str, sizes: &[u64]) -> Arc<Manifest> {
    let segments = sizes
        .iter()
        .enumerate()
        .map(|(i, &size)| SegmentEntry {
            start_us: i as u64 * 2_000_000,
            duration_us: 2_000_000,
            size,
            frames: 1,
            checksum: [0; 32],
            chunk_root: [0; 32],
        })
        .collect();
    Arc::new(Manifest {
        object: ObjectName::new(name, 64).unwrap(),
        revision: 1,
        duration_us: sizes.len() as u64 * 2_000_000,
        chunk_size: 16_384,
        formats: vec![],
        sdp: String::new(),
        tracks: vec![],
        segments,
    })
}

fn payload(n: u64) -> Bytes {
    Bytes::from(vec![7u8; n as usize])
}

#[tokio::test]
async fn capacity_is_respected_and_suffixes_of_cold_objects_go_first() {
    let dir = tempfile::tempdir().unwrap();
    // 4 s prefix = segments 0 and 1; capacity for 10 segments of 100 bytes.
    let store = Store::open(dir.path(), 1000, 4_000_000).unwrap();
    let cold = manifest("cold", &[100; 5]);
    let hot = manifest("hot", &[100; 5]);
    store.put_manifest(&cold).unwrap();
    store.put_manifest(&hot).unwrap();
    for i in 0..5 {
        assert_eq!(store.put(&cold, i, &payload(100)).await, Stored::Written);
    }
    for i in 0..5 {
        assert_eq!(store.put(&hot, i, &payload(100)).await, Stored::Written);
    }
    assert_eq!(store.used(), 1000);
    // `hot` is used again; a new object needs room for 3 segments.
    store.manifest(&hot.object);
    let new = manifest("new", &[100; 3]);
    store.put_manifest(&new).unwrap();
    for i in 0..3 {
        assert_eq!(store.put(&new, i, &payload(100)).await, Stored::Written);
    }
    assert!(store.used() <= 1000);
    assert_eq!(store.evictions(), 3);
    // The cold object's suffix went first, its prefix stayed, the hot object is untouched.
    assert_eq!(
        (0..5).filter(|&i| store.has(&cold, i)).collect::<Vec<_>>(),
        vec![0, 1]
    );
    assert_eq!(store.count_from(&hot, 0), 5);
    // Nothing fits a segment larger than the whole cache: served from memory only.
    let huge = manifest("huge", &[5000]);
    store.put_manifest(&huge).unwrap();
    assert_eq!(store.put(&huge, 0, &payload(5000)).await, Stored::NotStored);
    // The index survives a restart.
    drop(store);
    let again = Store::open(dir.path(), 1000, 4_000_000).unwrap();
    assert_eq!(again.used(), 1000);
    assert_eq!(again.count_from(&hot, 0), 5);
}

#[tokio::test]
async fn measured_popularity_beats_recency() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path(), 1000, 4_000_000).unwrap();
    let popular = manifest("popular", &[100; 5]);
    let rare = manifest("rare", &[100; 5]);
    for m in [&popular, &rare] {
        store.put_manifest(m).unwrap();
        for i in 0..5 {
            store.put(m, i, &payload(100)).await;
        }
    }
    for _ in 0..5 {
        store.requested(&popular.object);
    }
    store.requested(&rare.object);
    // Viewers quit early: later segments are worth less than prefixes.
    for _ in 0..10 {
        store.watched(&popular, 1);
    }
    // The rare object was touched last: recency alone would evict the popular one.
    store.manifest(&rare.object);
    let new = manifest("new", &[100; 3]);
    store.put_manifest(&new).unwrap();
    for i in 0..3 {
        assert_eq!(store.put(&new, i, &payload(100)).await, Stored::Written);
    }
    assert_eq!(
        store.count_from(&popular, 0),
        5,
        "the popular object is untouched"
    );
    // The rare object lost its suffix first, later segments before earlier ones.
    assert_eq!(
        (0..5).filter(|&i| store.has(&rare, i)).collect::<Vec<_>>(),
        vec![0, 1]
    );
    assert!(store.request_rate(&popular.object) > store.request_rate(&rare.object));
}

#[tokio::test]
async fn upkeep_targets_follow_popularity_and_free_space() {
    let dir = tempfile::tempdir().unwrap();
    // 4 s prefix = segments 0 and 1.
    let store = Store::open(dir.path(), 700, 4_000_000).unwrap();
    let a = manifest("a", &[100; 4]);
    let b = manifest("b", &[100; 4]);
    for m in [&a, &b] {
        store.put_manifest(m).unwrap();
        store.put(m, 0, &payload(100)).await;
    }
    store.requested(&a.object);
    store.requested(&b.object);
    store.requested(&b.object);
    // Both prefixes lack segment 1; the more requested object comes first.
    assert_eq!(store.prefix_to_refill(), Some(b.object.clone()));
    assert_eq!(
        store.probe_target().map(|(m, i)| (m.object.clone(), i)),
        Some((b.object.clone(), 1))
    );
    store.put(&b, 1, &payload(100)).await;
    assert_eq!(store.prefix_to_refill(), Some(a.object.clone()));
    // b's prefix is whole: the probe takes its next segment, then a's once b is whole.
    assert_eq!(store.probe_target().map(|(_, i)| i), Some(2));
    // b whole: a's next segment.
    store.put(&b, 2, &payload(100)).await;
    store.put(&b, 3, &payload(100)).await;
    assert_eq!(store.used(), 500);
    assert_eq!(
        store.probe_target().map(|(m, i)| (m.object.clone(), i)),
        Some((a.object.clone(), 1))
    );
    let big = manifest("big", &[50, 200, 200]);
    store.put_manifest(&big).unwrap();
    store.put(&big, 0, &payload(50)).await;
    store.requested(&big.object);
    store.requested(&big.object);
    // big is the most requested, but its missing prefix (200) exceeds the 150 free: a.
    assert_eq!(store.prefix_to_refill(), Some(a.object.clone()));
}

#[tokio::test]
async fn a_manifest_read_alone_pulls_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path(), 10_000, 4_000_000).unwrap();
    let read = manifest("read", &[100; 4]);
    store.put_manifest(&read).unwrap();
    assert_eq!(store.prefix_to_refill(), None);
    assert!(store.probe_target().is_none());
    // Once played (or anticipated), its prefix is refilled.
    store.requested(&read.object);
    assert_eq!(store.prefix_to_refill(), Some(read.object.clone()));
}

#[tokio::test]
async fn measured_usage_survives_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let popular = manifest("popular", &[100; 5]);
    let rare = manifest("rare", &[100; 5]);
    {
        let store = Store::open(dir.path(), 1000, 4_000_000).unwrap();
        for m in [&popular, &rare] {
            store.put_manifest(m).unwrap();
            for i in 0..5 {
                store.put(m, i, &payload(100)).await;
            }
        }
        for _ in 0..20 {
            store.requested(&popular.object);
        }
        for _ in 0..10 {
            store.watched(&popular, 1);
        }
        store.save_usage().unwrap();
    }
    let store = Store::open(dir.path(), 1000, 4_000_000).unwrap();
    // Rates as before the restart: 20 requests (rate 20 ln 2 / half-life), none.
    let (p, r) = (
        store.request_rate(&popular.object),
        store.request_rate(&rare.object),
    );
    let want = 20.0 * std::f64::consts::LN_2 / POPULARITY_HALF_LIFE_S;
    assert!((p - want).abs() < want * 0.01 && r == 0.0, "{p} {r}");
    // The rare object was touched last; the popular one still wins after the restart.
    store.manifest(&rare.object);
    let new = manifest("new", &[100; 3]);
    store.put_manifest(&new).unwrap();
    for i in 0..3 {
        assert_eq!(store.put(&new, i, &payload(100)).await, Stored::Written);
    }
    assert_eq!(store.count_from(&popular, 0), 5);
    assert_eq!(store.count_from(&rare, 0), 2);
    // An unreadable usage file is ignored, not fatal.
    std::fs::write(dir.path().join("usage.json"), b"{not json").unwrap();
    let store = Store::open(dir.path(), 1000, 4_000_000).unwrap();
    assert_eq!(store.request_rate(&popular.object), 0.0);
}

#[test]
fn prefix_follows_the_link() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path(), 1 << 20, 4_000_000).unwrap();
    // 10 segments of 2 s, 100 bytes each: 50 bytes/s, 20 s.
    let m = manifest("m", &[100; 10]);
    assert_eq!(store.prefix_len(&m), 2, "configured 4 s");
    // A link faster than the media needs less than the configured prefix: 4 s stays.
    store.set_link(LinkEstimate {
        throughput: 1000.0,
        first_byte_s: 0.1,
        jitter_s: 0.02,
    });
    assert_eq!(store.prefix_len(&m), 2);
    // Half the media rate, first byte 0.5 s, jitter 0.5 s: (1/2)(1) + 20 (1/2) + 1 s
    // margin = 11.5 s: segments starting at 0, 2, ..., 10.
    store.set_link(LinkEstimate {
        throughput: 25.0,
        first_byte_s: 0.5,
        jitter_s: 0.5,
    });
    assert_eq!(store.prefix_us(&m), 11_500_000);
    assert_eq!(store.prefix_len(&m), 6);
    assert!(store.is_prefix(&m, 5) && !store.is_prefix(&m, 6));
}

#[tokio::test]
async fn capacity_holds_under_churn() {
    use rand::{Rng as _, SeedableRng as _};
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path(), 2000, 4_000_000).unwrap();
    let mut rng = rand::rngs::SmallRng::seed_from_u64(9);
    let objects: Vec<_> = (0..20)
        .map(|k| {
            let sizes: Vec<u64> = (0..8).map(|_| rng.random_range(50..300)).collect();
            manifest(&format!("o{k}"), &sizes)
        })
        .collect();
    for m in &objects {
        store.put_manifest(m).unwrap();
    }
    for _ in 0..500 {
        let m = &objects[rng.random_range(0..objects.len())];
        store.requested(&m.object);
        let i = rng.random_range(0..m.segments.len());
        store.put(m, i, &payload(m.segments[i].size)).await;
        if rng.random::<f64>() < 0.3 {
            store.watched(m, rng.random_range(0..=m.segments.len()));
        }
        assert!(store.used() <= 2000);
        let held: u64 = objects
            .iter()
            .flat_map(|m| {
                (0..m.segments.len())
                    .filter(|&i| store.has(m, i))
                    .map(|i| m.segments[i].size)
            })
            .sum();
        assert_eq!(held, store.used(), "the index counts what it holds");
    }
    assert!(store.evictions() > 0);
}

#[tokio::test]
async fn a_corrupt_segment_is_dropped_not_served() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path(), 1 << 20, 4_000_000).unwrap();
    let body = payload(100);
    let mut m = (*manifest("obj", &[100])).clone();
    m.segments[0]
        .checksum
        .copy_from_slice(ring::digest::digest(&ring::digest::SHA256, &body).as_ref());
    let m = Arc::new(m);
    store.put_manifest(&m).unwrap();
    store.put(&m, 0, &body).await;
    assert_eq!(store.read(&m, 0).await, Some(body));
    // Flip a byte on disk: the read refuses it and forgets the segment.
    let path = seg_path(&object_dir(&dir.path().join("objects"), &m.object), 0);
    let mut bytes = std::fs::read(&path).unwrap();
    bytes[10] ^= 1;
    std::fs::write(&path, bytes).unwrap();
    assert_eq!(store.read(&m, 0).await, None);
    assert!(!store.has(&m, 0));
    assert!(!path.exists());
}
