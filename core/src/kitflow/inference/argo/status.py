"""Workflow phases, the compact status record the plugins poll, and the failing-node message.

Shared by the Argo Server client and the Kubernetes client so both report failures the same way.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

TERMINAL_PHASES = frozenset({"Succeeded", "Failed", "Error"})
FAILED_PHASES = frozenset({"Failed", "Error"})


@dataclass(frozen=True)
class WorkflowStatus:
    """What a poller needs: phase, message, whether it is over, progress ("3/10"), outputs."""

    name: str
    namespace: str
    phase: str  # "", Pending, Running, Succeeded, Failed, Error
    message: str = ""
    finished: bool = False
    progress: str = ""
    outputs: dict[str, str] = field(default_factory=dict)  # global output parameters
    uid: str = ""

    @property
    def succeeded(self) -> bool:
        """True only for a finished, successful Workflow."""
        return self.phase == "Succeeded"

    @property
    def failed(self) -> bool:
        """True for a finished Workflow that ended Failed or Error."""
        return self.phase in FAILED_PHASES

    def to_dict(self) -> dict[str, Any]:
        """JSON-safe dict (for XCom, trigger events, metadata)."""
        return {
            "name": self.name,
            "namespace": self.namespace,
            "phase": self.phase,
            "message": self.message,
            "finished": self.finished,
            "progress": self.progress,
            "outputs": dict(self.outputs),
            "uid": self.uid,
        }


def phase_of(workflow: dict[str, Any]) -> str:
    """The Workflow's phase ("" while the controller has not looked at it yet)."""
    return str((workflow.get("status") or {}).get("phase") or "")


def is_finished(workflow: dict[str, Any]) -> bool:
    """Terminal phase reached (Argo has no Terminated phase; a terminated run ends Failed)."""
    return phase_of(workflow) in TERMINAL_PHASES


def global_outputs(workflow: dict[str, Any]) -> dict[str, str]:
    """``status.outputs.parameters`` (globalName outputs) as name → value."""
    params = ((workflow.get("status") or {}).get("outputs") or {}).get("parameters") or []
    return {str(p.get("name")): str(p.get("value", "")) for p in params if p.get("name")}


def failure_message(workflow: dict[str, Any]) -> str:
    """The most useful explanation of a failure: the failing leaf node's message, else the
    Workflow's own message, else the phase."""
    status = workflow.get("status") or {}
    nodes: dict[str, Any] = status.get("nodes") or {}
    candidates = []
    for node in nodes.values():
        if node.get("phase") in FAILED_PHASES and node.get("message"):
            # Leaf nodes (pods) say what really happened; group nodes repeat "child failed".
            leaf = node.get("type") in ("Pod", "Container") or not node.get("children")
            candidates.append((0 if leaf else 1, str(node.get("finishedAt") or ""), node))
    if candidates:
        candidates.sort(key=lambda c: (c[0], c[1]))
        node = candidates[0][2]
        label = node.get("displayName") or node.get("name") or "node"
        return f"{label}: {node['message']}"
    message = status.get("message")
    if message:
        return str(message)
    return f"workflow ended {phase_of(workflow) or 'without a phase'}"


def to_status(workflow: dict[str, Any]) -> WorkflowStatus:
    """Condense a Workflow object into a :class:`WorkflowStatus`."""
    meta = workflow.get("metadata") or {}
    status = workflow.get("status") or {}
    phase = phase_of(workflow)
    failed = phase in FAILED_PHASES
    return WorkflowStatus(
        name=str(meta.get("name", "")),
        namespace=str(meta.get("namespace", "")),
        phase=phase,
        message=failure_message(workflow) if failed else str(status.get("message") or ""),
        finished=phase in TERMINAL_PHASES,
        progress=str(status.get("progress") or ""),
        outputs=global_outputs(workflow),
        uid=str(meta.get("uid", "")),
    )
