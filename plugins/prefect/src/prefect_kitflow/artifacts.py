"""What the tasks show in the Prefect UI: link, table and markdown artifacts and the ModelKit asset.

Artifacts are described first as plain :class:`ArtifactSpec` values (built only from core result
records, which hold no secrets) and then published with the sync or async Prefect call.
"""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from kitflow.results import LayerInfo, RunResult
from prefect.artifacts import (
    acreate_link_artifact,
    acreate_markdown_artifact,
    acreate_table_artifact,
    create_link_artifact,
    create_markdown_artifact,
    create_table_artifact,
)
from prefect.assets import Asset, AssetProperties, add_asset_metadata, materialize
from prefect.cache_policies import NO_CACHE

PREVIEW_RECORDS = 5


@dataclass(frozen=True)
class ArtifactSpec:
    """One artifact to publish: its kind, key (lowercase, digits, dashes) and content."""

    kind: Literal["link", "table", "markdown"]
    key: str
    content: Any  # link: (url, text); table: list of row dicts; markdown: str
    description: str | None = None


def artifact_key(*parts: str) -> str:
    """A key the Artifacts page accepts: lowercase letters, digits and single dashes."""
    text = "-".join(parts).lower()
    text = re.sub(r"[^a-z0-9]+", "-", text).strip("-")
    return text[:100].rstrip("-") or "kitflow"


def human_size(size: int) -> str:
    """Bytes as kit prints them (the core's ``format_bytes``)."""
    from kitflow.ops.store import format_bytes

    return format_bytes(size)


def split_reference(reference: str) -> tuple[str, str]:
    """(registry, repository) of a ModelKit reference, by the core's reference rules."""
    from kitflow.format.reference import Reference

    ref = Reference.parse(reference)
    return str(ref.registry), str(ref.repository)


def manifest_url(registry: str, repository: str, digest: str, plain_http: bool = False) -> str:
    """The registry API address of the manifest: a stable link to exactly this ModelKit."""
    scheme = "http" if plain_http else "https"
    host = "registry-1.docker.io" if registry == "docker.io" else registry
    return f"{scheme}://{host}/v2/{repository}/manifests/{digest}"


def modelkit_uri(registry: str, repository: str, digest: str) -> str:
    """The asset key of a ModelKit: ``oci://registry/repository@digest``."""
    return f"oci://{registry}/{repository}@{digest}"


def layer_rows(layers: Sequence[LayerInfo]) -> list[dict[str, Any]]:
    """Table rows, one per layer, in manifest order."""
    return [
        {
            "kind": layer.kind or "-",
            "path": layer.path or "-",
            "size": human_size(layer.size),
            "bytes": layer.size,
            "media_type": layer.media_type,
            "digest": layer.digest,
        }
        for layer in layers
    ]


def layers_from_manifest(manifest: dict[str, Any]) -> list[LayerInfo]:
    """``LayerInfo`` records from a manifest dict (as ``kitflow.inspect`` returns it)."""
    from kitflow.format.mediatypes import ANNOTATION_FILEPATH, parse_layer_media_type

    layers = []
    for layer in manifest.get("layers", []):
        media_type = str(layer.get("mediaType", ""))
        parsed = parse_layer_media_type(media_type)
        annotations = layer.get("annotations") or {}
        layers.append(
            LayerInfo(
                media_type=media_type,
                digest=str(layer.get("digest", "")),
                size=int(layer.get("size", 0)),
                path=annotations.get(ANNOTATION_FILEPATH),
                kind=parsed.kind if parsed is not None else "",
            )
        )
    return layers


def read_preview(output: Path | None, limit: int = PREVIEW_RECORDS) -> list[dict[str, Any]]:
    """The first ``limit`` output records (JSON Lines), for the summary; empty if unreadable."""
    if output is None or not Path(output).is_file():
        return []
    rows: list[dict[str, Any]] = []
    with Path(output).open(encoding="utf-8") as fh:
        for line in fh:
            if len(rows) >= limit:
                break
            if line.strip():
                try:
                    value = json.loads(line)
                except json.JSONDecodeError:
                    continue
                rows.append(value if isinstance(value, dict) else {"prediction": value})
    return rows


def _cell(value: Any) -> str:
    text = value if isinstance(value, str) else json.dumps(value, sort_keys=True)
    text = text.replace("|", "\\|").replace("\n", " ")
    return text if len(text) <= 80 else text[:77] + "..."


def inference_markdown(result: RunResult, title: str = "Inference results") -> str:
    """A markdown summary: counts, timing, model, Workflow, shards and a predictions preview."""
    lines = [f"# {title}", ""]
    lines.append("| | |")
    lines.append("|---|---|")
    lines.append(f"| backend | {result.backend} |")
    lines.append(f"| phase | {result.phase} |")
    lines.append(f"| records | {result.records} |")
    lines.append(f"| model digest | `{result.model_digest}` |")
    lines.append(f"| seconds | {result.seconds:.2f} |")
    if result.output is not None:
        lines.append(f"| output | `{result.output}` |")
    if result.workflow_name:
        where = f"{result.workflow_namespace}/{result.workflow_name}"
        link = f"[{where}]({result.workflow_url})" if result.workflow_url else where
        lines.append(f"| workflow | {link} |")
    if result.shards:
        lines += ["", "## Shards", "", "| shard | records | status | attempts | seconds |"]
        lines.append("|---|---|---|---|---|")
        for shard in result.shards:
            lines.append(
                f"| {shard.index} | {shard.records} | {shard.status} | {shard.attempts} "
                f"| {shard.seconds:.2f} |"
            )
    if result.comparison:
        lines += ["", "## Comparison", "", "```json"]
        lines.append(json.dumps(result.comparison, indent=2, sort_keys=True, default=str))
        lines.append("```")
    preview = read_preview(result.output)
    if preview:
        columns: list[str] = []
        for row in preview:
            columns += [c for c in row if c not in columns]
        lines += ["", f"## First {len(preview)} predictions", ""]
        lines.append("| " + " | ".join(columns) + " |")
        lines.append("|" + "---|" * len(columns))
        for row in preview:
            lines.append("| " + " | ".join(_cell(row.get(c, "")) for c in columns) + " |")
    return "\n".join(lines) + "\n"


def publish(specs: Sequence[ArtifactSpec]) -> list[str]:
    """Create each artifact (sync); returns the artifact ids."""
    ids = []
    for spec in specs:
        if spec.kind == "link":
            url, text = spec.content
            made = create_link_artifact(
                url, link_text=text, key=spec.key, description=spec.description
            )
        elif spec.kind == "table":
            made = create_table_artifact(spec.content, key=spec.key, description=spec.description)
        else:
            made = create_markdown_artifact(
                spec.content, key=spec.key, description=spec.description
            )
        ids.append(str(made))
    return ids


async def apublish(specs: Sequence[ArtifactSpec]) -> list[str]:
    """Create each artifact (async twin of :func:`publish`)."""
    ids = []
    for spec in specs:
        if spec.kind == "link":
            url, text = spec.content
            made = await acreate_link_artifact(
                url, link_text=text, key=spec.key, description=spec.description
            )
        elif spec.kind == "table":
            made = await acreate_table_artifact(
                spec.content, key=spec.key, description=spec.description
            )
        else:
            made = await acreate_markdown_artifact(
                spec.content, key=spec.key, description=spec.description
            )
        ids.append(str(made))
    return ids


@materialize(
    "oci://kitflow/placeholder",
    name="record_modelkit_asset",
    cache_policy=NO_CACHE,
    persist_result=False,
)
def _materialize_modelkit(uri: str, metadata: dict[str, Any]) -> str:
    add_asset_metadata(uri, metadata)
    return uri


def record_modelkit_asset(
    uri: str, *, name: str, url: str | None = None, metadata: dict[str, Any] | None = None
) -> str:
    """Record the ModelKit as a materialised Prefect asset (``oci://registry/repo@digest``)."""
    asset = Asset(key=uri, properties=AssetProperties(name=name, url=url))
    return _materialize_modelkit.with_options(assets=[asset])(uri, metadata or {})
