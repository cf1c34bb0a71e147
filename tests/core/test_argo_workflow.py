"""Generated Workflows: valid against Argo's schema made strict, every ``{{...}}`` resolves,
small for huge inputs, deterministic names, options land where Argo reads them."""

from __future__ import annotations

import json
import re
from typing import Any

import pytest
from kitflow.errors import KitflowError
from kitflow.inference.argo.workflow import (
    JOB_LABEL,
    MAX_SHARDS,
    WorkflowPlan,
    job_id,
    template_parameters,
    workflow_manifest,
    workflow_name,
    workflow_template_manifest,
)
from kitflow.inference.job import EntrypointSpec
from kitflow.options import ArgoOptions, Resources
from support.argo_fake import schema_errors, strict_validator

D1 = "sha256:" + "1" * 64
D2 = "sha256:" + "2" * 64
D3 = "sha256:" + "3" * 64
KIT = f"registry.example.com/team/sentiment@{D1}"
KIT2 = f"registry.example.com/team/sentiment-v2@{D2}"
INPUTS = f"registry.example.com/team/sentiment@{D3}"

FULL = ArgoOptions(
    namespace="ml",
    service_account="runner",
    registry_secret="regcred",
    resources=Resources(cpu="2", memory="4Gi", gpu=1),
    node_selector={"accelerator": "a100"},
    tolerations=[{"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}],
    retries=3,
    active_deadline_seconds=7200,
    ttl_seconds_after_finished=3600,
    pod_gc="OnPodCompletion",
)


def plan(mode: str = "batch", **kw: Any) -> WorkflowPlan:
    base: dict[str, Any] = {
        "kits": (KIT, KIT2) if mode == "compare" else (KIT,),
        "inputs": INPUTS,
        "results_repo": "registry.example.com/team/sentiment",
        "shards": 1 if mode == "single" else 8,
        "records": 1 if mode == "single" else 1000,
        "single": mode == "single",
        "parallelism": 3,
    }
    base.update(kw)
    return WorkflowPlan(**base)


ALL_PLANS = [
    ("single", ArgoOptions()),
    ("batch", ArgoOptions()),
    ("compare", ArgoOptions()),
    ("batch", FULL),
    ("compare", FULL),
]

ALLOWED_GLOBALS = {"workflow.name", "workflow.namespace", "workflow.uid"}


def unresolved_references(wf: dict[str, Any]) -> list[str]:
    """Every ``{{...}}`` that Argo could not resolve in its context (empty when all resolve)."""
    spec = wf["spec"]
    wf_params = {p["name"] for p in spec.get("arguments", {}).get("parameters", [])}
    templates = {t["name"]: t for t in spec["templates"]}
    problems: list[str] = []

    def check(text: str, allowed: set[str], where: str) -> None:
        for ref in re.findall(r"{{\s*([^}]*?)\s*}}", text):
            if ref not in allowed:
                problems.append(f"{where}: {{{{{ref}}}}}")

    def strings(node: Any) -> list[str]:
        if isinstance(node, str):
            return [node]
        if isinstance(node, dict):
            return [s for v in node.values() for s in strings(v)]
        if isinstance(node, list):
            return [s for v in node for s in strings(v)]
        return []

    base = {f"workflow.parameters.{p}" for p in wf_params} | ALLOWED_GLOBALS
    for name, tpl in templates.items():
        inputs = {
            f"inputs.parameters.{p['name']}" for p in tpl.get("inputs", {}).get("parameters", [])
        }
        body = {k: v for k, v in tpl.items() if k != "dag"}
        for s in strings(body):
            check(s, base | inputs, f"template {name}")
        tasks = {t["name"]: t for t in (tpl.get("dag") or {}).get("tasks", [])}
        for tname, task in tasks.items():
            if task["template"] not in templates:
                problems.append(f"task {tname}: unknown template {task['template']}")
                continue
            target = templates[task["template"]]
            wanted = {p["name"] for p in target.get("inputs", {}).get("parameters", [])}
            given = {p["name"] for p in task.get("arguments", {}).get("parameters", [])}
            if wanted != given:
                problems.append(f"task {tname}: arguments {given} != inputs {wanted}")
            deps = set(re.findall(r"[A-Za-z0-9-]+", task.get("depends", "")))
            allowed = set(base)
            for dep in deps:
                if dep not in tasks:
                    problems.append(f"task {tname}: depends on unknown {dep}")
                    continue
                dep_tpl = templates[tasks[dep]["template"]]
                for out in dep_tpl.get("outputs", {}).get("parameters", []):
                    allowed.add(f"tasks.{dep}.outputs.parameters.{out['name']}")
            if "withParam" in task or "withItems" in task:
                allowed.add("item")
            for s in strings(task):
                check(s, allowed, f"task {tname}")
    return problems


@pytest.mark.parametrize(("mode", "argo"), ALL_PLANS)
def test_workflows_validate_against_strict_schema(mode: str, argo: ArgoOptions) -> None:
    wf = workflow_manifest(plan(mode), argo)
    assert schema_errors(strict_validator("Workflow"), wf) == []
    assert unresolved_references(wf) == []


@pytest.mark.parametrize(("mode", "argo"), ALL_PLANS)
def test_workflow_templates_validate(mode: str, argo: ArgoOptions) -> None:
    tpl = workflow_template_manifest(plan(mode), argo)
    assert tpl["kind"] == "WorkflowTemplate"
    assert schema_errors(strict_validator("WorkflowTemplate"), tpl) == []
    assert unresolved_references(tpl) == []
    values = template_parameters(plan(mode), argo)
    declared = {p["name"] for p in tpl["spec"]["arguments"]["parameters"]}
    assert set(values) == declared


def test_strict_schema_catches_typos_and_wrong_types() -> None:
    wf = workflow_manifest(plan(), ArgoOptions())
    wf["spec"]["entrypointt"] = "main"
    wf["spec"]["parallelism"] = "3"
    errors = schema_errors(strict_validator("Workflow"), wf)
    assert any("entrypointt" in e for e in errors)
    assert any("parallelism" in e for e in errors)


def test_unresolved_reference_is_detected() -> None:
    wf = workflow_manifest(plan(), ArgoOptions())
    wf["spec"]["templates"][0]["container"]["args"].append("{{inputs.parameters.nope}}")
    assert unresolved_references(wf)


def test_batch_shape_fan_out_gather() -> None:
    wf = workflow_manifest(plan(), FULL)
    spec = wf["spec"]
    main = next(t for t in spec["templates"] if t["name"] == "main")
    tasks = {t["name"]: t for t in main["dag"]["tasks"]}
    assert set(tasks) == {"score-0", "gather-0"}
    assert tasks["score-0"]["withParam"] == "{{workflow.parameters.shards}}"
    assert tasks["gather-0"]["depends"] == "score-0"
    assert main["parallelism"] == 3 and spec["parallelism"] == 3
    params = {p["name"]: p["value"] for p in spec["arguments"]["parameters"]}
    assert json.loads(params["shards"]) == list(range(8))
    assert params["kit-0"] == KIT and params["inputs"] == INPUTS
    gather = next(t for t in spec["templates"] if t["name"] == "gather")
    assert gather["outputs"]["parameters"][0]["globalName"] == "summary"


def test_options_land_in_the_spec() -> None:
    wf = workflow_manifest(plan(), FULL)
    spec = wf["spec"]
    assert wf["metadata"]["namespace"] == "ml"
    assert spec["serviceAccountName"] == "runner"
    assert spec["imagePullSecrets"] == [{"name": "regcred"}]
    assert spec["nodeSelector"] == {"accelerator": "a100"}
    assert spec["tolerations"][0]["key"] == "nvidia.com/gpu"
    assert spec["activeDeadlineSeconds"] == 7200
    assert spec["ttlStrategy"] == {"secondsAfterCompletion": 3600}
    assert spec["podGC"] == {"strategy": "OnPodCompletion"}
    score = next(t for t in spec["templates"] if t["name"] == "score")
    res = score["container"]["resources"]
    assert res["requests"] == {"cpu": "2", "memory": "4Gi", "nvidia.com/gpu": "1"}
    assert res["limits"] == {"nvidia.com/gpu": "1"}
    assert score["retryStrategy"]["limit"] == "1"  # the plan's retries (per shard)
    env = {e["name"]: e["value"] for e in score["container"]["env"]}
    assert env["DOCKER_CONFIG"] == "/kitflow/docker"
    secret = next(v for v in score["volumes"] if v["name"] == "registry-auth")
    assert secret["secret"]["secretName"] == "regcred"
    assert secret["secret"]["items"] == [{"key": ".dockerconfigjson", "path": "config.json"}]
    gather = next(t for t in spec["templates"] if t["name"] == "gather")
    assert "resources" not in gather["container"]  # only scoring pods ask for GPUs


def test_single_prediction_is_a_global_output() -> None:
    wf = workflow_manifest(plan("single"), ArgoOptions())
    predict = next(t for t in wf["spec"]["templates"] if t["name"] == "predict")
    outs = {p["name"]: p for p in predict["outputs"]["parameters"]}
    assert outs["prediction"]["globalName"] == "prediction"
    assert "--prediction-out" in predict["container"]["args"]
    assert wf["metadata"]["name"].startswith("kitflow-single-")


def test_compare_has_one_fan_out_per_kit_and_a_report() -> None:
    wf = workflow_manifest(plan("compare"), ArgoOptions())
    main = next(t for t in wf["spec"]["templates"] if t["name"] == "main")
    tasks = {t["name"]: t for t in main["dag"]["tasks"]}
    assert set(tasks) == {"score-0", "gather-0", "score-1", "gather-1", "compare"}
    assert tasks["compare"]["depends"] == "gather-0 && gather-1"
    report = next(t for t in wf["spec"]["templates"] if t["name"] == "compare")
    assert report["outputs"]["parameters"][0]["globalName"] == "report"


def test_names_are_deterministic_and_follow_the_job() -> None:
    a = workflow_manifest(plan(), FULL)
    b = workflow_manifest(plan(), FULL)
    assert a == b
    assert a["metadata"]["name"] == workflow_name(plan(), FULL)
    assert a["metadata"]["labels"][JOB_LABEL] == job_id(plan(), FULL)
    assert len(a["metadata"]["name"]) <= 63
    other_inputs = plan(inputs=f"registry.example.com/team/sentiment@sha256:{'4' * 64}")
    other_kit = plan(kits=(KIT2,))
    other_opts = ArgoOptions(resources=Resources(gpu=2))
    names = {
        workflow_name(plan(), FULL),
        workflow_name(other_inputs, FULL),
        workflow_name(other_kit, FULL),
        workflow_name(plan(), other_opts),
        workflow_name(plan(shards=9), FULL),
    }
    assert len(names) == 5


def test_hundred_thousand_inputs_stay_far_under_etcd_limit() -> None:
    # 100,000 records in MAX_SHARDS shards: the Workflow carries shard indices, never records.
    big = plan("compare", records=100_000, shards=MAX_SHARDS)
    size = len(json.dumps(workflow_manifest(big, FULL)).encode())
    assert size < 1_000_000 // 10, size


def test_plans_are_checked() -> None:
    with pytest.raises(KitflowError, match="not pinned by digest"):
        plan(kits=("registry.example.com/team/sentiment:latest",))
    with pytest.raises(KitflowError, match="shards must be between"):
        plan(shards=MAX_SHARDS + 1)
    with pytest.raises(KitflowError, match="one kit and one record"):
        plan("single", records=2)


def test_entrypoint_override_and_kitops_init_option() -> None:
    ep = EntrypointSpec.parse("src/predict.py")
    wf = workflow_manifest(plan(entrypoint=ep, kitops_init=True, plain_http=True), FULL)
    assert schema_errors(strict_validator("Workflow"), wf) == []
    score = next(t for t in wf["spec"]["templates"] if t["name"] == "score")
    args = score["container"]["args"]
    assert json.loads(args[args.index("--entrypoint") + 1]) == {"entrypoint": "src/predict.py"}
    assert "--plain-http" in args and "--kit-dir" in args
    init = score["initContainers"][0]
    assert init["name"] == "kitops-init" and init["image"].startswith(
        "ghcr.io/kitops-ml/kitops-init"
    )
    env = {e["name"]: e["value"] for e in init["env"]}
    assert env["MODELKIT_REF"] == "{{inputs.parameters.kit}}"
    assert "--plain-http" in env["EXTRA_FLAGS"]


def test_bad_resource_quantities_are_user_errors() -> None:
    with pytest.raises(KitflowError, match="invalid pod resources"):
        workflow_manifest(plan(), ArgoOptions(resources=Resources(memory="two gigs")))
