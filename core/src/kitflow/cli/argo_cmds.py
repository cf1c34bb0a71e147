"""Hidden commands the Argo Workflow's pods run (``kitflow argo-shard``, ``argo-gather``,
``argo-compare``); each is a thin wrapper over ``kitflow.inference.argo.pod``."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click

from kitflow.cli.common import registry_options
from kitflow.options import RegistryOptions


def register(group: click.Group) -> None:
    """Add the pod-side commands (hidden from ``kitflow --help``)."""

    @group.command("argo-shard", hidden=True)
    @click.option("--kit", required=True, help="Pinned ModelKit reference (repo@sha256:...).")
    @click.option("--inputs", required=True, help="Pinned inputs artifact reference.")
    @click.option("--shard", type=int, required=True, help="Shard index to score.")
    @click.option("--results-repo", required=True, help="registry/repo to push results to.")
    @click.option("--job", default="", help="Job id (for labels and tags).")
    @click.option(
        "--out",
        type=click.Path(path_type=Path),
        required=True,
        help="Where to write the shard's result record (an output parameter).",
    )
    @click.option(
        "--prediction-out",
        type=click.Path(path_type=Path),
        default=None,
        help="Single inference: write the first prediction here.",
    )
    @click.option("--entrypoint", default=None, help="Entrypoint override (JSON).")
    @click.option("--batch-size", type=int, default=256)
    @click.option("--id-field", default="id")
    @click.option(
        "--kit-dir",
        type=click.Path(path_type=Path),
        default=None,
        help="Use a kit already unpacked here (kitops-init) instead of pulling it.",
    )
    @registry_options
    def argo_shard(registry: RegistryOptions, job: str, **kw: Any) -> None:
        """Score one shard of a Workflow's inputs (runs inside an Argo pod)."""
        from kitflow.inference.argo.pod import run_shard

        result = run_shard(registry=registry, **kw)
        click.echo(f"shard {result.shard}: {result.records} records -> {result.digest}")

    @group.command("argo-gather", hidden=True)
    @click.option("--kit", required=True)
    @click.option("--inputs", required=True)
    @click.option("--results-repo", required=True)
    @click.option("--job", required=True)
    @click.option("--results", required=True, help="Argo's aggregated shard results (JSON).")
    @click.option("--out", type=click.Path(path_type=Path), required=True)
    @registry_options
    def argo_gather(registry: RegistryOptions, **kw: Any) -> None:
        """Assemble one kit's shard results into a results artifact (runs inside an Argo pod)."""
        from kitflow.inference.argo.pod import gather

        summary = gather(registry=registry, **kw)
        click.echo(f"{summary['records']} predictions -> {summary['results']}")

    @group.command("argo-compare", hidden=True)
    @click.option("--summaries", required=True, help="JSON list of gather summaries.")
    @click.option("--results-repo", default="")
    @click.option("--job", default="")
    @click.option("--out", type=click.Path(path_type=Path), required=True)
    @registry_options
    def argo_compare(registry: RegistryOptions, summaries: str, out: Path, **_: Any) -> None:
        """Compare several kits' results on the same inputs (runs inside an Argo pod)."""
        from kitflow.inference.argo.pod import compare

        report = compare(summaries=summaries, out=out, registry=registry)
        click.echo(f"agreement {report['agreement']:.4f} over {report['records']} records")
