//! Advertisements between helpers (PROTOCOL.md §8.8): which segments of which objects a
//! helper holds, as ranges of segment indexes, in full snapshots and deltas with versions.
//!
//! An ADVERT travels like a segment request: the sender opens a bidirectional stream, writes
//! one ADVERT frame and FIN; the receiver answers one RESPONSE (OK, or STALE_REVISION when it
//! needs a snapshot before it can apply deltas) and FIN.

use crate::address::ObjectName;
use crate::error::DecodeError;
use crate::limits::Limits;
use crate::segment::frame_type::ADVERT;
use crate::varint::{self, Reader};

/// Longest helper name, bytes.
pub const MAX_SENDER: u64 = 64;

/// Held segment indexes as sorted, disjoint, non-adjacent half-open ranges.
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash)]
pub struct Ranges(Vec<(u64, u64)>);

impl Ranges {
    /// From any indexes (unsorted, repeated): the canonical ranges.
    pub fn from_indices(it: impl IntoIterator<Item = u64>) -> Self {
        let mut v: Vec<u64> = it.into_iter().collect();
        v.sort_unstable();
        v.dedup();
        let mut out: Vec<(u64, u64)> = Vec::new();
        for i in v {
            match out.last_mut() {
                Some((_, end)) if *end == i => *end = i + 1,
                _ => out.push((i, i.saturating_add(1))),
            }
        }
        Self(out)
    }

    /// The ranges, `(start, end)` with `end` exclusive.
    pub fn ranges(&self) -> &[(u64, u64)] {
        &self.0
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    pub fn contains(&self, i: u64) -> bool {
        // Ranges are sorted: the last one starting at or before `i`.
        let k = self.0.partition_point(|&(s, _)| s <= i);
        k > 0 && i < self.0[k - 1].1
    }

    /// How many indexes are held.
    pub fn count(&self) -> u64 {
        self.0.iter().map(|(s, e)| e - s).sum()
    }

    pub fn iter(&self) -> impl Iterator<Item = u64> + '_ {
        self.0.iter().flat_map(|&(s, e)| s..e)
    }
}

/// What a helper holds of one object.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Holding {
    pub object: ObjectName,
    /// The manifest revision the segments belong to.
    pub revision: u64,
    /// Held segments; empty in a delta: none of this object any more.
    pub segments: Ranges,
}

impl Holding {
    /// Bytes this holding takes in an ADVERT body: a sender that splits what it holds over
    /// several adverts counts with it.
    pub fn encoded_len(&self) -> usize {
        let name = self.object.as_str().len();
        let mut n = varint::size(name as u64)
            + name
            + varint::size(self.revision)
            + varint::size(self.segments.0.len() as u64);
        let mut at = 0;
        for &(s, e) in &self.segments.0 {
            n += varint::size(s - at) + varint::size(e - s);
            at = e;
        }
        n
    }
}

/// Most bytes an ADVERT body from `sender` takes besides its holdings (the five counters at
/// their longest).
pub fn max_head_len(sender: &str) -> usize {
    varint::size(sender.len() as u64) + sender.len() + 5 * 8
}

/// One advertisement.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Advert {
    /// The sending helper's name (1 to 64 bytes).
    pub sender: String,
    /// Changes when the sender restarts (its versions start again).
    pub epoch: u64,
    /// One more than the previous advert the sender sent this receiver (≥ 1).
    pub version: u64,
    /// 0: a snapshot (every object held). Otherwise a delta on version `base`: the objects
    /// whose holdings changed since, each with its whole new set.
    pub base: u64,
    /// Milliseconds until the sender's next advert to this receiver; the receiver expires
    /// what this one says after a multiple of it.
    pub period_ms: u64,
    pub holdings: Vec<Holding>,
}

impl Advert {
    pub fn is_snapshot(&self) -> bool {
        self.base == 0
    }

    /// The ADVERT frame.
    pub fn encode(&self) -> Vec<u8> {
        let mut body = Vec::with_capacity(32 + self.holdings.len() * 24);
        varint::put_str(&mut body, &self.sender);
        for v in [
            self.epoch,
            self.version,
            self.base,
            self.period_ms,
            self.holdings.len() as u64,
        ] {
            varint::put(&mut body, v);
        }
        for h in &self.holdings {
            varint::put_str(&mut body, h.object.as_str());
            varint::put(&mut body, h.revision);
            varint::put(&mut body, h.segments.0.len() as u64);
            let mut at = 0;
            for &(s, e) in &h.segments.0 {
                varint::put(&mut body, s - at);
                varint::put(&mut body, e - s);
                at = e;
            }
        }
        let mut out = Vec::with_capacity(body.len() + 10);
        varint::put(&mut out, ADVERT);
        varint::put(&mut out, body.len() as u64);
        out.extend_from_slice(&body);
        out
    }
}

/// Decodes the ADVERT frame at the start of `buf`: `Ok(None)` until it is complete. Returns
/// the advert and the bytes it took.
pub fn decode(buf: &[u8], limits: &Limits) -> Result<Option<(Advert, usize)>, DecodeError> {
    let Some((ty, n1)) = varint::get(buf) else {
        return Ok(None);
    };
    if ty != ADVERT {
        return Err(DecodeError::Unknown {
            what: "frame type",
            value: ty,
        });
    }
    let Some((len, n2)) = varint::get(&buf[n1..]) else {
        return Ok(None);
    };
    if len > limits.max_advert as u64 {
        return Err(DecodeError::TooLarge {
            what: "advert",
            size: len,
            limit: limits.max_advert as u64,
        });
    }
    let start = n1 + n2;
    let end = start + len as usize; // len <= max_advert, a usize
    let Some(body) = buf.get(start..end) else {
        return Ok(None);
    };
    let mut r = Reader::new(body);
    let sender = r.string(MAX_SENDER, "helper name")?.to_owned();
    if sender.is_empty() {
        return Err(DecodeError::Malformed("empty helper name"));
    }
    let epoch = r.varint()?;
    let version = r.varint()?;
    if version == 0 {
        return Err(DecodeError::Malformed("advert version 0"));
    }
    let base = r.varint()?;
    if base >= version {
        return Err(DecodeError::Malformed("advert delta on a later version"));
    }
    let period_ms = r.varint()?;
    // Every holding takes at least 3 bytes: a count beyond that is a lie.
    let n = r.varint_count(limits.max_advert_objects as u64, "advert objects")?;
    if n > r.remaining() / 3 {
        return Err(DecodeError::Truncated);
    }
    let mut holdings = Vec::with_capacity(n);
    for _ in 0..n {
        let name = r.string(limits.max_object_name as u64, "object name")?;
        let object = ObjectName::new(name, limits.max_object_name)?;
        let revision = r.varint()?;
        let k = r.varint_count(limits.max_segments as u64, "advert ranges")?;
        if k > r.remaining() / 2 {
            return Err(DecodeError::Truncated);
        }
        let mut ranges = Vec::with_capacity(k);
        let mut at: u64 = 0;
        for j in 0..k {
            let gap = r.varint()?;
            let n = r.varint()?;
            // Canonical: ranges are non-empty and never adjacent (a gap of 0 would merge).
            if n == 0 || (j > 0 && gap == 0) {
                return Err(DecodeError::Malformed(
                    "advert range empty or not canonical",
                ));
            }
            let s = at.saturating_add(gap);
            let e = s.saturating_add(n);
            if e > limits.max_segments as u64 {
                return Err(DecodeError::TooLarge {
                    what: "advert segment index",
                    size: e,
                    limit: limits.max_segments as u64,
                });
            }
            ranges.push((s, e));
            at = e;
        }
        holdings.push(Holding {
            object,
            revision,
            segments: Ranges(ranges),
        });
    }
    r.finish("advert")?;
    Ok(Some((
        Advert {
            sender,
            epoch,
            version,
            base,
            period_ms,
            holdings,
        },
        end,
    )))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn name(s: &str) -> ObjectName {
        ObjectName::new(s, 1024).unwrap()
    }

    // The example of docs/PROTOCOL.md §8.8.
    #[test]
    fn advert_example() {
        let a = Advert {
            sender: "h1".into(),
            epoch: 7,
            version: 2,
            base: 1,
            period_ms: 1000,
            holdings: vec![Holding {
                object: name("a"),
                revision: 300,
                segments: Ranges::from_indices([0, 1, 2, 5]),
            }],
        };
        let bytes = [
            0x04, 0x12, 0x02, b'h', b'1', 0x07, 0x02, 0x01, 0x43, 0xe8, 0x01, 0x01, b'a', 0x41,
            0x2c, 0x02, 0x00, 0x03, 0x02, 0x01,
        ];
        assert_eq!(a.encode(), bytes);
        let l = Limits::default();
        assert_eq!(decode(&bytes, &l), Ok(Some((a, bytes.len()))));
        for cut in 0..bytes.len() {
            assert!(matches!(decode(&bytes[..cut], &l), Ok(None)), "{cut}");
        }
    }

    #[test]
    fn ranges_are_canonical() {
        let r = Ranges::from_indices([9, 3, 4, 4, 5, 0]);
        assert_eq!(r.ranges(), &[(0, 1), (3, 6), (9, 10)]);
        assert_eq!(r.count(), 5);
        assert!(r.contains(0) && r.contains(5) && r.contains(9));
        assert!(!r.contains(1) && !r.contains(6) && !r.contains(10));
        assert_eq!(r.iter().collect::<Vec<_>>(), vec![0, 3, 4, 5, 9]);
    }

    #[test]
    fn bad_adverts_are_refused() {
        let l = Limits::default();
        let ok = Advert {
            sender: "h".into(),
            epoch: 1,
            version: 1,
            base: 0,
            period_ms: 5,
            holdings: vec![],
        };
        let mut zero = ok.clone();
        zero.version = 0;
        assert!(decode(&zero.encode(), &l).is_err());
        let mut future = ok.clone();
        future.base = 1;
        assert!(decode(&future.encode(), &l).is_err());
        let mut unnamed = ok.clone();
        unnamed.sender.clear();
        assert!(decode(&unnamed.encode(), &l).is_err());
        // Adjacent ranges written as two: not canonical.
        let adjacent = [
            0x04, 0x0f, 0x01, b'h', 0x01, 0x01, 0x00, 0x05, 0x01, 0x01, b'a', 0x00, 0x02, 0x00,
            0x01, 0x00, 0x01,
        ];
        assert!(decode(&adjacent, &l).is_err());
        // A huge object count in a small body.
        let lying = [0x04, 0x08, 0x01, b'h', 0x01, 0x01, 0x00, 0x05, 0x40, 0x64];
        assert!(decode(&lying, &l).is_err());
        // Over the size limit: refused from the length alone.
        let small = Limits { max_advert: 4, ..l };
        assert!(matches!(
            decode(&ok.encode(), &small),
            Err(DecodeError::TooLarge { .. })
        ));
    }
}
