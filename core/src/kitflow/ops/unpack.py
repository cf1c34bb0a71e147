"""Unpack a ModelKit into a directory, from the local store or straight from its registry.

Written once over :class:`~kitflow.content.target.ReadOnlyTarget`: only the layers the filters
select are fetched, each verified and extracted all-or-nothing by :mod:`kitflow.format.tarreader`.
Follows kit's rules: filter syntax, overwrite flags, Kitfile write-back, legacy layers, ModelPacks
without a Kitfile, and model references to parent ModelKits.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import posixpath
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, BinaryIO

from kitflow.content.target import ReadOnlyTarget
from kitflow.errors import KitflowError, NotFoundError
from kitflow.format.descriptor import Descriptor, Manifest
from kitflow.format.tarreader import ExtractStats, clean_relpath, extract_raw, extract_tar
from kitflow.options import RegistryOptions
from kitflow.results import UnpackResult

log = logging.getLogger(__name__)

MAX_MODEL_REF_CHAIN = 10
FILTER_TYPES = ("kitfile", "model", "datasets", "code", "prompts", "docs", "mcpservers")
# Kitfile entry kind (kitflow.format.kitfile.layer_entries) -> filter type.
_KIND_FILTER = {
    "model": "model",
    "modelpart": "model",
    "code": "code",
    "dataset": "datasets",
    "docs": "docs",
    "prompt": "prompts",
    "mcpserver": "mcpservers",
}
_KINDS = ("model", "modelpart", "code", "dataset", "docs", "prompt", "mcpserver")


# --------------------------------------------------------------------------------- filters


@dataclass(frozen=True)
class FilterConf:
    """One ``--filter`` value: entry types and optional ids (a Kitfile ``name`` or ``path``)."""

    types: tuple[str, ...]
    ids: tuple[str, ...] = ()

    def matches_type(self, filter_type: str) -> bool:
        """Whether this filter selects entries of ``filter_type`` (kitfile, model, ...)."""
        return filter_type in self.types

    def matches(self, filter_type: str, fields: Sequence[str | None]) -> bool:
        """Whether an entry of ``filter_type`` with these name/path values is selected."""
        if not self.matches_type(filter_type):
            return False
        if not self.ids:
            return True
        return any(f is not None and f in self.ids for f in fields)


def parse_filter(text: str) -> FilterConf:
    """Parse kit's ``<type>[,<type>...][:<id>[,<id>...]]``; KitflowError with kit's message."""
    parts = text.split(":")
    if len(parts) > 2:
        raise KitflowError(
            "invalid filter: should be in format <type1>,<type2>[:<filter1>,<filter2>]"
        )
    types = []
    for filter_type in parts[0].split(","):
        if filter_type not in FILTER_TYPES:
            raise KitflowError(
                f"invalid filter type {filter_type} (must be one of {', '.join(FILTER_TYPES)})"
            )
        types.append(filter_type)
    ids = tuple(parts[1].split(",")) if len(parts) == 2 else ()
    return FilterConf(tuple(types), ids)


def parse_filters(texts: Sequence[str]) -> list[FilterConf]:
    """Parse every ``--filter`` value (an empty list means: unpack everything)."""
    if isinstance(texts, str):
        texts = [texts]
    return [parse_filter(t) for t in texts]


def wants_kitfile(filters: Sequence[FilterConf]) -> bool:
    """The Kitfile is written when there are no filters or one names ``kitfile``."""
    return not filters or any(f.matches_type("kitfile") for f in filters)


def wants_entry(kind: str, entry: Any, filters: Sequence[FilterConf]) -> bool:
    """Whether the Kitfile entry of ``kind`` is selected (by its name or its path)."""
    if not filters:
        return True
    filter_type = _KIND_FILTER[kind]
    fields = (getattr(entry, "name", None), getattr(entry, "path", None))
    return any(f.matches(filter_type, fields) for f in filters)


def parent_filters(filters: Sequence[FilterConf]) -> list[FilterConf] | None:
    """Filters for a referenced parent ModelKit: only its model; None means nothing wanted."""
    if not filters:
        return [FilterConf(("model",))]
    kept = [FilterConf(("model",), f.ids) for f in filters if f.matches_type("model")]
    return kept or None


# --------------------------------------------------------------------------------- sources


@dataclass
class Source:
    """Where a ModelKit was found: the target to read from and the manifest's descriptor."""

    target: ReadOnlyTarget
    descriptor: Descriptor
    reference: Any  # kitflow.format.reference.Reference
    local: bool
    store: Any = None  # the LocalStore when local

    def close(self) -> None:
        """Release the target's connections (a no-op for the local store)."""
        closer = getattr(self.target, "close", None)
        if closer is not None and not self.local:
            closer()

    def __enter__(self) -> Source:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def parse_ref(reference: Any) -> Any:
    """A :class:`~kitflow.format.reference.Reference` from text (kit's rules) or as given."""
    from kitflow.format.reference import Reference

    if isinstance(reference, Reference):
        return reference
    return Reference.parse(str(reference))


def remote_target(
    reference: Any, registry: RegistryOptions | None, home: Any = None
) -> ReadOnlyTarget:
    """The registry repository of ``reference`` as a target (REGISTRY's ``Registry``; imported
    lazily so local-only use never loads the HTTP stack)."""
    from kitflow.content.registry import Registry

    return Registry(reference.name, registry or RegistryOptions(), home=home)


def open_local(reference: Any, home: Any = None) -> Source:
    """Resolve ``reference`` in the local store; NotFoundError (kit's wording) if absent."""
    from kitflow.content.localstore import LocalStore
    from kitflow.format.reference import DEFAULT_REGISTRY, DEFAULT_REPOSITORY

    ref = parse_ref(reference)
    store = LocalStore(home)
    if ref.digest and ref.registry == DEFAULT_REGISTRY and ref.repository == DEFAULT_REPOSITORY:
        found = store.find_manifest(ref.digest)
        if found is not None:
            repo, desc = found
            return Source(store.repo(repo), desc, ref, True, store)
    repo_target = store.repo(ref.name)
    desc = repo_target.resolve(ref.ref)
    return Source(repo_target, desc, ref, True, store)


def open_source(
    reference: Any, registry: RegistryOptions | None = None, home: Any = None
) -> Source:
    """Pick where to read a ModelKit from, as kit does: the local store first, else the remote
    registry (unless the reference's registry is ``localhost``)."""
    ref = parse_ref(reference)
    try:
        return open_local(ref, home)
    except NotFoundError:
        pass
    if ref.registry == "localhost":
        raise NotFoundError(
            f"failed to find reference {ref.display}: not found in local storage"
        ) from None
    target = remote_target(ref, registry, home)
    try:
        desc = target.resolve(ref.ref)
    except NotFoundError:
        raise NotFoundError(
            f"reference {ref} is not present in local storage and could not be found in remote"
        ) from None
    return Source(target, desc, ref, False)


# --------------------------------------------------------------------------------- ModelKits


@dataclass
class ModelKit:
    """A ModelKit read from a target: descriptor, manifest (parsed and raw) and Kitfile."""

    descriptor: Descriptor
    manifest: Manifest
    manifest_bytes: bytes
    kitfile: Any  # kitflow.format.kitfile.Kitfile
    kitfile_available: bool  # False when synthesized from a ModelPack's layer annotations
    format: str  # "kit" or "modelpack"


def load_modelkit(target: ReadOnlyTarget, desc: Descriptor) -> ModelKit:
    """Fetch and parse the manifest and the Kitfile (config, annotation, or synthesized)."""
    from kitflow.format import kitfile as kitfile_module
    from kitflow.format import mediatypes
    from kitflow.format.descriptor import OCI_INDEX

    if desc.media_type == OCI_INDEX:
        raise KitflowError(
            f"{desc.digest} is an image index, not a ModelKit manifest; name one of its manifests"
        )
    data = target.fetch_bytes(desc)
    try:
        manifest = Manifest.from_bytes(data)
    except (ValueError, KeyError, TypeError) as exc:
        raise KitflowError(f"failed to parse manifest {desc.digest}: {exc}") from exc
    fmt = mediatypes.manifest_format(manifest)
    if fmt is None:
        raise KitflowError(
            f"manifest is not a Model manifest: artifactType is {manifest.artifact_type or ''}, "
            f"config mediaType is {manifest.config.media_type}"
        )
    if fmt == "kit":
        config = target.fetch_bytes(manifest.config)
        kf = kitfile_module.kitfile_from_config(config)
        return ModelKit(desc, manifest, data, kf, True, fmt)
    annotation = manifest.annotations.get(mediatypes.ANNOTATION_KITFILE)
    if annotation:
        kf = kitfile_module.kitfile_from_config(annotation.encode("utf-8"))
        return ModelKit(desc, manifest, data, kf, True, fmt)
    from kitflow.format.modelpack import synthesize_kitfile

    config_bytes: bytes | None = None
    if manifest.config.size > 2 and target.exists(manifest.config):
        config_bytes = target.fetch_bytes(manifest.config)
    log.warning("Could not get Kitfile: ModelPack has no Kitfile annotation; using its layers")
    kf = synthesize_kitfile(manifest, config_bytes)
    return ModelKit(desc, manifest, data, kf, False, fmt)


def _is_model_ref(path: str | None) -> bool:
    from kitflow.format.reference import is_modelkit_reference

    return bool(path) and is_modelkit_reference(str(path))


def kitfile_entries(kf: Any) -> list[tuple[str, Any]]:
    """(kind, entry) in kit's layer order, without a model that references another ModelKit."""
    from kitflow.format.kitfile import layer_entries

    out = []
    for item in layer_entries(kf):
        if item.kind == "model" and _is_model_ref(getattr(item.entry, "path", None)):
            continue
        out.append((item.kind, item.entry))
    return out


@dataclass
class PlannedLayer:
    """One manifest layer matched to its Kitfile entry."""

    kind: str
    entry: Any
    desc: Descriptor
    layer_format: str
    compression: str
    legacy: bool


def _layer_kind(desc: Descriptor) -> tuple[str, str, str] | None:
    from kitflow.format import mediatypes

    parsed = mediatypes.parse_layer_media_type(desc.media_type)
    if parsed is None:
        return None
    kind = parsed.kind
    if kind == "code" and (
        desc.annotations.get(mediatypes.ANNOTATION_LAYER_SUBTYPE) == mediatypes.LAYER_SUBTYPE_PROMPT
    ):
        kind = "prompt"
    return kind, parsed.layer_format, parsed.compression


def plan_layers(kit: ModelKit) -> list[PlannedLayer]:
    """Pair manifest layers with Kitfile entries positionally per kind (as kit does), checking
    the entry's recorded digest; unknown media types are skipped with a warning."""
    queues: dict[str, list[Any]] = {k: [] for k in _KINDS}
    for kind, entry in kitfile_entries(kit.kitfile):
        queues.setdefault(kind, []).append(entry)
    # ModelPack manifests may list weights the synthesized Kitfile calls parts, and vice versa.
    plan: list[PlannedLayer] = []
    for desc in kit.manifest.layers:
        parsed = _layer_kind(desc)
        if parsed is None:
            log.warning("Unknown media type %s: skipping unpack", desc.media_type)
            continue
        kind, layer_format, compression = parsed
        queue = queues.get(kind) or []
        if not queue and kind == "model" and queues.get("modelpart"):
            kind, queue = "modelpart", queues["modelpart"]
        if not queue:
            raise KitflowError(
                f"manifest has more {kind} layers than the Kitfile lists; the ModelKit is damaged"
            )
        entry = queue.pop(0)
        digest = getattr(entry, "digest", None)
        if digest and digest != desc.digest:
            raise KitflowError(f"digest in config and manifest do not match in {kind}")
        plan.append(PlannedLayer(kind, entry, desc, layer_format, compression, not digest))
    return plan


# --------------------------------------------------------------------------------- writing


def _kitfile_bytes(kf: Any) -> bytes:
    from kitflow.format.kitfile import kitfile_to_yaml

    text: str = kitfile_to_yaml(kf)
    return text.encode("utf-8")


def write_kitfile(kf: Any, directory: Path, overwrite: bool) -> bool:
    """Write the Kitfile back as kit does; an identical existing Kitfile is fine.

    Returns whether a file was written (False when an identical one was already there).
    """
    data = _kitfile_bytes(kf)
    path = directory / "Kitfile"
    if os.path.lexists(path):
        if not path.is_file() or path.is_symlink():
            raise KitflowError(
                f"failed to unpack config: path {path} exists and is not a regular file"
            )
        if not overwrite:
            if path.stat().st_size != len(data):
                raise KitflowError(
                    f"failed to unpack config: path {path} already exists (use -o to overwrite)"
                )
            if path.read_bytes() == data:
                log.info("Found existing Kitfile at %s", path)
                return False
            raise KitflowError(
                "failed to unpack: Kitfile exists and does not match model's Kitfile"
            )
    fd, tmp = tempfile.mkstemp(prefix=".Kitfile-", dir=directory)
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
        os.chmod(tmp, 0o644 & ~_umask())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
    return True


def _umask() -> int:
    current = os.umask(0)
    os.umask(current)
    return current


def _raw_mode(desc: Descriptor) -> int:
    from kitflow.format.mediatypes import ANNOTATION_FILE_METADATA

    meta = desc.annotations.get(ANNOTATION_FILE_METADATA)
    if meta:
        with contextlib.suppress(ValueError, TypeError, AttributeError):
            mode = int(json.loads(meta).get("mode"))
            if 0 < mode <= 0o7777:
                return mode
    return 0o644


def _layer_path(layer: PlannedLayer) -> str:
    from kitflow.format.mediatypes import ANNOTATION_FILEPATH

    path = getattr(layer.entry, "path", None) or layer.desc.annotations.get(ANNOTATION_FILEPATH)
    if not path:
        raise KitflowError(f"unknown file path for layer {layer.desc.digest}")
    try:
        return clean_relpath(str(path).strip(), "layer paths")
    except KitflowError:
        raise KitflowError(
            f"error resolving {layer.kind} path: layer paths must stay within context directory "
            f"({path})"
        ) from None


@contextlib.contextmanager
def _open_layer(target: ReadOnlyTarget, desc: Descriptor) -> Iterator[BinaryIO]:
    """The blob's bytes; the local store's file is opened directly (tarreader verifies it)."""
    store = getattr(target, "store", None)
    blob_path = getattr(store, "blob_path", None)
    if blob_path is not None:
        try:
            fh = open(blob_path(desc.digest), "rb")  # noqa: SIM115 - closed below
        except FileNotFoundError:
            raise NotFoundError(
                f"blob {desc.digest} is missing from local storage; pull the ModelKit again"
            ) from None
        try:
            yield fh
        finally:
            fh.close()
        return
    with target.fetch(desc) as stream:
        yield stream


def unpack_layer(
    target: ReadOnlyTarget,
    layer: PlannedLayer,
    directory: Path,
    *,
    overwrite: bool,
    ignore_existing: bool,
    progress: Callable[[int], None] | None = None,
) -> ExtractStats:
    """Fetch one layer and extract it under ``directory`` (verified, all-or-nothing)."""
    path = _layer_path(layer)
    with _open_layer(target, layer.desc) as stream:
        common: dict[str, Any] = {
            "compression": layer.compression,
            "digest": layer.desc.digest,
            "size": layer.desc.size,
            "overwrite": overwrite,
            "ignore_existing": ignore_existing,
            "progress": progress,
        }
        if layer.layer_format == "raw":
            return extract_raw(stream, directory, path, mode=_raw_mode(layer.desc), **common)
        if layer.legacy:
            # Legacy layers hold names relative to the parent of the entry's path.
            parent = posixpath.dirname(path)
            return extract_tar(stream, directory, layer_path=path, prefix=parent, **common)
        return extract_tar(stream, directory, layer_path=path, **common)


@dataclass
class _Totals:
    stats: ExtractStats = field(default_factory=ExtractStats)
    layers: int = 0
    kitfile_written: bool = False


class _Progress:
    """A tqdm bar over the bytes of the selected layers (only when asked for)."""

    def __init__(self, enabled: bool) -> None:
        self._bar: Any = None
        self._enabled = enabled

    def start(self, total: int, label: str) -> Callable[[int], None] | None:
        if not self._enabled:
            return None
        from tqdm import tqdm

        self.close()
        self._bar = tqdm(
            total=total, unit="B", unit_scale=True, unit_divisor=1024, desc=label, leave=False
        )
        return self._bar.update  # type: ignore[no-any-return]

    def close(self) -> None:
        if self._bar is not None:
            self._bar.close()
            self._bar = None


def _unpack_recursive(
    reference: Any,
    directory: Path,
    filters: list[FilterConf],
    *,
    overwrite: bool,
    ignore_existing: bool,
    registry: RegistryOptions | None,
    home: Any,
    visited: list[str],
    totals: _Totals,
    bar: _Progress,
) -> Source:
    if len(visited) > MAX_MODEL_REF_CHAIN:
        raise KitflowError(f"reached maximum number of model references: [{'=>'.join(visited)}]")
    ref = parse_ref(reference)
    source = open_source(ref, registry, home)
    with source:
        kit = load_modelkit(source.target, source.descriptor)
        model = getattr(kit.kitfile, "model", None)
        model_path = getattr(model, "path", None) if model is not None else None
        if kit.kitfile_available and _is_model_ref(model_path):
            parent = str(model_path)
            if parent in visited:
                cycle = [*visited[visited.index(parent) :], parent]
                raise KitflowError(f"found cycle in modelkit references: [{'=>'.join(cycle)}]")
            wanted = parent_filters(filters)
            if wanted is not None:
                log.info("Unpacking referenced modelkit %s", parent)
                _unpack_recursive(
                    parent,
                    directory,
                    wanted,
                    overwrite=overwrite,
                    ignore_existing=ignore_existing,
                    registry=registry,
                    home=home,
                    visited=[*visited, parent],
                    totals=totals,
                    bar=bar,
                )
        if kit.kitfile_available and wants_kitfile(filters):
            totals.kitfile_written = write_kitfile(kit.kitfile, directory, overwrite) or (
                totals.kitfile_written
            )
        selected = [
            layer for layer in plan_layers(kit) if wants_entry(layer.kind, layer.entry, filters)
        ]
        callback = bar.start(sum(layer.desc.size for layer in selected), ref.display or str(ref))
        try:
            for layer in selected:
                log.info("Unpacking %s to %s", layer.kind, getattr(layer.entry, "path", ""))
                try:
                    stats = unpack_layer(
                        source.target,
                        layer,
                        directory,
                        overwrite=overwrite,
                        ignore_existing=ignore_existing,
                        progress=callback,
                    )
                except KitflowError as exc:
                    if type(exc) is KitflowError:
                        raise KitflowError(f"failed to unpack: {exc}") from exc
                    raise
                totals.stats.add(stats)
                totals.layers += 1
        finally:
            bar.close()
    return source


def unpack(
    reference: str,
    directory: str | os.PathLike[str] = ".",
    *,
    filters: Sequence[str] = (),
    overwrite: bool = False,
    ignore_existing: bool = False,
    registry: RegistryOptions | None = None,
    home: str | os.PathLike[str] | None = None,
    progress: bool = False,
) -> UnpackResult:
    """Unpack ``reference`` into ``directory`` (created if needed) as ``kit unpack`` does."""
    started = time.monotonic()
    confs = parse_filters(filters)
    ref = parse_ref(reference)
    if ref.extra_tags:
        raise KitflowError("can not unpack multiple tags")
    if not ref.tag and not ref.digest:
        log.info("No tag specified for unpack. Using 'latest' as default")
    target_dir = Path(directory).absolute()
    totals = _Totals()
    bar = _Progress(progress)
    try:
        if target_dir.exists() and not target_dir.is_dir():
            raise KitflowError(f"cannot unpack into {target_dir}: it is not a directory")
        target_dir.mkdir(parents=True, exist_ok=True)
        source = _unpack_recursive(
            ref,
            target_dir,
            confs,
            overwrite=overwrite,
            ignore_existing=ignore_existing,
            registry=registry,
            home=home,
            visited=[],
            totals=totals,
            bar=bar,
        )
    except OSError as exc:  # permissions, disk full, ...: the user's to fix, one line
        where = f" ({exc.filename})" if exc.filename else ""
        raise KitflowError(f"failed to unpack: {exc.strerror or exc}{where}") from exc
    log.debug("unpacked %s in %.2fs", ref, time.monotonic() - started)
    return UnpackResult(
        reference=(ref if (ref.tag or ref.digest) else ref.with_tag("latest")).display,
        digest=source.descriptor.digest,
        directory=target_dir,
        files=totals.stats.files,
        bytes_written=totals.stats.bytes_written,
        layers=totals.layers,
        kitfile_written=totals.kitfile_written,
    )
