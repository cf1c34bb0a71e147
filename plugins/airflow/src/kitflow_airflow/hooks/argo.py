"""``ArgoHook``: an Airflow connection to Argo Workflows as kitflow ``ArgoOptions``.

The connection names the Argo Server URL (host) and its bearer token (password), or a
kubeconfig (extra) for submitting straight through the Kubernetes API, plus the namespace.
Submit, status, collect and stop are calls into ``kitflow.inference.argo.backend``.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import TYPE_CHECKING, Any

from airflow.sdk import BaseHook
from airflow.sdk.exceptions import AirflowNotFoundException
from kitflow.options import ArgoOptions
from kitflow.secret import Secret

from kitflow_airflow.get_provider_info import ARGO_CONN_TYPE
from kitflow_airflow.hooks._extras import as_bool, extra_value

if TYPE_CHECKING:
    from airflow.sdk import Connection
    from kitflow.options import RegistryOptions
    from kitflow.results import RunResult


def argo_options_from_connection(conn: Connection, **overrides: Any) -> ArgoOptions:
    """Map an ``argo_workflows`` connection onto :class:`ArgoOptions`; keyword overrides win.

    Host is the Argo Server (``https://argo:2746``; ``http://`` or ``schema == "http"`` means no
    TLS); password is the token. Extras: ``namespace``, ``kubeconfig``, ``kube_context``,
    ``insecure_skip_verify``, ``ui_url``, ``image`` (bare or ``extra__argo_workflows__``-prefixed).
    """
    extras = conn.extra_dejson or {}

    def extra(name: str) -> Any:
        return extra_value(extras, ARGO_CONN_TYPE, name)

    values: dict[str, Any] = {}
    host = (conn.host or "").strip().rstrip("/")
    if host:
        schema = (conn.schema or "").strip().lower()
        if "://" not in host and schema in ("http", "https"):
            host = f"{schema}://{host}"
        if conn.port and ":" not in host.split("://", 1)[-1]:
            host = f"{host}:{conn.port}"
        values["server"] = host
        values["secure"] = not host.lower().startswith("http://")
    token = conn.password or extra("token")
    if token:
        values["token"] = Secret(str(token))
    for name in ("namespace", "kube_context", "ui_url", "image"):
        if extra(name) is not None:
            values[name] = str(extra(name))
    if extra("kubeconfig") is not None:
        values["kubeconfig"] = Path(str(extra("kubeconfig")))
    values["insecure_skip_verify"] = as_bool(
        extra("insecure_skip_verify"), False, "insecure_skip_verify"
    )
    values.update({k: v for k, v in overrides.items() if v is not None})
    return ArgoOptions(**values)


class ArgoHook(BaseHook):
    """Where and how to run Workflows, read from an Airflow connection.

    With the default connection id and no such connection, the argo CLI's environment
    (``ARGO_SERVER``, ``ARGO_TOKEN``, ``ARGO_NAMESPACE``, ``KUBECONFIG`` ...) is used.
    ``overrides`` (namespace, image, resources ...) replace fields of the resulting options.
    """

    conn_name_attr = "argo_conn_id"
    default_conn_name = "argo_default"
    conn_type = ARGO_CONN_TYPE
    hook_name = "Argo Workflows"

    def __init__(
        self,
        argo_conn_id: str | None = default_conn_name,
        overrides: dict[str, Any] | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.argo_conn_id = argo_conn_id
        self.overrides = {k: v for k, v in (overrides or {}).items() if v is not None}
        self._options: ArgoOptions | None = None

    def _from(self, conn: Connection | None) -> ArgoOptions:
        if conn is None:
            return ArgoOptions.from_env(**self.overrides)
        return argo_options_from_connection(conn, **self.overrides)

    def _missing(self) -> None:
        if self.argo_conn_id != self.default_conn_name:
            raise AirflowNotFoundException(f"The conn_id `{self.argo_conn_id}` isn't defined")
        self.log.info("No %s connection; using the ARGO_* environment", self.default_conn_name)

    def get_conn(self) -> ArgoOptions:
        """The connection (or the environment) as :class:`kitflow.options.ArgoOptions`."""
        if self._options is None:
            conn = None
            if self.argo_conn_id:
                try:
                    conn = self.get_connection(self.argo_conn_id)
                except AirflowNotFoundException:
                    self._missing()
            self._options = self._from(conn)
        return self._options

    async def aget_conn(self) -> ArgoOptions:
        """Async :meth:`get_conn` for triggers (never blocks the triggerer's event loop)."""
        if self._options is None:
            conn = None
            if self.argo_conn_id:
                try:
                    conn = await self.aget_connection(self.argo_conn_id)
                except AirflowNotFoundException:
                    self._missing()
            self._options = self._from(conn)
        return self._options

    def with_overrides(self, **overrides: Any) -> ArgoOptions:
        """These options with some fields replaced (None values ignored)."""
        return dataclasses.replace(
            self.get_conn(), **{k: v for k, v in overrides.items() if v is not None}
        )

    # --- thin calls into the core's split Argo API -------------------------------------------

    def submit(self, job: Any, registry: RegistryOptions | None = None) -> Any:
        """Submit (or re-attach to) the Workflow for ``job``; one of this job that ended
        Failed/Error is replaced by a fresh run. Returns an ``ArgoSubmission``."""
        from kitflow.inference.argo import backend

        return backend.submit(job, self.get_conn(), registry)

    def status(self, submission: Any) -> Any:
        """The Workflow's current ``WorkflowStatus``."""
        from kitflow.inference.argo import backend

        return backend.status(submission, self.get_conn())

    def collect(
        self, submission: Any, job: Any, registry: RegistryOptions | None = None
    ) -> RunResult:
        """Fetch the results of a finished Workflow as a ``RunResult``."""
        from kitflow.inference.argo import backend

        return backend.collect(submission, job, self.get_conn(), registry)

    def stop(self, submission: Any) -> None:
        """Stop the Workflow (running steps are stopped, exit handlers still run)."""
        from kitflow.inference.argo import backend

        backend.stop(submission, self.get_conn())
