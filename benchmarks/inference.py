"""Inference benchmarks: (1) local backend throughput on the sentiment model against calling
``predict`` in a loop on the same batches, in the same run (ratio; target >= 0.9), at
parallelism 1, the default and two forked workers, and where two workers start to beat one
process on small inputs; (2) the size of the Argo Workflow kitflow builds against input count.

Run: ``.venv/bin/python benchmarks/inference.py [--records 100000] [--batch-size 256]``.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import random
import resource
import statistics
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


def _children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def local_run(
    inputs: Path,
    output: Path,
    batch_size: int,
    parallelism: int | None,
    shards: int | None = None,
) -> dict[str, float]:
    """One local-backend run on the example directory (``None``: the backend's defaults);
    wall seconds, the scoring part and the shards it cut."""
    from kitflow.inference.runner import run

    started, cpu, children = time.perf_counter(), time.process_time(), _children_cpu()
    result = run(
        str(EXAMPLE),
        inputs,
        output,
        shards=shards,
        parallelism=parallelism,
        batch_size=batch_size,
    )
    wall = time.perf_counter() - started
    return {
        "wall": wall,
        "cpu": time.process_time() - cpu,  # this process only
        "all_cpu": time.process_time() - cpu + _children_cpu() - children,  # and its workers
        "score": result.timings["score"],
        "predict": result.timings["predict"],
        "load": result.timings["load"],
        "shards": len(result.shards),
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


def median(values: list[float]) -> float:
    """The median of ``values``."""
    return statistics.median(values)


def crossover(work: Path, batch_size: int, repeat: int) -> list[tuple[int, float, float]]:
    """Records/s in one process against two forked workers (two shards) for small inputs:
    where parallel scoring starts to gain (what MIN_BATCHES_PER_SHARD is set from)."""
    rows = []
    for count in (2_048, 8_192, 16_384, 32_768, 65_536):
        path = work / f"small-{count}.jsonl"
        make_inputs(path, count)
        one, two = [], []
        for _ in range(repeat):
            one.append(local_run(path, work / "small.out.jsonl", batch_size, 1)["wall"])
            two.append(local_run(path, work / "small.out.jsonl", batch_size, 2, 2)["wall"])
        rows.append((count, count / median(one), count / median(two)))
    return rows


def main() -> int:
    """Run both benchmarks and print the figures."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--records", type=int, default=100_000)
    parser.add_argument("--batch-size", type=int, default=256)
    parser.add_argument("--repeat", type=int, default=3, help="median of N runs")
    args = parser.parse_args()
    ensure_model()
    from kitflow.inference.forkpool import fork_usable
    from kitflow.inference.local import cpu_count, default_parallelism

    with tempfile.TemporaryDirectory(prefix="kitflow-bench-") as tmp:
        work = Path(tmp)
        inputs = work / "inputs.jsonl"
        records = make_inputs(inputs, args.records)
        out = work / "out.jsonl"
        local_run(inputs, out, args.batch_size, 1)  # warm up: imports, page cache
        # Interleave the baseline and every kitflow variant in each round, so that all see the
        # same machine load; report medians over the rounds.
        base: list[float] = []
        base_cpu: list[float] = []
        runs: dict[str, list[dict[str, float]]] = {"p1": [], "default": [], "p2": []}
        for _ in range(args.repeat):
            wall, cpu = baseline(records, args.batch_size)
            base.append(wall)
            base_cpu.append(cpu)
            runs["p1"].append(local_run(inputs, out, args.batch_size, 1))
            runs["default"].append(local_run(inputs, out, args.batch_size, None))
            runs["p2"].append(local_run(inputs, out, args.batch_size, 2, 2))
        n = args.records
        b = median(base)
        print(
            f"inference throughput, {n} records, batch {args.batch_size}, median of "
            f"{args.repeat} (cpus {cpu_count()}, fork workers {fork_usable()}, default "
            f"parallelism {default_parallelism()})"
        )
        print(f"  predict() loop, model loaded, records in memory: {n / b:,.0f} rec/s")

        def line(label: str, key: str) -> None:
            wall = median([r["wall"] for r in runs[key]])
            steady = median([r["score"] - r["load"] for r in runs[key]])
            shards = int(runs[key][0]["shards"])
            cpu = median([r["all_cpu"] for r in runs[key]])
            print(
                f"  {label} ({shards} shard(s)): {n / wall:,.0f} rec/s end to end, "
                f"ratio {b / wall:.2f}; scoring {n / steady:,.0f} rec/s, ratio {b / steady:.2f}; "
                f"CPU {cpu:.2f} s (runner + workers)"
            )

        print(f"    CPU {median(base_cpu):.2f} s")
        line("kitflow local, parallelism 1 (in process)", "p1")
        line("kitflow local, default parallelism", "default")
        line("kitflow local, parallelism 2 (forked workers)", "p2")
        print("  ratio = predict() loop seconds / kitflow seconds (1.00 = as fast as the loop);")
        print("  CPU: seconds of CPU used; on a machine whose other cores are busy, workers only")
        print("  add CPU, on idle cores they divide the wall time")
        print("small inputs: one process against two forked workers (end to end, rec/s)")
        for count, one, two in crossover(work, args.batch_size, args.repeat):
            print(f"  {count:>6} records: 1 process {one:>9,.0f}, 2 workers {two:>9,.0f}")
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
