"""Isolated Python environments for ModelKits (opt-in, ``--isolated-env``): the kit's requirements
file installed into a virtualenv made once per kit digest under ``$KITOPS_HOME/cache/run-envs``
(uv when available, else venv + pip), built beside its final place and renamed in when done."""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import logging
import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

from kitflow.errors import KitflowError, NotFoundError
from kitflow.inference.job import EntrypointSpec

log = logging.getLogger(__name__)

DEFAULT_REQUIREMENTS = "requirements.txt"


def envs_dir(home: Path | str | None = None) -> Path:
    """Where isolated environments live: ``$KITOPS_HOME/cache/run-envs``."""
    from kitflow.content.localstore import kitops_home

    return kitops_home(home) / "cache" / "run-envs"


def requirements_file(kit_root: Path, spec: EntrypointSpec) -> Path:
    """The kit's requirements: the entrypoint's ``requirements`` or ``requirements.txt``."""
    name = spec.requirements or DEFAULT_REQUIREMENTS
    path = kit_root / name
    if not path.is_file():
        raise NotFoundError(
            f"--isolated-env: the ModelKit has no requirements file {name} "
            "(declare one as model.parameters.inference.requirements)"
        )
    return path


def env_key(digest: str, requirements: Path) -> str:
    """The cache key: the kit digest (or, for a plain directory, the requirements' hash),
    with the interpreter version, since a venv is bound to its interpreter."""
    version = f"py{sys.version_info.major}{sys.version_info.minor}"
    if digest:
        return f"{digest.replace(':', '-')}-{version}"
    content = hashlib.sha256(requirements.read_bytes()).hexdigest()[:32]
    return f"req-{content}-{version}"


def env_python(env: Path) -> Path:
    """The interpreter of a virtualenv."""
    if os.name == "nt":  # pragma: no cover - Windows layout
        return env / "Scripts" / "python.exe"
    return env / "bin" / "python"


@contextlib.contextmanager
def _locked(path: Path) -> Iterator[None]:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a+") as handle:
        fcntl.flock(handle.fileno(), fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle.fileno(), fcntl.LOCK_UN)


def _run(argv: list[str], what: str) -> None:
    proc = subprocess.run(argv, capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        lines = [ln for ln in (proc.stderr or proc.stdout).splitlines() if ln.strip()]
        detail = lines[-1].strip() if lines else f"exit status {proc.returncode}"
        raise KitflowError(f"--isolated-env: {what} failed: {detail}")


def _build(staging: Path, requirements: Path) -> None:
    uv = shutil.which("uv")
    python = env_python(staging)
    if uv:
        _run([uv, "venv", "--quiet", "--python", sys.executable, str(staging)], "uv venv")
        _run(
            [uv, "pip", "install", "--quiet", "--python", str(python), "-r", str(requirements)],
            f"installing {requirements.name}",
        )
        return
    _run([sys.executable, "-m", "venv", str(staging)], "python -m venv")
    _run(
        [str(python), "-m", "pip", "install", "--quiet", "-r", str(requirements)],
        f"installing {requirements.name}",
    )


def ensure_env(
    kit_root: Path, digest: str, spec: EntrypointSpec, home: Path | str | None = None
) -> Path:
    """The interpreter of the kit's isolated environment, creating it on first use."""
    requirements = requirements_file(kit_root, spec)
    root = envs_dir(home)
    target = root / env_key(digest, requirements)
    python = env_python(target)
    if python.exists():
        return python
    with _locked(root / ".lock"):
        if python.exists():  # another run built it while we waited
            return python
        from kitflow.inference.io import owner_tag, sweep_stale

        sweep_stale(root, ".build-")
        staging = Path(tempfile.mkdtemp(prefix=f".build-{owner_tag()}-", dir=root))
        try:
            log.info("creating isolated environment %s from %s", target.name, requirements)
            _build(staging, requirements)
            os.rename(staging, target)
        finally:
            if staging.exists():
                shutil.rmtree(staging, ignore_errors=True)
    return python
