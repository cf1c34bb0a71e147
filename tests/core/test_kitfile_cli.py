"""`kitflow validate` and `kitflow init`: exit codes, every problem listed, no tracebacks."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from kitflow.cli.main import main


def run(args: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    with pytest.raises(SystemExit) as info:
        main(args)
    out, err = capsys.readouterr()
    return int(info.value.code or 0), out, err


def test_validate_valid(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "Kitfile").write_text("manifestVersion: 1.0.0\ncode:\n  - path: src\n")
    (tmp_path / "src").mkdir()
    code, out, _ = run(["validate", str(tmp_path)], capsys)
    assert code == 0 and "is valid" in out


def test_validate_lists_every_problem(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    kitfile = tmp_path / "Kitfile"
    kitfile.write_text("manifestVersion: 2.0\nmodel:\n  path: /abs\ncode:\n  - path: http://x/y\n")
    code, _, err = run(["validate", str(kitfile)], capsys)
    assert code == 1
    assert "Traceback" not in err
    assert "  * absolute paths are not supported in a Kitfile (path /abs in model )" in err
    assert "  * invalid path for code (http://x/y): only local paths are permitted" in err
    assert "Warning: Unrecognized manifestVersion 2.0: treating Kitfile as 1.0.0" in err


def test_validate_json(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "Kitfile").write_text("manifestVersion: 1.0.0\nmodle: {}\n")
    code, out, _ = run(["validate", "--json", str(tmp_path)], capsys)
    assert code == 1
    report = json.loads(out)
    assert report["valid"] is False
    assert report["problems"] == ["line 2: field modle not found in type artifact.KitFile"]


@pytest.mark.parametrize("content", [b"", b"\x00\xff", b"a: [", b"!!binary x: y", b"- - -"])
def test_validate_garbage_never_tracebacks(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], content: bytes
) -> None:
    (tmp_path / "Kitfile").write_bytes(content)
    code, _, err = run(["validate", str(tmp_path)], capsys)
    assert code == 1 and "Traceback" not in err and err.strip()


def test_validate_missing_path(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = run(["validate", str(tmp_path / "nope")], capsys)
    assert code == 1 and "does not exist" in err


def test_init_writes_and_refuses_to_overwrite(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "model.pkl").write_text("x")
    (tmp_path / "README.md").write_text("# hi")
    code, out, _ = run(
        ["init", str(tmp_path), "--name", "demo", "--desc", "A demo", "--author", "Jane"], capsys
    )
    assert code == 0 and "Saved to path" in out
    text = (tmp_path / "Kitfile").read_text()
    assert text == (
        "manifestVersion: 1.0.0\n"
        "package:\n"
        "  name: demo\n"
        "  description: A demo\n"
        "  authors: [Jane]\n"
        "model:\n"
        "  name: model\n"
        "  path: model.pkl\n"
        "docs:\n"
        "  - path: README.md\n"
        "    description: Readme file\n"
    )
    assert (tmp_path / "Kitfile").stat().st_mode & 0o777 == 0o644
    code, _, err = run(["init", str(tmp_path)], capsys)
    assert code == 1 and "Kitfile already exists" in err and "--force" in err
    code, _, _ = run(["init", str(tmp_path), "--force"], capsys)
    assert code == 0
    assert "name: demo" not in (tmp_path / "Kitfile").read_text()
    code, _, _ = run(["validate", str(tmp_path)], capsys)
    assert code == 0


def test_init_missing_directory(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = run(["init", str(tmp_path / "none")], capsys)
    assert code == 1 and err.startswith("Error: ")


def test_validate_as_a_real_process(tmp_path: Path) -> None:
    (tmp_path / "Kitfile").write_text("manifestVersion: 1.0.0\npackage: {name: [x]}\n")
    proc = subprocess.run(
        [sys.executable, "-m", "kitflow.cli.main", "validate", str(tmp_path)],
        capture_output=True,
        text=True,
        check=False,
    )
    assert proc.returncode == 1
    assert "line 2: cannot unmarshal !!seq into string" in proc.stderr
    assert "Traceback" not in proc.stderr
