"""Fuzz-style properties: no Kitfile text, however broken, produces a traceback, and what kitflow
writes (YAML and config JSON) reads back to the same Kitfile."""

from __future__ import annotations

import contextlib
import tempfile
from pathlib import Path
from typing import Any

import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from kitflow.errors import KitflowError
from kitflow.format.kitfile import (
    CodeEntry,
    DatasetEntry,
    DocsEntry,
    Kitfile,
    McpServerEntry,
    Model,
    ModelPart,
    Package,
    PromptEntry,
    config_bytes,
    kitfile_from_config,
    kitfile_to_yaml,
    parse_kitfile,
    validate_kitfile,
    validate_path,
)

KEYS = [
    "manifestVersion", "package", "model", "code", "datasets", "docs", "prompts", "mcpServers",
    "name", "path", "version", "authors", "parts", "type", "parameters", "remotePath",
    "remoteHash", "license", "description", "format", "framework", "<<", "unknown",
]  # fmt: skip
SCALARS = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(),
    st.floats(),
    st.text(max_size=20),
    st.sampled_from(["~", "1.0", "0777", "yes", "s3://b/k", "http://x", "/abs", "../up", "a:b"]),
)
YAML_TREES = st.recursive(
    SCALARS,
    lambda children: (
        st.lists(children, max_size=4)
        | st.dictionaries(st.sampled_from(KEYS) | st.text(max_size=8), children, max_size=5)
    ),
    max_leaves=25,
)


def check_text(text: str) -> None:
    """Parsing plus validation either succeeds or raises a KitflowError, nothing else."""
    try:
        kf = parse_kitfile(text)
    except KitflowError:
        return
    problems = validate_kitfile(kf)
    assert isinstance(problems, list) and all(isinstance(p, str) for p in problems)
    if not problems:
        with contextlib.suppress(KitflowError):
            config_bytes(kf)
        kitfile_to_yaml(kf)


@settings(max_examples=300, deadline=None)
@given(st.text(max_size=300))
def test_random_text_never_raises_anything_but_kitflow_errors(text: str) -> None:
    check_text(text)


@settings(max_examples=150, deadline=None)
@given(st.dictionaries(st.sampled_from(KEYS), YAML_TREES, max_size=8))
def test_random_yaml_structures_never_raise_anything_but_kitflow_errors(tree: Any) -> None:
    text = yaml.safe_dump(tree, allow_unicode=True)
    check_text(text)
    # the same structure in flow style and with the document broken at a random place
    check_text(yaml.safe_dump(tree, default_flow_style=True))
    check_text(text[: len(text) // 2])


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.binary(max_size=200))
def test_validate_path_returns_problems_for_any_bytes(data: bytes) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "Kitfile"
        path.write_bytes(data)
        problems = validate_path(tmp)
        assert isinstance(problems, list) and all(isinstance(p, str) for p in problems)


# --- round trips --------------------------------------------------------------------------

TEXT = st.text(st.characters(exclude_categories=("Cs",)), max_size=12)
PARAMS = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**63), max_value=2**63 - 1)
    | st.floats(allow_nan=False, allow_infinity=False)
    | TEXT,
    lambda children: st.lists(children, max_size=3) | st.dictionaries(TEXT, children, max_size=3),
    max_leaves=10,
)
OPTIONAL_PARAMS = st.none() | PARAMS

kitfiles = st.builds(
    Kitfile,
    manifest_version=TEXT,
    package=st.builds(
        Package,
        name=TEXT,
        version=TEXT,
        description=TEXT,
        license=TEXT,
        authors=st.lists(TEXT, max_size=3),
    ),
    model=st.none()
    | st.builds(
        Model,
        name=TEXT,
        path=TEXT,
        license=TEXT,
        framework=TEXT,
        format=TEXT,
        version=TEXT,
        description=TEXT,
        parts=st.lists(st.builds(ModelPart, name=TEXT, path=TEXT, license=TEXT, type=TEXT),
                       max_size=2),
        parameters=OPTIONAL_PARAMS,
    ),
    code=st.lists(st.builds(CodeEntry, path=TEXT, description=TEXT, license=TEXT), max_size=2),
    datasets=st.lists(
        st.builds(
            DatasetEntry,
            name=TEXT,
            path=TEXT,
            remote_path=TEXT,
            remote_hash=TEXT,
            description=TEXT,
            license=TEXT,
            parameters=OPTIONAL_PARAMS,
        ),
        max_size=2,
    ),
    docs=st.lists(st.builds(DocsEntry, path=TEXT, description=TEXT), max_size=2),
    prompts=st.lists(st.builds(PromptEntry, name=TEXT, path=TEXT, description=TEXT), max_size=2),
    mcp_servers=st.lists(
        st.builds(McpServerEntry, name=TEXT, path=TEXT, description=TEXT), max_size=2
    ),
)  # fmt: skip


def normalise_floats(value: Any) -> Any:
    """Integral floats below 1e6 as the ints they read back as after a YAML round trip."""
    if isinstance(value, float) and value.is_integer() and abs(value) < 1e6:
        return int(value)
    if isinstance(value, dict):
        return {k: normalise_floats(v) for k, v in value.items()}
    if isinstance(value, list):
        return [normalise_floats(v) for v in value]
    return value


@settings(max_examples=200, deadline=None)
@given(kitfiles)
def test_yaml_written_by_kitflow_reads_back_identically(kf: Kitfile) -> None:
    # yaml.v3 writes integral floats like ints (1.0 -> 1, -0.0 -> -0), which read back as ints
    if kf.model is not None:
        kf.model.parameters = normalise_floats(kf.model.parameters)
    for ds in kf.datasets:
        ds.parameters = normalise_floats(ds.parameters)
    text = kitfile_to_yaml(kf)
    again = parse_kitfile(text)
    assert again == kf, text
    assert kitfile_to_yaml(again) == text


@settings(max_examples=100, deadline=None)
@given(kitfiles)
def test_config_json_reads_back_to_the_same_bytes(kf: Kitfile) -> None:
    data = config_bytes(kf)
    # Go reads JSON numbers as float64 (as kit does), so integers beyond 2**53 may round once;
    # after that the bytes are stable.
    again = config_bytes(kitfile_from_config(data))
    assert config_bytes(kitfile_from_config(again)) == again
