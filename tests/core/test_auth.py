"""Credentials and authentication against real Distribution registries: htpasswd Basic auth and
token auth (a token server made in the test), kit's and Docker's credential stores, and secrets
that never show up in logs, errors, reprs or output."""

from __future__ import annotations

import base64
import io
import json
import logging
import os
import stat
import sys
import time
from pathlib import Path

import pytest
from kitflow.cli.main import main as cli_main
from kitflow.content.auth import (
    Credentials,
    credentials_path,
    find_credentials,
    login,
    logout,
    parse_challenge,
)
from kitflow.content.registry import Registry
from kitflow.errors import AuthError
from kitflow.ops.transfer import pull, push
from kitflow.options import RegistryOptions
from kitflow.secret import Secret
from registry_helpers import make_kit
from support.registry import running_registry, unique_repo


@pytest.fixture(autouse=True)
def _isolated_credentials(monkeypatch, tmp_path):
    """No real user's credentials leak into (or out of) these tests."""
    monkeypatch.delenv("KITFLOW_REGISTRY_USER", raising=False)
    monkeypatch.delenv("KITFLOW_REGISTRY_PASSWORD", raising=False)
    monkeypatch.setenv("DOCKER_CONFIG", str(tmp_path / "no-docker"))
    monkeypatch.setenv("KITOPS_HOME", str(tmp_path / "kitops-home"))


def _run_cli(args, capsys, stdin: str | None = None, monkeypatch=None):
    if stdin is not None:
        monkeypatch.setattr(sys, "stdin", io.StringIO(stdin))
    with pytest.raises(SystemExit) as info:
        cli_main(args)
    out, err = capsys.readouterr()
    return int(info.value.code or 0), out, err


def test_parse_challenge():
    scheme, params = parse_challenge(
        'Bearer realm="https://auth.example/token",service="reg",scope="repository:a/b:pull,push"'
    )
    assert scheme == "bearer"
    assert params == {
        "realm": "https://auth.example/token",
        "service": "reg",
        "scope": "repository:a/b:pull,push",
    }


def test_htpasswd_without_credentials_says_log_in(registry_htpasswd, tmp_path):
    name = f"{registry_htpasswd.host}/{unique_repo()}"
    make_kit(tmp_path, name, "v1")
    with pytest.raises(AuthError, match=f"kitflow login {registry_htpasswd.host}"):
        push(f"{name}:v1", registry=RegistryOptions(plain_http=True), home=tmp_path)


def test_htpasswd_with_explicit_credentials(registry_htpasswd, tmp_path):
    name = f"{registry_htpasswd.host}/{unique_repo()}"
    _, mdesc, _ = make_kit(tmp_path, name, "v1")
    result = push(f"{name}:v1", registry=registry_htpasswd.options(), home=tmp_path)
    assert result.digest == mdesc.digest
    wrong = registry_htpasswd.options(password="not-the-password")
    with pytest.raises(AuthError, match="401"):
        pull(f"{name}:v1", registry=wrong, home=tmp_path / "other")


def test_cli_login_stores_0600_and_logout_forgets(registry_htpasswd, tmp_path, capsys, monkeypatch):
    home = tmp_path / "home"
    host = registry_htpasswd.host
    code, out, err = _run_cli(
        [
            "login",
            host,
            "-u",
            registry_htpasswd.username,
            "--password-stdin",
            "--plain-http",
            "--config",
            str(home),
        ],
        capsys,
        stdin=registry_htpasswd.password + "\n",
        monkeypatch=monkeypatch,
    )
    assert code == 0, err
    assert "Log in successful" in out
    path = credentials_path(home)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    doc = json.loads(path.read_text())
    raw = base64.b64decode(doc["auths"][host]["auth"]).decode()
    assert raw == f"{registry_htpasswd.username}:{registry_htpasswd.password}"
    # Stored credentials are used without being passed again.
    name = f"{host}/{unique_repo()}"
    make_kit(home, name, "v1")
    push(f"{name}:v1", registry=RegistryOptions(plain_http=True), home=home)
    code, out, _ = _run_cli(["logout", host, "--config", str(home)], capsys)
    assert code == 0 and "Removed" in out
    assert host not in json.loads(path.read_text())["auths"]
    with pytest.raises(AuthError):
        pull(f"{name}:v1", registry=RegistryOptions(plain_http=True), home=home)


def test_login_with_wrong_password_stores_nothing(registry_htpasswd, tmp_path, capsys, monkeypatch):
    home = tmp_path / "home"
    code, out, err = _run_cli(
        [
            "login",
            registry_htpasswd.host,
            "-u",
            registry_htpasswd.username,
            "--password-stdin",
            "--plain-http",
            "--config",
            str(home),
        ],
        capsys,
        stdin="wrong-password-xyz\n",
        monkeypatch=monkeypatch,
    )
    assert code == 1
    assert err.startswith("Error: login to") and "wrong username or password" in err
    assert "wrong-password-xyz" not in out + err
    assert not credentials_path(home).exists()


def test_environment_credentials(registry_htpasswd, tmp_path, monkeypatch):
    name = f"{registry_htpasswd.host}/{unique_repo()}"
    make_kit(tmp_path, name, "v1")
    monkeypatch.setenv("KITFLOW_REGISTRY_USER", registry_htpasswd.username)
    monkeypatch.setenv("KITFLOW_REGISTRY_PASSWORD", registry_htpasswd.password)
    push(f"{name}:v1", registry=RegistryOptions(plain_http=True), home=tmp_path)
    creds = find_credentials(registry_htpasswd.host, RegistryOptions(), tmp_path)
    assert creds is not None and creds.source == "environment"


def test_order_arguments_env_kitops_docker(tmp_path, monkeypatch):
    host = "registry.example.com"
    docker_dir = tmp_path / "docker"
    docker_dir.mkdir()
    (docker_dir / "config.json").write_text(
        json.dumps({"auths": {f"https://{host}": {"auth": base64.b64encode(b"dock:er").decode()}}})
    )
    monkeypatch.setenv("DOCKER_CONFIG", str(docker_dir))
    home = tmp_path / "home"
    found = find_credentials(host, RegistryOptions(), home)
    assert found is not None and (found.username, found.source) == ("dock", "docker")
    login_path = credentials_path(home)
    login_path.parent.mkdir(parents=True)
    login_path.write_text(
        json.dumps({"auths": {host: {"auth": base64.b64encode(b"kit:ops").decode()}}})
    )
    found = find_credentials(host, RegistryOptions(), home)
    assert found is not None and (found.username, found.source) == ("kit", "kitops")
    monkeypatch.setenv("KITFLOW_REGISTRY_USER", "envuser")
    monkeypatch.setenv("KITFLOW_REGISTRY_PASSWORD", "envpass")
    found = find_credentials(host, RegistryOptions(), home)
    assert found is not None and (found.username, found.source) == ("envuser", "environment")
    found = find_credentials(host, RegistryOptions(username="me", password="pw"), home)
    assert found is not None and (found.username, found.source) == ("me", "arguments")


def _helper(bin_dir: Path, name: str, host: str, user: str, password: str) -> None:
    bin_dir.mkdir(exist_ok=True)
    script = bin_dir / f"docker-credential-{name}"
    script.write_text(
        "#!/bin/sh\n"
        '[ "$1" = get ] || exit 1\n'
        "read server\n"
        f'if [ "$server" = "{host}" ]; then\n'
        f"  printf '%s' '{json.dumps({'ServerURL': host, 'Username': user, 'Secret': password})}'\n"
        "  exit 0\nfi\n"
        "echo 'credentials not found in native keychain'; exit 1\n"
    )
    script.chmod(0o755)


@pytest.mark.parametrize("style", ["credHelpers", "credsStore"])
def test_docker_credential_helpers(registry_htpasswd, tmp_path, monkeypatch, style):
    host = registry_htpasswd.host
    _helper(
        tmp_path / "bin", "kftest", host, registry_htpasswd.username, registry_htpasswd.password
    )
    monkeypatch.setenv("PATH", f"{tmp_path / 'bin'}{os.pathsep}{os.environ['PATH']}")
    docker_dir = tmp_path / "docker"
    docker_dir.mkdir()
    config = (
        {"credHelpers": {host: "kftest"}} if style == "credHelpers" else {"credsStore": "kftest"}
    )
    (docker_dir / "config.json").write_text(json.dumps(config))
    monkeypatch.setenv("DOCKER_CONFIG", str(docker_dir))
    name = f"{host}/{unique_repo()}"
    _, mdesc, _ = make_kit(tmp_path / "home", name, "v1")
    result = push(f"{name}:v1", registry=RegistryOptions(plain_http=True), home=tmp_path / "home")
    assert result.digest == mdesc.digest


def test_token_auth_push_pull_and_scopes(registry_token, tmp_path):
    name = f"{registry_token.host}/{unique_repo()}"
    _, mdesc, _ = make_kit(tmp_path / "a", name, "v1")
    server = registry_token.token_server
    before = server.issued
    push(f"{name}:v1", registry=registry_token.options(), home=tmp_path / "a")
    result = pull(f"{name}:v1", registry=registry_token.options(), home=tmp_path / "b")
    assert result.digest == mdesc.digest
    scopes = [s for r in server.requests[before:] for s in r["scope"]]
    repo = name.split("/", 1)[1]
    assert f"repository:{repo}:pull,push" in scopes
    assert f"repository:{repo}:pull" in scopes
    # One token per scope, reused for every request of the transfer.
    assert server.issued - before <= 3


def test_token_auth_anonymous_is_refused(registry_token, tmp_path):
    name = f"{registry_token.host}/{unique_repo()}"
    make_kit(tmp_path, name, "v1")
    push(f"{name}:v1", registry=registry_token.options(), home=tmp_path)
    with pytest.raises(AuthError, match="kitflow login"):
        pull(f"{name}:v1", registry=RegistryOptions(plain_http=True), home=tmp_path / "anon")


def test_token_refreshed_when_rejected_and_when_expired(tmp_path):
    with running_registry(tmp_path / "reg", token=True, token_lifetime=2) as reg:
        name = f"{reg.host}/{unique_repo()}"
        _, mdesc, _ = make_kit(tmp_path / "a", name, "v1")
        push(f"{name}:v1", registry=reg.options(), home=tmp_path / "a")
        repo = Registry(name, reg.options(), home=tmp_path)
        assert repo.resolve("v1").digest == mdesc.digest
        fetched = repo.auth.tokens_fetched
        # A token the registry does not accept is dropped and fetched again.
        for token in repo.auth._tokens.values():
            token.value = Secret("not-a-valid-jwt")
        assert repo.resolve("v1").digest == mdesc.digest
        assert repo.auth.tokens_fetched == fetched + 1
        # An expired token is renewed before use.
        time.sleep(1.2)
        assert repo.resolve("v1").digest == mdesc.digest
        assert repo.auth.tokens_fetched == fetched + 2


def test_secrets_never_leak(registry_token, registry_htpasswd, tmp_path, caplog, capsys):
    caplog.set_level(logging.DEBUG)
    for reg in (registry_token, registry_htpasswd):
        name = f"{reg.host}/{unique_repo()}"
        make_kit(tmp_path / "h", name, "v1")
        result = push(f"{name}:v1", registry=reg.options(), home=tmp_path / "h", progress=True)
        pulled = pull(f"{name}:v1", registry=reg.options(), home=tmp_path / "p", progress=True)
        repo = Registry(name, reg.options())
        repo.resolve("v1")
        tokens = [t.value.reveal() for t in repo.auth._tokens.values()]
        texts = [
            caplog.text,
            repr(result),
            repr(pulled),
            json.dumps(result.to_dict()),
            repr(repo),
            repr(repo.auth),
            repr(reg.options()),
            *capsys.readouterr(),
        ]
        with pytest.raises(AuthError) as info:
            pull(
                f"{name}:v1",
                registry=reg.options(password="wrong-" + reg.password),
                home=tmp_path / "x",
            )
        texts.append(str(info.value))
        texts.append(repr(Credentials("u", Secret(reg.password))))
        for text in texts:
            assert reg.password not in text
            for token in tokens:
                assert token not in text


def test_logout_when_not_logged_in(tmp_path):
    assert logout("nowhere.example.com", home=tmp_path) is False


def test_login_api_verifies_before_storing(registry_token, tmp_path):
    path = login(
        registry_token.host,
        registry_token.username,
        registry_token.password,
        home=tmp_path,
        options=RegistryOptions(plain_http=True),
    )
    assert path == credentials_path(tmp_path)
    with pytest.raises(AuthError):
        login(
            registry_token.host,
            registry_token.username,
            "bad",
            home=tmp_path / "2",
            options=RegistryOptions(plain_http=True),
        )
    assert not credentials_path(tmp_path / "2").exists()


def test_cross_repository_mount_with_token_auth(registry_token, tmp_path):
    from kitflow.ops.transfer import copy

    name = f"{registry_token.host}/{unique_repo()}"
    _, mdesc, _ = make_kit(tmp_path, name, "v1")
    push(f"{name}:v1", registry=registry_token.options(), home=tmp_path)
    target = f"{registry_token.host}/{unique_repo()}"
    before = len(registry_token.token_server.requests)
    result = copy(f"{name}:v1", f"{target}:v1", registry=registry_token.options(), home=tmp_path)
    assert result.blobs_mounted == 3 and result.bytes_transferred == 0
    scopes = [r["scope"] for r in registry_token.token_server.requests[before:]]
    src_repo, dst_repo = name.split("/", 1)[1], target.split("/", 1)[1]
    assert [f"repository:{dst_repo}:pull,push", f"repository:{src_repo}:pull"] in scopes
    assert Registry(target, registry_token.options()).resolve("v1").digest == mdesc.digest
