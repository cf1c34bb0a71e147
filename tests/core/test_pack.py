"""pack: golden config/manifest, kit's store layout, compression and raw variants, ModelPack,
the incremental cache, atomicity under a killed process, and concurrent packs."""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import os
import signal
import subprocess
import sys
import tarfile
import textwrap
import time
from pathlib import Path

import jsonschema
import pytest
import zstandard
from kitflow.content.localstore import LocalStore, repo_key
from kitflow.errors import KitflowError
from kitflow.format.descriptor import Manifest
from kitflow.ops import pack as pack_mod
from kitflow.ops.pack import KIT_CLI_VERSION, file_metadata_annotation, go_time_rfc3339nano, pack

TESTS = Path(__file__).resolve().parent.parent
DATA = TESTS / "data" / "generated"
SCHEMA = TESTS / "data" / "model-spec" / "config-schema.json"


def materialise(dest: Path) -> Path:
    spec = json.loads((DATA / "context.json").read_text())
    dest.mkdir(parents=True)
    for item in spec["files"]:
        path = dest / item["path"]
        if item["type"] == "directory":
            path.mkdir(parents=True, exist_ok=True)
        else:
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(item["content"].encode())
        os.chmod(path, int(item["mode"], 8))
    os.chmod(dest, 0o755)
    return dest


def age(path: Path, seconds: float = 60) -> None:
    """Backdate every file so the pack cache does not treat it as racily modified."""
    past = time.time() - seconds
    for root, dirs, files in os.walk(path):
        for name in dirs + files:
            os.utime(os.path.join(root, name), (past, past))


def store_blob(home: Path, digest: str) -> bytes:
    return (home / "storage" / "blobs" / "sha256" / digest.split(":")[1]).read_bytes()


def test_golden_config_and_manifest(tmp_path: Path) -> None:
    ctx = materialise(tmp_path / "ctx")
    home = tmp_path / "home"
    result = pack(ctx, tag="test-vector:1.0.0", home=home)
    assert KIT_CLI_VERSION == "1.10.0"
    assert store_blob(home, result.config_digest) == (DATA / "config.json").read_bytes()
    assert store_blob(home, result.digest) == (DATA / "manifest.json").read_bytes()
    assert (
        result.digest
        == "sha256:" + hashlib.sha256((DATA / "manifest.json").read_bytes()).hexdigest()
    )
    assert result.reference == "test-vector:1.0.0"  # kit display form; parses back
    assert [layer.kind for layer in result.layers] == ["model", "dataset", "docs"]
    for layer, vector in zip(result.layers, ["model.tar", "dataset.tar", "docs.tar"], strict=True):
        assert store_blob(home, layer.digest) == (DATA / vector).read_bytes()
    assert result.size == 3584 + 2560 + 2048


def test_store_layout_is_kits(tmp_path: Path) -> None:
    ctx = materialise(tmp_path / "ctx")
    home = tmp_path / "home"
    result = pack(ctx, tag="ghcr.io/org/model:v1,v2", home=home)
    storage = home / "storage"
    key = repo_key("ghcr.io/org/model")
    tags = json.loads((storage / f"{key}-tags.json").read_text())
    assert sorted(tags) == ["v1", "v2"]
    assert tags["v1"] == {
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "digest": result.digest,
        "size": len(store_blob(home, result.digest)),
    }
    index = json.loads((storage / f"{key}-index.json").read_text())
    assert [m["digest"] for m in index["manifests"]] == [result.digest]
    oras = json.loads((storage / "index.json").read_text())
    assert result.digest in [m["digest"] for m in oras["manifests"]]
    assert (storage / "oci-layout").exists()


def test_untagged_pack_goes_to_localhost_underscore(tmp_path: Path) -> None:
    ctx = materialise(tmp_path / "ctx")
    home = tmp_path / "home"
    result = pack(ctx, home=home)
    assert result.reference is None
    store = LocalStore(home)
    assert store.repositories() == ["localhost/_"]
    assert store.tags("localhost/_") == {}
    assert [m.digest for m in store.manifests("localhost/_")] == [result.digest]


@pytest.mark.parametrize("compression", ["gzip", "gzip-fastest", "zstd"])
def test_compression_roundtrip(tmp_path: Path, compression: str) -> None:
    ctx = materialise(tmp_path / "ctx")
    home = tmp_path / "home"
    result = pack(ctx, tag="c:1", home=home, compression=compression)
    suffix = "+zstd" if compression == "zstd" else "+gzip"
    config = json.loads(store_blob(home, result.config_digest))
    for layer, vector in zip(result.layers, ["model.tar", "dataset.tar", "docs.tar"], strict=True):
        assert layer.media_type.endswith(".v1.tar" + suffix)
        blob = store_blob(home, layer.digest)
        if compression == "zstd":
            raw = zstandard.ZstdDecompressor().stream_reader(io.BytesIO(blob)).read()
        else:
            assert blob[:10] == b"\x1f\x8b\x08\x00\x00\x00\x00\x00" + bytes(
                [4 if compression == "gzip-fastest" else 0, 255]
            )
            raw = gzip.decompress(blob)
        assert raw == (DATA / vector).read_bytes()
    # diffIds in the config are the uncompressed digests (the golden layer digests)
    assert (
        config["model"]["diffId"]
        == "sha256:" + hashlib.sha256((DATA / "model.tar").read_bytes()).hexdigest()
    )
    assert config["model"]["digest"] == result.layers[0].digest != config["model"]["diffId"]


def test_raw_layers(tmp_path: Path) -> None:
    ctx = tmp_path / "ctx"
    ctx.mkdir()
    (ctx / "weights.bin").write_bytes(b"\x00\x01raw weights")
    os.chmod(ctx / "weights.bin", 0o640)
    (ctx / "Kitfile").write_text(
        "manifestVersion: 1.0.0\npackage:\n  name: r\nmodel:\n  path: ./weights.bin\n"
    )
    home = tmp_path / "home"
    result = pack(ctx, tag="raw:1", home=home, layer_format="raw")
    manifest = Manifest.from_bytes(store_blob(home, result.digest))
    (layer,) = manifest.layers
    assert layer.media_type == "application/vnd.kitops.modelkit.model.v1.raw"
    assert store_blob(home, layer.digest) == b"\x00\x01raw weights"
    meta = json.loads(layer.annotations["org.cncf.model.file.metadata+json"])
    assert meta["name"] == "weights.bin" and meta["mode"] == 0o640 and meta["size"] == 13
    assert list(meta) == ["name", "mode", "uid", "gid", "size", "mtime", "typeflag"]
    assert layer.annotations["org.cncf.model.filepath"] == "weights.bin"


def test_raw_layer_needs_a_regular_file(tmp_path: Path) -> None:
    ctx = materialise(tmp_path / "ctx")
    with pytest.raises(KitflowError, match="is not a regular file"):
        pack(ctx, home=tmp_path / "home", layer_format="raw")


def test_bad_options(tmp_path: Path) -> None:
    ctx = materialise(tmp_path / "ctx")
    with pytest.raises(KitflowError, match="invalid compression type"):
        pack(ctx, home=tmp_path / "h", compression="lz4")
    with pytest.raises(KitflowError, match="invalid layer format"):
        pack(ctx, home=tmp_path / "h", layer_format="zip")
    with pytest.raises(KitflowError, match="not supported for ModelPack"):
        pack(ctx, home=tmp_path / "h", layer_format="raw", compression="gzip", use_model_pack=True)


def test_modelpack_config_is_valid(tmp_path: Path) -> None:
    ctx = materialise(tmp_path / "ctx")
    home = tmp_path / "home"
    result = pack(ctx, tag="mp:1", home=home, use_model_pack=True)
    manifest = Manifest.from_bytes(store_blob(home, result.digest))
    assert manifest.artifact_type == "application/vnd.cncf.model.manifest.v1+json"
    assert manifest.config.media_type == "application/vnd.cncf.model.config.v1+json"
    assert [d.media_type for d in manifest.layers] == [
        "application/vnd.cncf.model.weight.v1.tar",
        "application/vnd.cncf.model.dataset.v1.tar",
        "application/vnd.cncf.model.doc.v1.tar",
    ]
    config = json.loads(store_blob(home, result.config_digest))
    schema = json.loads(SCHEMA.read_text())
    jsonschema.validate(config, schema)
    assert config["modelfs"]["diffIds"] == [d.digest for d in manifest.layers]
    kitfile_json = json.loads(manifest.annotations["ml.kitops.modelkit.kitfile"])
    assert kitfile_json["package"]["name"] == "test-vector"
    assert kitfile_json["model"]["digest"] == manifest.layers[0].digest


def test_incremental_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    ctx = tmp_path / "ctx"
    (ctx / "model").mkdir(parents=True)
    (ctx / "src").mkdir()
    (ctx / "model" / "w.bin").write_bytes(os.urandom(200_000))
    (ctx / "src" / "predict.py").write_text("print('v1')\n")
    (ctx / "Kitfile").write_text(
        "manifestVersion: 1.0.0\npackage:\n  name: inc\nmodel:\n  path: model\n"
        "code:\n  - path: src\n"
    )
    age(ctx)
    home = tmp_path / "home"
    first = pack(ctx, tag="inc:1", home=home)
    assert first.bytes_read == 200_000 + len("print('v1')\n")

    opened: list[str] = []
    real_add_file = pack_mod.TarWriter.add_file

    def spy(self, name, mode, size, source, on_bytes=None):  # type: ignore[no-untyped-def]
        opened.append(str(name))
        return real_add_file(self, name, mode, size, source, on_bytes)

    monkeypatch.setattr(pack_mod.TarWriter, "add_file", spy)
    again = pack(ctx, tag="inc:2", home=home)
    assert again.bytes_read == 0 and opened == []
    assert again.digest == first.digest

    (ctx / "src" / "predict.py").write_text("print('v2')\n")
    age(ctx / "src")
    third = pack(ctx, tag="inc:3", home=home)
    assert opened == ["src/predict.py"]
    assert third.bytes_read == len("print('v2')\n")
    assert third.layers[0].digest == first.layers[0].digest
    assert third.layers[1].digest != first.layers[1].digest

    # a deleted blob is noticed: the layer is re-read, not referenced blindly
    LocalStore(home).delete_blob(first.layers[0].digest)
    fourth = pack(ctx, tag="inc:4", home=home)
    assert fourth.bytes_read == 200_000
    assert LocalStore(home).has_blob(first.layers[0].digest)


def test_racy_files_are_not_cached(tmp_path: Path) -> None:
    ctx = tmp_path / "ctx"
    (ctx / "m").mkdir(parents=True)
    (ctx / "m" / "w").write_bytes(b"fresh")
    (ctx / "Kitfile").write_text("manifestVersion: 1.0.0\npackage:\n  name: r\nmodel:\n  path: m\n")
    home = tmp_path / "home"
    pack(ctx, home=home)  # files are brand new: racily clean, so not cached
    assert pack(ctx, home=home).bytes_read == len(b"fresh")


def test_git_provenance(tmp_path: Path) -> None:
    ctx = materialise(tmp_path / "ctx")
    env = {
        **os.environ,
        "GIT_AUTHOR_NAME": "t",
        "GIT_AUTHOR_EMAIL": "t@example.com",
        "GIT_COMMITTER_NAME": "t",
        "GIT_COMMITTER_EMAIL": "t@example.com",
    }
    try:
        for args in (
            ["init", "-q"],
            ["add", "."],
            ["commit", "-qm", "x"],
            ["remote", "add", "origin", "https://user:secret@example.com/org/repo.git"],
        ):
            subprocess.run(["git", "-C", str(ctx), *args], check=True, env=env)
    except (OSError, subprocess.CalledProcessError):
        pytest.skip("git is not installed")
    head = subprocess.run(
        ["git", "-C", str(ctx), "rev-parse", "HEAD"], capture_output=True, text=True, check=True
    ).stdout.strip()
    home = tmp_path / "home"
    result = pack(ctx, home=home)
    ann = Manifest.from_bytes(store_blob(home, result.digest)).annotations
    assert ann["org.opencontainers.image.revision"] == head
    assert ann["org.opencontainers.image.source"] == "https://example.com/org/repo.git"
    assert ann["dev.kitflow.source.dirty"] == "false"
    (ctx / "README.md").write_text("changed\n")
    result = pack(ctx, home=home)
    ann = Manifest.from_bytes(store_blob(home, result.digest)).annotations
    assert ann["dev.kitflow.source.dirty"] == "true"
    assert "secret" not in json.dumps(ann)


def test_go_time_format() -> None:
    assert go_time_rfc3339nano(1_700_000_000_123_400_000, utc=True) == ("2023-11-14T22:13:20.1234Z")
    assert go_time_rfc3339nano(1_700_000_000_000_000_000, utc=True) == "2023-11-14T22:13:20Z"


def test_file_metadata_annotation(tmp_path: Path) -> None:
    path = tmp_path / "f.bin"
    path.write_bytes(b"abc")
    os.chmod(path, 0o644)
    text = file_metadata_annotation("f.bin", os.lstat(path))
    assert text.startswith('{"name":"f.bin","mode":420,"uid":0,"gid":0,"size":3,"mtime":"')
    assert text.endswith('","typeflag":0}')


_KILL_SCRIPT = textwrap.dedent(
    """
    import sys, time
    from kitflow.format import tarwriter
    real = tarwriter.TarWriter.add_file
    def slow(self, *a, **k):
        print("writing", flush=True)
        time.sleep(30)
        return real(self, *a, **k)
    tarwriter.TarWriter.add_file = slow
    from kitflow.ops.pack import pack
    pack(sys.argv[1], tag="killed:1", home=sys.argv[2])
    """
)


def _snapshot(home: Path) -> dict[str, bytes]:
    storage = home / "storage"
    out = {}
    for root, _, files in os.walk(storage):
        for name in files:
            path = Path(root) / name
            rel = str(path.relative_to(storage))
            if not rel.startswith("ingest/") and not name.startswith(".kitflow"):
                out[rel] = path.read_bytes()
    return out


def test_killed_pack_leaves_store_unchanged(tmp_path: Path) -> None:
    ctx = materialise(tmp_path / "ctx")
    home = tmp_path / "home"
    before = pack(ctx, tag="ok:1", home=home)
    (ctx / "model" / "weights.bin").write_bytes(b"new weights " * 1000)
    snapshot = _snapshot(home)
    proc = subprocess.Popen(
        [sys.executable, "-c", _KILL_SCRIPT, str(ctx), str(home)],
        stdout=subprocess.PIPE,
        text=True,
    )
    assert proc.stdout is not None
    assert proc.stdout.readline().strip() == "writing"
    proc.send_signal(signal.SIGKILL)
    proc.wait(30)
    assert _snapshot(home) == snapshot
    store = LocalStore(home)
    assert store.repo("localhost/ok").resolve("1").digest == before.digest
    assert "localhost/killed" not in store.repositories()
    # and the store still works: the next pack succeeds
    after = pack(ctx, tag="killed:1", home=home)
    assert store.repo("localhost/killed").resolve("1").digest == after.digest


_CONCURRENT_SCRIPT = textwrap.dedent(
    """
    import sys
    from kitflow.ops.pack import pack
    r = pack(sys.argv[1], tag=sys.argv[3], home=sys.argv[2])
    print(r.digest)
    """
)


def test_concurrent_packs(tmp_path: Path) -> None:
    home = tmp_path / "home"
    procs = []
    for i in range(4):
        ctx = materialise(tmp_path / f"ctx{i}")
        (ctx / "README.md").write_text(f"# variant {i}\n")
        procs.append(
            subprocess.Popen(
                [
                    sys.executable,
                    "-c",
                    _CONCURRENT_SCRIPT,
                    str(ctx),
                    str(home),
                    f"shared:v{i},own{i}",
                ],
                stdout=subprocess.PIPE,
                text=True,
            )
        )
    digests = []
    for proc in procs:
        out, _ = proc.communicate(timeout=120)
        assert proc.returncode == 0
        digests.append(out.strip())
    store = LocalStore(home)
    tags = store.tags("localhost/shared")
    assert sorted(tags) == sorted([f"v{i}" for i in range(4)] + [f"own{i}" for i in range(4)])
    assert {tags[f"v{i}"].digest for i in range(4)} == set(digests)
    for digest in digests:
        manifest = Manifest.from_bytes(store_blob(home, digest))
        for layer in manifest.layers:
            assert store.has_blob(layer.digest)
    oras = json.loads((home / "storage" / "index.json").read_text())
    assert set(digests) <= {m["digest"] for m in oras["manifests"]}


def test_tar_layers_read_back(tmp_path: Path) -> None:
    ctx = materialise(tmp_path / "ctx")
    (ctx / "src").mkdir()
    (ctx / "src" / "run.py").write_text("print(1)\n")
    (ctx / "Kitfile").write_text(
        "manifestVersion: 1.0.0\npackage:\n  name: all\ncode:\n  - path: .\n"
        "model:\n  path: model\nprompts:\n  - path: src/run.py\n"
    )
    home = tmp_path / "home"
    result = pack(ctx, home=home)
    kinds = [layer.kind for layer in result.layers]
    assert kinds == ["model", "code", "prompt"]
    manifest = Manifest.from_bytes(store_blob(home, result.digest))
    assert manifest.layers[2].annotations["ml.kitops.modelkit.layer-subtype"] == "prompt"
    with tarfile.open(fileobj=io.BytesIO(store_blob(home, result.layers[1].digest))) as tf:
        names = tf.getnames()
    assert "Kitfile" not in names and "model/weights.bin" not in names
    assert "other/file.txt" in names and "src" in names and "src/run.py" not in names


def test_model_reference_excludes_parent_paths(tmp_path: Path) -> None:
    ctx = materialise(tmp_path / "ctx")
    home = tmp_path / "home"
    (ctx / "Kitfile").write_text(
        "manifestVersion: 1.0.0\npackage:\n  name: parent\nmodel:\n  path: model\n"
    )
    pack(ctx, tag="parent:1", home=home)
    (ctx / "Kitfile").write_text(
        "manifestVersion: 1.0.0\npackage:\n  name: child\nmodel:\n  path: parent:1\n"
        "code:\n  - path: .\n"
    )
    child = pack(ctx, tag="child:1", home=home)
    assert [layer.kind for layer in child.layers] == ["code"]
    with tarfile.open(fileobj=io.BytesIO(store_blob(home, child.layers[0].digest))) as tf:
        names = tf.getnames()
    assert "README.md" in names and not any(n.startswith("model") for n in names)
    config = json.loads(store_blob(home, child.config_digest))
    assert config["model"]["path"] == "parent:1"


def test_progress_bar_does_not_change_the_result(tmp_path: Path) -> None:
    ctx = materialise(tmp_path / "ctx")
    quiet = pack(ctx, tag="p:1", home=tmp_path / "a")
    loud = pack(ctx, tag="p:1", home=tmp_path / "b", progress=True)
    assert quiet.digest == loud.digest


def test_pack_cache_is_bounded(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from kitflow.ops import packcache

    monkeypatch.setattr(packcache, "MAX_SLOTS", 3)
    cache = packcache.PackCache(tmp_path)
    for i in range(6):
        cache.record(f"slot{i}", "fp", packcache.CachedLayer("sha256:x", 1, "sha256:x", "t"))
        os.utime(cache.dir / f"slot{i}.json", ns=(i * 10**9, i * 10**9))
    remaining = sorted(p.name for p in cache.dir.iterdir())
    assert len(remaining) == 3 and "slot5.json" in remaining
    assert cache.lookup("slot5", "fp") is not None and cache.lookup("slot5", "other") is None


def test_modelpack_raw_layer(tmp_path: Path) -> None:
    ctx = tmp_path / "ctx"
    ctx.mkdir()
    (ctx / "model.gguf").write_bytes(b"GGUF....")
    (ctx / "Kitfile").write_text(
        "manifestVersion: 1.0.0\npackage:\n  name: mp-raw\nmodel:\n  path: model.gguf\n"
    )
    home = tmp_path / "home"
    result = pack(ctx, home=home, layer_format="raw", use_model_pack=True)
    manifest = Manifest.from_bytes(store_blob(home, result.digest))
    assert [d.media_type for d in manifest.layers] == ["application/vnd.cncf.model.weight.v1.raw"]
    assert store_blob(home, manifest.layers[0].digest) == b"GGUF...."
    config = json.loads(store_blob(home, result.config_digest))
    jsonschema.validate(config, json.loads(SCHEMA.read_text()))
