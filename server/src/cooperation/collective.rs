//! Collective storage: within a scope, each segment has one owner among the helpers,
//! chosen by rendezvous (highest random weight) hashing on (helper, object, segment). The
//! owner keeps it; the others keep only their prefixes of popular objects and fetch the rest
//! from the owner (who fetches it once). Together the scope holds the whole object while each
//! helper holds a part, and when a helper leaves only its share moves.

use ring::digest::{SHA256, digest};

fn weight(member: &str, object: &str, index: u64) -> u64 {
    let mut input = Vec::with_capacity(member.len() + object.len() + 10);
    input.extend_from_slice(member.as_bytes());
    input.push(0);
    input.extend_from_slice(object.as_bytes());
    input.push(0);
    input.extend_from_slice(&index.to_be_bytes());
    let d = digest(&SHA256, &input);
    let mut b = [0u8; 8];
    b.copy_from_slice(&d.as_ref()[..8]);
    u64::from_be_bytes(b)
}

/// The owner of segment `index` of `object` among `members` (`None`: no members).
pub fn owner<'a>(
    object: &str,
    index: u64,
    members: impl IntoIterator<Item = &'a str>,
) -> Option<&'a str> {
    members
        .into_iter()
        .map(|m| (weight(m, object, index), m))
        .max()
        .map(|(_, m)| m)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn segments_spread_evenly_and_only_a_leavers_share_moves() {
        let three = ["h-a", "h-b", "h-c"];
        let n = 3000;
        let mut count = [0usize; 3];
        for i in 0..n {
            let o = owner("obj-1", i, three).unwrap();
            count[three.iter().position(|m| *m == o).unwrap()] += 1;
        }
        for c in count {
            assert!((850..=1150).contains(&c), "{count:?}");
        }
        // h-c leaves: segments it did not own keep their owner.
        let two = ["h-a", "h-b"];
        for i in 0..n {
            let before = owner("obj-1", i, three).unwrap();
            let after = owner("obj-1", i, two).unwrap();
            if before != "h-c" {
                assert_eq!(before, after);
            }
        }
        assert_eq!(owner("x", 0, []), None);
        // Order of members does not matter.
        assert_eq!(owner("x", 5, ["b", "a"]), owner("x", 5, ["a", "b"]));
    }
}
