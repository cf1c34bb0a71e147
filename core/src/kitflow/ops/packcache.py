"""Stat-keyed cache of packed layers (like git's index), so re-packing unchanged content reads
no file data: a layer whose entries' (path, type, mode, size, mtime, ctime, inode, device) all
match the last pack reuses that pack's digest, provided the blob is still in the store.

Entries live in ``$KITOPS_HOME/cache/kitflow-pack/<slot>.json``, one per (context, layer path,
media type). Not under ``cache/pack``: ``kit pack`` empties that directory after every pack.
Losing entries (e.g. ``kit cache clear``) only costs one re-read.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import time
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from kitflow.content.localstore import atomic_write
from kitflow.format.tarwriter import WalkEntry

# A file modified this close to (or after) the moment its layer was read may change again
# without changing its mtime ("racily clean" in git's terms); such layers are not cached.
RACY_WINDOW_NS = 100_000_000
COARSE_RACY_WINDOW_NS = 2_000_000_000  # file systems with whole-second timestamps
MAX_SLOTS = 4096  # beyond this, the least recently written slots are dropped


@dataclass(frozen=True)
class CachedLayer:
    """What a previous pack produced for one layer."""

    digest: str
    size: int
    diff_id: str
    media_type: str


def fingerprint(entries: Iterable[WalkEntry], extra: str = "") -> str:
    """A digest of every stat fact the layer's bytes depend on (and nothing that reads data)."""
    h = hashlib.sha256(extra.encode("utf-8", "surrogateescape"))
    for e in entries:
        h.update(
            f"\0{e.name}\0{int(e.is_dir)}:{e.mode}:{e.size}:{e.mtime_ns}:{e.ctime_ns}:"
            f"{e.inode}:{e.device}".encode("utf-8", "surrogateescape")
        )
    return h.hexdigest()


def is_racy(entries: Iterable[WalkEntry], read_started_ns: int) -> bool:
    """True if any entry's content changed too recently to trust its stat data later (mtime, as
    git does; ctime is part of the fingerprint, so a later metadata change still misses)."""
    for e in entries:
        window = COARSE_RACY_WINDOW_NS if e.mtime_ns % 1_000_000_000 == 0 else RACY_WINDOW_NS
        if e.mtime_ns >= read_started_ns - window:
            return True
    return False


class PackCache:
    """Look up and record layer results by (slot, fingerprint)."""

    def __init__(self, home: Path) -> None:
        self.dir = Path(home) / "cache" / "kitflow-pack"

    @staticmethod
    def slot(context: Path, layer_path: str, media_type: str, layer_format: str) -> str:
        """One cache file per context directory, layer path and layer encoding."""
        key = "\0".join([str(context), layer_path, media_type, layer_format])
        return hashlib.sha256(key.encode("utf-8", "surrogateescape")).hexdigest()

    def lookup(self, slot: str, print_: str) -> CachedLayer | None:
        """The cached result if the fingerprint is unchanged; None otherwise."""
        try:
            data = json.loads((self.dir / f"{slot}.json").read_bytes())
        except (OSError, ValueError):
            return None
        if not isinstance(data, dict) or data.get("fingerprint") != print_:
            return None
        try:
            return CachedLayer(
                str(data["digest"]), int(data["size"]), str(data["diffId"]), str(data["mediaType"])
            )
        except (KeyError, TypeError, ValueError):
            return None

    def record(self, slot: str, print_: str, layer: CachedLayer) -> None:
        """Remember a layer result (best effort: a cache that cannot be written is no error)."""
        body = {
            "fingerprint": print_,
            "digest": layer.digest,
            "size": layer.size,
            "diffId": layer.diff_id,
            "mediaType": layer.media_type,
            "recorded": time.time(),
        }
        with contextlib.suppress(OSError):
            self.dir.mkdir(parents=True, exist_ok=True)
            atomic_write(self.dir / f"{slot}.json", json.dumps(body).encode())
            self._trim()

    def _trim(self) -> None:
        """Keep the cache bounded (contexts in temp directories would otherwise pile up)."""
        entries = [e for e in os.scandir(self.dir) if e.name.endswith(".json")]
        if len(entries) <= MAX_SLOTS:
            return
        entries.sort(key=lambda e: e.stat().st_mtime_ns)
        for entry in entries[: len(entries) - MAX_SLOTS]:
            with contextlib.suppress(OSError):
                os.unlink(entry.path)

    def forget(self, slot: str) -> None:
        """Drop a slot (used when its blob turned out to be missing)."""
        with contextlib.suppress(OSError):
            os.unlink(self.dir / f"{slot}.json")
