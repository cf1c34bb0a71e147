"""`kitflow run`: batch inference with one or more ModelKits, on this machine or on Argo."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import click

from kitflow.cli.common import emit_json, home_option, json_option, registry_options
from kitflow.errors import KitflowError
from kitflow.options import ArgoOptions, RegistryOptions, Resources
from kitflow.results import RunResult


def _key_values(pairs: tuple[str, ...], flag: str) -> dict[str, str]:
    values: dict[str, str] = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise click.BadParameter(f"expected KEY=VALUE, got {pair!r}", param_hint=flag)
        values[key] = value
    return values


def _tolerations(items: tuple[str, ...]) -> list[dict[str, Any]]:
    """``key=value:Effect`` or ``key:Effect`` or ``key`` (operator Exists) as Kubernetes does."""
    result: list[dict[str, Any]] = []
    for item in items:
        spec, _, effect = item.partition(":")
        key, sep, value = spec.partition("=")
        if not key:
            raise click.BadParameter(f"expected KEY[=VALUE][:EFFECT], got {item!r}")
        toleration: dict[str, Any] = {"key": key}
        if sep:
            toleration.update(operator="Equal", value=value)
        else:
            toleration["operator"] = "Exists"
        if effect:
            toleration["effect"] = effect
        result.append(toleration)
    return result


def argo_options_from_flags(**flags: Any) -> ArgoOptions:
    """ArgoOptions from the environment (argo CLI names) with the command-line flags on top."""
    overrides: dict[str, Any] = {
        "server": flags.get("argo_server"),
        "namespace": flags.get("namespace"),
        "image": flags.get("image"),
        "service_account": flags.get("service_account"),
        "registry_secret": flags.get("registry_secret"),
        "kubeconfig": flags.get("kubeconfig"),
        "kube_context": flags.get("kube_context"),
        "active_deadline_seconds": flags.get("active_deadline"),
    }
    if flags.get("argo_insecure"):
        overrides["insecure_skip_verify"] = True
    if flags.get("argo_plain_http"):
        overrides["secure"] = False
    if flags.get("argo_retries") is not None:
        overrides["retries"] = flags["argo_retries"]
    cpu, memory, gpu = flags.get("cpu"), flags.get("memory"), flags.get("gpu")
    if cpu is not None or memory is not None or gpu:
        overrides["resources"] = Resources(cpu=cpu, memory=memory, gpu=gpu or 0)
    selectors = _key_values(flags.get("node_selector") or (), "--node-selector")
    if selectors:
        overrides["node_selector"] = selectors
    tolerations = _tolerations(flags.get("toleration") or ())
    if tolerations:
        overrides["tolerations"] = tolerations
    return ArgoOptions.from_env(**overrides)


def _summary(result: RunResult, dry_run: bool) -> str:
    lines: list[str] = []
    workflow = getattr(result, "workflow", None)
    if dry_run and workflow is not None:
        return json.dumps(workflow, indent=2)
    if dry_run and result.backend == "local":
        lines.append(
            f"Dry run: {result.records} records in {len(result.shards)} shard(s); nothing scored."
        )
        return "\n".join(lines)
    if result.workflow_name:
        where = f"{result.workflow_namespace}/{result.workflow_name}"
        lines.append(f"Workflow {where}: {result.phase}")
        if result.workflow_url:
            lines.append(f"  {result.workflow_url}")
    if result.output is not None:
        rate = (
            f" ({result.records / result.seconds:,.0f} records/s)"
            if result.seconds and result.records >= 1000
            else ""
        )
        lines.append(
            f"Wrote {result.records} predictions to {result.output} "
            f"in {result.seconds:.2f} s{rate}, {len(result.shards)} shard(s)"
        )
    if result.model_digest:
        lines.append(f"Model {result.model_digest}")
    comparison = result.comparison
    if comparison:
        lines.append(
            f"Agreement {100 * float(comparison.get('agreement', 0)):.1f}% "
            f"({comparison.get('disagreements', 0)} of {comparison.get('records', 0)} differ)"
        )
        for model in comparison.get("models", []):
            lines.append(
                f"  {model.get('reference')}: {model.get('latency_ms_per_record', 0):.4f} "
                f"ms/record in predict"
            )
    return "\n".join(lines)


def register(group: click.Group) -> None:
    """Add ``run`` to the CLI."""

    @group.command("run")
    @click.argument("references", nargs=-1, required=True, metavar="REF [REF...]")
    @click.option(
        "-i",
        "--input",
        "input_path",
        type=click.Path(dir_okay=False, path_type=Path),
        default=None,
        help="Input records: JSON Lines (.jsonl), CSV or Parquet.",
    )
    @click.option(
        "-o",
        "--output",
        "output_path",
        type=click.Path(dir_okay=False, path_type=Path),
        default=None,
        help="Where to write predictions (JSON Lines; written only if every shard succeeds).",
    )
    @click.option(
        "--backend",
        type=click.Choice(["local", "argo"]),
        default="local",
        show_default=True,
        help="Run on this machine or on Argo Workflows.",
    )
    @click.option("--shards", type=click.IntRange(min=1), default=None, help="Input shards.")
    @click.option(
        "--parallelism", type=click.IntRange(min=1), default=None, help="Shards run at once."
    )
    @click.option(
        "--entrypoint",
        default=None,
        help="Override the Kitfile's entrypoint: a .py file in the kit, or a command with "
        "{input} and {output}.",
    )
    @click.option("--dataset", default=None, help="Score a dataset of the ModelKit (by name).")
    @click.option(
        "--batch-size",
        type=click.IntRange(min=1),
        default=256,
        show_default=True,
        help="Records per predict() call.",
    )
    @click.option(
        "--retries",
        type=click.IntRange(min=0),
        default=1,
        show_default=True,
        help="Extra attempts for a failed shard.",
    )
    @click.option(
        "--id-field", default="id", show_default=True, help="Record key copied to outputs."
    )
    @click.option(
        "--format",
        "input_format",
        type=click.Choice(["jsonl", "csv", "parquet"]),
        default=None,
        help="Input format (default: by file suffix).",
    )
    @click.option("--timeout", type=float, default=None, help="Give up after this many seconds.")
    @click.option(
        "--isolated-env", is_flag=True, help="Install the kit's requirements into a cached venv."
    )
    @click.option("--dry-run", is_flag=True, help="Plan (or print the Workflow) and run nothing.")
    @click.option("--no-wait", is_flag=True, help="Argo: submit and return without waiting.")
    @click.option(
        "--argo-server", default=None, help="Argo Server host:port or URL ($ARGO_SERVER)."
    )
    @click.option("-n", "--namespace", default=None, help="Kubernetes namespace ($ARGO_NAMESPACE).")
    @click.option("--argo-insecure", is_flag=True, help="Skip TLS verification of the Argo Server.")
    @click.option("--argo-plain-http", is_flag=True, help="Talk HTTP to the Argo Server.")
    @click.option(
        "--kubeconfig",
        type=click.Path(path_type=Path),
        default=None,
        help="Submit through the Kubernetes API with this kubeconfig.",
    )
    @click.option("--kube-context", default=None, help="kubeconfig context to use.")
    @click.option("--image", default=None, help="Runtime image of the Argo pods.")
    @click.option("--cpu", default=None, help="CPU request per pod (e.g. 500m, 2).")
    @click.option("--memory", default=None, help="Memory request per pod (e.g. 2Gi).")
    @click.option("--gpu", type=click.IntRange(min=0), default=0, help="nvidia.com/gpu per pod.")
    @click.option("--node-selector", multiple=True, metavar="KEY=VALUE", help="Repeatable.")
    @click.option("--toleration", multiple=True, metavar="KEY[=VALUE][:EFFECT]", help="Repeatable.")
    @click.option("--service-account", default=None, help="Service account of the pods.")
    @click.option(
        "--registry-secret",
        default=None,
        help="dockerconfigjson secret the pods pull the kit with.",
    )
    @click.option(
        "--argo-retries",
        type=click.IntRange(min=0),
        default=None,
        help="retryStrategy limit per step.",
    )
    @click.option(
        "--active-deadline",
        type=click.IntRange(min=1),
        default=None,
        help="activeDeadlineSeconds of the Workflow.",
    )
    @home_option
    @json_option
    @registry_options
    def run_command(
        references: tuple[str, ...],
        input_path: Path | None,
        output_path: Path | None,
        backend: str,
        shards: int | None,
        parallelism: int | None,
        entrypoint: str | None,
        dataset: str | None,
        batch_size: int,
        retries: int,
        id_field: str,
        input_format: str | None,
        timeout: float | None,
        isolated_env: bool,
        dry_run: bool,
        no_wait: bool,
        registry: RegistryOptions,
        home: Path | None,
        as_json: bool,
        **argo_flags: Any,
    ) -> None:
        """Score inputs with one or more ModelKits and write predictions as JSON Lines.

        With several REFs each kit scores the same inputs and the result compares them.
        """
        from kitflow.cli.common import progress_enabled
        from kitflow.inference.runner import run

        if input_path is None and dataset is None:
            raise KitflowError("give the inputs with --input FILE or --dataset NAME")
        if input_path is not None and dataset is not None:
            raise KitflowError("give either --input or --dataset, not both")
        argo = argo_options_from_flags(**argo_flags) if backend == "argo" else None
        result = run(
            list(references) if len(references) > 1 else references[0],
            input_path,
            output_path,
            backend=backend,
            shards=shards,
            parallelism=parallelism,
            entrypoint=entrypoint,
            dataset=dataset,
            batch_size=batch_size,
            retries=retries,
            registry=registry,
            argo=argo,
            dry_run=dry_run,
            wait=not no_wait,
            timeout=timeout,
            home=home,
            progress=progress_enabled() and not as_json,
            id_field=id_field,
            input_format=input_format,
            isolated_env=isolated_env,
        )
        if as_json:
            emit_json(result.to_dict())
        else:
            click.echo(_summary(result, dry_run))
