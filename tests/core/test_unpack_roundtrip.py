"""pack → unpack round trips on kit's functional test cases (testdata/pack-unpack): every
``files`` entry comes back with its content, no ``ignored`` entry does; compressed and raw layers
and ModelPack output unpack too, and re-packing an unpacked ModelKit gives the same layers."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from kitflow.api import pack
from kitflow.ops.unpack import unpack

CASES_DIR = Path(__file__).resolve().parents[1] / "data" / "kitops" / "pack-unpack"
CASES = sorted(p.name for p in CASES_DIR.iterdir())


def load_case(name: str) -> dict:
    return yaml.safe_load((CASES_DIR / name).read_text())


def build_context(root: Path, case: dict) -> None:
    root.mkdir(parents=True)
    (root / "Kitfile").write_text(case["kitfile"])
    if case.get("kitignore"):
        (root / ".kitignore").write_text(case["kitignore"])
    for rel in (case.get("files") or []) + (case.get("ignored") or []):
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(f"content of {rel}\n")


@pytest.mark.parametrize("name", CASES)
def test_pack_unpack_case(tmp_path: Path, name: str) -> None:
    case = load_case(name)
    context = tmp_path / "context"
    build_context(context, case)
    home = tmp_path / "home"
    packed = pack(context, tag="test:roundtrip", home=home)
    out = tmp_path / "unpacked"
    result = unpack("test:roundtrip", out, home=home)
    assert result.digest == packed.digest
    for rel in case.get("files") or []:
        path = out / rel
        assert path.is_file(), f"{rel} missing after unpack"
        assert path.read_text() == f"content of {rel}\n"
    for rel in (case.get("ignored") or []) + [".kitignore"]:
        assert not (out / rel).exists(), f"{rel} should not have been packed"
    assert (out / "Kitfile").is_file()


def _context(tmp_path: Path) -> Path:
    context = tmp_path / "context"
    build_context(
        context,
        {
            "kitfile": (
                "manifestVersion: 1.0.0\npackage:\n  name: variants\n  authors: [Ann]\n"
                "model:\n  name: m\n  path: model/weights.bin\n"
                "datasets:\n  - name: train\n    path: data\n"
                "docs:\n  - path: README.md\n"
            ),
            "files": ["model/weights.bin", "data/a.csv", "data/sub/b.csv", "README.md"],
        },
    )
    return context


@pytest.mark.parametrize(
    ("compression", "layer_format"), [("gzip", "tar"), ("zstd", "tar"), ("none", "raw")]
)
def test_compressed_and_raw_layers(tmp_path: Path, compression: str, layer_format: str) -> None:
    context = _context(tmp_path)
    if layer_format == "raw":  # raw layers hold one file each
        text = (context / "Kitfile").read_text().replace("path: data\n", "path: data/a.csv\n")
        (context / "Kitfile").write_text(text)
    home = tmp_path / "home"
    pack(context, tag="variants:v1", compression=compression, layer_format=layer_format, home=home)
    out = tmp_path / "out"
    unpack("variants:v1", out, home=home)
    assert (out / "model/weights.bin").read_text() == "content of model/weights.bin\n"
    assert (out / "data/a.csv").read_text() == "content of data/a.csv\n"
    assert (out / "README.md").is_file()


def test_model_pack_round_trip(tmp_path: Path) -> None:
    context = _context(tmp_path)
    home = tmp_path / "home"
    pack(context, tag="mp:v1", use_model_pack=True, home=home)
    out = tmp_path / "out"
    result = unpack("mp:v1", out, filters=["model", "kitfile"], home=home)
    assert (out / "model/weights.bin").is_file() and not (out / "data").exists()
    assert result.kitfile_written  # the Kitfile travels in the manifest annotation


def test_repack_of_unpacked_kit_gives_same_layers(tmp_path: Path) -> None:
    context = _context(tmp_path)
    home = tmp_path / "home"
    first = pack(context, tag="again:v1", home=home)
    out = tmp_path / "out"
    unpack("again:v1", out, home=home)
    second = pack(out, tag="again:v2", home=home)
    assert [layer.digest for layer in second.layers] == [layer.digest for layer in first.layers]


REFS_DIR = Path(__file__).resolve().parents[1] / "data" / "kitops" / "modelkit-refs"


@pytest.mark.parametrize("name", sorted(p.name for p in REFS_DIR.iterdir()))
def test_modelkit_reference_chains(tmp_path: Path, name: str) -> None:
    """kit's modelkit-refs cases: pack each ModelKit in turn, unpack it into the next context;
    the parents' model files arrive through the chain of references."""
    import re

    from kitflow.errors import KitflowError

    case = yaml.safe_load((REFS_DIR / name).read_text())
    home = tmp_path / "home"
    expected: list[str] = []
    for index, kit in enumerate(case["modelkits"]):
        current = tmp_path / f"modelkit-{index}"
        following = tmp_path / f"modelkit-{index + 1}"
        current.mkdir(exist_ok=True)
        following.mkdir(exist_ok=True)
        (current / "Kitfile").write_text(kit["kitfile"])
        for rel in kit.get("files") or []:
            path = current / rel
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(f"content of {rel}\n")
        expected += kit.get("files") or []
        if kit.get("packErrRegexp"):
            # kit refuses the chain at pack time; should a pack get through, unpack must
            # refuse it with the same words (the chain is followed there too).
            pattern = re.compile(kit["packErrRegexp"], re.IGNORECASE)
            with pytest.raises(KitflowError) as err:
                pack(current, tag=kit["tag"], home=home)
                unpack(kit["tag"], following, home=home)
            assert pattern.search(str(err.value)), str(err.value)
            continue
        pack(current, tag=kit["tag"], home=home)
        unpack(kit["tag"], following, home=home)
        missing = [rel for rel in expected if not (following / rel).is_file()]
        assert not missing, f"{kit['tag']}: missing {missing}"


def test_mcp_server_bundle_round_trip(tmp_path: Path) -> None:
    import zipfile

    context = tmp_path / "ctx"
    context.mkdir()
    with zipfile.ZipFile(context / "srv.mcpb", "w") as bundle:
        bundle.writestr("manifest.json", '{"name": "srv"}')
    (context / "Kitfile").write_text(
        "manifestVersion: 1.0.0\npackage:\n  name: m\nmcpServers:\n  - name: srv\n"
        "    path: srv.mcpb\n"
    )
    home = tmp_path / "home"
    pack(context, tag="mcp:v1", home=home)
    out = tmp_path / "out"
    result = unpack("mcp:v1", out, filters=["mcpservers:srv"], home=home)
    assert (out / "srv.mcpb").read_bytes() == (context / "srv.mcpb").read_bytes()
    assert result.layers == 1
