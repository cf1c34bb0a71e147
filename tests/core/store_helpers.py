"""Hand-made ModelKits in a local store for the unpack, store and CLI tests (Kit and ModelPack
formats, legacy layouts, odd media types) without going through pack."""

from __future__ import annotations

import hashlib
import io
import json
import tarfile
from pathlib import Path
from typing import Any

from kitflow.content.localstore import LocalStore
from kitflow.format.descriptor import OCI_MANIFEST, Descriptor
from kitflow.format.mediatypes import ANNOTATION_FILEPATH, KIT_ARTIFACT_TYPE, KIT_CONFIG

KIT = "application/vnd.kitops.modelkit."


def tar_of(files: dict[str, bytes | None]) -> bytes:
    """A tar with the given entries in order (None = directory)."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tf:
        for name, data in files.items():
            info = tarfile.TarInfo(name)
            if data is None:
                info.type = tarfile.DIRTYPE
                info.mode = 0o755
                tf.addfile(info)
            else:
                info.size = len(data)
                info.mode = 0o644
                tf.addfile(info, io.BytesIO(data))
    return buf.getvalue()


def sha(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


class KitBuilder:
    """Writes hand-made ModelKits (Kit or ModelPack format) into a LocalStore."""

    def __init__(self, home: Path) -> None:
        self.home = home
        self.store = LocalStore(home)

    def blob(
        self,
        media_type: str,
        data: bytes,
        annotations: dict[str, str] | None = None,
    ) -> Descriptor:
        self.store.put_bytes(media_type, data)
        return Descriptor(media_type, sha(data), len(data), dict(annotations or {}))

    def kit(
        self,
        ref: str,
        config: dict[str, Any],
        layers: list[Descriptor],
        *,
        artifact_type: str | None = KIT_ARTIFACT_TYPE,
        config_type: str = KIT_CONFIG,
        config_bytes: bytes | None = None,
        annotations: dict[str, str] | None = None,
    ) -> Descriptor:
        cfg = config_bytes if config_bytes is not None else json.dumps(config).encode()
        cdesc = self.blob(config_type, cfg)
        manifest: dict[str, Any] = {"schemaVersion": 2}
        if artifact_type:
            manifest["artifactType"] = artifact_type
        manifest["config"] = cdesc.to_json()
        manifest["layers"] = [d.to_json() for d in layers]
        manifest["annotations"] = {
            "ml.kitops.modelkit.cli-version": "1.10.0",
            **(annotations or {}),
        }
        data = json.dumps(manifest, separators=(",", ":")).encode()
        mdesc = self.blob(OCI_MANIFEST, data)
        repo, _, tag = ref.rpartition(":")
        self.store.add_manifest(repo, mdesc, tag)
        return mdesc

    def standard(self, ref: str = "localhost/test/model:v1") -> Descriptor:
        """model dir, a dataset file, README docs, code dir; config with digests."""
        model = self.blob(
            KIT + "model.v1.tar",
            tar_of({"model": None, "model/weights.bin": b"W" * 100, "model/config.json": b"{}"}),
            {ANNOTATION_FILEPATH: "model"},
        )
        data = self.blob(
            KIT + "dataset.v1.tar",
            tar_of({"data": None, "data/train.csv": b"a,b\n1,2\n"}),
            {ANNOTATION_FILEPATH: "data/train.csv"},
        )
        val = self.blob(
            KIT + "dataset.v1.tar",
            tar_of({"data": None, "data/val.csv": b"a,b\n3,4\n"}),
            {ANNOTATION_FILEPATH: "data/val.csv"},
        )
        code = self.blob(
            KIT + "code.v1.tar",
            tar_of({"src": None, "src/predict.py": b"pass\n"}),
            {ANNOTATION_FILEPATH: "src"},
        )
        docs = self.blob(
            KIT + "docs.v1.tar",
            tar_of({"README.md": b"# hi\n"}),
            {ANNOTATION_FILEPATH: "README.md"},
        )

        def info(d: Descriptor) -> dict[str, str]:
            return {"digest": d.digest, "diffId": d.digest}

        config = {
            "manifestVersion": "1.0.0",
            "package": {"name": "standard", "authors": ["Ann Author", "Bo"]},
            "model": {"name": "m", "path": "model", **info(model)},
            "code": [{"path": "src", **info(code)}],
            "datasets": [
                {"name": "train", "path": "data/train.csv", **info(data)},
                {"name": "val", "path": "./data/val.csv", **info(val)},
            ],
            "docs": [{"path": "README.md", **info(docs)}],
        }
        return self.kit(ref, config, [model, code, data, val, docs])
