"""Run the Airflow example end to end with ``dag.test()`` (``make example-airflow``).

Everything lives in a throwaway directory: AIRFLOW_HOME with a SQLite metadata DB, KITOPS_HOME,
the training copy and the predictions. When ``docker-registry`` (CNCF Distribution) is
installed, a registry is started on loopback and the ModelKit is pushed to it; otherwise the
pipeline stays in the local store. Prints the predictions summary.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
DAG_FILE = HERE / "dags" / "kitflow_sentiment.py"
sys.path.insert(0, str(HERE.parent / "sentiment"))
from loopback import loopback_registry  # noqa: E402  (examples/sentiment/loopback.py)


def prepare_environment(work: Path, registry: str | None) -> None:
    """Point Airflow and kitflow at the throwaway directory (before Airflow is imported)."""
    home = work / "airflow"
    home.mkdir(parents=True, exist_ok=True)
    os.environ.update(
        {
            "AIRFLOW_HOME": str(home),
            "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
            "AIRFLOW__LOGGING__LOGGING_LEVEL": os.environ.get(
                "AIRFLOW__LOGGING__LOGGING_LEVEL", "WARNING"
            ),
            "AIRFLOW__CORE__DAGS_FOLDER": str(DAG_FILE.parent),
            "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": f"sqlite:///{home}/airflow.db",
            "KITOPS_HOME": str(work / "kitops"),
            "KITFLOW_EXAMPLE_WORKDIR": str(work / "runs"),
        }
    )
    if registry:
        os.environ["KITFLOW_EXAMPLE_REGISTRY"] = registry
        os.environ["AIRFLOW_CONN_KITOPS_REGISTRY_DEFAULT"] = json.dumps(
            {"conn_type": "kitops_registry", "host": registry, "extra": {"plain_http": True}}
        )
    airflow = Path(sys.executable).with_name("airflow")
    proc = subprocess.run(
        [str(airflow), "db", "migrate"], capture_output=True, text=True, check=False
    )
    if proc.returncode != 0:
        sys.exit(f"airflow db migrate failed:\n{proc.stdout[-2000:]}{proc.stderr[-2000:]}")


def run_dag(dag_id: str) -> str:
    """Load the example DAG file and run one DAG with ``dag.test()``; returns the run state."""
    spec = importlib.util.spec_from_file_location("kitflow_sentiment_example", DAG_FILE)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    dag = next(d for d in vars(module).values() if getattr(d, "dag_id", None) == dag_id)
    dag_run = dag.test()
    return str(dag_run.state)


def main() -> int:
    """Command line entry point."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--keep", action="store_true", help="keep the throwaway directory")
    parser.add_argument("--no-registry", action="store_true", help="stay in the local store")
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="kitflow-airflow-example-"))
    try:
        with loopback_registry(work / "registry") as found:
            registry = None if args.no_registry else found
            print(
                f"registry: {registry}" if registry else "registry: none (local store only)",
                flush=True,
            )
            prepare_environment(work, registry)
            state = run_dag("kitflow_sentiment")
            summaries = sorted((work / "runs").glob("*/summary.json"))
            print(f"\nDAG run kitflow_sentiment: {state}")
            if state != "success" or not summaries:
                return 1
            summary = json.loads(summaries[-1].read_text())
            print(f"model digest : {summary['model_digest']}")
            print(f"records      : {summary['records']}")
            print(f"labels       : {summary['labels']}")
            for row in summary["examples"]:
                print(f"  {json.dumps(row)}")
        return 0
    finally:
        if args.keep:
            print(f"kept {work}")
        else:
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
