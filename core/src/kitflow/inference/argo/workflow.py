"""Build the Argo Workflow for an inference job with hera.

Shapes: *single* (one ``predict`` step, the prediction comes back as a global output
parameter), *batch* (a DAG fanning ``score`` out over shards with ``withParam``, bounded by
``parallelism``, then ``gather``), and *compare* (several kits on the same inputs: one fan-out
and gather per kit, then a ``compare`` report step). Records never travel in the Workflow: pods
pull their shard blob from the registry the kit lives in and push their results there.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from typing import Any

from hera.workflows import (
    DAG,
    Container,
    EmptyDirVolume,
    Env,
    Parameter,
    SecretVolume,
    Task,
    UserContainer,
    Workflow,
    WorkflowTemplate,
)
from hera.workflows import Resources as HeraResources
from hera.workflows import models as m

from kitflow.errors import KitflowError
from kitflow.inference.job import EntrypointSpec
from kitflow.options import ArgoOptions, Resources

#: Labels and annotations on every Workflow kitflow makes.
MANAGED_BY = "app.kubernetes.io/managed-by"
JOB_LABEL = "kitflow.dev/job"
MODE_LABEL = "kitflow.dev/mode"
KIT_ANNOTATION = "kitflow.dev/kits"
INPUTS_ANNOTATION = "kitflow.dev/inputs"

#: Inside a pod: scratch space (an emptyDir) and where output parameters are written.
WORK_DIR = "/tmp/kitflow"
OUT_DIR = f"{WORK_DIR}/out"
KIT_DIR = f"{WORK_DIR}/kit"
DOCKER_CONFIG_DIR = "/kitflow/docker"

#: More shards than this would make the gather step's aggregated argument too long for a pod.
MAX_SHARDS = 500
KITOPS_INIT_IMAGE = "ghcr.io/kitops-ml/kitops-init:v1.7.0"


@dataclass(frozen=True)
class WorkflowPlan:
    """What the Workflow runs: pinned kits, the pinned inputs artifact, where results go, how
    many shards. Everything here is public (no secret ever enters a Workflow)."""

    kits: tuple[str, ...]  # "registry/repo@sha256:..." each
    inputs: str  # "registry/repo@sha256:..." of the inputs artifact
    results_repo: str  # "registry/repo" the pods push results to
    shards: int
    records: int
    parallelism: int = 4
    single: bool = False  # one record, one kit: one step with an output parameter
    entrypoint: EntrypointSpec | None = None
    batch_size: int = 256
    id_field: str = "id"
    retries: int = 1
    resources: Resources = field(default_factory=Resources)
    plain_http: bool = False
    tls_verify: bool = True
    kitops_init: bool = False  # unpack the kit with ghcr.io/kitops-ml/kitops-init instead

    def __post_init__(self) -> None:
        if not self.kits:
            raise KitflowError("a workflow needs at least one ModelKit")
        for kit in (*self.kits, self.inputs):
            if "@sha256:" not in kit:
                raise KitflowError(f"{kit!r} is not pinned by digest (registry/repo@sha256:...)")
        if not 1 <= self.shards <= MAX_SHARDS:
            raise KitflowError(f"shards must be between 1 and {MAX_SHARDS}, got {self.shards}")
        if self.single and (len(self.kits) != 1 or self.records != 1):
            raise KitflowError("a single-inference workflow takes one kit and one record")

    @property
    def mode(self) -> str:
        """ "single", "batch" or "compare"."""
        if len(self.kits) > 1:
            return "compare"
        return "single" if self.single else "batch"


def job_id(plan: WorkflowPlan, argo: ArgoOptions) -> str:
    """A stable hash of everything that changes what the Workflow does (kit digests, inputs
    digest, options), so a retried submission finds the Workflow it already created."""
    spec = {
        "kits": list(plan.kits),
        "inputs": plan.inputs,
        "results": plan.results_repo,
        "shards": plan.shards,
        "parallelism": plan.parallelism,
        "mode": plan.mode,
        "entrypoint": plan.entrypoint.to_dict() if plan.entrypoint else None,
        "batch_size": plan.batch_size,
        "id_field": plan.id_field,
        "retries": plan.retries,
        "resources": _resources_dict(_effective_resources(plan, argo)),
        "registry": [plan.plain_http, plan.tls_verify],
        "kitops_init": plan.kitops_init,
        "image": argo.image,
        "namespace": argo.namespace,
        "service_account": argo.service_account,
        "registry_secret": argo.registry_secret,
        "node_selector": dict(sorted(argo.node_selector.items())),
        "tolerations": argo.tolerations,
        "deadline": argo.active_deadline_seconds,
    }
    blob = json.dumps(spec, sort_keys=True, separators=(",", ":")).encode()
    return hashlib.sha256(blob).hexdigest()[:20]


def workflow_name(plan: WorkflowPlan, argo: ArgoOptions) -> str:
    """The deterministic Workflow name: ``kitflow-<mode>-<job hash>``."""
    return f"kitflow-{plan.mode}-{job_id(plan, argo)}"


def _effective_resources(plan: WorkflowPlan, argo: ArgoOptions) -> Resources:
    job, dflt = plan.resources, argo.resources
    return Resources(
        cpu=job.cpu or dflt.cpu, memory=job.memory or dflt.memory, gpu=job.gpu or dflt.gpu
    )


def _resources_dict(res: Resources) -> dict[str, Any]:
    return {"cpu": res.cpu, "memory": res.memory, "gpu": res.gpu}


def _hera_resources(res: Resources) -> HeraResources | None:
    if not (res.cpu or res.memory or res.gpu):
        return None
    try:
        return HeraResources(
            cpu_request=res.cpu,
            memory_request=res.memory,
            gpus=res.gpu or None,
        )
    except ValueError as exc:  # hera checks Kubernetes quantities
        raise KitflowError(
            f"invalid pod resources (cpu={res.cpu!r}, memory={res.memory!r}): {exc}; "
            "use Kubernetes quantities such as cpu=500m, memory=2Gi"
        ) from None


def _registry_flags(plan: WorkflowPlan) -> list[str]:
    flags = []
    if plan.plain_http:
        flags.append("--plain-http")
    if not plan.tls_verify:
        flags.append("--tls-verify=false")
    return flags


class _Builder:
    """Assembles the templates; one instance per Workflow."""

    def __init__(self, plan: WorkflowPlan, argo: ArgoOptions) -> None:
        self.plan = plan
        self.argo = argo
        self.resources = _hera_resources(_effective_resources(plan, argo))

    # -- pieces shared by every pod template ---------------------------------------------------

    def _env(self) -> list[Env]:
        env = [
            Env(name="KITOPS_HOME", value=f"{WORK_DIR}/home"),
            Env(name="HOME", value=f"{WORK_DIR}/home"),
        ]
        if self.argo.registry_secret:
            env.append(Env(name="DOCKER_CONFIG", value=DOCKER_CONFIG_DIR))
        return env

    def _volumes(self) -> list[Any]:
        volumes: list[Any] = [EmptyDirVolume(name="kitflow-work", mount_path=WORK_DIR)]
        if self.argo.registry_secret:
            volumes.append(
                SecretVolume(
                    name="registry-auth",
                    mount_path=DOCKER_CONFIG_DIR,
                    secret_name=self.argo.registry_secret,
                    items=[m.KeyToPath(key=".dockerconfigjson", path="config.json")],
                )
            )
        return volumes

    def _retry(self) -> m.RetryStrategy | None:
        if self.plan.retries <= 0:
            return None
        return m.RetryStrategy(
            limit=m.IntOrString(str(self.plan.retries)),
            retry_policy="Always",
            backoff=m.Backoff(duration="10s", factor=m.IntOrString("2"), max_duration="5m"),
        )

    def _container(
        self,
        name: str,
        args: list[str],
        *,
        inputs: list[Parameter],
        outputs: list[Parameter],
        heavy: bool,
    ) -> Container:
        init: list[Any] | None = None
        if heavy and self.plan.kitops_init:
            init = [self._kitops_init()]
        return Container(
            name=name,
            image=self.argo.image,
            image_pull_policy=self.argo.image_pull_policy,
            command=["kitflow"],
            args=args,
            env=self._env(),
            inputs=inputs,
            outputs=outputs,
            volumes=self._volumes(),
            resources=self.resources if heavy else None,
            retry_strategy=self._retry(),
            init_containers=init,
        )

    def _kitops_init(self) -> UserContainer:
        env: list[Any] = [
            Env(name="MODELKIT_REF", value="{{inputs.parameters.kit}}"),
            Env(name="UNPACK_PATH", value=KIT_DIR),
            Env(name="UNPACK_FILTER", value="model,code,kitfile"),
        ]
        flags = " ".join(["--ignore-existing", *_registry_flags(self.plan)])
        env.append(Env(name="EXTRA_FLAGS", value=flags))
        mounts = [m.VolumeMount(name="kitflow-work", mount_path=WORK_DIR)]
        if self.argo.registry_secret:
            env.append(Env(name="DOCKER_CONFIG", value=DOCKER_CONFIG_DIR))
            mounts.append(m.VolumeMount(name="registry-auth", mount_path=DOCKER_CONFIG_DIR))
        return UserContainer(
            name="kitops-init", image=KITOPS_INIT_IMAGE, env=env, volume_mounts=mounts
        )

    def _score_args(self, out_flag: list[str]) -> list[str]:
        plan = self.plan
        args = [
            "argo-shard",
            "--kit",
            "{{inputs.parameters.kit}}",
            "--inputs",
            "{{workflow.parameters.inputs}}",
            "--shard",
            "{{inputs.parameters.shard}}",
            "--results-repo",
            "{{workflow.parameters.results-repo}}",
            "--job",
            "{{workflow.parameters.job}}",
            "--batch-size",
            str(plan.batch_size),
            "--id-field",
            plan.id_field,
            "--out",
            f"{OUT_DIR}/result.json",
            *out_flag,
            *_registry_flags(plan),
        ]
        if plan.entrypoint is not None:
            args += ["--entrypoint", json.dumps(plan.entrypoint.to_dict(), sort_keys=True)]
        if plan.kitops_init:
            args += ["--kit-dir", KIT_DIR]
        return args

    # -- templates ------------------------------------------------------------------------------

    def score(self) -> Container:
        """One shard: pull the shard blob and the kit, predict, push the result blob."""
        return self._container(
            "score",
            self._score_args([]),
            inputs=[Parameter(name="kit"), Parameter(name="shard")],
            outputs=[
                Parameter(name="result", value_from=m.ValueFrom(path=f"{OUT_DIR}/result.json"))
            ],
            heavy=True,
        )

    def predict(self) -> Container:
        """Single inference: like ``score`` for shard 0, and the prediction is an output."""
        return self._container(
            "predict",
            self._score_args(["--prediction-out", f"{OUT_DIR}/prediction.json"]),
            inputs=[Parameter(name="kit"), Parameter(name="shard")],
            outputs=[
                Parameter(
                    name="prediction",
                    global_name="prediction",
                    value_from=m.ValueFrom(path=f"{OUT_DIR}/prediction.json"),
                ),
                Parameter(
                    name="result",
                    global_name="result",
                    value_from=m.ValueFrom(path=f"{OUT_DIR}/result.json"),
                ),
            ],
            heavy=True,
        )

    def gather(self, global_summary: bool) -> Container:
        """Assemble one kit's shard results (in shard order) into a results artifact."""
        args = [
            "argo-gather",
            "--kit",
            "{{inputs.parameters.kit}}",
            "--inputs",
            "{{workflow.parameters.inputs}}",
            "--results-repo",
            "{{workflow.parameters.results-repo}}",
            "--job",
            "{{workflow.parameters.job}}",
            "--results",
            "{{inputs.parameters.results}}",
            "--out",
            f"{OUT_DIR}/summary.json",
            *_registry_flags(self.plan),
        ]
        summary = Parameter(
            name="summary",
            value_from=m.ValueFrom(path=f"{OUT_DIR}/summary.json"),
            global_name="summary" if global_summary else None,
        )
        return self._container(
            "gather",
            args,
            inputs=[Parameter(name="kit"), Parameter(name="results")],
            outputs=[summary],
            heavy=False,
        )

    def compare(self) -> Container:
        """The comparison report: agreement between kits and per-kit latency."""
        args = [
            "argo-compare",
            "--summaries",
            "{{inputs.parameters.summaries}}",
            "--results-repo",
            "{{workflow.parameters.results-repo}}",
            "--job",
            "{{workflow.parameters.job}}",
            "--out",
            f"{OUT_DIR}/report.json",
            *_registry_flags(self.plan),
        ]
        return self._container(
            "compare",
            args,
            inputs=[Parameter(name="summaries")],
            outputs=[
                Parameter(
                    name="report",
                    global_name="report",
                    value_from=m.ValueFrom(path=f"{OUT_DIR}/report.json"),
                )
            ],
            heavy=False,
        )

    # -- the whole thing ------------------------------------------------------------------------

    def arguments(self) -> list[Parameter]:
        plan = self.plan
        params = [
            Parameter(name="inputs", value=plan.inputs),
            Parameter(name="results-repo", value=plan.results_repo),
            Parameter(name="job", value=job_id(plan, self.argo)),
            Parameter(name="shards", value=json.dumps(list(range(plan.shards)))),
        ]
        for k, kit in enumerate(plan.kits):
            params.append(Parameter(name=f"kit-{k}", value=kit))
        return params

    def populate(self, w: Workflow) -> None:
        """Declare templates and the ``main`` DAG inside an open ``with Workflow(...)``."""
        plan = self.plan
        if plan.mode == "single":
            predict = self.predict()
            with DAG(name="main"):
                predict(
                    name="predict", arguments={"kit": "{{workflow.parameters.kit-0}}", "shard": "0"}
                )
            return
        score = self.score()
        gather = self.gather(global_summary=plan.mode == "batch")
        compare = self.compare() if plan.mode == "compare" else None
        with DAG(name="main", parallelism=plan.parallelism):
            gathers = []
            for k in range(len(plan.kits)):
                kit = f"{{{{workflow.parameters.kit-{k}}}}}"
                s = _task(
                    score(
                        name=f"score-{k}",
                        arguments={"kit": kit, "shard": "{{item}}"},
                        with_param="{{workflow.parameters.shards}}",
                    )
                )
                g = _task(
                    gather(
                        name=f"gather-{k}",
                        arguments={
                            "kit": kit,
                            "results": f"{{{{tasks.score-{k}.outputs.parameters.result}}}}",
                        },
                    )
                )
                s >> g
                gathers.append(g)
            if compare is not None:
                summaries = ",".join(
                    f"{{{{tasks.gather-{k}.outputs.parameters.summary}}}}"
                    for k in range(len(plan.kits))
                )
                c = _task(compare(name="compare", arguments={"summaries": f"[{summaries}]"}))
                for g in gathers:
                    g >> c


def _task(value: Any) -> Task:
    """hera returns a Task when a template is called inside a DAG (typed loosely upstream)."""
    assert isinstance(value, Task)
    return value


def _spec_kwargs(plan: WorkflowPlan, argo: ArgoOptions) -> dict[str, Any]:
    kwargs: dict[str, Any] = {
        "entrypoint": "main",
        "namespace": argo.namespace,
        "parallelism": plan.parallelism,
    }
    if argo.service_account:
        kwargs["service_account_name"] = argo.service_account
    if argo.registry_secret:
        kwargs["image_pull_secrets"] = [argo.registry_secret]
    if argo.node_selector:
        kwargs["node_selector"] = dict(argo.node_selector)
    if argo.tolerations:
        kwargs["tolerations"] = [m.Toleration.model_validate(t) for t in argo.tolerations]
    if argo.active_deadline_seconds:
        kwargs["active_deadline_seconds"] = argo.active_deadline_seconds
    if argo.pod_gc:
        kwargs["pod_gc"] = m.PodGC(strategy=argo.pod_gc)
    if argo.ttl_seconds_after_finished is not None:
        kwargs["ttl_strategy"] = m.TTLStrategy(
            seconds_after_completion=argo.ttl_seconds_after_finished
        )
    return kwargs


def build_workflow(plan: WorkflowPlan, argo: ArgoOptions) -> Workflow:
    """The hera Workflow for ``plan``: deterministic name, labels, annotations and arguments."""
    builder = _Builder(plan, argo)
    jid = job_id(plan, argo)
    with Workflow(
        name=workflow_name(plan, argo),
        labels={MANAGED_BY: "kitflow", JOB_LABEL: jid, MODE_LABEL: plan.mode},
        annotations={KIT_ANNOTATION: json.dumps(list(plan.kits)), INPUTS_ANNOTATION: plan.inputs},
        arguments=builder.arguments(),
        **_spec_kwargs(plan, argo),
    ) as w:
        builder.populate(w)
    return w


def workflow_manifest(plan: WorkflowPlan, argo: ArgoOptions) -> dict[str, Any]:
    """The Workflow as a plain dict (what is POSTed, what ``--dry-run`` prints)."""
    manifest: dict[str, Any] = build_workflow(plan, argo).to_dict()
    return manifest


def template_name(plan: WorkflowPlan, argo: ArgoOptions) -> str:
    """Deterministic WorkflowTemplate name for plans of this shape and these options."""
    shape = {
        "mode": plan.mode,
        "kits": len(plan.kits),
        "image": argo.image,
        "entrypoint": plan.entrypoint.to_dict() if plan.entrypoint else None,
        "resources": _resources_dict(_effective_resources(plan, argo)),
        "batch_size": plan.batch_size,
        "retries": plan.retries,
        "registry": [plan.plain_http, plan.tls_verify],
        "parallelism": plan.parallelism,
    }
    digest = hashlib.sha256(json.dumps(shape, sort_keys=True).encode()).hexdigest()[:12]
    return f"kitflow-{plan.mode}-{digest}"


def workflow_template_manifest(plan: WorkflowPlan, argo: ArgoOptions) -> dict[str, Any]:
    """A WorkflowTemplate of the same shape as ``plan``'s Workflow, its kits, inputs, job and
    shards left as parameters so teams can submit it by name with their own values."""
    builder = _Builder(plan, argo)
    params = [
        Parameter(name="inputs"),
        Parameter(name="results-repo"),
        Parameter(name="job"),
        Parameter(name="shards", value=json.dumps(list(range(plan.shards)))),
    ]
    params += [Parameter(name=f"kit-{k}") for k in range(len(plan.kits))]
    kwargs = _spec_kwargs(plan, argo)
    with WorkflowTemplate(
        name=template_name(plan, argo),
        labels={MANAGED_BY: "kitflow", MODE_LABEL: plan.mode},
        arguments=params,
        **kwargs,
    ) as wt:
        builder.populate(wt)
    manifest: dict[str, Any] = wt.to_dict()
    return manifest


def template_parameters(plan: WorkflowPlan, argo: ArgoOptions) -> dict[str, str]:
    """The values to submit ``workflow_template_manifest(plan)`` with for this plan."""
    values = {p.name: str(p.value) for p in _Builder(plan, argo).arguments() if p.name}
    return values
