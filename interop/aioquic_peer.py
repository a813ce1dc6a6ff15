#!/usr/bin/env python3
"""An aioquic (PyPI) endpoint for interop/run.sh: an HTTP/0.9 (hq-interop) or HTTP/3 file
client or server, written against aioquic's public API (its wheel ships no examples).

  aioquic_peer.py client --ca CA --downloads DIR [--h3] [--chacha20] [--resumption]
                          [--zero-rtt] [--key-update] [--range bytes=A-B]
                          [--idle-timeout S] URL...
  aioquic_peer.py server --www DIR --cert PEM --key PEM --port N [--h3] [--retry]
                          [--idle-timeout S]

The client prints one line per file (sha256, size, path) and exits 0 only if every request
got a complete answer; with --resumption it fetches the first URL on one connection and the
rest on a second one resuming the first's session, and says on stderr whether it resumed.
With --key-update it updates the 1-RTT keys before its requests and says on stderr which key
phase the server's answers came under; with --zero-rtt the second connection's requests go
as 0-RTT data and it says whether the server accepted them. The server runs until killed and
logs each connection's "resumed" and "early data" states, and the key phase of each request
it answered, on stderr. Both write one qlog trace per connection in $QLOGDIR when it is set.
"""

import argparse
import asyncio
import hashlib
import os
import sys
from urllib.parse import urlparse

from aioquic.asyncio import connect, serve
from aioquic.asyncio.protocol import QuicConnectionProtocol
from aioquic.h3.connection import H3_ALPN, H3Connection
from aioquic.h3.events import DataReceived, HeadersReceived
from aioquic.quic.configuration import QuicConfiguration
from aioquic.quic.events import (
    ConnectionTerminated,
    HandshakeCompleted,
    ProtocolNegotiated,
    StreamDataReceived,
)
from aioquic.quic.logger import QuicFileLogger
from aioquic.tls import CipherSuite, Epoch

HQ_ALPN = ["hq-interop"]


class Client(QuicConnectionProtocol):
    range = None  # HTTP/3: a Range header value for every request

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.h3 = None
        self.waiting = {}  # stream id -> (future, chunks, status)
        self.early_data_accepted = None
        # Our own: aioquic's wait_connected() never returns once the handshake has completed
        # before it is called (it only records completion for a waiter already there).
        self.handshake_done = asyncio.Event()

    def use_h3(self):
        self.h3 = H3Connection(self._quic)

    async def get(self, authority: str, path: str) -> bytes:
        sid = self._quic.get_next_available_stream_id()
        fut = asyncio.get_running_loop().create_future()
        self.waiting[sid] = [fut, [], None]
        if self.h3:
            self.h3.send_headers(
                sid,
                [
                    (b":method", b"GET"),
                    (b":scheme", b"https"),
                    (b":authority", authority.encode()),
                    (b":path", path.encode()),
                ]
                + ([(b"range", self.range.encode())] if self.range else []),
                end_stream=True,
            )
        else:
            self._quic.send_stream_data(sid, f"GET {path}\r\n".encode(), end_stream=True)
        self.transmit()
        return await fut

    def done(self, sid, data: bytes, end: bool):
        w = self.waiting.get(sid)
        if w is None:
            return
        w[1].append(data)
        if end:
            del self.waiting[sid]
            if w[2] not in (None, b"200", b"206"):
                w[0].set_exception(RuntimeError(f"status {w[2]!r}"))
            else:
                w[0].set_result(b"".join(w[1]))

    def quic_event_received(self, event):
        if isinstance(event, HandshakeCompleted):
            self.early_data_accepted = event.early_data_accepted
            self.handshake_done.set()
        if isinstance(event, ConnectionTerminated):
            # Requests still open fail now, with the reason, instead of waiting for ever
            # (an idle timeout closes a connection silently).
            why = RuntimeError(
                f"connection closed with requests open: error 0x{event.error_code:x} "
                f"{event.reason_phrase!r}"
            )
            for fut, _, _ in self.waiting.values():
                if not fut.done():
                    fut.set_exception(why)
            self.waiting.clear()
            return
        if self.h3:
            for e in self.h3.handle_event(event):
                if isinstance(e, HeadersReceived):
                    w = self.waiting.get(e.stream_id)
                    if w is not None:
                        w[2] = dict(e.headers).get(b":status")
                    if e.stream_ended:
                        self.done(e.stream_id, b"", True)
                elif isinstance(e, DataReceived):
                    self.done(e.stream_id, e.data, e.stream_ended)
        elif isinstance(event, StreamDataReceived):
            self.done(event.stream_id, event.data, event.end_stream)


def recv_key_phase(quic) -> int:
    pair = quic._cryptos.get(Epoch.ONE_RTT)
    return pair.recv.key_phase if pair else -1


async def fetch(cfg, urls, h3, tickets=None, key_update=False, early=False):
    host, port = urls[0].hostname, urls[0].port or 443
    handler = tickets.append if tickets is not None else None
    async with connect(
        host,
        port,
        configuration=cfg,
        create_protocol=Client,
        session_ticket_handler=handler,
        wait_connected=not early,
    ) as c:
        if h3:
            c.use_h3()
        if key_update:
            c._quic.request_key_update()
        bodies = await asyncio.gather(*(c.get(u.netloc, u.path) for u in urls))
        if early:
            await c.handshake_done.wait()
            print(f"early data accepted {c.early_data_accepted}", file=sys.stderr)
        if key_update:
            print(f"answers under key phase {recv_key_phase(c._quic)}", file=sys.stderr)
        ks = c._quic.tls.key_schedule
        return bodies, (ks.cipher_suite.name if ks else "?"), c._quic.tls.session_resumed


def qlog():
    """One qlog trace per connection in $QLOGDIR, when it is set."""
    d = os.environ.get("QLOGDIR")
    if not d:
        return None
    os.makedirs(d, exist_ok=True)
    return QuicFileLogger(d)


async def run_client(a) -> int:
    cfg = QuicConfiguration(
        is_client=True,
        alpn_protocols=H3_ALPN if a.h3 else HQ_ALPN,
        quic_logger=qlog(),
        idle_timeout=a.idle_timeout,
    )
    cfg.load_verify_locations(a.ca)
    if a.chacha20:
        cfg.cipher_suites = [CipherSuite.CHACHA20_POLY1305_SHA256]
    urls = [urlparse(u) for u in a.urls]
    Client.range = a.range
    os.makedirs(a.downloads, exist_ok=True)
    if a.resumption or a.zero_rtt:
        tickets = []
        bodies, suite, _ = await fetch(cfg, urls[:1], a.h3, tickets)
        if not tickets:
            print("no session ticket from the server", file=sys.stderr)
            return 1
        cfg2 = QuicConfiguration(
            is_client=True,
            alpn_protocols=cfg.alpn_protocols,
            quic_logger=cfg.quic_logger,
            idle_timeout=cfg.idle_timeout,
        )
        cfg2.load_verify_locations(a.ca)
        cfg2.session_ticket = tickets[-1]
        rest, suite, resumed = (
            await fetch(cfg2, urls[1:], a.h3, early=a.zero_rtt) if urls[1:] else ([], suite, False)
        )
        bodies += rest
        print(f"resumed {resumed}", file=sys.stderr)
    else:
        bodies, suite, _ = await fetch(cfg, urls, a.h3, key_update=a.key_update)
    for u, body in zip(urls, bodies):
        with open(os.path.join(a.downloads, os.path.basename(u.path)), "wb") as f:
            f.write(body)
        print(f"{hashlib.sha256(body).hexdigest()}  {len(body):>10}  {u.path}")
    print(f"cipher {suite}", file=sys.stderr)
    return 0


class Server(QuicConnectionProtocol):
    www = "."

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.h3 = None
        self.requests = {}

    def file(self, path: str):
        root = os.path.realpath(self.www)
        full = os.path.realpath(os.path.join(root, path.lstrip("/")))
        if not full.startswith(root + os.sep) or not os.path.isfile(full):
            return None
        with open(full, "rb") as f:
            return f.read()

    def quic_event_received(self, event):
        if isinstance(event, HandshakeCompleted):
            print(
                f"connection resumed {event.session_resumed} early data {event.early_data_accepted}",
                file=sys.stderr,
                flush=True,
            )
        if isinstance(event, ProtocolNegotiated) and event.alpn_protocol in H3_ALPN:
            self.h3 = H3Connection(self._quic)
        if self.h3:
            for e in self.h3.handle_event(event):
                if isinstance(e, HeadersReceived):
                    path = dict(e.headers).get(b":path", b"/").decode()
                    body = self.file(path)
                    status = b"200" if body is not None else b"404"
                    self.h3.send_headers(
                        e.stream_id,
                        [(b":status", status), (b"content-length", str(len(body or b"")).encode())],
                    )
                    self.h3.send_data(e.stream_id, body or b"", end_stream=True)
                    print(f"request under key phase {recv_key_phase(self._quic)}", file=sys.stderr, flush=True)
            self.transmit()
        elif isinstance(event, StreamDataReceived):
            buf = self.requests.get(event.stream_id, b"") + event.data
            self.requests[event.stream_id] = buf
            if event.end_stream:
                line = buf.decode(errors="replace").strip()
                body = self.file(line[4:].split()[0]) if line.startswith("GET ") else None
                if body is None:
                    self._quic.reset_stream(event.stream_id, 0x10)
                else:
                    self._quic.send_stream_data(event.stream_id, body, end_stream=True)
                print(f"request under key phase {recv_key_phase(self._quic)}", file=sys.stderr, flush=True)
                self.transmit()


async def run_server(a) -> int:
    cfg = QuicConfiguration(
        is_client=False,
        alpn_protocols=H3_ALPN if a.h3 else HQ_ALPN,
        quic_logger=qlog(),
        idle_timeout=a.idle_timeout,
    )
    cfg.load_cert_chain(a.cert, a.key)
    Server.www = a.www
    tickets = {}
    await serve(
        "127.0.0.1",
        a.port,
        configuration=cfg,
        create_protocol=Server,
        retry=a.retry,
        session_ticket_handler=lambda t: tickets.__setitem__(t.ticket, t),
        session_ticket_fetcher=lambda k: tickets.pop(k, None),
    )
    print(f"aioquic serving {a.www} on 127.0.0.1:{a.port}", file=sys.stderr, flush=True)
    await asyncio.Future()
    return 0


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = p.add_subparsers(dest="role", required=True)
    c = sub.add_parser("client")
    c.add_argument("--ca", required=True)
    c.add_argument("--downloads", required=True)
    c.add_argument("--h3", action="store_true")
    c.add_argument("--chacha20", action="store_true")
    c.add_argument("--resumption", action="store_true")
    c.add_argument("--key-update", action="store_true")
    c.add_argument("--zero-rtt", action="store_true")
    c.add_argument("--range", help="HTTP/3: a Range header value for every request")
    c.add_argument("urls", nargs="+")
    s = sub.add_parser("server")
    s.add_argument("--www", required=True)
    s.add_argument("--cert", required=True)
    s.add_argument("--key", required=True)
    s.add_argument("--port", type=int, required=True)
    s.add_argument("--h3", action="store_true")
    s.add_argument("--retry", action="store_true")
    for sp in (c, s):
        sp.add_argument(
            "--idle-timeout", type=float, default=60.0, help="seconds (aioquic's default: 60)"
        )
    a = p.parse_args()
    try:
        return asyncio.run(run_client(a) if a.role == "client" else run_server(a))
    except KeyboardInterrupt:
        return 0
    except Exception as e:  # a clear line, not a traceback, for the matrix log
        print(f"aioquic {a.role}: {type(e).__name__}: {e}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
