"""Running packed ModelKits: unpacked once per digest into $KITOPS_HOME/cache/run, from the
local store and straight from a real registry, pinned by digest, with a dataset in the kit."""

from __future__ import annotations

import json
from pathlib import Path

import kitflow
import pytest
from kitflow.cli.main import main as cli_main
from kitflow.errors import NotFoundError
from kitflow.inference import local
from kitflow.inference.runner import run
from support.inference_kits import make_kit, read_jsonl, write_jsonl
from support.registry import RunningRegistry, unique_repo


@pytest.fixture()
def packed(tmp_path: Path) -> tuple[Path, str]:
    """A kit packed as ``demo/echo:v1`` into a throwaway KITOPS_HOME."""
    home = tmp_path / "home"
    kit = make_kit(
        tmp_path / "kit",
        datasets=[{"name": "samples", "path": "data/samples.jsonl"}],
        files={"data/samples.jsonl": '{"id": 1, "text": "a"}\n{"id": 2, "text": "b"}\n'},
    )
    result = kitflow.pack(kit, tag="demo/echo:v1", home=home)
    return home, result.digest


def test_a_kit_is_unpacked_once_per_digest(tmp_path: Path, packed: tuple[Path, str]) -> None:
    home, digest = packed
    inputs = write_jsonl(tmp_path / "in.jsonl", [{"id": 7, "text": "hi"}])
    first = local.materialize("demo/echo:v1", home=home)
    assert not first.cached and first.digest == digest
    cache_dir = home / "cache" / "run" / digest.replace(":", "-")
    assert first.layout.root == cache_dir
    assert (cache_dir / "Kitfile").is_file() and (cache_dir / "model" / "weights.txt").is_file()
    assert local.materialize("demo/echo:v1", home=home).cached
    (cache_dir / "Kitfile").unlink()  # damaged by hand: unpacked again, not trusted
    again = local.materialize("demo/echo:v1", home=home)
    assert not again.cached and (cache_dir / "Kitfile").is_file()
    # nothing half-made is left in the cache
    assert [p.name for p in (home / "cache" / "run").iterdir()] == [cache_dir.name]

    result = run("demo/echo:v1", inputs, tmp_path / "out.jsonl", home=home)
    assert result.model_digest == digest
    assert read_jsonl(tmp_path / "out.jsonl") == [{"id": 7, "prediction": "w1:HI"}]
    pinned = run(f"demo/echo@{digest}", inputs, tmp_path / "out2.jsonl", home=home)
    assert pinned.model_digest == digest


def test_dataset_inside_the_kit(tmp_path: Path, packed: tuple[Path, str]) -> None:
    home, _ = packed
    out = tmp_path / "out.jsonl"
    result = run("demo/echo:v1", output=out, dataset="samples", home=home)
    assert result.records == 2
    assert read_jsonl(out) == [{"id": 1, "prediction": "w1:A"}, {"id": 2, "prediction": "w1:B"}]


def test_unknown_reference(tmp_path: Path, packed: tuple[Path, str]) -> None:
    home, _ = packed
    inputs = write_jsonl(tmp_path / "in.jsonl", [{"text": "x"}])
    with pytest.raises(NotFoundError):
        run("demo/missing:v1", inputs, tmp_path / "out.jsonl", home=home)
    assert not (tmp_path / "out.jsonl").exists()


@pytest.mark.registry
def test_run_straight_from_a_registry(
    tmp_path: Path, packed: tuple[Path, str], registry: RunningRegistry
) -> None:
    home, digest = packed
    remote = registry.ref(unique_repo("infer"), "v1")
    options = registry.options()
    kitflow.push("demo/echo:v1", remote, registry=options, home=home)
    fresh = tmp_path / "fresh-home"  # nothing local: the kit must come from the registry
    inputs = write_jsonl(tmp_path / "in.jsonl", [{"id": i, "text": f"t{i}"} for i in range(5)])
    result = run(remote, inputs, tmp_path / "out.jsonl", registry=options, home=fresh)
    assert result.model_digest == digest
    assert [line["prediction"] for line in read_jsonl(tmp_path / "out.jsonl")] == [
        f"w1:T{i}" for i in range(5)
    ]
    assert (fresh / "cache" / "run" / digest.replace(":", "-") / "Kitfile").is_file()


def test_cli_argo_dry_run_prints_the_workflow(
    tmp_path: Path, packed: tuple[Path, str], capsys: pytest.CaptureFixture[str]
) -> None:
    home, digest = packed
    inputs = write_jsonl(tmp_path / "in.jsonl", [{"id": i, "text": "x"} for i in range(30)])
    argv = ["run", f"127.0.0.1:9/demo/echo@{digest}", "-i", str(inputs)]
    argv += ["--backend", "argo", "--dry-run", "--shards", "3", "-n", "ml", "--config", str(home)]
    argv += ["--cpu", "500m", "--memory", "1Gi"]
    with pytest.raises(SystemExit) as info:
        cli_main(argv)
    assert info.value.code == 0
    workflow = json.loads(capsys.readouterr().out)
    assert workflow["kind"] == "Workflow"
    assert workflow["metadata"]["namespace"] == "ml"
    text = json.dumps(workflow)
    assert digest in text and "500m" in text and "1Gi" in text
    assert '"text"' not in text  # records never travel inside the Workflow
