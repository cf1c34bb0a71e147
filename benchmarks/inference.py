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
    }


def workflow_sizes(counts: list[int], workdir: Path) -> list[dict[str, Any]]:
    """Bytes of the Workflow JSON the Argo backend would submit, for each input count."""
    try:
        from kitflow.inference.argo import backend as argo_backend
    except ImportError as exc:
        print(f"  Argo backend not available: {exc}")
        return []
    from kitflow.inference.runner import build_job
    from kitflow.options import ArgoOptions, RegistryOptions

    rows = []
    argo = ArgoOptions(server="https://argo.example.com:2746", namespace="ml")
    for count in counts:
        inputs = workdir / f"wf-{count}.jsonl"
        make_inputs(inputs, count)
        job = build_job(
            "127.0.0.1:9/ml/sentiment@sha256:" + "0" * 64,
            inputs,
            workdir / f"wf-{count}.out.jsonl",
            parallelism=10,
        )
        planned = argo_backend.plan_job(job, argo, RegistryOptions(), dry_run=True)
        size = len(json.dumps(planned.manifest, separators=(",", ":")).encode())
        rows.append({"inputs": count, "shards": planned.plan.shards, "workflow_bytes": size})
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
        runs_base = [baseline(records, args.batch_size) for _ in range(args.repeat)]
        base = min(r[0] for r in runs_base)
        base_cpu = min(r[1] for r in runs_base)
        print(f"inference throughput, {args.records} records, batch {args.batch_size}")
        print(
            f"  predict() loop (model loaded, records in memory): {args.records / base:,.0f} rec/s"
            f" ({args.records / base_cpu:,.0f} rec/CPU-s)"
        )
        for parallelism in (1, 2):
            runs = [
                local_run(inputs, work / "out.jsonl", args.batch_size, parallelism)
                for _ in range(args.repeat)
            ]
            best = min(runs, key=lambda r: r["wall"])
            print(
                f"  kitflow local, parallelism {parallelism}: "
                f"{args.records / best['wall']:,.0f} rec/s end to end "
                f"(ratio {base / best['wall']:.2f}), "
                f"{args.records / best['score']:,.0f} rec/s scoring "
                f"(ratio {base / best['score']:.2f})"
                + (
                    f"; CPU-time ratio {base_cpu / min(r['cpu'] for r in runs):.2f}"
                    if parallelism == 1
                    else ""
                )
            )
        print("argo workflow size against inputs")
        for row in workflow_sizes([1_000, 10_000, 100_000], work):
            print(
                f"  {row['inputs']:>7} inputs, {row['shards']:>3} shards: "
                f"{row['workflow_bytes']:,} bytes"
            )
    return 0


if __name__ == "__main__":
    sys.exit(main())
