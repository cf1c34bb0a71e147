"""Forked scoring workers for the local backend (Linux): the entrypoint is imported and the model
loaded once, in the runner, and the workers are forked from it, so each starts with the model
already in memory (shared copy-on-write) instead of paying an interpreter, imports and ``load``.

Fork safety, the choices made:

- A fork copies only the calling thread; a lock another thread held at that moment stays locked
  in the child for ever. So workers are forked only by a runner with no other Python thread
  (:func:`fork_usable`; the progress bar is built without tqdm's monitor thread), and every fork,
  a replacement for a crashed worker included, happens on the runner's own thread inside one
  single-threaded scheduling loop (``selectors`` over the workers' pipes, no helper threads).
- A child builds fresh stdio objects on fds 0-2 instead of using the inherited ones, points fd 1
  at stderr (the user's prints cannot reach the runner's stdout) and leaves with ``os._exit``
  (no inherited buffer is flushed twice, no ``atexit`` handler of the caller runs).
- ``gc.freeze()`` before each fork: the child's garbage collector never walks the objects it
  inherited, so it does not write to (and copy) every page of the model.
- Native thread pools: OpenBLAS and MKL rebuild theirs after a fork; GNU OpenMP does not. Each
  child caps BLAS/OpenMP pools (threadpoolctl, when installed; the pools are found once, in the
  runner) at cores / workers threads, one on a fully used machine, which also keeps the
  workers from oversubscribing the cores.
- Linux only: ``PR_SET_PDEATHSIG`` makes the kernel kill a worker whose runner dies, even by
  SIGKILL. Elsewhere, with other threads running, or for an isolated environment's interpreter,
  the runner uses subprocess workers (:mod:`kitflow.inference.worker`). ``KITFLOW_FORK=0`` turns
  forking off.
"""

from __future__ import annotations

import contextlib
import gc
import json
import os
import selectors
import signal
import sys
import threading
import time
from collections import deque
from dataclasses import asdict
from typing import TYPE_CHECKING, Any

from kitflow.inference.worker import die_with_parent

if TYPE_CHECKING:
    from kitflow.inference.local import (
        ExecutionReport,
        ProgressFn,
        ShardOutcome,
        ShardTask,
        _ShardState,
    )


def fork_usable() -> bool:
    """Whether shards may be scored by forked workers here: Linux, ``os.fork`` present, no
    other Python thread in this process, and not turned off with ``KITFLOW_FORK=0``."""
    if os.environ.get("KITFLOW_FORK", "1").strip().lower() in ("0", "false", "no", "off"):
        return False
    if not sys.platform.startswith("linux") or not hasattr(os, "fork"):
        return False
    return threading.active_count() == 1


def cpu_count() -> int:
    """The CPUs this process may use."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):
        return max(1, os.cpu_count() or 1)


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view) :]


class _Child:
    """One forked worker as the runner sees it: its pid, the pipe it reads shard indexes from,
    the pipe it answers on, and the shard it is scoring."""

    def __init__(self, pid: int, task_fd: int, result_fd: int) -> None:
        self.pid = pid
        self.task_fd = task_fd
        self.result_fd = result_fd
        self.state: _ShardState | None = None
        self.started = 0.0
        self._buffer = b""
        self.exit_code: int | None = None

    def send(self, state: _ShardState, index: int) -> None:
        """Give the worker shard number ``index``."""
        self.state = state
        self.started = time.perf_counter()
        _write_all(self.task_fd, f"{index}\n".encode())

    def read(self) -> tuple[list[bytes], bool]:
        """The complete lines the worker has written so far, and whether its pipe is closed."""
        chunks = []
        eof = False
        while True:
            try:
                chunk = os.read(self.result_fd, 1 << 16)
            except BlockingIOError:
                break
            except OSError:
                eof = True
                break
            if not chunk:
                eof = True
                break
            chunks.append(chunk)
        data = self._buffer + b"".join(chunks)
        *lines, self._buffer = data.split(b"\n")
        return lines, eof

    def close_fds(self) -> None:
        """Close the runner's ends of the pipes (closing the task pipe asks the worker to end)."""
        for fd in (self.task_fd, self.result_fd):
            with contextlib.suppress(OSError):
                os.close(fd)
        self.task_fd = self.result_fd = -1

    def reap(self, block: bool = True) -> bool:
        """Collect the worker's exit status; False if it is still running (``block`` False)."""
        if self.exit_code is not None:
            return True
        try:
            pid, status = os.waitpid(self.pid, 0 if block else os.WNOHANG)
        except ChildProcessError:
            self.exit_code = -1
            return True
        if pid == 0:
            return False
        self.exit_code = os.waitstatus_to_exitcode(status)
        return True

    def kill(self) -> None:
        """Stop the worker now and reap it."""
        if self.exit_code is None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(self.pid, signal.SIGKILL)
            self.reap()


def _pool_limiter(threads: int) -> Any:
    """In the runner, before forking: a threadpoolctl controller over the native thread pools
    loaded now (finding them is the slow part, done once here instead of in every child), or
    None when threadpoolctl is absent or no pool is larger than ``threads``."""
    try:
        from threadpoolctl import ThreadpoolController
    except ImportError:
        return None
    try:
        controller = ThreadpoolController()
    except Exception:  # a best effort; the workers run without the cap
        return None
    if all(info.get("num_threads", 0) <= threads for info in controller.info()):
        return None
    return controller


def _child_main(tasks: list[ShardTask], task_fd: int, result_fd: int, limiter: Any) -> int:
    """The body of a forked worker: score the shards whose indexes arrive on ``task_fd``."""
    from kitflow.inference import local
    from kitflow.inference.io import dumps

    signal.signal(signal.SIGINT, signal.SIG_DFL)
    os.dup2(2, 1)
    err = open(2, "w", encoding="utf-8", errors="backslashreplace", buffering=1, closefd=False)  # noqa: SIM115
    sys.stdout = sys.stderr = err
    null = os.open(os.devnull, os.O_RDONLY)
    os.dup2(null, 0)
    os.close(null)
    sys.stdin = open(0, encoding="utf-8", closefd=False)  # noqa: SIM115
    if limiter is not None:
        controller, threads = limiter
        with contextlib.suppress(Exception):
            controller.limit(limits=threads)

    class _Progress:
        def put(self, count: int) -> None:
            _write_all(result_fd, b"p%d\n" % count)

    local._PROGRESS_QUEUE = _Progress()
    with open(task_fd, "rb") as reader:
        for line in reader:
            if not line.strip():
                continue
            outcome = local.score_shard(tasks[int(line)])
            _write_all(result_fd, b"o" + dumps(asdict(outcome)).encode() + b"\n")
    err.flush()
    return 0


def _spawn(tasks: list[ShardTask], others: list[_Child], runner: int, limiter: Any) -> _Child:
    """Fork one worker (the caller's thread is the only one)."""
    task_r, task_w = os.pipe()
    result_r, result_w = os.pipe()
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(Exception):
            stream.flush()
    gc.freeze()  # the child's collector leaves the runner's objects (the model) untouched
    try:
        pid = os.fork()
    except BaseException:
        gc.unfreeze()
        for fd in (task_r, task_w, result_r, result_w):
            os.close(fd)
        raise
    if pid != 0:
        gc.unfreeze()
    if pid == 0:  # the worker: never returns into the runner's stack
        code = 1
        try:
            os.close(task_w)
            os.close(result_r)
            for other in others:  # or a sibling would keep their pipes open after they end
                for fd in (other.task_fd, other.result_fd):
                    with contextlib.suppress(OSError):
                        os.close(fd)
            die_with_parent(runner)
            code = _child_main(tasks, task_r, result_w, limiter)
        except BaseException:  # report and leave, whatever happened
            with contextlib.suppress(BaseException):
                import traceback

                traceback.print_exc()
                sys.stderr.flush()
        finally:
            os._exit(code)
    os.close(task_r)
    os.close(result_w)
    os.set_blocking(result_r, False)
    return _Child(pid, task_w, result_r)


def execute_forked(
    report: ExecutionReport,
    parallelism: int,
    retries: int,
    deadline: float | None,
    progress: ProgressFn | None,
) -> None:
    """Score ``report``'s shards in forked workers: load the model here once, fork
    min(parallelism, shards) workers, hand them shards, retry a failed shard up to ``retries``
    times (a worker that died is replaced), and kill every worker when a shard has no attempts
    left, the deadline passes or the caller is interrupted."""
    from kitflow.inference import local

    states = report.states
    tasks = [state.task for state in states]
    index_of = {id(state): number for number, state in enumerate(states)}
    first = tasks[0]
    if first.entrypoint.kind == "python":
        loading = time.perf_counter()
        with contextlib.suppress(Exception):  # a failing load is reported by each shard
            local._loaded(first)
        report.preload_seconds = time.perf_counter() - loading
    workers = max(1, min(parallelism, len(states)))
    threads = max(1, cpu_count() // workers)
    controller = _pool_limiter(threads)
    limiter = None if controller is None else (controller, threads)
    runner = os.getpid()
    selector = selectors.DefaultSelector()
    children: list[_Child] = []
    pending: deque[_ShardState] = deque(states)
    outstanding = len(states)
    finished = False

    def spawn() -> None:
        child = _spawn(tasks, children, runner, limiter)
        children.append(child)
        selector.register(child.result_fd, selectors.EVENT_READ, child)

    def settle(state: _ShardState, outcome: ShardOutcome) -> bool:
        """Record an attempt; False when the run must stop (the shard failed for good)."""
        nonlocal outstanding
        state.outcome = outcome
        state.seconds += outcome.seconds
        if outcome.ok:
            outstanding -= 1
        elif state.attempts > retries:
            report.failed = state
            return False
        else:
            pending.append(state)
        return True

    try:
        for _ in range(workers):
            spawn()
        while outstanding:
            for child in children:
                if child.state is None and pending:
                    state = pending.popleft()
                    state.attempts += 1
                    # a worker that died idle: its end-of-file comes through the loop below
                    with contextlib.suppress(OSError):
                        child.send(state, index_of[id(state)])
            timeout = None
            if deadline is not None:
                timeout = deadline - time.perf_counter()
                if timeout <= 0:
                    report.timed_out = True
                    return
            for key, _ in selector.select(timeout):
                child = key.data
                lines, eof = child.read()
                for line in lines:
                    if line.startswith(b"p"):
                        if progress is not None:
                            progress(int(line[1:]))
                    elif line.startswith(b"o") and child.state is not None:
                        state, child.state = child.state, None
                        outcome = local.ShardOutcome(**json.loads(line[1:]))
                        if not settle(state, outcome):
                            return
                if eof:
                    selector.unregister(child.result_fd)
                    child.close_fds()
                    child.reap()
                    children.remove(child)
                    if child.state is not None:
                        died = local.ShardOutcome(
                            child.state.task.index,
                            False,
                            seconds=time.perf_counter() - child.started,
                            message="the worker process died "
                            f"({local._exit_description(child.exit_code)})",
                        )
                        if not settle(child.state, died):
                            return
                    while len(children) < min(workers, outstanding):
                        spawn()
        finished = True
    finally:
        if finished:  # closing the task pipes ends the workers; give them a moment
            for child in children:
                with contextlib.suppress(OSError):
                    os.close(child.task_fd)
                child.task_fd = -1
            until = time.perf_counter() + 5
            for child in children:
                while not child.reap(block=False) and time.perf_counter() < until:
                    time.sleep(0.005)
        for child in children:
            child.kill()
            child.close_fds()
        selector.close()
        local._MODELS.clear()  # do not keep the model alive in the caller's process
