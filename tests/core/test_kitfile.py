"""Kitfile parsing, kit's validation rules and messages, and config/YAML bytes equal to kit's."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
import yaml
from kitflow.errors import KitflowError, NotFoundError, ValidationError
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
    find_kitfile,
    kitfile_from_config,
    kitfile_to_dict,
    kitfile_to_yaml,
    kitfile_warnings,
    layer_entries,
    load_kitfile,
    parse_kitfile,
    validate_kitfile,
    validate_path,
)

DATA = Path(__file__).resolve().parents[1] / "data"
VALIDATION = sorted((DATA / "kitops" / "validation").glob("*.yaml"))
PARAMETERS = sorted((DATA / "kitops" / "parameters").glob("*.yaml"))

# kitflow follows the latest kit validator (pkg/artifact/kitfile.go @ 1abb877). Two upstream
# vectors come from an older validator generation (see testdata/README.md):
#  - bad-manifest-version: the short-lived error "invalid manifestVersion" became the warning
#    "Unrecognized manifestVersion ...: treating Kitfile as 1.0.0", so the Kitfile is accepted;
#  - remote-dataset-must-use-s3: the message now also allows ModelKit references.
LATEST_GENERATION = {
    "bad-manifest-version.yaml": "",
    "remote-dataset-must-use-s3.yaml": (
        r"only S3 URLs and ModelKit references are supported for remote dataset paths"
    ),
}


def kit_error_text(problems: list[str]) -> str:
    """The error kit prints for these problems (sorted, bulleted)."""
    return "errors while validating Kitfile: \n" + "\n".join(f"  * {p}" for p in problems)


@pytest.mark.parametrize("case", VALIDATION, ids=lambda p: p.name)
def test_validation_vectors(case: Path) -> None:
    data = yaml.safe_load(case.read_text())
    regexp = LATEST_GENERATION.get(case.name, data.get("errRegexp") or "")
    problems = validate_kitfile(parse_kitfile(data["kitfile"]))
    if not regexp:
        assert problems == []
    else:
        assert problems, f"expected an error matching {regexp!r}"
        assert re.search(regexp, kit_error_text(problems))
    assert problems == sorted(problems)


def test_older_generation_vectors_are_really_superseded() -> None:
    data = yaml.safe_load((DATA / "kitops/validation/bad-manifest-version.yaml").read_text())
    kf = parse_kitfile(data["kitfile"])
    assert kitfile_warnings(kf) == [
        "Unrecognized manifestVersion v99.99.99: treating Kitfile as 1.0.0"
    ]


@pytest.mark.parametrize("case", PARAMETERS, ids=lambda p: p.name)
def test_parameter_golden_pairs(case: Path) -> None:
    data = yaml.safe_load(case.read_text())
    kf = parse_kitfile(data["kitfileYaml"])
    assert config_bytes(kf) == data["kitfileJson"].encode()
    assert kitfile_to_yaml(kf) == data["kitfileYaml"]


def test_generated_config_vector() -> None:
    context = json.loads((DATA / "generated" / "context.json").read_text())
    kf = parse_kitfile(context["kitfile"])
    layers = context["expected"]["layers"]
    entries = layer_entries(kf)
    assert [e.path for e in entries] == [layer["path"] for layer in layers]
    for entry, layer in zip(entries, layers, strict=True):
        entry.entry.digest = layer["digest"]
        entry.entry.diff_id = layer["diffId"]
    expected = (DATA / "generated" / "config.json").read_bytes()
    assert config_bytes(kf) == expected
    assert kitfile_from_config(expected) == kf
    assert config_bytes(kitfile_from_config(expected)) == expected


def test_placeholder_kitfile_packs_to_minimal_config() -> None:
    assert config_bytes(parse_kitfile("manifestVersion: 1.0.0\n")) == (
        b'{"manifestVersion":"1.0.0","package":{}}'
    )


@pytest.mark.parametrize("fixture", sorted((DATA / "pykitops").iterdir()), ids=lambda p: p.name)
def test_pykitops_fixtures_parse_and_round_trip(fixture: Path) -> None:
    kf = parse_kitfile(fixture.read_text())
    again = parse_kitfile(kitfile_to_yaml(kf))
    assert again == kf
    assert config_bytes(again) == config_bytes(kf)


def test_every_section_is_modelled() -> None:
    text = """\
manifestVersion: 1.0.0
package:
  name: full
  version: 2.0.0
  description: all sections
  license: Apache-2.0
  authors: [Ann, Bob]
model:
  name: m
  path: model/
  license: MIT
  framework: sklearn
  format: joblib
  version: "1"
  description: the model
  parts:
    - name: tok
      path: tokenizer.json
      license: MIT
      type: tokenizer
  parameters:
    inference:
      entrypoint: src/predict.py
code:
  - path: src
    description: code
    license: MIT
datasets:
  - name: train
    path: data/train.csv
    description: training
    license: CC-BY-4.0
    parameters: {rows: 10}
  - name: remote
    path: data/remote
    remotePath: s3://bucket/key
    remoteHash: abc
docs:
  - path: README.md
    description: readme
prompts:
  - name: system
    path: prompts/system.md
    description: prompt
mcpServers:
  - name: tools
    path: tools.mcpb
    description: server
"""
    kf = parse_kitfile(text)
    assert kf.package == Package("full", "2.0.0", "all sections", "Apache-2.0", ["Ann", "Bob"])
    assert kf.model is not None and kf.model.format == "joblib" and kf.model.version == "1"
    assert kf.model.parts == [ModelPart("tok", "tokenizer.json", "MIT", "tokenizer")]
    assert kf.model.parameters == {"inference": {"entrypoint": "src/predict.py"}}
    assert kf.code == [CodeEntry("src", "code", "MIT")]
    assert (
        kf.datasets[1] == DatasetEntry("remote", "data/remote", "s3://bucket/key", "abc")
        and kf.datasets[1].is_remote
    )
    assert kf.docs == [DocsEntry("README.md", "readme")]
    assert kf.prompts == [PromptEntry("system", "prompts/system.md", "prompt")]
    assert kf.mcp_servers == [McpServerEntry("tools", "tools.mcpb", "server")]
    assert validate_kitfile(kf) == []
    kinds = [(e.kind, e.path) for e in layer_entries(kf)]
    assert kinds == [
        ("model", "model/"),
        ("modelpart", "tokenizer.json"),
        ("code", "src"),
        ("dataset", "data/train.csv"),
        ("docs", "README.md"),
        ("prompt", "prompts/system.md"),
        ("mcpserver", "tools.mcpb"),
    ]
    assert layer_entries(kf)[0].clean_path == "model"
    assert parse_kitfile(kitfile_to_yaml(kf)) == kf
    assert list(kitfile_to_dict(kf)) == [
        "manifestVersion", "package", "model", "code", "datasets", "docs", "prompts", "mcpServers"
    ]  # fmt: skip
    # every path entry answers the same questions
    for layer in layer_entries(kf):
        assert isinstance(layer.entry.name, str) and isinstance(layer.entry.license, str)
        assert isinstance(layer.entry.description, str)


def test_model_reference_gets_no_layer() -> None:
    kf = parse_kitfile("manifestVersion: 1.0.0\nmodel:\n  path: ghcr.io/org/base:v1\n")
    assert kf.model is not None and kf.model.is_reference
    assert layer_entries(kf) == []
    assert validate_kitfile(kf) == []


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        ("manifestVersion: 1.0.0\nmodle:\n  path: x\n",
         "line 2: field modle not found in type artifact.KitFile"),
        ("manifestVersion: 1.0.0\nmodel:\n  path: x\n  weights: y\n",
         "line 4: field weights not found in type artifact.Model"),
        ("manifestVersion: 1.0.0\ncode:\n  - path: src\n    name: c\n",
         "line 4: field name not found in type artifact.Code"),
        ("manifestVersion: 1.0.0\npackage:\n  authors: [a, {b: c}]\n",
         "line 3: cannot unmarshal !!map into string"),
        ("manifestVersion: 1.0.0\ncode: src\n",
         "line 2: cannot unmarshal !!str `src` into []artifact.Code"),
        ("manifestVersion: 1.0.0\npackage: [a]\n",
         "line 2: cannot unmarshal !!seq into artifact.Package"),
        ("- a\n", "line 1: cannot unmarshal !!seq into artifact.KitFile"),
        ("manifestVersion: 1.0.0\nmanifestVersion: 1.0.0\n",
         'line 2: mapping key "manifestVersion" already defined at line 1'),
        ("manifestVersion: [\n", "yaml: line 2: did not find expected node content"),
        ("", "Kitfile is empty"),
        ("# only a comment\n", "Kitfile is empty"),
    ],
)  # fmt: skip
def test_structural_problems_name_key_and_line(text: str, problem: str) -> None:
    with pytest.raises(ValidationError) as info:
        parse_kitfile(text, source="Kitfile")
    assert problem in info.value.problems
    assert str(info.value).startswith("invalid Kitfile: ")


def test_all_structural_problems_are_reported_together() -> None:
    with pytest.raises(ValidationError) as info:
        parse_kitfile("manifestVersion: 1.0.0\nfoo: 1\nmodel:\n  bar: 2\n")
    assert info.value.problems == [
        "line 2: field foo not found in type artifact.KitFile",
        "line 4: field bar not found in type artifact.Model",
    ]


def test_yaml_value_rules_follow_yaml_v3() -> None:
    kf = parse_kitfile(
        """\
manifestVersion: 1.0
package:
  name: yes
  version: 1.10
  description: ~
model:
  path: m
  parameters:
    octal: 0777
    hex: 0xFF
    bin: 0b101
    under: 1_000
    big: 18446744073709551615
    huge: 1e400
    float: 1.2e3
    yes: yes
    on: off
    date: 2024-01-02
    nul: null
    tilde: ~
    str: "123"
    inf: .inf
"""
    )
    assert kf.manifest_version == "1.0"  # string fields keep the source text
    assert kf.package.name == "yes" and kf.package.version == "1.10"
    assert kf.package.description == ""
    assert kf.model is not None
    assert kf.model.parameters == {
        "octal": 511,
        "hex": 255,
        "bin": 5,
        "under": 1000,
        "big": 18446744073709551615,
        "huge": "1e400",
        "float": 1200.0,
        "yes": "yes",
        "on": "off",
        "date": "2024-01-02",
        "nul": None,
        "tilde": None,
        "str": "123",
        "inf": float("inf"),
    }
    # .inf cannot be stored in JSON: kit's pack would fail, so validation says so up front
    problems = validate_kitfile(kf)
    assert len(problems) == 1 and problems[0].startswith("model parameters cannot be stored")
    with pytest.raises(KitflowError):
        config_bytes(kf)


def test_merge_keys_and_aliases() -> None:
    kf = parse_kitfile(
        """\
manifestVersion: 1.0.0
model:
  path: m
  parameters:
    base: &base {lr: 0.1, epochs: 3}
    run:
      <<: *base
      epochs: 5
"""
    )
    assert kf.model is not None
    assert kf.model.parameters["run"] == {"lr": 0.1, "epochs": 5}


def test_billion_laughs_is_refused_not_expanded() -> None:
    lines = ["manifestVersion: 1.0.0", "model:", "  path: m", "  parameters:", "    a0: &a0 [x]"]
    for i in range(1, 30):
        lines.append(f"    a{i}: &a{i} [" + ", ".join([f"*a{i - 1}"] * 10) + "]")
    with pytest.raises(ValidationError) as info:
        parse_kitfile("\n".join(lines) + "\n")
    assert "excessive aliasing" in str(info.value)


def test_yaml_output_quoting_matches_yaml_v3() -> None:
    kf = Kitfile(
        manifest_version="1.0.0",
        package=Package(name="true", version="1.0", description="a: b", authors=["x, y", "z"]),
        model=Model(
            path="#model",
            description="line one\nline two\n",
            license=" lead",
            parameters={"a10": 1, "a9": 2.5, "a1": "2024-01-02", "yes": "no", "t": "a\tb"},
        ),
        docs=[DocsEntry(path="")],
    )
    expected = """\
manifestVersion: 1.0.0
package:
  name: "true"
  version: "1.0"
  description: 'a: b'
  authors: ['x, y', z]
model:
  path: '#model'
  license: ' lead'
  description: |
    line one
    line two
  parameters:
    a1: "2024-01-02"
    a9: 2.5
    a10: 1
    t: "a\\tb"
    "yes": "no"
docs:
  - path: ""
"""
    assert kitfile_to_yaml(kf) == expected


def test_unpack_yaml_uses_float_numbers_from_the_config() -> None:
    kf = parse_kitfile("manifestVersion: 1.0.0\nmodel:\n  path: m\n  parameters: {rows: 1000000}\n")
    assert "rows: 1000000\n" in kitfile_to_yaml(kf)
    # kit unpacks from the JSON config, where numbers are float64: yaml.v3 then writes 1e+06
    assert "rows: 1e+06\n" in kitfile_to_yaml(kitfile_from_config(config_bytes(kf)))


def test_yaml_omits_empty_package_but_json_keeps_it() -> None:
    kf = Kitfile(manifest_version="1.0.0", model=Model())
    assert kitfile_to_yaml(kf) == "manifestVersion: 1.0.0\nmodel: {}\n"
    assert config_bytes(kf) == b'{"manifestVersion":"1.0.0","package":{},"model":{}}'


def test_config_with_bad_types_is_a_user_error() -> None:
    for data in (b"not json", b"[]", b'{"package": {"name": 3}}', b'{"code": {}}'):
        with pytest.raises(KitflowError):
            kitfile_from_config(data)


def test_find_and_load(tmp_path: Path) -> None:
    with pytest.raises(NotFoundError):
        find_kitfile(tmp_path)
    (tmp_path / ".kitfile").write_text("manifestVersion: 1.0.0\n")
    assert find_kitfile(tmp_path).name == ".kitfile"
    (tmp_path / "Kitfile").write_text("manifestVersion: 1.0.0\ncode:\n  - path: src\n")
    assert find_kitfile(tmp_path).name == "Kitfile"
    assert load_kitfile(tmp_path).code == [CodeEntry("src")]
    assert validate_path(tmp_path) == ["path src does not exist"]
    (tmp_path / "src").mkdir()
    assert validate_path(tmp_path) == []
    (tmp_path / "Kitfile").write_text("manifestVersion: 1.0.0\ncode:\n  - path: /src\n")
    with pytest.raises(ValidationError, match="absolute paths are not supported"):
        load_kitfile(tmp_path / "Kitfile", validate=True)
    assert load_kitfile(tmp_path).code == [CodeEntry("/src")]  # structural parse only


def test_validate_path_never_raises_for_odd_inputs(tmp_path: Path) -> None:
    assert validate_path(tmp_path / "missing") != []
    assert validate_path(tmp_path) != []  # no Kitfile in the directory
    (tmp_path / "Kitfile").write_bytes(b"\xff\xfe\x00")
    assert validate_path(tmp_path) == ["not valid UTF-8 (byte 0)"]
    sub = tmp_path / "dir"
    (sub / "Kitfile").mkdir(parents=True)
    assert validate_path(sub / "Kitfile") != []


def test_duplicate_paths_are_cleaned_and_listed_in_order() -> None:
    kf = parse_kitfile(
        "manifestVersion: 1.0.0\nmodel:\n  name: m\n  path: ./x/\ncode:\n  - path: x\n"
        "datasets:\n  - path: a/../x\n"
    )
    assert validate_kitfile(kf) == ["model m, code layer 0 and dataset layer 0 use the same path x"]


def test_kitfile_to_dict_emits_digests_last() -> None:
    kf = Kitfile(manifest_version="1.0.0", docs=[DocsEntry("", "d", "sha256:a", "sha256:b")])
    assert kitfile_to_dict(kf)["docs"] == [
        {"path": "", "description": "d", "digest": "sha256:a", "diffId": "sha256:b"}
    ]


def test_duplicate_keys_inside_parameters_are_refused() -> None:
    with pytest.raises(ValidationError) as info:
        parse_kitfile("model:\n  parameters:\n    a: 1\n    b: 2\n    a: 3\n")
    assert info.value.problems == ['line 5: mapping key "a" already defined at line 3']


def test_long_and_multiline_keys_use_complex_key_syntax() -> None:
    key = "k" * 200
    kf = Kitfile(
        manifest_version="1.0.0",
        model=Model(path="m", parameters={key: {"x": [1, {key: "v"}]}, "two\nlines": 1}),
    )
    text = kitfile_to_yaml(kf)
    assert f"    ? {key}\n    : x:\n" in text
    assert "    ? |-\n      two\n      lines\n    : 1\n" in text
    assert parse_kitfile(text) == kf
