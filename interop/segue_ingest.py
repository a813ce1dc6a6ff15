#!/usr/bin/env python3
"""An independent MPEG-TS ingest, written from docs/PROTOCOL.md §8.6.0 alone.

Reads an MPEG-TS file (H.264 + AAC in ADTS), turns it into frame records by the spec's
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


def stream_types(data: bytes) -> dict:
    """{pid: stream type} from the first PMT, in PMT order."""
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
                out[es_pid] = s[k]
                k += 5 + (((s[k + 3] & 0x0F) << 8) | s[k + 4])
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


def nal_units(annexb: bytes) -> list:
    """Split at 3-byte start codes, strip each unit's trailing zeros, drop empty ones,
    access unit delimiters (9) and filler (12)."""
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
        if n and n[0] & 0x1F not in (9, 12):
            nals.append(n)
    return nals


AAC_RATES = [96000, 88200, 64000, 48000, 44100, 32000, 24000, 22050, 16000, 12000, 11025,
             8000, 7350]


def ingest(path: str):
    data = open(path, "rb").read()
    # The first H.264 (0x1b) and the first AAC (0x0f) stream are carried, the rest left out.
    kept = {}
    for pid, t in stream_types(data).items():
        if t in (0x1B, 0x0F) and t not in kept.values():
            kept[pid] = t
    if not kept:
        raise SystemExit("error: no H.264 or AAC stream")
    video, audio = [], []
    for sid, pts, dts, payload in pes_packets(data, set(kept)):
        if 0xE0 <= sid <= 0xEF:
            video.append((pts, dts, payload))
        elif 0xC0 <= sid <= 0xDF:
            audio.append((pts, dts, payload))
    tracks = []  # (codec, clock, [(dts, cto, keyframe, data)])
    if video:
        samples = []
        for pts, dts, payload in video:
            nals = nal_units(payload)
            avcc = b"".join(len(n).to_bytes(4, "big") + n for n in nals)
            key = any(n[0] & 0x1F == 5 for n in nals)
            samples.append((dts, pts - dts, key, avcc))
        tracks.append(("h264", 90000, samples))
    if audio:
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
    # Rebase: the earliest first decode time of all tracks, in µs, becomes 0.
    base_us = min(s[0][0] * 1_000_000 // clock for _, clock, s in tracks if s)
    out = []
    for index, (codec, clock, samples) in enumerate(tracks):
        base = base_us * clock // 1_000_000
        h, frames, seen_key = hashlib.sha256(), 0, codec != "h264"
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
