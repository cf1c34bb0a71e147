"""Exceptions that separate user errors (exit 1, one line) from bugs (traceback)."""

from __future__ import annotations


class KitflowError(Exception):
    """A problem the user can fix: bad input, missing ModelKit, refused credentials.

    The CLI prints ``str(err)`` on one line and exits 1; the message says what is wrong
    and, where it helps, what to do. Never put a secret in it.
    """

    exit_code = 1


class ValidationError(KitflowError):
    """A Kitfile (or other document) broke one or more rules; ``problems`` lists them all."""

    def __init__(self, problems: list[str], source: str = "Kitfile") -> None:
        self.problems = list(problems)
        self.source = source
        super().__init__(f"invalid {source}: " + "; ".join(self.problems))


class NotFoundError(KitflowError):
    """A reference, blob or file that the user named does not exist."""


class DigestMismatchError(KitflowError):
    """Content did not hash to the digest its descriptor promised; it was not stored."""


class RegistryError(KitflowError):
    """A registry refused or failed a request after retries; the message names host and status."""

    def __init__(self, message: str, status: int | None = None) -> None:
        self.status = status
        super().__init__(message)


class AuthError(RegistryError):
    """401/403 from a registry or server: log in or check permissions."""


class ArgoError(KitflowError):
    """The Argo Server or the Kubernetes API refused or failed a request."""


class WorkflowFailed(KitflowError):
    """An Argo Workflow ended Failed or Error; the message carries the failing node's message."""

    def __init__(self, message: str, name: str = "", phase: str = "") -> None:
        self.name = name
        self.phase = phase
        super().__init__(message)


class InferenceError(KitflowError):
    """A shard failed: the message names the shard, the record position and the user's error."""
