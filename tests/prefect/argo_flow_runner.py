"""Run ``package_and_infer``'s Argo path in a separate process (a test sends it SIGTERM).

Usage: ``python argo_flow_runner.py '<json config>'``; the Workflow never finishes on purpose.
"""

from __future__ import annotations

import json
import sys

from prefect import flow
from prefect_kitflow import ArgoServer, KitRegistryCredentials, run_argo_inference
from prefect_kitflow.argo import stop_argo_workflows


def main() -> None:
    """Follow one Argo inference until the process is told to stop."""
    config = json.loads(sys.argv[1])

    @flow(
        flow_run_name="argo-sigterm-run",
        on_cancellation=[stop_argo_workflows],
        on_crashed=[stop_argo_workflows],
    )
    def follow_forever() -> None:
        run_argo_inference(
            config["reference"],
            config["input"],
            config["output"],
            argo_server=ArgoServer(
                server=config["argo_server"], token=config["argo_token"], namespace="ml"
            ),
            credentials=KitRegistryCredentials(registry=config["registry"], plain_http=True),
            poll_seconds=0.1,
            home=config["home"],
        )

    follow_forever()


if __name__ == "__main__":
    main()
