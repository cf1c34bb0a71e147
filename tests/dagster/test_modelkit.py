"""``modelkit_asset`` and its checks against the real registry: metadata, data versions that
only change with content, upstream outputs staged into the kit, checks passing and failing,
and no password anywhere Dagster stores things."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import dagster as dg
import kitflow
import pytest
from dagster_kitflow import KitRegistryResource, modelkit_asset, modelkit_asset_checks
from kitflow.content.digest import sha256_digest
from kitflow.content.registry import Registry
from kitflow.format.descriptor import Descriptor
from support.inference_kits import make_kit
from support.registry import RunningRegistry, unique_repo


def resource_for(registry: RunningRegistry, **overrides: Any) -> KitRegistryResource:
    values: dict[str, Any] = {"registry": registry.host, "plain_http": True, **overrides}
    return KitRegistryResource(**values)


def materialization(result: dg.ExecuteInJobResult, node: str) -> dg.AssetMaterialization:
    mats = result.asset_materializations_for_node(node)
    assert len(mats) == 1
    return mats[0]


def text(mat: dg.AssetMaterialization, key: str) -> Any:
    return mat.metadata[key].value


def files_containing(root: Path, needle: str) -> list[Path]:
    """Files under ``root`` whose bytes contain ``needle``."""
    data = needle.encode()
    return [p for p in root.rglob("*") if p.is_file() and data in p.read_bytes()]


def check_results(result: dg.ExecuteInJobResult) -> dict[str, dg.AssetCheckEvaluation]:
    return {e.check_name: e for e in result.get_asset_check_evaluations()}


@pytest.mark.registry
def test_pack_push_metadata_and_stable_data_version(
    registry: RunningRegistry, kit_home: Path, tmp_path: Path, instance: dg.DagsterInstance
) -> None:
    kit_dir = make_kit(tmp_path / "echo", weights="w1")
    repo = unique_repo("dagster")
    asset = modelkit_asset(name="echo_kit", repository=repo, tag="v1", context_dir=kit_dir)
    checks = modelkit_asset_checks(asset)
    resources = {"kit_registry": resource_for(registry)}

    first = dg.materialize([asset, *checks], resources=resources, instance=instance)
    assert first.success
    mat = materialization(first, "echo_kit")
    reference = registry.ref(repo, "v1")
    digest = text(mat, "digest")
    assert text(mat, "reference") == reference
    assert text(mat, "pinned_reference") == f"{registry.host}/{repo}@{digest}"
    remote = kitflow.inspect(reference, remote=True, registry=registry.options())
    assert remote["digest"] == digest
    assert text(mat, "registry_url") == f"http://{registry.host}/v2/{repo}/manifests/{digest}"
    assert text(mat, "pushed") is True
    rows = [r.data for r in mat.metadata["layers"].value.records]
    assert {r["kind"] for r in rows} == {"model", "code"}
    assert sum(r["size"] for r in rows) == text(mat, "size")
    assert all(r["digest"].startswith("sha256:") for r in rows)
    assert "manifestVersion: 1.0.0" in text(mat, "kitfile")
    assert mat.tags is not None and mat.tags["dagster/data_version"] == digest
    evaluations = check_results(first)
    assert evaluations["modelkit_resolves"].passed
    assert evaluations["kitfile_valid"].passed

    # Unchanged content: the same data version (nothing new for downstream assets).
    second = dg.materialize([asset], resources=resources, instance=instance)
    again = materialization(second, "echo_kit")
    assert again.tags is not None and again.tags["dagster/data_version"] == digest
    assert text(again, "bytes_uploaded") == 0

    # Changed content: a new version.
    (kit_dir / "model" / "weights.txt").write_text("w2\n")
    third = dg.materialize([asset], resources=resources, instance=instance)
    changed = materialization(third, "echo_kit")
    assert changed.tags is not None and changed.tags["dagster/data_version"] != digest


@pytest.mark.registry
def test_modelkit_from_upstream_outputs(
    registry: RunningRegistry, kit_home: Path, tmp_path: Path
) -> None:
    project = make_kit(tmp_path / "project")
    (project / "model" / "weights.txt").unlink()  # the model comes from the upstream asset

    @dg.asset
    def trained_model() -> str:
        out = tmp_path / "trained"
        out.mkdir()
        (out / "weights.txt").write_text("trained\n")
        return str(out)

    @dg.asset
    def notes() -> bytes:
        return b"# trained in dagster\n"

    kitfile = project / "Kitfile"
    text_kf = kitfile.read_text() + "docs:\n  - path: NOTES.md\n"
    kitfile.write_text(text_kf)
    asset = modelkit_asset(
        name="staged_kit",
        repository=unique_repo("dagster"),
        context_dir=project,
        ins={"trained_model": "model", "notes": "NOTES.md"},
    )
    result = dg.materialize(
        [trained_model, notes, asset], resources={"kit_registry": resource_for(registry)}
    )
    assert result.success
    mat = materialization(result, "staged_kit")
    unpacked = tmp_path / "unpacked"
    kitflow.unpack(text(mat, "pinned_reference"), unpacked, registry=registry.options())
    assert (unpacked / "model" / "weights.txt").read_text() == "trained\n"
    assert (unpacked / "NOTES.md").read_text() == "# trained in dagster\n"
    assert (unpacked / "src" / "predict.py").is_file()
    assert not list(tmp_path.glob("**/modelkit-*"))  # the staging copy is gone


def _corrupt_kitfile(registry: RunningRegistry, reference: str, tag: str) -> str:
    """Push a copy of ``reference`` whose config holds an invalid Kitfile; returns its digest."""
    name, _, _ = reference.rpartition(":")
    repo = Registry(name, registry.options())
    try:
        desc = repo.resolve(reference.rpartition(":")[2])
        manifest = json.loads(repo.fetch_bytes(desc))
        config_desc = Descriptor.from_json(manifest["config"])
        config = json.loads(repo.fetch_bytes(config_desc))
        config["model"]["path"] = "../outside"
        config_bytes = json.dumps(config).encode()
        new_config = Descriptor(
            config_desc.media_type, sha256_digest(config_bytes), len(config_bytes)
        )
        repo.push_bytes(new_config, config_bytes)
        manifest["config"] = new_config.to_json()
        data = json.dumps(manifest).encode()
        new_desc = Descriptor(desc.media_type, sha256_digest(data), len(data))
        repo.push_manifest(new_desc, data, tag)
        return new_desc.digest
    finally:
        repo.close()


@pytest.mark.registry
def test_checks_fail_when_the_tag_moves_or_the_kitfile_is_invalid(
    registry: RunningRegistry, kit_home: Path, tmp_path: Path, instance: dg.DagsterInstance
) -> None:
    repo = unique_repo("dagster")
    asset = modelkit_asset(
        name="moving_kit", repository=repo, tag="v1", context_dir=make_kit(tmp_path / "a")
    )
    checks = modelkit_asset_checks(asset)
    resources = {"kit_registry": resource_for(registry)}
    assert dg.materialize([asset], resources=resources, instance=instance).success
    only_checks = dg.AssetSelection.checks_for_assets(asset)

    # Someone pushes a different kit to the same tag: the recorded digest no longer resolves.
    other = make_kit(tmp_path / "b", weights="other")
    reference = registry.ref(repo, "v1")
    kitflow.pack(other, tag=reference)
    kitflow.push(reference, registry=registry.options())
    result = dg.materialize(
        [asset, *checks],
        resources=resources,
        instance=instance,
        selection=only_checks,
        raise_on_error=False,
    )
    assert not result.success  # the checks are blocking
    evaluations = check_results(result)
    assert not evaluations["modelkit_resolves"].passed
    assert evaluations["modelkit_resolves"].metadata["actual_digest"].value != (
        evaluations["modelkit_resolves"].metadata["expected_digest"].value
    )
    assert evaluations["kitfile_valid"].passed  # the recorded digest is still a valid kit

    # A ModelKit whose stored Kitfile breaks kit's rules fails the Kitfile check.
    bad_digest = _corrupt_kitfile(registry, reference, "broken")
    instance.report_runless_asset_event(
        dg.AssetMaterialization(
            asset_key="moving_kit",
            metadata={
                "reference": registry.ref(repo, "broken"),
                "digest": bad_digest,
                "pushed": True,
            },
        )
    )
    result = dg.materialize(
        [asset, *checks],
        resources=resources,
        instance=instance,
        selection=only_checks,
        raise_on_error=False,
    )
    evaluations = check_results(result)
    assert evaluations["modelkit_resolves"].passed
    failed = evaluations["kitfile_valid"]
    assert not failed.passed
    assert "model" in str(failed.metadata["problems"].value)


@pytest.mark.registry
def test_password_never_reaches_dagster_storage(
    registry_htpasswd: RunningRegistry,
    kit_home: Path,
    tmp_path: Path,
    instance: dg.DagsterInstance,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    assert registry_htpasswd.password
    monkeypatch.setenv("TEST_KIT_PASSWORD", registry_htpasswd.password)
    resource = KitRegistryResource(
        registry=registry_htpasswd.host,
        plain_http=True,
        username=registry_htpasswd.username,
        password=dg.EnvVar("TEST_KIT_PASSWORD"),
    )
    asset = modelkit_asset(
        name="private_kit",
        repository=unique_repo("dagster"),
        context_dir=make_kit(tmp_path / "kit"),
    )
    checks = modelkit_asset_checks(asset)
    result = dg.materialize(
        [asset, *checks], resources={"kit_registry": resource}, instance=instance
    )
    assert result.success
    assert all(e.passed for e in check_results(result).values())
    stored = [repr(record) for record in instance.all_logs(result.run_id)]
    run = instance.get_run_by_id(result.run_id)
    stored.append(repr(run))
    assert stored and not any(registry_htpasswd.password in s for s in stored)
    # Nor anywhere on disk under the instance: event log and run databases, compute logs.
    root = Path(instance.root_directory)
    digest = result.asset_materializations_for_node("private_kit")[0].metadata["digest"].value
    assert files_containing(root, digest)  # the scan does see what Dagster stored
    assert not files_containing(root, registry_htpasswd.password)
    assert registry_htpasswd.password not in repr(resource.get_options())


def test_kitflow_is_a_registered_third_party_library() -> None:
    from dagster_kitflow import __version__
    from dagster_shared.libraries import DagsterLibraryRegistry

    assert DagsterLibraryRegistry.get()["dagster-kitflow"] == __version__
