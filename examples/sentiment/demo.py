"""`make demo`: train the sentiment model, pack it as a ModelKit, (push it to a registry started
on loopback when `docker-registry` is installed), run batch inference on the local backend, and
write the Argo Workflow that would run the same job on a cluster. Nothing is downloaded."""

from __future__ import annotations

import argparse
import importlib.util
import json
import shutil
import sys
import time
from pathlib import Path
from typing import Any

from loopback import loopback_registry  # examples/sentiment/loopback.py, next to this script

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent.parent
TAG = "sentiment:v1"
VARIANT_TAG = "sentiment:v2"  # character n-grams: the "B" of the A/B comparison


def step(title: str) -> None:
    """Print a step heading."""
    print(f"\n== {title}", flush=True)


def train_model(features: str = "word", c: float = 10.0) -> float:
    """Run examples/sentiment/train.py's ``train`` (model/model.joblib); returns accuracy."""
    spec = importlib.util.spec_from_file_location("sentiment_train", HERE / "train.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    accuracy: float = module.train(HERE / "data" / "train.csv", HERE / "model", c, features)
    return accuracy


def _texts(inputs: Path) -> dict[Any, str]:
    """The input records' texts by id."""
    texts = {}
    with open(inputs, encoding="utf-8") as fh:
        for line in fh:
            if line.strip():
                record = json.loads(line)
                texts[record["id"]] = record["text"]
    return texts


def show_predictions(inputs: Path, output: Path, limit: int = 8) -> None:
    """Print the first predictions next to their texts."""
    texts = _texts(inputs)
    with open(output, encoding="utf-8") as fh:
        for number, line in enumerate(fh):
            if number >= limit:
                break
            answer = json.loads(line)
            text = texts.get(answer.get("id"), "")
            print(f"  {answer['prediction']:>8}  {text}")


def show_disagreements(inputs: Path, output: Path, limit: int = 3) -> None:
    """Print the records on which the compared kits disagree."""
    texts = _texts(inputs)
    shown = 0
    with open(output, encoding="utf-8") as fh:
        for line in fh:
            answer = json.loads(line)
            votes = list(answer["predictions"].values())
            if len(set(votes)) > 1 and shown < limit:
                print(f"  differ: {' vs '.join(votes)}  {texts.get(answer.get('id'), '')}")
                shown += 1


def argo_dry_run(
    reference: str, inputs: Path, workdir: Path, registry: Any, home: Path
) -> Path | None:
    """Build (not submit) the Argo Workflow for the same job and write it as JSON."""
    import kitflow
    from kitflow.errors import KitflowError

    argo = kitflow.ArgoOptions(server="https://argo.example.com:2746", namespace="ml")
    try:
        result = kitflow.run(
            reference,
            inputs,
            workdir / "argo-predictions.jsonl",
            backend="argo",
            shards=4,
            parallelism=4,
            registry=registry,
            argo=argo,
            dry_run=True,
            home=home,
        )
    except KitflowError as exc:
        print(f"  (Argo backend unavailable: {exc})")
        return None
    workflow = getattr(result, "workflow", None) or (result.comparison or {}).get("workflow")
    path = workdir / "workflow.json"
    path.write_text(json.dumps(workflow if workflow is not None else result.to_dict(), indent=2))
    return path


def main(argv: list[str] | None = None) -> int:
    """Run the whole demo; returns the process exit code."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--workdir", type=Path, default=ROOT / ".demo", help="scratch directory")
    parser.add_argument("--no-registry", action="store_true", help="stay on the local store")
    args = parser.parse_args(argv)

    import kitflow
    from kitflow.options import RegistryOptions

    workdir: Path = args.workdir.resolve()
    shutil.rmtree(workdir, ignore_errors=True)
    workdir.mkdir(parents=True)
    home = workdir / "kitops"  # a throwaway KITOPS_HOME: the user's own store is left alone
    inputs = HERE / "data" / "inputs.jsonl"
    summary: dict[str, Any] = {}
    started = time.perf_counter()

    step("1. train: TF-IDF + logistic regression on data/train.csv (word and char variants)")
    variant_accuracy = train_model("char", 1.0)
    variant = kitflow.pack(HERE, tag=VARIANT_TAG, home=home)
    accuracy = train_model("word", 10.0)
    print(f"  word 1-2 grams: held-out accuracy {accuracy:.3f} (the model we ship)")
    print(f"  char 2-4 grams: held-out accuracy {variant_accuracy:.3f} (the A/B challenger)")

    step(f"2. pack {HERE.relative_to(ROOT)} as {TAG} (the challenger as {VARIANT_TAG})")
    packed = kitflow.pack(HERE, tag=TAG, home=home)
    print(f"  {packed.reference} {packed.digest} ({len(packed.layers)} layers, {packed.size} B)")
    print(f"  {variant.reference} {variant.digest}")
    summary["pack"] = {"reference": packed.reference, "digest": packed.digest}
    summary["variant"] = {"reference": variant.reference, "digest": variant.digest}

    with loopback_registry(workdir / "registry", enabled=not args.no_registry) as registry:
        reference, challenger, options = TAG, VARIANT_TAG, None
        if registry is not None:
            step(f"3. push to a registry on loopback ({registry})")
            options = RegistryOptions(plain_http=True)
            reference = f"{registry}/demo/{TAG}"
            challenger = f"{registry}/demo/{VARIANT_TAG}"
            pushed = kitflow.push(TAG, reference, registry=options, home=home)
            print(f"  pushed {pushed.blobs} blobs, {pushed.bytes_transferred} B -> {reference}")
            other = kitflow.push(VARIANT_TAG, challenger, registry=options, home=home)
            skipped = f"{other.blobs_skipped} already there"
            print(f"  pushed {other.blobs} blobs ({skipped}) -> {challenger}")
            summary["push"] = {"reference": reference, "digest": pushed.digest}
        else:
            step("3. no docker-registry installed: running from the local store")

        step(f"4. batch inference on the local backend: {reference}")
        output = workdir / "predictions.jsonl"
        result = kitflow.run(
            reference,
            inputs,
            output,
            shards=2,
            parallelism=2,
            registry=options,
            home=home,
        )
        print(
            f"  {result.records} predictions -> {result.output} in {result.seconds:.2f} s "
            f"({len(result.shards)} shards, model {result.model_digest[:19]}...)"
        )
        show_predictions(inputs, output)
        summary["run"] = result.to_dict()

        step(f"5. A/B comparison on the same inputs: {TAG} against {VARIANT_TAG}")
        compared = kitflow.run(
            [reference, challenger],
            inputs,
            workdir / "comparison.jsonl",
            registry=options,
            home=home,
        )
        comparison = compared.comparison or {}
        print(
            f"  agreement {100 * comparison.get('agreement', 0):.0f}% "
            f"({comparison.get('disagreements', 0)} of {compared.records} differ)"
        )
        for model in comparison.get("models", []):
            print(f"  {model['reference']}: {model['latency_ms_per_record']:.3f} ms/record")
        show_disagreements(inputs, workdir / "comparison.jsonl")
        summary["comparison"] = comparison

        step("6. the Argo Workflow that would run the same job (dry run, nothing submitted)")
        pinned = f"{reference.rsplit(':', 1)[0]}@{result.model_digest}"
        workflow_path = argo_dry_run(pinned, inputs, workdir, options, home)
        if workflow_path is not None:
            print(f"  written to {workflow_path} ({workflow_path.stat().st_size} bytes)")
            summary["workflow"] = str(workflow_path)

    summary["seconds"] = round(time.perf_counter() - started, 2)
    (workdir / "summary.json").write_text(json.dumps(summary, indent=2, default=str))
    step(f"done in {summary['seconds']} s; everything is under {workdir}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
