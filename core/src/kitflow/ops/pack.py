"""``pack``: build a ModelKit from a context directory into the local store, as ``kit pack`` does.

One layer per Kitfile entry in kit's order, byte-identical tar layers (uncompressed), kit's media
types and annotations, the Kit (or ModelPack) config, a v1.10-style manifest, stored and tagged
in kit's storage. Every file is read once and hashed while written; unchanged layers are not
read at all (stat cache, :mod:`kitflow.ops.packcache`).
"""

from __future__ import annotations

import contextlib
import datetime as _dt
import hashlib
import logging
import os
import re
import stat
import struct
import subprocess
import time
import zipfile
import zlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from kitflow.content.localstore import BlobWriter, LocalStore
from kitflow.errors import KitflowError, ValidationError
from kitflow.format import mediatypes as mt
from kitflow.format.descriptor import OCI_MANIFEST, Descriptor, Manifest
from kitflow.format.gojson import go_json_dumps
from kitflow.format.ignore import IgnorePaths, go_clean
from kitflow.format.reference import Reference, format_repository_for_display, is_modelkit_reference
from kitflow.format.tarwriter import CHUNK, Sink, TarWriter, WalkEntry, tar_mode, walk_layer
from kitflow.ops.packcache import CachedLayer, PackCache, fingerprint, is_racy
from kitflow.results import LayerInfo, PackResult

log = logging.getLogger("kitflow.pack")

# The ``ml.kitops.modelkit.cli-version`` kitflow writes: the kit release whose manifest format
# (artifactType, filepath annotations, no top-level mediaType, no created annotation) kitflow
# reproduces. Manifest digests depend on it, so a kit 1.10.0 pack of the same inputs and
# kitflow's pack give the same manifest digest.
KIT_CLI_VERSION = "1.10.0"

DEFAULT_REPOSITORY = "localhost/_"
COMPRESSIONS = ("none", "gzip", "gzip-fastest", "zstd")
LAYER_FORMATS = ("tar", "raw")

# Provenance annotations (OCI standard keys for source and revision).
ANNOTATION_SOURCE = "org.opencontainers.image.source"
ANNOTATION_REVISION = "org.opencontainers.image.revision"
ANNOTATION_DIRTY = "dev.kitflow.source.dirty"

ZSTD_LEVEL = 3  # klauspost/compress zstd "SpeedDefault" is roughly level 3


# --------------------------------------------------------------------------- compression sinks


class _HashingSink:
    """Passes uncompressed layer bytes to a compressor while hashing them for the diffId."""

    def __init__(self, out: BlobWriter, compression: str) -> None:
        self._out = out
        self._diff = hashlib.sha256()
        self._compression = compression
        self._crc = 0
        self._size = 0
        if compression in ("gzip", "gzip-fastest"):
            level = 1 if compression == "gzip-fastest" else 6
            self._gz = zlib.compressobj(level, zlib.DEFLATED, -zlib.MAX_WBITS)
            # Go's compress/gzip header: no name, MTIME 0, XFL 4 for BestSpeed else 0, OS 255.
            xfl = 4 if compression == "gzip-fastest" else 0
            out.write(b"\x1f\x8b\x08\x00\x00\x00\x00\x00" + bytes([xfl, 255]))
        elif compression == "zstd":
            import zstandard

            self._zstd = zstandard.ZstdCompressor(level=ZSTD_LEVEL).compressobj()
        else:
            raise ValueError(compression)

    def write(self, data: bytes | bytearray | memoryview) -> int:
        self._diff.update(data)
        if self._compression == "zstd":
            chunk = self._zstd.compress(bytes(data))
        else:
            self._crc = zlib.crc32(data, self._crc)
            self._size += len(data)
            chunk = self._gz.compress(data)
        if chunk:
            self._out.write(chunk)
        return len(data)

    def finish(self) -> str:
        """Flush the compressor; returns the diffId (sha256 of the uncompressed stream)."""
        if self._compression == "zstd":
            self._out.write(self._zstd.flush())
        else:
            self._out.write(self._gz.flush())
            self._out.write(struct.pack("<II", self._crc, self._size & 0xFFFFFFFF))
        return "sha256:" + self._diff.hexdigest()


@contextlib.contextmanager
def _layer_sink(blob: BlobWriter, compression: str) -> Iterator[tuple[Sink, Callable[[], str]]]:
    """A sink for the uncompressed layer plus a function giving its diffId when done."""
    if compression == "none":
        yield blob, lambda: blob.digest
    else:
        sink = _HashingSink(blob, compression)
        yield sink, sink.finish


# --------------------------------------------------------------------------- helpers


def go_time_rfc3339nano(ns: int, utc: bool = False) -> str:
    """Go's ``time.Time`` JSON form (RFC3339Nano, trailing zeros trimmed, local offset or Z)."""
    secs, frac = divmod(ns, 1_000_000_000)
    tz = _dt.UTC if utc else None
    moment = _dt.datetime.fromtimestamp(secs, tz=tz)
    if not utc:
        moment = moment.astimezone()
    text = moment.strftime("%Y-%m-%dT%H:%M:%S")
    if frac:
        text += "." + f"{frac:09d}".rstrip("0")
    offset = moment.utcoffset() or _dt.timedelta(0)
    minutes = int(offset.total_seconds()) // 60
    if minutes == 0:
        return text + "Z"
    sign = "+" if minutes > 0 else "-"
    minutes = abs(minutes)
    return f"{text}{sign}{minutes // 60:02d}:{minutes % 60:02d}"


def file_metadata_annotation(path: str, st: os.stat_result) -> str:
    """``org.cncf.model.file.metadata+json`` for a raw layer (model-spec FileMetadata)."""
    meta = {
        "name": os.path.basename(path),
        "mode": stat.S_IMODE(st.st_mode) & 0o777,
        "uid": 0,
        "gid": 0,
        "size": st.st_size,
        "mtime": go_time_rfc3339nano(st.st_mtime_ns),
        "typeflag": 0,
    }
    return go_json_dumps(meta).decode("utf-8")


def _strip_credentials(url: str) -> str:
    """A remote URL without ``user:password@`` (tokens must never land in annotations)."""
    try:
        parts = urlsplit(url)
    except ValueError:
        return ""
    if parts.scheme and parts.netloc and "@" in parts.netloc:
        host = parts.netloc.rsplit("@", 1)[1]
        return urlunsplit((parts.scheme, host, parts.path, parts.query, parts.fragment))
    return url


def git_provenance(context: Path) -> dict[str, str]:
    """Source URL, revision and dirty flag when ``context`` is in a git checkout; else empty.

    Never fails: no git, no repository, or no commits simply give fewer annotations.
    """

    def git(*args: str) -> str | None:
        try:
            proc = subprocess.run(
                ["git", "-C", str(context), *args],
                capture_output=True,
                text=True,
                timeout=30,
                check=False,
                env={**os.environ, "GIT_TERMINAL_PROMPT": "0", "GIT_OPTIONAL_LOCKS": "0"},
            )
        except (OSError, subprocess.SubprocessError):
            return None
        return proc.stdout.strip() if proc.returncode == 0 else None

    revision = git("rev-parse", "HEAD")
    if not revision or not re.fullmatch(r"[0-9a-f]{40,64}", revision):
        return {}
    out = {ANNOTATION_REVISION: revision}
    remote = git("remote", "get-url", "origin")
    if remote:
        cleaned = _strip_credentials(remote)
        if cleaned:
            out[ANNOTATION_SOURCE] = cleaned
    status = git("status", "--porcelain")
    if status is not None:
        out[ANNOTATION_DIRTY] = "true" if status else "false"
    return out


def _validate_mcpb(path: Path) -> None:
    """An MCP bundle must be a ZIP with a root ``manifest.json`` (kit's ValidateMCPB)."""
    try:
        with zipfile.ZipFile(path) as zf:
            if "manifest.json" not in zf.namelist():
                raise KitflowError(f"invalid MCP bundle {path.name}: no manifest.json at its root")
    except zipfile.BadZipFile as err:
        raise KitflowError(f"invalid MCP bundle {path.name}: not a ZIP archive") from err


@dataclass
class _Progress:
    """A tqdm bar over content bytes, or nothing."""

    bar: Any = None

    def update(self, n: int) -> None:
        if self.bar is not None:
            self.bar.update(n)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()


def _progress(enabled: bool, total: int) -> _Progress:
    if not enabled or total <= 0:
        return _Progress()
    from tqdm import tqdm

    return _Progress(
        tqdm(total=total, unit="B", unit_scale=True, unit_divisor=1024, desc="pack", leave=False)
    )


# --------------------------------------------------------------------------- layers


@dataclass
class _PlannedLayer:
    kind: str
    path: str  # as written in the Kitfile
    entry: Any
    media_type: str
    entries: list[WalkEntry]  # tar entries, or the single raw file
    content_size: int


class _Packer:
    """Packs the layers of one Kitfile into one store."""

    def __init__(
        self,
        store: LocalStore,
        context: Path,
        compression: str,
        layer_format: str,
        model_pack: bool,
        ignore: IgnorePaths,
        cache: PackCache | None,
    ) -> None:
        self.store = store
        self.context = context
        self.compression = compression
        self.layer_format = layer_format
        self.model_pack = model_pack
        self.ignore = ignore
        self.cache = cache
        self.bytes_read = 0
        self.progress = _Progress()

    def plan(self, kind: str, path: str, entry: Any) -> _PlannedLayer:
        """Walk (stat only) the files of one layer."""
        clean = go_clean(path)
        if kind == "mcpserver":
            layer_format, compression, model_pack = "raw", "none", False
        else:
            layer_format, compression, model_pack = (
                self.layer_format,
                self.compression,
                self.model_pack,
            )
        media_type = mt.layer_media_type(kind, layer_format, compression, model_pack)
        if layer_format == "raw":
            full = self.context / clean
            try:
                st = os.lstat(full)
            except OSError as err:
                raise KitflowError(f"failed to read file {path}: {err.strerror}") from err
            if not stat.S_ISREG(st.st_mode):
                raise KitflowError(f"file {path} is not a regular file")
            if kind == "mcpserver":
                _validate_mcpb(full)
            raw = WalkEntry(
                clean,
                str(full),
                False,
                tar_mode(st.st_mode),
                st.st_size,
                st.st_mtime_ns,
                st.st_ctime_ns,
                st.st_ino,
                st.st_dev,
            )
            return _PlannedLayer(kind, path, entry, media_type, [raw], st.st_size)
        if self.ignore.ignored_by_file(clean):
            log.warning("Warning: %s layer path %s ignored by kitignore", kind, clean)
        entries = list(walk_layer(self.context, clean, self.ignore))
        total = sum(e.size for e in entries)
        if total == 0:
            log.warning("No files detected in %s layer with path %s", kind, clean)
        return _PlannedLayer(kind, path, entry, media_type, entries, total)

    def _annotations(self, layer: _PlannedLayer) -> dict[str, str]:
        clean = go_clean(layer.path)
        out = {mt.ANNOTATION_FILEPATH: clean}
        if layer.media_type.split(".v1.", 1)[-1].startswith("raw"):
            st = os.lstat(self.context / clean)
            out[mt.ANNOTATION_FILE_METADATA] = file_metadata_annotation(clean, st)
        if layer.kind == "prompt":
            out[mt.ANNOTATION_LAYER_SUBTYPE] = mt.LAYER_SUBTYPE_PROMPT
        return out

    def pack(self, layer: _PlannedLayer) -> tuple[Descriptor, str]:
        """Store one layer (or reuse the cached one); returns its descriptor and diffId."""
        annotations = self._annotations(layer)
        raw = layer.media_type.split(".v1.", 1)[-1].startswith("raw")
        slot = print_ = ""
        if self.cache is not None:
            fmt = "raw" if raw else "tar"
            slot = self.cache.slot(self.context, go_clean(layer.path), layer.media_type, fmt)
            print_ = fingerprint(layer.entries, extra=fmt)
            hit = self.cache.lookup(slot, print_)
            if hit is not None and hit.media_type == layer.media_type:
                path = self.store.blob_path(hit.digest)
                try:
                    ok = path.stat().st_size == hit.size
                except OSError:
                    ok = False
                if ok:
                    log.info("Already saved %s layer: %s", layer.kind, hit.digest)
                    self.progress.update(layer.content_size)
                    return (
                        Descriptor(layer.media_type, hit.digest, hit.size, annotations),
                        hit.diff_id,
                    )
                self.cache.forget(slot)
        started = time.time_ns()
        with (
            self.store.ingest() as blob,
            _layer_sink(blob, self._compression_for(layer)) as (
                sink,
                diff_id_of,
            ),
        ):
            if raw:
                self._write_raw(layer.entries[0], sink)
            else:
                writer = TarWriter(sink)
                for e in layer.entries:
                    if e.is_dir:
                        writer.add_directory(e.name, e.mode)
                    else:
                        writer.add_file(e.name, e.mode, e.size, e.path, self._on_bytes)
                writer.close()
            diff_id = diff_id_of()
            desc = blob.commit(layer.media_type, annotations)
        if self.cache is not None and not is_racy(layer.entries, started):
            self.cache.record(
                slot, print_, CachedLayer(desc.digest, desc.size, diff_id, layer.media_type)
            )
        return desc, diff_id

    def _compression_for(self, layer: _PlannedLayer) -> str:
        return "none" if layer.kind == "mcpserver" else self.compression

    def _on_bytes(self, n: int) -> None:
        self.bytes_read += n
        self.progress.update(n)

    def _write_raw(self, entry: WalkEntry, sink: Sink) -> None:
        buf = bytearray(CHUNK)
        view = memoryview(buf)
        remaining = entry.size
        with open(entry.path, "rb", buffering=0) as fh:
            while remaining:
                got = fh.readinto(view[: min(remaining, CHUNK)])
                if not got:
                    raise KitflowError(f"failed to read entire file {entry.name}")
                sink.write(view[:got])
                remaining -= got
                self._on_bytes(got)
            if fh.read(1):
                raise KitflowError(f"file {entry.name} grew while packing; pack again")


# --------------------------------------------------------------------------- pack


def _check_options(compression: str, layer_format: str, model_pack: bool) -> None:
    if compression not in COMPRESSIONS:
        raise KitflowError(
            "invalid compression type: must be one of 'none', 'gzip', 'gzip-fastest', or 'zstd'"
        )
    if layer_format not in LAYER_FORMATS:
        raise KitflowError("invalid layer format: must be either 'tar' or 'raw'")
    if model_pack and layer_format == "raw" and compression != "none":
        raise KitflowError("compression for raw layers is not supported for ModelPack")


def _parse_tag(tag: str | None) -> tuple[str, list[str]]:
    """Repository and tags for ``-t`` (kit: no -t → ``localhost/_`` untagged)."""
    if not tag:
        return DEFAULT_REPOSITORY, []
    ref = Reference.parse(tag)
    if ref.digest:
        raise KitflowError(f"cannot tag a ModelKit with a digest ({tag}); use repository:tag")
    return ref.name, [ref.tag or "latest", *ref.extra_tags]


def _parent_layer_paths(store: LocalStore, reference: str) -> list[str]:
    """Layer paths of a parent ModelKit (``model.path`` is a reference), found locally."""
    from kitflow.format.kitfile import kitfile_from_config, layer_entries

    try:
        ref = Reference.parse(reference)
        repo = store.repo(ref.name)
        manifest = Manifest.from_bytes(repo.fetch_bytes(repo.resolve(ref.ref)))
        parent = kitfile_from_config(store.read_blob(manifest.config))
    except KitflowError as err:
        log.warning(
            "Could not read parent ModelKit %s locally (%s); its paths are not "
            "excluded from this pack",
            reference,
            err,
        )
        return []
    return [le.path for le in layer_entries(parent)]


def pack(
    context: str | os.PathLike[str] = ".",
    *,
    tag: str | None = None,
    kitfile: str | os.PathLike[str] | None = None,
    compression: str = "none",
    layer_format: str = "tar",
    use_model_pack: bool = False,
    home: str | os.PathLike[str] | None = None,
    progress: bool = False,
) -> PackResult:
    """Pack ``context`` by its Kitfile into the local store and tag it (kit's ``pack -t``)."""
    from kitflow.format import kitfile as kf_mod

    t0 = time.monotonic()
    _check_options(compression, layer_format, use_model_pack)
    ctx = Path(context).expanduser().absolute()
    if not ctx.is_dir():
        raise KitflowError(f"context directory {context} does not exist or is not a directory")
    kitfile_path = Path(kitfile).expanduser() if kitfile else kf_mod.find_kitfile(ctx)
    kf = kf_mod.load_kitfile(kitfile_path)
    problems = kf_mod.validate_kitfile(kf, ctx)
    if problems:
        raise ValidationError(problems, str(kitfile_path))
    repo_name, tags = _parse_tag(tag)

    layer_list = list(kf_mod.layer_entries(kf))
    if use_model_pack and any(le.kind == "mcpserver" for le in layer_list):
        raise KitflowError("mcpServers are not supported when packing in modelpack format")

    for warning in kf_mod.kitfile_warnings(kf):
        log.warning(warning)

    store = LocalStore(home)
    extra_paths: list[str] = []
    if kf.model is not None and kf.model.path and is_modelkit_reference(kf.model.path):
        extra_paths = _parent_layer_paths(store, kf.model.path)
    packable = [le for le in layer_list if not is_modelkit_reference(le.path)]
    ignore = IgnorePaths.from_context(ctx, [le.path for le in layer_list] + extra_paths)
    cache = PackCache(store.home)
    packer = _Packer(store, ctx, compression, layer_format, use_model_pack, ignore, cache)

    with store.writing():
        planned = [packer.plan(le.kind, le.path, le.entry) for le in packable]
        packer.progress = _progress(progress, sum(p.content_size for p in planned))
        layers: list[Descriptor] = []
        diff_ids: list[str] = []
        infos: list[LayerInfo] = []
        try:
            for p in planned:
                desc, diff_id = packer.pack(p)
                p.entry.digest = desc.digest
                p.entry.diff_id = diff_id
                layers.append(desc)
                diff_ids.append(diff_id)
                infos.append(
                    LayerInfo(desc.media_type, desc.digest, desc.size, go_clean(p.path), p.kind)
                )
        finally:
            packer.progress.close()
        if not layers:
            log.warning("ModelKit contains no layers")

        kit_config = kf_mod.config_bytes(kf)
        if use_model_pack:
            from kitflow.format.modelpack import modelpack_config_bytes

            created = go_time_rfc3339nano(time.time_ns())
            config = store.put_bytes(
                mt.MODELPACK_CONFIG, modelpack_config_bytes(kf, diff_ids, created)
            )
            artifact_type = mt.MODELPACK_ARTIFACT_TYPE
        else:
            config = store.put_bytes(mt.KIT_CONFIG, kit_config)
            artifact_type = mt.KIT_ARTIFACT_TYPE
        annotations = {mt.ANNOTATION_CLI_VERSION: KIT_CLI_VERSION}
        if use_model_pack:
            annotations[mt.ANNOTATION_KITFILE] = kit_config.decode("utf-8")
        annotations.update(git_provenance(ctx))
        manifest = Manifest(
            config=Descriptor(config.media_type, config.digest, config.size),
            layers=layers,
            annotations=annotations,
            artifact_type=artifact_type,
        )
        manifest_desc = store.put_bytes(OCI_MANIFEST, manifest.to_bytes())
        manifest_desc = Descriptor(OCI_MANIFEST, manifest_desc.digest, manifest_desc.size)
        if tags:
            for t in tags:
                store.add_manifest(repo_name, manifest_desc, t)
        else:
            store.add_manifest(repo_name, manifest_desc)

    # kit's display form (default "localhost/" trimmed) is the one that parses back to this kit.
    reference = format_repository_for_display(f"{repo_name}:{tags[0]}") if tags else None
    return PackResult(
        reference=reference,
        digest=manifest_desc.digest,
        config_digest=config.digest,
        size=sum(d.size for d in layers),
        layers=infos,
        bytes_read=packer.bytes_read,
        seconds=time.monotonic() - t0,
    )
