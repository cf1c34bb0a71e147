"""The sentiment example as a Prefect flow: train, pack, push, then batch inference.

Inference runs locally by default; ``backend="argo"`` runs the same batch on Argo Workflows
(the pods pull the pushed ModelKit from the registry). Reuses ``examples/sentiment``.
"""

from __future__ import annotations

import importlib.util
import shutil
from collections import Counter
from pathlib import Path
from typing import Any, Literal

from prefect import flow, get_run_logger, task
from prefect.cache_policies import NO_CACHE
from prefect_kitflow import (
    ArgoServer,
    KitRegistryCredentials,
    pack_modelkit,
    pinned,
    push_modelkit,
    run_argo_inference,
    run_inference,
    stop_argo_workflows,
)

SENTIMENT = Path(__file__).resolve().parent.parent / "sentiment"
PROJECT_FILES = ("Kitfile", "train.py", "requirements.txt", "src", "data", "README.md")


@task(cache_policy=NO_CACHE)
def prepare_project(workdir: str) -> str:
    """Copy the sentiment project (without a model) into ``workdir``; returns its path."""
    project = Path(workdir) / "sentiment"
    project.mkdir(parents=True, exist_ok=True)
    for name in PROJECT_FILES:
        source = SENTIMENT / name
        if source.is_dir():
            shutil.copytree(source, project / name, dirs_exist_ok=True)
        elif source.is_file():
            shutil.copy2(source, project / name)
    return str(project)


@task(cache_policy=NO_CACHE)
def train_model(project: str, c: float = 10.0) -> float:
    """Train the classifier with the project's own ``train.py``; returns held-out accuracy."""
    spec = importlib.util.spec_from_file_location("sentiment_train", Path(project) / "train.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    root = Path(project)
    accuracy = float(module.train(root / "data" / "train.csv", root / "model", c))
    get_run_logger().info("Trained the sentiment model: held-out accuracy %.3f", accuracy)
    return accuracy


@flow(
    name="sentiment-modelkit",
    on_cancellation=[stop_argo_workflows],
    on_crashed=[stop_argo_workflows],
)
def sentiment_flow(
    workdir: str,
    reference: str,
    credentials: KitRegistryCredentials | str | None = None,
    push: bool = True,
    backend: Literal["local", "argo"] = "local",
    argo_server: ArgoServer | str | None = None,
    shards: int | None = 2,
    home: str | None = None,
) -> dict[str, Any]:
    """Train → pack → push → batch inference; returns the results and a predictions summary."""
    project = prepare_project(workdir)
    accuracy = train_model(project)
    packed = pack_modelkit(project, tag=reference, home=home)
    summary: dict[str, Any] = {
        "accuracy": accuracy,
        "project": project,
        "modelkit": packed.to_dict(),
    }
    kit = pinned(reference, packed.digest)  # exactly this ModelKit, whatever the tag says later
    if push:
        pushed = push_modelkit(kit, reference, credentials=credentials, home=home)
        summary["push"] = pushed.to_dict()
    inputs = Path(project) / "data" / "inputs.jsonl"
    output = Path(workdir) / "predictions.jsonl"
    if backend == "argo":
        # The Argo variant: same job, run by the cluster; cancelling the flow stops the Workflow.
        result = run_argo_inference(
            kit,
            inputs,
            output,
            argo_server=argo_server,
            credentials=credentials,
            shards=shards,
            home=home,
        )
    else:
        result = run_inference(
            kit, inputs, output, shards=shards, credentials=credentials, home=home
        )
    summary["run"] = result.to_dict()
    summary["predictions"] = predictions_summary(output)
    return summary


@flow(name="sentiment-repack")
def repack(project: str, reference: str, home: str | None = None) -> str:
    """Pack the same project again: unchanged inputs are a cache hit (the state's name)."""
    state = pack_modelkit(project, tag=reference, home=home, return_state=True)
    return str(state.name)


def predictions_summary(output: Path) -> dict[str, Any]:
    """How many predictions of each label, and the first few lines."""
    import json

    rows = [json.loads(line) for line in output.read_text().splitlines() if line.strip()]
    counts = Counter(str(row.get("prediction")) for row in rows)
    return {"records": len(rows), "labels": dict(sorted(counts.items())), "first": rows[:5]}
