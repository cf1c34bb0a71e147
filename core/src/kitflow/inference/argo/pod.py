"""What the Workflow's pods do, written with core functions (the hidden ``kitflow argo-*``
commands call these): score one shard, gather one kit's shard results, compare kits."""

from __future__ import annotations

import json
import logging
import os
import shutil
import tempfile
import time
from pathlib import Path
from typing import Any

from kitflow.errors import InferenceError, KitflowError
from kitflow.inference import io
from kitflow.inference.argo import transport
from kitflow.inference.comparison import Agreement, model_stats
from kitflow.inference.entrypoint import KitLayout, load_kit_layout, resolve_entrypoint
from kitflow.inference.job import EntrypointSpec
from kitflow.inference.local import ShardTask, run_cache_dir, score_shard
from kitflow.options import RegistryOptions

log = logging.getLogger(__name__)
TERMINATION_LOG = Path("/dev/termination-log")


def _write_atomic(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = io.temp_path(path)
    tmp.write_text(text, encoding="utf-8")
    io.commit_file(tmp, path)


def termination_message(message: str) -> None:
    """Leave the failure for Kubernetes (Argo shows it as the node's message)."""
    try:
        if TERMINATION_LOG.exists():
            TERMINATION_LOG.write_text(message[:4000], encoding="utf-8")
    except OSError:
        pass


#: What a scoring pod unpacks: datasets and docs stay in the registry (the inputs come as shards).
POD_UNPACK_FILTER = "kitfile,model,code"


def unpack_for_scoring(kit: str, registry: RegistryOptions | None) -> KitLayout:
    """Unpack the pinned kit's Kitfile, model and code once per digest into the run cache
    (staged beside it and renamed into place, so a half-unpacked kit is never used)."""
    from kitflow import api

    digest = transport.split_reference(kit)[1]
    cache = run_cache_dir()
    target = cache / f"scoring-{digest.replace(':', '-')}"
    if target.is_dir():
        return load_kit_layout(target)
    cache.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=".unpack-", dir=cache))
    try:
        api.unpack(kit, staging, filters=[POD_UNPACK_FILTER], registry=registry)
        try:
            os.rename(staging, target)
        except OSError:
            if not target.is_dir():
                raise
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return load_kit_layout(target)


def run_shard(
    *,
    kit: str,
    inputs: str,
    shard: int,
    results_repo: str,
    out: Path,
    registry: RegistryOptions | None = None,
    prediction_out: Path | None = None,
    entrypoint: str | None = None,
    batch_size: int = 256,
    id_field: str = "id",
    kit_dir: Path | None = None,
) -> transport.ShardResult:
    """Pull shard ``shard`` of ``inputs`` and the kit, score it, push the predictions as a blob
    to ``results_repo`` and write the small result record to ``out``."""
    started = time.perf_counter()
    artifact = transport.load_inputs(inputs, registry)
    blobs = {b.index: b for b in artifact.shards}
    if shard not in blobs:
        raise KitflowError(f"{inputs} has no shard {shard} (it has {len(blobs)})")
    blob = blobs[shard]
    layout = load_kit_layout(kit_dir) if kit_dir else unpack_for_scoring(kit, registry)
    override = EntrypointSpec.parse(json.loads(entrypoint)) if entrypoint else None
    spec = resolve_entrypoint(layout, override)
    work = Path(tempfile.mkdtemp(prefix=f"kitflow-shard-{shard}-"))
    try:
        shard_in = work / "in.jsonl"
        shard_out = work / "out.jsonl"
        inputs_name, _ = transport.split_reference(inputs)
        transport.download(inputs_name, blob.descriptor, shard_in, registry)
        span = io.ShardSpan(shard, blob.start, blob.records, 0, blob.line)
        task = ShardTask(
            span=span,
            input_path=shard_in,
            output_path=shard_out,
            kit_root=layout.root,
            kitfile=layout.kitfile,
            entrypoint=spec,
            batch_size=batch_size,
            id_field=id_field,
        )
        outcome = score_shard(task)
        if not outcome.ok:
            where = f" at {artifact.source} line {outcome.line}" if outcome.line else ""
            message = f"shard {shard} failed{where}: {outcome.message}"
            termination_message(message)
            raise InferenceError(message)
        desc = transport.push_result(results_repo, shard_out, registry)
        result = transport.ShardResult(
            shard,
            desc.digest,
            desc.size,
            outcome.records,
            time.perf_counter() - started,
            outcome.predict_seconds,
        )
        if prediction_out is not None:
            with open(shard_out, encoding="utf-8") as fh:
                first = fh.readline().strip()
            _write_atomic(prediction_out, first)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    _write_atomic(out, json.dumps(result.to_json(), separators=(",", ":")))
    return result


def gather(
    *,
    kit: str,
    inputs: str,
    results_repo: str,
    job: str,
    results: str,
    out: Path,
    registry: RegistryOptions | None = None,
) -> dict[str, Any]:
    """Check every shard answered, write the results artifact (shard order) and the summary."""
    artifact = transport.load_inputs(inputs, registry)
    parsed = transport.parse_results(results)
    got = [r.shard for r in parsed]
    wanted = [b.index for b in artifact.shards]
    if got != wanted:
        missing = sorted(set(wanted) - set(got))
        raise KitflowError(f"results for shards {missing or got} are missing or repeated")
    for r, b in zip(parsed, artifact.shards, strict=True):
        if r.records != b.records:
            raise KitflowError(f"shard {r.shard} answered {r.records} of {b.records} records")
    kit_tag = transport.split_reference(kit)[1][7:15]
    config = {"job": job, "kit": kit, "inputs": inputs, "records": artifact.records}
    reference = transport.push_results(
        results_repo, f"kitflow-results-{job}-{kit_tag}", config, parsed, registry
    )
    summary = {
        "kit": kit,
        "results": reference,
        "records": artifact.records,
        "seconds": round(sum(r.seconds for r in parsed), 4),
        "predict_seconds": round(sum(r.predict_seconds for r in parsed), 4),
        "shards": [[r.shard, r.records, round(r.seconds, 4)] for r in parsed],
    }
    _write_atomic(out, json.dumps(summary, separators=(",", ":")))
    return summary


def parse_summaries(text: str) -> list[dict[str, Any]]:
    """The compare step's input: a JSON list of gather summaries (objects or JSON strings)."""
    try:
        items = json.loads(text)
    except ValueError as exc:
        raise KitflowError(f"summaries are not JSON: {exc}") from None
    return [json.loads(i) if isinstance(i, str) else dict(i) for i in items]


def comparison_report(
    summaries: list[dict[str, Any]],
    registry: RegistryOptions | None,
    labels: list[str] | None = None,
    merged_out: Path | None = None,
) -> dict[str, Any]:
    """Agreement between the kits' predictions (all agree, and pairwise) and per-kit latency,
    streaming the results artifacts side by side; optionally writes the merged predictions."""
    labels = labels or [s["kit"] for s in summaries]
    records = int(summaries[0]["records"])
    agreement = Agreement(labels)
    work = Path(tempfile.mkdtemp(prefix="kitflow-compare-"))
    out_fh = open(merged_out, "w", encoding="utf-8") if merged_out else None  # noqa: SIM115
    try:
        for n in range(len(summaries)):
            (work / str(n)).mkdir()
        streams = [
            transport.iter_result_lines(s["results"], registry, work / str(n))
            for n, s in enumerate(summaries)
        ]
        for lines in zip(*streams, strict=True):
            objects = [json.loads(line) for line in lines]
            predictions = [o.get("prediction") for o in objects]
            agreement.add(predictions)
            if out_fh is not None:
                out_fh.write(agreement.merged_line(objects, predictions))
        if agreement.seen != records:
            raise KitflowError(f"results hold {agreement.seen} predictions for {records} records")
    finally:
        if out_fh is not None:
            out_fh.close()
        shutil.rmtree(work, ignore_errors=True)
    models = [
        {
            "reference": label,
            "digest": transport.split_reference(s["kit"])[1],
            **model_stats(records, float(s.get("seconds", 0)), float(s.get("predict_seconds", 0))),
        }
        for label, s in zip(labels, summaries, strict=True)
    ]
    return agreement.report(records, models)


def compare(
    *, summaries: str, out: Path, registry: RegistryOptions | None = None
) -> dict[str, Any]:
    """The compare step: the report plus the summaries (so collect finds every result)."""
    parsed = parse_summaries(summaries)
    report = comparison_report(parsed, registry)
    report["summaries"] = parsed
    _write_atomic(out, json.dumps(report, separators=(",", ":")))
    return report
