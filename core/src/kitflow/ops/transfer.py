"""push, pull and copy: pick the source and destination targets, run the copy engine once.

push = local store → registry, pull = registry → local store (rolled back if interrupted, and
safe against a concurrent prune), copy = any of registry, ``oci:DIR[:TAG]`` layout directory and
``local:REF`` store references.
"""

from __future__ import annotations

import contextlib
import logging
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from kitflow.content.auth import Authenticator, find_credentials
from kitflow.content.http import HttpSession
from kitflow.content.localstore import LocalStore
from kitflow.content.ocilayout import OCILayout
from kitflow.content.registry import Registry
from kitflow.errors import KitflowError
from kitflow.format.descriptor import OCI_MANIFEST, Descriptor
from kitflow.format.reference import DEFAULT_REGISTRY, Reference
from kitflow.ops.copy import CopyStats, copy_graph
from kitflow.options import RegistryOptions
from kitflow.results import TransferResult

log = logging.getLogger(__name__)

PathLike = str | os.PathLike[str]


class Remotes:
    """Registry targets sharing one HTTP session and one authenticator per host."""

    def __init__(self, options: RegistryOptions | None, home: PathLike | None) -> None:
        self.options = options or RegistryOptions()
        self.home = home
        self.session = HttpSession(self.options)
        self._auth: dict[str, Authenticator] = {}

    def get(self, name: str) -> Registry:
        """The ``Registry`` target for ``host/repository``."""
        host = name.partition("/")[0]
        auth = self._auth.get(host)
        if auth is None:
            creds = find_credentials(host, self.options, self.home)
            auth = self._auth[host] = Authenticator(host, creds, self.session)
        return Registry(name, self.options, home=self.home, session=self.session, auth=auth)

    def close(self) -> None:
        self.session.close()


@dataclass
class _Endpoint:
    target: Any
    reference: str | None  # tag or digest to resolve / to tag with
    extra_tags: tuple[str, ...]
    label: str


def registry_reference(text: str, what: str) -> Reference:
    """Parse a reference that must name a registry (not kit's default ``localhost``)."""
    ref = Reference.parse(text)
    if ref.registry == DEFAULT_REGISTRY:
        raise KitflowError(
            f"{what} {text!r} names no registry; use REGISTRY/REPOSITORY[:TAG] "
            "(e.g. registry.example.com/team/model:v1)"
        )
    return ref


def _endpoint(text: str, remotes: Remotes, home: PathLike | None, what: str) -> _Endpoint:
    if text.startswith("oci:"):
        body = text[4:]
        directory, tag = body, None
        head, sep, tail = body.rpartition(":")
        if sep and head and "/" not in tail:
            directory, tag = head, tail
        if not directory:
            raise KitflowError(f"{what} {text!r}: expected oci:DIRECTORY[:TAG]")
        return _Endpoint(OCILayout(Path(directory)), tag, (), text)
    if text.startswith("local:"):
        ref = Reference.parse(text[6:])
        tag = ref.digest or ref.tag
        return _Endpoint(LocalStore(home).repo(ref.name), tag, ref.extra_tags, str(ref))
    ref = registry_reference(text, what)
    return _Endpoint(remotes.get(ref.name), ref.digest or ref.tag, ref.extra_tags, str(ref))


def _result(src: str, dst: str, stats: CopyStats, remotes: Remotes) -> TransferResult:
    return TransferResult(
        source=src,
        destination=dst,
        digest=stats.root.digest,
        size=stats.bytes_total,
        blobs=stats.blobs,
        bytes_transferred=stats.bytes_transferred,
        bytes_skipped=stats.bytes_skipped,
        blobs_skipped=stats.blobs_skipped,
        blobs_mounted=stats.blobs_mounted,
        retries=remotes.session.retries,
        seconds=round(stats.seconds, 3),
    )


def _concurrency(options: RegistryOptions | None) -> int:
    return (options or RegistryOptions()).concurrency


def push(
    reference: str,
    destination: str | None = None,
    *,
    registry: RegistryOptions | None = None,
    home: PathLike | None = None,
    progress: bool = False,
) -> TransferResult:
    """Push a ModelKit from the local store to its registry (or to ``destination``)."""
    src_ref = Reference.parse(reference)
    dst_ref = registry_reference(destination or reference, "destination")
    src = LocalStore(home).repo(src_ref.name)
    remotes = Remotes(registry, home)
    try:
        dst = remotes.get(dst_ref.name)
        if dst_ref.digest:
            tag: str | None = None
            if src_ref.digest is None:
                src_ref = src_ref.with_digest(dst_ref.digest)
        else:
            tag = dst_ref.tag or src_ref.tag or "latest"
        stats = copy_graph(
            src,
            dst,
            src_ref.ref,
            dst_reference=tag or dst_ref.digest,
            concurrency=_concurrency(registry),
            progress=progress,
        )
        for extra in dst_ref.extra_tags if destination else src_ref.extra_tags:
            dst.push_manifest(stats.root, src.fetch_bytes(stats.root), extra)
        return _result(str(src_ref), str(dst_ref.with_tag(tag) if tag else dst_ref), stats, remotes)
    finally:
        remotes.close()


def pull(
    reference: str,
    *,
    registry: RegistryOptions | None = None,
    home: PathLike | None = None,
    progress: bool = False,
) -> TransferResult:
    """Pull a ModelKit into the local store. An interrupted pull leaves the store as it was
    (no blob, manifest or tag of it appears); a blob cut off mid-way stays as a partial file in
    ``storage/ingest`` and the next pull continues it with a Range request, as kit does."""
    ref = registry_reference(reference, "reference")
    remotes = Remotes(registry, home)
    store = LocalStore(home)
    try:
        src = remotes.get(ref.name)
        root = src.resolve(ref.ref)
        if root.media_type != OCI_MANIFEST:
            raise KitflowError(f"expected manifest for pull but got {root.media_type}")
        dst = store.repo(ref.name)
        tag = None if ref.digest else (ref.tag or "latest")
        created: list[Descriptor] = []
        try:
            # Shared GC lock: a prune waits until the manifest references the new blobs.
            with store.writing():
                stats = copy_graph(
                    src,
                    dst,
                    root.digest,
                    dst_reference=tag,
                    concurrency=_concurrency(registry),
                    progress=progress,
                    on_created=created.append,
                )
                for extra in ref.extra_tags:
                    dst.tag(stats.root, extra)
        except BaseException:
            _rollback(store, created)  # after the shared lock is released: it takes it exclusively
            raise
        return _result(
            str(ref), f"{ref.name}:{tag}" if tag else f"{ref.name}@{root.digest}", stats, remotes
        )
    finally:
        remotes.close()


def _rollback(store: LocalStore, created: list[Descriptor]) -> None:
    """Remove blobs this pull added that nothing references (the store is as it was).

    Holds the exclusive GC lock, as prune does, so a blob that a concurrent pull or pack has
    just reused (and not referenced yet) is not deleted from under it."""
    if not created:
        return
    with contextlib.suppress(Exception), store.gc_lock(), store.lock():
        referenced = store.all_referenced_blobs()
        for desc in list(created):
            if desc.digest not in referenced:
                store.delete_blob(desc.digest)


def copy(
    source: str,
    destination: str,
    *,
    registry: RegistryOptions | None = None,
    home: PathLike | None = None,
    progress: bool = False,
) -> TransferResult:
    """Copy between registries, ``oci:DIR[:TAG]`` layouts and ``local:REF`` store references."""
    remotes = Remotes(registry, home)
    try:
        src = _endpoint(source, remotes, home, "source")
        dst = _endpoint(destination, remotes, home, "destination")
        src_ref = src.reference or "latest"
        dst_tag = dst.reference
        if dst_tag is None and not src_ref.startswith("sha256:"):
            dst_tag = src_ref
        store = getattr(dst.target, "store", None)
        # Into the local store: hold off prune until the manifest references the new blobs.
        guard = store.writing() if isinstance(store, LocalStore) else contextlib.nullcontext()
        with guard:
            stats = copy_graph(
                src.target,
                dst.target,
                src_ref,
                dst_reference=dst_tag,
                concurrency=_concurrency(registry),
                progress=progress,
            )
            for extra in dst.extra_tags:
                dst.target.tag(stats.root, extra)
        return _result(src.label, dst.label, stats, remotes)
    finally:
        remotes.close()
