"""`kitflow init` heuristics against kit's kitfile-generation vectors, plus the edge cases."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from kitflow.errors import KitflowError
from kitflow.format.generate import MODEL, PROMPT, detect_license, file_type, generate_kitfile
from kitflow.format.kitfile import kitfile_to_yaml, parse_kitfile, validate_kitfile

DATA = Path(__file__).resolve().parents[1] / "data"
CASES = sorted((DATA / "kitops" / "init-kitfile-generation").glob("*.yaml"))


def make_files(root: Path, files: list[str]) -> None:
    """Create files as kit's functional tests do: content is ``testing: <path>``."""
    for name in files:
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text("testing: " + name)


@pytest.mark.parametrize("case", CASES, ids=lambda p: p.name)
def test_kit_vectors(case: Path, tmp_path: Path) -> None:
    data = yaml.safe_load(case.read_text())
    make_files(tmp_path, data.get("files") or [])
    kf = generate_kitfile(tmp_path, name=data["modelName"], description=data["description"])
    # kit's test loads the written Kitfile and compares structs
    written = parse_kitfile(kitfile_to_yaml(kf))
    expected = parse_kitfile(yaml.safe_dump(data["expectedKitfile"], sort_keys=False))
    assert written == expected
    assert validate_kitfile(written, tmp_path) == []


def test_license_detection_sets_the_license(tmp_path: Path) -> None:
    (tmp_path / "LICENSE").write_text(
        "MIT License\n\nPermission is hereby granted, free of charge, to any person obtaining a"
        " copy\nof this software ...\n"
    )
    (tmp_path / "model.safetensors").write_text("w")
    kf = generate_kitfile(tmp_path)
    assert kf.model is not None and kf.model.license == "MIT"
    assert kf.docs[0].description == "License file"
    apache = tmp_path / "apache.txt"
    apache.write_text("Apache License\n  Version 2.0, January 2004\n")
    assert detect_license(apache) == "Apache-2.0"
    assert detect_license(tmp_path / "missing") == ""


def test_author_without_name_and_package_fields(tmp_path: Path) -> None:
    kf = generate_kitfile(tmp_path, author="Jane")
    assert kf.package.authors == ["Jane"] and kf.package.name == ""
    assert kitfile_to_yaml(kf) == "manifestVersion: 1.0.0\npackage:\n  authors: [Jane]\n"


def test_symlinks_and_clutter_are_skipped(tmp_path: Path) -> None:
    (tmp_path / "model.onnx").write_text("x")
    (tmp_path / "link.onnx").symlink_to(tmp_path / "model.onnx")
    (tmp_path / ".DS_Store").write_text("x")
    (tmp_path / ".git").mkdir()
    (tmp_path / ".git" / "HEAD").write_text("ref")
    kf = generate_kitfile(tmp_path)
    assert kf.model is not None and kf.model.path == "model.onnx" and kf.model.parts == []
    assert kf.code == []


def test_many_unknown_directories_become_one_catch_all(tmp_path: Path) -> None:
    for i in range(6):
        make_files(tmp_path, [f"d{i}/thing.xyz"])
    assert [c.path for c in generate_kitfile(tmp_path).code] == ["."]
    for i in range(6):
        for f in (tmp_path / f"d{i}").iterdir():
            f.unlink()
        (tmp_path / f"d{i}").rmdir()
    make_files(tmp_path, ["a/x.xyz", "b/y.xyz"])
    assert [c.path for c in generate_kitfile(tmp_path).code] == ["a", "b"]


def test_single_model_with_metadata_dir(tmp_path: Path) -> None:
    make_files(tmp_path, ["weights/model.gguf", "weights/config.json", "notes.txt"])
    kf = generate_kitfile(tmp_path)
    assert kf.model is not None
    # the directory's metadata joins the model files, so there are two and no name is guessed
    assert kf.model.path == "weights/model.gguf" and kf.model.name == ""
    assert [p.path for p in kf.model.parts] == ["weights/config.json", "notes.txt"]
    (tmp_path / "weights" / "config.json").unlink()
    kf = generate_kitfile(tmp_path)
    assert kf.model is not None and kf.model.name == "weights/model"
    assert [p.path for p in kf.model.parts] == ["notes.txt"]


def test_file_types() -> None:
    assert file_type("x/AGENTS.md") == PROMPT and file_type("system.prompt.txt") == PROMPT
    assert file_type("pytorch_model.bin") == MODEL


def test_not_a_directory(tmp_path: Path) -> None:
    with pytest.raises(KitflowError):
        generate_kitfile(tmp_path / "missing")
