"""Prefect cache keys built from content digests, so a re-run with unchanged inputs is a cache hit.

The pack key hashes the Kitfile and every file its entries name (plus ``.kitignore``); options
that change the result are folded in; credentials never are (they are not pack inputs at all).
"""

from __future__ import annotations

import hashlib
import json
import os
import stat
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import kitflow
from kitflow.results import PackResult
from prefect.context import TaskRunContext

from prefect_kitflow._version import __version__

_CHUNK = 1 << 20
# (path, size, mtime_ns, inode) -> sha256 hex: files unchanged since the last key are not re-read.
_FILE_DIGESTS: dict[tuple[str, int, int, int], str] = {}


def file_digest(path: Path) -> str:
    """sha256 of a file's bytes, streamed; memoised in-process by (size, mtime, inode)."""
    st = path.stat()
    memo_key = (str(path), st.st_size, st.st_mtime_ns, st.st_ino)
    cached = _FILE_DIGESTS.get(memo_key)
    if cached is not None:
        return cached
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        while chunk := fh.read(_CHUNK):
            digest.update(chunk)
    value = digest.hexdigest()
    _FILE_DIGESTS[memo_key] = value
    return value


def _walk(root: Path) -> Iterator[Path]:
    """Every entry under ``root`` (itself included), in a stable order, not following links."""
    yield root
    if root.is_dir() and not root.is_symlink():
        for child in sorted(root.iterdir(), key=lambda p: p.name):
            yield from _walk(child)


def _entry_lines(base: Path, target: Path) -> Iterator[str]:
    for path in _walk(target):
        rel = path.relative_to(base).as_posix() if path != base else "."
        try:
            st = path.lstat()
        except FileNotFoundError:
            yield f"missing {rel}"
            continue
        mode = stat.S_IMODE(st.st_mode)
        if stat.S_ISLNK(st.st_mode):
            yield f"link {rel} {os.readlink(path)}"
        elif stat.S_ISDIR(st.st_mode):
            yield f"dir {rel} {mode:o}"
        elif stat.S_ISREG(st.st_mode):
            yield f"file {rel} {mode:o} {st.st_size} {file_digest(path)}"


def context_digest(context: str | Path = ".", kitfile: str | Path | None = None) -> str:
    """A sha256 over the Kitfile, ``.kitignore`` and the content of every path the Kitfile names.

    Raises the core's ``KitflowError`` when the Kitfile cannot be found or parsed.
    """
    from kitflow.format.kitfile import find_kitfile, layer_entries, load_kitfile

    base = Path(context).resolve()
    kitfile_path = Path(kitfile).resolve() if kitfile else find_kitfile(base)
    kf = load_kitfile(kitfile_path)
    digest = hashlib.sha256()
    digest.update(b"kitfile " + file_digest(kitfile_path).encode() + b"\n")
    ignore = base / ".kitignore"
    if ignore.is_file():
        digest.update(b"kitignore " + file_digest(ignore).encode() + b"\n")
    seen: set[str] = set()
    for entry in layer_entries(kf):
        if entry.path in seen:
            continue
        seen.add(entry.path)
        digest.update(f"entry {entry.kind} {entry.path}\n".encode())
        for line in _entry_lines(base, (base / entry.path).resolve()):
            digest.update(line.encode() + b"\n")
    return digest.hexdigest()


def _home_key(home: Any) -> str:
    from kitflow.content.localstore import kitops_home

    return str(kitops_home(Path(home) if home else None).resolve())


def _tag_digest(tag: str | None, home: Any) -> str | None:
    """The digest the tag points to in the local store now (None: no tag, or not there)."""
    if not tag:
        return None
    try:
        return str(kitflow.inspect(tag.split(",")[0], home=home)["digest"])
    except kitflow.KitflowError:
        return None


def _still_valid(cached: Any, tag: str | None, home: Any) -> bool:
    """A cached pack is only good while the tag still names the ModelKit it made."""
    if not isinstance(cached, PackResult):
        return True
    if not tag:
        return True
    return _tag_digest(tag, home) == cached.digest


def pack_cache_key(context: TaskRunContext | None, parameters: dict[str, Any]) -> str | None:
    """Cache key of ``pack_modelkit``: input content digest + pack options + target store.

    A hit needs the earlier result to still stand: when the tag was moved or the ModelKit was
    removed since, the key also names what the tag points to now, so the task packs again.
    Returns None (no caching) when the Kitfile is unreadable, so the task reports the real error.
    """
    try:
        content = context_digest(parameters.get("context", "."), parameters.get("kitfile"))
    except (kitflow.KitflowError, OSError):
        return None
    tag = parameters.get("tag")
    home = parameters.get("home")
    material = {
        "op": "pack",
        "plugin": __version__,
        "kitflow": kitflow.__version__,
        "content": content,
        "tag": tag,
        "compression": parameters.get("compression", "none"),
        "layer_format": parameters.get("layer_format", "tar"),
        "use_model_pack": bool(parameters.get("use_model_pack", False)),
        "home": _home_key(home),
    }
    key = (
        "kitflow-pack-" + hashlib.sha256(json.dumps(material, sort_keys=True).encode()).hexdigest()
    )
    store = getattr(context, "result_store", None) if context is not None else None
    if store is None:
        return key
    try:
        if not store.exists(key):
            return key
        cached = store.read(key).result
    except Exception:  # an unreadable record: let Prefect handle the key as usual
        return key
    if _still_valid(cached, tag, home):
        return key
    now = _tag_digest(tag, home) or "absent"
    return key + "-" + hashlib.sha256(now.encode()).hexdigest()[:16]


def pull_cache_key(context: TaskRunContext | None, parameters: dict[str, Any]) -> str | None:
    """Cache key of ``pull_modelkit`` for digest-pinned references: the digest + target store.

    Tags move, so a tag reference is never cached. Credentials are not part of the key: the
    same content pulled with other credentials is the same result. A hit also needs the
    ModelKit to still be in the local store; if it was removed, the task pulls again.
    """
    from kitflow.format.reference import Reference

    try:
        ref = Reference.parse(str(parameters["reference"]))
    except (kitflow.KitflowError, KeyError):
        return None
    if not ref.digest:
        return None
    home = parameters.get("home")
    pinned = f"{ref.name}@{ref.digest}"
    material = {"op": "pull", "plugin": __version__, "modelkit": pinned, "home": _home_key(home)}
    blob = json.dumps(material, sort_keys=True).encode()
    key = "kitflow-pull-" + hashlib.sha256(blob).hexdigest()
    store = getattr(context, "result_store", None) if context is not None else None
    try:
        recorded = store is not None and store.exists(key)
    except Exception:  # an unreadable store: let Prefect handle the key as usual
        return key
    if recorded:
        try:
            kitflow.inspect(pinned, home=home)
        except kitflow.KitflowError:
            return f"{key}-refetch-{uuid.uuid4().hex}"  # gone from the store: pull again
    return key
