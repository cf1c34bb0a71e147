"""Media types and annotation keys of Kit ModelKits and CNCF ModelPacks (kit's constants).

One place that builds and parses layer media types, so packing, unpacking and copying agree.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

# Config blobs and manifest artifact types.
KIT_CONFIG = "application/vnd.kitops.modelkit.config.v1+json"
KIT_ARTIFACT_TYPE = "application/vnd.kitops.modelkit.manifest.v1+json"
KIT_INDEX_ARTIFACT_TYPE = "application/vnd.kitops.modelkit.index.v1+json"
MODELPACK_CONFIG = "application/vnd.cncf.model.config.v1+json"
MODELPACK_ARTIFACT_TYPE = "application/vnd.cncf.model.manifest.v1+json"
MCPB_MEDIA_TYPE = "application/vnd.kitops.modelkit.mcpb.v1.raw"

# Annotation keys.
ANNOTATION_FILEPATH = "org.cncf.model.filepath"
ANNOTATION_FILE_METADATA = "org.cncf.model.file.metadata+json"
ANNOTATION_LAYER_SUBTYPE = "ml.kitops.modelkit.layer-subtype"
ANNOTATION_CLI_VERSION = "ml.kitops.modelkit.cli-version"
ANNOTATION_KITFILE = "ml.kitops.modelkit.kitfile"
ANNOTATION_CREATED = "org.opencontainers.image.created"
LAYER_SUBTYPE_PROMPT = "prompt"

# Kitfile entry kinds (as used by layer_entries) -> base name in each format.
KINDS = ("model", "modelpart", "code", "dataset", "docs", "prompt", "mcpserver")
_KIT_BASE = {
    "model": "model",
    "modelpart": "modelpart",
    "code": "code",
    "dataset": "dataset",
    "docs": "docs",
    "prompt": "code",
    "mcpserver": "mcpb",
}
_MODELPACK_BASE = {
    "model": "weight",
    "modelpart": "weight.config",
    "code": "code",
    "dataset": "dataset",
    "docs": "doc",
    "prompt": "code",
}
# Reverse maps: base name -> kind (prompt layers are code layers with an annotation).
_KIT_KIND = {
    "model": "model",
    "modelpart": "modelpart",
    "code": "code",
    "dataset": "dataset",
    "docs": "docs",
    "mcpb": "mcpserver",
}
_MODELPACK_KIND = {
    "weight": "model",
    "weight.config": "modelpart",
    "code": "code",
    "dataset": "dataset",
    "doc": "docs",
}

LAYER_FORMATS = ("tar", "raw")
COMPRESSIONS = ("none", "gzip", "gzip-fastest", "zstd")

_KIT_RE = re.compile(r"^application/vnd\.kitops\.modelkit\.(\w+)\.v1\.(\w+)(?:\+(\w+))?$")
_MODELPACK_RE = re.compile(
    r"^application/vnd\.cncf\.model\.(\w+(?:\.\w+)?)\.v1\.(\w+)(?:\+(\w+))?$"
)
# Before 2025-06-30 model-spec used the vnd.cnai prefix; older tools still write it.
_CNAI_RE = re.compile(r"^application/vnd\.cnai\.model\.(\w+(?:\.\w+)?)\.v1\.(\w+)(?:\+(\w+))?$")


@dataclass(frozen=True)
class LayerMediaType:
    """A parsed layer media type: entry kind, tar or raw, compression, and which format family."""

    kind: str
    layer_format: str = "tar"
    compression: str = "none"
    model_pack: bool = False

    def __str__(self) -> str:
        return layer_media_type(self.kind, self.layer_format, self.compression, self.model_pack)


def _suffix(compression: str) -> str:
    if compression in ("none", ""):
        return ""
    if compression in ("gzip", "gzip-fastest"):
        return "+gzip"
    if compression == "zstd":
        return "+zstd"
    raise ValueError(f"unknown compression {compression!r}")


def layer_media_type(
    kind: str, layer_format: str = "tar", compression: str = "none", model_pack: bool = False
) -> str:
    """Media type kit gives a layer of ``kind`` (model, modelpart, code, dataset, docs, prompt,
    mcpserver) in the given format and compression; ``gzip-fastest`` shares ``+gzip``."""
    if layer_format not in LAYER_FORMATS:
        raise ValueError(f"unknown layer format {layer_format!r}")
    if kind == "mcpserver":
        if model_pack:
            raise ValueError("mcpServers are not supported when packing in modelpack format")
        return MCPB_MEDIA_TYPE
    table = _MODELPACK_BASE if model_pack else _KIT_BASE
    if kind not in table:
        raise ValueError(f"unknown layer kind {kind!r}")
    if model_pack and layer_format == "raw" and compression not in ("none", ""):
        raise ValueError("compression for raw layers is not supported for ModelPack")
    prefix = "application/vnd.cncf.model." if model_pack else "application/vnd.kitops.modelkit."
    return f"{prefix}{table[kind]}.v1.{layer_format}{_suffix(compression)}"


def parse_layer_media_type(media_type: str) -> LayerMediaType | None:
    """Parse a Kit or ModelPack layer media type; None when kitflow does not know it.

    Prompt layers parse as ``code`` (the prompt subtype lives in an annotation).
    """
    for regex, kinds, model_pack in (
        (_KIT_RE, _KIT_KIND, False),
        (_MODELPACK_RE, _MODELPACK_KIND, True),
        (_CNAI_RE, _MODELPACK_KIND, True),
    ):
        match = regex.match(media_type)
        if not match:
            continue
        base, fmt, comp = match.group(1), match.group(2), match.group(3)
        kind = kinds.get(base)
        if kind is None or fmt not in LAYER_FORMATS:
            return None
        if comp is None:
            compression = "none"
        elif comp in ("gzip", "zstd"):
            compression = comp
        else:
            return None
        if model_pack and fmt == "raw" and compression != "none":
            return None
        return LayerMediaType(kind, fmt, compression, model_pack)
    return None


def _get(obj: Any, *names: str) -> Any:
    for name in names:
        if isinstance(obj, dict):
            if name in obj:
                return obj[name]
        elif hasattr(obj, name):
            return getattr(obj, name)
    return None


def is_modelkit_manifest(manifest: Any) -> bool:
    """True for a Kit or ModelPack manifest (artifactType or config media type says so).

    Accepts a :class:`~kitflow.format.descriptor.Manifest` or its JSON dict.
    """
    return manifest_format(manifest) is not None


def manifest_format(manifest: Any) -> str | None:
    """``"kit"``, ``"modelpack"`` or None, by kit's rule: artifactType first, then config type."""
    artifact_type = _get(manifest, "artifact_type", "artifactType")
    config = _get(manifest, "config")
    config_type = _get(config, "media_type", "mediaType") if config is not None else None
    if artifact_type == KIT_ARTIFACT_TYPE or config_type == KIT_CONFIG:
        return "kit"
    if artifact_type == MODELPACK_ARTIFACT_TYPE or config_type == MODELPACK_CONFIG:
        return "modelpack"
    return None


def is_model_pack_config(media_type: str) -> bool:
    """True for the CNCF ModelPack config media type."""
    return media_type == MODELPACK_CONFIG
