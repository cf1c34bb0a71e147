"""The entrypoint contract: find how an unpacked ModelKit is run (``model.parameters.inference``
in its Kitfile, or an override), load a Python entrypoint by file path, and run a command
entrypoint with ``{input}``/``{output}``/``{model}``/``{kit}`` substituted."""

from __future__ import annotations

import hashlib
import importlib.util
import json
import os
import subprocess
import sys
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType
from typing import Any

from kitflow.errors import KitflowError, NotFoundError
from kitflow.inference.job import EntrypointSpec

KITFILE_NAMES = ("Kitfile", "kitfile", ".kitfile")


@dataclass(frozen=True)
class KitLayout:
    """An unpacked ModelKit on disk: its root, its Kitfile (as plain data) and model path."""

    root: Path
    kitfile: dict[str, Any] = field(default_factory=dict)

    @property
    def model_path(self) -> Path:
        """Where the model is (file or directory); the kit root when the Kitfile has no model."""
        model = self.kitfile.get("model") or {}
        path = model.get("path") if isinstance(model, Mapping) else None
        return (self.root / str(path)).resolve() if path else self.root.resolve()

    @property
    def inference_parameters(self) -> Any:
        """``model.parameters.inference`` as written, or None."""
        model = self.kitfile.get("model") or {}
        params = model.get("parameters") if isinstance(model, Mapping) else None
        return params.get("inference") if isinstance(params, Mapping) else None

    def dataset_path(self, name: str) -> str:
        """The path of the dataset entry called ``name`` (or whose path is ``name``)."""
        datasets = self.kitfile.get("datasets") or []
        for entry in datasets:
            if isinstance(entry, Mapping) and name in (entry.get("name"), entry.get("path")):
                return str(entry["path"])
        names = [str(e.get("name") or e.get("path")) for e in datasets if isinstance(e, Mapping)]
        listed = ", ".join(names) if names else "none"
        raise NotFoundError(f"the ModelKit has no dataset {name!r} (datasets: {listed})")


def load_kit_layout(root: Path | str) -> KitLayout:
    """Read the Kitfile of an unpacked ModelKit (or a project directory) at ``root`` with the
    format layer's parser (kit's rules, one Kitfile reader in kitflow), kept as kit's JSON
    object so that it travels to workers and pods as plain data."""
    from kitflow.format.kitfile import kitfile_to_dict, load_kitfile

    root = Path(root)
    for name in KITFILE_NAMES:
        candidate = root / name
        if candidate.is_file():
            return KitLayout(root=root, kitfile=kitfile_to_dict(load_kitfile(candidate)))
    raise NotFoundError(f"no Kitfile in {root}")


def resolve_entrypoint(
    kit: KitLayout, override: EntrypointSpec | str | None = None
) -> EntrypointSpec:
    """The entrypoint to run: ``override`` if given, else the Kitfile's
    ``model.parameters.inference``; checks that a Python entrypoint's file exists."""
    if override is not None:
        spec = EntrypointSpec.parse(override, "--entrypoint")
    else:
        params = kit.inference_parameters
        if params is None:
            raise KitflowError(
                "the ModelKit declares no entrypoint (model.parameters.inference in its Kitfile); "
                "pass one with --entrypoint path/to/predict.py"
            )
        spec = EntrypointSpec.parse(params, "model.parameters.inference")
    if spec.kind == "python" and spec.path is not None and not (kit.root / spec.path).is_file():
        raise NotFoundError(f"entrypoint {spec.path} is not in the ModelKit ({kit.root})")
    return spec


# ----------------------------------------------------------------------------- python form


@dataclass
class PythonEntrypoint:
    """A loaded Python entrypoint: ``load(model_path) -> model`` (optional; the model path
    itself when absent) and ``predict(model, records) -> list``."""

    module: ModuleType
    load: Callable[[str], Any] | None
    predict: Callable[[Any, list[Any]], Any]

    def load_model(self, model_path: Path) -> Any:
        """Call the user's ``load`` (once per worker) and return the model."""
        if self.load is None:
            return str(model_path)
        return self.load(str(model_path))


def load_python_entrypoint(kit_root: Path, relpath: str) -> PythonEntrypoint:
    """Import the file ``relpath`` of the kit as a module (its directory and the kit root on
    ``sys.path`` so that it can import its neighbours) and check its functions."""
    path = (kit_root / relpath).resolve()
    if not path.is_file():
        raise NotFoundError(f"entrypoint {relpath} is not in the ModelKit ({kit_root})")
    digest = hashlib.sha256(str(path).encode()).hexdigest()[:12]
    name = f"kitflow_entrypoint_{path.stem}_{digest}"
    module = sys.modules.get(name)
    if module is None:
        for extra in (str(kit_root.resolve()), str(path.parent)):
            if extra not in sys.path:
                sys.path.insert(0, extra)
        spec = importlib.util.spec_from_file_location(name, path)
        if spec is None or spec.loader is None:
            raise KitflowError(f"cannot import entrypoint {relpath}")
        module = importlib.util.module_from_spec(spec)
        sys.modules[name] = module
        try:
            spec.loader.exec_module(module)
        except Exception as exc:
            del sys.modules[name]
            raise KitflowError(
                f"importing entrypoint {relpath} failed: {type(exc).__name__}: {exc}"
            ) from exc
    predict = getattr(module, "predict", None)
    if not callable(predict):
        raise KitflowError(f"entrypoint {relpath} has no function predict(model, records)")
    load = getattr(module, "load", None)
    if load is not None and not callable(load):
        raise KitflowError(f"entrypoint {relpath}: 'load' is not a function")
    return PythonEntrypoint(module=module, load=load, predict=predict)


# ----------------------------------------------------------------------------- command form


def command_argv(
    spec: EntrypointSpec, input_path: Path, output_path: Path, kit: KitLayout
) -> list[str]:
    """The argv of a command entrypoint with its placeholders replaced by paths."""
    values = {
        "{input}": str(input_path),
        "{output}": str(output_path),
        "{model}": str(kit.model_path),
        "{kit}": str(kit.root.resolve()),
    }
    argv = []
    for arg in spec.command:
        for key, value in values.items():
            arg = arg.replace(key, value)
        argv.append(arg)
    if argv and argv[0] in ("python", "python3"):
        argv[0] = sys.executable  # the interpreter kitflow runs on (or the kit's venv)
    return argv


def run_command(
    spec: EntrypointSpec,
    input_path: Path,
    output_path: Path,
    kit: KitLayout,
    *,
    timeout: float | None = None,
    python: str | None = None,
) -> None:
    """Run a command entrypoint in the kit root; raise KitflowError with the tail of its stderr
    when it exits non-zero."""
    argv = command_argv(spec, input_path, output_path, kit)
    if python and argv and argv[0] == sys.executable:
        argv[0] = python
    env = dict(os.environ)
    env["KITFLOW_MODEL_PATH"] = str(kit.model_path)
    env["KITFLOW_KIT_DIR"] = str(kit.root.resolve())
    try:
        proc = subprocess.run(
            argv,
            cwd=kit.root,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            timeout=timeout,
            check=False,
        )
    except FileNotFoundError:
        raise KitflowError(f"command entrypoint: {argv[0]!r} not found") from None
    except subprocess.TimeoutExpired:
        raise KitflowError(f"command entrypoint timed out after {timeout} s") from None
    if proc.returncode != 0:
        tail = [ln for ln in proc.stderr.decode("utf-8", "replace").splitlines() if ln.strip()]
        detail = tail[-1].strip() if tail else "no message on stderr"
        raise KitflowError(f"command exited with status {proc.returncode}: {detail}")
    if not output_path.is_file():
        raise KitflowError(f"command wrote no output file ({spec.describe()})")


def read_command_predictions(path: Path) -> list[Any]:
    """Predictions from a command's output: one JSON value per line; an object carrying
    ``prediction`` gives that value, anything else is the prediction itself."""
    predictions: list[Any] = []
    with open(path, "rb") as fh:
        for number, line in enumerate(fh, 1):
            if not line.strip():
                continue
            try:
                value = json.loads(line)
            except ValueError as exc:
                raise KitflowError(f"command output line {number} is not JSON: {exc}") from None
            if isinstance(value, dict) and "prediction" in value:
                value = value["prediction"]
            predictions.append(value)
    return predictions
