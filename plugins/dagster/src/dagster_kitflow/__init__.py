"""Dagster integration for kitflow: ModelKit assets, resources, checks and Argo inference.

Importing the package registers it with Dagster's library registry as a third-party package
(``is_dagster_package=False``: its version does not follow Dagster's).
"""

from dagster_kitflow.inference import inference_asset
from dagster_kitflow.io_manager import ModelKitIOManager
from dagster_kitflow.modelkit import modelkit_asset, modelkit_asset_checks, recorded_modelkit
from dagster_kitflow.resources import ArgoResource, KitRegistryResource
from dagster_kitflow.version import __version__

try:  # dagster >= 1.10 keeps the registry in dagster_shared; older ones in dagster._core
    from dagster_shared.libraries import DagsterLibraryRegistry
except ImportError:  # pragma: no cover - older Dagster
    from dagster._core.libraries import DagsterLibraryRegistry

DagsterLibraryRegistry.register("dagster-kitflow", __version__, is_dagster_package=False)

__all__ = [
    "ArgoResource",
    "KitRegistryResource",
    "ModelKitIOManager",
    "__version__",
    "inference_asset",
    "modelkit_asset",
    "modelkit_asset_checks",
    "recorded_modelkit",
]
