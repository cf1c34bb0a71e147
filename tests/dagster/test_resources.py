"""The resources map onto the core's options (secrets wrapped, never shown), references are
qualified by kit's rules, credentials stay with their registry, local-store mode works end to
end, and the example's Definitions load."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import dagster as dg
import pytest
from dagster_kitflow import (
    ArgoResource,
    KitRegistryResource,
    inference_asset,
    modelkit_asset,
    modelkit_asset_checks,
)
from kitflow.errors import KitflowError
from kitflow.secret import Secret
from support.inference_kits import make_kit, read_jsonl, write_jsonl

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "dagster" / "sentiment_defs.py"


def test_registry_resource_maps_to_registry_options(monkeypatch: pytest.MonkeyPatch) -> None:
    resource = KitRegistryResource(
        registry="https://ghcr.io/",
        username="bot",
        password="hunter2-token",
        tls_verify=False,
        ca_file="/etc/ca.pem",
        concurrency=3,
    )
    options = resource.get_options()
    assert options.username == "bot"
    assert options.password == Secret("hunter2-token")
    assert not options.tls_verify and options.concurrency == 3
    assert str(options.ca_file) == "/etc/ca.pem"
    assert "hunter2-token" not in repr(options) and "hunter2-token" not in str(options.safe_dict())
    assert resource.qualify("team/kit:v1") == "ghcr.io/team/kit:v1"
    assert resource.qualify("quay.io/team/kit:v1") == "quay.io/team/kit:v1"
    with pytest.raises(KitflowError, match=r"credentials for ghcr\.io"):
        resource.options_for("quay.io/team/kit:v1")
    local = KitRegistryResource()
    assert local.qualify("team/kit:v1") == "team/kit:v1"
    assert not local.is_remote("team/kit:v1")
    assert resource.url("ghcr.io/team/kit:v1", "sha256:ab") == (
        "https://ghcr.io/v2/team/kit/manifests/sha256:ab"
    )


def test_argo_resource_maps_to_argo_options() -> None:
    resource = ArgoResource(
        server="https://argo.example.com:2746",
        token="argo-secret-token",
        namespace="ml",
        image="registry.example.com/kitflow-runtime:1",
        cpu="500m",
        memory="1Gi",
        gpu=1,
        service_account="runner",
    )
    options = resource.get_options()
    assert options.server == "https://argo.example.com:2746"
    assert options.token == Secret("argo-secret-token")
    assert options.namespace == "ml" and options.service_account == "runner"
    assert options.image == "registry.example.com/kitflow-runtime:1"
    assert (options.resources.cpu, options.resources.memory, options.resources.gpu) == (
        "500m",
        "1Gi",
        1,
    )
    assert "argo-secret-token" not in repr(options)
    with pytest.raises(KitflowError, match="server address or a kubeconfig"):
        ArgoResource().get_options()


def test_factories_refuse_contradictory_arguments(tmp_path: Path) -> None:
    with pytest.raises(KitflowError, match="context_dir"):
        modelkit_asset(name="k", repository="r")
    with pytest.raises(KitflowError, match="exactly one of modelkit= or reference="):
        inference_asset(name="p", inputs="x.jsonl")
    with pytest.raises(KitflowError, match="not dataset="):
        inference_asset(
            name="p",
            reference="r:v1",
            dataset="samples",
            partitions_def=dg.StaticPartitionsDefinition(["a"]),
        )


def test_local_store_mode_packs_checks_and_scores_without_a_registry(
    kit_home: Path, tmp_path: Path, instance: dg.DagsterInstance
) -> None:
    kit = modelkit_asset(
        name="local_kit",
        repository="team/echo",
        tag="{partition_key}",
        context_dir=make_kit(tmp_path / "echo", weights="l"),
        partitions_def=dg.StaticPartitionsDefinition(["2026-01"]),
    )
    inputs = write_jsonl(tmp_path / "in.jsonl", [{"id": 1, "text": "ok"}])
    preds = inference_asset(name="local_preds", reference="team/echo:2026-01", inputs=inputs)
    result = dg.materialize(
        [kit, *modelkit_asset_checks(kit)],
        resources={"kit_registry": KitRegistryResource()},
        instance=instance,
        partition_key="2026-01",
    )
    assert result.success
    mat = result.asset_materializations_for_node("local_kit")[0]
    assert mat.metadata["reference"].value == "team/echo:2026-01"
    assert mat.metadata["pushed"].value is False and "registry_url" not in mat.metadata
    assert all(e.passed for e in result.get_asset_check_evaluations())
    scored = dg.materialize(
        [preds], resources={"kit_registry": KitRegistryResource()}, instance=instance
    )
    output = Path(scored.asset_materializations_for_node("local_preds")[0].metadata["output"].value)
    assert [r["prediction"] for r in read_jsonl(output)] == ["l:OK"]


def test_example_definitions_load(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("ARGO_SERVER", raising=False)
    spec = importlib.util.spec_from_file_location("sentiment_defs_under_test", EXAMPLE)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    try:
        spec.loader.exec_module(module)
        dg.Definitions.validate_loadable(module.defs)
        keys = {k.to_user_string() for k in module.defs.resolve_all_asset_keys()}
        assert keys == {"sentiment_model", "sentiment_modelkit", "sentiment_predictions"}
    finally:
        sys.modules.pop(spec.name, None)
