"""``KitRegistryHook``: an Airflow connection to an OCI registry as kitflow ``RegistryOptions``.

The connection holds the registry host, login/password and the TLS choices; every operation
is a call into ``kitflow.api`` with those options.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from airflow.sdk import BaseHook
from airflow.sdk.exceptions import AirflowNotFoundException
from kitflow.format.reference import qualify_reference
from kitflow.format.reference import registry_host as host_of
from kitflow.options import RegistryOptions

from kitflow_airflow.get_provider_info import REGISTRY_CONN_TYPE
from kitflow_airflow.hooks._extras import as_bool, extra_value

if TYPE_CHECKING:
    from airflow.sdk import Connection
    from kitflow.results import TransferResult, UnpackResult


def registry_host(conn: Connection) -> str | None:
    """``host[:port]`` of the registry named by the connection (scheme stripped), or None."""
    host = host_of(conn.host)
    if host is None:
        return None
    if conn.port and ":" not in host:
        host = f"{host}:{conn.port}"
    return host


def registry_options_from_connection(conn: Connection) -> RegistryOptions:
    """Map a ``kitops_registry`` connection onto :class:`RegistryOptions`.

    ``http://`` in the host or ``schema == "http"`` implies plain HTTP; extras ``plain_http``,
    ``tls_verify``, ``ca_bundle`` (also accepted with the UI's ``extra__kitops_registry__``
    prefix) override.
    """
    extras = conn.extra_dejson or {}
    host = (conn.host or "").strip().lower()
    scheme_http = host.startswith("http://") or (conn.schema or "").lower() == "http"
    plain_http = as_bool(
        extra_value(extras, REGISTRY_CONN_TYPE, "plain_http"), scheme_http, "plain_http"
    )
    tls_verify = as_bool(extra_value(extras, REGISTRY_CONN_TYPE, "tls_verify"), True, "tls_verify")
    ca_bundle = extra_value(extras, REGISTRY_CONN_TYPE, "ca_bundle")
    return RegistryOptions.from_settings(
        username=conn.login,
        password=conn.password,
        plain_http=plain_http,
        tls_verify=tls_verify,
        ca_file=ca_bundle,
    )


class KitRegistryHook(BaseHook):
    """Credentials and TLS settings for one OCI registry, read from an Airflow connection.

    With the default connection id and no such connection, anonymous defaults are used (so a
    local registry works without any setup).
    """

    conn_name_attr = "kit_registry_conn_id"
    default_conn_name = "kitops_registry_default"
    conn_type = REGISTRY_CONN_TYPE
    hook_name = "KitOps OCI Registry"

    def __init__(self, kit_registry_conn_id: str | None = default_conn_name, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.kit_registry_conn_id = kit_registry_conn_id
        self._conn: Connection | None = None
        self._loaded = False

    def _connection(self) -> Connection | None:
        if not self._loaded:
            self._loaded = True
            if self.kit_registry_conn_id:
                try:
                    self._conn = self.get_connection(self.kit_registry_conn_id)
                except AirflowNotFoundException:
                    if self.kit_registry_conn_id != self.default_conn_name:
                        raise
                    self.log.info(
                        "No %s connection; using anonymous access", self.default_conn_name
                    )
        return self._conn

    def get_conn(self) -> RegistryOptions:
        """The connection as :class:`kitflow.options.RegistryOptions` (password kept secret)."""
        conn = self._connection()
        return registry_options_from_connection(conn) if conn else RegistryOptions()

    @property
    def registry(self) -> str | None:
        """The registry ``host[:port]`` the connection names, if any."""
        conn = self._connection()
        return registry_host(conn) if conn else None

    def qualify(self, reference: str) -> str:
        """Prefix the connection's registry to a reference that names none (``repo:tag``)."""
        return qualify_reference(reference, self.registry)

    def push(self, reference: str, destination: str | None = None, **kwargs: Any) -> TransferResult:
        """``kitflow.api.push`` with this connection's options."""
        from kitflow import api

        dest = self.qualify(destination) if destination else None
        return api.push(self.qualify(reference), dest, registry=self.get_conn(), **kwargs)

    def pull(self, reference: str, **kwargs: Any) -> TransferResult:
        """``kitflow.api.pull`` with this connection's options."""
        from kitflow import api

        return api.pull(self.qualify(reference), registry=self.get_conn(), **kwargs)

    def unpack(self, reference: str, directory: str | Path, **kwargs: Any) -> UnpackResult:
        """``kitflow.api.unpack`` (local store first, else straight from the registry)."""
        from kitflow import api

        return api.unpack(self.qualify(reference), directory, registry=self.get_conn(), **kwargs)

    def inspect(self, reference: str, *, remote: bool = True, **kwargs: Any) -> dict[str, Any]:
        """``kitflow.api.inspect`` against the registry (``remote=True``) or the local store."""
        from kitflow import api

        return api.inspect(
            self.qualify(reference), remote=remote, registry=self.get_conn(), **kwargs
        )
