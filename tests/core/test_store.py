"""Local store operations with kit's rules: list, inspect, info, tag, remove, prune, verify."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from kitflow.errors import KitflowError, NotFoundError
from kitflow.ops import store as ops
from store_helpers import KIT, KitBuilder, tar_of


@pytest.fixture
def kits(tmp_path: Path) -> KitBuilder:
    return KitBuilder(tmp_path / "home")


def test_format_bytes_matches_kit() -> None:
    assert ops.format_bytes(0) == "0 B"
    assert ops.format_bytes(1023) == "1023 B"
    assert ops.format_bytes(1024) == "1.0 KiB"
    assert ops.format_bytes(1024 * 1024 - 1) == "1023.9 KiB"
    assert ops.format_bytes(5 * 1024**3 + 1) == "5.0 GiB"


def test_list_and_table(kits: KitBuilder) -> None:
    desc = kits.standard("localhost/test/model:v1")
    kits.store.tag("localhost/test/model", desc, "latest")
    kits.standard("registry.example.com/org/other:1.0")
    rows = ops.list_modelkits(home=kits.home)
    assert [(r.repository, r.tags) for r in rows] == [
        ("registry.example.com/org/other", ["1.0"]),
        ("test/model", ["latest", "v1"]),
    ]
    row = rows[1]
    assert row.name == "standard" and row.author == "Ann Author" and row.digest == desc.digest
    manifest = json.loads(kits.store.read_blob(desc))
    assert row.size == sum(layer["size"] for layer in manifest["layers"])
    table = ops.list_table(rows).splitlines()
    assert table[0].split() == ["REPOSITORY", "TAG", "MAINTAINER", "NAME", "SIZE", "DIGEST"]
    assert len(table) == 4  # one line per tag
    assert table[0].index("TAG") == len("registry.example.com/org/other") + 3
    assert ops.list_json(rows)[1]["modelName"] == "standard"
    assert [r.repository for r in ops.list_modelkits("test/model", home=kits.home)] == [
        "test/model"
    ]
    assert ops.list_modelkits(home=kits.home / "empty") == []


def test_inspect_and_info(kits: KitBuilder) -> None:
    desc = kits.standard()
    out = ops.inspect("test/model:v1", home=kits.home)
    assert list(out) == ["digest", "cliVersion", "kitfile", "manifest"]
    assert out["digest"] == desc.digest and out["cliVersion"] == "1.10.0"
    assert out["kitfile"]["package"]["name"] == "standard"
    assert out["manifest"] == json.loads(kits.store.read_blob(desc))
    text = ops.info("test/model:v1", home=kits.home)
    assert "name: standard" in text and "path: data/train.csv" in text
    with pytest.raises(NotFoundError, match="not found in local storage"):
        ops.info("test/model:nope", home=kits.home)


def test_tag_same_and_other_repository(kits: KitBuilder) -> None:
    desc = kits.standard()
    ops.tag("test/model:v1", "test/model:v2", home=kits.home)
    ops.tag("test/model:v1", "registry.example.com/team/model:prod", home=kits.home)
    assert kits.store.tags_for("localhost/test/model", desc.digest) == ["v1", "v2"]
    assert kits.store.tags_for("registry.example.com/team/model", desc.digest) == ["prod"]
    with pytest.raises(NotFoundError, match="not found"):
        ops.tag("test/model:missing", "test/model:x", home=kits.home)


def test_remove_by_tag_untags_until_the_last(kits: KitBuilder) -> None:
    desc = kits.standard()
    ops.tag("test/model:v1", "test/model:v2", home=kits.home)
    ops.remove("test/model:v1", home=kits.home)
    assert kits.store.tags_for("localhost/test/model", desc.digest) == ["v2"]
    assert kits.store.has_blob(desc.digest)
    ops.remove("test/model:v2", home=kits.home)
    assert kits.store.repositories() == []
    assert kits.store.blob_digests() == []  # layers and config collected with the manifest
    with pytest.raises(NotFoundError, match="model test/model:v2 not found"):
        ops.remove("test/model:v2", home=kits.home)


def test_remove_by_digest_or_force_drops_every_tag(kits: KitBuilder) -> None:
    desc = kits.standard()
    ops.tag("test/model:v1", "test/model:v2", home=kits.home)
    ops.remove(f"test/model@{desc.digest}", home=kits.home)
    assert kits.store.repositories() == []
    desc = kits.standard()
    ops.tag("test/model:v1", "test/model:v2", home=kits.home)
    ops.remove("test/model:v1", force=True, home=kits.home)
    assert kits.store.repositories() == []


def test_remove_keeps_blobs_shared_with_other_kits(kits: KitBuilder) -> None:
    desc = kits.standard("localhost/a/model:v1")
    ops.tag("a/model:v1", "b/model:v1", home=kits.home)
    ops.remove("a/model:v1", home=kits.home)
    assert kits.store.has_blob(desc.digest)
    assert ops.verify(home=kits.home) == []


def test_remove_all_untagged_and_all_forced(kits: KitBuilder) -> None:
    tagged = kits.standard("localhost/keep/model:v1")
    untagged = kits.standard("localhost/drop/model:v1")
    kits.store.untag("localhost/drop/model", "v1")
    removed = ops.remove(all_untagged=True, home=kits.home)
    assert removed == [f"drop/model@{untagged.digest}"]
    assert kits.store.repositories() == ["localhost/keep/model"]
    removed = ops.remove(all_untagged=True, force=True, home=kits.home)
    assert removed == [f"keep/model@{tagged.digest}"]
    assert kits.store.repositories() == []


def test_remove_argument_rules(kits: KitBuilder) -> None:
    with pytest.raises(KitflowError, match="modelkit is required for remove unless --all"):
        ops.remove(home=kits.home)
    with pytest.raises(KitflowError, match="should not be specified when --all"):
        ops.remove("x:v1", all_untagged=True, home=kits.home)
    with pytest.raises(KitflowError, match="cannot use --all or --force with --remote"):
        ops.remove("reg.example.com/x:v1", force=True, remote=True, home=kits.home)


def test_prune_deletes_only_unreferenced_blobs(kits: KitBuilder) -> None:
    kits.standard()
    before = set(kits.store.blob_digests())
    orphan = kits.blob(KIT + "docs.v1.tar", tar_of({"orphan.md": b"nobody uses me"}))
    stale = kits.store.ingest_dir / "kitflow-stale.part"
    stale.write_bytes(b"partial")
    fresh = kits.store.ingest_dir / "kitflow-fresh.part"
    fresh.write_bytes(b"in flight")
    import os
    import time

    old = time.time() - 7200
    os.utime(stale, (old, old))
    removed, freed = ops.prune(home=kits.home)
    assert removed == 2 and freed == orphan.size + len(b"partial")
    assert set(kits.store.blob_digests()) == before
    assert fresh.exists() and not stale.exists()
    assert ops.prune(home=kits.home) == (0, 0)


def test_verify_reports_corruption_and_missing_blobs(kits: KitBuilder) -> None:
    desc = kits.standard()
    assert ops.verify(home=kits.home) == []
    manifest = json.loads(kits.store.read_blob(desc))
    layer = manifest["layers"][0]["digest"]
    path = kits.store.blob_path(layer)
    path.write_bytes(path.read_bytes()[:-1] + b"\x01")
    missing = manifest["layers"][1]["digest"]
    kits.store.blob_path(missing).unlink()
    problems = ops.verify(home=kits.home)
    assert any(p.startswith(f"blob {layer} is corrupt") for p in problems)
    assert any(p.endswith(f"blob {missing} is missing") for p in problems)
    assert len(problems) == 2


def test_verify_reports_a_tag_whose_manifest_is_gone(kits: KitBuilder) -> None:
    desc = kits.standard()
    kits.store.blob_path(desc.digest).unlink()
    problems = ops.verify(home=kits.home)
    assert f"test/model:v1: tagged manifest {desc.digest} is missing" in problems
    assert f"test/model@{desc.digest}: manifest blob is missing" in problems
