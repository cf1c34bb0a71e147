"""Prefect tasks for ModelKits: pack, push, pull, unpack and local inference, sync and async.

Each task is one call into :mod:`kitflow.api` plus the artifacts that make its result visible in
the UI. Async twins (``a``-prefixed) run the same core call in a worker thread. Credentials are
blocks, never part of a cache key, a log line or an artifact.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import kitflow
from kitflow.options import RegistryOptions
from kitflow.results import LayerInfo, PackResult, RunResult, TransferResult, UnpackResult
from prefect import get_run_logger, task
from prefect.cache_policies import NO_CACHE

from prefect_kitflow.artifacts import (
    ArtifactSpec,
    apublish,
    artifact_key,
    human_size,
    inference_markdown,
    layer_rows,
    layers_from_manifest,
    manifest_url,
    modelkit_uri,
    publish,
    record_modelkit_asset,
    split_reference,
)
from prefect_kitflow.caching import pack_cache_key, pull_cache_key
from prefect_kitflow.credentials import KitRegistryCredentials

PathLike = str | Path
Credentials = KitRegistryCredentials | str | None


# --------------------------------------------------------------------------------------------
# Credentials
# --------------------------------------------------------------------------------------------


def load_credentials(credentials: Credentials) -> KitRegistryCredentials | None:
    """A credentials block, loading it by name when given as a string."""
    if isinstance(credentials, str):
        loaded = KitRegistryCredentials.load(credentials, _sync=True)  # type: ignore[call-arg]
        assert isinstance(loaded, KitRegistryCredentials)
        return loaded
    return credentials


async def aload_credentials(credentials: Credentials) -> KitRegistryCredentials | None:
    """Async twin of :func:`load_credentials`."""
    if isinstance(credentials, str):
        loaded = await KitRegistryCredentials.aload(credentials)
        assert isinstance(loaded, KitRegistryCredentials)
        return loaded
    return credentials


def registry_options(
    credentials: KitRegistryCredentials | None, *references: str | None
) -> RegistryOptions | None:
    """Core registry options for ``references`` (checked against the block's registry)."""
    if credentials is None:
        return None
    for reference in references:
        if reference:
            credentials.options_for(reference)
    return credentials.get_options()


def pinned(reference: str, digest: str) -> str:
    """``registry/repository@digest`` for a reference: names exactly one ModelKit, for good."""
    from kitflow.format.reference import Reference

    return f"{Reference.parse(reference).name}@{digest}"


# --------------------------------------------------------------------------------------------
# pack
# --------------------------------------------------------------------------------------------


def _pack(
    context: PathLike,
    tag: str | None,
    kitfile: PathLike | None,
    compression: str,
    layer_format: str,
    use_model_pack: bool,
    home: PathLike | None,
) -> PackResult:
    return kitflow.pack(
        context,
        tag=tag,
        kitfile=kitfile,
        compression=compression,
        layer_format=layer_format,
        use_model_pack=use_model_pack,
        home=home,
    )


def _pack_specs(result: PackResult) -> list[ArtifactSpec]:
    name = result.reference or result.digest
    repository = split_reference(result.reference)[1] if result.reference else "untagged"
    return [
        ArtifactSpec(
            kind="table",
            key=artifact_key("modelkit-layers", repository),
            content=layer_rows(result.layers),
            description=(
                f"Layers of ModelKit `{name}` (`{result.digest}`), "
                f"{human_size(result.size)} in {len(result.layers)} layers."
            ),
        )
    ]


def _log_pack(result: PackResult) -> None:
    get_run_logger().info(
        "Packed %s as %s: %d layers, %s (%s read)",
        result.reference or "untagged ModelKit",
        result.digest,
        len(result.layers),
        human_size(result.size),
        human_size(result.bytes_read),
    )


_PACK_OPTIONS: dict[str, Any] = {
    "cache_key_fn": pack_cache_key,
    "persist_result": True,
}


@task(name="pack_modelkit", **_PACK_OPTIONS)
def pack_modelkit(
    context: PathLike = ".",
    tag: str | None = None,
    kitfile: PathLike | None = None,
    compression: str = "none",
    layer_format: str = "tar",
    use_model_pack: bool = False,
    home: PathLike | None = None,
) -> PackResult:
    """Pack ``context`` by its Kitfile into the local store (kit's ``pack -t TAG``).

    Cached on the content digest of the Kitfile and every path it names: a re-run with
    unchanged inputs returns the earlier result without packing again.
    """
    result = _pack(context, tag, kitfile, compression, layer_format, use_model_pack, home)
    _log_pack(result)
    publish(_pack_specs(result))
    return result


@task(name="apack_modelkit", **_PACK_OPTIONS)
async def apack_modelkit(
    context: PathLike = ".",
    tag: str | None = None,
    kitfile: PathLike | None = None,
    compression: str = "none",
    layer_format: str = "tar",
    use_model_pack: bool = False,
    home: PathLike | None = None,
) -> PackResult:
    """Async twin of :func:`pack_modelkit` (the pack runs in a worker thread)."""
    result = await asyncio.to_thread(
        _pack, context, tag, kitfile, compression, layer_format, use_model_pack, home
    )
    _log_pack(result)
    await apublish(_pack_specs(result))
    return result


# --------------------------------------------------------------------------------------------
# push
# --------------------------------------------------------------------------------------------


def _push(
    reference: str,
    destination: str | None,
    credentials: KitRegistryCredentials | None,
    home: PathLike | None,
) -> TransferResult:
    options = registry_options(credentials, destination or reference)
    return kitflow.push(reference, destination, registry=options, home=home)


def _push_outputs(
    reference: str,
    destination: str | None,
    credentials: KitRegistryCredentials | None,
    home: PathLike | None,
    result: TransferResult,
) -> tuple[list[ArtifactSpec], str, dict[str, Any]]:
    """Artifacts, the asset key and its metadata for a finished push."""
    target = destination or reference
    registry, repository = split_reference(target)
    plain_http = bool(credentials and credentials.plain_http)
    url = manifest_url(registry, repository, result.digest, plain_http)
    uri = modelkit_uri(registry, repository, result.digest)
    layers: list[LayerInfo] = []
    with contextlib.suppress(kitflow.KitflowError):  # the local copy may be gone
        layers = layers_from_manifest(kitflow.inspect(reference, home=home).get("manifest", {}))
    specs = [
        ArtifactSpec(
            kind="link",
            key=artifact_key("modelkit", repository),
            content=(url, f"{registry}/{repository}@{result.digest}"),
            description=(
                f"ModelKit `{target}` pushed: {result.blobs} blobs, "
                f"{human_size(result.bytes_transferred)} sent, "
                f"{human_size(result.bytes_skipped)} already there."
            ),
        )
    ]
    if layers:
        specs.append(
            ArtifactSpec(
                kind="table",
                key=artifact_key("modelkit-layers", repository),
                content=layer_rows(layers),
                description=f"Layers of ModelKit `{registry}/{repository}@{result.digest}`.",
            )
        )
    metadata = {
        "reference": target,
        "digest": result.digest,
        "size": result.size,
        "layers": [layer.to_dict() for layer in layers],
    }
    return specs, uri, metadata


def _record_asset(uri: str, specs: list[ArtifactSpec], metadata: dict[str, Any]) -> None:
    url = specs[0].content[0]
    record_modelkit_asset(uri, name=metadata["reference"], url=url, metadata=metadata)


def _log_push(result: TransferResult) -> None:
    get_run_logger().info(
        "Pushed %s to %s (%s): %d blobs, %s sent, %s skipped",
        result.source,
        result.destination,
        result.digest,
        result.blobs,
        human_size(result.bytes_transferred),
        human_size(result.bytes_skipped),
    )


@task(name="push_modelkit", cache_policy=NO_CACHE)
def push_modelkit(
    reference: str,
    destination: str | None = None,
    credentials: Credentials = None,
    home: PathLike | None = None,
) -> TransferResult:
    """Push a local ModelKit to its registry (or to ``destination``), skipping blobs it has.

    Publishes a link artifact to the pushed manifest, a layers table, and records the ModelKit
    as the asset ``oci://registry/repository@digest``.
    """
    block = load_credentials(credentials)
    result = _push(reference, destination, block, home)
    _log_push(result)
    specs, uri, metadata = _push_outputs(reference, destination, block, home, result)
    publish(specs)
    _record_asset(uri, specs, metadata)
    return result


@task(name="apush_modelkit", cache_policy=NO_CACHE)
async def apush_modelkit(
    reference: str,
    destination: str | None = None,
    credentials: Credentials = None,
    home: PathLike | None = None,
) -> TransferResult:
    """Async twin of :func:`push_modelkit`."""
    block = await aload_credentials(credentials)
    result = await asyncio.to_thread(_push, reference, destination, block, home)
    _log_push(result)
    specs, uri, metadata = await asyncio.to_thread(
        _push_outputs, reference, destination, block, home, result
    )
    await apublish(specs)
    _record_asset(uri, specs, metadata)
    return result


# --------------------------------------------------------------------------------------------
# pull
# --------------------------------------------------------------------------------------------


def _pull(
    reference: str, credentials: KitRegistryCredentials | None, home: PathLike | None
) -> TransferResult:
    return kitflow.pull(reference, registry=registry_options(credentials, reference), home=home)


def _log_pull(result: TransferResult) -> None:
    get_run_logger().info(
        "Pulled %s (%s): %d blobs, %s received, %s already local",
        result.source,
        result.digest,
        result.blobs,
        human_size(result.bytes_transferred),
        human_size(result.bytes_skipped),
    )


_PULL_OPTIONS: dict[str, Any] = {"cache_key_fn": pull_cache_key, "persist_result": True}


@task(name="pull_modelkit", **_PULL_OPTIONS)
def pull_modelkit(
    reference: str, credentials: Credentials = None, home: PathLike | None = None
) -> TransferResult:
    """Pull a ModelKit from its registry into the local store, verifying every byte.

    A digest-pinned reference (``registry/repo@sha256:...``) already pulled into the same store
    is a cache hit, whatever credentials were used; tag references always pull.
    """
    result = _pull(reference, load_credentials(credentials), home)
    _log_pull(result)
    return result


@task(name="apull_modelkit", **_PULL_OPTIONS)
async def apull_modelkit(
    reference: str, credentials: Credentials = None, home: PathLike | None = None
) -> TransferResult:
    """Async twin of :func:`pull_modelkit`."""
    block = await aload_credentials(credentials)
    result = await asyncio.to_thread(_pull, reference, block, home)
    _log_pull(result)
    return result


# --------------------------------------------------------------------------------------------
# unpack
# --------------------------------------------------------------------------------------------


def _unpack(
    reference: str,
    directory: PathLike,
    filters: Sequence[str],
    overwrite: bool,
    ignore_existing: bool,
    credentials: KitRegistryCredentials | None,
    home: PathLike | None,
) -> UnpackResult:
    return kitflow.unpack(
        reference,
        directory,
        filters=tuple(filters),
        overwrite=overwrite,
        ignore_existing=ignore_existing,
        registry=registry_options(credentials, reference),
        home=home,
    )


def _log_unpack(result: UnpackResult) -> None:
    get_run_logger().info(
        "Unpacked %s (%s) into %s: %d files, %s",
        result.reference,
        result.digest,
        result.directory,
        result.files,
        human_size(result.bytes_written),
    )


@task(name="unpack_modelkit", cache_policy=NO_CACHE)
def unpack_modelkit(
    reference: str,
    directory: PathLike = ".",
    filters: Sequence[str] = (),
    overwrite: bool = False,
    ignore_existing: bool = False,
    credentials: Credentials = None,
    home: PathLike | None = None,
) -> UnpackResult:
    """Unpack a ModelKit (or the parts ``filters`` select, kit's ``--filter``) into a directory.

    Reads from the local store, or straight from the registry when the ModelKit is not local.
    """
    block = load_credentials(credentials)
    result = _unpack(reference, directory, filters, overwrite, ignore_existing, block, home)
    _log_unpack(result)
    return result


@task(name="aunpack_modelkit", cache_policy=NO_CACHE)
async def aunpack_modelkit(
    reference: str,
    directory: PathLike = ".",
    filters: Sequence[str] = (),
    overwrite: bool = False,
    ignore_existing: bool = False,
    credentials: Credentials = None,
    home: PathLike | None = None,
) -> UnpackResult:
    """Async twin of :func:`unpack_modelkit`."""
    block = await aload_credentials(credentials)
    result = await asyncio.to_thread(
        _unpack, reference, directory, filters, overwrite, ignore_existing, block, home
    )
    _log_unpack(result)
    return result


# --------------------------------------------------------------------------------------------
# local inference
# --------------------------------------------------------------------------------------------


def _references(reference: str | Sequence[str]) -> list[str]:
    return [reference] if isinstance(reference, str) else list(reference)


def _run_local(
    reference: str | Sequence[str],
    input: PathLike | None,
    output: PathLike | None,
    dataset: str | None,
    shards: int | None,
    parallelism: int | None,
    entrypoint: str | None,
    batch_size: int,
    retries: int,
    credentials: KitRegistryCredentials | None,
    home: PathLike | None,
) -> RunResult:
    return kitflow.run(
        reference,
        input,
        output,
        backend="local",
        shards=shards,
        parallelism=parallelism,
        entrypoint=entrypoint,
        dataset=dataset,
        batch_size=batch_size,
        retries=retries,
        registry=registry_options(credentials, *_references(reference)),
        home=home,
    )


def inference_specs(result: RunResult, references: Sequence[str]) -> list[ArtifactSpec]:
    """The markdown summary of a run (and, for Argo, the link to its Workflow)."""
    name = references[0] if len(references) == 1 else f"{len(references)} ModelKits"
    specs = [
        ArtifactSpec(
            kind="markdown",
            key=artifact_key("inference", result.backend, split_reference(references[0])[1]),
            content=inference_markdown(result, title=f"Inference with {name}"),
            description=f"{result.records} records scored by {name} on {result.backend}.",
        )
    ]
    if result.workflow_url:
        specs.append(
            ArtifactSpec(
                kind="link",
                key=artifact_key("argo-workflow", result.workflow_name or "run"),
                content=(
                    result.workflow_url,
                    f"{result.workflow_namespace}/{result.workflow_name}",
                ),
                description=f"Argo Workflow that scored {result.records} records ({result.phase}).",
            )
        )
    return specs


def _log_run(result: RunResult) -> None:
    get_run_logger().info(
        "Scored %d records with %s on %s in %.2fs; predictions in %s",
        result.records,
        result.model_digest,
        result.backend,
        result.seconds,
        result.output,
    )


@task(name="run_inference", cache_policy=NO_CACHE)
def run_inference(
    reference: str | Sequence[str],
    input: PathLike | None = None,
    output: PathLike | None = None,
    dataset: str | None = None,
    shards: int | None = None,
    parallelism: int | None = None,
    entrypoint: str | None = None,
    batch_size: int = 256,
    retries: int = 1,
    credentials: Credentials = None,
    home: PathLike | None = None,
) -> RunResult:
    """Run batch inference with a ModelKit on this machine (the local backend).

    ``input`` is a JSON Lines/CSV/Parquet file (or ``dataset`` names one inside the kit); the
    predictions go to ``output`` as JSON Lines. Publishes a markdown summary of the results.
    """
    block = load_credentials(credentials)
    result = _run_local(
        reference, input, output, dataset, shards, parallelism, entrypoint, batch_size,
        retries, block, home,
    )  # fmt: skip
    _log_run(result)
    publish(inference_specs(result, _references(reference)))
    return result


@task(name="arun_inference", cache_policy=NO_CACHE)
async def arun_inference(
    reference: str | Sequence[str],
    input: PathLike | None = None,
    output: PathLike | None = None,
    dataset: str | None = None,
    shards: int | None = None,
    parallelism: int | None = None,
    entrypoint: str | None = None,
    batch_size: int = 256,
    retries: int = 1,
    credentials: Credentials = None,
    home: PathLike | None = None,
) -> RunResult:
    """Async twin of :func:`run_inference` (the run happens in a worker thread)."""
    block = await aload_credentials(credentials)
    result = await asyncio.to_thread(
        _run_local, reference, input, output, dataset, shards, parallelism, entrypoint,
        batch_size, retries, block, home,
    )  # fmt: skip
    _log_run(result)
    await apublish(inference_specs(result, _references(reference)))
    return result
