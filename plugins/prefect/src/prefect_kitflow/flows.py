"""Ready-made flow for the common path: pack a project, push it, score a batch with it.

Inference runs locally or on Argo Workflows; on Argo, cancelling or crashing the flow run stops
the Workflow (the task does it, and the flow's hooks make sure of it).
"""

from __future__ import annotations

from typing import Any, Literal

from prefect import flow, get_run_logger

from prefect_kitflow.argo import ArgoServerArg, run_argo_inference, stop_argo_workflows
from prefect_kitflow.tasks import (
    Credentials,
    pack_modelkit,
    pinned,
    push_modelkit,
    run_inference,
)


@flow(
    name="package-and-infer",
    on_cancellation=[stop_argo_workflows],
    on_crashed=[stop_argo_workflows],
)
def package_and_infer(
    reference: str,
    context: str = ".",
    input: str | None = None,
    output: str | None = None,
    dataset: str | None = None,
    credentials: Credentials = None,
    push: bool = True,
    backend: Literal["local", "argo"] = "local",
    argo_server: ArgoServerArg | None = None,
    shards: int | None = None,
    parallelism: int | None = None,
    entrypoint: str | None = None,
    batch_size: int = 256,
    home: str | None = None,
) -> dict[str, Any]:
    """Pack ``context`` as ``reference``, push it, then score ``input`` (or a kit ``dataset``).

    ``credentials`` and ``argo_server`` are blocks or their saved names. Returns plain dicts of
    the pack, push and run results (no secrets).
    """
    logger = get_run_logger()
    packed = pack_modelkit(context, tag=reference, home=home)
    summary: dict[str, Any] = {"pack": packed.to_dict()}
    # Downstream steps name the ModelKit by digest: exactly what this run packed (or found
    # cached), whatever the tag points to by then.
    kit = pinned(reference, packed.digest)
    if push:
        pushed = push_modelkit(kit, reference, credentials=credentials, home=home)
        summary["push"] = pushed.to_dict()
    want_scores = input is not None or dataset is not None
    if want_scores and backend == "argo":
        if not push:
            logger.warning("Argo pods pull the ModelKit from its registry: push it first")
        result = run_argo_inference(
            kit,
            input,
            output,
            argo_server=argo_server,
            credentials=credentials,
            dataset=dataset,
            shards=shards,
            parallelism=parallelism,
            entrypoint=entrypoint,
            batch_size=batch_size,
            home=home,
        )
        summary["run"] = result.to_dict()
    elif want_scores:
        result = run_inference(
            kit,
            input,
            output,
            dataset=dataset,
            shards=shards,
            parallelism=parallelism,
            entrypoint=entrypoint,
            batch_size=batch_size,
            credentials=credentials,
            home=home,
        )
        summary["run"] = result.to_dict()
    return summary
