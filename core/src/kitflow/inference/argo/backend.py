"""The Argo backend: ``run_argo`` for ``kitflow run --backend argo``, and the submit / status /
collect / stop split the orchestrator plugins call (submit in one process, poll from a
trigger, collect later: everything collect needs is read back from the Workflow itself)."""

from __future__ import annotations

import json
import math
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from kitflow.errors import ArgoError, KitflowError, NotFoundError, WorkflowFailed
from kitflow.format.reference import Reference
from kitflow.inference import io
from kitflow.inference.argo import transport
from kitflow.inference.argo.base import LogLine, WorkflowClientBase
from kitflow.inference.argo.client import ArgoServerClient, server_url
from kitflow.inference.argo.kube import KubeWorkflowClient, in_cluster_config, load_kubeconfig
from kitflow.inference.argo.pod import comparison_report
from kitflow.inference.argo.status import (
    WorkflowStatus,
    failure_message,
    global_outputs,
    phase_of,
    to_status,
)
from kitflow.inference.argo.workflow import (
    KIT_ANNOTATION,
    MAX_SHARDS,
    MODE_LABEL,
    WorkflowPlan,
    template_parameters,
    workflow_manifest,
    workflow_name,
    workflow_template_manifest,
)
from kitflow.inference.job import InferenceJob
from kitflow.options import ArgoOptions, RegistryOptions
from kitflow.results import RunResult, ShardStatus

#: Records per shard the automatic plan aims at (pods start slowly: keep shards meaty).
RECORDS_PER_SHARD = 10_000
DEFAULT_PARALLELISM = 4


@dataclass(frozen=True)
class ArgoSubmission:
    """A submitted (or re-attached) Workflow: enough to follow, stop and collect it later."""

    name: str
    namespace: str
    url: str | None = None
    uid: str = ""

    def to_dict(self) -> dict[str, Any]:
        """JSON-safe form (XCom, trigger kwargs, Prefect state)."""
        return {"name": self.name, "namespace": self.namespace, "url": self.url, "uid": self.uid}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ArgoSubmission:
        """Inverse of :meth:`to_dict`."""
        return cls(
            str(data["name"]), str(data["namespace"]), data.get("url"), str(data.get("uid") or "")
        )


# ----------------------------------------------------------------------------- connections


@contextmanager
def client_for(argo: ArgoOptions) -> Iterator[ArgoServerClient | KubeWorkflowClient]:
    """The Argo Server client when ARGO_SERVER is set, else the Kubernetes API through the
    kubeconfig, else the in-cluster service account."""
    client: ArgoServerClient | KubeWorkflowClient
    if argo.server:
        client = ArgoServerClient(argo)
    elif argo.kubeconfig:
        cfg = load_kubeconfig(argo.kubeconfig, argo.kube_context)
        client = KubeWorkflowClient(cfg, argo.namespace)
    else:
        try:
            cfg = in_cluster_config()
        except ArgoError:
            raise ArgoError(
                "no Argo Server or Kubernetes cluster configured: set ARGO_SERVER (and "
                "ARGO_TOKEN) or KUBECONFIG"
            ) from None
        client = KubeWorkflowClient(cfg, argo.namespace)
    try:
        yield client
    finally:
        client.close()


def workflow_url(name: str, argo: ArgoOptions) -> str | None:
    """Link to the Workflow in the Argo UI (``ui_url`` or the Argo Server), if known."""
    base = argo.ui_url.rstrip("/") if argo.ui_url else (server_url(argo) if argo.server else None)
    return f"{base}/workflows/{argo.namespace}/{name}" if base else None


# ----------------------------------------------------------------------------- planning


@dataclass(frozen=True)
class ArgoPlan:
    """A job turned into a Workflow plan, with the inputs artifact it points at."""

    plan: WorkflowPlan
    inputs: transport.InputsArtifact
    manifest: dict[str, Any]


def pin_reference(reference: str, registry: RegistryOptions | None, *, dry_run: bool) -> str:
    """``registry/repo@sha256:...`` for a kit reference: pods must run exactly this kit."""
    if Path(reference).is_dir():
        raise KitflowError(
            f"{reference} is a directory; the Argo backend runs ModelKits from a registry "
            "(pack and push it first)"
        )
    ref = Reference.parse(reference)
    if ref.digest:
        return f"{ref.name}@{ref.digest}"
    repo = transport.repository(ref.name, registry)
    try:
        return f"{ref.name}@{repo.resolve(ref.ref).digest}"
    except NotFoundError:
        local = _local_digest(reference)
        if local and dry_run:
            return f"{ref.name}@{local}"
        hint = f"; it is only in the local store: kitflow push {reference}" if local else ""
        raise NotFoundError(f"ModelKit {reference} is not in its registry{hint}") from None
    except KitflowError:
        local = _local_digest(reference) if dry_run else None
        if local:  # a dry run works offline from the local store
            return f"{ref.name}@{local}"
        raise
    finally:
        repo.close()


def _local_digest(reference: str) -> str | None:
    from kitflow import api

    try:
        return str(api.inspect(reference)["digest"])
    except KitflowError:
        return None


def _input_file(job: InferenceJob, registry: RegistryOptions | None) -> Path:
    if job.inputs.path is not None:
        return Path(job.inputs.path)
    from kitflow.inference.local import materialize

    assert job.inputs.dataset is not None
    layout = materialize(job.references[0], registry=registry, home=job.home).layout
    return io.find_dataset_file(
        layout.root, layout.dataset_path(job.inputs.dataset), job.inputs.dataset
    )


def shard_count(records: int, shards: int | None, parallelism: int) -> int:
    """The job's shard count, or enough shards to keep ``parallelism`` pods busy with about
    RECORDS_PER_SHARD records each; never more than the records or MAX_SHARDS."""
    if shards is not None and shards > MAX_SHARDS:
        raise KitflowError(f"--shards {shards} is above the Argo backend's limit of {MAX_SHARDS}")
    wanted = shards or max(parallelism, math.ceil(records / RECORDS_PER_SHARD))
    return max(1, min(wanted, records, MAX_SHARDS))


def plan_job(
    job: InferenceJob,
    argo: ArgoOptions,
    registry: RegistryOptions | None = None,
    *,
    dry_run: bool = False,
) -> ArgoPlan:
    """Pin the kits, shard the inputs (pushed to the first kit's repository unless
    ``dry_run``), and build the Workflow manifest."""
    kits = tuple(pin_reference(r, registry, dry_run=dry_run) for r in job.references)
    repo_name = transport.split_reference(kits[0])[0]
    source = _input_file(job, registry)
    with tempfile.TemporaryDirectory(prefix="kitflow-argo-") as tmp:
        prepared = io.prepare_input(source, job.inputs.resolved_format(source), Path(tmp))
        parallelism = job.parallelism or DEFAULT_PARALLELISM
        shards = shard_count(prepared.records, job.shards, parallelism)
        inputs = transport.push_inputs(prepared, shards, repo_name, registry, dry_run=dry_run)
    opts = registry or RegistryOptions()
    plan = WorkflowPlan(
        kits=kits,
        inputs=inputs.reference,
        results_repo=repo_name,
        shards=len(inputs.shards),
        records=inputs.records,
        parallelism=parallelism,
        single=len(kits) == 1 and inputs.records == 1,
        entrypoint=job.entrypoint,
        batch_size=job.batch_size,
        id_field=job.inputs.id_field,
        retries=argo.retries,
        resources=job.resources,
        plain_http=opts.plain_http,
        tls_verify=opts.tls_verify,
        kitops_init=argo.kitops_init,
    )
    return ArgoPlan(plan, inputs, workflow_manifest(plan, argo))


# ----------------------------------------------------------------------------- the split


def submit(
    job: InferenceJob,
    argo: ArgoOptions,
    registry: RegistryOptions | None = None,
    *,
    rerun_failed: bool = True,
) -> ArgoSubmission:
    """Push the inputs and create the Workflow. A retried call for the same job (same kit
    digests, inputs and options, hence the same name) re-attaches to a Workflow of this job
    that is Pending, Running or Succeeded (to collect it), and replaces one that ended Failed
    or Error: deleted (only that one, by UID) and created again under the same name, so a
    retry runs the job again. ``rerun_failed=False`` re-attaches to a failed one instead."""
    planned = plan_job(job, argo, registry)
    return _create(argo, str(planned.manifest["metadata"]["name"]), rerun_failed, planned.manifest)


def _create(
    argo: ArgoOptions,
    name: str,
    rerun_failed: bool,
    manifest: dict[str, Any] | None = None,
    template: tuple[str, dict[str, str], dict[str, str], dict[str, Any]] | None = None,
) -> ArgoSubmission:
    """Create ``manifest`` (or submit from ``template``: its name, parameters, labels, and
    the Workflow to create on the Kubernetes path), re-attaching to or replacing a failed
    Workflow of that name as :func:`submit` describes."""
    with client_for(argo) as client:

        def create() -> dict[str, Any]:
            if manifest is not None:
                return client.create(manifest)
            assert template is not None
            tname, params, labels, direct = template
            if isinstance(client, ArgoServerClient):
                return client.submit_template(tname, params, labels=labels, name=name)
            return client.create(direct)

        created = client.create_replacing_failed(create, name) if rerun_failed else create()
    meta = created.get("metadata") or {}
    name = str(meta.get("name") or name)
    return ArgoSubmission(name, argo.namespace, workflow_url(name, argo), str(meta.get("uid", "")))


def status(sub: ArgoSubmission, argo: ArgoOptions) -> WorkflowStatus:
    """Phase, message (the failing node's, on failure), finished, progress: one cheap GET.
    Async callers: ``await asyncio.to_thread(status, sub, argo)`` or :func:`astatus`."""
    with client_for(_in_namespace(argo, sub)) as client:
        return client.get_status(sub.name)


async def astatus(sub: ArgoSubmission, argo: ArgoOptions) -> WorkflowStatus:
    """:func:`status` for event loops (runs the blocking call in a worker thread)."""
    import asyncio

    return await asyncio.to_thread(status, sub, argo)


def wait(sub: ArgoSubmission, argo: ArgoOptions, timeout: float | None = None) -> WorkflowStatus:
    """Follow the Workflow (watch, reconnect, poll) until it ends; WorkflowFailed on failure,
    WaitTimeout after ``timeout`` seconds (the Workflow keeps running)."""
    with client_for(_in_namespace(argo, sub)) as client:
        return to_status(client.wait(sub.name, timeout))


_follow = wait  # run_argo's ``wait`` flag shadows the function's name there


def stop(sub: ArgoSubmission, argo: ArgoOptions) -> None:
    """Stop the Workflow: no new pods, exit handlers still run."""
    with client_for(_in_namespace(argo, sub)) as client:
        client.stop(sub.name)


#: Why :func:`follow` returned: the Workflow ended, ``should_stop`` said so, or time ran out.
FollowEnd = Literal["finished", "stopped", "timeout"]


def follow(
    sub: ArgoSubmission,
    argo: ArgoOptions,
    *,
    poll_seconds: float,
    deadline: float | None = None,
    should_stop: Callable[[], bool] | None = None,
    on_status: Callable[[WorkflowStatus], None] | None = None,
) -> tuple[FollowEnd, WorkflowStatus]:
    """Poll the Workflow every ``poll_seconds`` until it ends, ``should_stop()`` is true (a
    cancelled run) or ``time.monotonic()`` passes ``deadline``; say which, with the last status.

    The orchestrator plugins' shared follow loop: ``on_status`` sees every status read (to log
    phase changes); stopping the Workflow is the caller's (see :func:`stop_quietly`).
    """
    while True:
        current = status(sub, argo)
        if on_status is not None:
            on_status(current)
        if current.finished:
            return "finished", current
        if should_stop is not None and should_stop():
            return "stopped", current
        if deadline is not None and time.monotonic() > deadline:
            return "timeout", current
        time.sleep(poll_seconds)


def stop_quietly(sub: ArgoSubmission, argo: ArgoOptions, reason: str, log: Any) -> bool:
    """Stop the Workflow and log it (``log.warning``); a failed stop is logged (``log.error``
    with the ``argo stop`` command to run), not raised, so it never hides why we stopped."""
    try:
        stop(sub, argo)
    except Exception as exc:
        log.error(
            f"Could not stop Argo Workflow {sub.namespace}/{sub.name} ({exc}); "
            f"stop it with `argo stop -n {sub.namespace} {sub.name}`"
        )
        return False
    log.warning(f"Stopped Argo Workflow {sub.namespace}/{sub.name}: {reason}")
    return True


def terminate(sub: ArgoSubmission, argo: ArgoOptions) -> None:
    """Terminate the Workflow at once (no exit handlers)."""
    with client_for(_in_namespace(argo, sub)) as client:
        client.terminate(sub.name)


def logs(sub: ArgoSubmission, argo: ArgoOptions) -> list[LogLine]:
    """The main containers' log lines of every pod of the Workflow."""
    with client_for(_in_namespace(argo, sub)) as client:
        return list(client.logs(sub.name))


def _in_namespace(argo: ArgoOptions, sub: ArgoSubmission) -> ArgoOptions:
    if sub.namespace == argo.namespace:
        return argo
    from dataclasses import replace

    return replace(argo, namespace=sub.namespace)


def _default_output(job: InferenceJob) -> Path:
    stem = Path(job.inputs.path).stem if job.inputs.path else str(job.inputs.dataset)
    return Path.cwd() / f"{stem}.predictions.jsonl"


def collect(
    sub: ArgoSubmission,
    job: InferenceJob,
    argo: ArgoOptions,
    registry: RegistryOptions | None = None,
) -> RunResult:
    """Write the finished Workflow's predictions to ``job.output`` (input order, atomically)
    from the results in the registry; WorkflowFailed with the failing node's message if it
    failed, ArgoError if it is still running."""
    started = time.perf_counter()
    with client_for(_in_namespace(argo, sub)) as client:
        wf = client.get(sub.name)
    phase = phase_of(wf)
    if phase in ("Failed", "Error"):
        raise WorkflowFailed(
            f"workflow {sub.namespace}/{sub.name} {phase}: {failure_message(wf)}", sub.name, phase
        )
    if phase != "Succeeded":
        raise ArgoError(f"workflow {sub.namespace}/{sub.name} is {phase or 'Pending'}; wait first")
    outputs = global_outputs(wf)
    meta = wf.get("metadata") or {}
    mode = (meta.get("labels") or {}).get(MODE_LABEL, "batch")
    kits = json.loads((meta.get("annotations") or {}).get(KIT_ANNOTATION, "[]"))
    output = job.output or _default_output(job)
    output = output if output.is_absolute() else Path.cwd() / output
    output.parent.mkdir(parents=True, exist_ok=True)
    tmp = io.temp_path(output)
    comparison = None
    try:
        if mode == "single":
            result = transport.ShardResult.from_json(outputs["result"])
            prediction = outputs["prediction"].strip()
            tmp.write_text(prediction + "\n", encoding="utf-8")
            records = 1
            shards = [ShardStatus(0, 1, "Succeeded", seconds=round(result.seconds, 4))]
        elif mode == "compare":
            report = json.loads(outputs["report"])
            summaries = report["summaries"]
            labels = list(job.references) if len(job.references) == len(summaries) else None
            comparison = comparison_report(summaries, registry, labels, merged_out=tmp)
            records = int(summaries[0]["records"])
            shards = _shards(summaries[0])
        else:
            summary = json.loads(outputs["summary"])
            with (
                tempfile.TemporaryDirectory(prefix="kitflow-collect-") as work,
                open(tmp, "wb") as out,
            ):
                for line in transport.iter_result_lines(summary["results"], registry, Path(work)):
                    out.write(line + b"\n")
            records = int(summary["records"])
            shards = _shards(summary)
        io.commit_file(tmp, output)
    except KeyError as exc:
        raise ArgoError(f"workflow {sub.name} finished without the output {exc}") from None
    finally:
        tmp.unlink(missing_ok=True)
    return RunResult(
        output=output,
        records=records,
        model_digest=transport.split_reference(kits[0])[1] if kits else "",
        backend="argo",
        shards=shards,
        seconds=round(time.perf_counter() - started, 6),
        timings={"collect": round(time.perf_counter() - started, 6)},
        workflow_name=sub.name,
        workflow_namespace=sub.namespace,
        workflow_url=sub.url,
        phase="Succeeded",
        comparison=comparison,
    )


def _shards(summary: dict[str, Any]) -> list[ShardStatus]:
    return [
        ShardStatus(int(i), int(n), "Succeeded", seconds=float(s))
        for i, n, s in summary.get("shards", [])
    ]


# ----------------------------------------------------------------------------- templates


@dataclass(frozen=True)
class TemplateRegistration:
    """A registered WorkflowTemplate and the parameter values that run this job with it."""

    name: str
    namespace: str
    parameters: dict[str, str]


def register_template(
    job: InferenceJob, argo: ArgoOptions, registry: RegistryOptions | None = None
) -> TemplateRegistration:
    """Register (idempotently) the WorkflowTemplate for jobs shaped like ``job`` and return
    the parameters that submit this job through it (the inputs are pushed now)."""
    planned = plan_job(job, argo, registry)
    template = workflow_template_manifest(planned.plan, argo)
    with client_for(argo) as client:
        client.create_template(template)
    return TemplateRegistration(
        template["metadata"]["name"], argo.namespace, template_parameters(planned.plan, argo)
    )


def submit_from_template(
    job: InferenceJob,
    argo: ArgoOptions,
    registry: RegistryOptions | None = None,
    *,
    rerun_failed: bool = True,
) -> ArgoSubmission:
    """Submit ``job`` by its WorkflowTemplate (registered if needed), under the same
    deterministic name as :func:`submit`, so retries re-attach (or replace a failed one)."""
    planned = plan_job(job, argo, registry)
    template = workflow_template_manifest(planned.plan, argo)
    params = template_parameters(planned.plan, argo)
    name = workflow_name(planned.plan, argo)
    tname = template["metadata"]["name"]
    labels = dict(planned.manifest["metadata"].get("labels") or {})
    direct = {
        "apiVersion": "argoproj.io/v1alpha1",
        "kind": "Workflow",
        "metadata": {
            "name": name,
            "namespace": argo.namespace,
            "labels": labels,
            "annotations": planned.manifest["metadata"].get("annotations", {}),
        },
        "spec": {
            "workflowTemplateRef": {"name": tname},
            "arguments": {"parameters": [{"name": k, "value": v} for k, v in params.items()]},
        },
    }
    with client_for(argo) as client:
        client.create_template(template)
    return _create(argo, name, rerun_failed, template=(tname, params, labels, direct))


# ----------------------------------------------------------------------------- run


def run_argo(
    job: InferenceJob,
    argo: ArgoOptions,
    registry: RegistryOptions | None = None,
    *,
    dry_run: bool = False,
    wait: bool = True,
    timeout: float | None = None,
) -> RunResult:
    """Run ``job`` on Argo Workflows: submit (or re-attach), follow to the end, collect.

    ``dry_run`` builds the Workflow (``result.workflow``) without pushing or submitting
    anything; ``wait=False`` returns right after submission with the current phase.
    """
    started = time.perf_counter()
    if dry_run:
        planned = plan_job(job, argo, registry, dry_run=True)
        name = planned.manifest["metadata"]["name"]
        return RunResult(
            output=None,
            records=planned.inputs.records,
            model_digest=transport.split_reference(planned.plan.kits[0])[1],
            backend="argo",
            shards=[
                ShardStatus(b.index, b.records, "Pending", attempts=0)
                for b in planned.inputs.shards
            ],
            seconds=round(time.perf_counter() - started, 6),
            workflow_name=name,
            workflow_namespace=argo.namespace,
            workflow_url=workflow_url(name, argo),
            phase="DryRun",
            workflow=planned.manifest,
        )
    sub = submit(job, argo, registry)
    submitted = time.perf_counter()
    if not wait:
        st = status(sub, argo)
        return RunResult(
            output=None,
            records=0,
            model_digest="",
            backend="argo",
            seconds=round(submitted - started, 6),
            timings={"submit": round(submitted - started, 6)},
            workflow_name=sub.name,
            workflow_namespace=sub.namespace,
            workflow_url=sub.url,
            phase=st.phase or "Pending",
        )
    remaining = None if timeout is None else max(timeout - (submitted - started), 0.001)
    _follow(sub, argo, remaining)
    finished = time.perf_counter()
    result = collect(sub, job, argo, registry)
    timings = {
        "submit": round(submitted - started, 6),
        "run": round(finished - submitted, 6),
        "collect": result.timings.get("collect", 0.0),
    }
    from dataclasses import replace

    return replace(result, seconds=round(time.perf_counter() - started, 6), timings=timings)


__all__ = [
    "ArgoSubmission",
    "TemplateRegistration",
    "WorkflowClientBase",
    "astatus",
    "client_for",
    "collect",
    "logs",
    "plan_job",
    "register_template",
    "run_argo",
    "status",
    "stop",
    "submit",
    "submit_from_template",
    "terminate",
    "wait",
    "workflow_url",
]
