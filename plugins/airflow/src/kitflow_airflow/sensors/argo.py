"""``ArgoWorkflowSensor``: wait for a Workflow that something else submitted (by name)."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import timedelta
from typing import TYPE_CHECKING, Any

from airflow.sdk import BaseSensorOperator, PokeReturnValue
from airflow.sdk.exceptions import AirflowException
from kitflow.errors import WorkflowFailed

from kitflow_airflow._compat import default_deferrable
from kitflow_airflow.hooks.argo import ArgoHook
from kitflow_airflow.links import WORKFLOW_XCOM_KEY, ArgoWorkflowLink
from kitflow_airflow.triggers.argo import ArgoWorkflowTrigger, submission_from_dict

if TYPE_CHECKING:
    from airflow.sdk import Context


class ArgoWorkflowSensor(BaseSensorOperator):
    """Succeed when the named Workflow succeeds; fail with the failing node's message when it
    fails. Pushes the WorkflowStatus dict (phase, message, progress, outputs) to XCom.

    :param workflow_name: the Workflow's ``metadata.name``.
    :param namespace: its namespace (default: the connection's).
    :param argo_conn_id: ``argo_workflows`` connection.
    :param deferrable: wait in the triggerer instead of poking (never stops the Workflow).
    """

    template_fields: Sequence[str] = ("workflow_name", "namespace")
    operator_extra_links = (ArgoWorkflowLink(),)

    def __init__(
        self,
        *,
        workflow_name: str,
        namespace: str | None = None,
        argo_conn_id: str | None = ArgoHook.default_conn_name,
        deferrable: bool = default_deferrable(),
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.workflow_name = workflow_name
        self.namespace = namespace
        self.argo_conn_id = argo_conn_id
        self.deferrable = deferrable
        self.workflow_url: str | None = None

    def _hook(self) -> ArgoHook:
        return ArgoHook(argo_conn_id=self.argo_conn_id, overrides={"namespace": self.namespace})

    def _submission(self, context: Context) -> dict[str, Any]:
        from kitflow.inference.argo.backend import workflow_url

        options = self._hook().get_conn()
        submission = {
            "name": self.workflow_name,
            "namespace": options.namespace,
            "url": workflow_url(self.workflow_name, options),
            "uid": "",
        }
        self.workflow_url = submission["url"]
        ti = context.get("ti")
        if ti is not None:
            ti.xcom_push(key=WORKFLOW_XCOM_KEY, value=submission)
        return submission

    def execute(self, context: Context) -> Any:
        """Defer to the trigger when ``deferrable``, else poke as usual."""
        if self.deferrable:
            self.defer(
                trigger=ArgoWorkflowTrigger(
                    submission=self._submission(context),
                    argo_conn_id=self.argo_conn_id,
                    poll_interval=self.poke_interval,
                    timeout=self.timeout,
                    cancel_on_kill=False,  # not ours to stop
                ),
                method_name="execute_complete",
                timeout=timedelta(seconds=self.timeout) if self.timeout else None,
            )
        return super().execute(context)

    def poke(self, context: Context) -> PokeReturnValue:
        """One status check: done when finished; raise if the Workflow failed."""
        submission = self._submission(context)
        status = self._hook().status(submission_from_dict(submission))
        if status.finished and not status.succeeded:
            raise WorkflowFailed(
                f"Workflow {status.name} ended {status.phase}: {status.message}",
                name=status.name,
                phase=status.phase,
            )
        self.log.info(
            "Workflow %s is %s%s",
            status.name,
            status.phase or "Pending",
            f" ({status.progress})" if status.progress else "",
        )
        return PokeReturnValue(is_done=status.succeeded, xcom_value=status.to_dict())

    def execute_complete(self, context: Context, event: dict[str, Any]) -> dict[str, Any]:
        """Resume after the trigger fired: return the status dict or fail."""
        self.workflow_url = (event.get("submission") or {}).get("url")
        workflow = event.get("workflow") or {}
        if event.get("status") == "success":
            return dict(workflow)
        if event.get("status") == "failed":
            raise WorkflowFailed(
                event.get("message") or "Workflow failed",
                name=self.workflow_name,
                phase=str(workflow.get("phase", "")),
            )
        raise AirflowException(event.get("message") or "Argo trigger failed")
