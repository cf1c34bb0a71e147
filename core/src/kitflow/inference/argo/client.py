"""A thin client for the Argo Server REST API (swagger.json v4.x) over httpx: create (409 →
re-attach), get, list, watch, wait, logs, stop, terminate, delete and WorkflowTemplates."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from typing import Any
from urllib.parse import quote

import httpx

from kitflow.errors import ArgoError
from kitflow.inference.argo.base import (
    ArgoAPIError,
    LogLine,
    StreamDropped,
    WorkflowClientBase,
    bearer,
)
from kitflow.inference.argo.status import FAILED_PHASES, WorkflowStatus, phase_of, to_status
from kitflow.options import ArgoOptions

log = logging.getLogger(__name__)


def server_url(argo: ArgoOptions) -> str:
    """Base URL of the Argo Server: ARGO_SERVER is host:port (scheme from ARGO_SECURE) or a URL."""
    if not argo.server:
        raise ArgoError(
            "no Argo Server configured: set ARGO_SERVER (host:port) or pass a kubeconfig"
        )
    server = argo.server.strip().rstrip("/")
    if "://" not in server:
        server = ("https://" if argo.secure else "http://") + server
    base_href = argo.base_href.strip("/")
    return f"{server}/{base_href}" if base_href else server


class ArgoServerClient(WorkflowClientBase):
    """Workflows in one namespace through the Argo Server; a context manager (or ``close()``)."""

    service = "the Argo Server"

    def __init__(self, argo: ArgoOptions, *, timeout: float = 30.0) -> None:
        self.base_url = server_url(argo)
        self.namespace = argo.namespace
        headers = {"Accept": "application/json"}
        if argo.token:
            headers["Authorization"] = bearer(argo.token.reveal())
        self._http = httpx.Client(
            base_url=self.base_url,
            headers=headers,
            verify=not argo.insecure_skip_verify,
            timeout=timeout,
        )

    # -- plumbing -----------------------------------------------------------------------------

    def _ns(self) -> str:
        return quote(self.namespace, safe="")

    # -- workflows ----------------------------------------------------------------------------

    def create(self, workflow: dict[str, Any]) -> dict[str, Any]:
        """Create the Workflow; if one with the same name exists (409), return that one instead."""
        return self.create_or_get(
            lambda: self._call(
                "POST",
                f"/api/v1/workflows/{self._ns()}",
                "create workflow",
                json={"namespace": self.namespace, "workflow": workflow},
            ),
            (workflow.get("metadata") or {}).get("name"),
        )

    def lint(self, workflow: dict[str, Any]) -> dict[str, Any]:
        """Server-side validation without creating anything."""
        return self._call(
            "POST",
            f"/api/v1/workflows/{self._ns()}/lint",
            "lint workflow",
            json={"namespace": self.namespace, "workflow": workflow},
        )

    def get(self, name: str, fields: str | None = None) -> dict[str, Any]:
        """One Workflow (404 → ArgoAPIError with status 404)."""
        params = {"fields": fields} if fields else None
        return self._call(
            "GET",
            f"/api/v1/workflows/{self._ns()}/{quote(name)}",
            f"get workflow {name}",
            params=params,
        )

    #: What a status poll reads (``status.nodes`` can be megabytes on a big fan-out).
    STATUS_FIELDS = (
        "metadata.name,metadata.namespace,metadata.uid,metadata.resourceVersion,"
        "status.phase,status.message,status.progress,status.outputs"
    )

    def get_status(self, name: str) -> WorkflowStatus:
        """A cheap poll (``fields`` trims the nodes); the nodes are read only on failure, for
        the failing node's message."""
        workflow = self.get(name, fields=self.STATUS_FIELDS)
        if phase_of(workflow) in FAILED_PHASES:
            workflow = self.get(name)
        return to_status(workflow)

    def list(self, label_selector: str | None = None) -> list[dict[str, Any]]:
        """Workflows matching a label selector, following ``continue`` pages."""

        def read_page(cont: str | None) -> dict[str, Any]:
            params: dict[str, Any] = {"listOptions.limit": 200}
            if label_selector:
                params["listOptions.labelSelector"] = label_selector
            if cont:
                params["listOptions.continue"] = cont
            return self._call(
                "GET", f"/api/v1/workflows/{self._ns()}", "list workflows", params=params
            )

        return self._paged(read_page)

    def watch(
        self, name: str, resource_version: str | None = None, timeout: float | None = None
    ) -> Iterator[dict[str, Any]]:
        """Yield the Workflow each time it changes (``/api/v1/workflow-events``); raises
        StreamDropped if the server ends the stream or sends an error."""
        params: dict[str, Any] = {"listOptions.fieldSelector": f"metadata.name={name}"}
        if resource_version:
            params["listOptions.resourceVersion"] = resource_version
        read = 60.0 if timeout is None else max(min(timeout, 60.0), 0.1)
        path = f"/api/v1/workflow-events/{self._ns()}"
        with self._stream(
            path,
            f"watch workflow {name}",
            params,
            httpx.Timeout(30.0, read=read),
            headers={"Accept": "text/event-stream"},
        ) as items:
            for item in items:
                if "error" in item:
                    raise StreamDropped(str((item["error"] or {}).get("message", "stream error")))
                event = item.get("result") or {}
                obj = event.get("object")
                if isinstance(obj, dict):
                    yield obj

    def logs(
        self,
        name: str,
        pod_name: str | None = None,
        container: str = "main",
        follow: bool = False,
        grep: str | None = None,
    ) -> Iterator[LogLine]:
        """Log lines of the Workflow's pods (all pods unless ``pod_name``)."""
        params: dict[str, Any] = {"logOptions.container": container}
        if pod_name:
            params["podName"] = pod_name
        if follow:
            params["logOptions.follow"] = "true"
        if grep:
            params["grep"] = grep
        path = f"/api/v1/workflows/{self._ns()}/{quote(name)}/log"
        with self._stream(
            path, f"logs of workflow {name}", params, httpx.Timeout(30.0, read=None)
        ) as items:
            for item in items:
                entry = item.get("result") or {}
                yield LogLine(str(entry.get("podName", "")), str(entry.get("content", "")))

    def stop(self, name: str, message: str | None = None) -> dict[str, Any]:
        """Stop: no new steps, exit handlers still run."""
        body: dict[str, Any] = {"name": name, "namespace": self.namespace}
        if message:
            body["message"] = message
        return self._call(
            "PUT",
            f"/api/v1/workflows/{self._ns()}/{quote(name)}/stop",
            f"stop workflow {name}",
            json=body,
        )

    def terminate(self, name: str) -> dict[str, Any]:
        """Terminate: kill running pods now, no exit handlers."""
        return self._call(
            "PUT",
            f"/api/v1/workflows/{self._ns()}/{quote(name)}/terminate",
            f"terminate workflow {name}",
            json={"name": name, "namespace": self.namespace},
        )

    def delete(self, name: str, uid: str | None = None) -> None:
        """Delete the Workflow object (and, through owner references, its pods); with ``uid``
        only if the Workflow of that name is still that one (a UID precondition). Deletion
        may complete later (finalizers): the object can outlive this call."""
        params = {"deleteOptions.preconditions.uid": uid} if uid else None
        self._call(
            "DELETE",
            f"/api/v1/workflows/{self._ns()}/{quote(name)}",
            f"delete workflow {name}",
            params=params,
        )

    # -- templates ----------------------------------------------------------------------------

    def create_template(self, template: dict[str, Any]) -> dict[str, Any]:
        """Register a WorkflowTemplate; an existing one of that name is returned unchanged."""
        try:
            return self._call(
                "POST",
                f"/api/v1/workflow-templates/{self._ns()}",
                "create workflow template",
                json={"namespace": self.namespace, "template": template},
            )
        except ArgoAPIError as exc:
            name = (template.get("metadata") or {}).get("name")
            if exc.status == 409 and name:
                return self.get_template(name)
            raise

    def get_template(self, name: str) -> dict[str, Any]:
        """One WorkflowTemplate."""
        return self._call(
            "GET",
            f"/api/v1/workflow-templates/{self._ns()}/{quote(name)}",
            f"get workflow template {name}",
        )

    def submit_template(
        self,
        template_name: str,
        parameters: dict[str, str] | None = None,
        labels: dict[str, str] | None = None,
        name: str | None = None,
    ) -> dict[str, Any]:
        """Start a Workflow from a registered WorkflowTemplate (``/submit``)."""
        opts: dict[str, Any] = {}
        if parameters:
            opts["parameters"] = [f"{k}={v}" for k, v in parameters.items()]
        if labels:
            opts["labels"] = ",".join(f"{k}={v}" for k, v in labels.items())
        if name:
            opts["name"] = name
        body = {
            "namespace": self.namespace,
            "resourceKind": "WorkflowTemplate",
            "resourceName": template_name,
            "submitOptions": opts,
        }
        return self.create_or_get(
            lambda: self._call(
                "POST",
                f"/api/v1/workflows/{self._ns()}/submit",
                f"submit template {template_name}",
                json=body,
            ),
            name,
        )
