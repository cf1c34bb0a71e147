"""Helpers for the Airflow tests: the ``airflow`` CLI of this environment (the throwaway
AIRFLOW_HOME is set by conftest.py before anything imports Airflow)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path


def airflow_cli(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    """Run the ``airflow`` CLI of this environment against the throwaway home."""
    exe = Path(sys.executable).with_name("airflow")
    return subprocess.run(
        [str(exe), *args],
        capture_output=True,
        text=True,
        env={**os.environ, **(env or {})},
        timeout=300,
        check=False,
    )
