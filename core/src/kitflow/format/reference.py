"""ModelKit references (``[registry/]repository[:tag|@digest][,tag...]``) parsed by kit's rules.

kit fills in ``localhost`` as the registry when the first component does not look like a host,
and checks repositories, tags and digests as oras does; kitflow must agree so both tools store
and find a ModelKit under the same name.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field, replace

from kitflow.errors import KitflowError

DEFAULT_REGISTRY = "localhost"
DEFAULT_REPOSITORY = "_"

_START_END_ALNUM = re.compile(r"[a-z0-9](.*[a-z0-9])?")  # unanchored, as kit uses it
_REPOSITORY = re.compile(
    r"^[a-z0-9]+(?:(?:[._]|__|[-]*)[a-z0-9]+)*(?:/[a-z0-9]+(?:(?:[._]|__|[-]*)[a-z0-9]+)*)*$"
)
_TAG = re.compile(r"^\w[\w.-]{0,127}$", re.ASCII)
_DIGEST_FORMAT = re.compile(r"^[a-z0-9]+(?:[.+_-][a-z0-9]+)*:[a-zA-Z0-9=_-]+$")
_DIGEST_LENGTHS = {"sha256": 64, "sha384": 96, "sha512": 128}
_HEX = re.compile(r"^[a-f0-9]+$")
_HOST = re.compile(r"^(?:\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9._~!$&'()*+,;=%-]+)(?::[0-9]*)?$")


class ReferenceError(KitflowError):
    """A ModelKit reference that kit would refuse (message as kit/oras words it)."""


def _go_quote(text: str) -> str:
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


def digest_error(text: str) -> str | None:
    """Why ``text`` is not a valid OCI digest (go-digest's messages), or None if it is one."""
    i = text.find(":")
    if i <= 0 or i + 1 == len(text):
        return "invalid checksum digest format"
    algorithm, encoded = text[:i], text[i + 1 :]
    if algorithm not in _DIGEST_LENGTHS:
        if not _DIGEST_FORMAT.match(text):
            return "invalid checksum digest format"
        return "unsupported digest algorithm"
    if len(encoded) != _DIGEST_LENGTHS[algorithm]:
        return "invalid checksum digest length"
    if not _HEX.match(encoded):
        return "invalid checksum digest format"
    return None


def is_digest(text: str) -> bool:
    """True if ``text`` is a valid digest such as ``sha256:<64 hex>``."""
    return digest_error(text) is None


@dataclass(frozen=True)
class Reference:
    """A parsed ModelKit reference; ``tag`` and ``digest`` are never both set."""

    registry: str
    repository: str
    tag: str | None = None
    digest: str | None = None
    extra_tags: tuple[str, ...] = field(default=())

    @classmethod
    def parse(cls, text: str, default_registry: str = DEFAULT_REGISTRY) -> Reference:
        """Parse ``text`` as kit's ParseReference does; raise ReferenceError with kit's message."""
        if is_digest(text):
            return cls(default_registry, DEFAULT_REPOSITORY, digest=text)
        parts = text.split(",")
        unprocessed, extra = parts[0], tuple(parts[1:])
        registry = default_registry
        first, sep, rest = unprocessed.partition("/")
        if sep and (":" in first or "." in first):
            registry, unprocessed = first, rest
        tag: str | None = None
        digest: str | None = None
        if "@" in unprocessed:
            repo, _, digest = unprocessed.partition("@")
            repo = repo.partition(":")[0]
        elif ":" in unprocessed:
            repo, _, tag = unprocessed.partition(":")
        else:
            repo = unprocessed
        if repo.lower() != repo:
            raise ReferenceError(f"repository ({repo}) name must be lowercase")
        if not _START_END_ALNUM.search(repo):
            raise ReferenceError(f"repository ({repo}) must start and end with a letter or number")
        if not registry or not _HOST.match(registry):
            raise ReferenceError(f"invalid reference: invalid registry {_go_quote(registry)}")
        if not _REPOSITORY.match(repo):
            raise ReferenceError(f"invalid reference: invalid repository {_go_quote(repo)}")
        if tag is not None and not _TAG.match(tag):
            raise ReferenceError(f"invalid reference: invalid tag {_go_quote(tag)}")
        if digest is not None:
            problem = digest_error(digest)
            if problem:
                raise ReferenceError(
                    f"invalid reference: invalid digest {_go_quote(digest)}: {problem}"
                )
        for extra_tag in extra:
            if not _TAG.match(extra_tag):
                raise ReferenceError(f"invalid reference: invalid tag {_go_quote(extra_tag)}")
        return cls(registry, repo, tag=tag, digest=digest, extra_tags=extra)

    @property
    def name(self) -> str:
        """``registry/repository`` (kit's key for the per-repository index files)."""
        return f"{self.registry}/{self.repository}"

    @property
    def ref(self) -> str:
        """What to resolve: the digest, else the tag, else ``latest``."""
        return self.digest or self.tag or "latest"

    @property
    def is_digest(self) -> bool:
        """True when the reference names a manifest by digest."""
        return self.digest is not None

    @property
    def display(self) -> str:
        """The reference as kit shows it (default ``localhost/`` and ``_`` trimmed)."""
        return format_repository_for_display(str(self))

    def with_tag(self, tag: str) -> Reference:
        """The same repository at ``tag`` (digest dropped)."""
        return replace(self, tag=tag, digest=None, extra_tags=())

    def with_digest(self, digest: str) -> Reference:
        """The same repository at ``digest`` (tag dropped)."""
        return replace(self, tag=None, digest=digest, extra_tags=())

    def __str__(self) -> str:
        if self.digest:
            return f"{self.name}@{self.digest}"
        if self.tag:
            return f"{self.name}:{self.tag}"
        return self.name


def parse_reference(text: str, default_registry: str = DEFAULT_REGISTRY) -> Reference:
    """Shorthand for :meth:`Reference.parse`."""
    return Reference.parse(text, default_registry)


def is_modelkit_reference(text: str) -> bool:
    """kit's IsModelKitReference: contains ``:`` or ``@`` and parses as a reference."""
    if ":" not in text and "@" not in text:
        return False
    try:
        Reference.parse(text)
    except ReferenceError:
        return False
    return True


def format_repository_for_display(repo: str) -> str:
    """kit's FormatRepositoryForDisplay: trim ``localhost/``, then ``_``, then a leading ``@``."""
    prefix = DEFAULT_REGISTRY + "/"
    if repo.startswith(prefix):
        repo = repo[len(prefix) :]
    if repo.startswith(DEFAULT_REPOSITORY):
        repo = repo[len(DEFAULT_REPOSITORY) :]
    if repo.startswith("@"):
        repo = repo[1:]
    return repo


# -- a configured registry (the orchestrator plugins' settings) applied to references ----------


def registry_host(address: str | None) -> str | None:
    """``host[:port]`` of a configured registry address (``https://ghcr.io/`` → ``ghcr.io``);
    None when it is empty."""
    host = (address or "").strip()
    if "://" in host:
        host = host.split("://", 1)[1]
    return host.rstrip("/") or None


def names_registry(reference: str) -> bool:
    """kit's rule: the first path component names a registry when it has a dot or a port (so
    ``localhost/x`` is the repository ``localhost/x`` in the default registry)."""
    first, sep, _ = reference.partition("/")
    return bool(sep) and ("." in first or ":" in first)


def qualify_reference(reference: str, registry: str | None) -> str:
    """``reference`` under the configured ``registry`` when it names none; as given otherwise
    (and without a registry: kit keys ``repo:tag`` under its default ``localhost``)."""
    host = registry_host(registry)
    if host and not names_registry(reference):
        return f"{host}/{reference}"
    return reference


def check_credentials_scope(
    reference: str, registry: str | None, *, holder: str, allow_local: bool = False
) -> None:
    """Refuse (KitflowError) to send credentials configured for ``registry`` to a reference on
    another registry; ``allow_local`` lets local-store references (``localhost``) through."""
    host = registry_host(registry)
    if host is None:
        return
    actual = Reference.parse(reference).registry
    if actual == host or (allow_local and actual == DEFAULT_REGISTRY):
        return
    raise KitflowError(
        f"{reference} is on registry {actual}, but {holder} holds credentials for {host}: "
        f"use one configured for {actual}"
    )
