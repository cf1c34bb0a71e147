"""Reading connection extras the way both the UI and ``AIRFLOW_CONN_*`` store them.

The UI (conn-fields) stores ``extra__<conn_type>__<name>``; hand-written JSON or URI
connections use the bare name. Both are accepted; values from URIs arrive as strings.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

_TRUE = frozenset({"true", "1", "yes", "on"})
_FALSE = frozenset({"false", "0", "no", "off", ""})


def extra_value(extras: Mapping[str, Any], conn_type: str, name: str) -> Any:
    """The extra ``name`` (bare or UI-prefixed); None when unset or empty."""
    for key in (name, f"extra__{conn_type}__{name}"):
        value = extras.get(key)
        if value is not None and value != "":
            return value
    return None


def as_bool(value: Any, default: bool, name: str) -> bool:
    """Parse a boolean extra given as bool or string; None keeps the default."""
    if value is None:
        return default
    if isinstance(value, bool):
        return value
    text = str(value).strip().lower()
    if text in _TRUE:
        return True
    if text in _FALSE:
        return False
    raise ValueError(f"connection extra {name!r} must be true or false, got {value!r}")
