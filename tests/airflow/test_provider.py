"""The provider is discovered by Airflow with its hooks, connection forms and triggers."""

from __future__ import annotations

import json
from importlib.metadata import distribution

from airflow_env import airflow_cli
from kitflow_airflow.get_provider_info import get_provider_info


def test_package_name_equals_distribution_name() -> None:
    info = get_provider_info()
    assert info["package-name"] == distribution("airflow-provider-kitflow").metadata["Name"]


def test_every_class_and_module_named_in_provider_info_imports() -> None:
    import importlib

    info = get_provider_info()
    modules = [
        m
        for section in ("operators", "sensors", "hooks", "triggers")
        for entry in info[section]
        for m in entry["python-modules"]
    ]
    for module in modules:
        importlib.import_module(module)
    classes = [c["hook-class-name"] for c in info["connection-types"]] + info["extra-links"]
    for path in classes:
        module, _, name = path.rpartition(".")
        assert hasattr(importlib.import_module(module), name), path


def test_airflow_providers_list_discovers_the_provider() -> None:
    proc = airflow_cli("providers", "list", "-o", "json")
    assert proc.returncode == 0, proc.stderr[-2000:]
    rows = json.loads(proc.stdout[proc.stdout.index("[") :])
    names = {row["package_name"] for row in rows}
    assert "airflow-provider-kitflow" in names


def test_connection_types_and_fields_come_from_provider_info() -> None:
    proc = airflow_cli("providers", "hooks", "-o", "json")
    assert proc.returncode == 0, proc.stderr[-2000:]
    hooks = {
        row["connection_type"]: row for row in json.loads(proc.stdout[proc.stdout.index("[") :])
    }
    assert hooks["kitops_registry"]["class"] == "kitflow_airflow.hooks.registry.KitRegistryHook"
    assert hooks["argo_workflows"]["class"] == "kitflow_airflow.hooks.argo.ArgoHook"

    proc = airflow_cli("providers", "widgets", "-o", "json")
    assert proc.returncode == 0, proc.stderr[-2000:]
    widgets = {
        row["connection_parameter_name"]
        for row in json.loads(proc.stdout[proc.stdout.index("[") :])
    }
    assert {
        "extra__kitops_registry__plain_http",
        "extra__kitops_registry__tls_verify",
        "extra__kitops_registry__ca_bundle",
        "extra__argo_workflows__namespace",
        "extra__argo_workflows__kubeconfig",
    } <= widgets
    proc = airflow_cli("providers", "behaviours", "-o", "json")
    assert "kitops_registry" in proc.stdout and "argo_workflows" in proc.stdout
    # Declared the 3.2+ way: importing the hooks to read forms would warn; nothing warns.
    assert "Deprecat" not in proc.stderr


def test_trigger_module_is_listed() -> None:
    proc = airflow_cli("providers", "triggers", "-o", "json")
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "kitflow_airflow.triggers.argo" in proc.stdout


def test_oci_asset_uris_are_validated_by_the_registered_handler() -> None:
    import pytest
    from airflow.sdk import Asset

    uri = "oci://127.0.0.1:5000/team/model@sha256:" + "a" * 64
    assert Asset(uri=uri).uri == uri
    with pytest.raises(ValueError, match="must name a repository"):
        Asset(uri="oci://registry.example.com")
