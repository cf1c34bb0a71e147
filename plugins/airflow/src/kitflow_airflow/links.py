"""Operator extra link to the Workflow in the Argo UI (shown once the URL is known)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from airflow.sdk import BaseOperatorLink

if TYPE_CHECKING:
    from airflow.sdk import BaseOperator
    from airflow.sdk.types import TaskInstanceKey

#: XCom key under which the operators push the Workflow's identity and URL.
WORKFLOW_XCOM_KEY = "argo_workflow"


class ArgoWorkflowLink(BaseOperatorLink):
    """ "Argo Workflow" button: the Argo UI page of the Workflow this task submitted or followed.

    Computed on the worker when the task finishes (Airflow stores it in XCom for the UI) from
    the URL the operator recorded."""

    name = "Argo Workflow"

    def get_link(self, operator: BaseOperator, *, ti_key: TaskInstanceKey) -> str:
        """The Workflow's Argo UI URL, or "" when none is known."""
        url: Any = getattr(operator, "workflow_url", None)
        if url:
            return str(url)
        try:
            from airflow.sdk.bases.xcom import BaseXCom

            value = BaseXCom.get_value(ti_key=ti_key, key=WORKFLOW_XCOM_KEY)  # type: ignore[arg-type]
        except Exception:
            return ""
        if isinstance(value, dict) and value.get("url"):
            return str(value["url"])
        return ""
