"""Prefect test setup: a throwaway PREFECT_HOME and one ``prefect_test_harness`` per session.

The home is set before Prefect is imported, so cache records and results from an earlier run
can never turn a first call into a cache hit. Each test gets its own KITOPS_HOME.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Iterator

import pytest

_PREFECT_HOME = tempfile.mkdtemp(prefix="kitflow-prefect-home-")
os.environ["PREFECT_HOME"] = _PREFECT_HOME
os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
os.environ.setdefault("PREFECT_LOGGING_LEVEL", "INFO")

from prefect.testing.fixtures import asserting_events_worker  # noqa: E402, F401
from prefect.testing.utilities import prefect_test_harness  # noqa: E402


@pytest.fixture(autouse=True, scope="session")
def prefect_harness() -> Iterator[None]:
    """A temporary Prefect API server and database for the whole session."""
    with prefect_test_harness(server_startup_timeout=60):
        yield
    shutil.rmtree(_PREFECT_HOME, ignore_errors=True)
