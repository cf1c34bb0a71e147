"""Plain result records returned by the API; ``to_dict()`` gives JSON-safe dicts for XCom,
Prefect artifacts and Dagster metadata (no secrets ever live in them)."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any


def _plain(value: Any) -> Any:
    if isinstance(value, Path):
        return str(value)
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: _plain(getattr(value, f.name)) for f in dataclasses.fields(value)}
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    return value


class _ToDict:
    def to_dict(self) -> dict[str, Any]:
        """JSON-safe dict of every field."""
        result = _plain(self)
        assert isinstance(result, dict)
        return result


@dataclass(frozen=True)
class LayerInfo(_ToDict):
    """One layer of a ModelKit as the user thinks of it."""

    media_type: str
    digest: str
    size: int
    path: str | None = None  # org.cncf.model.filepath
    kind: str = ""  # model, modelpart, code, dataset, docs, prompt, mcpserver


@dataclass(frozen=True)
class PackResult(_ToDict):
    """What `pack` made: the manifest digest, the tag it stored, the layers and their sizes."""

    reference: str | None  # e.g. "localhost/sentiment:v1" or None if untagged
    digest: str  # manifest digest
    config_digest: str
    size: int  # sum of layer sizes
    layers: list[LayerInfo] = field(default_factory=list)
    bytes_read: int = 0  # bytes hashed from the context (0 for fully cached re-packs)
    seconds: float = 0.0


@dataclass(frozen=True)
class TransferResult(_ToDict):
    """What push, pull or copy moved: bytes sent, skipped (already there), mounted, retried."""

    source: str
    destination: str
    digest: str
    size: int
    blobs: int = 0
    bytes_transferred: int = 0
    bytes_skipped: int = 0
    blobs_skipped: int = 0
    blobs_mounted: int = 0
    retries: int = 0
    seconds: float = 0.0


@dataclass(frozen=True)
class UnpackResult(_ToDict):
    """What `unpack` wrote: the directory, the files and bytes, the manifest digest."""

    reference: str
    digest: str
    directory: Path
    files: int = 0
    bytes_written: int = 0
    layers: int = 0
    kitfile_written: bool = False


@dataclass(frozen=True)
class ModelKitSummary(_ToDict):
    """A row of `list`: one tagged (or untagged) ModelKit in the local store."""

    repository: str
    tags: list[str]
    digest: str
    name: str
    author: str
    size: int


@dataclass(frozen=True)
class ShardStatus(_ToDict):
    """The outcome of one shard of a batch run."""

    index: int
    records: int
    status: str  # "Succeeded", "Failed", "Pending", "Running"
    attempts: int = 1
    seconds: float = 0.0
    message: str = ""


@dataclass(frozen=True)
class RunResult(_ToDict):
    """What `run` produced: where the predictions are, how many, how long, with which model."""

    output: Path | None
    records: int
    model_digest: str
    backend: str  # "local" or "argo"
    shards: list[ShardStatus] = field(default_factory=list)
    seconds: float = 0.0
    timings: dict[str, float] = field(default_factory=dict)
    workflow_name: str | None = None
    workflow_namespace: str | None = None
    workflow_url: str | None = None
    phase: str = "Succeeded"
    comparison: dict[str, Any] | None = None  # for several kits on the same inputs
    workflow: dict[str, Any] | None = None  # Argo dry run: the Workflow that would be submitted
