""".kitignore matching (moby patternmatcher semantics) and which files land in which layer,
checked against kit's pack/unpack functional cases."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml
from kitflow.errors import KitflowError
from kitflow.format.ignore import IgnorePaths, PatternMatcher, go_clean, parse_ignore_file
from kitflow.format.tarwriter import walk_layer

CASES = Path(__file__).resolve().parent.parent / "data" / "kitops" / "pack-unpack"


def _layer_paths(kitfile: dict[str, Any]) -> list[str]:
    """Layer paths in kit's order (model, parts, code, datasets, docs, prompts)."""
    paths: list[str] = []
    model = kitfile.get("model") or {}
    if model.get("path"):
        paths.append(model["path"])
    paths += [p["path"] for p in model.get("parts") or []]
    for section in ("code", "datasets", "docs", "prompts"):
        paths += [e["path"] for e in kitfile.get(section) or []]
    return paths


def _build(case: dict[str, Any], ctx: Path) -> list[str]:
    for rel in (case.get("files") or []) + (case.get("ignored") or []):
        path = ctx / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(f"content of {rel}\n")
    (ctx / "Kitfile").write_text(case["kitfile"])
    if case.get("kitignore"):
        (ctx / ".kitignore").write_text(case["kitignore"])
    return _layer_paths(yaml.safe_load(case["kitfile"]))


def _pack_files(ctx: Path, layer_paths: list[str]) -> dict[str, list[str]]:
    ignore = IgnorePaths.from_context(ctx, layer_paths)
    out: dict[str, list[str]] = {}
    for layer in layer_paths:
        out[layer] = [e.name for e in walk_layer(ctx, layer, ignore) if not e.is_dir]
    return out


@pytest.mark.parametrize("case_file", sorted(CASES.iterdir()), ids=lambda p: p.name)
def test_pack_unpack_cases(tmp_path: Path, case_file: Path) -> None:
    case = yaml.safe_load(case_file.read_text())
    ctx = tmp_path / "ctx"
    ctx.mkdir()
    layer_paths = _build(case, ctx)
    layers = _pack_files(ctx, layer_paths)
    packed = [name for names in layers.values() for name in names]
    assert len(packed) == len(set(packed)), "a file landed in more than one layer"
    for rel in case.get("files") or []:
        assert go_clean(rel) in packed, rel
    for rel in case.get("ignored") or []:
        assert go_clean(rel) not in packed, rel
    assert "Kitfile" not in packed and ".kitignore" not in packed


def test_intersecting_paths_go_to_the_innermost_layer(tmp_path: Path) -> None:
    case = yaml.safe_load((CASES / "test_pack-intersecting-paths.yaml").read_text())
    ctx = tmp_path / "ctx"
    ctx.mkdir()
    layers = _pack_files(ctx, _build(case, ctx))
    assert layers["main-dir/subdir"] == [
        "main-dir/subdir/dataset-file1.txt",
        "main-dir/subdir/dataset-file2.txt",
        "main-dir/subdir/subdir2/dataset-subdir1.txt",
    ]
    assert "main-dir/model-file1.txt" in layers["main-dir"]
    assert not any(n.startswith("main-dir/subdir/") for n in layers["main-dir"])
    assert sorted(layers["."]) == [
        "other-dir/code-file1.txt",
        "other-dir/code-file2.txt",
        "root-file1.txt",
        "root-file2",
    ]


def test_component_aware_layer_prefix(tmp_path: Path) -> None:
    """``model2/x`` is not inside layer ``model`` (kit's isWithin, not a string prefix)."""
    ctx = tmp_path / "ctx"
    for rel in ("model/a", "model2/b", "c"):
        (ctx / rel).parent.mkdir(parents=True, exist_ok=True)
        (ctx / rel).write_text(rel)
    layers = _pack_files(ctx, ["model", "."])
    assert layers["model"] == ["model/a"]
    assert layers["."] == ["c", "model2/b"]


@pytest.mark.parametrize(
    ("patterns", "path", "expected"),
    [
        (["dir1"], "dir1/sub/file", True),
        (["dir2/dirA"], "dir2/dirB/file", False),
        (["*.md"], "a.md", True),
        (["*.md"], "sub/a.md", False),
        (["**/*.md"], "sub/deeper/a.md", True),
        (["**/*.md"], "a.md", True),
        (["**/ignored"], "x/ignored/file", True),
        (["**/ignored"], "ignored", True),
        (["**/ignored"], "notignored", False),
        (["ignored-?.txt"], "ignored-a.txt", True),
        (["ignored-?.txt"], "ignored-ab.txt", False),
        (["dir4/*/f.txt"], "dir4/a/f.txt", True),
        (["dir4/*/f.txt"], "dir4/f.txt", False),
        (["data/**"], "data/x/y", True),
        (["a/**/b"], "a/b", True),
        (["a/**/b"], "a/x/y/b", True),
        (["**"], "anything/at/all", True),
        (["*.md", "!keep.md"], "keep.md", False),
        (["*.md", "!keep.md"], "drop.md", True),
        (["*.md", "!keep.md", "keep.md"], "keep.md", True),
        (["[ab].txt"], "a.txt", True),
        (["[ab].txt"], "c.txt", False),
        (["a+b(c)"], "a+b(c)", True),
        (["file.txt"], "fileXtxt", False),
        (["\\*star"], "*star", True),
    ],
)
def test_pattern_semantics(patterns: list[str], path: str, expected: bool) -> None:
    assert PatternMatcher(patterns).matches_or_parent_matches(path) is expected


def test_ignore_file_parsing() -> None:
    text = "\ufeff# comment\n  /abs/path  \n\n! ./keep/ \nsub//dir/\n#x\n"
    assert parse_ignore_file(text) == ["abs/path", "!keep", "sub/dir"]


def test_bad_patterns() -> None:
    with pytest.raises(KitflowError, match="illegal exclusion"):
        PatternMatcher(["!"])
    with pytest.raises(KitflowError, match="syntax error"):
        PatternMatcher(["a[b"])


def test_kitfile_names_always_ignored() -> None:
    ignore = IgnorePaths.create([], ["."])
    for name in ("Kitfile", "kitfile", ".kitfile", ".kitignore"):
        assert ignore.matches(name, ".")
    assert not ignore.matches("sub/Kitfile", ".")
    assert not ignore.matches("README.md", ".")


def test_go_clean() -> None:
    assert go_clean("./model/") == "model"
    assert go_clean("") == "."
    assert go_clean("a//b/../c") == "a/c"
    assert go_clean("//x") == "/x"
    assert go_clean("../a") == "../a"
