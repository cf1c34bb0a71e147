"""The Registry target against a real CNCF Distribution: reads, writes, chunked uploads, mounts,
TLS, pagination, deletion and digest checks."""

from __future__ import annotations

import io
import json

import pytest
from kitflow.content.digest import sha256_digest
from kitflow.content.registry import Registry
from kitflow.errors import DigestMismatchError, KitflowError, NotFoundError, RegistryError
from kitflow.format.descriptor import OCI_MANIFEST, Descriptor
from kitflow.ops.transfer import push
from registry_helpers import LAYER_TYPE, layer_bytes, make_kit
from support.registry import unique_repo


def _blob(seed: str, size: int = 50_000) -> tuple[Descriptor, bytes]:
    data = layer_bytes(seed, size)
    return Descriptor(LAYER_TYPE, sha256_digest(data), len(data)), data


def test_blob_round_trip_head_and_stream(registry):
    repo = Registry(f"{registry.host}/{unique_repo()}", registry.options())
    desc, data = _blob("round-trip", 300_000)
    assert not repo.exists(desc)
    repo.push(desc, io.BytesIO(data))
    assert repo.exists(desc)
    with repo.fetch(desc) as stream:
        got = b""
        while chunk := stream.read(65536):
            got += chunk
    assert got == data
    assert repo.fetch_bytes(desc) == data


def test_push_skips_blob_the_registry_has(registry, fault_proxy):
    name = unique_repo()
    desc, data = _blob("skip-me")
    Registry(f"{registry.host}/{name}", registry.options()).push(desc, io.BytesIO(data))
    via_proxy = Registry(f"{fault_proxy.host}/{name}", registry.options())
    via_proxy.push(desc, io.BytesIO(data))
    assert fault_proxy.requests("HEAD", "/blobs/")
    assert not fault_proxy.requests("POST") and not fault_proxy.requests("PUT")


def test_monolithic_put_carries_content_length(registry, fault_proxy):
    repo = Registry(f"{fault_proxy.host}/{unique_repo()}", registry.options())
    desc, data = _blob("monolithic", 200_000)
    repo.push(desc, io.BytesIO(data))
    puts = fault_proxy.requests("PUT", "/blobs/uploads/")
    assert len(puts) == 1
    assert puts[0].headers.get("Content-Length") == str(len(data))
    assert not fault_proxy.requests("PATCH")


def test_chunked_patch_upload(registry, fault_proxy):
    opts = registry.options(chunk_size=64 * 1024)
    repo = Registry(f"{fault_proxy.host}/{unique_repo()}", opts)
    desc, data = _blob("chunked", 200_000)
    repo.push(desc, io.BytesIO(data))
    patches = fault_proxy.requests("PATCH")
    assert len(patches) == 4  # 64 KiB * 3 + remainder
    assert patches[0].headers["Content-Range"] == "0-65535"
    assert patches[-1].headers["Content-Range"] == f"{3 * 65536}-{len(data) - 1}"
    assert fault_proxy.requests("PUT")[0].headers.get("Content-Length") == "0"
    assert repo.fetch_bytes(desc) == data


def test_cross_repository_mount(registry, fault_proxy):
    source_name, target_name = unique_repo("src"), unique_repo("dst")
    desc, data = _blob("mount-me")
    Registry(f"{registry.host}/{source_name}", registry.options()).push(desc, io.BytesIO(data))
    target = Registry(f"{fault_proxy.host}/{target_name}", registry.options())
    assert target.mount(desc, source_name) is True
    assert target.exists(desc)
    posts = fault_proxy.requests("POST")
    assert posts and "mount=" in posts[0].path and "from=" in posts[0].path
    assert not fault_proxy.requests("PUT")


def test_mount_of_missing_blob_falls_back(registry):
    target = Registry(f"{registry.host}/{unique_repo()}", registry.options())
    desc, _ = _blob("never-pushed")
    assert target.mount(desc, unique_repo()) is False


def test_manifest_resolve_tag_and_digest(registry, tmp_path):
    name = f"{registry.host}/{unique_repo()}"
    manifest, mdesc, _ = make_kit(tmp_path, name, "v1")
    push(f"{name}:v1", registry=registry.options(), home=tmp_path)
    repo = Registry(name, registry.options())
    by_tag = repo.resolve("v1")
    assert (by_tag.digest, by_tag.size, by_tag.media_type) == (
        mdesc.digest,
        mdesc.size,
        OCI_MANIFEST,
    )
    assert repo.resolve(mdesc.digest).digest == mdesc.digest
    assert repo.fetch_bytes(by_tag) == manifest.to_bytes()


def test_missing_tag_is_a_clear_not_found(registry):
    repo = Registry(f"{registry.host}/{unique_repo()}", registry.options())
    with pytest.raises(NotFoundError, match="not found in the registry; check"):
        repo.resolve("nope")


def test_pushing_wrong_bytes_is_refused(registry):
    repo = Registry(f"{registry.host}/{unique_repo()}", registry.options())
    desc, data = _blob("honest")
    with pytest.raises(DigestMismatchError):
        repo.push_bytes(desc, data[:-1] + b"x")
    # The registry itself refuses an upload that does not hash to the digest.
    with pytest.raises(DigestMismatchError):
        repo.upload(desc, io.BytesIO(data[:-1] + b"x"))
    assert not repo.exists(desc)


def test_corrupted_download_is_refused(registry, fault_proxy):
    name = unique_repo()
    desc, data = _blob("corrupt-me", 120_000)
    Registry(f"{registry.host}/{name}", registry.options()).push(desc, io.BytesIO(data))
    fault_proxy.add("corrupt", method="GET", path="/blobs/sha256:", times=-1)
    repo = Registry(f"{fault_proxy.host}/{name}", registry.options())
    with pytest.raises(DigestMismatchError), repo.fetch(desc) as stream:
        while stream.read(65536):
            pass
    with pytest.raises(DigestMismatchError):
        repo.fetch_bytes(desc)


def test_list_tags_follows_link_pagination(registry, fault_proxy, tmp_path):
    name = f"{registry.host}/{unique_repo()}"
    manifest, mdesc, _ = make_kit(tmp_path, name, "t0")
    repo = Registry(name, registry.options())
    tags = [f"t{i}" for i in range(7)]
    data = manifest.to_bytes()
    push(f"{name}:t0", registry=registry.options(), home=tmp_path)
    for tag in tags[1:]:
        repo.push_manifest(mdesc, data, tag)
    fault_proxy.add("paginate", method="GET", path="/tags/list", times=-1, page_size=3)
    paged = Registry(f"{fault_proxy.host}/{name.split('/', 1)[1]}", registry.options())
    assert sorted(paged.list_tags(page_size=3)) == tags
    pages = fault_proxy.requests("GET", "/tags/list")
    assert len(pages) == 3
    assert "last=t2" in pages[1].path
    assert sorted(repo.list_tags()) == tags


def test_delete_manifest(registry, tmp_path):
    name = f"{registry.host}/{unique_repo()}"
    _, mdesc, _ = make_kit(tmp_path, name, "gone")
    push(f"{name}:gone", registry=registry.options(), home=tmp_path)
    repo = Registry(name, registry.options())
    assert repo.delete("gone").digest == mdesc.digest
    with pytest.raises(NotFoundError):
        repo.resolve("gone")


def test_tls_with_ca_bundle(registry_tls, tmp_path):
    name = f"{registry_tls.host}/{unique_repo()}"
    repo = Registry(name, registry_tls.options())
    desc, data = _blob("tls")
    repo.push(desc, io.BytesIO(data))
    assert repo.fetch_bytes(desc) == data


def test_tls_unknown_ca_is_refused_unless_verification_is_off(registry_tls):
    name = f"{registry_tls.host}/{unique_repo()}"
    desc, data = _blob("tls-verify")
    strict = Registry(name, registry_tls.options(ca_file=None))
    with pytest.raises(RegistryError, match=r"not trusted.*--ca-file") as info:
        strict.exists(desc)
    assert registry_tls.host in str(info.value)
    assert strict.session.retries == 0  # a certificate problem is not retried
    relaxed = Registry(name, registry_tls.options(ca_file=None, tls_verify=False))
    relaxed.push(desc, io.BytesIO(data))
    assert relaxed.exists(desc)


def test_mutual_tls_client_certificate(registry_mtls):
    pki = registry_mtls.pki
    name = f"{registry_mtls.host}/{unique_repo()}"
    desc, data = _blob("mtls")
    without = Registry(name, registry_mtls.options(retries=0))
    with pytest.raises(RegistryError):
        without.exists(desc)
    with_cert = Registry(
        name, registry_mtls.options(client_cert=pki.client_cert, client_key=pki.client_key)
    )
    with_cert.push(desc, io.BytesIO(data))
    assert with_cert.fetch_bytes(desc) == data


def test_plain_http_against_tls_registry_fails_clearly(registry_tls):
    repo = Registry(f"{registry_tls.host}/{unique_repo()}", registry_tls.options(plain_http=True))
    with pytest.raises(KitflowError, match=registry_tls.host):
        repo.resolve("latest")


def test_repr_hides_password(registry_htpasswd):
    repo = Registry(f"{registry_htpasswd.host}/x", registry_htpasswd.options())
    assert registry_htpasswd.password not in repr(repo)
    assert registry_htpasswd.password not in repr(repo.auth)
    assert registry_htpasswd.password not in repr(repo.session)
    assert registry_htpasswd.password not in json.dumps(repo.options.safe_dict())
