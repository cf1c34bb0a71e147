"""An in-test executor for exactly the subset of Argo Workflows that kitflow's builder emits.

It runs a Workflow's DAG on this machine: each pod is a local process running the container's
``kitflow ...`` command from the test virtualenv, with the pod's volume mounts mapped into a
private directory. Supported: DAG templates (``depends`` joined by ``&&``, ``parallelism``,
fail-fast), ``withParam`` / ``withItems`` fan-out with ``{{item}}`` and ``{{item.key}}``,
input/output parameters (``valueFrom.path``, ``globalName``, loop aggregation as Argo does it),
``retryStrategy.limit``, emptyDir and secret volumes, env, ``workflowTemplateRef``. Fields
that only place or clean up pods (nodeSelector, tolerations, resources, serviceAccountName,
imagePullSecrets, podGC, ttlStrategy, activeDeadlineSeconds, retry backoff) are accepted and
mean nothing on one machine. Anything else raises
UnsupportedArgo at once, so the tests never pass on a feature the executor only pretends to run.
"""

from __future__ import annotations

import concurrent.futures as cf
import json
import os
import re
import subprocess
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

REF = re.compile(r"{{\s*([^}]+?)\s*}}")

SPEC_KEYS = {
    "entrypoint",
    "arguments",
    "templates",
    "parallelism",
    "serviceAccountName",
    "imagePullSecrets",
    "nodeSelector",
    "tolerations",
    "activeDeadlineSeconds",
    "podGC",
    "ttlStrategy",
}
TEMPLATE_KEYS = {
    "name",
    "container",
    "dag",
    "inputs",
    "outputs",
    "retryStrategy",
    "volumes",
    "parallelism",
}
CONTAINER_KEYS = {"image", "imagePullPolicy", "command", "args", "env", "resources", "volumeMounts"}
TASK_KEYS = {"name", "template", "arguments", "depends", "withParam", "withItems"}
RETRY_KEYS = {"limit", "retryPolicy", "backoff"}


class UnsupportedArgo(Exception):
    """The Workflow uses something this executor does not implement."""


class StepFailed(Exception):
    """A pod failed after its retries (message = what Argo would put on the node)."""


def _only(obj: dict[str, Any], allowed: set[str], where: str) -> None:
    extra = sorted(set(obj) - allowed)
    if extra:
        raise UnsupportedArgo(f"{where}: unsupported field(s) {extra}")


@dataclass
class Node:
    """One node of ``status.nodes`` (pods and the DAG itself)."""

    id: str
    display_name: str
    template: str
    type: str = "Pod"
    phase: str = "Running"
    message: str = ""
    outputs: dict[str, str] = field(default_factory=dict)
    attempts: int = 0

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "id": self.id,
            "name": self.id,
            "displayName": self.display_name,
            "templateName": self.template,
            "type": self.type,
            "phase": self.phase,
        }
        if self.message:
            out["message"] = self.message
        if self.outputs:
            out["outputs"] = {
                "parameters": [{"name": k, "value": v} for k, v in self.outputs.items()]
            }
        return out


class ArgoExecutor:
    """Runs Workflows; ``run(workflow)`` returns the final ``status`` (phase, message, nodes,
    global outputs) the way the controller would write it."""

    def __init__(
        self,
        kitflow: Path,
        workdir: Path,
        *,
        env: dict[str, str] | None = None,
        secrets: dict[str, dict[str, bytes]] | None = None,
        max_workers: int = 2,
        step_timeout: float = 300.0,
    ) -> None:
        self.kitflow = Path(kitflow)
        self.workdir = Path(workdir)
        self.env = dict(env or {})
        self.secrets = dict(secrets or {})
        self.max_workers = max_workers
        self.step_timeout = step_timeout
        self.templates_by_ref: dict[str, dict[str, Any]] = {}  # WorkflowTemplates by name
        self.commands: list[list[str]] = []  # every argv run, in start order
        self._lock = threading.Lock()
        self._pods = 0

    # -------------------------------------------------------------------------- entry point

    def run(self, workflow: dict[str, Any]) -> dict[str, Any]:
        """Execute ``workflow`` to the end; returns its status."""
        spec = dict(workflow["spec"])
        ref = spec.pop("workflowTemplateRef", None)
        if ref is not None:
            tpl = self.templates_by_ref.get(ref.get("name", ""))
            if tpl is None:
                raise UnsupportedArgo(f"workflowTemplateRef {ref} is not registered")
            merged = dict(tpl["spec"])
            merged["arguments"] = spec.pop("arguments", merged.get("arguments", {}))
            spec = merged
        _only(spec, SPEC_KEYS, "spec")
        name = workflow["metadata"]["name"]
        params = {
            p["name"]: str(p["value"])
            for p in (spec.get("arguments") or {}).get("parameters", [])
            if "value" in p
        }
        for p in (spec.get("arguments") or {}).get("parameters", []):
            if "value" not in p:
                raise UnsupportedArgo(f"workflow parameter {p['name']} has no value")
        self._ctx = {
            "workflow.name": name,
            "workflow.namespace": workflow["metadata"].get("namespace", ""),
        }
        self._ctx.update({f"workflow.parameters.{k}": v for k, v in params.items()})
        self._templates = {t["name"]: t for t in spec["templates"]}
        for t in spec["templates"]:
            _only(t, TEMPLATE_KEYS, f"template {t['name']}")
        self._spec_parallelism = spec.get("parallelism")
        self._nodes: dict[str, Node] = {}
        self._globals: dict[str, str] = {}
        root = Node(name, name, spec["entrypoint"], type="DAG")
        self._nodes[name] = root
        try:
            self._run_template(spec["entrypoint"], {}, name, name)
        except StepFailed as exc:
            root.phase, root.message = "Failed", str(exc)
        else:
            root.phase = "Succeeded"
        pods = [n for n in self._nodes.values() if n.type == "Pod"]
        done = sum(1 for n in pods if n.phase == "Succeeded")
        status: dict[str, Any] = {
            "phase": root.phase,
            "progress": f"{done}/{len(pods)}",
            "nodes": {n.id: n.to_json() for n in self._nodes.values()},
        }
        if root.message:
            status["message"] = root.message
        if self._globals:
            status["outputs"] = {
                "parameters": [{"name": k, "value": v} for k, v in self._globals.items()]
            }
        return status

    # -------------------------------------------------------------------------- templates

    def _run_template(
        self, name: str, inputs: dict[str, str], node_id: str, display: str
    ) -> dict[str, str]:
        tpl = self._templates.get(name)
        if tpl is None:
            raise UnsupportedArgo(f"unknown template {name}")
        declared = [p["name"] for p in (tpl.get("inputs") or {}).get("parameters", [])]
        _only(tpl.get("inputs") or {}, {"parameters"}, f"template {name} inputs")
        if sorted(declared) != sorted(inputs):
            raise UnsupportedArgo(f"template {name}: inputs {sorted(inputs)} != {declared}")
        if "dag" in tpl:
            self._run_dag(tpl, node_id)
            return {}
        if "container" in tpl:
            return self._run_pod(tpl, inputs, node_id, display)
        raise UnsupportedArgo(f"template {name}: only container and dag templates are supported")

    def _run_dag(self, tpl: dict[str, Any], node_id: str) -> None:
        _only(tpl["dag"], {"tasks"}, f"template {tpl['name']} dag")
        tasks = {t["name"]: t for t in tpl["dag"]["tasks"]}
        for t in tasks.values():
            _only(t, TASK_KEYS, f"task {t['name']}")
        limit = min(
            x for x in (tpl.get("parallelism"), self._spec_parallelism, self.max_workers) if x
        )
        deps = {n: self._depends(t.get("depends", ""), tasks) for n, t in tasks.items()}
        results: dict[str, dict[str, str]] = {}
        done: set[str] = set()
        while len(done) < len(tasks):
            ready = [n for n in tasks if n not in done and deps[n] <= done]
            if not ready:
                raise UnsupportedArgo(f"dependency cycle among {sorted(set(tasks) - done)}")
            for task_name in ready:  # fail fast: the first failure stops the DAG
                results[task_name] = self._run_task(tasks[task_name], results, node_id, limit)
                done.add(task_name)

    @staticmethod
    def _depends(expr: str, tasks: dict[str, Any]) -> set[str]:
        if not expr.strip():
            return set()
        names = [p.strip() for p in expr.split("&&")]
        for n in names:
            if n not in tasks:
                raise UnsupportedArgo(f"depends {expr!r}: only 'a && b' of task names is supported")
        return set(names)

    def _run_task(
        self, task: dict[str, Any], results: dict[str, dict[str, str]], parent: str, limit: int
    ) -> dict[str, str]:
        ctx = dict(self._ctx)
        for dep, outs in results.items():
            ctx.update({f"tasks.{dep}.outputs.parameters.{k}": v for k, v in outs.items()})
        args = task.get("arguments") or {}
        _only(args, {"parameters"}, f"task {task['name']} arguments")
        raw = {p["name"]: str(p["value"]) for p in args.get("parameters", [])}
        if "withParam" in task or "withItems" in task:
            if "withItems" in task:
                items = task["withItems"]
            else:
                items = json.loads(self._subst(task["withParam"], ctx, task["name"]))
            if not isinstance(items, list):
                raise StepFailed(f"withParam of {task['name']} is not a JSON list")

            def one(i: int, item: Any) -> dict[str, str]:
                c = dict(ctx)
                c["item"] = item if isinstance(item, str) else json.dumps(item)
                if isinstance(item, dict):
                    c.update({f"item.{k}": str(v) for k, v in item.items()})
                inputs = {k: self._subst(v, c, task["name"]) for k, v in raw.items()}
                shown = c["item"]
                return self._run_template(
                    task["template"],
                    inputs,
                    f"{parent}-{task['name']}-{i}",
                    f"{task['name']}({i}:{shown})",
                )

            with cf.ThreadPoolExecutor(max_workers=limit) as pool:
                futures = [pool.submit(one, i, item) for i, item in enumerate(items)]
                outputs = []
                failure = None
                for f in futures:
                    try:
                        outputs.append(f.result())
                    except StepFailed as exc:
                        failure = failure or exc
                if failure is not None:
                    raise failure
            return self._aggregate(outputs)
        inputs = {k: self._subst(v, ctx, task["name"]) for k, v in raw.items()}
        return self._run_template(
            task["template"], inputs, f"{parent}-{task['name']}", task["name"]
        )

    @staticmethod
    def _aggregate(outputs: list[dict[str, str]]) -> dict[str, str]:
        """Argo's loop aggregation: a JSON list per parameter, of parsed values when every
        value is JSON, else of the raw strings."""
        names = {k for o in outputs for k in o}
        result = {}
        for name in names:
            values = [o.get(name, "") for o in outputs]
            try:
                parsed: list[Any] = [json.loads(v) for v in values]
            except ValueError:
                parsed = values
            result[name] = json.dumps(parsed)
        return result

    def _subst(self, text: str, ctx: dict[str, str], where: str) -> str:
        def repl(match: re.Match[str]) -> str:
            key = match.group(1)
            if key not in ctx:
                raise UnsupportedArgo(f"{where}: cannot resolve {{{{{key}}}}}")
            return ctx[key]

        return REF.sub(repl, text)

    # -------------------------------------------------------------------------- pods

    def _run_pod(
        self, tpl: dict[str, Any], inputs: dict[str, str], node_id: str, display: str
    ) -> dict[str, str]:
        container = tpl["container"]
        _only(container, CONTAINER_KEYS, f"template {tpl['name']} container")
        retry = tpl.get("retryStrategy") or {}
        _only(retry, RETRY_KEYS, f"template {tpl['name']} retryStrategy")
        if retry.get("retryPolicy", "OnFailure") not in ("Always", "OnFailure", "OnError"):
            raise UnsupportedArgo(f"retryPolicy {retry['retryPolicy']}")
        attempts = 1 + int(retry.get("limit", 0))
        node = Node(node_id, display, tpl["name"])
        with self._lock:
            self._nodes[node_id] = node
        ctx = dict(self._ctx)
        ctx.update({f"inputs.parameters.{k}": v for k, v in inputs.items()})
        last = ""
        for attempt in range(attempts):
            node.attempts = attempt + 1
            ok, outputs, last = self._attempt(tpl, container, ctx, display)
            if ok:
                node.phase, node.outputs = "Succeeded", outputs
                for p in (tpl.get("outputs") or {}).get("parameters", []):
                    if p.get("globalName"):
                        with self._lock:
                            self._globals[p["globalName"]] = outputs[p["name"]]
                return outputs
        node.phase, node.message = "Failed", last
        raise StepFailed(f"{display}: {last}")

    def _attempt(
        self, tpl: dict[str, Any], container: dict[str, Any], ctx: dict[str, str], display: str
    ) -> tuple[bool, dict[str, str], str]:
        with self._lock:
            self._pods += 1
            pod_dir = self.workdir / f"pod-{self._pods:04d}"
        pod_dir.mkdir(parents=True)
        mounts = self._mounts(tpl, container, pod_dir)

        def local(text: str) -> str:
            text = self._subst(text, ctx, tpl["name"])
            for mount, real in mounts:
                if text == mount or text.startswith(mount + "/"):
                    return str(real) + text[len(mount) :]
                text = text.replace(f"={mount}/", f"={real}/")
            return text

        command = [local(c) for c in container.get("command", [])]
        if command[:1] != ["kitflow"]:
            raise UnsupportedArgo(f"template {tpl['name']}: only 'kitflow' commands run here")
        argv = [str(self.kitflow), *command[1:], *(local(a) for a in container.get("args", []))]
        env = {k: v for k, v in os.environ.items() if not k.startswith(("KITOPS_", "DOCKER_"))}
        env.update(self.env)
        for e in container.get("env", []):
            _only(e, {"name", "value"}, f"template {tpl['name']} env")
            env[e["name"]] = local(e["value"])
        with self._lock:
            self.commands.append(argv)
        try:
            proc = subprocess.run(
                argv,
                env=env,
                cwd=pod_dir,
                capture_output=True,
                text=True,
                timeout=self.step_timeout,
                check=False,
            )
        except subprocess.TimeoutExpired:
            return False, {}, f"pod {display} timed out"
        (pod_dir / "main.log").write_text(proc.stdout + proc.stderr)
        if proc.returncode != 0:
            lines = [x for x in proc.stderr.splitlines() if x.strip()]
            message = lines[-1] if lines else f"exit code {proc.returncode}"
            return False, {}, f"Error (exit code {proc.returncode}): {message}"
        outputs = {}
        outs = tpl.get("outputs") or {}
        _only(outs, {"parameters"}, f"template {tpl['name']} outputs")
        for p in outs.get("parameters", []):
            _only(p, {"name", "valueFrom", "globalName"}, f"output {p['name']}")
            _only(p["valueFrom"], {"path"}, f"output {p['name']} valueFrom")
            path = Path(local(p["valueFrom"]["path"]))
            if not path.is_file():
                return False, {}, f"output parameter {p['name']}: {p['valueFrom']['path']} missing"
            outputs[p["name"]] = path.read_text().strip()
        return True, outputs, ""

    def _mounts(
        self, tpl: dict[str, Any], container: dict[str, Any], pod_dir: Path
    ) -> list[tuple[str, Path]]:
        volumes = {v["name"]: v for v in tpl.get("volumes", [])}
        mounts = []
        for m in container.get("volumeMounts", []):
            _only(m, {"name", "mountPath"}, "volumeMount")
            vol = volumes.get(m["name"])
            if vol is None:
                raise UnsupportedArgo(f"volumeMount {m['name']} has no volume")
            real = pod_dir / m["mountPath"].lstrip("/")
            real.mkdir(parents=True, exist_ok=True)
            if "secret" in vol:
                secret = self.secrets.get(vol["secret"]["secretName"])
                if secret is None:
                    raise StepFailed(f"secret {vol['secret']['secretName']} not found")
                for item in vol["secret"].get("items") or [{"key": k, "path": k} for k in secret]:
                    (real / item["path"]).write_bytes(secret[item["key"]])
            elif "emptyDir" not in vol:
                raise UnsupportedArgo(f"volume {m['name']}: only emptyDir and secret")
            mounts.append((m["mountPath"].rstrip("/"), real))
        return sorted(mounts, key=lambda x: -len(x[0]))
