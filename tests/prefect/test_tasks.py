"""The ModelKit tasks in real flows against a real registry (docker-registry with htpasswd):
pack, push, pull, unpack and local inference, sync and async; their artifacts and asset; and
the credentials that never reach the API server."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import kitflow
import pytest
from kitflow.errors import KitflowError
from prefect import flow
from prefect_helpers import (
    artifacts_of,
    by_key,
    everything_stored,
    flow_run,
    flow_run_id,
    table_rows,
)
from prefect_kitflow import (
    KitRegistryCredentials,
    apack_modelkit,
    apull_modelkit,
    apush_modelkit,
    arun_inference,
    aunpack_modelkit,
    pack_modelkit,
    package_and_infer,
    pull_modelkit,
    push_modelkit,
    run_inference,
    unpack_modelkit,
)
from prefect_kitflow.artifacts import artifact_key, split_reference
from support.inference_kits import make_kit, read_jsonl, write_jsonl
from support.registry import RunningRegistry, unique_repo

RECORDS = [{"id": "a", "text": "good"}, {"id": "b", "text": "bad"}, {"id": "c", "text": "meh"}]


def credentials_for(reg: RunningRegistry) -> KitRegistryCredentials:
    """A block for the htpasswd registry (its password is the secret these tests hunt for)."""
    assert reg.username and reg.password
    return KitRegistryCredentials(
        registry=reg.host, username=reg.username, password=reg.password, plain_http=True
    )


@flow
def roundtrip(
    kit: str,
    reference: str,
    credentials: KitRegistryCredentials,
    home_a: str,
    home_b: str,
    out: str,
) -> dict[str, Any]:
    packed = pack_modelkit(kit, tag=reference, home=home_a)
    pushed = push_modelkit(reference, credentials=credentials, home=home_a)
    pulled = pull_modelkit(reference, credentials=credentials, home=home_b)
    unpacked = unpack_modelkit(reference, out, credentials=credentials, home=home_b)
    return {"pack": packed, "push": pushed, "pull": pulled, "unpack": unpacked}


@flow
async def aroundtrip(
    kit: str,
    reference: str,
    credentials: KitRegistryCredentials,
    home_a: str,
    home_b: str,
    out: str,
) -> dict[str, Any]:
    packed = await apack_modelkit(kit, tag=reference, home=home_a)
    pushed = await apush_modelkit(reference, credentials=credentials, home=home_a)
    pulled = await apull_modelkit(reference, credentials=credentials, home=home_b)
    unpacked = await aunpack_modelkit(reference, out, credentials=credentials, home=home_b)
    return {"pack": packed, "push": pushed, "pull": pulled, "unpack": unpacked}


@pytest.mark.registry
@pytest.mark.parametrize("mode", ["sync", "async"])
def test_roundtrip_through_registry(
    mode: str, registry_htpasswd: RunningRegistry, tmp_path: Path
) -> None:
    reg = registry_htpasswd
    kit = make_kit(tmp_path / "kit", weights=f"w-{mode}")
    repo = unique_repo("prefect")
    reference = reg.ref(repo, "v1")
    args = (str(kit), reference, credentials_for(reg), str(tmp_path / "a"), str(tmp_path / "b"))
    out = tmp_path / "unpacked"
    if mode == "sync":
        state = roundtrip(*args, str(out), return_state=True)
    else:
        state = asyncio.run(aroundtrip(*args, str(out), return_state=True))
    assert state.is_completed(), state.message
    results = state.result()
    packed, pushed, pulled = results["pack"], results["push"], results["pull"]
    assert pushed.digest == packed.digest == pulled.digest
    assert results["unpack"].digest == packed.digest
    assert (out / "model" / "weights.txt").read_text() == f"w-{mode}\n"
    assert (out / "src" / "predict.py").is_file()
    # What the registry holds is what was packed.
    remote = kitflow.inspect(reference, remote=True, registry=reg.options())
    assert remote["digest"] == packed.digest

    run_id = flow_run_id(state)
    artifacts = by_key(artifacts_of(run_id))
    link = artifacts[artifact_key("modelkit", repo)]
    assert link.type == "markdown"  # Prefect stores a link artifact as a markdown link
    assert f"http://{reg.host}/v2/{repo}/manifests/{packed.digest}" in str(link.data)
    rows = table_rows(artifacts[artifact_key("modelkit-layers", repo)])
    assert [r["digest"] for r in rows] == [layer.digest for layer in packed.layers]
    assert {r["kind"] for r in rows} >= {"model", "code"}
    assert reg.password is not None
    assert reg.password not in everything_stored(run_id)


@flow
def pack_only(kit: str, tag: str, home: str) -> Any:
    return pack_modelkit(kit, tag=tag, home=home, return_state=True)


def test_pack_is_cached_on_content(tmp_path: Path) -> None:
    kit = make_kit(tmp_path / "kit")
    home = str(tmp_path / "home")
    first = pack_only(str(kit), "localhost/cache/test:v1", home)
    assert first.is_completed() and first.name != "Cached"

    again = pack_only(str(kit), "localhost/cache/test:v1", home)
    assert again.name == "Cached"
    assert again.result().digest == first.result().digest

    # Same bytes, new mtime: still the same content, still cached.
    weights = kit / "model" / "weights.txt"
    weights.write_text(weights.read_text())
    assert pack_only(str(kit), "localhost/cache/test:v1", home).name == "Cached"

    # Changed content packs again and gives a new ModelKit.
    weights.write_text("w2\n")
    changed = pack_only(str(kit), "localhost/cache/test:v1", home)
    assert changed.name != "Cached"
    assert changed.result().digest != first.result().digest

    # Another tag is another result.
    assert pack_only(str(kit), "localhost/cache/test:v2", home).name != "Cached"


def test_pack_cache_ignores_files_outside_the_kitfile(tmp_path: Path) -> None:
    kit = make_kit(tmp_path / "kit")
    home = str(tmp_path / "home")
    pack_only(str(kit), "localhost/cache/other:v1", home)
    (kit / "notes.txt").write_text("not part of the ModelKit\n")
    assert pack_only(str(kit), "localhost/cache/other:v1", home).name == "Cached"


@flow
def infer_locally(kit: str, reference: str, inputs: str, output: str, home: str) -> Any:
    pack_modelkit(kit, tag=reference, home=home)
    return run_inference(reference, inputs, output, shards=2, home=home)


@flow
async def ainfer_locally(kit: str, reference: str, inputs: str, output: str, home: str) -> Any:
    await apack_modelkit(kit, tag=reference, home=home)
    return await arun_inference(reference, inputs, output, shards=2, home=home)


@pytest.mark.parametrize("mode", ["sync", "async"])
def test_local_inference_summary(mode: str, tmp_path: Path) -> None:
    kit = make_kit(tmp_path / "kit", weights="m")
    inputs = write_jsonl(tmp_path / "in.jsonl", RECORDS)
    output = tmp_path / "out.jsonl"
    reference = f"localhost/infer/{mode}:v1"
    args = (str(kit), reference, str(inputs), str(output), str(tmp_path / "home"))
    if mode == "sync":
        state = infer_locally(*args, return_state=True)
    else:
        state = asyncio.run(ainfer_locally(*args, return_state=True))
    assert state.is_completed(), state.message
    result = state.result()
    assert result.records == 3 and result.backend == "local"
    assert [row["prediction"] for row in read_jsonl(output)] == ["m:GOOD", "m:BAD", "m:MEH"]

    key = artifact_key("inference", "local", split_reference(reference)[1])
    summary = by_key(artifacts_of(flow_run_id(state)))[key]
    assert summary.type == "markdown"
    text = str(summary.data)
    assert "| records | 3 |" in text
    assert result.model_digest in text
    assert "m:GOOD" in text and "m:MEH" in text


@pytest.mark.registry
def test_push_records_the_modelkit_asset(
    registry: RunningRegistry, tmp_path: Path, asserting_events_worker: Any
) -> None:
    kit = make_kit(tmp_path / "kit")
    repo = unique_repo("asset")
    reference = registry.ref(repo, "v1")
    credentials = KitRegistryCredentials(registry=registry.host, plain_http=True)

    @flow
    def pack_and_push() -> Any:
        pack_modelkit(str(kit), tag=reference, home=str(tmp_path / "home"))
        return push_modelkit(reference, credentials=credentials, home=str(tmp_path / "home"))

    pushed = pack_and_push()
    asserting_events_worker.drain()
    uri = f"oci://{registry.host}/{repo}@{pushed.digest}"
    events = [
        e
        for e in asserting_events_worker._client.events
        if e.event == "prefect.asset.materialization.succeeded"
    ]
    assert uri in [e.resource.id for e in events]
    event = next(e for e in events if e.resource.id == uri)
    assert event.payload["digest"] == pushed.digest
    assert event.payload["reference"] == reference


def test_credentials_for_another_registry_are_refused(tmp_path: Path) -> None:
    credentials = KitRegistryCredentials(
        registry="registry.example.com", username="u", password="p"
    )

    @flow
    def wrong_registry() -> Any:
        return pull_modelkit("other.example.com/x/y:v1", credentials=credentials)

    state = wrong_registry(return_state=True)
    assert state.is_failed()
    with pytest.raises(KitflowError, match=r"holds credentials for registry\.example\.com"):
        state.result()


@pytest.mark.registry
def test_package_and_infer_keeps_the_password_secret(
    registry_htpasswd: RunningRegistry, tmp_path: Path
) -> None:
    reg = registry_htpasswd
    assert reg.password is not None
    kit = make_kit(tmp_path / "kit", weights="pkg")
    inputs = write_jsonl(tmp_path / "in.jsonl", RECORDS)
    reference = reg.ref(unique_repo("flow"), "v1")
    credentials_for(reg).save("htpasswd-registry", overwrite=True)

    state = package_and_infer(
        reference,
        context=str(kit),
        input=str(inputs),
        output=str(tmp_path / "out.jsonl"),
        credentials="htpasswd-registry",  # a saved block, by name
        home=str(tmp_path / "home"),
        return_state=True,
    )
    assert state.is_completed(), state.message
    summary = state.result()
    assert summary["push"]["digest"] == summary["pack"]["digest"]
    assert summary["run"]["records"] == 3
    assert reg.password not in str(summary)
    run_id = flow_run_id(state)
    assert reg.password not in everything_stored(run_id)


@pytest.mark.registry
def test_block_objects_as_flow_parameters_are_not_stored_in_clear(
    registry_htpasswd: RunningRegistry, tmp_path: Path
) -> None:
    reg = registry_htpasswd
    assert reg.password is not None
    kit = make_kit(tmp_path / "kit", weights="param")
    state = package_and_infer(
        reg.ref(unique_repo("param"), "v1"),
        context=str(kit),
        credentials=credentials_for(reg),  # an unsaved block passed as a parameter
        home=str(tmp_path / "home"),
        return_state=True,
    )
    assert state.is_completed(), state.message
    run = flow_run(flow_run_id(state))
    assert reg.password not in run.model_dump_json()
    assert reg.password not in everything_stored(flow_run_id(state))


@flow
def pull_only(reference: str, credentials: KitRegistryCredentials, home: str) -> Any:
    return pull_modelkit(reference, credentials=credentials, home=home, return_state=True)


@pytest.mark.registry
def test_pull_by_digest_is_cached_and_credentials_are_not_in_the_key(
    registry_htpasswd: RunningRegistry, tmp_path: Path
) -> None:
    reg = registry_htpasswd
    kit = make_kit(tmp_path / "kit", weights="pull")
    repo = unique_repo("pull")
    reference = reg.ref(repo, "v1")
    kitflow.pack(kit, tag=reference, home=tmp_path / "a")
    pushed = kitflow.push(reference, registry=reg.options(), home=tmp_path / "a")
    pinned = f"{reg.host}/{repo}@{pushed.digest}"
    home = str(tmp_path / "b")
    one = credentials_for(reg)
    other = credentials_for(reg).model_copy(update={"concurrency": 1, "tls_verify": False})

    first = pull_only(pinned, one, home)
    assert first.is_completed() and first.name != "Cached"
    # Other credentials (another block, other settings), same content: a cache hit.
    assert pull_only(pinned, other, home).name == "Cached"
    # A tag can move: never cached.
    assert pull_only(reference, one, home).name != "Cached"
    # Removed from the local store: pulled again.
    kitflow.remove(pinned, force=True, home=home)
    again = pull_only(pinned, one, home)
    assert again.name != "Cached"
    assert again.result().digest == pushed.digest
    assert kitflow.inspect(pinned, home=home)["digest"] == pushed.digest
