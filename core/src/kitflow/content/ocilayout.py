"""An OCI image layout directory (``oci-layout``, ``index.json``, ``blobs/``) as a ``Target``.

Tags are ``org.opencontainers.image.ref.name`` annotations in ``index.json``, as skopeo's and
oras's ``oci:`` layouts write them. Blobs appear only complete and verified (temp + rename).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import tempfile
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any, BinaryIO

from kitflow.content.digest import CHUNK, VerifyingReader, check_digest, sha256_digest
from kitflow.errors import DigestMismatchError, KitflowError, NotFoundError
from kitflow.format.descriptor import OCI_INDEX, Descriptor

REF_NAME = "org.opencontainers.image.ref.name"
LAYOUT = b'{"imageLayoutVersion":"1.0.0"}'


class OCILayout:
    """A directory in OCI image layout form; ``OCILayout(dir)`` creates it on first write."""

    def __init__(self, directory: str | os.PathLike[str]) -> None:
        self.root = Path(directory)
        self._lock = threading.Lock()

    def __repr__(self) -> str:
        return f"OCILayout({str(self.root)!r})"

    @property
    def name(self) -> str:
        return f"oci:{self.root}"

    # ------------------------------------------------------------------------------ files

    def _blob_path(self, digest: str) -> Path:
        return self.root / "blobs" / "sha256" / check_digest(digest)

    def _index(self) -> dict[str, Any]:
        try:
            doc = json.loads((self.root / "index.json").read_bytes())
        except FileNotFoundError:
            return {"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": []}
        except ValueError as exc:
            raise KitflowError(f"{self.root}/index.json is not valid JSON ({exc})") from None
        doc.setdefault("manifests", [])
        return dict(doc)

    def _write_index(self, doc: dict[str, Any]) -> None:
        self._atomic(self.root / "index.json", json.dumps(doc, separators=(",", ":")).encode())

    def _ensure(self) -> None:
        (self.root / "blobs" / "sha256").mkdir(parents=True, exist_ok=True)
        if not (self.root / "oci-layout").exists():
            self._atomic(self.root / "oci-layout", LAYOUT)

    @staticmethod
    def _atomic(path: Path, data: bytes) -> None:
        fd, tmp = tempfile.mkstemp(prefix=".kitflow-", dir=path.parent)
        try:
            with os.fdopen(fd, "wb") as fh:
                fh.write(data)
            os.replace(tmp, path)
        except BaseException:
            with contextlib.suppress(OSError):
                os.unlink(tmp)
            raise

    # ------------------------------------------------------------------------------ Target

    def resolve(self, reference: str) -> Descriptor:
        """A ``ref.name`` tag or a digest listed in ``index.json`` → its descriptor."""
        for entry in self._index()["manifests"]:
            annotations = entry.get("annotations") or {}
            if entry.get("digest") == reference or annotations.get(REF_NAME) == reference:
                desc = Descriptor.from_json(entry)
                plain = {k: v for k, v in desc.annotations.items() if k != REF_NAME}
                return Descriptor(
                    desc.media_type, desc.digest, desc.size, plain, desc.artifact_type
                )
        raise NotFoundError(f"{reference!r} not found in OCI layout {self.root}")

    def exists(self, desc: Descriptor) -> bool:
        """Whether the blob file is present."""
        return self._blob_path(desc.digest).is_file()

    @contextlib.contextmanager
    def fetch(self, desc: Descriptor) -> Iterator[BinaryIO]:
        """A verifying stream of the blob."""
        try:
            fh = open(self._blob_path(desc.digest), "rb")  # noqa: SIM115
        except FileNotFoundError:
            raise NotFoundError(f"blob {desc.digest} not found in OCI layout {self.root}") from None
        reader = VerifyingReader(fh, desc.digest, desc.size, what=f"blob in {self.root}")
        try:
            yield reader  # type: ignore[misc]
        finally:
            reader.close()

    def fetch_bytes(self, desc: Descriptor) -> bytes:
        """Small content, verified."""
        try:
            data = self._blob_path(desc.digest).read_bytes()
        except FileNotFoundError:
            raise NotFoundError(f"blob {desc.digest} not found in OCI layout {self.root}") from None
        actual = sha256_digest(data)
        if actual != desc.digest or len(data) != desc.size:
            raise DigestMismatchError(
                f"blob in {self.root} hashes to {actual}, expected {desc.digest}"
            )
        return data

    def push(self, desc: Descriptor, stream: BinaryIO) -> None:
        """Write a blob through a temp file, verify, rename; manifests also enter index.json."""
        self._ensure()
        target = self._blob_path(desc.digest)
        if not target.exists():
            fd, tmp = tempfile.mkstemp(prefix=".kitflow-", dir=target.parent)
            try:
                hasher = hashlib.sha256()
                size = 0
                with os.fdopen(fd, "wb") as fh:
                    while True:
                        data = stream.read(CHUNK * 4)
                        if not data:
                            break
                        hasher.update(data)
                        size += len(data)
                        fh.write(data)
                actual = "sha256:" + hasher.hexdigest()
                if actual != desc.digest or size != desc.size:
                    raise DigestMismatchError(
                        f"content hashes to {actual} ({size} bytes), expected {desc.digest} "
                        f"({desc.size} bytes); not stored in {self.root}"
                    )
                os.replace(tmp, target)
            except BaseException:
                with contextlib.suppress(OSError):
                    os.unlink(tmp)
                raise
        if desc.is_manifest:
            self._add(desc, None)

    def push_bytes(self, desc: Descriptor, data: bytes) -> None:
        """Small content, verified like ``push``."""
        import io

        self.push(desc, io.BytesIO(data))

    def tag(self, desc: Descriptor, reference: str) -> None:
        """Set ``ref.name`` = ``reference`` on the manifest's ``index.json`` entry."""
        if reference.startswith("sha256:"):
            self._add(desc, None)
            return
        self._add(desc, reference)

    def _add(self, desc: Descriptor, tag: str | None) -> None:
        with self._lock:
            doc = self._index()
            manifests = doc["manifests"]
            entry = desc.to_json()
            if tag is None:
                if any(m.get("digest") == desc.digest for m in manifests):
                    return
                manifests.append(entry)
            else:
                kept = []
                for m in manifests:
                    name = (m.get("annotations") or {}).get(REF_NAME)
                    if name == tag:
                        continue
                    if m.get("digest") == desc.digest and name is None:
                        continue  # the untagged entry becomes the tagged one
                    kept.append(m)
                entry["annotations"] = {**entry.get("annotations", {}), REF_NAME: tag}
                kept.append(entry)
                doc["manifests"] = kept
            self._write_index(doc)

    def tags(self) -> dict[str, Descriptor]:
        """``ref.name`` → descriptor."""
        out = {}
        for entry in self._index()["manifests"]:
            name = (entry.get("annotations") or {}).get(REF_NAME)
            if name:
                out[name] = Descriptor.from_json(entry)
        return out
