//! AV1 over RTP (AOMedia "RTP Payload Format For AV1", v1.0). A frame is one temporal unit
//! as Segue stores it (PROTOCOL.md §8.6.0): OBUs in the low-overhead format, each with
//! `obu_has_size_field` = 1 and a minimal LEB128 size, no temporal delimiter or padding.
//!
//! Each RTP payload is an aggregation header `Z|Y|W(2)|N|000` and OBU elements. Senders
//! write every element with its LEB128 length (W = 0) and each OBU without its size field
//! (the element's length gives it); an OBU larger than the room left is fragmented (Y on the
//! packet it starts in, Z on the one it continues in). N marks the first packet of a coded
//! video sequence (a temporal unit holding a sequence header). Receivers accept W = 1..3
//! too, and OBUs that kept their size field.

use bytes::{BufMut, Bytes, BytesMut};

use super::Payloads;
use crate::error::DecodeError;

/// OBU types (AV1 §6.2.2).
pub const OBU_SEQUENCE_HEADER: u8 = 1;
pub const OBU_TEMPORAL_DELIMITER: u8 = 2;
pub const OBU_TILE_LIST: u8 = 8;
pub const OBU_PADDING: u8 = 15;

/// The type of an OBU from its first header byte.
pub fn obu_type(h: u8) -> u8 {
    (h >> 3) & 0x0f
}

/// Writes `v` as minimal LEB128.
pub fn put_leb128(out: &mut impl BufMut, mut v: u64) {
    loop {
        let b = (v & 0x7f) as u8;
        v >>= 7;
        if v == 0 {
            out.put_u8(b);
            return;
        }
        out.put_u8(b | 0x80);
    }
}

/// Reads a LEB128 value (at most 8 bytes, AV1 §4.10.5): the value and the bytes it took.
pub fn leb128(b: &[u8]) -> Result<(u64, usize), DecodeError> {
    let mut v = 0u64;
    for (i, &x) in b.iter().take(8).enumerate() {
        v |= u64::from(x & 0x7f) << (7 * i);
        if x & 0x80 == 0 {
            return Ok((v, i + 1));
        }
    }
    Err(DecodeError::Malformed("LEB128 value cut short or too long"))
}

fn leb128_len(v: u64) -> usize {
    let mut n = 1;
    let mut v = v >> 7;
    while v != 0 {
        n += 1;
        v >>= 7;
    }
    n
}

/// One OBU of a temporal unit: its header (1 or 2 bytes, `obu_has_size_field` cleared) and
/// its payload.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Obu {
    pub header: Bytes,
    pub payload: Bytes,
}

impl Obu {
    pub fn kind(&self) -> u8 {
        obu_type(self.header[0])
    }

    /// The OBU in the stored form: header with `obu_has_size_field` set, minimal LEB128
    /// size, payload.
    pub fn write_sized(&self, out: &mut BytesMut) {
        out.put_u8(self.header[0] | 0x02);
        out.put_slice(&self.header[1..]);
        put_leb128(out, self.payload.len() as u64);
        out.put_slice(&self.payload);
    }

    /// The OBU as an RTP element carries it: without a size field.
    fn unsized_len(&self) -> usize {
        self.header.len() + self.payload.len()
    }
}

/// Parses one OBU from the start of `b` (it may lack a size field only if it is the last,
/// `last`): the OBU and the bytes it took.
fn parse_obu(b: &Bytes, last: bool) -> Result<(Obu, usize), DecodeError> {
    let &h = b.first().ok_or(DecodeError::Malformed("empty OBU"))?;
    if h & 0x80 != 0 {
        return Err(DecodeError::Malformed("OBU forbidden bit set"));
    }
    let ext = h & 0x04 != 0;
    let has_size = h & 0x02 != 0;
    let head_len = if ext { 2 } else { 1 };
    if b.len() < head_len {
        return Err(DecodeError::Malformed("OBU header cut short"));
    }
    let mut header = BytesMut::from(&b[..head_len]);
    header[0] &= !0x02;
    let (payload_len, used) = if has_size {
        let (n, used) = leb128(&b[head_len..])?;
        (usize::try_from(n).unwrap_or(usize::MAX), used)
    } else if last {
        (b.len() - head_len, 0)
    } else {
        return Err(DecodeError::Malformed(
            "OBU without a size field before the last",
        ));
    };
    let start = head_len + used;
    let end = start
        .checked_add(payload_len)
        .filter(|e| *e <= b.len())
        .ok_or(DecodeError::Malformed("OBU overruns its temporal unit"))?;
    Ok((
        Obu {
            header: header.freeze(),
            payload: b.slice(start..end),
        },
        end,
    ))
}

/// The OBUs of a temporal unit in the low-overhead format (every OBU but the last with a
/// size field).
pub fn obus(tu: &Bytes) -> Result<Vec<Obu>, DecodeError> {
    let mut out = Vec::new();
    let mut rest = tu.clone();
    while !rest.is_empty() {
        let (obu, used) = parse_obu(&rest, true)?;
        rest = rest.slice(used..);
        out.push(obu);
    }
    Ok(out)
}

/// Packetizes one temporal unit into payloads of at most `max_payload` bytes (at least 4).
pub fn packetize(tu: &Bytes, max_payload: usize) -> Result<Payloads, DecodeError> {
    let max_payload = max_payload.max(4);
    let list = obus(tu)?;
    let list: Vec<Obu> = list
        .into_iter()
        .filter(|o| {
            !matches!(
                o.kind(),
                OBU_TEMPORAL_DELIMITER | OBU_PADDING | OBU_TILE_LIST
            )
        })
        .collect();
    if list.is_empty() {
        return Err(DecodeError::Malformed("temporal unit without OBUs to send"));
    }
    let new_sequence = list.iter().any(|o| o.kind() == OBU_SEQUENCE_HEADER);
    // A packet starts with its aggregation header: Z when it continues a fragment, N on the
    // first packet of a coded video sequence.
    let start = |continues: bool, first: bool| {
        let mut p = BytesMut::with_capacity(max_payload);
        p.put_u8(if continues { 0x80 } else { 0 } | if first && new_sequence { 0x08 } else { 0 });
        p
    };
    let mut out: Vec<BytesMut> = Vec::new();
    let mut cur = start(false, true);
    for obu in &list {
        let mut body = BytesMut::with_capacity(obu.unsized_len());
        body.put_slice(&obu.header);
        body.put_slice(&obu.payload);
        let mut body = body.freeze();
        while !body.is_empty() {
            let room = max_payload - cur.len();
            if leb128_len(body.len() as u64) + body.len() <= room {
                put_leb128(&mut cur, body.len() as u64);
                cur.put_slice(&body);
                break;
            }
            // As much as fits, with its length; the rest starts the next packet. (Whatever
            // does not fit is longer than what does: the fragment is never the whole.)
            let k = room.saturating_sub(leb128_len(room as u64));
            let continues = k > 0;
            if continues {
                put_leb128(&mut cur, k as u64);
                cur.put_slice(&body[..k]);
                body = body.slice(k..);
                cur[0] |= 0x40; // Y: the last element continues
            }
            out.push(std::mem::replace(&mut cur, start(continues, false)));
        }
    }
    out.push(cur);
    let n = out.len();
    Ok(out
        .into_iter()
        .enumerate()
        .map(|(i, p)| (p.freeze(), i + 1 == n))
        .collect())
}

/// Rebuilds temporal units from payloads.
#[derive(Debug)]
pub struct Depacketizer {
    max_frame: usize,
    tu: BytesMut,
    /// An OBU fragment waiting for its continuation (Y was set).
    fragment: Option<BytesMut>,
}

impl Depacketizer {
    pub fn new(max_frame: usize) -> Self {
        Self {
            max_frame,
            tu: BytesMut::new(),
            fragment: None,
        }
    }

    /// Adds one payload; returns the temporal unit when `marker` ends it. On error the
    /// partial unit is dropped.
    pub fn push(&mut self, payload: &[u8], marker: bool) -> Result<Option<Bytes>, DecodeError> {
        let r = self.push_inner(payload);
        if r.is_err() {
            self.reset();
            return r.map(|_| None);
        }
        if marker {
            if self.fragment.is_some() {
                self.reset();
                return Err(DecodeError::Malformed(
                    "temporal unit ended inside a fragmented OBU",
                ));
            }
            return Ok(Some(self.tu.split().freeze()));
        }
        Ok(None)
    }

    fn element(&mut self, e: &[u8]) -> Result<(), DecodeError> {
        if self.tu.len() + e.len() + 8 > self.max_frame {
            return Err(DecodeError::TooLarge {
                what: "AV1 temporal unit",
                size: (self.tu.len() + e.len()) as u64,
                limit: self.max_frame as u64,
            });
        }
        let e = Bytes::copy_from_slice(e);
        let (obu, _) = parse_obu(&e, true)?;
        obu.write_sized(&mut self.tu);
        Ok(())
    }

    fn push_inner(&mut self, p: &[u8]) -> Result<(), DecodeError> {
        let (&agg, mut rest) = p
            .split_first()
            .ok_or(DecodeError::Malformed("empty AV1 payload"))?;
        let (z, y, w) = (agg & 0x80 != 0, agg & 0x40 != 0, (agg >> 4) & 0x03);
        if z != self.fragment.is_some() {
            return Err(DecodeError::Malformed(if z {
                "AV1 continuation without its start"
            } else {
                "AV1 fragment not continued"
            }));
        }
        let mut elements: Vec<&[u8]> = Vec::new();
        let mut i = 0u8;
        while !rest.is_empty() {
            i += 1;
            let len = if w != 0 && i == w {
                rest.len()
            } else {
                let (n, used) = leb128(rest)?;
                rest = &rest[used..];
                usize::try_from(n).unwrap_or(usize::MAX)
            };
            let e = rest
                .get(..len)
                .ok_or(DecodeError::Malformed("AV1 element overruns packet"))?;
            elements.push(e);
            rest = &rest[len..];
            if w != 0 && i == w && !rest.is_empty() {
                return Err(DecodeError::Malformed("AV1 bytes after the last element"));
            }
        }
        let n = elements.len();
        for (k, e) in elements.into_iter().enumerate() {
            let mut whole = match (k, self.fragment.take()) {
                (0, Some(mut f)) => {
                    f.extend_from_slice(e);
                    f
                }
                _ => BytesMut::from(e),
            };
            if k + 1 == n && y {
                if whole.len() > self.max_frame {
                    return Err(DecodeError::Malformed("AV1 fragment too large"));
                }
                self.fragment = Some(std::mem::take(&mut whole));
                continue;
            }
            if !whole.is_empty() {
                self.element(&whole)?;
            }
        }
        if n == 0 && y {
            return Err(DecodeError::Malformed("AV1 packet continues nothing"));
        }
        Ok(())
    }

    /// Drops a partial temporal unit.
    pub fn reset(&mut self) {
        self.tu.clear();
        self.fragment = None;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A stored OBU: header byte for `ty` with the size field, LEB128 size, payload.
    fn obu(ty: u8, payload: &[u8]) -> Vec<u8> {
        let mut b = BytesMut::new();
        Obu {
            header: Bytes::from(vec![ty << 3]),
            payload: Bytes::copy_from_slice(payload),
        }
        .write_sized(&mut b);
        b.to_vec()
    }

    fn round_trip(tu: &Bytes, max: usize) -> Payloads {
        let p = packetize(tu, max).unwrap();
        let mut d = Depacketizer::new(1 << 20);
        let mut out = None;
        for (payload, m) in &p {
            assert!(payload.len() <= max.max(4));
            out = d.push(payload, *m).unwrap();
        }
        assert_eq!(out.as_ref(), Some(tu), "max payload {max}");
        p
    }

    #[test]
    fn example_and_fragments() {
        // docs/PROTOCOL.md §7.5: a sequence header (`0a 02 aa bb`) and a frame OBU
        // (`32 03 01 02 03`), max payload 5: N set on the first packet; the frame OBU is
        // split (Y, then Z).
        let tu = Bytes::from([obu(1, &[0xaa, 0xbb]), obu(6, &[1, 2, 3])].concat());
        assert_eq!(&tu[..], &[0x0a, 0x02, 0xaa, 0xbb, 0x32, 0x03, 1, 2, 3]);
        let p = round_trip(&tu, 5);
        let want: Vec<(&[u8], bool)> = vec![
            (&[0x08, 0x03, 0x08, 0xaa, 0xbb], false),
            (&[0x40, 0x03, 0x30, 0x01, 0x02], false),
            (&[0x80, 0x01, 0x03], true),
        ];
        assert_eq!(p.len(), want.len(), "{p:?}");
        for ((got, gm), (w, wm)) in p.iter().zip(want) {
            assert_eq!((&got[..], *gm), (w, wm));
        }
        // Large OBUs over many packets, and in one.
        let big = Bytes::from([obu(1, &[7; 20]), obu(6, &[9; 3000]), obu(4, &[5; 300])].concat());
        for max in [4, 5, 17, 200, 1200, 60 * 1024] {
            round_trip(&big, max);
        }
    }

    #[test]
    fn delimiters_are_dropped_and_sizes_restored() {
        // A temporal delimiter is not sent; an OBU that kept its size field in RTP, and W=2
        // with the last element unsized, both come out in the stored form.
        let tu = Bytes::from([obu(2, &[]), obu(6, &[1, 2])].concat());
        let p = packetize(&tu, 1200).unwrap();
        let mut d = Depacketizer::new(1 << 20);
        assert_eq!(
            d.push(&p[0].0, true).unwrap(),
            Some(Bytes::from(obu(6, &[1, 2])))
        );
        let w2 = [0x20, 0x04, 0x0a, 0x02, 0xaa, 0xbb, 0x30, 0x01];
        assert_eq!(
            d.push(&w2, true).unwrap(),
            Some(Bytes::from([obu(1, &[0xaa, 0xbb]), obu(6, &[1])].concat()))
        );
    }

    #[test]
    fn errors() {
        let mut d = Depacketizer::new(1 << 20);
        assert!(d.push(&[], true).is_err());
        assert!(d.push(&[0x80, 0x01, 0x30], true).is_err()); // continuation without start
        assert!(d.push(&[0x40, 0x01, 0x30], true).is_err()); // ends inside a fragment
        assert!(d.push(&[0x00, 0x05, 0x30], true).is_err()); // element overruns
        assert!(d.push(&[0x00, 0x01, 0xb0], true).is_err()); // forbidden bit
        assert!(
            d.push(
                &[0x00, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff],
                true
            )
            .is_err()
        );
        let mut small = Depacketizer::new(10);
        assert!(
            small
                .push(
                    &[
                        0x00, 0x14, 0x30, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16,
                        17, 18, 19
                    ],
                    true
                )
                .is_err()
        );
        assert!(packetize(&Bytes::from(obu(2, &[])), 100).is_err());
        assert!(packetize(&Bytes::from_static(&[0x32, 0x05, 1]), 100).is_err());
    }
}
