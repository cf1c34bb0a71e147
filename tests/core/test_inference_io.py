"""Inputs and outputs of inference: the job model's parsing rules, sharding by line ranges
(blank lines, order, positions), CSV conversion, the output line rule and JSON conversion."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from kitflow.errors import KitflowError, NotFoundError
from kitflow.inference import io
from kitflow.inference.job import EntrypointSpec, InferenceJob, InputSpec, detect_format
from support.inference_kits import write_jsonl


def test_entrypoint_forms() -> None:
    assert EntrypointSpec.parse("src/predict.py") == EntrypointSpec("python", path="src/predict.py")
    cmd = EntrypointSpec.parse("python score.py --in {input} --out {output}")
    assert cmd.kind == "command"
    assert cmd.command == ("python", "score.py", "--in", "{input}", "--out", "{output}")
    assert EntrypointSpec.parse('["./run", "{input}", "{output}"]').command == (
        "./run",
        "{input}",
        "{output}",
    )
    spec = EntrypointSpec.parse(
        {"entrypoint": "src/p.py", "requirements": "requirements.txt", "batchSize": 64}
    )
    assert (spec.path, spec.requirements, spec.batch_size) == ("src/p.py", "requirements.txt", 64)
    assert EntrypointSpec.parse({"command": ["bin/x", "{input}", "{output}"]}).kind == "command"
    assert EntrypointSpec.parse(spec.to_dict()) == spec


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ({"entrypoint": "a.py", "command": ["x"]}, "exactly one"),
        ({}, "exactly one"),
        ({"entrypoint": "a.py", "colour": "red"}, "unknown key(s) colour"),
        ({"command": ["score", "{input}"]}, "{input} and {output}"),
        ("/abs/predict.py", "relative path inside the ModelKit"),
        ("../outside.py", "relative path inside the ModelKit"),
        ({"entrypoint": "python run.py {input} {output}"}, "must name a .py file"),
        ({"entrypoint": "a.py", "batchSize": 0}, "positive integer"),
        (42, "expected a .py path"),
    ],
)
def test_entrypoint_errors(value: object, message: str) -> None:
    with pytest.raises(KitflowError, match=message.replace("(", r"\(").replace(")", r"\)")):
        EntrypointSpec.parse(value)


def test_job_checks() -> None:
    with pytest.raises(KitflowError, match="exactly one input"):
        InputSpec()
    with pytest.raises(KitflowError, match="exactly one input"):
        InputSpec(path=Path("x.jsonl"), dataset="d")
    inputs = InputSpec(path=Path("x.jsonl"))
    with pytest.raises(KitflowError, match="--shards"):
        InferenceJob(references=("a",), inputs=inputs, shards=0)
    with pytest.raises(KitflowError, match="--batch-size"):
        InferenceJob(references=("a",), inputs=inputs, batch_size=0)
    with pytest.raises(KitflowError, match="at least one ModelKit"):
        InferenceJob(references=(), inputs=inputs)
    job = InferenceJob(references=("a", "b"), inputs=inputs)
    assert job.comparison
    assert json.dumps(job.to_dict())
    assert detect_format("x.CSV") == "csv"
    assert detect_format("x.parquet") == "parquet"
    assert detect_format("x.txt") == "jsonl"


def test_plan_shards_covers_every_record_once_in_order(tmp_path: Path) -> None:
    records = [{"id": i, "text": f"t{i}"} for i in range(23)]
    path = write_jsonl(tmp_path / "in.jsonl", records, blank_after={0, 7, 8, 22})
    prepared = io.prepare_input(path)
    assert prepared.records == 23
    for shards in (1, 2, 3, 5, 23, 40):
        spans = io.plan_shards(prepared, shards)
        assert len(spans) == min(shards, 23)
        assert [s.index for s in spans] == list(range(len(spans)))
        sizes = [s.count for s in spans]
        assert max(sizes) - min(sizes) <= 1
        seen = [rec for span in spans for _, rec in io.iter_records(prepared.path, span)]
        assert seen == records
    # line numbers count blank lines: record 1 is on line 3 (line 2 is blank)
    lines = [ln for span in io.plan_shards(prepared, 4) for ln, _ in io.iter_records(path, span)]
    assert lines[:3] == [1, 3, 4]
    text = path.read_text().splitlines()
    for line_no, record in zip(lines, records, strict=True):
        assert json.loads(text[line_no - 1]) == record


def test_batches_and_empty_input(tmp_path: Path) -> None:
    path = write_jsonl(tmp_path / "in.jsonl", list(range(10)))
    span = io.plan_shards(io.prepare_input(path), 1)[0]
    batches = list(io.iter_batches(path, span, 4))
    assert [len(records) for _, records in batches] == [4, 4, 2]
    assert batches[1] == ([5, 6, 7, 8], [4, 5, 6, 7])
    empty = tmp_path / "empty.jsonl"
    empty.write_text("\n\n")
    assert io.plan_shards(io.prepare_input(empty), 3) == []


def test_invalid_json_line_names_the_line(tmp_path: Path) -> None:
    path = tmp_path / "in.jsonl"
    path.write_text('{"a": 1}\n{"a": 2\n')
    span = io.plan_shards(io.prepare_input(path), 1)[0]
    with pytest.raises(io.RecordError) as info:
        list(io.iter_records(path, span))
    assert info.value.line == 2
    assert "not valid JSON" in info.value.message


def test_csv_is_converted_and_positions_are_rows(tmp_path: Path) -> None:
    source = tmp_path / "rows.csv"
    source.write_text('id,text\n1,"hello, world"\n2,"multi\nline"\n3,bye\n')
    prepared = io.prepare_input(source, workdir=tmp_path / "work")
    assert prepared.records == 3
    assert prepared.unit == "row"
    assert prepared.position(2) == "rows.csv row 2"
    span = io.plan_shards(prepared, 1)[0]
    records = [r for _, r in io.iter_records(prepared.path, span)]
    assert records == [
        {"id": "1", "text": "hello, world"},
        {"id": "2", "text": "multi\nline"},
        {"id": "3", "text": "bye"},
    ]


def test_parquet_input(tmp_path: Path) -> None:
    source = tmp_path / "rows.parquet"
    try:
        import pyarrow as pa  # type: ignore[import-not-found]
        import pyarrow.parquet as pq  # type: ignore[import-not-found]
    except ImportError:
        source.write_bytes(b"PAR1")
        with pytest.raises(KitflowError, match=r"needs pyarrow: pip install 'kitflow\[parquet\]'"):
            io.prepare_input(source, workdir=tmp_path)
        return
    pq.write_table(pa.table({"id": [1, 2], "text": ["a", "b"]}), source)
    prepared = io.prepare_input(source, workdir=tmp_path)
    assert prepared.records == 2
    span = io.plan_shards(prepared, 1)[0]
    assert [r for _, r in io.iter_records(prepared.path, span)][1] == {"id": 2, "text": "b"}


def test_missing_input_file(tmp_path: Path) -> None:
    with pytest.raises(NotFoundError, match="does not exist"):
        io.prepare_input(tmp_path / "nope.jsonl")


def test_output_record_rule() -> None:
    assert io.output_record({"id": 7, "text": "x"}, "pos") == {"id": 7, "prediction": "pos"}
    assert io.output_record({"text": "x"}, "pos") == {"prediction": "pos"}
    assert io.output_record("just text", 1) == {"prediction": 1}
    assert io.output_record({"key": "k1", "id": 3}, 0, "key") == {"key": "k1", "prediction": 0}


def test_numpy_predictions_become_json() -> None:
    assert io.as_list(np.array([1, 2])) == [1, 2]
    assert io.dumps({"p": np.float32(0.5), "v": np.arange(2), "s": {3}}) == (
        '{"p":0.5,"v":[0,1],"s":[3]}'
    )
    assert io.dumps("héllo") == '"héllo"'
    with pytest.raises(TypeError):
        io.as_list("abc")
    with pytest.raises(TypeError):
        io.dumps(object())


def test_find_dataset_file(tmp_path: Path) -> None:
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "in.jsonl").write_text("{}\n")
    assert io.find_dataset_file(tmp_path, "data", "d") == tmp_path / "data" / "in.jsonl"
    assert io.find_dataset_file(tmp_path, "data/in.jsonl", "d") == tmp_path / "data" / "in.jsonl"
    (tmp_path / "data" / "more.csv").write_text("a\n1\n")
    with pytest.raises(KitflowError, match="several input files"):
        io.find_dataset_file(tmp_path, "data", "d")
    with pytest.raises(NotFoundError):
        io.find_dataset_file(tmp_path, "missing", "d")


def test_count_records_across_block_boundaries(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(io, "_COPY_CHUNK", 7)  # lines and blank runs straddle every block
    text = '{"a": 1}\n\n  \n[1, 2, 3]\n\t\n"a long string line"\n\r\n5\n  7  '
    path = tmp_path / "in.jsonl"
    path.write_text(text)
    expected = sum(1 for line in text.split("\n") if line.strip())
    assert io.count_records(path) == expected == 5


@pytest.mark.parametrize("block", [5, 16, 1 << 20])
def test_reading_across_blocks_with_odd_lines(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, block: int
) -> None:
    monkeypatch.setattr(io, "_COPY_CHUNK", block)
    lines = [
        '{"id": 1, "text": "a fairly long line that spans several small blocks"}',
        "",
        "   ",
        '{"id": 2}\r',  # CRLF
        '  {"id": 3}  ',  # spaces around
        '"plain"',
        "",
        '{"id": 4, "text": "h\\u00e9llo"}',
        "[1, 2]",  # last line without a newline
    ]
    path = tmp_path / "in.jsonl"
    path.write_text("\n".join(lines))
    prepared = io.prepare_input(path)
    assert prepared.records == 6
    expected = [
        (1, {"id": 1, "text": "a fairly long line that spans several small blocks"}),
        (4, {"id": 2}),
        (5, {"id": 3}),
        (6, "plain"),
        (8, {"id": 4, "text": "héllo"}),
        (9, [1, 2]),
    ]
    for shards in (1, 2, 4):
        got = []
        for span in io.plan_shards(prepared, shards):
            for line_numbers, records in io.iter_batches(path, span, 2):
                got.extend(zip(line_numbers, records, strict=True))
        assert got == expected


def test_invalid_utf8_names_the_line(tmp_path: Path) -> None:
    path = tmp_path / "in.jsonl"
    path.write_bytes(b'{"a": 1}\n{"a": "\xff"}\n{"a": 3}\n')
    span = io.plan_shards(io.prepare_input(path), 1)[0]
    with pytest.raises(io.RecordError) as info:
        list(io.iter_batches(path, span, 10))
    assert info.value.line == 2
    assert "not UTF-8" in info.value.message
