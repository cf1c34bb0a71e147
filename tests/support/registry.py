"""Pytest fixtures that run a real CNCF Distribution registry (``docker-registry``) on loopback.

Variants: plain HTTP (``registry``), HTTPS with a CA made in the test (``registry_tls``), htpasswd
Basic auth (``registry_htpasswd``), token auth with a token server made in the test
(``registry_token``), and a fault-injecting proxy in front of the plain one (``fault_proxy``).
Nothing is skipped: a missing binary fails the fixture with a message saying what to install.
"""

from __future__ import annotations

import base64
import contextlib
import json
import os
import shutil
import subprocess
import threading
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlparse

import pytest

from support.faultproxy import FaultProxy, free_port

REGISTRY_BIN = os.environ.get("KITFLOW_TEST_REGISTRY_BIN", "docker-registry")
USERNAME = "kitflow-user"
PASSWORD = "s3cr3t-Pa55word-for-tests"


def _require(binary: str, package: str) -> str:
    path = shutil.which(binary)
    if path is None:
        pytest.fail(
            f"{binary} is not installed: install the Debian package '{package}' "
            f"(CI does this in .ci/run); the registry tests need the real server",
            pytrace=False,
        )
    return path


def unique_repo(prefix: str = "test") -> str:
    """A repository name nobody else in this session uses."""
    return f"{prefix}/{uuid.uuid4().hex[:12]}"


# --------------------------------------------------------------------------------------------
# Certificates and keys (openssl CLI: no Python crypto dependency needed)
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Pki:
    """A CA and a server certificate for 127.0.0.1/localhost, plus a client certificate."""

    ca_cert: Path
    ca_key: Path
    server_cert: Path
    server_key: Path
    client_cert: Path
    client_key: Path


def _openssl(*args: str, cwd: Path) -> None:
    subprocess.run(["openssl", *args], cwd=cwd, check=True, capture_output=True)


def make_pki(directory: Path) -> Pki:
    """Generate a throwaway CA, a server certificate signed by it and a client certificate."""
    _require("openssl", "openssl")
    directory.mkdir(parents=True, exist_ok=True)
    d = directory
    _openssl(
        "req",
        "-x509",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-keyout",
        "ca.key",
        "-out",
        "ca.crt",
        "-days",
        "2",
        "-subj",
        "/CN=kitflow test CA",
        cwd=d,
    )
    (d / "server.ext").write_text(
        "subjectAltName=IP:127.0.0.1,DNS:localhost\nextendedKeyUsage=serverAuth\n"
        "basicConstraints=CA:FALSE\n"
    )
    _openssl(
        "req",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-keyout",
        "server.key",
        "-out",
        "server.csr",
        "-subj",
        "/CN=127.0.0.1",
        cwd=d,
    )
    _openssl(
        "x509",
        "-req",
        "-in",
        "server.csr",
        "-CA",
        "ca.crt",
        "-CAkey",
        "ca.key",
        "-CAcreateserial",
        "-out",
        "server.crt",
        "-days",
        "2",
        "-extfile",
        "server.ext",
        cwd=d,
    )
    (d / "client.ext").write_text("extendedKeyUsage=clientAuth\nbasicConstraints=CA:FALSE\n")
    _openssl(
        "req",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-keyout",
        "client.key",
        "-out",
        "client.csr",
        "-subj",
        "/CN=kitflow client",
        cwd=d,
    )
    _openssl(
        "x509",
        "-req",
        "-in",
        "client.csr",
        "-CA",
        "ca.crt",
        "-CAkey",
        "ca.key",
        "-CAcreateserial",
        "-out",
        "client.crt",
        "-days",
        "2",
        "-extfile",
        "client.ext",
        cwd=d,
    )
    return Pki(
        d / "ca.crt",
        d / "ca.key",
        d / "server.crt",
        d / "server.key",
        d / "client.crt",
        d / "client.key",
    )


def bcrypt_hash(password: str) -> str:
    """A ``$2b$`` bcrypt hash: the ``bcrypt`` package if installed, else libc crypt(3)."""
    try:
        import bcrypt  # type: ignore[import-not-found]

        return str(bcrypt.hashpw(password.encode(), bcrypt.gensalt(rounds=6)).decode())
    except ImportError:
        pass
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        import crypt

        hashed = crypt.crypt(password, crypt.mksalt(crypt.METHOD_BLOWFISH, rounds=64))
    if not hashed or not hashed.startswith("$2"):
        pytest.fail("cannot make a bcrypt hash: install the 'bcrypt' package", pytrace=False)
    return hashed


def bcrypt_htpasswd(path: Path, users: dict[str, str]) -> None:
    """Write an htpasswd file with bcrypt hashes (the only kind Distribution accepts)."""
    lines = [f"{user}:{bcrypt_hash(password)}" for user, password in users.items()]
    path.write_text("\n".join(lines) + "\n")


# --------------------------------------------------------------------------------------------
# Token server (Distribution's `auth: token`)
# --------------------------------------------------------------------------------------------


def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


class TokenServer:
    """A small OAuth2-ish token endpoint that signs RS256 JWTs Distribution trusts.

    Valid Basic credentials get every action they ask for; anonymous callers get ``pull`` only
    on repositories listed in ``public``. ``issued`` counts tokens handed out (refresh tests).
    """

    def __init__(
        self,
        workdir: Path,
        pki: Pki,
        users: dict[str, str],
        *,
        lifetime: int = 300,
        service: str = "kitflow-test-registry",
        issuer: str = "kitflow-test-issuer",
    ) -> None:
        self.workdir = workdir
        self.pki = pki
        self.users = users
        self.lifetime = lifetime
        self.service = service
        self.issuer = issuer
        self.public: set[str] = set()
        self.issued = 0
        self.requests: list[dict[str, Any]] = []
        der = subprocess.run(
            ["openssl", "x509", "-in", str(pki.ca_cert), "-outform", "DER"],
            check=True,
            capture_output=True,
        ).stdout
        self._x5c = base64.b64encode(der).decode()
        self._lock = threading.Lock()
        self.port = free_port()
        self.realm = f"http://127.0.0.1:{self.port}/token"
        server = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: Any) -> None:
                pass

            def do_GET(self) -> None:
                server._handle(self)

        self._httpd = ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        self._thread = threading.Thread(target=self._httpd.serve_forever, args=(0.05,), daemon=True)

    def start(self) -> TokenServer:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._httpd.shutdown()
        self._httpd.server_close()

    def _sign(self, claims: dict[str, Any]) -> str:
        header = {"typ": "JWT", "alg": "RS256", "x5c": [self._x5c]}
        signing_input = (
            _b64url(json.dumps(header).encode()) + "." + _b64url(json.dumps(claims).encode())
        )
        signature = subprocess.run(
            ["openssl", "dgst", "-sha256", "-sign", str(self.pki.ca_key)],
            input=signing_input.encode(),
            check=True,
            capture_output=True,
        ).stdout
        return signing_input + "." + _b64url(signature)

    def _handle(self, req: BaseHTTPRequestHandler) -> None:
        query = parse_qs(urlparse(req.path).query)
        user = None
        header = req.headers.get("Authorization", "")
        if header.startswith("Basic "):
            name, _, password = base64.b64decode(header[6:]).decode().partition(":")
            if self.users.get(name) != password:
                req.send_response(401)
                req.send_header("Content-Length", "0")
                req.end_headers()
                return
            user = name
        access = []
        for scope in query.get("scope", []):
            for item in scope.split(" "):
                kind, _, rest = item.partition(":")
                name, _, actions = rest.rpartition(":")
                wanted = [a for a in actions.split(",") if a]
                if user is None:
                    wanted = [a for a in wanted if a == "pull" and name in self.public]
                access.append({"type": kind, "name": name, "actions": wanted})
        now = int(time.time())
        claims = {
            "iss": self.issuer,
            "sub": user or "",
            "aud": self.service,
            "exp": now + self.lifetime,
            "nbf": now - 5,
            "iat": now,
            "jti": uuid.uuid4().hex,
            "access": access,
        }
        token = self._sign(claims)
        with self._lock:
            self.issued += 1
            self.requests.append({"user": user, "scope": query.get("scope", [])})
        body = json.dumps(
            {
                "token": token,
                "access_token": token,
                "expires_in": self.lifetime,
                "issued_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(now)),
            }
        ).encode()
        req.send_response(200)
        req.send_header("Content-Type", "application/json")
        req.send_header("Content-Length", str(len(body)))
        req.end_headers()
        req.wfile.write(body)


# --------------------------------------------------------------------------------------------
# The registry process
# --------------------------------------------------------------------------------------------


@dataclass
class RunningRegistry:
    """A Distribution process: where it listens, how to trust it and log in to it."""

    host: str  # "127.0.0.1:PORT", what goes into references
    scheme: str  # "http" or "https"
    root: Path  # storage directory
    process: subprocess.Popen[bytes]
    log_path: Path
    ca_file: Path | None = None
    username: str | None = None
    password: str | None = None
    pki: Pki | None = None
    token_server: TokenServer | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def url(self) -> str:
        return f"{self.scheme}://{self.host}"

    @property
    def plain_http(self) -> bool:
        return self.scheme == "http"

    def ref(self, repository: str, tag: str = "latest") -> str:
        """``host:port/repository:tag``."""
        return f"{self.host}/{repository}:{tag}"

    def options(self, **overrides: Any) -> Any:
        """``RegistryOptions`` that reach this registry (credentials included if it has them)."""
        from kitflow.options import RegistryOptions

        values: dict[str, Any] = {"plain_http": self.plain_http}
        if self.ca_file is not None:
            values["ca_file"] = self.ca_file
        if self.username is not None:
            values["username"] = self.username
            values["password"] = self.password
        values.update(overrides)
        return RegistryOptions(**values)

    def skopeo_flags(self, prefix: str = "") -> list[str]:
        """skopeo TLS/credential flags for this registry (prefix "src-" or "dest-" for copy)."""
        flags = (
            [f"--{prefix}tls-verify=false"]
            if self.plain_http
            else [f"--{prefix}cert-dir={self.extra['skopeo_cert_dir']}"]
        )
        if self.username is not None:
            flags.append(f"--{prefix}creds={self.username}:{self.password}")
        return flags

    def stop(self) -> None:
        self.process.terminate()
        try:
            self.process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
        if self.token_server is not None:
            self.token_server.stop()


def _yaml(obj: Any) -> str:
    """Tiny YAML writer for the registry config (JSON is valid YAML; this keeps it readable)."""
    return json.dumps(obj, indent=2)


def start_registry(
    workdir: Path,
    *,
    tls: bool = False,
    htpasswd: bool = False,
    token: bool = False,
    token_lifetime: int = 300,
    client_ca: bool = False,
) -> RunningRegistry:
    """Start ``docker-registry serve`` with a fresh storage directory; wait until it answers."""
    binary = _require(REGISTRY_BIN, "docker-registry")
    workdir.mkdir(parents=True, exist_ok=True)
    port = free_port()
    root = workdir / "storage"
    root.mkdir(exist_ok=True)
    config: dict[str, Any] = {
        "version": 0.1,
        "log": {"level": "warn", "accesslog": {"disabled": True}},
        "storage": {
            "filesystem": {"rootdirectory": str(root)},
            "delete": {"enabled": True},
            "maintenance": {"uploadpurging": {"enabled": False}},
        },
        "http": {"addr": f"127.0.0.1:{port}", "secret": uuid.uuid4().hex},
    }
    pki = None
    if tls or token:
        pki = make_pki(workdir / "pki")
    if tls:
        assert pki is not None
        config["http"]["tls"] = {"certificate": str(pki.server_cert), "key": str(pki.server_key)}
        if client_ca:
            config["http"]["tls"]["clientcas"] = [str(pki.ca_cert)]
    username = password = None
    token_server = None
    if htpasswd:
        username, password = USERNAME, PASSWORD
        bcrypt_htpasswd(workdir / "htpasswd", {username: password})
        config["auth"] = {"htpasswd": {"realm": "kitflow-test", "path": str(workdir / "htpasswd")}}
    elif token:
        assert pki is not None
        username, password = USERNAME, PASSWORD
        token_server = TokenServer(workdir, pki, {username: password}, lifetime=token_lifetime)
        token_server.start()
        config["auth"] = {
            "token": {
                "realm": token_server.realm,
                "service": token_server.service,
                "issuer": token_server.issuer,
                "rootcertbundle": str(pki.ca_cert),
            }
        }
    config_path = workdir / "config.yml"
    config_path.write_text(_yaml(config))
    log_path = workdir / "registry.log"
    log = log_path.open("wb")
    proc = subprocess.Popen([binary, "serve", str(config_path)], stdout=log, stderr=log)
    scheme = "https" if tls else "http"
    reg = RunningRegistry(
        host=f"127.0.0.1:{port}",
        scheme=scheme,
        root=root,
        process=proc,
        log_path=log_path,
        ca_file=pki.ca_cert if (tls and pki) else None,
        username=username,
        password=password,
        pki=pki,
        token_server=token_server,
    )
    reg.extra["client_ca"] = client_ca
    if tls and pki is not None:
        # skopeo's --cert-dir wants *.crt CA files (and client.cert/client.key for mTLS).
        cert_dir = workdir / "skopeo-certs"
        cert_dir.mkdir(exist_ok=True)
        shutil.copy(pki.ca_cert, cert_dir / "ca.crt")
        reg.extra["skopeo_cert_dir"] = cert_dir
    _wait_ready(reg)
    return reg


def _wait_ready(reg: RunningRegistry, timeout: float = 20.0) -> None:
    import ssl

    deadline = time.monotonic() + timeout
    ctx = ssl.create_default_context(cafile=str(reg.ca_file)) if reg.ca_file else None
    if ctx is not None and reg.extra.get("client_ca") and reg.pki is not None:
        ctx.load_cert_chain(str(reg.pki.client_cert), str(reg.pki.client_key))
    last: Exception | None = None
    while time.monotonic() < deadline:
        if reg.process.poll() is not None:
            break
        try:
            urllib.request.urlopen(f"{reg.url}/v2/", timeout=2, context=ctx)
            return
        except urllib.error.HTTPError as exc:
            if exc.code == 401:  # auth enabled: it is up
                return
            last = exc
        except (OSError, urllib.error.URLError) as exc:
            last = exc
        time.sleep(0.05)
    reg.stop()
    log = reg.log_path.read_text(errors="replace")[-2000:]
    pytest.fail(f"docker-registry did not come up ({last}); its log:\n{log}", pytrace=False)


@contextlib.contextmanager
def running_registry(workdir: Path, **kwargs: Any) -> Iterator[RunningRegistry]:
    """Context manager around :func:`start_registry` that always stops the process."""
    reg = start_registry(workdir, **kwargs)
    try:
        yield reg
    finally:
        reg.stop()


# --------------------------------------------------------------------------------------------
# Fixtures
# --------------------------------------------------------------------------------------------


@pytest.fixture(scope="session")
def registry(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningRegistry]:
    """Plain-HTTP Distribution shared by the session (use :func:`unique_repo` per test)."""
    with running_registry(tmp_path_factory.mktemp("registry")) as reg:
        yield reg


@pytest.fixture(scope="session")
def registry_tls(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningRegistry]:
    """HTTPS Distribution whose certificate is signed by a CA made in the test (``ca_file``)."""
    with running_registry(tmp_path_factory.mktemp("registry-tls"), tls=True) as reg:
        yield reg


@pytest.fixture(scope="session")
def registry_mtls(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningRegistry]:
    """HTTPS Distribution that also requires a client certificate (``pki.client_cert``)."""
    with running_registry(
        tmp_path_factory.mktemp("registry-mtls"), tls=True, client_ca=True
    ) as reg:
        yield reg


@pytest.fixture(scope="session")
def registry_htpasswd(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningRegistry]:
    """Plain-HTTP Distribution with htpasswd Basic auth (``username``/``password``)."""
    with running_registry(tmp_path_factory.mktemp("registry-htpasswd"), htpasswd=True) as reg:
        yield reg


@pytest.fixture(scope="session")
def registry_token(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningRegistry]:
    """Plain-HTTP Distribution with token auth; ``token_server`` issues RS256 JWTs."""
    with running_registry(tmp_path_factory.mktemp("registry-token"), token=True) as reg:
        yield reg


@pytest.fixture
def fault_proxy(registry: RunningRegistry) -> Iterator[FaultProxy]:
    """A fault-injecting HTTP proxy in front of ``registry``; add rules with ``proxy.add(...)``."""
    proxy = FaultProxy(upstream=registry.host)
    proxy.start()
    try:
        yield proxy
    finally:
        proxy.stop()
