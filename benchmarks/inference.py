"""Inference benchmarks: (1) local backend throughput on the sentiment model against calling
``predict`` in a loop on the same batches (ratio; target >= 0.9 at parallelism 1), and
(2) the size of the Argo Workflow kitflow builds against the number of inputs.

Run: ``.venv/bin/python benchmarks/inference.py [--records 100000] [--batch-size 256]``.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import random
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
EXAMPLE = ROOT / "examples" / "sentiment"


def ensure_model() -> None:
    """Train the example model if it is not there yet."""
    if (EXAMPLE / "model" / "model.joblib").is_file():
        return
    spec = importlib.util.spec_from_file_location("sentiment_train", EXAMPLE / "train.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    module.train(EXAMPLE / "data" / "train.csv", EXAMPLE / "model")


def make_inputs(path: Path, count: int) -> list[dict[str, Any]]:
    """``count`` records mixing the example's sentences (deterministic)."""
    rng = random.Random(0)
    sentences = []
    with open(EXAMPLE / "data" / "train.csv", encoding="utf-8") as fh:
        next(fh)
        for line in fh:
            sentences.append(line.rsplit(",", 1)[0].strip('"'))
    records = []
    with open(path, "w", encoding="utf-8") as out:
        for index in range(count):
            text = rng.choice(sentences) + " " + rng.choice(sentences)
            record = {"id": f"r{index:07d}", "text": text}
            records.append(record)
            out.write(json.dumps(record) + "\n")
    return records


def baseline(records: list[dict[str, Any]], batch_size: int) -> tuple[float, float]:
    """Seconds to call the entrypoint's ``predict`` on every batch (model already loaded,
    records already in memory): the ceiling kitflow is measured against."""
    spec = importlib.util.spec_from_file_location("bench_predict", EXAMPLE / "src" / "predict.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    model = module.load(str(EXAMPLE / "model"))
    module.predict(model, records[:batch_size])  # warm up
    started, cpu = time.perf_counter(), time.process_time()
    for start in range(0, len(records), batch_size):
        module.predict(model, records[start : start + batch_size])
    return time.perf_counter() - started, time.process_time() - cpu


def local_run(inputs: Path, output: Path, batch_size: int, parallelism: int) -> dict[str, float]:
    """One local-backend run on the example directory; wall seconds and the scoring part."""
    from kitflow.inference.runner import run

    started, cpu = time.perf_counter(), time.process_time()
    result = run(
        str(EXAMPLE),
        inputs,
        output,
        shards=parallelism,
        parallelism=parallelism,
        batch_size=batch_size,
    )
    wall = time.perf_counter() - started
    return {
        "wall": wall,
        "cpu": time.process_time() - cpu,  # this process only: meaningful at parallelism 1
        "score": result.timings["score"],
        "predict": result.timings["predict"],
        "load": result.timings["load"],
    }


def workflow_sizes(cases: list[tuple[int, int | None]], workdir: Path) -> list[dict[str, Any]]:
    """Bytes of the Workflow JSON the Argo backend would submit, for each (input count, shards
    or None for the backend's choice); also the two-kit comparison Workflow."""
    try:
        from kitflow.inference.argo import backend as argo_backend
    except ImportError as exc:
        print(f"  Argo backend not available: {exc}")
        return []
    from kitflow.inference.runner import build_job
    from kitflow.options import ArgoOptions, RegistryOptions

    rows = []
    argo = ArgoOptions(server="https://argo.example.com:2746", namespace="ml")
    kit_a = "127.0.0.1:9/ml/sentiment@sha256:" + "0" * 64
    kit_b = "127.0.0.1:9/ml/sentiment@sha256:" + "1" * 64
    for count, shards in cases:
        inputs = workdir / f"wf-{count}.jsonl"
        if not inputs.exists():
            make_inputs(inputs, count)
        for kits in ([kit_a], [kit_a, kit_b]):
            job = build_job(kits, inputs, workdir / "wf.out.jsonl", shards=shards, parallelism=10)
            planned = argo_backend.plan_job(job, argo, RegistryOptions(), dry_run=True)
            size = len(json.dumps(planned.manifest, separators=(",", ":")).encode())
            rows.append(
                {
                    "inputs": count,
                    "kits": len(kits),
                    "shards": planned.plan.shards,
                    "workflow_bytes": size,
                }
            )
    return rows


def main() -> int:
    """Run both benchmarks and print the figures."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--records", type=int, default=100_000)
    parser.add_argument("--batch-size", type=int, default=256)
    parser.add_argument("--repeat", type=int, default=2, help="best of N runs")
    args = parser.parse_args()
    ensure_model()
    with tempfile.TemporaryDirectory(prefix="kitflow-bench-") as tmp:
        work = Path(tmp)
        inputs = work / "inputs.jsonl"
        records = make_inputs(inputs, args.records)
        # Interleave the baseline and the parallelism-1 run so both see the same machine load.
        pairs = []
        for _ in range(args.repeat):
            pairs.append(
                (
                    baseline(records, args.batch_size),
                    local_run(inputs, work / "out.jsonl", args.batch_size, 1),
                )
            )
        base = min(p[0][0] for p in pairs)
        base_cpu = min(p[0][1] for p in pairs)
        inline = min((p[1] for p in pairs), key=lambda r: r["wall"])
        inline_cpu = min(p[1]["cpu"] for p in pairs)
        pooled = min(
            (local_run(inputs, work / "out.jsonl", args.batch_size, 2) for _ in range(args.repeat)),
            key=lambda r: r["wall"],
        )
        n = args.records
        print(f"inference throughput, {n} records, batch {args.batch_size} (best of {args.repeat})")
        print(f"  predict() loop, model loaded, records in memory: {n / base:,.0f} rec/s")
        steady = min(p[1]["score"] - p[1]["load"] for p in pairs)
        print(
            f"  kitflow local, parallelism 1 (in process): {n / steady:,.0f} rec/s scoring "
            f"(read, predict, write; model loaded), ratio {base / steady:.2f}"
        )
        print(
            f"    end to end (plan, load, score, publish): {n / inline['wall']:,.0f} rec/s, "
            f"ratio {base / inline['wall']:.2f} (CPU-time ratio {base_cpu / inline_cpu:.2f})"
        )
        print(
            f"  kitflow local, parallelism 2 (2 worker processes, 2 shards): "
            f"{n / pooled['wall']:,.0f} rec/s end to end, ratio {base / pooled['wall']:.2f} "
            f"(includes starting the workers and loading the model in each)"
        )
        print("argo workflow size against inputs")
        cases = [(1_000, None), (10_000, None), (100_000, None), (100_000, 500)]
        for row in workflow_sizes(cases, work):
            print(
                f"  {row['inputs']:>7} inputs, {row['kits']} kit(s), {row['shards']:>3} shards: "
                f"{row['workflow_bytes']:,} bytes (etcd limit 1,048,576)"
            )
    return 0


if __name__ == "__main__":
    sys.exit(main())
