"""The Argo backend end to end: kits packed and pushed to a real registry, Workflows submitted
to the fake Argo Server (or the fake Kubernetes API) whose controller is the in-test executor,
each pod a real ``kitflow argo-*`` process pulling its shard from and pushing its results to
the registry; then collect writes the predictions."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml
from kitflow import api
from kitflow.content.registry import Registry
from kitflow.errors import WorkflowFailed
from kitflow.inference.argo import backend
from kitflow.inference.argo.workflow import WorkflowPlan, workflow_manifest
from kitflow.inference.runner import build_job, run
from kitflow.options import ArgoOptions
from support.argo_executor import ArgoExecutor, UnsupportedArgo
from support.argo_fake import (
    ARGO_TOKEN,
    FakeArgoServer,
    FakeKubeAPI,
    failed_steps,
    schema_errors,
    strict_validator,
)

KITFLOW = Path(sys.executable).parent / "kitflow"

PREDICT = """
import json
import os


def load(model_path):
    with open(model_path) as fh:
        return set(json.load(fh)["positive"])


def predict(model, records):
    out = []
    for r in records:
        marker = r.get("flaky")
        if marker and not os.path.exists(marker):  # fails once, then works (a retry helps)
            open(marker, "w").close()
            raise RuntimeError("transient failure")
        if r["text"] == "boom":
            raise ValueError("boom is not a sentence")
        words = set(r["text"].lower().split())
        out.append("positive" if words & model else "negative")
    return out
"""

KITFILE = """manifestVersion: 1.0.0
package:
  name: words-{name}
model:
  name: words
  path: model/words.json
  parameters:
    inference:
      entrypoint: src/predict.py
code:
  - path: src
datasets:
  - name: samples
    path: data/samples.jsonl
"""

TEXTS = ["good day", "bad day", "great food", "awful food", "fine", "nice one", "meh"]


def _make_kit(root: Path, name: str, positive: list[str]) -> Path:
    (root / "src").mkdir(parents=True)
    (root / "model").mkdir()
    (root / "Kitfile").write_text(KITFILE.format(name=name))
    (root / "src" / "predict.py").write_text(PREDICT)
    (root / "model" / "words.json").write_text(json.dumps({"positive": positive}))
    (root / "data").mkdir()
    _inputs(root / "data" / "samples.jsonl", 5)
    return root


def _expected(positive: set[str], texts: list[str]) -> list[str]:
    return ["positive" if set(t.split()) & positive else "negative" for t in texts]


@pytest.fixture(scope="module")
def kits(registry: Any, tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    """Two kits pushed to the real registry: ``a`` (good, great, nice) and ``b`` (good, fine)."""
    base = tmp_path_factory.mktemp("argo-kits")
    home = base / "home"
    opts = registry.options()
    refs = {}
    for name, words in (("a", ["good", "great", "nice"]), ("b", ["good", "fine"])):
        ctx = _make_kit(base / name, name, words)
        ref = registry.ref(f"argo-e2e/words-{name}", "v1")
        api.pack(ctx, tag=ref, home=home)
        api.push(ref, registry=opts, home=home)
        refs[name] = ref
    return refs


def _inputs(path: Path, n: int, boom_at: int | None = None) -> tuple[Path, list[str]]:
    texts = [TEXTS[i % len(TEXTS)] for i in range(n)]
    if boom_at is not None:
        texts[boom_at] = "boom"
    path.write_text(
        "".join(json.dumps({"id": f"r{i}", "text": t}) + "\n" for i, t in enumerate(texts))
    )
    return path, texts


@pytest.fixture
def executor(tmp_path: Path) -> ArgoExecutor:
    return ArgoExecutor(KITFLOW, tmp_path / "pods", max_workers=2)


@pytest.fixture
def argo(argo_server: FakeArgoServer, executor: ArgoExecutor) -> ArgoOptions:
    argo_server.state.controller = executor.run
    return ArgoOptions(server=argo_server.url, token=ARGO_TOKEN, namespace="ml", retries=0)


def _lines(path: Path) -> list[dict[str, Any]]:
    return [json.loads(x) for x in path.read_text().splitlines()]


def test_batch_fan_out_gather_end_to_end_and_resubmit_reattaches(
    kits: dict[str, str],
    registry: Any,
    argo: ArgoOptions,
    argo_server: FakeArgoServer,
    executor: ArgoExecutor,
    tmp_path: Path,
) -> None:
    src, texts = _inputs(tmp_path / "in.jsonl", 25)
    out = tmp_path / "out.jsonl"
    job = build_job(kits["a"], src, out, shards=3, parallelism=2)
    result = backend.run_argo(job, argo, registry.options(), timeout=240)

    assert result.phase == "Succeeded" and result.backend == "argo"
    assert result.records == 25 and len(result.shards) == 3
    assert [s.records for s in result.shards] == [9, 8, 8]
    lines = _lines(out)
    assert [x["id"] for x in lines] == [f"r{i}" for i in range(25)]
    assert [x["prediction"] for x in lines] == _expected({"good", "great", "nice"}, texts)
    assert result.model_digest.startswith("sha256:")
    assert result.workflow_name and result.workflow_name.startswith("kitflow-batch-")
    verbs = sorted(argv[1] for argv in executor.commands)
    assert verbs == ["argo-gather", "argo-shard", "argo-shard", "argo-shard"]

    # The same job again: same inputs digest, same name, re-attached (no second run).
    again = backend.submit(job, argo, registry.options())
    assert again.name == result.workflow_name
    assert len(executor.commands) == 4
    assert len(argo_server.state.objects) == 1
    collected = backend.collect(again, job, argo, registry.options())
    assert collected.records == 25


def test_compare_two_kits_reports_agreement(
    kits: dict[str, str], registry: Any, argo: ArgoOptions, tmp_path: Path
) -> None:
    src, texts = _inputs(tmp_path / "in.jsonl", 14)
    out = tmp_path / "cmp.jsonl"
    result = run(
        [kits["a"], kits["b"]],
        src,
        out,
        backend="argo",
        shards=2,
        argo=argo,
        registry=registry.options(),
        timeout=240,
    )
    a = _expected({"good", "great", "nice"}, texts)
    b = _expected({"good", "fine"}, texts)
    agree = sum(x == y for x, y in zip(a, b, strict=True))
    comparison = result.comparison
    assert comparison is not None
    assert comparison["disagreements"] == 14 - agree
    assert comparison["agreement"] == round(agree / 14, 6)
    assert [m["reference"] for m in comparison["models"]] == [kits["a"], kits["b"]]
    lines = _lines(out)
    assert [x["predictions"][kits["b"]] for x in lines] == b
    assert [x["prediction"] for x in lines] == a


def test_single_inference_prediction_comes_back_as_output_parameter(
    kits: dict[str, str],
    registry: Any,
    argo: ArgoOptions,
    argo_server: FakeArgoServer,
    tmp_path: Path,
) -> None:
    src, _ = _inputs(tmp_path / "one.jsonl", 1)
    out = tmp_path / "one.out.jsonl"
    result = backend.run_argo(build_job(kits["a"], src, out), argo, registry.options(), timeout=240)
    assert result.workflow_name and result.workflow_name.startswith("kitflow-single-")
    assert _lines(out) == [{"id": "r0", "prediction": "positive"}]
    wf = argo_server.state.objects[("ml", result.workflow_name)]
    outputs = {p["name"]: p["value"] for p in wf["status"]["outputs"]["parameters"]}
    assert json.loads(outputs["prediction"]) == {"id": "r0", "prediction": "positive"}


def test_failing_record_fails_the_workflow_with_its_line(
    kits: dict[str, str], registry: Any, argo: ArgoOptions, tmp_path: Path
) -> None:
    src, _ = _inputs(tmp_path / "bad.jsonl", 10, boom_at=6)
    out = tmp_path / "bad.out.jsonl"
    job = build_job(kits["a"], src, out, shards=2)
    with pytest.raises(WorkflowFailed) as info:
        backend.run_argo(job, argo, registry.options(), timeout=240)
    message = str(info.value)
    assert "shard 1 failed at bad.jsonl line 7" in message
    assert "ValueError: boom is not a sentence" in message
    assert not out.exists()


def test_kubernetes_path_end_to_end(
    kits: dict[str, str],
    registry: Any,
    kube_api: FakeKubeAPI,
    executor: ArgoExecutor,
    tmp_path: Path,
) -> None:
    kube_api.state.controller = executor.run
    config = tmp_path / "kubeconfig"
    config.write_text(
        yaml.safe_dump(
            {
                "current-context": "t",
                "contexts": [{"name": "t", "context": {"cluster": "c", "user": "u"}}],
                "clusters": [{"name": "c", "cluster": {"server": kube_api.url}}],
                "users": [{"name": "u", "user": {"token": ARGO_TOKEN}}],
            }
        )
    )
    argo = ArgoOptions(kubeconfig=config, namespace="ml", retries=0)
    src, texts = _inputs(tmp_path / "in.jsonl", 6)
    result = backend.run_argo(
        build_job(kits["b"], src, tmp_path / "o.jsonl", shards=2),
        argo,
        registry.options(),
        timeout=240,
    )
    assert [x["prediction"] for x in _lines(tmp_path / "o.jsonl")] == _expected(
        {"good", "fine"}, texts
    )
    assert result.workflow_url is None  # no Argo UI known on the direct path


def test_dry_run_touches_nothing(
    kits: dict[str, str], registry: Any, argo_server: FakeArgoServer, tmp_path: Path
) -> None:
    argo = ArgoOptions(server=argo_server.url, token=ARGO_TOKEN, namespace="ml")
    src, _ = _inputs(tmp_path / "dry.jsonl", 30)
    repo = Registry(kits["a"].rsplit(":", 1)[0], registry.options())
    tags_before = repo.list_tags()
    result = backend.run_argo(
        build_job(kits["a"], src, None, shards=4), argo, registry.options(), dry_run=True
    )
    assert repo.list_tags() == tags_before
    assert argo_server.requests == []
    assert result.phase == "DryRun" and result.workflow is not None
    assert schema_errors(strict_validator("Workflow"), result.workflow) == []
    assert result.workflow["metadata"]["name"] == result.workflow_name
    assert len(result.shards) == 4


def test_executor_refuses_what_it_does_not_implement(tmp_path: Path) -> None:
    d = "sha256:" + "1" * 64
    plan = WorkflowPlan(
        kits=(f"r/x@{d}",),
        inputs=f"r/x@{d}",
        results_repo="r/x",
        shards=2,
        records=4,
        kitops_init=True,
    )
    wf = workflow_manifest(plan, ArgoOptions())
    with pytest.raises(UnsupportedArgo, match="initContainers"):
        ArgoExecutor(KITFLOW, tmp_path).run(wf)


class _Templates:
    """The fake server's registered WorkflowTemplates, looked up by name (live)."""

    def __init__(self, server: FakeArgoServer) -> None:
        self.server = server

    def get(self, name: str) -> Any:
        return next((t for (_, n), t in self.server.state.templates.items() if n == name), None)


def test_submit_by_workflow_template(
    kits: dict[str, str],
    registry: Any,
    argo: ArgoOptions,
    argo_server: FakeArgoServer,
    executor: ArgoExecutor,
    tmp_path: Path,
) -> None:
    executor.templates_by_ref = _Templates(argo_server)
    src, texts = _inputs(tmp_path / "t.jsonl", 5)
    job = build_job(kits["a"], src, tmp_path / "t.out.jsonl", shards=2)
    sub = backend.submit_from_template(job, argo, registry.options())
    assert sub.name == backend.plan_job(job, argo, registry.options()).manifest["metadata"]["name"]
    backend.wait(sub, argo, timeout=240)
    result = backend.collect(sub, job, argo, registry.options())
    assert [x["prediction"] for x in _lines(tmp_path / "t.out.jsonl")] == _expected(
        {"good", "great", "nice"}, texts
    )
    assert result.records == 5
    wf = argo_server.state.objects[("ml", sub.name)]
    assert wf["spec"]["workflowTemplateRef"]["name"].startswith("kitflow-batch-")
    again = backend.submit_from_template(job, argo, registry.options())
    assert again.uid == sub.uid  # re-attached


def test_no_wait_returns_after_submission_and_stop(
    kits: dict[str, str], registry: Any, argo_server: FakeArgoServer, tmp_path: Path
) -> None:
    argo_server.state.default_steps = [{"phase": "Running"}]
    argo = ArgoOptions(server=argo_server.url, token=ARGO_TOKEN, namespace="ml")
    src, _ = _inputs(tmp_path / "nw.jsonl", 3)
    job = build_job(kits["a"], src, tmp_path / "nw.out.jsonl")
    result = backend.run_argo(job, argo, registry.options(), wait=False)
    assert result.phase in ("", "Pending", "Running") and result.output is None
    sub = backend.ArgoSubmission(result.workflow_name or "", "ml")
    backend.stop(sub, argo)
    st = backend.status(sub, argo)
    assert st.finished and "Stop" in st.message
    with pytest.raises(WorkflowFailed, match="Stop"):
        backend.collect(sub, job, argo, registry.options())


def test_pods_authenticate_with_the_dockerconfigjson_secret(
    registry_htpasswd: Any,
    argo_server: FakeArgoServer,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import base64

    reg = registry_htpasswd
    opts = reg.options()
    ctx = _make_kit(tmp_path / "kit", "auth", ["good"])
    ref = reg.ref("argo-e2e/private", "v1")
    home = tmp_path / "home"
    api.pack(ctx, tag=ref, home=home)
    api.push(ref, registry=opts, home=home)
    auth = base64.b64encode(f"{reg.username}:{reg.password}".encode()).decode()
    dockerconfig = json.dumps({"auths": {reg.host: {"auth": auth}}}).encode()
    executor = ArgoExecutor(
        KITFLOW, tmp_path / "pods", secrets={"regcred": {".dockerconfigjson": dockerconfig}}
    )
    argo_server.state.controller = executor.run
    argo = ArgoOptions(
        server=argo_server.url,
        token=ARGO_TOKEN,
        namespace="ml",
        retries=0,
        registry_secret="regcred",
    )
    src, texts = _inputs(tmp_path / "p.jsonl", 4)
    out = tmp_path / "p.out.jsonl"
    result = backend.run_argo(build_job(ref, src, out, shards=2), argo, opts, timeout=240)
    assert [x["prediction"] for x in _lines(out)] == _expected({"good"}, texts)
    assert result.records == 4
    # The password went to the pods only through the mounted secret, never the Workflow.
    wf = argo_server.state.objects[("ml", result.workflow_name or "")]
    assert reg.password not in json.dumps(wf)

    # Without the secret the pods are refused by the registry and the Workflow fails.
    executor.secrets = {"regcred": {".dockerconfigjson": b'{"auths": {}}'}}
    other = build_job(ref, src, tmp_path / "q.jsonl", shards=1)
    with pytest.raises(WorkflowFailed, match=r"401|unauthorized|denied|credentials"):
        backend.run_argo(other, argo, opts, timeout=240)


def test_resubmitting_after_a_failure_runs_the_job_again(
    kits: dict[str, str],
    registry: Any,
    argo: ArgoOptions,
    argo_server: FakeArgoServer,
    executor: ArgoExecutor,
    tmp_path: Path,
) -> None:
    """A retried submission replaces the job's Failed Workflow (same name, new UID) and the
    fresh run succeeds; ``rerun_failed=False`` re-attaches to the failed one instead."""
    marker = tmp_path / "flaky-once"
    src = tmp_path / "rf.jsonl"
    src.write_text(
        "".join(
            json.dumps({"id": f"r{i}", "text": t, "flaky": str(marker)}) + "\n"
            for i, t in enumerate(TEXTS[:4])
        )
    )
    out = tmp_path / "rf.out.jsonl"
    job = build_job(kits["a"], src, out, shards=1)
    first = backend.submit(job, argo, registry.options())
    with pytest.raises(WorkflowFailed, match="transient failure"):
        backend.wait(first, argo, timeout=240)
    runs = len(executor.commands)
    attached = backend.submit(job, argo, registry.options(), rerun_failed=False)
    assert attached.uid == first.uid and len(executor.commands) == runs

    retry = backend.submit(job, argo, registry.options())
    assert retry.name == first.name and retry.uid != first.uid
    backend.wait(retry, argo, timeout=240)
    result = backend.collect(retry, job, argo, registry.options())
    assert len(executor.commands) > runs
    assert result.records == 4
    assert [x["prediction"] for x in _lines(out)] == _expected({"good", "great", "nice"}, TEXTS[:4])
    # Exactly one Workflow of that name exists: the fresh one.
    assert [k for k in argo_server.state.objects if k[1] == first.name] == [("ml", first.name)]
    assert argo_server.state.objects[("ml", first.name)]["metadata"]["uid"] == retry.uid
    assert argo_server.state.deleted == [("ml", first.name, first.uid)]


def test_kube_path_resubmission_replaces_a_failed_workflow(
    kits: dict[str, str],
    registry: Any,
    kube_api: FakeKubeAPI,
    executor: ArgoExecutor,
    tmp_path: Path,
) -> None:
    """The same on the direct Kubernetes path, with a finalizer delaying the deletion."""
    kube_api.state.finalizer_reads = 2
    kube_api.state.controller = lambda wf: failed_steps("OOMKilled (exit code 137)")[-1]
    config = tmp_path / "kubeconfig"
    config.write_text(
        yaml.safe_dump(
            {
                "current-context": "t",
                "contexts": [{"name": "t", "context": {"cluster": "c", "user": "u"}}],
                "clusters": [{"name": "c", "cluster": {"server": kube_api.url}}],
                "users": [{"name": "u", "user": {"token": ARGO_TOKEN}}],
            }
        )
    )
    argo = ArgoOptions(kubeconfig=config, namespace="ml", retries=0)
    src, texts = _inputs(tmp_path / "k.jsonl", 3)
    out = tmp_path / "k.out.jsonl"
    job = build_job(kits["b"], src, out, shards=1)
    with pytest.raises(WorkflowFailed, match="OOMKilled"):
        backend.run_argo(job, argo, registry.options(), timeout=240)
    first = next(iter(kube_api.state.objects.values()))["metadata"]
    kube_api.state.controller = executor.run
    result = backend.run_argo(job, argo, registry.options(), timeout=240)
    assert result.workflow_name == first["name"]
    assert [x["prediction"] for x in _lines(out)] == _expected({"good", "fine"}, texts)
    assert len(kube_api.state.objects) == 1
    assert kube_api.state.objects[("ml", first["name"])]["metadata"]["uid"] != first["uid"]
    assert kube_api.state.deleted == [("ml", first["name"], first["uid"])]


def test_cli_dry_run_prints_the_workflow(
    kits: dict[str, str], registry: Any, tmp_path: Path
) -> None:
    import subprocess

    src, _ = _inputs(tmp_path / "cli.jsonl", 12)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("ARGO_", "KITOPS_"))}
    env["KITOPS_HOME"] = str(tmp_path / "home")
    proc = subprocess.run(
        [
            str(KITFLOW),
            "run",
            kits["a"],
            "--input",
            str(src),
            "--backend",
            "argo",
            "--dry-run",
            "--json",
            "--plain-http",
            "--argo-server",
            "http://127.0.0.1:9",
            "--shards",
            "3",
            "--gpu",
            "1",
            "--registry-secret",
            "regcred",
        ],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    result = json.loads(proc.stdout)
    wf = result["workflow"]
    assert schema_errors(strict_validator("Workflow"), wf) == []
    assert result["phase"] == "DryRun" and len(result["shards"]) == 3
    score = next(t for t in wf["spec"]["templates"] if t["name"] == "score")
    assert score["container"]["resources"]["limits"] == {"nvidia.com/gpu": "1"}
    assert "--plain-http" in score["container"]["args"]
    assert wf["spec"]["imagePullSecrets"] == [{"name": "regcred"}]


def test_retry_strategy_reruns_a_failed_pod(
    kits: dict[str, str],
    registry: Any,
    argo_server: FakeArgoServer,
    executor: ArgoExecutor,
    tmp_path: Path,
) -> None:
    argo_server.state.controller = executor.run
    argo = ArgoOptions(server=argo_server.url, token=ARGO_TOKEN, namespace="ml", retries=1)
    src = tmp_path / "flaky.jsonl"
    marker = tmp_path / "failed-once"
    src.write_text(
        json.dumps({"id": "a", "text": "good"})
        + "\n"
        + json.dumps({"id": "b", "text": "bad", "flaky": str(marker)})
        + "\n"
    )
    out = tmp_path / "flaky.out.jsonl"
    result = backend.run_argo(
        build_job(kits["a"], src, out, shards=2), argo, registry.options(), timeout=240
    )
    assert marker.exists()
    assert [x["prediction"] for x in _lines(out)] == ["positive", "negative"]
    shard_runs = [argv for argv in executor.commands if argv[1] == "argo-shard"]
    assert len(shard_runs) == 3  # shard 1 ran twice
    assert result.records == 2


def test_dataset_inputs_and_pods_skip_datasets(
    kits: dict[str, str],
    registry: Any,
    argo: ArgoOptions,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("KITOPS_HOME", str(tmp_path / "submitter-home"))
    out = tmp_path / "ds.out.jsonl"
    result = run(
        kits["a"],
        None,
        out,
        backend="argo",
        dataset="samples",
        shards=2,
        argo=argo,
        registry=registry.options(),
        timeout=240,
    )
    texts = [TEXTS[i % len(TEXTS)] for i in range(5)]
    assert [x["prediction"] for x in _lines(out)] == _expected({"good", "great", "nice"}, texts)
    assert result.records == 5
    pods = tmp_path / "pods"
    assert list(pods.rglob("words.json")), "the model was unpacked in the pods"
    assert not list(pods.rglob("samples.jsonl")), "pods must not unpack datasets"
