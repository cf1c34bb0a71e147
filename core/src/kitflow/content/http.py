"""One HTTP session for registry traffic: TLS settings, connection pooling and retry policy.

Retries (exponential backoff with full jitter) cover connection errors, 5xx and 429 (honouring
Retry-After); 401/403/404 are returned at once for the caller to turn into a clear error.
Built on urllib3 for streaming throughput: bodies go out in large blocks and come back unbuffered.
"""

from __future__ import annotations

import email.utils
import http.client
import json
import logging
import random
import ssl
import threading
import time
import urllib.parse
import urllib.request
from collections.abc import Callable, Iterable, Mapping
from typing import Any

import urllib3
from urllib3.exceptions import HTTPError as Urllib3Error

from kitflow.errors import AuthError, NotFoundError, RegistryError
from kitflow.options import RegistryOptions

log = logging.getLogger(__name__)

BLOCK = 1024 * 1024  # socket write size for uploads and read size for downloads
RETRY_BASE = 0.25  # seconds; doubled per attempt, full jitter
RETRY_CAP = 20.0  # longest single wait between attempts
RETRY_AFTER_CAP = 120.0  # longest Retry-After we honour
RETRYABLE_STATUS = frozenset({408, 429, 500, 502, 503, 504})

# Exceptions that mean "the connection broke": retry (or resume a download).
TRANSIENT_ERRORS: tuple[type[BaseException], ...] = (
    Urllib3Error,
    ConnectionError,
    TimeoutError,
    http.client.HTTPException,
)

BodyFactory = Callable[[], Any]


def backoff_delay(attempt: int, retry_after: str | None = None) -> float:
    """Seconds to wait before retry number ``attempt`` (1-based): Retry-After if the server
    sent one, else exponential backoff with full jitter."""
    if retry_after:
        seconds = parse_retry_after(retry_after)
        if seconds is not None:
            return min(seconds, RETRY_AFTER_CAP)
    ceiling = min(RETRY_CAP, RETRY_BASE * (2 ** (attempt - 1)))
    return random.uniform(ceiling / 2, ceiling)


def parse_retry_after(value: str) -> float | None:
    """Retry-After as seconds: either delta-seconds or an HTTP date."""
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, when.timestamp() - time.time())


def registry_error_detail(body: bytes) -> str:
    """The ``errors[].code: message`` of a Distribution error body, or ''."""
    try:
        doc = json.loads(body[:65536] or b"{}")
    except ValueError:
        return ""
    errors = doc.get("errors") if isinstance(doc, dict) else None
    if not isinstance(errors, list):
        return ""
    parts = []
    for err in errors[:3]:
        if isinstance(err, dict):
            code, message = err.get("code", ""), err.get("message", "")
            parts.append(f"{code}: {message}" if code and message else str(code or message))
    return "; ".join(p for p in parts if p)


def error_for_status(host: str, status: int, what: str, body: bytes = b"") -> Exception:
    """The user error for a failed request: names the registry, the status and what to do."""
    detail = registry_error_detail(body)
    suffix = f" ({detail})" if detail else ""
    if status == 401:
        return AuthError(
            f"{host} refused {what}: HTTP 401 unauthorized{suffix}; log in with "
            f"'kitflow login {host}' or check your credentials",
            status,
        )
    if status == 403:
        return AuthError(
            f"{host} denied {what}: HTTP 403 forbidden{suffix}; check that your account may "
            "access this repository",
            status,
        )
    if status == 404:
        return NotFoundError(f"{host}: {what} not found (HTTP 404){suffix}; check the name")
    return RegistryError(f"{host}: {what} failed with HTTP {status}{suffix}", status)


class HttpSession:
    """Pooled HTTPS/HTTP connections to registries with one retry policy.

    Thread-safe: the copy engine shares one session among its workers. ``retries`` counts the
    retries made so far (reported in TransferResult).
    """

    def __init__(self, options: RegistryOptions | None = None, *, pool_size: int | None = None):
        self.options = options or RegistryOptions()
        opts = self.options
        kwargs: dict[str, Any] = {
            "num_pools": 8,
            "maxsize": pool_size or max(opts.concurrency, 1) + 4,
            "block": False,
            "retries": False,
            "timeout": urllib3.Timeout(connect=30.0, read=300.0),
            "blocksize": BLOCK,
        }
        if not opts.tls_verify:
            kwargs["cert_reqs"] = "CERT_NONE"
            kwargs["assert_hostname"] = False
            urllib3.disable_warnings(urllib3.exceptions.InsecureRequestWarning)
        else:
            kwargs["cert_reqs"] = "CERT_REQUIRED"
            if opts.ca_file:  # else the system trust store (SSL_CERT_FILE honoured)
                kwargs["ca_certs"] = str(opts.ca_file)
        if opts.client_cert:
            kwargs["cert_file"] = str(opts.client_cert)
            kwargs["key_file"] = str(opts.client_key) if opts.client_key else None
        self._pool = urllib3.PoolManager(**kwargs)
        self._pool_kwargs = kwargs
        self._proxies: dict[str, urllib3.ProxyManager] = {}
        self._env_proxies = {k.lower(): v for k, v in urllib.request.getproxies().items()}
        self.max_retries = max(0, opts.retries)
        self._lock = threading.Lock()
        self.retries = 0

    def __repr__(self) -> str:
        return f"HttpSession({self.options.safe_dict()!r})"

    def scheme(self) -> str:
        """``http`` with --plain-http, else ``https``."""
        return "http" if self.options.plain_http else "https"

    def count_retry(self) -> None:
        """Record one retry (thread-safe)."""
        with self._lock:
            self.retries += 1

    def close(self) -> None:
        """Close every pooled connection."""
        self._pool.clear()
        for manager in self._proxies.values():
            manager.clear()

    def _manager(self, url: str) -> urllib3.PoolManager:
        """The direct pool, or a proxy pool when HTTP(S)_PROXY applies (NO_PROXY respected)."""
        if not self._env_proxies:
            return self._pool
        parsed = urllib.parse.urlsplit(url)
        proxy = self._env_proxies.get(parsed.scheme)
        if not proxy or urllib.request.proxy_bypass(parsed.netloc):
            return self._pool
        manager = self._proxies.get(proxy)
        if manager is None:
            kwargs = dict(self._pool_kwargs)
            kwargs.pop("num_pools", None)
            manager = self._proxies[proxy] = urllib3.ProxyManager(proxy, num_pools=8, **kwargs)
        return manager

    def raw(
        self,
        method: str,
        url: str,
        *,
        headers: Mapping[str, str] | None = None,
        body: bytes | Iterable[bytes] | None = None,
        stream: bool = False,
    ) -> urllib3.BaseHTTPResponse:
        """One attempt, no retries (connection errors propagate)."""
        return self._manager(url).request(
            method,
            url,
            headers=dict(headers or {}),
            body=body,
            preload_content=not stream,
            decode_content=False,
            redirect=True,
            retries=urllib3.Retry(total=None, connect=0, read=0, redirect=5, status=0, other=0)
            if method in ("GET", "HEAD")
            else False,
        )

    def request(
        self,
        method: str,
        url: str,
        *,
        host: str,
        what: str,
        headers: Mapping[str, str] | Callable[[], Mapping[str, str]] | None = None,
        body: bytes | BodyFactory | None = None,
        stream: bool = False,
        retry: bool = True,
    ) -> urllib3.BaseHTTPResponse:
        """Send with retries on connection errors, 5xx and 429; return any other response.

        ``headers`` may be a callable (re-evaluated per attempt, e.g. for a refreshed token);
        ``body`` may be a callable returning a fresh body per attempt (a re-opened stream).
        """
        attempt = 0
        while True:
            attempt += 1
            hdrs = headers() if callable(headers) else headers
            payload = body() if callable(body) else body
            try:
                resp = self.raw(method, url, headers=hdrs, body=payload, stream=stream)
            except TRANSIENT_ERRORS as exc:
                tls_problem = _tls_failure(exc)
                if tls_problem:
                    raise RegistryError(
                        f"{host}: {what} failed: {tls_problem}; pass --ca-file with the "
                        "registry's CA, or --tls-verify=false (or --plain-http for an HTTP "
                        "registry)"
                    ) from None
                if not retry or attempt > self.max_retries:
                    raise RegistryError(
                        f"{host}: {what} failed: connection error after {attempt} attempt(s) "
                        f"({type(exc).__name__}); check that the registry is reachable"
                    ) from None
                delay = backoff_delay(attempt)
                log.info("%s: %s: %s, retrying in %.2fs", host, what, type(exc).__name__, delay)
                self.count_retry()
                time.sleep(delay)
                continue
            if resp.status in RETRYABLE_STATUS and retry and attempt <= self.max_retries:
                retry_after = resp.headers.get("Retry-After")
                drain(resp)
                delay = backoff_delay(attempt, retry_after)
                log.info("%s: %s: HTTP %d, retrying in %.2fs", host, what, resp.status, delay)
                self.count_retry()
                time.sleep(delay)
                continue
            return resp


def drain(resp: urllib3.BaseHTTPResponse) -> bytes:
    """Read (a bounded amount of) the body and release the connection back to the pool."""
    data = b""
    try:
        data = resp.data if getattr(resp, "_body", None) else resp.read(1 << 20)
        resp.drain_conn()
    except TRANSIENT_ERRORS:
        pass
    finally:
        resp.release_conn()
    return data or b""


def _tls_failure(exc: BaseException) -> str | None:
    """A one-line description when ``exc`` is a TLS verification failure (never retried)."""
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        if isinstance(current, ssl.SSLCertVerificationError):
            return f"TLS certificate not trusted ({current.verify_message})"
        if isinstance(current, ssl.SSLError):
            reason = getattr(current, "reason", None) or type(current).__name__
            if reason in ("WRONG_VERSION_NUMBER", "RECORD_LAYER_FAILURE"):
                return "the server does not speak TLS here"
            return f"TLS handshake failed ({reason})"
        current = getattr(current, "reason", None) or current.__cause__ or current.__context__
        if not isinstance(current, BaseException):
            break
    return None
