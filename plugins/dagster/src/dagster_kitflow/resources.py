"""Dagster resources for kitflow: an OCI registry holding ModelKits and an Argo Server.

Each resource is a typed ``ConfigurableResource`` whose fields map onto the core's options
objects (``RegistryOptions`` / ``ArgoOptions``); every operation is one call into ``kitflow.api``
or the Argo backend's submit / status / collect / stop split. Secrets are plain ``str`` fields
(Dagster config has no secret type) meant to be fed from ``dg.EnvVar``; they become a
:class:`kitflow.secret.Secret` on the way into the core and never reach logs or metadata.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import dagster as dg
from kitflow import api
from kitflow.errors import KitflowError
from kitflow.format.reference import (
    Reference,
    check_credentials_scope,
    qualify_reference,
    registry_host,
)
from kitflow.options import ArgoOptions, RegistryOptions, Resources
from kitflow.results import PackResult, RunResult, TransferResult, UnpackResult
from kitflow.secret import Secret
from pydantic import Field

LOCAL_REGISTRY = "localhost"  # kit's default registry: references that only live in the store


class KitRegistryResource(dg.ConfigurableResource):  # type: ignore[type-arg]
    """An OCI registry holding ModelKits: host, credentials and TLS settings.

    Without ``registry`` ModelKits stay in the local store (``localhost/...`` references) and
    nothing is pushed. Feed ``password`` from ``dg.EnvVar("KIT_PASSWORD")``.
    """

    registry: str | None = Field(
        default=None,
        description=(
            "Registry host[:port], e.g. ghcr.io. References without a registry are put here; "
            "with credentials set, references to other registries are refused. "
            "Unset: ModelKits stay in the local store."
        ),
    )
    username: str | None = Field(default=None, description="User name for the registry.")
    password: str | None = Field(
        default=None, description="Password or token; pass dg.EnvVar('...'), never a literal."
    )
    plain_http: bool = Field(default=False, description="Plain HTTP (local test registries).")
    tls_verify: bool = Field(default=True, description="Verify the registry's TLS certificate.")
    ca_file: str | None = Field(default=None, description="PEM bundle of CAs to trust.")
    client_cert: str | None = Field(default=None, description="PEM client certificate (mTLS).")
    client_key: str | None = Field(default=None, description="PEM key of the client cert.")
    concurrency: int = Field(default=5, description="Blobs transferred at once.")
    home: str | None = Field(
        default=None, description="KITOPS_HOME override (the local ModelKit store)."
    )

    # ------------------------------------------------------------------ mapping

    @property
    def host(self) -> str | None:
        """The registry host[:port] (scheme stripped), or None in local-store mode."""
        return registry_host(self.registry)

    def get_options(self) -> RegistryOptions:
        """The core's ``RegistryOptions`` (the password wrapped as a ``Secret``)."""
        return RegistryOptions.from_settings(
            username=self.username,
            password=self.password,
            plain_http=self.plain_http,
            tls_verify=self.tls_verify,
            ca_file=self.ca_file,
            client_cert=self.client_cert,
            client_key=self.client_key,
            concurrency=self.concurrency,
        )

    def qualify(self, reference: str) -> str:
        """``reference`` with this resource's registry when it names none (kit's rule: a first
        component with a dot or a port is a registry). Without a registry it stays as given:
        kit keys ``repo:tag`` under its default ``localhost``."""
        return qualify_reference(reference, self.registry)

    def options_for(self, reference: str) -> RegistryOptions:
        """``get_options()`` after checking that credentials only go to their own registry."""
        if self.username or self.password:
            check_credentials_scope(
                reference, self.registry, holder="this KitRegistryResource", allow_local=True
            )
        return self.get_options()

    def is_remote(self, reference: str) -> bool:
        """True when ``reference`` lives in a registry (not only in the local store)."""
        return Reference.parse(reference).registry != LOCAL_REGISTRY

    def url(self, reference: str, digest: str) -> str | None:
        """The registry API URL of the manifest (``/v2/<repo>/manifests/<digest>``), if remote."""
        ref = Reference.parse(reference)
        if ref.registry == LOCAL_REGISTRY:
            return None
        scheme = "http" if self.plain_http else "https"
        return f"{scheme}://{ref.registry}/v2/{ref.repository}/manifests/{digest}"

    # ------------------------------------------------------------------ operations

    def pack(
        self,
        context: str | Path,
        reference: str,
        *,
        kitfile: str | Path | None = None,
        compression: str = "none",
    ) -> PackResult:
        """``kitflow.api.pack``: pack ``context`` into the local store as ``reference``."""
        return api.pack(
            context,
            tag=self.qualify(reference),
            kitfile=kitfile,
            compression=compression,
            home=self.home,
        )

    def push(self, reference: str) -> TransferResult:
        """``kitflow.api.push``: push a local ModelKit to its registry."""
        ref = self.qualify(reference)
        return api.push(ref, registry=self.options_for(ref), home=self.home)

    def pull(self, reference: str) -> TransferResult:
        """``kitflow.api.pull``: pull a ModelKit into the local store (verified)."""
        ref = self.qualify(reference)
        return api.pull(ref, registry=self.options_for(ref), home=self.home)

    def unpack(
        self,
        reference: str,
        directory: str | Path,
        *,
        filters: Sequence[str] = (),
        overwrite: bool = False,
    ) -> UnpackResult:
        """``kitflow.api.unpack``: from the local store, or straight from the registry."""
        ref = self.qualify(reference)
        return api.unpack(
            ref,
            directory,
            filters=filters,
            overwrite=overwrite,
            registry=self.options_for(ref),
            home=self.home,
        )

    def inspect(self, reference: str, *, remote: bool | None = None) -> dict[str, Any]:
        """``kitflow.api.inspect`` (remote when the reference names a registry, by default)."""
        ref = self.qualify(reference)
        remote = self.is_remote(ref) if remote is None else remote
        return api.inspect(ref, remote=remote, registry=self.options_for(ref), home=self.home)

    def info(self, reference: str, *, remote: bool | None = None) -> str:
        """``kitflow.api.info``: the ModelKit's Kitfile as YAML."""
        ref = self.qualify(reference)
        remote = self.is_remote(ref) if remote is None else remote
        return api.info(ref, remote=remote, registry=self.options_for(ref), home=self.home)

    def run(
        self,
        reference: str,
        input: str | Path | None,
        output: str | Path | None,
        **kwargs: Any,
    ) -> RunResult:
        """``kitflow.api.run`` on the local backend (keyword arguments pass through)."""
        ref = self.qualify(reference)
        return api.run(ref, input, output, registry=self.options_for(ref), home=self.home, **kwargs)


class ArgoResource(dg.ConfigurableResource):  # type: ignore[type-arg]
    """Where inference Workflows run: an Argo Server (URL and token) or a kubeconfig.

    Feed ``token`` from ``dg.EnvVar("ARGO_TOKEN")``. ``forward_termination`` stops the
    Workflow when the Dagster run is terminated or the step fails while following it.
    """

    server: str | None = Field(
        default=None, description="Argo Server as ARGO_SERVER takes it (host:port or a URL)."
    )
    token: str | None = Field(
        default=None, description="Bearer token (ARGO_TOKEN); pass dg.EnvVar('ARGO_TOKEN')."
    )
    namespace: str = Field(default="argo", description="Namespace the Workflows run in.")
    secure: bool = Field(default=True, description="HTTPS to the Argo Server (ARGO_SECURE).")
    insecure_skip_verify: bool = Field(
        default=False, description="Accept any TLS certificate (ARGO_INSECURE_SKIP_VERIFY)."
    )
    kubeconfig: str | None = Field(
        default=None, description="Submit through the Kubernetes API with this kubeconfig."
    )
    kube_context: str | None = Field(default=None, description="Context in the kubeconfig.")
    image: str | None = Field(default=None, description="Runtime image the pods run.")
    image_pull_policy: str | None = Field(default=None, description="Pull policy of the image.")
    service_account: str | None = Field(default=None, description="Pods' service account.")
    registry_secret: str | None = Field(
        default=None, description="dockerconfigjson Secret the pods pull ModelKits with."
    )
    ui_url: str | None = Field(default=None, description="Argo UI base URL for links.")
    cpu: str | None = Field(default=None, description="CPU request per pod, e.g. '500m'.")
    memory: str | None = Field(default=None, description="Memory request per pod, e.g. '1Gi'.")
    gpu: int = Field(default=0, description="GPUs per pod.")
    poll_seconds: float = Field(default=5.0, description="Seconds between status reads.")
    forward_termination: bool = Field(
        default=True, description="Stop the Workflow when the run is terminated."
    )

    def get_options(self) -> ArgoOptions:
        """The core's ``ArgoOptions`` (the token wrapped as a ``Secret``)."""
        if not self.server and not self.kubeconfig:
            raise KitflowError("ArgoResource needs a server address or a kubeconfig path")
        values: dict[str, Any] = {
            "server": self.server or None,
            "token": Secret(self.token) if self.token else None,
            "namespace": self.namespace,
            "secure": self.secure,
            "insecure_skip_verify": self.insecure_skip_verify,
            "kubeconfig": Path(self.kubeconfig) if self.kubeconfig else None,
            "kube_context": self.kube_context,
            "service_account": self.service_account,
            "registry_secret": self.registry_secret,
            "ui_url": self.ui_url,
            "resources": Resources(cpu=self.cpu, memory=self.memory, gpu=self.gpu),
        }
        if self.image:
            values["image"] = self.image
        if self.image_pull_policy:
            values["image_pull_policy"] = self.image_pull_policy
        return ArgoOptions(**values)

    # ------------------------------------------------------------------ the split, thin

    def submit(
        self, job: Any, registry: RegistryOptions | None = None, *, rerun_failed: bool = True
    ) -> Any:
        """``backend.submit``: push the inputs and create the Workflow, or re-attach to the one
        this job already made; one that ended Failed/Error is made again (a new materialization
        must not inherit an old failure)."""
        from kitflow.inference.argo import backend

        return backend.submit(job, self.get_options(), registry, rerun_failed=rerun_failed)

    def status(self, submission: Any) -> Any:
        """``backend.status``: phase, message, finished, progress."""
        from kitflow.inference.argo import backend

        return backend.status(submission, self.get_options())

    def stop(self, submission: Any) -> None:
        """``backend.stop``: no new pods; exit handlers still run."""
        from kitflow.inference.argo import backend

        backend.stop(submission, self.get_options())

    def collect(
        self, submission: Any, job: Any, registry: RegistryOptions | None = None
    ) -> RunResult:
        """``backend.collect``: write the finished Workflow's predictions to ``job.output``."""
        from kitflow.inference.argo import backend

        result: RunResult = backend.collect(submission, job, self.get_options(), registry)
        return result

    # ------------------------------------------------------------------ follow

    def run_job(
        self,
        context: dg.OpExecutionContext | dg.AssetExecutionContext | None,
        job: Any,
        registry: RegistryOptions | None = None,
        *,
        timeout: float | None = None,
    ) -> RunResult:
        """Submit ``job``, follow it until it ends and collect its predictions.

        A retried step re-attaches to the Workflow it made (names derive from the job), or
        runs the job again when that one ended Failed/Error (the core replaces it). If the
        Dagster run is terminated (an interrupt in the step, or the run marked canceling), the
        step fails, or ``timeout`` passes, the Workflow is stopped before the step gives up.
        """
        log = context.log if context is not None else None
        deadline = time.monotonic() + timeout if timeout else None
        submission: Any = None
        try:
            # An interrupt while the create call is in flight must not orphan the Workflow:
            # hold it until the submission is known, then stop the Workflow and re-raise.
            with _interrupts_held() as interrupted:
                submission = self.submit(job, registry)
                if interrupted():
                    raise _interrupt_error()
            where = f"{submission.namespace}/{submission.name}"
            if log is not None:
                log.info(f"Argo Workflow {where} submitted: {submission.url or '(no UI URL)'}")
            if context is not None:
                _observe_submission(context, submission)
            last_phase: list[str | None] = [None]

            def on_status(status: Any) -> None:
                if status.phase != last_phase[0] and log is not None:
                    log.info(
                        f"Argo Workflow {where}: {status.phase or 'Pending'} {status.progress}"
                    )
                last_phase[0] = status.phase

            from kitflow.inference.argo import backend

            end, _ = backend.follow(
                submission,
                self.get_options(),
                poll_seconds=self.poll_seconds,
                deadline=deadline,
                should_stop=(lambda: _run_canceling(context)) if context is not None else None,
                on_status=on_status,
            )
            if end == "stopped":
                raise dg.Failure(
                    description=f"the run was terminated; Argo Workflow {where} stopped",
                    metadata={"workflow": where},
                )
            if end == "timeout":
                raise dg.Failure(
                    description=f"Argo Workflow {where} did not finish within {timeout:g}s; "
                    "it was stopped",
                    metadata={"workflow": where},
                )
        except BaseException as exc:  # DagsterExecutionInterruptedError, failures, timeouts
            if submission is not None and self.forward_termination:
                self._stop_quietly(submission, log, type(exc).__name__)
            raise
        return self.collect(submission, job, registry)

    def _stop_quietly(self, submission: Any, log: Any, reason: str) -> None:
        from kitflow.inference.argo import backend

        backend.stop_quietly(submission, self.get_options(), reason, log or _NO_LOG)


class _NoLog:
    """A logger that drops everything (``run_job`` called without a context)."""

    def warning(self, message: str) -> None:
        """Drop ``message``."""

    def error(self, message: str) -> None:
        """Drop ``message``."""


_NO_LOG = _NoLog()


@contextmanager
def _interrupts_held() -> Iterator[Callable[[], bool]]:
    """Hold SIGINT/SIGTERM (Dagster's run termination) in the block; yields a function that
    says whether one arrived (ask it inside the block)."""
    try:
        from dagster._utils.interrupts import capture_interrupts, pop_captured_interrupt
    except ImportError:  # pragma: no cover - Dagster moved its internals: no holding
        yield lambda: False
        return
    with capture_interrupts():
        yield pop_captured_interrupt


def _interrupt_error() -> BaseException:
    try:
        from dagster._core.errors import DagsterExecutionInterruptedError
    except ImportError:  # pragma: no cover
        return KeyboardInterrupt()
    return DagsterExecutionInterruptedError()


def _observe_submission(context: Any, submission: Any) -> None:
    """Show the running Workflow in the UI right away: an observation of the step's asset."""
    try:
        key = context.asset_key
    except Exception:  # an op without an asset, or several assets: nothing to observe
        return
    metadata: dict[str, Any] = {
        "workflow": dg.MetadataValue.text(f"{submission.namespace}/{submission.name}")
    }
    if submission.url:
        metadata["workflow_url"] = dg.MetadataValue.url(submission.url)
    context.log_event(dg.AssetObservation(asset_key=key, metadata=metadata))


def _run_canceling(context: Any) -> bool:
    """True when the Dagster run this step belongs to is being (or was) canceled."""
    try:
        run = context.instance.get_run_by_id(context.run_id)
    except Exception:
        return False
    if run is None:
        return False
    return run.status in (dg.DagsterRunStatus.CANCELING, dg.DagsterRunStatus.CANCELED)
