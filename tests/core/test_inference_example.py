"""The sentiment example retrains reproducibly: two trainings on the same data, in two
interpreters with different hash seeds, write byte-identical model files (so a repacked kit
keeps its digest)."""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
from pathlib import Path

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "sentiment"


def test_training_twice_writes_the_same_model_bytes(tmp_path: Path) -> None:
    procs = []
    for seed in ("1", "2"):  # separate processes: hash order and object addresses differ
        env = dict(os.environ, PYTHONHASHSEED=seed)
        argv = [sys.executable, str(EXAMPLE / "train.py"), "--out", str(tmp_path / seed)]
        procs.append(subprocess.Popen(argv, env=env, stdout=subprocess.DEVNULL))
    assert [proc.wait(timeout=120) for proc in procs] == [0, 0]
    digests = {
        hashlib.sha256((tmp_path / seed / "model.joblib").read_bytes()).hexdigest()
        for seed in ("1", "2")
    }
    assert len(digests) == 1
