"""What the Argo Server client and the Kubernetes client share: HTTP error mapping, stream line
parsing, and ``wait`` (follow the watch stream, reconnect when it drops, fall back to polling)."""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, Self

import httpx

from kitflow.errors import ArgoError, WorkflowFailed
from kitflow.inference.argo.status import (
    FAILED_PHASES,
    WorkflowStatus,
    failure_message,
    is_finished,
    phase_of,
    to_status,
)

log = logging.getLogger(__name__)


class ArgoAPIError(ArgoError):
    """A non-2xx answer from the Argo Server or the Kubernetes API; ``status`` is the HTTP code."""

    def __init__(self, message: str, status: int | None = None) -> None:
        self.status = status
        super().__init__(message)


class WaitTimeout(ArgoError):
    """The Workflow did not finish within the timeout; it keeps running in the cluster."""

    def __init__(self, message: str, last: dict[str, Any] | None = None) -> None:
        self.last = last or {}
        super().__init__(message)


class StreamDropped(Exception):
    """A watch stream ended or broke before the Workflow finished (internal; triggers reconnect)."""


@dataclass(frozen=True)
class LogLine:
    """One line of a pod's log."""

    pod_name: str
    content: str


def bearer(token: str) -> str:
    """The Authorization header value: ARGO_TOKEN may or may not carry the "Bearer " prefix."""
    token = token.strip()
    if token.lower().startswith("bearer "):
        return "Bearer " + token[7:].strip()
    return "Bearer " + token


def error_message(response: httpx.Response) -> str:
    """The server's own explanation: grpc-gateway ``message`` or a Kubernetes Status ``message``."""
    try:
        body = response.json()
    except ValueError:
        return response.text.strip()[:300] or response.reason_phrase
    if isinstance(body, dict):
        error = body.get("error")
        msg = body.get("message") or (error.get("message") if isinstance(error, dict) else None)
        if msg:
            return str(msg)
    return response.reason_phrase


def raise_for(response: httpx.Response, what: str, where: str) -> None:
    """Turn a non-2xx response into an ArgoAPIError with one readable line (never the token)."""
    if response.is_success:
        return
    code = response.status_code
    detail = error_message(response)
    if code == 401:
        hint = "the token was refused; check ARGO_TOKEN (or the kubeconfig credentials)"
    elif code == 403:
        hint = "permission denied; the token's service account needs RBAC on workflows.argoproj.io"
    elif code == 404:
        hint = "not found"
    elif code == 409:
        hint = "already exists"
    else:
        hint = "request failed"
    raise ArgoAPIError(f"{what} at {where}: {hint} (HTTP {code}: {detail})", status=code)


def iter_stream(response: httpx.Response) -> Iterator[dict[str, Any]]:
    """Decode a streamed body: NDJSON lines or server-sent events (``data: {...}``)."""
    for raw in response.iter_lines():
        line = raw.strip()
        if not line or line.startswith(":") or line.startswith("event:"):
            continue
        if line.startswith("data:"):
            line = line[5:].strip()
        try:
            item = json.loads(line)
        except ValueError as exc:
            raise StreamDropped(f"undecodable stream line: {line[:80]!r}") from exc
        if isinstance(item, dict):
            yield item


class WorkflowClientBase:
    """Operations common to both transports, written once over ``get`` and ``watch``."""

    namespace: str
    base_url: str
    _http: httpx.Client
    #: What transport errors say could not be reached ("the Argo Server", ...).
    service: str = "the server"
    max_reconnects: int = 5

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        """Release the connection pool."""
        self._http.close()

    def __repr__(self) -> str:  # never shows the token
        return f"{type(self).__name__}({self.base_url!r}, namespace={self.namespace!r})"

    def _call(
        self,
        method: str,
        path: str,
        what: str,
        *,
        json: Any = None,
        params: dict[str, Any] | None = None,
        headers: dict[str, str] | None = None,
    ) -> dict[str, Any]:
        """One JSON request; transport failures and error answers raise as ``what``."""
        try:
            response = self._http.request(method, path, json=json, params=params, headers=headers)
        except httpx.TransportError as exc:
            raise ArgoError(f"cannot reach {self.service} at {self.base_url}: {exc}") from exc
        raise_for(response, what, self.base_url)
        body = response.json() if response.content else {}
        return body if isinstance(body, dict) else {}

    def get(self, name: str) -> dict[str, Any]:  # pragma: no cover - implemented by subclasses
        raise NotImplementedError

    def watch(
        self, name: str, resource_version: str | None = None, timeout: float | None = None
    ) -> Iterator[dict[str, Any]]:  # pragma: no cover - implemented by subclasses
        raise NotImplementedError

    def delete(self, name: str, uid: str | None = None) -> None:  # pragma: no cover - subclasses
        raise NotImplementedError

    def _paged(self, read_page: Callable[[str | None], dict[str, Any]]) -> list[dict[str, Any]]:
        """Every item of a paged list: ``read_page(continue_token)`` reads one page (None first)
        and the page's ``metadata.continue`` names the next."""
        items: list[dict[str, Any]] = []
        cont = None
        while True:
            body = read_page(cont)
            items.extend(body.get("items") or [])
            cont = (body.get("metadata") or {}).get("continue")
            if not cont:
                return items

    @contextmanager
    def _stream(
        self,
        path: str,
        what: str,
        params: dict[str, Any],
        timeout: httpx.Timeout,
        headers: dict[str, str] | None = None,
    ) -> Iterator[Iterator[dict[str, Any]]]:
        """A streamed GET (watch, logs) as its JSON items; an error answer raises as ``what``."""
        with self._http.stream(
            "GET", path, params=params, headers=headers, timeout=timeout
        ) as response:
            if not response.is_success:
                response.read()
                raise_for(response, what, self.base_url)
            yield iter_stream(response)

    def create_or_get(self, post: Callable[[], dict[str, Any]], name: str | None) -> dict[str, Any]:
        """``post`` (a create call); on 409 the existing Workflow of that name instead. If that
        one vanishes between the 409 and the read (a deletion completing), post again."""
        for _ in range(5):
            try:
                return post()
            except ArgoAPIError as exc:
                if exc.status != 409 or not name:
                    raise
            log.info("workflow %s already exists; re-attaching", name)
            try:
                return self.get(name)
            except ArgoAPIError as exc:
                if exc.status != 404:
                    raise
        raise ArgoError(
            f"workflow {self.namespace}/{name} keeps appearing and vanishing; try again"
        )

    def get_status(self, name: str) -> WorkflowStatus:
        """Phase, message, finished, progress and global outputs of one Workflow (cheap poll)."""
        return to_status(self.get(name))

    def create_replacing_failed(
        self,
        create: Callable[[], dict[str, Any]],
        name: str,
        *,
        timeout: float = 120.0,
    ) -> dict[str, Any]:
        """Create a Workflow through ``create`` (which answers 409 with the existing one), but
        replace an existing one that ended Failed/Error or is being deleted.

        Safe against several submitters racing on the same name: the delete carries a UID
        precondition, so it can only ever remove the failed Workflow that was seen, never a
        fresh one another submitter has just created; then ``create`` is repeated until it
        either makes the new Workflow or returns one with another UID (someone else's fresh
        run, which is re-attached to). Waiting on ``create`` rather than on a 404 from GET
        also covers Argo Servers whose GET falls back to the workflow archive. A fresh run
        that fails before this call sees it is returned as is (no second replacement).
        """
        workflow = create()
        meta = workflow.get("metadata") or {}
        old_uid = str(meta.get("uid") or "")
        deleting = bool(meta.get("deletionTimestamp"))
        if not deleting and phase_of(workflow) not in FAILED_PHASES:
            return workflow
        if not deleting:
            log.info(
                "workflow %s/%s ended %s; deleting it to run the job again",
                self.namespace,
                name,
                phase_of(workflow),
            )
            try:
                self.delete(name, uid=old_uid or None)
            except ArgoAPIError as exc:
                # 404: already gone; 409 or another answer to a failed UID precondition: the
                # name may already belong to a newer Workflow. Only a failure to delete the
                # very Workflow seen (same UID still there) is an error.
                if exc.status in (401, 403) or self._uid_of(name) == old_uid:
                    raise
        deadline = time.monotonic() + timeout
        pause = 0.05
        while True:
            workflow = create()
            if str((workflow.get("metadata") or {}).get("uid") or "") != old_uid:
                return workflow
            if time.monotonic() >= deadline:
                raise ArgoError(
                    f"workflow {self.namespace}/{name} is still being deleted after "
                    f"{timeout:g}s (a finalizer may hold it); try again later"
                )
            time.sleep(pause)
            pause = min(pause * 2, 2.0)

    def _uid_of(self, name: str) -> str | None:
        """The UID of the live Workflow called ``name``, None when there is none."""
        try:
            return str((self.get(name).get("metadata") or {}).get("uid") or "")
        except ArgoAPIError as exc:
            if exc.status == 404:
                return None
            raise

    def wait(
        self,
        name: str,
        timeout: float | None = None,
        *,
        poll_interval: float = 2.0,
        raise_on_failure: bool = True,
        on_update: Callable[[dict[str, Any]], None] | None = None,
    ) -> dict[str, Any]:
        """Block until the Workflow finishes and return it.

        Follows the watch stream; when it drops, re-reads the Workflow and reconnects from the
        last resourceVersion; after ``max_reconnects`` drops it polls every ``poll_interval``.
        Raises WaitTimeout after ``timeout`` seconds and WorkflowFailed (with the failing node's
        message) when it ends Failed or Error and ``raise_on_failure``.
        """
        deadline = None if timeout is None else time.monotonic() + timeout
        workflow = self.get(name)
        drops = 0
        while not is_finished(workflow):
            if on_update is not None:
                on_update(workflow)
            remaining = None if deadline is None else deadline - time.monotonic()
            if remaining is not None and remaining <= 0:
                raise WaitTimeout(
                    f"workflow {self.namespace}/{name} still {phase_of(workflow) or 'pending'} "
                    f"after {timeout:g}s; it keeps running (stop or terminate it if needed)",
                    workflow,
                )
            if drops < self.max_reconnects:
                version = (workflow.get("metadata") or {}).get("resourceVersion")
                events = 0
                try:
                    for event in self.watch(name, resource_version=version, timeout=remaining):
                        events += 1
                        workflow = event
                        if is_finished(workflow):
                            break
                        if on_update is not None:
                            on_update(workflow)
                        if deadline is not None and time.monotonic() >= deadline:
                            break
                    else:
                        raise StreamDropped("watch stream ended")
                except httpx.ReadTimeout:
                    # A quiet stream (nothing changed for a while) is not a broken one.
                    log.debug("watch of %s idle; reconnecting", name)
                except (StreamDropped, httpx.TransportError, ArgoAPIError) as exc:
                    if isinstance(exc, ArgoAPIError) and exc.status in (401, 403):
                        raise
                    drops = 1 if events else drops + 1
                    log.info("watch of %s dropped (%s); reconnect %d", name, exc, drops)
                    if drops >= self.max_reconnects:
                        log.info("watch of %s keeps dropping; polling instead", name)
                if not is_finished(workflow):
                    workflow = self.get(name)
            else:
                pause = poll_interval if remaining is None else min(poll_interval, remaining)
                time.sleep(max(pause, 0.0))
                workflow = self.get(name)
        if raise_on_failure and phase_of(workflow) != "Succeeded":
            raise WorkflowFailed(
                f"workflow {self.namespace}/{name} {phase_of(workflow)}: "
                f"{failure_message(workflow)}",
                name=name,
                phase=phase_of(workflow),
            )
        return workflow
