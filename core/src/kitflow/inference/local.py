"""The local backend: unpack each kit once per digest into a cache, score shards (in this process
for one shard or parallelism 1; else in workers forked after the model was loaded here, see
:mod:`kitflow.inference.forkpool`, or in worker subprocesses where forking is not safe), retry
failed shards, and publish the output file only when every shard succeeded. Several kits on the
same inputs give a comparison report (agreement, per-model latency)."""

from __future__ import annotations

import contextlib
import json
import os
import queue
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from kitflow.errors import InferenceError, KitflowError
from kitflow.inference import io
from kitflow.inference.comparison import Agreement, model_stats
from kitflow.inference.entrypoint import (
    KITFILE_NAMES,
    KitLayout,
    PythonEntrypoint,
    load_kit_layout,
    load_python_entrypoint,
    read_command_predictions,
    resolve_entrypoint,
    run_command,
)
from kitflow.inference.forkpool import cpu_count, execute_forked, fork_usable
from kitflow.inference.job import DEFAULT_BATCH_SIZE, EntrypointSpec, InferenceJob
from kitflow.options import RegistryOptions
from kitflow.results import RunResult, ShardStatus

ProgressFn = Callable[[int], None]


class ShardFailed(InferenceError):
    """A shard failed after its retries; ``result`` holds every shard's status (no output was
    written)."""

    def __init__(self, message: str, result: RunResult) -> None:
        self.result = result
        super().__init__(message)


# ----------------------------------------------------------------------------- kit cache


@dataclass(frozen=True)
class LocalKit:
    """A ModelKit ready to run: unpacked at ``layout.root``, pinned by ``digest`` ("" for a
    plain directory)."""

    reference: str
    digest: str
    layout: KitLayout
    seconds: float = 0.0  # time spent resolving and unpacking (0 on a cache hit)
    cached: bool = False


def run_cache_dir(home: Path | str | None = None) -> Path:
    """Where unpacked kits are kept for running: ``$KITOPS_HOME/cache/run``."""
    from kitflow.content.localstore import kitops_home

    return kitops_home(home) / "cache" / "run"


def _digest_dirname(digest: str) -> str:
    algorithm, _, hex_part = digest.partition(":")
    if not hex_part or not hex_part.isalnum() or not algorithm.isalnum():
        raise KitflowError(f"unexpected manifest digest {digest!r}")
    return f"{algorithm}-{hex_part}"


def resolve_digest(
    reference: str, registry: RegistryOptions | None = None, home: Path | str | None = None
) -> str:
    """The manifest digest ``reference`` names: from the local store, else from its registry
    (kit's order, as ``unpack`` reads it)."""
    from kitflow.ops.unpack import open_source

    if "@sha256:" in reference:
        return reference.rsplit("@", 1)[1]
    return str(open_source(reference, registry, home).descriptor.digest)


def _pinned(reference: str, digest: str) -> str:
    """``reference`` by digest (its tag replaced), so that what lands in the cache is exactly
    ``digest``; written as the user wrote the name, which kit's parser reads back the same."""
    name = reference.split("@", 1)[0]
    slash = name.rfind("/")
    colon = name.rfind(":")
    if colon > slash:
        name = name[:colon]
    return f"{name}@{digest}"


def materialize(
    reference: str,
    *,
    registry: RegistryOptions | None = None,
    home: Path | str | None = None,
) -> LocalKit:
    """Make ``reference`` runnable: a directory with a Kitfile is used as is; a ModelKit is
    unpacked once per manifest digest into the run cache (unpacked beside it, then renamed into
    place, so a half-unpacked kit is never used)."""
    started = time.perf_counter()
    as_dir = Path(reference)
    if as_dir.is_dir():
        return LocalKit(reference=reference, digest="", layout=load_kit_layout(as_dir))
    from kitflow import api

    digest = resolve_digest(reference, registry, home)
    cache = run_cache_dir(home)
    target = cache / _digest_dirname(digest)
    if target.is_dir():
        if any((target / name).is_file() for name in KITFILE_NAMES):
            return LocalKit(reference, digest, load_kit_layout(target), cached=True)
        shutil.rmtree(target, ignore_errors=True)  # damaged by hand: unpack it again
    cache.mkdir(parents=True, exist_ok=True)
    io.sweep_stale(cache, ".unpack-")
    staging = Path(tempfile.mkdtemp(prefix=f".unpack-{io.owner_tag()}-", dir=cache))
    try:
        result = api.unpack(_pinned(reference, digest), staging, registry=registry, home=home)
        if result.digest and result.digest != digest:  # the tag moved meanwhile
            digest = result.digest
            target = cache / _digest_dirname(digest)
        try:
            os.rename(staging, target)
        except OSError:
            if not target.is_dir():  # not a lost race with another runner
                raise
    finally:
        if staging.exists():
            shutil.rmtree(staging, ignore_errors=True)
    seconds = time.perf_counter() - started
    return LocalKit(reference, digest, load_kit_layout(target), seconds=seconds)


# ----------------------------------------------------------------------------- shard scoring


@dataclass(frozen=True)
class ShardTask:
    """One shard to score: which records (``span`` of ``input_path``), with which kit and
    entrypoint, written as JSON Lines to ``output_path``."""

    span: io.ShardSpan
    input_path: Path
    output_path: Path
    kit_root: Path
    kitfile: dict[str, Any]
    entrypoint: EntrypointSpec
    batch_size: int
    id_field: str = "id"
    python: str | None = None  # interpreter of an isolated environment (command form)

    @property
    def index(self) -> int:
        """The shard's index."""
        return self.span.index


@dataclass
class ShardOutcome:
    """What one attempt at a shard gave: success with counts and times, or the failing line
    (if known) and the user's error message."""

    index: int
    ok: bool
    records: int = 0
    seconds: float = 0.0
    predict_seconds: float = 0.0
    line: int | None = None
    message: str = ""
    load_seconds: float = 0.0  # importing the entrypoint and load(), when this attempt did it


# Per-process cache of loaded models: (kit root, entrypoint path) -> (entrypoint, model).
_MODELS: dict[tuple[str, str], tuple[PythonEntrypoint, Any]] = {}
_PROGRESS_QUEUE: Any = None


def _report(count: int) -> None:
    if _PROGRESS_QUEUE is not None:
        _PROGRESS_QUEUE.put(count)


def _loaded(task: ShardTask) -> tuple[PythonEntrypoint, Any]:
    assert task.entrypoint.path is not None
    key = (str(task.kit_root), task.entrypoint.path)
    cached = _MODELS.get(key)
    if cached is None:
        entry = load_python_entrypoint(task.kit_root, task.entrypoint.path)
        layout = KitLayout(task.kit_root, task.kitfile)
        try:
            model = entry.load_model(layout.model_path)
        except Exception as exc:
            raise KitflowError(f"load() failed: {type(exc).__name__}: {exc}") from exc
        cached = (entry, model)
        _MODELS[key] = cached
    return cached


def _user_error(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0]}" if text else type(exc).__name__


def _locate_failure(
    entry: PythonEntrypoint, model: Any, lines: list[int], records: list[Any], exc: BaseException
) -> io.RecordError:
    """A batch failed: find the first record that fails on its own, for its line number."""
    for line, record in zip(lines, records, strict=True):
        try:
            io.as_list(entry.predict(model, [record]))
        except Exception as single:
            return io.RecordError(line, _user_error(single))
    span = f"lines {lines[0]}-{lines[-1]}" if len(lines) > 1 else f"line {lines[0]}"
    return io.RecordError(lines[0], f"{_user_error(exc)} (batch {span})")


def _score_python(task: ShardTask, progress: ProgressFn) -> tuple[int, float, float]:
    loading = time.perf_counter()
    entry, model = _loaded(task)
    load_seconds = time.perf_counter() - loading
    predict = entry.predict
    count = 0
    predict_seconds = 0.0
    with open(task.output_path, "w", encoding="utf-8") as out:
        for lines, records in io.iter_batches(task.input_path, task.span, task.batch_size):
            started = time.perf_counter()
            try:
                predictions = io.as_list(predict(model, records))
            except Exception as exc:
                raise _locate_failure(entry, model, lines, records, exc) from exc
            predict_seconds += time.perf_counter() - started
            if len(predictions) != len(records):
                raise io.RecordError(
                    lines[0],
                    f"predict returned {len(predictions)} predictions for {len(records)} records",
                )
            try:
                io.write_predictions(out, records, predictions, task.id_field)
            except (TypeError, ValueError) as exc:
                raise io.RecordError(lines[0], f"prediction is not JSON: {exc}") from exc
            count += len(records)
            progress(len(records))
    return count, predict_seconds, load_seconds


def _score_command(task: ShardTask, progress: ProgressFn) -> tuple[int, float, float]:
    layout = KitLayout(task.kit_root, task.kitfile)
    shard_in = task.output_path.with_suffix(".in.jsonl")
    shard_out = task.output_path.with_suffix(".cmd.jsonl")
    try:
        io.write_span(task.input_path, task.span, shard_in)
        shard_out.unlink(missing_ok=True)
        started = time.perf_counter()
        run_command(task.entrypoint, shard_in, shard_out, layout, python=task.python)
        seconds = time.perf_counter() - started
        predictions = read_command_predictions(shard_out)
        if len(predictions) != task.span.count:
            raise KitflowError(
                f"command wrote {len(predictions)} predictions for {task.span.count} records"
            )
        with open(task.output_path, "w", encoding="utf-8") as out:
            batch_records: list[Any] = []
            batch_predictions: list[Any] = []
            for (_, record), prediction in zip(
                io.iter_records(task.input_path, task.span), predictions, strict=True
            ):
                batch_records.append(record)
                batch_predictions.append(prediction)
                if len(batch_records) >= 4096:
                    io.write_predictions(out, batch_records, batch_predictions, task.id_field)
                    batch_records, batch_predictions = [], []
            io.write_predictions(out, batch_records, batch_predictions, task.id_field)
        progress(task.span.count)
        return task.span.count, seconds, 0.0
    finally:
        shard_in.unlink(missing_ok=True)
        shard_out.unlink(missing_ok=True)


def score_shard(task: ShardTask) -> ShardOutcome:
    """Score one shard (in a worker process or inline); never raises for a user error, the
    outcome carries the failing line and message instead."""
    started = time.perf_counter()
    try:
        if task.entrypoint.kind == "python":
            count, predict_seconds, load_seconds = _score_python(task, _report)
        else:
            count, predict_seconds, load_seconds = _score_command(task, _report)
    except io.RecordError as exc:
        return ShardOutcome(
            task.index,
            False,
            seconds=time.perf_counter() - started,
            line=exc.line,
            message=exc.message,
        )
    except KitflowError as exc:
        return ShardOutcome(
            task.index, False, seconds=time.perf_counter() - started, message=str(exc)
        )
    except (Exception, SystemExit) as exc:  # the user's code may call sys.exit()
        return ShardOutcome(
            task.index, False, seconds=time.perf_counter() - started, message=_user_error(exc)
        )
    return ShardOutcome(
        task.index,
        True,
        records=count,
        seconds=time.perf_counter() - started,
        predict_seconds=predict_seconds,
        load_seconds=load_seconds,
    )


# ----------------------------------------------------------------------------- execution


@dataclass
class _ShardState:
    task: ShardTask
    attempts: int = 0
    outcome: ShardOutcome | None = None
    seconds: float = 0.0


@dataclass
class ExecutionReport:
    """Per-shard results of scoring one kit."""

    states: list[_ShardState] = field(default_factory=list)
    failed: _ShardState | None = None
    timed_out: bool = False
    seconds: float = 0.0
    preload_seconds: float = 0.0  # load() in the runner before forking workers

    @property
    def predict_seconds(self) -> float:
        """Time spent inside ``predict`` (or the command), summed over shards."""
        return sum(s.outcome.predict_seconds for s in self.states if s.outcome and s.outcome.ok)

    @property
    def load_seconds(self) -> float:
        """Time spent importing entrypoints and in ``load``, summed over shards (and the
        runner, when it loaded the model for forked workers)."""
        shards = sum(s.outcome.load_seconds for s in self.states if s.outcome and s.outcome.ok)
        return self.preload_seconds + shards


def execute(
    tasks: Sequence[ShardTask],
    *,
    parallelism: int,
    retries: int,
    timeout: float | None = None,
    progress: ProgressFn | None = None,
    python: str | None = None,
) -> ExecutionReport:
    """Score ``tasks``: in this process when ``parallelism`` is 1 (or there is one shard) and
    there is no timeout; else in workers forked from this process after loading the model here
    (when :func:`~kitflow.inference.forkpool.fork_usable` and no other interpreter is asked for),
    else in worker subprocesses (``python``, default this interpreter). A failed shard is
    retried up to ``retries`` times; once one has no attempts left, or the time is up, or the
    caller is interrupted, the workers are killed."""
    states = [_ShardState(task) for task in tasks]
    report = ExecutionReport(states=states)
    started = time.perf_counter()
    deadline = started + timeout if timeout else None
    # In this process only when nothing needs to be stopped from outside: a timeout must be
    # able to kill a shard mid-batch, and an isolated environment is another interpreter.
    if python is None and timeout is None and (parallelism <= 1 or len(tasks) <= 1):
        _execute_inline(report, retries, deadline, progress)
    elif python is None and tasks and fork_usable():
        execute_forked(report, max(1, parallelism), retries, deadline, progress)
    else:
        _execute_workers(report, max(1, parallelism), retries, deadline, progress, python)
    report.seconds = time.perf_counter() - started
    return report


def _execute_inline(
    report: ExecutionReport, retries: int, deadline: float | None, progress: ProgressFn | None
) -> None:
    global _PROGRESS_QUEUE
    previous = _PROGRESS_QUEUE
    _PROGRESS_QUEUE = _CallbackQueue(progress) if progress else None
    try:
        for state in report.states:
            while True:
                if deadline is not None and time.perf_counter() > deadline:
                    report.timed_out = True
                    return
                state.attempts += 1
                state.outcome = score_shard(state.task)
                state.seconds += state.outcome.seconds
                if state.outcome.ok or state.attempts > retries:
                    break
            if not state.outcome.ok:
                report.failed = state
                return
    finally:
        _PROGRESS_QUEUE = previous
        _MODELS.clear()  # do not keep models alive in the caller's process


class _CallbackQueue:
    """Stands in for the progress queue when shards run in this process."""

    def __init__(self, callback: ProgressFn) -> None:
        self._callback = callback

    def put(self, count: int) -> None:
        self._callback(count)


def _exit_description(code: int | None) -> str:
    if code is None:
        return "still running"
    if code < 0:
        try:
            name = signal.Signals(-code).name
        except ValueError:
            name = f"signal {-code}"
        hint = "; out of memory?" if -code == signal.SIGKILL else ""
        return f"killed by {name}{hint}"
    return f"exit status {code}; its stderr is above"


def worker_env(python: str | None, shim: Path) -> dict[str, str]:
    """The environment of a worker: this one, plus (for another interpreter) ``shim`` on
    PYTHONPATH holding only a link to the ``kitflow`` package, so the kit's own environment
    sees kitflow and nothing else of ours."""
    env = dict(os.environ)
    if python is not None and os.path.abspath(python) != os.path.abspath(sys.executable):
        import kitflow

        package = Path(kitflow.__file__).resolve().parent
        shim.mkdir(parents=True, exist_ok=True)
        link = shim / "kitflow"
        if not link.exists():
            os.symlink(package, link)
        existing = env.get("PYTHONPATH")
        env["PYTHONPATH"] = str(shim) + (os.pathsep + existing if existing else "")
    return env


class _Worker:
    """One worker subprocess speaking the JSON-lines protocol of kitflow.inference.worker."""

    def __init__(self, python: str, env: dict[str, str]) -> None:
        self.process = subprocess.Popen(
            [python, "-m", "kitflow.inference.worker"],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            env=env,
            text=True,
            encoding="utf-8",
            bufsize=1,
        )

    @property
    def alive(self) -> bool:
        return self.process.poll() is None

    def score(self, task: ShardTask, progress: ProgressFn | None) -> tuple[ShardOutcome, bool]:
        """Send ``task``; return its outcome and whether the worker is still usable."""
        from kitflow.inference.worker import task_to_json

        assert self.process.stdin is not None and self.process.stdout is not None
        started = time.perf_counter()
        try:
            self.process.stdin.write(task_to_json(task) + "\n")
            self.process.stdin.flush()
            for line in self.process.stdout:
                message = json.loads(line)
                if "progress" in message:
                    if progress is not None:
                        progress(int(message["progress"]))
                elif "outcome" in message:
                    return ShardOutcome(**message["outcome"]), True
        except (OSError, ValueError):
            pass
        code = self.process.wait()
        died = ShardOutcome(
            task.index,
            False,
            seconds=time.perf_counter() - started,
            message=f"the worker process died ({_exit_description(code)})",
        )
        return died, False

    def close(self) -> None:
        """Let the worker finish (stdin closed), killing it if it does not."""
        with contextlib.suppress(OSError):
            if self.process.stdin is not None:
                self.process.stdin.close()
        try:
            self.process.wait(timeout=5)
        except subprocess.TimeoutExpired:
            self.kill()

    def kill(self) -> None:
        """Stop the worker now."""
        if self.process.poll() is None:
            self.process.kill()
        self.process.wait()


def _execute_workers(
    report: ExecutionReport,
    parallelism: int,
    retries: int,
    deadline: float | None,
    progress: ProgressFn | None,
    python: str | None,
) -> None:
    interpreter = python or sys.executable
    shim = tempfile.TemporaryDirectory(prefix="kitflow-shim-")
    env = worker_env(python, Path(shim.name))
    work: queue.Queue[_ShardState | None] = queue.Queue()
    results: queue.Queue[tuple[_ShardState, ShardOutcome]] = queue.Queue()
    stopping = threading.Event()
    lock = threading.Lock()
    live: set[_Worker] = set()

    def serve() -> None:
        worker: _Worker | None = None
        try:
            while not stopping.is_set():
                state = work.get()
                if state is None or stopping.is_set():
                    return
                if worker is None:
                    with lock:
                        if stopping.is_set():
                            return
                        worker = _Worker(interpreter, env)
                        live.add(worker)
                try:
                    outcome, usable = worker.score(state.task, progress)
                except Exception as exc:  # never leave the scheduler waiting for an answer
                    worker.kill()
                    outcome = ShardOutcome(state.task.index, False, message=_user_error(exc))
                    usable = False
                if not usable:
                    with lock:
                        live.discard(worker)
                    worker = None
                results.put((state, outcome))
        finally:
            if worker is not None:
                worker.close()
                with lock:
                    live.discard(worker)

    threads = [
        threading.Thread(target=serve, name=f"kitflow-worker-{n}", daemon=True)
        for n in range(min(parallelism, len(report.states)))
    ]
    for state in report.states:
        state.attempts = 1
        work.put(state)
    for thread in threads:
        thread.start()
    outstanding = len(report.states)
    finished = False
    try:
        while outstanding:
            remaining = None if deadline is None else max(0.0, deadline - time.perf_counter())
            try:
                state, outcome = results.get(timeout=remaining)
            except queue.Empty:
                report.timed_out = True
                return
            state.outcome = outcome
            state.seconds += outcome.seconds
            if outcome.ok:
                outstanding -= 1
            elif state.attempts > retries:
                report.failed = state
                return
            else:
                state.attempts += 1
                work.put(state)
        finished = True
    finally:
        stopping.set()
        for _ in threads:
            work.put(None)
        if not finished:  # a shard failed for good, time is up, or we were interrupted
            with lock:
                for worker in list(live):
                    worker.kill()
        for thread in threads:
            thread.join(timeout=30)
        shim.cleanup()


# ----------------------------------------------------------------------------- one kit, many kits


@dataclass
class KitRun:
    """The scoring of one kit on the prepared inputs: its shard outputs and timings."""

    kit: LocalKit
    entrypoint: EntrypointSpec
    report: ExecutionReport
    parts: list[Path]


def shard_statuses(report: ExecutionReport, failed_message: str = "") -> list[ShardStatus]:
    """ShardStatus records for a finished (or stopped) execution."""
    statuses = []
    for state in report.states:
        outcome = state.outcome
        if outcome is None:
            status, message = "Pending", "not run: " + (failed_message or "run stopped")
        elif outcome.ok:
            status, message = "Succeeded", ""
        elif state is report.failed or outcome.message:
            status, message = "Failed", outcome.message
        else:
            status, message = "Failed", ""
        statuses.append(
            ShardStatus(
                index=state.task.index,
                records=state.task.span.count,
                status=status,
                attempts=max(state.attempts, 0),
                seconds=round(state.seconds, 6),
                message=message,
            )
        )
    return statuses


def default_parallelism(isolated_env: bool = False) -> int:
    """Workers when the user does not say: every CPU where workers can be forked with the model
    already loaded (2 forked workers ran 1.47x the in-process rate on 2 idle CPUs), and for an
    isolated environment (whose workers are subprocesses anyway). Else 1, in this process: a
    subprocess worker pays an interpreter, imports and ``load`` of its own, slower than one
    process for fast models. It does not follow the load average, so runs are reproducible."""
    if isolated_env or fork_usable():
        return cpu_count()
    return 1


#: A worker is only worth its start-up for at least this many batches; smaller inputs are
#: scored in one shard, in this process. The forked path has a fixed cost (measured by
#: benchmarks/inference.py on 2 CPUs: ~60-120 ms for two workers, i.e. forks of 5-20 ms each,
#: capping thread pools, a cold first batch) and ~20 % more CPU (copy-on-write faults); at
#: ~5 ms a batch of 256 for the sentiment model, 32 batches a shard keep that cost a fraction.
MIN_BATCHES_PER_SHARD = 32


def kit_batch_size(requested: int, entry: EntrypointSpec) -> int:
    """The batch size for one kit: the kit's ``batchSize`` (model.parameters.inference) unless
    the caller asked for something other than the default."""
    if entry.batch_size and requested == DEFAULT_BATCH_SIZE:
        return entry.batch_size
    return requested


def plan_shard_count(records: int, shards: int | None, parallelism: int, batch_size: int) -> int:
    """Shards to cut: the user's number, else one per worker, each with at least
    MIN_BATCHES_PER_SHARD batches (so small inputs run in one shard, in this process)."""
    if shards is not None:
        return max(1, shards)
    batches = max(1, -(-records // batch_size))
    return max(1, min(parallelism, batches // MIN_BATCHES_PER_SHARD))


def run_local(
    job: InferenceJob,
    *,
    registry: RegistryOptions | None = None,
    dry_run: bool = False,
    timeout: float | None = None,
) -> RunResult:
    """Run ``job`` on this machine and return its result (see module docstring)."""
    started = time.perf_counter()
    timings: dict[str, float] = {}

    tick = time.perf_counter()
    kits = [materialize(ref, registry=registry, home=job.home) for ref in job.references]
    timings["unpack"] = round(time.perf_counter() - tick, 6)
    entrypoints = [resolve_entrypoint(kit.layout, job.entrypoint) for kit in kits]

    if job.inputs.path is not None:
        input_file = Path(job.inputs.path)
    else:
        assert job.inputs.dataset is not None
        layout = kits[0].layout
        input_file = io.find_dataset_file(
            layout.root, layout.dataset_path(job.inputs.dataset), job.inputs.dataset
        )
    output = job.output or _default_output(input_file)
    output = output if output.is_absolute() else Path.cwd() / output
    if output.is_dir():
        raise KitflowError(f"--output {output} is a directory; name the file to write")
    if output.exists() and output.resolve() == input_file.resolve():
        raise KitflowError(f"--output {output} is the input file; write predictions elsewhere")

    with io.scratch_dir(output) as work:
        tick = time.perf_counter()
        prepared = io.prepare_input(input_file, job.inputs.resolved_format(input_file), work)
        parallelism = job.parallelism or default_parallelism(job.isolated_env)
        batch_size = job.batch_size
        count = plan_shard_count(prepared.records, job.shards, parallelism, batch_size)
        spans = io.plan_shards(prepared, count)
        timings["prepare"] = round(time.perf_counter() - tick, 6)

        if dry_run:
            return RunResult(
                output=None,
                records=prepared.records,
                model_digest=kits[0].digest,
                backend="local",
                shards=[ShardStatus(s.index, s.count, "Pending", attempts=0) for s in spans],
                seconds=round(time.perf_counter() - started, 6),
                timings=timings,
                phase="Pending",
            )

        bar = _progress_bar(prepared.records * len(kits), job.progress)
        runs: list[KitRun] = []
        tick = time.perf_counter()
        try:
            for number, (kit, entry) in enumerate(zip(kits, entrypoints, strict=True)):
                python = None
                if job.isolated_env:
                    from kitflow.inference.envs import ensure_env

                    python = str(ensure_env(kit.layout.root, kit.digest, entry, job.home))
                kit_dir = work / f"kit{number}"
                kit_dir.mkdir()
                tasks = [
                    ShardTask(
                        span=span,
                        input_path=prepared.path,
                        output_path=kit_dir / f"shard-{span.index:05d}.jsonl",
                        kit_root=kit.layout.root,
                        kitfile=kit.layout.kitfile,
                        entrypoint=entry,
                        batch_size=kit_batch_size(job.batch_size, entry),
                        id_field=job.inputs.id_field,
                        python=python,
                    )
                    for span in spans
                ]
                remaining = None if timeout is None else timeout - (time.perf_counter() - started)
                report = execute(
                    tasks,
                    parallelism=parallelism,
                    retries=job.retries,
                    timeout=remaining,
                    progress=bar.update if bar is not None else None,
                    python=python,
                )
                if report.failed is not None or report.timed_out:
                    raise _failure(job, kit, report, prepared, started, timings)
                runs.append(KitRun(kit, entry, report, [t.output_path for t in tasks]))
        finally:
            if bar is not None:
                bar.close()
        timings["score"] = round(time.perf_counter() - tick, 6)

        tick = time.perf_counter()
        tmp = io.temp_path(output)
        try:
            comparison = None
            if len(runs) == 1 and len(runs[0].parts) == 1:
                os.replace(runs[0].parts[0], tmp)  # same directory tree: a rename, no copy
            elif len(runs) == 1:
                io.concat_files(runs[0].parts, tmp)
            else:
                comparison = _merge_comparison(runs, tmp, prepared.records)
            io.commit_file(tmp, output)
        finally:
            tmp.unlink(missing_ok=True)
        timings["write"] = round(time.perf_counter() - tick, 6)
        timings["predict"] = round(sum(r.report.predict_seconds for r in runs), 6)
        timings["load"] = round(sum(r.report.load_seconds for r in runs), 6)

    return RunResult(
        output=output,
        records=prepared.records,
        model_digest=kits[0].digest,
        backend="local",
        shards=shard_statuses(runs[0].report),
        seconds=round(time.perf_counter() - started, 6),
        timings=timings,
        phase="Succeeded",
        comparison=comparison,
    )


def _default_output(input_file: Path) -> Path:
    return Path.cwd() / f"{input_file.stem}.predictions.jsonl"


def _failure(
    job: InferenceJob,
    kit: LocalKit,
    report: ExecutionReport,
    prepared: io.PreparedInput,
    started: float,
    timings: dict[str, float],
) -> ShardFailed:
    if report.timed_out:
        message = "inference timed out; no output was written"
    else:
        assert report.failed is not None and report.failed.outcome is not None
        state, outcome = report.failed, report.failed.outcome
        span = state.task.span
        where = (
            f" at {prepared.position(outcome.line)}"
            if outcome.line is not None
            else f" (records {span.start + 1}-{span.start + span.count})"
        )
        tries = f" after {state.attempts} attempts" if state.attempts > 1 else ""
        label = f" of {kit.reference}" if job.comparison else ""
        message = f"shard {state.task.index}{label} failed{where}{tries}: {outcome.message}"
        message += "; no output was written"
    result = RunResult(
        output=None,
        records=prepared.records,
        model_digest=kit.digest,
        backend="local",
        shards=shard_statuses(report, message),
        seconds=round(time.perf_counter() - started, 6),
        timings=timings,
        phase="Failed",
    )
    return ShardFailed(message, result)


def _progress_bar(total: int, enabled: bool) -> Any:
    if not enabled:
        return None
    from tqdm import tqdm

    class _Bar(tqdm):  # type: ignore[misc]
        monitor_interval = 0  # no monitor thread: workers may be forked while the bar is up

    lock = threading.Lock()
    bar = _Bar(total=total, unit="rec", desc="kitflow run", dynamic_ncols=True)
    update = bar.update

    def safe_update(count: int) -> None:
        with lock:
            update(count)

    bar.update = safe_update
    return bar


def _labels(runs: Sequence[KitRun]) -> list[str]:
    labels: list[str] = []
    for run in runs:
        label = run.kit.reference
        suffix = 2
        while label in labels:
            label = f"{run.kit.reference}#{suffix}"
            suffix += 1
        labels.append(label)
    return labels


def _merge_comparison(runs: Sequence[KitRun], dest: Path, records: int) -> dict[str, Any]:
    """Join the kits' outputs line by line into ``dest`` (``prediction`` = the first kit's,
    ``predictions`` = every kit's by reference) and measure agreement and latency."""
    agreement = Agreement(_labels(runs))
    handles = [[open(p, "rb") for p in run.parts] for run in runs]  # noqa: SIM115
    try:
        iterators = [_chain_lines(h) for h in handles]
        with open(dest, "w", encoding="utf-8") as out:
            for lines in zip(*iterators, strict=True):
                objects = [json.loads(line) for line in lines]
                predictions = [o["prediction"] for o in objects]
                agreement.add(predictions)
                out.write(agreement.merged_line(objects, predictions))
    finally:
        for group in handles:
            for handle in group:
                handle.close()
    models = [
        {
            "reference": label,
            "digest": run.kit.digest,
            "entrypoint": run.entrypoint.describe(),
            **model_stats(records, run.report.seconds, run.report.predict_seconds),
        }
        for label, run in zip(agreement.labels, runs, strict=True)
    ]
    return agreement.report(records, models)


def _chain_lines(handles: Sequence[Any]) -> Any:
    for handle in handles:
        for line in handle:
            if line.strip():
                yield line
