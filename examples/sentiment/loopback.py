"""A CNCF Distribution registry (``docker-registry``) on 127.0.0.1 for the examples and the demo:
started when the binary is installed, plain HTTP, its storage and log in a throwaway directory."""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@contextmanager
def loopback_registry(root: Path, enabled: bool = True) -> Iterator[str | None]:
    """Run ``docker-registry serve`` on a free loopback port with its files under ``root`` and
    yield its ``host:port``; yield None when it is not installed (or not ``enabled``)."""
    binary = shutil.which("docker-registry") if enabled else None
    if binary is None:
        yield None
        return
    root.mkdir(parents=True, exist_ok=True)
    port = _free_port()
    config = {
        "version": 0.1,
        "log": {"level": "error", "accesslog": {"disabled": True}},
        "storage": {"filesystem": {"rootdirectory": str(root / "storage")}},
        "http": {"addr": f"127.0.0.1:{port}", "secret": os.urandom(16).hex()},
    }
    config_path = root / "config.yml"
    config_path.write_text(json.dumps(config, indent=2))  # JSON is valid YAML
    log_path = root / "registry.log"
    with open(log_path, "wb") as log:
        process = subprocess.Popen(
            [binary, "serve", str(config_path)], stdout=log, stderr=log, stdin=subprocess.DEVNULL
        )
    host = f"127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 20
        while True:
            if process.poll() is not None:
                raise RuntimeError(f"docker-registry exited; see {log_path}")
            try:
                urllib.request.urlopen(f"http://{host}/v2/", timeout=2).close()
                break
            except (urllib.error.URLError, ConnectionError, TimeoutError):
                if time.monotonic() > deadline:
                    raise RuntimeError(f"docker-registry did not answer; see {log_path}") from None
                time.sleep(0.1)
        yield host
    finally:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
