"""Unpack, inspect, info and remove straight against a real registry (CNCF Distribution behind
the fault-injecting proxy): only the selected layers are downloaded, corrupt bytes are refused."""

from __future__ import annotations

from pathlib import Path

import pytest
from kitflow.api import pack, push
from kitflow.errors import DigestMismatchError, KitflowError, NotFoundError
from kitflow.ops import store as ops
from kitflow.ops.unpack import open_source, unpack
from kitflow.options import RegistryOptions
from support.faultproxy import FaultProxy
from support.registry import unique_repo

pytestmark = pytest.mark.registry

PLAIN = RegistryOptions(plain_http=True, retries=1)


def make_context(root: Path) -> Path:
    root.mkdir(parents=True)
    (root / "Kitfile").write_text(
        "manifestVersion: 1.0.0\npackage:\n  name: remote-kit\n  authors: [Ann]\n"
        "model:\n  name: m\n  path: model\n"
        "datasets:\n  - name: train\n    path: data/train.csv\n"
        "docs:\n  - path: README.md\n"
    )
    (root / "model").mkdir()
    (root / "model/weights.bin").write_bytes(b"W" * 50_000)
    (root / "data").mkdir()
    (root / "data/train.csv").write_text("a,b\n1,2\n")
    (root / "README.md").write_text("# remote\n")
    return root


@pytest.fixture
def pushed(tmp_path: Path, fault_proxy: FaultProxy) -> tuple[str, dict[str, str]]:
    """A ModelKit pushed through the proxy; returns its reference and layer digests by kind."""
    home = tmp_path / "packer-home"
    packed = pack(make_context(tmp_path / "ctx"), tag="remote:v1", home=home)
    ref = f"{fault_proxy.host}/{unique_repo('unpack')}:v1"
    push("remote:v1", ref, registry=PLAIN, home=home)
    fault_proxy.clear()
    return ref, {layer.kind: layer.digest for layer in packed.layers}


def blob_gets(proxy: FaultProxy) -> set[str]:
    return {e.path.rsplit("/", 1)[-1] for e in proxy.requests("GET", "/blobs/sha256:")}


def test_unpack_from_registry_fetches_only_selected_layers(
    tmp_path: Path, fault_proxy: FaultProxy, pushed: tuple[str, dict[str, str]]
) -> None:
    ref, digests = pushed
    home = tmp_path / "empty-home"
    source = open_source(ref, PLAIN, home)
    assert not source.local
    out = tmp_path / "out"
    result = unpack(ref, out, filters=["model"], registry=PLAIN, home=home)
    assert (out / "model/weights.bin").read_bytes() == b"W" * 50_000
    assert not (out / "data").exists() and not (out / "README.md").exists()
    fetched = blob_gets(fault_proxy)
    assert digests["model"] in fetched
    assert digests["dataset"] not in fetched and digests["docs"] not in fetched
    assert result.layers == 1 and not result.kitfile_written
    # nothing was stored locally: unpack read the registry directly
    assert ops.list_modelkits(home=home) == []


def test_remote_inspect_info_and_remove(tmp_path: Path, pushed: tuple[str, dict[str, str]]) -> None:
    ref, _ = pushed
    home = tmp_path / "empty-home"
    data = ops.inspect(ref, remote=True, registry=PLAIN, home=home)
    assert data["kitfile"]["package"]["name"] == "remote-kit"
    assert data["cliVersion"] != "unknown"
    assert "name: remote-kit" in ops.info(ref, remote=True, registry=PLAIN, home=home)
    with pytest.raises(NotFoundError, match="not found in local storage"):
        ops.inspect(ref, home=home)
    assert ops.remove(ref, remote=True, registry=PLAIN, home=home) == [ref]
    with pytest.raises(NotFoundError, match="could not be found in remote"):
        unpack(ref, tmp_path / "gone", registry=PLAIN, home=home)


def test_corrupt_download_writes_nothing(
    tmp_path: Path, fault_proxy: FaultProxy, pushed: tuple[str, dict[str, str]]
) -> None:
    ref, digests = pushed
    fault_proxy.add("corrupt", method="GET", path=f"/blobs/{digests['model']}", times=-1)
    out = tmp_path / "out"
    with pytest.raises(DigestMismatchError):
        unpack(ref, out, filters=["model"], registry=PLAIN, home=tmp_path / "h")
    assert not (out / "model").exists()


def test_localhost_reference_never_goes_remote(tmp_path: Path) -> None:
    with pytest.raises(KitflowError, match="failed to find reference nothing/here:v1"):
        unpack("nothing/here:v1", tmp_path / "out", home=tmp_path / "h")


def test_cli_unpack_and_inspect_remote(
    tmp_path: Path, pushed: tuple[str, dict[str, str]], capsys: pytest.CaptureFixture[str]
) -> None:
    import json

    from kitflow.cli.main import main

    ref, _ = pushed
    home = str(tmp_path / "cli-home")
    out = tmp_path / "cli-out"
    for argv in (
        ["unpack", ref, "-d", str(out), "--filter", "docs", "--plain-http", "--config", home],
        ["inspect", "-r", ref, "--plain-http", "--config", home],
    ):
        with pytest.raises(SystemExit) as exit_info:
            main(argv)
        assert exit_info.value.code == 0, capsys.readouterr().err
    assert (out / "README.md").read_text() == "# remote\n"
    printed = capsys.readouterr().out
    inspected = json.loads(printed[printed.index("{") :])
    assert inspected["kitfile"]["package"]["name"] == "remote-kit"


def test_list_remote_repository(
    tmp_path: Path, pushed: tuple[str, dict[str, str]], capsys: pytest.CaptureFixture[str]
) -> None:
    from kitflow.cli.main import main

    ref, _ = pushed
    repo = ref.rsplit(":", 1)[0]
    rows = ops.list_remote(repo, registry=PLAIN, home=tmp_path / "h")
    assert [(r.tags, r.name, r.author) for r in rows] == [(["v1"], "remote-kit", "Ann")]
    assert rows[0].repository == repo.split("/", 1)[1]
    assert [r.tags for r in ops.list_remote(ref, registry=PLAIN, home=tmp_path / "h")] == [["v1"]]
    with pytest.raises(SystemExit) as exit_info:
        main(["list", repo, "--plain-http", "--config", str(tmp_path / "h")])
    assert exit_info.value.code == 0
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == 2 and lines[1].split()[1] == "v1"
