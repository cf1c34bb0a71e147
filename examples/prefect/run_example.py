"""Run the Prefect sentiment flow end to end on this machine (``make example-prefect``).

Uses Prefect's ephemeral local server with a throwaway PREFECT_HOME and KITOPS_HOME, and a
loopback ``docker-registry`` when it is installed (otherwise the push step is skipped). With
``--argo`` it runs the inference on the Argo Server named by ARGO_SERVER/ARGO_TOKEN instead.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "sentiment"))
from loopback import loopback_registry


def main() -> int:
    """Parse flags, set up the throwaway homes and the registry, run the flow, print results."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--argo", action="store_true", help="run inference on Argo (ARGO_* env)")
    parser.add_argument("--keep", action="store_true", help="keep the work directory")
    args = parser.parse_args()

    workdir = Path(tempfile.mkdtemp(prefix="kitflow-prefect-example-"))
    os.environ["PREFECT_HOME"] = str(workdir / "prefect-home")
    os.environ["KITOPS_HOME"] = str(workdir / "kitops-home")
    os.environ.pop("PREFECT_API_URL", None)  # Prefect starts its ephemeral local server
    os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
    # A fresh database is migrated on first start; give a busy 2-core machine time for that.
    os.environ.setdefault("PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS", "120")
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    try:
        with loopback_registry(workdir / "registry") as registry:
            from prefect_kitflow import ArgoServer, KitRegistryCredentials
            from sentiment_flow import repack, sentiment_flow

            host = registry or "localhost"
            reference = f"{host}/kitflow/sentiment:v1"
            credentials = (
                KitRegistryCredentials(registry=host, plain_http=True) if registry else None
            )
            argo = None
            if args.argo:
                argo = ArgoServer(
                    server=os.environ.get("ARGO_SERVER"),
                    token=os.environ.get("ARGO_TOKEN"),
                    namespace=os.environ.get("ARGO_NAMESPACE", "argo"),
                )
            if registry is None:
                print("docker-registry is not installed: packing and scoring without a push")
            summary = sentiment_flow(
                workdir=str(workdir),
                reference=reference,
                credentials=credentials,
                push=registry is not None,
                backend="argo" if args.argo else "local",
                argo_server=argo,
            )
            summary["repack"] = repack(summary["project"], reference)
        print_summary(summary)
    finally:
        if not args.keep:
            shutil.rmtree(workdir, ignore_errors=True)
        else:
            print(f"work directory kept: {workdir}")
    return 0


def print_summary(summary: dict) -> None:
    """The predictions summary, as the example promises to print it."""
    kit = summary["modelkit"]
    print()
    print(f"model accuracy (held out): {summary['accuracy']:.3f}")
    print(f"ModelKit: {kit['reference']} {kit['digest']} ({len(kit['layers'])} layers)")
    if "push" in summary:
        push = summary["push"]
        print(f"pushed to: {push['destination']} ({push['blobs']} blobs)")
    run = summary["run"]
    preds = summary["predictions"]
    print(f"inference ({run['backend']}): {preds['records']} records in {run['seconds']:.2f}s")
    print("predictions by label: " + ", ".join(f"{k}={v}" for k, v in preds["labels"].items()))
    for row in preds["first"]:
        print("  " + json.dumps(row, sort_keys=True))
    outcome = "a cache hit, nothing re-packed" if summary["repack"] == "Cached" else "packed again"
    print(f"packing the unchanged project again: {summary['repack']} ({outcome})")


if __name__ == "__main__":
    raise SystemExit(main())
