"""``ModelKitIOManager`` against the real registry: a directory output becomes a pushed
ModelKit (Kitfile generated when missing), and a downstream asset gets it back unpacked by the
recorded digest."""

from __future__ import annotations

from pathlib import Path

import dagster as dg
import kitflow
import pytest
from dagster_kitflow import KitRegistryResource, ModelKitIOManager
from support.registry import RunningRegistry, unique_repo


@pytest.mark.registry
def test_directory_outputs_round_trip_as_modelkits(
    registry: RunningRegistry, kit_home: Path, tmp_path: Path, instance: dg.DagsterInstance
) -> None:
    prefix = unique_repo("dagster-io")

    @dg.asset(io_manager_key="modelkits")
    def trained() -> str:
        out = tmp_path / "trained"
        out.mkdir(exist_ok=True)
        (out / "model.onnx").write_bytes(b"\x08\x01fake-onnx")
        (out / "README.md").write_text("# trained\n")
        return str(out)

    @dg.asset
    def evaluated(trained: Path) -> int:
        assert (trained / "model.onnx").read_bytes() == b"\x08\x01fake-onnx"
        assert (trained / "README.md").read_text() == "# trained\n"
        return len(list(trained.iterdir()))

    io_manager = ModelKitIOManager(
        kit_registry=KitRegistryResource(registry=registry.host, plain_http=True),
        repository_prefix=prefix,
        cache_dir=str(tmp_path / "cache"),
    )
    result = dg.materialize(
        [trained, evaluated], resources={"modelkits": io_manager}, instance=instance
    )
    assert result.success
    mat = result.asset_materializations_for_node("trained")[0]
    reference = registry.ref(f"{prefix}/trained", "latest")
    assert mat.metadata["reference"].value == reference
    remote = kitflow.inspect(reference, remote=True, registry=registry.options())
    assert remote["digest"] == mat.metadata["digest"].value
    assert remote["kitfile"]["model"]["path"] == "model.onnx"  # guessed by kit's init rules
    assert result.output_for_node("evaluated") >= 2  # the files (+ the Kitfile written back)
    digest = str(mat.metadata["digest"].value)
    assert (tmp_path / "cache" / digest.replace(":", "-") / "model.onnx").is_file()
