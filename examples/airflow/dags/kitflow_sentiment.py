"""Example DAGs: train the sentiment model, pack it as a ModelKit, push it, score a batch.

``kitflow_sentiment`` runs everything on the worker (local inference backend).
``kitflow_sentiment_argo`` is the same pipeline with batch inference on Argo Workflows: the
operator defers to the triggerer while the Workflow runs and re-attaches on retry.
``kitflow_on_new_model`` is scheduled on the pushed ModelKit: it runs for every new digest.

Settings (environment, read when the DAG file is parsed):
  KITFLOW_EXAMPLE_REGISTRY  registry host[:port] to push to (connection ``kitops_registry_default``
                            holds its credentials/TLS); unset: stay in the local store.
  KITFLOW_EXAMPLE_WORKDIR   where training copies and predictions go (default: a temp dir).
  KITFLOW_EXAMPLE_POLL      seconds between Argo status checks (default 15).
Argo settings come from the ``argo_default`` connection (or ARGO_SERVER / ARGO_TOKEN / ...).
"""

from __future__ import annotations

import json
import os
import shutil
import sys
import tempfile
from collections import Counter
from pathlib import Path
from typing import Any

import pendulum
from airflow.sdk import DAG, AssetAlias, task
from kitflow_airflow.filters import TEMPLATE_FILTERS
from kitflow_airflow.operators.argo import ArgoInferenceOperator
from kitflow_airflow.operators.modelkit import KitPackOperator, KitPushOperator
from kitflow_airflow.operators.run import KitRunOperator

SENTIMENT = Path(__file__).resolve().parents[2] / "sentiment"
REGISTRY = os.environ.get("KITFLOW_EXAMPLE_REGISTRY") or None
WORKDIR = Path(
    os.environ.get("KITFLOW_EXAMPLE_WORKDIR") or Path(tempfile.gettempdir()) / "kitflow-airflow"
)
REPOSITORY = f"{REGISTRY}/kitflow/sentiment" if REGISTRY else "kitflow/sentiment"
ALIAS = "modelkit:kitflow/sentiment"
POLL_SECONDS = float(os.environ.get("KITFLOW_EXAMPLE_POLL") or 15)

# Tags come from the run id; ``oci_tag`` turns "manual__2026-...+00:00" into a valid OCI tag.
TAG = REPOSITORY + ":{{ run_id | oci_tag }}"
RUN_DIR = str(WORKDIR) + "/{{ run_id | oci_tag }}"


@task
def train_model(run_dir: str) -> str:
    """Copy the example project, train the model into it, and return the directory to pack."""
    context = Path(run_dir) / "project"
    if context.exists():
        shutil.rmtree(context)
    shutil.copytree(
        SENTIMENT, context, ignore=shutil.ignore_patterns("__pycache__", "*.pyc", "model")
    )
    sys.path.insert(0, str(context))
    try:
        import train  # the example's own training script

        accuracy = train.train(context / "data" / "train.csv", context / "model")
    finally:
        sys.path.remove(str(context))
        sys.modules.pop("train", None)
    print(f"held-out accuracy {accuracy:.3f}")
    return str(context)


@task
def summarize(result: dict[str, Any]) -> dict[str, Any]:
    """Count the predicted labels, show a few predictions, write summary.json next to them."""
    output = Path(result["output"])
    rows = [json.loads(line) for line in output.read_text().splitlines() if line.strip()]
    summary = {
        "records": result["records"],
        "model_digest": result["model_digest"],
        "output": str(output),
        "labels": dict(Counter(str(r["prediction"]) for r in rows)),
        "examples": rows[:3],
    }
    print(json.dumps(summary, indent=2))
    (output.parent / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")
    return summary


def _pipeline(argo: bool) -> None:
    context_dir = train_model(run_dir=RUN_DIR)
    pack = KitPackOperator(task_id="pack_modelkit", context_dir=context_dir, tag=TAG)
    last: Any = pack
    if REGISTRY:
        push = KitPushOperator(task_id="push_modelkit", reference=TAG, asset_alias=ALIAS)
        pack >> push
        last = push
    common: dict[str, Any] = {
        "task_id": "batch_inference",
        "reference": TAG,
        "input_path": str(SENTIMENT / "data" / "inputs.jsonl"),
        "output_path": RUN_DIR + "/predictions.jsonl",
    }
    infer: Any
    if argo:
        infer = ArgoInferenceOperator(
            **common,
            shards=2,
            parallelism=2,
            deferrable=True,  # no worker slot held while the Workflow runs
            poll_interval=POLL_SECONDS,
            pod_resources={"cpu": "500m", "memory": "512Mi"},
        )
    else:
        # 20 sample records: one shard scored in the worker process (no process pool start-up).
        infer = KitRunOperator(**common, shards=1, parallelism=1)
    last >> infer
    summarize(infer.output)


with DAG(
    dag_id="kitflow_sentiment",
    schedule=None,
    start_date=pendulum.datetime(2026, 1, 1, tz="UTC"),
    catchup=False,
    tags=["kitflow", "example"],
    doc_md=__doc__,
    user_defined_filters=TEMPLATE_FILTERS,
) as dag:
    _pipeline(argo=False)


with DAG(
    dag_id="kitflow_sentiment_argo",
    schedule=None,
    start_date=pendulum.datetime(2026, 1, 1, tz="UTC"),
    catchup=False,
    tags=["kitflow", "example", "argo"],
    doc_md=__doc__,
    user_defined_filters=TEMPLATE_FILTERS,
) as argo_dag:
    _pipeline(argo=True)


with DAG(
    dag_id="kitflow_on_new_model",
    schedule=[AssetAlias(ALIAS)],
    start_date=pendulum.datetime(2026, 1, 1, tz="UTC"),
    catchup=False,
    tags=["kitflow", "example"],
) as on_new_model_dag:

    @task
    def announce(**context: Any) -> list[str]:
        """List the ModelKits (``oci://registry/repo@digest``) whose push triggered this run."""
        events = context["triggering_asset_events"]
        uris = sorted({event.asset.uri for evs in events.values() for event in evs})
        for uri in uris:
            print(f"new ModelKit: {uri}")
        return uris

    announce()
