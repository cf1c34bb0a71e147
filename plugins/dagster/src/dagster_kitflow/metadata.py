"""Dagster metadata built from kitflow's result records (PackResult, TransferResult, RunResult).

Only values from the results' ``to_dict()`` and references go in; result records never hold
secrets, so nothing here can leak a password or token.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from itertools import islice
from pathlib import Path
from typing import Any

import dagster as dg
from kitflow.format.reference import DEFAULT_REGISTRY, Reference
from kitflow.results import LayerInfo, PackResult, RunResult, TransferResult

PREVIEW_LINES = 5


def pinned(reference: str, digest: str) -> str:
    """``registry/repository@digest``: exactly this ModelKit, whatever its tag says later."""
    ref = Reference.parse(reference)
    # kit's default registry is implicit: "repo@digest", never "localhost/repo@digest" (which
    # kit would read as repository "localhost/repo").
    name = ref.repository if ref.registry == DEFAULT_REGISTRY else ref.name
    return f"{name}@{digest}"


def _table(
    columns: Sequence[tuple[str, str]], rows: Sequence[dict[str, Any]]
) -> dg.TableMetadataValue:
    """A Dagster table from ``(name, type)`` columns and one dict per row."""
    schema = dg.TableSchema(columns=[dg.TableColumn(name, kind) for name, kind in columns])
    return dg.MetadataValue.table(records=[dg.TableRecord(row) for row in rows], schema=schema)


def layers_table(layers: Sequence[LayerInfo]) -> dg.TableMetadataValue:
    """The ModelKit's layers as a table (kind, path, media type, digest, size)."""
    columns = [
        ("kind", "string"),
        ("path", "string"),
        ("media_type", "string"),
        ("digest", "string"),
        ("size", "int"),
    ]
    rows = [
        {
            "kind": layer.kind,
            "path": layer.path or "",
            "media_type": layer.media_type,
            "digest": layer.digest,
            "size": layer.size,
        }
        for layer in layers
    ]
    return _table(columns, rows)


def modelkit_metadata(
    reference: str,
    packed: PackResult,
    kitfile_yaml: str,
    pushed: TransferResult | None,
    url: str | None,
) -> dict[str, Any]:
    """Metadata of a ModelKit materialization: reference, digest, URL, size, layers, Kitfile."""
    meta: dict[str, Any] = {
        "reference": dg.MetadataValue.text(reference),
        "digest": dg.MetadataValue.text(packed.digest),
        "pinned_reference": dg.MetadataValue.text(pinned(reference, packed.digest)),
        "size": dg.MetadataValue.int(packed.size),
        "layers": layers_table(packed.layers),
        "kitfile": dg.MetadataValue.md(f"```yaml\n{kitfile_yaml.rstrip()}\n```"),
        "pushed": dg.MetadataValue.bool(pushed is not None),
    }
    if url:
        meta["registry_url"] = dg.MetadataValue.url(url)
    if pushed is not None:
        meta["bytes_uploaded"] = dg.MetadataValue.int(pushed.bytes_transferred)
        meta["blobs_skipped"] = dg.MetadataValue.int(pushed.blobs_skipped)
        meta["push_seconds"] = dg.MetadataValue.float(float(pushed.seconds))
    return meta


def shards_table(result: RunResult) -> dg.TableMetadataValue:
    """One row per shard: index, records, status, attempts, seconds."""
    columns = [
        ("shard", "int"),
        ("records", "int"),
        ("status", "string"),
        ("attempts", "int"),
        ("seconds", "float"),
    ]
    rows = [
        {
            "shard": s.index,
            "records": s.records,
            "status": s.status,
            "attempts": s.attempts,
            "seconds": float(s.seconds),
        }
        for s in result.shards
    ]
    return _table(columns, rows)


def preview(path: Path, lines: int = PREVIEW_LINES) -> str:
    """The first ``lines`` predictions as a Markdown code block."""
    with open(path, encoding="utf-8") as fh:
        head = [line.rstrip("\n") for line in islice(fh, lines)]
    return "```json\n" + "\n".join(head) + "\n```"


def inference_metadata(
    reference: str,
    result: RunResult,
    outputs: Mapping[str | None, Path],
    counts: Mapping[str | None, int],
    seconds: float,
) -> dict[str, Any]:
    """Metadata of an inference materialization: counts, timings, shards, outputs, Workflow."""
    meta: dict[str, Any] = {
        "modelkit": dg.MetadataValue.text(reference),
        "model_digest": dg.MetadataValue.text(result.model_digest),
        "backend": dg.MetadataValue.text(result.backend),
        "records": dg.MetadataValue.int(result.records),
        "seconds": dg.MetadataValue.float(round(seconds, 3)),
        "inference_seconds": dg.MetadataValue.float(float(result.seconds)),
        "timings": dg.MetadataValue.json(dict(result.timings)),
        "shards": shards_table(result),
    }
    if len(outputs) == 1:
        only = next(iter(outputs.values()))
        meta["output"] = dg.MetadataValue.path(str(only))
        if only.is_file():
            meta["preview"] = dg.MetadataValue.md(preview(only))
    else:
        meta["outputs"] = dg.MetadataValue.json({str(k): str(v) for k, v in outputs.items()})
        meta["records_by_partition"] = dg.MetadataValue.json({str(k): n for k, n in counts.items()})
    if result.workflow_name:
        meta["workflow"] = dg.MetadataValue.text(
            f"{result.workflow_namespace}/{result.workflow_name}"
        )
    if result.workflow_url:
        meta["workflow_url"] = dg.MetadataValue.url(result.workflow_url)
    if result.comparison is not None:
        meta["comparison"] = dg.MetadataValue.json(json.loads(json.dumps(result.comparison)))
    return meta


def recorded_value(entry: Any, key: str) -> str | None:
    """A text metadata value of a materialization event log entry, or None."""
    mat = getattr(entry, "asset_materialization", None) if entry is not None else None
    if mat is None:
        return None
    value = mat.metadata.get(key)
    if value is None:
        return None
    raw = getattr(value, "value", value)
    return str(raw) if raw is not None else None
