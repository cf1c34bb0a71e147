"""Materialize the Dagster sentiment example end to end in this process (``make
example-dagster``): train → ModelKit → checks → predictions, then print a predictions summary.

Uses a throwaway DAGSTER_HOME and KITOPS_HOME, and a loopback ``docker-registry`` (plain HTTP)
when it is installed; otherwise the ModelKit stays in the local store.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
from collections import Counter
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "sentiment"))
from loopback import loopback_registry


def main() -> int:
    """Set up the throwaway homes and registry, materialize everything, print the summary."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--keep", action="store_true", help="keep the work directory")
    parser.add_argument(
        "--no-registry", action="store_true", help="keep the ModelKit in the local store"
    )
    args = parser.parse_args()
    workdir = Path(tempfile.mkdtemp(prefix="kitflow-dagster-example-"))
    (workdir / "dagster-home").mkdir()
    (workdir / "dagster-home" / "dagster.yaml").write_text("telemetry:\n  enabled: false\n")
    os.environ["DAGSTER_HOME"] = str(workdir / "dagster-home")
    os.environ["KITOPS_HOME"] = str(workdir / "kitops-home")
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    try:
        with loopback_registry(workdir / "registry", enabled=not args.no_registry) as registry:
            if registry is None:
                print("no docker-registry: the ModelKit stays in the local store")
            else:
                os.environ["KIT_REGISTRY"] = registry
                os.environ["KIT_PLAIN_HTTP"] = "true"
            import dagster as dg
            import sentiment_defs as example

            with dg.DagsterInstance.get() as instance:
                result = dg.materialize(
                    [*example.ASSETS, *example.CHECKS],
                    resources=example.resources_from_env(),
                    instance=instance,
                )
                if not result.success:
                    print("the example run failed; see the log above", file=sys.stderr)
                    return 1
                print_summary(result)
                # Packing the same trained model again gives the same digest: the asset's data
                # version does not change, so nothing downstream is stale.
                again = dg.materialize(
                    example.ASSETS,
                    selection=[example.sentiment_modelkit.key],
                    resources=example.resources_from_env(),
                    instance=instance,
                )
                first = result.asset_materializations_for_node("sentiment_modelkit")[0]
                second = again.asset_materializations_for_node("sentiment_modelkit")[0]
                same = first.tags["dagster/data_version"] == second.tags["dagster/data_version"]
                verdict = "unchanged" if same else "CHANGED"
                print(f"re-packed unchanged content: data version {verdict}")
                if not same:
                    return 1
    finally:
        if args.keep:
            print(f"work directory kept: {workdir}")
        else:
            shutil.rmtree(workdir, ignore_errors=True)
    return 0


def print_summary(result: object) -> None:
    """Accuracy, the ModelKit, the checks and the predictions, as the example promises."""
    model = result.asset_materializations_for_node("sentiment_model")[0]  # type: ignore[attr-defined]
    kit = result.asset_materializations_for_node("sentiment_modelkit")[0]  # type: ignore[attr-defined]
    preds = result.asset_materializations_for_node("sentiment_predictions")[0]  # type: ignore[attr-defined]
    meta = preds.metadata
    output = Path(meta["output"].value)
    rows = [json.loads(line) for line in output.read_text().splitlines() if line.strip()]
    labels = Counter(str(r["prediction"]) for r in rows)
    print()
    print(f"model accuracy (held out): {model.metadata['accuracy'].value:.3f}")
    pushed = "pushed" if kit.metadata["pushed"].value else "local store only"
    layers = len(kit.metadata["layers"].value.records)
    print(f"ModelKit: {kit.metadata['reference'].value} ({pushed}, {layers} layers)")
    print(f"  digest (data version): {kit.metadata['digest'].value}")
    for check in result.get_asset_check_evaluations():  # type: ignore[attr-defined]
        print(f"  check {check.check_name}: {'passed' if check.passed else 'FAILED'}")
    print(
        f"inference ({meta['backend'].value}): {meta['records'].value} records in "
        f"{meta['inference_seconds'].value:.2f}s -> {output.name}"
    )
    print("predictions by label: " + ", ".join(f"{k}={v}" for k, v in sorted(labels.items())))
    for row in rows[:5]:
        print("  " + json.dumps(row, sort_keys=True))


if __name__ == "__main__":
    raise SystemExit(main())
