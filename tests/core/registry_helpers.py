"""Helpers for the registry/transfer tests: hand-made ModelKits in a local store or a layout."""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

from kitflow.content.digest import sha256_digest
from kitflow.content.localstore import LocalStore
from kitflow.format.descriptor import OCI_MANIFEST, Descriptor, Manifest
from kitflow.format.mediatypes import KIT_ARTIFACT_TYPE, KIT_CONFIG

LAYER_TYPE = "application/vnd.kitops.modelkit.model.v1.tar"
CODE_TYPE = "application/vnd.kitops.modelkit.code.v1.tar"


def layer_bytes(seed: str, size: int) -> bytes:
    """Deterministic pseudo-random content of ``size`` bytes."""
    out = bytearray()
    block = hashlib.sha256(seed.encode()).digest()
    while len(out) < size:
        block = hashlib.sha256(block).digest()
        out += block * 64
    return bytes(out[:size])


def make_kit(
    home: Path, name: str, tag: str = "v1", sizes: tuple[int, ...] = (3000, 70_000), seed: str = ""
) -> tuple[Manifest, Descriptor, dict[str, bytes]]:
    """Store a small ModelKit-shaped artifact (config + layers + manifest) under ``name:tag``.

    Returns the manifest, its descriptor and every blob's bytes by digest.
    """
    store = LocalStore(home)
    seed = seed or name + tag
    config = json.dumps({"manifestVersion": "1.0.0", "package": {"name": seed}}).encode()
    blobs = {sha256_digest(config): config}
    config_desc = store.put_bytes(KIT_CONFIG, config)
    layers = []
    for i, size in enumerate(sizes):
        data = layer_bytes(f"{seed}-{i}", size)
        media = LAYER_TYPE if i == 0 else CODE_TYPE
        desc = store.put_bytes(media, data)
        layers.append(
            Descriptor(media, desc.digest, desc.size, {"org.cncf.model.filepath": f"f{i}"})
        )
        blobs[desc.digest] = data
    manifest = Manifest(
        config=config_desc,
        layers=layers,
        artifact_type=KIT_ARTIFACT_TYPE,
        media_type=OCI_MANIFEST,
    )
    data = manifest.to_bytes()
    mdesc = store.put_bytes(OCI_MANIFEST, data)
    blobs[mdesc.digest] = data
    store.tag(name, mdesc, tag)
    return manifest, mdesc, blobs


def store_snapshot(home: Path) -> dict[str, bytes]:
    """Every file under ``storage`` (relative path → bytes), for before/after comparisons."""
    root = Path(home) / "storage"
    out = {}
    for dirpath, _, files in os.walk(root):
        for f in files:
            p = Path(dirpath) / f
            if f in (".kitflow.lock", ".kitflow-gc.lock"):  # lock files, not content
                continue
            out[str(p.relative_to(root))] = p.read_bytes()
    return out
