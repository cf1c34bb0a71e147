"""The package imports without any orchestrator and the CLI answers --version."""

from __future__ import annotations

import subprocess
import sys


def test_cli_version() -> None:
    out = subprocess.run(
        [sys.executable, "-m", "kitflow.cli.main", "--version"], capture_output=True, text=True
    )
    assert out.returncode == 0
    assert "kitflow" in out.stdout


def test_secret_never_in_repr() -> None:
    from kitflow import RegistryOptions

    opts = RegistryOptions(username="u", password="hunter2")  # type: ignore[arg-type]
    assert "hunter2" not in repr(opts)
    assert "hunter2" not in str(opts.safe_dict())
    assert opts.password is not None and opts.password.reveal() == "hunter2"
