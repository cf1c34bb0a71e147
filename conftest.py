"""Fixtures shared by all test environments (core, airflow, prefect, dagster).

Each fixture module under ``tests/support`` is registered here as a pytest plugin so that
every suite can ask for the real registry, the fake Argo Server and friends by name.
"""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
import threading
from typing import Any

import pytest

pytest_plugins = [
    name
    for name in (
        "support.fixtures",
        "support.registry",
        "support.argo_fake",
    )
    if importlib.util.find_spec(name) is not None
]

_FRESH_ENV = "KITFLOW_TEST_FRESH_PROCESS"


@pytest.hookimpl(tryfirst=True)
def pytest_pyfunc_call(pyfuncitem: pytest.Function) -> Any:
    """Run a ``single_threaded`` test alone in a fresh interpreter when this one has threads.

    Forked workers are only used by a process with no other threads; session fixtures (the
    registry's log readers, proxies) leave threads behind, so such tests re-run themselves in
    a new pytest process and pass or fail with it.
    """
    if pyfuncitem.get_closest_marker("single_threaded") is None:
        return None
    if threading.active_count() == 1:
        return None
    if os.environ.get(_FRESH_ENV) == "1":
        names = [t.name for t in threading.enumerate()]
        pytest.fail(f"threads are running even in a fresh interpreter: {names}")
    proc = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", pyfuncitem.nodeid],
        cwd=pyfuncitem.config.rootpath,
        env={**os.environ, _FRESH_ENV: "1"},
        capture_output=True,
        text=True,
        timeout=600,
    )
    if proc.returncode != 0:
        pytest.fail(
            f"{pyfuncitem.nodeid} failed in a fresh interpreter:\n{proc.stdout[-6000:]}"
            f"\n{proc.stderr[-2000:]}",
            pytrace=False,
        )
    return True
