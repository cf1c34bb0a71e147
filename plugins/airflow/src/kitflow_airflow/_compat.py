"""Small differences between Airflow 3.x releases, in one place."""

from __future__ import annotations

try:  # Airflow >= 3.1
    from airflow.sdk import conf
except ImportError:  # pragma: no cover - Airflow 3.0
    from airflow.configuration import conf  # type: ignore[assignment]


def default_deferrable() -> bool:
    """``[operators] default_deferrable`` (False when unset), the deferrable default."""
    return bool(conf.getboolean("operators", "default_deferrable", fallback=False))
