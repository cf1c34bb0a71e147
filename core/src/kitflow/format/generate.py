"""``kitflow init``: guess a Kitfile from a directory's contents with kit's heuristics
(``kit init``: file extensions, special names and directory names decide each entry)."""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field
from pathlib import Path

from kitflow.errors import KitflowError
from kitflow.format.kitfile import (
    KITFILE_NAMES,
    CodeEntry,
    DatasetEntry,
    DocsEntry,
    Kitfile,
    Model,
    ModelPart,
    Package,
    PromptEntry,
)

MODEL_SUFFIXES = (
    ".safetensors", ".pkl", ".joblib",
    ".bin", ".pth", ".pt", ".mar", ".pt2", ".ptl",
    ".pb", ".ckpt", ".tflite", ".tfrecords",
    ".npy", ".npz",
    ".keras", ".h5", ".caffemodel", ".pmml", ".coreml",
    ".gguf", ".ggml", ".ggmf", ".llamafile", ".onnx",
)  # fmt: skip
DOCS_SUFFIXES = (".md", ".adoc", ".html", ".pdf")
METADATA_SUFFIXES = (".json", ".yaml", ".xml", ".txt")
DATASET_SUFFIXES = (".tar", ".zip", ".parquet", ".csv")
PROMPT_FILE_NAMES = frozenset({"agents.md", "skill.md", "claude.md"})
CODE_DIR_NAMES = frozenset({"src", "pkg", "lib", "build"})
# Never worth a layer: OS clutter, VCS metadata and kit's own ignore file (kit never packs it).
SKIPPED_NAMES = frozenset(
    {".DS_Store", "Thumbs.db", "desktop.ini", ".git", ".hg", ".svn", ".kitignore"}
)

# File types, in kit's enumeration order (used to detect a directory's overall type).
MODEL, DATASET, CODE, DOCS, METADATA, PROMPT, UNKNOWN = range(7)


@dataclass
class _File:
    name: str
    path: str  # relative to the context, with "/" separators
    size: int
    full: Path


@dataclass
class _Dir:
    name: str
    path: str
    files: list[_File] = field(default_factory=list)
    subdirs: list[_Dir] = field(default_factory=list)


def _listing(root: Path, rel: str = ".") -> _Dir:
    full = root if rel == "." else root / rel
    result = _Dir(name=os.path.basename(rel) if rel != "." else ".", path=rel)
    try:
        entries = sorted(os.scandir(full), key=lambda e: os.fsencode(e.name))
    except OSError as exc:
        raise KitflowError(
            f"Error processing directory: cannot read {full}: {exc.strerror}"
        ) from None
    for entry in entries:
        if entry.name in SKIPPED_NAMES or entry.name.startswith("._"):
            continue
        child = entry.name if rel == "." else f"{rel}/{entry.name}"
        if entry.is_dir(follow_symlinks=False):
            result.subdirs.append(_listing(root, child))
        elif entry.is_file(follow_symlinks=False):
            size = entry.stat(follow_symlinks=False).st_size
            result.files.append(_File(entry.name, child, size, Path(entry.path)))
    return result


def file_type(name: str) -> int:
    """kit's guess for one file name: prompt, model, metadata, docs, dataset or unknown."""
    base = os.path.basename(name).lower()
    if base in PROMPT_FILE_NAMES or ".prompt" in base:
        return PROMPT
    if name.endswith(MODEL_SUFFIXES):
        return MODEL
    if name.endswith(METADATA_SUFFIXES):
        return METADATA
    if name.endswith(DOCS_SUFFIXES):
        return DOCS
    if name.endswith(DATASET_SUFFIXES):
        return DATASET
    return UNKNOWN


# A few distinctive phrases per license; enough to name the common ones (kit uses
# google/licensecheck, which knows many more).
_LICENSES: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("AGPL-3.0", ("GNU AFFERO GENERAL PUBLIC LICENSE", "Version 3")),
    ("LGPL-3.0", ("GNU LESSER GENERAL PUBLIC LICENSE", "Version 3")),
    ("LGPL-2.1", ("GNU LESSER GENERAL PUBLIC LICENSE", "Version 2.1")),
    ("GPL-3.0", ("GNU GENERAL PUBLIC LICENSE", "Version 3")),
    ("GPL-2.0", ("GNU GENERAL PUBLIC LICENSE", "Version 2")),
    ("Apache-2.0", ("Apache License", "Version 2.0")),
    ("MPL-2.0", ("Mozilla Public License", "2.0")),
    ("MIT", ("Permission is hereby granted, free of charge",)),
    ("ISC", ("Permission to use, copy, modify, and/or distribute this software for any purpose",)),
    ("BSD-3-Clause", ("Redistribution and use in source and binary forms", "Neither the name")),
    ("BSD-2-Clause", ("Redistribution and use in source and binary forms",)),
    ("Unlicense", ("This is free and unencumbered software released into the public domain",)),
    ("CC0-1.0", ("CC0 1.0 Universal",)),
    ("CC-BY-4.0", ("Attribution 4.0 International",)),
)


def detect_license(path: Path) -> str:
    """SPDX id of the license text at ``path``, or "" when it is not recognised."""
    try:
        with open(path, "rb") as fh:
            text = fh.read(256 * 1024).decode("utf-8", "replace")
    except OSError:
        return ""
    flat = re.sub(r"\s+", " ", text)
    for spdx, phrases in _LICENSES:
        if all(p.lower() in flat.lower() for p in phrases):
            return spdx
    return ""


def _add_dir(kf: Kitfile, directory: _Dir) -> tuple[list[_File], bool]:
    """Classify a top-level subdirectory; returns its model files and whether it was placed."""
    if directory.name == "docs":
        kf.docs.append(DocsEntry(path=directory.path))
        return [], True
    if directory.name in CODE_DIR_NAMES:
        kf.code.append(CodeEntry(path=directory.path))
        return [], True
    contents: list[list[str]] = [[] for _ in range(UNKNOWN + 1)]
    for sub in directory.subdirs:
        contents[UNKNOWN].append(sub.path)
    model_files: list[_File] = []
    metadata_files: list[_File] = []
    for f in directory.files:
        ftype = file_type(f.name)
        if ftype == MODEL:
            model_files.append(f)
        if ftype == METADATA:
            metadata_files.append(f)
        contents[ftype].append(f.path)
    overall = UNKNOWN
    mixed = False
    for ftype, paths in enumerate(contents):
        if paths and ftype != METADATA:
            if overall != UNKNOWN:
                mixed = True
            overall = ftype
    if mixed:
        return model_files, False
    if overall == MODEL:
        return model_files + metadata_files, True
    if overall == DATASET:
        kf.datasets.append(DatasetEntry(path=directory.path))
    elif overall == DOCS:
        kf.docs.append(DocsEntry(path=directory.path))
    elif overall == PROMPT:
        kf.prompts.append(PromptEntry(path=directory.path))
    else:
        return model_files, False
    return model_files, True


def _strip_ext(path: str, name: str) -> str:
    # Go's filepath.Ext: from the last dot of the base name (".bashrc" -> ".bashrc")
    dot = name.rfind(".")
    ext = name[dot:] if dot >= 0 else ""
    return path[: len(path) - len(ext)] if ext and path.endswith(ext) else path


def _add_model(kf: Kitfile, files: list[_File]) -> None:
    if not files:
        return
    if len(files) == 1:
        f = files[0]
        kf.model = Model(path=f.path, name=_strip_ext(f.path, f.name))
        return
    largest: _File | None = None
    largest_size = 0
    total = 0
    for f in files:
        if f.size > largest_size:
            largest_size, largest = f.size, f
        total += f.size
    average = total // len(files)
    if largest is not None and largest_size > average + average // 2:
        kf.model = Model(path=largest.path, name=_strip_ext(largest.path, largest.name))
        kf.model.parts = [ModelPart(path=f.path) for f in files if f is not largest]
    else:
        kf.model = Model(path=files[0].path)
        kf.model.parts = [ModelPart(path=f.path) for f in files[1:]]


def generate_kitfile(
    directory: str | Path,
    name: str | None = None,
    description: str | None = None,
    author: str | None = None,
) -> Kitfile:
    """A Kitfile for ``directory`` by kit's ``init`` heuristics (the file is not written).

    Model weights by extension (the largest of several becomes the model when it is clearly
    bigger, else the first), README/LICENSE and document types as docs, datasets and metadata by
    extension, ``docs``/``src``/``pkg``/``lib``/``build`` directories by name, prompt files, and a
    catch-all ``code: .`` when something else is left at the top level.
    """
    root = Path(directory)
    if not root.is_dir():
        raise KitflowError(f"Error processing directory: {root} is not a directory")
    listing = _listing(root)
    kf = Kitfile(manifest_version="1.0.0")
    if name or description or author:
        kf.package = Package(name=name or "", description=description or "")
        if author:
            kf.package.authors.append(author)

    catch_all = False
    unprocessed: list[str] = []
    model_files: list[_File] = []
    metadata_files: list[_File] = []
    license_type = ""
    for f in listing.files:
        if f.name in KITFILE_NAMES:
            continue
        lower = f.name.lower()
        if lower.startswith("readme"):
            kf.docs.append(DocsEntry(path=f.name, description="Readme file"))
            continue
        if lower.startswith("license"):
            kf.docs.append(DocsEntry(path=f.name, description="License file"))
            license_type = detect_license(f.full)
            continue
        ftype = file_type(f.path)
        if ftype == MODEL:
            model_files.append(f)
        elif ftype == METADATA:
            metadata_files.append(f)
        elif ftype == DOCS:
            kf.docs.append(DocsEntry(path=f.path))
        elif ftype == DATASET:
            kf.datasets.append(DatasetEntry(path=f.path))
        elif ftype == PROMPT:
            kf.prompts.append(PromptEntry(path=f.path))
        else:
            catch_all = True

    for sub in listing.subdirs:
        found, placed = _add_dir(kf, sub)
        if not placed:
            unprocessed.append(sub.path)
        model_files.extend(found)

    if model_files:
        _add_model(kf, model_files)
        assert kf.model is not None
        kf.model.parts.extend(ModelPart(path=f.path) for f in metadata_files)
    else:
        kf.datasets.extend(DatasetEntry(path=f.path) for f in metadata_files)

    if catch_all or len(unprocessed) > 5:
        kf.code = [CodeEntry(path=".")]
    else:
        kf.code.extend(CodeEntry(path=p) for p in unprocessed)

    if kf.model is not None and license_type:
        kf.model.license = license_type
    elif len(kf.datasets) == 1:
        kf.datasets[0].license = license_type
    elif len(kf.code) == 1:
        kf.code[0].license = license_type
    else:
        kf.package.license = license_type
    return kf
