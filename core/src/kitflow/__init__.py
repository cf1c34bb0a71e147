"""kitflow: KitOps ModelKits in pure Python, moved through OCI registries and run on Argo.

The public API is re-exported here; see :mod:`kitflow.api`.
"""

from kitflow.api import (
    copy,
    info,
    inspect,
    list_modelkits,
    pack,
    prune,
    pull,
    push,
    remove,
    run,
    tag,
    unpack,
    validate,
    verify,
)
from kitflow.errors import KitflowError
from kitflow.options import ArgoOptions, RegistryOptions, Resources
from kitflow.results import (
    LayerInfo,
    ModelKitSummary,
    PackResult,
    RunResult,
    ShardStatus,
    TransferResult,
    UnpackResult,
)
from kitflow.secret import Secret

__version__ = "0.1.0"

__all__ = [
    "ArgoOptions",
    "KitflowError",
    "LayerInfo",
    "ModelKitSummary",
    "PackResult",
    "RegistryOptions",
    "Resources",
    "RunResult",
    "Secret",
    "ShardStatus",
    "TransferResult",
    "UnpackResult",
    "__version__",
    "copy",
    "info",
    "inspect",
    "list_modelkits",
    "pack",
    "prune",
    "pull",
    "push",
    "remove",
    "run",
    "tag",
    "unpack",
    "validate",
    "verify",
]
