"""Small fixtures every suite may ask for (registered by the root conftest)."""

from __future__ import annotations

from pathlib import Path

import pytest


@pytest.fixture
def kit_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A fresh, empty KITOPS_HOME for one test (also set in the environment)."""
    home = tmp_path / "kitops-home"
    home.mkdir()
    monkeypatch.setenv("KITOPS_HOME", str(home))
    return home
