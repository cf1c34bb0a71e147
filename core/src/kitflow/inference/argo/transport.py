"""How inputs and results travel through the OCI registry the kit lives in.

Inputs: one OCI artifact (artifactType ``application/vnd.kitflow.inputs.v1``) whose layers are
the JSON Lines shards, pushed by the submitter and tagged ``kitflow-inputs-<digest>``. Results:
each shard pod pushes its predictions as a blob; the gather step writes a results artifact
listing them in shard order, tagged ``kitflow-results-<job>-<kit index>``. Only references and
digests ever appear in the Workflow.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO

from kitflow.content.digest import sha256_digest
from kitflow.content.registry import Registry
from kitflow.errors import KitflowError
from kitflow.format.descriptor import OCI_MANIFEST, Descriptor, Manifest
from kitflow.inference import io
from kitflow.options import RegistryOptions

INPUTS_ARTIFACT_TYPE = "application/vnd.kitflow.inputs.v1"
RESULTS_ARTIFACT_TYPE = "application/vnd.kitflow.results.v1"
INPUTS_CONFIG_TYPE = "application/vnd.kitflow.inputs.config.v1+json"
RESULTS_CONFIG_TYPE = "application/vnd.kitflow.results.config.v1+json"
SHARD_MEDIA_TYPE = "application/vnd.kitflow.shard.v1+jsonl"
RESULT_MEDIA_TYPE = "application/vnd.kitflow.result.v1+jsonl"
ANN_SHARD = "dev.kitflow.shard"
ANN_RECORDS = "dev.kitflow.records"
ANN_START = "dev.kitflow.start"
ANN_LINE = "dev.kitflow.line"
_CHUNK = 1 << 20


@dataclass(frozen=True)
class ShardBlob:
    """One shard of the inputs artifact, as its layer says."""

    index: int
    records: int
    start: int  # index of its first record in the whole input
    line: int  # line number of its first record in the user's file
    descriptor: Descriptor


@dataclass(frozen=True)
class InputsArtifact:
    """The pushed (or, in a dry run, computed) inputs: its pinned reference and its shards."""

    reference: str  # registry/repo@sha256:...
    digest: str
    records: int
    source: str  # the user's file name, for messages
    shards: list[ShardBlob]


def split_reference(reference: str) -> tuple[str, str]:
    """``registry/repo@sha256:...`` → (``registry/repo``, digest)."""
    name, sep, digest = reference.rpartition("@")
    if not sep or not digest.startswith("sha256:"):
        raise KitflowError(f"{reference!r} is not pinned by digest (registry/repo@sha256:...)")
    return name, digest


def repository(name: str, registry: RegistryOptions | None, *, push: bool = False) -> Registry:
    """The registry repository ``registry/repo`` (ready to push when ``push``)."""
    repo = Registry(name, registry)
    repo.push_scope = push
    return repo


def _hash_file(path: Path) -> tuple[str, int]:
    h = hashlib.sha256()
    size = 0
    with open(path, "rb") as fh:
        while chunk := fh.read(_CHUNK):
            h.update(chunk)
            size += len(chunk)
    return "sha256:" + h.hexdigest(), size


def _manifest(
    config_type: str, config: dict[str, Any], artifact_type: str, layers: list[Descriptor]
) -> tuple[Descriptor, bytes, Descriptor, bytes]:
    config_bytes = json.dumps(config, sort_keys=True, separators=(",", ":")).encode()
    config_desc = Descriptor(config_type, sha256_digest(config_bytes), len(config_bytes))
    manifest = Manifest(
        config=config_desc, layers=layers, artifact_type=artifact_type, media_type=OCI_MANIFEST
    )
    data = manifest.to_bytes()
    return Descriptor(OCI_MANIFEST, sha256_digest(data), len(data)), data, config_desc, config_bytes


@contextmanager
def prepared_shards(
    prepared: io.PreparedInput, shards: int
) -> Iterator[list[tuple[ShardBlob, Path]]]:
    """Write each shard's records (normalised JSON Lines) to a temporary file and hash it."""
    spans = io.plan_shards(prepared, shards)
    if not spans:
        raise KitflowError(f"{prepared.source} has no records to score")
    work = Path(tempfile.mkdtemp(prefix="kitflow-shards-"))
    try:
        out = []
        for span in spans:
            path = work / f"shard-{span.index:05d}.jsonl"
            io.write_span(prepared.path, span, path)
            digest, size = _hash_file(path)
            desc = Descriptor(
                SHARD_MEDIA_TYPE,
                digest,
                size,
                annotations={
                    ANN_SHARD: str(span.index),
                    ANN_RECORDS: str(span.count),
                    ANN_START: str(span.start),
                    ANN_LINE: str(span.line),
                },
            )
            out.append((ShardBlob(span.index, span.count, span.start, span.line, desc), path))
        yield out
    finally:
        shutil.rmtree(work, ignore_errors=True)


def push_inputs(
    prepared: io.PreparedInput,
    shards: int,
    repo_name: str,
    registry: RegistryOptions | None,
    *,
    dry_run: bool = False,
) -> InputsArtifact:
    """Split the inputs into shards and push them as one artifact to ``repo_name``; with
    ``dry_run`` only compute its digest (the same digest a real push gives)."""
    with prepared_shards(prepared, shards) as parts:
        config = {"records": prepared.records, "shards": len(parts), "source": prepared.source.name}
        desc, data, config_desc, config_bytes = _manifest(
            INPUTS_CONFIG_TYPE, config, INPUTS_ARTIFACT_TYPE, [b.descriptor for b, _ in parts]
        )
        if not dry_run:
            repo = repository(repo_name, registry, push=True)
            try:
                for blob, path in parts:
                    if not repo.exists(blob.descriptor):
                        with open(path, "rb") as fh:
                            repo.upload(blob.descriptor, fh)
                repo.push_bytes(config_desc, config_bytes)
                repo.push_manifest(desc, data, f"kitflow-inputs-{desc.digest[7:23]}")
            finally:
                repo.close()
        return InputsArtifact(
            f"{repo_name}@{desc.digest}",
            desc.digest,
            prepared.records,
            prepared.source.name,
            [b for b, _ in parts],
        )


def _read_manifest(repo: Registry, digest: str) -> tuple[dict[str, Any], dict[str, Any]]:
    resolved = repo.resolve(digest)
    desc = Descriptor(resolved.media_type or OCI_MANIFEST, digest, resolved.size)
    manifest = json.loads(repo.fetch_bytes(desc))
    cfg = Descriptor.from_json(manifest["config"])
    return manifest, json.loads(repo.fetch_bytes(cfg))


def load_inputs(reference: str, registry: RegistryOptions | None) -> InputsArtifact:
    """Read the inputs artifact's manifest (no shard content)."""
    name, digest = split_reference(reference)
    repo = repository(name, registry)
    try:
        manifest, config = _read_manifest(repo, digest)
    finally:
        repo.close()
    if manifest.get("artifactType") != INPUTS_ARTIFACT_TYPE:
        raise KitflowError(f"{reference} is not a kitflow inputs artifact")
    shards = []
    for layer in manifest.get("layers") or []:
        d = Descriptor.from_json(layer)
        a = d.annotations
        shards.append(
            ShardBlob(
                int(a[ANN_SHARD]), int(a[ANN_RECORDS]), int(a[ANN_START]), int(a[ANN_LINE]), d
            )
        )
    return InputsArtifact(
        reference,
        digest,
        int(config["records"]),
        str(config.get("source", "")),
        sorted(shards, key=lambda s: s.index),
    )


def download(
    repo_name: str, desc: Descriptor, dest: Path, registry: RegistryOptions | None
) -> None:
    """Stream one verified blob to ``dest``."""
    repo = repository(repo_name, registry)
    try:
        with repo.fetch(desc) as reader, open(dest, "wb") as out:
            _copy(reader, out)
    finally:
        repo.close()


def _copy(reader: BinaryIO, out: BinaryIO) -> None:
    while chunk := reader.read(_CHUNK):
        out.write(chunk)


def push_result(repo_name: str, path: Path, registry: RegistryOptions | None) -> Descriptor:
    """Push one shard's predictions (a JSON Lines file) as a blob; returns its descriptor."""
    digest, size = _hash_file(path)
    desc = Descriptor(RESULT_MEDIA_TYPE, digest, size)
    repo = repository(repo_name, registry, push=True)
    try:
        if not repo.exists(desc):
            with open(path, "rb") as fh:
                repo.upload(desc, fh)
    finally:
        repo.close()
    return desc


@dataclass(frozen=True)
class ShardResult:
    """What a shard pod reports through its output parameter (small, no records)."""

    shard: int
    digest: str
    size: int
    records: int
    seconds: float
    predict_seconds: float

    def to_json(self) -> dict[str, Any]:
        """The compact form written to the output parameter."""
        return {
            "shard": self.shard,
            "digest": self.digest,
            "size": self.size,
            "records": self.records,
            "seconds": round(self.seconds, 4),
            "predict_seconds": round(self.predict_seconds, 4),
        }

    @classmethod
    def from_json(cls, data: Any) -> ShardResult:
        """Parse one item of Argo's aggregated list (a dict, or a JSON string of one)."""
        if isinstance(data, str):
            data = json.loads(data)
        return cls(
            int(data["shard"]),
            str(data["digest"]),
            int(data["size"]),
            int(data["records"]),
            float(data.get("seconds", 0)),
            float(data.get("predict_seconds", 0)),
        )


def parse_results(text: str) -> list[ShardResult]:
    """Argo's aggregated ``outputs.parameters.result`` of a fan-out: a JSON list whose items are
    objects (or JSON strings of objects when Argo could not parse every item)."""
    try:
        items = json.loads(text)
    except ValueError as exc:
        raise KitflowError(f"shard results are not JSON: {exc}") from None
    if isinstance(items, dict):
        items = [items]
    if not isinstance(items, list):
        raise KitflowError("shard results must be a JSON list")
    return sorted((ShardResult.from_json(i) for i in items), key=lambda r: r.shard)


def push_results(
    repo_name: str,
    tag: str,
    config: dict[str, Any],
    results: list[ShardResult],
    registry: RegistryOptions | None,
) -> str:
    """Write the results artifact (layers = result blobs in shard order); returns its pinned
    reference."""
    layers = [
        Descriptor(
            RESULT_MEDIA_TYPE,
            r.digest,
            r.size,
            annotations={ANN_SHARD: str(r.shard), ANN_RECORDS: str(r.records)},
        )
        for r in results
    ]
    desc, data, config_desc, config_bytes = _manifest(
        RESULTS_CONFIG_TYPE, config, RESULTS_ARTIFACT_TYPE, layers
    )
    repo = repository(repo_name, registry, push=True)
    try:
        missing = [d.digest for d in layers if not repo.exists(d)]
        if missing:
            raise KitflowError(f"result blob {missing[0]} is missing from {repo_name}")
        repo.push_bytes(config_desc, config_bytes)
        repo.push_manifest(desc, data, tag)
    finally:
        repo.close()
    return f"{repo_name}@{desc.digest}"


def result_layers(reference: str, registry: RegistryOptions | None) -> list[Descriptor]:
    """The result blobs of a results artifact, in shard order."""
    name, digest = split_reference(reference)
    repo = repository(name, registry)
    try:
        manifest, _ = _read_manifest(repo, digest)
    finally:
        repo.close()
    if manifest.get("artifactType") != RESULTS_ARTIFACT_TYPE:
        raise KitflowError(f"{reference} is not a kitflow results artifact")
    layers = [Descriptor.from_json(x) for x in manifest.get("layers") or []]
    return sorted(layers, key=lambda d: int(d.annotations.get(ANN_SHARD, 0)))


def iter_result_lines(
    reference: str, registry: RegistryOptions | None, work: Path
) -> Iterator[bytes]:
    """Every prediction line of a results artifact, in input order (blobs streamed one at a
    time through ``work``)."""
    name, _ = split_reference(reference)
    for n, layer in enumerate(result_layers(reference, registry)):
        part = work / f"result-{n:05d}.jsonl"
        download(name, layer, part, registry)
        try:
            with open(part, "rb") as fh:
                for line in fh:
                    if line.strip():
                        yield line.rstrip(b"\n")
        finally:
            part.unlink(missing_ok=True)
