"""The direct Kubernetes path: kubeconfig and in-cluster parsing, and the Workflow operations
against the fake Kubernetes API (create/re-attach, wait through watch, stop, logs, templates)."""

from __future__ import annotations

import base64
from pathlib import Path

import pytest
import yaml
from kitflow.errors import ArgoError, WorkflowFailed
from kitflow.inference.argo.base import ArgoAPIError
from kitflow.inference.argo.kube import KubeWorkflowClient, in_cluster_config, load_kubeconfig
from support.argo_fake import ARGO_TOKEN, FakeKubeAPI, failed_steps, succeeded_steps


def _kubeconfig(tmp_path: Path, server: str, token: str = ARGO_TOKEN, **user: object) -> Path:
    doc = {
        "apiVersion": "v1",
        "kind": "Config",
        "current-context": "dev",
        "contexts": [
            {"name": "dev", "context": {"cluster": "c1", "user": "u1", "namespace": "ml"}},
            {"name": "other", "context": {"cluster": "c1", "user": "u2"}},
        ],
        "clusters": [
            {
                "name": "c1",
                "cluster": {
                    "server": server,
                    "certificate-authority-data": base64.b64encode(b"PEM-CA").decode(),
                },
            }
        ],
        "users": [
            {"name": "u1", "user": {"token": token, **user}},
            {"name": "u2", "user": {"exec": {"command": "aws"}}},
        ],
    }
    path = tmp_path / "config"
    path.write_text(yaml.safe_dump(doc))
    return path


def _wf(name: str = "kitflow-batch-k") -> dict:
    return {
        "apiVersion": "argoproj.io/v1alpha1",
        "kind": "Workflow",
        "metadata": {"name": name, "labels": {"kitflow.dev/job": "k"}},
        "spec": {
            "entrypoint": "main",
            "templates": [{"name": "main", "container": {"image": "busybox"}}],
        },
    }


def test_kubeconfig_parsing(tmp_path: Path) -> None:
    path = _kubeconfig(tmp_path, "https://k8s.example:6443/")
    cfg = load_kubeconfig(path)
    assert cfg.server == "https://k8s.example:6443"
    assert cfg.namespace == "ml"
    assert cfg.ca_data == b"PEM-CA"
    assert cfg.token is not None and cfg.token.reveal() == ARGO_TOKEN
    assert ARGO_TOKEN not in repr(cfg)
    with pytest.raises(ArgoError, match="exec/auth-provider"):
        load_kubeconfig(path, context="other")
    with pytest.raises(ArgoError, match="no context 'nope'"):
        load_kubeconfig(path, context="nope")


def test_kubeconfig_client_cert_files_relative_to_the_config(tmp_path: Path) -> None:
    (tmp_path / "c.pem").write_bytes(b"CERT")
    (tmp_path / "k.pem").write_bytes(b"KEY")
    path = _kubeconfig(
        tmp_path, "https://x", **{"client-certificate": "c.pem", "client-key": "k.pem"}
    )
    cfg = load_kubeconfig(path)
    assert (cfg.client_cert_data, cfg.client_key_data) == (b"CERT", b"KEY")


def test_in_cluster_config(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "token").write_text("sa-token\n")
    (tmp_path / "namespace").write_text("jobs")
    monkeypatch.setenv("KUBERNETES_SERVICE_HOST", "10.0.0.1")
    monkeypatch.setenv("KUBERNETES_SERVICE_PORT", "443")
    cfg = in_cluster_config(tmp_path)
    assert (cfg.server, cfg.namespace) == ("https://10.0.0.1:443", "jobs")
    assert cfg.token is not None and cfg.token.reveal() == "sa-token"
    monkeypatch.delenv("KUBERNETES_SERVICE_HOST")
    with pytest.raises(ArgoError, match="not running in a Kubernetes pod"):
        in_cluster_config(tmp_path)


def _client(kube_api: FakeKubeAPI, tmp_path: Path, token: str = ARGO_TOKEN) -> KubeWorkflowClient:
    cfg = load_kubeconfig(_kubeconfig(tmp_path, kube_api.url, token))
    return KubeWorkflowClient(cfg)


def test_create_reattach_list_and_wait(kube_api: FakeKubeAPI, tmp_path: Path) -> None:
    steps = [{"phase": "Running"}] * 5 + succeeded_steps({"summary": "{}"})[-1:]
    kube_api.state.script("kitflow-batch-k", steps)
    kube_api.watch_drop_after = 1
    with _client(kube_api, tmp_path) as client:
        assert client.namespace == "ml"
        first = client.create(_wf())
        again = client.create(_wf())
        assert first["metadata"]["uid"] == again["metadata"]["uid"]
        assert [w["metadata"]["name"] for w in client.list("kitflow.dev/job=k")] == [
            "kitflow-batch-k"
        ]
        final = client.wait("kitflow-batch-k", timeout=30)
    assert final["status"]["phase"] == "Succeeded"
    assert kube_api.watch_connections >= 2


def test_bad_token_and_missing(kube_api: FakeKubeAPI, tmp_path: Path) -> None:
    with _client(kube_api, tmp_path, token="wrong") as client, pytest.raises(ArgoAPIError) as e:
        client.get("x")
    assert e.value.status == 401 and "wrong" not in str(e.value)
    with _client(kube_api, tmp_path) as client, pytest.raises(ArgoAPIError) as e:
        client.get("x")
    assert e.value.status == 404


def test_failure_stop_terminate_logs_templates(kube_api: FakeKubeAPI, tmp_path: Path) -> None:
    kube_api.state.script("bad", failed_steps("exit code 1: model file missing"))
    kube_api.state.script("long", [{"phase": "Running"}])
    kube_api.pods["bad"] = ["bad-score-1"]
    kube_api.state.logs["bad"] = [("bad-score-1", "loading"), ("bad-score-1", "boom")]
    tpl = {
        "apiVersion": "argoproj.io/v1alpha1",
        "kind": "WorkflowTemplate",
        "metadata": {"name": "t"},
        "spec": {
            "entrypoint": "main",
            "templates": [{"name": "main", "container": {"image": "busybox"}}],
        },
    }
    with _client(kube_api, tmp_path) as client:
        client.create(_wf("bad"))
        with pytest.raises(WorkflowFailed, match="model file missing"):
            client.wait("bad", timeout=30)
        assert [x.content for x in client.logs("bad")] == ["loading", "boom"]
        client.create(_wf("long"))
        client.terminate("long")
        assert "Terminate" in client.get_status("long").message
        assert client.create_template(tpl)["metadata"]["name"] == "t"
        assert client.create_template(tpl)["metadata"]["name"] == "t"
        assert client.get_template("t")["spec"]["entrypoint"] == "main"
        client.delete("long")
        with pytest.raises(ArgoAPIError):
            client.get("long")


def test_bad_ca_is_a_user_error(tmp_path: Path) -> None:
    cfg = load_kubeconfig(_kubeconfig(tmp_path, "https://k8s.example:6443"))
    with pytest.raises(ArgoError, match="certificate authority is not PEM"):
        KubeWorkflowClient(cfg)


def test_client_for_picks_the_transport(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from kitflow.inference.argo.backend import client_for
    from kitflow.inference.argo.client import ArgoServerClient
    from kitflow.options import ArgoOptions

    monkeypatch.delenv("KUBERNETES_SERVICE_HOST", raising=False)
    with client_for(ArgoOptions(server="argo:2746")) as c:
        assert isinstance(c, ArgoServerClient)
    config = _kubeconfig(tmp_path, "http://127.0.0.1:1")
    with client_for(ArgoOptions(kubeconfig=config, namespace="team")) as c:
        assert isinstance(c, KubeWorkflowClient) and c.namespace == "team"
    with pytest.raises(ArgoError, match="ARGO_SERVER"), client_for(ArgoOptions()):
        pass
