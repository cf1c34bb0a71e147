"""``ArgoWorkflowTrigger``: follows an Argo Workflow from the triggerer until it finishes, so the
deferred task holds no worker slot; stops the Workflow when a user kills the deferred task."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from typing import Any

from airflow.triggers.base import BaseTrigger, TriggerEvent

from kitflow_airflow.hooks.argo import ArgoHook

#: Consecutive failed status calls tolerated (network blips, API server restarts) before giving up.
MAX_STATUS_ERRORS = 5


def submission_from_dict(data: dict[str, Any]) -> Any:
    """Rebuild the core's ``ArgoSubmission`` from its plain-dict form."""
    from kitflow.inference.argo.backend import ArgoSubmission

    return ArgoSubmission(
        name=data["name"],
        namespace=data["namespace"],
        url=data.get("url"),
        uid=data.get("uid") or "",
    )


def submission_to_dict(sub: Any) -> dict[str, Any]:
    """The plain-dict (JSON, XCom, trigger kwargs) form of an ``ArgoSubmission``."""
    return {
        "name": sub.name,
        "namespace": sub.namespace,
        "url": getattr(sub, "url", None),
        "uid": getattr(sub, "uid", "") or "",
    }


class ArgoWorkflowTrigger(BaseTrigger):
    """Poll the Workflow's status every ``poll_interval`` seconds and fire one event when it ends.

    Event payload: ``{"status": "success" | "failed" | "timeout" | "error", "message",
    "workflow": WorkflowStatus dict, "submission": {...}}``. Holds only the connection id (never
    a token); the hook is rebuilt in the triggerer. ``cancel_on_kill`` stops the Workflow when a
    user marks the deferred task failed/success or clears it (``on_kill``); triggerer restarts
    and timeouts leave it running.
    """

    def __init__(
        self,
        *,
        submission: dict[str, Any],
        argo_conn_id: str | None = ArgoHook.default_conn_name,
        poll_interval: float = 10.0,
        timeout: float | None = None,
        cancel_on_kill: bool = True,
    ) -> None:
        super().__init__()  # type: ignore[no-untyped-call]
        self.submission = dict(submission)
        self.argo_conn_id = argo_conn_id
        self.poll_interval = poll_interval
        self.timeout = timeout
        self.cancel_on_kill = cancel_on_kill

    def serialize(self) -> tuple[str, dict[str, Any]]:
        """Class path and the kwargs that re-create this trigger (all JSON, no secrets)."""
        return (
            f"{type(self).__module__}.{type(self).__qualname__}",
            {
                "submission": self.submission,
                "argo_conn_id": self.argo_conn_id,
                "poll_interval": self.poll_interval,
                "timeout": self.timeout,
                "cancel_on_kill": self.cancel_on_kill,
            },
        )

    def _hook(self) -> ArgoHook:
        return ArgoHook(
            argo_conn_id=self.argo_conn_id,
            overrides={"namespace": self.submission.get("namespace")},
        )

    def _event(self, status: str, message: str, workflow: dict[str, Any] | None) -> TriggerEvent:
        return TriggerEvent(  # type: ignore[no-untyped-call]
            {
                "status": status,
                "message": message,
                "workflow": workflow or {},
                "submission": self.submission,
            }
        )

    async def run(self) -> AsyncIterator[TriggerEvent]:
        """Follow the Workflow; yield exactly one event."""
        from kitflow.inference.argo import backend

        hook = self._hook()
        try:
            options = await hook.aget_conn()
            sub = submission_from_dict(self.submission)
        except Exception as err:
            yield self._event("error", f"cannot reach Argo: {err}", None)
            return
        deadline = None if self.timeout is None else time.monotonic() + self.timeout
        errors = 0
        last: dict[str, Any] | None = None
        name = self.submission["name"]
        while True:
            try:
                st = await backend.astatus(sub, options)
                errors = 0
            except Exception as err:  # keep following through transient failures
                errors += 1
                self.log.warning("Status of Workflow %s failed (%d): %s", name, errors, err)
                if errors >= MAX_STATUS_ERRORS:
                    yield self._event("error", f"Workflow {name}: {err}", last)
                    return
            else:
                last = st.to_dict()
                if st.finished:
                    if st.succeeded:
                        yield self._event("success", f"Workflow {name} succeeded", last)
                    else:
                        msg = f"Workflow {name} ended {st.phase}: {st.message}"
                        yield self._event("failed", msg, last)
                    return
                self.log.info(
                    "Workflow %s is %s%s",
                    name,
                    st.phase or "Pending",
                    f" ({st.progress})" if st.progress else "",
                )
            if deadline is not None and time.monotonic() >= deadline:
                msg = f"Workflow {name} did not finish within {self.timeout:g}s; it keeps running"
                yield self._event("timeout", msg, last)
                return
            await asyncio.sleep(self.poll_interval)

    async def on_kill(self) -> None:
        """A user killed the deferred task: stop the Workflow (if ``cancel_on_kill``)."""
        if not self.cancel_on_kill:
            return
        from kitflow.inference.argo import backend

        options = await self._hook().aget_conn()
        sub = submission_from_dict(self.submission)
        self.log.info("Stopping Workflow %s (task killed)", sub.name)
        await asyncio.to_thread(backend.stop, sub, options)
