"""``ModelKitIOManager``: store an asset's output (a directory or file path) as a ModelKit.

For "directory in, directory out" assets: the output is packed (with its own Kitfile, or one
guessed by kit's ``init`` rules) into ``<registry>/<prefix>/<asset key>:<partition or latest>``
and pushed; loading unpacks the digest recorded by the latest materialization into a
content-addressed cache and returns that directory. Python objects are refused: a ModelKit holds
files, not pickles.
"""

from __future__ import annotations

import os
import re
import shutil
import tempfile
from pathlib import Path
from typing import Any

import dagster as dg
from kitflow.errors import KitflowError
from kitflow.format.generate import generate_kitfile
from kitflow.format.kitfile import KITFILE_NAMES, kitfile_to_yaml
from pydantic import Field

from dagster_kitflow.metadata import modelkit_metadata, pinned, recorded_value
from dagster_kitflow.modelkit import stage_path, tag_for
from dagster_kitflow.resources import KitRegistryResource

_REPO_BAD = re.compile(r"[^a-z0-9._/-]+")


def repository_for(prefix: str, key: dg.AssetKey) -> str:
    """A repository name for an asset key (lowercase, characters kit refuses become '-')."""
    parts = [p for p in prefix.strip("/").split("/") if p] + list(key.path)
    name = "/".join(_REPO_BAD.sub("-", p.lower()).strip("-._") or "asset" for p in parts)
    return name


class ModelKitIOManager(dg.ConfigurableIOManager):
    """Stores asset outputs that are paths (a directory or a file) as ModelKits and loads them
    back as directories. Repository: ``<repository_prefix>/<asset key>``; tag: the partition
    key or ``latest``."""

    kit_registry: KitRegistryResource = Field(description="Where the ModelKits go.")
    repository_prefix: str = Field(default="dagster", description="Repository name prefix.")
    cache_dir: str | None = Field(
        default=None,
        description="Where loaded ModelKits are unpacked (default: the instance's storage).",
    )

    def handle_output(self, context: dg.OutputContext, obj: Any) -> None:
        """Pack the path ``obj`` (with its Kitfile, or a generated one) and push it."""
        if obj is None:
            return
        if not isinstance(obj, str | os.PathLike):
            raise KitflowError(
                f"ModelKitIOManager stores paths (a directory or file), not {type(obj).__name__}"
            )
        source = Path(obj)
        if not source.exists():
            raise KitflowError(f"{source} does not exist: nothing to store as a ModelKit")
        kit = self.kit_registry
        partition = context.partition_key if context.has_partition_key else None
        repo = repository_for(self.repository_prefix, context.asset_key)
        tag = tag_for("{partition_key}", partition) if partition else "latest"
        reference = kit.qualify(f"{repo}:{tag}")
        with tempfile.TemporaryDirectory(prefix="kitflow-io-") as tmp:
            work = Path(tmp)
            if source.is_dir():
                root = source
            else:
                root = work / "context"
                stage_path(source, root / source.name)
            kitfile = None
            if not any((root / n).is_file() for n in KITFILE_NAMES):
                generated = generate_kitfile(root, name=context.asset_key.path[-1])
                kitfile = work / "Kitfile"
                kitfile.write_text(kitfile_to_yaml(generated), encoding="utf-8")
            packed = kit.pack(root, reference, kitfile=kitfile)
        pushed = kit.push(reference) if kit.is_remote(reference) else None
        url = kit.url(reference, packed.digest) if pushed is not None else None
        context.add_output_metadata(
            modelkit_metadata(reference, packed, kit.info(reference, remote=False), pushed, url)
        )
        context.log.info(f"Stored {source} as ModelKit {reference} ({packed.digest})")

    def load_input(self, context: dg.InputContext) -> Path:
        """Unpack the upstream asset's recorded ModelKit (by digest) and return its directory."""
        kit = self.kit_registry
        key = context.asset_key
        reference = digest = None
        if context.instance is not None:
            entry = _latest(context, key)
            reference = recorded_value(entry, "reference")
            digest = recorded_value(entry, "digest")
        if not reference or not digest:
            raise KitflowError(
                f"asset {key.to_user_string()} has no recorded ModelKit: materialize it first"
            )
        base = Path(self.cache_dir) if self.cache_dir else _storage(context) / "kitflow-modelkits"
        target = base / digest.replace(":", "-")
        if target.is_dir():
            return target
        base.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=".unpack-", dir=base))
        try:
            kit.unpack(pinned(reference, digest), tmp)
            try:
                tmp.rename(target)
            except OSError:
                if not target.is_dir():  # another process won the race: use its copy
                    raise
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
        return target


def _storage(context: dg.InputContext) -> Path:
    if context.instance is None:
        return Path(tempfile.gettempdir())
    return Path(context.instance.storage_directory())


def _latest(context: dg.InputContext, key: dg.AssetKey) -> Any:
    instance = context.instance
    assert instance is not None
    if context.has_asset_partitions:
        partitions = context.asset_partition_keys
        if len(partitions) != 1:
            raise KitflowError("ModelKitIOManager loads one partition at a time")
        result = instance.fetch_materializations(
            dg.AssetRecordsFilter(asset_key=key, asset_partitions=[partitions[0]]), limit=1
        )
        return result.records[0].event_log_entry if result.records else None
    return instance.get_latest_materialization_event(key)
