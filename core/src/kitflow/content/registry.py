"""One repository of an OCI Distribution registry as a content ``Target``.

Blobs stream both ways in constant memory: uploads go out as one PUT with Content-Length (or
PATCH chunks when ``chunk_size`` is set) after a HEAD says the blob is missing; downloads are
hashed as they arrive, resumed with a Range request after a break, and checked before use.
Registry quirks belong here and nowhere else.
"""

from __future__ import annotations

import contextlib
import io
import logging
import re
import threading
import time
from collections.abc import Iterator
from typing import Any, BinaryIO
from urllib.parse import urlencode, urljoin

import urllib3

from kitflow.content.auth import Authenticator, find_credentials, repository_scope
from kitflow.content.digest import VerifyingReader, check_digest, sha256_digest
from kitflow.content.http import (
    BLOCK,
    RETRYABLE_STATUS,
    TRANSIENT_ERRORS,
    HttpSession,
    backoff_delay,
    drain,
    error_for_status,
)
from kitflow.errors import DigestMismatchError, KitflowError, NotFoundError, RegistryError
from kitflow.format.descriptor import (
    DOCKER_MANIFEST,
    DOCKER_MANIFEST_LIST,
    OCI_INDEX,
    OCI_MANIFEST,
    Descriptor,
)
from kitflow.options import RegistryOptions

log = logging.getLogger(__name__)

MANIFEST_ACCEPT = ", ".join((OCI_MANIFEST, OCI_INDEX, DOCKER_MANIFEST, DOCKER_MANIFEST_LIST))
MAX_MANIFEST_BYTES = 4 * 1024 * 1024  # what Distribution accepts; a sane bound for reads
MAX_SMALL_BLOB = 64 * 1024 * 1024  # fetch_bytes refuses more (use fetch to stream)
_LINK_RE = re.compile(r'<([^>]+)>\s*;\s*rel="?next"?')


class TransientError(RegistryError):
    """A request failed in a way that may succeed if repeated (connection, 5xx, 429)."""

    def __init__(self, message: str, status: int | None = None, retry_after: str | None = None):
        super().__init__(message, status)
        self.retry_after = retry_after


def split_name(name: str) -> tuple[str, str]:
    """``host[:port]/repo/path`` → (host, repository)."""
    host, _, repository = name.partition("/")
    if not host or not repository:
        raise KitflowError(f"invalid registry repository {name!r}: expected HOST[:PORT]/REPOSITORY")
    return host, repository


class Registry:
    """A repository in a remote registry: implements ``Target`` plus ``delete``, ``list_tags``
    and ``mount``. Share ``session``/``auth`` between instances for the same host."""

    def __init__(
        self,
        name: str,
        options: RegistryOptions | None = None,
        *,
        home: Any = None,
        session: HttpSession | None = None,
        auth: Authenticator | None = None,
    ) -> None:
        self.host, self.repository = split_name(name)
        self.options = options or RegistryOptions()
        self.session = session or HttpSession(self.options)
        self.auth = auth or Authenticator(
            self.host, find_credentials(self.host, self.options, home), self.session
        )
        self.home = home
        self.base = f"{self.session.scheme()}://{self.host}/v2/{self.repository}"
        self.push_scope = False  # ask for push rights on every request (set by copy for dst)
        self._manifests: dict[str, bytes] = {}
        self._lock = threading.Lock()

    def __repr__(self) -> str:
        return f"Registry({self.name!r}, {self.options.safe_dict()!r})"

    @property
    def name(self) -> str:
        """``host/repository``."""
        return f"{self.host}/{self.repository}"

    def with_repository(self, repository: str) -> Registry:
        """Another repository of the same registry sharing connections and credentials."""
        return Registry(
            f"{self.host}/{repository}",
            self.options,
            home=self.home,
            session=self.session,
            auth=self.auth,
        )

    # ------------------------------------------------------------------------------ plumbing

    def _scope(self, push: bool, extra: str = "") -> str:
        scope = repository_scope(self.repository, push or self.push_scope)
        return f"{scope} {extra}".strip()

    def send(
        self,
        method: str,
        url: str,
        *,
        what: str,
        push: bool = False,
        headers: dict[str, str] | None = None,
        body: Any = None,
        stream: bool = False,
        retry: bool = True,
        extra_scope: str = "",
    ) -> urllib3.BaseHTTPResponse:
        """A request with auth: pre-emptive header, one round of challenge on a 401."""
        scope = self._scope(push, extra_scope)
        base_headers = dict(headers or {})
        sent: dict[str, str | None] = {}

        def make_headers() -> dict[str, str]:
            auth = self.auth.header(scope)
            sent["authorization"] = auth.get("Authorization")
            return {**base_headers, **auth}

        resp = self.session.request(
            method,
            url,
            host=self.host,
            what=what,
            headers=make_headers,
            body=body,
            stream=stream,
            retry=retry,
        )
        if resp.status == 401:
            challenge = resp.headers.get("WWW-Authenticate")
            drain(resp)
            self.auth.challenge(challenge, scope, what, sent.get("authorization"))
            resp = self.session.request(
                method,
                url,
                host=self.host,
                what=what,
                headers=make_headers,
                body=body,
                stream=stream,
                retry=retry,
            )
        return resp

    def _fail(
        self, resp: urllib3.BaseHTTPResponse, what: str, *, transient: bool = False
    ) -> Exception:
        """The error for a failed response; ``transient`` when it was not retried yet."""
        body = drain(resp)
        if resp.status in RETRYABLE_STATUS:
            if transient:
                return TransientError(
                    f"{self.host}: {what} failed with HTTP {resp.status}",
                    resp.status,
                    resp.headers.get("Retry-After"),
                )
            return RegistryError(
                f"{self.host}: {what} failed with HTTP {resp.status} after retries; the "
                "registry is overloaded or failing, try again later",
                resp.status,
            )
        return error_for_status(self.host, resp.status, what, body)

    def _kind(self, desc: Descriptor) -> str:
        return "manifests" if desc.is_manifest else "blobs"

    # ------------------------------------------------------------------------------ reading

    def resolve(self, reference: str) -> Descriptor:
        """Tag or digest → the manifest descriptor (HEAD; GET if the registry omits the digest)."""
        what = f"manifest {self.name}{'@' if reference.startswith('sha256:') else ':'}{reference}"
        url = f"{self.base}/manifests/{reference}"
        resp = self.send("HEAD", url, what=what, headers={"Accept": MANIFEST_ACCEPT})
        if resp.status == 404:
            drain(resp)
            raise NotFoundError(
                f"{what} not found in the registry; check the repository name and tag"
            )
        if resp.status != 200:
            raise self._fail(resp, what)
        drain(resp)
        digest = resp.headers.get("Docker-Content-Digest")
        media_type = (resp.headers.get("Content-Type") or "").split(";")[0].strip()
        size = resp.headers.get("Content-Length")
        if digest and size is not None and media_type:
            if reference.startswith("sha256:") and digest != reference:
                raise DigestMismatchError(f"{what}: registry answered with digest {digest}")
            return Descriptor(media_type, digest, int(size))
        data, media_type = self._get_manifest(reference, what)
        digest = sha256_digest(data)
        if reference.startswith("sha256:") and digest != reference:
            raise DigestMismatchError(f"{what}: content hashes to {digest}")
        with self._lock:
            self._manifests[digest] = data
        return Descriptor(media_type, digest, len(data))

    def _get_manifest(self, reference: str, what: str) -> tuple[bytes, str]:
        resp = self.send(
            "GET",
            f"{self.base}/manifests/{reference}",
            what=what,
            headers={"Accept": MANIFEST_ACCEPT},
            stream=True,
        )
        if resp.status != 200:
            raise self._fail(resp, what)
        try:
            data = resp.read(MAX_MANIFEST_BYTES + 1)
        finally:
            drain(resp)
        if len(data) > MAX_MANIFEST_BYTES:
            raise RegistryError(f"{what} is larger than {MAX_MANIFEST_BYTES} bytes; refusing it")
        media_type = (resp.headers.get("Content-Type") or "").split(";")[0].strip()
        return data, media_type

    def exists(self, desc: Descriptor) -> bool:
        """HEAD the blob or manifest: True on 200, False on 404."""
        what = f"{'manifest' if desc.is_manifest else 'blob'} {desc.digest} in {self.name}"
        headers = {"Accept": MANIFEST_ACCEPT} if desc.is_manifest else {}
        resp = self.send(
            "HEAD", f"{self.base}/{self._kind(desc)}/{desc.digest}", what=what, headers=headers
        )
        drain(resp)
        if resp.status == 200:
            return True
        if resp.status == 404:
            return False
        raise self._fail(resp, what)

    def fetch_bytes(self, desc: Descriptor) -> bytes:
        """Whole small content (manifest, config), verified against the descriptor."""
        check_digest(desc.digest)
        with self._lock:
            cached = self._manifests.get(desc.digest)
        if cached is not None:
            return cached
        if desc.size > MAX_SMALL_BLOB:
            raise KitflowError(f"blob {desc.digest} is {desc.size} bytes: stream it with fetch")
        what = f"{'manifest' if desc.is_manifest else 'blob'} {desc.digest} from {self.name}"
        if desc.is_manifest:
            data, _ = self._get_manifest(desc.digest, what)
        else:
            with self.fetch(desc) as reader:
                data = reader.read(desc.size + 1)
                while True:
                    more = reader.read(BLOCK)
                    if not more:
                        break
                    data += more
        actual = sha256_digest(data)
        if actual != desc.digest or len(data) != desc.size:
            raise DigestMismatchError(
                f"{what}: content hashes to {actual} ({len(data)} bytes), expected "
                f"{desc.digest} ({desc.size} bytes); not used"
            )
        return data

    @contextlib.contextmanager
    def fetch(self, desc: Descriptor) -> Iterator[BinaryIO]:
        """A verifying stream of a blob; a broken download resumes with a Range request."""
        check_digest(desc.digest)
        if desc.is_manifest:
            yield io.BytesIO(self.fetch_bytes(desc))
            return
        body = _ResumingBody(self, desc)
        try:
            reader = VerifyingReader(
                body,  # type: ignore[arg-type]
                desc.digest,
                desc.size,
                what=f"blob {desc.digest} from {self.name}",
            )
            yield reader  # type: ignore[misc]
        finally:
            body.close()

    def fetch_unverified(self, desc: Descriptor, offset: int = 0) -> _ResumingBody:
        """The raw (resuming) byte stream of a blob from ``offset``, for a caller that hashes
        and checks it itself before use (the pull path does, before the rename into place)."""
        check_digest(desc.digest)
        return _ResumingBody(self, desc, offset)

    def open_blob(self, desc: Descriptor, offset: int = 0) -> urllib3.BaseHTTPResponse:
        """GET a blob from ``offset`` (Range) as an unread streaming response (206 or 200)."""
        what = f"blob {desc.digest} from {self.name}"
        headers = {"Range": f"bytes={offset}-"} if offset else {}
        resp = self.send(
            "GET", f"{self.base}/blobs/{desc.digest}", what=what, headers=headers, stream=True
        )
        if resp.status not in (200, 206):
            raise self._fail(resp, what)
        return resp

    # ------------------------------------------------------------------------------ writing

    def push(self, desc: Descriptor, stream: BinaryIO) -> None:
        """Upload a blob (skipped if the registry has it) or a manifest, from ``stream``."""
        if desc.is_manifest:
            data = stream.read(MAX_MANIFEST_BYTES + 1)
            self.push_bytes(desc, data)
            return
        if self.exists(desc):
            return
        self.upload(desc, stream)

    def upload(self, desc: Descriptor, stream: BinaryIO) -> None:
        """Upload without the HEAD; a seekable ``stream`` is retried from its start position,
        any other raises :class:`TransientError` for the caller (the copy engine) to retry."""
        seekable = bool(getattr(stream, "seekable", lambda: False)())
        start = stream.tell() if seekable else 0
        attempt = 0
        while True:
            attempt += 1
            try:
                self._upload_once(desc, stream)
                return
            except TransientError as exc:
                if not seekable or attempt > self.session.max_retries:
                    raise
                delay = backoff_delay(attempt, exc.retry_after)
                log.info(
                    "%s: upload of %s failed (%s); retrying in %.2fs",
                    self.host,
                    desc.digest,
                    exc,
                    delay,
                )
                self.session.count_retry()
                time.sleep(delay)
                stream.seek(start)

    def _start_upload(
        self, what: str, query: dict[str, str] | None = None, extra_scope: str = ""
    ) -> urllib3.BaseHTTPResponse:
        url = f"{self.base}/blobs/uploads/"
        if query:
            url += "?" + urlencode(query)
        return self.send(
            "POST",
            url,
            what=what,
            push=True,
            headers={"Content-Length": "0"},
            extra_scope=extra_scope,
        )

    def _location(self, resp: urllib3.BaseHTTPResponse, what: str) -> str:
        location = resp.headers.get("Location")
        if not location:
            raise RegistryError(f"{self.host}: {what}: the registry sent no upload location")
        return urljoin(self.base + "/", location)

    def _upload_once(self, desc: Descriptor, stream: BinaryIO) -> None:
        what = f"upload of blob {desc.digest} to {self.name}"
        resp = self._start_upload(what)
        if resp.status != 202:
            raise self._fail(resp, what)
        drain(resp)
        location = self._location(resp, what)
        chunk = self.options.chunk_size
        if chunk and desc.size > 0:
            offset = 0
            while offset < desc.size:
                length = min(chunk, desc.size - offset)
                headers = {
                    "Content-Type": "application/octet-stream",
                    "Content-Length": str(length),
                    "Content-Range": f"{offset}-{offset + length - 1}",
                }
                resp = self._wire("PATCH", location, what, headers, _blocks(stream, length))
                if resp.status != 202:
                    raise self._fail(resp, what)
                drain(resp)
                got = resp.headers.get("Range", "")
                if got and got != f"0-{offset + length - 1}":
                    raise TransientError(
                        f"{self.host}: {what}: the registry holds {got} after a chunk ending at "
                        f"{offset + length - 1}"
                    )
                location = self._location(resp, what)
                offset += length
            put_headers = {"Content-Length": "0"}
            body: Any = None
        else:
            put_headers = {
                "Content-Type": "application/octet-stream",
                "Content-Length": str(desc.size),
            }
            body = _blocks(stream, desc.size)
        sep = "&" if "?" in location else "?"
        resp = self._wire("PUT", f"{location}{sep}digest={desc.digest}", what, put_headers, body)
        if resp.status != 201:
            if resp.status == 400:
                detail = drain(resp)
                if b"DIGEST_INVALID" in detail or b"SIZE_INVALID" in detail:
                    raise DigestMismatchError(
                        f"{self.host} rejected blob {desc.digest}: the uploaded content does not "
                        "match its digest"
                    )
                raise error_for_status(self.host, 400, what, detail)
            raise self._fail(resp, what)
        drain(resp)

    def _wire(
        self, method: str, url: str, what: str, headers: dict[str, str], body: Any
    ) -> urllib3.BaseHTTPResponse:
        """One upload request; connection errors and retryable statuses become TransientError."""
        try:
            resp = self.send(
                method, url, what=what, push=True, headers=headers, body=body, retry=False
            )
        except RegistryError as exc:  # connection error (the session did not retry)
            raise TransientError(str(exc)) from None
        if resp.status in RETRYABLE_STATUS:
            raise self._fail(resp, what, transient=True)
        return resp

    def mount(self, desc: Descriptor, from_repo: str) -> bool:
        """Cross-repository mount from ``from_repo`` of the same registry; False if refused."""
        what = f"mount of blob {desc.digest} from {from_repo} into {self.name}"
        resp = self._start_upload(
            what,
            {"mount": desc.digest, "from": from_repo},
            extra_scope=repository_scope(from_repo, False),
        )
        if resp.status == 201:
            drain(resp)
            return True
        if resp.status == 202:  # the registry opened an ordinary upload instead: cancel it
            drain(resp)
            with contextlib.suppress(KitflowError, *TRANSIENT_ERRORS):
                drain(self.send("DELETE", self._location(resp, what), what=what, push=True))
            return False
        if resp.status in (401, 403, 404):
            drain(resp)
            return False
        raise self._fail(resp, what)

    def push_bytes(self, desc: Descriptor, data: bytes) -> None:
        """Small content: a manifest is PUT by digest, a blob is uploaded if missing."""
        actual = sha256_digest(data)
        if actual != desc.digest or len(data) != desc.size:
            raise DigestMismatchError(
                f"content hashes to {actual} ({len(data)} bytes), expected {desc.digest} "
                f"({desc.size} bytes); not pushed"
            )
        if desc.is_manifest:
            self.push_manifest(desc, data, desc.digest)
            return
        if not self.exists(desc):
            self.upload(desc, io.BytesIO(data))

    def push_manifest(self, desc: Descriptor, data: bytes, reference: str) -> None:
        """PUT manifest bytes under a tag or its digest."""
        what = f"manifest {desc.digest} to {self.name}:{reference}"
        resp = self.send(
            "PUT",
            f"{self.base}/manifests/{reference}",
            what=what,
            push=True,
            headers={"Content-Type": desc.media_type},
            body=data,
        )
        if resp.status not in (200, 201):
            raise self._fail(resp, what)
        drain(resp)
        with self._lock:
            self._manifests[desc.digest] = data

    def tag(self, desc: Descriptor, reference: str) -> None:
        """Point tag ``reference`` at manifest ``desc`` (re-PUT of its bytes under the tag)."""
        self.push_manifest(desc, self.fetch_bytes(desc), reference)

    # ------------------------------------------------------------------------------ extras

    def delete(self, reference: str) -> Descriptor:
        """Delete a manifest by digest, or by tag where the registry allows untagging (else
        the tag's manifest by digest, which drops all its tags, as Distribution works)."""
        desc = self.resolve(reference)
        what = f"delete of {self.name}:{reference}"
        if not reference.startswith("sha256:"):
            resp = self.send("DELETE", f"{self.base}/manifests/{reference}", what=what, push=True)
            if resp.status == 202:
                drain(resp)
                return desc
            drain(resp)
            if resp.status not in (400, 404, 405):
                raise self._fail(resp, what)
        resp = self.send("DELETE", f"{self.base}/manifests/{desc.digest}", what=what, push=True)
        if resp.status != 202:
            if resp.status == 405:
                drain(resp)
                raise RegistryError(
                    f"{self.host} does not allow deleting manifests (HTTP 405)", 405
                )
            raise self._fail(resp, what)
        drain(resp)
        return desc

    def list_tags(self, page_size: int | None = None) -> list[str]:
        """Every tag of the repository, following ``Link: <...>; rel="next"`` pages."""
        first = f"{self.base}/tags/list" + (f"?n={page_size}" if page_size else "")
        url: str | None = first
        tags: list[str] = []
        seen: set[str] = set()
        while url and url not in seen:
            seen.add(url)
            what = f"tag list of {self.name}"
            resp = self.send("GET", url, what=what)
            if resp.status == 404:
                drain(resp)
                raise NotFoundError(f"repository {self.name} not found in the registry")
            if resp.status != 200:
                raise self._fail(resp, what)
            import json

            doc = json.loads(resp.data or b"{}")
            resp.release_conn()
            tags.extend(doc.get("tags") or [])
            match = _LINK_RE.search(resp.headers.get("Link", ""))
            url = urljoin(url, match.group(1)) if match else None
        return tags

    def close(self) -> None:
        """Release pooled connections."""
        self.session.close()


def _blocks(stream: BinaryIO, length: int) -> Iterator[bytes | memoryview]:
    """Exactly ``length`` bytes of ``stream`` in large blocks (an upload body, constant memory).

    A stream with ``readinto`` (a file) is read into one reused buffer: no per-block allocation,
    which matters at a GiB (urllib3 sends each block before asking for the next).
    """
    left = length
    readinto = getattr(stream, "readinto", None)
    if readinto is not None:
        buffer = bytearray(BLOCK)
        view = memoryview(buffer)
        while left > 0:
            n = readinto(view[: min(BLOCK, left)])
            if not n:
                raise KitflowError(f"source ended {left} bytes early while uploading")
            left -= n
            yield view[:n]
        return
    while left > 0:
        data = stream.read(min(BLOCK * 4, left))
        if not data:
            raise KitflowError(f"source ended {left} bytes early while uploading")
        left -= len(data)
        yield data


class _ResumingBody:
    """A blob download that survives breaks: on a connection error or a short body it asks for
    the rest with ``Range: bytes=<received>-`` (or skips ahead if the registry ignores Range)."""

    def __init__(self, registry: Registry, desc: Descriptor, offset: int = 0) -> None:
        self.registry = registry
        self.desc = desc
        self.received = offset
        self.resumes = 0
        self._broken = ""  # why the connection broke, when readinto has yet to resume it
        self._resp: urllib3.BaseHTTPResponse | None = self._open(offset)

    def _open(self, offset: int) -> urllib3.BaseHTTPResponse:
        resp = self.registry.open_blob(self.desc, offset)
        if resp.status == 200 and offset:  # the registry ignored Range: skip what we have
            skip = offset
            while skip:
                chunk = resp.read(min(skip, BLOCK))
                if not chunk:
                    break
                skip -= len(chunk)
        return resp

    def readable(self) -> bool:
        return True

    def read(self, n: int = -1) -> bytes:
        if n is None or n < 0:
            n = BLOCK * 4
        while True:
            if self.received >= self.desc.size:
                # Let an over-long body show itself so the verifier refuses it.
                if self._resp is not None:
                    try:
                        extra = self._resp.read(n)
                    except TRANSIENT_ERRORS:
                        extra = b""
                    if extra:
                        self.received += len(extra)
                        return extra
                return b""
            try:
                assert self._resp is not None
                data = self._read_some(n)
            except TRANSIENT_ERRORS as exc:
                self._resume(type(exc).__name__)
                continue
            if not data:
                self._resume("body ended early")
                continue
            self.received += len(data)
            return data

    def readinto(self, buffer: bytearray | memoryview) -> int:
        """Fill ``buffer`` as far as the body goes, straight from the socket (no copies through
        intermediate buffers); 0 only at the end. Breaks resume as in :meth:`read`."""
        view = memoryview(buffer).cast("B")
        filled = 0
        while filled < len(view):
            if self._broken:  # a break ended the previous call: resume now
                reason, self._broken = self._broken, ""
                self._resume(reason)
            if self._resp is None:  # closed
                break
            try:
                n = self._readinto_some(view[filled:])
            except TRANSIENT_ERRORS as exc:
                n, self._broken = 0, type(exc).__name__
            else:
                if not n:
                    self._broken = "body ended early"
            if self._broken:
                if self.received >= self.desc.size:
                    self._broken = ""  # the whole blob is here: a break after it is harmless
                    break
                if filled:  # hand over what arrived (kept on disk even if resuming fails)
                    break
                continue
            # Bytes past the descriptor's size (an over-long body) are passed on as well, so
            # the caller's size check refuses the blob.
            self.received += n
            filled += n
        return filled

    def _readinto_some(self, view: memoryview) -> int:
        """Read into ``view`` until it is full or the body ends (one ``recv_into`` per socket
        read when the response is http.client's)."""
        assert self._resp is not None
        raw = getattr(self._resp, "_fp", None)
        if raw is not None and hasattr(raw, "readinto"):
            return int(raw.readinto(view))
        return int(self._resp.readinto(view))

    def _read_some(self, n: int) -> bytes:
        """Up to ``n`` bytes with at most one socket read (http.client's ``read1``: no copying
        through urllib3's buffers); b"" only at the end of the body."""
        assert self._resp is not None
        raw = getattr(self._resp, "_fp", None)
        if raw is not None and hasattr(raw, "read1"):
            return bytes(raw.read1(n))
        return bytes(self._resp.read(n))

    def _resume(self, reason: str) -> None:
        self.resumes += 1
        registry = self.registry
        if self.resumes > registry.session.max_retries:
            raise RegistryError(
                f"{registry.host}: download of blob {self.desc.digest} broke {self.resumes} "
                f"times ({reason}) at byte {self.received} of {self.desc.size}; try again later"
            )
        self._release()
        delay = backoff_delay(self.resumes)
        log.info(
            "%s: blob %s broke at %d (%s); resuming in %.2fs",
            registry.host,
            self.desc.digest,
            self.received,
            reason,
            delay,
        )
        registry.session.count_retry()
        time.sleep(delay)
        self._resp = self._open(self.received)

    def _release(self) -> None:
        if self._resp is not None:
            with contextlib.suppress(Exception):
                self._resp.release_conn()
                self._resp.close()
            self._resp = None

    def __enter__(self) -> _ResumingBody:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        if self._resp is not None:
            resp, self._resp = self._resp, None
            with contextlib.suppress(Exception):
                if self.received >= self.desc.size:
                    resp.release_conn()
                else:  # unread data: do not return this connection to the pool
                    resp.close()
