"""Manual check (not collected by pytest, about a minute): the Argo example DAG under
``airflow standalone`` (real scheduler, LocalExecutor worker, triggerer and API server) against
a loopback registry and the fake Argo Server whose controller is the in-test executor. Prints
task states, the Argo UI link and the XCom as the REST API returns them; exits 1 on failure.

    .venvs/airflow/bin/python tests/airflow/standalone_check.py
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
DAG = "kitflow_sentiment_argo"


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class Api:
    """The Airflow REST API with a bearer token."""

    def __init__(self, base: str) -> None:
        self.base = base
        self.token: str | None = None

    def call(self, method: str, path: str, body: Any = None) -> Any:
        headers = {"Content-Type": "application/json"}
        if self.token:
            headers["Authorization"] = f"Bearer {self.token}"
        data = json.dumps(body).encode() if body is not None else None
        req = urllib.request.Request(self.base + path, method=method, data=data, headers=headers)
        with urllib.request.urlopen(req, timeout=10) as resp:
            return json.loads(resp.read() or b"{}")


def _retry(fn: Any, deadline: float, what: str) -> Any:
    while True:
        try:
            return fn()
        except Exception:
            if time.time() > deadline:
                raise SystemExit(f"timed out waiting for {what}") from None
            time.sleep(2)


def check(work: Path, registry: str, argo_url: str, token: str) -> bool:
    """Start standalone, trigger the Argo DAG, follow it; True when it succeeded."""
    port = _free_port()
    home = work / "airflow"
    home.mkdir()
    env = {
        **os.environ,
        "AIRFLOW_HOME": str(home),
        "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
        "AIRFLOW__CORE__DAGS_FOLDER": str(ROOT / "examples" / "airflow" / "dags"),
        "AIRFLOW__API__PORT": str(port),
        "AIRFLOW__API__HOST": "127.0.0.1",
        "AIRFLOW__API__BASE_URL": f"http://127.0.0.1:{port}",
        "KITOPS_HOME": str(work / "kitops"),
        "KITFLOW_EXAMPLE_WORKDIR": str(work / "runs"),
        "KITFLOW_EXAMPLE_REGISTRY": registry,
        "KITFLOW_EXAMPLE_POLL": "1",
        "AIRFLOW_CONN_KITOPS_REGISTRY_DEFAULT": json.dumps(
            {"conn_type": "kitops_registry", "host": registry, "extra": {"plain_http": True}}
        ),
        "AIRFLOW_CONN_ARGO_DEFAULT": json.dumps(
            {
                "conn_type": "argo_workflows",
                "host": argo_url,
                "password": token,
                "extra": {"namespace": "ml"},
            }
        ),
        "PATH": f"{Path(sys.executable).parent}:{os.environ['PATH']}",
    }
    with open(work / "standalone.log", "wb") as log:
        proc = subprocess.Popen(
            ["airflow", "standalone"],
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        try:
            return _drive(Api(f"http://127.0.0.1:{port}"), home)
        finally:
            os.killpg(proc.pid, signal.SIGTERM)
            proc.wait(60)


def _drive(api: Api, home: Path) -> bool:
    deadline = time.time() + 240
    passwords = home / "simple_auth_manager_passwords.json.generated"
    _retry(lambda: api.call("GET", "/api/v2/monitor/health"), deadline, "the API server")
    _retry(lambda: passwords.read_text(), deadline, "the admin password")
    password = json.loads(passwords.read_text())["admin"]
    login = {"username": "admin", "password": password}
    api.token = api.call("POST", "/auth/token", login)["access_token"]
    _retry(lambda: api.call("PATCH", f"/api/v2/dags/{DAG}", {"is_paused": False}), deadline, DAG)
    run_id = api.call("POST", f"/api/v2/dags/{DAG}/dagRuns", {"logical_date": None})["dag_run_id"]
    print("run", run_id, flush=True)
    runs = f"/api/v2/dags/{DAG}/dagRuns/{run_id}"
    state = ""
    end = time.time() + 420
    while time.time() < end and state not in ("success", "failed"):
        state = api.call("GET", runs)["state"]
        tis = api.call("GET", f"{runs}/taskInstances")["task_instances"]
        print(state, {t["task_id"]: t["state"] for t in tis}, flush=True)
        time.sleep(3)
    print("links", api.call("GET", f"{runs}/taskInstances/batch_inference/links"))
    xcom = api.call("GET", f"{runs}/taskInstances/batch_inference/xcomEntries/return_value")
    print("xcom", json.dumps(xcom["value"])[:500])
    for path in sorted((home / "logs").rglob("task_id=batch_inference/*")):
        print("log file", path.name)
    return state == "success"


def main() -> int:
    """Run the check in a throwaway directory."""
    sys.path[:0] = [str(ROOT / "tests"), str(ROOT / "examples" / "airflow")]
    import run_example
    from support.argo_executor import ArgoExecutor
    from support.argo_fake import ARGO_TOKEN, FakeArgoServer

    work = Path(tempfile.mkdtemp(prefix="kitflow-standalone-"))
    fake = FakeArgoServer(ARGO_TOKEN)
    executor = ArgoExecutor(Path(sys.executable).parent / "kitflow", work / "pods")
    fake.state.controller = executor.run
    fake.start()
    try:
        with run_example.loopback_registry(work / "registry") as registry:
            if registry is None:
                raise SystemExit("docker-registry is not installed")
            ok = check(work, registry, fake.url, ARGO_TOKEN)
        print("workflows", list(fake.state.objects), "pods", [a[1] for a in executor.commands])
        leaked = [p for p in work.rglob("*.log*") if ARGO_TOKEN in p.read_text(errors="replace")]
        print("token in logs:", leaked or "no")
        return 0 if ok and not leaked else 1
    finally:
        fake.stop()
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
