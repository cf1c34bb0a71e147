"""The same Workflow operations straight through the Kubernetes API (CRD argoproj.io/v1alpha1),
with credentials from a kubeconfig or the in-cluster service account; httpx only."""

from __future__ import annotations

import base64
import os
import ssl
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import quote

import httpx
import yaml

from kitflow.errors import ArgoError
from kitflow.inference.argo.base import (
    ArgoAPIError,
    LogLine,
    StreamDropped,
    WorkflowClientBase,
    bearer,
    raise_for,
)
from kitflow.secret import Secret

GROUP_VERSION = "argoproj.io/v1alpha1"
SA_DIR = Path("/var/run/secrets/kubernetes.io/serviceaccount")


@dataclass(frozen=True)
class KubeConfig:
    """Where the API server is and how to authenticate (one resolved kubeconfig context)."""

    server: str
    namespace: str | None = None
    token: Secret | None = None
    ca_data: bytes | None = None  # PEM
    client_cert_data: bytes | None = None  # PEM
    client_key_data: bytes | None = None  # PEM
    insecure_skip_verify: bool = False

    def __repr__(self) -> str:
        return f"KubeConfig(server={self.server!r}, namespace={self.namespace!r})"


def _data_or_file(entry: dict[str, Any], key: str, base: Path) -> bytes | None:
    if entry.get(f"{key}-data"):
        return base64.b64decode(entry[f"{key}-data"])
    if entry.get(key):
        path = Path(entry[key])
        return (path if path.is_absolute() else base / path).read_bytes()
    return None


def load_kubeconfig(path: Path | str | None = None, context: str | None = None) -> KubeConfig:
    """Resolve a kubeconfig (``path`` or $KUBECONFIG's first file or ~/.kube/config) context."""
    if path is None:
        env = os.environ.get("KUBECONFIG", "")
        path = env.split(os.pathsep)[0] if env else Path.home() / ".kube" / "config"
    path = Path(path)
    try:
        doc = yaml.safe_load(path.read_text()) or {}
    except OSError as exc:
        raise ArgoError(f"cannot read kubeconfig {path}: {exc.strerror}") from exc
    ctx_name = context or doc.get("current-context")
    contexts = {c["name"]: c.get("context") or {} for c in doc.get("contexts") or []}
    if ctx_name not in contexts:
        raise ArgoError(f"kubeconfig {path} has no context {ctx_name!r}; pick one with --context")
    ctx = contexts[ctx_name]
    clusters = {c["name"]: c.get("cluster") or {} for c in doc.get("clusters") or []}
    users = {u["name"]: u.get("user") or {} for u in doc.get("users") or []}
    cluster = clusters.get(ctx.get("cluster"))
    if not cluster or not cluster.get("server"):
        raise ArgoError(f"kubeconfig {path}: context {ctx_name!r} names no cluster with a server")
    user = users.get(ctx.get("user"), {})
    if user.get("exec") or user.get("auth-provider"):
        raise ArgoError(
            f"kubeconfig {path}: user {ctx.get('user')!r} uses an exec/auth-provider plugin, "
            "which kitflow does not run; use a token or client certificate"
        )
    base = path.parent
    token = user.get("token")
    if not token and user.get("tokenFile"):
        token = Path(user["tokenFile"]).read_text().strip()
    return KubeConfig(
        server=str(cluster["server"]).rstrip("/"),
        namespace=ctx.get("namespace"),
        token=Secret(token) if token else None,
        ca_data=_data_or_file(cluster, "certificate-authority", base),
        client_cert_data=_data_or_file(user, "client-certificate", base),
        client_key_data=_data_or_file(user, "client-key", base),
        insecure_skip_verify=bool(cluster.get("insecure-skip-tls-verify")),
    )


def in_cluster_config(sa_dir: Path = SA_DIR) -> KubeConfig:
    """The pod's own service account (KUBERNETES_SERVICE_HOST/PORT, token, ca.crt, namespace)."""
    host = os.environ.get("KUBERNETES_SERVICE_HOST")
    port = os.environ.get("KUBERNETES_SERVICE_PORT", "443")
    if not host or not (sa_dir / "token").exists():
        raise ArgoError("not running in a Kubernetes pod (no service account); pass a kubeconfig")
    if ":" in host:
        host = f"[{host}]"
    ns_file = sa_dir / "namespace"
    ca = sa_dir / "ca.crt"
    return KubeConfig(
        server=f"https://{host}:{port}",
        namespace=ns_file.read_text().strip() if ns_file.exists() else None,
        token=Secret((sa_dir / "token").read_text().strip()),
        ca_data=ca.read_bytes() if ca.exists() else None,
    )


def _ssl_context(cfg: KubeConfig) -> ssl.SSLContext | bool:
    if cfg.insecure_skip_verify:
        return False
    if cfg.server.startswith("http://"):
        return True  # no TLS: nothing to verify (a local proxy such as `kubectl proxy`)
    ctx = ssl.create_default_context()
    if cfg.ca_data:
        try:
            ctx.load_verify_locations(cadata=cfg.ca_data.decode())
        except (ssl.SSLError, UnicodeDecodeError) as exc:
            raise ArgoError(f"the kubeconfig's certificate authority is not PEM: {exc}") from None
    if cfg.client_cert_data and cfg.client_key_data:
        # load_cert_chain only reads files: write them privately, load, remove at once.
        with tempfile.TemporaryDirectory(prefix="kitflow-kube-") as tmp:
            cert, key = Path(tmp) / "cert.pem", Path(tmp) / "key.pem"
            for p, data in ((cert, cfg.client_cert_data), (key, cfg.client_key_data)):
                fd = os.open(p, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
                with os.fdopen(fd, "wb") as fh:
                    fh.write(data)
            ctx.load_cert_chain(str(cert), str(key))
    return ctx


class KubeWorkflowClient(WorkflowClientBase):
    """Workflows (and WorkflowTemplates) as custom resources in one namespace."""

    service = "the Kubernetes API"

    def __init__(
        self, cfg: KubeConfig, namespace: str | None = None, *, timeout: float = 30.0
    ) -> None:
        self.base_url = cfg.server
        self.namespace = namespace or cfg.namespace or "default"
        headers = {"Accept": "application/json"}
        if cfg.token:
            headers["Authorization"] = bearer(cfg.token.reveal())
        self._http = httpx.Client(
            base_url=cfg.server, headers=headers, verify=_ssl_context(cfg), timeout=timeout
        )

    def _path(self, plural: str, name: str | None = None) -> str:
        path = f"/apis/{GROUP_VERSION}/namespaces/{quote(self.namespace, safe='')}/{plural}"
        return f"{path}/{quote(name, safe='')}" if name else path

    @staticmethod
    def _with_kind(obj: dict[str, Any], kind: str) -> dict[str, Any]:
        out = dict(obj)
        out.setdefault("apiVersion", GROUP_VERSION)
        out.setdefault("kind", kind)
        return out

    def create(self, workflow: dict[str, Any]) -> dict[str, Any]:
        """Create the Workflow custom resource; 409 → return the existing one (re-attach)."""
        return self.create_or_get(
            lambda: self._call(
                "POST",
                self._path("workflows"),
                "create workflow",
                json=self._with_kind(workflow, "Workflow"),
            ),
            (workflow.get("metadata") or {}).get("name"),
        )

    def get(self, name: str) -> dict[str, Any]:
        """One Workflow."""
        return self._call("GET", self._path("workflows", name), f"get workflow {name}")

    def list(self, label_selector: str | None = None) -> list[dict[str, Any]]:
        """Workflows matching a label selector (all pages)."""

        def read_page(cont: str | None) -> dict[str, Any]:
            params: dict[str, Any] = {"limit": 200}
            if label_selector:
                params["labelSelector"] = label_selector
            if cont:
                params["continue"] = cont
            return self._call("GET", self._path("workflows"), "list workflows", params=params)

        return self._paged(read_page)

    def watch(
        self, name: str, resource_version: str | None = None, timeout: float | None = None
    ) -> Iterator[dict[str, Any]]:
        """Yield the Workflow on each change (``?watch=true``); StreamDropped on an ERROR event."""
        server_timeout = 300 if timeout is None else max(int(timeout), 1)
        params: dict[str, Any] = {
            "watch": "true",
            "fieldSelector": f"metadata.name={name}",
            "timeoutSeconds": min(server_timeout, 300),
            "allowWatchBookmarks": "false",
        }
        if resource_version:
            params["resourceVersion"] = resource_version
        with self._stream(
            self._path("workflows"),
            f"watch workflow {name}",
            params,
            httpx.Timeout(30.0, read=min(server_timeout, 300) + 10),
        ) as events:
            for event in events:
                if event.get("type") == "ERROR":
                    raise StreamDropped(str((event.get("object") or {}).get("message", "")))
                obj = event.get("object")
                if event.get("type") in ("ADDED", "MODIFIED") and isinstance(obj, dict):
                    yield obj
                elif event.get("type") == "DELETED":
                    raise ArgoError(f"workflow {self.namespace}/{name} was deleted")

    def _shutdown(self, name: str, strategy: str) -> dict[str, Any]:
        return self._call(
            "PATCH",
            self._path("workflows", name),
            f"{strategy.lower()} {name}",
            json={"spec": {"shutdown": strategy}},
            headers={"Content-Type": "application/merge-patch+json"},
        )

    def stop(self, name: str, message: str | None = None) -> dict[str, Any]:
        """Stop (exit handlers run): merge-patch ``spec.shutdown = Stop``."""
        return self._shutdown(name, "Stop")

    def terminate(self, name: str) -> dict[str, Any]:
        """Terminate (no exit handlers): merge-patch ``spec.shutdown = Terminate``."""
        return self._shutdown(name, "Terminate")

    def delete(self, name: str, uid: str | None = None) -> None:
        """Delete the Workflow custom resource (its pods go by garbage collection); with
        ``uid`` only if the object of that name is still that one (409 Conflict otherwise).
        Deletion may complete later (finalizers): the object can outlive this call."""
        options: dict[str, Any] = {
            "apiVersion": "v1",
            "kind": "DeleteOptions",
            "propagationPolicy": "Background",
        }
        if uid:
            options["preconditions"] = {"uid": uid}
        self._call("DELETE", self._path("workflows", name), f"delete workflow {name}", json=options)

    def logs(
        self,
        name: str,
        pod_name: str | None = None,
        container: str = "main",
        follow: bool = False,
        grep: str | None = None,
    ) -> Iterator[LogLine]:
        """Log lines of the Workflow's pods, found by label ``workflows.argoproj.io/workflow``."""
        ns = quote(self.namespace, safe="")
        if pod_name:
            pods = [pod_name]
        else:
            body = self._call(
                "GET",
                f"/api/v1/namespaces/{ns}/pods",
                "list pods",
                params={"labelSelector": f"workflows.argoproj.io/workflow={name}"},
            )
            pods = sorted(p["metadata"]["name"] for p in body.get("items") or [])
        for pod in pods:
            try:
                response = self._http.get(
                    f"/api/v1/namespaces/{ns}/pods/{quote(pod)}/log",
                    params={"container": container},
                )
            except httpx.TransportError as exc:
                raise ArgoError(
                    f"cannot reach the Kubernetes API at {self.base_url}: {exc}"
                ) from exc
            raise_for(response, f"logs of pod {pod}", self.base_url)
            for line in response.text.splitlines():
                if grep is None or grep in line:
                    yield LogLine(pod, line)

    def create_template(self, template: dict[str, Any]) -> dict[str, Any]:
        """Register a WorkflowTemplate; an existing one of that name is returned unchanged."""
        try:
            return self._call(
                "POST",
                self._path("workflowtemplates"),
                "create workflow template",
                json=self._with_kind(template, "WorkflowTemplate"),
            )
        except ArgoAPIError as exc:
            name = (template.get("metadata") or {}).get("name")
            if exc.status == 409 and name:
                return self.get_template(name)
            raise

    def get_template(self, name: str) -> dict[str, Any]:
        """One WorkflowTemplate."""
        return self._call(
            "GET", self._path("workflowtemplates", name), f"get workflow template {name}"
        )
