"""Digests: compute while streaming, verify on every read that leaves a target."""

from __future__ import annotations

import hashlib
import re
from typing import BinaryIO

from kitflow.errors import DigestMismatchError, KitflowError

_DIGEST_RE = re.compile(r"^sha256:[a-f0-9]{64}$")
CHUNK = 1024 * 1024


def sha256_digest(data: bytes) -> str:
    """``sha256:<hex>`` of a small in-memory value (manifests, configs)."""
    return "sha256:" + hashlib.sha256(data).hexdigest()


def check_digest(digest: str) -> str:
    """Return the hex part of a sha256 digest, or raise a user error naming the bad value."""
    if not _DIGEST_RE.match(digest):
        raise KitflowError(f"invalid digest {digest!r}: expected sha256:<64 hex digits>")
    return digest.split(":", 1)[1]


class VerifyingReader:
    """Wraps a stream, hashes what passes through, and raises at EOF if the digest or size is off.

    Nothing downstream may treat the content as trusted until ``read`` has returned b"" once.
    """

    def __init__(
        self,
        stream: BinaryIO,
        digest: str,
        size: int,
        *,
        offset: int = 0,
        hasher: hashlib._Hash | None = None,
        what: str = "blob",
    ) -> None:
        self._stream = stream
        self._digest = digest
        self._size = size
        self._seen = offset
        self._hash = hasher or hashlib.sha256()
        self._what = what
        self._done = False

    def read(self, n: int = -1) -> bytes:
        data = self._stream.read(n if n is not None and n >= 0 else CHUNK * 8)
        if data:
            self._seen += len(data)
            if self._seen > self._size:
                raise DigestMismatchError(
                    f"{self._what} {self._digest} is larger than its descriptor says "
                    f"({self._size} bytes)"
                )
            self._hash.update(data)
            return data
        if not self._done:
            self._done = True
            self.verify()
        return b""

    def verify(self) -> None:
        """Raise DigestMismatchError unless exactly the promised bytes went through."""
        if self._seen != self._size:
            raise DigestMismatchError(
                f"{self._what} {self._digest}: got {self._seen} bytes, descriptor says {self._size}"
            )
        actual = "sha256:" + self._hash.hexdigest()
        if actual != self._digest:
            raise DigestMismatchError(
                f"{self._what} content hashes to {actual}, expected {self._digest}"
            )

    def readable(self) -> bool:
        return True

    def close(self) -> None:
        self._stream.close()

    def __enter__(self) -> VerifyingReader:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
