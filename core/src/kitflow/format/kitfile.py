"""The Kitfile: a typed model of every section kit knows, parsed with line numbers, validated
with kit's rules and messages, and serialised to kit's exact config JSON and YAML bytes.

Digests of configs depend on these bytes, so field order, omitempty and value formatting follow
kit's Go structs (``pkg/artifact/kitfile.go``) and yaml.v3 / encoding/json behaviour.
"""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from kitflow.errors import KitflowError, NotFoundError, ValidationError
from kitflow.format import goyaml
from kitflow.format.gojson import go_json_dumps, sorted_map
from kitflow.format.gopath import RelError, URLError, clean, is_abs, is_local, rel, url_parse
from kitflow.format.reference import is_modelkit_reference

log = logging.getLogger(__name__)

KITFILE_NAMES = ("Kitfile", "kitfile", ".kitfile")
MANIFEST_VERSION = "1.0.0"
MODEL_PART_TYPE_MAX_LEN = 64
_MODEL_PART_TYPE = re.compile(r"^\w[\w.-]*$", re.ASCII)


# --------------------------------------------------------------------------------------------
# The model


@dataclass
class Package:
    """``package``: name, version, description, license and authors of the ModelKit."""

    name: str = ""
    version: str = ""
    description: str = ""
    license: str = ""
    authors: list[str] = field(default_factory=list)


@dataclass
class ModelPart:
    """``model.parts[]``: an extra model layer (adapter, tokenizer, config ...)."""

    name: str = ""
    path: str = ""
    license: str = ""
    type: str = ""
    digest: str | None = None
    diff_id: str | None = None

    @property
    def description(self) -> str:
        """Model parts carry no description in kit's schema."""
        return ""


@dataclass
class Model:
    """``model``: the main model layer; ``path`` may also be a ModelKit reference."""

    name: str = ""
    path: str = ""
    license: str = ""
    framework: str = ""
    format: str = ""
    version: str = ""
    description: str = ""
    parts: list[ModelPart] = field(default_factory=list)
    parameters: Any = None
    digest: str | None = None
    diff_id: str | None = None

    @property
    def is_reference(self) -> bool:
        """True when ``path`` names another ModelKit rather than a local path."""
        return is_modelkit_reference(self.path)


@dataclass
class CodeEntry:
    """``code[]``: source code layer."""

    path: str = ""
    description: str = ""
    license: str = ""
    digest: str | None = None
    diff_id: str | None = None

    @property
    def name(self) -> str:
        """Code entries have no name in kit's schema."""
        return ""


@dataclass
class DatasetEntry:
    """``datasets[]``: a data layer, or a remote dataset (``remotePath``) that is not packed."""

    name: str = ""
    path: str = ""
    remote_path: str = ""
    remote_hash: str = ""
    description: str = ""
    license: str = ""
    parameters: Any = None
    digest: str | None = None
    diff_id: str | None = None

    @property
    def is_remote(self) -> bool:
        """True when the data lives elsewhere (S3 or another ModelKit) and gets no layer."""
        return bool(self.remote_path)


@dataclass
class DocsEntry:
    """``docs[]``: documentation layer."""

    path: str = ""
    description: str = ""
    digest: str | None = None
    diff_id: str | None = None

    @property
    def name(self) -> str:
        """Docs entries have no name in kit's schema."""
        return ""

    @property
    def license(self) -> str:
        """Docs entries have no license in kit's schema."""
        return ""


@dataclass
class PromptEntry:
    """``prompts[]``: prompt files, stored as code layers with the prompt subtype annotation."""

    name: str = ""
    path: str = ""
    description: str = ""
    digest: str | None = None
    diff_id: str | None = None

    @property
    def license(self) -> str:
        """Prompt entries have no license in kit's schema."""
        return ""


@dataclass
class McpServerEntry:
    """``mcpServers[]``: an MCP bundle (``.mcpb``) stored verbatim as a raw layer."""

    name: str = ""
    path: str = ""
    description: str = ""
    digest: str | None = None
    diff_id: str | None = None

    @property
    def license(self) -> str:
        """MCP server entries have no license in kit's schema."""
        return ""


PathEntry = ModelPart | Model | CodeEntry | DatasetEntry | DocsEntry | PromptEntry | McpServerEntry


@dataclass
class Kitfile:
    """A whole Kitfile (kit's ``artifact.KitFile``)."""

    manifest_version: str = ""
    package: Package = field(default_factory=Package)
    model: Model | None = None
    code: list[CodeEntry] = field(default_factory=list)
    datasets: list[DatasetEntry] = field(default_factory=list)
    docs: list[DocsEntry] = field(default_factory=list)
    prompts: list[PromptEntry] = field(default_factory=list)
    mcp_servers: list[McpServerEntry] = field(default_factory=list)


@dataclass(frozen=True)
class LayerEntry:
    """One layer kit packs for a Kitfile entry, in kit's layer order."""

    kind: str  # model, modelpart, code, dataset, docs, prompt, mcpserver
    path: str  # as written in the Kitfile
    entry: Any

    @property
    def clean_path(self) -> str:
        """``filepath.Clean(path)``: the path kit walks and records in the filepath annotation."""
        return clean(self.path)


# --------------------------------------------------------------------------------------------
# Field tables: (yaml/json key, attribute, kind) in Go struct order. Kinds: "str", "authors",
# "any", "struct:<T>", "ptr:<T>", "list:<T>". "path!" marks a string with no omitempty.

_FIELDS: dict[str, list[tuple[str, str, str]]] = {
    "artifact.KitFile": [
        ("manifestVersion", "manifest_version", "str!"),
        ("package", "package", "struct:artifact.Package"),
        ("model", "model", "ptr:artifact.Model"),
        ("code", "code", "list:artifact.Code"),
        ("datasets", "datasets", "list:artifact.DataSet"),
        ("docs", "docs", "list:artifact.Docs"),
        ("prompts", "prompts", "list:artifact.Prompt"),
        ("mcpServers", "mcp_servers", "list:artifact.MCPServer"),
    ],
    "artifact.Package": [
        ("name", "name", "str"),
        ("version", "version", "str"),
        ("description", "description", "str"),
        ("license", "license", "str"),
        ("authors", "authors", "authors"),
    ],
    "artifact.Model": [
        ("name", "name", "str"),
        ("path", "path", "str"),
        ("license", "license", "str"),
        ("framework", "framework", "str"),
        ("format", "format", "str"),
        ("version", "version", "str"),
        ("description", "description", "str"),
        ("parts", "parts", "list:artifact.ModelPart"),
        ("parameters", "parameters", "any"),
    ],
    "artifact.ModelPart": [
        ("name", "name", "str"),
        ("path", "path", "str"),
        ("license", "license", "str"),
        ("type", "type", "str"),
    ],
    "artifact.Code": [
        ("path", "path", "str"),
        ("description", "description", "str"),
        ("license", "license", "str"),
    ],
    "artifact.DataSet": [
        ("name", "name", "str"),
        ("path", "path", "str"),
        ("remotePath", "remote_path", "str"),
        ("remoteHash", "remote_hash", "str"),
        ("description", "description", "str"),
        ("license", "license", "str"),
        ("parameters", "parameters", "any"),
    ],
    "artifact.Docs": [
        ("path", "path", "str!"),
        ("description", "description", "str"),
    ],
    "artifact.Prompt": [
        ("name", "name", "str"),
        ("path", "path", "str"),
        ("description", "description", "str"),
    ],
    "artifact.MCPServer": [
        ("name", "name", "str"),
        ("path", "path", "str"),
        ("description", "description", "str"),
    ],
}
_CLASSES: dict[str, Callable[..., Any]] = {
    "artifact.KitFile": Kitfile,
    "artifact.Package": Package,
    "artifact.Model": Model,
    "artifact.ModelPart": ModelPart,
    "artifact.Code": CodeEntry,
    "artifact.DataSet": DatasetEntry,
    "artifact.Docs": DocsEntry,
    "artifact.Prompt": PromptEntry,
    "artifact.MCPServer": McpServerEntry,
}
_HAS_LAYER_INFO = frozenset(
    {
        "artifact.Model",
        "artifact.ModelPart",
        "artifact.Code",
        "artifact.DataSet",
        "artifact.Docs",
        "artifact.Prompt",
        "artifact.MCPServer",
    }
)


# --------------------------------------------------------------------------------------------
# YAML -> model (yaml.v3 Decoder with KnownFields(true))


class _Decoder:
    def __init__(self) -> None:
        self.problems: list[str] = []
        self.budget = [200_000]  # expanded nodes; real Kitfiles have a few hundred

    def terror(self, node: yaml.Node, target: str) -> None:
        if isinstance(node, yaml.MappingNode):
            what = "!!map"
        elif isinstance(node, yaml.SequenceNode):
            what = "!!seq"
        else:
            assert isinstance(node, yaml.ScalarNode)
            value = node.value
            shown = f" `{value[:7]}...`" if len(value) > 10 else f" `{value}`"
            what = goyaml.scalar_short_tag(node) + shown
        self.problems.append(
            f"line {goyaml.node_line(node)}: cannot unmarshal {what} into {target}"
        )

    @staticmethod
    def is_null(node: yaml.Node) -> bool:
        if not isinstance(node, yaml.ScalarNode):
            return False
        tag = goyaml.explicit_tag(node)
        if tag is not None:
            return tag == goyaml.NULL_TAG
        return goyaml.is_plain(node) and node.value in goyaml._NULLS

    def string(self, node: yaml.Node) -> str | None:
        if isinstance(node, yaml.ScalarNode):
            if self.is_null(node):
                return ""
            return str(node.value)
        self.terror(node, "string")
        return None

    def duplicate_keys(self, node: yaml.MappingNode) -> bool:
        """Report every pair of keys written with the same text (yaml.v3's check)."""
        found = False
        keys = [k for k, _ in node.value]
        for i, first in enumerate(keys):
            for later in keys[i + 1 :]:
                if (
                    type(first) is type(later)
                    and first.value == later.value
                    and isinstance(first, yaml.ScalarNode)
                ):
                    found = True
                    self.problems.append(
                        f"line {goyaml.node_line(later)}: mapping key {json.dumps(first.value)}"
                        f" already defined at line {goyaml.node_line(first)}"
                    )
        return found

    def pairs(self, node: yaml.MappingNode) -> list[tuple[yaml.Node, yaml.Node]]:
        """Key/value pairs with ``<<`` merges expanded (explicit keys win)."""
        explicit: list[tuple[yaml.Node, yaml.Node]] = []
        merged: list[tuple[yaml.Node, yaml.Node]] = []
        for knode, vnode in node.value:
            if (
                isinstance(knode, yaml.ScalarNode)
                and goyaml.is_plain(knode)
                and knode.value == "<<"
                and goyaml.explicit_tag(knode) is None
            ):
                sources = vnode.value if isinstance(vnode, yaml.SequenceNode) else [vnode]
                for src in sources:
                    if isinstance(src, yaml.MappingNode):
                        merged.extend(self.pairs(src))
                    else:
                        self.problems.append(
                            f"line {goyaml.node_line(src)}: map merge requires map or sequence of"
                            " maps as the value"
                        )
                continue
            explicit.append((knode, vnode))
        names = {k.value for k, _ in explicit if isinstance(k, yaml.ScalarNode)}
        return [p for p in merged if getattr(p[0], "value", None) not in names] + explicit

    def struct(self, node: yaml.Node, type_name: str) -> Any:
        cls = _CLASSES[type_name]
        if self.is_null(node):
            return cls()
        if not isinstance(node, yaml.MappingNode):
            self.terror(node, type_name)
            return cls()
        fields = {key: (attr, kind) for key, attr, kind in _FIELDS[type_name]}
        values: dict[str, Any] = {}
        if self.duplicate_keys(node):
            return cls()  # yaml.v3 stops decoding a mapping with repeated keys
        done: set[str] = set()
        for knode, vnode in self.pairs(node):
            line = goyaml.node_line(knode)
            if not isinstance(knode, yaml.ScalarNode):
                self.problems.append(f"line {line}: invalid map key in {type_name}")
                continue
            key = knode.value
            if key not in fields:
                self.problems.append(f"line {line}: field {key} not found in type {type_name}")
                continue
            if key in done:  # only possible through a << merge
                self.problems.append(f"line {line}: field {key} already set in type {type_name}")
                continue
            done.add(key)
            attr, kind = fields[key]
            value = self.field(vnode, kind)
            if value is not None:
                values[attr] = value
        return cls(**values)

    def field(self, node: yaml.Node, kind: str) -> Any:
        if kind in ("str", "str!"):
            return self.string(node)
        if kind == "authors":
            return self.sequence(node, "[]string", self.string)
        if kind == "any":
            if self.is_null(node):
                return None
            try:
                return goyaml.to_value(node, self.budget)
            except RecursionError:
                self.problems.append(f"line {goyaml.node_line(node)}: value is nested too deeply")
            except ValueError as exc:
                self.problems.append(str(exc))
            return None
        prefix, _, type_name = kind.partition(":")
        if prefix == "struct":
            return self.struct(node, type_name)
        if prefix == "ptr":
            if self.is_null(node):
                return None
            return self.struct(node, type_name)
        if prefix == "list":
            return self.sequence(node, f"[]{type_name}", lambda n: self.struct(n, type_name))
        raise AssertionError(kind)  # pragma: no cover

    def sequence(
        self, node: yaml.Node, go_type: str, item: Callable[[yaml.Node], Any]
    ) -> list[Any]:
        if self.is_null(node):
            return []
        if not isinstance(node, yaml.SequenceNode):
            self.terror(node, go_type)
            return []
        out = []
        for child in node.value:
            value = item(child)
            if value is not None:
                out.append(value)
        return out


def _parse_problems(text: str) -> tuple[Kitfile | None, list[str]]:
    try:
        node = goyaml.compose(text)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        where = f"line {mark.line + 1}: " if mark is not None else ""
        problem = exc.problem or exc.context or "invalid YAML"
        return None, [f"yaml: {where}{problem}"]
    except yaml.YAMLError as exc:
        return None, [f"yaml: {str(exc).splitlines()[0] if str(exc) else 'invalid YAML'}"]
    except RecursionError:
        return None, ["yaml: document is nested too deeply"]
    if node is None:
        return None, ["Kitfile is empty"]
    decoder = _Decoder()
    try:
        kitfile = decoder.struct(node, "artifact.KitFile")
    except RecursionError:
        return None, ["yaml: document is nested too deeply"]
    return kitfile, decoder.problems


def parse_kitfile(text: str, source: str = "Kitfile") -> Kitfile:
    """Parse Kitfile YAML as kit does (yaml.v3, unknown keys refused).

    Raises :class:`ValidationError` listing every structural problem with its line; the semantic
    rules are checked separately by :func:`validate_kitfile`.
    """
    kitfile, problems = _parse_problems(text)
    if problems or kitfile is None:
        raise ValidationError(problems or ["Kitfile is empty"], source)
    return kitfile


def find_kitfile(context_dir: str | Path) -> Path:
    """The Kitfile of a context directory: ``Kitfile``, ``kitfile`` or ``.kitfile`` (in order)."""
    directory = Path(context_dir)
    for name in KITFILE_NAMES:
        candidate = directory / name
        if candidate.is_file():
            return candidate
    raise NotFoundError(
        f"No Kitfile found in {directory}. Consider using the -f flag to specify its path"
    )


def _read_text(path: Path) -> str:
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise NotFoundError(f"Kitfile {path} does not exist") from None
    except IsADirectoryError:
        raise KitflowError(f"{path} is a directory, not a Kitfile") from None
    except OSError as exc:
        raise KitflowError(f"cannot read Kitfile {path}: {exc.strerror}") from None
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ValidationError([f"not valid UTF-8 (byte {exc.start})"], str(path)) from None


def _resolve(path: str | Path) -> Path:
    p = Path(path)
    return find_kitfile(p) if p.is_dir() else p


def load_kitfile(path: str | Path, *, validate: bool = False) -> Kitfile:
    """Read and parse a Kitfile; ``path`` is the file or a directory holding one.

    With ``validate=True`` kit's semantic rules are checked too (as ``kit pack`` does).
    """
    file = _resolve(path)
    kitfile = parse_kitfile(_read_text(file), str(file))
    if validate:
        problems = validate_kitfile(kitfile)
        if problems:
            raise ValidationError(problems, str(file))
        for warning in kitfile_warnings(kitfile):
            log.warning(warning)
    return kitfile


# --------------------------------------------------------------------------------------------
# Validation (kit's Validate(), latest generation)

LOCAL, MODELKIT_REF, S3, UNKNOWN = "local", "modelkit", "s3", "unknown"


def path_type(path: str) -> tuple[str, str | None]:
    """kit's GetPathType: (local | modelkit | s3 | unknown, error message or None)."""
    if is_modelkit_reference(path):
        return MODELKIT_REF, None
    try:
        parsed = url_parse(path)
    except URLError:
        return LOCAL, None
    if parsed.scheme == "" and parsed.host == "":
        return LOCAL, None
    if parsed.scheme == "s3":
        return S3, None
    if parsed.scheme in ("http", "https"):
        return UNKNOWN, f"HTTP urls are not supported in paths ({path})"
    return UNKNOWN, f"unrecognized URL in path: {path}"


def kitfile_warnings(kf: Kitfile) -> list[str]:
    """Things kit logs as warnings but accepts."""
    warnings = []
    if kf.manifest_version != MANIFEST_VERSION:
        warnings.append(
            f"Unrecognized manifestVersion {kf.manifest_version}: treating Kitfile as 1.0.0"
        )
    for ds in kf.datasets:
        if ds.remote_path and ds.remote_hash and path_type(ds.remote_path)[0] == MODELKIT_REF:
            warnings.append(
                f"remoteHash is ignored for ModelKit references in datasets ({ds.path})"
            )
    return warnings


def _json_problem(value: Any, where: str) -> str | None:
    try:
        go_json_dumps(sorted_map(value))
    except KitflowError as exc:
        return f"{where} cannot be stored in the ModelKit config: {exc}"
    return None


def validate_kitfile(kf: Kitfile, context_dir: Path | None = None) -> list[str]:
    """Every rule kit's validator applies, with kit's messages, sorted as kit sorts them.

    With ``context_dir``, local layer paths must also exist there (``kit pack`` fails otherwise).
    """
    errs: list[str] = []
    paths: dict[str, list[str]] = {}

    def add_path(path: str, source: str) -> None:
        key = clean(path or ".")
        paths.setdefault(key, []).append(source)

    remote_dataset_paths: list[str] = []
    if kf.model is not None:
        model = kf.model
        add_path(model.path, f"model {model.name}")
        ptype, err = path_type(model.path)
        if err:
            errs.append(f"invalid path for model: {err}")
        if ptype not in (LOCAL, MODELKIT_REF):
            errs.append(
                "invalid path for model: only local paths and ModelKit references are permitted"
            )
        for part in model.parts:
            add_path(part.path, f"modelpart {part.name}")
            ptype, err = path_type(part.path)
            if err:
                errs.append(f"invalid path for model part ({part.path}): {err}")
            if ptype != LOCAL:
                errs.append(
                    f"invalid path for model part ({part.path}): only local paths are permitted"
                )
            if part.type:
                if not _MODEL_PART_TYPE.match(part.type):
                    errs.append(
                        f"modelpart {part.name} has invalid type (must be alphanumeric with dots,"
                        " dashes, and underscores)"
                    )
                if len(part.type.encode("utf-8")) > MODEL_PART_TYPE_MAX_LEN:
                    errs.append(
                        f"modelpart {part.name} type is too long (must be fewer than"
                        f" {MODEL_PART_TYPE_MAX_LEN} characters)"
                    )
        if model.parameters is not None:
            problem = _json_problem(model.parameters, "model parameters")
            if problem:
                errs.append(problem)

    def simple(entries: list[Any], label: str, id_label: str) -> None:
        for idx, entry in enumerate(entries):
            add_path(entry.path, f"{id_label} layer {idx}")
            ptype, err = path_type(entry.path)
            if err:
                errs.append(f"invalid path for {label} ({entry.path}): {err}")
            if ptype != LOCAL:
                errs.append(
                    f"invalid path for {label} ({entry.path}): only local paths are permitted"
                )

    simple(kf.code, "code", "code")
    for idx, ds in enumerate(kf.datasets):
        add_path(ds.path, f"dataset layer {idx}")
        ptype, err = path_type(ds.path)
        if err:
            errs.append(f"invalid path for dataset ({ds.path}): {err}")
        if ptype != LOCAL:
            errs.append(f"invalid path for dataset ({ds.path}): only local paths are permitted")
        if ds.remote_path:
            rtype, err = path_type(ds.remote_path)
            if err:
                errs.append(f"invalid remote path for dataset ({ds.remote_path}): {err}")
            if rtype == S3:
                if not ds.remote_hash:
                    errs.append(
                        "remoteHash is required when remote dataset paths are used"
                        f" ({ds.remote_path})"
                    )
            elif rtype == MODELKIT_REF:
                remote_dataset_paths.append(clean(ds.path))
            else:
                errs.append(
                    "only S3 URLs and ModelKit references are supported for remote dataset paths"
                    f" ({ds.remote_path})"
                )
        elif ds.remote_hash:
            errs.append("remote hash is only applicable when remotePath is set")
        if ds.parameters is not None:
            problem = _json_problem(ds.parameters, f"dataset {ds.name or idx} parameters")
            if problem:
                errs.append(problem)
    simple(kf.docs, "doc", "docs")
    simple(kf.prompts, "prompt", "prompt")
    names: set[str] = set()
    for idx, server in enumerate(kf.mcp_servers):
        add_path(server.path, f"mcpServer layer {idx}")
        ptype, err = path_type(server.path)
        if err:
            errs.append(f"invalid path for mcpServer ({server.path}): {err}")
        if ptype != LOCAL:
            errs.append(
                f"invalid path for mcpServer ({server.path}): only local paths are permitted"
            )
        elif not server.path.endswith(".mcpb"):
            errs.append(
                f"invalid path for mcpServer ({server.path}):"
                " path must point to a single .mcpb file"
            )
        if not server.name:
            errs.append(f"mcpServer with path {server.path} must have a name")
        elif server.name in names:
            errs.append(f"duplicate mcpServer name {server.name}: names must be unique")
        else:
            names.add(server.name)

    for layer_path, ids in paths.items():
        if len(ids) > 1:
            errs.append(f"{', '.join(ids[:-1])} and {ids[-1]} use the same path {layer_path}")
        if is_abs(layer_path):
            errs.append(
                f"absolute paths are not supported in a Kitfile (path {layer_path} in {ids[0]})"
            )
        elif path_type(layer_path)[0] == LOCAL and not is_local(layer_path):
            errs.append(
                "paths outside the context directory are not supported in a Kitfile"
                f" (path {layer_path} in {ids[0]})"
            )
        for remote in remote_dataset_paths:
            if remote == layer_path:
                continue
            try:
                relative = rel(remote, layer_path)
            except RelError as exc:
                errs.append(f"error calculating relative path for remote dataset: {exc}")
                continue
            if relative != ".." and not relative.startswith("../"):
                errs.append(
                    f"{ids[0]} uses a path ({layer_path}) that is within the path for a"
                    " remote dataset"
                )

    if context_dir is not None and not errs:
        errs.extend(_missing_paths(kf, Path(context_dir)))
    errs.sort()
    return errs


def _missing_paths(kf: Kitfile, context_dir: Path) -> list[str]:
    out = []
    for layer in layer_entries(kf):
        if not (context_dir / layer.clean_path).exists():
            out.append(f"path {layer.path} does not exist")
    return out


def check_path(path: str | Path) -> tuple[list[str], list[str]]:
    """(problems, warnings) of the Kitfile at ``path``; never raises for bad content."""
    try:
        file = _resolve(path)
        text = _read_text(file)
    except ValidationError as exc:
        return list(exc.problems), []
    except KitflowError as exc:
        return [str(exc)], []
    kitfile, problems = _parse_problems(text)
    if problems or kitfile is None:
        return problems or ["Kitfile is empty"], []
    return validate_kitfile(kitfile, file.parent), kitfile_warnings(kitfile)


def validate_path(path: str | Path) -> list[str]:
    """Every problem of the Kitfile at ``path`` (file or directory); empty when it is valid.

    Never raises for bad content: unreadable files and YAML errors come back as problems.
    Local layer paths are checked to exist relative to the Kitfile's directory.
    """
    return check_path(path)[0]


# --------------------------------------------------------------------------------------------
# Model -> JSON (kit's config) and YAML


def _struct_json(obj: Any, type_name: str) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, attr, kind in _FIELDS[type_name]:
        value = getattr(obj, attr)
        if kind == "str!":
            out[key] = value
        elif kind == "str":
            if value:
                out[key] = value
        elif kind == "authors":
            if value:
                out[key] = list(value)
        elif kind == "any":
            if value is not None:
                out[key] = sorted_map(value)
        elif kind.startswith("struct:"):
            out[key] = _struct_json(value, kind[7:])
        elif kind.startswith("ptr:"):
            if value is not None:
                out[key] = _struct_json(value, kind[4:])
        elif kind.startswith("list:") and value:
            out[key] = [_struct_json(v, kind[5:]) for v in value]
    if type_name in _HAS_LAYER_INFO:
        if obj.digest:
            out["digest"] = obj.digest
        if obj.diff_id:
            out["diffId"] = obj.diff_id
    return out


def kitfile_to_dict(kf: Kitfile) -> dict[str, Any]:
    """The Kitfile as kit's JSON object: Go field order, omitempty, digest/diffId included."""
    return _struct_json(kf, "artifact.KitFile")


def config_bytes(kf: Kitfile) -> bytes:
    """The Kit config blob (``json.Marshal`` of the Kitfile), byte-identical to kit's."""
    return go_json_dumps(kitfile_to_dict(kf))


def _struct_yaml(obj: Any, type_name: str) -> goyaml.Struct:
    fields: list[tuple[str, Any]] = []
    for key, attr, kind in _FIELDS[type_name]:
        value = getattr(obj, attr)
        if kind == "str!":
            fields.append((key, value))
        elif kind == "str":
            if value:
                fields.append((key, value))
        elif kind == "authors":
            if value:
                fields.append((key, goyaml.Flow(list(value))))
        elif kind == "any":
            if value is not None:
                fields.append((key, value))
        elif kind.startswith("struct:"):
            sub = _struct_yaml(value, kind[7:])
            if sub.fields:  # yaml's omitempty drops an all-zero struct (JSON does not)
                fields.append((key, sub))
        elif kind.startswith("ptr:"):
            if value is not None:
                fields.append((key, _struct_yaml(value, kind[4:])))
        elif kind.startswith("list:") and value:
            fields.append((key, [_struct_yaml(v, kind[5:]) for v in value]))
    return goyaml.Struct(fields)


def kitfile_to_yaml(kf: Kitfile) -> str:
    """The Kitfile as kit writes it back (unpack) and prints it (info): yaml.v3, indent 2.

    Digests are not part of the YAML.
    """
    return goyaml.dump(_struct_yaml(kf, "artifact.KitFile"))


def _from_json(obj: Any, type_name: str, where: str) -> Any:
    cls = _CLASSES[type_name]
    if obj is None:
        return cls()
    if not isinstance(obj, dict):
        raise KitflowError(f"invalid ModelKit config: {where} is not an object")
    values: dict[str, Any] = {}
    for key, attr, kind in _FIELDS[type_name]:
        if key not in obj or obj[key] is None:
            continue
        value = obj[key]
        label = f"{where}.{key}" if where else key
        if kind in ("str", "str!"):
            if not isinstance(value, str):
                raise KitflowError(f"invalid ModelKit config: {label} is not a string")
            values[attr] = value
        elif kind == "authors":
            if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
                raise KitflowError(f"invalid ModelKit config: {label} is not a list of strings")
            values[attr] = list(value)
        elif kind == "any":
            values[attr] = value
        elif kind.startswith("struct:") or kind.startswith("ptr:"):
            values[attr] = _from_json(value, kind.partition(":")[2], label)
        elif kind.startswith("list:"):
            if not isinstance(value, list):
                raise KitflowError(f"invalid ModelKit config: {label} is not a list")
            sub = kind[5:]
            values[attr] = [_from_json(v, sub, f"{label}[{i}]") for i, v in enumerate(value)]
    if type_name in _HAS_LAYER_INFO:
        for key, attr in (("digest", "digest"), ("diffId", "diff_id")):
            if isinstance(obj.get(key), str) and obj[key]:
                values[attr] = obj[key]
    return cls(**values)


def kitfile_from_config(data: bytes | str) -> Kitfile:
    """Read a Kit config blob (or the Kitfile annotation of a ModelPack) into a Kitfile.

    Numbers in parameters become floats, as Go's json.Unmarshal into ``any`` makes them, so
    :func:`kitfile_to_yaml` writes them back as kit does.
    """
    try:
        obj = json.loads(data, parse_int=float)
    except (ValueError, UnicodeDecodeError) as exc:
        raise KitflowError(f"invalid ModelKit config: not JSON ({exc})") from None
    if not isinstance(obj, dict):
        raise KitflowError("invalid ModelKit config: not a JSON object")
    kitfile: Kitfile = _from_json(obj, "artifact.KitFile", "")
    return kitfile


# --------------------------------------------------------------------------------------------
# Layers


def layer_entries(kf: Kitfile) -> list[LayerEntry]:
    """The layers kit packs for ``kf``, in kit's order: model, parts, code, datasets (remote ones
    excluded), docs, prompts, mcpServers. A model whose path is a ModelKit reference (or empty)
    has no layer of its own."""
    out: list[LayerEntry] = []
    if kf.model is not None:
        if kf.model.path and not kf.model.is_reference:
            out.append(LayerEntry("model", kf.model.path, kf.model))
        for part in kf.model.parts:
            out.append(LayerEntry("modelpart", part.path, part))
    out.extend(LayerEntry("code", c.path, c) for c in kf.code)
    out.extend(LayerEntry("dataset", d.path, d) for d in kf.datasets if not d.is_remote)
    out.extend(LayerEntry("docs", d.path, d) for d in kf.docs)
    out.extend(LayerEntry("prompt", p.path, p) for p in kf.prompts)
    out.extend(LayerEntry("mcpserver", m.path, m) for m in kf.mcp_servers)
    return out
