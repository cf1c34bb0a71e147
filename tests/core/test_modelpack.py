"""ModelPack: Kitfile synthesis from manifests without a Kitfile (kit's vectors) and the
config written by --use-model-pack (checked against the model-spec JSON schema)."""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path

import jsonschema
import pytest
import yaml
from kitflow.errors import KitflowError
from kitflow.format.descriptor import Descriptor, Manifest
from kitflow.format.kitfile import kitfile_from_config, parse_kitfile
from kitflow.format.mediatypes import (
    ANNOTATION_KITFILE,
    KIT_ARTIFACT_TYPE,
    KIT_CONFIG,
    MODELPACK_ARTIFACT_TYPE,
    MODELPACK_CONFIG,
)
from kitflow.format.modelpack import (
    collect_licenses,
    go_time,
    kitfile_for_manifest,
    modelpack_config,
    modelpack_config_bytes,
    synthesize_kitfile,
)

DATA = Path(__file__).resolve().parents[1] / "data"
CASES = sorted((DATA / "kitops" / "modelpack-kitfile-generation").glob("*.yaml"))
SCHEMA = json.loads((DATA / "model-spec" / "config-schema.json").read_text())


@pytest.mark.parametrize("case", CASES, ids=lambda p: p.name)
def test_kit_generation_vectors(case: Path) -> None:
    data = yaml.safe_load(case.read_text())
    manifest = Manifest.from_bytes(data["manifestJson"].encode())
    config = data["configJson"].encode() if data.get("configJson") else None
    if data.get("errRegexp"):
        with pytest.raises(KitflowError) as info:
            synthesize_kitfile(manifest, config)
        assert re.search(data["errRegexp"], str(info.value))
    else:
        # kit compares the structs (an absent package equals an empty one)
        expected = kitfile_from_config(data["kitfileJson"])
        assert synthesize_kitfile(manifest, config) == expected


def _packed_kitfile() -> object:
    kf = parse_kitfile(
        """\
manifestVersion: 1.0.0
package:
  name: demo
  version: 1.2.3
  description: A demo
  license: Apache-2.0
  authors: [Jane]
model:
  path: model.joblib
  format: joblib
  license: MIT
  parts:
    - path: tokenizer.json
      license: MIT
datasets:
  - path: data.csv
    license: CC-BY-4.0
code:
  - path: src
    license: Apache-2.0
"""
    )
    return kf


def test_config_is_valid_against_model_spec_schema() -> None:
    kf = _packed_kitfile()
    diff_ids = ["sha256:" + c * 64 for c in "abcd"]
    created = go_time(datetime(2026, 1, 2, 3, 4, 5, 120000, tzinfo=UTC))
    data = modelpack_config_bytes(kf, diff_ids, created)  # type: ignore[arg-type]
    obj = json.loads(data)
    jsonschema.validate(obj, SCHEMA, format_checker=jsonschema.FormatChecker())
    assert data == (
        b'{"descriptor":{"createdAt":"2026-01-02T03:04:05.12Z","authors":["Jane"],"name":"demo",'
        b'"version":"1.2.3","licenses":["Apache-2.0","CC-BY-4.0","MIT"],"title":"demo",'
        b'"description":"A demo"},"modelfs":{"type":"layers","diffIds":["sha256:'
        + b"a" * 64
        + b'","sha256:'
        + b"b" * 64
        + b'","sha256:'
        + b"c" * 64
        + b'","sha256:'
        + b"d" * 64
        + b'"]},"config":{"format":"joblib"}}'
    )


def test_minimal_config_is_valid_too() -> None:
    kf = parse_kitfile("manifestVersion: 1.0.0\ncode:\n  - path: src\n")
    obj = modelpack_config(kf, ["sha256:" + "1" * 64], go_time())
    jsonschema.validate(obj, SCHEMA)
    assert obj["config"] == {} and "name" not in obj["descriptor"]


def test_config_refuses_what_model_spec_cannot_hold() -> None:
    kf = parse_kitfile("manifestVersion: 1.0.0\nmcpServers:\n  - name: t\n    path: t.mcpb\n")
    with pytest.raises(KitflowError, match="mcpServers are not supported"):
        modelpack_config_bytes(kf, ["sha256:" + "1" * 64], go_time())
    with pytest.raises(KitflowError, match="at least one layer"):
        modelpack_config_bytes(parse_kitfile("manifestVersion: 1.0.0\n"), [], go_time())


def test_licenses_are_sorted_and_unique() -> None:
    assert collect_licenses(_packed_kitfile()) == ["Apache-2.0", "CC-BY-4.0", "MIT"]  # type: ignore[arg-type]


def test_go_time_format() -> None:
    assert go_time(datetime(2026, 4, 16, 12, 34, 56, tzinfo=UTC)) == "2026-04-16T12:34:56Z"
    plus2 = timezone(timedelta(hours=2))
    assert go_time(datetime(2026, 4, 16, 12, 0, 0, 500, tzinfo=plus2)) == (
        "2026-04-16T12:00:00.0005+02:00"
    )


def test_kitfile_for_manifest_prefers_the_annotation() -> None:
    config = Descriptor(MODELPACK_CONFIG, "sha256:" + "0" * 64, 2)
    layer = Descriptor(
        "application/vnd.cncf.model.weight.v1.tar",
        "sha256:" + "1" * 64,
        10,
        {"org.cncf.model.filepath": "weights.bin"},
    )
    annotated = Manifest(
        config,
        [layer],
        {ANNOTATION_KITFILE: '{"manifestVersion":"1.0.0","package":{"name":"x"}}'},
        MODELPACK_ARTIFACT_TYPE,
    )
    assert kitfile_for_manifest(annotated).package.name == "x"
    bare = Manifest(config, [layer], {}, MODELPACK_ARTIFACT_TYPE)
    kf = kitfile_for_manifest(bare)
    assert kf.model is not None and kf.model.path == "weights.bin"
    kit = Manifest(Descriptor(KIT_CONFIG, "sha256:" + "0" * 64, 2), [], {}, KIT_ARTIFACT_TYPE)
    assert kitfile_for_manifest(kit, b'{"manifestVersion":"1.0.0"}').manifest_version == "1.0.0"
    with pytest.raises(KitflowError):
        kitfile_for_manifest(kit)
