"""Jinja filters for kitflow templates; pass ``user_defined_filters=TEMPLATE_FILTERS`` to a DAG
to use them in any task (kitflow's operators always have them)."""

from __future__ import annotations

import re
from typing import Any

_TAG_BAD = re.compile(r"[^A-Za-z0-9_.-]+")


def oci_tag(value: Any) -> str:
    """Make ``value`` (say a run id ``manual__2026-01-01T00:00:00+00:00``) a valid OCI tag:
    ``[A-Za-z0-9_][A-Za-z0-9._-]{0,127}``."""
    text = _TAG_BAD.sub("-", str(value)).lstrip(".-")
    return (text or "latest")[:128]


TEMPLATE_FILTERS = {"oci_tag": oci_tag}
