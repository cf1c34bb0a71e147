"""CNCF ModelPack support: a Kitfile synthesised from a ModelPack manifest that carries none (as
kit does for artifacts made by modctl and friends), and the ModelPack config kit writes for
``pack --use-model-pack``."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

from kitflow.errors import KitflowError
from kitflow.format.descriptor import Manifest
from kitflow.format.gojson import go_json_dumps
from kitflow.format.kitfile import (
    CodeEntry,
    DatasetEntry,
    DocsEntry,
    Kitfile,
    Model,
    ModelPart,
    layer_entries,
)
from kitflow.format.mediatypes import (
    ANNOTATION_FILEPATH,
    ANNOTATION_KITFILE,
    manifest_format,
    parse_layer_media_type,
)


class ModelPackError(KitflowError):
    """A ModelPack manifest or config kitflow cannot turn into a Kitfile."""


def _parse_config(config: bytes) -> dict[str, Any]:
    try:
        obj = json.loads(config)
    except (ValueError, UnicodeDecodeError) as exc:
        raise ModelPackError(f"invalid ModelPack config: not JSON ({exc})") from None
    if not isinstance(obj, dict):
        raise ModelPackError("invalid ModelPack config: not a JSON object")
    return obj


def config_diff_ids(config: bytes) -> list[str]:
    """``modelfs.diffIds`` of a ModelPack config (empty when absent)."""
    modelfs = _parse_config(config).get("modelfs") or {}
    if not isinstance(modelfs, dict):
        raise ModelPackError("invalid ModelPack config: modelfs is not an object")
    diff_ids = modelfs.get("diffIds") or []
    if not isinstance(diff_ids, list) or not all(isinstance(d, str) for d in diff_ids):
        raise ModelPackError("invalid ModelPack config: modelfs.diffIds is not a list of digests")
    return list(diff_ids)


def synthesize_kitfile(manifest: Manifest, config: bytes | None = None) -> Kitfile:
    """A minimal Kitfile for a ModelPack manifest without a Kitfile annotation (kit's
    GenerateKitfileForModelPack): the first weight layer is the model, later weights and weight
    configs are parts, code/dataset/doc layers become entries; digests come from the manifest
    and diffIds from the config's ``modelfs.diffIds`` by position."""
    if manifest_format(manifest) != "modelpack":
        raise ModelPackError("not a modelpack artifact")
    diff_ids: list[str] | None = None
    if config is not None:
        diff_ids = config_diff_ids(config)
        if len(diff_ids) != len(manifest.layers):
            raise ModelPackError(
                "invalid ModelPack config: number of layers does not match DiffIDs"
            )
    model = Model()
    kf = Kitfile(manifest_version="1.0.0", model=model)
    for idx, desc in enumerate(manifest.layers):
        path = (desc.annotations or {}).get(ANNOTATION_FILEPATH, "")
        if not path:
            raise ModelPackError(
                f"unknown file path for layer: no {ANNOTATION_FILEPATH} annotation"
            )
        parsed = parse_layer_media_type(desc.media_type)
        if parsed is None:
            raise ModelPackError(f"failed to parse media type {desc.media_type}")
        digest = desc.digest
        diff_id = diff_ids[idx] if diff_ids is not None else None
        if parsed.kind == "model":
            if not model.path:
                model.path, model.digest, model.diff_id = path, digest, diff_id
            else:
                model.parts.append(ModelPart(path=path, digest=digest, diff_id=diff_id))
        elif parsed.kind == "modelpart":
            model.parts.append(ModelPart(path=path, digest=digest, diff_id=diff_id))
        elif parsed.kind == "code":
            kf.code.append(CodeEntry(path=path, digest=digest, diff_id=diff_id))
        elif parsed.kind == "dataset":
            kf.datasets.append(DatasetEntry(path=path, digest=digest, diff_id=diff_id))
        elif parsed.kind == "docs":
            kf.docs.append(DocsEntry(path=path, digest=digest, diff_id=diff_id))
        else:
            raise ModelPackError(f"unknown layer type: {desc.media_type}")
    return kf


def kitfile_for_manifest(manifest: Manifest, config: bytes | None = None) -> Kitfile:
    """The Kitfile of any ModelKit manifest: the ``ml.kitops.modelkit.kitfile`` annotation when
    present, the Kit config for Kit manifests, else a synthesised one (ModelPack only)."""
    from kitflow.format.kitfile import kitfile_from_config

    annotation = (manifest.annotations or {}).get(ANNOTATION_KITFILE)
    if annotation:
        return kitfile_from_config(annotation)
    fmt = manifest_format(manifest)
    if fmt == "kit":
        if config is None:
            raise KitflowError("a Kit manifest needs its config to read the Kitfile")
        return kitfile_from_config(config)
    return synthesize_kitfile(manifest, config)


def collect_licenses(kf: Kitfile) -> list[str]:
    """Sorted, de-duplicated non-empty licenses of package, model, parts, datasets and code."""
    licenses = [kf.package.license]
    if kf.model is not None:
        licenses.append(kf.model.license)
        licenses.extend(p.license for p in kf.model.parts)
    licenses.extend(d.license for d in kf.datasets)
    licenses.extend(c.license for c in kf.code)
    return sorted({lic for lic in licenses if lic}, key=lambda s: s.encode("utf-8"))


def go_time(dt: datetime | None = None) -> str:
    """A time as Go's json.Marshal writes time.Time (RFC 3339 with nanoseconds, zeros trimmed)."""
    dt = dt or datetime.now(UTC)
    if dt.tzinfo is None:
        dt = dt.replace(tzinfo=UTC)
    base = dt.strftime("%Y-%m-%dT%H:%M:%S")
    frac = f"{dt.microsecond:06d}".rstrip("0")
    offset = dt.utcoffset()
    if offset is None or offset.total_seconds() == 0:
        zone = "Z"
    else:
        minutes = int(offset.total_seconds() // 60)
        sign = "+" if minutes >= 0 else "-"
        minutes = abs(minutes)
        zone = f"{sign}{minutes // 60:02d}:{minutes % 60:02d}"
    return f"{base}{'.' + frac if frac else ''}{zone}"


def modelpack_config(kf: Kitfile, diff_ids: list[str], created: str) -> dict[str, Any]:
    """The ModelPack config object kit builds (``ToModelPackConfig``), in model-spec field order."""
    if kf.mcp_servers:
        raise KitflowError("mcpServers are not supported when packing in modelpack format")
    if not diff_ids:
        raise KitflowError(
            "a ModelPack needs at least one layer: add a model, code, dataset or docs entry"
        )
    descriptor: dict[str, Any] = {}
    if created:
        descriptor["createdAt"] = created
    if kf.package.authors:
        descriptor["authors"] = list(kf.package.authors)
    if kf.package.name:
        descriptor["name"] = kf.package.name
    if kf.package.version:
        descriptor["version"] = kf.package.version
    licenses = collect_licenses(kf)
    if licenses:
        descriptor["licenses"] = licenses
    if kf.package.name:
        descriptor["title"] = kf.package.name
    if kf.package.description:
        descriptor["description"] = kf.package.description
    config: dict[str, Any] = {}
    if kf.model is not None and kf.model.format:
        config["format"] = kf.model.format
    return {
        "descriptor": descriptor,
        "modelfs": {"type": "layers", "diffIds": list(diff_ids)},
        "config": config,
    }


def modelpack_config_bytes(kf: Kitfile, diff_ids: list[str], created: str) -> bytes:
    """ModelPack config bytes (``application/vnd.cncf.model.config.v1+json``) for a packed Kitfile;
    ``diff_ids`` are the layers' uncompressed digests in manifest order, ``created`` an RFC 3339
    time (see :func:`go_time`)."""
    return go_json_dumps(modelpack_config(kf, diff_ids, created))


def diff_ids_of(kf: Kitfile) -> list[str]:
    """The diffIds recorded on a packed Kitfile's entries, in layer order."""
    out = []
    for layer in layer_entries(kf):
        if not layer.entry.diff_id:
            raise KitflowError(f"{layer.kind} layer {layer.path} has not been packed (no diffId)")
        out.append(layer.entry.diff_id)
    return out
