"""The Argo Server client against the fake Argo Server: auth, re-attach on 409, watch drops
(reconnect, then polling), timeouts, failure messages, logs, stop/terminate, templates."""

from __future__ import annotations

import pytest
from kitflow.errors import ArgoError, WorkflowFailed
from kitflow.inference.argo.base import ArgoAPIError, WaitTimeout, bearer
from kitflow.inference.argo.client import ArgoServerClient, server_url
from kitflow.options import ArgoOptions
from support.argo_fake import ARGO_TOKEN, FakeArgoServer, failed_steps, succeeded_steps


def _wf(name: str = "kitflow-batch-abc", labels: dict[str, str] | None = None) -> dict:
    return {
        "apiVersion": "argoproj.io/v1alpha1",
        "kind": "Workflow",
        "metadata": {"name": name, "labels": labels or {"kitflow.dev/job": "abc"}},
        "spec": {
            "entrypoint": "main",
            "templates": [{"name": "main", "container": {"image": "busybox"}}],
        },
    }


def _client(
    server: FakeArgoServer, token: str | None = ARGO_TOKEN, **kw: object
) -> ArgoServerClient:
    argo = ArgoOptions(server=server.url, token=token, namespace="ml", **kw)  # type: ignore[arg-type]
    return ArgoServerClient(argo)


def test_server_url_follows_argo_cli_rules() -> None:
    assert (
        server_url(ArgoOptions(server="argo.example.com:2746")) == "https://argo.example.com:2746"
    )
    assert server_url(ArgoOptions(server="argo:2746", secure=False)) == "http://argo:2746"
    assert server_url(ArgoOptions(server="https://a/", base_href="/argo/")) == "https://a/argo"
    with pytest.raises(ArgoError, match="ARGO_SERVER"):
        server_url(ArgoOptions())


def test_token_with_or_without_bearer_prefix(argo_server: FakeArgoServer) -> None:
    assert bearer("abc") == bearer("Bearer abc") == bearer("bearer  abc") == "Bearer abc"
    for token in (ARGO_TOKEN, f"Bearer {ARGO_TOKEN}"):
        with _client(argo_server, token) as client:
            assert client.create(_wf(f"wf-{len(token)}"))["metadata"]["uid"]


def test_bad_token_is_401_and_never_echoed(argo_server: FakeArgoServer) -> None:
    with _client(argo_server, "not-the-token-xyz") as client:
        assert "not-the-token-xyz" not in repr(client)
        with pytest.raises(ArgoAPIError) as info:
            client.get("anything")
    assert info.value.status == 401
    assert "ARGO_TOKEN" in str(info.value)
    assert "not-the-token-xyz" not in str(info.value)


def test_create_twice_reattaches_and_list_by_label(argo_server: FakeArgoServer) -> None:
    with _client(argo_server) as client:
        first = client.create(_wf())
        second = client.create(_wf())
        assert second["metadata"]["uid"] == first["metadata"]["uid"]
        client.create(_wf("other", {"kitflow.dev/job": "zzz"}))
        names = [w["metadata"]["name"] for w in client.list("kitflow.dev/job=abc")]
    assert names == ["kitflow-batch-abc"]
    creates = [r for r in argo_server.requests if r[0] == "POST"]
    assert len(creates) == 3  # the second create was answered 409 and re-attached by GET


def test_unknown_fields_are_rejected_by_the_fake_like_strict_swagger(
    argo_server: FakeArgoServer,
) -> None:
    bad = _wf()
    bad["spec"]["entrypointt"] = "main"
    with _client(argo_server) as client, pytest.raises(ArgoAPIError) as info:
        client.create(bad)
    assert info.value.status == 400


def test_get_missing_is_404(argo_server: FakeArgoServer) -> None:
    with _client(argo_server) as client, pytest.raises(ArgoAPIError) as info:
        client.get("nope")
    assert info.value.status == 404


def test_wait_follows_watch_to_success_with_outputs(argo_server: FakeArgoServer) -> None:
    argo_server.state.script("kitflow-batch-abc", succeeded_steps({"summary": '{"records": 3}'}))
    seen: list[str] = []
    with _client(argo_server) as client:
        client.create(_wf())
        final = client.wait(
            "kitflow-batch-abc", timeout=30, on_update=lambda w: seen.append(w["status"]["phase"])
        )
        status = client.get_status("kitflow-batch-abc")
    assert final["status"]["phase"] == "Succeeded"
    assert "Running" in seen
    assert argo_server.watch_connections == 1
    assert status.finished and status.succeeded
    assert status.outputs == {"summary": '{"records": 3}'}


def test_wait_reconnects_when_the_watch_drops(argo_server: FakeArgoServer) -> None:
    steps = [{"phase": "Running", "progress": f"{i}/6"} for i in range(6)] + succeeded_steps()[-1:]
    argo_server.state.script("kitflow-batch-abc", steps)
    argo_server.watch_drop_after = 1
    with _client(argo_server) as client:
        client.create(_wf())
        client.max_reconnects = 100
        final = client.wait("kitflow-batch-abc", timeout=30)
    assert final["status"]["phase"] == "Succeeded"
    assert argo_server.watch_connections >= 2
    # reconnects resume from the last resourceVersion seen
    watches = [q for m, p, q in argo_server.requests if "workflow-events" in p]
    assert any("listOptions.resourceVersion" in q for q in watches[1:])


def test_wait_falls_back_to_polling_when_watch_keeps_dropping(
    argo_server: FakeArgoServer,
) -> None:
    steps = [{"phase": "Running"}] * 8 + succeeded_steps()[-1:]
    argo_server.state.script("kitflow-batch-abc", steps)
    argo_server.watch_drop_after = 0  # every stream ends before its first event
    with _client(argo_server) as client:
        client.create(_wf())
        client.max_reconnects = 2
        final = client.wait("kitflow-batch-abc", timeout=30, poll_interval=0.01)
    assert final["status"]["phase"] == "Succeeded"
    assert argo_server.watch_connections == 2
    gets = [p for m, p, q in argo_server.requests if m == "GET" and p.endswith("batch-abc")]
    assert len(gets) > 3


def test_failed_workflow_surfaces_the_failing_node_message(argo_server: FakeArgoServer) -> None:
    argo_server.state.script(
        "kitflow-batch-abc", failed_steps("shard 0: inputs.jsonl line 7: ValueError: bad text")
    )
    with _client(argo_server) as client:
        client.create(_wf())
        with pytest.raises(WorkflowFailed) as info:
            client.wait("kitflow-batch-abc", timeout=30)
        status = client.get_status("kitflow-batch-abc")
    fields = [q.get("fields") for m, p, q in argo_server.requests if p.endswith("batch-abc")]
    assert [ArgoServerClient.STATUS_FIELDS] in fields  # the poll asked for a trimmed object
    assert "line 7: ValueError: bad text" in str(info.value)
    assert "score-0(0:0)" in str(info.value)
    assert info.value.phase == "Failed"
    assert status.failed and "line 7" in status.message


def test_wait_times_out_and_keeps_the_workflow(argo_server: FakeArgoServer) -> None:
    argo_server.state.script("kitflow-batch-abc", [{"phase": "Running"}])
    with _client(argo_server) as client:
        client.create(_wf())
        with pytest.raises(WaitTimeout, match="still Running"):
            client.wait("kitflow-batch-abc", timeout=0.5, poll_interval=0.05)
        assert client.get_status("kitflow-batch-abc").phase == "Running"


def test_stop_and_terminate(argo_server: FakeArgoServer) -> None:
    argo_server.state.script("a", [{"phase": "Running"}])
    argo_server.state.script("b", [{"phase": "Running"}])
    with _client(argo_server) as client:
        client.create(_wf("a"))
        client.create(_wf("b"))
        client.stop("a", message="user asked")
        client.terminate("b")
        a, b = client.get_status("a"), client.get_status("b")
        with pytest.raises(ArgoAPIError):
            client.terminate("missing")
    assert a.failed and "Stop" in a.message
    assert b.failed and "Terminate" in b.message


def test_logs_are_parsed_line_by_line(argo_server: FakeArgoServer) -> None:
    argo_server.state.logs["kitflow-batch-abc"] = [("pod-1", "hello"), ("pod-2", "world")]
    with _client(argo_server) as client:
        client.create(_wf())
        lines = list(client.logs("kitflow-batch-abc"))
        only = list(client.logs("kitflow-batch-abc", pod_name="pod-2"))
    assert [(x.pod_name, x.content) for x in lines] == [("pod-1", "hello"), ("pod-2", "world")]
    assert [x.content for x in only] == ["world"]


def test_workflow_templates_register_and_submit(argo_server: FakeArgoServer) -> None:
    tpl = {
        "apiVersion": "argoproj.io/v1alpha1",
        "kind": "WorkflowTemplate",
        "metadata": {"name": "kitflow-batch-t"},
        "spec": {
            "entrypoint": "main",
            "arguments": {"parameters": [{"name": "inputs"}]},
            "templates": [{"name": "main", "container": {"image": "busybox"}}],
        },
    }
    with _client(argo_server) as client:
        created = client.create_template(tpl)
        again = client.create_template(tpl)
        assert created["metadata"]["name"] == again["metadata"]["name"] == "kitflow-batch-t"
        assert client.get_template("kitflow-batch-t")["spec"]["entrypoint"] == "main"
        wf = client.submit_template(
            "kitflow-batch-t", {"inputs": "r/x@sha256:1"}, labels={"a": "b"}, name="from-tpl"
        )
        again_wf = client.submit_template("kitflow-batch-t", {"inputs": "x"}, name="from-tpl")
    assert wf["metadata"]["uid"] == again_wf["metadata"]["uid"]
    assert wf["spec"]["arguments"]["parameters"] == [{"name": "inputs", "value": "r/x@sha256:1"}]


def test_options_from_env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ARGO_SERVER", "argo.internal:2746")
    monkeypatch.setenv("ARGO_TOKEN", "Bearer s3cret")
    monkeypatch.setenv("ARGO_NAMESPACE", "team-a")
    monkeypatch.setenv("ARGO_SECURE", "false")
    monkeypatch.setenv("ARGO_INSECURE_SKIP_VERIFY", "true")
    argo = ArgoOptions.from_env()
    client = ArgoServerClient(argo)
    try:
        assert client.base_url == "http://argo.internal:2746"
        assert client.namespace == "team-a"
        assert "s3cret" not in repr(client) and "s3cret" not in repr(argo)
    finally:
        client.close()


def test_unreachable_server_is_a_user_error() -> None:
    argo = ArgoOptions(server="http://127.0.0.1:9", token="t")
    with ArgoServerClient(argo) as client, pytest.raises(ArgoError, match="cannot reach"):
        client.get("x")
