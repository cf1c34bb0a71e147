"""A string wrapper that never shows its value in repr, str, logs or pickles by accident."""

from __future__ import annotations

from typing import Any


class Secret:
    """Holds a password or token; ``reveal()`` is the only way to read it."""

    __slots__ = ("_value",)

    def __init__(self, value: str) -> None:
        self._value = value

    def reveal(self) -> str:
        """Return the secret value: call only where it goes onto the wire."""
        return self._value

    def __repr__(self) -> str:
        return "Secret('**********')" if self._value else "Secret('')"

    __str__ = __repr__

    def __bool__(self) -> bool:
        return bool(self._value)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Secret) and other._value == self._value

    def __hash__(self) -> int:
        return hash(("Secret", self._value))

    def __reduce__(self) -> tuple[Any, ...]:
        # Pickling keeps the value (process pools need it) but never exposes it in text.
        return (Secret, (self._value,))


def as_secret(value: str | Secret | None) -> Secret | None:
    """Wrap a plain string; pass a Secret or None through."""
    if value is None or isinstance(value, Secret):
        return value
    return Secret(value)
