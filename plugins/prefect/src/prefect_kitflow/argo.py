"""Batch inference on Argo Workflows as a Prefect task: submit, follow, collect, and clean up.

The core's split Argo API does the work (``submit`` / ``status`` / ``collect`` / ``stop`` in
``kitflow.inference.argo.backend``); Workflow names are derived from the job, so a retried
task re-attaches to the Workflow it already created instead of starting a second one (and
when that one ended Failed/Error, the core replaces it, so the retry runs the job again). If the
flow run is cancelled (seen by polling its state) or the process is told to stop (SIGTERM, a
crash), the task stops the Workflow before it gives up; the flow hook
:func:`stop_argo_workflows` does the same for anything still registered as running.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from kitflow.errors import KitflowError
from kitflow.options import ArgoOptions, RegistryOptions
from kitflow.results import RunResult
from prefect import get_run_logger, task
from prefect.cache_policies import NO_CACHE
from prefect.client.schemas.objects import State
from prefect.context import TaskRunContext
from prefect.states import Cancelled

from prefect_kitflow.artifacts import ArtifactSpec, apublish, artifact_key, publish
from prefect_kitflow.credentials import ArgoServer
from prefect_kitflow.tasks import (
    Credentials,
    PathLike,
    aload_credentials,
    inference_specs,
    load_credentials,
    registry_options,
)

DEFAULT_POLL_SECONDS = 5.0
ArgoServerArg = ArgoServer | str


@dataclass(frozen=True)
class _Running:
    """A Workflow this process is following (enough to stop it from a hook)."""

    submission: Any  # kitflow.inference.argo.backend.ArgoSubmission
    argo: ArgoOptions


_ACTIVE_LOCK = threading.Lock()
# flow run id -> workflow "namespace/name" -> what is needed to stop it
_ACTIVE: dict[str, dict[str, _Running]] = {}


def _backend() -> Any:
    from kitflow.inference.argo import backend

    return backend


def build_job(
    reference: str | Sequence[str],
    input: PathLike | None,
    output: PathLike | None,
    dataset: str | None,
    shards: int | None,
    parallelism: int | None,
    entrypoint: str | None,
    batch_size: int,
    retries: int,
    argo: ArgoOptions,
    home: PathLike | None,
) -> Any:
    """The core's ``InferenceJob`` for these task arguments (``kitflow.inference.runner``)."""
    from kitflow.inference.runner import build_job as core_build_job

    return core_build_job(
        reference,
        input,
        output,
        shards=shards,
        parallelism=parallelism,
        entrypoint=entrypoint,
        dataset=dataset,
        batch_size=batch_size,
        retries=retries,
        argo=argo,
        home=home,
    )


def load_argo_server(argo_server: ArgoServerArg) -> ArgoServer:
    """An ``ArgoServer`` block, loading it by name when given as a string."""
    if isinstance(argo_server, str):
        loaded = ArgoServer.load(argo_server, _sync=True)  # type: ignore[call-arg]
        assert isinstance(loaded, ArgoServer)
        return loaded
    return argo_server


async def aload_argo_server(argo_server: ArgoServerArg) -> ArgoServer:
    """Async twin of :func:`load_argo_server`."""
    if isinstance(argo_server, str):
        loaded = await ArgoServer.aload(argo_server)
        assert isinstance(loaded, ArgoServer)
        return loaded
    return argo_server


def _flow_run_id() -> str | None:
    ctx = TaskRunContext.get()
    if ctx is None or ctx.task_run.flow_run_id is None:
        return None
    return str(ctx.task_run.flow_run_id)


def _register(flow_run_id: str | None, running: _Running) -> str:
    key = f"{running.submission.namespace}/{running.submission.name}"
    if flow_run_id is not None:
        with _ACTIVE_LOCK:
            _ACTIVE.setdefault(flow_run_id, {})[key] = running
    return key


def _unregister(flow_run_id: str | None, key: str) -> None:
    if flow_run_id is None:
        return
    with _ACTIVE_LOCK:
        runs = _ACTIVE.get(flow_run_id, {})
        runs.pop(key, None)
        if not runs:
            _ACTIVE.pop(flow_run_id, None)


def active_workflows(flow_run_id: str | None = None) -> list[str]:
    """``namespace/name`` of the Workflows this process follows (for one flow run, or all)."""
    with _ACTIVE_LOCK:
        if flow_run_id is not None:
            return sorted(_ACTIVE.get(str(flow_run_id), {}))
        return sorted(key for runs in _ACTIVE.values() for key in runs)


def _stop(running: _Running, reason: str) -> None:
    """Stop a Workflow, logging (not raising) if the stop itself fails."""
    _backend().stop_quietly(running.submission, running.argo, reason, _logger())


def _logger() -> Any:
    try:
        return get_run_logger()
    except Exception:
        import logging

        return logging.getLogger("prefect_kitflow.argo")


def stop_argo_workflows(flow: Any, flow_run: Any, state: State) -> None:
    """Flow hook (``on_cancellation`` / ``on_crashed``): stop the Workflows this flow run
    is still following in this process."""
    with _ACTIVE_LOCK:
        runs = _ACTIVE.pop(str(flow_run.id), {})
    for running in runs.values():
        _stop(running, f"flow run {flow_run.name} is {state.type.value.lower()}")


def _flow_run_cancelled(flow_run_id: str | None) -> bool:
    """True when the flow run was asked to cancel (state Cancelling or Cancelled)."""
    if flow_run_id is None:
        return False
    from prefect.client.orchestration import get_client

    try:
        with get_client(sync_client=True) as client:
            state = client.read_flow_run(flow_run_id).state  # type: ignore[arg-type]
    except Exception:
        return False
    return state is not None and (state.is_cancelling() or state.is_cancelled())


async def _aflow_run_cancelled(flow_run_id: str | None) -> bool:
    if flow_run_id is None:
        return False
    from prefect.client.orchestration import get_client

    try:
        async with get_client() as client:
            state = (await client.read_flow_run(flow_run_id)).state  # type: ignore[arg-type]
    except Exception:
        return False
    return state is not None and (state.is_cancelling() or state.is_cancelled())


def _link_spec(sub: Any) -> ArtifactSpec:
    return ArtifactSpec(
        kind="link",
        key=artifact_key("argo-workflow", sub.name),
        content=(sub.url, f"{sub.namespace}/{sub.name}"),
        description=f"Argo Workflow `{sub.namespace}/{sub.name}` running the inference.",
    )


class FollowTimeout(KitflowError):
    """The Workflow did not finish within the task's ``timeout`` (it is stopped)."""


def _retry_pending() -> bool:
    """True when this task run has Prefect retries left (the next attempt will re-attach)."""
    ctx = TaskRunContext.get()
    if ctx is None:
        return False
    return ctx.task_run.run_count <= ctx.task.retries


class _Follower:
    """The submit → follow → collect sequence, shared by the sync and async tasks."""

    def __init__(
        self,
        job: Any,
        argo: ArgoOptions,
        registry: RegistryOptions | None,
        poll_seconds: float,
        timeout: float | None,
    ) -> None:
        self.job = job
        self.argo = argo
        self.registry = registry
        self.poll_seconds = poll_seconds
        self.deadline = time.monotonic() + timeout if timeout else None
        self.flow_run_id = _flow_run_id()
        self.running: _Running | None = None
        self.key = ""
        self.last_phase = ""

    def submit(self) -> Any:
        sub = _backend().submit(self.job, self.argo, self.registry)
        self.running = _Running(sub, self.argo)
        self.key = _register(self.flow_run_id, self.running)
        _logger().info("Argo Workflow %s/%s submitted: %s", sub.namespace, sub.name, sub.url)
        return sub

    def poll(self) -> Any:
        assert self.running is not None
        status = _backend().status(self.running.submission, self.argo)
        self.note(status)
        return status

    def note(self, status: Any) -> None:
        """Log the Workflow's phase when it changed."""
        assert self.running is not None
        if status.phase != self.last_phase:
            self.last_phase = status.phase
            _logger().info(
                "Argo Workflow %s: %s %s",
                self.running.submission.name,
                status.phase or "Pending",
                getattr(status, "progress", "") or "",
            )

    def check_deadline(self) -> None:
        if self.deadline is not None and time.monotonic() > self.deadline:
            raise FollowTimeout(
                f"Argo Workflow {self.key} did not finish within the timeout; it was stopped"
            )

    def on_error(self, exc: BaseException) -> None:
        """The follow loop was interrupted: stop the Workflow, unless a Prefect retry of this
        task will re-attach to it (a plain error with attempts left)."""
        if (
            isinstance(exc, Exception)
            and not isinstance(exc, FollowTimeout)
            and _retry_pending()
            and self.running is not None
        ):
            _logger().warning(
                "Lost track of Argo Workflow %s (%s); it keeps running and the retry "
                "re-attaches to it",
                self.key,
                exc,
            )
            return
        self.abort(f"the task stopped following it ({type(exc).__name__})")

    def collect(self) -> RunResult:
        assert self.running is not None
        result: RunResult = _backend().collect(
            self.running.submission, self.job, self.argo, self.registry
        )
        return result

    def finish(self) -> None:
        """Forget the Workflow (it ended, or we stopped it)."""
        _unregister(self.flow_run_id, self.key)
        self.running = None

    def abort(self, reason: str) -> None:
        """Stop the Workflow if it may still be running, then forget it."""
        if self.running is not None:
            _stop(self.running, reason)
        self.finish()


def _cancelled_state(follower: _Follower) -> State:
    return Cancelled(message=f"flow run cancelled; Argo Workflow {follower.key} stopped")


def _follow_sync(follower: _Follower, is_cancelled: Callable[[], bool]) -> RunResult | State:
    sub = follower.submit()
    publish([_link_spec(sub)])
    try:
        end, _ = _backend().follow(
            sub,
            follower.argo,
            poll_seconds=follower.poll_seconds,
            deadline=follower.deadline,
            should_stop=is_cancelled,
            on_status=follower.note,
        )
        if end == "stopped":
            follower.abort("the flow run was cancelled")
            return _cancelled_state(follower)
        if end == "timeout":
            follower.check_deadline()  # raises FollowTimeout: on_error stops the Workflow
    except BaseException as exc:  # SIGTERM (TerminationSignal), KeyboardInterrupt, errors
        follower.on_error(exc)
        raise
    try:
        return follower.collect()
    finally:
        follower.finish()  # it ended: nothing left to stop


async def _follow_async(follower: _Follower) -> RunResult | State:
    sub = await asyncio.to_thread(follower.submit)
    await apublish([_link_spec(sub)])
    try:
        while True:
            status = await asyncio.to_thread(follower.poll)
            if status.finished:
                break
            if await _aflow_run_cancelled(follower.flow_run_id):
                await asyncio.to_thread(follower.abort, "the flow run was cancelled")
                return _cancelled_state(follower)
            follower.check_deadline()
            await asyncio.sleep(follower.poll_seconds)
    except BaseException as exc:  # asyncio.CancelledError, TerminationSignal, errors
        follower.on_error(exc)  # blocking on purpose: a cancelled scope refuses awaits
        raise
    try:
        return await asyncio.to_thread(follower.collect)
    finally:
        follower.finish()


def _finish(result: RunResult | State, references: Sequence[str]) -> list[ArtifactSpec]:
    if isinstance(result, State):
        return []
    _logger().info(
        "Argo Workflow %s/%s scored %d records in %.2fs",
        result.workflow_namespace,
        result.workflow_name,
        result.records,
        result.seconds,
    )
    return inference_specs(result, references)


@task(name="run_argo_inference", cache_policy=NO_CACHE)
def run_argo_inference(
    reference: str | Sequence[str],
    input: PathLike | None = None,
    output: PathLike | None = None,
    argo_server: ArgoServerArg | None = None,
    credentials: Credentials = None,
    dataset: str | None = None,
    shards: int | None = None,
    parallelism: int | None = None,
    entrypoint: str | None = None,
    batch_size: int = 256,
    retries: int = 1,
    poll_seconds: float = DEFAULT_POLL_SECONDS,
    timeout: float | None = None,
    home: PathLike | None = None,
) -> RunResult:
    """Run batch inference on Argo Workflows: submit, follow until done, collect predictions.

    The Workflow's name is derived from the job, so a retry re-attaches to the Workflow it
    already made while it runs, and runs the job again (the failed Workflow is replaced under
    the same name) when it ended Failed/Error. Cancelling the flow run, a crash or a timeout
    stops the Workflow.
    ``argo_server`` is an ``ArgoServer`` block or its saved name (default: the argo CLI's
    environment, ``ARGO_SERVER``/``ARGO_TOKEN``/...).
    """
    argo = load_argo_server(argo_server).get_options() if argo_server else ArgoOptions.from_env()
    job = build_job(
        reference, input, output, dataset, shards, parallelism, entrypoint, batch_size,
        retries, argo, home,
    )  # fmt: skip
    registry = registry_options(load_credentials(credentials), *job.references)
    follower = _Follower(job, argo, registry, poll_seconds, timeout)
    flow_run_id = follower.flow_run_id
    result = _follow_sync(follower, lambda: _flow_run_cancelled(flow_run_id))
    publish(_finish(result, job.references))
    return result  # type: ignore[return-value]  # a Cancelled state ends the task run


@task(name="arun_argo_inference", cache_policy=NO_CACHE)
async def arun_argo_inference(
    reference: str | Sequence[str],
    input: PathLike | None = None,
    output: PathLike | None = None,
    argo_server: ArgoServerArg | None = None,
    credentials: Credentials = None,
    dataset: str | None = None,
    shards: int | None = None,
    parallelism: int | None = None,
    entrypoint: str | None = None,
    batch_size: int = 256,
    retries: int = 1,
    poll_seconds: float = DEFAULT_POLL_SECONDS,
    timeout: float | None = None,
    home: PathLike | None = None,
) -> RunResult:
    """Async twin of :func:`run_argo_inference` (polls without holding a thread)."""
    if argo_server:
        argo = (await aload_argo_server(argo_server)).get_options()
    else:
        argo = ArgoOptions.from_env()
    job = build_job(
        reference, input, output, dataset, shards, parallelism, entrypoint, batch_size,
        retries, argo, home,
    )  # fmt: skip
    registry = registry_options(await aload_credentials(credentials), *job.references)
    follower = _Follower(job, argo, registry, poll_seconds, timeout)
    result = await _follow_async(follower)
    await apublish(_finish(result, job.references))
    return result  # type: ignore[return-value]
