"""The inference job model: what to run (kits, entrypoint), on what (inputs), and how (shards,
parallelism, batches, retries, resources). Both backends (local and Argo) read the same job."""

from __future__ import annotations

import json
import shlex
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from kitflow.errors import KitflowError
from kitflow.options import Resources

InputFormat = Literal["jsonl", "csv", "parquet"]

#: File suffixes (lower case) and the input format each one means.
FORMAT_BY_SUFFIX: dict[str, InputFormat] = {
    ".jsonl": "jsonl",
    ".ndjson": "jsonl",
    ".json": "jsonl",
    ".csv": "csv",
    ".parquet": "parquet",
    ".pq": "parquet",
}

#: Records per ``predict`` call unless the caller or the kit (``batchSize``) says otherwise.
DEFAULT_BATCH_SIZE = 256

#: Placeholders a command entrypoint may use; each is replaced by a path when the command runs.
COMMAND_PLACEHOLDERS = ("{input}", "{output}", "{model}", "{kit}")


def detect_format(path: Path | str) -> InputFormat:
    """The input format of ``path`` by its suffix; JSON Lines when the suffix says nothing."""
    return FORMAT_BY_SUFFIX.get(Path(path).suffix.lower(), "jsonl")


@dataclass(frozen=True)
class EntrypointSpec:
    """How a ModelKit is run: a Python file with ``load(model_path)`` and
    ``predict(model, records) -> list`` (kind "python"), or a command for any language that
    reads ``{input}`` and writes ``{output}`` as JSON Lines (kind "command")."""

    kind: Literal["python", "command"]
    path: str | None = None  # python: file inside the kit, relative to the kit root
    command: tuple[str, ...] = ()  # command: argv with placeholders from COMMAND_PLACEHOLDERS
    requirements: str | None = None  # requirements file inside the kit (for an isolated venv)
    batch_size: int | None = None  # the kit's preferred batch size, if it declares one

    def __post_init__(self) -> None:
        if self.kind == "python" and not self.path:
            raise KitflowError("a python entrypoint needs the path of a .py file in the kit")
        if self.kind == "command":
            if not self.command:
                raise KitflowError("a command entrypoint needs a non-empty command list")
            joined = " ".join(self.command)
            if "{input}" not in joined or "{output}" not in joined:
                raise KitflowError(
                    "a command entrypoint must contain the placeholders {input} and {output}"
                )

    @classmethod
    def parse(cls, value: Any, source: str = "entrypoint") -> EntrypointSpec:
        """Read an entrypoint from a Kitfile value or a user override.

        Accepted: ``"src/predict.py"``; a command string (``"python score.py {input} {output}"``)
        or JSON list; a list of argv strings; a mapping with ``entrypoint`` or ``command`` (the
        shape of ``model.parameters.inference``), plus optional ``requirements`` and ``batchSize``.
        """
        if isinstance(value, EntrypointSpec):
            return value
        if isinstance(value, Mapping):
            return cls._from_mapping(value, source)
        if isinstance(value, str):
            text = value.strip()
            if not text:
                raise KitflowError(f"{source}: empty entrypoint")
            if text.startswith("["):
                try:
                    argv = json.loads(text)
                except json.JSONDecodeError as exc:
                    raise KitflowError(f"{source}: not a JSON list: {exc.msg}") from None
                return cls._command(argv, source)
            words = shlex.split(text)
            if len(words) == 1 and words[0].endswith(".py"):
                return cls(kind="python", path=_clean_relpath(words[0], source))
            return cls._command(words, source)
        if isinstance(value, Sequence):
            return cls._command(list(value), source)
        raise KitflowError(f"{source}: expected a .py path, a command or a mapping, not {value!r}")

    @classmethod
    def _command(cls, argv: Any, source: str) -> EntrypointSpec:
        if not isinstance(argv, list) or not all(isinstance(a, str | int | float) for a in argv):
            raise KitflowError(f"{source}: a command must be a list of strings")
        return cls(kind="command", command=tuple(str(a) for a in argv))

    @classmethod
    def _from_mapping(cls, value: Mapping[str, Any], source: str) -> EntrypointSpec:
        known = {"entrypoint", "command", "requirements", "batchSize", "batch_size"}
        unknown = sorted(str(k) for k in value if k not in known)
        if unknown:
            raise KitflowError(
                f"{source}: unknown key(s) {', '.join(unknown)} (expected entrypoint or command)"
            )
        has_entry, has_command = "entrypoint" in value, "command" in value
        if has_entry == has_command:
            raise KitflowError(f"{source}: give exactly one of 'entrypoint' or 'command'")
        base = cls.parse(value["entrypoint"] if has_entry else value["command"], source)
        if has_entry and base.kind != "python":
            raise KitflowError(f"{source}: 'entrypoint' must name a .py file; use 'command'")
        requirements = value.get("requirements")
        if requirements is not None and not isinstance(requirements, str):
            raise KitflowError(f"{source}: 'requirements' must be a path in the kit")
        batch = value.get("batchSize", value.get("batch_size"))
        if batch is not None and (not isinstance(batch, int) or batch < 1):
            raise KitflowError(f"{source}: 'batchSize' must be a positive integer")
        return cls(
            kind=base.kind,
            path=base.path,
            command=base.command,
            requirements=_clean_relpath(requirements, source) if requirements else None,
            batch_size=batch,
        )

    def to_dict(self) -> dict[str, Any]:
        """The Kitfile shape (``model.parameters.inference``) of this entrypoint."""
        out: dict[str, Any] = (
            {"entrypoint": self.path} if self.kind == "python" else {"command": list(self.command)}
        )
        if self.requirements:
            out["requirements"] = self.requirements
        if self.batch_size:
            out["batchSize"] = self.batch_size
        return out

    def describe(self) -> str:
        """One line for logs and messages."""
        return (self.path or "") if self.kind == "python" else shlex.join(self.command)


def _clean_relpath(path: str, source: str) -> str:
    parts = Path(path).parts
    if Path(path).is_absolute() or ".." in parts:
        raise KitflowError(f"{source}: {path!r} must be a relative path inside the ModelKit")
    return path


@dataclass(frozen=True)
class InputSpec:
    """Where the records come from: a file (JSON Lines, CSV or Parquet) or a dataset in the kit.

    ``id_field`` names the key copied from each input record to its output line (when present).
    """

    path: Path | None = None
    dataset: str | None = None  # name (or path) of a dataset entry inside the ModelKit
    format: InputFormat | None = None  # None: by suffix
    id_field: str = "id"

    def __post_init__(self) -> None:
        if (self.path is None) == (self.dataset is None):
            raise KitflowError("give exactly one input: a file (--input) or a dataset (--dataset)")
        if self.path is not None:
            object.__setattr__(self, "path", Path(self.path))

    def resolved_format(self, path: Path | None = None) -> InputFormat:
        """The format to read ``path`` (default: this input's path) with."""
        target = path or self.path
        return self.format or (detect_format(target) if target is not None else "jsonl")


@dataclass(frozen=True)
class InferenceJob:
    """Everything a backend needs to run inference: the kits, inputs, output and execution plan.

    ``references`` holds one reference (a plain run) or several (each kit scores the same inputs
    and the result carries a comparison). ``shards``/``parallelism`` None mean "backend decides".
    """

    references: tuple[str, ...]
    inputs: InputSpec
    output: Path | None = None
    shards: int | None = None
    parallelism: int | None = None
    batch_size: int = DEFAULT_BATCH_SIZE
    retries: int = 1  # extra attempts per shard after the first
    entrypoint: EntrypointSpec | None = None  # override of the Kitfile's entrypoint
    resources: Resources = field(default_factory=Resources)
    home: Path | None = None  # KITOPS_HOME override
    progress: bool = False
    isolated_env: bool = False  # install the kit's requirements into a cached venv first

    def __post_init__(self) -> None:
        if not self.references:
            raise KitflowError("give at least one ModelKit reference")
        if self.shards is not None and self.shards < 1:
            raise KitflowError(f"--shards must be at least 1, got {self.shards}")
        if self.parallelism is not None and self.parallelism < 1:
            raise KitflowError(f"--parallelism must be at least 1, got {self.parallelism}")
        if self.batch_size < 1:
            raise KitflowError(f"--batch-size must be at least 1, got {self.batch_size}")
        if self.retries < 0:
            raise KitflowError(f"--retries must be 0 or more, got {self.retries}")
        if self.output is not None:
            object.__setattr__(self, "output", Path(self.output))
        if self.home is not None:
            object.__setattr__(self, "home", Path(self.home))

    @property
    def comparison(self) -> bool:
        """True when several kits score the same inputs."""
        return len(self.references) > 1

    def to_dict(self) -> dict[str, Any]:
        """JSON-safe description (for dry runs and logs; holds no secret)."""
        return {
            "references": list(self.references),
            "input": str(self.inputs.path) if self.inputs.path else None,
            "dataset": self.inputs.dataset,
            "format": self.inputs.format,
            "id_field": self.inputs.id_field,
            "output": str(self.output) if self.output else None,
            "shards": self.shards,
            "parallelism": self.parallelism,
            "batch_size": self.batch_size,
            "retries": self.retries,
            "entrypoint": self.entrypoint.to_dict() if self.entrypoint else None,
            "resources": {
                "cpu": self.resources.cpu,
                "memory": self.resources.memory,
                "gpu": self.resources.gpu,
            },
        }
