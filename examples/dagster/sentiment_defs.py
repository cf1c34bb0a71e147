"""The sentiment example as Dagster assets: train → ModelKit (packed and pushed) → predictions.

Reuses ``examples/sentiment`` (train.py, Kitfile, src/predict.py, data). Load it in the UI with
``dagster dev -f examples/dagster/sentiment_defs.py``. Settings come from the environment:
KIT_REGISTRY (host[:port]; unset keeps the ModelKit in the local store), KIT_PLAIN_HTTP,
KIT_USERNAME / KIT_PASSWORD, and ARGO_SERVER / ARGO_TOKEN / ARGO_NAMESPACE to score on Argo.
"""

import importlib.util
import os
from pathlib import Path
from typing import Any

import dagster as dg
from dagster_kitflow import (
    ArgoResource,
    KitRegistryResource,
    inference_asset,
    modelkit_asset,
    modelkit_asset_checks,
)

SENTIMENT = Path(__file__).resolve().parent.parent / "sentiment"


def _train_module() -> Any:
    spec = importlib.util.spec_from_file_location("sentiment_train", SENTIMENT / "train.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@dg.asset(group_name="sentiment", kinds={"scikitlearn"})
def sentiment_model(context: dg.AssetExecutionContext) -> str:
    """Train the classifier with the project's own train.py; the value is the model directory."""
    out = Path(context.instance.storage_directory()) / "sentiment-model"
    accuracy = float(_train_module().train(SENTIMENT / "data" / "train.csv", out))
    context.add_output_metadata({"accuracy": dg.MetadataValue.float(round(accuracy, 4))})
    context.log.info(f"held-out accuracy {accuracy:.3f}")
    return str(out)


# The project directory supplies the Kitfile, code, data and docs; the trained model from the
# upstream asset is placed at the Kitfile's model path.
sentiment_modelkit = modelkit_asset(
    name="sentiment_modelkit",
    repository="kitflow/sentiment",
    tag="v1",
    context_dir=SENTIMENT,
    ins={"sentiment_model": "model"},
    group_name="sentiment",
)

BACKEND = "argo" if os.environ.get("ARGO_SERVER") else "local"

sentiment_predictions = inference_asset(
    name="sentiment_predictions",
    modelkit=sentiment_modelkit,
    inputs=SENTIMENT / "data" / "inputs.jsonl",
    backend=BACKEND,
    shards=2,
    group_name="sentiment",
)


def kit_registry_from_env() -> KitRegistryResource:
    """The registry resource from KIT_* variables (the password stays an EnvVar)."""
    return KitRegistryResource(
        registry=os.environ.get("KIT_REGISTRY") or None,
        plain_http=os.environ.get("KIT_PLAIN_HTTP", "").lower() in ("1", "true", "yes"),
        username=os.environ.get("KIT_USERNAME") or None,
        password=dg.EnvVar("KIT_PASSWORD") if os.environ.get("KIT_PASSWORD") else None,
    )


def resources_from_env() -> dict[str, Any]:
    """Resources for the assets above (Argo only when ARGO_SERVER is set)."""
    resources: dict[str, Any] = {"kit_registry": kit_registry_from_env()}
    if BACKEND == "argo":
        resources["argo"] = ArgoResource(
            server=os.environ["ARGO_SERVER"],
            token=dg.EnvVar("ARGO_TOKEN") if os.environ.get("ARGO_TOKEN") else None,
            namespace=os.environ.get("ARGO_NAMESPACE", "argo"),
        )
    return resources


ASSETS = [sentiment_model, sentiment_modelkit, sentiment_predictions]
CHECKS = modelkit_asset_checks(sentiment_modelkit)

defs = dg.Definitions(assets=ASSETS, asset_checks=CHECKS, resources=resources_from_env())
