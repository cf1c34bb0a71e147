"""The typed Python API: one function per CLI verb, each a thin call into the layers below.

Plugins (Airflow, Prefect, Dagster) call only these functions and the types they return.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from kitflow.options import ArgoOptions, RegistryOptions
from kitflow.results import (
    ModelKitSummary,
    PackResult,
    RunResult,
    TransferResult,
    UnpackResult,
)

PathLike = str | Path


def pack(
    context: PathLike = ".",
    *,
    tag: str | None = None,
    kitfile: PathLike | None = None,
    compression: str = "none",
    layer_format: str = "tar",
    use_model_pack: bool = False,
    home: PathLike | None = None,
    progress: bool = False,
) -> PackResult:
    """Pack ``context`` by its Kitfile into the local store (kit's `pack -t TAG`)."""
    from kitflow.ops.pack import pack as _pack

    return _pack(
        context,
        tag=tag,
        kitfile=kitfile,
        compression=compression,
        layer_format=layer_format,
        use_model_pack=use_model_pack,
        home=home,
        progress=progress,
    )


def unpack(
    reference: str,
    directory: PathLike = ".",
    *,
    filters: Sequence[str] = (),
    overwrite: bool = False,
    ignore_existing: bool = False,
    registry: RegistryOptions | None = None,
    home: PathLike | None = None,
    progress: bool = False,
) -> UnpackResult:
    """Unpack a ModelKit from the local store, or straight from its registry if not local."""
    from kitflow.ops.unpack import unpack as _unpack

    return _unpack(
        reference,
        directory,
        filters=filters,
        overwrite=overwrite,
        ignore_existing=ignore_existing,
        registry=registry,
        home=home,
        progress=progress,
    )


def push(
    reference: str,
    destination: str | None = None,
    *,
    registry: RegistryOptions | None = None,
    home: PathLike | None = None,
    progress: bool = False,
) -> TransferResult:
    """Push a local ModelKit to its registry (or to ``destination``), skipping blobs it has."""
    from kitflow.ops.transfer import push as _push

    return _push(reference, destination, registry=registry, home=home, progress=progress)


def pull(
    reference: str,
    *,
    registry: RegistryOptions | None = None,
    home: PathLike | None = None,
    progress: bool = False,
) -> TransferResult:
    """Pull a ModelKit from a registry into the local store, verifying every byte."""
    from kitflow.ops.transfer import pull as _pull

    return _pull(reference, registry=registry, home=home, progress=progress)


def copy(
    source: str,
    destination: str,
    *,
    registry: RegistryOptions | None = None,
    home: PathLike | None = None,
    progress: bool = False,
) -> TransferResult:
    """Copy a ModelKit between registries, OCI layout dirs (``oci:DIR:TAG``) and the store."""
    from kitflow.ops.transfer import copy as _copy

    return _copy(source, destination, registry=registry, home=home, progress=progress)


def tag(source: str, destination: str, *, home: PathLike | None = None) -> None:
    """Give a local ModelKit another reference (kit's `tag`)."""
    from kitflow.ops.store import tag as _tag

    _tag(source, destination, home=home)


def remove(
    reference: str | None = None,
    *,
    all_untagged: bool = False,
    force: bool = False,
    remote: bool = False,
    registry: RegistryOptions | None = None,
    home: PathLike | None = None,
) -> list[str]:
    """Remove ModelKits by kit's rules; returns the references removed."""
    from kitflow.ops.store import remove as _remove

    return _remove(
        reference,
        all_untagged=all_untagged,
        force=force,
        remote=remote,
        registry=registry,
        home=home,
    )


def list_modelkits(
    repository: str | None = None, *, home: PathLike | None = None
) -> list[ModelKitSummary]:
    """The ModelKits in the local store (kit's `list`)."""
    from kitflow.ops.store import list_modelkits as _list

    return _list(repository, home=home)


def inspect(
    reference: str,
    *,
    remote: bool = False,
    registry: RegistryOptions | None = None,
    home: PathLike | None = None,
) -> dict[str, Any]:
    """``{"digest", "cliVersion", "kitfile", "manifest"}`` as kit's `inspect` prints it."""
    from kitflow.ops.store import inspect as _inspect

    return _inspect(reference, remote=remote, registry=registry, home=home)


def info(
    reference: str,
    *,
    remote: bool = False,
    registry: RegistryOptions | None = None,
    home: PathLike | None = None,
) -> str:
    """The ModelKit's Kitfile as YAML (kit's `info`)."""
    from kitflow.ops.store import info as _info

    return _info(reference, remote=remote, registry=registry, home=home)


def validate(path: PathLike = ".") -> list[str]:
    """Every problem with the Kitfile at ``path`` (a file or a directory); empty when valid."""
    from kitflow.format.kitfile import validate_path

    return validate_path(path)


def run(
    reference: str | Sequence[str],
    input: PathLike | None = None,
    output: PathLike | None = None,
    *,
    backend: str = "local",
    shards: int | None = None,
    parallelism: int | None = None,
    entrypoint: str | None = None,
    dataset: str | None = None,
    batch_size: int = 256,
    retries: int = 1,
    registry: RegistryOptions | None = None,
    argo: ArgoOptions | None = None,
    dry_run: bool = False,
    wait: bool = True,
    timeout: float | None = None,
    home: PathLike | None = None,
    progress: bool = False,
    id_field: str = "id",
    input_format: str | None = None,
    isolated_env: bool = False,
) -> RunResult:
    """Run inference with a ModelKit (or several, for a comparison) on JSON Lines inputs.

    ``id_field`` is copied from each input record into its output line; ``input_format`` forces
    jsonl, csv or parquet; ``isolated_env`` installs the kit's requirements into a cached venv.
    """
    from kitflow.inference.runner import run as _run

    return _run(
        reference,
        input,
        output,
        backend=backend,
        shards=shards,
        parallelism=parallelism,
        entrypoint=entrypoint,
        dataset=dataset,
        batch_size=batch_size,
        retries=retries,
        registry=registry,
        argo=argo,
        dry_run=dry_run,
        wait=wait,
        timeout=timeout,
        home=home,
        progress=progress,
        id_field=id_field,
        input_format=input_format,
        isolated_env=isolated_env,
    )


def prune(*, home: PathLike | None = None) -> tuple[int, int]:
    """Delete blobs no ModelKit in the local store references; returns (blobs, bytes) freed."""
    from kitflow.ops.store import prune as _prune

    return _prune(home=home)


def verify(*, home: PathLike | None = None) -> list[str]:
    """Re-hash every blob of the local store; returns the problems found (empty when sound)."""
    from kitflow.ops.store import verify as _verify

    return _verify(home=home)
