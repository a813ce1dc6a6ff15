//! Chunk integrity (PROTOCOL.md §8.6.1): a segment payload is cut into fixed-size chunks, each
//! with its SHA-256 (the last chunk may be shorter). The manifest carries, per segment, the
//! *chunk root*: the SHA-256 of the concatenated chunk hashes. A segment response may carry
//! the chunk hashes before the payload (CHUNK_HASHES), so a receiver checks the list against
//! the root once, then each chunk as soon as its bytes are in, and forwards it verified —
//! never a byte it has not checked.

use bytes::{Bytes, BytesMut};
use ring::digest::{Context, SHA256, digest};

use super::{HASH_LEN, Hash, SegmentEntry};

/// Chunk size Segue's ingest uses: 16 KiB (11 full-size QUIC packets), so a receiver
/// forwards the first frame after little more than the frame itself, and a 64 MiB segment
/// (the largest allowed) has exactly [`MAX_CHUNKS`] chunks.
pub const DEFAULT_CHUNK_SIZE: u64 = 16 * 1024;
/// Smallest chunk size a manifest may state.
pub const MIN_CHUNK_SIZE: u64 = 1024;
/// Largest chunk size a manifest may state.
pub const MAX_CHUNK_SIZE: u64 = 1024 * 1024;
/// Most chunks one segment may have (so a CHUNK_HASHES body is at most 128 KiB).
pub const MAX_CHUNKS: u64 = 4096;

/// A valid manifest chunk size: a power of two from [`MIN_CHUNK_SIZE`] to [`MAX_CHUNK_SIZE`].
pub fn valid_chunk_size(chunk_size: u64) -> bool {
    chunk_size.is_power_of_two() && (MIN_CHUNK_SIZE..=MAX_CHUNK_SIZE).contains(&chunk_size)
}

/// Chunks of a `size`-byte payload.
pub fn chunk_count(size: u64, chunk_size: u64) -> u64 {
    size.div_ceil(chunk_size.max(1))
}

/// The smallest valid chunk size from [`DEFAULT_CHUNK_SIZE`] up that cuts a segment of
/// `largest` bytes into at most [`MAX_CHUNKS`] chunks.
pub fn chunk_size_for(largest: u64) -> u64 {
    let mut c = DEFAULT_CHUNK_SIZE;
    while chunk_count(largest, c) > MAX_CHUNKS && c < MAX_CHUNK_SIZE {
        c *= 2;
    }
    c
}

fn sha256(data: &[u8]) -> Hash {
    let mut h = [0u8; HASH_LEN];
    h.copy_from_slice(digest(&SHA256, data).as_ref());
    h
}

/// The SHA-256 of each `chunk_size` chunk of `payload`, in order.
pub fn chunk_hashes(payload: &[u8], chunk_size: u64) -> Vec<Hash> {
    payload
        .chunks(chunk_size.max(1) as usize)
        .map(sha256)
        .collect()
}

/// The chunk root over `hashes`: SHA-256 of their concatenation.
pub fn chunk_root(hashes: &[Hash]) -> Hash {
    let mut ctx = Context::new(&SHA256);
    for h in hashes {
        ctx.update(h);
    }
    let mut out = [0u8; HASH_LEN];
    out.copy_from_slice(ctx.finish().as_ref());
    out
}

/// The chunk root of `payload` (what a manifest states for it).
pub fn payload_root(payload: &[u8], chunk_size: u64) -> Hash {
    chunk_root(&chunk_hashes(payload, chunk_size))
}

/// Why received segment bytes were refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ChunkError {
    #[error("the chunk hashes do not match the manifest's chunk root")]
    Root,
    #[error("{got} chunk hashes for a segment of {want} chunks")]
    Count { got: usize, want: u64 },
    #[error("chunk {0} fails its hash")]
    Mismatch(u64),
    #[error("more bytes than the segment's {0}")]
    Overrun(u64),
    #[error("the segment ended after {got} of its {want} bytes")]
    Short { got: u64, want: u64 },
}

/// Checks one segment's payload chunk by chunk as its bytes arrive (sans IO): built from the
/// manifest's entry and the received chunk hashes, fed bytes in order, it returns each chunk
/// once it is complete and verified. After an error it accepts nothing more.
#[derive(Debug)]
pub struct ChunkVerifier {
    hashes: Vec<Hash>,
    chunk_size: u64,
    size: u64,
    /// Bytes of the chunk being received.
    partial: BytesMut,
    /// Chunks verified so far.
    done: u64,
    failed: bool,
}

impl ChunkVerifier {
    /// Checks `hashes` against `entry`'s chunk root and count.
    pub fn new(
        entry: &SegmentEntry,
        chunk_size: u64,
        hashes: Vec<Hash>,
    ) -> Result<Self, ChunkError> {
        let want = chunk_count(entry.size, chunk_size);
        if hashes.len() as u64 != want {
            return Err(ChunkError::Count {
                got: hashes.len(),
                want,
            });
        }
        if chunk_root(&hashes) != entry.chunk_root {
            return Err(ChunkError::Root);
        }
        Ok(Self {
            hashes,
            chunk_size,
            size: entry.size,
            partial: BytesMut::new(),
            done: 0,
            failed: false,
        })
    }

    /// Bytes verified so far (whole chunks).
    pub fn verified(&self) -> u64 {
        (self.done * self.chunk_size).min(self.size)
    }

    /// Every chunk verified.
    pub fn is_complete(&self) -> bool {
        self.done == self.hashes.len() as u64
    }

    /// Length of chunk `k`.
    fn len_of(&self, k: u64) -> u64 {
        (self.size - k * self.chunk_size).min(self.chunk_size)
    }

    /// Takes the next received bytes; appends each chunk they complete, verified, to `out`.
    /// A chunk that fails is never appended.
    pub fn push(&mut self, mut data: &[u8], out: &mut Vec<Bytes>) -> Result<(), ChunkError> {
        if self.failed {
            return Err(ChunkError::Overrun(self.size));
        }
        while !data.is_empty() {
            if self.is_complete() {
                self.failed = true;
                return Err(ChunkError::Overrun(self.size));
            }
            let want = self.len_of(self.done) as usize;
            let take = (want - self.partial.len()).min(data.len());
            self.partial.extend_from_slice(&data[..take]);
            data = &data[take..];
            if self.partial.len() == want {
                let chunk = self.partial.split().freeze();
                if sha256(&chunk) != self.hashes[self.done as usize] {
                    self.failed = true;
                    return Err(ChunkError::Mismatch(self.done));
                }
                self.done += 1;
                out.push(chunk);
            }
        }
        Ok(())
    }

    /// The payload ended: every byte must have arrived.
    pub fn finish(&self) -> Result<(), ChunkError> {
        if self.is_complete() {
            Ok(())
        } else {
            Err(ChunkError::Short {
                got: self.verified() + self.partial.len() as u64,
                want: self.size,
            })
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(payload: &[u8], chunk_size: u64) -> SegmentEntry {
        SegmentEntry {
            start_us: 0,
            duration_us: 1,
            size: payload.len() as u64,
            frames: 1,
            checksum: sha256(payload),
            chunk_root: payload_root(payload, chunk_size),
        }
    }

    // The example of docs/PROTOCOL.md §8.6.1: 2500 bytes of 0x61 in 1024-byte chunks.
    #[test]
    fn chunk_root_example() {
        let payload = vec![0x61u8; 2500];
        let hashes = chunk_hashes(&payload, 1024);
        assert_eq!(hashes.len(), 3);
        let hex = |h: &Hash| h.iter().map(|b| format!("{b:02x}")).collect::<String>();
        assert_eq!(
            hex(&hashes[0]),
            "2edc986847e209b4016e141a6dc8716d3207350f416969382d431539bf292e4a"
        );
        assert_eq!(
            hex(&hashes[2]),
            "1a5f1e3257e0a76d098a6099a52a63211186ba68834b5db3bf5dc484831aa470"
        );
        assert_eq!(
            hex(&chunk_root(&hashes)),
            "349b2324d13ffeba004b0aeeb5f60e94cb93738c5e5d6583e3ecaabe59e58494"
        );
    }

    #[test]
    fn chunks_are_released_as_they_complete() {
        let payload: Vec<u8> = (0..5000u32).map(|i| (i * 7) as u8).collect();
        let e = entry(&payload, 1024);
        let mut v = ChunkVerifier::new(&e, 1024, chunk_hashes(&payload, 1024)).unwrap();
        let mut out = Vec::new();
        v.push(&payload[..1000], &mut out).unwrap();
        assert!(out.is_empty());
        v.push(&payload[1000..2100], &mut out).unwrap();
        assert_eq!(out.len(), 2);
        assert_eq!(v.verified(), 2048);
        v.push(&payload[2100..], &mut out).unwrap();
        assert_eq!(out.concat(), payload);
        assert_eq!(out.last().unwrap().len(), 5000 - 4 * 1024);
        v.finish().unwrap();
        assert_eq!(
            v.push(b"x", &mut out),
            Err(ChunkError::Overrun(5000)),
            "nothing after the end"
        );
    }

    #[test]
    fn a_bad_chunk_is_never_released() {
        let payload = vec![9u8; 3000];
        let e = entry(&payload, 1024);
        let mut bad = payload.clone();
        bad[1500] ^= 1;
        let mut v = ChunkVerifier::new(&e, 1024, chunk_hashes(&payload, 1024)).unwrap();
        let mut out = Vec::new();
        assert_eq!(v.push(&bad, &mut out), Err(ChunkError::Mismatch(1)));
        assert_eq!(out.len(), 1, "chunk 0 was good, chunk 1 is withheld");
        assert_eq!(
            v.push(&payload[2048..], &mut out).unwrap_err(),
            ChunkError::Overrun(3000)
        );
        assert!(v.finish().is_err());
    }

    #[test]
    fn hash_lists_are_checked_against_the_root() {
        let payload = vec![1u8; 3000];
        let e = entry(&payload, 1024);
        let mut hashes = chunk_hashes(&payload, 1024);
        hashes[2][0] ^= 1;
        assert_eq!(
            ChunkVerifier::new(&e, 1024, hashes).unwrap_err(),
            ChunkError::Root
        );
        assert_eq!(
            ChunkVerifier::new(&e, 1024, chunk_hashes(&payload, 1024)[..2].to_vec()).unwrap_err(),
            ChunkError::Count { got: 2, want: 3 }
        );
        let v = ChunkVerifier::new(&e, 1024, chunk_hashes(&payload, 1024)).unwrap();
        assert_eq!(v.finish(), Err(ChunkError::Short { got: 0, want: 3000 }));
    }

    #[test]
    fn chunk_sizes() {
        assert!(valid_chunk_size(1024) && valid_chunk_size(DEFAULT_CHUNK_SIZE));
        assert!(!valid_chunk_size(1000) && !valid_chunk_size(512) && !valid_chunk_size(2 << 20));
        assert_eq!(chunk_size_for(1 << 20), DEFAULT_CHUNK_SIZE);
        assert_eq!(chunk_size_for(64 << 20), DEFAULT_CHUNK_SIZE);
        assert_eq!(chunk_count(64 << 20, DEFAULT_CHUNK_SIZE), MAX_CHUNKS);
        assert_eq!(chunk_size_for((64 << 20) + 1), 2 * DEFAULT_CHUNK_SIZE);
        assert_eq!(chunk_count(1, 1024), 1);
        assert_eq!(chunk_count(1025, 1024), 2);
    }
}
