"""kit's unpack filter syntax, its error messages and how filters select Kitfile entries."""

from __future__ import annotations

from types import SimpleNamespace

import pytest
from kitflow.errors import KitflowError
from kitflow.ops.unpack import (
    FilterConf,
    parent_filters,
    parse_filter,
    parse_filters,
    wants_entry,
    wants_kitfile,
)


def test_parse_types_and_ids() -> None:
    assert parse_filter("model") == FilterConf(("model",))
    assert parse_filter("model,datasets") == FilterConf(("model", "datasets"))
    assert parse_filter("datasets:train,./data/val.csv") == FilterConf(
        ("datasets",), ("train", "./data/val.csv")
    )
    assert parse_filters(["kitfile", "docs:README.md"]) == [
        FilterConf(("kitfile",)),
        FilterConf(("docs",), ("README.md",)),
    ]
    assert parse_filter("prompts,mcpservers").types == ("prompts", "mcpservers")


def test_parse_errors_use_kits_messages() -> None:
    with pytest.raises(KitflowError) as err:
        parse_filter("model:a:b")
    assert str(err.value) == (
        "invalid filter: should be in format <type1>,<type2>[:<filter1>,<filter2>]"
    )
    with pytest.raises(KitflowError) as err:
        parse_filter("dataset")
    assert str(err.value) == (
        "invalid filter type dataset (must be one of kitfile, model, datasets, code, prompts, "
        "docs, mcpservers)"
    )
    with pytest.raises(KitflowError, match="invalid filter type"):
        parse_filter("")


def entry(name: str | None = None, path: str = "x") -> SimpleNamespace:
    return SimpleNamespace(name=name, path=path)


def test_entry_selection_by_type_name_and_path() -> None:
    train = entry("train", "data/train.csv")
    assert wants_entry("dataset", train, [])  # no filters: everything
    assert wants_entry("dataset", train, parse_filters(["datasets"]))
    assert wants_entry("dataset", train, parse_filters(["datasets:train"]))
    assert wants_entry("dataset", train, parse_filters(["datasets:data/train.csv"]))
    assert not wants_entry("dataset", train, parse_filters(["datasets:./data/train.csv"]))
    assert not wants_entry("dataset", train, parse_filters(["model"]))
    # model parts are covered by the model filter; any filter matching is enough
    assert wants_entry("modelpart", entry("tok", "tokenizer"), parse_filters(["model"]))
    assert wants_entry("docs", entry(None, "README.md"), parse_filters(["model", "docs"]))
    assert wants_entry("prompt", entry(None, "p.md"), parse_filters(["prompts:p.md"]))
    assert not wants_entry("code", entry(None, "src"), parse_filters(["prompts"]))


def test_kitfile_only_without_filters_or_when_named() -> None:
    assert wants_kitfile([])
    assert wants_kitfile(parse_filters(["model", "kitfile"]))
    assert not wants_kitfile(parse_filters(["model,datasets"]))


def test_parent_filters_keep_only_the_model() -> None:
    assert parent_filters([]) == [FilterConf(("model",))]
    assert parent_filters(parse_filters(["model,code:m"])) == [FilterConf(("model",), ("m",))]
    assert parent_filters(parse_filters(["datasets"])) is None
