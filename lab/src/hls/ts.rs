//! Progress through an MPEG-TS byte stream as it arrives, for the HLS player's buffer
//! accounting: per elementary stream, the frames (PES packets) complete so far and the media
//! time up to which everything has arrived. TS packets are parsed with `mpeg2ts`.

use std::collections::{BTreeMap, VecDeque};
use std::io::Read;
use std::sync::{Arc, Mutex};

use mpeg2ts::ts::{ReadTsPacket, TsPacket, TsPacketReader, TsPayload};

/// 90 kHz ticks to microseconds.
fn ticks_to_us(t: u64) -> u64 {
    t.saturating_mul(100) / 9
}

/// The bytes handed to the TS reader: whole packets only, so it never sees half of one.
#[derive(Debug, Clone, Default)]
struct Feed(Arc<Mutex<VecDeque<u8>>>);

impl Read for Feed {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let mut q = self.0.lock().unwrap_or_else(|e| e.into_inner());
        let n = buf.len().min(q.len());
        for (b, v) in buf.iter_mut().zip(q.drain(..n)) {
            *b = v;
        }
        Ok(n)
    }
}

#[derive(Debug, Default, Clone)]
struct Stream {
    frames: u64,
    /// DTS (90 kHz) of the PES being received, if one is open.
    open: Option<u64>,
    /// Everything before this media time (µs) has arrived (set at segment ends).
    closed_until_us: u64,
}

/// Parsing progress of one object's TS stream.
#[derive(Debug)]
pub struct TsProgress {
    feed: Feed,
    reader: TsPacketReader<Feed>,
    partial: Vec<u8>,
    streams: BTreeMap<u16, Stream>,
    /// First DTS seen: media time 0.
    base: Option<u64>,
    error: Option<String>,
}

impl Default for TsProgress {
    fn default() -> Self {
        let feed = Feed::default();
        Self {
            reader: TsPacketReader::new(feed.clone()),
            feed,
            partial: Vec::new(),
            streams: BTreeMap::new(),
            base: None,
            error: None,
        }
    }
}

impl TsProgress {
    /// Feeds bytes as they arrive.
    pub fn push(&mut self, mut data: &[u8]) {
        if self.error.is_some() {
            return;
        }
        if !self.partial.is_empty() {
            let need = TsPacket::SIZE - self.partial.len();
            let take = need.min(data.len());
            self.partial.extend_from_slice(&data[..take]);
            data = &data[take..];
            if self.partial.len() < TsPacket::SIZE {
                return;
            }
            let p = std::mem::take(&mut self.partial);
            self.feed_whole(&p);
        }
        let whole = data.len() / TsPacket::SIZE * TsPacket::SIZE;
        self.feed_whole(&data[..whole]);
        self.partial.extend_from_slice(&data[whole..]);
    }

    fn feed_whole(&mut self, packets: &[u8]) {
        self.feed
            .0
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .extend(packets);
        loop {
            match self.reader.read_ts_packet() {
                Ok(Some(p)) => self.packet(p),
                Ok(None) => return,
                Err(e) => {
                    let s = e.to_string();
                    self.error = Some(s.lines().next().unwrap_or("bad TS").to_owned());
                    return;
                }
            }
        }
    }

    fn packet(&mut self, p: TsPacket) {
        match p.payload {
            Some(TsPayload::Pmt(pmt)) => {
                for es in &pmt.es_info {
                    self.streams.entry(es.elementary_pid.as_u16()).or_default();
                }
            }
            Some(TsPayload::PesStart(pes)) => {
                let Some(ts) = pes.header.dts.or(pes.header.pts) else {
                    return;
                };
                let ts = ts.as_u64();
                let base = *self.base.get_or_insert(ts);
                let s = self.streams.entry(p.header.pid.as_u16()).or_default();
                if s.open.replace(ts.max(base)).is_some() {
                    s.frames += 1;
                }
            }
            _ => {}
        }
    }

    /// A segment ended: its open frames are complete; everything before `end_us` (media time)
    /// has arrived.
    pub fn finish_segment(&mut self) {
        self.close(None);
    }

    /// As [`TsProgress::finish_segment`], stating that media before `end_us` has arrived.
    pub fn finish_segment_at(&mut self, end_us: u64) {
        self.close(Some(end_us));
    }

    fn close(&mut self, end_us: Option<u64>) {
        let base = self.base.unwrap_or(0);
        for s in self.streams.values_mut() {
            if let Some(d) = s.open.take() {
                s.frames += 1;
                s.closed_until_us = s.closed_until_us.max(ticks_to_us(d - base));
            }
            if let Some(e) = end_us {
                s.closed_until_us = s.closed_until_us.max(e);
            }
        }
    }

    /// Frames complete so far, all streams.
    pub fn frames(&self) -> u64 {
        self.streams.values().map(|s| s.frames).sum()
    }

    /// Media time (µs) up to which the least-buffered stream has arrived; `None` before any
    /// frame is complete.
    pub fn buffered_us(&self) -> Option<u64> {
        let base = self.base?;
        if self.frames() == 0 {
            return None;
        }
        self.streams
            .values()
            .map(|s| {
                let open = s.open.map_or(0, |d| ticks_to_us(d - base));
                open.max(s.closed_until_us)
            })
            .min()
    }

    /// Why parsing stopped, if the stream is not valid TS.
    pub fn error(&self) -> Option<&str> {
        self.error.as_deref()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample_ts() -> Option<Vec<u8>> {
        let p = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../media/samples/demo.ts");
        std::fs::read(p).ok()
    }

    #[test]
    fn progress_is_the_same_whatever_the_chunking() {
        let data = sample_ts().expect("media/samples/demo.ts");
        let mut whole = TsProgress::default();
        whole.push(&data);
        whole.finish_segment();
        assert!(whole.error().is_none());
        let frames = whole.frames();
        assert!(frames > 100, "{frames}");
        // Byte-by-odd-chunks gives the same count, and the buffered time only grows.
        let mut parts = TsProgress::default();
        let mut last = 0;
        for c in data.chunks(1000) {
            parts.push(c);
            let b = parts.buffered_us().unwrap_or(0);
            assert!(b >= last);
            last = b;
        }
        assert!(last > 1_000_000, "buffered {last} µs before the end");
        parts.finish_segment();
        assert_eq!(parts.frames(), frames);
    }

    #[test]
    fn garbage_is_an_error_not_a_panic() {
        let mut p = TsProgress::default();
        p.push(&[0x47; 188 * 3]);
        p.push(&[0u8; 1000]);
        assert!(p.error().is_some());
        assert_eq!(p.buffered_us(), None);
    }
}
