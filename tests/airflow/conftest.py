"""Airflow test environment: a throwaway AIRFLOW_HOME with its own SQLite metadata DB (never
~/airflow), set before Airflow is imported; the DB is migrated once, only when a test needs it."""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

_HOME = Path(tempfile.mkdtemp(prefix="kitflow-airflow-"))
os.environ["AIRFLOW_HOME"] = str(_HOME)
os.environ["AIRFLOW__CORE__LOAD_EXAMPLES"] = "False"
# dag.test() serializes DAGs found in the dags folder: the example DAGs are the ones tested.
EXAMPLE_DAGS = Path(__file__).resolve().parents[2] / "examples" / "airflow" / "dags"
os.environ["AIRFLOW__CORE__DAGS_FOLDER"] = str(EXAMPLE_DAGS)
os.environ["AIRFLOW__DATABASE__SQL_ALCHEMY_CONN"] = f"sqlite:///{_HOME}/airflow.db"
os.environ["AIRFLOW__LOGGING__BASE_LOG_FOLDER"] = str(_HOME / "logs")
os.environ.pop("AIRFLOW__CORE__UNIT_TEST_MODE", None)
for _name in [n for n in os.environ if n.startswith(("AIRFLOW_CONN_", "ARGO_"))]:
    os.environ.pop(_name)

AIRFLOW_HOME = _HOME


@pytest.fixture(scope="session")
def airflow_db() -> Path:
    """Migrate the throwaway SQLite metadata DB once per session; returns AIRFLOW_HOME."""
    from airflow_env import airflow_cli

    proc = airflow_cli("db", "migrate")
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    return _HOME


@pytest.fixture
def kit_home(tmp_path: Path) -> Path:
    """A fresh KITOPS_HOME (local store) for one test."""
    home = tmp_path / "kitops"
    home.mkdir()
    return home


@pytest.fixture(autouse=True)
def _no_stray_connections(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    for name in [n for n in os.environ if n.startswith(("AIRFLOW_CONN_", "ARGO_"))]:
        monkeypatch.delenv(name)
    yield


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    shutil.rmtree(_HOME, ignore_errors=True)
