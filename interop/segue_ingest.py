#!/usr/bin/env python3
"""An independent MPEG-TS ingest, written from docs/PROTOCOL.md §8.6.0 alone.

Reads an MPEG-TS file (H.264 or HEVC video, AAC in ADTS or Opus audio), turns it into
frame records by the spec's
ingest rules and prints, per track, the frame count and the content hash (§8.6) that an
origin following the rules states in its manifest. Standard library only.

    python3 interop/segue_ingest.py media/samples/demo.ts
    track 0 h264 frames 360 hash 3f1c...
    track 1 aac frames 564 hash 9a0b...

`server/tests/it/interop_ingest.rs` compares the output with Segue's own ingest.
"""

import hashlib
import sys

TS = 188


def put_varint(v: int) -> bytes:
    """QUIC variable-length integer, shortest encoding (§11)."""
    if v < 1 << 6:
        return v.to_bytes(1, "big")
    if v < 1 << 14:
        return (v | 0x4000).to_bytes(2, "big")
    if v < 1 << 30:
        return (v | 0x8000_0000).to_bytes(4, "big")
    if v < 1 << 62:
        return (v | 0xC000_0000_0000_0000).to_bytes(8, "big")
    raise ValueError(f"varint {v} too large")


def frame_record(track: int, keyframe: bool, pts: int, cto: int, data: bytes) -> bytes:
    """A frame record (§8.6)."""
    return (put_varint(track) + bytes([1 if keyframe else 0]) + put_varint(pts)
            + put_varint(cto) + put_varint(len(data)) + data)


def ts_packets(data: bytes):
    """(pid, payload_unit_start, payload) of every TS packet."""
    for off in range(0, len(data) - TS + 1, TS):
        p = data[off:off + TS]
        if p[0] != 0x47:
            raise SystemExit(f"error: no sync byte at {off}")
        pusi = bool(p[1] & 0x40)
        pid = ((p[1] & 0x1F) << 8) | p[2]
        afc = (p[3] >> 4) & 3
        i = 4
        if afc in (2, 3):
            i += 1 + p[4]
        if afc in (1, 3) and i < TS:
            yield pid, pusi, p[i:]


def psi_section(payload: bytes) -> bytes:
    """The section after the pointer field."""
    return payload[1 + payload[0]:]


def descriptors(b: bytes) -> list:
    """[(tag, data)] of a descriptor loop."""
    out, k = [], 0
    while k + 2 <= len(b):
        out.append((b[k], b[k + 2:k + 2 + b[k + 1]]))
        k += 2 + b[k + 1]
    return out


def stream_types(data: bytes) -> dict:
    """{pid: (stream type, [(descriptor tag, data)])} from the first PMT, in PMT order."""
    pmt_pid = None
    for pid, pusi, payload in ts_packets(data):
        if pid == 0 and pusi and pmt_pid is None:
            s = psi_section(payload)
            length = ((s[1] & 0x0F) << 8) | s[2]
            body = s[8:3 + length - 4]
            for k in range(0, len(body), 4):
                program = int.from_bytes(body[k:k + 2], "big")
                if program != 0:
                    pmt_pid = ((body[k + 2] & 0x1F) << 8) | body[k + 3]
                    break
        elif pid == pmt_pid and pusi:
            s = psi_section(payload)
            length = ((s[1] & 0x0F) << 8) | s[2]
            info_len = ((s[10] & 0x0F) << 8) | s[11]
            k, end, out = 12 + info_len, 3 + length - 4, {}
            while k + 5 <= end:
                es_pid = ((s[k + 1] & 0x1F) << 8) | s[k + 2]
                es_len = ((s[k + 3] & 0x0F) << 8) | s[k + 4]
                out[es_pid] = (s[k], descriptors(s[k + 5:k + 5 + es_len]))
                k += 5 + es_len
            return out
    raise SystemExit("error: no PMT")


def timestamp(b: bytes) -> int:
    return (((b[0] >> 1) & 0x07) << 30) | (b[1] << 22) | ((b[2] >> 1) << 15) | (b[3] << 7) | (b[4] >> 1)


def pes_packets(data: bytes, pids: set):
    """(stream id, pts, dts, payload) of every PES of `pids`, in file order of their ends."""
    open_pes = {}

    def finish(buf: bytes):
        if buf[:3] != b"\x00\x00\x01":
            raise SystemExit("error: PES without start code")
        sid, flags, hlen = buf[3], buf[7], buf[8]
        if not flags & 0x80:
            raise SystemExit("error: PES without PTS")
        pts = timestamp(buf[9:14])
        dts = timestamp(buf[14:19]) if flags & 0x40 else pts
        return sid, pts, dts, buf[9 + hlen:]

    out = []
    for pid, pusi, payload in ts_packets(data):
        if pid not in pids:
            continue
        if pusi:
            if open_pes.get(pid):
                out.append(finish(bytes(open_pes[pid])))
            open_pes[pid] = bytearray(payload)
        elif pid in open_pes:
            open_pes[pid] += payload
    for pid, buf in open_pes.items():
        if buf:
            out.append(finish(bytes(buf)))
    return out


def nal_units(annexb: bytes, hevc: bool) -> list:
    """Split at 3-byte start codes, strip each unit's trailing zeros, drop empty ones,
    access unit delimiters (9; HEVC 35) and filler (12; HEVC 38)."""
    starts, i = [], 0
    while True:
        i = annexb.find(b"\x00\x00\x01", i)
        if i < 0:
            break
        starts.append(i + 3)
        i += 3
    nals = []
    for k, s in enumerate(starts):
        end = starts[k + 1] - 3 if k + 1 < len(starts) else len(annexb)
        n = annexb[s:end].rstrip(b"\x00")
        if n and nal_type(n, hevc) not in ((35, 38) if hevc else (9, 12)):
            nals.append(n)
    return nals


def nal_type(n: bytes, hevc: bool) -> int:
    return (n[0] >> 1) & 0x3F if hevc else n[0] & 0x1F


def classify(t: int, descs: list):
    """'h264', 'hevc', 'aac', ('opus', channels), or None (left out)."""
    if t in (0x1B, 0x24, 0x0F):
        return {0x1B: "h264", 0x24: "hevc", 0x0F: "aac"}[t]
    if t == 0x06 and any(tag == 0x05 and d[:4] == b"Opus" for tag, d in descs):
        for tag, d in descs:
            if tag == 0x7F and len(d) >= 2 and d[0] == 0x80 and d[1] in (1, 2):
                return ("opus", d[1])
    return None


def opus_duration(p: bytes) -> int:
    """Samples at 48 kHz of an Opus packet, from its TOC (RFC 6716 §3.1)."""
    config = p[0] >> 3
    if config < 12:
        frame = (480, 960, 1920, 2880)[config % 4]
    elif config < 16:
        frame = (480, 960)[config % 2]
    else:
        frame = (120, 240, 480, 960)[config % 4]
    code = p[0] & 3
    count = 1 if code == 0 else 2 if code < 3 else p[1] & 0x3F
    if count == 0 or frame * count > 5760:
        raise SystemExit("error: Opus packet with a bad TOC")
    return frame * count


def opus_packets(d: bytes) -> list:
    """The Opus packets of a PES's access units (opus_control_header, then the packet)."""
    out = []
    while d:
        if (d[0] << 3 | d[1] >> 5) != 0x3FF:
            raise SystemExit("error: Opus access unit without its prefix")
        flags, k, size = d[1], 2, 0
        while True:
            size += d[k]
            k += 1
            if d[k - 1] != 0xFF:
                break
        k += 2 * bool(flags & 0x10) + 2 * bool(flags & 0x08)
        if flags & 0x04:
            k += 1 + d[k]
        out.append(d[k:k + size])
        d = d[k + size:]
    return out


AAC_RATES = [96000, 88200, 64000, 48000, 44100, 32000, 24000, 22050, 16000, 12000, 11025,
             8000, 7350]


def ingest(path: str):
    data = open(path, "rb").read()
    # The first video (H.264 0x1b, HEVC 0x24) and the first audio (AAC 0x0f, Opus) stream
    # are carried, the rest left out.
    video_kind = audio_kind = None
    kept = set()
    for pid, (t, descs) in stream_types(data).items():
        kind = classify(t, descs)
        if kind in ("h264", "hevc") and video_kind is None:
            video_kind = kind
        elif kind is not None and kind not in ("h264", "hevc") and audio_kind is None:
            audio_kind = kind
        else:
            continue
        kept.add(pid)
    if not kept:
        raise SystemExit("error: no stream Segue carries")
    video, audio = [], []
    for sid, pts, dts, payload in pes_packets(data, kept):
        if 0xE0 <= sid <= 0xEF:
            video.append((pts, dts, payload))
        elif 0xC0 <= sid <= 0xDF or sid == 0xBD:
            audio.append((pts, dts, payload))
    tracks = []  # (codec, clock, [(dts, cto, keyframe, data)])
    if video and video_kind:
        hevc = video_kind == "hevc"
        samples = []
        for pts, dts, payload in video:
            nals = nal_units(payload, hevc)
            avcc = b"".join(len(n).to_bytes(4, "big") + n for n in nals)
            if hevc:
                key = any(16 <= nal_type(n, True) <= 23 for n in nals)
            else:
                key = any(nal_type(n, False) == 5 for n in nals)
            samples.append((dts, pts - dts, key, avcc))
        tracks.append((video_kind, 90000, samples))
    if audio and audio_kind == "aac":
        samples, rate = [], None
        for pts, _, payload in audio:
            d, i = payload, 0
            while d:
                header = 7 if d[1] & 1 else 9
                length = ((d[3] & 3) << 11) | (d[4] << 3) | (d[5] >> 5)
                if rate is None:
                    rate = AAC_RATES[(d[2] >> 2) & 0x0F]
                t = pts * rate // 90000 + i * 1024
                samples.append((t, 0, True, d[header:length]))
                d, i = d[length:], i + 1
        tracks.append(("aac", rate, samples))
    elif audio and audio_kind:
        samples = []
        for pts, _, payload in audio:
            t = pts * 48000 // 90000
            for packet in opus_packets(payload):
                samples.append((t, 0, True, packet))
                t += opus_duration(packet)
        tracks.append(("opus", 48000, samples))
    # Rebase: the earliest first decode time of all tracks, in µs, becomes 0.
    base_us = min(s[0][0] * 1_000_000 // clock for _, clock, s in tracks if s)
    out = []
    for index, (codec, clock, samples) in enumerate(tracks):
        base = base_us * clock // 1_000_000
        h, frames, seen_key = hashlib.sha256(), 0, codec not in ("h264", "hevc")
        for dts, cto, key, body in samples:
            seen_key |= key
            if not seen_key:
                continue  # before the first keyframe: not decodable
            dts = max(0, dts - base)
            h.update(frame_record(index, key, dts + cto, cto, body))
            frames += 1
        out.append((index, codec, frames, h.hexdigest()))
    return out


def main() -> int:
    if len(sys.argv) != 2:
        print(__doc__.split("\n\n")[0])
        print("usage: segue_ingest.py FILE.ts")
        return 2
    for index, codec, frames, digest in ingest(sys.argv[1]):
        print(f"track {index} {codec} frames {frames} hash {digest}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
