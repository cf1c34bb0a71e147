"""`kitflow.run`: turn the API's arguments into an InferenceJob and hand it to a backend
(the local runner by default, Argo Workflows on request)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from kitflow.errors import KitflowError
from kitflow.inference.job import EntrypointSpec, InferenceJob, InputSpec
from kitflow.options import ArgoOptions, RegistryOptions
from kitflow.results import RunResult

BACKENDS = ("local", "argo")


def build_job(
    reference: str | Sequence[str],
    input: str | Path | None = None,
    output: str | Path | None = None,
    *,
    shards: int | None = None,
    parallelism: int | None = None,
    entrypoint: str | EntrypointSpec | None = None,
    dataset: str | None = None,
    batch_size: int = 256,
    retries: int = 1,
    argo: ArgoOptions | None = None,
    home: str | Path | None = None,
    progress: bool = False,
    id_field: str = "id",
    input_format: str | None = None,
    isolated_env: bool = False,
) -> InferenceJob:
    """The job that ``run`` would execute, checked (raises KitflowError on bad arguments)."""
    references = (reference,) if isinstance(reference, str) else tuple(reference)
    if not all(isinstance(r, str) and r.strip() for r in references):
        raise KitflowError("every ModelKit reference must be a non-empty string")
    if input_format is not None and input_format not in ("jsonl", "csv", "parquet"):
        raise KitflowError(f"unknown input format {input_format!r} (jsonl, csv or parquet)")
    inputs = InputSpec(
        path=Path(input) if input is not None else None,
        dataset=dataset,
        format=input_format,  # type: ignore[arg-type]
        id_field=id_field,
    )
    spec = EntrypointSpec.parse(entrypoint, "--entrypoint") if entrypoint is not None else None
    resources = argo.resources if argo is not None else None
    return InferenceJob(
        references=tuple(r.strip() for r in references),
        inputs=inputs,
        output=Path(output) if output is not None else None,
        shards=shards,
        parallelism=parallelism,
        batch_size=batch_size,
        retries=retries,
        entrypoint=spec,
        home=Path(home) if home is not None else None,
        progress=progress,
        isolated_env=isolated_env,
        **({"resources": resources} if resources is not None else {}),
    )


def run(
    reference: str | Sequence[str],
    input: str | Path | None = None,
    output: str | Path | None = None,
    *,
    backend: str = "local",
    shards: int | None = None,
    parallelism: int | None = None,
    entrypoint: str | None = None,
    dataset: str | None = None,
    batch_size: int = 256,
    retries: int = 1,
    registry: RegistryOptions | None = None,
    argo: ArgoOptions | None = None,
    dry_run: bool = False,
    wait: bool = True,
    timeout: float | None = None,
    home: str | Path | None = None,
    progress: bool = False,
    id_field: str = "id",
    input_format: str | None = None,
    isolated_env: bool = False,
) -> RunResult:
    """Run inference with one ModelKit (or several, compared on the same inputs) and return
    where the predictions are, how many, how long, and each shard's status.

    ``backend="local"`` scores on this machine (output written atomically, only when every
    shard succeeded); ``backend="argo"`` submits a Workflow (``dry_run`` builds it only).
    """
    if backend not in BACKENDS:
        raise KitflowError(f"unknown backend {backend!r} (expected one of {', '.join(BACKENDS)})")
    job = build_job(
        reference,
        input,
        output,
        shards=shards,
        parallelism=parallelism,
        entrypoint=entrypoint,
        dataset=dataset,
        batch_size=batch_size,
        retries=retries,
        argo=argo,
        home=home,
        progress=progress,
        id_field=id_field,
        input_format=input_format,
        isolated_env=isolated_env,
    )
    if timeout is not None and timeout <= 0:
        raise KitflowError(f"timeout must be positive, got {timeout}")
    if backend == "argo":
        try:
            from kitflow.inference.argo.backend import run_argo
        except ModuleNotFoundError as exc:
            if exc.name and exc.name.startswith("kitflow.inference.argo"):
                raise KitflowError("the Argo backend is not available in this build") from None
            raise
        result: RunResult = run_argo(
            job,
            argo if argo is not None else ArgoOptions.from_env(),
            registry if registry is not None else RegistryOptions(),
            dry_run=dry_run,
            wait=wait,
            timeout=timeout,
        )
        return result
    from kitflow.inference.local import run_local

    return run_local(job, registry=registry, dry_run=dry_run, timeout=timeout)
