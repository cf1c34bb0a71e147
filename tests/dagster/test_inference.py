"""``inference_asset`` on the local backend and on Argo (the fake Argo Server, whose in-test
executor runs the pods as real ``kitflow`` processes against the real registry): predictions,
per-partition outputs from one run per range, metadata, and stopping the Workflow when the
Dagster run is terminated."""

from __future__ import annotations

import os
import signal
import sys
import threading
import time
from pathlib import Path
from typing import Any

import dagster as dg
import kitflow
import pytest
from dagster._core.errors import DagsterExecutionInterruptedError
from dagster_kitflow import ArgoResource, KitRegistryResource, inference_asset, modelkit_asset
from support.argo_executor import ArgoExecutor
from support.argo_fake import ARGO_TOKEN, FakeArgoServer, failed_steps
from support.inference_kits import make_kit, read_jsonl, write_jsonl
from support.registry import RunningRegistry, unique_repo

KITFLOW = Path(sys.executable).parent / "kitflow"
RANGE_START = "dagster/asset_partition_range_start"
RANGE_END = "dagster/asset_partition_range_end"
BATCHES = {"a": ["good", "bad"], "b": ["fine"], "c": ["great", "awful", "meh"]}


def write_batches(root: Path) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    for key, texts in BATCHES.items():
        write_jsonl(
            root / f"{key}.jsonl", [{"id": f"{key}{i}", "text": t} for i, t in enumerate(texts)]
        )
    return root


def the_materialization(result: dg.ExecuteInJobResult, node: str) -> dg.AssetMaterialization:
    mats = result.asset_materializations_for_node(node)
    assert mats
    return mats[0]


@pytest.fixture(scope="module")
def kit_ref(registry: RunningRegistry, tmp_path_factory: pytest.TempPathFactory) -> str:
    """An echo kit packed and pushed to the session registry."""
    base = tmp_path_factory.mktemp("dagster-kit")
    reference = registry.ref(unique_repo("dagster-run"), "v1")
    kitflow.pack(make_kit(base / "echo", weights="e"), tag=reference, home=base / "home")
    kitflow.push(reference, registry=registry.options(), home=base / "home")
    return reference


@pytest.mark.registry
def test_local_inference_uses_the_recorded_modelkit(
    registry: RunningRegistry, kit_home: Path, tmp_path: Path
) -> None:
    kit = modelkit_asset(
        name="echo_kit",
        repository=unique_repo("dagster"),
        context_dir=make_kit(tmp_path / "echo", weights="w"),
    )
    inputs = write_jsonl(tmp_path / "in.jsonl", [{"id": i, "text": t} for i, t in enumerate("xyz")])
    output = tmp_path / "out" / "predictions.jsonl"
    preds = inference_asset(
        name="echo_predictions", modelkit=kit, inputs=inputs, output=output, shards=2
    )
    resource = KitRegistryResource(registry=registry.host, plain_http=True)
    result = dg.materialize([kit, preds], resources={"kit_registry": resource})
    assert result.success
    kit_mat = the_materialization(result, "echo_kit")
    mat = the_materialization(result, "echo_predictions")
    assert [r["prediction"] for r in read_jsonl(output)] == ["w:X", "w:Y", "w:Z"]
    assert mat.metadata["records"].value == 3
    assert mat.metadata["backend"].value == "local"
    assert mat.metadata["model_digest"].value == kit_mat.metadata["digest"].value
    assert mat.metadata["modelkit"].value == kit_mat.metadata["pinned_reference"].value
    assert mat.metadata["output"].value == str(output)
    assert '"w:X"' in mat.metadata["preview"].value
    assert len(mat.metadata["shards"].value.records) == 2


@pytest.mark.registry
def test_partition_range_is_one_run_split_per_partition(
    kit_ref: str, registry: RunningRegistry, kit_home: Path, tmp_path: Path
) -> None:
    batches = write_batches(tmp_path / "batches")
    parts = dg.StaticPartitionsDefinition(list(BATCHES))
    preds = inference_asset(
        name="batch_predictions",
        reference=kit_ref,
        inputs=str(batches / "{partition_key}.jsonl"),
        output=str(tmp_path / "out" / "{partition_key}.jsonl"),
        partitions_def=parts,
    )
    assert preds.backfill_policy == dg.BackfillPolicy.single_run()
    resource = KitRegistryResource(registry=registry.host, plain_http=True)
    result = dg.materialize(
        [preds],
        resources={"kit_registry": resource},
        tags={RANGE_START: "a", RANGE_END: "c"},
    )
    assert result.success
    for key, texts in BATCHES.items():
        rows = read_jsonl(tmp_path / "out" / f"{key}.jsonl")
        assert [r["prediction"] for r in rows] == [f"e:{t.upper()}" for t in texts]
        assert [r["id"] for r in rows] == [f"{key}{i}" for i in range(len(texts))]
    mats = result.asset_materializations_for_node("batch_predictions")
    assert sorted(m.partition for m in mats) == ["a", "b", "c"]
    assert mats[0].metadata["records"].value == 6
    assert mats[0].metadata["records_by_partition"].value == {"a": 2, "b": 1, "c": 3}


@pytest.mark.registry
def test_direct_invocation_with_build_asset_context(
    kit_ref: str, registry: RunningRegistry, kit_home: Path, tmp_path: Path
) -> None:
    batches = write_batches(tmp_path / "batches")
    preds = inference_asset(
        name="one_batch",
        reference=kit_ref,
        inputs=lambda key: batches / f"{key}.jsonl",
        partitions_def=dg.StaticPartitionsDefinition(list(BATCHES)),
    )
    with dg.instance_for_test(temp_dir=str(tmp_path)) as instance:
        context = dg.build_asset_context(
            partition_key="b",
            instance=instance,
            resources={
                "kit_registry": KitRegistryResource(registry=registry.host, plain_http=True)
            },
        )
        result = preds(context)
        output = Path(result.metadata["output"].value)
        assert output.is_relative_to(instance.storage_directory())
        assert [r["prediction"] for r in read_jsonl(output)] == ["e:FINE"]


# ----------------------------------------------------------------------------- Argo


@pytest.fixture
def executor(argo_server: FakeArgoServer, tmp_path: Path) -> ArgoExecutor:
    """Make the fake server's controller run submitted Workflows for real."""
    runner = ArgoExecutor(KITFLOW, tmp_path / "pods", max_workers=2)
    argo_server.state.controller = runner.run
    return runner


def argo_resource(server: FakeArgoServer, **overrides: Any) -> ArgoResource:
    values: dict[str, Any] = {
        "server": server.url,
        "token": dg.EnvVar("TEST_ARGO_TOKEN"),
        "namespace": "ml",
        "poll_seconds": 0.1,
        **overrides,
    }
    return ArgoResource(**values)


@pytest.mark.registry
def test_argo_partition_range_is_one_workflow(
    kit_ref: str,
    registry: RunningRegistry,
    argo_server: FakeArgoServer,
    executor: ArgoExecutor,
    kit_home: Path,
    tmp_path: Path,
    instance: dg.DagsterInstance,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("TEST_ARGO_TOKEN", ARGO_TOKEN)
    batches = write_batches(tmp_path / "batches")
    preds = inference_asset(
        name="argo_predictions",
        reference=kit_ref,
        inputs=str(batches / "{partition_key}.jsonl"),
        output=str(tmp_path / "out" / "{partition_key}.jsonl"),
        backend="argo",
        shards=2,
        partitions_def=dg.StaticPartitionsDefinition(list(BATCHES)),
    )
    resources = {
        "kit_registry": KitRegistryResource(registry=registry.host, plain_http=True),
        "argo": argo_resource(argo_server),
    }
    result = dg.materialize(
        [preds], resources=resources, instance=instance, tags={RANGE_START: "a", RANGE_END: "c"}
    )
    assert result.success
    assert len(argo_server.state.objects) == 1  # one Workflow for the whole range
    ((_, name),) = argo_server.state.objects
    for key, texts in BATCHES.items():
        rows = read_jsonl(tmp_path / "out" / f"{key}.jsonl")
        assert [r["prediction"] for r in rows] == [f"e:{t.upper()}" for t in texts]
    mat = the_materialization(result, "argo_predictions")
    assert mat.metadata["backend"].value == "argo"
    assert mat.metadata["workflow"].value == f"ml/{name}"
    assert mat.metadata["workflow_url"].value.endswith(f"/workflows/ml/{name}")
    assert mat.metadata["records"].value == 6
    (observed,) = result.asset_observations_for_node("argo_predictions")
    assert observed.metadata["workflow_url"] == mat.metadata["workflow_url"]
    stored = [repr(r) for r in instance.all_logs(result.run_id)]
    assert not any(ARGO_TOKEN in s for s in stored)
    token = ARGO_TOKEN.encode()
    on_disk = Path(instance.root_directory).rglob("*")
    assert not [p for p in on_disk if p.is_file() and token in p.read_bytes()]


def _wait_for_workflow(server: FakeArgoServer, timeout: float = 60.0) -> tuple[str, str]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with server.state.lock:
            if server.state.objects:
                return next(iter(server.state.objects))
        time.sleep(0.05)
    raise AssertionError("no Workflow was submitted")


def _never_ending(server: FakeArgoServer) -> None:
    server.state.default_steps = [{"phase": "Running", "progress": "0/2"}]


@pytest.mark.registry
@pytest.mark.parametrize("how", ["run-canceled", "interrupt", "timeout"])
def test_terminating_the_run_stops_the_workflow(
    how: str,
    kit_ref: str,
    registry: RunningRegistry,
    argo_server: FakeArgoServer,
    kit_home: Path,
    tmp_path: Path,
    instance: dg.DagsterInstance,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("TEST_ARGO_TOKEN", ARGO_TOKEN)
    _never_ending(argo_server)
    inputs = write_jsonl(
        tmp_path / "in.jsonl", [{"id": 1, "text": "hello"}, {"id": 2, "text": "x"}]
    )
    preds = inference_asset(
        name="stuck_predictions",
        reference=kit_ref,
        inputs=inputs,
        backend="argo",
        timeout=1.0 if how == "timeout" else None,
    )
    resources = {
        "kit_registry": KitRegistryResource(registry=registry.host, plain_http=True),
        "argo": argo_resource(argo_server),
    }

    def terminate() -> None:
        _wait_for_workflow(argo_server)
        if how == "interrupt":  # what a run worker gets when the run is terminated
            os.kill(os.getpid(), signal.SIGINT)
        elif how == "run-canceled":  # terminate from the UI with in-process executors
            (run,) = instance.get_runs(limit=1)
            instance.report_run_canceling(run)

    killer = threading.Thread(target=terminate, daemon=True)
    killer.start()
    if how == "interrupt":
        with pytest.raises(DagsterExecutionInterruptedError):
            dg.materialize([preds], resources=resources, instance=instance)
    else:
        result = dg.materialize(
            [preds], resources=resources, instance=instance, raise_on_error=False
        )
        assert not result.success
    killer.join(timeout=30)
    ((ns, name),) = argo_server.state.objects
    workflow = argo_server.state.objects[(ns, name)]
    assert workflow["spec"].get("shutdown") == "Stop"
    assert any(m == "PUT" and p.endswith(f"/{name}/stop") for m, p, _ in argo_server.requests)


@pytest.mark.registry
def test_failed_workflow_fails_the_step_and_is_rerun_next_time(
    kit_ref: str,
    registry: RunningRegistry,
    argo_server: FakeArgoServer,
    kit_home: Path,
    tmp_path: Path,
    instance: dg.DagsterInstance,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("TEST_ARGO_TOKEN", ARGO_TOKEN)
    argo_server.state.default_steps = failed_steps("OOMKilled (exit code 137)")
    inputs = write_jsonl(tmp_path / "in.jsonl", [{"id": 1, "text": "a"}, {"id": 2, "text": "b"}])
    output = tmp_path / "out.jsonl"
    preds = inference_asset(
        name="flaky_predictions", reference=kit_ref, inputs=inputs, output=output, backend="argo"
    )
    resources = {
        "kit_registry": KitRegistryResource(registry=registry.host, plain_http=True),
        "argo": argo_resource(argo_server),
    }
    failed = dg.materialize([preds], resources=resources, instance=instance, raise_on_error=False)
    assert not failed.success
    failure = failed.get_step_failure_events()[0]
    assert "OOMKilled" in str(failure.step_failure_data.error)
    assert not output.exists()

    # The next materialization replaces the failed Workflow (same job, same name) and succeeds.
    runner = ArgoExecutor(KITFLOW, tmp_path / "pods", max_workers=2)
    argo_server.state.controller = runner.run
    again = dg.materialize([preds], resources=resources, instance=instance)
    assert again.success
    assert [r["prediction"] for r in read_jsonl(output)] == ["e:A", "e:B"]
    assert any(m == "DELETE" for m, _, _ in argo_server.requests)
    assert len(argo_server.state.objects) == 1
    ((ns, name, old_uid),) = argo_server.state.deleted  # only the failed one was deleted
    assert argo_server.state.objects[(ns, name)]["metadata"]["uid"] != old_uid
    assert argo_server.state.objects[(ns, name)]["status"]["phase"] == "Succeeded"
