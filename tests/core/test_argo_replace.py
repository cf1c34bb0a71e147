"""Replacing a failed Workflow on resubmission, on both transports (Argo Server and the
Kubernetes API): DELETE with a UID precondition, waiting out finalizers and the Argo Server's
archive fallback, re-attaching to live or succeeded Workflows, and two submitters racing."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any, TypeAlias

import pytest
import yaml
from kitflow.errors import ArgoError
from kitflow.inference.argo.base import ArgoAPIError
from kitflow.inference.argo.client import ArgoServerClient
from kitflow.inference.argo.kube import KubeConfig, KubeWorkflowClient
from kitflow.options import ArgoOptions
from kitflow.secret import Secret
from support.argo_fake import ARGO_TOKEN, FakeArgoServer, FakeKubeAPI, failed_steps

NAME = "kitflow-batch-replace"
NS = "ml"


def _wf(name: str = NAME) -> dict[str, Any]:
    return {
        "apiVersion": "argoproj.io/v1alpha1",
        "kind": "Workflow",
        "metadata": {"name": name, "labels": {"kitflow.dev/job": "replace"}},
        "spec": {
            "entrypoint": "main",
            "templates": [{"name": "main", "container": {"image": "busybox"}}],
        },
    }


Fake: TypeAlias = FakeArgoServer | FakeKubeAPI
Client: TypeAlias = ArgoServerClient | KubeWorkflowClient


@pytest.fixture(params=["server", "kube"])
def fake(request: pytest.FixtureRequest) -> Iterator[Fake]:
    server: Fake = (FakeArgoServer if request.param == "server" else FakeKubeAPI)(ARGO_TOKEN)
    server.start()
    try:
        yield server
    finally:
        server.stop()


def _client(fake: Fake) -> Client:
    if isinstance(fake, FakeArgoServer):
        return ArgoServerClient(ArgoOptions(server=fake.url, token=ARGO_TOKEN, namespace=NS))
    cfg = KubeConfig(server=fake.url, namespace=NS, token=Secret(ARGO_TOKEN))
    return KubeWorkflowClient(cfg)


def _uid(wf: dict[str, Any]) -> str:
    return str(wf["metadata"]["uid"])


def _failed(fake: Fake, client: Client) -> str:
    """Create the Workflow and let it end Failed; returns its UID."""
    fake.state.script(NAME, failed_steps("OOMKilled"))
    wf = client.create(_wf())
    fake.state.advance(NS, NAME)
    fake.state.advance(NS, NAME)
    assert client.get(NAME)["status"]["phase"] == "Failed"
    fake.state.script(NAME, [{"phase": "Running"}])  # the next run of this name
    return _uid(wf)


def _replace(client: Client, **kw: Any) -> dict[str, Any]:
    return client.create_replacing_failed(lambda: client.create(_wf()), NAME, **kw)


def test_delete_honours_the_uid_precondition(fake: Fake) -> None:
    with _client(fake) as client:
        uid = _uid(client.create(_wf()))
        with pytest.raises(ArgoAPIError) as info:
            client.delete(NAME, uid="some-other-uid")
        assert info.value.status == 409 and "Precondition failed" in str(info.value)
        assert _uid(client.get(NAME)) == uid
        client.delete(NAME, uid=uid)
        with pytest.raises(ArgoAPIError) as gone:
            client.get(NAME)
        assert gone.value.status == 404
        with pytest.raises(ArgoAPIError) as again:
            client.delete(NAME)
        assert again.value.status == 404
    assert fake.state.deleted == [(NS, NAME, uid)]


def test_a_failed_workflow_is_replaced_under_the_same_name(fake: Fake) -> None:
    with _client(fake) as client:
        old = _failed(fake, client)
        new = _replace(client)
        assert new["metadata"]["name"] == NAME and _uid(new) != old
        assert [k for k in fake.state.objects] == [(NS, NAME)]
        assert client.get(NAME)["status"]["phase"] == "Running"
    assert fake.state.deleted == [(NS, NAME, old)]


@pytest.mark.parametrize("phase", ["Running", "Succeeded"])
def test_a_live_or_succeeded_workflow_is_re_attached(fake: Fake, phase: str) -> None:
    fake.state.script(NAME, [{"phase": phase}])
    with _client(fake) as client:
        first = client.create(_wf())
        assert client.get(NAME)["status"]["phase"] == phase
        again = _replace(client)
    assert _uid(again) == _uid(first) and fake.state.deleted == []


def test_replacement_waits_until_finalizers_let_the_old_one_go(fake: Fake) -> None:
    fake.state.finalizer_reads = 3
    with _client(fake) as client:
        old = _failed(fake, client)
        new = _replace(client)
        assert _uid(new) != old and "deletionTimestamp" not in new["metadata"]
    posts = [r for r in fake.requests if r[0] == "POST"]
    assert len(posts) >= 3  # 409 while the old one was still being deleted, then created
    assert fake.state.deleted == [(NS, NAME, old)] and len(fake.state.objects) == 1


def test_a_workflow_already_being_deleted_is_waited_for_not_deleted_again(fake: Fake) -> None:
    fake.state.finalizer_reads = 2
    fake.state.script(NAME, [{"phase": "Succeeded"}])
    with _client(fake) as client:
        old = _uid(client.create(_wf()))
        client.delete(NAME)  # someone else deletes it; a finalizer holds it for a while
        assert client.get(NAME)["metadata"]["deletionTimestamp"]
        new = _replace(client)
    assert _uid(new) != old
    assert [r[0] for r in fake.requests].count("DELETE") == 1


def test_replacement_gives_up_when_the_old_one_never_goes(fake: Fake) -> None:
    fake.state.finalizer_reads = 10_000
    with _client(fake) as client:
        old = _failed(fake, client)
        with pytest.raises(ArgoError, match="still being deleted"):
            _replace(client, timeout=0.3)
        assert _uid(client.get(NAME)) == old


def test_argo_server_archive_fallback_does_not_confuse_the_wait() -> None:
    """With the workflow archive on, GET of a deleted Workflow answers the archived copy (same
    UID, Failed): replacing relies on create, not on a 404."""
    fake = FakeArgoServer(ARGO_TOKEN)
    fake.start()
    try:
        fake.state.archive = True
        fake.state.finalizer_reads = 2
        with _client(fake) as client:
            old = _failed(fake, client)
            new = _replace(client)
            assert _uid(new) != old
            assert _uid(client.get(NAME)) == _uid(new)
    finally:
        fake.stop()


def test_two_submitters_racing_replace_the_failed_workflow_once(fake: Fake) -> None:
    fake.state.finalizer_reads = 2
    with _client(fake) as setup:
        old = _failed(fake, setup)
    barrier = threading.Barrier(2)
    results: list[str] = []
    errors: list[BaseException] = []

    def submitter() -> None:
        try:
            with _client(fake) as client:
                barrier.wait(10)
                results.append(_uid(_replace(client)))
        except BaseException as exc:  # reported below
            errors.append(exc)

    threads = [threading.Thread(target=submitter) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert not errors, errors
    assert len(results) == 2 and results[0] == results[1] != old
    # Only the failed Workflow was ever deleted; exactly one Workflow of that name exists.
    assert fake.state.deleted == [(NS, NAME, old)]
    assert len(fake.state.objects) == 1
    assert _uid(fake.state.objects[(NS, NAME)]) == results[0]


def _options(fake: Fake, tmp_path: Path) -> ArgoOptions:
    if isinstance(fake, FakeArgoServer):
        return ArgoOptions(server=fake.url, token=ARGO_TOKEN, namespace=NS)
    config = tmp_path / "kubeconfig"
    config.write_text(
        yaml.safe_dump(
            {
                "current-context": "t",
                "contexts": [{"name": "t", "context": {"cluster": "c", "user": "u"}}],
                "clusters": [{"name": "c", "cluster": {"server": fake.url}}],
                "users": [{"name": "u", "user": {"token": ARGO_TOKEN}}],
            }
        )
    )
    return ArgoOptions(kubeconfig=config, namespace=NS)


def test_submission_by_template_replaces_a_failed_workflow_too(fake: Fake, tmp_path: Path) -> None:
    """``submit_from_template``'s create step (``/submit`` on the Argo Server, a Workflow with
    a ``workflowTemplateRef`` on the Kubernetes path) gets the same treatment, by default."""
    from kitflow.inference.argo import backend

    template = {
        "apiVersion": "argoproj.io/v1alpha1",
        "kind": "WorkflowTemplate",
        "metadata": {"name": "kitflow-tpl"},
        "spec": {
            "entrypoint": "main",
            "arguments": {"parameters": [{"name": "kit", "value": ""}]},
            "templates": [{"name": "main", "container": {"image": "busybox"}}],
        },
    }
    direct = {
        "apiVersion": "argoproj.io/v1alpha1",
        "kind": "Workflow",
        "metadata": {"name": NAME, "namespace": NS, "labels": {"kitflow.dev/job": "t"}},
        "spec": {
            "workflowTemplateRef": {"name": "kitflow-tpl"},
            "arguments": {"parameters": [{"name": "kit", "value": "reg/x@sha256:1"}]},
        },
    }
    how = ("kitflow-tpl", {"kit": "reg/x@sha256:1"}, {"kitflow.dev/job": "t"}, direct)
    argo = _options(fake, tmp_path)
    with _client(fake) as client:
        client.create_template(template)
    fake.state.script(NAME, failed_steps("ImagePullBackOff"))
    first = backend._create(argo, NAME, True, template=how)
    fake.state.advance(NS, NAME)
    fake.state.advance(NS, NAME)
    fake.state.script(NAME, [{"phase": "Running"}])
    kept = backend._create(argo, NAME, False, template=how)
    assert kept.uid == first.uid  # rerun_failed=False: re-attached to the failed one
    fresh = backend._create(argo, NAME, True, template=how)
    assert fresh.name == NAME and fresh.uid != first.uid
    assert fake.state.deleted == [(NS, NAME, first.uid)] and len(fake.state.objects) == 1
    fake.state.advance(NS, NAME)
    again = backend._create(argo, NAME, True, template=how)
    assert again.uid == fresh.uid  # a running one is re-attached
