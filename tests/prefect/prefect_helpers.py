"""Helpers for the Prefect tests: read back what a flow run left on the API server."""

from __future__ import annotations

import json
from typing import Any
from uuid import UUID

from prefect.client.orchestration import get_client
from prefect.client.schemas.filters import (
    ArtifactFilter,
    ArtifactFilterFlowRunId,
    LogFilter,
    LogFilterFlowRunId,
)
from prefect.client.schemas.objects import Artifact, FlowRun
from prefect.logging.handlers import APILogWorker
from prefect.states import State


def flow_run_id(state: State) -> UUID:
    """The flow run a final state belongs to."""
    assert state.state_details.flow_run_id is not None
    return state.state_details.flow_run_id


def artifacts_of(run_id: UUID) -> list[Artifact]:
    """Every artifact created in the flow run (by it or its tasks)."""
    with get_client(sync_client=True) as client:
        return client.read_artifacts(
            artifact_filter=ArtifactFilter(flow_run_id=ArtifactFilterFlowRunId(any_=[run_id]))
        )


def logs_of(run_id: UUID) -> list[str]:
    """The messages the flow run and its tasks logged to the API (after flushing the handler)."""
    APILogWorker.drain_all(timeout=10)
    with get_client(sync_client=True) as client:
        logs = client.read_logs(
            log_filter=LogFilter(flow_run_id=LogFilterFlowRunId(any_=[run_id])), limit=200
        )
    return [log.message for log in logs]


def flow_run(run_id: UUID) -> FlowRun:
    """The flow run as the API has it (parameters, state)."""
    with get_client(sync_client=True) as client:
        return client.read_flow_run(run_id)


def task_runs_of(run_id: UUID) -> list[Any]:
    """The task runs of a flow run."""
    from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterId

    with get_client(sync_client=True) as client:
        return client.read_task_runs(
            flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=[run_id]))
        )


def everything_stored(run_id: UUID) -> str:
    """One text blob of the flow run's parameters, state, task runs, logs and artifacts."""
    parts: list[str] = [flow_run(run_id).model_dump_json()]
    parts += [task_run.model_dump_json() for task_run in task_runs_of(run_id)]
    parts += logs_of(run_id)
    parts += [artifact.model_dump_json() for artifact in artifacts_of(run_id)]
    return "\n".join(parts)


def by_key(artifacts: list[Artifact]) -> dict[str, Artifact]:
    """Artifacts indexed by key (keyless ones dropped)."""
    return {a.key: a for a in artifacts if a.key}


def table_rows(artifact: Artifact) -> list[dict[str, Any]]:
    """The rows of a table artifact."""
    data = artifact.data
    rows = json.loads(data) if isinstance(data, str) else data
    assert isinstance(rows, list)
    return rows
