"""``ArgoInferenceOperator``: batch or single inference with a ModelKit on Argo Workflows.

Submission, status, results and stop are calls into ``kitflow.inference.argo.backend``. The
operator defers to :class:`ArgoWorkflowTrigger` (no worker slot held while the Workflow runs),
or polls on the worker. Retries re-attach to a running (or collect a succeeded) Workflow
instead of resubmitting: the core names Workflows deterministically from the job, and the
submitted name is kept in Airflow 3.3's task state store through ``ResumableJobMixin`` where it
exists. A retry after the Workflow ended Failed/Error runs the job again: the core replaces the
failed Workflow (same name, new run).
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from datetime import timedelta
from typing import TYPE_CHECKING, Any

from airflow.sdk.exceptions import AirflowException
from kitflow.errors import KitflowError, WorkflowFailed
from kitflow.options import Resources

from kitflow_airflow._compat import default_deferrable
from kitflow_airflow.hooks.argo import ArgoHook
from kitflow_airflow.links import WORKFLOW_XCOM_KEY, ArgoWorkflowLink
from kitflow_airflow.operators._base import KitBaseOperator, no_retry_for_invalid_input
from kitflow_airflow.operators._single import record_files, with_prediction
from kitflow_airflow.triggers.argo import (
    ArgoWorkflowTrigger,
    submission_from_dict,
    submission_to_dict,
)

if TYPE_CHECKING:
    from airflow.sdk import Context
    from kitflow.inference.job import InferenceJob

try:  # Airflow >= 3.3: durable execution (submitted id kept in the task state store)
    from airflow.sdk import ResumableJobMixin
except ImportError:  # pragma: no cover - older Airflow 3: re-attach relies on the core's names

    class ResumableJobMixin:  # type: ignore[no-redef]
        """Stand-in for Airflow < 3.3: submit (the core re-attaches by name, or replaces a
        failed Workflow), wait, collect."""

        external_id_key = "remote_job_id"

        def __init__(self, *, durable: bool = True, **kwargs: Any) -> None:
            super().__init__(**kwargs)
            self.durable = durable

        def execute_resumable(self, context: Context) -> Any:
            external_id = self.submit_job(context)  # type: ignore[attr-defined]
            self.poll_until_complete(external_id, context)  # type: ignore[attr-defined]
            return self.get_job_result(external_id, context)  # type: ignore[attr-defined]


#: Phases of a Workflow that may still be re-attached to.
ACTIVE_PHASES = frozenset({"", "Pending", "Running"})
#: Status reported for a stored Workflow that no longer exists (garbage-collected, deleted).
MISSING = "NotFound"
ON_KILL_ACTIONS = ("stop", "keep")


class ArgoInferenceOperator(ResumableJobMixin, KitBaseOperator):
    """Run inference with a ModelKit on Argo Workflows and return the RunResult as a dict.

    :param reference: ModelKit reference (or a list, to compare several kits on the inputs).
    :param input_path: JSON Lines / CSV / Parquet file with the records (or ``dataset``).
    :param output_path: local path the gathered predictions are written to.
    :param argo_conn_id: ``argo_workflows`` connection (server URL + token, or kubeconfig).
    :param namespace: namespace override; ``image``, ``service_account``, ``registry_secret``,
        ``pod_resources`` (cpu/memory/gpu), ``node_selector``, ``tolerations``,
        ``active_deadline_seconds`` likewise override the connection's ArgoOptions.
    :param deferrable: wait in the triggerer (default: ``[operators] default_deferrable``).
    :param poll_interval: seconds between status checks.
    :param run_timeout: give up waiting after this many seconds (the Workflow keeps running).
    :param on_kill_action: ``"stop"`` (default) stops the Workflow when the task is killed on
        the worker; ``"keep"`` leaves it running (a retry re-attaches).
    :param cancel_on_kill: stop the Workflow when a user kills the deferred task.
    :param durable: keep the submitted Workflow in the task state store (Airflow 3.3).
    :param record: single inference: score this one record (one step, its prediction comes
        back as an output parameter) and put its ``prediction`` in the XCom.
    """

    external_id_key = WORKFLOW_XCOM_KEY
    template_fields: Sequence[str] = (
        "reference",
        "input_path",
        "output_path",
        "dataset",
        "entrypoint",
        "namespace",
        "image",
        "record",
        "home",
    )
    template_fields_renderers = {"record": "json"}
    operator_extra_links = (ArgoWorkflowLink(),)
    ui_color = "#fdf0e6"

    def __init__(
        self,
        *,
        reference: str | list[str],
        input_path: str | None = None,
        output_path: str | None = None,
        dataset: str | None = None,
        entrypoint: str | None = None,
        shards: int | None = None,
        parallelism: int | None = None,
        batch_size: int = 256,
        retries_per_shard: int = 1,
        argo_conn_id: str | None = ArgoHook.default_conn_name,
        namespace: str | None = None,
        image: str | None = None,
        service_account: str | None = None,
        registry_secret: str | None = None,
        pod_resources: Resources | dict[str, Any] | None = None,
        node_selector: dict[str, str] | None = None,
        tolerations: list[dict[str, Any]] | None = None,
        active_deadline_seconds: int | None = None,
        deferrable: bool = default_deferrable(),
        poll_interval: float = 10.0,
        run_timeout: float | None = None,
        on_kill_action: str = "stop",
        cancel_on_kill: bool = True,
        record: dict[str, Any] | str | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        if on_kill_action not in ON_KILL_ACTIONS:
            raise ValueError(f"on_kill_action must be one of {ON_KILL_ACTIONS}")
        self.reference = reference
        self.input_path = input_path
        self.output_path = output_path
        self.dataset = dataset
        self.entrypoint = entrypoint
        self.shards = shards
        self.parallelism = parallelism
        self.batch_size = batch_size
        self.retries_per_shard = retries_per_shard
        self.argo_conn_id = argo_conn_id
        self.namespace = namespace
        self.image = image
        self.service_account = service_account
        self.registry_secret = registry_secret
        self.pod_resources = (
            Resources(**pod_resources) if isinstance(pod_resources, dict) else pod_resources
        )
        self.node_selector = node_selector
        self.tolerations = tolerations
        self.active_deadline_seconds = active_deadline_seconds
        self.deferrable = deferrable
        self.poll_interval = poll_interval
        self.run_timeout = run_timeout
        self.on_kill_action = on_kill_action
        self.cancel_on_kill = cancel_on_kill
        self.record = record
        self._io: tuple[str | None, str | None] | None = None
        self.workflow_url: str | None = None
        self._submission: Any = None
        self._result: dict[str, Any] | None = None

    # --- building blocks --------------------------------------------------------------------

    def argo_hook(self) -> ArgoHook:
        """The Argo hook with this operator's overrides applied."""
        return ArgoHook(
            argo_conn_id=self.argo_conn_id,
            overrides={
                "namespace": self.namespace,
                "image": self.image,
                "service_account": self.service_account,
                "registry_secret": self.registry_secret,
                "resources": self.pod_resources,
                "node_selector": self.node_selector,
                "tolerations": self.tolerations,
                "active_deadline_seconds": self.active_deadline_seconds,
            },
        )

    def build_job(self) -> InferenceJob:
        """The core's InferenceJob for the rendered fields (same job on every attempt)."""
        from kitflow.inference.runner import build_job

        refs = self.qualified(self.reference)
        if self._io is None:
            self._io = (self.input_path, self.output_path)
            if self.record is not None:
                with no_retry_for_invalid_input():
                    self._io = record_files(self.record, self.output_path)
        source, output = self._io
        with no_retry_for_invalid_input():
            return build_job(
                refs,
                source,
                output,
                shards=self.shards,
                parallelism=self.parallelism,
                entrypoint=self.entrypoint,
                dataset=self.dataset,
                batch_size=self.batch_size,
                retries=self.retries_per_shard,
                argo=self.argo_hook().get_conn(),
                home=self.home,
            )

    def _remember(self, context: Context, submission: dict[str, Any]) -> None:
        self._submission = submission
        self.workflow_url = submission.get("url") or None
        ti = context.get("ti")
        if ti is not None:
            ti.xcom_push(key=WORKFLOW_XCOM_KEY, value=submission)

    def _collect(self, submission: dict[str, Any]) -> dict[str, Any]:
        if self._result is None:
            sub = submission_from_dict(submission)
            result = self.argo_hook().collect(
                sub, self.build_job(), self.registry_hook().get_conn()
            )
            self.log.info(
                "Workflow %s: %d records scored with %s -> %s",
                submission["name"],
                result.records,
                result.model_digest,
                result.output,
            )
            out = result.to_dict()
            out.setdefault("workflow_name", submission["name"])
            out["workflow_namespace"] = out.get("workflow_namespace") or submission["namespace"]
            out["workflow_url"] = out.get("workflow_url") or submission.get("url")
            self._result = with_prediction(out)
        return self._result

    # --- ResumableJobMixin ------------------------------------------------------------------

    def execute(self, context: Context) -> Any:
        """Submit (or re-attach), then defer or poll; returns the RunResult dict."""
        return self.execute_resumable(context)

    def submit_job(self, context: Context) -> dict[str, Any]:
        """Submit the Workflow: the core re-attaches to a live or succeeded one with the job's
        name, and replaces one that ended Failed/Error (so a retry runs the job again)."""
        job = self.build_job()
        with no_retry_for_invalid_input():
            sub = self.argo_hook().submit(job, self.registry_hook().get_conn())
        submission = submission_to_dict(sub)
        self.log.info(
            "Submitted Workflow %s in %s %s",
            submission["name"],
            submission["namespace"],
            submission.get("url") or "",
        )
        self._remember(context, submission)
        return submission

    def get_job_status(self, external_id: Any, context: Context) -> str:
        """The stored Workflow's phase ("NotFound" if it is gone)."""
        try:
            status = self.argo_hook().status(submission_from_dict(external_id))
        except KitflowError as err:
            if getattr(err, "status", None) == 404 or "not found" in str(err).lower():
                return MISSING
            raise
        self._remember(context, external_id)
        return str(status.phase)

    def is_job_active(self, status: str) -> bool:
        """Pending or Running: re-attach."""
        return status in ACTIVE_PHASES

    def is_job_succeeded(self, status: str) -> bool:
        """Succeeded: collect the results without running anything again."""
        return status == "Succeeded"

    def poll_until_complete(self, external_id: Any, context: Context) -> Any:
        """Defer to the trigger, or poll here; raise on failure; return the result dict."""
        if self.deferrable:
            self.defer(
                trigger=ArgoWorkflowTrigger(
                    submission=external_id,
                    argo_conn_id=self.argo_conn_id,
                    poll_interval=self.poll_interval,
                    timeout=self.run_timeout,
                    cancel_on_kill=self.cancel_on_kill,
                ),
                method_name="execute_complete",
                timeout=timedelta(seconds=self.run_timeout * 2) if self.run_timeout else None,
            )
        from kitflow.inference.argo import backend

        sub = submission_from_dict(external_id)
        deadline = None if self.run_timeout is None else time.monotonic() + self.run_timeout

        def log_status(status: Any) -> None:
            if not status.finished:
                self.log.info(
                    "Workflow %s is %s%s",
                    sub.name,
                    status.phase or "Pending",
                    f" ({status.progress})" if status.progress else "",
                )

        end, status = backend.follow(
            sub,
            self.argo_hook().get_conn(),
            poll_seconds=self.poll_interval,
            deadline=deadline,
            on_status=log_status,
        )
        if end == "timeout":
            raise AirflowException(
                f"Workflow {sub.name} did not finish within {self.run_timeout:g}s; "
                "it keeps running (a retry re-attaches)"
            )
        if not status.succeeded:
            raise WorkflowFailed(
                f"Workflow {sub.name} ended {status.phase}: {status.message}",
                name=sub.name,
                phase=status.phase,
            )
        return self._collect(external_id)

    def get_job_result(self, external_id: Any, context: Context) -> dict[str, Any]:
        """The RunResult of the finished Workflow, as a dict."""
        self._remember(context, external_id)
        return self._collect(external_id)

    # --- deferral and kill -----------------------------------------------------------------

    def execute_complete(self, context: Context, event: dict[str, Any]) -> dict[str, Any]:
        """Resume after the trigger fired: collect on success, fail with the node's message."""
        submission = event["submission"]
        self._remember(context, submission)
        status = event.get("status")
        if status == "success":
            return self._collect(submission)
        workflow = event.get("workflow") or {}
        if status == "failed":
            raise WorkflowFailed(
                event.get("message") or "Workflow failed",
                name=submission["name"],
                phase=str(workflow.get("phase", "")),
            )
        raise AirflowException(event.get("message") or f"Argo trigger ended with {status}")

    def on_kill(self) -> None:
        """Task killed on the worker (SIGTERM, timeout): stop the Workflow unless ``keep``."""
        if self.on_kill_action != "stop" or not self._submission:
            return
        try:
            self.argo_hook().stop(submission_from_dict(self._submission))
            self.log.info("Stopped Workflow %s", self._submission["name"])
        except Exception as err:
            self.log.warning("Could not stop Workflow %s: %s", self._submission["name"], err)
