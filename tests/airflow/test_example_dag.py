"""The example DAG runs end to end with ``dag.test()`` (throwaway SQLite metadata DB): train,
pack, push to the real registry, batch inference on the local backend, summary; the push
records an ``oci://registry/repo@digest`` asset event."""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path
from types import ModuleType

import pytest
from support.argo_executor import ArgoExecutor
from support.argo_fake import ARGO_TOKEN, FakeArgoServer
from support.registry import RunningRegistry

KITFLOW = Path(sys.executable).parent / "kitflow"

DAG_FILE = (
    Path(__file__).resolve().parents[2] / "examples" / "airflow" / "dags" / "kitflow_sentiment.py"
)


def load_dag_module(name: str) -> ModuleType:
    spec = importlib.util.spec_from_file_location(name, DAG_FILE)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.slow
def test_example_dag_trains_packs_pushes_and_scores(
    airflow_db: Path,
    registry: RunningRegistry,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("KITOPS_HOME", str(tmp_path / "kitops"))
    monkeypatch.setenv("KITFLOW_EXAMPLE_WORKDIR", str(tmp_path / "runs"))
    monkeypatch.setenv("KITFLOW_EXAMPLE_REGISTRY", registry.host)
    monkeypatch.setenv(
        "AIRFLOW_CONN_KITOPS_REGISTRY_DEFAULT",
        json.dumps(
            {"conn_type": "kitops_registry", "host": registry.host, "extra": {"plain_http": True}}
        ),
    )
    module = load_dag_module("kitflow_sentiment_under_test")
    dag = module.dag
    assert {"train_model", "pack_modelkit", "push_modelkit", "batch_inference", "summarize"} <= set(
        dag.task_ids
    )

    dag_run = dag.test()
    assert str(dag_run.state) == "success"

    (summary_file,) = (tmp_path / "runs").glob("*/summary.json")
    summary = json.loads(summary_file.read_text())
    assert summary["records"] == 20
    assert set(summary["labels"]) <= {"positive", "negative"}
    assert sum(summary["labels"].values()) == 20
    assert summary["model_digest"].startswith("sha256:")

    from airflow.models.asset import AssetEvent, AssetModel
    from airflow.utils.session import create_session
    from sqlalchemy import select

    expected = f"oci://{registry.host}/kitflow/sentiment@{summary['model_digest']}"
    with create_session() as session:
        uris = session.scalars(
            select(AssetModel.uri).join(AssetEvent, AssetEvent.asset_id == AssetModel.id)
        ).all()
    assert expected in uris


@pytest.mark.slow
def test_argo_dag_defers_and_collects_with_dag_test(
    airflow_db: Path,
    registry: RunningRegistry,
    argo_server: FakeArgoServer,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The deferrable path under Airflow's own machinery: dag.test() runs the trigger inline,
    the task state store and XCom are real; the fake Argo Server's controller is the in-test
    executor, whose pods score the shards against the real registry."""
    executor = ArgoExecutor(KITFLOW, tmp_path / "pods", max_workers=2)
    argo_server.state.controller = executor.run
    monkeypatch.setenv("KITOPS_HOME", str(tmp_path / "kitops"))
    monkeypatch.setenv("KITFLOW_EXAMPLE_WORKDIR", str(tmp_path / "runs"))
    monkeypatch.setenv("KITFLOW_EXAMPLE_REGISTRY", registry.host)
    monkeypatch.setenv("KITFLOW_EXAMPLE_POLL", "0.2")
    monkeypatch.setenv(
        "AIRFLOW_CONN_KITOPS_REGISTRY_DEFAULT",
        json.dumps(
            {"conn_type": "kitops_registry", "host": registry.host, "extra": {"plain_http": True}}
        ),
    )
    monkeypatch.setenv(
        "AIRFLOW_CONN_ARGO_DEFAULT",
        json.dumps(
            {
                "conn_type": "argo_workflows",
                "host": argo_server.url,
                "password": ARGO_TOKEN,
                "extra": {"namespace": "ml"},
            }
        ),
    )
    module = load_dag_module("kitflow_sentiment_argo_e2e")
    dag_run = module.argo_dag.test()
    assert str(dag_run.state) == "success"

    (summary_file,) = (tmp_path / "runs").glob("*/summary.json")
    summary = json.loads(summary_file.read_text())
    assert summary["records"] == 20 and sum(summary["labels"].values()) == 20
    ((_, name),) = argo_server.state.objects
    assert name.startswith("kitflow-batch-")
    assert sorted(argv[1] for argv in executor.commands) == [
        "argo-gather",
        "argo-shard",
        "argo-shard",
    ]

    from airflow.models.xcom import XComModel
    from airflow.utils.session import create_session
    from sqlalchemy import select

    with create_session() as session:
        rows = session.execute(
            select(XComModel.key, XComModel.value).where(
                XComModel.run_id == dag_run.run_id, XComModel.task_id == "batch_inference"
            )
        ).all()
    values = {key: value for key, value in rows}
    url = f"{argo_server.url}/workflows/ml/{name}"
    assert url in str(values["_link_ArgoWorkflowLink"])  # the Argo UI button
    assert ARGO_TOKEN not in json.dumps([str(v) for v in values.values()])


def test_argo_variant_defers_inference(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("KITFLOW_EXAMPLE_WORKDIR", str(tmp_path))
    monkeypatch.delenv("KITFLOW_EXAMPLE_REGISTRY", raising=False)
    module = load_dag_module("kitflow_sentiment_argo_under_test")
    task = module.argo_dag.get_task("batch_inference")
    assert type(task).__name__ == "ArgoInferenceOperator"
    assert task.deferrable is True
    # Without a registry the pipeline stays in the local store: no push task.
    assert "push_modelkit" not in module.argo_dag.task_ids


def test_downstream_dag_is_scheduled_on_the_modelkit_alias(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from airflow.sdk import AssetAlias

    monkeypatch.setenv("KITFLOW_EXAMPLE_REGISTRY", "registry.example.com")
    module = load_dag_module("kitflow_on_new_model_under_test")
    alias = AssetAlias(module.ALIAS)
    assert alias in module.on_new_model_dag.timetable.asset_condition.objects
    assert alias in module.dag.get_task("push_modelkit").outlets
