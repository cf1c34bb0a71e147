"""The store CLI verbs: output, exit codes, and user errors as one line on stderr."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from kitflow.cli.main import main
from store_helpers import KitBuilder


@pytest.fixture
def kits(tmp_path: Path) -> KitBuilder:
    return KitBuilder(tmp_path / "home")


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    with pytest.raises(SystemExit) as exit_info:
        main(list(argv))
    captured = capsys.readouterr()
    code = exit_info.value.code
    return (code if isinstance(code, int) else 1), captured.out, captured.err


def assert_one_line_error(code: int, err: str, fragment: str) -> None:
    assert code == 1
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith("Error: ") and fragment in lines[0]
    assert "Traceback" not in err


def test_unpack_with_filters_and_flags(
    kits: KitBuilder, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    kits.standard()
    home = str(kits.home)
    out = tmp_path / "out"
    code, stdout, _ = run(
        capsys,
        "unpack",
        "test/model:v1",
        "-d",
        str(out),
        "-f",
        "model",
        "--filter",
        "docs",
        "--config",
        home,
    )
    assert code == 0 and "Unpacked test/model:v1" in stdout
    assert (out / "model/weights.bin").exists() and (out / "README.md").exists()
    assert not (out / "Kitfile").exists()
    code, _, err = run(
        capsys, "unpack", "test/model:v1", "-d", str(out), "-f", "model", "--config", home
    )
    assert_one_line_error(code, err, "path 'model/")
    code, _, _ = run(
        capsys, "unpack", "test/model:v1", "-d", str(out), "-f", "model", "-i", "--config", home
    )
    assert code == 0
    code, stdout, _ = run(
        capsys, "unpack", "test/model:v1", "-d", str(out), "-o", "--json", "--config", home
    )
    assert code == 0 and json.loads(stdout)["kitfile_written"] is True
    code, _, _ = run(
        capsys, "unpack", "test/model:v1", "-d", str(tmp_path / "old"), "--docs", "--config", home
    )
    assert code == 0 and (tmp_path / "old/README.md").exists()


@pytest.mark.parametrize(
    ("argv", "fragment"),
    [
        (["unpack", "test/model:v1", "-f", "weights"], "invalid filter type weights"),
        (["unpack", "test/model:v1", "-f", "a:b:c"], "invalid filter: should be in format"),
        (["unpack", "test/model:missing"], "failed to find reference test/model:missing"),
        (["unpack", "Test/Model:v1"], "must be lowercase"),
        (["remove"], "modelkit is required for remove unless --all is specified"),
        (["remove", "x:v1", "--all"], "should not be specified when --all"),
        (["remove", "test/model:nope"], "model test/model:nope not found"),
        (["inspect", "test/model:nope"], "not found in local storage"),
        (["tag", "test/model:nope", "test/model:x"], "not found"),
        (["list", "--bogus"], "No such option"),
    ],
)
def test_user_errors_are_one_line(
    kits: KitBuilder,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    argv: list[str],
    fragment: str,
) -> None:
    kits.standard()
    extra = ["--config", str(kits.home)] if argv[0] != "list" else []
    if argv[0] == "unpack":
        extra += ["-d", str(tmp_path / "out")]
    code, _, err = run(capsys, *argv, *extra)
    assert_one_line_error(code, err, fragment)


def test_list_inspect_info_tag_remove(
    kits: KitBuilder,
    capsys: pytest.CaptureFixture[str],
) -> None:
    desc = kits.standard()
    home = str(kits.home)
    code, stdout, _ = run(capsys, "list", "--config", home)
    assert code == 0
    lines = stdout.splitlines()
    assert lines[0].split() == ["REPOSITORY", "TAG", "MAINTAINER", "NAME", "SIZE", "DIGEST"]
    assert lines[1].split()[:2] == ["test/model", "v1"] and desc.digest in lines[1]
    code, stdout, _ = run(capsys, "list", "--json", "--config", home)
    assert json.loads(stdout)[0]["tags"] == ["v1"]
    code, stdout, _ = run(capsys, "inspect", "test/model:v1", "--config", home)
    assert json.loads(stdout)["digest"] == desc.digest
    code, stdout, _ = run(capsys, "info", "test/model:v1", "--config", home)
    assert "name: standard" in stdout
    code, _, _ = run(capsys, "tag", "test/model:v1", "test/model:v2", "--config", home)
    assert code == 0
    code, stdout, _ = run(capsys, "remove", "test/model:v1", "--config", home)
    assert code == 0 and "Removed test/model:v1" in stdout
    code, stdout, _ = run(capsys, "remove", "--all", "--force", "--config", home)
    assert code == 0 and desc.digest in stdout
    code, stdout, _ = run(capsys, "list", "--config", home)
    assert stdout.splitlines()[1:] == []


def test_prune_and_verify(kits: KitBuilder, capsys: pytest.CaptureFixture[str]) -> None:
    desc = kits.standard()
    home = str(kits.home)
    code, stdout, _ = run(capsys, "verify", "--config", home)
    assert code == 0 and "no problems" in stdout
    code, stdout, _ = run(capsys, "prune", "--json", "--config", home)
    assert code == 0 and json.loads(stdout) == {"blobs_removed": 0, "bytes_freed": 0}
    manifest = json.loads(kits.store.read_blob(desc))
    path = kits.store.blob_path(manifest["layers"][0]["digest"])
    path.write_bytes(b"garbage")
    code, stdout, err = run(capsys, "verify", "--config", home)
    assert "is corrupt" in stdout
    assert_one_line_error(code, err, "1 problem(s) in local storage")


def test_pack_then_unpack_through_the_cli(
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    ctx = tmp_path / "ctx"
    (ctx / "model").mkdir(parents=True)
    (ctx / "model/w.bin").write_bytes(b"weights")
    (ctx / "Kitfile").write_text(
        "manifestVersion: 1.0.0\npackage:\n  name: cli-kit\nmodel:\n  path: model\n"
    )
    home = str(tmp_path / "home")
    code, stdout, _ = run(capsys, "pack", str(ctx), "-t", "cli/kit:v1", "--config", home)
    assert code == 0 and "sha256:" in stdout
    code, stdout, _ = run(capsys, "pack", str(ctx), "-t", "cli/kit:v2", "--json", "--config", home)
    assert code == 0 and json.loads(stdout)["reference"].endswith("cli/kit:v2")
    code, stdout, _ = run(capsys, "list", "cli/kit", "--config", home)
    assert [line.split()[1] for line in stdout.splitlines()[1:]] == ["v1", "v2"]
    out = tmp_path / "out"
    code, _, _ = run(capsys, "unpack", "cli/kit:v2", "-d", str(out), "--config", home)
    assert code == 0 and (out / "model/w.bin").read_bytes() == b"weights"
    code, _, err = run(capsys, "pack", str(tmp_path / "nowhere"), "-t", "x:v1", "--config", home)
    assert_one_line_error(code, err, "")
    code, _, err = run(capsys, "pack", str(ctx), "--compression", "brotli", "--config", home)
    assert_one_line_error(code, err, "brotli")
