"""The one interface every content target implements (after oras-go's content.Target).

Targets: ``LocalStore`` (kit's layout), ``Registry`` (one repository of an OCI registry),
``OCILayout`` (a directory). Graph operations (copy, unpack, ...) are written once over it.
"""

from __future__ import annotations

from contextlib import AbstractContextManager
from typing import BinaryIO, Protocol, runtime_checkable

from kitflow.format.descriptor import Descriptor


@runtime_checkable
class ReadOnlyTarget(Protocol):
    """Something ModelKits can be read from."""

    def resolve(self, reference: str) -> Descriptor:
        """Tag or ``sha256:`` digest → the manifest's descriptor; NotFoundError if absent."""
        ...

    def exists(self, desc: Descriptor) -> bool:
        """Whether the blob or manifest is already there (no content read)."""
        ...

    def fetch(self, desc: Descriptor) -> AbstractContextManager[BinaryIO]:
        """A stream of the content; it raises DigestMismatchError at EOF if it does not verify."""
        ...

    def fetch_bytes(self, desc: Descriptor) -> bytes:
        """Whole (small) content, verified: manifests and configs only."""
        ...


@runtime_checkable
class Target(ReadOnlyTarget, Protocol):
    """Something ModelKits can also be written to."""

    def push(self, desc: Descriptor, stream: BinaryIO) -> None:
        """Store content read from ``stream``; it appears only if complete and verified."""
        ...

    def push_bytes(self, desc: Descriptor, data: bytes) -> None:
        """Store small content (manifest, config); verified like ``push``."""
        ...

    def tag(self, desc: Descriptor, reference: str) -> None:
        """Point ``reference`` (a tag) at the manifest ``desc``."""
        ...
