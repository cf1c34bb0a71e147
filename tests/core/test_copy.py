"""The copy engine over every kind of target: local store, OCI layout, registry; indexes, skips,
roll-back hooks, local corruption, and packed ModelKits (Kit and ModelPack) through a registry."""

from __future__ import annotations

import json
import shutil
import subprocess

import kitflow.api as kitflow
import pytest
from kitflow.content.digest import sha256_digest
from kitflow.content.localstore import LocalStore
from kitflow.content.ocilayout import OCILayout
from kitflow.content.registry import Registry
from kitflow.errors import DigestMismatchError
from kitflow.format.descriptor import OCI_INDEX, Descriptor
from kitflow.format.mediatypes import MODELPACK_CONFIG
from kitflow.ops.copy import copy_graph
from kitflow.ops.transfer import push
from registry_helpers import make_kit
from support.registry import unique_repo


def test_copy_local_to_layout_skips_what_is_there(tmp_path):
    _, mdesc, blobs = make_kit(tmp_path, "localhost/a/b", "v1")
    src = LocalStore(tmp_path).repo("localhost/a/b")
    layout = OCILayout(tmp_path / "layout")
    created: list[Descriptor] = []
    first = copy_graph(src, layout, "v1", on_created=created.append, progress=True)
    assert first.root.digest == mdesc.digest
    assert {d.digest for d in created} == set(blobs) - {mdesc.digest}
    second = copy_graph(src, layout, "v1", dst_reference="v2")
    assert second.blobs_skipped == 3 and second.bytes_transferred == 0
    assert set(layout.tags()) == {"v1", "v2"}


def test_copy_of_an_index_copies_every_child(registry, tmp_path):
    _, one, _ = make_kit(tmp_path, "localhost/multi/kit", "a", seed="one")
    _, two, _ = make_kit(tmp_path, "localhost/multi/kit", "b", seed="two")
    index = json.dumps(
        {"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": [one.to_json(), two.to_json()]}
    ).encode()
    store = LocalStore(tmp_path)
    idesc = Descriptor(OCI_INDEX, sha256_digest(index), len(index))
    store.put_bytes(OCI_INDEX, index)
    layout = OCILayout(tmp_path / "idx")
    layout.push_bytes(idesc, index)
    for child in (one, two):
        copy_graph(store.repo("localhost/multi/kit"), layout, child.digest)
    layout.tag(idesc, "both")
    name = f"{registry.host}/{unique_repo()}"
    stats = copy_graph(layout, Registry(name, registry.options()), "both")
    assert stats.root.media_type == OCI_INDEX
    remote = Registry(name, registry.options())
    assert remote.resolve("both").digest == idesc.digest
    assert remote.exists(one) and remote.exists(two)


def test_corrupt_local_blob_is_refused_by_push(registry, tmp_path):
    name = f"{registry.host}/{unique_repo()}"
    manifest, _, _ = make_kit(tmp_path, name, "v1")
    layer = manifest.layers[1]
    path = LocalStore(tmp_path).blob_path(layer.digest)
    data = bytearray(path.read_bytes())
    data[100] ^= 0xFF
    path.write_bytes(bytes(data))
    with pytest.raises(DigestMismatchError):
        push(f"{name}:v1", registry=registry.options(), home=tmp_path)
    with pytest.raises(Exception, match="not found"):
        Registry(name, registry.options()).resolve("v1")


def _project(root):
    root.mkdir()
    (root / "model.bin").write_bytes(b"\x00weights" * 5000)
    (root / "src").mkdir()
    (root / "src" / "predict.py").write_text("def predict(m, r):\n    return r\n")
    (root / "README.md").write_text("# demo\n")
    (root / "Kitfile").write_text(
        "manifestVersion: 1.0.0\n"
        "package:\n  name: demo\n  authors: [kitflow]\n"
        "model:\n  name: demo\n  path: model.bin\n"
        "code:\n  - path: src\n"
        "docs:\n  - path: README.md\n"
    )
    return root


@pytest.mark.parametrize("model_pack", [False, True])
def test_packed_modelkit_through_the_registry_and_skopeo(registry, tmp_path, model_pack):
    skopeo = shutil.which("skopeo")
    assert skopeo, "skopeo is not installed: install the Debian package 'skopeo'"
    context = _project(tmp_path / "proj")
    name = f"{registry.host}/{unique_repo()}"
    packed = kitflow.pack(context, tag=f"{name}:v1", use_model_pack=model_pack, home=tmp_path / "h")
    pushed = kitflow.push(f"{name}:v1", registry=registry.options(), home=tmp_path / "h")
    assert pushed.digest == packed.digest
    raw = subprocess.run(
        [skopeo, "inspect", "--raw", "--tls-verify=false", f"docker://{name}:v1"],
        check=True,
        capture_output=True,
    ).stdout
    assert sha256_digest(raw) == packed.digest
    doc = json.loads(raw)
    if model_pack:
        assert doc["config"]["mediaType"] == MODELPACK_CONFIG
    layout = tmp_path / "by-skopeo"
    subprocess.run(
        [
            skopeo,
            "copy",
            "--src-tls-verify=false",
            "--preserve-digests",
            f"docker://{name}:v1",
            f"oci:{layout}:v1",
        ],
        check=True,
        capture_output=True,
    )
    assert OCILayout(layout).resolve("v1").digest == packed.digest
    pulled = kitflow.pull(f"{name}:v1", registry=registry.options(), home=tmp_path / "p")
    assert pulled.digest == packed.digest
    out = kitflow.unpack(f"{name}:v1", tmp_path / "out", home=tmp_path / "p")
    assert (tmp_path / "out" / "model.bin").read_bytes() == (context / "model.bin").read_bytes()
    assert out.digest == packed.digest
