"""The local backend's forked workers: the model is loaded once, in the runner, and the workers
forked from it give the same bytes as scoring in one process; a worker killed mid-shard fails
only that shard, which is retried; forking is refused while other threads run."""

from __future__ import annotations

import os
import sys
import threading
from pathlib import Path

import pytest
from kitflow.inference import forkpool
from kitflow.inference.local import (
    ShardFailed,
    cpu_count,
    default_parallelism,
    plan_shard_count,
)
from kitflow.inference.runner import run
from support.inference_kits import make_kit, read_jsonl, write_jsonl

RECORDS = [{"id": f"r{i}", "text": f"text {i}"} for i in range(60)]

# Writes which process ran load() and predict() to files beside the kit; predictions carry
# nothing process-specific, so outputs can be compared byte for byte.
TRACING_PREDICT = """
import os
HERE = os.path.dirname(os.path.abspath(__file__))

def load(model_path):
    with open(os.path.join(HERE, "..", "loads"), "a") as fh:
        fh.write(f"{os.getpid()}\\n")
    return {"scale": 3}

def predict(model, records):
    with open(os.path.join(HERE, "..", "predicts"), "a") as fh:
        fh.write(f"{os.getpid()}\\n")
    return [{"len": len(r["text"]) * model["scale"], "text": r["text"][::-1]} for r in records]
"""


# Forked workers need Linux and a process without other threads; the root conftest re-runs
# these tests alone in a fresh interpreter when earlier tests left threads behind.
pytestmark = [
    pytest.mark.skipif(
        not sys.platform.startswith("linux"), reason="forked workers are Linux-only"
    ),
    pytest.mark.single_threaded,
]


def _pids(path: Path) -> set[int]:
    return {int(line) for line in path.read_text().split()} if path.exists() else set()


def test_forked_workers_give_the_same_bytes_and_load_the_model_once(tmp_path: Path) -> None:
    inputs = write_jsonl(tmp_path / "in.jsonl", RECORDS, blank_after={7})
    kit = make_kit(tmp_path / "kit", TRACING_PREDICT)
    inline = tmp_path / "inline.jsonl"
    run(str(kit), inputs, inline, shards=1, parallelism=1, batch_size=4)
    assert _pids(kit / "predicts") == {os.getpid()}
    (kit / "loads").unlink()
    (kit / "predicts").unlink()

    forked = tmp_path / "forked.jsonl"
    result = run(str(kit), inputs, forked, shards=5, parallelism=2, batch_size=4)
    assert forked.read_bytes() == inline.read_bytes()
    assert [s.status for s in result.shards] == ["Succeeded"] * 5
    assert _pids(kit / "loads") == {os.getpid()}  # load() ran once, in the runner
    workers = _pids(kit / "predicts")
    assert os.getpid() not in workers and 1 <= len(workers) <= 2


def test_subprocess_workers_give_the_same_bytes(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    inputs = write_jsonl(tmp_path / "in.jsonl", RECORDS)
    kit = make_kit(tmp_path / "kit", TRACING_PREDICT)
    run(str(kit), inputs, tmp_path / "forked.jsonl", shards=3, parallelism=2, batch_size=5)
    monkeypatch.setenv("KITFLOW_FORK", "0")
    assert not forkpool.fork_usable()
    (kit / "loads").unlink()
    run(str(kit), inputs, tmp_path / "spawned.jsonl", shards=3, parallelism=2, batch_size=5)
    assert os.getpid() not in _pids(kit / "loads")  # each subprocess loaded its own
    spawned = (tmp_path / "spawned.jsonl").read_bytes()
    assert spawned == (tmp_path / "forked.jsonl").read_bytes()


KILLED_ONCE_PREDICT = """
import os, signal
HERE = os.path.dirname(os.path.abspath(__file__))

def predict(model, records):
    marker = os.path.join(HERE, "..", "killed")
    if any(r["id"] == "r25" for r in records) and not os.path.exists(marker):
        open(marker, "w").close()
        os.kill(os.getpid(), signal.SIGKILL)
    return [r["id"] for r in records]
"""


def test_a_worker_killed_mid_shard_fails_only_its_shard_which_is_retried(tmp_path: Path) -> None:
    inputs = write_jsonl(tmp_path / "in.jsonl", RECORDS)
    kit = make_kit(tmp_path / "kit", KILLED_ONCE_PREDICT)
    out = tmp_path / "out.jsonl"
    result = run(str(kit), inputs, out, shards=3, parallelism=2, batch_size=4, retries=1)
    assert (kit / "killed").exists()
    assert read_jsonl(out) == [{"id": r["id"], "prediction": r["id"]} for r in RECORDS]
    # r25 is in shard 1 (records 20-39): only that shard took a second attempt
    assert [(s.index, s.attempts, s.status) for s in result.shards] == [
        (0, 1, "Succeeded"),
        (1, 2, "Succeeded"),
        (2, 1, "Succeeded"),
    ]


def test_a_worker_killed_on_every_attempt_fails_the_run_with_the_signal(tmp_path: Path) -> None:
    inputs = write_jsonl(tmp_path / "in.jsonl", RECORDS)
    kit = make_kit(
        tmp_path / "kit",
        """
        import os, signal
        def predict(model, records):
            if any(r["id"] == "r45" for r in records):
                os.kill(os.getpid(), signal.SIGKILL)
            return [1] * len(records)
        """,
    )
    out = tmp_path / "out.jsonl"
    with pytest.raises(ShardFailed, match=r"shard 2 failed .*after 2 attempts.*SIGKILL") as info:
        run(str(kit), inputs, out, shards=3, parallelism=2, batch_size=4, retries=1)
    assert not out.exists()
    statuses = {s.index: s.status for s in info.value.result.shards}
    assert statuses[2] == "Failed"


def test_user_prints_in_forked_workers_do_not_reach_stdout(
    tmp_path: Path, capfd: pytest.CaptureFixture[str]
) -> None:
    inputs = write_jsonl(tmp_path / "in.jsonl", RECORDS)
    kit = make_kit(
        tmp_path / "kit",
        "def predict(model, records):\n    print('noise')\n    return [0] * len(records)\n",
    )
    run(str(kit), inputs, tmp_path / "out.jsonl", shards=2, parallelism=2)
    captured = capfd.readouterr()
    assert "noise" not in captured.out and "noise" in captured.err


def test_no_fork_while_another_thread_runs() -> None:
    release = threading.Event()
    thread = threading.Thread(target=release.wait)
    thread.start()
    try:
        assert not forkpool.fork_usable()
        assert default_parallelism() == 1  # subprocess workers would be slower than one process
        assert default_parallelism(isolated_env=True) >= 1
    finally:
        release.set()
        thread.join()
    assert forkpool.fork_usable()
    assert default_parallelism() == cpu_count()


def test_small_inputs_run_in_one_shard_by_default() -> None:
    assert plan_shard_count(4096, None, 8, 256) == 1
    assert plan_shard_count(64 * 256, None, 8, 256) == 2
    assert plan_shard_count(10**6, None, 8, 256) == 8
    assert plan_shard_count(100, 5, 8, 256) == 5  # the user's number of shards stands
