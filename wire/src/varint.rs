//! QUIC variable-length integers (RFC 9000 §16), used by every binary part of segue/1.

use bytes::BufMut;

use crate::error::DecodeError;

/// Largest value a varint can carry: 2^62 - 1.
pub const MAX: u64 = (1 << 62) - 1;

/// Encoded size of `v` in bytes (1, 2, 4 or 8). Values above [`MAX`] are a caller bug (see
/// [`put`]); use [`checked`] on untrusted numbers.
pub fn size(v: u64) -> usize {
    if v < 1 << 6 {
        1
    } else if v < 1 << 14 {
        2
    } else if v < 1 << 30 {
        4
    } else {
        8
    }
}

/// Returns `v` if it fits in a varint.
pub fn checked(v: u64) -> Result<u64, DecodeError> {
    if v > MAX {
        Err(DecodeError::Malformed("integer exceeds 2^62-1"))
    } else {
        Ok(v)
    }
}

/// Appends `v`, at most [`MAX`]. A larger value is a caller bug: debug builds (tests, fuzz
/// targets) panic on it, so the bug is found there; release builds saturate it to [`MAX`]
/// rather than write a wrong encoding. Encoders keep their values in range ([`checked`]).
pub fn put<B: BufMut>(buf: &mut B, v: u64) {
    debug_assert!(v <= MAX, "varint out of range: {v}");
    let v = v.min(MAX);
    match size(v) {
        1 => buf.put_u8(v as u8),
        2 => buf.put_u16(0x4000 | v as u16),
        4 => buf.put_u32(0x8000_0000 | v as u32),
        _ => buf.put_u64(0xc000_0000_0000_0000 | v),
    }
}

/// Decodes a varint at the start of `buf`. `Ok(None)` means more bytes are needed.
/// Returns the value and the number of bytes it took.
pub fn get(buf: &[u8]) -> Option<(u64, usize)> {
    let first = *buf.first()?;
    let len = 1usize << (first >> 6);
    let bytes = buf.get(..len)?;
    let mut v = u64::from(first & 0x3f);
    for b in &bytes[1..] {
        v = (v << 8) | u64::from(*b);
    }
    Some((v, len))
}

/// A cursor over a complete buffer: every read fails with [`DecodeError::Truncated`]
/// when the buffer ends early. Used for length-delimited bodies.
#[derive(Debug)]
pub struct Reader<'a> {
    buf: &'a [u8],
    pos: usize,
}

impl<'a> Reader<'a> {
    pub fn new(buf: &'a [u8]) -> Self {
        Self { buf, pos: 0 }
    }

    pub fn remaining(&self) -> usize {
        self.buf.len() - self.pos
    }

    pub fn is_empty(&self) -> bool {
        self.remaining() == 0
    }

    pub fn position(&self) -> usize {
        self.pos
    }

    pub fn varint(&mut self) -> Result<u64, DecodeError> {
        let (v, n) = get(&self.buf[self.pos..]).ok_or(DecodeError::Truncated)?;
        self.pos += n;
        Ok(v)
    }

    /// A varint that must fit in `usize` and not exceed `limit`.
    /// A count of items (`what`, plural) of at most `limit`.
    pub fn varint_count(&mut self, limit: u64, what: &'static str) -> Result<usize, DecodeError> {
        let v = self.varint()?;
        match usize::try_from(v) {
            Ok(n) if v <= limit => Ok(n),
            _ => Err(DecodeError::TooMany {
                what,
                count: v,
                limit,
            }),
        }
    }

    /// A value (not a size or a count) of at most `limit`.
    pub fn varint_at_most(&mut self, limit: u64, what: &'static str) -> Result<u64, DecodeError> {
        let v = self.varint()?;
        if v > limit {
            return Err(DecodeError::OutOfRange {
                what,
                value: v,
                limit,
            });
        }
        Ok(v)
    }

    /// A size in bytes (`what`) of at most `limit`.
    pub fn varint_bounded(&mut self, limit: u64, what: &'static str) -> Result<usize, DecodeError> {
        let v = self.varint()?;
        if v > limit {
            return Err(DecodeError::TooLarge {
                what,
                size: v,
                limit,
            });
        }
        usize::try_from(v).map_err(|_| DecodeError::TooLarge {
            what,
            size: v,
            limit,
        })
    }

    pub fn u8(&mut self) -> Result<u8, DecodeError> {
        let b = *self.buf.get(self.pos).ok_or(DecodeError::Truncated)?;
        self.pos += 1;
        Ok(b)
    }

    pub fn bytes(&mut self, n: usize) -> Result<&'a [u8], DecodeError> {
        let end = self.pos.checked_add(n).ok_or(DecodeError::Truncated)?;
        let out = self.buf.get(self.pos..end).ok_or(DecodeError::Truncated)?;
        self.pos = end;
        Ok(out)
    }

    pub fn array<const N: usize>(&mut self) -> Result<[u8; N], DecodeError> {
        let s = self.bytes(N)?;
        let mut out = [0u8; N];
        out.copy_from_slice(s);
        Ok(out)
    }

    /// A varint-length-prefixed UTF-8 string of at most `limit` bytes.
    pub fn string(&mut self, limit: u64, what: &'static str) -> Result<&'a str, DecodeError> {
        let n = self.varint_bounded(limit, what)?;
        let raw = self.bytes(n)?;
        std::str::from_utf8(raw).map_err(|_| DecodeError::Malformed("string is not UTF-8"))
    }

    /// Fails unless every byte has been consumed.
    pub fn finish(&self, what: &'static str) -> Result<(), DecodeError> {
        if self.is_empty() {
            Ok(())
        } else {
            Err(DecodeError::TrailingBytes(what))
        }
    }
}

/// Appends a varint-length-prefixed string.
pub fn put_str<B: BufMut>(buf: &mut B, s: &str) {
    put(buf, s.len() as u64);
    buf.put_slice(s.as_bytes());
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    #[cfg(debug_assertions)]
    #[should_panic(expected = "varint out of range")]
    fn an_out_of_range_value_is_a_bug_found_in_debug_builds() {
        put(&mut Vec::new(), MAX + 1);
    }

    #[test]
    fn the_largest_value_encodes() {
        let mut b = Vec::new();
        put(&mut b, MAX);
        assert_eq!(get(&b), Some((MAX, 8)));
    }

    // Examples from RFC 9000 Appendix A.1.
    #[test]
    fn rfc9000_examples() {
        let cases: [(&[u8], u64); 4] = [
            (
                &[0xc2, 0x19, 0x7c, 0x5e, 0xff, 0x14, 0xe8, 0x8c],
                151_288_809_941_952_652,
            ),
            (&[0x9d, 0x7f, 0x3e, 0x7d], 494_878_333),
            (&[0x7b, 0xbd], 15_293),
            (&[0x25], 37),
        ];
        for (bytes, value) in cases {
            assert_eq!(get(bytes), Some((value, bytes.len())));
            let mut out = Vec::new();
            put(&mut out, value);
            assert_eq!(out, bytes);
        }
        // A two-byte encoding of 37 is valid on input.
        assert_eq!(get(&[0x40, 0x25]), Some((37, 2)));
    }

    #[test]
    fn incomplete() {
        assert_eq!(get(&[]), None);
        assert_eq!(get(&[0x40]), None);
        assert_eq!(get(&[0x80, 0, 0]), None);
    }

    #[test]
    fn reader_limits() {
        let mut r = Reader::new(&[0x44, 0x00]); // 1024
        assert!(matches!(
            r.varint_bounded(1000, "x"),
            Err(DecodeError::TooLarge { size: 1024, .. })
        ));
        let mut r = Reader::new(&[0x44, 0x00]);
        let e = r.varint_count(1000, "tracks").unwrap_err();
        assert_eq!(e.to_string(), "1024 tracks, limit is 1000");
        let mut r = Reader::new(&[0x44, 0x00]);
        let e = r.varint_at_most(1000, "composition offset").unwrap_err();
        assert_eq!(
            e.to_string(),
            "composition offset 1024 out of range (at most 1000)"
        );
    }
}
