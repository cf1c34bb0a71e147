"""Prefect integration for kitflow: ModelKit tasks, credential blocks and Argo inference.

This module is the ``prefect.collections`` entry point: importing it registers the blocks.
"""

from prefect_kitflow._version import __version__
from prefect_kitflow.argo import (
    active_workflows,
    arun_argo_inference,
    run_argo_inference,
    stop_argo_workflows,
)
from prefect_kitflow.credentials import ArgoServer, KitRegistryCredentials
from prefect_kitflow.flows import package_and_infer
from prefect_kitflow.tasks import (
    apack_modelkit,
    apull_modelkit,
    apush_modelkit,
    arun_inference,
    aunpack_modelkit,
    pack_modelkit,
    pinned,
    pull_modelkit,
    push_modelkit,
    run_inference,
    unpack_modelkit,
)

__all__ = [
    "ArgoServer",
    "KitRegistryCredentials",
    "__version__",
    "active_workflows",
    "apack_modelkit",
    "apull_modelkit",
    "apush_modelkit",
    "arun_argo_inference",
    "arun_inference",
    "aunpack_modelkit",
    "pack_modelkit",
    "package_and_infer",
    "pinned",
    "pull_modelkit",
    "push_modelkit",
    "run_argo_inference",
    "run_inference",
    "stop_argo_workflows",
    "unpack_modelkit",
]
