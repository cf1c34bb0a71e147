"""`make demo` end to end: the script trains, packs, (pushes to a loopback registry when
docker-registry is installed), runs batch inference, and writes the Argo Workflow."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
DEMO = ROOT / "examples" / "sentiment" / "demo.py"


def test_demo_runs_end_to_end(tmp_path: Path) -> None:
    workdir = tmp_path / "demo"
    env = {k: v for k, v in os.environ.items() if k != "KITOPS_HOME"}
    proc = subprocess.run(
        [sys.executable, str(DEMO), "--workdir", str(workdir)],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=540,
        check=False,
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    out = proc.stdout
    assert "held-out accuracy" in out
    assert "20 predictions" in out

    inputs = [
        json.loads(line)
        for line in (ROOT / "examples/sentiment/data/inputs.jsonl").read_text().splitlines()
    ]
    predictions = [
        json.loads(line) for line in (workdir / "predictions.jsonl").read_text().splitlines()
    ]
    assert [p["id"] for p in predictions] == [r["id"] for r in inputs]
    assert {p["prediction"] for p in predictions} == {"positive", "negative"}
    by_id = {p["id"]: p["prediction"] for p in predictions}
    assert by_id["r001"] == "positive"  # "I absolutely loved this movie..."
    assert by_id["r002"] == "negative"  # "The battery died after an hour, terrible."

    summary = json.loads((workdir / "summary.json").read_text())
    digest = summary["pack"]["digest"]
    assert summary["run"]["model_digest"] == digest
    assert summary["run"]["phase"] == "Succeeded"
    if shutil.which("docker-registry"):
        assert "127.0.0.1:" in summary["push"]["reference"]
        assert summary["push"]["digest"] == digest
    # the kit was unpacked once into the throwaway KITOPS_HOME's run cache
    assert (workdir / "kitops" / "cache" / "run" / digest.replace(":", "-") / "Kitfile").is_file()

    comparison = summary["comparison"]
    assert len(comparison["models"]) == 2
    assert comparison["models"][1]["digest"] == summary["variant"]["digest"]
    assert 0.5 <= comparison["agreement"] <= 1.0
    compared = (workdir / "comparison.jsonl").read_text().splitlines()
    assert len(compared) == len(inputs)
    assert len(json.loads(compared[0])["predictions"]) == 2

    workflow = json.loads((workdir / "workflow.json").read_text())
    assert workflow["kind"] == "Workflow"
    assert digest in json.dumps(workflow)
