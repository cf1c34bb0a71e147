"""Benchmark: kitflow push/pull of a generated 1 GiB ModelKit against a local CNCF Distribution,
beside curl streaming the same blob to and from the same registry (the floor), as ratios, with
the peak memory (max RSS) of the kitflow process.

Usage: .venv/bin/python benchmarks/transfer.py [--size-mib 1024] [--runs 3] [--keep DIR]
Targets: push and pull within 1.25x of curl; kitflow peak RSS under 150 MB.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
import uuid
from pathlib import Path

CHILD = r"""
import sys, time
from kitflow.options import RegistryOptions
from kitflow.ops.transfer import push, pull
verb, ref, home = sys.argv[1:4]
opts = RegistryOptions(plain_http=True)
start = time.perf_counter()
result = (push if verb == "push" else pull)(ref, registry=opts, home=home)
print(time.perf_counter() - start, result.bytes_transferred)
"""


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def start_registry(workdir: Path) -> tuple[subprocess.Popen[bytes], str]:
    """docker-registry on a free loopback port with its own storage; returns (process, host)."""
    binary = shutil.which("docker-registry")
    if binary is None:
        sys.exit("docker-registry is not installed (Debian package 'docker-registry')")
    port = free_port()
    config = {
        "version": 0.1,
        "log": {"level": "error", "accesslog": {"disabled": True}},
        "storage": {
            "filesystem": {"rootdirectory": str(workdir / "storage")},
            "delete": {"enabled": True},
        },
        "http": {"addr": f"127.0.0.1:{port}", "secret": uuid.uuid4().hex},
    }
    (workdir / "config.yml").write_text(json.dumps(config))
    proc = subprocess.Popen(
        [binary, "serve", str(workdir / "config.yml")],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    host = f"127.0.0.1:{port}"
    for _ in range(200):
        try:
            urllib.request.urlopen(f"http://{host}/v2/", timeout=1)
            return proc, host
        except OSError:
            time.sleep(0.05)
    proc.kill()
    sys.exit("docker-registry did not start")


def make_blob(path: Path, size: int) -> str:
    """Write ``size`` incompressible bytes; return their sha256 digest."""
    hasher = hashlib.sha256()
    block = 8 * 1024 * 1024
    with path.open("wb") as fh:
        left = size
        while left:
            data = os.urandom(min(block, left))
            hasher.update(data)
            fh.write(data)
            left -= len(data)
    return "sha256:" + hasher.hexdigest()


def make_kit(home: Path, name: str, blob: Path, digest: str, size: int) -> None:
    """Store a one-layer ModelKit whose layer is ``blob`` in the local store under ``name:v1``."""
    from kitflow.content.localstore import LocalStore
    from kitflow.format.descriptor import OCI_MANIFEST, Descriptor, Manifest
    from kitflow.format.mediatypes import KIT_ARTIFACT_TYPE, KIT_CONFIG

    store = LocalStore(home)
    with blob.open("rb") as fh:
        store.put_stream(Descriptor("application/octet-stream", digest, size), fh)
    config = store.put_bytes(KIT_CONFIG, b'{"manifestVersion":"1.0.0","package":{"name":"bench"}}')
    layer = Descriptor("application/vnd.kitops.modelkit.model.v1.tar", digest, size)
    manifest = Manifest(
        config=config, layers=[layer], artifact_type=KIT_ARTIFACT_TYPE, media_type=OCI_MANIFEST
    )
    desc = store.put_bytes(OCI_MANIFEST, manifest.to_bytes())
    store.tag(name, desc, "v1")


CPU: dict[str, list[float]] = {}
# Children get cached bytecode, as an installed package has (this sandbox may set
# PYTHONDONTWRITEBYTECODE, which would charge kitflow ~0.5 s of compiling per process).
CHILD_ENV = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}


def run_child(args: list[str]) -> tuple[float, int]:
    """Run a command; return (wall seconds, peak RSS in bytes) measured with wait4."""
    start = time.perf_counter()
    proc = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=CHILD_ENV)
    _, status, usage = os.wait4(proc.pid, 0)
    elapsed = time.perf_counter() - start
    label = args[3] if args[0] == sys.executable and len(args) > 3 else Path(args[0]).name
    if label == "curl":
        label = "curl_put" if "--upload-file" in args else "curl_get"
    CPU.setdefault(label, []).append(usage.ru_utime + usage.ru_stime)
    out = proc.stdout.read() if proc.stdout else b""
    err = proc.stderr.read() if proc.stderr else b""
    if os.waitstatus_to_exitcode(status) != 0:
        sys.exit(f"{args[0]} failed: {err.decode(errors='replace')[-2000:]}{out.decode()[-500:]}")
    return elapsed, usage.ru_maxrss * 1024


def curl_upload(host: str, repo: str, blob: Path, digest: str) -> float:
    req = urllib.request.Request(f"http://{host}/v2/{repo}/blobs/uploads/", method="POST", data=b"")
    with urllib.request.urlopen(req) as resp:
        location = resp.headers["Location"]
    if location.startswith("/"):
        location = f"http://{host}{location}"
    sep = "&" if "?" in location else "?"
    elapsed, _ = run_child(
        [
            "curl",
            "-sS",
            "--fail",
            "-X",
            "PUT",
            "-H",
            "Content-Type: application/octet-stream",
            "--upload-file",
            str(blob),
            f"{location}{sep}digest={digest}",
            "-o",
            "/dev/null",
        ]
    )
    return elapsed


def curl_download(host: str, repo: str, digest: str, out: Path) -> float:
    elapsed, _ = run_child(
        ["curl", "-sS", "--fail", "-o", str(out), f"http://{host}/v2/{repo}/blobs/{digest}"]
    )
    out.unlink()
    return elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--size-mib", type=int, default=1024)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--workdir", type=Path, default=None)
    args = parser.parse_args()
    size = args.size_mib * 1024 * 1024
    workdir = Path(tempfile.mkdtemp(prefix="kitflow-bench-", dir=args.workdir))
    proc = None
    try:
        proc, host = start_registry(workdir)
        blob = workdir / "blob.bin"
        print(f"generating {args.size_mib} MiB ...", flush=True)
        digest = make_blob(blob, size)
        home = workdir / "home"
        results: dict[str, list[float]] = {"curl_put": [], "curl_get": [], "push": [], "pull": []}
        rss: dict[str, list[int]] = {"push": [], "pull": []}
        CHILD_ENV["PYTHONPYCACHEPREFIX"] = str(workdir / "pycache")
        run_child([sys.executable, "-c", "import kitflow.ops.transfer"])  # warm the bytecode
        CPU.clear()
        names = [f"{host}/bench/kit-{run}" for run in range(args.runs)]
        for name in names:  # the local kits share one stored blob; written before any timing
            make_kit(home, name, blob, digest, size)
        for run, name in enumerate(names):
            repo = f"bench/curl-{run}"
            os.sync()
            results["curl_put"].append(curl_upload(host, repo, blob, digest))
            os.sync()
            t, m = run_child([sys.executable, "-c", CHILD, "push", f"{name}:v1", str(home)])
            results["push"].append(t)
            rss["push"].append(m)
            os.sync()
            results["curl_get"].append(curl_download(host, repo, digest, workdir / "dl.bin"))
            os.sync()
            pull_home = workdir / f"pull-{run}"
            t, m = run_child([sys.executable, "-c", CHILD, "pull", f"{name}:v1", str(pull_home)])
            results["pull"].append(t)
            rss["pull"].append(m)
            shutil.rmtree(pull_home)
            print(
                f"run {run + 1}: " + ", ".join(f"{k} {v[-1]:.2f}s" for k, v in results.items()),
                flush=True,
            )
        med = {k: statistics.median(v) for k, v in results.items()}
        mib = size / (1024 * 1024)
        print()
        print(f"blob {mib:.0f} MiB, {args.runs} runs, medians (process wall time incl. startup):")
        for key in ("curl_put", "push", "curl_get", "pull"):
            print(f"  {key:9s} {med[key]:7.2f}s  {mib / med[key]:8.1f} MiB/s")
        print(f"  push/curl ratio: {med['push'] / med['curl_put']:.2f}x (target <= 1.25x)")
        print(f"  pull/curl ratio: {med['pull'] / med['curl_get']:.2f}x (target <= 1.25x)")
        for verb, floor in (("push", "curl_put"), ("pull", "curl_get")):
            runs = [t / c for t, c in zip(results[verb], results[floor], strict=True)]
            print(f"  {verb}/curl per run: " + ", ".join(f"{r:.2f}x" for r in runs))
        print(
            f"  peak RSS push: {max(rss['push']) / 1e6:.0f} MB, "
            f"pull: {max(rss['pull']) / 1e6:.0f} MB (target < 150 MB)"
        )
        print(
            "  CPU seconds (user+sys, median): "
            + ", ".join(f"{k} {statistics.median(v):.2f}" for k, v in CPU.items())
        )
    finally:
        if proc is not None:
            proc.terminate()
            proc.wait()
        shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    main()
