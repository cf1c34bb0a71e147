"""Pieces of the registry transport that the end-to-end tests do not isolate: Argo's two
aggregation shapes, the worst-case size of the gather step's argument, pinned references."""

from __future__ import annotations

import json

import pytest
from kitflow.errors import KitflowError
from kitflow.inference.argo import transport
from kitflow.inference.argo.pod import parse_summaries
from kitflow.inference.argo.workflow import MAX_SHARDS

DIGEST = "sha256:" + "f" * 64


def _result(i: int) -> transport.ShardResult:
    return transport.ShardResult(i, DIGEST, 987_654_321, 10_000, 12345.6789, 12000.1234)


def test_parse_results_accepts_objects_and_json_strings_in_any_order() -> None:
    items = [_result(2).to_json(), _result(0).to_json(), _result(1).to_json()]
    as_objects = json.dumps(items)
    as_strings = json.dumps([json.dumps(i) for i in items])
    for text in (as_objects, as_strings):
        assert [r.shard for r in transport.parse_results(text)] == [0, 1, 2]
    with pytest.raises(KitflowError, match="not JSON"):
        transport.parse_results("[{broken")


def test_worst_case_gather_argument_fits_one_exec_argument() -> None:
    # Linux limits a single argv string to 128 KiB (MAX_ARG_STRLEN).
    text = json.dumps([_result(i).to_json() for i in range(MAX_SHARDS)])
    assert len(text.encode()) < 128 * 1024


def test_split_reference_needs_a_digest() -> None:
    assert transport.split_reference(f"r.io/a/b@{DIGEST}") == ("r.io/a/b", DIGEST)
    with pytest.raises(KitflowError, match="not pinned"):
        transport.split_reference("r.io/a/b:latest")


def test_parse_summaries_both_shapes() -> None:
    s = {"kit": f"r/x@{DIGEST}", "results": f"r/x@{DIGEST}", "records": 3}
    assert parse_summaries(json.dumps([s, json.dumps(s)])) == [s, s]
