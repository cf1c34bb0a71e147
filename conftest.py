"""Fixtures shared by all test environments (core, airflow, prefect, dagster).

Each fixture module under ``tests/support`` is registered here as a pytest plugin so that
every suite can ask for the real registry, the fake Argo Server and friends by name.
"""

from __future__ import annotations

import importlib.util

pytest_plugins = [
    name
    for name in (
        "support.fixtures",
        "support.registry",
        "support.argo_fake",
    )
    if importlib.util.find_spec(name) is not None
]
