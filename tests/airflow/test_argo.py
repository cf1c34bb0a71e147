"""The Argo path against the fake Argo Server: the trigger follows Workflows (success, failure,
timeout, transient errors, user kill), the deferrable operator submits, defers, re-attaches on
retry through the task state store (and re-runs a Workflow that failed) and collects real
predictions (the in-test executor runs the pods against the real registry), ``on_kill`` stops,
and the sensor waits."""

from __future__ import annotations

import asyncio
import json
import sys
import threading
from pathlib import Path
from typing import Any

import pytest
from airflow.sdk.exceptions import TaskDeferred
from kitflow import api
from kitflow.errors import WorkflowFailed
from kitflow_airflow.links import WORKFLOW_XCOM_KEY, ArgoWorkflowLink
from kitflow_airflow.operators.argo import ArgoInferenceOperator
from kitflow_airflow.sensors.argo import ArgoWorkflowSensor
from kitflow_airflow.triggers.argo import ArgoWorkflowTrigger
from support.argo_executor import ArgoExecutor
from support.argo_fake import ARGO_TOKEN, FakeArgoServer, failed_steps
from support.inference_kits import make_kit, read_jsonl, write_jsonl
from support.registry import RunningRegistry, unique_repo

KITFLOW = Path(sys.executable).parent / "kitflow"
NS = "ml"


class StateStore:
    """The task state store's interface (``get``/``set``/``delete``), kept across attempts."""

    def __init__(self) -> None:
        self.values: dict[str, Any] = {}

    def get(self, key: str) -> Any:
        return self.values.get(key)

    def set(self, key: str, value: Any) -> None:
        json.dumps(value)  # what Airflow stores must be JSON
        self.values[key] = value

    def delete(self, key: str) -> None:
        self.values.pop(key, None)


class FakeTI:
    """Records XCom pushes the way the task instance would receive them."""

    def __init__(self) -> None:
        self.xcoms: dict[str, Any] = {}
        self.stats_tags: dict[str, str] = {}

    def xcom_push(self, key: str, value: Any) -> None:
        json.dumps(value)
        self.xcoms[key] = value


def context_for(store: StateStore) -> dict[str, Any]:
    return {"task_state_store": store, "ti": FakeTI()}


@pytest.fixture
def argo_conn(argo_server: FakeArgoServer, monkeypatch: pytest.MonkeyPatch) -> FakeArgoServer:
    monkeypatch.setenv(
        "AIRFLOW_CONN_ARGO_DEFAULT",
        json.dumps(
            {
                "conn_type": "argo_workflows",
                "host": argo_server.url,
                "password": ARGO_TOKEN,
                "extra": {"namespace": NS},
            }
        ),
    )
    return argo_server


@pytest.fixture
def registry_conn(registry: RunningRegistry, monkeypatch: pytest.MonkeyPatch) -> RunningRegistry:
    monkeypatch.setenv(
        "AIRFLOW_CONN_KITOPS_REGISTRY_DEFAULT",
        json.dumps(
            {"conn_type": "kitops_registry", "host": registry.host, "extra": {"plain_http": True}}
        ),
    )
    return registry


@pytest.fixture
def pushed_kit(registry_conn: RunningRegistry, tmp_path: Path) -> str:
    """An echo kit packed and pushed to the real registry; returns its reference."""
    kit = make_kit(tmp_path / "kit", weights="w9")
    ref = registry_conn.ref(unique_repo("airflow-argo"), "v1")
    api.pack(kit, tag=ref, home=tmp_path / "home")
    api.push(ref, registry=registry_conn.options(), home=tmp_path / "home")
    return ref


@pytest.fixture
def inputs(tmp_path: Path) -> Path:
    return write_jsonl(tmp_path / "in.jsonl", [{"id": f"r{i}", "text": f"x{i}"} for i in range(9)])


@pytest.fixture
def executor(tmp_path: Path) -> ArgoExecutor:
    return ArgoExecutor(KITFLOW, tmp_path / "pods", max_workers=2)


def make_operator(
    reference: str, inputs: Path, output: Path, **kwargs: Any
) -> ArgoInferenceOperator:
    return ArgoInferenceOperator(
        task_id="argo_inference",
        reference=reference,
        input_path=str(inputs),
        output_path=str(output),
        shards=2,
        parallelism=2,
        poll_interval=0.05,
        **kwargs,
    )


def fire(trigger: ArgoWorkflowTrigger) -> dict[str, Any]:
    """Run the trigger to its (single) event, as the triggerer would."""

    async def first() -> dict[str, Any]:
        async for event in trigger.run():
            return dict(event.payload)
        raise AssertionError("trigger ended without an event")

    return asyncio.run(first())


def creates(server: FakeArgoServer) -> int:
    return sum(
        1
        for method, path, _ in server.requests
        if method == "POST" and path.endswith(f"/workflows/{NS}")
    )


def new_workflow(
    server: FakeArgoServer, name: str, steps: list[dict[str, Any]] | None = None
) -> dict[str, Any]:
    if steps is not None:
        server.state.script(name, steps)
    code, _ = server.state.create(NS, {"metadata": {"name": name}, "spec": {}})
    assert code == 200
    return {"name": name, "namespace": NS, "url": None, "uid": ""}


# ----------------------------------------------------------------------------- trigger


def test_trigger_serializes_to_plain_json_without_secrets(argo_conn: FakeArgoServer) -> None:
    trigger = ArgoWorkflowTrigger(
        submission={"name": "wf", "namespace": NS, "url": None, "uid": "u"},
        poll_interval=3,
        timeout=60,
    )
    path, kwargs = trigger.serialize()
    assert path == "kitflow_airflow.triggers.argo.ArgoWorkflowTrigger"
    text = json.dumps(kwargs)
    assert ARGO_TOKEN not in text
    assert ArgoWorkflowTrigger(**kwargs).serialize() == (path, kwargs)


def test_trigger_follows_a_workflow_to_success(argo_conn: FakeArgoServer) -> None:
    sub = new_workflow(argo_conn, "wf-ok")
    event = fire(ArgoWorkflowTrigger(submission=sub, poll_interval=0.01))
    assert event["status"] == "success"
    assert event["workflow"]["phase"] == "Succeeded"
    assert event["submission"] == sub


def test_trigger_reports_the_failing_node(argo_conn: FakeArgoServer) -> None:
    sub = new_workflow(argo_conn, "wf-bad", failed_steps("OOMKilled (exit code 137)"))
    event = fire(ArgoWorkflowTrigger(submission=sub, poll_interval=0.01))
    assert event["status"] == "failed"
    assert "OOMKilled (exit code 137)" in event["message"]


def test_trigger_survives_transient_errors(argo_conn: FakeArgoServer) -> None:
    sub = new_workflow(argo_conn, "wf-flaky")
    argo_conn.fail_next = [503, 502]
    event = fire(ArgoWorkflowTrigger(submission=sub, poll_interval=0.01))
    assert event["status"] == "success"


def test_trigger_gives_up_after_timeout_and_leaves_the_workflow(argo_conn: FakeArgoServer) -> None:
    sub = new_workflow(argo_conn, "wf-slow", [{"phase": "Running"}] * 10_000)
    event = fire(ArgoWorkflowTrigger(submission=sub, poll_interval=0.02, timeout=0.2))
    assert event["status"] == "timeout"
    wf = argo_conn.state.objects[(NS, "wf-slow")]
    assert "shutdown" not in wf.get("spec", {})


def test_trigger_on_kill_stops_the_workflow_only_when_asked(argo_conn: FakeArgoServer) -> None:
    kept = new_workflow(argo_conn, "wf-keep", [{"phase": "Running"}] * 100)
    asyncio.run(ArgoWorkflowTrigger(submission=kept, cancel_on_kill=False).on_kill())
    assert "shutdown" not in argo_conn.state.objects[(NS, "wf-keep")].get("spec", {})

    sub = new_workflow(argo_conn, "wf-kill", [{"phase": "Running"}] * 100)
    asyncio.run(ArgoWorkflowTrigger(submission=sub).on_kill())
    wf = argo_conn.state.objects[(NS, "wf-kill")]
    assert wf["spec"]["shutdown"] == "Stop"


def test_trigger_error_event_when_argo_is_unreachable(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(
        "AIRFLOW_CONN_ARGO_DEFAULT",
        json.dumps({"conn_type": "argo_workflows", "host": "http://127.0.0.1:9", "password": "t"}),
    )
    sub = {"name": "wf", "namespace": NS, "url": None, "uid": ""}
    event = fire(ArgoWorkflowTrigger(submission=sub, poll_interval=0.01))
    assert event["status"] == "error"


# ----------------------------------------------------------------------------- operator


def test_deferrable_operator_end_to_end(
    argo_conn: FakeArgoServer,
    executor: ArgoExecutor,
    pushed_kit: str,
    inputs: Path,
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
    capsys: pytest.CaptureFixture[str],
) -> None:
    argo_conn.state.controller = executor.run
    store = StateStore()
    ctx = context_for(store)
    op = make_operator(pushed_kit, inputs, tmp_path / "out.jsonl", deferrable=True)

    with pytest.raises(TaskDeferred) as deferred:
        op.execute(ctx)
    trigger = deferred.value.trigger
    assert isinstance(trigger, ArgoWorkflowTrigger)
    assert deferred.value.method_name == "execute_complete"
    submission = store.get(WORKFLOW_XCOM_KEY)  # persisted before waiting (durable execution)
    assert submission["name"].startswith("kitflow-batch-")
    assert ctx["ti"].xcoms[WORKFLOW_XCOM_KEY] == submission
    url = f"{argo_conn.url}/workflows/{NS}/{submission['name']}"
    assert submission["url"] == url
    assert ArgoWorkflowLink().get_link(op, ti_key=None) == url  # type: ignore[arg-type]
    assert ARGO_TOKEN not in json.dumps(trigger.serialize())

    event = fire(trigger)
    assert event["status"] == "success"
    resumed = make_operator(pushed_kit, inputs, tmp_path / "out.jsonl", deferrable=True)
    result = resumed.execute_complete(context_for(store), event)
    json.dumps(result)
    assert result["backend"] == "argo" and result["records"] == 9
    assert result["workflow_name"] == submission["name"]
    assert result["workflow_url"] == url
    assert result["model_digest"].startswith("sha256:")
    assert [r["prediction"] for r in read_jsonl(tmp_path / "out.jsonl")] == [
        f"w9:X{i}" for i in range(9)
    ]
    assert ArgoWorkflowLink().get_link(resumed, ti_key=None) == url  # type: ignore[arg-type]
    assert ARGO_TOKEN not in json.dumps(result)
    logs = caplog.text + "".join(capsys.readouterr())
    assert "Submitted Workflow" in logs
    assert ARGO_TOKEN not in logs


def test_retry_reattaches_to_the_running_workflow_and_reuses_a_finished_one(
    argo_conn: FakeArgoServer,
    executor: ArgoExecutor,
    pushed_kit: str,
    inputs: Path,
    tmp_path: Path,
) -> None:
    gate = threading.Event()

    def controller(wf: dict[str, Any]) -> dict[str, Any]:
        assert gate.wait(60), "test never released the workflow"
        return executor.run(wf)

    argo_conn.state.controller = controller
    store = StateStore()
    out = tmp_path / "out.jsonl"

    with pytest.raises(TaskDeferred):  # attempt 1 submits and defers; then the worker dies
        make_operator(pushed_kit, inputs, out, deferrable=True).execute(context_for(store))
    assert creates(argo_conn) == 1

    # attempt 2: the stored Workflow is Running -> re-attach (defer again), nothing submitted
    with pytest.raises(TaskDeferred) as deferred:
        make_operator(pushed_kit, inputs, out, deferrable=True).execute(context_for(store))
    assert creates(argo_conn) == 1
    assert len(argo_conn.state.objects) == 1

    gate.set()
    event = fire(deferred.value.trigger)
    assert event["status"] == "success"
    pods = len(executor.commands)

    # attempt 3 (say the worker died after the Workflow finished): collect, run nothing again
    result = make_operator(pushed_kit, inputs, out, deferrable=False).execute(context_for(store))
    assert result["records"] == 9
    assert creates(argo_conn) == 1 and len(executor.commands) == pods


def test_polling_mode_waits_on_the_worker(
    argo_conn: FakeArgoServer,
    executor: ArgoExecutor,
    pushed_kit: str,
    inputs: Path,
    tmp_path: Path,
) -> None:
    argo_conn.state.controller = executor.run
    op = make_operator(pushed_kit, inputs, tmp_path / "out.jsonl", deferrable=False)
    result = op.execute(context_for(StateStore()))
    assert result["records"] == 9 and result["phase"] == "Succeeded"


def test_without_task_state_store_the_core_name_still_reattaches(
    argo_conn: FakeArgoServer,
    executor: ArgoExecutor,
    pushed_kit: str,
    inputs: Path,
    tmp_path: Path,
) -> None:
    """Airflow < 3.3 (no task state store) or ``durable=False``: the Workflow's name comes from
    the job, so a second submission of the same job re-attaches instead of running again."""
    argo_conn.state.controller = executor.run
    first = make_operator(pushed_kit, inputs, tmp_path / "a.jsonl", durable=False)
    assert first.execute({"ti": FakeTI()})["records"] == 9
    pods = len(executor.commands)
    second = make_operator(pushed_kit, inputs, tmp_path / "b.jsonl")
    result = second.execute({"ti": FakeTI()})  # no task_state_store in the context
    assert result["records"] == 9 and len(argo_conn.state.objects) == 1
    assert len(executor.commands) == pods
    assert read_jsonl(tmp_path / "b.jsonl") == read_jsonl(tmp_path / "a.jsonl")


def test_single_record_inference_returns_the_prediction(
    argo_conn: FakeArgoServer, executor: ArgoExecutor, pushed_kit: str, tmp_path: Path
) -> None:
    argo_conn.state.controller = executor.run
    op = ArgoInferenceOperator(
        task_id="one",
        reference=pushed_kit,
        record={"id": "q", "text": "single"},
        deferrable=False,
        poll_interval=0.05,
    )
    result = op.execute(context_for(StateStore()))
    assert result["workflow_name"].startswith("kitflow-single-")
    assert result["records"] == 1 and result["prediction"] == "w9:SINGLE"


def test_failed_workflow_fails_the_task_with_the_node_message(
    argo_conn: FakeArgoServer, pushed_kit: str, inputs: Path, tmp_path: Path
) -> None:
    argo_conn.state.controller = lambda wf: failed_steps("boom: bad record at line 3")[-1]
    op = make_operator(pushed_kit, inputs, tmp_path / "out.jsonl", deferrable=True)
    store = StateStore()
    with pytest.raises(TaskDeferred) as deferred:
        op.execute(context_for(store))
    event = fire(deferred.value.trigger)
    assert event["status"] == "failed"
    with pytest.raises(WorkflowFailed, match="boom: bad record at line 3"):
        op.execute_complete(context_for(StateStore()), event)
    assert not (tmp_path / "out.jsonl").exists()


@pytest.mark.parametrize("deferrable", [True, False])
def test_retry_after_a_failed_workflow_runs_the_job_again(
    deferrable: bool,
    argo_conn: FakeArgoServer,
    executor: ArgoExecutor,
    pushed_kit: str,
    inputs: Path,
    tmp_path: Path,
) -> None:
    """Attempt 1's Workflow ends Failed (say a node was lost); the retry, with the failed
    Workflow stored in the task state store, replaces it: a fresh Workflow of the same name
    runs and succeeds, and exactly one Workflow of that name exists afterwards."""
    argo_conn.state.controller = lambda wf: failed_steps("node lost: pod deleted")[-1]
    store = StateStore()
    out = tmp_path / "out.jsonl"
    with pytest.raises(TaskDeferred) as deferred:
        make_operator(pushed_kit, inputs, out, deferrable=True).execute(context_for(store))
    event = fire(deferred.value.trigger)
    assert event["status"] == "failed"
    with pytest.raises(WorkflowFailed, match="node lost"):
        make_operator(pushed_kit, inputs, out).execute_complete(context_for(store), event)
    failed = dict(store.get(WORKFLOW_XCOM_KEY))
    failed_uid = argo_conn.state.objects[(NS, failed["name"])]["metadata"]["uid"]

    argo_conn.state.controller = executor.run  # the cluster is healthy again
    retry = make_operator(pushed_kit, inputs, out, deferrable=deferrable)
    ctx = context_for(store)
    if deferrable:
        with pytest.raises(TaskDeferred) as again:
            retry.execute(ctx)
        event = fire(again.value.trigger)
        assert event["status"] == "success"
        result = make_operator(pushed_kit, inputs, out).execute_complete(ctx, event)
    else:
        result = retry.execute(ctx)
    assert result["records"] == 9 and result["phase"] == "Succeeded"
    assert result["workflow_name"] == failed["name"]
    assert [r["prediction"] for r in read_jsonl(out)] == [f"w9:X{i}" for i in range(9)]
    assert creates(argo_conn) >= 2
    assert list(argo_conn.state.objects) == [(NS, failed["name"])]
    fresh = argo_conn.state.objects[(NS, failed["name"])]
    assert fresh["metadata"]["uid"] != failed_uid and fresh["status"]["phase"] == "Succeeded"
    assert argo_conn.state.deleted == [(NS, failed["name"], failed_uid)]
    assert store.get(WORKFLOW_XCOM_KEY)["uid"] == fresh["metadata"]["uid"]


@pytest.mark.parametrize("action", ["stop", "keep"])
def test_on_kill_stops_the_workflow_unless_kept(
    action: str, argo_conn: FakeArgoServer, pushed_kit: str, inputs: Path, tmp_path: Path
) -> None:
    gate = threading.Event()
    argo_conn.state.controller = lambda wf: (gate.wait(30), {"phase": "Succeeded"})[1]
    op = make_operator(pushed_kit, inputs, tmp_path / "o.jsonl", on_kill_action=action)
    submission = op.submit_job(context_for(StateStore()))
    op.on_kill()
    wf = argo_conn.state.objects[(NS, submission["name"])]
    gate.set()
    if action == "stop":
        assert wf["spec"]["shutdown"] == "Stop"
    else:
        assert "shutdown" not in wf["spec"]


def test_operator_fields_are_templated_and_hold_no_secret(pushed_kit: str, inputs: Path) -> None:
    op = make_operator(
        "{{ params.ref }}",
        inputs,
        Path("/tmp/{{ run_id | oci_tag }}.jsonl"),
        namespace="{{ params.ns }}",
    )
    op.render_template_fields(
        context={"params": {"ref": pushed_kit, "ns": "team"}, "run_id": "manual__1+2"}
    )
    assert op.reference == pushed_kit and op.namespace == "team"
    assert op.output_path == "/tmp/manual__1-2.jsonl"
    assert op.argo_hook().get_conn().namespace == "team"


# ----------------------------------------------------------------------------- sensor


def test_sensor_pokes_until_success(argo_conn: FakeArgoServer) -> None:
    new_workflow(argo_conn, "external-wf")
    sensor = ArgoWorkflowSensor(task_id="wait", workflow_name="external-wf", poke_interval=0.01)
    ctx = context_for(StateStore())
    results = [sensor.poke(ctx) for _ in range(3)]
    assert [r.is_done for r in results] == [False, False, True]
    assert results[-1].xcom_value["phase"] == "Succeeded"
    assert (
        ctx["ti"].xcoms[WORKFLOW_XCOM_KEY]["url"] == f"{argo_conn.url}/workflows/{NS}/external-wf"
    )


def test_sensor_fails_with_the_node_message(argo_conn: FakeArgoServer) -> None:
    new_workflow(argo_conn, "external-bad", failed_steps("ImagePullBackOff"))
    sensor = ArgoWorkflowSensor(task_id="wait", workflow_name="external-bad")
    ctx = context_for(StateStore())
    assert sensor.poke(ctx).is_done is False
    with pytest.raises(WorkflowFailed, match="ImagePullBackOff"):
        sensor.poke(ctx)


def test_deferrable_sensor_never_stops_a_workflow_it_did_not_start(
    argo_conn: FakeArgoServer,
) -> None:
    new_workflow(argo_conn, "external-2")
    sensor = ArgoWorkflowSensor(
        task_id="wait", workflow_name="external-2", deferrable=True, poke_interval=0.01
    )
    with pytest.raises(TaskDeferred) as deferred:
        sensor.execute(context_for(StateStore()))
    trigger = deferred.value.trigger
    assert trigger.cancel_on_kill is False
    event = fire(trigger)
    assert sensor.execute_complete({}, event)["phase"] == "Succeeded"
