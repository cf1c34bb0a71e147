"""kit's local storage (``$KITOPS_HOME/storage``) as a content target, shared with the kit CLI.

Layout (kit v1.x, reference §4.6): one OCI image layout (``oci-layout``, oras-managed
``index.json``, ``blobs/sha256/<hex>``, ``ingest/``) plus, per repository, a
``<b64url(registry/repo)>-index.json`` (the repo's manifests) and ``-tags.json`` (tag → descriptor).
Blobs appear only complete and verified (temp file in ``ingest/`` + rename); every JSON file is
replaced atomically; writers serialise index updates with an fcntl lock, so concurrent packs work.
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import fcntl
import hashlib
import json
import os
import re
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any, BinaryIO

from kitflow.content.digest import CHUNK, VerifyingReader, check_digest, sha256_digest
from kitflow.errors import DigestMismatchError, KitflowError, NotFoundError
from kitflow.format.descriptor import MANIFEST_MEDIA_TYPES, OCI_INDEX, OCI_MANIFEST, Descriptor

OCI_LAYOUT_BYTES = b'{"imageLayoutVersion":"1.0.0"}'
REF_NAME_ANNOTATION = "org.opencontainers.image.ref.name"
LOCK_NAME = ".kitflow.lock"
GC_LOCK_NAME = ".kitflow-gc.lock"
_INDEX_SUFFIX = "-index.json"
_TAGS_SUFFIX = "-tags.json"
_REPO_INDEX_RE = re.compile(r"^([-A-Za-z0-9_-]*={0,3})-index\.json$")
_TMP_PREFIX = "kitflow-"


def kitops_home(home: str | os.PathLike[str] | None = None) -> Path:
    """Where kit keeps its data: ``home`` (``--config``), else ``$KITOPS_HOME``, else OS default.

    Linux default ``$XDG_DATA_HOME/kitops`` or ``~/.local/share/kitops``; macOS
    ``~/Library/Caches/kitops``; Windows ``%LOCALAPPDATA%\\kitops`` (as kit decides).
    """
    if home:
        return Path(home).expanduser().absolute()
    env = os.environ.get("KITOPS_HOME")
    if env:
        return Path(env).expanduser().absolute()
    if sys.platform == "darwin":
        return Path.home() / "Library" / "Caches" / "kitops"
    if sys.platform == "win32":
        local = os.environ.get("LOCALAPPDATA") or str(Path.home() / "AppData" / "Local")
        return Path(local) / "kitops"
    xdg = os.environ.get("XDG_DATA_HOME")
    base = Path(xdg) if xdg else Path.home() / ".local" / "share"
    return base / "kitops"


def repo_key(name: str) -> str:
    """The file-name key kit uses for a repository: base64url(``registry/repository``), padded."""
    return base64.urlsafe_b64encode(name.encode("utf-8")).decode("ascii")


def repo_from_key(key: str) -> str:
    """Inverse of :func:`repo_key`."""
    return base64.urlsafe_b64decode(key.encode("ascii")).decode("utf-8")


def _umask() -> int:
    current = os.umask(0)
    os.umask(current)
    return current


_FILE_MODE = 0o666 & ~_umask()


def atomic_write(path: Path, data: bytes) -> None:
    """Replace ``path`` with ``data``: readers see the old or the new file, never a partial one."""
    fd, tmp = tempfile.mkstemp(prefix=_TMP_PREFIX, suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
        os.chmod(tmp, _FILE_MODE)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


def _create_if_absent(path: Path, data: bytes) -> None:
    """Write ``path`` atomically unless it exists; never replaces another writer's file."""
    if path.exists():
        return
    fd, tmp = tempfile.mkstemp(prefix=_TMP_PREFIX, suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
        os.chmod(tmp, _FILE_MODE)
        with contextlib.suppress(FileExistsError):
            os.link(tmp, path)
    finally:
        with contextlib.suppress(OSError):
            os.unlink(tmp)


def _dumps(obj: Any) -> bytes:
    return json.dumps(obj, separators=(",", ":"), ensure_ascii=False).encode("utf-8")


def _read_json(path: Path) -> Any:
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        return None
    try:
        return json.loads(data)
    except ValueError as err:
        raise KitflowError(
            f"local storage file {path} is not valid JSON ({err}); fix or remove it"
        ) from err


def _plain(desc: Descriptor) -> Descriptor:
    """The descriptor without the ``ref.name`` annotation (kit strips it from per-repo indexes)."""
    if REF_NAME_ANNOTATION not in desc.annotations:
        return desc
    annotations = {k: v for k, v in desc.annotations.items() if k != REF_NAME_ANNOTATION}
    return Descriptor(desc.media_type, desc.digest, desc.size, annotations, desc.artifact_type)


class BlobWriter:
    """Streams one blob into ``storage/ingest`` while hashing it; ``commit`` renames it into place.

    Until ``commit`` succeeds nothing is visible under ``blobs/``; leaving the ``with`` block
    without committing (or a crash) leaves at most a temp file in ``ingest/``, which no reader uses.
    """

    def __init__(self, store: LocalStore) -> None:
        self._store = store
        store._ensure_layout()
        fd, name = tempfile.mkstemp(prefix=_TMP_PREFIX, suffix=".part", dir=store.ingest_dir)
        self._path = Path(name)
        self._fh: IO[bytes] | None = os.fdopen(fd, "wb", buffering=0)
        self._hash = hashlib.sha256()
        self.size = 0
        self._digest: str | None = None
        self._committed: Descriptor | None = None

    @property
    def path(self) -> Path:
        """The temp file being written (useful to re-read a finished layer before commit)."""
        return self._path

    def write(self, data: bytes | bytearray | memoryview) -> int:
        """Append bytes, hashing them on the way."""
        if self._fh is None:
            raise ValueError("blob writer is closed")
        self._hash.update(data)
        view = memoryview(data)
        while view:
            written = self._fh.write(view)
            if written is None:  # pragma: no cover - only for non-blocking files
                continue
            view = view[written:]
        self.size += len(data)
        return len(data)

    def writable(self) -> bool:
        return True

    def flush(self) -> None:
        """No buffering beyond the OS; present for file-like compatibility."""

    @property
    def digest(self) -> str:
        """``sha256:<hex>`` of everything written so far."""
        return "sha256:" + self._hash.hexdigest()

    def commit(
        self,
        media_type: str,
        annotations: dict[str, str] | None = None,
        *,
        expected: Descriptor | None = None,
    ) -> Descriptor:
        """Close, verify against ``expected`` (if given) and move into ``blobs/sha256``."""
        if self._committed is not None:
            return self._committed
        if self._fh is None:
            raise ValueError("blob writer was aborted")
        self._fh.close()
        self._fh = None
        digest = self.digest
        if expected is not None and (expected.digest != digest or expected.size != self.size):
            self.abort()
            raise DigestMismatchError(
                f"content hashes to {digest} ({self.size} bytes), expected {expected.digest} "
                f"({expected.size} bytes); not stored"
            )
        target = self._store.blob_path(digest)
        if target.exists():
            self.abort()
        else:
            os.chmod(self._path, _FILE_MODE)
            os.replace(self._path, target)
        self._committed = Descriptor(media_type, digest, self.size, dict(annotations or {}))
        return self._committed

    def abort(self) -> None:
        """Drop the partial content."""
        if self._fh is not None:
            self._fh.close()
            self._fh = None
        with contextlib.suppress(FileNotFoundError):
            self._path.unlink()

    def __enter__(self) -> BlobWriter:
        return self

    def __exit__(self, *exc: object) -> None:
        if self._committed is None:
            self.abort()


class LocalStore:
    """kit's storage directory: shared blobs, the oras ``index.json`` and per-repository indexes."""

    def __init__(self, home: str | os.PathLike[str] | None = None) -> None:
        self.home = kitops_home(home)
        self.root = self.home / "storage"
        self.blobs_dir = self.root / "blobs" / "sha256"
        self.ingest_dir = self.root / "ingest"
        self._layout_ready = False

    def __repr__(self) -> str:
        return f"LocalStore({str(self.home)!r})"

    # ----------------------------------------------------------------- layout and locking

    def _ensure_layout(self) -> None:
        if self._layout_ready:
            return
        self.blobs_dir.mkdir(parents=True, exist_ok=True)
        self.ingest_dir.mkdir(parents=True, exist_ok=True)
        # Created without the lock (so a caller holding it can still write blobs), but never
        # over an existing file: hard-linking a finished temp file fails if the name exists.
        _create_if_absent(self.root / "oci-layout", OCI_LAYOUT_BYTES)
        _create_if_absent(self.root / "index.json", _dumps(self._empty_oras_index()))
        self._layout_ready = True

    @staticmethod
    def _empty_oras_index() -> dict[str, Any]:
        return {"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": []}

    @contextlib.contextmanager
    def lock(self) -> Iterator[None]:
        """Exclusive inter-process lock (fcntl on ``storage/.kitflow.lock``) for index updates."""
        self.root.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.root / LOCK_NAME, os.O_RDWR | os.O_CREAT, 0o666)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            yield
        finally:
            fcntl.flock(fd, fcntl.LOCK_UN)
            os.close(fd)

    @contextlib.contextmanager
    def gc_lock(self, exclusive: bool = True) -> Iterator[None]:
        """Writers vs. garbage collection: pack/pull hold it shared (``writing()``) while their
        blobs are not yet referenced by a manifest; prune/remove sweeps hold it exclusively.

        Lock order: take ``gc_lock`` before ``lock`` (never the other way round).
        """
        self.root.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.root / GC_LOCK_NAME, os.O_RDWR | os.O_CREAT, 0o666)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX if exclusive else fcntl.LOCK_SH)
            yield
        finally:
            fcntl.flock(fd, fcntl.LOCK_UN)
            os.close(fd)

    def writing(self) -> contextlib.AbstractContextManager[None]:
        """Shared GC lock for a writer whose new blobs are not referenced yet (pack, pull)."""
        return self.gc_lock(exclusive=False)

    # ----------------------------------------------------------------- blobs

    def blob_path(self, digest: str) -> Path:
        """Where the blob with ``digest`` lives (whether or not it exists)."""
        return self.blobs_dir / check_digest(digest)

    def has_blob(self, digest: str) -> bool:
        """Whether the blob is stored (a stat, no read)."""
        return self.blob_path(digest).is_file()

    def open_blob(self, desc: Descriptor) -> VerifyingReader:
        """A verifying stream of a stored blob; NotFoundError if absent."""
        try:
            fh = open(self.blob_path(desc.digest), "rb")  # noqa: SIM115 - returned to caller
        except FileNotFoundError:
            raise NotFoundError(
                f"blob {desc.digest} not found in local storage {self.root}"
            ) from None
        return VerifyingReader(fh, desc.digest, desc.size, what=desc.media_type or "blob")

    def read_blob(self, desc: Descriptor) -> bytes:
        """A whole small blob (manifest, config), verified."""
        with self.open_blob(desc) as reader:
            chunks = []
            while True:
                data = reader.read(CHUNK)
                if not data:
                    break
                chunks.append(data)
        return b"".join(chunks)

    def ingest(self) -> BlobWriter:
        """A writer for a new blob; use as a context manager and call ``commit``."""
        return BlobWriter(self)

    def put_bytes(
        self, media_type: str, data: bytes, annotations: dict[str, str] | None = None
    ) -> Descriptor:
        """Store a small blob (manifest, config) atomically; returns its descriptor."""
        digest = sha256_digest(data)
        desc = Descriptor(media_type, digest, len(data), dict(annotations or {}))
        if self.has_blob(digest):
            return desc
        with self.ingest() as writer:
            writer.write(data)
            return writer.commit(media_type, annotations)

    def put_stream(self, desc: Descriptor, stream: BinaryIO) -> None:
        """Store a blob read from ``stream``, verified against ``desc``; skipped if present."""
        if self.has_blob(desc.digest):
            return
        with self.ingest() as writer:
            while True:
                data = stream.read(CHUNK * 4)
                if not data:
                    break
                writer.write(data)
            writer.commit(desc.media_type, expected=desc)

    def delete_blob(self, digest: str) -> bool:
        """Remove a blob file; returns whether it existed. Callers check references first."""
        try:
            self.blob_path(digest).unlink()
            return True
        except FileNotFoundError:
            return False

    def blob_digests(self) -> list[str]:
        """Every blob digest present under ``blobs/sha256``."""
        if not self.blobs_dir.is_dir():
            return []
        out = []
        for entry in os.scandir(self.blobs_dir):
            if entry.is_file() and re.fullmatch(r"[a-f0-9]{64}", entry.name):
                out.append("sha256:" + entry.name)
        return sorted(out)

    # ----------------------------------------------------------------- repository files

    def _index_path(self, repo: str) -> Path:
        return self.root / (repo_key(repo) + _INDEX_SUFFIX)

    def _tags_path(self, repo: str) -> Path:
        return self.root / (repo_key(repo) + _TAGS_SUFFIX)

    def repositories(self) -> list[str]:
        """Every ``registry/repository`` with a per-repo index file, sorted as kit sorts them."""
        if not self.root.is_dir():
            return []
        names = []
        for entry in os.scandir(self.root):
            match = _REPO_INDEX_RE.match(entry.name)
            if match and entry.is_file():
                try:
                    names.append(repo_from_key(match.group(1)))
                except (binascii.Error, UnicodeDecodeError, ValueError):
                    continue
        return sorted(names)

    def _repo_index(self, repo: str) -> dict[str, Any]:
        data = _read_json(self._index_path(repo))
        if not isinstance(data, dict):
            return {"schemaVersion": 2, "manifests": []}
        data.setdefault("manifests", [])
        if data["manifests"] is None:
            data["manifests"] = []
        return data

    def manifests(self, repo: str) -> list[Descriptor]:
        """The manifests the repository holds (tagged or not), in the order they were added."""
        return [Descriptor.from_json(d) for d in self._repo_index(repo)["manifests"]]

    def tags(self, repo: str) -> dict[str, Descriptor]:
        """Tag → manifest descriptor for one repository (sorted by tag)."""
        data = _read_json(self._tags_path(repo))
        if not isinstance(data, dict):
            return {}
        return {tag: Descriptor.from_json(d) for tag, d in sorted(data.items())}

    def tags_for(self, repo: str, digest: str) -> list[str]:
        """Sorted tags of ``repo`` that point at ``digest``."""
        return sorted(t for t, d in self.tags(repo).items() if d.digest == digest)

    def _save_repo(self, repo: str, index: dict[str, Any], tags: dict[str, Descriptor]) -> None:
        index_path, tags_path = self._index_path(repo), self._tags_path(repo)
        if tags:
            atomic_write(tags_path, _dumps({t: d.to_json() for t, d in sorted(tags.items())}))
        else:
            with contextlib.suppress(FileNotFoundError):
                tags_path.unlink()
        seen: set[str] = set()
        unique = []
        for entry in index["manifests"]:
            if entry["digest"] not in seen:
                seen.add(entry["digest"])
                unique.append(entry)
        index["manifests"] = unique
        if unique:
            atomic_write(index_path, _dumps(index))
        else:
            with contextlib.suppress(FileNotFoundError):
                index_path.unlink()

    # ----------------------------------------------------------------- oras index.json

    def _oras_index(self) -> dict[str, Any]:
        data = _read_json(self.root / "index.json")
        if not isinstance(data, dict):
            return self._empty_oras_index()
        if not data.get("manifests"):
            data["manifests"] = []
        return data

    def _oras_add(self, desc: Descriptor) -> None:
        index = self._oras_index()
        if any(m.get("digest") == desc.digest for m in index["manifests"]):
            return
        index["manifests"].append(_plain(desc).to_json())
        atomic_write(self.root / "index.json", _dumps(index))

    def _oras_remove(self, digest: str) -> None:
        index = self._oras_index()
        kept = [m for m in index["manifests"] if m.get("digest") != digest]
        if len(kept) != len(index["manifests"]):
            index["manifests"] = kept
            atomic_write(self.root / "index.json", _dumps(index))

    def oras_manifests(self) -> list[Descriptor]:
        """Manifests listed in the shared ``index.json`` (kept for oras/kit garbage collection)."""
        return [Descriptor.from_json(d) for d in self._oras_index()["manifests"]]

    # ----------------------------------------------------------------- repository updates

    def add_manifest(self, repo: str, desc: Descriptor, tag: str | None = None) -> None:
        """Record a stored manifest in ``repo`` (and in ``index.json``), optionally tagging it."""
        if not desc.is_manifest:
            raise KitflowError(f"{desc.digest} has media type {desc.media_type!r}, not a manifest")
        if not self.has_blob(desc.digest):
            raise NotFoundError(f"manifest {desc.digest} is not in local storage")
        plain = _plain(desc)
        self._ensure_layout()
        with self.lock():
            self._oras_add(plain)
            index = self._repo_index(repo)
            if not any(m.get("digest") == plain.digest for m in index["manifests"]):
                index["manifests"].append(plain.to_json())
            tags = self.tags(repo)
            if tag:
                tags[tag] = plain
            self._save_repo(repo, index, tags)

    def tag(self, repo: str, desc: Descriptor, tag: str) -> None:
        """Point ``tag`` of ``repo`` at ``desc`` (added to the repo if it is not there yet)."""
        self.add_manifest(repo, desc, tag)

    def untag(self, repo: str, tag: str) -> Descriptor:
        """Remove one tag; the manifest stays in the repository. NotFoundError if no such tag."""
        with self.lock():
            tags = self.tags(repo)
            if tag not in tags:
                raise NotFoundError(f"tag {tag!r} not found in {repo}")
            desc = tags.pop(tag)
            self._save_repo(repo, self._repo_index(repo), tags)
        return desc

    def remove_manifest(self, repo: str, digest: str) -> bool:
        """Drop a manifest and all its tags from ``repo``; the manifest blob (and its
        ``index.json`` entry) go too when no other repository refers to it.

        Returns whether the manifest blob was deleted. Layers and configs are left for ``prune``.
        """
        with self.lock():
            index = self._repo_index(repo)
            before = len(index["manifests"])
            index["manifests"] = [m for m in index["manifests"] if m.get("digest") != digest]
            tags = {t: d for t, d in self.tags(repo).items() if d.digest != digest}
            if before == len(index["manifests"]):
                raise NotFoundError(f"manifest {digest} not found in {repo}")
            self._save_repo(repo, index, tags)
            still_used = any(
                m.digest == digest for other in self.repositories() for m in self.manifests(other)
            )
            if still_used:
                return False
            self._oras_remove(digest)
            return self.delete_blob(digest)

    def all_referenced_blobs(self) -> set[str]:
        """Digests reachable from any repository or ``index.json``: manifests, their configs,
        layers and (for indexes) child manifests. Used by ``prune``; missing blobs are skipped."""
        roots: list[Descriptor] = list(self.oras_manifests())
        for repo in self.repositories():
            roots.extend(self.manifests(repo))
            roots.extend(self.tags(repo).values())
        seen: set[str] = set()
        stack = roots
        while stack:
            desc = stack.pop()
            if desc.digest in seen:
                continue
            seen.add(desc.digest)
            if desc.media_type not in MANIFEST_MEDIA_TYPES or not self.has_blob(desc.digest):
                continue
            try:
                obj = json.loads(self.read_blob(desc))
            except (ValueError, DigestMismatchError):
                continue
            if isinstance(obj.get("config"), dict):
                seen.add(str(obj["config"].get("digest")))
            for child in (obj.get("layers") or []) + (obj.get("blobs") or []):
                seen.add(str(child.get("digest")))
            for child in obj.get("manifests") or []:
                stack.append(Descriptor.from_json(child))
            if isinstance(obj.get("subject"), dict):
                seen.add(str(obj["subject"].get("digest")))
        return seen

    def find_manifest(self, digest: str) -> tuple[str, Descriptor] | None:
        """The first repository (sorted) holding the manifest ``digest``, with its descriptor."""
        for repo in self.repositories():
            for desc in self.manifests(repo):
                if desc.digest == digest:
                    return repo, desc
        return None

    def repo(self, name: str) -> LocalRepository:
        """A :class:`~kitflow.content.target.Target` view of one repository (``registry/repo``)."""
        return LocalRepository(self, name)


class LocalRepository:
    """One repository of the local store as a ``Target``: tags and manifests are per repository,
    blobs are shared by all repositories (as in kit's ``localRepo``)."""

    def __init__(self, store: LocalStore, name: str) -> None:
        self.store = store
        self.name = name

    def __repr__(self) -> str:
        return f"LocalRepository({self.name!r}, home={str(self.store.home)!r})"

    def resolve(self, reference: str) -> Descriptor:
        """A tag or ``sha256:`` digest → the manifest descriptor held by this repository."""
        if reference.startswith("sha256:"):
            for desc in self.store.manifests(self.name):
                if desc.digest == reference:
                    return desc
        else:
            found = self.store.tags(self.name).get(reference)
            if found is not None:
                return found
        raise NotFoundError(
            f"{self.name}@{reference}: not found in local storage"
            if reference.startswith("sha256:")
            else f"{self.name}:{reference}: not found in local storage"
        )

    def exists(self, desc: Descriptor) -> bool:
        """Manifests: listed in this repository; other blobs: present in the shared store."""
        if desc.media_type == OCI_MANIFEST:
            return any(m.digest == desc.digest for m in self.store.manifests(self.name)) and (
                self.store.has_blob(desc.digest)
            )
        return self.store.has_blob(desc.digest)

    @contextlib.contextmanager
    def fetch(self, desc: Descriptor) -> Iterator[BinaryIO]:
        """A verifying stream of the blob (raises DigestMismatchError at EOF if corrupted)."""
        reader = self.store.open_blob(desc)
        try:
            yield reader  # type: ignore[misc]
        finally:
            reader.close()

    def fetch_bytes(self, desc: Descriptor) -> bytes:
        """A small blob, verified."""
        return self.store.read_blob(desc)

    def push(self, desc: Descriptor, stream: BinaryIO) -> None:
        """Store a blob (verified); a manifest is also added to this repository's index."""
        self.store.put_stream(desc, stream)
        if desc.is_manifest:
            self.store.add_manifest(self.name, desc)

    def push_bytes(self, desc: Descriptor, data: bytes) -> None:
        """Store small content after checking it against ``desc``."""
        actual = sha256_digest(data)
        if actual != desc.digest or len(data) != desc.size:
            raise DigestMismatchError(
                f"content hashes to {actual} ({len(data)} bytes), expected {desc.digest} "
                f"({desc.size} bytes); not stored"
            )
        self.store.put_bytes(desc.media_type, data)
        if desc.is_manifest:
            self.store.add_manifest(self.name, desc)

    def tag(self, desc: Descriptor, reference: str) -> None:
        """Point tag ``reference`` at manifest ``desc`` (which must be stored)."""
        if reference.startswith("sha256:"):
            if reference != desc.digest:
                raise KitflowError(f"cannot tag {desc.digest} with digest {reference}")
            self.store.add_manifest(self.name, desc)
            return
        self.store.tag(self.name, desc, reference)

    def untag(self, reference: str) -> Descriptor:
        """Remove a tag from this repository."""
        return self.store.untag(self.name, reference)

    def delete(self, desc: Descriptor) -> bool:
        """Remove the manifest and its tags from this repository (blob too if unreferenced)."""
        return self.store.remove_manifest(self.name, desc.digest)

    def tags(self) -> dict[str, Descriptor]:
        """This repository's tags."""
        return self.store.tags(self.name)

    def manifests(self) -> list[Descriptor]:
        """This repository's manifests."""
        return self.store.manifests(self.name)
