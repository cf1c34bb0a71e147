"""The batch-inference asset factory: score JSON Lines inputs with a ModelKit, locally or on
Argo Workflows, one run (and one Workflow) per partition range.

The ModelKit is the one an upstream ``modelkit_asset`` recorded (pinned by digest), or a fixed
reference. A partition range (single-run backfill) becomes one job: the partitions' inputs are
joined into one file, scored once, and the predictions split back into one file per partition
(output line i answers input line i, so the split is by record counts).
"""

import tempfile
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any, Literal

import dagster as dg
from dagster import AssetExecutionContext
from kitflow.errors import KitflowError
from kitflow.inference import io
from kitflow.inference.runner import build_job

from dagster_kitflow.metadata import inference_metadata, pinned
from dagster_kitflow.modelkit import AssetRef, asset_key_of, recorded_modelkit
from dagster_kitflow.resources import ArgoResource, KitRegistryResource

PathSource = str | Path | Callable[[str | None], str | Path]
BACKENDS = ("local", "argo")


def _resolve_path(source: PathSource, partition_key: str | None, asset_name: str) -> Path:
    if callable(source):
        return Path(source(partition_key))
    text = str(source)
    if "{partition_key}" in text and partition_key is None:
        raise KitflowError(f"{text!r} uses {{partition_key}} but the asset is unpartitioned")
    return Path(text.format_map({"partition_key": partition_key or "", "asset": asset_name}))


def _default_output(context: dg.AssetExecutionContext, partition_key: str | None) -> Path:
    base = Path(context.instance.storage_directory()) / "kitflow-predictions"
    stem = partition_key if partition_key is not None else "predictions"
    return base.joinpath(*context.asset_key.path) / f"{stem}.jsonl"


def join_inputs(sources: Sequence[Path], dest: Path, workdir: Path) -> list[int]:
    """Write the records of ``sources`` (JSON Lines, CSV or Parquet) into one JSON Lines
    file in order; returns each source's record count."""
    counts: list[int] = []
    with open(dest, "wb") as out:
        for source in sources:
            prepared = io.prepare_input(source, None, workdir)
            counts.append(prepared.records)
            with open(prepared.path, "rb") as src:
                for line in src:
                    if line.strip():
                        out.write(line if line.endswith(b"\n") else line + b"\n")
    return counts


def split_predictions(merged: Path, counts: Sequence[int], outputs: Sequence[Path]) -> None:
    """Cut ``merged`` into ``outputs`` by ``counts`` lines each (each written atomically)."""
    with open(merged, "rb") as src:
        for count, output in zip(counts, outputs, strict=True):
            output.parent.mkdir(parents=True, exist_ok=True)
            tmp = io.temp_path(output)
            try:
                with open(tmp, "wb") as out:
                    for _ in range(count):
                        line = src.readline()
                        if not line:
                            raise KitflowError(f"{merged} has fewer predictions than inputs")
                        out.write(line)
                io.commit_file(tmp, output)
            finally:
                tmp.unlink(missing_ok=True)


def inference_asset(
    *,
    name: str,
    modelkit: AssetRef | None = None,
    reference: str | None = None,
    inputs: PathSource | None = None,
    dataset: str | None = None,
    output: PathSource | None = None,
    backend: Literal["local", "argo"] = "local",
    shards: int | None = None,
    parallelism: int | None = None,
    entrypoint: str | None = None,
    batch_size: int = 256,
    retries: int = 1,
    timeout: float | None = None,
    partitions_def: dg.PartitionsDefinition | None = None,
    registry_resource_key: str = "kit_registry",
    argo_resource_key: str = "argo",
    key_prefix: str | Sequence[str] | None = None,
    group_name: str | None = None,
    deps: Sequence[Any] | None = None,
    description: str | None = None,
    owners: Sequence[str] | None = None,
    tags: Mapping[str, str] | None = None,
    pool: str | None = None,
) -> dg.AssetsDefinition:
    """An asset holding batch predictions of a ModelKit on JSON Lines (or CSV/Parquet) inputs.

    ``modelkit`` is an upstream ``modelkit_asset`` (its recorded digest is used) or give a fixed
    ``reference``. ``inputs`` / ``output`` are paths, templates with ``{partition_key}``, or
    callables ``(partition_key) -> path``; ``dataset`` scores a dataset inside the kit instead.
    ``backend="argo"`` runs one Workflow through the ``ArgoResource`` (stopped if the run is
    terminated). Partitioned assets get a single-run backfill policy: one job per range.
    """
    if (modelkit is None) == (reference is None):
        raise KitflowError("inference_asset needs exactly one of modelkit= or reference=")
    if (inputs is None) == (dataset is None):
        raise KitflowError("inference_asset needs exactly one of inputs= or dataset=")
    if dataset is not None and partitions_def is not None:
        raise KitflowError(
            "a partitioned inference_asset needs inputs= per partition, not dataset="
        )
    if backend not in BACKENDS:
        raise KitflowError(f"unknown backend {backend!r} (expected local or argo)")
    kit_key = asset_key_of(modelkit) if modelkit is not None else None
    all_deps = list(deps or [])
    if kit_key is not None:
        all_deps.append(kit_key)
    resource_keys = {registry_resource_key} | ({argo_resource_key} if backend == "argo" else set())
    kinds = {"kitops", "argo"} if backend == "argo" else {"kitops"}

    @dg.asset(
        name=name,
        key_prefix=key_prefix,
        group_name=group_name,
        deps=all_deps,
        partitions_def=partitions_def,
        backfill_policy=dg.BackfillPolicy.single_run() if partitions_def is not None else None,
        description=description or "Batch predictions scored with kitflow.",
        owners=owners,
        tags=tags,
        kinds=kinds,
        pool=pool,
        required_resource_keys=resource_keys,
    )
    def _inference(context: AssetExecutionContext) -> dg.MaterializeResult:  # type: ignore[type-arg]
        started = time.perf_counter()
        kit: KitRegistryResource = getattr(context.resources, registry_resource_key)
        if kit_key is not None:
            recorded, digest, _ = recorded_modelkit(context, kit_key)
            ref = pinned(recorded, digest)
        else:
            assert reference is not None
            ref = kit.qualify(reference)
        keys: list[str | None] = (
            list(context.partition_keys) if partitions_def is not None else [None]
        )
        outputs = [
            _resolve_path(output, k, name) if output is not None else _default_output(context, k)
            for k in keys
        ]
        context.log.info(
            f"Scoring {len(keys) if keys != [None] else 'all'} input(s) with {ref} on {backend}"
        )
        with tempfile.TemporaryDirectory(prefix="kitflow-dagster-") as tmp:
            work = Path(tmp)
            counts: dict[str | None, int]
            if len(keys) == 1:
                source = _resolve_path(inputs, keys[0], name) if inputs is not None else None
                result = _score(context, kit, ref, source, outputs[0], backend)
                counts = {keys[0]: result.records}
            else:
                assert inputs is not None
                sources = [_resolve_path(inputs, k, name) for k in keys]
                merged_in = work / "inputs.jsonl"
                merged_out = work / "predictions.jsonl"
                per = join_inputs(sources, merged_in, work)
                result = _score(context, kit, ref, merged_in, merged_out, backend)
                split_predictions(merged_out, per, outputs)
                counts = dict(zip(keys, per, strict=True))
        context.log.info(f"Scored {result.records} records in {result.seconds:.2f}s")
        return dg.MaterializeResult(
            metadata=inference_metadata(
                ref,
                result,
                dict(zip(keys, outputs, strict=True)),
                counts,
                time.perf_counter() - started,
            )
        )

    def _score(
        context: dg.AssetExecutionContext,
        kit: KitRegistryResource,
        ref: str,
        source: Path | None,
        out: Path,
        how: str,
    ) -> Any:
        out.parent.mkdir(parents=True, exist_ok=True)
        if how == "local":
            return kit.run(
                ref,
                source,
                out,
                backend="local",
                shards=shards,
                parallelism=parallelism,
                entrypoint=entrypoint,
                dataset=dataset,
                batch_size=batch_size,
                retries=retries,
                timeout=timeout,
            )
        argo: ArgoResource = getattr(context.resources, argo_resource_key)
        options = argo.get_options()
        job = build_job(
            ref,
            source,
            out,
            shards=shards,
            parallelism=parallelism,
            entrypoint=entrypoint,
            dataset=dataset,
            batch_size=batch_size,
            retries=retries,
            argo=options,
            home=kit.home,
        )
        return argo.run_job(context, job, kit.options_for(ref), timeout=timeout)

    return _inference
