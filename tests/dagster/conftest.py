"""Dagster test setup: a throwaway DAGSTER_HOME (set before Dagster is imported) and a fresh
KITOPS_HOME per test; a shared ephemeral instance helper for tests that span several runs."""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

_DAGSTER_HOME = tempfile.mkdtemp(prefix="kitflow-dagster-home-")
os.environ["DAGSTER_HOME"] = _DAGSTER_HOME

import dagster as dg  # noqa: E402


@pytest.fixture(autouse=True, scope="session")
def _dagster_home() -> Iterator[None]:
    """Remove the throwaway DAGSTER_HOME at the end of the session."""
    yield
    shutil.rmtree(_DAGSTER_HOME, ignore_errors=True)


@pytest.fixture
def instance(tmp_path: Path) -> Iterator[dg.DagsterInstance]:
    """A temporary Dagster instance (own storage directory) shared by several runs of a test."""
    root = tmp_path / "dagster"
    root.mkdir()
    with dg.instance_for_test(temp_dir=str(root)) as inst:
        yield inst
