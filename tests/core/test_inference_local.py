"""The local backend on unpacked kit directories: entrypoint resolution, order across shards and
workers, a failing record's position and message, retries, no partial output, command
entrypoints, datasets in the kit, comparison of two kits, and the CLI's exit codes."""

from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path

import pytest
from kitflow.cli.main import main as cli_main
from kitflow.errors import InferenceError, KitflowError, NotFoundError
from kitflow.inference.entrypoint import load_kit_layout, resolve_entrypoint
from kitflow.inference.local import ShardFailed
from kitflow.inference.runner import run
from support.inference_kits import make_kit, read_jsonl, write_jsonl

RECORDS = [{"id": f"r{i}", "text": f"text {i}"} for i in range(40)]


@pytest.fixture()
def inputs(tmp_path: Path) -> Path:
    return write_jsonl(tmp_path / "inputs.jsonl", RECORDS, blank_after={3})


def expected(prefix: str = "w1") -> list[dict[str, str]]:
    return [{"id": r["id"], "prediction": f"{prefix}:{r['text'].upper()}"} for r in RECORDS]


# ----------------------------------------------------------------------------- resolution


def test_entrypoint_from_kitfile_and_override(tmp_path: Path) -> None:
    kit = make_kit(tmp_path / "kit", files={"src/other.py": "def predict(m, r): return r\n"})
    layout = load_kit_layout(kit)
    assert layout.model_path == (kit / "model").resolve()
    assert resolve_entrypoint(layout).path == "src/predict.py"
    assert resolve_entrypoint(layout, "src/other.py").path == "src/other.py"
    command = resolve_entrypoint(layout, "python x.py {input} {output}")
    assert command.kind == "command"
    with pytest.raises(NotFoundError, match=r"entrypoint src/missing\.py is not in the ModelKit"):
        resolve_entrypoint(layout, "src/missing.py")


def test_kit_without_entrypoint_says_how_to_give_one(tmp_path: Path, inputs: Path) -> None:
    kit = make_kit(tmp_path / "kit")
    kitfile = (kit / "Kitfile").read_text().replace("inference", "other")
    (kit / "Kitfile").write_text(kitfile)
    with pytest.raises(KitflowError, match=r"declares no entrypoint.*--entrypoint"):
        run(str(kit), inputs, tmp_path / "out.jsonl")
    result = run(str(kit), inputs, tmp_path / "out.jsonl", entrypoint="src/predict.py")
    assert read_jsonl(tmp_path / "out.jsonl") == expected()
    assert result.records == 40


def test_entrypoint_without_predict(tmp_path: Path, inputs: Path) -> None:
    kit = make_kit(tmp_path / "kit", "def load(p):\n    return p\n")
    with pytest.raises(ShardFailed, match=r"has no function predict\(model, records\)"):
        run(str(kit), inputs, tmp_path / "out.jsonl", retries=0)


# ----------------------------------------------------------------------------- order, shards


@pytest.mark.parametrize(("shards", "parallelism"), [(1, 1), (3, 1), (5, 2)])
def test_order_is_kept_across_shards(
    tmp_path: Path, inputs: Path, shards: int, parallelism: int
) -> None:
    kit = make_kit(tmp_path / "kit")
    out = tmp_path / "out" / "predictions.jsonl"
    result = run(str(kit), inputs, out, shards=shards, parallelism=parallelism, batch_size=3)
    assert read_jsonl(out) == expected()
    assert result.output == out
    assert result.phase == "Succeeded"
    assert [s.status for s in result.shards] == ["Succeeded"] * shards
    assert sum(s.records for s in result.shards) == 40
    assert result.model_digest == ""  # a plain directory has no digest
    assert {"unpack", "prepare", "score", "write", "predict"} <= set(result.timings)
    # no scratch files left beside the output
    assert sorted(p.name for p in out.parent.iterdir()) == ["predictions.jsonl"]


def test_load_runs_once_per_worker(tmp_path: Path, inputs: Path) -> None:
    counter = tmp_path / "loads"
    kit = make_kit(
        tmp_path / "kit",
        f"""
        import os
        def load(model_path):
            with open({str(counter)!r}, "a") as fh:
                fh.write(str(os.getpid()) + "\\n")
            return "m"
        def predict(model, records):
            return [model] * len(records)
        """,
    )
    run(str(kit), inputs, tmp_path / "out.jsonl", shards=8, parallelism=2, batch_size=2)
    pids = counter.read_text().split()
    assert len(pids) == len(set(pids)) <= 2


def test_records_may_be_any_json_and_id_field_is_configurable(tmp_path: Path) -> None:
    kit = make_kit(
        tmp_path / "kit", "def predict(m, records):\n    return [len(str(r)) for r in records]\n"
    )
    path = write_jsonl(tmp_path / "in.jsonl", ["ab", [1, 2], {"key": "k", "x": 1}, 5])
    out = tmp_path / "out.jsonl"
    run(str(kit), path, out, id_field="key", entrypoint="src/predict.py")
    assert read_jsonl(out) == [
        {"prediction": 2},
        {"prediction": 6},
        {"key": "k", "prediction": 20},
        {"prediction": 1},
    ]


def test_csv_input_and_dataset_in_the_kit(tmp_path: Path) -> None:
    kit = make_kit(
        tmp_path / "kit",
        datasets=[{"name": "samples", "path": "data/samples.csv"}],
        files={"data/samples.csv": "id,text\na,one\nb,two\n"},
    )
    out = tmp_path / "out.jsonl"
    result = run(str(kit), output=out, dataset="samples")
    assert read_jsonl(out) == [
        {"id": "a", "prediction": "w1:ONE"},
        {"id": "b", "prediction": "w1:TWO"},
    ]
    assert result.records == 2
    with pytest.raises(NotFoundError, match=r"no dataset 'other' \(datasets: samples\)"):
        run(str(kit), output=out, dataset="other")


def test_empty_input_writes_an_empty_output(tmp_path: Path) -> None:
    kit = make_kit(tmp_path / "kit")
    empty = tmp_path / "empty.jsonl"
    empty.write_text("")
    result = run(str(kit), empty, tmp_path / "out.jsonl")
    assert (tmp_path / "out.jsonl").read_text() == ""
    assert result.records == 0 and result.shards == []


def test_dry_run_plans_without_scoring(tmp_path: Path, inputs: Path) -> None:
    kit = make_kit(tmp_path / "kit", "raise RuntimeError('must not be imported')\n")
    result = run(str(kit), inputs, tmp_path / "out.jsonl", shards=4, dry_run=True)
    assert result.phase == "Pending"
    assert [s.records for s in result.shards] == [10, 10, 10, 10]
    assert not (tmp_path / "out.jsonl").exists()


# ----------------------------------------------------------------------------- failures, retries

FAIL_ON_13 = """
def predict(model, records):
    for r in records:
        if r["id"] == "r13":
            raise ValueError("cannot score " + r["text"])
    return [r["id"] for r in records]
"""


@pytest.mark.parametrize("parallelism", [1, 2])
def test_failing_record_fails_its_shard_with_position_and_message(
    tmp_path: Path, inputs: Path, parallelism: int
) -> None:
    kit = make_kit(tmp_path / "kit", FAIL_ON_13)
    out = tmp_path / "out.jsonl"
    out.write_text("previous results\n")
    with pytest.raises(ShardFailed) as info:
        run(str(kit), inputs, out, shards=4, parallelism=parallelism, batch_size=4, retries=1)
    message = str(info.value)
    # r13 is record 14; a blank line follows record 4, so it sits on line 15.
    assert "shard 1 failed at inputs.jsonl line 15 after 2 attempts" in message
    assert "ValueError: cannot score text 13" in message
    assert "no output was written" in message
    assert isinstance(info.value, InferenceError)
    # the previous output is untouched, and nothing else was left beside it
    assert out.read_text() == "previous results\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["inputs.jsonl", "kit", "out.jsonl"]
    result = info.value.result
    assert result.phase == "Failed" and result.output is None
    failed = [s for s in result.shards if s.status == "Failed"]
    assert [(s.index, s.attempts) for s in failed] == [(1, 2)]
    assert "cannot score text 13" in failed[0].message


def test_retries_recover_a_flaky_shard(tmp_path: Path, inputs: Path) -> None:
    marker = tmp_path / "attempts"
    marker.mkdir()
    kit = make_kit(
        tmp_path / "kit",
        f"""
        import os
        def predict(model, records):
            first = records[0]["id"]
            flag = os.path.join({str(marker)!r}, first)
            if first == "r10" and not os.path.exists(flag):
                open(flag, "w").close()
                raise RuntimeError("transient")
            return [r["id"] for r in records]
        """,
    )
    out = tmp_path / "out.jsonl"
    result = run(str(kit), inputs, out, shards=4, parallelism=2, retries=1)
    assert [s.attempts for s in result.shards] == [1, 2, 1, 1]
    assert [line["prediction"] for line in read_jsonl(out)] == [r["id"] for r in RECORDS]

    (marker / "r10").unlink()
    with pytest.raises(ShardFailed, match=r"shard 1 failed at inputs\.jsonl line 12: RuntimeError"):
        run(str(kit), inputs, tmp_path / "out2.jsonl", shards=4, parallelism=2, retries=0)
    assert not (tmp_path / "out2.jsonl").exists()


def test_wrong_number_of_predictions(tmp_path: Path, inputs: Path) -> None:
    kit = make_kit(tmp_path / "kit", "def predict(m, records):\n    return records[:-1]\n")
    with pytest.raises(ShardFailed, match="predict returned 9 predictions for 10 records"):
        run(str(kit), inputs, tmp_path / "out.jsonl", batch_size=10, retries=0)


def test_unserialisable_prediction(tmp_path: Path, inputs: Path) -> None:
    kit = make_kit(
        tmp_path / "kit", "def predict(m, records):\n    return [object() for _ in records]\n"
    )
    with pytest.raises(ShardFailed, match="prediction is not JSON"):
        run(str(kit), inputs, tmp_path / "out.jsonl", retries=0)


def test_load_failure_is_reported(tmp_path: Path, inputs: Path) -> None:
    kit = make_kit(
        tmp_path / "kit",
        "def load(p):\n    raise OSError('weights missing')\ndef predict(m, r):\n    return r\n",
    )
    with pytest.raises(ShardFailed, match=r"load\(\) failed: OSError: weights missing"):
        run(str(kit), inputs, tmp_path / "out.jsonl", shards=2, parallelism=2, retries=0)


def test_a_crashing_worker_fails_the_run_cleanly(tmp_path: Path, inputs: Path) -> None:
    kit = make_kit(
        tmp_path / "kit",
        "import os\ndef predict(m, records):\n    os._exit(3)\n",
    )
    out = tmp_path / "out.jsonl"
    with pytest.raises(ShardFailed, match="worker process died"):
        run(str(kit), inputs, out, shards=2, parallelism=2, retries=1)
    assert not out.exists()


def test_timeout(tmp_path: Path, inputs: Path) -> None:
    kit = make_kit(tmp_path / "kit", "import time\ndef predict(m, records):\n    time.sleep(30)\n")
    with pytest.raises(ShardFailed, match="timed out"):
        run(str(kit), inputs, tmp_path / "out.jsonl", shards=2, parallelism=2, timeout=3)
    assert not (tmp_path / "out.jsonl").exists()


# ----------------------------------------------------------------------------- command form

SCORE_SCRIPT = """
import json, sys
src, dst = sys.argv[1], sys.argv[2]
with open(src) as fin, open(dst, "w") as fout:
    for line in fin:
        record = json.loads(line)
        if record.get("text") == "boom":
            print("traceback noise", file=sys.stderr)
            print("ValueError: boom is not a sentence", file=sys.stderr)
            sys.exit(2)
        fout.write(json.dumps({"prediction": len(record["text"])}) + "\\n")
"""


def test_command_entrypoint(tmp_path: Path, inputs: Path) -> None:
    kit = make_kit(
        tmp_path / "kit",
        inference={"command": ["python", "src/score.py", "{input}", "{output}"]},
        files={"src/score.py": SCORE_SCRIPT},
    )
    out = tmp_path / "out.jsonl"
    result = run(str(kit), inputs, out, shards=3, parallelism=2)
    assert read_jsonl(out) == [{"id": r["id"], "prediction": len(r["text"])} for r in RECORDS]
    assert len(result.shards) == 3

    bad = write_jsonl(tmp_path / "bad.jsonl", [{"text": "fine"}, {"text": "boom"}])
    with pytest.raises(
        ShardFailed, match="command exited with status 2: ValueError: boom is not a sentence"
    ):
        run(str(kit), bad, tmp_path / "bad.out.jsonl", retries=0)
    assert not (tmp_path / "bad.out.jsonl").exists()


def test_command_override_and_count_check(tmp_path: Path, inputs: Path) -> None:
    kit = make_kit(
        tmp_path / "kit",
        files={"half.py": "import sys\nopen(sys.argv[2], 'w').write('1\\n')\n"},
    )
    with pytest.raises(ShardFailed, match="command wrote 1 predictions for 40 records"):
        run(
            str(kit),
            inputs,
            tmp_path / "o.jsonl",
            entrypoint=f"{sys.executable} half.py {{input}} {{output}}",
            retries=0,
        )


# ----------------------------------------------------------------------------- comparison


def test_two_kits_are_compared(tmp_path: Path, inputs: Path) -> None:
    a = make_kit(tmp_path / "a", weights="same")
    b = make_kit(
        tmp_path / "b",
        """
        def predict(model, records):
            return [("odd" if int(r["id"][1:]) % 4 == 0 else "same:" + r["text"].upper())
                    for r in records]
        """,
    )
    out = tmp_path / "cmp.jsonl"
    result = run([str(a), str(b)], inputs, out, shards=2, parallelism=2)
    lines = read_jsonl(out)
    assert len(lines) == 40
    assert lines[1] == {
        "id": "r1",
        "prediction": "same:TEXT 1",
        "predictions": {str(a): "same:TEXT 1", str(b): "same:TEXT 1"},
    }
    assert lines[0]["predictions"][str(b)] == "odd"
    comparison = result.comparison
    assert comparison is not None
    assert comparison["agreement"] == 0.75
    assert comparison["disagreements"] == 10
    assert comparison["pairwise"] == [{"a": str(a), "b": str(b), "agreement": 0.75}]
    assert [m["reference"] for m in comparison["models"]] == [str(a), str(b)]
    assert all(m["latency_ms_per_record"] >= 0 for m in comparison["models"])
    assert json.dumps(result.to_dict())


# ----------------------------------------------------------------------------- CLI


def test_cli_exit_codes(tmp_path: Path, inputs: Path, capsys: pytest.CaptureFixture[str]) -> None:
    good = make_kit(tmp_path / "good")
    out = tmp_path / "out.jsonl"
    with pytest.raises(SystemExit) as info:
        cli_main(["run", str(good), "--input", str(inputs), "--output", str(out), "--json"])
    assert info.value.code == 0
    printed = json.loads(capsys.readouterr().out)
    assert printed["records"] == 40 and printed["phase"] == "Succeeded"
    assert read_jsonl(out) == expected()

    bad = make_kit(tmp_path / "bad", FAIL_ON_13)
    with pytest.raises(SystemExit) as info:
        cli_main(
            ["run", str(bad), "-i", str(inputs), "-o", str(tmp_path / "x.jsonl"), "--retries", "0"]
        )
    assert info.value.code == 1
    err = capsys.readouterr().err.strip()
    assert err.startswith("Error: shard 0 failed at inputs.jsonl line 15: ValueError")
    assert len(err.splitlines()) == 1

    for argv, fragment in [
        (["run", str(good), "-o", str(out)], "--input FILE or --dataset NAME"),
        (["run", str(good), "-i", str(tmp_path / "none.jsonl")], "does not exist"),
        (["run", str(good), "-i", str(inputs), "--shards", "0"], "--shards"),
        (["run", str(good), "-i", str(inputs), "--backend", "spark"], "--backend"),
    ]:
        with pytest.raises(SystemExit) as info:
            cli_main(argv)
        assert info.value.code == 1, argv
        assert fragment in capsys.readouterr().err

    with pytest.raises(SystemExit) as info:
        cli_main(["run", str(good), "-i", str(inputs), "--dry-run", "--shards", "2"])
    assert info.value.code == 0
    assert "40 records in 2 shard(s)" in capsys.readouterr().out


@pytest.mark.parametrize(("shards", "parallelism"), [(1, 1), (2, 2)])
def test_progress_bar_counts_every_record(
    tmp_path: Path, inputs: Path, capsys: pytest.CaptureFixture[str], shards: int, parallelism: int
) -> None:
    kit = make_kit(tmp_path / "kit")
    out = tmp_path / "out.jsonl"
    run(str(kit), inputs, out, shards=shards, parallelism=parallelism, batch_size=7, progress=True)
    err = capsys.readouterr().err
    assert "kitflow run" in err and "40/40" in err
    assert read_jsonl(out) == expected()


@pytest.mark.parametrize("how", ["SIGINT", "SIGKILL"])
def test_interrupting_a_run_kills_its_workers_and_writes_nothing(tmp_path: Path, how: str) -> None:
    import os
    import signal
    import subprocess
    import time

    started = tmp_path / "started"
    started.mkdir()
    kit = make_kit(
        tmp_path / "kit",
        f"""
        import os, time
        def predict(model, records):
            open(os.path.join({str(started)!r}, str(os.getpid())), "w").close()
            time.sleep(60)
            return records
        """,
    )
    inputs = write_jsonl(tmp_path / "in.jsonl", RECORDS)
    out = tmp_path / "out.jsonl"
    script = (
        "import sys\n"
        "from kitflow.inference.runner import run\n"
        f"run({str(kit)!r}, {str(inputs)!r}, {str(out)!r}, shards=2, parallelism=2)\n"
    )
    proc = subprocess.Popen([sys.executable, "-c", script], stderr=subprocess.PIPE)
    deadline = time.monotonic() + 60
    while len(list(started.iterdir())) < 2 and time.monotonic() < deadline:
        time.sleep(0.1)
    workers = [int(p.name) for p in started.iterdir()]
    assert len(workers) == 2
    proc.send_signal(getattr(signal, how))  # SIGKILL: no cleanup code runs in the runner
    assert proc.wait(timeout=30) != 0
    for pid in workers:
        for _ in range(100):
            try:
                os.kill(pid, 0)
            except ProcessLookupError:
                break
            time.sleep(0.05)
        else:
            pytest.fail(f"worker {pid} outlived the interrupted run")
    assert not out.exists()
    if how == "SIGKILL":  # nothing could clean up: the next run writing out.jsonl sweeps it
        assert any(p.name.startswith(".out.jsonl.kitflow-") for p in tmp_path.iterdir())
        run(str(make_kit(tmp_path / "kit2")), inputs, out)
        assert read_jsonl(out) == expected()
        out.unlink()
        shutil.rmtree(tmp_path / "kit2")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["in.jsonl", "kit", "started"]


def test_output_must_be_a_new_file(tmp_path: Path, inputs: Path) -> None:
    kit = make_kit(tmp_path / "kit")
    with pytest.raises(KitflowError, match="is a directory"):
        run(str(kit), inputs, tmp_path)
    with pytest.raises(KitflowError, match="is the input file"):
        run(str(kit), inputs, inputs)
    assert len(read_jsonl(inputs)) == 40


def test_the_kits_batch_size_applies_unless_the_caller_chooses(tmp_path: Path) -> None:
    kit = make_kit(
        tmp_path / "kit",
        "def predict(m, records):\n    return [len(records)] * len(records)\n",
        inference={"entrypoint": "src/predict.py", "batchSize": 4},
    )
    inputs = write_jsonl(tmp_path / "in.jsonl", list(range(10)))
    out = tmp_path / "out.jsonl"
    run(str(kit), inputs, out)
    assert [line["prediction"] for line in read_jsonl(out)] == [4] * 8 + [2] * 2
    run(str(kit), inputs, out, batch_size=5)
    assert [line["prediction"] for line in read_jsonl(out)] == [5] * 10


def test_kitfile_is_read_by_the_format_parser(tmp_path: Path, inputs: Path) -> None:
    kit = make_kit(tmp_path / "kit")
    kitfile = (kit / "Kitfile").read_text()
    (kit / "Kitfile").write_text(kitfile.replace("  path: model\n", "  path: model\n  bogus: 1\n"))
    with pytest.raises(KitflowError, match=r"line \d+: field bogus not found in type artifact"):
        run(str(kit), inputs, tmp_path / "out.jsonl")
    assert not (tmp_path / "out.jsonl").exists()
