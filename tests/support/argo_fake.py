"""Fake Argo Server and fake Kubernetes API on 127.0.0.1 for the Argo backend's tests.

Both keep Workflows in memory and move them through scripted phase progressions (one step per
read, or one step per watch event), answer 401/404/409 like the real servers, and can drop a
watch stream part-way. Request bodies the Argo Server receives are validated against the
request definitions of ``swagger.json`` made strict (unknown fields rejected). A ``controller``
callback (e.g. the in-test executor) can run submitted Workflows for real.
"""

from __future__ import annotations

import copy
import itertools
import json
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, unquote, urlparse

import pytest
from jsonschema import Draft4Validator, Draft202012Validator

DATA = Path(__file__).resolve().parent.parent / "data" / "argo"
SCHEMA_PATH = DATA / "schema.json"
SWAGGER_PATH = DATA / "swagger.json"
WF = "io.argoproj.workflow.v1alpha1"


def _strict_definitions(definitions: dict[str, Any]) -> dict[str, Any]:
    """IntOrString admits integers; every object with properties rejects unknown fields."""
    defs = copy.deepcopy(definitions)
    defs["io.k8s.apimachinery.pkg.util.intstr.IntOrString"] = {"type": ["string", "integer"]}
    for value in defs.values():
        if value.get("type") == "object" and "properties" in value:
            value.setdefault("additionalProperties", False)
    return defs


_cache: dict[tuple[str, str], Any] = {}


def strict_validator(kind: str = "Workflow") -> Draft202012Validator:
    """A validator for ``kind`` (Workflow, WorkflowTemplate) from schema.json made strict."""
    key = ("schema", kind)
    if key not in _cache:
        schema = json.loads(SCHEMA_PATH.read_text())
        _cache[key] = Draft202012Validator(
            {
                "$schema": schema["$schema"],
                "definitions": _strict_definitions(schema["definitions"]),
                "$ref": f"#/definitions/{WF}.{kind}",
            }
        )
    validator: Draft202012Validator = _cache[key]
    return validator


def swagger_validator(definition: str) -> Draft4Validator:
    """A validator for a swagger.json definition (request or response body), made strict."""
    key = ("swagger", definition)
    if key not in _cache:
        if ("swagger", "") not in _cache:
            swagger = json.loads(SWAGGER_PATH.read_text())
            _cache[("swagger", "")] = _strict_definitions(swagger["definitions"])
        defs = _cache[("swagger", "")]
        _cache[key] = Draft4Validator({"definitions": defs, "$ref": f"#/definitions/{definition}"})
    validator: Draft4Validator = _cache[key]
    return validator


def schema_errors(validator: Any, doc: Any) -> list[str]:
    """Readable errors (path: message), empty when valid."""
    return [
        f"{'/'.join(str(p) for p in e.absolute_path)}: {e.message}"
        for e in validator.iter_errors(doc)
    ]


# ----------------------------------------------------------------------------- shared state

Step = dict[str, Any]  # a status (phase, message, progress, nodes, outputs) applied in turn


def succeeded_steps(outputs: dict[str, str] | None = None) -> list[Step]:
    """Pending → Running → Succeeded (with global output parameters)."""
    final: Step = {"phase": "Succeeded", "progress": "1/1"}
    if outputs:
        final["outputs"] = {"parameters": [{"name": k, "value": v} for k, v in outputs.items()]}
    return [{"phase": "Pending"}, {"phase": "Running", "progress": "0/1"}, final]


def failed_steps(node_message: str, display_name: str = "score-0(0:0)") -> list[Step]:
    """Running → Failed, with a failing pod node carrying ``node_message``."""
    nodes = {
        "wf": {
            "id": "wf",
            "displayName": "wf",
            "type": "DAG",
            "phase": "Failed",
            "message": "child 'wf-1' failed",
            "children": ["wf-1"],
        },
        "wf-1": {
            "id": "wf-1",
            "displayName": display_name,
            "type": "Pod",
            "phase": "Failed",
            "message": node_message,
            "finishedAt": "2026-01-01T00:00:00Z",
        },
    }
    return [
        {"phase": "Running", "progress": "0/1"},
        {"phase": "Failed", "progress": "0/1", "message": "child 'wf-1' failed", "nodes": nodes},
    ]


@dataclass
class FakeWorkflows:
    """Workflows held by a fake server; tests script how each one progresses."""

    default_steps: list[Step] = field(default_factory=succeeded_steps)
    objects: dict[tuple[str, str], dict[str, Any]] = field(default_factory=dict)
    templates: dict[tuple[str, str], dict[str, Any]] = field(default_factory=dict)
    steps: dict[str, list[Step]] = field(default_factory=dict)  # name → remaining steps
    scripted: dict[str, list[Step]] = field(default_factory=dict)  # name → steps on create
    logs: dict[str, list[tuple[str, str]]] = field(default_factory=dict)
    controller: Callable[[dict[str, Any]], Step] | None = None
    #: >0: a DELETE only marks the Workflow (deletionTimestamp, a finalizer) and it goes away
    #: after this many further reads of it, as when a controller still holds a finalizer.
    finalizer_reads: int = 0
    #: Argo Server only: GET of a deleted Workflow answers its archived copy (workflow archive).
    archive: bool = False
    archived: dict[tuple[str, str], dict[str, Any]] = field(default_factory=dict)
    deleted: list[tuple[str, str, str]] = field(default_factory=list)  # (ns, name, uid) gone
    pending_reads: dict[tuple[str, str], int] = field(default_factory=dict)
    lock: threading.RLock = field(default_factory=threading.RLock)
    versions: Iterator[int] = field(default_factory=lambda: itertools.count(100))
    changed: threading.Condition = field(init=False)

    def __post_init__(self) -> None:
        self.changed = threading.Condition(self.lock)

    def script(self, name: str, steps: list[Step]) -> None:
        """Make the Workflow called ``name`` go through ``steps`` once it is created."""
        self.scripted[name] = [dict(s) for s in steps]

    def _touch(self, wf: dict[str, Any]) -> None:
        wf["metadata"]["resourceVersion"] = str(next(self.versions))
        labels = wf["metadata"].setdefault("labels", {})
        phase = (wf.get("status") or {}).get("phase", "")
        if phase:
            labels["workflows.argoproj.io/phase"] = phase
        labels["workflows.argoproj.io/completed"] = str(
            phase in ("Succeeded", "Failed", "Error")
        ).lower()
        self.changed.notify_all()

    def create(self, ns: str, wf: dict[str, Any]) -> tuple[int, dict[str, Any]]:
        with self.lock:
            wf = copy.deepcopy(wf)
            meta = wf.setdefault("metadata", {})
            if not meta.get("name"):
                meta["name"] = meta.get("generateName", "wf-") + f"{next(self.versions):05d}"
            name = meta["name"]
            if (ns, name) in self.objects:
                return 409, {"code": 6, "message": f'workflows.argoproj.io "{name}" already exists'}
            meta["namespace"] = ns
            meta["uid"] = f"uid-{name}-{next(self.versions)}"
            meta["creationTimestamp"] = "2026-01-01T00:00:00Z"
            wf.setdefault("apiVersion", "argoproj.io/v1alpha1")
            wf.setdefault("kind", "Workflow")
            wf["status"] = {}
            self.objects[(ns, name)] = wf
            self._touch(wf)
            if self.controller is not None:
                self._start_controller(ns, name, copy.deepcopy(wf))
            else:
                self.steps[name] = [dict(s) for s in self.scripted.get(name, self.default_steps)]
            return 200, copy.deepcopy(wf)

    def _start_controller(self, ns: str, name: str, wf: dict[str, Any]) -> None:
        controller = self.controller
        assert controller is not None
        self.steps[name] = []
        uid = wf["metadata"]["uid"]
        self.apply(ns, name, {"phase": "Running"}, uid=uid)

        def run() -> None:
            try:
                final = controller(wf)
            except Exception as exc:
                final = {"phase": "Error", "message": f"controller: {exc}"}
            self.apply(ns, name, final, uid=uid)

        threading.Thread(target=run, daemon=True).start()

    def apply(self, ns: str, name: str, step: Step, uid: str | None = None) -> None:
        """Merge ``step`` into the Workflow's status (as the controller would); with ``uid``
        only into that Workflow (not a later one created under the same name)."""
        with self.lock:
            wf = self.objects.get((ns, name))
            if wf is None or (uid is not None and wf["metadata"]["uid"] != uid):
                return
            if (wf.get("status") or {}).get("phase") in ("Succeeded", "Failed", "Error"):
                return
            wf["status"] = {**(wf.get("status") or {}), **copy.deepcopy(step)}
            self._touch(wf)

    def advance(self, ns: str, name: str) -> bool:
        """Apply the next scripted step; False when none is left."""
        with self.lock:
            remaining = self.steps.get(name)
            if not remaining:
                return False
            self.apply(ns, name, remaining.pop(0))
            return True

    def delete(self, ns: str, name: str, uid: str | None) -> tuple[int, str, dict[str, Any]]:
        """Kubernetes delete semantics: 404 if absent; 409 if a UID precondition names another
        object; else the object goes at once, or (``finalizer_reads``) is only marked with a
        deletionTimestamp and goes later. Returns (code, message, the object as deleted)."""
        with self.lock:
            wf = self.objects.get((ns, name))
            if wf is None:
                return 404, f'workflows.argoproj.io "{name}" not found', {}
            actual = wf["metadata"]["uid"]
            if uid and uid != actual:
                return (
                    409,
                    f"Precondition failed: UID in precondition: {uid}, UID in object meta: "
                    f"{actual}",
                    {},
                )
            if self.finalizer_reads > 0:
                meta = wf["metadata"]
                if not meta.get("deletionTimestamp"):
                    meta["deletionTimestamp"] = "2026-01-01T00:00:01Z"
                    meta["finalizers"] = ["workflows.argoproj.io/artifact-gc"]
                    self.pending_reads[(ns, name)] = self.finalizer_reads
                    self._touch(wf)
                return 200, "", copy.deepcopy(wf)
            self._remove(ns, name)
            return 200, "", copy.deepcopy(wf)

    def _remove(self, ns: str, name: str) -> None:
        wf = self.objects.pop((ns, name))
        self.pending_reads.pop((ns, name), None)
        self.steps.pop(name, None)
        self.deleted.append((ns, name, wf["metadata"]["uid"]))
        if self.archive:
            self.archived[(ns, name)] = wf
        self.changed.notify_all()

    def reap(self, ns: str, name: str) -> None:
        """A read of a Workflow being deleted: count down to its finalizer being removed."""
        with self.lock:
            left = self.pending_reads.get((ns, name))
            if left is None:
                return
            if left <= 1:
                self._remove(ns, name)
            else:
                self.pending_reads[(ns, name)] = left - 1

    def shutdown(self, ns: str, name: str, strategy: str) -> dict[str, Any] | None:
        with self.lock:
            wf = self.objects.get((ns, name))
            if wf is None:
                return None
            wf.setdefault("spec", {})["shutdown"] = strategy
            self.steps[name] = []
            self.apply(
                ns, name, {"phase": "Failed", "message": f"Stopped with strategy '{strategy}'"}
            )
            return copy.deepcopy(wf)


def _matches(labels: dict[str, str], selector: str | None) -> bool:
    if not selector:
        return True
    for term in selector.split(","):
        term = term.strip()
        if "!=" in term:
            k, v = term.split("!=", 1)
            if labels.get(k) == v:
                return False
        elif "=" in term:
            k, v = term.split("=", 1)
            if labels.get(k.rstrip("=")) != v.lstrip("="):
                return False
        elif term and term not in labels:
            return False
    return True


def _trim(obj: dict[str, Any], fields: str) -> dict[str, Any]:
    """The Argo Server's ``fields`` parameter: keep only the listed dotted paths."""
    out: dict[str, Any] = {}
    for path in fields.split(","):
        keys = path.strip().split(".")
        src: Any = obj
        for key in keys:
            src = src.get(key) if isinstance(src, dict) else None
        if src is None:
            continue
        dst = out
        for key in keys[:-1]:
            dst = dst.setdefault(key, {})
        dst[keys[-1]] = copy.deepcopy(src)
    return out


def _first(query: dict[str, list[str]], key: str) -> str | None:
    """The first value of a query parameter, None when absent."""
    values = query.get(key)
    return values[0] if values else None


def _delete_parameters() -> set[str]:
    """The query parameters swagger.json declares for DELETE /api/v1/workflows/{ns}/{name}."""
    key = ("swagger-delete", "")
    if key not in _cache:
        swagger = json.loads(SWAGGER_PATH.read_text())
        op = swagger["paths"]["/api/v1/workflows/{namespace}/{name}"]["delete"]
        _cache[key] = {p["name"] for p in op["parameters"] if p["in"] == "query"}
    params: set[str] = _cache[key]
    return params


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True


class _Base:
    """Start/stop plumbing and request recording shared by both fakes."""

    def __init__(self, token: str | None) -> None:
        self.token = token
        self.state = FakeWorkflows()
        self.requests: list[tuple[str, str, dict[str, list[str]]]] = []
        self.watch_drop_after: int | None = None  # events per connection before dropping
        self.watch_connections = 0
        self.fail_next: list[int] = []  # HTTP codes to answer the next requests with
        fake = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: Any) -> None:
                pass

            def _dispatch(self) -> None:
                parsed = urlparse(self.path)
                query = parse_qs(parsed.query)
                fake.requests.append((self.command, parsed.path, query))
                length = int(self.headers.get("Content-Length") or 0)
                raw = self.rfile.read(length) if length else b""
                auth = self.headers.get("Authorization")
                if fake.token is not None and auth != f"Bearer {fake.token}":
                    fake._error(self, 401, "token not valid")
                    return
                if fake.fail_next:
                    fake._error(self, fake.fail_next.pop(0), "injected failure")
                    return
                try:
                    body = json.loads(raw) if raw else None
                except ValueError:
                    fake._error(self, 400, "body is not JSON")
                    return
                fake.handle(self, self.command, unquote(parsed.path), query, body)

            do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = _dispatch

        self._server = _Server(("127.0.0.1", 0), Handler)
        self.port = self._server.server_address[1]
        self.url = f"http://127.0.0.1:{self.port}"
        self._thread = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )

    def start(self) -> _Base:
        self._thread.start()
        return self

    def stop(self) -> None:
        with self.state.lock:
            self.state.changed.notify_all()
        self._server.shutdown()
        self._server.server_close()

    def handle(
        self,
        req: BaseHTTPRequestHandler,
        method: str,
        path: str,
        query: dict[str, list[str]],
        body: Any,
    ) -> None:  # pragma: no cover
        raise NotImplementedError

    def _error(self, req: BaseHTTPRequestHandler, code: int, message: str) -> None:
        self._send(
            req,
            code,
            {
                "code": {400: 3, 401: 16, 403: 7, 404: 5, 409: 6}.get(code, 2),
                "message": message,
                "details": [],
            },
        )

    @staticmethod
    def _send(req: BaseHTTPRequestHandler, code: int, body: Any) -> None:
        data = json.dumps(body).encode()
        req.send_response(code)
        req.send_header("Content-Type", "application/json")
        req.send_header("Content-Length", str(len(data)))
        req.end_headers()
        req.wfile.write(data)

    @staticmethod
    def _start_stream(req: BaseHTTPRequestHandler, content_type: str) -> None:
        req.send_response(200)
        req.send_header("Content-Type", content_type)
        req.send_header("Connection", "close")
        req.end_headers()
        req.close_connection = True

    def _stream_workflow(
        self,
        req: BaseHTTPRequestHandler,
        ns: str,
        name: str,
        emit: Callable[[dict[str, Any]], bytes],
    ) -> None:
        """Send the Workflow each time it changes: scripted steps are applied one per event;
        with a controller, waits for its updates. Drops after ``watch_drop_after`` events."""
        self.watch_connections += 1
        sent = 0
        state = self.state
        last_version = None
        while True:
            with state.lock:
                wf = state.objects.get((ns, name))
                if wf is None:
                    return
                if state.steps.get(name):
                    state.advance(ns, name)
                elif wf["metadata"]["resourceVersion"] == last_version:
                    if wf.get("status", {}).get("phase") in ("Succeeded", "Failed", "Error"):
                        return
                    state.changed.wait(timeout=0.5)
                    continue
                wf = copy.deepcopy(state.objects[(ns, name)])
            last_version = wf["metadata"]["resourceVersion"]
            if self.watch_drop_after is not None and sent >= self.watch_drop_after:
                return  # the connection closes: the client sees the stream end early
            try:
                req.wfile.write(emit(wf))
                req.wfile.flush()
            except OSError:
                return
            sent += 1
            if wf.get("status", {}).get("phase") in ("Succeeded", "Failed", "Error"):
                return


# ----------------------------------------------------------------------------- Argo Server


class FakeArgoServer(_Base):
    """The Argo Server endpoints kitflow uses (``/api/v1/workflows``, ``/workflow-events``,
    ``/workflow-templates``, ``/log``, ``/stop``, ``/terminate``, ``/submit``)."""

    def handle(
        self,
        req: BaseHTTPRequestHandler,
        method: str,
        path: str,
        query: dict[str, list[str]],
        body: Any,
    ) -> None:
        parts = [p for p in path.split("/") if p]
        state = self.state
        if parts[:2] != ["api", "v1"] or len(parts) < 4:
            self._error(req, 404, f"no route {path}")
            return
        kind, ns, rest = parts[2], parts[3], parts[4:]
        if kind == "workflows":
            if not rest and method == "POST":
                if not self._valid(req, f"{WF}.WorkflowCreateRequest", body):
                    return
                code, out = state.create(ns, body["workflow"])
                self._send(req, code, out)
            elif not rest and method == "GET":
                selector = _first(query, "listOptions.labelSelector")
                with state.lock:
                    items = [
                        copy.deepcopy(w)
                        for (n, _), w in sorted(state.objects.items())
                        if n == ns and _matches(w["metadata"].get("labels", {}), selector)
                    ]
                self._send(req, 200, {"metadata": {}, "items": items or None})
            elif rest == ["submit"] and method == "POST":
                if not self._valid(req, f"{WF}.WorkflowSubmitRequest", body):
                    return
                self._submit(req, ns, body)
            elif len(rest) == 1 and method == "GET":
                with state.lock:
                    state.reap(ns, rest[0])
                    wf = state.objects.get((ns, rest[0]))
                    if wf is None:  # the server falls back to the workflow archive
                        wf = state.archived.get((ns, rest[0]))
                    else:
                        state.advance(ns, rest[0])
                    if wf is None:
                        self._error(req, 404, f'workflows.argoproj.io "{rest[0]}" not found')
                        return
                    fields = (query.get("fields") or [""])[0]
                    self._send(req, 200, _trim(wf, fields) if fields else wf)
            elif len(rest) == 1 and method == "DELETE":
                self._delete(req, ns, rest[0], query)
            elif len(rest) == 2 and rest[1] in ("stop", "terminate") and method == "PUT":
                definition = (
                    "WorkflowStopRequest" if rest[1] == "stop" else "WorkflowTerminateRequest"
                )
                if not self._valid(req, f"{WF}.{definition}", body):
                    return
                stopped = state.shutdown(ns, rest[0], rest[1].capitalize())
                if stopped is None:
                    self._error(req, 404, "not found")
                else:
                    self._send(req, 200, stopped)
            elif len(rest) == 2 and rest[1] == "log" and method == "GET":
                if (ns, rest[0]) not in state.objects:
                    self._error(req, 404, "not found")
                    return
                pod = _first(query, "podName")
                self._start_stream(req, "application/json")
                for pod_name, content in state.logs.get(rest[0], []):
                    if pod is None or pod == pod_name:
                        line = {"result": {"podName": pod_name, "content": content}}
                        req.wfile.write(json.dumps(line).encode() + b"\n")
            else:
                self._error(req, 404, f"no route {method} {path}")
        elif kind == "workflow-events" and method == "GET":
            selector = (query.get("listOptions.fieldSelector") or [""])[0]
            if not selector.startswith("metadata.name="):
                self._error(req, 400, "kitflow's fake only watches one workflow by name")
                return
            name = selector.split("=", 1)[1]
            if (ns, name) not in state.objects:
                self._error(req, 404, "not found")
                return
            sse = "text/event-stream" in (req.headers.get("Accept") or "")
            self._start_stream(req, "text/event-stream" if sse else "application/json")

            def emit(wf: dict[str, Any]) -> bytes:
                line = json.dumps({"result": {"type": "MODIFIED", "object": wf}})
                return f"data: {line}\n\n".encode() if sse else line.encode() + b"\n"

            self._stream_workflow(req, ns, name, emit)
        elif kind == "workflow-templates":
            if not rest and method == "POST":
                if not self._valid(req, f"{WF}.WorkflowTemplateCreateRequest", body):
                    return
                tpl = copy.deepcopy(body["template"])
                name = tpl["metadata"]["name"]
                with state.lock:
                    if (ns, name) in state.templates:
                        self._error(req, 409, f'workflowtemplates "{name}" already exists')
                        return
                    tpl["metadata"]["namespace"] = ns
                    state.templates[(ns, name)] = tpl
                self._send(req, 200, tpl)
            elif len(rest) == 1 and method == "GET":
                tpl = state.templates.get((ns, rest[0]))
                if tpl is None:
                    self._error(req, 404, "not found")
                else:
                    self._send(req, 200, tpl)
            else:
                self._error(req, 404, f"no route {method} {path}")
        else:
            self._error(req, 404, f"no route {method} {path}")

    def _delete(
        self, req: BaseHTTPRequestHandler, ns: str, name: str, query: dict[str, list[str]]
    ) -> None:
        """WorkflowService_DeleteWorkflow: only the query parameters swagger.json declares;
        404 unless the Workflow is live or archived; a live one is deleted with the
        preconditions given (409 when the UID names another Workflow); WorkflowDeleteResponse
        is an empty object."""
        allowed = _delete_parameters()
        unknown = sorted(set(query) - allowed)
        if unknown:
            self._error(req, 400, f"unknown query parameters {unknown}")
            return
        uid = _first(query, "deleteOptions.preconditions.uid")
        with self.state.lock:
            live = (ns, name) in self.state.objects
            if not live and (ns, name) not in self.state.archived:
                self._error(req, 404, f'workflows.argoproj.io "{name}" not found')
                return
            if live:
                code, message, _ = self.state.delete(ns, name, uid)
                if code == 409:
                    self._error(req, 409, message)
                    return
        self._send(req, 200, {})

    def _valid(self, req: BaseHTTPRequestHandler, definition: str, body: Any) -> bool:
        errors = schema_errors(swagger_validator(definition), body)
        if body is None or errors:
            self._error(req, 400, f"bad {definition}: " + "; ".join(errors[:3]))
            return False
        return True

    def _submit(self, req: BaseHTTPRequestHandler, ns: str, body: dict[str, Any]) -> None:
        tpl = self.state.templates.get((ns, body.get("resourceName", "")))
        if body.get("resourceKind") != "WorkflowTemplate" or tpl is None:
            self._error(req, 404, "template not found")
            return
        opts = body.get("submitOptions") or {}
        values = dict(p.split("=", 1) for p in opts.get("parameters") or [])
        params = []
        for p in tpl["spec"].get("arguments", {}).get("parameters", []):
            params.append({"name": p["name"], "value": values.get(p["name"], p.get("value", ""))})
        wf = {
            "metadata": {
                "name": opts.get("name", ""),
                "generateName": tpl["metadata"]["name"] + "-",
                "labels": dict(x.split("=", 1) for x in (opts.get("labels") or "").split(",") if x),
            },
            "spec": {
                "workflowTemplateRef": {"name": tpl["metadata"]["name"]},
                "arguments": {"parameters": params},
            },
        }
        code, out = self.state.create(ns, wf)
        self._send(req, code, out)


# ----------------------------------------------------------------------------- Kubernetes API


class FakeKubeAPI(_Base):
    """The slice of the Kubernetes API kitflow's direct path uses: Workflow and
    WorkflowTemplate custom resources (create, get, list, watch, merge-patch, delete), pods and
    pod logs."""

    def __init__(self, token: str | None) -> None:
        super().__init__(token)
        self.pods: dict[str, list[str]] = {}  # workflow name → pod names

    def _status(self, req: BaseHTTPRequestHandler, code: int, reason: str, message: str) -> None:
        self._send(
            req,
            code,
            {
                "kind": "Status",
                "apiVersion": "v1",
                "status": "Failure",
                "message": message,
                "reason": reason,
                "code": code,
            },
        )

    def _error(self, req: BaseHTTPRequestHandler, code: int, message: str) -> None:
        reasons = {401: "Unauthorized", 404: "NotFound", 409: "AlreadyExists"}
        self._status(req, code, reasons.get(code, "BadRequest"), message)

    def handle(
        self,
        req: BaseHTTPRequestHandler,
        method: str,
        path: str,
        query: dict[str, list[str]],
        body: Any,
    ) -> None:
        parts = [p for p in path.split("/") if p]
        state = self.state
        if parts[:2] == ["api", "v1"] and len(parts) >= 5 and parts[4] == "pods":
            ns = parts[3]
            if len(parts) == 5:
                selector = (query.get("labelSelector") or [""])[0]
                wf_name = selector.split("=", 1)[1] if "=" in selector else ""
                items = [
                    {"metadata": {"name": p, "namespace": ns}} for p in self.pods.get(wf_name, [])
                ]
                self._send(req, 200, {"kind": "PodList", "items": items})
            elif len(parts) == 7 and parts[6] == "log":
                lines = [
                    c
                    for p, c in itertools.chain.from_iterable(state.logs.values())
                    if p == parts[5]
                ]
                data = ("\n".join(lines) + "\n").encode()
                req.send_response(200)
                req.send_header("Content-Type", "text/plain")
                req.send_header("Content-Length", str(len(data)))
                req.end_headers()
                req.wfile.write(data)
            else:
                self._error(req, 404, "no such pod route")
            return
        if parts[:3] != ["apis", "argoproj.io", "v1alpha1"] or len(parts) < 6:
            self._error(req, 404, f"no route {path}")
            return
        ns, plural, rest = parts[4], parts[5], parts[6:]
        if plural == "workflowtemplates":
            self._templates(req, method, ns, rest, body)
            return
        if plural != "workflows":
            self._error(req, 404, f"no route {path}")
            return
        if not rest and method == "POST":
            errors = schema_errors(strict_validator("Workflow"), body)
            if errors:
                self._status(req, 422, "Invalid", "; ".join(errors[:3]))
                return
            code, out = state.create(ns, body)
            if code == 409:
                self._error(req, 409, out["message"])
            else:
                self._send(req, 201, out)
        elif not rest and method == "GET" and (query.get("watch") or [""])[0] == "true":
            selector = (query.get("fieldSelector") or [""])[0]
            name = selector.split("=", 1)[1] if selector.startswith("metadata.name=") else ""
            if (ns, name) not in state.objects:
                self._error(req, 404, "not found")
                return
            self._start_stream(req, "application/json")

            def emit(wf: dict[str, Any]) -> bytes:
                return json.dumps({"type": "MODIFIED", "object": wf}).encode() + b"\n"

            self._stream_workflow(req, ns, name, emit)
        elif not rest and method == "GET":
            wanted = _first(query, "labelSelector")
            with state.lock:
                items = [
                    copy.deepcopy(w)
                    for (n, _), w in sorted(state.objects.items())
                    if n == ns and _matches(w["metadata"].get("labels", {}), wanted)
                ]
            self._send(req, 200, {"kind": "WorkflowList", "metadata": {}, "items": items})
        elif len(rest) == 1 and method == "GET":
            with state.lock:
                state.reap(ns, rest[0])
                if (ns, rest[0]) not in state.objects:
                    self._error(req, 404, f'workflows.argoproj.io "{rest[0]}" not found')
                    return
                state.advance(ns, rest[0])
                self._send(req, 200, state.objects[(ns, rest[0])])
        elif len(rest) == 1 and method == "PATCH":
            if req.headers.get("Content-Type") != "application/merge-patch+json":
                self._status(req, 415, "UnsupportedMediaType", "use a merge patch")
                return
            strategy = ((body or {}).get("spec") or {}).get("shutdown")
            patched = state.shutdown(ns, rest[0], strategy) if strategy else None
            if patched is None:
                self._error(req, 404, "not found")
            else:
                self._send(req, 200, patched)
        elif len(rest) == 1 and method == "DELETE":
            # The body is an optional meta/v1 DeleteOptions; preconditions.uid is honoured.
            if body is not None and (
                not isinstance(body, dict) or body.get("kind", "DeleteOptions") != "DeleteOptions"
            ):
                self._status(req, 400, "BadRequest", "the body must be a DeleteOptions")
                return
            uid = ((body or {}).get("preconditions") or {}).get("uid")
            code, message, out = state.delete(ns, rest[0], uid)
            if code == 409:
                self._status(req, 409, "Conflict", message)
            elif code == 404:
                self._error(req, 404, message)
            else:
                self._send(req, 200, out)
        else:
            self._error(req, 404, f"no route {method} {path}")

    def _templates(
        self, req: BaseHTTPRequestHandler, method: str, ns: str, rest: list[str], body: Any
    ) -> None:
        state = self.state
        if not rest and method == "POST":
            errors = schema_errors(strict_validator("WorkflowTemplate"), body)
            if errors:
                self._status(req, 422, "Invalid", "; ".join(errors[:3]))
                return
            name = body["metadata"]["name"]
            if (ns, name) in state.templates:
                self._error(req, 409, f'workflowtemplates.argoproj.io "{name}" already exists')
                return
            state.templates[(ns, name)] = copy.deepcopy(body)
            self._send(req, 201, body)
        elif len(rest) == 1 and method == "GET":
            tpl = state.templates.get((ns, rest[0]))
            if tpl is None:
                self._error(req, 404, "not found")
            else:
                self._send(req, 200, tpl)
        else:
            self._error(req, 404, "no route")


# ----------------------------------------------------------------------------- fixtures

ARGO_TOKEN = "fake-argo-token-123"


@pytest.fixture
def argo_server() -> Iterator[FakeArgoServer]:
    """A fake Argo Server on 127.0.0.1 that wants ``Bearer fake-argo-token-123``."""
    server = FakeArgoServer(ARGO_TOKEN)
    server.start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def kube_api() -> Iterator[FakeKubeAPI]:
    """A fake Kubernetes API on 127.0.0.1 that wants ``Bearer fake-argo-token-123``."""
    server = FakeKubeAPI(ARGO_TOKEN)
    server.start()
    try:
        yield server
    finally:
        server.stop()
