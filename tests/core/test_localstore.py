"""LocalStore: kit's on-disk layout, atomic blobs, per-repo index/tag files, concurrent writers."""

from __future__ import annotations

import base64
import io
import json
import multiprocessing
import os
from pathlib import Path

import pytest
from kitflow.content.digest import sha256_digest
from kitflow.content.localstore import LocalStore, kitops_home, repo_key
from kitflow.content.target import Target
from kitflow.errors import DigestMismatchError, NotFoundError
from kitflow.format.descriptor import OCI_MANIFEST, Descriptor


def _manifest(store: LocalStore, payload: bytes) -> Descriptor:
    layer = store.put_bytes("application/vnd.kitops.modelkit.code.v1.tar", payload)
    config = store.put_bytes("application/vnd.kitops.modelkit.config.v1+json", b'{"x":1}')
    body = json.dumps(
        {"schemaVersion": 2, "config": config.to_json(), "layers": [layer.to_json()]},
        separators=(",", ":"),
    ).encode()
    return store.put_bytes(OCI_MANIFEST, body)


def test_kitops_home_rules(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("KITOPS_HOME", str(tmp_path / "env"))
    assert kitops_home() == tmp_path / "env"
    assert kitops_home(tmp_path / "flag") == tmp_path / "flag"
    monkeypatch.delenv("KITOPS_HOME")
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "xdg"))
    assert kitops_home() == tmp_path / "xdg" / "kitops"


def test_repo_key_matches_kit() -> None:
    assert repo_key("localhost/_") == "bG9jYWxob3N0L18="
    assert repo_key("ghcr.io/org/model") == "Z2hjci5pby9vcmcvbW9kZWw="


def test_layout_files(tmp_path: Path) -> None:
    store = LocalStore(tmp_path)
    desc = _manifest(store, b"hello")
    store.add_manifest("localhost/demo", desc, "v1")
    root = tmp_path / "storage"
    assert json.loads((root / "oci-layout").read_bytes()) == {"imageLayoutVersion": "1.0.0"}
    oras = json.loads((root / "index.json").read_bytes())
    assert oras["schemaVersion"] == 2
    assert [m["digest"] for m in oras["manifests"]] == [desc.digest]
    key = base64.urlsafe_b64encode(b"localhost/demo").decode()
    index = json.loads((root / f"{key}-index.json").read_bytes())
    assert index == {"schemaVersion": 2, "manifests": [desc.to_json()]}
    tags = json.loads((root / f"{key}-tags.json").read_bytes())
    assert tags == {"v1": {"mediaType": OCI_MANIFEST, "digest": desc.digest, "size": desc.size}}
    assert (root / "blobs" / "sha256" / desc.digest.split(":")[1]).is_file()
    assert store.repositories() == ["localhost/demo"]


def test_reads_kit_written_files(tmp_path: Path) -> None:
    """Files in kit's exact shape (as kit writes them) are understood."""
    store = LocalStore(tmp_path)
    desc = _manifest(store, b"kit")
    root = tmp_path / "storage"
    key = repo_key("ghcr.io/org/model")
    manifest_json = json.dumps(desc.to_json(), separators=(",", ":"))
    (root / f"{key}-index.json").write_text(
        '{"schemaVersion":2,"manifests":[' + manifest_json + "]}"
    )
    (root / f"{key}-tags.json").write_text('{"latest":' + manifest_json + "}")
    repo = store.repo("ghcr.io/org/model")
    assert repo.resolve("latest") == desc
    assert repo.resolve(desc.digest) == desc
    assert repo.fetch_bytes(desc).startswith(b'{"schemaVersion":2')


def test_repo_is_a_target(tmp_path: Path) -> None:
    store = LocalStore(tmp_path)
    repo = store.repo("localhost/x")
    assert isinstance(repo, Target)
    data = b"some layer bytes"
    desc = Descriptor("application/octet-stream", sha256_digest(data), len(data))
    assert not repo.exists(desc)
    repo.push(desc, io.BytesIO(data))
    assert repo.exists(desc)
    with repo.fetch(desc) as stream:
        assert stream.read() == data
        assert stream.read() == b""
    manifest = json.dumps({"schemaVersion": 2, "layers": [desc.to_json()]}).encode()
    mdesc = Descriptor(OCI_MANIFEST, sha256_digest(manifest), len(manifest))
    repo.push_bytes(mdesc, manifest)
    assert repo.exists(mdesc)
    assert not store.repo("localhost/other").exists(mdesc)
    repo.tag(mdesc, "v2")
    assert repo.resolve("v2").digest == mdesc.digest
    with pytest.raises(NotFoundError):
        repo.resolve("nope")


def test_push_refuses_wrong_content(tmp_path: Path) -> None:
    store = LocalStore(tmp_path)
    repo = store.repo("localhost/x")
    desc = Descriptor("application/octet-stream", sha256_digest(b"right"), 5)
    with pytest.raises(DigestMismatchError):
        repo.push(desc, io.BytesIO(b"wrong"))
    assert not store.has_blob(desc.digest)
    assert list((tmp_path / "storage" / "ingest").iterdir()) == []


def test_corrupted_blob_is_detected_on_read(tmp_path: Path) -> None:
    store = LocalStore(tmp_path)
    desc = store.put_bytes("application/octet-stream", b"original content")
    path = store.blob_path(desc.digest)
    os.chmod(path, 0o644)
    path.write_bytes(b"tampered content")
    with pytest.raises(DigestMismatchError), store.open_blob(desc) as reader:
        while reader.read(4):
            pass


def test_blob_writer_is_invisible_until_commit(tmp_path: Path) -> None:
    store = LocalStore(tmp_path)
    with store.ingest() as writer:
        writer.write(b"abc")
        digest = writer.digest
        assert not store.has_blob(digest)
        assert store.blob_digests() == []
    # left without commit: nothing stored, temp file gone
    assert not store.has_blob(digest)
    assert list(store.ingest_dir.iterdir()) == []
    with store.ingest() as writer:
        writer.write(b"abc")
        desc = writer.commit("text/plain")
    assert store.has_blob(desc.digest) and desc.size == 3


def test_untag_and_remove(tmp_path: Path) -> None:
    store = LocalStore(tmp_path)
    desc = _manifest(store, b"a")
    store.add_manifest("localhost/a", desc, "v1")
    store.add_manifest("localhost/a", desc, "v2")
    store.add_manifest("localhost/b", desc, "v1")
    store.untag("localhost/a", "v1")
    assert list(store.tags("localhost/a")) == ["v2"]
    assert store.remove_manifest("localhost/a", desc.digest) is False  # b still refers to it
    assert store.repositories() == ["localhost/b"]
    assert not (tmp_path / "storage" / f"{repo_key('localhost/a')}-tags.json").exists()
    assert store.has_blob(desc.digest)
    assert desc.digest in store.all_referenced_blobs()
    assert store.remove_manifest("localhost/b", desc.digest) is True
    assert not store.has_blob(desc.digest)
    assert store.repositories() == []
    assert json.loads((tmp_path / "storage" / "index.json").read_bytes())["manifests"] == []
    with pytest.raises(NotFoundError):
        store.untag("localhost/b", "v1")


def test_all_referenced_blobs(tmp_path: Path) -> None:
    store = LocalStore(tmp_path)
    desc = _manifest(store, b"ref")
    orphan = store.put_bytes("application/octet-stream", b"orphan")
    store.add_manifest("localhost/r", desc)
    referenced = store.all_referenced_blobs()
    manifest = json.loads(store.read_blob(desc))
    assert desc.digest in referenced
    assert manifest["config"]["digest"] in referenced
    assert manifest["layers"][0]["digest"] in referenced
    assert orphan.digest not in referenced


def _writer(home: str, worker: int, count: int) -> None:
    store = LocalStore(home)
    for i in range(count):
        desc = _manifest(store, f"worker {worker} item {i}".encode())
        store.add_manifest("localhost/shared", desc, f"w{worker}-{i}")
        store.add_manifest(f"localhost/own{worker}", desc, "latest")


def test_concurrent_writers(tmp_path: Path) -> None:
    workers, count = 4, 8
    ctx = multiprocessing.get_context("spawn")
    procs = [ctx.Process(target=_writer, args=(str(tmp_path), w, count)) for w in range(workers)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(60)
        assert p.exitcode == 0
    store = LocalStore(tmp_path)
    assert len(store.tags("localhost/shared")) == workers * count
    assert len(store.manifests("localhost/shared")) == workers * count
    assert len(store.oras_manifests()) == workers * count
    assert sorted(store.repositories()) == sorted(
        ["localhost/shared", *[f"localhost/own{w}" for w in range(workers)]]
    )
    for w in range(workers):
        assert len(store.manifests(f"localhost/own{w}")) == count


@pytest.mark.skopeo
def test_storage_is_an_oci_layout_skopeo_reads(tmp_path: Path) -> None:
    """skopeo reads kitflow's storage directory as an OCI image layout and verifies each blob."""
    import shutil
    import subprocess

    skopeo = shutil.which("skopeo")
    if skopeo is None:
        pytest.fail("skopeo is not installed: install the Debian package 'skopeo'", pytrace=False)
    store = LocalStore(tmp_path / "home")
    desc = _manifest(store, b"layer for skopeo")
    store.add_manifest("localhost/sk", desc, "v1")
    out = tmp_path / "out"
    subprocess.run(
        [skopeo, "copy", f"oci:{store.root}", f"dir:{out}"],
        check=True,
        capture_output=True,
    )
    assert (out / "manifest.json").read_bytes() == store.read_blob(desc)
    manifest = json.loads(store.read_blob(desc))
    for child in [manifest["config"], *manifest["layers"]]:
        hexdigest = child["digest"].split(":")[1]
        assert (out / hexdigest).read_bytes() == store.read_blob(Descriptor.from_json(child))


def test_blobs_can_be_written_while_holding_the_index_lock(tmp_path: Path) -> None:
    store = LocalStore(tmp_path)
    with store.lock():
        desc = store.put_bytes("text/plain", b"inside the lock")
    assert store.has_blob(desc.digest)
    assert json.loads((tmp_path / "storage" / "index.json").read_bytes())["manifests"] == []
