"""Deterministic tar layers with the exact bytes ``kit pack`` writes (reference §3.2).

Two halves: :func:`walk_layer` picks the entries of one layer the way kit's ``filepath.Walk`` +
``sameDirTree`` + ignore rules do, and :class:`TarWriter` encodes them the way Go's
``archive/tar`` does after kit's header sanitising (mtime 0, uid 1000, gid 0, no names, USTAR
when it fits, else PAX, two zero blocks at the end). File contents stream through in chunks.
"""

from __future__ import annotations

import logging
import os
import stat
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO, Protocol

from kitflow.errors import KitflowError
from kitflow.format.ignore import IgnorePaths, go_clean

log = logging.getLogger("kitflow.pack")

BLOCK = 512
CHUNK = 1 << 20
KIT_UID = 1000
KIT_GID = 0
_NAME_SIZE = 100
_PREFIX_SIZE = 155
_MAX_OCTAL_SIZE = 8**11  # size field: 11 octal digits + NUL
_ZERO_BLOCK = bytes(BLOCK)
TYPE_REG = b"0"
TYPE_DIR = b"5"
TYPE_PAX = b"x"


class Sink(Protocol):
    """Anything bytes can be written to (a hashing blob writer, a compressor, a file)."""

    def write(self, data: bytes | bytearray | memoryview, /) -> object: ...


# --------------------------------------------------------------------------- header encoding


def _octal(value: int, width: int) -> bytes:
    """Go ``formatOctal``: zero-padded octal digits plus a NUL; 0 when it does not fit."""
    if value < 0 or value >= 8 ** (width - 1):
        value = 0
    return format(value, "o").rjust(width - 1, "0").encode("ascii") + b"\0"


def _field(value: bytes, width: int) -> bytes:
    """Go ``formatString``: copy, truncate, NUL-terminate when shorter than the field."""
    out = bytearray(value[:width])
    if len(value) > width and out[width - 1] == ord("/"):
        # Go: a truncated name must not look like a directory; NUL after the last non-slash
        out[len(value[: width - 1].rstrip(b"/"))] = 0
    return bytes(out) + b"\0" * (width - len(out))


def _to_ascii(name: bytes) -> bytes:
    return bytes(b for b in name if 0 < b < 0x80)


def _is_ascii(name: bytes) -> bool:
    return all(b < 0x80 for b in name)


def split_ustar_path(name: bytes) -> tuple[bytes, bytes] | None:
    """Go ``splitUSTARPath``: a prefix/suffix split for names longer than 100 bytes, or None."""
    length = len(name)
    if length <= _NAME_SIZE or not _is_ascii(name):
        return None
    if length > _PREFIX_SIZE + 1:
        length = _PREFIX_SIZE + 1
    elif name[length - 1 : length] == b"/":
        length -= 1
    i = name.rfind(b"/", 0, length)
    suffix_len = len(name) - i - 1
    if i <= 0 or suffix_len > _NAME_SIZE or suffix_len == 0 or i > _PREFIX_SIZE:
        return None
    return name[:i], name[i + 1 :]


def _block(
    name: bytes,
    mode: int,
    uid: int,
    gid: int,
    size: int,
    typeflag: bytes,
    prefix: bytes = b"",
    devnums: bool = True,
) -> bytes:
    """One 512-byte header block (USTAR/PAX magic) with Go's checksum encoding."""
    dev = _octal(0, 8) if devnums else b"\0" * 8
    parts = [
        _field(name, 100),
        _octal(mode, 8),
        _octal(uid, 8),
        _octal(gid, 8),
        _octal(size, 12),
        _octal(0, 12),  # mtime: kit zeroes it
        b" " * 8,  # checksum placeholder
        typeflag,
        b"\0" * 100,  # linkname
        b"ustar\0",
        b"00",
        b"\0" * 32,  # uname
        b"\0" * 32,  # gname
        dev,
        dev,
        _field(prefix, 155),
        b"\0" * 12,
    ]
    header = bytearray(b"".join(parts))
    checksum = sum(header)
    header[148:156] = _octal(checksum, 7) + b" "
    return bytes(header)


def _pax_record(key: str, value: bytes) -> bytes:
    """Go ``formatPAXRecord``: ``"<len> key=value\\n"`` where len counts itself."""
    body = b" " + key.encode("ascii") + b"=" + value + b"\n"
    size = len(body) + len(str(len(body)))
    record = str(size).encode("ascii") + body
    if len(record) != size:
        size = len(record)
        record = str(size).encode("ascii") + body
    return record


def _pad(size: int) -> int:
    return -size % BLOCK


def tar_header(name: str | bytes, mode: int, size: int, typeflag: bytes) -> bytes:
    """The header bytes Go's tar.Writer emits for one kit-sanitised entry (PAX block included)."""
    raw = os.fsencode(name) if isinstance(name, str) else name
    pax: dict[str, bytes] = {}
    ustar = True
    if not _is_ascii(raw) or len(raw) > _NAME_SIZE:
        if split_ustar_path(raw) is None:
            ustar = False
        pax["path"] = raw
    if size >= _MAX_OCTAL_SIZE:
        ustar = False
        pax["size"] = str(size).encode("ascii")
    if ustar:
        split = split_ustar_path(raw)
        prefix, short = split if split is not None else (b"", raw)
        return _block(short, mode, KIT_UID, KIT_GID, size, typeflag, prefix)
    data = b"".join(_pax_record(k, pax[k]) for k in sorted(pax))
    directory, _, base = raw.rpartition(b"/")
    joined = (directory + b"/" if directory else b"") + b"PaxHeaders.0/" + base
    pax_name = os.fsencode(go_clean(os.fsdecode(joined)))
    pax_name = _to_ascii(pax_name)[:_NAME_SIZE].rstrip(b"/")
    out = _block(pax_name, 0, 0, 0, len(data), TYPE_PAX, devnums=False)
    out += data + bytes(_pad(len(data)))
    out += _block(_to_ascii(raw), mode, KIT_UID, KIT_GID, size, typeflag)
    return out


# --------------------------------------------------------------------------- writer


class TarWriter:
    """Writes a kit-identical tar stream to ``sink``; file data is copied in ``chunk`` pieces."""

    def __init__(self, sink: Sink, chunk: int = CHUNK) -> None:
        self._sink = sink
        self._buf = bytearray(chunk)
        self.bytes_written = 0
        self.content_bytes = 0
        self._closed = False

    def _emit(self, data: bytes | bytearray | memoryview) -> None:
        self._sink.write(data)
        self.bytes_written += len(data)

    def add_directory(self, name: str | bytes, mode: int) -> None:
        """A directory entry (name without trailing slash, as kit writes it)."""
        self._emit(tar_header(name, mode, 0, TYPE_DIR))

    def add_file(
        self,
        name: str | bytes,
        mode: int,
        size: int,
        source: BinaryIO | str | os.PathLike[str],
        on_bytes: Callable[[int], None] | None = None,
    ) -> None:
        """A regular file of exactly ``size`` bytes streamed from ``source`` (path or stream)."""
        self._emit(tar_header(name, mode, size, TYPE_REG))
        if isinstance(source, str | os.PathLike):
            with open(source, "rb", buffering=0) as fh:
                self._copy(fh, size, name, on_bytes)
        else:
            self._copy(source, size, name, on_bytes)
        pad = _pad(size)
        if pad:
            self._emit(_ZERO_BLOCK[:pad])

    def _copy(
        self, fh: BinaryIO, size: int, name: str | bytes, on_bytes: Callable[[int], None] | None
    ) -> None:
        view = memoryview(self._buf)
        remaining = size
        readinto = getattr(fh, "readinto", None)
        while remaining:
            want = min(remaining, len(self._buf))
            if readinto is not None:
                got = readinto(view[:want])
                data: memoryview | bytes = view[:got] if got else b""
            else:
                data = fh.read(want)
                got = len(data)
            if not got:
                raise KitflowError(
                    f"file {os.fsdecode(name)} shrank while packing ({size - remaining} of "
                    f"{size} bytes read); pack again once it stops changing"
                )
            self._emit(data)
            remaining -= got
            self.content_bytes += got
            if on_bytes is not None:
                on_bytes(got)
        if fh.read(1):
            raise KitflowError(
                f"file {os.fsdecode(name)} grew while packing (more than {size} bytes); "
                "pack again once it stops changing"
            )

    def close(self) -> None:
        """End of archive: exactly two zero blocks (no padding to a 10 KiB record)."""
        if not self._closed:
            self._emit(_ZERO_BLOCK * 2)
            self._closed = True


# --------------------------------------------------------------------------- layer walk


@dataclass(frozen=True)
class WalkEntry:
    """One tar entry of a layer with the stat facts the pack cache keys on."""

    name: str  # relative to the context, slash-separated, no "./"
    path: str  # absolute path on disk
    is_dir: bool
    mode: int  # permission bits plus setuid/setgid/sticky (tar header mode)
    size: int
    mtime_ns: int
    ctime_ns: int
    inode: int
    device: int


def tar_mode(st_mode: int) -> int:
    """The header mode Go's FileInfoHeader gives: permission bits plus the special bits."""
    mode = stat.S_IMODE(st_mode) & 0o777
    if st_mode & stat.S_ISUID:
        mode |= 0o4000
    if st_mode & stat.S_ISGID:
        mode |= 0o2000
    if st_mode & stat.S_ISVTX:
        mode |= 0o1000
    return mode


def go_rel(base: str, target: str) -> str | None:
    """Go ``filepath.Rel`` for two relative slash paths; None where Go returns an error."""
    base, target = go_clean(base), go_clean(target)
    if base == target:
        return "."
    if base == ".":
        base = ""
    if base.startswith("/") != target.startswith("/"):
        return None
    b_parts = [p for p in base.split("/") if p] if base else []
    t_parts = [p for p in target.split("/") if p] if target != "." else []
    i = 0
    while i < len(b_parts) and i < len(t_parts) and b_parts[i] == t_parts[i]:
        i += 1
    if i < len(b_parts) and b_parts[i] == "..":
        return None
    ups = [".."] * (len(b_parts) - i)
    rest = t_parts[i:]
    return "/".join(ups + rest) or "."


def same_dir_tree(a: str, b: str) -> bool:
    """kit's ``sameDirTree``: false only if both relative paths contain the substring ``..``."""
    a_to_b, b_to_a = go_rel(a, b), go_rel(b, a)
    if a_to_b is None or b_to_a is None:
        log.warning("Cannot compare directories %s and %s, skipping path", a, b)
        return False
    return not (".." in a_to_b and ".." in b_to_a)


def _entry(name: str, path: str, st: os.stat_result) -> WalkEntry:
    is_dir = stat.S_ISDIR(st.st_mode)
    return WalkEntry(
        name=name,
        path=path,
        is_dir=is_dir,
        mode=tar_mode(st.st_mode),
        size=0 if is_dir else st.st_size,
        mtime_ns=st.st_mtime_ns,
        ctime_ns=st.st_ctime_ns,
        inode=st.st_ino,
        device=st.st_dev,
    )


def walk_layer(context: str | Path, layer_path: str, ignore: IgnorePaths) -> Iterator[WalkEntry]:
    """The entries of the layer for ``layer_path``, in kit's order (byte-sorted pre-order walk
    from the context root, ancestors of the layer path included, others' paths excluded).

    Symlinks and special files are skipped with a warning (kit never follows them).
    """
    root = os.path.abspath(context)
    base = go_clean(layer_path)
    if not os.path.exists(os.path.join(root, base)):
        raise KitflowError(f"path {base} does not exist")
    has_exclusions = ignore.has_exclusions

    def visit(rel: str, abs_dir: str) -> Iterator[WalkEntry]:
        try:
            names = sorted(os.listdir(abs_dir), key=os.fsencode)
        except OSError as err:
            raise KitflowError(f"cannot read directory {rel or '.'}: {err.strerror}") from err
        for child in names:
            name = f"{rel}/{child}" if rel else child
            path = os.path.join(abs_dir, child)
            try:
                st = os.lstat(path)
            except OSError as err:
                raise KitflowError(f"cannot stat {name}: {err.strerror}") from err
            is_dir = stat.S_ISDIR(st.st_mode)
            if not is_dir and not stat.S_ISREG(st.st_mode):
                if stat.S_ISLNK(st.st_mode) and same_dir_tree(base, name):
                    log.warning("Skipping symlink %s (symlinks are not supported)", name)
                continue
            if not same_dir_tree(base, name):
                continue
            if ignore.matches(name, base):
                if is_dir and has_exclusions:
                    yield from visit(name, path)
                continue
            yield _entry(name, path, st)
            if is_dir:
                yield from visit(name, path)

    yield from visit("", root)


def write_layer_tar(
    context: str | Path,
    layer_path: str,
    ignore: IgnorePaths,
    sink: Sink,
    on_bytes: Callable[[int], None] | None = None,
) -> TarWriter:
    """Walk and write one whole tar layer into ``sink``; returns the (closed) writer."""
    writer = TarWriter(sink)
    for entry in walk_layer(context, layer_path, ignore):
        if entry.is_dir:
            writer.add_directory(entry.name, entry.mode)
        else:
            writer.add_file(entry.name, entry.mode, entry.size, entry.path, on_bytes)
    writer.close()
    return writer
