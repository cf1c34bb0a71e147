"""The one copy engine: move a manifest and everything it references from one target to another.

Written once over ``ReadOnlyTarget``/``Target`` (after oras-go's ``Copy``): blobs the destination
already has are skipped, blobs in another repository of the same registry are mounted, the rest
stream through a thread pool (several in flight), and the manifest goes last, only after every
blob it references is confirmed. push, pull and copy are all this function.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import logging
import os
import queue
import threading
import time
from collections.abc import Callable
from concurrent.futures import FIRST_EXCEPTION, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from typing import Any, BinaryIO

from kitflow.content.http import backoff_delay
from kitflow.content.localstore import LocalStore
from kitflow.content.registry import Registry, TransientError
from kitflow.content.target import ReadOnlyTarget, Target
from kitflow.errors import DigestMismatchError, NotFoundError
from kitflow.format.descriptor import DOCKER_MANIFEST_LIST, OCI_INDEX, Descriptor

log = logging.getLogger(__name__)

BLOB_ATTEMPTS = 4  # whole-blob attempts when a stream cannot be rewound (fetch again, re-send)


@dataclass
class CopyStats:
    """What one copy did, blob by blob."""

    root: Descriptor
    blobs: int = 0
    bytes_total: int = 0  # every blob and manifest of the graph
    bytes_transferred: int = 0
    bytes_skipped: int = 0
    blobs_skipped: int = 0
    blobs_mounted: int = 0
    retries: int = 0
    seconds: float = 0.0
    created: list[Descriptor] = field(default_factory=list)  # blobs newly written to dst
    on_created: Callable[[Descriptor], None] | None = field(default=None, repr=False)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def add(self, **counts: int) -> None:
        """Thread-safe increments."""
        with self._lock:
            for key, value in counts.items():
                setattr(self, key, getattr(self, key) + value)


def children(desc: Descriptor, data: bytes) -> tuple[list[Descriptor], list[Descriptor]]:
    """(blobs, child manifests) a manifest or index refers to, deduplicated, in order."""
    doc = json.loads(data)
    blobs: list[Descriptor] = []
    manifests: list[Descriptor] = []
    if desc.media_type in (OCI_INDEX, DOCKER_MANIFEST_LIST) or (
        "manifests" in doc and "layers" not in doc
    ):
        manifests = [Descriptor.from_json(m) for m in doc.get("manifests") or []]
    else:
        if isinstance(doc.get("config"), dict):
            blobs.append(Descriptor.from_json(doc["config"]))
        blobs.extend(Descriptor.from_json(layer) for layer in doc.get("layers") or [])
    seen: set[str] = set()
    unique = []
    for blob in blobs:
        if blob.digest not in seen:
            seen.add(blob.digest)
            unique.append(blob)
    return unique, manifests


class _Progress:
    """Per-blob and overall byte bars (tqdm) when asked for; a no-op otherwise."""

    def __init__(self, enabled: bool, total: int, label: str) -> None:
        self.enabled = enabled
        self._lock = threading.Lock()
        self._overall: Any = None
        self._slots: list[int] = []
        if enabled:
            from tqdm import tqdm

            self._tqdm = tqdm
            self._overall = tqdm(
                total=total, unit="B", unit_scale=True, desc=label, position=0, leave=True
            )

    def wrap(self, stream: Any, desc: Descriptor) -> Any:
        if not self.enabled:
            return stream
        return _CountingStream(stream, self, desc)

    def counter(self, desc: Descriptor, expected: int) -> Callable[[int], None]:
        """A callable to report ``n`` more bytes of ``desc`` (per-blob and overall bars); the
        blob's bar closes once ``expected`` bytes are counted."""
        if not self.enabled:
            return _ignore
        blob_bar = self.bar(desc)
        seen = [0]

        def tick(n: int) -> None:
            blob_bar.update(n)
            self.advance(n)
            seen[0] += n
            if seen[0] >= expected:
                blob_bar.close()

        return tick

    def bar(self, desc: Descriptor) -> Any:
        with self._lock:
            position = 1 + (len(self._slots))
            self._slots.append(position)
        return self._tqdm(
            total=desc.size,
            unit="B",
            unit_scale=True,
            desc=desc.digest[7:19],
            position=position,
            leave=False,
        )

    def advance(self, n: int) -> None:
        if self._overall is not None:
            with self._lock:
                self._overall.update(n)

    def close(self) -> None:
        if self._overall is not None:
            self._overall.close()


def _ignore(n: int) -> None:
    """A progress counter that counts nothing."""


class _CountingStream:
    def __init__(self, stream: BinaryIO, progress: _Progress, desc: Descriptor) -> None:
        self._stream = stream
        self._progress = progress
        self._bar = progress.bar(desc)

    def read(self, n: int = -1) -> bytes:
        data = self._stream.read(n)
        if data:
            self._bar.update(len(data))
            self._progress.advance(len(data))
        else:
            self._bar.close()
        return data

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return False


def _mountable(src: ReadOnlyTarget, dst: Target) -> str | None:
    if (
        isinstance(src, Registry)
        and isinstance(dst, Registry)
        and src.host == dst.host
        and src.repository != dst.repository
        and src.session.scheme() == dst.session.scheme()
    ):
        return src.repository
    return None


def copy_graph(
    src: ReadOnlyTarget,
    dst: Target,
    reference: str,
    *,
    dst_reference: str | None = None,
    concurrency: int = 5,
    progress: bool = False,
    on_created: Callable[[Descriptor], None] | None = None,
) -> CopyStats:
    """Copy the manifest ``reference`` of ``src`` with all its blobs to ``dst``; tag it there as
    ``dst_reference`` (default: ``reference`` when it is a tag). Returns what moved.

    ``on_created`` hears of every blob newly written to ``dst`` (even if the copy then fails),
    so a caller can roll back."""
    started = time.monotonic()
    if isinstance(dst, Registry):
        dst.push_scope = True
    root = src.resolve(reference)
    if dst_reference is None and not reference.startswith("sha256:"):
        dst_reference = reference
    stats = CopyStats(root=root, on_created=on_created)
    mount_from = _mountable(src, dst)
    root_data = src.fetch_bytes(root)
    blobs, _ = children(root, root_data)
    bar = _Progress(progress, sum(b.size for b in blobs), f"{root.digest[7:19]}")
    try:
        with ThreadPoolExecutor(
            max_workers=max(1, concurrency), thread_name_prefix="kitflow-copy"
        ) as pool:
            _copy_node(src, dst, root, root_data, pool, stats, mount_from, bar)
    finally:
        bar.close()
    _put_root(dst, root, root_data, dst_reference)
    stats.bytes_total += root.size
    stats.seconds = time.monotonic() - started
    return stats


def _put_root(dst: Target, root: Descriptor, data: bytes, tag: str | None) -> None:
    if isinstance(dst, Registry):
        dst.push_manifest(root, data, tag or root.digest)
        return
    dst.push_bytes(root, data)
    if tag:
        dst.tag(root, tag)


def _copy_node(
    src: ReadOnlyTarget,
    dst: Target,
    desc: Descriptor,
    data: bytes,
    pool: ThreadPoolExecutor,
    stats: CopyStats,
    mount_from: str | None,
    bar: _Progress,
) -> None:
    """Copy one manifest's blobs (in parallel) or one index's child manifests (recursively)."""
    blobs, manifests = children(desc, data)
    futures: list[Future[None]] = [
        pool.submit(_copy_blob, src, dst, blob, stats, mount_from, bar) for blob in blobs
    ]
    if futures:
        done, pending = wait(futures, return_when=FIRST_EXCEPTION)
        for future in done:
            exc = future.exception()
            if exc is not None:
                for other in pending:
                    other.cancel()
                wait(pending)
                raise exc
    for child in manifests:
        child_data = src.fetch_bytes(child)
        _copy_node(src, dst, child, child_data, pool, stats, mount_from, bar)
        if not dst.exists(child):
            dst.push_bytes(child, child_data)
        stats.add(bytes_total=child.size)


def _copy_blob(
    src: ReadOnlyTarget,
    dst: Target,
    desc: Descriptor,
    stats: CopyStats,
    mount_from: str | None,
    bar: _Progress,
) -> None:
    stats.add(blobs=1, bytes_total=desc.size)
    if dst.exists(desc):
        stats.add(blobs_skipped=1, bytes_skipped=desc.size)
        bar.advance(desc.size)
        return
    if mount_from is not None and isinstance(dst, Registry) and dst.mount(desc, mount_from):
        stats.add(blobs_mounted=1, bytes_skipped=desc.size)
        bar.advance(desc.size)
        return
    attempt = 0
    while True:
        attempt += 1
        try:
            _transfer(src, dst, desc, bar)
            break
        except TransientError as exc:
            if attempt >= BLOB_ATTEMPTS:
                raise
            delay = backoff_delay(attempt, exc.retry_after)
            log.info("blob %s: %s; copying it again in %.2fs", desc.digest, exc, delay)
            if isinstance(dst, Registry):
                dst.session.count_retry()
            time.sleep(delay)
    with stats._lock:
        stats.bytes_transferred += desc.size
        stats.created.append(desc)
        if stats.on_created is not None:
            stats.on_created(desc)


def _transfer(src: ReadOnlyTarget, dst: Target, desc: Descriptor, bar: _Progress) -> None:
    """Stream one blob. Reading (and hashing) runs a step ahead of writing in its own thread so
    the network, the disk and the hash overlap; memory stays at PREFETCH_DEPTH blocks a blob."""
    store = getattr(dst, "store", None)
    if isinstance(src, Registry) and isinstance(store, LocalStore):
        if _pull_into_store(src, store, desc, bar):
            return
        # Another process is pulling the same blob: our own private copy, via the store's writer.
        with store.ingest() as writer:
            with src.fetch_unverified(desc) as body, _Prefetch(bar.wrap(body, desc)) as ahead:
                while chunk := ahead.read():
                    writer.write(chunk)
            writer.commit(desc.media_type, expected=desc)
        return
    src_store = getattr(src, "store", None)
    if isinstance(dst, Registry) and isinstance(src_store, LocalStore) and not bar.enabled:
        # Local store -> registry: the registry hashes what it receives and refuses a blob that
        # does not match its digest (DigestMismatchError), so the upload is verified without a
        # second hash here; a plain file is also seekable, so upload() retries it in place.
        try:
            fh = open(src_store.blob_path(desc.digest), "rb")  # noqa: SIM115
        except FileNotFoundError:
            raise NotFoundError(f"blob {desc.digest} is missing from local storage") from None
        with fh:
            dst.upload(desc, fh)
        return
    with src.fetch(desc) as stream, _Prefetch(bar.wrap(stream, desc)) as ahead:
        if isinstance(dst, Registry):
            dst.upload(desc, ahead)  # type: ignore[arg-type]
        else:
            dst.push(desc, ahead)  # type: ignore[arg-type]


def _pull_into_store(
    src: Registry, store: LocalStore, desc: Descriptor, bar: _Progress, fresh: bool = False
) -> bool:
    """Download a blob into ``storage/ingest/kitflow-pull-<hex>.partial``, resuming (Range) what
    an earlier interrupted pull left there, hash it once and rename it into ``blobs/`` only if it
    matches ``desc``. Returns False when another process holds that partial file."""
    store.ingest_dir.mkdir(parents=True, exist_ok=True)
    store.blobs_dir.mkdir(parents=True, exist_ok=True)
    partial = store.ingest_dir / f"kitflow-pull-{desc.digest.split(':', 1)[1]}.partial"
    fd = os.open(partial, os.O_RDWR | os.O_CREAT, 0o666)
    with os.fdopen(fd, "r+b", buffering=0) as fh:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return False
        hasher = hashlib.sha256()
        have = 0
        size = 0 if fresh else os.fstat(fd).st_size
        if size > desc.size:
            size = 0
        while have < size:  # re-hash what an interrupted pull left, then continue after it
            data = fh.read(min(PREFETCH_BLOCK * 4, size - have))
            if not data:
                break
            hasher.update(data)
            have += len(data)
        fh.seek(have)
        if have != os.fstat(fd).st_size:
            # Only when there is something to cut: truncating an empty new file makes ext4
            # (auto_da_alloc) flush the whole blob to disk when it is closed.
            fh.truncate(have)
        if have:
            log.info("blob %s: resuming at byte %d of %d", desc.digest, have, desc.size)
        try:
            tick = bar.counter(desc, desc.size - have)

            def keep(view: memoryview) -> None:  # hash and write each block in parallel
                hashing = hash_pool.submit(hasher.update, view)
                _write_all(fd, view)
                hashing.result()
                tick(len(view))

            if have < desc.size:  # else an earlier pull got it all: a Range would be refused
                with (
                    src.fetch_unverified(desc, have) as body,
                    ThreadPoolExecutor(1, thread_name_prefix="kitflow-hash") as hash_pool,
                ):
                    _receive(body, desc.size - have, keep)
            fh.flush()
        except BaseException:
            with contextlib.suppress(OSError):
                fh.flush()
                if fh.tell() == 0:
                    partial.unlink()
            raise
        actual = "sha256:" + hasher.hexdigest()
        written = fh.tell()
        if actual != desc.digest or written != desc.size:
            partial.unlink()
            if have and not fresh:  # the kept part may be what is wrong: start over once
                log.info(
                    "blob %s: resumed content did not verify; downloading it again", desc.digest
                )
                fresh_retry = True
            else:
                raise DigestMismatchError(
                    f"blob {desc.digest} from {src.name} hashes to {actual} ({written} bytes), "
                    f"expected {desc.size} bytes; not stored"
                )
        else:
            fresh_retry = False
            os.replace(partial, store.blob_path(desc.digest))
    if fresh_retry:
        return _pull_into_store(src, store, desc, bar, fresh=True)
    return True


def _write_all(fd: int, data: bytes | memoryview) -> None:
    """os.write until everything is written (straight to the file, no buffer copy), at most
    WRITE_BLOCK bytes a call."""
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view[:WRITE_BLOCK]) :]


# Measured (benchmarks/transfer.py, ext4, kernel 6.18): 4 MiB writes into the page cache cost
# ~3x the CPU of 64 KiB ones, which made the pull twice as slow.
WRITE_BLOCK = 64 * 1024


RECEIVE_BUFFER = 4 * 1024 * 1024
RECEIVE_BUFFERS = 3


def _receive(body: Any, size: int, consume: Callable[[memoryview], None]) -> None:
    """Pass all of ``body`` to ``consume`` in order, in large blocks.

    A background thread ``readinto``s a few reused buffers straight from the socket while this
    thread consumes (hashes, writes) the ones already filled; both release the GIL, so network,
    hash and disk overlap with few handoffs. Memory: RECEIVE_BUFFERS buffers, whatever the size.
    """
    block = min(RECEIVE_BUFFER, max(size, 64 * 1024))
    free: queue.Queue[bytearray | None] = queue.Queue()
    filled: queue.Queue[tuple[bytearray, int] | BaseException] = queue.Queue()
    for _ in range(RECEIVE_BUFFERS):
        free.put(bytearray(block))

    def fill() -> None:
        try:
            while (buffer := free.get()) is not None:
                n = body.readinto(buffer)
                filled.put((buffer, n))
                if not n:
                    return
        except BaseException as exc:  # handed to the consumer, raised there
            filled.put(exc)

    reader = threading.Thread(target=fill, name="kitflow-receive", daemon=True)
    reader.start()
    try:
        while True:
            item = filled.get()
            if isinstance(item, BaseException):
                raise item
            buffer, n = item
            if not n:
                return
            consume(memoryview(buffer)[:n])
            free.put(buffer)
    finally:
        free.put(None)
        reader.join(timeout=5)


PREFETCH_BLOCK = 1024 * 1024
PREFETCH_DEPTH = 8


class _Prefetch:
    """A background reader: fills a bounded queue with blocks of ``source`` so that the consumer
    (socket send, hash + disk write) never waits for the producer's I/O and vice versa."""

    _END = object()

    def __init__(self, source: Any, block: int = PREFETCH_BLOCK, depth: int = PREFETCH_DEPTH):
        self._source = source
        self._block = block
        self._queue: queue.Queue[Any] = queue.Queue(maxsize=depth)
        self._stop = threading.Event()
        self._carry = b""
        self._done = False
        self._thread = threading.Thread(target=self._run, name="kitflow-prefetch", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        try:
            while not self._stop.is_set():
                data = self._source.read(self._block)
                self._put(data if data else self._END)
                if not data:
                    return
        except BaseException as exc:  # handed to the consumer, raised there
            self._put(exc)

    def _put(self, item: Any) -> None:
        while not self._stop.is_set():
            try:
                self._queue.put(item, timeout=0.1)
                return
            except queue.Full:
                continue

    def read(self, n: int = -1) -> bytes:
        """The next block (at most ``n`` bytes when n >= 0); b"" at the end."""
        if self._carry:
            data, self._carry = self._carry, b""
        elif self._done:
            return b""
        else:
            item = self._queue.get()
            if item is self._END:
                self._done = True
                return b""
            if isinstance(item, BaseException):
                self._done = True
                raise item
            data = item
        if 0 <= n < len(data):
            data, self._carry = data[:n], data[n:]
        return bytes(data)

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return False

    def close(self) -> None:
        self._stop.set()
        while True:
            try:
                self._queue.get_nowait()
            except queue.Empty:
                break
        self._thread.join(timeout=5)

    def __enter__(self) -> _Prefetch:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
