"""Local-store operations with kit's rules: list, inspect, info, tag, remove, plus prune and
verify (garbage collection and integrity checks kit lacks)."""

from __future__ import annotations

import hashlib
import json
import logging
import os
import time
from pathlib import Path
from typing import Any

from kitflow.content.digest import CHUNK
from kitflow.errors import KitflowError, NotFoundError
from kitflow.format.descriptor import Descriptor
from kitflow.ops.unpack import Source, load_modelkit, open_local, parse_ref, remote_target
from kitflow.options import RegistryOptions
from kitflow.results import ModelKitSummary

log = logging.getLogger(__name__)

PathLike = str | os.PathLike[str]
INGEST_GRACE_SECONDS = 3600.0


def _store(home: PathLike | None) -> Any:
    from kitflow.content.localstore import LocalStore

    return LocalStore(home)


def _display(name: str) -> str:
    from kitflow.format.reference import format_repository_for_display

    return format_repository_for_display(name)


def format_bytes(size: int) -> str:
    """kit's FormatBytes: ``123 B``, ``1.5 KiB`` (rounded down to a tenth), ..., ``PiB``."""
    if size < 1024:
        return f"{size} B"
    value = size / 1024.0
    for suffix in ("KiB", "MiB", "GiB", "TiB"):
        if value < 1024:
            return f"{int(value * 10) / 10:.1f} {suffix}"
        value /= 1024
    return f"{value:.1f} PiB"


# --------------------------------------------------------------------------------- list


def list_modelkits(
    repository: str | None = None, *, home: PathLike | None = None
) -> list[ModelKitSummary]:
    """The ModelKits in the local store, one summary per manifest (kit's ``list``), sorted by
    repository then digest; ``repository`` narrows to one repository (``myorg/model`` form)."""
    store = _store(home)
    wanted: str | None = None
    if repository:
        wanted = parse_ref(repository).name
    out: list[ModelKitSummary] = []
    for repo in store.repositories():
        if wanted is not None and repo != wanted:
            continue
        display = _display(repo) or "<none>"
        target = store.repo(repo)
        for desc in store.manifests(repo):
            name, author, size = "<none>", "<none>", 0
            try:
                kit = load_modelkit(target, desc)
                size = sum(layer.size for layer in kit.manifest.layers)
                package = getattr(kit.kitfile, "package", None)
                name = getattr(package, "name", None) or "<none>"
                authors = getattr(package, "authors", None) or []
                author = authors[0] if authors else "<none>"
            except KitflowError as exc:
                log.debug("%s@%s is not a readable ModelKit: %s", repo, desc.digest, exc)
            out.append(
                ModelKitSummary(
                    repository=display,
                    tags=store.tags_for(repo, desc.digest),
                    digest=desc.digest,
                    name=name,
                    author=author,
                    size=size,
                )
            )
    out.sort(key=lambda s: (s.repository, s.digest))
    return out


def list_remote(
    repository: str,
    *,
    registry: RegistryOptions | None = None,
    home: PathLike | None = None,
) -> list[ModelKitSummary]:
    """The ModelKits in a remote repository (kit's ``list REGISTRY/REPOSITORY[:TAG]``): one row
    per tag (or just the given tag); tags that are not ModelKits are left out."""
    ref = parse_ref(repository)
    if ref.registry == "localhost":
        raise KitflowError(f"{repository} names no registry; use registry.example.com/repository")
    target: Any = remote_target(ref, registry, home)
    try:
        tags = [ref.tag] if ref.tag else list(target.list_tags())
        out = []
        for tag_name in tags:
            desc = target.resolve(tag_name)
            try:
                kit = load_modelkit(target, desc)
            except KitflowError as exc:
                log.debug("%s:%s is not a ModelKit: %s", ref.name, tag_name, exc)
                continue
            package = getattr(kit.kitfile, "package", None)
            authors = getattr(package, "authors", None) or []
            out.append(
                ModelKitSummary(
                    repository=ref.repository,
                    tags=[tag_name],
                    digest=desc.digest,
                    name=getattr(package, "name", None) or "<none>",
                    author=authors[0] if authors else "<none>",
                    size=sum(layer.size for layer in kit.manifest.layers),
                )
            )
        return out
    finally:
        target.close()


def list_table(summaries: list[ModelKitSummary]) -> str:
    """kit's ``list`` table (Go tabwriter: min width 0, padding 3, spaces)."""
    rows = [["REPOSITORY", "TAG", "MAINTAINER", "NAME", "SIZE", "DIGEST"]]
    for s in summaries:
        for tag in s.tags or ["<none>"]:
            rows.append([s.repository, tag, s.author, s.name, format_bytes(s.size), s.digest])
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]) - 1)]
    lines = []
    for row in rows:
        cells = [cell.ljust(widths[i] + 3) for i, cell in enumerate(row[:-1])]
        lines.append("".join(cells) + row[-1])
    return "\n".join(lines)


def list_json(summaries: list[ModelKitSummary]) -> list[dict[str, Any]]:
    """kit's ``list --format json`` objects: repo, digest, tags, modelName, size, author."""
    return [
        {
            "repo": s.repository,
            "digest": s.digest,
            "tags": s.tags,
            "modelName": s.name,
            "size": format_bytes(s.size),
            "author": s.author,
        }
        for s in summaries
    ]


# --------------------------------------------------------------------------------- inspect / info


def _source(
    reference: str, remote: bool, registry: RegistryOptions | None, home: PathLike | None
) -> Source:
    ref = parse_ref(reference)
    if not remote:
        try:
            return open_local(ref, home)
        except NotFoundError:
            raise NotFoundError(
                f"{ref.display or ref} not found in local storage "
                "(pull it first, or use --remote to read it from the registry)"
            ) from None
    if ref.registry == "localhost":
        raise KitflowError(
            f"{ref} has no registry; name it as registry.example.com/repository:tag for --remote"
        )
    target = remote_target(ref, registry, home)
    return Source(target, target.resolve(ref.ref), ref, False)


def inspect(
    reference: str,
    *,
    remote: bool = False,
    registry: RegistryOptions | None = None,
    home: PathLike | None = None,
) -> dict[str, Any]:
    """``{"digest", "cliVersion", "kitfile", "manifest"}`` as kit's ``inspect`` prints it."""
    from kitflow.format.kitfile import kitfile_to_dict
    from kitflow.format.mediatypes import ANNOTATION_CLI_VERSION

    with _source(reference, remote, registry, home) as source:
        kit = load_modelkit(source.target, source.descriptor)
    return {
        "digest": source.descriptor.digest,
        "cliVersion": kit.manifest.annotations.get(ANNOTATION_CLI_VERSION) or "unknown",
        "kitfile": kitfile_to_dict(kit.kitfile),
        "manifest": json.loads(kit.manifest_bytes),
    }


def info(
    reference: str,
    *,
    remote: bool = False,
    registry: RegistryOptions | None = None,
    home: PathLike | None = None,
) -> str:
    """The ModelKit's Kitfile as YAML (kit's ``info``)."""
    from kitflow.format.kitfile import kitfile_to_yaml

    with _source(reference, remote, registry, home) as source:
        kit = load_modelkit(source.target, source.descriptor)
    return str(kitfile_to_yaml(kit.kitfile))


# --------------------------------------------------------------------------------- tag


def tag(source: str, destination: str, *, home: PathLike | None = None) -> None:
    """Give a local ModelKit another reference; another repository shares the same blobs."""
    src = parse_ref(source)
    dst = parse_ref(destination)
    if dst.digest:
        raise KitflowError(f"cannot tag with a digest ({destination}); give a tag")
    try:
        found = open_local(src, home)
    except NotFoundError:
        raise NotFoundError(f"model {src} not found") from None
    store = found.store
    tags = [dst.tag or "latest", *dst.extra_tags]
    for name in tags:
        store.tag(dst.name, found.descriptor, name)


# --------------------------------------------------------------------------------- remove


def _manifest_blobs(store: Any, desc: Descriptor) -> set[str]:
    """Config and layer digests of a stored manifest (empty if unreadable)."""
    try:
        obj = json.loads(store.read_blob(desc))
    except (KitflowError, ValueError):
        return set()
    out = set()
    if isinstance(obj.get("config"), dict):
        out.add(str(obj["config"].get("digest")))
    for layer in obj.get("layers") or []:
        out.add(str(layer.get("digest")))
    return out


def _collect(store: Any, candidates: set[str]) -> None:
    """Delete blobs among ``candidates`` that no manifest references any more (oras auto-GC)."""
    if not candidates:
        return
    with store.gc_lock(), store.lock():
        referenced = store.all_referenced_blobs()
        for digest in sorted(candidates - referenced):
            if digest.startswith("sha256:") and store.delete_blob(digest):
                log.debug("deleted unreferenced blob %s", digest)


def _delete_manifest(store: Any, repo: str, desc: Descriptor, garbage: set[str]) -> None:
    garbage |= _manifest_blobs(store, desc)
    store.remove_manifest(repo, desc.digest)


def _remove_one(store: Any, ref: Any, force: bool, garbage: set[str]) -> Descriptor:
    try:
        source = open_local(ref, store.home)
    except NotFoundError:
        raise NotFoundError(f"model {ref.display or ref} not found") from None
    repo = source.target.name  # type: ignore[attr-defined]
    desc = source.descriptor
    if ref.digest or force:
        _delete_manifest(store, repo, desc, garbage)
        return desc
    if len(store.tags_for(repo, desc.digest)) <= 1:
        _delete_manifest(store, repo, desc, garbage)
    else:
        store.untag(repo, ref.ref)
    return desc


def remove(
    reference: str | None = None,
    *,
    all_untagged: bool = False,
    force: bool = False,
    remote: bool = False,
    registry: RegistryOptions | None = None,
    home: PathLike | None = None,
) -> list[str]:
    """Remove ModelKits by kit's rules and return what was removed (``repo:tag`` / ``repo@digest``).

    By digest (or with ``force``): the manifest and all its tags. By tag: untag, deleting the
    ModelKit only with its last tag. ``all_untagged``: every untagged ModelKit (``force``: all).
    ``remote``: delete the reference from its registry. Blobs left unreferenced are deleted.
    """
    if reference is None and not all_untagged:
        raise KitflowError("modelkit is required for remove unless --all is specified")
    if reference is not None and all_untagged:
        raise KitflowError("modelkit should not be specified when --all flag is used")
    if remote and (force or all_untagged):
        raise KitflowError("cannot use --all or --force with --remote")
    if remote:
        assert reference is not None
        return _remove_remote(reference, registry, home)
    store = _store(home)
    garbage: set[str] = set()
    removed: list[str] = []
    if reference is None:
        for repo in store.repositories():
            display = _display(repo)
            for desc in store.manifests(repo):
                if store.tags_for(repo, desc.digest) and not force:
                    continue
                _delete_manifest(store, repo, desc, garbage)
                removed.append(f"{display}@{desc.digest}")
        _collect(store, garbage)
        return removed
    ref = parse_ref(reference)
    refs = [ref] + [ref.with_tag(t) for t in ref.extra_tags]
    for index, one in enumerate(refs):
        try:
            desc = _remove_one(store, one, force, garbage)
        except KitflowError:
            if index == 0:
                raise
            log.error("Failed to remove tag %s", one.tag)
            continue
        removed.append(f"{one.display or one} (digest {desc.digest})")
    _collect(store, garbage)
    return removed


def _remove_remote(
    reference: str, registry: RegistryOptions | None, home: PathLike | None
) -> list[str]:
    ref = parse_ref(reference)
    if ref.registry == "localhost":
        raise KitflowError(f"{reference} names no registry; use registry.example.com/repo:tag")
    target: Any = remote_target(ref, registry, home)
    try:
        target.delete(ref.ref)
    except NotFoundError:
        raise NotFoundError(f"model {ref.display or ref} not found") from None
    finally:
        target.close()
    return [str(ref)]


# --------------------------------------------------------------------------------- prune / verify


def prune(
    home: PathLike | None = None, *, ingest_grace_seconds: float = INGEST_GRACE_SECONDS
) -> tuple[int, int]:
    """Delete blobs no manifest references, and ingest files untouched for an hour.

    Returns ``(blobs_removed, bytes_freed)``. Holds the exclusive GC lock, so blobs a concurrent
    pack or pull has written but not yet referenced from a manifest are never swept.
    """
    store = _store(home)
    removed = 0
    freed = 0
    if not store.root.is_dir():
        return 0, 0
    with store.gc_lock(), store.lock():
        referenced = store.all_referenced_blobs()
        for digest in store.blob_digests():
            if digest in referenced:
                continue
            path = store.blob_path(digest)
            try:
                size = path.stat().st_size
                path.unlink()
            except FileNotFoundError:
                continue
            removed += 1
            freed += size
        cutoff = time.time() - ingest_grace_seconds
        if store.ingest_dir.is_dir():
            for entry in os.scandir(store.ingest_dir):
                try:
                    st = entry.stat(follow_symlinks=False)
                    if entry.is_file(follow_symlinks=False) and st.st_mtime < cutoff:
                        os.unlink(entry.path)
                        removed += 1
                        freed += st.st_size
                except FileNotFoundError:
                    continue
    return removed, freed


def _hash_file(path: Path) -> tuple[str, int]:
    digest = hashlib.sha256()
    size = 0
    with open(path, "rb") as fh:
        while True:
            chunk = fh.read(CHUNK * 4)
            if not chunk:
                break
            digest.update(chunk)
            size += len(chunk)
    return "sha256:" + digest.hexdigest(), size


def verify(home: PathLike | None = None) -> list[str]:
    """Re-hash every blob and check every manifest's references; one line per problem found."""
    store = _store(home)
    problems: list[str] = []
    hashed: dict[str, int] = {}
    for digest in store.blob_digests():
        path = store.blob_path(digest)
        try:
            actual, size = _hash_file(path)
        except OSError as exc:
            problems.append(f"blob {digest}: cannot be read ({exc.strerror})")
            continue
        if actual != digest:
            problems.append(f"blob {digest} is corrupt: its content hashes to {actual}")
        else:
            hashed[digest] = size
    for repo in store.repositories():
        for tag_name, tagged in store.tags(repo).items():
            if not store.has_blob(tagged.digest):
                problems.append(
                    f"{_display(repo) or repo}:{tag_name}: tagged manifest {tagged.digest} "
                    "is missing"
                )
        for desc in store.manifests(repo):
            where = f"{_display(repo) or repo}@{desc.digest}"
            if desc.digest not in hashed:
                if not store.has_blob(desc.digest):
                    problems.append(f"{where}: manifest blob is missing")
                continue
            try:
                obj = json.loads(store.read_blob(desc))
            except (KitflowError, ValueError) as exc:
                problems.append(f"{where}: manifest cannot be read ({exc})")
                continue
            children = []
            if isinstance(obj.get("config"), dict):
                children.append(obj["config"])
            children.extend(obj.get("layers") or [])
            for child in children:
                child_digest = str(child.get("digest"))
                if child_digest in hashed:
                    if int(child.get("size", -1)) != hashed[child_digest]:
                        problems.append(
                            f"{where}: blob {child_digest} has {hashed[child_digest]} bytes, "
                            f"the manifest says {child.get('size')}"
                        )
                elif not store.has_blob(child_digest):
                    problems.append(f"{where}: blob {child_digest} is missing")
    return problems
