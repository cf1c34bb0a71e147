"""``run_argo_inference`` against the fake Argo Server (the in-test executor runs the pods as
real ``kitflow`` processes against the real registry): results and artifacts, sync and async,
re-attaching on retry (re-running a Workflow that failed), and stopping the Workflow when the
flow run is cancelled or killed."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import kitflow
import pytest
from prefect import flow
from prefect.client.orchestration import get_client
from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterName
from prefect.settings import PREFECT_API_URL
from prefect.states import Cancelling
from prefect_helpers import artifacts_of, by_key, everything_stored, flow_run, flow_run_id
from prefect_kitflow import (
    ArgoServer,
    KitRegistryCredentials,
    active_workflows,
    arun_argo_inference,
    run_argo_inference,
)
from prefect_kitflow.artifacts import artifact_key
from support.argo_executor import ArgoExecutor
from support.argo_fake import ARGO_TOKEN, FakeArgoServer
from support.inference_kits import make_kit, read_jsonl, write_jsonl
from support.registry import RunningRegistry, unique_repo

KITFLOW = Path(sys.executable).parent / "kitflow"
TEXTS = ["good", "bad", "fine", "great", "awful"]
RUNNER = Path(__file__).with_name("argo_flow_runner.py")


@pytest.fixture(scope="module")
def kit_ref(registry: RunningRegistry, tmp_path_factory: pytest.TempPathFactory) -> str:
    """A small kit (echo model) packed and pushed to the session registry."""
    base = tmp_path_factory.mktemp("argo-kit")
    kit = make_kit(base / "echo", weights="e")
    reference = registry.ref(unique_repo("prefect-argo"), "v1")
    kitflow.pack(kit, tag=reference, home=base / "home")
    kitflow.push(reference, registry=registry.options(), home=base / "home")
    return reference


@pytest.fixture
def inputs(tmp_path: Path) -> Path:
    return write_jsonl(
        tmp_path / "in.jsonl", [{"id": f"r{i}", "text": t} for i, t in enumerate(TEXTS)]
    )


@pytest.fixture
def executor(argo_server: FakeArgoServer, tmp_path: Path) -> ArgoExecutor:
    """Make the fake server's controller run submitted Workflows for real."""
    runner = ArgoExecutor(KITFLOW, tmp_path / "pods", max_workers=2)
    argo_server.state.controller = runner.run
    return runner


def argo_block(server: FakeArgoServer) -> ArgoServer:
    return ArgoServer(server=server.url, token=ARGO_TOKEN, namespace="ml")


def registry_block(registry: RunningRegistry) -> KitRegistryCredentials:
    return KitRegistryCredentials(registry=registry.host, plain_http=True)


def workflow_paths(server: FakeArgoServer, method: str, suffix: str = "") -> list[str]:
    return [p for m, p, _ in server.requests if m == method and p.endswith(suffix)]


@flow
def argo_flow(reference: str, inputs: str, output: str, argo: ArgoServer, creds: Any) -> Any:
    return run_argo_inference(
        reference, inputs, output, argo_server=argo, credentials=creds, shards=2, poll_seconds=0.1
    )


@flow
async def aargo_flow(reference: str, inputs: str, output: str, argo: ArgoServer, creds: Any) -> Any:
    return await arun_argo_inference(
        reference, inputs, output, argo_server=argo, credentials=creds, shards=2, poll_seconds=0.1
    )


@pytest.mark.registry
@pytest.mark.parametrize("mode", ["sync", "async"])
def test_argo_inference_end_to_end(
    mode: str,
    kit_ref: str,
    inputs: Path,
    registry: RunningRegistry,
    argo_server: FakeArgoServer,
    executor: ArgoExecutor,
    tmp_path: Path,
) -> None:
    output = tmp_path / "out.jsonl"
    args = (kit_ref, str(inputs), str(output), argo_block(argo_server), registry_block(registry))
    if mode == "sync":
        state = argo_flow(*args, return_state=True)
    else:
        state = asyncio.run(aargo_flow(*args, return_state=True))
    assert state.is_completed(), state.message
    result = state.result()
    assert result.backend == "argo" and result.records == len(TEXTS)
    assert [r["prediction"] for r in read_jsonl(output)] == [f"e:{t.upper()}" for t in TEXTS]
    assert result.workflow_name and result.workflow_name.startswith("kitflow-batch-")
    assert sorted(argv[1] for argv in executor.commands) == [
        "argo-gather",
        "argo-shard",
        "argo-shard",
    ]
    assert active_workflows() == []

    run_id = flow_run_id(state)
    artifacts = by_key(artifacts_of(run_id))
    link = artifacts[artifact_key("argo-workflow", result.workflow_name)]
    assert f"workflows/ml/{result.workflow_name}" in str(link.data)
    summaries = [a for key, a in artifacts.items() if key.startswith("inference-argo-")]
    assert len(summaries) == 1
    text = str(summaries[0].data)
    assert f"| records | {len(TEXTS)} |" in text and "e:GOOD" in text
    assert result.workflow_name in text
    assert ARGO_TOKEN not in everything_stored(run_id)


@pytest.mark.registry
def test_retry_reattaches_to_the_workflow_it_made(
    kit_ref: str,
    inputs: Path,
    registry: RunningRegistry,
    argo_server: FakeArgoServer,
    executor: ArgoExecutor,
    tmp_path: Path,
) -> None:
    # The first status read after the Workflow is created fails (the token "expires" once):
    # the task fails, Prefect retries it, and the retry must follow the same Workflow.
    injected: list[bool] = []

    def controller(wf: dict[str, Any]) -> dict[str, Any]:
        if not injected:
            injected.append(True)
            argo_server.fail_next.append(401)
        return executor.run(wf)

    argo_server.state.controller = controller
    task = run_argo_inference.with_options(retries=1, retry_delay_seconds=0)

    @flow
    def retried() -> Any:
        return task(
            kit_ref,
            inputs,
            tmp_path / "out.jsonl",
            argo_server=argo_block(argo_server),
            credentials=registry_block(registry),
            shards=2,
            poll_seconds=0.1,
        )

    result = retried()
    assert result.records == len(TEXTS)
    assert injected == [True]
    # Two create calls (first attempt, retry), one Workflow, one execution.
    assert len(workflow_paths(argo_server, "POST", "/workflows/ml")) == 2
    assert list(argo_server.state.objects) == [("ml", result.workflow_name)]
    assert len(executor.commands) == 3


def _find_flow_run(name: str, timeout: float = 60.0) -> Any:
    deadline = time.monotonic() + timeout
    with get_client(sync_client=True) as client:
        while time.monotonic() < deadline:
            runs = client.read_flow_runs(
                flow_run_filter=FlowRunFilter(name=FlowRunFilterName(any_=[name]))
            )
            if runs:
                return runs[0]
            time.sleep(0.1)
    raise AssertionError(f"flow run {name} never appeared")


def _wait_for_workflow(server: FakeArgoServer, timeout: float = 60.0) -> tuple[str, str]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with server.state.lock:
            if server.state.objects:
                return next(iter(server.state.objects))
        time.sleep(0.05)
    raise AssertionError("no Workflow was submitted")


def never_finishing(server: FakeArgoServer) -> None:
    """Every Workflow created from now on stays Running."""
    server.state.default_steps = [{"phase": "Pending"}, {"phase": "Running", "progress": "0/2"}]


@pytest.mark.registry
def test_cancelling_the_flow_run_stops_the_workflow(
    kit_ref: str,
    inputs: Path,
    registry: RunningRegistry,
    argo_server: FakeArgoServer,
    tmp_path: Path,
) -> None:
    never_finishing(argo_server)
    outcome: dict[str, Any] = {}

    @flow(flow_run_name="cancel-me-please")
    def long_inference() -> Any:
        return run_argo_inference(
            kit_ref,
            inputs,
            tmp_path / "out.jsonl",
            argo_server=argo_block(argo_server),
            credentials=registry_block(registry),
            poll_seconds=0.1,
        )

    thread = threading.Thread(
        target=lambda: outcome.setdefault("state", long_inference(return_state=True))
    )
    thread.start()
    ns, name = _wait_for_workflow(argo_server)
    run = _find_flow_run("cancel-me-please")
    with get_client(sync_client=True) as client:
        client.set_flow_run_state(run.id, Cancelling(), force=True)
    thread.join(timeout=60)
    assert not thread.is_alive()

    assert workflow_paths(argo_server, "PUT", f"/workflows/{ns}/{name}/stop")
    assert argo_server.state.objects[(ns, name)]["spec"]["shutdown"] == "Stop"
    assert active_workflows() == []
    final = flow_run(run.id).state
    assert final is not None and not final.is_completed()
    assert final.is_cancelled() or final.is_cancelling(), final


@pytest.mark.registry
def test_sigterm_to_the_flow_process_stops_the_workflow(
    kit_ref: str,
    inputs: Path,
    registry: RunningRegistry,
    argo_server: FakeArgoServer,
    tmp_path: Path,
) -> None:
    """The ready-made flow in its own process, killed the way a worker stops a run."""
    never_finishing(argo_server)
    config = {
        "reference": kit_ref,
        "input": str(inputs),
        "output": str(tmp_path / "out.jsonl"),
        "argo_server": argo_server.url,
        "argo_token": ARGO_TOKEN,
        "registry": registry.host,
        "home": str(tmp_path / "home"),
    }
    env = {**os.environ, "PREFECT_API_URL": str(PREFECT_API_URL.value())}
    proc = subprocess.Popen(
        [sys.executable, str(RUNNER), json.dumps(config)],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    try:
        ns, name = _wait_for_workflow(argo_server, timeout=120)
        run = _find_flow_run("argo-sigterm-run")
        proc.send_signal(signal.SIGTERM)
        out, _ = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    log = out.decode(errors="replace")
    assert workflow_paths(argo_server, "PUT", f"/workflows/{ns}/{name}/stop"), log
    assert argo_server.state.objects[(ns, name)]["spec"]["shutdown"] == "Stop"
    final = flow_run(run.id).state
    assert final is not None and not final.is_completed(), log
    assert ARGO_TOKEN not in log


@pytest.mark.registry
def test_package_and_infer_on_argo_with_saved_blocks(
    registry: RunningRegistry,
    argo_server: FakeArgoServer,
    executor: ArgoExecutor,
    inputs: Path,
    tmp_path: Path,
) -> None:
    from prefect_kitflow import package_and_infer

    kit = make_kit(tmp_path / "kit", weights="pkg")
    reference = registry.ref(unique_repo("pkg-argo"), "v1")
    registry_block(registry).save("argo-test-registry", overwrite=True)
    argo_block(argo_server).save("argo-test-server", overwrite=True)

    state = package_and_infer(
        reference,
        context=str(kit),
        input=str(inputs),
        output=str(tmp_path / "out.jsonl"),
        credentials="argo-test-registry",
        backend="argo",
        argo_server="argo-test-server",
        shards=2,
        home=str(tmp_path / "home"),
        return_state=True,
    )
    assert state.is_completed(), state.message
    summary = state.result()
    digest = summary["pack"]["digest"]
    assert summary["push"]["digest"] == digest
    assert summary["run"]["backend"] == "argo"
    assert summary["run"]["model_digest"] == digest
    assert summary["run"]["records"] == len(TEXTS)
    preds = [r["prediction"] for r in read_jsonl(tmp_path / "out.jsonl")]
    assert preds == [f"pkg:{t.upper()}" for t in TEXTS]
    assert ARGO_TOKEN not in everything_stored(flow_run_id(state))


@pytest.mark.registry
def test_failed_workflow_fails_the_task_with_the_node_message(
    kit_ref: str,
    inputs: Path,
    registry: RunningRegistry,
    argo_server: FakeArgoServer,
    tmp_path: Path,
) -> None:
    from kitflow.errors import WorkflowFailed
    from support.argo_fake import failed_steps

    argo_server.state.default_steps = failed_steps("shard 0, record 3: ValueError: bad text")
    task = run_argo_inference.with_options(retries=1, retry_delay_seconds=0)

    @flow
    def failing() -> Any:
        return task(
            kit_ref,
            inputs,
            tmp_path / "out.jsonl",
            argo_server=argo_block(argo_server),
            credentials=registry_block(registry),
            poll_seconds=0.1,
        )

    state = failing(return_state=True)
    assert state.is_failed()
    with pytest.raises(WorkflowFailed, match="record 3: ValueError: bad text"):
        state.result()
    # The retry replaced the failed Workflow and ran the job again (it failed again: the
    # records are bad); one Workflow of that name is left, and nothing was stopped.
    assert len(argo_server.state.deleted) == 1
    assert len(argo_server.state.objects) == 1
    assert not workflow_paths(argo_server, "PUT", "/stop")
    assert not (tmp_path / "out.jsonl").exists()


@pytest.mark.registry
@pytest.mark.parametrize("asynchronous", [False, True])
def test_retry_after_a_failed_workflow_runs_it_again_and_succeeds(
    asynchronous: bool,
    kit_ref: str,
    inputs: Path,
    registry: RunningRegistry,
    argo_server: FakeArgoServer,
    executor: ArgoExecutor,
    tmp_path: Path,
) -> None:
    from support.argo_fake import failed_steps

    # Attempt 1's Workflow ends Failed (a node was lost); the Prefect retry submits the same
    # job, the core replaces the failed Workflow, and the fresh run succeeds.
    runs: list[str] = []

    def controller(wf: dict[str, Any]) -> dict[str, Any]:
        runs.append(wf["metadata"]["uid"])
        if len(runs) == 1:
            return failed_steps("node lost: pod deleted")[-1]
        return executor.run(wf)

    argo_server.state.controller = controller
    out = tmp_path / "out.jsonl"
    if asynchronous:
        task: Any = arun_argo_inference.with_options(retries=1, retry_delay_seconds=0)

        @flow
        async def retried_async() -> Any:
            return await task(
                kit_ref,
                inputs,
                out,
                argo_server=argo_block(argo_server),
                credentials=registry_block(registry),
                poll_seconds=0.1,
            )

        result = asyncio.run(retried_async())
    else:
        task = run_argo_inference.with_options(retries=1, retry_delay_seconds=0)

        @flow
        def retried() -> Any:
            return task(
                kit_ref,
                inputs,
                out,
                argo_server=argo_block(argo_server),
                credentials=registry_block(registry),
                poll_seconds=0.1,
            )

        result = retried()
    assert result.records == len(TEXTS)
    assert [r["prediction"] for r in read_jsonl(out)] == [f"e:{t.upper()}" for t in TEXTS]
    assert len(runs) == 2 and runs[0] != runs[1]
    # Exactly one Workflow of that name exists afterwards: the fresh, succeeded run.
    assert list(argo_server.state.objects) == [("ml", result.workflow_name)]
    fresh = argo_server.state.objects[("ml", result.workflow_name)]
    assert fresh["metadata"]["uid"] == runs[1] and fresh["status"]["phase"] == "Succeeded"
    assert argo_server.state.deleted == [("ml", result.workflow_name, runs[0])]
