"""Hooks map Airflow connections (``AIRFLOW_CONN_*``, JSON or URI) onto kitflow options."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from airflow.sdk.exceptions import AirflowNotFoundException
from kitflow.secret import Secret
from kitflow_airflow.hooks.argo import ArgoHook
from kitflow_airflow.hooks.registry import KitRegistryHook

PASSWORD = "registry-Pa55word-xyz"
TOKEN = "argo-Token-abcdef-123"


def set_conn(monkeypatch: pytest.MonkeyPatch, conn_id: str, value: dict | str) -> None:
    text = value if isinstance(value, str) else json.dumps(value)
    monkeypatch.setenv(f"AIRFLOW_CONN_{conn_id.upper()}", text)


def test_registry_connection_json_form(monkeypatch: pytest.MonkeyPatch) -> None:
    set_conn(
        monkeypatch,
        "kitops_registry_default",
        {
            "conn_type": "kitops_registry",
            "host": "registry.example.com",
            "port": 5443,
            "login": "robot",
            "password": PASSWORD,
            "extra": {"tls_verify": False, "ca_bundle": "/etc/ca.pem"},
        },
    )
    hook = KitRegistryHook()
    opts = hook.get_conn()
    assert opts.username == "robot"
    assert opts.password == Secret(PASSWORD)
    assert opts.plain_http is False
    assert opts.tls_verify is False
    assert opts.ca_file == Path("/etc/ca.pem")
    assert hook.registry == "registry.example.com:5443"
    assert PASSWORD not in repr(opts) and PASSWORD not in str(opts.safe_dict())


def test_registry_connection_uri_and_ui_prefixed_extras(monkeypatch: pytest.MonkeyPatch) -> None:
    # The UI stores conn-fields as extra__<type>__<name>; URIs carry strings.
    set_conn(
        monkeypatch,
        "my_reg",
        "kitops-registry://u:p%40ss-word-1@127.0.0.1:5000/"
        "?extra__kitops_registry__plain_http=true&extra__kitops_registry__tls_verify=false",
    )
    opts = KitRegistryHook("my_reg").get_conn()
    assert opts.plain_http is True and opts.tls_verify is False
    assert opts.password is not None and opts.password.reveal() == "p@ss-word-1"


def test_http_scheme_in_host_means_plain_http(monkeypatch: pytest.MonkeyPatch) -> None:
    set_conn(monkeypatch, "r", {"conn_type": "kitops_registry", "host": "http://127.0.0.1:5000"})
    hook = KitRegistryHook("r")
    assert hook.get_conn().plain_http is True
    assert hook.registry == "127.0.0.1:5000"


def test_qualify_prefixes_only_references_without_a_registry(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    set_conn(monkeypatch, "r", {"conn_type": "kitops_registry", "host": "reg.example.com"})
    hook = KitRegistryHook("r")
    assert hook.qualify("team/model:v1") == "reg.example.com/team/model:v1"
    assert hook.qualify("model:v1") == "reg.example.com/model:v1"
    assert hook.qualify("ghcr.io/org/model:v1") == "ghcr.io/org/model:v1"
    assert hook.qualify("localhost:5000/model:v1") == "localhost:5000/model:v1"
    assert hook.qualify("127.0.0.1:5000/model@sha256:" + "a" * 64).startswith("127.0.0.1:5000/")


def test_missing_default_connection_means_anonymous_but_named_one_fails() -> None:
    opts = KitRegistryHook().get_conn()
    assert opts.username is None and opts.password is None and opts.tls_verify is True
    assert KitRegistryHook().qualify("model:v1") == "model:v1"
    with pytest.raises(AirflowNotFoundException):
        KitRegistryHook("no_such_conn").get_conn()


def test_bad_boolean_extra_is_a_clear_error(monkeypatch: pytest.MonkeyPatch) -> None:
    set_conn(monkeypatch, "r", {"conn_type": "kitops_registry", "extra": {"plain_http": "maybe"}})
    with pytest.raises(ValueError, match="plain_http"):
        KitRegistryHook("r").get_conn()


def test_argo_connection_server_token_namespace(monkeypatch: pytest.MonkeyPatch) -> None:
    set_conn(
        monkeypatch,
        "argo_default",
        {
            "conn_type": "argo_workflows",
            "host": "http://127.0.0.1:2746",
            "password": TOKEN,
            "extra": {"namespace": "ml", "ui_url": "https://argo.example.com"},
        },
    )
    opts = ArgoHook().get_conn()
    assert opts.server == "http://127.0.0.1:2746"
    assert opts.secure is False
    assert opts.token == Secret(TOKEN)
    assert opts.namespace == "ml"
    assert opts.ui_url == "https://argo.example.com"
    assert TOKEN not in repr(opts)


def test_argo_connection_host_port_schema_and_kubeconfig(monkeypatch: pytest.MonkeyPatch) -> None:
    set_conn(
        monkeypatch,
        "argo_k8s",
        {
            "conn_type": "argo_workflows",
            "host": "argo.example.com",
            "port": 2746,
            "schema": "https",
            "extra": {
                "extra__argo_workflows__kubeconfig": "/home/me/.kube/config",
                "extra__argo_workflows__insecure_skip_verify": "true",
            },
        },
    )
    opts = ArgoHook("argo_k8s", overrides={"namespace": "team-a", "image": None}).get_conn()
    assert opts.server == "https://argo.example.com:2746" and opts.secure is True
    assert opts.kubeconfig == Path("/home/me/.kube/config")
    assert opts.insecure_skip_verify is True
    assert opts.namespace == "team-a"
    assert opts.image  # None overrides are ignored, the default image stays


def test_argo_without_connection_reads_the_argo_cli_environment(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("ARGO_SERVER", "localhost:2746")
    monkeypatch.setenv("ARGO_TOKEN", TOKEN)
    monkeypatch.setenv("ARGO_NAMESPACE", "envns")
    opts = ArgoHook().get_conn()
    assert opts.server == "localhost:2746" and opts.namespace == "envns"
    assert opts.token == Secret(TOKEN)


def test_argo_async_conn_matches_sync(monkeypatch: pytest.MonkeyPatch) -> None:
    import asyncio

    set_conn(
        monkeypatch,
        "argo_default",
        {"conn_type": "argo_workflows", "host": "https://a:2746", "password": TOKEN},
    )
    assert asyncio.run(ArgoHook().aget_conn()) == ArgoHook().get_conn()
