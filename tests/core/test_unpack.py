"""Unpack from the local store: filters, Kitfile write-back, overwrite flags, legacy layers,
unknown media types, ModelPacks without a Kitfile, model references, corrupt and hostile blobs."""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path
from typing import Any

import pytest
from kitflow.errors import DigestMismatchError, KitflowError, NotFoundError
from kitflow.format.mediatypes import (
    ANNOTATION_FILE_METADATA,
    ANNOTATION_FILEPATH,
    ANNOTATION_KITFILE,
    MODELPACK_ARTIFACT_TYPE,
    MODELPACK_CONFIG,
)
from kitflow.format.tarreader import UnsafeArchiveError
from kitflow.ops.unpack import unpack
from store_helpers import KIT, KitBuilder, sha, tar_of


@pytest.fixture
def kits(tmp_path: Path) -> KitBuilder:
    return KitBuilder(tmp_path / "home")


def files_under(root: Path) -> set[str]:
    return {os.path.relpath(os.path.join(d, f), root) for d, _, fs in os.walk(root) for f in fs}


def test_unpack_everything(kits: KitBuilder, tmp_path: Path) -> None:
    desc = kits.standard()
    out = tmp_path / "out"
    result = unpack("test/model:v1", out, home=kits.home)
    assert files_under(out) == {
        "Kitfile",
        "model/weights.bin",
        "model/config.json",
        "data/train.csv",
        "data/val.csv",
        "src/predict.py",
        "README.md",
    }
    assert (out / "model/weights.bin").read_bytes() == b"W" * 100
    assert result.digest == desc.digest and result.layers == 5 and result.kitfile_written
    assert result.files == 6 and result.reference == "test/model:v1"
    kitfile = (out / "Kitfile").read_text()
    assert "name: standard" in kitfile and "path: model" in kitfile
    # unpacking again onto an identical tree: the Kitfile matches, the files already exist
    with pytest.raises(KitflowError, match="already exists"):
        unpack("test/model:v1", out, home=kits.home)
    again = unpack("test/model:v1", out, home=kits.home, ignore_existing=True)
    assert again.files == 0 and not again.kitfile_written
    unpack("test/model:v1", out, home=kits.home, overwrite=True)


@pytest.mark.parametrize(
    ("filters", "expected"),
    [
        (["model"], {"model/weights.bin", "model/config.json"}),
        (["datasets:train"], {"data/train.csv"}),
        (["datasets:./data/val.csv"], {"data/val.csv"}),
        (["datasets:data/val.csv"], set()),  # ids match the path exactly as written
        (["kitfile"], {"Kitfile"}),
        (["code,docs"], {"src/predict.py", "README.md"}),
        (["model", "kitfile"], {"Kitfile", "model/weights.bin", "model/config.json"}),
    ],
)
def test_filters(kits: KitBuilder, tmp_path: Path, filters: list[str], expected: set[str]) -> None:
    kits.standard()
    out = tmp_path / "out"
    result = unpack("test/model:v1", out, filters=filters, home=kits.home)
    assert files_under(out) == expected
    assert result.kitfile_written == ("Kitfile" in expected)


def test_bad_filter_fails_before_writing(kits: KitBuilder, tmp_path: Path) -> None:
    kits.standard()
    with pytest.raises(KitflowError, match="invalid filter type weights"):
        unpack("test/model:v1", tmp_path / "out", filters=["weights"], home=kits.home)
    assert not (tmp_path / "out").exists()


def test_kitfile_write_back_rules(kits: KitBuilder, tmp_path: Path) -> None:
    kits.standard()
    out = tmp_path / "out"
    unpack("test/model:v1", out, filters=["kitfile"], home=kits.home)
    original = (out / "Kitfile").read_bytes()
    # identical Kitfile: fine
    assert not unpack("test/model:v1", out, filters=["kitfile"], home=kits.home).kitfile_written
    # different Kitfile of the same size: kit's mismatch message
    (out / "Kitfile").write_bytes(original[:-2] + b"#\n")
    with pytest.raises(KitflowError, match="Kitfile exists and does not match model's Kitfile"):
        unpack("test/model:v1", out, filters=["kitfile"], home=kits.home)
    # different size: path already exists
    (out / "Kitfile").write_bytes(b"manifestVersion: 1.0.0\n")
    with pytest.raises(KitflowError, match="already exists"):
        unpack("test/model:v1", out, filters=["kitfile"], home=kits.home)
    # -o overwrites
    unpack("test/model:v1", out, filters=["kitfile"], overwrite=True, home=kits.home)
    assert (out / "Kitfile").read_bytes() == original


def test_legacy_layers_extract_relative_to_the_path_parent(
    kits: KitBuilder,
    tmp_path: Path,
) -> None:
    # Before Nov 2024 kit stored names relative to the layer path's parent and no digests.
    model = kits.blob(KIT + "model.v1.tar", tar_of({"weights": None, "weights/w.bin": b"w"}))
    docs = kits.blob(KIT + "docs.v1.tar+gzip", _gzip(tar_of({"README.md": b"r"})))
    config = {
        "manifestVersion": "1.0.0",
        "package": {"name": "old"},
        "model": {"name": "m", "path": "models/weights"},
        "docs": [{"path": "README.md"}],
    }
    kits.kit("localhost/old:v1", config, [model, docs], artifact_type=None)
    out = tmp_path / "out"
    unpack("old:v1", out, home=kits.home)
    assert (out / "models/weights/w.bin").read_bytes() == b"w"
    assert (out / "README.md").read_bytes() == b"r"


def _gzip(data: bytes) -> bytes:
    import gzip

    return gzip.compress(data, mtime=0)


def test_unknown_media_type_is_skipped(
    kits: KitBuilder, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    docs = kits.blob(KIT + "docs.v1.tar", tar_of({"README.md": b"r"}))
    odd = kits.blob("application/vnd.example.other", b"whatever")
    config = {
        "manifestVersion": "1.0.0",
        "package": {"name": "x"},
        "docs": [{"path": "README.md", "digest": docs.digest, "diffId": docs.digest}],
    }
    kits.kit("localhost/odd:v1", config, [docs, odd])
    with caplog.at_level(logging.WARNING):
        unpack("odd:v1", tmp_path / "out", home=kits.home)
    assert "Unknown media type application/vnd.example.other: skipping unpack" in caplog.text
    assert files_under(tmp_path / "out") == {"Kitfile", "README.md"}


def test_digest_mismatch_between_config_and_manifest(kits: KitBuilder, tmp_path: Path) -> None:
    docs = kits.blob(KIT + "docs.v1.tar", tar_of({"README.md": b"r"}))
    config = {
        "manifestVersion": "1.0.0",
        "package": {"name": "x"},
        "docs": [{"path": "README.md", "digest": sha(b"other"), "diffId": sha(b"other")}],
    }
    kits.kit("localhost/bad:v1", config, [docs])
    with pytest.raises(KitflowError, match="digest in config and manifest do not match in docs"):
        unpack("bad:v1", tmp_path / "out", home=kits.home)


def test_modelpack_without_kitfile(kits: KitBuilder, tmp_path: Path) -> None:
    weights = b"GGUF" + bytes(range(256)) * 4
    w = kits.blob(
        "application/vnd.cncf.model.weight.v1.raw",
        weights,
        {
            ANNOTATION_FILEPATH: "model.gguf",
            ANNOTATION_FILE_METADATA: json.dumps({"name": "model.gguf", "mode": 0o600}),
        },
    )
    cfg = kits.blob(
        "application/vnd.cncf.model.weight.config.v1.raw",
        b'{"arch":"x"}',
        {ANNOTATION_FILEPATH: "config.json"},
    )
    doc = kits.blob(
        "application/vnd.cncf.model.doc.v1.tar",
        tar_of({"README.md": b"doc"}),
        {ANNOTATION_FILEPATH: "README.md"},
    )
    config = {
        "descriptor": {"name": "mp"},
        "modelfs": {"type": "layers", "diffIds": [w.digest, cfg.digest, doc.digest]},
        "config": {},
    }
    kits.kit(
        "localhost/mp:v1",
        config,
        [w, cfg, doc],
        artifact_type=MODELPACK_ARTIFACT_TYPE,
        config_type=MODELPACK_CONFIG,
    )
    out = tmp_path / "out"
    result = unpack("mp:v1", out, home=kits.home)
    assert (out / "model.gguf").read_bytes() == weights
    assert (out / "model.gguf").stat().st_mode & 0o777 == 0o600
    assert (out / "config.json").read_bytes() == b'{"arch":"x"}'
    assert (out / "README.md").read_bytes() == b"doc"
    assert not (out / "Kitfile").exists() and not result.kitfile_written
    only_model = tmp_path / "only"
    unpack("mp:v1", only_model, filters=["model"], home=kits.home)
    assert files_under(only_model) == {"model.gguf", "config.json"}


def test_modelpack_with_kitfile_annotation(kits: KitBuilder, tmp_path: Path) -> None:
    doc = kits.blob(
        "application/vnd.cncf.model.doc.v1.tar",
        tar_of({"README.md": b"doc"}),
        {ANNOTATION_FILEPATH: "README.md"},
    )
    kitfile = {
        "manifestVersion": "1.0.0",
        "package": {"name": "annotated"},
        "docs": [{"path": "README.md", "digest": doc.digest, "diffId": doc.digest}],
    }
    config = {
        "descriptor": {"name": "annotated"},
        "modelfs": {"type": "layers", "diffIds": [doc.digest]},
        "config": {},
    }
    kits.kit(
        "localhost/mpk:v1",
        config,
        [doc],
        artifact_type=MODELPACK_ARTIFACT_TYPE,
        config_type=MODELPACK_CONFIG,
        annotations={ANNOTATION_KITFILE: json.dumps(kitfile)},
    )
    out = tmp_path / "out"
    assert unpack("mpk:v1", out, home=kits.home).kitfile_written
    assert "annotated" in (out / "Kitfile").read_text()


def test_corrupt_blob_in_store_writes_nothing(kits: KitBuilder, tmp_path: Path) -> None:
    kits.standard()
    model_digest = next(
        d
        for d in kits.store.blob_digests()
        if (
            kits.store.blob_path(d).stat().st_size > 2000
            and b"weights.bin" in kits.store.blob_path(d).read_bytes()
        )
    )
    path = kits.store.blob_path(model_digest)
    data = bytearray(path.read_bytes())
    data[1024] ^= 1
    path.write_bytes(bytes(data))
    out = tmp_path / "out"
    with pytest.raises(DigestMismatchError):
        unpack("test/model:v1", out, filters=["model"], home=kits.home)
    assert files_under(out) == set()


def test_hostile_layer_is_refused(kits: KitBuilder, tmp_path: Path) -> None:
    evil = kits.blob(KIT + "code.v1.tar", tar_of({"src": None, "src/a.py": b"", "../x": b"!"}))
    config = {
        "manifestVersion": "1.0.0",
        "package": {"name": "evil"},
        "code": [{"path": "src", "digest": evil.digest, "diffId": evil.digest}],
    }
    kits.kit("localhost/evil:v1", config, [evil])
    out = tmp_path / "out"
    with pytest.raises(UnsafeArchiveError, match="illegal file path"):
        unpack("evil:v1", out, filters=["code"], home=kits.home)
    assert not (tmp_path / "x").exists() and files_under(out) == set()
    # a layer claiming files outside its declared path
    sneaky = kits.blob(KIT + "docs.v1.tar", tar_of({"README.md": b"r", "src/inject.py": b"!"}))
    config = {
        "manifestVersion": "1.0.0",
        "package": {"name": "sneaky"},
        "docs": [{"path": "README.md", "digest": sneaky.digest, "diffId": sneaky.digest}],
    }
    kits.kit("localhost/sneaky:v1", config, [sneaky])
    with pytest.raises(UnsafeArchiveError, match="outside the layer's declared path"):
        unpack("sneaky:v1", tmp_path / "out2", filters=["docs"], home=kits.home)
    assert files_under(tmp_path / "out2") == set()


def test_kitfile_path_escaping_the_directory_is_refused(kits: KitBuilder, tmp_path: Path) -> None:
    docs = kits.blob(KIT + "docs.v1.tar", tar_of({"README.md": b"r"}))
    config = {
        "manifestVersion": "1.0.0",
        "package": {"name": "x"},
        "docs": [{"path": "../README.md"}],
    }
    kits.kit("localhost/esc:v1", config, [docs])
    with pytest.raises(KitflowError, match="must stay within"):
        unpack("esc:v1", tmp_path / "out", filters=["docs"], home=kits.home)


def test_not_found(kits: KitBuilder, tmp_path: Path) -> None:
    kits.standard()
    with pytest.raises(NotFoundError, match="failed to find reference test/model:nope"):
        unpack("test/model:nope", tmp_path / "out", home=kits.home)
    with pytest.raises(KitflowError, match="can not unpack multiple tags"):
        unpack("test/model:v1,v2", tmp_path / "out", home=kits.home)


def test_unpack_by_digest(kits: KitBuilder, tmp_path: Path) -> None:
    desc = kits.standard()
    result = unpack(f"test/model@{desc.digest}", tmp_path / "a", filters=["docs"], home=kits.home)
    assert result.digest == desc.digest and (tmp_path / "a/README.md").exists()
    unpack(desc.digest, tmp_path / "b", filters=["docs"], home=kits.home)
    assert (tmp_path / "b/README.md").exists()


def _model_kit(kits: KitBuilder, ref: str, model_path: str, payload: bytes | None) -> None:
    layers = []
    model: dict[str, Any] = {"name": ref, "path": model_path}
    if payload is not None:
        layer = kits.blob(
            KIT + "model.v1.tar", tar_of({model_path: None, f"{model_path}/w.bin": payload})
        )
        layers.append(layer)
        model.update(digest=layer.digest, diffId=layer.digest)
    docs = kits.blob(KIT + "docs.v1.tar", tar_of({f"{ref.split(':')[0]}.md": b"d"}))
    config = {
        "manifestVersion": "1.0.0",
        "package": {"name": ref},
        "model": model,
        "docs": [{"path": f"{ref.split(':')[0]}.md", "digest": docs.digest, "diffId": docs.digest}],
    }
    kits.kit(f"localhost/{ref}", config, [*layers, docs])


def test_model_reference_unpacks_parent_model(kits: KitBuilder, tmp_path: Path) -> None:
    _model_kit(kits, "base:v1", "basemodel", b"base weights")
    _model_kit(kits, "child:v1", "base:v1", None)
    out = tmp_path / "out"
    unpack("child:v1", out, home=kits.home)
    # the parent's model only (not its docs), then the child's own layers and Kitfile
    assert files_under(out) == {"Kitfile", "basemodel/w.bin", "child.md"}
    assert "path: base:v1" in (out / "Kitfile").read_text()


def test_model_reference_cycle(kits: KitBuilder, tmp_path: Path) -> None:
    _model_kit(kits, "a:v1", "b:v1", None)
    _model_kit(kits, "b:v1", "a:v1", None)
    with pytest.raises(
        KitflowError, match=r"found cycle in modelkit references: \[b:v1=>a:v1=>b:v1\]"
    ):
        unpack("a:v1", tmp_path / "out", home=kits.home)


def test_filesystem_errors_are_user_errors(kits: KitBuilder, tmp_path: Path) -> None:
    kits.standard()
    target = tmp_path / "a-file"
    target.write_text("x")
    with pytest.raises(KitflowError, match="not a directory"):
        unpack("test/model:v1", target, home=kits.home)
    # an OSError on the way (here: a parent that is a file) is one line, not a traceback
    with pytest.raises(KitflowError, match="failed to unpack: Not a directory"):
        unpack("test/model:v1", target / "sub", home=kits.home)
