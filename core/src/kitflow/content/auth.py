"""Registry credentials and authentication: where credentials come from, Basic and Bearer flows.

Lookup order: explicit arguments > environment (``KITFLOW_REGISTRY_USER`` /
``KITFLOW_REGISTRY_PASSWORD``) > ``$KITOPS_HOME/credentials.json`` (kit's store, written 0600) >
Docker's ``config.json`` (``auths``, ``credHelpers``, ``credsStore`` via ``docker-credential-*``).
Passwords and tokens live only in :class:`~kitflow.secret.Secret` and request headers.
"""

from __future__ import annotations

import base64
import contextlib
import json
import logging
import os
import re
import subprocess
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

from kitflow.errors import AuthError, KitflowError
from kitflow.options import RegistryOptions
from kitflow.secret import Secret

log = logging.getLogger(__name__)

CREDENTIALS_FILE = "credentials.json"
DOCKER_HUB_KEYS = ("https://index.docker.io/v1/", "index.docker.io", "docker.io")


@dataclass(frozen=True)
class Credentials:
    """A username with a password, or an identity (refresh) token; the secret never prints."""

    username: str | None = None
    password: Secret | None = None
    identity_token: Secret | None = None
    source: str = ""  # "arguments", "environment", "kitops", "docker", "helper"

    def __bool__(self) -> bool:
        return bool(self.password or self.identity_token)

    def basic_header(self) -> str:
        """``Basic base64(user:password)`` for the wire."""
        assert self.password is not None
        raw = f"{self.username or ''}:{self.password.reveal()}".encode()
        return "Basic " + base64.b64encode(raw).decode("ascii")


# ------------------------------------------------------------------------------ credential files


def credentials_path(home: str | os.PathLike[str] | None = None) -> Path:
    """``$KITOPS_HOME/credentials.json`` (kit's oras file store, docker config shape)."""
    from kitflow.content.localstore import kitops_home

    return kitops_home(home) / CREDENTIALS_FILE


def docker_config_path() -> Path:
    """``$DOCKER_CONFIG/config.json`` or ``~/.docker/config.json``."""
    base = os.environ.get("DOCKER_CONFIG")
    return (Path(base) if base else Path.home() / ".docker") / "config.json"


def _read_config(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text())
    except FileNotFoundError:
        return {}
    except (OSError, ValueError) as exc:
        raise KitflowError(f"cannot read credentials file {path}: {type(exc).__name__}") from None
    return data if isinstance(data, dict) else {}


def _keys_for(host: str) -> list[str]:
    keys = [host, f"https://{host}", f"http://{host}", f"https://{host}/v1/", f"https://{host}/v2/"]
    if host in ("docker.io", "registry-1.docker.io", "index.docker.io"):
        keys.extend(DOCKER_HUB_KEYS)
    return keys


def _from_auth_entry(entry: dict[str, Any], source: str) -> Credentials | None:
    if entry.get("identitytoken"):
        user = entry.get("username")
        if not user and entry.get("auth"):
            user = base64.b64decode(entry["auth"]).decode().partition(":")[0]
        return Credentials(user, None, Secret(str(entry["identitytoken"])), source)
    if entry.get("auth"):
        try:
            user, _, password = base64.b64decode(entry["auth"]).decode().partition(":")
        except (ValueError, UnicodeDecodeError):
            return None
        return Credentials(user, Secret(password), None, source)
    if entry.get("username") and entry.get("password"):
        return Credentials(str(entry["username"]), Secret(str(entry["password"])), None, source)
    return None


def _from_helper(helper: str, host: str) -> Credentials | None:
    program = f"docker-credential-{helper}"
    for key in (host, f"https://{host}"):
        try:
            proc = subprocess.run(
                [program, "get"], input=key.encode(), capture_output=True, timeout=30, check=False
            )
        except FileNotFoundError:
            log.warning("credential helper %s is not installed; ignoring it", program)
            return None
        except subprocess.TimeoutExpired:
            log.warning("credential helper %s timed out", program)
            return None
        if proc.returncode != 0:
            continue
        try:
            doc = json.loads(proc.stdout)
        except ValueError:
            return None
        user, secret = doc.get("Username") or "", doc.get("Secret") or ""
        if not secret:
            return None
        if user == "<token>":
            return Credentials(None, None, Secret(secret), "helper")
        return Credentials(user, Secret(secret), None, "helper")
    return None


def _from_config(config: dict[str, Any], host: str, source: str) -> Credentials | None:
    helpers = config.get("credHelpers") or {}
    for key in _keys_for(host):
        if key in helpers:
            return _from_helper(str(helpers[key]), host)
    auths = config.get("auths") or {}
    for key in _keys_for(host):
        entry = auths.get(key)
        if isinstance(entry, dict):
            creds = _from_auth_entry(entry, source)
            if creds:
                return creds
    if config.get("credsStore"):
        return _from_helper(str(config["credsStore"]), host)
    return None


def find_credentials(
    host: str,
    options: RegistryOptions | None = None,
    home: str | os.PathLike[str] | None = None,
) -> Credentials | None:
    """Credentials for ``host`` in the documented order; None for anonymous access."""
    opts = options or RegistryOptions()
    if opts.password:
        return Credentials(opts.username, opts.password, None, "arguments")
    env_user = os.environ.get("KITFLOW_REGISTRY_USER")
    env_password = os.environ.get("KITFLOW_REGISTRY_PASSWORD")
    if env_password:
        return Credentials(env_user or opts.username, Secret(env_password), None, "environment")
    creds = _from_config(_read_config(credentials_path(home)), host, "kitops")
    if creds:
        return creds
    return _from_config(_read_config(docker_config_path()), host, "docker")


def store_credentials(
    host: str, username: str, password: Secret, home: str | os.PathLike[str] | None = None
) -> Path:
    """Write ``auths[host]`` into ``$KITOPS_HOME/credentials.json`` (0600, atomic)."""
    path = credentials_path(home)
    config = _read_config(path)
    auths = config.setdefault("auths", {})
    raw = f"{username}:{password.reveal()}".encode()
    auths[host] = {"auth": base64.b64encode(raw).decode("ascii")}
    _write_private(path, config)
    return path


def remove_credentials(host: str, home: str | os.PathLike[str] | None = None) -> bool:
    """Drop ``host`` from ``$KITOPS_HOME/credentials.json``; whether it was there."""
    path = credentials_path(home)
    config = _read_config(path)
    auths = config.get("auths") or {}
    removed = False
    for key in _keys_for(host):
        if key in auths:
            del auths[key]
            removed = True
    if removed:
        _write_private(path, config)
    return removed


def _write_private(path: Path, config: dict[str, Any]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=".credentials-", dir=path.parent)
    try:
        os.fchmod(fd, 0o600)
        with os.fdopen(fd, "w") as fh:
            json.dump(config, fh, indent="\t")
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


# ------------------------------------------------------------------------------ challenges


_PARAM_RE = re.compile(r'(\w+)\s*=\s*(?:"((?:[^"\\]|\\.)*)"|([^\s,]+))')


def parse_challenge(header: str) -> tuple[str, dict[str, str]]:
    """``WWW-Authenticate`` → (scheme in lower case, parameters)."""
    scheme, _, rest = header.strip().partition(" ")
    params = {
        m.group(1).lower(): (m.group(2) if m.group(2) is not None else m.group(3))
        for m in _PARAM_RE.finditer(rest)
    }
    return scheme.lower(), params


@dataclass
class _Token:
    value: Secret
    expires: float


class Authenticator:
    """Authorization headers for one registry host: Basic, or scoped Bearer tokens (cached,
    fetched again shortly before they expire or when the registry rejects them)."""

    def __init__(self, host: str, credentials: Credentials | None, session: Any) -> None:
        self.host = host
        self.credentials = credentials
        self.session = session
        self.scheme: str | None = None  # learnt from the first challenge
        self.realm: str | None = None
        self.service: str | None = None
        self._tokens: dict[str, _Token] = {}
        self._lock = threading.Lock()
        self._fetch_lock = threading.RLock()
        self.tokens_fetched = 0

    def __repr__(self) -> str:
        user = self.credentials.username if self.credentials else None
        return f"Authenticator(host={self.host!r}, user={user!r}, scheme={self.scheme!r})"

    def header(self, scope: str) -> dict[str, str]:
        """The Authorization header to send pre-emptively (empty before the first challenge)."""
        if self.scheme == "basic" and self.credentials and self.credentials.password:
            return {"Authorization": self.credentials.basic_header()}
        if self.scheme == "bearer":
            return {"Authorization": "Bearer " + self._token_for(scope).value.reveal()}
        return {}

    def _token_for(self, scope: str, rejected: str | None = None) -> _Token:
        """A valid cached token for ``scope``, else a new one (one fetch at a time per host).

        ``rejected`` is the Authorization header the registry just refused: a cached token that
        differs from it (another thread already refreshed) is used as it is.
        """
        with self._fetch_lock:
            with self._lock:
                token = self._tokens.get(scope)
            usable = token is not None and token.expires > time.time()
            if (
                usable
                and token is not None
                and (rejected is None or rejected != "Bearer " + token.value.reveal())
            ):
                return token
            return self._fetch_token(scope)

    def challenge(self, header: str | None, scope: str, what: str, sent: str | None = None) -> None:
        """Learn from a 401's ``WWW-Authenticate`` and prepare credentials for ``scope``;
        ``sent`` is the Authorization header of the refused request (None if there was none)."""
        if not header:
            raise AuthError(
                f"{self.host} refused {what}: HTTP 401 without an authentication challenge", 401
            )
        scheme, params = parse_challenge(header)
        if scheme == "basic":
            if not self.credentials or not self.credentials.password:
                raise AuthError(
                    f"{self.host} needs credentials for {what} (HTTP 401); log in with "
                    f"'kitflow login {self.host}'",
                    401,
                )
            if sent is not None and sent.startswith("Basic "):
                raise AuthError(
                    f"{self.host} rejected the credentials for {what} (HTTP 401); log in again "
                    f"with 'kitflow login {self.host}'",
                    401,
                )
            self.scheme = "basic"
            return
        if scheme == "bearer":
            with self._fetch_lock:
                self.scheme = "bearer"
                self.realm = params.get("realm")
                self.service = params.get("service")
            if sent is not None and sent.startswith("Bearer "):
                log.debug("%s: a token for %s was rejected; fetching a new one", self.host, scope)
                self._token_for(scope, rejected=sent)
            else:
                self._token_for(scope)
            return
        raise AuthError(f"{self.host} asked for unsupported authentication scheme {scheme!r}", 401)

    def _fetch_token(self, scope: str) -> _Token:
        if not self.realm:
            raise AuthError(f"{self.host} sent a Bearer challenge without a realm", 401)
        query: dict[str, Any] = {}
        if self.service:
            query["service"] = self.service
        scopes = [s for s in scope.split(" ") if s]
        creds = self.credentials
        headers: dict[str, str] = {}
        if creds and creds.identity_token:
            # OAuth2 refresh-token grant (docker "identitytoken").
            form = {
                "grant_type": "refresh_token",
                "refresh_token": creds.identity_token.reveal(),
                "client_id": "kitflow",
                "service": self.service or "",
            }
            if scopes:
                form["scope"] = " ".join(scopes)
            body = urlencode(form).encode()
            headers["Content-Type"] = "application/x-www-form-urlencoded"
            resp = self.session.request(
                "POST",
                self.realm,
                host=self.host,
                what="token request",
                headers=headers,
                body=body,
            )
        else:
            if creds and creds.password:
                headers["Authorization"] = creds.basic_header()
            url = self.realm + ("&" if "?" in self.realm else "?")
            url += urlencode(list(query.items()) + [("scope", s) for s in scopes])
            resp = self.session.request(
                "GET", url, host=self.host, what="token request", headers=headers
            )
        data = resp.data
        resp.release_conn()
        if resp.status in (401, 403):
            raise AuthError(
                f"{self.host}: the token service refused the credentials (HTTP {resp.status}); "
                f"log in again with 'kitflow login {self.host}'",
                resp.status,
            )
        if resp.status != 200:
            raise AuthError(
                f"{self.host}: the token service answered HTTP {resp.status}", resp.status
            )
        try:
            doc = json.loads(data)
        except ValueError:
            raise AuthError(f"{self.host}: the token service sent invalid JSON", 200) from None
        value = doc.get("token") or doc.get("access_token")
        if not value:
            raise AuthError(f"{self.host}: the token service sent no token", 200)
        lifetime = float(doc.get("expires_in") or 60)
        # Refresh a little early so a token never expires between header and request.
        token = _Token(Secret(str(value)), time.time() + max(1.0, lifetime * 0.9 - 5))
        with self._lock:
            self._tokens[scope] = token
            self.tokens_fetched += 1
        return token


def repository_scope(repository: str, push: bool = False) -> str:
    """``repository:<name>:pull[,push]``."""
    return f"repository:{repository}:{'pull,push' if push else 'pull'}"


# ------------------------------------------------------------------------------ login / logout


def login(
    registry: str,
    username: str,
    password: str | Secret,
    home: str | os.PathLike[str] | None = None,
    options: RegistryOptions | None = None,
) -> Path:
    """Check the credentials against ``registry`` (``GET /v2/`` with the challenge flow), then
    store them in ``$KITOPS_HOME/credentials.json``; returns that path. AuthError if refused."""
    from kitflow.content.http import HttpSession, drain, error_for_status

    host = registry.removeprefix("https://").removeprefix("http://").rstrip("/")
    if not host or "/" in host:
        raise KitflowError(f"invalid registry {registry!r}: expected HOST[:PORT]")
    secret = password if isinstance(password, Secret) else Secret(password)
    if not username or not secret:
        raise KitflowError("login needs a username and a password (use --password-stdin)")
    opts = options or RegistryOptions()
    session = HttpSession(opts)
    try:
        creds = Credentials(username, secret, None, "arguments")
        auth = Authenticator(host, creds, session)
        url = f"{session.scheme()}://{host}/v2/"
        resp = session.request("GET", url, host=host, what="login")
        if resp.status == 401:
            challenge = resp.headers.get("WWW-Authenticate")
            drain(resp)
            auth.challenge(challenge, "", "login")
            resp = session.request(
                "GET", url, host=host, what="login", headers=lambda: auth.header("")
            )
        body = drain(resp)
        if resp.status == 401:
            raise AuthError(f"login to {host} failed: wrong username or password (HTTP 401)", 401)
        if resp.status != 200:
            raise error_for_status(host, resp.status, "login", body)
    finally:
        session.close()
    return store_credentials(host, username, secret, home)


def logout(registry: str, home: str | os.PathLike[str] | None = None) -> bool:
    """Forget the stored credentials for ``registry``; whether there were any."""
    host = registry.removeprefix("https://").removeprefix("http://").rstrip("/")
    return remove_credentials(host, home)
