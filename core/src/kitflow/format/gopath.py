"""Go's path and URL rules that kit's Kitfile validation depends on (filepath.Clean, IsLocal,
Rel, url.Parse), reproduced so kitflow accepts and rejects exactly the paths kit does."""

from __future__ import annotations

from dataclasses import dataclass

_HEXDIGITS = frozenset("0123456789abcdefABCDEF")


def clean(path: str) -> str:
    """Go ``filepath.Clean`` on a Unix system (``""`` becomes ``"."``, ``//a`` becomes ``/a``)."""
    if path == "":
        return "."
    rooted = path[0] == "/"
    n = len(path)
    out: list[str] = []
    r = 0
    dotdot = 0
    if rooted:
        out.append("/")
        r = dotdot = 1
    while r < n:
        if path[r] == "/" or (path[r] == "." and (r + 1 == n or path[r + 1] == "/")):
            r += 1
        elif path[r] == "." and path[r + 1] == "." and (r + 2 == n or path[r + 2] == "/"):
            r += 2
            if len(out) > dotdot:
                w = len(out) - 1
                while w > dotdot and out[w] != "/":
                    w -= 1
                del out[w:]
            elif not rooted:
                if out:
                    out.append("/")
                out.extend("..")
                dotdot = len(out)
        else:
            if (rooted and len(out) != 1) or (not rooted and len(out) != 0):
                out.append("/")
            while r < n and path[r] != "/":
                out.append(path[r])
                r += 1
    if not out:
        return "."
    return "".join(out)


def is_abs(path: str) -> bool:
    """Go ``filepath.IsAbs`` / ``path.IsAbs`` on Unix."""
    return path.startswith("/")


def is_local(path: str) -> bool:
    """Go ``filepath.IsLocal``: relative, non-empty and not escaping its directory via ``..``."""
    if is_abs(path) or path == "":
        return False
    if any(part in (".", "..") for part in path.split("/")):
        path = clean(path)
    return not (path == ".." or path.startswith("../"))


class RelError(ValueError):
    """Go's ``Rel: can't make X relative to Y``."""


def rel(basepath: str, targpath: str) -> str:
    """Go ``filepath.Rel`` on Unix."""
    base = clean(basepath)
    targ = clean(targpath)
    if targ == base:
        return "."
    if base == ".":
        base = ""
    if (base[:1] == "/") != (targ[:1] == "/"):
        raise RelError(f"Rel: can't make {targpath} relative to {basepath}")
    bl, tl = len(base), len(targ)
    b0 = bi = t0 = ti = 0
    while True:
        while bi < bl and base[bi] != "/":
            bi += 1
        while ti < tl and targ[ti] != "/":
            ti += 1
        if targ[t0:ti] != base[b0:bi]:
            break
        if bi < bl:
            bi += 1
        if ti < tl:
            ti += 1
        b0, t0 = bi, ti
    if base[b0:bi] == "..":
        raise RelError(f"Rel: can't make {targpath} relative to {basepath}")
    if b0 != bl:
        seps = base[b0:bl].count("/")
        parts = [".."] + [".."] * seps
        result = "/".join(parts)
        if t0 != tl:
            result += "/" + targ[t0:]
        return result
    return targ[t0:]


@dataclass(frozen=True)
class ParsedURL:
    """The parts of a Go ``url.URL`` kit looks at."""

    scheme: str
    host: str


class URLError(ValueError):
    """``url.Parse`` refused the text."""


def _check_escapes(text: str) -> None:
    i = 0
    while i < len(text):
        if text[i] == "%":
            if i + 2 >= len(text) or text[i + 1] not in _HEXDIGITS or text[i + 2] not in _HEXDIGITS:
                raise URLError(f"invalid URL escape {text[i : i + 3]!r}")
            i += 3
        else:
            i += 1


def _get_scheme(raw: str) -> tuple[str, str]:
    for i, c in enumerate(raw):
        if ("a" <= c <= "z") or ("A" <= c <= "Z"):
            continue
        if ("0" <= c <= "9") or c in "+-.":
            if i == 0:
                return "", raw
            continue
        if c == ":":
            if i == 0:
                raise URLError("missing protocol scheme")
            return raw[:i], raw[i + 1 :]
        return "", raw
    return "", raw


_HOST_OK = frozenset(
    "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-_.~!$&'()*+,;=:[]<>\"%"
)
_USERINFO_OK = frozenset(
    "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-._:~!$&'()*+,;=%@"
)


def _valid_optional_port(port: str) -> bool:
    if port == "":
        return True
    if port[0] != ":":
        return False
    return all("0" <= c <= "9" for c in port[1:])


def _parse_host(host: str) -> str:
    if host.startswith("["):
        i = host.rfind("]")
        if i < 0:
            raise URLError("missing ']' in host")
        if not _valid_optional_port(host[i + 1 :]):
            raise URLError(f"invalid port {host[i + 1 :]!r} after host")
    else:
        i = host.rfind(":")
        if i != -1 and not _valid_optional_port(host[i:]):
            raise URLError(f"invalid port {host[i:]!r} after host")
    _check_escapes(host)
    for c in host:
        if ord(c) < 0x80 and c not in _HOST_OK:
            raise URLError(f"invalid character {c!r} in host name")
    return host


def url_parse(raw: str) -> ParsedURL:
    """The scheme and host Go's ``url.Parse`` finds in ``raw``; raises URLError where Go errors."""
    text, sep, frag = raw.partition("#")
    if any(ord(c) < 0x20 or ord(c) == 0x7F for c in text):
        raise URLError("net/url: invalid control character in URL")
    if text == "" or text == "*":
        if sep:
            _check_escapes(frag)
        return ParsedURL("", "")
    scheme, rest = _get_scheme(text)
    scheme = scheme.lower()
    force_query = rest.endswith("?") and rest.count("?") == 1
    rest = rest[:-1] if force_query else rest.partition("?")[0]
    host = ""
    if not rest.startswith("/"):
        if scheme:
            if sep:
                _check_escapes(frag)
            return ParsedURL(scheme, "")
        if ":" in rest.partition("/")[0]:
            raise URLError("first path segment in URL cannot contain colon")
    if (scheme or not rest.startswith("///")) and rest.startswith("//"):
        authority = rest[2:]
        slash = authority.find("/")
        if slash >= 0:
            authority, rest = authority[:slash], authority[slash:]
        else:
            rest = ""
        at = authority.rfind("@")
        if at >= 0:
            userinfo = authority[:at]
            if any(c not in _USERINFO_OK for c in userinfo if ord(c) < 0x80):
                raise URLError("net/url: invalid userinfo")
            _check_escapes(userinfo)
            host = _parse_host(authority[at + 1 :])
        else:
            host = _parse_host(authority)
    _check_escapes(rest)
    if sep:
        _check_escapes(frag)
    return ParsedURL(scheme, host)
