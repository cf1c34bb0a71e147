"""``--isolated-env``: the kit's requirements go into a virtualenv made once (cached), and the
entrypoint runs on that interpreter, where the caller's packages are not importable."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
from kitflow.errors import NotFoundError
from kitflow.inference.envs import env_key, envs_dir
from kitflow.inference.runner import run
from support.inference_kits import make_kit, read_jsonl, write_jsonl

WHERE_AM_I = """
import sys

def predict(model, records):
    try:
        import yaml  # installed for kitflow, not in the kit's requirements
        seen = "yaml"
    except ImportError:
        seen = "isolated"
    return [[sys.prefix, seen] for _ in records]
"""


def test_entrypoint_runs_in_the_kits_own_environment(tmp_path: Path) -> None:
    home = tmp_path / "home"
    kit = make_kit(
        tmp_path / "kit",
        WHERE_AM_I,
        inference={"entrypoint": "src/predict.py", "requirements": "requirements.txt"},
        files={"requirements.txt": "# nothing beyond the standard library\n"},
    )
    inputs = write_jsonl(tmp_path / "in.jsonl", [{"id": 1}, {"id": 2}])
    out = tmp_path / "out.jsonl"
    run(str(kit), inputs, out, isolated_env=True, home=home)
    lines = read_jsonl(out)
    key = env_key("", kit / "requirements.txt")
    env_root = envs_dir(home) / key
    assert [line["prediction"][1] for line in lines] == ["isolated", "isolated"]
    assert Path(lines[0]["prediction"][0]).resolve() == env_root.resolve()
    assert Path(lines[0]["prediction"][0]).resolve() != Path(sys.prefix).resolve()

    marker = env_root / "kitflow-reused"
    marker.write_text("")
    run(str(kit), inputs, out, isolated_env=True, home=home, shards=2, parallelism=2)
    assert marker.exists()  # the same environment was reused, not rebuilt
    assert [p.name for p in envs_dir(home).iterdir() if not p.name.startswith(".")] == [key]


def test_isolated_env_needs_a_requirements_file(tmp_path: Path) -> None:
    kit = make_kit(tmp_path / "kit")
    inputs = write_jsonl(tmp_path / "in.jsonl", [{"text": "x"}])
    with pytest.raises(NotFoundError, match=r"no requirements file requirements\.txt"):
        run(str(kit), inputs, tmp_path / "out.jsonl", isolated_env=True, home=tmp_path / "h")
