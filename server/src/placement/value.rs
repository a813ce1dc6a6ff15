//! What a cached segment is worth, and a plan that fills a capacity with the best ones.
//!
//! Keeping segment k of an object requested at rate λ (requests/s) serves, per byte stored,
//! λ · S(t_k / L) bytes per second from the cache instead of the origin, S being the share
//! of plays still watching at the segment's start ([`super::watch`]). The segments of the
//! required prefix ([`super::link`]) also make starts immediate; they carry a bonus of
//! `start_bonus` · λ on top, where callers give the worth of one immediate start (in segments
//! of byte hits) divided by the number of segments the required prefix has. Both terms are non-increasing along an object, so the most
//! valuable segments of an object always form a prefix, and evicting the least valuable
//! segment first takes suffix segments of cold objects first and prefixes of hot ones last.

/// The eviction value of a held segment, log2, on the popularity's common scale (comparable
/// across objects at any time): the object's popularity `score` (log2 of its decayed request
/// rate) plus log2 of the segment's [`density`] at rate 1. The segment starts at `position`
/// (a share of the object's length); an immediate start is worth `start_bonus` segments,
/// shared by the `prefix_segments` of the required prefix. The edge's eviction and the
/// placement simulator both rank segments by this, so the simulator measures the edge's rule.
pub fn segment_value(
    score: f64,
    watch: &super::watch::WatchModel,
    position: f64,
    in_required_prefix: bool,
    start_bonus: f64,
    prefix_segments: usize,
) -> f64 {
    let d = density(
        1.0,
        watch.survival(position),
        in_required_prefix,
        start_bonus / prefix_segments.max(1) as f64,
    );
    score + d.log2()
}

/// Value per byte per second of keeping a segment.
pub fn density(rate: f64, survival: f64, in_required_prefix: bool, start_bonus: f64) -> f64 {
    let bonus = if in_required_prefix { start_bonus } else { 0.0 };
    rate.max(0.0) * (survival.clamp(0.0, 1.0) + bonus.max(0.0))
}

/// Fills `capacity` bytes with whole prefixes: `objects[i]` lists object i's segments as
/// (density, bytes), densities non-increasing. Returns how many leading segments of each to
/// keep. Greedy on density, which is optimal for segments of equal size; an object whose next
/// segment does not fit stops growing.
pub fn plan(objects: &[Vec<(f64, u64)>], capacity: u64) -> Vec<usize> {
    use std::cmp::Ordering;
    use std::collections::BinaryHeap;

    #[derive(PartialEq)]
    struct Next(f64, usize);
    impl Eq for Next {}
    impl PartialOrd for Next {
        fn partial_cmp(&self, o: &Self) -> Option<Ordering> {
            Some(self.cmp(o))
        }
    }
    impl Ord for Next {
        fn cmp(&self, o: &Self) -> Ordering {
            self.0.total_cmp(&o.0).then(o.1.cmp(&self.1))
        }
    }

    let mut keep = vec![0; objects.len()];
    let mut heap: BinaryHeap<Next> = objects
        .iter()
        .enumerate()
        .filter_map(|(i, s)| s.first().map(|&(d, _)| Next(d, i)))
        .filter(|n| n.0 > 0.0)
        .collect();
    let mut left = capacity;
    while let Some(Next(_, i)) = heap.pop() {
        let (_, bytes) = objects[i][keep[i]];
        if bytes > left {
            continue;
        }
        left -= bytes;
        keep[i] += 1;
        if let Some(&(d, _)) = objects[i].get(keep[i])
            && d > 0.0
        {
            heap.push(Next(d, i));
        }
    }
    keep
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn density_terms() {
        assert_eq!(density(2.0, 0.5, false, 1.0), 1.0);
        assert_eq!(density(2.0, 0.5, true, 1.0), 3.0);
        assert_eq!(density(-1.0, 0.5, true, 1.0), 0.0);
    }

    #[test]
    fn plan_by_hand() {
        // Object 0: densities 10, 6, 1; object 1: 8, 7, 2; object 2: 3. Each segment 10 bytes.
        let objs = vec![
            vec![(10.0, 10), (6.0, 10), (1.0, 10)],
            vec![(8.0, 10), (7.0, 10), (2.0, 10)],
            vec![(3.0, 10)],
        ];
        // 40 bytes: 10, 8, 7, 6 -> 2 + 2 + 0.
        assert_eq!(plan(&objs, 40), vec![2, 2, 0]);
        // 50 bytes: then 3 -> object 2 gets its one segment.
        assert_eq!(plan(&objs, 50), vec![2, 2, 1]);
        // 0 bytes, and everything.
        assert_eq!(plan(&objs, 0), vec![0, 0, 0]);
        assert_eq!(plan(&objs, 1000), vec![3, 3, 1]);
        // A segment too large is skipped; the object stops there, others go on.
        let objs = vec![vec![(9.0, 10), (8.0, 100)], vec![(5.0, 10), (4.0, 10)]];
        assert_eq!(plan(&objs, 35), vec![1, 2]);
    }

    #[test]
    fn never_exceeds_capacity() {
        let objs: Vec<Vec<(f64, u64)>> = (0..50)
            .map(|i| {
                (0..20)
                    .map(|k| {
                        (
                            100.0 / f64::from(i + 1) / f64::from(k + 1),
                            7 + (k % 3) as u64,
                        )
                    })
                    .collect()
            })
            .collect();
        for cap in [0, 13, 100, 999, 5000] {
            let keep = plan(&objs, cap);
            let used: u64 = keep
                .iter()
                .enumerate()
                .map(|(i, &n)| objs[i][..n].iter().map(|s| s.1).sum::<u64>())
                .sum();
            assert!(used <= cap);
        }
    }
}
