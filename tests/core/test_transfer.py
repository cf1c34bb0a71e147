"""push, pull and copy against a real Distribution, cross-checked with skopeo, plus faults."""

from __future__ import annotations

import json
import shutil
import subprocess
import threading
import time
from pathlib import Path
from typing import Any

import pytest
from kitflow.cli.main import main as cli_main
from kitflow.content.localstore import LocalStore
from kitflow.content.ocilayout import OCILayout
from kitflow.content.registry import Registry
from kitflow.errors import DigestMismatchError, KitflowError, NotFoundError, RegistryError
from kitflow.format.descriptor import OCI_MANIFEST
from kitflow.ops.copy import RECEIVE_BUFFER
from kitflow.ops.store import prune, verify
from kitflow.ops.transfer import copy, pull, push
from registry_helpers import make_kit, store_snapshot
from support.registry import unique_repo


def _skopeo() -> str:
    path = shutil.which("skopeo")
    if path is None:
        pytest.fail("skopeo is not installed: install the Debian package 'skopeo'", pytrace=False)
    return path


def _run_cli(args: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    with pytest.raises(SystemExit) as exit_info:
        cli_main(args)
    out, err = capsys.readouterr()
    return int(exit_info.value.code or 0), out, err


def test_push_then_pull_round_trip(registry, tmp_path):
    name = f"{registry.host}/{unique_repo()}"
    _, mdesc, blobs = make_kit(tmp_path / "a", name, "v1", sizes=(5000, 300_000, 20))
    pushed = push(f"{name}:v1", registry=registry.options(), home=tmp_path / "a")
    assert pushed.digest == mdesc.digest
    assert pushed.blobs == 4 and pushed.blobs_skipped == 0
    assert pushed.bytes_transferred == sum(len(b) for d, b in blobs.items() if d != mdesc.digest)
    again = push(f"{name}:v1", registry=registry.options(), home=tmp_path / "a")
    assert again.blobs_skipped == 4 and again.bytes_transferred == 0

    pulled = pull(f"{name}:v1", registry=registry.options(), home=tmp_path / "b")
    assert pulled.digest == mdesc.digest
    store = LocalStore(tmp_path / "b")
    assert store.tags(name)["v1"].digest == mdesc.digest
    for digest, data in blobs.items():
        assert store.blob_path(digest).read_bytes() == data
    assert not list(store.ingest_dir.iterdir())


def test_push_to_another_destination_and_by_digest(registry, tmp_path):
    name = f"{registry.host}/{unique_repo()}"
    other = f"{registry.host}/{unique_repo()}"
    _, mdesc, _ = make_kit(tmp_path, name, "v1")
    result = push(f"{name}:v1", f"{other}:release", registry=registry.options(), home=tmp_path)
    assert result.destination == f"{other}:release"
    assert Registry(other, registry.options()).resolve("release").digest == mdesc.digest
    pulled = pull(f"{other}@{mdesc.digest}", registry=registry.options(), home=tmp_path / "d")
    assert pulled.digest == mdesc.digest
    assert LocalStore(tmp_path / "d").tags(other) == {}  # by digest: no tag


def test_push_needs_a_registry_and_pull_a_manifest(registry, tmp_path):
    make_kit(tmp_path, "localhost/only-local", "v1")
    with pytest.raises(KitflowError, match="names no registry"):
        push("only-local:v1", home=tmp_path)
    with pytest.raises(NotFoundError):
        pull(f"{registry.host}/{unique_repo()}:missing", registry=registry.options(), home=tmp_path)


def test_skopeo_reads_what_kitflow_pushes(registry, tmp_path):
    skopeo = _skopeo()
    name = f"{registry.host}/{unique_repo()}"
    manifest, mdesc, blobs = make_kit(tmp_path, name, "v1")
    push(f"{name}:v1", registry=registry.options(), home=tmp_path)
    raw = subprocess.run(
        [skopeo, "inspect", "--raw", "--tls-verify=false", f"docker://{name}:v1"],
        check=True,
        capture_output=True,
    ).stdout
    assert raw == manifest.to_bytes()
    layout = tmp_path / "skopeo-layout"
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
    for digest, data in blobs.items():
        assert (layout / "blobs" / "sha256" / digest[7:]).read_bytes() == data
    # ... and kitflow reads skopeo's layout back.
    desc = OCILayout(layout).resolve("v1")
    assert desc.digest == mdesc.digest


def test_kitflow_pulls_what_skopeo_pushes(registry, tmp_path):
    skopeo = _skopeo()
    _manifest, mdesc, blobs = make_kit(tmp_path / "src", "localhost/hand/made", "v1")
    layout = tmp_path / "layout"
    copy("local:hand/made:v1", f"oci:{layout}:v1", home=tmp_path / "src")
    name = f"{registry.host}/{unique_repo()}"
    subprocess.run(
        [
            skopeo,
            "copy",
            "--dest-tls-verify=false",
            "--preserve-digests",
            f"oci:{layout}:v1",
            f"docker://{name}:v2",
        ],
        check=True,
        capture_output=True,
    )
    pulled = pull(f"{name}:v2", registry=registry.options(), home=tmp_path / "dst")
    assert pulled.digest == mdesc.digest
    store = LocalStore(tmp_path / "dst")
    for digest, data in blobs.items():
        assert store.blob_path(digest).read_bytes() == data


def test_copy_registry_to_layout_and_back(registry, tmp_path):
    skopeo = _skopeo()
    name = f"{registry.host}/{unique_repo()}"
    manifest, mdesc, _ = make_kit(tmp_path, name, "v1")
    push(f"{name}:v1", registry=registry.options(), home=tmp_path)
    layout = tmp_path / "layout"
    out = copy(f"{name}:v1", f"oci:{layout}:kept", registry=registry.options(), home=tmp_path)
    assert out.digest == mdesc.digest
    raw = subprocess.run(
        [skopeo, "inspect", "--raw", f"oci:{layout}:kept"], check=True, capture_output=True
    ).stdout
    assert raw == manifest.to_bytes()
    back = f"{registry.host}/{unique_repo()}"
    copy(f"oci:{layout}:kept", f"{back}:again", registry=registry.options(), home=tmp_path)
    assert Registry(back, registry.options()).resolve("again").digest == mdesc.digest


def test_registry_to_registry_copy_mounts_blobs(registry, tmp_path):
    name = f"{registry.host}/{unique_repo()}"
    _, mdesc, _ = make_kit(tmp_path, name, "v1")
    push(f"{name}:v1", registry=registry.options(), home=tmp_path)
    target = f"{registry.host}/{unique_repo()}"
    result = copy(f"{name}:v1", f"{target}:v1", registry=registry.options(), home=tmp_path)
    assert result.blobs_mounted == 3 and result.bytes_transferred == 0
    assert Registry(target, registry.options()).resolve("v1").digest == mdesc.digest


def test_manifest_goes_last_and_blobs_go_in_parallel(registry, fault_proxy, tmp_path):
    name = f"{fault_proxy.host}/{unique_repo()}"
    make_kit(tmp_path, name, "v1", sizes=(40_000,) * 6)
    fault_proxy.add("delay", method="PUT", path="/blobs/uploads/", times=-1, seconds=0.3)
    push(f"{name}:v1", registry=registry.options(), home=tmp_path)
    puts = [e for e in fault_proxy.log if e.method == "PUT"]
    assert [("/manifests/" in e.path) for e in puts] == [False] * 7 + [True]
    assert fault_proxy.max_in_flight >= 3


def test_retries_5xx_and_429_with_retry_after(registry, fault_proxy, tmp_path):
    name = f"{fault_proxy.host}/{unique_repo()}"
    make_kit(tmp_path, name, "v1")
    put_fault = fault_proxy.add("status", method="PUT", path="/blobs/uploads/", status=503, times=2)
    post_fault = fault_proxy.add("status", method="POST", status=500, times=1)
    throttle = fault_proxy.add(
        "status", method="PUT", path="/manifests/", status=429, retry_after="1", times=1
    )
    result = push(f"{name}:v1", registry=registry.options(), home=tmp_path)
    assert (put_fault.fired, post_fault.fired, throttle.fired) == (2, 1, 1)
    assert result.retries >= 4
    manifest_puts = fault_proxy.requests("PUT", "/manifests/")
    assert len(manifest_puts) == 2
    assert Registry(name, registry.options()).resolve("v1").digest == result.digest


def test_connection_reset_and_truncated_body_resume_with_range(registry, fault_proxy, tmp_path):
    real = f"{registry.host}/{unique_repo()}"
    _, mdesc, blobs = make_kit(tmp_path / "src", real, "v1", sizes=(400_000,))
    push(f"{real}:v1", registry=registry.options(), home=tmp_path / "src")
    name = f"{fault_proxy.host}/{real.split('/', 1)[1]}"
    fault_proxy.add("reset", method="HEAD", path="/manifests/", times=1)
    layer = next(d for d, b in blobs.items() if len(b) == 400_000)
    cut = fault_proxy.add("truncate", method="GET", path=f"/blobs/{layer}", keep=100_000, times=1)
    result = pull(f"{name}:v1", registry=registry.options(), home=tmp_path / "dst")
    assert result.digest == mdesc.digest and cut.fired == 1
    ranged = [e for e in fault_proxy.requests("GET", "/blobs/") if "Range" in e.headers]
    assert ranged and ranged[0].headers["Range"].startswith("bytes=")
    assert ranged[0].headers["Range"] != "bytes=0-"
    store = LocalStore(tmp_path / "dst")
    for digest, data in blobs.items():
        assert store.blob_path(digest).read_bytes() == data


def test_exhausted_retries_name_the_registry_and_status(registry, fault_proxy, tmp_path):
    name = f"{fault_proxy.host}/{unique_repo()}"
    make_kit(tmp_path, name, "v1")
    fault_proxy.add("status", method="POST", status=502, times=-1)
    with pytest.raises(RegistryError) as info:
        push(f"{name}:v1", registry=registry.options(retries=2), home=tmp_path)
    assert fault_proxy.host in str(info.value) and "502" in str(info.value)


def test_404_is_not_retried(registry, fault_proxy, tmp_path):
    name = f"{fault_proxy.host}/{unique_repo()}"
    with pytest.raises(NotFoundError, match="check the repository name"):
        pull(f"{name}:nothing", registry=registry.options(), home=tmp_path)
    assert len(fault_proxy.requests("HEAD")) == 1


@pytest.mark.parametrize("fault", ["status", "corrupt"])
def test_interrupted_pull_leaves_the_store_as_it_was(registry, fault_proxy, tmp_path, fault):
    real = f"{registry.host}/{unique_repo()}"
    make_kit(tmp_path / "src", real, "v1", sizes=(1000, 90_000, 5000))
    push(f"{real}:v1", registry=registry.options(), home=tmp_path / "src")
    home = tmp_path / "dst"
    make_kit(home, "localhost/already/here", "v0")  # the store is not empty beforehand
    before = store_snapshot(home)
    name = f"{fault_proxy.host}/{real.split('/', 1)[1]}"
    manifest_digest = Registry(real, registry.options()).resolve("v1").digest
    layer = json.loads(
        Registry(real, registry.options()).fetch_bytes(
            Registry(real, registry.options()).resolve("v1")
        )
    )["layers"][1]["digest"]
    fault_proxy.add(fault, method="GET", path=f"/blobs/{layer}", status=500, times=-1)
    expected = RegistryError if fault == "status" else DigestMismatchError
    with pytest.raises(expected):
        pull(f"{name}:v1", registry=registry.options(retries=1), home=home)
    after = store_snapshot(home)
    assert {k: v for k, v in after.items() if not k.startswith("ingest/")} == {
        k: v for k, v in before.items() if not k.startswith("ingest/")
    }
    assert not [k for k in after if k.startswith("ingest/")]
    assert not LocalStore(home).has_blob(manifest_digest)


def test_cli_push_pull_copy_tags_json(registry, tmp_path, capsys):
    name = f"{registry.host}/{unique_repo()}"
    _, mdesc, _ = make_kit(tmp_path / "a", name, "v1")
    code, out, err = _run_cli(
        ["push", f"{name}:v1", "--plain-http", "--config", str(tmp_path / "a"), "--json"], capsys
    )
    assert code == 0, err
    doc = json.loads(out)
    assert doc["digest"] == mdesc.digest and doc["blobs"] == 3
    code, out, err = _run_cli(
        ["pull", f"{name}:v1", "--plain-http", "--config", str(tmp_path / "b")], capsys
    )
    assert code == 0, err
    assert out.startswith(f"Pulled {mdesc.digest}")
    code, out, err = _run_cli(
        ["copy", f"{name}:v1", f"{name}:v2", "--plain-http", "--config", str(tmp_path / "b")],
        capsys,
    )
    assert code == 0, err
    code, out, err = _run_cli(["tags", name, "--plain-http", "--json"], capsys)
    assert code == 0, err
    assert sorted(json.loads(out)["tags"]) == ["v1", "v2"]
    code, out, err = _run_cli(
        ["pull", f"{name}:nope", "--plain-http", "--config", str(tmp_path / "b")], capsys
    )
    assert code == 1 and err.startswith("Error: ") and "not found" in err


def test_layout_written_by_kitflow_is_a_valid_oci_layout(tmp_path):
    make_kit(tmp_path, "localhost/lay/out", "v1")
    layout = tmp_path / "out"
    copy("local:lay/out:v1", f"oci:{layout}:v1", home=tmp_path)
    assert json.loads((layout / "oci-layout").read_text()) == {"imageLayoutVersion": "1.0.0"}
    index = json.loads((layout / "index.json").read_text())
    [entry] = index["manifests"]
    assert entry["mediaType"] == OCI_MANIFEST
    assert entry["annotations"]["org.opencontainers.image.ref.name"] == "v1"
    back = copy(f"oci:{layout}:v1", "local:lay/back:v9", home=tmp_path)
    assert LocalStore(tmp_path).tags("localhost/lay/back")["v9"].digest == back.digest
    assert Path(layout / "blobs" / "sha256" / back.digest[7:]).is_file()


def test_dropped_connections_during_upload_are_retried(registry, fault_proxy, tmp_path):
    name = f"{fault_proxy.host}/{unique_repo()}"
    _, mdesc, _ = make_kit(tmp_path, name, "v1", sizes=(300_000,))
    dropped = fault_proxy.add("reset", method="PUT", path="/blobs/uploads/", times=1)
    lost_answer = fault_proxy.add("reset_after", method="PUT", path="/manifests/", times=1)
    result = push(f"{name}:v1", registry=registry.options(), home=tmp_path)
    assert (dropped.fired, lost_answer.fired) == (1, 1)
    assert result.retries >= 2
    assert Registry(name, registry.options()).resolve("v1").digest == mdesc.digest


def test_skopeo_and_kitflow_agree_through_token_auth(registry_token, tmp_path):
    skopeo = _skopeo()
    name = f"{registry_token.host}/{unique_repo()}"
    manifest, mdesc, _ = make_kit(tmp_path, name, "v1")
    push(f"{name}:v1", registry=registry_token.options(), home=tmp_path)
    creds = f"{registry_token.username}:{registry_token.password}"
    raw = subprocess.run(
        [
            skopeo,
            "inspect",
            "--raw",
            "--tls-verify=false",
            f"--creds={creds}",
            f"docker://{name}:v1",
        ],
        check=True,
        capture_output=True,
    ).stdout
    assert raw == manifest.to_bytes()
    other = f"{registry_token.host}/{unique_repo()}"
    subprocess.run(
        [
            skopeo,
            "copy",
            "--preserve-digests",
            "--src-tls-verify=false",
            "--dest-tls-verify=false",
            f"--src-creds={creds}",
            f"--dest-creds={creds}",
            f"docker://{name}:v1",
            f"docker://{other}:v2",
        ],
        check=True,
        capture_output=True,
    )
    pulled = pull(f"{other}:v2", registry=registry_token.options(), home=tmp_path / "p")
    assert pulled.digest == mdesc.digest


def test_http_proxy_from_the_environment(registry, fault_proxy, tmp_path, monkeypatch):
    monkeypatch.setenv("HTTP_PROXY", f"http://{fault_proxy.host}")
    monkeypatch.setenv("http_proxy", f"http://{fault_proxy.host}")
    monkeypatch.delenv("NO_PROXY", raising=False)
    monkeypatch.delenv("no_proxy", raising=False)
    name = f"{registry.host}/{unique_repo()}"
    _, mdesc, _ = make_kit(tmp_path, name, "v1")
    assert push(f"{name}:v1", registry=registry.options(), home=tmp_path).digest == mdesc.digest
    assert fault_proxy.requests("PUT", "/manifests/v1")
    monkeypatch.setenv("NO_PROXY", "127.0.0.1")
    monkeypatch.setenv("no_proxy", "127.0.0.1")
    fault_proxy.clear()
    pull(f"{name}:v1", registry=registry.options(), home=tmp_path / "p")
    assert not fault_proxy.log


def test_interrupted_pull_resumes_with_range_next_time(registry, fault_proxy, tmp_path):
    real = f"{registry.host}/{unique_repo()}"
    _, mdesc, blobs = make_kit(tmp_path / "src", real, "v1", sizes=(400_000,))
    push(f"{real}:v1", registry=registry.options(), home=tmp_path / "src")
    layer = next(d for d, b in blobs.items() if len(b) == 400_000)
    name = f"{fault_proxy.host}/{real.split('/', 1)[1]}"
    home = tmp_path / "dst"
    fault_proxy.add("truncate", method="GET", path=f"/blobs/{layer}", keep=150_000, times=1)
    with pytest.raises(RegistryError, match="broke"):
        pull(f"{name}:v1", registry=registry.options(retries=0), home=home)
    store = LocalStore(home)
    assert not store.has_blob(layer) and not store.has_blob(mdesc.digest)
    assert store.tags(name) == {}
    [partial] = list(store.ingest_dir.iterdir())
    assert partial.stat().st_size == 150_000
    fault_proxy.clear()
    result = pull(f"{name}:v1", registry=registry.options(), home=home)
    assert result.digest == mdesc.digest
    ranged = [e.headers.get("Range") for e in fault_proxy.requests("GET", f"/blobs/{layer}")]
    assert ranged == ["bytes=150000-"]
    assert store.blob_path(layer).read_bytes() == blobs[layer]
    assert not list(store.ingest_dir.iterdir())


def test_corrupt_partial_from_an_earlier_pull_is_discarded(registry, tmp_path):
    name = f"{registry.host}/{unique_repo()}"
    _, mdesc, blobs = make_kit(tmp_path / "src", name, "v1", sizes=(200_000,))
    push(f"{name}:v1", registry=registry.options(), home=tmp_path / "src")
    layer = next(d for d, b in blobs.items() if len(b) == 200_000)
    store = LocalStore(tmp_path / "dst")
    store.ingest_dir.mkdir(parents=True)
    (store.ingest_dir / f"kitflow-pull-{layer[7:]}.partial").write_bytes(b"garbage" * 1000)
    assert pull(f"{name}:v1", registry=registry.options(), home=tmp_path / "dst").digest == (
        mdesc.digest
    )
    assert store.blob_path(layer).read_bytes() == blobs[layer]


def test_prune_during_a_pull_keeps_its_blobs(registry, fault_proxy, tmp_path):
    """A prune started while a pull has committed some blobs (not yet referenced by a manifest)
    waits for the pull; the pulled ModelKit is complete and verifies afterwards."""
    real = f"{registry.host}/{unique_repo()}"
    _, mdesc, blobs = make_kit(tmp_path / "src", real, "v1", sizes=(2000, 60_000, 7000))
    push(f"{real}:v1", registry=registry.options(), home=tmp_path / "src")
    name = f"{fault_proxy.host}/{real.split('/', 1)[1]}"
    home = tmp_path / "dst"
    slow = next(d for d, b in blobs.items() if len(b) == 60_000)
    fast = next(d for d, b in blobs.items() if len(b) == 7000)
    fault_proxy.add("delay", method="GET", path=f"/blobs/{slow}", seconds=2.0, times=1)
    store = LocalStore(home)
    outcome: dict[str, Any] = {}

    def run_pull() -> None:
        try:
            outcome["result"] = pull(f"{name}:v1", registry=registry.options(), home=home)
        except BaseException as exc:  # reported by the assertion below
            outcome["error"] = exc

    puller = threading.Thread(target=run_pull)
    puller.start()
    deadline = time.monotonic() + 10
    while not store.has_blob(fast) and time.monotonic() < deadline:
        time.sleep(0.01)
    assert store.has_blob(fast) and not store.has_blob(slow)  # committed, unreferenced
    assert puller.is_alive()
    prune(home)  # waits for the pull's shared GC lock
    puller.join(timeout=30)
    assert "error" not in outcome, outcome.get("error")
    assert outcome["result"].digest == mdesc.digest
    for digest, data in blobs.items():
        assert store.blob_path(digest).read_bytes() == data
    assert store.tags(name)["v1"].digest == mdesc.digest
    assert verify(home) == []


def test_pull_spanning_several_buffers_resumes_mid_buffer(registry, fault_proxy, tmp_path):
    """A blob larger than the receive buffers, cut off inside its second buffer: the pull asks
    for exactly the missing bytes and stores the verified whole."""
    size = 2 * RECEIVE_BUFFER + 12_345
    keep = RECEIVE_BUFFER + 4321
    real = f"{registry.host}/{unique_repo()}"
    _, mdesc, blobs = make_kit(tmp_path / "src", real, "v1", sizes=(size,))
    push(f"{real}:v1", registry=registry.options(), home=tmp_path / "src")
    layer = next(d for d, b in blobs.items() if len(b) == size)
    name = f"{fault_proxy.host}/{real.split('/', 1)[1]}"
    fault_proxy.add("truncate", method="GET", path=f"/blobs/{layer}", keep=keep, times=1)
    result = pull(f"{name}:v1", registry=registry.options(), home=tmp_path / "dst")
    assert result.digest == mdesc.digest
    ranges = [e.headers.get("Range") for e in fault_proxy.requests("GET", f"/blobs/{layer}")]
    assert ranges == [None, f"bytes={keep}-"]
    store = LocalStore(tmp_path / "dst")
    assert store.blob_path(layer).read_bytes() == blobs[layer]
    assert verify(tmp_path / "dst") == []


def test_complete_partial_from_an_earlier_pull_is_used_without_a_download(
    registry, fault_proxy, tmp_path
):
    """A pull killed between its last byte and the rename left the whole blob in ingest: the
    next pull verifies and keeps it instead of asking for an empty (unsatisfiable) Range."""
    real = f"{registry.host}/{unique_repo()}"
    _, mdesc, blobs = make_kit(tmp_path / "src", real, "v1", sizes=(50_000,))
    push(f"{real}:v1", registry=registry.options(), home=tmp_path / "src")
    layer = next(d for d, b in blobs.items() if len(b) == 50_000)
    store = LocalStore(tmp_path / "dst")
    store.ingest_dir.mkdir(parents=True)
    (store.ingest_dir / f"kitflow-pull-{layer[7:]}.partial").write_bytes(blobs[layer])
    name = f"{fault_proxy.host}/{real.split('/', 1)[1]}"
    assert pull(f"{name}:v1", registry=registry.options(), home=tmp_path / "dst").digest == (
        mdesc.digest
    )
    assert not fault_proxy.requests("GET", f"/blobs/{layer}")
    assert store.blob_path(layer).read_bytes() == blobs[layer]
    assert not list(store.ingest_dir.iterdir())
