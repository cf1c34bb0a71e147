"""Prefect blocks holding what kitflow needs to reach a registry and an Argo Server.

Each block turns into the core's options object (``RegistryOptions`` / ``ArgoOptions``); secrets
stay ``SecretStr`` in the block and become a :class:`kitflow.secret.Secret` only on the way out.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from kitflow.errors import KitflowError
from kitflow.format.reference import check_credentials_scope
from kitflow.options import ArgoOptions, RegistryOptions
from kitflow.secret import Secret
from prefect.blocks.abstract import CredentialsBlock
from pydantic import Field, SecretStr

_DOCS = "https://kitops.org/docs/"
# Square organisation avatars GitHub serves for the KitOps and Argo projects.
_KIT_LOGO = "https://github.com/kitops-ml.png"
_ARGO_LOGO = "https://github.com/argoproj.png"


class KitRegistryCredentials(CredentialsBlock):
    """Credentials and TLS settings for one OCI registry that holds ModelKits.

    Example:
        Load stored credentials and push a ModelKit with them:
        ```python
        from prefect_kitflow import KitRegistryCredentials, push_modelkit

        credentials = KitRegistryCredentials.load("BLOCK_NAME")
        push_modelkit("registry.example.com/team/sentiment:v1", credentials=credentials)
        ```
    """

    _block_type_name = "Kit Registry Credentials"
    _block_type_slug = "kit-registry-credentials"
    _logo_url = _KIT_LOGO  # type: ignore[assignment]
    _documentation_url = _DOCS  # type: ignore[assignment]
    _description = "Username, password and TLS settings for an OCI registry holding ModelKits."

    registry: str | None = Field(
        default=None,
        title="Registry",
        description=(
            "Registry host (and port) these credentials are for, e.g. ghcr.io; when set, "
            "references to any other registry are refused rather than sent these credentials."
        ),
    )
    username: str | None = Field(
        default=None, title="Username", description="User name for the registry."
    )
    password: SecretStr | None = Field(
        default=None,
        title="Password",
        description="Password or access token for the registry (stored encrypted).",
    )
    plain_http: bool = Field(
        default=False,
        title="Plain HTTP",
        description="Talk plain HTTP instead of HTTPS (local test registries only).",
    )
    tls_verify: bool = Field(
        default=True,
        title="Verify TLS",
        description="Verify the registry's TLS certificate.",
    )
    ca_file: str | None = Field(
        default=None,
        title="CA file",
        description="Path to a PEM bundle of CA certificates to trust for this registry.",
    )
    client_cert: str | None = Field(
        default=None,
        title="Client certificate",
        description="Path to a PEM client certificate for mutual TLS.",
    )
    client_key: str | None = Field(
        default=None,
        title="Client key",
        description="Path to the PEM private key of the client certificate.",
    )
    concurrency: int = Field(
        default=5,
        title="Concurrency",
        description="How many blobs to transfer at once.",
    )

    def get_options(self) -> RegistryOptions:
        """The core's ``RegistryOptions`` for this registry (the password as a ``Secret``)."""
        password = self.password.get_secret_value() if self.password is not None else None
        return RegistryOptions.from_settings(
            username=self.username,
            password=password,
            plain_http=self.plain_http,
            tls_verify=self.tls_verify,
            ca_file=self.ca_file,
            client_cert=self.client_cert,
            client_key=self.client_key,
            concurrency=self.concurrency,
        )

    def options_for(self, reference: str) -> RegistryOptions:
        """``get_options()`` after checking that ``reference`` names this block's registry."""
        check_credentials_scope(reference, self.registry, holder="this credentials block")
        return self.get_options()

    def get_client(self, *args: Any, **kwargs: Any) -> RegistryOptions:
        """The kitflow API takes its registry "client" as options: same as ``get_options()``."""
        return self.get_options()


class ArgoServer(CredentialsBlock):
    """Where kitflow submits inference Workflows: an Argo Server (URL and token) or a kubeconfig.

    Example:
        Load a stored Argo Server and run batch inference on it:
        ```python
        from prefect_kitflow import ArgoServer, run_argo_inference

        argo = ArgoServer.load("BLOCK_NAME")
        run_argo_inference("registry.example.com/team/sentiment:v1", "in.jsonl", "out.jsonl",
                           argo_server=argo)
        ```
    """

    _block_type_name = "Argo Server"
    _block_type_slug = "kitflow-argo-server"
    _logo_url = _ARGO_LOGO  # type: ignore[assignment]
    _documentation_url = _DOCS  # type: ignore[assignment]
    _description = "Argo Server address and token (or a kubeconfig) for kitflow inference."

    server: str | None = Field(
        default=None,
        title="Server",
        description=(
            "Argo Server address as the argo CLI's ARGO_SERVER takes it, e.g. "
            "argo.example.com:2746 or https://argo.example.com."
        ),
    )
    token: SecretStr | None = Field(
        default=None,
        title="Token",
        description="Bearer token for the Argo Server (ARGO_TOKEN; stored encrypted).",
    )
    namespace: str = Field(
        default="argo",
        title="Namespace",
        description="Kubernetes namespace the Workflows run in.",
    )
    secure: bool = Field(
        default=True,
        title="Secure",
        description="Use HTTPS to reach the Argo Server (ARGO_SECURE).",
    )
    insecure_skip_verify: bool = Field(
        default=False,
        title="Skip TLS verification",
        description="Accept any TLS certificate from the Argo Server (ARGO_INSECURE_SKIP_VERIFY).",
    )
    kubeconfig: str | None = Field(
        default=None,
        title="Kubeconfig",
        description="Path to a kubeconfig: submit through the Kubernetes API instead of a server.",
    )
    kube_context: str | None = Field(
        default=None,
        title="Kube context",
        description="Context to use from the kubeconfig (default: its current context).",
    )
    image: str | None = Field(
        default=None,
        title="Runtime image",
        description="Container image with kitflow installed that the inference pods run.",
    )
    service_account: str | None = Field(
        default=None,
        title="Service account",
        description="Kubernetes service account the Workflow's pods run as.",
    )
    registry_secret: str | None = Field(
        default=None,
        title="Registry secret",
        description="Name of a dockerconfigjson Secret the pods use to pull ModelKits.",
    )
    ui_url: str | None = Field(
        default=None,
        title="UI URL",
        description="Base URL of the Argo UI for links (default: the server address).",
    )

    def get_options(self, **overrides: Any) -> ArgoOptions:
        """The core's ``ArgoOptions`` for this server (the token as a ``Secret``)."""
        if not self.server and not self.kubeconfig:
            raise KitflowError("the ArgoServer block needs a server address or a kubeconfig path")
        token = self.token.get_secret_value() if self.token is not None else None
        values: dict[str, Any] = {
            "server": self.server or None,
            "token": Secret(token) if token else None,
            "namespace": self.namespace,
            "secure": self.secure,
            "insecure_skip_verify": self.insecure_skip_verify,
            "kubeconfig": Path(self.kubeconfig) if self.kubeconfig else None,
            "kube_context": self.kube_context,
            "service_account": self.service_account,
            "registry_secret": self.registry_secret,
            "ui_url": self.ui_url,
        }
        if self.image:
            values["image"] = self.image
        values.update(overrides)
        return ArgoOptions(**values)

    def get_client(self, *args: Any, **kwargs: Any) -> ArgoOptions:
        """The kitflow Argo backend takes its "client" as options: same as ``get_options()``."""
        return self.get_options(**kwargs)
