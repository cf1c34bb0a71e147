"""Layer media types of Kit and ModelPack artifacts, built and parsed by one table."""

from __future__ import annotations

import pytest
from kitflow.format.descriptor import Descriptor, Manifest
from kitflow.format.mediatypes import (
    KINDS,
    KIT_ARTIFACT_TYPE,
    KIT_CONFIG,
    MODELPACK_ARTIFACT_TYPE,
    MODELPACK_CONFIG,
    LayerMediaType,
    is_modelkit_manifest,
    layer_media_type,
    manifest_format,
    parse_layer_media_type,
)


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (("model",), "application/vnd.kitops.modelkit.model.v1.tar"),
        (("modelpart", "tar", "gzip"), "application/vnd.kitops.modelkit.modelpart.v1.tar+gzip"),
        (("dataset", "tar", "gzip-fastest"), "application/vnd.kitops.modelkit.dataset.v1.tar+gzip"),
        (("code", "tar", "zstd"), "application/vnd.kitops.modelkit.code.v1.tar+zstd"),
        (("docs", "raw"), "application/vnd.kitops.modelkit.docs.v1.raw"),
        (("prompt",), "application/vnd.kitops.modelkit.code.v1.tar"),
        (("mcpserver",), "application/vnd.kitops.modelkit.mcpb.v1.raw"),
        (("model", "raw", "none", True), "application/vnd.cncf.model.weight.v1.raw"),
        (("modelpart", "tar", "none", True), "application/vnd.cncf.model.weight.config.v1.tar"),
        (("docs", "tar", "zstd", True), "application/vnd.cncf.model.doc.v1.tar+zstd"),
        (("prompt", "tar", "none", True), "application/vnd.cncf.model.code.v1.tar"),
    ],
)  # fmt: skip
def test_layer_media_types(args: tuple, expected: str) -> None:  # type: ignore[type-arg]
    assert layer_media_type(*args) == expected


def test_invalid_combinations() -> None:
    with pytest.raises(ValueError, match="compression for raw layers"):
        layer_media_type("model", "raw", "gzip", model_pack=True)
    with pytest.raises(ValueError, match="mcpServers"):
        layer_media_type("mcpserver", model_pack=True)
    with pytest.raises(ValueError):
        layer_media_type("weights")


@pytest.mark.parametrize("model_pack", [False, True])
@pytest.mark.parametrize("fmt", ["tar", "raw"])
def test_build_then_parse(model_pack: bool, fmt: str) -> None:
    for kind in KINDS:
        if kind == "mcpserver" and model_pack:
            continue
        for comp in ("none", "gzip", "zstd"):
            if model_pack and fmt == "raw" and comp != "none":
                continue
            parsed = parse_layer_media_type(layer_media_type(kind, fmt, comp, model_pack))
            expected_kind = "code" if kind == "prompt" else kind
            assert parsed is not None and parsed.kind == expected_kind
            assert parsed.model_pack == model_pack
            if kind != "mcpserver":
                assert (parsed.layer_format, parsed.compression) == (fmt, comp)


def test_unknown_media_types() -> None:
    assert parse_layer_media_type("application/vnd.cncf.model.unrecognized.v1.raw") is None
    assert parse_layer_media_type("application/vnd.oci.image.layer.v1.tar") is None
    assert parse_layer_media_type("application/vnd.cncf.model.weight.v1.raw+gzip") is None
    assert parse_layer_media_type("application/vnd.cnai.model.weight.v1.tar") == LayerMediaType(
        "model", "tar", "none", True
    )
    assert str(LayerMediaType("dataset", "tar", "gzip")) == (
        "application/vnd.kitops.modelkit.dataset.v1.tar+gzip"
    )


def test_manifest_format() -> None:
    d = "sha256:" + "0" * 64
    kit = Manifest(Descriptor(KIT_CONFIG, d, 2), [], artifact_type=KIT_ARTIFACT_TYPE)
    old_kit = Manifest(Descriptor(KIT_CONFIG, d, 2), [])  # kit <= 1.9 wrote no artifactType
    mp = Manifest(Descriptor(MODELPACK_CONFIG, d, 2), [], artifact_type=MODELPACK_ARTIFACT_TYPE)
    image = Manifest(Descriptor("application/vnd.oci.image.config.v1+json", d, 2), [])
    assert [manifest_format(m) for m in (kit, old_kit, mp, image)] == [
        "kit", "kit", "modelpack", None
    ]  # fmt: skip
    assert is_modelkit_manifest(mp.to_json()) and not is_modelkit_manifest(image)
