"""A fault-injecting HTTP proxy for registry tests: 5xx, 429 + Retry-After, resets, cut bodies.

It forwards every request to a real registry unchanged (Host header kept, so the registry's
Location headers point back at the proxy) and applies the first matching :class:`Rule`. Each rule
fires ``times`` times (-1: forever). ``log`` records every request with what the proxy did.
"""

from __future__ import annotations

import contextlib
import http.client
import json
import re
import socket
import struct
import threading
import time
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlencode, urlparse


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


HOP_HEADERS = {"connection", "keep-alive", "transfer-encoding", "proxy-connection", "upgrade", "te"}


@dataclass
class Rule:
    """One fault. ``action`` is one of:

    - ``status``: answer ``status`` (default 503) with ``retry_after`` if given, no forwarding;
    - ``reset``: drop the connection (TCP RST) before forwarding anything;
    - ``reset_after``: forward the request, then drop the connection instead of answering;
    - ``truncate``: forward, send the real headers but only ``keep`` bytes of the body, hang up;
    - ``corrupt``: forward, flip one byte of the body (same length) — digest checks must catch it;
    - ``delay``: wait ``seconds`` then forward normally (to observe requests in flight);
    - ``paginate``: serve ``GET .../tags/list`` in pages of ``page_size`` with RFC 5988 Link
      headers, from the registry's full list (Distribution 2.8 does not paginate tags itself).
    """

    action: str
    method: str | None = None
    path: str | None = None  # regular expression searched in the request path
    status: int = 503
    retry_after: str | None = None
    keep: int = 0
    times: int = 1
    page_size: int = 2
    seconds: float = 0.0
    fired: int = 0

    def matches(self, method: str, path: str) -> bool:
        if self.times != -1 and self.fired >= self.times:
            return False
        if self.method is not None and self.method.upper() != method:
            return False
        return self.path is None or re.search(self.path, path) is not None


@dataclass
class LogEntry:
    """What the proxy saw and did for one request."""

    method: str
    path: str
    action: str  # "forward" or the rule's action
    status: int | None
    headers: dict[str, str]


class FaultProxy:
    """Threaded proxy on 127.0.0.1 in front of ``upstream`` ("host:port", plain HTTP)."""

    def __init__(self, upstream: str) -> None:
        self.upstream = upstream
        self.rules: list[Rule] = []
        self.log: list[LogEntry] = []
        self._lock = threading.Lock()
        self.in_flight = 0
        self.max_in_flight = 0
        self.port = free_port()
        self.host = f"127.0.0.1:{self.port}"
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: Any) -> None:
                pass

            def handle_one_request(self) -> None:
                try:
                    super().handle_one_request()
                except (TimeoutError, ConnectionError, BrokenPipeError):
                    self.close_connection = True

            def do_GET(self) -> None:
                proxy._handle(self)

            do_HEAD = do_PUT = do_POST = do_PATCH = do_DELETE = do_GET

        self._httpd = ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        self._httpd.daemon_threads = True
        self._thread = threading.Thread(target=self._httpd.serve_forever, args=(0.05,), daemon=True)

    # -- control -------------------------------------------------------------------------------

    def start(self) -> FaultProxy:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._httpd.shutdown()
        self._httpd.server_close()

    def add(self, action: str, **kwargs: Any) -> Rule:
        """Append a rule (see :class:`Rule`) and return it (``rule.fired`` counts its uses)."""
        rule = Rule(action=action, **kwargs)
        with self._lock:
            self.rules.append(rule)
        return rule

    def clear(self) -> None:
        with self._lock:
            self.rules.clear()
            self.log.clear()

    def requests(self, method: str | None = None, path: str | None = None) -> list[LogEntry]:
        """Logged requests filtered by method and a path regular expression."""
        return [
            e
            for e in list(self.log)
            if (method is None or e.method == method) and (path is None or re.search(path, e.path))
        ]

    # -- request handling ----------------------------------------------------------------------

    def _pick(self, method: str, path: str) -> Rule | None:
        with self._lock:
            for rule in self.rules:
                if rule.matches(method, path):
                    rule.fired += 1
                    return rule
        return None

    def _record(self, req: BaseHTTPRequestHandler, action: str, status: int | None) -> None:
        headers = {k: v for k, v in req.headers.items()}
        with self._lock:
            self.log.append(LogEntry(req.command, req.path, action, status, headers))

    @staticmethod
    def _reset(req: BaseHTTPRequestHandler) -> None:
        req.close_connection = True
        sock = req.connection
        try:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            sock.close()
        except OSError:
            pass

    @staticmethod
    def _hang_up(req: BaseHTTPRequestHandler) -> None:
        """Close gracefully (FIN): the client sees the body end early, data sent so far arrives."""
        req.close_connection = True
        with contextlib.suppress(OSError):
            req.connection.shutdown(socket.SHUT_WR)

    @staticmethod
    def _drain(req: BaseHTTPRequestHandler) -> None:
        length = int(req.headers.get("Content-Length") or 0)
        while length > 0:
            chunk = req.rfile.read(min(length, 1 << 20))
            if not chunk:
                break
            length -= len(chunk)

    def _handle(self, req: BaseHTTPRequestHandler) -> None:
        with self._lock:
            self.in_flight += 1
            self.max_in_flight = max(self.max_in_flight, self.in_flight)
        try:
            self._handle_one(req)
        finally:
            with self._lock:
                self.in_flight -= 1

    def _handle_one(self, req: BaseHTTPRequestHandler) -> None:
        rule = self._pick(req.command, req.path)
        if rule is not None and rule.action == "delay":
            time.sleep(rule.seconds)
        action = rule.action if rule else "forward"
        if rule is not None and rule.action == "reset":
            self._record(req, action, None)
            self._reset(req)
            return
        if rule is not None and rule.action == "status":
            self._drain(req)
            body = json.dumps(
                {"errors": [{"code": "UNAVAILABLE", "message": "injected fault"}]}
            ).encode()
            self._record(req, action, rule.status)
            req.send_response(rule.status)
            if rule.retry_after is not None:
                req.send_header("Retry-After", rule.retry_after)
            req.send_header("Content-Type", "application/json")
            req.send_header("Content-Length", str(len(body)))
            req.end_headers()
            if req.command != "HEAD":
                req.wfile.write(body)
            return
        if rule is not None and rule.action == "paginate":
            self._paginate(req, rule)
            return
        self._forward(req, rule)

    def _upstream_request(
        self, req: BaseHTTPRequestHandler, path: str | None = None
    ) -> tuple[http.client.HTTPConnection, http.client.HTTPResponse]:
        conn = http.client.HTTPConnection(self.upstream, timeout=60)
        headers = {k: v for k, v in req.headers.items() if k.lower() not in HOP_HEADERS}
        length = int(req.headers.get("Content-Length") or 0)
        body: Any = None
        if length:
            body = _LimitedReader(req.rfile, length)
        conn.putrequest(req.command, path or req.path, skip_host=True, skip_accept_encoding=True)
        for key, value in headers.items():
            conn.putheader(key, value)
        conn.endheaders()
        if body is not None:
            while True:
                chunk = body.read(1 << 20)
                if not chunk:
                    break
                conn.send(chunk)
        return conn, conn.getresponse()

    def _forward(self, req: BaseHTTPRequestHandler, rule: Rule | None) -> None:
        conn, resp = self._upstream_request(req)
        try:
            if rule is not None and rule.action == "reset_after":
                resp.read()
                self._record(req, "reset_after", resp.status)
                self._reset(req)
                return
            has_body = req.command != "HEAD" and resp.status not in (204, 304)
            length_header = resp.getheader("Content-Length")
            data: bytes | None = None
            if has_body and length_header is None:
                data = resp.read()
            self._record(req, rule.action if rule else "forward", resp.status)
            req.send_response_only(resp.status, resp.reason)
            for key, value in resp.getheaders():
                if key.lower() in HOP_HEADERS:
                    continue
                if key.lower() == "content-length" and data is not None:
                    continue
                req.send_header(key, value)
            if data is not None:
                req.send_header("Content-Length", str(len(data)))
            req.end_headers()
            if not has_body:
                return
            if data is not None:
                req.wfile.write(data)
                return
            remaining = int(length_header or 0)
            sent = 0
            flipped = False
            while remaining > 0:
                chunk = resp.read(min(remaining, 1 << 20))
                if not chunk:
                    break
                remaining -= len(chunk)
                if rule is not None and rule.action == "truncate":
                    allowed = rule.keep - sent
                    if allowed <= len(chunk):
                        req.wfile.write(chunk[: max(allowed, 0)])
                        req.wfile.flush()
                        self._hang_up(req)
                        return
                if rule is not None and rule.action == "corrupt" and not flipped and chunk:
                    chunk = bytes([chunk[0] ^ 0xFF]) + chunk[1:]
                    flipped = True
                req.wfile.write(chunk)
                sent += len(chunk)
            if rule is not None and rule.action == "truncate":
                self._hang_up(req)
        finally:
            conn.close()

    def _paginate(self, req: BaseHTTPRequestHandler, rule: Rule) -> None:
        parsed = urlparse(req.path)
        query = parse_qs(parsed.query)
        conn, resp = self._upstream_request(req, parsed.path)
        try:
            raw = resp.read()
            status = resp.status
        finally:
            conn.close()
        if status != 200:
            self._record(req, "paginate", status)
            req.send_response(status)
            req.send_header("Content-Length", str(len(raw)))
            req.end_headers()
            req.wfile.write(raw)
            return
        doc = json.loads(raw)
        tags = sorted(doc.get("tags") or [])
        n = int(query.get("n", [rule.page_size])[0])
        last = query.get("last", [None])[0]
        if last is not None:
            tags = [t for t in tags if t > last]
        page, more = tags[:n], len(tags) > n
        body = json.dumps({"name": doc.get("name"), "tags": page}).encode()
        self._record(req, "paginate", 200)
        req.send_response(200)
        req.send_header("Content-Type", "application/json")
        req.send_header("Content-Length", str(len(body)))
        if more and page:
            link = parsed.path + "?" + urlencode({"n": n, "last": page[-1]})
            req.send_header("Link", f'<{link}>; rel="next"')
        req.end_headers()
        req.wfile.write(body)


class _LimitedReader:
    """Reads at most ``length`` bytes of a request body."""

    def __init__(self, stream: Any, length: int) -> None:
        self._stream = stream
        self._left = length

    def read(self, n: int) -> bytes:
        if self._left <= 0:
            return b""
        data: bytes = self._stream.read(min(n, self._left))
        self._left -= len(data)
        return data
