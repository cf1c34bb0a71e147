"""Provider metadata for Airflow's ``apache_airflow_provider`` entry point.

Hand-written (no breeze): Airflow reads it without importing any hook, so connection forms are
declared here with ``conn-fields`` / ``ui-field-behaviour`` (the Airflow 3.2+ way).
"""

from __future__ import annotations

from typing import Any

PACKAGE_NAME = "airflow-provider-kitflow"
REGISTRY_CONN_TYPE = "kitops_registry"
ARGO_CONN_TYPE = "argo_workflows"


def _field(
    label: str, description: str, kind: str, default: Any = None, secret: bool = False
) -> dict[str, Any]:
    schema: dict[str, Any] = {"type": [kind, "null"]}
    if default is not None:
        schema["default"] = default
    if secret:
        schema["format"] = "password"
    return {"label": label, "description": description, "schema": schema}


def get_provider_info() -> dict[str, Any]:
    """Return the provider info dict; ``package-name`` equals the distribution name."""
    return {
        "package-name": PACKAGE_NAME,
        "name": "kitflow",
        "description": "KitOps ModelKits (pack, push, pull, unpack, run) and deferrable batch "
        "inference on Argo Workflows, as Airflow operators.",
        "integrations": [
            {
                "integration-name": "KitOps ModelKit",
                "external-doc-url": "https://kitops.org/",
                "tags": ["software"],
            },
            {
                "integration-name": "Argo Workflows",
                "external-doc-url": "https://argoproj.github.io/workflows/",
                "tags": ["software"],
            },
        ],
        "operators": [
            {
                "integration-name": "KitOps ModelKit",
                "python-modules": [
                    "kitflow_airflow.operators.modelkit",
                    "kitflow_airflow.operators.run",
                ],
            },
            {
                "integration-name": "Argo Workflows",
                "python-modules": ["kitflow_airflow.operators.argo"],
            },
        ],
        "sensors": [
            {
                "integration-name": "Argo Workflows",
                "python-modules": ["kitflow_airflow.sensors.argo"],
            }
        ],
        "hooks": [
            {
                "integration-name": "KitOps ModelKit",
                "python-modules": ["kitflow_airflow.hooks.registry"],
            },
            {
                "integration-name": "Argo Workflows",
                "python-modules": ["kitflow_airflow.hooks.argo"],
            },
        ],
        "triggers": [
            {
                "integration-name": "Argo Workflows",
                "python-modules": ["kitflow_airflow.triggers.argo"],
            }
        ],
        "extra-links": ["kitflow_airflow.links.ArgoWorkflowLink"],
        "asset-uris": [{"schemes": ["oci"], "handler": "kitflow_airflow.assets.sanitize_uri"}],
        "connection-types": [
            {
                "connection-type": REGISTRY_CONN_TYPE,
                "hook-class-name": "kitflow_airflow.hooks.registry.KitRegistryHook",
                "hook-name": "KitOps OCI Registry",
                "conn-fields": {
                    "plain_http": _field(
                        "Plain HTTP",
                        "Talk to the registry over http:// (local registries).",
                        "boolean",
                        False,
                    ),
                    "tls_verify": _field(
                        "Verify TLS", "Verify the registry's TLS certificate.", "boolean", True
                    ),
                    "ca_bundle": _field(
                        "CA bundle", "Path to a PEM file of CA certificates to trust.", "string"
                    ),
                },
                "ui-field-behaviour": {
                    "hidden-fields": ["schema", "extra"],
                    "relabeling": {"host": "Registry", "login": "Username"},
                    "placeholders": {
                        "host": "ghcr.io or registry.example.com:5000",
                        "login": "robot account or user name",
                        "password": "password or access token",
                    },
                },
            },
            {
                "connection-type": ARGO_CONN_TYPE,
                "hook-class-name": "kitflow_airflow.hooks.argo.ArgoHook",
                "hook-name": "Argo Workflows",
                "conn-fields": {
                    "namespace": _field(
                        "Namespace", "Namespace the Workflows run in.", "string", "argo"
                    ),
                    "kubeconfig": _field(
                        "Kubeconfig path",
                        "Submit through the Kubernetes API with this kubeconfig instead of the "
                        "Argo Server.",
                        "string",
                    ),
                    "kube_context": _field("Kube context", "Context in the kubeconfig.", "string"),
                    "insecure_skip_verify": _field(
                        "Skip TLS verify",
                        "Do not verify the Argo Server certificate.",
                        "boolean",
                        False,
                    ),
                    "ui_url": _field(
                        "Argo UI URL",
                        "Base URL for links to the Argo UI (defaults to the server).",
                        "string",
                    ),
                    "image": _field(
                        "Runtime image",
                        "Image the inference pods run (kitflow installed).",
                        "string",
                    ),
                },
                "ui-field-behaviour": {
                    "hidden-fields": ["login", "schema", "extra"],
                    "relabeling": {"host": "Argo Server URL", "password": "Token"},
                    "placeholders": {
                        "host": "https://argo.example.com:2746",
                        "password": "Argo Server bearer token (ARGO_TOKEN)",
                    },
                },
            },
        ],
    }
