"""Connection settings for registries and Argo, shared by the API, the CLI and the plugins.

Secrets are held as :class:`~kitflow.secret.Secret` so that these objects can be logged,
repr'd or sent to XCom without leaking a password or token.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from kitflow.secret import Secret, as_secret


@dataclass(frozen=True)
class RegistryOptions:
    """How to reach OCI registries: credentials, TLS and transfer tuning (kit's network flags)."""

    username: str | None = None
    password: Secret | None = None
    plain_http: bool = False
    tls_verify: bool = True
    ca_file: Path | None = None
    client_cert: Path | None = None
    client_key: Path | None = None
    concurrency: int = 5
    chunk_size: int | None = None  # None: monolithic PUT; else chunked PATCH of this many bytes
    retries: int = 5

    def __post_init__(self) -> None:
        object.__setattr__(self, "password", as_secret(self.password))

    @classmethod
    def from_settings(
        cls,
        *,
        username: str | None = None,
        password: str | Secret | None = None,
        plain_http: bool = False,
        tls_verify: bool = True,
        ca_file: str | Path | None = None,
        client_cert: str | Path | None = None,
        client_key: str | Path | None = None,
        concurrency: int = 5,
    ) -> RegistryOptions:
        """Options from an orchestrator's plain settings (a block, resource or connection):
        empty strings count as unset, paths become ``Path``, the password a ``Secret``."""
        secret = as_secret(password or None)
        if secret is not None and not secret.reveal():
            secret = None
        return cls(
            username=username or None,
            password=secret,
            plain_http=plain_http,
            tls_verify=tls_verify,
            ca_file=Path(ca_file) if ca_file else None,
            client_cert=Path(client_cert) if client_cert else None,
            client_key=Path(client_key) if client_key else None,
            concurrency=concurrency,
        )

    def safe_dict(self) -> dict[str, Any]:
        """A dict for logs and metadata: everything but the password."""
        return {
            "username": self.username,
            "password": "***" if self.password else None,
            "plain_http": self.plain_http,
            "tls_verify": self.tls_verify,
            "ca_file": str(self.ca_file) if self.ca_file else None,
            "concurrency": self.concurrency,
            "chunk_size": self.chunk_size,
        }


@dataclass(frozen=True)
class Resources:
    """Per-pod resource requests for Argo steps (limits equal requests for GPUs)."""

    cpu: str | None = None
    memory: str | None = None
    gpu: int = 0


@dataclass(frozen=True)
class ArgoOptions:
    """Where and how to submit Workflows; defaults follow the argo CLI's environment names."""

    server: str | None = None  # ARGO_SERVER, e.g. "argo.example.com:2746" or a URL
    token: Secret | None = None  # ARGO_TOKEN (with or without the "Bearer " prefix)
    namespace: str = "argo"  # ARGO_NAMESPACE
    secure: bool = True  # ARGO_SECURE: https to the Argo Server
    insecure_skip_verify: bool = False  # ARGO_INSECURE_SKIP_VERIFY
    kubeconfig: Path | None = None  # submit straight through the Kubernetes API instead
    kube_context: str | None = None
    base_href: str = ""  # ARGO_BASE_HREF
    image: str = "ghcr.io/kitflow/kitflow-runtime:0.1.0"
    image_pull_policy: str = "IfNotPresent"
    service_account: str | None = None
    registry_secret: str | None = None  # dockerconfigjson secret used to pull kits
    resources: Resources = field(default_factory=Resources)
    node_selector: dict[str, str] = field(default_factory=dict)
    tolerations: list[dict[str, Any]] = field(default_factory=list)
    retries: int = 2
    active_deadline_seconds: int | None = None
    ttl_seconds_after_finished: int | None = 86400
    pod_gc: str | None = "OnPodSuccess"
    ui_url: str | None = None  # base URL of the Argo UI for links; defaults to the server
    kitops_init: bool = False  # unpack kits with ghcr.io/kitops-ml/kitops-init (init container)

    def __post_init__(self) -> None:
        object.__setattr__(self, "token", as_secret(self.token))

    @classmethod
    def from_env(cls, **overrides: Any) -> ArgoOptions:
        """Read ARGO_SERVER, ARGO_TOKEN, ARGO_NAMESPACE, ARGO_SECURE, ARGO_INSECURE_SKIP_VERIFY,
        ARGO_BASE_HREF and KUBECONFIG as the argo CLI does; keyword overrides win."""
        env = os.environ
        values: dict[str, Any] = {}
        if env.get("ARGO_SERVER"):
            values["server"] = env["ARGO_SERVER"]
        if env.get("ARGO_TOKEN"):
            values["token"] = Secret(env["ARGO_TOKEN"])
        if env.get("ARGO_NAMESPACE"):
            values["namespace"] = env["ARGO_NAMESPACE"]
        if "ARGO_SECURE" in env:
            values["secure"] = env["ARGO_SECURE"].strip().lower() not in ("false", "0", "no")
        if "ARGO_INSECURE_SKIP_VERIFY" in env:
            values["insecure_skip_verify"] = env["ARGO_INSECURE_SKIP_VERIFY"].strip().lower() in (
                "true",
                "1",
                "yes",
            )
        if env.get("ARGO_BASE_HREF"):
            values["base_href"] = env["ARGO_BASE_HREF"]
        if not values.get("server") and env.get("KUBECONFIG"):
            values["kubeconfig"] = Path(env["KUBECONFIG"])
        values.update({k: v for k, v in overrides.items() if v is not None})
        return cls(**values)
