"""Which context paths a layer leaves out: ``.kitignore`` (``.dockerignore`` syntax and matching,
as moby's patternmatcher does it), kit's always-ignored Kitfile names, and other layers' paths.

Used by the layer walk in :mod:`kitflow.format.tarwriter`; behaviour follows kit's
``pkg/lib/filesystem/ignore`` so the same files land in the same layers (reference §3.3, §3.4).
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

from kitflow.errors import KitflowError

IGNORE_FILE_NAME = ".kitignore"
KITFILE_NAMES = ("Kitfile", "kitfile", ".kitfile")
ALWAYS_IGNORED = (*KITFILE_NAMES, IGNORE_FILE_NAME)
_UTF8_BOM = "\ufeff"
_REGEX_ESCAPED = set(".+()|{}$")


def go_clean(path: str) -> str:
    """Go's ``filepath.Clean`` for slash paths (``./a//b/`` → ``a/b``, ``""`` → ``.``)."""
    if path == "":
        return "."
    rooted = path.startswith("/")
    parts: list[str] = []
    for part in path.split("/"):
        if part in ("", "."):
            continue
        if part == "..":
            if parts and parts[-1] != "..":
                parts.pop()
            elif not rooted:
                parts.append("..")
            continue
        parts.append(part)
    out = "/".join(parts)
    if rooted:
        return "/" + out
    return out or "."


def _go_dir(path: str) -> str:
    """Go's ``filepath.Dir``: everything before the last slash, cleaned."""
    idx = path.rfind("/")
    return go_clean(path[: idx + 1]) if idx >= 0 else "."


class Pattern:
    """One ``.dockerignore`` pattern compiled the way moby's patternmatcher compiles it."""

    def __init__(self, text: str, exclusion: bool) -> None:
        self.text = text
        self.exclusion = exclusion
        self._kind = "exact"
        self._regex: re.Pattern[str] | None = None
        self._compile()

    def _compile(self) -> None:
        pattern = self.text
        out = ["^"]
        kind = "exact"
        i = 0
        n = len(pattern)
        first = True
        while i < n:
            ch = pattern[i]
            i += 1
            if ch == "*":
                if i < n and pattern[i] == "*":
                    i += 1
                    if i < n and pattern[i] == "/":
                        i += 1
                    if i >= n:
                        if kind == "exact":
                            kind = "prefix"
                        else:
                            out.append(".*")
                            kind = "regexp"
                    else:
                        out.append("(.*/)?")
                        kind = "regexp"
                    if first:
                        kind = "suffix"
                else:
                    out.append("[^/]*")
                    kind = "regexp"
            elif ch == "?":
                out.append("[^/]")
                kind = "regexp"
            elif ch in _REGEX_ESCAPED:
                out.append("\\" + ch)
            elif ch == "\\":
                if i < n:
                    out.append(re.escape(pattern[i]))
                    i += 1
                    kind = "regexp"
                else:
                    out.append("\\\\")
            elif ch in "[]":
                out.append(ch)
                kind = "regexp"
            else:
                out.append(ch)
            first = False
        self._kind = kind
        if kind == "regexp":
            try:
                self._regex = re.compile("".join(out) + r"\Z")
            except re.error as err:
                raise KitflowError(
                    f"invalid {IGNORE_FILE_NAME} file: syntax error in pattern {self.text!r}"
                ) from err

    def match(self, path: str) -> bool:
        """Whether ``path`` (a cleaned slash path relative to the context) matches."""
        if self._kind == "exact":
            return path == self.text
        if self._kind == "prefix":
            return path.startswith(self.text[:-2])
        if self._kind == "suffix":
            suffix = self.text[2:]
            if path.endswith(suffix):
                return True
            return suffix.startswith("/") and path == suffix[1:]
        assert self._regex is not None
        return self._regex.match(path) is not None


class PatternMatcher:
    """An ordered list of patterns where later ``!`` exclusions re-include earlier matches."""

    def __init__(self, patterns: Iterable[str]) -> None:
        self.patterns: list[Pattern] = []
        self.exclusions = False
        for raw in patterns:
            text = raw.strip()
            if not text:
                continue
            text = go_clean(text)
            exclusion = False
            if text.startswith("!"):
                if len(text) == 1:
                    raise KitflowError(
                        f'invalid {IGNORE_FILE_NAME} file: illegal exclusion pattern: "!"'
                    )
                exclusion = True
                text = text[1:]
                self.exclusions = True
            self.patterns.append(Pattern(text, exclusion))

    def matches_or_parent_matches(self, path: str) -> bool:
        """Whether ``path`` or one of its parent directories is ignored (after exclusions)."""
        matched = False
        parent = _go_dir(path)
        parent_dirs = parent.split("/")
        for pattern in self.patterns:
            if pattern.exclusion != matched:
                continue
            hit = pattern.match(path)
            if not hit and parent != ".":
                for i in range(len(parent_dirs)):
                    if pattern.match("/".join(parent_dirs[: i + 1])):
                        hit = True
                        break
            if hit:
                matched = not pattern.exclusion
        return matched


def parse_ignore_file(text: str) -> list[str]:
    """Patterns from ``.kitignore`` text (moby's ``ignorefile.ReadAll`` rules)."""
    patterns = []
    for number, line in enumerate(text.splitlines()):
        if number == 0 and line.startswith(_UTF8_BOM):
            line = line[len(_UTF8_BOM) :]
        if line.startswith("#"):
            continue
        line = line.strip()
        if not line:
            continue
        invert = line.startswith("!")
        if invert:
            line = line[1:].strip()
        if line:
            line = go_clean(line)
            if len(line) > 1 and line.startswith("/"):
                line = line[1:]
        patterns.append("!" + line if invert else line)
    return patterns


def read_ignore_file(context_dir: str | Path) -> list[str]:
    """Patterns of ``<context>/.kitignore``; an empty list when there is none."""
    path = Path(context_dir) / IGNORE_FILE_NAME
    try:
        text = path.read_text(encoding="utf-8", errors="surrogateescape")
    except FileNotFoundError:
        return []
    except OSError as err:
        raise KitflowError(f"failed to open {IGNORE_FILE_NAME} file: {err}") from err
    return parse_ignore_file(text)


def _clean_layer(path: str) -> str:
    return go_clean(path.strip())


def is_within(path: str, directory: str) -> bool:
    """``path`` is ``directory`` or below it (path-component aware; ``.`` contains everything)."""
    if directory == ".":
        return True
    return path == directory or path.startswith(directory + "/")


@dataclass
class IgnorePaths:
    """kit's ignore rule for one pack: ``.kitignore`` + Kitfile names, then other layers' paths.

    ``layer_paths`` are every layer path of the Kitfile (and of a parent ModelKit, if any).
    """

    matcher: PatternMatcher
    layer_paths: list[str]

    @classmethod
    def create(cls, patterns: Sequence[str], layer_paths: Iterable[str] = ()) -> IgnorePaths:
        """From ``.kitignore`` patterns (kit's always-ignored names are appended)."""
        matcher = PatternMatcher([*patterns, *ALWAYS_IGNORED])
        return cls(matcher, [_clean_layer(p) for p in layer_paths])

    @classmethod
    def from_context(cls, context_dir: str | Path, layer_paths: Iterable[str] = ()) -> IgnorePaths:
        """Read ``<context>/.kitignore`` and combine it with the Kitfile's layer paths."""
        return cls.create(read_ignore_file(context_dir), layer_paths)

    @property
    def has_exclusions(self) -> bool:
        """Whether ``!`` patterns exist (then ignored directories are still walked)."""
        return self.matcher.exclusions

    def ignored_by_file(self, path: str) -> bool:
        """Whether the ``.kitignore`` (or a Kitfile name) excludes ``path``."""
        return self.matcher.matches_or_parent_matches(go_clean(path.strip()))

    def matches(self, path: str, layer_path: str) -> bool:
        """Whether ``path`` stays out of the layer for ``layer_path``: ignored by the file, or
        inside another layer's path that is not the current layer or one of its ancestors."""
        path = go_clean(path.strip())
        layer_path = _clean_layer(layer_path)
        if self.matcher.matches_or_parent_matches(path):
            return True
        for other in self.layer_paths:
            if is_within(layer_path, other):
                continue
            if is_within(path, other):
                return True
        return False
