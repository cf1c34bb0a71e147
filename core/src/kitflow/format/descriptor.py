"""OCI descriptors and manifests, serialised with Go's field order so digests match kit's."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_INDEX = "application/vnd.oci.image.index.v1+json"
DOCKER_MANIFEST = "application/vnd.docker.distribution.manifest.v2+json"
DOCKER_MANIFEST_LIST = "application/vnd.docker.distribution.manifest.list.v2+json"
MANIFEST_MEDIA_TYPES = frozenset({OCI_MANIFEST, OCI_INDEX, DOCKER_MANIFEST, DOCKER_MANIFEST_LIST})


@dataclass(frozen=True)
class Descriptor:
    """An OCI content descriptor: what a blob is, its digest and its size."""

    media_type: str
    digest: str
    size: int
    annotations: dict[str, str] = field(default_factory=dict)
    artifact_type: str | None = None

    def to_json(self) -> dict[str, Any]:
        """Dict in ocispec.Descriptor field order (mediaType, digest, size, annotations, ...)."""
        out: dict[str, Any] = {
            "mediaType": self.media_type,
            "digest": self.digest,
            "size": self.size,
        }
        if self.annotations:
            out["annotations"] = dict(sorted(self.annotations.items()))
        if self.artifact_type:
            out["artifactType"] = self.artifact_type
        return out

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Descriptor:
        """Parse a descriptor object from a manifest, an index or a tags file."""
        return cls(
            media_type=str(data.get("mediaType", "")),
            digest=str(data["digest"]),
            size=int(data["size"]),
            annotations=dict(data.get("annotations") or {}),
            artifact_type=data.get("artifactType"),
        )

    @property
    def is_manifest(self) -> bool:
        return self.media_type in MANIFEST_MEDIA_TYPES


@dataclass(frozen=True)
class Manifest:
    """An OCI image manifest as kit writes it (no top-level mediaType unless given)."""

    config: Descriptor
    layers: list[Descriptor]
    annotations: dict[str, str] = field(default_factory=dict)
    artifact_type: str | None = None
    media_type: str | None = None  # kit leaves it out; ModelPack tools write it
    schema_version: int = 2
    subject: Descriptor | None = None

    def to_json(self) -> dict[str, Any]:
        """Dict in ocispec.Manifest field order."""
        out: dict[str, Any] = {"schemaVersion": self.schema_version}
        if self.media_type:
            out["mediaType"] = self.media_type
        if self.artifact_type:
            out["artifactType"] = self.artifact_type
        out["config"] = self.config.to_json()
        out["layers"] = [layer.to_json() for layer in self.layers]
        if self.subject is not None:
            out["subject"] = self.subject.to_json()
        if self.annotations:
            out["annotations"] = dict(sorted(self.annotations.items()))
        return out

    def to_bytes(self) -> bytes:
        """Compact JSON bytes as Go's json.Marshal writes them (the digest is of these bytes)."""
        from kitflow.format.gojson import go_json_dumps

        return go_json_dumps(self.to_json())

    @classmethod
    def from_bytes(cls, data: bytes) -> Manifest:
        """Parse manifest bytes from any source (kit, modctl, skopeo, ...)."""
        obj = json.loads(data)
        return cls(
            config=Descriptor.from_json(obj["config"]),
            layers=[Descriptor.from_json(d) for d in obj.get("layers") or []],
            annotations=dict(obj.get("annotations") or {}),
            artifact_type=obj.get("artifactType"),
            media_type=obj.get("mediaType"),
            schema_version=int(obj.get("schemaVersion", 2)),
            subject=Descriptor.from_json(obj["subject"]) if obj.get("subject") else None,
        )
