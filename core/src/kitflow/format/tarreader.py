"""Safe, streaming extraction of ModelKit layer blobs (tar or raw; none, gzip or zstd).

Every layer is first written into a staging directory inside the unpack directory while the
blob is hashed; only when the whole blob verified and every entry passed the safety checks are
the staged files renamed into place. A hostile or corrupt layer therefore changes nothing.
"""

from __future__ import annotations

import contextlib
import gzip
import hashlib
import io
import os
import shutil
import stat
import tarfile
import tempfile
import zlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import BinaryIO

from kitflow.errors import DigestMismatchError, KitflowError

CHUNK = 1024 * 1024
COMPRESSIONS = ("none", "gzip", "gzip-fastest", "zstd")
_STAGING_PREFIX = ".kitflow-unpack-"


def _umask() -> int:
    current = os.umask(0)
    os.umask(current)
    return current


ProgressCallback = Callable[[int], None]


class UnsafeArchiveError(KitflowError):
    """A layer tried to write outside the unpack directory or held a forbidden entry type."""


@dataclass
class ExtractStats:
    """What one layer extraction wrote (skipped = files left alone by ``ignore_existing``)."""

    files: int = 0
    directories: int = 0
    bytes_written: int = 0
    skipped: int = 0
    paths: list[str] = field(default_factory=list)

    def add(self, other: ExtractStats) -> None:
        """Accumulate another layer's figures into this one."""
        self.files += other.files
        self.directories += other.directories
        self.bytes_written += other.bytes_written
        self.skipped += other.skipped
        self.paths.extend(other.paths)


class HashingReader(io.RawIOBase):
    """Counts and hashes the compressed bytes of a blob; ``verify()`` checks digest and size.

    Reading past the promised size raises at once, so a hostile registry cannot stream forever.
    """

    def __init__(
        self,
        stream: BinaryIO,
        digest: str | None = None,
        size: int | None = None,
        progress: ProgressCallback | None = None,
    ) -> None:
        super().__init__()
        self._stream = stream
        self._digest = digest
        self._size = size
        self._progress = progress
        self._hash = hashlib.sha256()
        self.count = 0

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: memoryview | bytearray) -> int:  # type: ignore[override]
        data = self._stream.read(len(buffer))
        if not data:
            return 0
        n = len(data)
        buffer[:n] = data
        self.count += n
        if self._size is not None and self.count > self._size:
            raise DigestMismatchError(
                f"blob {self._digest} is larger than its descriptor says ({self._size} bytes)"
            )
        self._hash.update(data)
        if self._progress is not None:
            self._progress(n)
        return n

    def drain(self) -> None:
        """Read (and hash) whatever the consumer left unread, up to EOF."""
        buf = bytearray(CHUNK)
        while self.readinto(buf):
            pass

    def verify(self) -> None:
        """Raise DigestMismatchError unless exactly the promised bytes went through."""
        if self._size is not None and self.count != self._size:
            raise DigestMismatchError(
                f"blob {self._digest}: got {self.count} bytes, descriptor says {self._size}; "
                "the blob is truncated or corrupt"
            )
        if self._digest is not None:
            actual = "sha256:" + self._hash.hexdigest()
            if actual != self._digest:
                raise DigestMismatchError(
                    f"blob content hashes to {actual}, expected {self._digest}; "
                    "the blob is corrupt (run 'kitflow verify' or pull it again)"
                )


@contextlib.contextmanager
def decompressed(raw: BinaryIO, compression: str) -> Iterator[BinaryIO]:
    """A stream of the uncompressed bytes of ``raw`` for kit's compression names."""
    if compression in ("none", ""):
        yield raw
    elif compression in ("gzip", "gzip-fastest"):
        with gzip.GzipFile(fileobj=raw, mode="rb") as gz:
            yield gz  # type: ignore[misc]
    elif compression == "zstd":
        import zstandard

        reader = zstandard.ZstdDecompressor().stream_reader(raw, closefd=False)
        try:
            yield reader
        finally:
            reader.close()  # type: ignore[no-untyped-call]
    else:
        raise KitflowError(f"unsupported layer compression {compression!r}")


def clean_relpath(name: str, what: str = "path") -> str:
    """Normalise a relative, slash-separated path; refuse absolute paths and ``..`` components.

    Returns "" for the directory itself ("." or "./").
    """
    if "\x00" in name:
        raise UnsafeArchiveError(f"illegal file path: {name!r}: contains a NUL byte")
    if name.startswith("/") or name.startswith("\\") or (len(name) > 1 and name[1] == ":"):
        raise UnsafeArchiveError(f"illegal file path: {name}: absolute paths are not supported")
    parts = [p for p in name.replace("\\", "/").split("/") if p not in ("", ".")]
    if ".." in parts:
        raise UnsafeArchiveError(
            f"illegal file path: {name}: {what} must stay within the unpack directory"
        )
    return "/".join(parts)


def _within(path: str, base: str) -> bool:
    return path == base or path.startswith(base + "/")


@dataclass
class _Planned:
    rel: str
    is_dir: bool
    mode: int
    staged: str | None = None


class _Extraction:
    """State of one layer extraction: checks entries against the destination and stages them."""

    def __init__(self, root: Path, *, overwrite: bool, ignore_existing: bool) -> None:
        root.mkdir(parents=True, exist_ok=True)
        self.root = os.path.realpath(root)
        self.overwrite = overwrite
        self.ignore_existing = ignore_existing
        self.staging = tempfile.mkdtemp(prefix=_STAGING_PREFIX, dir=self.root)
        self.plan: list[_Planned] = []
        self.planned: dict[str, _Planned] = {}
        self.safe_dirs: set[str] = {""}
        self.stats = ExtractStats()
        self.umask = _umask()
        self._n = 0

    # -- checks -------------------------------------------------------------------------------

    def _abs(self, rel: str) -> str:
        return os.path.join(self.root, rel) if rel else self.root

    def _check_parents(self, rel: str) -> None:
        """Every ancestor of ``rel`` must be (or become) a directory inside the root."""
        parts = rel.split("/")[:-1]
        current = ""
        for part in parts:
            current = f"{current}/{part}" if current else part
            if current in self.safe_dirs:
                continue
            planned = self.planned.get(current)
            if planned is not None:
                if not planned.is_dir:
                    raise KitflowError(f"path '{current}' already exists and is not a directory")
                self.safe_dirs.add(current)
                continue
            self._check_existing_dir(current)
            self.safe_dirs.add(current)

    def _check_existing_dir(self, rel: str) -> None:
        """An existing path used as a directory must be a directory that resolves inside root."""
        path = self._abs(rel)
        try:
            st = os.lstat(path)
        except FileNotFoundError:
            return
        if stat.S_ISLNK(st.st_mode):
            real = os.path.realpath(path)
            if not _within(real, self.root):
                raise UnsafeArchiveError(
                    f"illegal file path: {rel}: an existing symlink leads outside "
                    "the unpack directory"
                )
            if not os.path.isdir(real):
                raise KitflowError(f"path '{rel}' already exists and is not a directory")
        elif not stat.S_ISDIR(st.st_mode):
            raise KitflowError(f"path '{rel}' already exists and is not a directory")

    def check_layer_bounds(self, rel: str, is_dir: bool, layer_path: str | None) -> None:
        """Entries must be the layer path, inside it, or (directories only) its ancestors."""
        if layer_path is None or layer_path == "":
            return
        if _within(rel, layer_path):
            return
        if is_dir and (rel == "" or layer_path.startswith(rel + "/")):
            return
        raise UnsafeArchiveError(
            f"entry '{rel}' is outside the layer's declared path '{layer_path}'; refusing to unpack"
        )

    # -- entries ------------------------------------------------------------------------------

    def add_dir(self, rel: str, mode: int) -> None:
        """Plan a directory (no-op if it exists already)."""
        if rel == "":
            return
        self._check_parents(rel)
        planned = self.planned.get(rel)
        if planned is not None:
            if not planned.is_dir:
                raise KitflowError(f"path '{rel}' already exists and is not a directory")
            return
        self._check_existing_dir(rel)
        entry = _Planned(rel, True, mode & 0o7777)
        self.plan.append(entry)
        self.planned[rel] = entry
        self.safe_dirs.add(rel)

    def add_file(self, rel: str, mode: int, data: BinaryIO, size: int | None) -> None:
        """Check a file entry against kit's overwrite rules and stage its content."""
        if rel == "":
            raise KitflowError("path '.' already exists and is not a regular file")
        self._check_parents(rel)
        previous = self.planned.get(rel)
        exists = previous is not None or os.path.lexists(self._abs(rel))
        if exists:
            if self.ignore_existing:
                self.stats.skipped += 1
                return
            if not self.overwrite:
                raise KitflowError(
                    f"path '{rel}' already exists (use -o to overwrite or -i to keep it)"
                )
            if previous is not None:
                if previous.is_dir:
                    raise KitflowError(f"path '{rel}' already exists and is not a regular file")
            else:
                st = os.lstat(self._abs(rel))
                if not stat.S_ISREG(st.st_mode):
                    raise KitflowError(f"path '{rel}' already exists and is not a regular file")
        self._n += 1
        staged = os.path.join(self.staging, str(self._n))
        fd = os.open(staged, os.O_WRONLY | os.O_CREAT | os.O_EXCL, (mode & 0o7777) | 0o200)
        written = 0
        with os.fdopen(fd, "wb") as out:
            while True:
                chunk = data.read(CHUNK)
                if not chunk:
                    break
                out.write(chunk)
                written += len(chunk)
        if size is not None and written != size:
            raise DigestMismatchError(f"could not unpack file {rel}: archive is truncated")
        if previous is not None and previous.staged is not None:
            os.unlink(previous.staged)
            previous.staged = staged
            previous.mode = mode & 0o7777
        else:
            entry = _Planned(rel, False, mode & 0o7777, staged)
            self.plan.append(entry)
            self.planned[rel] = entry

    # -- commit / abort -----------------------------------------------------------------------

    def commit(self) -> ExtractStats:
        """Move every staged entry into place (renames within one filesystem)."""
        for entry in self.plan:
            dest = self._abs(entry.rel)
            if entry.is_dir:
                if not os.path.isdir(dest):
                    os.makedirs(os.path.dirname(dest), exist_ok=True)
                    os.mkdir(dest, entry.mode)
                    self.stats.directories += 1
                continue
            assert entry.staged is not None
            os.makedirs(os.path.dirname(dest), exist_ok=True)
            if os.path.lexists(dest) and not self.overwrite:
                if self.ignore_existing:
                    self.stats.skipped += 1
                    continue
                raise KitflowError(f"path '{entry.rel}' already exists")
            os.chmod(entry.staged, entry.mode & ~self.umask)  # as an open(2) with this mode
            try:
                os.replace(entry.staged, dest)
            except OSError as exc:
                if exc.errno != 18:  # EXDEV: destination is another filesystem
                    raise
                shutil.move(entry.staged, dest)
            self.stats.files += 1
            self.stats.bytes_written += os.stat(dest).st_size
            self.stats.paths.append(entry.rel)
        return self.stats

    def cleanup(self) -> None:
        """Remove the staging directory (and anything left in it)."""
        shutil.rmtree(self.staging, ignore_errors=True)


_TAR_KIND = {
    tarfile.SYMTYPE: "a symbolic link",
    tarfile.LNKTYPE: "a hard link",
    tarfile.CHRTYPE: "a character device",
    tarfile.BLKTYPE: "a block device",
    tarfile.FIFOTYPE: "a FIFO",
}


def _entry_kind(member: tarfile.TarInfo) -> str:
    return _TAR_KIND.get(member.type, f"of type {member.type!r}")


def extract_tar(
    stream: BinaryIO,
    root: Path | str,
    *,
    compression: str = "none",
    layer_path: str | None = None,
    prefix: str = "",
    digest: str | None = None,
    size: int | None = None,
    overwrite: bool = False,
    ignore_existing: bool = False,
    progress: ProgressCallback | None = None,
) -> ExtractStats:
    """Extract a tar layer read from ``stream`` into ``root``, safely and all-or-nothing.

    ``layer_path`` (relative to ``root``) bounds what the layer may contain; ``prefix`` is
    prepended to entry names (legacy layers whose names are relative to the path's parent);
    ``digest``/``size`` of the blob are verified before anything is moved into place.
    """
    root = Path(root)
    bound = clean_relpath(layer_path, "layer path") if layer_path is not None else None
    base = clean_relpath(prefix, "layer path") if prefix else ""
    job = _Extraction(root, overwrite=overwrite, ignore_existing=ignore_existing)
    return _extract_verified(
        stream,
        job,
        compression,
        digest,
        size,
        progress,
        lambda plain: _read_archive(plain, job, base, bound),
    )


def _read_archive(plain: BinaryIO, job: _Extraction, base: str, bound: str | None) -> None:
    with tarfile.open(fileobj=plain, mode="r|", bufsize=CHUNK) as archive:
        for member in archive:
            rel = clean_relpath(member.name, "archive entries")
            if base:
                rel = f"{base}/{rel}" if rel else base
            if member.isdir():
                job.check_layer_bounds(rel, True, bound)
                job.add_dir(rel, member.mode)
            elif member.isreg():
                job.check_layer_bounds(rel, False, bound)
                data = archive.extractfile(member)
                assert data is not None
                job.add_file(rel, member.mode, data, member.size)  # type: ignore[arg-type]
            else:
                raise UnsafeArchiveError(
                    f"unrecognized type in archive: '{member.name}' is {_entry_kind(member)}; "
                    "ModelKit layers may only hold regular files and directories"
                )


def _decode_errors() -> tuple[type[BaseException], ...]:
    errors: list[type[BaseException]] = [tarfile.TarError, EOFError, zlib.error, gzip.BadGzipFile]
    try:
        import zstandard

        errors.append(zstandard.ZstdError)
    except ImportError:  # pragma: no cover - zstandard is a dependency
        pass
    return tuple(errors)


_DECODE_ERRORS = _decode_errors()


def _extract_verified(
    stream: BinaryIO,
    job: _Extraction,
    compression: str,
    digest: str | None,
    size: int | None,
    progress: ProgressCallback | None,
    write: Callable[[BinaryIO], object],
) -> ExtractStats:
    """Hash ``stream`` while ``write`` extracts its decompressed bytes into ``job``; verify the
    whole blob (digest, size) and only then move the files into place (cleaned up either way)."""
    try:
        reader = HashingReader(stream, digest, size, progress)
        buffered = io.BufferedReader(reader, CHUNK)
        try:
            with decompressed(buffered, compression) as plain:
                write(plain)
        except KitflowError:
            raise
        except _DECODE_ERRORS as exc:
            _raise_damaged(reader, exc, digest)
        reader.drain()
        reader.verify()
        return job.commit()
    finally:
        job.cleanup()


def _raise_damaged(reader: HashingReader, exc: BaseException, digest: str | None) -> None:
    """Report a corrupt blob as a digest mismatch when it is one, else as a damaged archive."""
    reader.drain()
    reader.verify()
    raise KitflowError(
        f"layer {digest or ''} is not a valid archive: {exc}".replace("  ", " ")
    ) from exc


def extract_raw(
    stream: BinaryIO,
    root: Path | str,
    filepath: str,
    *,
    compression: str = "none",
    mode: int = 0o644,
    digest: str | None = None,
    size: int | None = None,
    overwrite: bool = False,
    ignore_existing: bool = False,
    progress: ProgressCallback | None = None,
) -> ExtractStats:
    """Write a raw layer (one file's bytes) to ``root/filepath``, verified, atomically."""
    rel = clean_relpath(filepath, "layer path")
    if not rel:
        raise UnsafeArchiveError(f"illegal file path: {filepath!r}: a raw layer needs a file name")
    job = _Extraction(Path(root), overwrite=overwrite, ignore_existing=ignore_existing)
    return _extract_verified(
        stream,
        job,
        compression,
        digest,
        size,
        progress,
        lambda plain: job.add_file(rel, mode, plain, None),
    )
