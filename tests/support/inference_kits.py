"""Small unpacked ModelKits (plain directories with a Kitfile) for the inference tests."""

from __future__ import annotations

import json
import textwrap
from pathlib import Path
from typing import Any

import yaml

ECHO_PREDICT = """
def load(model_path):
    with open(model_path + "/weights.txt") as fh:
        return fh.read().strip()

def predict(model, records):
    return [f"{model}:{r['text'].upper()}" for r in records]
"""


def make_kit(
    root: Path,
    predict_src: str = ECHO_PREDICT,
    *,
    inference: Any = None,
    weights: str = "w1",
    datasets: list[dict[str, Any]] | None = None,
    files: dict[str, str] | None = None,
) -> Path:
    """Write a kit directory: model/weights.txt, src/predict.py and a Kitfile."""
    root.mkdir(parents=True, exist_ok=True)
    (root / "model").mkdir(exist_ok=True)
    (root / "model" / "weights.txt").write_text(weights + "\n")
    (root / "src").mkdir(exist_ok=True)
    (root / "src" / "predict.py").write_text(textwrap.dedent(predict_src))
    for name, text in (files or {}).items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(textwrap.dedent(text))
    kitfile: dict[str, Any] = {
        "manifestVersion": "1.0.0",
        "package": {"name": root.name},
        "model": {
            "path": "model",
            "parameters": {
                "inference": inference
                if inference is not None
                else {"entrypoint": "src/predict.py"}
            },
        },
        "code": [{"path": "src"}],
    }
    if datasets:
        kitfile["datasets"] = datasets
    (root / "Kitfile").write_text(yaml.safe_dump(kitfile, sort_keys=False))
    return root


def write_jsonl(path: Path, records: list[Any], blank_after: set[int] | None = None) -> Path:
    """Write records as JSON Lines (optionally with blank lines after some indexes)."""
    with open(path, "w") as fh:
        for index, record in enumerate(records):
            fh.write(json.dumps(record) + "\n")
            if blank_after and index in blank_after:
                fh.write("\n")
    return path


def read_jsonl(path: Path) -> list[Any]:
    """Every JSON value of a JSON Lines file."""
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
