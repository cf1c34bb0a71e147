"""The ModelKit asset factory and its asset checks.

``modelkit_asset`` packs a context directory (or upstream assets' outputs staged into one) with
the core's ``pack`` and pushes it with ``push``; the manifest digest is the asset's data version,
so repacking unchanged content does not make a new version. ``modelkit_asset_checks`` re-read
the registry: the tag still resolves to the recorded digest, and the stored Kitfile validates.
"""

import os
import re
import shutil
import tempfile
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path, PurePosixPath
from typing import Any

import dagster as dg
from dagster import AssetCheckExecutionContext, AssetExecutionContext
from kitflow.errors import KitflowError
from kitflow.format.kitfile import (
    find_kitfile,
    layer_entries,
    load_kitfile,
    parse_kitfile,
    validate_kitfile,
)

from dagster_kitflow.metadata import modelkit_metadata, pinned, recorded_value
from dagster_kitflow.resources import KitRegistryResource

KINDS = {"kitops"}
_TAG_BAD = re.compile(r"[^A-Za-z0-9_.-]")

AssetRef = dg.AssetsDefinition | dg.AssetKey | str | Sequence[str]


def asset_key_of(asset: AssetRef) -> dg.AssetKey:
    """The key of an asset given as a definition, a key, ``"a/b"`` or a list of parts."""
    if isinstance(asset, dg.AssetsDefinition):
        return asset.key
    if isinstance(asset, dg.AssetKey):
        return asset
    if isinstance(asset, str):
        return dg.AssetKey.from_user_string(asset)
    return dg.AssetKey(list(asset))


def tag_for(template: str, partition_key: str | None) -> str:
    """Fill ``{partition_key}`` in a tag template; characters a tag cannot hold become '-'."""
    if "{partition_key}" not in template:
        return template
    if partition_key is None:
        raise KitflowError(
            f"tag {template!r} uses {{partition_key}} but the asset is unpartitioned"
        )
    tag = template.replace("{partition_key}", _TAG_BAD.sub("-", partition_key))
    return tag[:128]


def _link_or_copy(src: str, dst: str) -> None:
    """Hard-link (no bytes copied, same inode) when possible, else copy."""
    try:
        os.link(src, dst)
    except OSError:
        shutil.copy2(src, dst)


def stage_path(source: Path, dest: Path) -> None:
    """Put a file or directory at ``dest`` by hard links (copies across filesystems)."""
    if not source.exists():
        raise KitflowError(f"{source} does not exist; the upstream asset must return a path")
    dest.parent.mkdir(parents=True, exist_ok=True)
    if source.is_dir():
        shutil.copytree(source, dest, copy_function=_link_or_copy, dirs_exist_ok=True)
    else:
        _link_or_copy(str(source), str(dest))


def _place_value(value: Any, dest: Path, input_name: str) -> None:
    if dest.is_dir() and not dest.is_symlink():
        shutil.rmtree(dest)
    elif dest.exists() or dest.is_symlink():
        dest.unlink()
    if isinstance(value, str | os.PathLike):
        stage_path(Path(value), dest)
    elif isinstance(value, bytes):
        dest.parent.mkdir(parents=True, exist_ok=True)
        dest.write_bytes(value)
    else:
        raise KitflowError(
            f"upstream input {input_name!r} is a {type(value).__name__}; return a file or "
            "directory path (or bytes) from it to put it in a ModelKit"
        )


@contextmanager
def staged_context(
    context_dir: Path | None,
    kitfile: Path | None,
    values: Mapping[str, tuple[str, Any]],
    scratch: Path,
) -> Iterator[tuple[Path, Path | None]]:
    """The pack context: ``context_dir`` itself, or (with upstream ``values``) a scratch copy
    of it made of hard links with each value placed at its path. Yields (context, kitfile)."""
    if not values:
        assert context_dir is not None
        yield context_dir, kitfile
        return
    chosen = kitfile or (find_kitfile(context_dir) if context_dir is not None else None)
    if chosen is None:
        raise KitflowError("modelkit_asset needs a Kitfile: give kitfile= or context_dir=")
    scratch.mkdir(parents=True, exist_ok=True)
    root = Path(tempfile.mkdtemp(prefix="modelkit-", dir=scratch))
    try:
        staged_kitfile = root / "Kitfile"
        shutil.copy2(chosen, staged_kitfile)
        if context_dir is not None:
            # Only what the Kitfile packs (and .kitignore) is staged, minus what upstream
            # assets provide.
            provided = [PurePosixPath(rel) for rel, _ in values.values()]
            wanted = [e.clean_path for e in layer_entries(load_kitfile(chosen))] + [".kitignore"]
            for rel in dict.fromkeys(wanted):
                path = PurePosixPath(rel)
                if any(path == p or p in path.parents for p in provided):
                    continue
                if (context_dir / rel).exists():
                    stage_path(context_dir / rel, root / rel)
        for name, (rel, value) in values.items():
            _place_value(value, root / _safe_relpath(rel), name)
        yield root, staged_kitfile
    finally:
        shutil.rmtree(root, ignore_errors=True)


def _safe_relpath(rel: str) -> str:
    parts = PurePosixPath(rel).parts
    if not rel or PurePosixPath(rel).is_absolute() or ".." in parts:
        raise KitflowError(f"{rel!r} must be a relative path inside the ModelKit")
    return rel


def modelkit_asset(
    *,
    name: str,
    repository: str,
    context_dir: str | Path | None = None,
    kitfile: str | Path | None = None,
    ins: Mapping[str, str] | None = None,
    tag: str = "latest",
    push: bool = True,
    compression: str = "none",
    registry_resource_key: str = "kit_registry",
    key_prefix: str | Sequence[str] | None = None,
    group_name: str | None = None,
    deps: Sequence[Any] | None = None,
    partitions_def: dg.PartitionsDefinition | None = None,
    description: str | None = None,
    owners: Sequence[str] | None = None,
    tags: Mapping[str, str] | None = None,
    retry_policy: dg.RetryPolicy | None = None,
    pool: str | None = None,
) -> dg.AssetsDefinition:
    """An asset that packs a ModelKit and pushes it to the ``KitRegistryResource``'s registry.

    ``context_dir`` holds the Kitfile and the files it names; ``ins`` maps upstream asset keys
    (``"a/b"``) to paths inside the kit where their outputs (a file or directory path, or
    bytes) are placed. ``tag`` may use ``{partition_key}``. Returns a ``MaterializeResult``
    whose data version is the manifest digest; metadata: reference, digest, registry URL, size,
    layer table and the Kitfile.
    """
    if context_dir is None and not ins:
        raise KitflowError("modelkit_asset needs context_dir=, ins= (with kitfile=), or both")
    if context_dir is None and kitfile is None:
        raise KitflowError("modelkit_asset with only ins= needs kitfile= (the Kitfile to pack)")
    ctx_dir = Path(context_dir).resolve() if context_dir is not None else None
    kf_path = Path(kitfile).resolve() if kitfile is not None else None
    inputs: dict[str, tuple[str, dg.AssetKey]] = {}
    for key, rel in (ins or {}).items():
        akey = asset_key_of(key)
        inputs["_".join(akey.path).replace("-", "_")] = (_safe_relpath(rel), akey)

    @dg.asset(
        name=name,
        key_prefix=key_prefix,
        group_name=group_name,
        deps=deps,
        ins={param: dg.AssetIn(key=akey) for param, (_, akey) in inputs.items()},
        partitions_def=partitions_def,
        description=description or f"ModelKit {repository} packed with kitflow.",
        owners=owners,
        tags=tags,
        kinds=KINDS,
        retry_policy=retry_policy,
        pool=pool,
        required_resource_keys={registry_resource_key},
    )
    def _modelkit(context: AssetExecutionContext, **upstream: Any) -> dg.MaterializeResult:  # type: ignore[type-arg]
        kit: KitRegistryResource = getattr(context.resources, registry_resource_key)
        partition = context.partition_key if context.has_partition_key else None
        reference = kit.qualify(f"{repository}:{tag_for(tag, partition)}")
        values = {p: (inputs[p][0], v) for p, v in upstream.items()}
        scratch = Path(context.instance.storage_directory()) / "kitflow-staging"
        with staged_context(ctx_dir, kf_path, values, scratch) as (where, kf):
            packed = kit.pack(where, reference, kitfile=kf, compression=compression)
        context.log.info(f"Packed {reference} ({packed.digest}, {packed.size} bytes)")
        pushed = None
        if push and kit.is_remote(reference):
            pushed = kit.push(reference)
            context.log.info(
                f"Pushed {reference}: {pushed.bytes_transferred} bytes sent, "
                f"{pushed.blobs_skipped} blobs already there"
            )
        elif push:
            context.log.info("No registry configured: the ModelKit stays in the local store")
        kitfile_yaml = kit.info(reference, remote=False)
        url = kit.url(reference, packed.digest) if pushed is not None else None
        return dg.MaterializeResult(
            metadata=modelkit_metadata(reference, packed, kitfile_yaml, pushed, url),
            data_version=dg.DataVersion(packed.digest),
        )

    return _modelkit


# ------------------------------------------------------------------------------------- checks


def latest_materialization(context: Any, key: dg.AssetKey) -> Any:
    """The newest materialization event of ``key`` in this instance (None if there is none)."""
    return context.instance.get_latest_materialization_event(key)


def recorded_modelkit(context: Any, key: dg.AssetKey) -> tuple[str, str, bool]:
    """(reference, digest, pushed) recorded by the latest materialization of a ModelKit asset."""
    entry = latest_materialization(context, key)
    reference = recorded_value(entry, "reference")
    digest = recorded_value(entry, "digest")
    if not reference or not digest:
        raise KitflowError(
            f"asset {key.to_user_string()} has no recorded ModelKit: materialize it first"
        )
    return reference, digest, recorded_value(entry, "pushed") == "True"


def modelkit_asset_checks(
    asset: AssetRef,
    *,
    registry_resource_key: str = "kit_registry",
    blocking: bool = True,
) -> list[dg.AssetChecksDefinition]:
    """Two checks on a ModelKit asset, read from where it was put (registry or local store):
    ``modelkit_resolves`` (its tag resolves to the digest recorded at materialization) and
    ``kitfile_valid`` (the Kitfile stored in the ModelKit passes kit's validation)."""
    key = asset_key_of(asset)

    @dg.asset_check(
        asset=key,
        name="modelkit_resolves",
        description="The ModelKit's tag resolves to the digest recorded when it was materialized.",
        blocking=blocking,
        required_resource_keys={registry_resource_key},
    )
    def _resolves(context: AssetCheckExecutionContext) -> dg.AssetCheckResult:
        kit: KitRegistryResource = getattr(context.resources, registry_resource_key)
        try:
            reference, digest, pushed = recorded_modelkit(context, key)
        except KitflowError as exc:
            return dg.AssetCheckResult(passed=False, description=str(exc))
        meta: dict[str, Any] = {"reference": reference, "expected_digest": digest}
        try:
            actual = str(kit.inspect(reference, remote=pushed)["digest"])
        except KitflowError as exc:
            return dg.AssetCheckResult(
                passed=False, description=f"{reference} does not resolve: {exc}", metadata=meta
            )
        meta["actual_digest"] = actual
        passed = actual == digest
        return dg.AssetCheckResult(
            passed=passed,
            metadata=meta,
            description=None if passed else f"{reference} now points at {actual}, not {digest}",
        )

    @dg.asset_check(
        asset=key,
        name="kitfile_valid",
        description="The Kitfile stored in the ModelKit passes kit's validation rules.",
        blocking=blocking,
        required_resource_keys={registry_resource_key},
    )
    def _kitfile(context: AssetCheckExecutionContext) -> dg.AssetCheckResult:
        kit: KitRegistryResource = getattr(context.resources, registry_resource_key)
        try:
            reference, digest, pushed = recorded_modelkit(context, key)
            text = kit.info(pinned(reference, digest), remote=pushed)
            problems = validate_kitfile(parse_kitfile(text, source="Kitfile"))
        except KitflowError as exc:
            problems = [str(exc)]
        return dg.AssetCheckResult(
            passed=not problems,
            metadata={
                "problems": dg.MetadataValue.md(
                    "\n".join(f"- {p}" for p in problems) if problems else "none"
                ),
                "problem_count": len(problems),
            },
            description="; ".join(problems)[:500] if problems else None,
        )

    return [_resolves, _kitfile]


__all__ = [
    "asset_key_of",
    "modelkit_asset",
    "modelkit_asset_checks",
    "recorded_modelkit",
    "stage_path",
    "tag_for",
]
