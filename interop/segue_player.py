#!/usr/bin/env python3
"""A second implementation of a segue/1 player, on aioquic (PyPI), written from
docs/PROTOCOL.md alone (no Segue code was read for it): it plays an object from a Segue
node and verifies, per track, the frame count and the content hash against the manifest.

  segue_player.py --ca CA [--fast] [--timeout S] segue://HOST:PORT/OBJECT

What it does, with the sections of PROTOCOL.md it follows:
  - QUIC + TLS 1.3, ALPN segue/1, the server verified against --ca (§2);
  - the pipelined start: DESCRIBE, aggregate SETUP (flow ids 0..n-1) and PLAY in one flight
    on the first bidirectional stream (§5.4, §5.5, §5.6); --fast adds `Segue-Pacing: none`;
  - a MANIFEST_REQUEST on the next bidirectional stream (§8.1, §8.2, §8.5);
  - a signed URL's grant (`?expires=E&token=T`, §3) sent with every request: in the control
    request URLs and as the TOKEN parameter of the manifest request (§8.2);
  - media: every server unidirectional stream is a RoQ stream (§7.1): flow id, then
    length-prefixed RTP packets (§7.3) whose frame-info extension (§7.4) gives the flags and
    CTO; H.264 (single NAL, STAP-A, FU-A) and AAC-hbr depacketized (§7.5);
  - frame records rebuilt (§8.6: track, flags, pts, cto, size, data; varints shortest,
    §11), hashed per track and compared with the manifest's frame counts and content hashes;
  - PLAY_NOTIFY end-of-stream (§5.10) answered, then the last packets awaited; a server
    TEARDOWN is a failure.

Prints a report and exits 0 only if every track matches. Time to first frame is measured
from the start of the connection to the first complete frame.
"""

import argparse
import asyncio
import base64
import hashlib
import re
import sys
import time
from urllib.parse import parse_qsl, urlparse

from aioquic.asyncio import connect
from aioquic.asyncio.protocol import QuicConnectionProtocol
from aioquic.quic.configuration import QuicConfiguration
from aioquic.quic.events import ConnectionTerminated, StreamDataReceived, StreamReset


# --- §11: QUIC variable-length integers ------------------------------------------------------

def put_varint(v: int) -> bytes:
    if v < 0x40:
        return bytes([v])
    if v < 0x4000:
        return (v | 0x4000).to_bytes(2, "big")
    if v < 0x4000_0000:
        return (v | 0x8000_0000).to_bytes(4, "big")
    return (v | 0xC000_0000_0000_0000).to_bytes(8, "big")


class Reader:
    def __init__(self, buf: bytes):
        self.buf, self.pos = buf, 0

    def varint(self) -> int:
        if self.pos >= len(self.buf):
            raise ValueError("truncated varint")
        first = self.buf[self.pos]
        n = 1 << (first >> 6)
        if self.pos + n > len(self.buf):
            raise ValueError("truncated varint")
        v = int.from_bytes(self.buf[self.pos:self.pos + n], "big") & ((1 << (8 * n - 2)) - 1)
        self.pos += n
        return v

    def take(self, n: int) -> bytes:
        if self.pos + n > len(self.buf):
            raise ValueError("truncated")
        b = self.buf[self.pos:self.pos + n]
        self.pos += n
        return b

    def string(self) -> bytes:
        return self.take(self.varint())

    def done(self) -> bool:
        return self.pos >= len(self.buf)


# --- §8.2, §8.5: the manifest over the segment protocol ------------------------------------

def grant_of(query: str):
    """A signed URL's grant, `expires=<E>&token=<T>` (§3, SECURITY.md): (E, the 32 tag bytes),
    or None for a URL without one."""
    fields = dict(parse_qsl(query))
    if "expires" not in fields or "token" not in fields:
        return None
    tag = base64.urlsafe_b64decode(fields["token"] + "=" * (-len(fields["token"]) % 4))
    if len(tag) != 32:
        raise SystemExit("the URL's token is not a 32-byte tag")
    return int(fields["expires"]), tag


def manifest_request(name: str, grant=None) -> bytes:
    body = put_varint(len(name.encode())) + name.encode()
    if grant is not None:
        # TOKEN (0x06): Expires (i) + the tag (§8.2)
        value = put_varint(grant[0]) + grant[1]
        body += put_varint(0x06) + put_varint(len(value)) + value
    return put_varint(0x01) + put_varint(len(body)) + body


def parse_manifest_exchange(data: bytes) -> dict:
    r = Reader(data)
    ftype, length = r.varint(), r.varint()
    if ftype != 0x10:
        raise ValueError(f"expected RESPONSE, got frame type {ftype:#x}")
    body = Reader(r.take(length))
    status = body.varint()
    reason = body.string().decode(errors="replace")
    if status != 0:
        raise ValueError(f"manifest refused: status {status} {reason}")
    ftype, length = r.varint(), r.varint()
    if ftype != 0x11:
        raise ValueError(f"expected MANIFEST, got frame type {ftype:#x}")
    m = Reader(r.take(length))
    if m.varint() != 2:
        raise ValueError("unknown manifest version")
    out = {"object": m.string().decode(), "revision": m.varint(), "duration_us": m.varint(),
           "chunk_size": m.varint()}
    out["formats"] = [m.string().decode() for _ in range(m.varint())]
    out["sdp"] = m.string().decode()
    out["tracks"] = [{"frames": m.varint(), "hash": m.take(32)} for _ in range(m.varint())]
    segs = []
    for _ in range(m.varint()):
        segs.append({"start": m.varint(), "duration": m.varint(), "size": m.varint(),
                     "frames": m.varint(), "checksum": m.take(32), "chunk_root": m.take(32)})
    out["segments"] = segs
    if not m.done():
        raise ValueError("bytes after the last segment")
    return out


# --- §5: RTSP 2.0 control ------------------------------------------------------------------

def request(method: str, url: str, cseq: int, headers=()) -> bytes:
    lines = [f"{method} {url} RTSP/2.0", f"CSeq: {cseq}", *headers, "", ""]
    return "\r\n".join(lines).encode()


class ControlParser:
    """Splits the control stream into messages: (start line, headers (lower-case), body)."""

    def __init__(self):
        self.buf = b""

    def feed(self, data: bytes):
        self.buf += data
        out = []
        while True:
            self.buf = self.buf.lstrip(b"\r\n")  # empty lines between messages
            head_end = self.buf.find(b"\r\n\r\n")
            if head_end < 0:
                return out
            head = self.buf[:head_end].decode("utf-8", errors="replace").split("\r\n")
            headers = {}
            for line in head[1:]:
                k, _, v = line.partition(":")
                headers[k.strip().lower()] = v.strip()
            n = int(headers.get("content-length", "0"))
            if len(self.buf) < head_end + 4 + n:
                return out
            body = self.buf[head_end + 4:head_end + 4 + n]
            self.buf = self.buf[head_end + 4 + n:]
            out.append((head[0], headers, body))


def parse_rtp_info(value: str) -> dict:
    """§5.2: url="<track url>" ssrc=X:seq=N;rtptime=T, ... → {track: (ssrc, seq, rtptime)}."""
    out = {}
    for m in re.finditer(r'url="([^"]*)"\s+ssrc=([0-9A-Fa-f]+):seq=(\d+);rtptime=(\d+)', value):
        track = int(m.group(1).rsplit("track=", 1)[1])
        out[track] = (int(m.group(2), 16), int(m.group(3)), int(m.group(4)))
    return out


def parse_npt_start(value: str) -> float:
    m = re.match(r"npt=([0-9.]+)-", value.strip())
    return float(m.group(1)) if m else 0.0


# --- §6: SDP -------------------------------------------------------------------------------

def parse_sdp(text: str) -> list:
    tracks = []
    for line in text.replace("\r\n", "\n").split("\n"):
        if line.startswith("m="):
            kind, _, _, pt = line[2:].split()[:4]
            tracks.append({"kind": kind, "pt": int(pt), "codec": None, "clock": None, "ext": None})
        elif tracks and line.startswith("a=rtpmap:"):
            enc = line.split(None, 1)[1].split("/")
            tracks[-1]["codec"] = enc[0].upper()
            tracks[-1]["clock"] = int(enc[1])
        elif tracks and line.startswith("a=extmap:") and "urn:x-segue:frame-info" in line:
            tracks[-1]["ext"] = int(line[len("a=extmap:"):].split()[0].split("/")[0])
    return tracks


# --- §7.3, §7.4: RTP -----------------------------------------------------------------------

def parse_rtp(pkt: bytes, ext_id: int) -> dict:
    if len(pkt) < 12 or pkt[0] >> 6 != 2:
        raise ValueError("not RTP version 2")
    padding, has_ext, csrcs = pkt[0] & 0x20, pkt[0] & 0x10, pkt[0] & 0x0F
    p = {"marker": bool(pkt[1] & 0x80), "pt": pkt[1] & 0x7F,
         "seq": int.from_bytes(pkt[2:4], "big"), "ts": int.from_bytes(pkt[4:8], "big"),
         "ssrc": int.from_bytes(pkt[8:12], "big"), "info": None}
    pos = 12 + 4 * csrcs
    if has_ext:
        profile = int.from_bytes(pkt[pos:pos + 2], "big")
        words = int.from_bytes(pkt[pos + 2:pos + 4], "big")
        ext = pkt[pos + 4:pos + 4 + 4 * words]
        pos += 4 + 4 * words
        if profile == 0xBEDE:  # RFC 8285 one-byte header elements
            i = 0
            while i < len(ext):
                if ext[i] == 0:  # padding
                    i += 1
                    continue
                eid, length = ext[i] >> 4, (ext[i] & 0x0F) + 1
                if eid == 15:
                    break
                data = ext[i + 1:i + 1 + length]
                if eid == ext_id and length == 4:
                    p["info"] = (data[0], int.from_bytes(data[1:4], "big"))
                i += 1 + length
    end = len(pkt) - (pkt[-1] if padding else 0)
    p["payload"] = pkt[pos:end]
    return p


# --- §7.5: payload formats -----------------------------------------------------------------

def h264_nals(payloads: list) -> list:
    nals, fu = [], None
    for pl in payloads:
        if not pl:
            raise ValueError("empty H.264 payload")
        t = pl[0] & 0x1F
        if 1 <= t <= 23:
            nals.append(pl)
        elif t == 24:  # STAP-A
            i = 1
            while i + 2 <= len(pl):
                n = int.from_bytes(pl[i:i + 2], "big")
                nals.append(pl[i + 2:i + 2 + n])
                i += 2 + n
        elif t == 28:  # FU-A
            start, end = pl[1] & 0x80, pl[1] & 0x40
            if start:
                fu = bytearray([(pl[0] & 0xE0) | (pl[1] & 0x1F)])
            if fu is None:
                raise ValueError("FU-A without a start")
            fu += pl[2:]
            if end:
                nals.append(bytes(fu))
                fu = None
        else:
            raise ValueError(f"NAL type {t} cannot be carried")
    return nals


def depacketize(codec: str, payloads: list) -> bytes:
    if codec == "H264":
        return b"".join(len(n).to_bytes(4, "big") + n for n in h264_nals(payloads))
    if codec == "MPEG4-GENERIC":
        au, size = bytearray(), None
        for pl in payloads:
            if int.from_bytes(pl[0:2], "big") != 16:
                raise ValueError("AU-headers-length is not 16")
            hdr = int.from_bytes(pl[2:4], "big")
            size = hdr >> 3
            au += pl[4:]
        if size is None or len(au) != size:
            raise ValueError(f"AAC AU of {len(au)} bytes, header says {size}")
        return bytes(au)
    raise ValueError(f"codec {codec} not supported")


def frame_record(track: int, flags: int, pts: int, cto: int, data: bytes) -> bytes:
    return put_varint(track) + bytes([flags]) + put_varint(pts) + put_varint(cto) + \
        put_varint(len(data)) + data


# --- the player ----------------------------------------------------------------------------

class Player(QuicConnectionProtocol):
    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.control = ControlParser()
        self.responses = {}  # cseq -> (status, headers, body)
        self.manifest_data = b""
        self.manifest_sid = None
        self.manifest_done = asyncio.get_running_loop().create_future()
        # Failures are reported where the manifest is awaited, not as "never retrieved".
        self.manifest_done.add_done_callback(lambda f: f.cancelled() or f.exception())
        self.media = {}  # uni stream id -> bytes
        self.media_open = set()
        self.resets = []
        self.ended = asyncio.Event()
        self.torn_down = None
        self.closed = None
        self.changed = asyncio.Event()
        self.last = None  # RTP-Info of PLAY_NOTIFY

    def send_control(self, data: bytes):
        self._quic.send_stream_data(0, data)
        self.transmit()

    def quic_event_received(self, event):
        if isinstance(event, StreamDataReceived):
            sid = event.stream_id
            if sid == 0:
                for start, headers, body in self.control.feed(event.data):
                    self.on_control(start, headers, body)
            elif sid == self.manifest_sid:
                self.manifest_data += event.data
                if event.end_stream and not self.manifest_done.done():
                    self.manifest_done.set_result(self.manifest_data)
            elif sid % 4 == 3:  # server-initiated unidirectional: media
                self.media.setdefault(sid, b"")
                self.media[sid] += event.data
                self.media_open.add(sid)
                if event.end_stream:
                    self.media_open.discard(sid)
            self.changed.set()
        elif isinstance(event, StreamReset):
            self.resets.append((event.stream_id, event.error_code))
            self.media_open.discard(event.stream_id)
            if event.stream_id == self.manifest_sid and not self.manifest_done.done():
                self.manifest_done.set_exception(RuntimeError("manifest stream reset"))
            self.changed.set()
        elif isinstance(event, ConnectionTerminated):
            self.closed = f"connection closed: {event.error_code} {event.reason_phrase}"
            if not self.manifest_done.done():
                self.manifest_done.set_exception(RuntimeError(self.closed))
            self.ended.set()
            self.changed.set()

    def on_control(self, start: str, headers: dict, body: bytes):
        if start.startswith("RTSP/"):
            status = int(start.split()[1])
            self.responses[int(headers.get("cseq", "0"))] = (status, headers, body)
        else:  # a server request (§5.10): answer 200
            method = start.split()[0]
            self.send_control(
                f"RTSP/2.0 200 OK\r\nCSeq: {headers.get('cseq', '0')}\r\n\r\n".encode())
            if method == "PLAY_NOTIFY" and headers.get("notify-reason") == "end-of-stream":
                self.last = parse_rtp_info(headers.get("rtp-info", ""))
                self.ended.set()
            elif method == "TEARDOWN":
                self.torn_down = headers.get("segue-error", "server TEARDOWN")
                self.ended.set()
        self.changed.set()

    async def response(self, cseq: int, deadline: float):
        while cseq not in self.responses:
            if self.closed:
                raise RuntimeError(self.closed)
            self.changed.clear()
            await asyncio.wait_for(self.changed.wait(), max(0.01, deadline - time.monotonic()))
        return self.responses[cseq]


def roq_packets(data: bytes):
    r = Reader(data)
    flow = r.varint()
    pkts = []
    while not r.done():
        n = r.varint()
        if not 1 <= n <= 65535:
            raise ValueError(f"RTP frame length {n}")
        pkts.append(r.take(n))
    return flow, pkts


async def play(url: str, ca: str, fast: bool, timeout: float) -> int:
    t0 = time.monotonic()
    deadline = t0 + timeout
    u = urlparse(url)
    if u.scheme != "segue":
        raise SystemExit("the URL must be segue://HOST[:PORT]/OBJECT")
    host, port, name = u.hostname, u.port or 8554, u.path.lstrip("/")
    cfg = QuicConfiguration(is_client=True, alpn_protocols=["segue/1"], server_name=host)
    cfg.load_verify_locations(ca)
    cfg.max_stream_data = 4 << 20
    cfg.max_data = 64 << 20
    cfg.idle_timeout = 30.0  # §2
    report = {"url": url}
    conn = connect(host, port, configuration=cfg, create_protocol=Player, wait_connected=False)
    async with conn as p:
        p.transmit()  # without wait_connected, aioquic leaves the first flight to us
        try:
            await asyncio.wait_for(p.wait_connected(), 10)
        except asyncio.TimeoutError:
            print(f"error: no QUIC handshake with {host}:{port} within 10 s")
            return 1
        connected = time.monotonic()
        report["connect_ms"] = round((connected - t0) * 1000, 1)
        # A signed URL's query goes with every request for the object (§3).
        obj_url = f"segue://{u.netloc}/{name}" + (f"?{u.query}" if u.query else "")
        pacing = ["Segue-Pacing: none"] if fast else []
        p.send_control(
            request("DESCRIBE", obj_url, 1, ["Accept: application/sdp"])
            + request("SETUP", obj_url, 2, ["Pipelined-Requests: 1",
                                            "Transport: RTP/AVP/QUIC;unicast;flow-id=0"])
            + request("PLAY", obj_url, 3, ["Pipelined-Requests: 1", "Range: npt=0-", *pacing]))
        p.manifest_sid = p._quic.get_next_available_stream_id()
        p._quic.send_stream_data(p.manifest_sid, manifest_request(name, grant_of(u.query)),
                                 end_stream=True)
        p.transmit()

        for cseq in (1, 2, 3):
            status, headers, body = await p.response(cseq, deadline)
            if status != 200:
                print(f"error: request {cseq}: {status} {headers.get('segue-error', '')}")
                return 1
            if cseq == 1:
                sdp = body.decode()
            if cseq == 3:
                rtp_info = parse_rtp_info(headers.get("rtp-info", ""))
                start_s = parse_npt_start(headers.get("range", "npt=0-"))
        manifest = parse_manifest_exchange(
            await asyncio.wait_for(p.manifest_done, max(0.01, deadline - time.monotonic())))
        tracks = parse_sdp(sdp)
        if sdp != manifest["sdp"]:
            print("error: DESCRIBE's SDP differs from the manifest's")
            return 1
        if len(tracks) != len(manifest["tracks"]):
            print("error: SDP and manifest disagree on the track count")
            return 1

        # End of stream: PLAY_NOTIFY, then every media stream finished.
        while not (p.ended.is_set() and not p.media_open) and not p.torn_down:
            if time.monotonic() > deadline:
                print(f"error: timed out after {timeout} s")
                return 1
            p.changed.clear()
            try:
                await asyncio.wait_for(p.changed.wait(), 0.5)
            except asyncio.TimeoutError:
                pass
        if p.torn_down or (p.closed and p.last is None):
            print(f"error: {p.torn_down or p.closed}")
            return 1
        report["play_s"] = round(time.monotonic() - connected, 3)

    # Packets per flow (= track, aggregate SETUP with flow-id 0), ordered by sequence number.
    # Sequence numbers extended (§7.2): streams in stream-id order, each number to the value
    # nearest the last one extended, from the PLAY response's seq.
    per_track = {i: [] for i in range(len(tracks))}
    last_ext = {i: rtp_info[i][1] - 1 for i in per_track if i in rtp_info}
    for sid in sorted(p.media):
        flow, pkts = roq_packets(p.media[sid])
        if flow not in per_track or flow not in last_ext:
            print(f"error: media on unknown flow {flow}")
            return 1
        t = tracks[flow]
        for raw in pkts:
            x = parse_rtp(raw, t["ext"])
            prev = last_ext[flow]
            x["ext"] = prev + ((x["seq"] - prev + 32768) % 65536) - 32768
            last_ext[flow] = x["ext"]
            per_track[flow].append(x)
    ok = True
    lines = []
    for i, t in enumerate(tracks):
        ssrc, seq0, rtptime = rtp_info[i]
        clock = t["clock"]
        offset = (rtptime - int(round(start_s * 1_000_000)) * clock // 1_000_000) % (1 << 32)
        pkts = sorted(per_track[i], key=lambda x: x["ext"])
        h = hashlib.sha256()
        frames, cur, prev_pts, problems = 0, None, None, []
        for k, x in enumerate(pkts):
            if x["ext"] != seq0 + k:
                problems.append(f"packet gap before seq {x['seq']}")
                break
            if x["ssrc"] != ssrc or x["pt"] != t["pt"]:
                problems.append("SSRC or payload type differ from RTP-Info / SDP")
                break
            if x["info"] is not None:
                if cur is not None:
                    problems.append("a frame without a marker")
                    break
                cur = {"info": x["info"], "ts": x["ts"], "payloads": []}
            if cur is None:
                problems.append("a packet outside a frame")
                break
            cur["payloads"].append(x["payload"])
            if x["marker"]:
                pts = (cur["ts"] - offset) % (1 << 32)
                if prev_pts is not None:  # unwrap against the previous frame
                    pts += round((prev_pts - pts) / (1 << 32)) * (1 << 32)
                prev_pts = pts
                flags, cto = cur["info"]
                data = depacketize(t["codec"], cur["payloads"])
                h.update(frame_record(i, flags, pts, cto, data))
                frames += 1
                cur = None
        if p.last and i in p.last and pkts and pkts[-1]["seq"] != p.last[i][1]:
            problems.append(f"last seq {pkts[-1]['seq']}, PLAY_NOTIFY says {p.last[i][1]}")
        want = manifest["tracks"][i]
        match = frames == want["frames"] and h.digest() == want["hash"] and not problems
        ok &= match
        lines.append(f"track {i} {t['codec']}: {frames}/{want['frames']} frames, "
                     f"hash {'match' if h.digest() == want['hash'] else 'MISMATCH'}"
                     + (f" ({'; '.join(problems)})" if problems else ""))
    print(f"segue_player.py {url}")
    print(f"  connect {report['connect_ms']} ms, played in {report['play_s']} s"
          f"{' (unpaced)' if fast else ''}, {len(p.media)} media streams, "
          f"{len(manifest['segments'])} segments, revision {manifest['revision']}")
    for line in lines:
        print(f"  {line}")
    if p.resets:
        print(f"  streams reset: {p.resets}")
    print("  verified: every track matches the manifest" if ok else "  FAILED")
    return 0 if ok else 1


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--ca", required=True, help="CA certificate (PEM) to verify the node with")
    ap.add_argument("--fast", action="store_true", help="ask for unpaced media (Segue-Pacing: none)")
    ap.add_argument("--timeout", type=float, default=120.0, help="give up after S seconds")
    ap.add_argument("url", help="segue://HOST:PORT/OBJECT")
    a = ap.parse_args()
    try:
        return asyncio.run(play(a.url, a.ca, a.fast, a.timeout))
    except Exception as e:  # a clear one-line error, never a traceback
        print(f"error: {type(e).__name__}: {e}")
        return 1


if __name__ == "__main__":
    sys.exit(main())
